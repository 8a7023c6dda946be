import { errorMessage } from '../pkg/errors.js';
import type { Logger } from '../pkg/log.js';
import { FinalApprovalPhases } from '../pkg/policy/schema.js';
import { type KubeApi, paths, statusOf } from './kube.js';

/**
 * The webhook leader's part of `MCPPolicy.status`: prune `status.pods` entries of pods that no
 * longer exist, aggregate the per-pod counts into `status.summary` (what `kubectl get mcpp`
 * prints), and the policy's `MCPApproval` objects into `status.approvals` (counts by phase and the
 * 20 most recent). Sidecars own their own entries (server-side apply, manager `mcp-warden-sidecar.<pod>`);
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
  status?: { pods?: PodEntry[]; summary?: Record<string, number>; approvals?: ApprovalsStatus };
}

/** The fields of an `MCPApproval` the summary reads. */
export interface ApprovalForStatus {
  metadata?: { name?: string; namespace?: string; creationTimestamp?: string; resourceVersion?: string };
  spec?: {
    policy?: string;
    rule?: string;
    tool?: string;
    method?: string;
    requester?: { principal?: string };
    expiresAt?: string;
  };
  status?: { phase?: string; lastTransitionTime?: string };
}

export interface ApprovalsStatus {
  pending: number;
  approved: number;
  denied: number;
  expired: number;
  recent: Array<{
    name: string;
    rule?: string;
    tool?: string;
    requester?: string;
    phase: string;
    time?: string;
  }>;
}

/**
 * Approvals past their retention: finished (Executed, Denied, Expired, Cancelled) longer ago than
 * `retentionMs`, or never finished (pending, or approved and never used) and expired longer ago
 * than that (the data path that held them is gone). `retentionMs <= 0` keeps everything.
 */
export function retiredApprovals(
  items: ApprovalForStatus[],
  now: number,
  retentionMs: number,
): ApprovalForStatus[] {
  if (retentionMs <= 0) return [];
  return items.filter((a) => {
    const finished = FinalApprovalPhases.has(a.status?.phase ?? '');
    const since =
      (finished ? a.status?.lastTransitionTime : a.spec?.expiresAt) ?? a.metadata?.creationTimestamp;
    const t = since === undefined ? Number.NaN : Date.parse(since);
    return Number.isFinite(t) && now - t > retentionMs;
  });
}

/** At most this many entries in `status.approvals.recent`. */
export const RECENT_APPROVALS = 20;

/**
 * `status.approvals` of one policy from its approvals: counts by phase (Executed counts as
 * approved; Cancelled in none) and the most recent by the time of their last phase change.
 */
export function summarizeApprovals(items: ApprovalForStatus[]): ApprovalsStatus {
  const out: ApprovalsStatus = { pending: 0, approved: 0, denied: 0, expired: 0, recent: [] };
  const dated: Array<{ t: number; entry: ApprovalsStatus['recent'][number] }> = [];
  for (const a of items) {
    const name = a.metadata?.name;
    if (name === undefined) continue;
    const phase = a.status?.phase ?? 'Pending';
    if (phase === 'Pending') out.pending++;
    else if (phase === 'Approved' || phase === 'Executed') out.approved++;
    else if (phase === 'Denied') out.denied++;
    else if (phase === 'Expired') out.expired++;
    const time = a.status?.lastTransitionTime ?? a.metadata?.creationTimestamp;
    const s = a.spec ?? {};
    dated.push({
      t: time === undefined ? 0 : Date.parse(time) || 0,
      entry: {
        name,
        ...(s.rule !== undefined ? { rule: s.rule } : {}),
        ...(s.tool !== undefined ? { tool: s.tool } : s.method !== undefined ? { tool: s.method } : {}),
        ...(s.requester?.principal !== undefined ? { requester: s.requester.principal } : {}),
        phase,
        ...(time !== undefined ? { time } : {}),
      },
    });
  }
  dated.sort((x, y) => y.t - x.t || (x.entry.name < y.entry.name ? -1 : 1));
  out.recent = dated.slice(0, RECENT_APPROVALS).map((d) => d.entry);
  return out;
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
  approvalsDeleted: number;
}

