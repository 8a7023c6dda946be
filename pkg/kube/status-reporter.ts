import { createHash } from 'node:crypto';
import type { EventEmitter } from 'node:events';
import { errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import type { MaskHit } from '../mask/types.js';
import type { Decision } from '../policy/decision.js';
import type { RecordingSummary } from '../record/types.js';
import { KubeApiError, type KubeClient } from './client.js';
import type { PolicyObject } from './policy-source.js';
import { MCPPOLICY_API, policyPath } from './resources.js';

/**
 * Reports one pod's view to `MCPPolicy.status`, exactly one entry per pod in `status.pods` (a
 * list-map keyed by `name`), written with server-side apply under a per-pod field manager, so
 * any number of sidecars write concurrently without conflicts and without clobbering each other.
 *
 * What each sidecar owns (per-pod manager `mcp-warden-sidecar.<pod>`):
 *   status.pods[name=<pod>]          {name, generation, lastReportTime, allowed, denied,
 *                                     approvalsRequested, masked, sessions}
 *   status.recordings.recent[session=…]  its own latest recordings: floor(20 / pods) each (at
 *                                     least 1), or 1 each for the first 20 pods by name, so ≤ 20
 * What all sidecars share (one manager `mcp-warden-sidecar`, identical values from every pod):
 *   status.observedGeneration, status.conditions[type=Accepted|Enforced]
 * Totals across pods and pruning of entries of deleted pods belong to the webhook deployment.
 *
 * Counts are cumulative since the sidecar started; `sessions` is the sessions open now. Writes are
 * throttled per policy (default one per 5 s, stretched to pods × 250 ms for big fleets so a policy
 * never sees more than about 4 writes per second) with a heartbeat (default 60 s) refreshing
 * `lastReportTime` so stale entries can be pruned.
 *
 * @example
 * const reporter = createStatusReporter({ client, namespace, podName, policies: () => source.selected() });
 * reporter.attach(proxy.events);
 * source.onObjects(() => reporter.policiesChanged());
 */
export interface StatusReporterOptions {
  client: KubeClient;
  namespace: string;
  podName: string;
  /** The policy objects that currently select this pod (`KubePolicySource.selected`). */
  policies: () => PolicyObject[];
  /** Why a policy does not compile, if it does not (sets its `Accepted=False`). */
  compileError?: (policy: string) => string | undefined;
  /** Minimum time between two writes for one policy. Default 5000 ms. */
  intervalMs?: number;
  /**
   * Fleet-wide write budget: with N pods on a policy each pod writes at most every N × this, so
   * the policy sees at most 1000/this writes per second whatever the fleet size (each write is
   * an event for every sidecar watching the namespace). Default 250 ms (≤ 4 writes/s; 200 pods →
   * one write per pod every 50 s).
   */
  perPodIntervalMs?: number;
  /** Refresh `lastReportTime` at least this often. Default 60 000 ms. */
  heartbeatMs?: number;
  /** Bound of `status.recordings.recent` across all pods. Default 20. */
  maxRecent?: number;
  logger?: Logger;
  onError?: (err: Error) => void;
  /** Called after each successful write (tests await it instead of sleeping). */
  onWrite?: (policy: string) => void;
}

export interface PodCounts {
  allowed: number;
  denied: number;
  approvalsRequested: number;
  masked: number;
  sessions: number;
  recordings: number;
}

export interface StatusReporter {
  /** Subscribe to the proxy's events (`decision`, `mask`, `session-open`, `session-close`, `recording`). */
  attach(events: EventEmitter): () => void;
  recordDecision(decision: Decision): void;
  recordMask(hits: readonly MaskHit[]): void;
  /** A session opened (+1) or closed (-1). */
  recordSession(delta: 1 | -1): void;
  recordRecording(summary: RecordingSummary): void;
  /** The selected policies or their generations changed: report them. */
  policiesChanged(): void;
  counts(policy: string): PodCounts;
  /** Write every pending report now (ignores the throttle). */
  flush(): Promise<void>;
  /** Final flush, stop timers. */
  close(): Promise<void>;
}

const SHARED_MANAGER = 'mcp-warden-sidecar';

/** Field managers are limited to 128 characters; long pod names keep a digest suffix. */
export function podFieldManager(podName: string): string {
  const name = `${SHARED_MANAGER}.${podName}`;
  if (name.length <= 128) return name;
  const digest = createHash('sha256').update(podName).digest('hex').slice(0, 16);
  return `${name.slice(0, 128 - 17)}-${digest}`;
}

/** `ns/name` or `name` → `name`. */
function policyName(ref: string): string {
  const i = ref.lastIndexOf('/');
  return i >= 0 ? ref.slice(i + 1) : ref;
}

interface Condition {
  type: string;
  status: 'True' | 'False' | 'Unknown';
  reason: string;
  message: string;
  observedGeneration: number;
  lastTransitionTime: string;
}

export function createStatusReporter(options: StatusReporterOptions): StatusReporter {
  const { client, namespace, podName, logger } = options;
  const intervalMs = options.intervalMs ?? 5000;
  const perPodIntervalMs = options.perPodIntervalMs ?? 250;
  const heartbeatMs = options.heartbeatMs ?? 60_000;
  const maxRecent = options.maxRecent ?? 20;
  const manager = podFieldManager(podName);

  const counts = new Map<string, PodCounts>();
  const recent = new Map<string, RecordingSummary[]>();
  const dirty = new Set<string>();
  const lastWrite = new Map<string, number>();
  const timers = new Map<string, NodeJS.Timeout>();
  const inflight = new Map<string, Promise<void>>();
  /** Last shared (conditions) body written per policy, to skip identical writes. */
  const sharedWritten = new Map<string, string>();
  let closed = false;

  const countsFor = (name: string): PodCounts => {
    let c = counts.get(name);
    if (c === undefined) {
      c = { allowed: 0, denied: 0, approvalsRequested: 0, masked: 0, sessions: 0, recordings: 0 };
      counts.set(name, c);
    }
    return c;
  };

  const selectedNames = (): string[] => options.policies().map((p) => p.metadata.name);

  /** Decisions name their policy; the default deny (no rule applied) counts for every selected policy. */
  const targets = (ref: string): string[] => (ref === '' ? selectedNames() : [policyName(ref)]);

  const report = (err: unknown): void => {
    const e = err instanceof Error ? err : new Error(String(err));
    options.onError?.(e);
  };

  const buildConditions = (obj: PolicyObject, now: string): Condition[] => {
    const generation = obj.metadata.generation ?? 0;
    const existing = (obj.status?.['conditions'] as Condition[] | undefined) ?? [];
    const compileError = options.compileError?.(obj.metadata.name);
    const enforce = (obj.spec?.mode ?? 'enforce') !== 'audit';
    const desired: Array<Omit<Condition, 'lastTransitionTime' | 'observedGeneration'>> = [
      compileError === undefined
        ? {
            type: 'Accepted',
            status: 'True',
            reason: 'Compiled',
            message: 'The policy compiled and is loaded by the sidecars that select it.',
          }
        : {
            type: 'Accepted',
            status: 'False',
            reason: 'CompileFailed',
            message: `The sidecars keep the last good policies: ${compileError}`.slice(0, 1000),
          },
      enforce
        ? { type: 'Enforced', status: 'True', reason: 'Enforcing', message: 'Decisions are enforced.' }
        : {
            type: 'Enforced',
            status: 'False',
            reason: 'AuditMode',
            message: 'mode: audit: decisions are reported, not enforced.',
          },
    ];
    return desired.map((d) => {
      const prev = existing.find((c) => c.type === d.type);
      // Keep the transition time while the status holds, so every sidecar writes identical values.
      const lastTransitionTime =
        prev !== undefined && prev.status === d.status ? prev.lastTransitionTime : now;
      return { ...d, observedGeneration: generation, lastTransitionTime };
    });
  };

  const apply = async (name: string, body: unknown, fieldManager: string, force: boolean): Promise<void> => {
    await client.request('PATCH', policyPath(namespace, name, 'status'), {
      query: { fieldManager, force: force ? 'true' : undefined },
      body,
      contentType: 'application/apply-patch+yaml',
    });
  };

  const write = async (name: string): Promise<void> => {
    const obj = options.policies().find((p) => p.metadata.name === name);
    if (obj === undefined) return; // no longer selects this pod
    const nowIso = new Date().toISOString();
    const c = countsFor(name);
    const podsNow = Array.isArray(obj.status?.['pods'])
      ? (obj.status['pods'] as Array<{ name?: unknown }>)
      : [];
    // This pod's share of recordings.recent: 20 / pods each, or one each for the first 20 pods by name.
    const names = [
      ...new Set([...podsNow.map((p) => p.name).filter((n): n is string => typeof n === 'string'), podName]),
    ].sort();
    const rank = names.indexOf(podName);
    const keep = rank < maxRecent ? Math.max(1, Math.floor(maxRecent / names.length)) : 0;
    const mine = keep > 0 ? (recent.get(name) ?? []).slice(-keep) : [];
    const status: Record<string, unknown> = {
      pods: [
        {
          name: podName,
          generation: obj.metadata.generation ?? 0,
          lastReportTime: nowIso,
          allowed: c.allowed,
          denied: c.denied,
          approvalsRequested: c.approvalsRequested,
          masked: c.masked,
          sessions: c.sessions,
        },
      ],
    };
    if (mine.length > 0) status['recordings'] = { recent: mine };
    const meta = { name, namespace };
    const body = (st: Record<string, unknown>) => ({
      apiVersion: MCPPOLICY_API.apiVersion,
      kind: MCPPOLICY_API.kind,
      metadata: meta,
      status: st,
    });
    try {
      await apply(name, body(status), manager, false);
    } catch (err) {
      // While pods come and go the recordings list can briefly overflow its maxItems: the counts
      // must still land, so retry without this pod's recordings (which also gives its items up).
      if (!(err instanceof KubeApiError && err.status === 422 && status['recordings'] !== undefined))
        throw err;
      logger?.warn(
        { policy: name, err: errorMessage(err) },
        'status recordings refused; reporting counts only',
      );
      delete status['recordings'];
      await apply(name, body(status), manager, false);
    }

    const shared = {
      observedGeneration: obj.metadata.generation ?? 0,
      conditions: buildConditions(obj, nowIso),
    };
    // Compared without transition times: they only move when a status does.
    const keyOf = (gen: unknown, conditions: unknown): string =>
      JSON.stringify({
        gen,
        conditions: Array.isArray(conditions)
          ? (conditions as Condition[]).map(({ type, status, reason, message, observedGeneration }) => ({
              type,
              status,
              reason,
              message,
              observedGeneration,
            }))
          : conditions,
      });
    const sharedKey = keyOf(shared.observedGeneration, shared.conditions);
    const currentKey = keyOf(obj.status?.['observedGeneration'], obj.status?.['conditions']);
    if (currentKey !== sharedKey && sharedWritten.get(name) !== sharedKey) {
      // One manager shared by every sidecar, values identical across pods: never a conflict.
      await apply(
        name,
        { apiVersion: MCPPOLICY_API.apiVersion, kind: MCPPOLICY_API.kind, metadata: meta, status: shared },
        SHARED_MANAGER,
        true,
      );
      sharedWritten.set(name, sharedKey);
    }
  };

  const run = (name: string): Promise<void> => {
    const existing = inflight.get(name);
    if (existing !== undefined) return existing;
    dirty.delete(name);
    lastWrite.set(name, Date.now());
    const p = write(name)
      .then(() => options.onWrite?.(name))
      .catch((err: unknown) => {
        if (err instanceof KubeApiError && err.status === 404) return; // policy deleted meanwhile
        dirty.add(name); // retry at the next slot
        logger?.warn({ policy: name, err: errorMessage(err) }, 'status report failed');
        report(err);
        schedule(name);
      })
      .finally(() => {
        inflight.delete(name);
        if (dirty.has(name)) schedule(name);
      });
    inflight.set(name, p);
    return p;
  };

  /** The throttle for one policy: the base interval, stretched for big fleets. */
  function effectiveInterval(name: string): number {
    const obj = options.policies().find((p) => p.metadata.name === name);
    const pods = Array.isArray(obj?.status?.['pods']) ? (obj.status['pods'] as unknown[]).length : 1;
    return Math.max(intervalMs, pods * perPodIntervalMs);
  }

  function schedule(name: string): void {
    if (closed || timers.has(name)) return;
    const wait = Math.max(0, (lastWrite.get(name) ?? 0) + effectiveInterval(name) - Date.now());
    const t = setTimeout(() => {
      timers.delete(name);
      if (inflight.has(name)) return; // its finally() reschedules
      if (dirty.has(name)) void run(name);
    }, wait);
    t.unref();
    timers.set(name, t);
  }

  const markDirty = (names: string[]): void => {
    for (const n of names) {
      dirty.add(n);
      schedule(n);
    }
  };

  const heartbeat = setInterval(() => markDirty(selectedNames()), heartbeatMs);
  heartbeat.unref();

  const reporter: StatusReporter = {
    attach(events) {
      const onDecision = (e: { decision?: Decision }): void => {
        if (e?.decision) reporter.recordDecision(e.decision);
      };
      const onMask = (e: { hits?: MaskHit[] }): void => reporter.recordMask(e?.hits ?? []);
      const onSession = (): void => reporter.recordSession(1);
      const onSessionClose = (): void => reporter.recordSession(-1);
      const onRecording = (s: RecordingSummary): void => reporter.recordRecording(s);
      events.on('decision', onDecision);
      events.on('mask', onMask);
      events.on('session-open', onSession);
      events.on('session-close', onSessionClose);
      events.on('recording', onRecording);
      return () => {
        events.off('decision', onDecision);
        events.off('mask', onMask);
        events.off('session-open', onSession);
        events.off('session-close', onSessionClose);
        events.off('recording', onRecording);
      };
    },
    recordDecision(decision) {
      const names = targets(decision.policy);
      for (const n of names) {
        const c = countsFor(n);
        if (decision.action === 'allow') c.allowed++;
        else if (decision.action === 'deny') c.denied++;
        else c.approvalsRequested++;
      }
      markDirty(names);
    },
    recordMask(hits) {
      const touched = new Set<string>();
      for (const hit of hits) {
        for (const n of targets(hit.policy)) {
          countsFor(n).masked++;
          touched.add(n);
        }
      }
      markDirty([...touched]);
    },
    recordSession(delta) {
      const names = selectedNames();
      for (const n of names) {
        const c = countsFor(n);
        c.sessions = Math.max(0, c.sessions + delta);
      }
      markDirty(names);
    },
    recordRecording(summary) {
      const names = selectedNames();
      for (const n of names) {
        countsFor(n).recordings++;
        const list = recent.get(n) ?? [];
        list.push({ ...summary });
        if (list.length > maxRecent) list.splice(0, list.length - maxRecent);
        recent.set(n, list);
      }
      markDirty(names);
    },
    policiesChanged() {
      const names = selectedNames();
      const pending = names.filter((n) => {
        const obj = options.policies().find((p) => p.metadata.name === n);
        const pods =
          (obj?.status?.['pods'] as Array<{ name?: string; generation?: number }> | undefined) ?? [];
        const entry = pods.find((p) => p.name === podName);
        return (
          entry === undefined || entry.generation !== (obj?.metadata.generation ?? 0) || !lastWrite.has(n)
        );
      });
      markDirty(pending);
    },
    counts: (policy) => ({ ...countsFor(policy) }),
    async flush() {
      await Promise.all([...inflight.values()]);
      const names = [...dirty];
      await Promise.all(names.map((n) => run(n)));
    },
    async close() {
      await reporter.flush();
      closed = true;
      clearInterval(heartbeat);
      for (const t of timers.values()) clearTimeout(t);
      timers.clear();
    },
  };
  return reporter;
}
