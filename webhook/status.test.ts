import { type PodEntry, staleEntries, summarize } from './status.js';

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