/**
 * Delete approvals, each only if unchanged since it was read (a precondition on its
 * resourceVersion: one decided or written meanwhile stays). Returns those deleted.
 */
async function deleteApprovals(
  kube: KubeApi,
  items: ApprovalForStatus[],
  logger: Logger,
): Promise<ApprovalForStatus[]> {
  const deleted: ApprovalForStatus[] = [];
  for (const a of items) {
    const { name, namespace, resourceVersion } = a.metadata ?? {};
    if (name === undefined || namespace === undefined) continue;
    try {
      await kube.request('DELETE', paths.approval(namespace, name), {
        body: {
          apiVersion: 'v1',
          kind: 'DeleteOptions',
          ...(resourceVersion !== undefined ? { preconditions: { resourceVersion } } : {}),
        },
      });
      deleted.push(a);
    } catch (err) {
      const status = statusOf(err);
      if (status === 404) deleted.push(a);
      else if (status !== 409)
        logger.warn(
          { namespace, approval: name, err: errorMessage(err) },
          'cannot delete a retired MCPApproval',
        );
    }
  }
  if (deleted.length > 0)
    logger.info({ approvals: deleted.length }, 'deleted MCPApprovals past their retention');
  return deleted;
}

/** One pass over every MCPPolicy in the cluster. Errors on one policy do not stop the others. */
export async function reconcileStatuses(
  kube: KubeApi,
  options: {
    logger: Logger;
    graceMs?: number;
    now?: () => number;
    /** Delete approvals finished (or expired unfinished) longer ago than this; 0 keeps them all. */
    approvalRetentionMs?: number;
  },
): Promise<StatusPassResult> {
  const graceMs = options.graceMs ?? 60_000;
  const now = options.now ?? Date.now;
  const result: StatusPassResult = { pruned: 0, summarized: 0, errors: 0, approvalsDeleted: 0 };
  const list = await kube.request<{ items?: PolicyForStatus[] }>('GET', paths.allPolicies());
  // Approvals by the policy that held them (`spec.policy` is `namespace/name`).
  let approvalsByPolicy: Map<string, ApprovalForStatus[]> | undefined;
  try {
    const approvals = await kube.request<{ items?: ApprovalForStatus[] }>('GET', paths.allApprovals());
    const retired = new Set(
      await deleteApprovals(
        kube,
        retiredApprovals(approvals.items ?? [], now(), options.approvalRetentionMs ?? 0),
        options.logger,
      ),
    );
    result.approvalsDeleted = retired.size;
    approvalsByPolicy = new Map();
    for (const a of approvals.items ?? []) {
      if (retired.has(a)) continue;
      const key = a.spec?.policy;
      if (key === undefined || !key.startsWith(`${a.metadata?.namespace ?? ''}/`)) continue;
      const group = approvalsByPolicy.get(key);
      if (group === undefined) approvalsByPolicy.set(key, [a]);
      else group.push(a);
    }
  } catch (err) {
    // Summaries and pruning go on; only the approval counts wait for the next pass.
    result.errors++;
    options.logger.warn({ err: errorMessage(err) }, 'cannot list MCPApprovals for the policy status');
  }
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
      const approvals =
        approvalsByPolicy === undefined
          ? policy.status?.approvals
          : summarizeApprovals(approvalsByPolicy.get(`${namespace}/${name}`) ?? []);
      const approvalsChanged =
        approvals !== undefined && JSON.stringify(approvals) !== JSON.stringify(policy.status?.approvals);
      if (!sameSummary(policy.status?.summary, summary) || approvalsChanged) {
        // The webhook's manager owns both: applying them together keeps each field it set.
        await kube.request('PATCH', paths.policyStatus(namespace, name), {
          query: { fieldManager: WEBHOOK_FIELD_MANAGER, force: 'true' },
          contentType: 'application/apply-patch+yaml',
          body: {
            apiVersion: 'mcpwarden.io/v1alpha1',
            kind: 'MCPPolicy',
            metadata: { name, namespace },
            status: { summary, ...(approvals !== undefined ? { approvals } : {}) },
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
