import type { RateLimit } from '../policy/decision.js';

/** What `take` found: the call may pass, or the limit that refused it and when to retry. */
export type TakeResult = { ok: true } | { ok: false; limit: RateLimit; retryAfterMs: number };

/**
 * Token buckets for the policies' `rateLimit`s, one per (policy, rule, limit, caller) — or per
 * (policy, rule, limit) for `by: all` — in this process (a sidecar or a gateway: like Envoy's local
 * rate limit, N replicas let up to N times the limit through together).
 *
 * A bucket holds `requests` tokens and refills evenly, `requests` per `per`, so a burst of the
 * whole limit passes and then one call every `per / requests`. A call takes one token from every
 * limit that applies to it, or none when one of them is empty (a refused call costs nothing).
 * Buckets live on across policy reloads while the rule keeps the same limit; a changed limit
 * starts full. At most `maxBuckets` (default 20 000, ~17 MiB) are kept: the least recently used goes first (it is the
 * likeliest to be full again; a caller whose bucket was evicted starts full).
 *
 * @example
 * const limiter = new RateLimiter();
 * const r = limiter.take(decision.limits ?? [], identity.principal);
 * if (!r.ok) refuse(-31429, r.limit, r.retryAfterMs);
 */

interface Bucket {
  tokens: number;
  /** When `tokens` was last brought up to date (ms, monotonic). */
  at: number;
}

export class RateLimiter {
  readonly #buckets = new Map<string, Bucket>();
  readonly #maxBuckets: number;
  readonly #now: () => number;

  constructor(options: { maxBuckets?: number; now?: () => number } = {}) {
    this.#maxBuckets = options.maxBuckets ?? 20_000;
    this.#now = options.now ?? (() => performance.now());
  }

  /** Number of buckets kept (for tests and metrics). */
  get size(): number {
    return this.#buckets.size;
  }

  /**
   * Take one token from each enforced limit for `principal`; audit-mode limits are checked and
   * counted the same way but never refuse (the result names the first exhausted one as `audit`).
   */
  take(limits: readonly RateLimit[], principal: string): TakeResult & { audit?: RateLimit } {
    const now = this.#now();
    const buckets: Bucket[] = [];
    let refused: { limit: RateLimit; retryAfterMs: number } | undefined;
    let audit: RateLimit | undefined;
    for (const limit of limits) {
      const b = this.#bucket(limit, principal, now);
      if (b.tokens >= 1) {
        buckets.push(b);
        continue;
      }
      if (limit.audit) {
        audit ??= limit;
        continue;
      }
      const retryAfterMs = Math.ceil(((1 - b.tokens) * limit.perMs) / limit.requests);
      if (refused === undefined || retryAfterMs > refused.retryAfterMs) refused = { limit, retryAfterMs };
    }
    if (refused !== undefined) return { ok: false, ...refused };
    for (const b of buckets) b.tokens -= 1;
    return audit === undefined ? { ok: true } : { ok: true, audit };
  }

  #bucket(limit: RateLimit, principal: string, now: number): Bucket {
    const key = `${limit.policy}\0${limit.rule}\0${limit.requests}/${limit.perMs}\0${limit.by === 'all' ? '' : principal}`;
    let b = this.#buckets.get(key);
    if (b === undefined) {
      b = { tokens: limit.requests, at: now };
      if (this.#buckets.size >= this.#maxBuckets) {
        const oldest = this.#buckets.keys().next();
        if (!oldest.done) this.#buckets.delete(oldest.value);
      }
    } else {
      this.#buckets.delete(key); // re-inserted below: the Map's order is the recency order
      b.tokens = Math.min(limit.requests, b.tokens + ((now - b.at) * limit.requests) / limit.perMs);
      b.at = now;
    }
    this.#buckets.set(key, b);
    return b;
  }
}
