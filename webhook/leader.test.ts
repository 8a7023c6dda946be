import { createLogger } from '../pkg/log.js';
import type { HttpMethod, KubeApi } from './kube.js';
import { createLeaderElector } from './leader.js';

/**
 * Testing seam: an in-memory Lease endpoint with the API server's optimistic concurrency
 * (resourceVersion mismatch → 409, create of an existing object → 409). The same elector runs
 * against the real kube-apiserver in test/e2e/webhook.test.ts.
 */
function leaseStore() {
  let stored: { rv: number; body: Record<string, unknown> } | undefined;
  let failing = false;
  const err = (status: number, message: string) => Object.assign(new Error(message), { status });
  const api: KubeApi = {
    async request<T>(method: HttpMethod, _path: string, options?: { body?: unknown }): Promise<T> {
      if (failing) throw err(0, 'connection refused');
      const body = options?.body as { metadata?: { resourceVersion?: string } } | undefined;
      if (method === 'GET') {
        if (stored === undefined) throw err(404, 'not found');
        return structuredClone({
          ...stored.body,
          metadata: { ...(stored.body['metadata'] as object), resourceVersion: String(stored.rv) },
        }) as T;
      }
      if (method === 'POST') {
        if (stored !== undefined) throw err(409, 'already exists');
        stored = { rv: 1, body: structuredClone(body as Record<string, unknown>) };
        return undefined as T;
      }
      if (method === 'PUT') {
        if (stored === undefined) throw err(404, 'not found');
        if (body?.metadata?.resourceVersion !== String(stored.rv)) throw err(409, 'conflict');
        stored = { rv: stored.rv + 1, body: structuredClone(body as Record<string, unknown>) };
        return undefined as T;
      }
      throw err(405, method);
    },
  };
  return {
    api,
    holder: () => (stored?.body['spec'] as { holderIdentity?: string | null } | undefined)?.holderIdentity,
    setFailing: (v: boolean) => {
      failing = v;
    },
  };
}

const logger = createLogger('leader-test');

test('exactly one of two candidates leads; the other takes over only after the lease expires', async () => {
  const store = leaseStore();
  let clock = 1_000_000;
  const now = () => clock;
  const opts = { kube: store.api, namespace: 'ns', name: 'lease', logger, leaseDurationMs: 15_000, now };
  const a = createLeaderElector({ ...opts, identity: 'a' });
  const b = createLeaderElector({ ...opts, identity: 'b' });
  const started: string[] = [];
  a.on('started', () => started.push('a'));
  b.on('started', () => started.push('b'));

  const [ra, rb] = await Promise.all([a.tryOnce(), b.tryOnce()]);
  expect([ra, rb].filter(Boolean)).toHaveLength(1);
  const leader = ra ? a : b;
  const follower = ra ? b : a;
  expect(leader.isLeader()).toBe(true);
  expect(follower.isLeader()).toBe(false);

  // The leader keeps renewing: the follower never gets in.
  for (let i = 0; i < 10; i++) {
    clock += 5_000;
    expect(await leader.tryOnce()).toBe(true);
    expect(await follower.tryOnce()).toBe(false);
  }
  // The leader goes silent: after a full lease duration on the follower's clock, it takes over.
  clock += 10_000;
  expect(await follower.tryOnce()).toBe(false);
  clock += 6_000;
  expect(await follower.tryOnce()).toBe(true);
  expect(follower.isLeader()).toBe(true);
  // The old leader, back from its pause, sees the new holder and steps down.
  expect(await leader.tryOnce()).toBe(false);
  expect(leader.isLeader()).toBe(false);
  expect(started).toHaveLength(2);
});

test('stop() releases the lease so another candidate takes over at once', async () => {
  const store = leaseStore();
  const clock = 5_000_000;
  const opts = { kube: store.api, namespace: 'ns', name: 'lease', logger, now: () => clock };
  const a = createLeaderElector({ ...opts, identity: 'a' });
  const b = createLeaderElector({ ...opts, identity: 'b' });
  expect(await a.tryOnce()).toBe(true);
  expect(await b.tryOnce()).toBe(false);
  const stopped = new Promise<void>((resolve) => a.on('stopped', resolve));
  await a.stop();
  await stopped;
  expect(store.holder()).toBeNull();
  expect(await b.tryOnce()).toBe(true);
  expect(await a.tryOnce()).toBe(false);
});

test('a leader that cannot renew for renewDeadline steps down', async () => {
  const store = leaseStore();
  let clock = 0;
  const a = createLeaderElector({
    kube: store.api,
    namespace: 'ns',
    name: 'lease',
    identity: 'a',
    logger,
    renewDeadlineMs: 10_000,
    now: () => clock,
  });
  expect(await a.tryOnce()).toBe(true);
  store.setFailing(true);
  clock += 5_000;
  expect(await a.tryOnce()).toBe(false);
  expect(a.isLeader()).toBe(true);
  clock += 5_000;
  expect(await a.tryOnce()).toBe(false);
  expect(a.isLeader()).toBe(false);
});
