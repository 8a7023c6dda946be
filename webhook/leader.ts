import { EventEmitter } from 'node:events';
import { errorMessage } from '../pkg/errors.js';
import type { Logger } from '../pkg/log.js';
import { type KubeApi, type ObjectMeta, paths, statusOf } from './kube.js';

/**
 * Leader election on a `coordination.k8s.io/v1` Lease, the client-go way (@kubernetes/client-node
 * has no helper): acquire when the lease is free or its holder stopped renewing for
 * `leaseDurationMs` (measured on *our* clock from when we last saw the record change, so clock
 * skew between replicas does not matter), renew every `retryPeriodMs`, step down when renewals fail
 * for `renewDeadlineMs`. Every write carries the resourceVersion: two candidates never both win.
 *
 * @example
 * const elector = createLeaderElector({ kube, namespace, name: 'mcp-warden-webhook', identity: podName, logger });
 * elector.on('started', () => startRotation());
 * elector.on('stopped', () => stopRotation());
 * elector.start();
 */
export interface LeaderOptions {
  kube: KubeApi;
  namespace: string;
  name: string;
  identity: string;
  logger: Logger;
  leaseDurationMs?: number;
  renewDeadlineMs?: number;
  retryPeriodMs?: number;
  now?: () => number;
}

interface LeaseObject {
  apiVersion?: string;
  kind?: string;
  metadata?: ObjectMeta;
  spec?: {
    holderIdentity?: string | null;
    leaseDurationSeconds?: number;
    acquireTime?: string | null;
    renewTime?: string | null;
    leaseTransitions?: number;
  };
}

export interface LeaderElector {
  isLeader(): boolean;
  /** Runs one acquire/renew attempt; the timer calls this. Exposed for tests. */
  tryOnce(): Promise<boolean>;
  start(): void;
  /** Stops campaigning; a leader releases the lease so another replica takes over at once. */
  stop(): Promise<void>;
  on(event: 'started' | 'stopped', listener: () => void): void;
}

/** Kubernetes MicroTime (RFC 3339 with microseconds). */
function microTime(ms: number): string {
  return new Date(ms).toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
}

export function createLeaderElector(options: LeaderOptions): LeaderElector {
  const leaseDurationMs = options.leaseDurationMs ?? 15_000;
  const renewDeadlineMs = options.renewDeadlineMs ?? 10_000;
  const retryPeriodMs = options.retryPeriodMs ?? 2_000;
  const now = options.now ?? Date.now;
  const { kube, namespace, name, identity, logger } = options;
  const events = new EventEmitter();
  const path = paths.lease(namespace, name);
  let leader = false;
  let lastRenew = 0;
  /** The last record we saw (holder + renewTime) and when, by our clock. */
  let observed: { key: string; at: number } | undefined;
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<boolean> | undefined;
  let stopped = false;

  function setLeader(value: boolean): void {
    if (value === leader) return;
    leader = value;
    logger.info({ lease: name, identity, leader: value }, value ? 'became leader' : 'lost leadership');
    events.emit(value ? 'started' : 'stopped');
  }

  function spec(transitions: number, acquireTime: string) {
    const t = microTime(now());
    return {
      holderIdentity: identity,
      leaseDurationSeconds: Math.max(1, Math.ceil(leaseDurationMs / 1000)),
      acquireTime,
      renewTime: t,
      leaseTransitions: transitions,
    };
  }

  async function attempt(): Promise<boolean> {
    let lease: LeaseObject | undefined;
    try {
      lease = await kube.request<LeaseObject>('GET', path, { timeoutMs: retryPeriodMs * 2 });
    } catch (err) {
      if (statusOf(err) !== 404) throw err;
    }
    const t = now();
    if (lease === undefined) {
      const body: LeaseObject = {
        apiVersion: 'coordination.k8s.io/v1',
        kind: 'Lease',
        metadata: { name, namespace },
        spec: spec(0, microTime(t)),
      };
      try {
        await kube.request('POST', paths.leases(namespace), { body });
        return true;
      } catch (err) {
        if (statusOf(err) === 409) return false;
        throw err;
      }
    }
    const s = lease.spec ?? {};
    const holder = s.holderIdentity ?? '';
    const key = `${holder}|${s.renewTime ?? ''}|${s.leaseDurationSeconds ?? ''}`;
    if (observed?.key !== key) observed = { key, at: t };
    const duration = (s.leaseDurationSeconds ?? 0) * 1000;
    const mine = holder === identity;
    const free = holder === '' || t >= observed.at + duration;
    if (!mine && !free) return false;
    const transitions = (s.leaseTransitions ?? 0) + (mine ? 0 : 1);
    const body: LeaseObject = {
      ...lease,
      spec: { ...s, ...spec(transitions, mine && s.acquireTime ? s.acquireTime : microTime(t)) },
    };
    try {
      await kube.request('PUT', path, { body, timeoutMs: retryPeriodMs * 2 });
      return true;
    } catch (err) {
      if (statusOf(err) === 409) return false;
      throw err;
    }
  }

  async function tryOnce(): Promise<boolean> {
    if (stopped) return false;
    running ??= (async () => {
      try {
        const ok = await attempt();
        if (ok) {
          lastRenew = now();
          setLeader(true);
        } else if (leader) {
          // Someone else holds it (we lost a race or the lease was taken over): step down now.
          setLeader(false);
        }
        return ok;
      } catch (err) {
        logger.warn({ lease: name, err: errorMessage(err) }, 'lease attempt failed');
        if (leader && now() - lastRenew >= renewDeadlineMs) setLeader(false);
        return false;
      } finally {
        running = undefined;
      }
    })();
    return running;
  }

  return {
    isLeader: () => leader,
    tryOnce,
    on: (event, listener) => void events.on(event, listener),
    start() {
      if (timer !== undefined || stopped) return;
      void tryOnce();
      timer = setInterval(() => void tryOnce(), retryPeriodMs);
      timer.unref();
    },
    async stop() {
      stopped = true;
      if (timer !== undefined) clearInterval(timer);
      timer = undefined;
      await running;
      if (!leader) return;
      try {
        const lease = await kube.request<LeaseObject>('GET', path, { timeoutMs: 2_000 });
        if (lease.spec?.holderIdentity === identity) {
          await kube.request('PUT', path, {
            body: {
              ...lease,
              spec: {
                ...lease.spec,
                holderIdentity: null,
                leaseDurationSeconds: 1,
                renewTime: microTime(now()),
              },
            },
            timeoutMs: 2_000,
          });
        }
      } catch (err) {
        logger.warn({ lease: name, err: errorMessage(err) }, 'could not release the lease (it will expire)');
      }
      setLeader(false);
    },
  };
}
