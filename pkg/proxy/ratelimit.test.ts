import type { RateLimit } from '../policy/decision.js';
import { RateLimiter } from './ratelimit.js';

const limit = (o: Partial<RateLimit> = {}): RateLimit => ({
  policy: 'p',
  rule: 'r',
  requests: 3,
  perMs: 60_000,
  per: '1m',
  by: 'principal',
  audit: false,
  ...o,
});

function clock() {
  let t = 1_000;
  return { now: () => t, advance: (ms: number) => (t += ms) };
}

test('a burst of the whole limit passes, then one call per period/requests', () => {
  const c = clock();
  const l = new RateLimiter({ now: c.now });
  const lim = [limit()];
  expect([1, 2, 3].map(() => l.take(lim, 'alice').ok)).toEqual([true, true, true]);
  const refused = l.take(lim, 'alice');
  expect(refused).toEqual({ ok: false, limit: lim[0], retryAfterMs: 20_000 });
  c.advance(19_999);
  expect(l.take(lim, 'alice').ok).toBe(false);
  c.advance(1);
  expect(l.take(lim, 'alice').ok).toBe(true);
  expect(l.take(lim, 'alice').ok).toBe(false);
  // A long pause refills up to the limit, never beyond it.
  c.advance(10 * 60_000);
  expect([1, 2, 3, 4].map(() => l.take(lim, 'alice').ok)).toEqual([true, true, true, false]);
});

test('by principal: one bucket per caller; by all: one bucket for everyone', () => {
  const l = new RateLimiter({ now: clock().now });
  const mine = [limit({ requests: 1 })];
  expect(l.take(mine, 'alice').ok).toBe(true);
  expect(l.take(mine, 'alice').ok).toBe(false);
  expect(l.take(mine, 'bob').ok).toBe(true);
  const shared = [limit({ rule: 'shared', requests: 1, by: 'all' })];
  expect(l.take(shared, 'alice').ok).toBe(true);
  expect(l.take(shared, 'bob').ok).toBe(false);
});

test('several limits: a call takes a token from each, or from none when one is empty', () => {
  const l = new RateLimiter({ now: clock().now });
  const wide = limit({ rule: 'wide', requests: 10 });
  const narrow = limit({ rule: 'narrow', requests: 1 });
  expect(l.take([wide, narrow], 'alice').ok).toBe(true);
  const r = l.take([wide, narrow], 'alice');
  expect(r).toMatchObject({ ok: false, limit: narrow });
  // The refused call did not spend the wide limit's token: 9 left of 10.
  expect(Array.from({ length: 10 }, () => l.take([wide], 'alice').ok).filter(Boolean)).toHaveLength(9);
});

test('the refusal names the limit with the longest wait', () => {
  const l = new RateLimiter({ now: clock().now });
  const fast = limit({ rule: 'fast', requests: 1, perMs: 1_000, per: '1s' });
  const slow = limit({ rule: 'slow', requests: 1, perMs: 3_600_000, per: '1h' });
  l.take([fast, slow], 'a');
  expect(l.take([fast, slow], 'a')).toMatchObject({ ok: false, limit: slow, retryAfterMs: 3_600_000 });
});

test('an audit-mode limit never refuses, but says when it would have', () => {
  const l = new RateLimiter({ now: clock().now });
  const audit = limit({ requests: 1, audit: true });
  expect(l.take([audit], 'a')).toEqual({ ok: true });
  expect(l.take([audit], 'a')).toEqual({ ok: true, audit });
  // An enforced limit beside it still refuses.
  const enforced = limit({ rule: 'e', requests: 1 });
  expect(l.take([audit, enforced], 'a')).toEqual({ ok: true, audit });
  expect(l.take([audit, enforced], 'a')).toMatchObject({ ok: false, limit: enforced });
});

test('a changed limit starts full; the same limit after a policy reload keeps its count', () => {
  const l = new RateLimiter({ now: clock().now });
  expect(l.take([limit({ requests: 1 })], 'a').ok).toBe(true);
  expect(l.take([limit({ requests: 1 })], 'a').ok).toBe(false); // a new but equal object: same bucket
  expect(l.take([limit({ requests: 2 })], 'a').ok).toBe(true);
});

test('at most maxBuckets are kept, the least recently used evicted first', () => {
  const l = new RateLimiter({ now: clock().now, maxBuckets: 2 });
  const one = [limit({ requests: 1 })];
  l.take(one, 'a');
  l.take(one, 'b');
  expect(l.take(one, 'a').ok).toBe(false); // touches a: b is now the oldest
  l.take(one, 'c'); // evicts b
  expect(l.size).toBe(2);
  expect(l.take(one, 'a').ok).toBe(false); // a kept its empty bucket
  expect(l.take(one, 'b').ok).toBe(true); // b starts full again
});
