import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { homedir } from 'node:os';
import { delimiter, join } from 'node:path';

/**
 * Where a command-line tool finds its kubeconfig and default namespace, the way kubectl does
 * (a kubectl plugin inherits the user's environment, not kubectl's flags):
 * `--kubeconfig`, else `KUBECONFIG`, else `~/.kube/config`, else the in-cluster service account.
 * The servers (sidecar, webhook) do not use this: they take `loadKubeConfig`'s explicit rules.
 *
 * @example
 * const path = kubectlConfigPath({ kubeconfig: flags.kubeconfig });
 * const creds = loadKubeConfig(path === undefined ? {} : { kubeconfig: path });
 * const namespace = currentNamespace(path) ?? 'default';
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
 * The kubeconfig file to load, or undefined when there is none (then only the in-cluster service
 * account is left). `KUBECONFIG` may list several files (`:`-separated): kubectl merges them and
 * takes `current-context` from the first file that sets it; this picks that file (its context,
 * cluster and user must be in it), else the first file that exists, else the first entry.
 */
export function kubectlConfigPath(options: KubectlConfigOptions = {}): string | undefined {
  if (options.kubeconfig !== undefined && options.kubeconfig !== '') return options.kubeconfig;
  const env = options.env ?? process.env;
  const list = (env['KUBECONFIG'] ?? '').split(delimiter).filter((p) => p !== '');
  if (list.length > 0) {
    const existing = list.filter((p) => existsSync(p));
    return existing.find((p) => currentContextOf(readDoc(p)) !== undefined) ?? existing[0] ?? list[0];
  }
  const home = join(options.home ?? homedir(), '.kube', 'config');
  return existsSync(home) ? home : undefined;
}

/**
 * The namespace of the kubeconfig's current context; without a kubeconfig, the in-cluster service
 * account's namespace. Undefined when neither names one (callers default to `default`).
 */
export function currentNamespace(
  kubeconfigPath: string | undefined,
  options: { env?: NodeJS.ProcessEnv; serviceAccountDir?: string } = {},
): string | undefined {
  if (kubeconfigPath === undefined) {
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
  const doc = readDoc(kubeconfigPath);
  const current = currentContextOf(doc);
  const contexts = Array.isArray(doc?.['contexts']) ? (doc['contexts'] as Doc[]) : [];
  const ctx = contexts.find((c) => c?.['name'] === current)?.['context'] as Doc | undefined;
  const ns = ctx?.['namespace'];
  return typeof ns === 'string' && ns !== '' ? ns : undefined;
}
