import { errorMessage } from '../pkg/errors.js';
import type { Logger } from '../pkg/log.js';
import { type KubeApi, paths, statusOf } from './kube.js';

/**
 * The webhook leader's part of `MCPPolicy.status`: prune `status.pods` entries of pods that no
 * longer exist, and aggregate the per-pod counts into `status.summary` (what `kubectl get mcpp`
 * prints). Sidecars own their own entries (server-side apply, manager `mcp-warden-sidecar.<pod>`);
 * the webhook owns `status.summary` (manager `mcp-warden-webhook`).
 *
 * Pruning uses a JSON patch with a `test` of the entry's name before each `remove`, so a list that
 * changed since it was read makes the patch fail instead of deleting the wrong entry; the next
 * pass retries.
 */
export interface PodEntry {
  name: string;
  lastReportTime?: string;
  allowed?: number;
  denied?: number;
  approvalsRequested?: number;
  masked?: number;
  sessions?: number;
}

export interface PolicyForStatus {
  metadata?: { name?: string; namespace?: string };
  spec?: { rules?: unknown[] };
  status?: { pods?: PodEntry[]; summary?: Record<string, number> };
}

export interface Summary {
  rules: number;
  pods: number;
  allowed: number;
  denied: number;
  approvalsRequested: number;
  masked: number;
  sessions: number;
}

export const WEBHOOK_FIELD_MANAGER = 'mcp-warden-webhook';

/** Entries to remove: pod gone, and not reported within `graceMs` (a pod recreated under the same name re-adds itself). */
export function staleEntries(
  pods: PodEntry[],
  existing: ReadonlySet<string>,
  now: number,
  graceMs: number,
): number[] {
  const out: number[] = [];
  pods.forEach((p, i) => {
    if (existing.has(p.name)) return;
    const reported = p.lastReportTime === undefined ? 0 : Date.parse(p.lastReportTime);
    if (Number.isFinite(reported) && now - reported < graceMs) return;
    out.push(i);
  });
  return out;
}

export function summarize(policy: PolicyForStatus, keep: PodEntry[]): Summary {
  const sum = (k: keyof Omit<PodEntry, 'name' | 'lastReportTime'>) =>
    keep.reduce((a, p) => a + (p[k] ?? 0), 0);
  return {
    rules: policy.spec?.rules?.length ?? 0,
    pods: keep.length,
    allowed: sum('allowed'),
    denied: sum('denied'),
    approvalsRequested: sum('approvalsRequested'),
    masked: sum('masked'),
    sessions: sum('sessions'),
  };
}

function sameSummary(a: Record<string, number> | undefined, b: Summary): boolean {
  return a !== undefined && Object.entries(b).every(([k, v]) => a[k] === v);
}

export interface StatusPassResult {
  pruned: number;
  summarized: number;
  errors: number;
}

/** One pass over every MCPPolicy in the cluster. Errors on one policy do not stop the others. */
export async function reconcileStatuses(
  kube: KubeApi,
  options: { logger: Logger; graceMs?: number; now?: () => number },
): Promise<StatusPassResult> {
  const graceMs = options.graceMs ?? 60_000;
  const now = options.now ?? Date.now;
  const result: StatusPassResult = { pruned: 0, summarized: 0, errors: 0 };
  const list = await kube.request<{ items?: PolicyForStatus[] }>('GET', paths.allPolicies());
  const podsByNamespace = new Map<string, Set<string>>();
  for (const policy of list.items ?? []) {
    const namespace = policy.metadata?.namespace;
    const name = policy.metadata?.name;
    if (namespace === undefined || name === undefined) continue;
    try {
      const entries = policy.status?.pods ?? [];
      let existing = podsByNamespace.get(namespace);
      if (existing === undefined && entries.length > 0) {
        const pods = await kube.request<{ items?: Array<{ metadata?: { name?: string } }> }>(
          'GET',
          paths.pods(namespace),
        );
        existing = new Set((pods.items ?? []).map((p) => p.metadata?.name ?? '').filter((n) => n !== ''));
        podsByNamespace.set(namespace, existing);
      }
      const stale = existing === undefined ? [] : staleEntries(entries, existing, now(), graceMs);
      if (stale.length > 0) {
        const ops = stale
          .slice()
          .reverse()
          .flatMap((i) => [
            { op: 'test', path: `/status/pods/${i}/name`, value: entries[i]!.name },
            { op: 'remove', path: `/status/pods/${i}` },
          ]);
        await kube.request('PATCH', paths.policyStatus(namespace, name), {
          body: ops,
          contentType: 'application/json-patch+json',
        });
        result.pruned += stale.length;
        options.logger.info(
          { namespace, policy: name, pods: stale.map((i) => entries[i]!.name) },
          'pruned status of deleted pods',
        );
      }
      const keep = entries.filter((_, i) => !stale.includes(i));
      const summary = summarize(policy, keep);
      if (!sameSummary(policy.status?.summary, summary)) {
        await kube.request('PATCH', paths.policyStatus(namespace, name), {
          query: { fieldManager: WEBHOOK_FIELD_MANAGER, force: 'true' },
          contentType: 'application/apply-patch+yaml',
          body: {
            apiVersion: 'mcpwarden.io/v1alpha1',
            kind: 'MCPPolicy',
            metadata: { name, namespace },
            status: { summary },
          },
        });
        result.summarized++;
      }
    } catch (err) {
      result.errors++;
      const level = statusOf(err) === 404 ? 'debug' : 'warn';
      options.logger[level](
        { namespace, policy: name, err: errorMessage(err) },
        'status pass failed for a policy',
      );
    }
  }
  return result;
}
