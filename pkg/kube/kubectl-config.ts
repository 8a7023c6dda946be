import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { kubeconfigEnvPaths } from './kubeconfig.js';

/**
 * Where a command-line tool finds its kubeconfig and default namespace, the way kubectl does
 * (a kubectl plugin inherits the user's environment, not kubectl's flags):
 * `--kubeconfig`, else `KUBECONFIG` (several files merged), else `~/.kube/config`, else the
 * in-cluster service account. The servers (sidecar, webhook) do not use this: they take
 * `loadKubeConfig`'s explicit rules.
 *
 * @example
 * const paths = kubectlConfigPaths({ kubeconfig: flags.kubeconfig });
 * const creds = loadKubeConfig(paths.length === 0 ? {} : { kubeconfig: paths });
 * const namespace = currentNamespace(paths) ?? 'default';
 */
export interface KubectlConfigOptions {
  /** `--kubeconfig`: taken as is (a missing file is the caller's error to report). */
  kubeconfig?: string | undefined;
  env?: NodeJS.ProcessEnv;
  /** Testing seam: the home directory holding `.kube/config`. */
  home?: string;
}

type Doc = Record<string, unknown>;

function readDoc(path: string): Doc | undefined {
  try {
    // yaml (CommonJS) as pkg/kube/kubeconfig.ts loads it: only when a kubeconfig file is read.
    const { parse } = createRequire(import.meta.url)('yaml') as typeof import('yaml');
    const doc = parse(readFileSync(path, 'utf8')) as unknown;
    return typeof doc === 'object' && doc !== null ? (doc as Doc) : undefined;
  } catch {
    return undefined;
  }
}

function currentContextOf(doc: Doc | undefined): string | undefined {
  const c = doc?.['current-context'];
  return typeof c === 'string' && c !== '' ? c : undefined;
}

/**
 * The kubeconfig files to load, in order, or an empty list when there are none (then only the
 * in-cluster service account is left). `KUBECONFIG` may list several files (`:`-separated):
 * kubectl skips those that do not exist and merges the rest (loadKubeConfig and currentNamespace
 * do the same with this list); when none exists, the first is kept so that loading it reports it.
 */
export function kubectlConfigPaths(options: KubectlConfigOptions = {}): string[] {
  if (options.kubeconfig !== undefined && options.kubeconfig !== '') return [options.kubeconfig];
  const env = options.env ?? process.env;
  const listed = kubeconfigEnvPaths(env);
  if (listed.length > 0) return listed;
  const home = join(options.home ?? homedir(), '.kube', 'config');
  return existsSync(home) ? [home] : [];
}

/**
 * The namespace of the current context of the kubeconfig files (merged as kubectl merges them: the
 * first file that sets `current-context`, the first file that defines that context); without a
 * kubeconfig, the in-cluster service account's namespace. Undefined when neither names one
 * (callers default to `default`).
 */
export function currentNamespace(
  kubeconfigPaths: readonly string[],
  options: { env?: NodeJS.ProcessEnv; serviceAccountDir?: string } = {},
): string | undefined {
  if (kubeconfigPaths.length === 0) {
    const env = options.env ?? process.env;
    if (!env['KUBERNETES_SERVICE_HOST']) return undefined;
    const file = join(
      options.serviceAccountDir ?? '/var/run/secrets/kubernetes.io/serviceaccount',
      'namespace',
    );
    try {
      return readFileSync(file, 'utf8').trim() || undefined;
    } catch {
      return undefined;
    }
  }
  const docs = kubeconfigPaths.map(readDoc);
  const current = docs.map(currentContextOf).find((c) => c !== undefined);
  if (current === undefined) return undefined;
  for (const doc of docs) {
    const contexts = Array.isArray(doc?.['contexts']) ? (doc['contexts'] as Doc[]) : [];
    const found = contexts.find((c) => c?.['name'] === current);
    if (found === undefined) continue;
    const ns = (found['context'] as Doc | undefined)?.['namespace'];
    return typeof ns === 'string' && ns !== '' ? ns : undefined;
  }
  return undefined;
}
