import { errorMessage } from '../pkg/errors.js';
import type { Logger } from '../pkg/log.js';
import { type KubeApi, paths } from './kube.js';

/**
 * Small cluster look-ups the admission path makes, all best effort and short-timed: a slow API
 * server must not push an admission review past its 5 s timeout.
 */

/** Namespace labels, cached for `ttlMs`. Undefined when the look-up fails (the namespaceSelector is authoritative). */
export function namespaceLabelCache(
  kube: KubeApi,
  options: { ttlMs?: number; timeoutMs?: number; logger: Logger },
) {
  const ttlMs = options.ttlMs ?? 30_000;
  const cache = new Map<string, { at: number; labels: Record<string, string> }>();
  return async (namespace: string): Promise<Record<string, string> | undefined> => {
    const hit = cache.get(namespace);
    if (hit !== undefined && Date.now() - hit.at < ttlMs) return hit.labels;
    try {
      const ns = await kube.request<{ metadata?: { labels?: Record<string, string> } }>(
        'GET',
        paths.namespace(namespace),
        {
          timeoutMs: options.timeoutMs ?? 1_000,
        },
      );
      const labels = ns.metadata?.labels ?? {};
      cache.set(namespace, { at: Date.now(), labels });
      if (cache.size > 1000) cache.delete(cache.keys().next().value!);
      return labels;
    } catch (err) {
      options.logger.debug({ namespace, err: errorMessage(err) }, 'namespace look-up failed');
      return undefined;
    }
  };
}

/** Emits `InjectionSkipped` Warning events on the pod (fire and forget). */
export function skipEventEmitter(
  kube: KubeApi,
  options: { logger: Logger; component?: string; now?: () => Date },
) {
  const now = options.now ?? (() => new Date());
  return (e: { namespace: string; pod: string; reason: string; message: string }): void => {
    const t = now()
      .toISOString()
      .replace(/\.\d{3}Z$/, 'Z');
    const body = {
      apiVersion: 'v1',
      kind: 'Event',
      metadata: { generateName: `${e.pod.replace(/-+$/, '') || 'pod'}.mcp-warden-`, namespace: e.namespace },
      involvedObject: { apiVersion: 'v1', kind: 'Pod', namespace: e.namespace, name: e.pod },
      reason: 'InjectionSkipped',
      message: `${e.reason}: ${e.message}`.slice(0, 1024),
      type: 'Warning',
      source: { component: options.component ?? 'mcp-warden-webhook' },
      reportingComponent: options.component ?? 'mcp-warden-webhook',
      reportingInstance: process.env['HOSTNAME'] ?? 'mcp-warden-webhook',
      action: 'Inject',
      firstTimestamp: t,
      lastTimestamp: t,
      count: 1,
    };
    kube.request('POST', paths.events(e.namespace), { body, timeoutMs: 3_000 }).catch((err: unknown) => {
      options.logger.warn(
        { namespace: e.namespace, pod: e.pod, err: errorMessage(err) },
        'could not record the skip event',
      );
    });
  };
}

/** Service account of a pod (for MCPApproval admission), undefined when the pod cannot be read. */
export function podServiceAccountLookup(kube: KubeApi, options: { logger: Logger; timeoutMs?: number }) {
  return async (namespace: string, pod: string): Promise<string | undefined> => {
    try {
      const p = await kube.request<{ spec?: { serviceAccountName?: string } }>(
        'GET',
        `${paths.pods(namespace)}/${encodeURIComponent(pod)}`,
        {
          timeoutMs: options.timeoutMs ?? 1_000,
        },
      );
      return p.spec?.serviceAccountName ?? 'default';
    } catch (err) {
      options.logger.debug({ namespace, pod, err: errorMessage(err) }, 'pod look-up failed');
      return undefined;
    }
  };
}

/** Kubernetes minor version from `/version` ("1.37.2" → 37; "1.29+" → 29). */
export async function serverMinorVersion(
  kube: KubeApi,
): Promise<{ major: number; minor: number; gitVersion: string }> {
  const v = await kube.request<{ major?: string; minor?: string; gitVersion?: string }>(
    'GET',
    paths.version(),
    {
      timeoutMs: 5_000,
    },
  );
  const git = v.gitVersion ?? '';
  const m = /^v?(\d+)\.(\d+)/.exec(git);
  const major = Number.parseInt(v.major ?? m?.[1] ?? '0', 10);
  const minor = Number.parseInt((v.minor ?? m?.[2] ?? '0').replace(/\D+$/, ''), 10);
  return { major, minor, gitVersion: git };
}
