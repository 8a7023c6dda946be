import { createLogger } from '../pkg/log.js';
import {
  type PodEntry,
  reconcileStatuses,
  retiredApprovals,
  staleEntries,
  summarize,
  summarizeApprovals,
} from './status.js';

const entry = (name: string, lastReportTime: string, allowed = 1): PodEntry => ({
  name,
  lastReportTime,
  allowed,
  denied: 2,
  approvalsRequested: 3,
  masked: 4,
  sessions: 1,
});

test('entries of pods that no longer exist are stale once past the grace period', () => {
  const now = Date.parse('2026-01-01T00:10:00Z');
  const pods = [
    entry('alive', '2026-01-01T00:00:00Z'),
    entry('gone-long-ago', '2026-01-01T00:00:00Z'),
    entry('gone-just-now', '2026-01-01T00:09:50Z'),
    { name: 'never-reported' },
  ];
  expect(staleEntries(pods, new Set(['alive']), now, 60_000)).toEqual([1, 3]);
  expect(staleEntries(pods, new Set(['alive']), now, 1)).toEqual([1, 2, 3]);
  expect(
    staleEntries(pods, new Set(['alive', 'gone-long-ago', 'gone-just-now', 'never-reported']), now, 1),
  ).toEqual([]);
});

test('summary sums the kept entries and counts the rules', () => {
  const policy = { spec: { rules: [{}, {}, {}] } };
  expect(summarize(policy, [entry('a', 'x', 5), entry('b', 'x', 7)])).toEqual({
    rules: 3,
    pods: 2,
    allowed: 12,
    denied: 4,
    approvalsRequested: 6,
    masked: 8,
    sessions: 2,
  });
  expect(summarize({}, [])).toEqual({
    rules: 0,
    pods: 0,
    allowed: 0,
    denied: 0,
    approvalsRequested: 0,
    masked: 0,
    sessions: 0,
  });
});

test('status.approvals: counts by phase and the most recent first, at most 20', () => {
  const approval = (name: string, phase: string | undefined, time: string) => ({
    metadata: { name, namespace: 'agents', creationTimestamp: '2026-01-01T00:00:00Z' },
    spec: { policy: 'agents/p', rule: 'r', tool: 'delete_repo', requester: { principal: 't/u' } },
    ...(phase === undefined ? {} : { status: { phase, lastTransitionTime: time } }),
  });
  const items = [
    approval('a', undefined, ''),
    approval('b', 'Executed', '2026-01-01T00:05:00Z'),
    approval('c', 'Approved', '2026-01-01T00:04:00Z'),
    approval('d', 'Denied', '2026-01-01T00:03:00Z'),
    approval('e', 'Expired', '2026-01-01T00:02:00Z'),
    approval('f', 'Cancelled', '2026-01-01T00:06:00Z'),
  ];
  const s = summarizeApprovals(items);
  expect({ ...s, recent: undefined }).toEqual({
    pending: 1,
    approved: 2,
    denied: 1,
    expired: 1,
    recent: undefined,
  });
  expect(s.recent.map((r) => r.name)).toEqual(['f', 'b', 'c', 'd', 'e', 'a']);
  expect(s.recent[0]).toEqual({
    name: 'f',
    rule: 'r',
    tool: 'delete_repo',
    requester: 't/u',
    phase: 'Cancelled',
    time: '2026-01-01T00:06:00Z',
  });
  expect(s.recent[5]).toMatchObject({ name: 'a', phase: 'Pending', time: '2026-01-01T00:00:00Z' });
  const many = Array.from({ length: 30 }, (_, i) =>
    approval(`x${i}`, 'Denied', new Date(Date.UTC(2026, 0, 1, 0, i)).toISOString()),
  );
  const capped = summarizeApprovals(many);
  expect(capped.recent).toHaveLength(20);
  expect(capped.recent[0]!.name).toBe('x29');
  expect(capped.denied).toBe(30);
});

describe('approval retention', () => {
  const day = 24 * 3_600_000;
  const now = Date.parse('2026-02-01T00:00:00Z');
  const at = (daysAgo: number) => new Date(now - daysAgo * day).toISOString();
  const approval = (
    name: string,
    phase: string | undefined,
    phaseDaysAgo: number,
    expiresDaysAgo: number,
  ) => ({
    metadata: { name, namespace: 'agents', resourceVersion: `rv-${name}`, creationTimestamp: at(60) },
    spec: { policy: 'agents/p', rule: 'r', tool: 't', expiresAt: at(expiresDaysAgo) },
    ...(phase === undefined ? {} : { status: { phase, lastTransitionTime: at(phaseDaysAgo) } }),
  });
  const items = [
    approval('old-executed', 'Executed', 31, 40),
    approval('new-executed', 'Executed', 29, 40),
    approval('old-denied', 'Denied', 45, 46),
    approval('abandoned-pending', undefined, 0, 31),
    approval('waiting', undefined, 0, -1),
    approval('approved-unused-old', 'Approved', 35, 31),
    approval('approved-unused-new', 'Approved', 35, 10),
  ];

  test('finished ones past the retention, and unfinished ones expired longer ago than it', () => {
    expect(retiredApprovals(items, now, 30 * day).map((a) => a.metadata?.name)).toEqual([
      'old-executed',
      'old-denied',
      'abandoned-pending',
      'approved-unused-old',
    ]);
    expect(retiredApprovals(items, now, 0)).toEqual([]);
  });

  test('the status pass deletes them with a resourceVersion precondition and leaves them out of the counts', async () => {
    const calls: Array<{ method: string; path: string; body?: unknown }> = [];
    const kube = {
      async request(method: string, path: string, options?: { body?: unknown }): Promise<unknown> {
        calls.push({ method, path, body: options?.body });
        if (method === 'GET' && path.endsWith('/mcppolicies')) {
          return {
            items: [{ metadata: { name: 'p', namespace: 'agents' }, spec: { rules: [] }, status: {} }],
          };
        }
        if (method === 'GET' && path.endsWith('/mcpapprovals')) return { items };
        // One was changed since it was read: the precondition fails and it stays.
        if (method === 'DELETE' && path.endsWith('/old-denied'))
          throw Object.assign(new Error('conflict'), { status: 409 });
        return {};
      },
    };
    const logger = createLogger('status-test');
    const result = await reconcileStatuses(kube as never, {
      logger,
      now: () => now,
      approvalRetentionMs: 30 * day,
    });
    const deletes = calls.filter((c) => c.method === 'DELETE');
    expect(deletes.map((c) => c.path.split('/').pop())).toEqual([
      'old-executed',
      'old-denied',
      'abandoned-pending',
      'approved-unused-old',
    ]);
    expect(deletes[0]!.body).toEqual({
      apiVersion: 'v1',
      kind: 'DeleteOptions',
      preconditions: { resourceVersion: 'rv-old-executed' },
    });
    expect(result.approvalsDeleted).toBe(3);
    const apply = calls.find((c) => c.method === 'PATCH') as {
      body: { status: { approvals: Record<string, unknown> } };
    };
    // Kept: new-executed, old-denied (its delete was refused), waiting, approved-unused-new.
    expect(apply.body.status.approvals).toMatchObject({ approved: 2, denied: 1, pending: 1, expired: 0 });
  });
});
