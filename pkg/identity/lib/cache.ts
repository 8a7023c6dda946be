/**
 * A small TTL cache for fetched documents: one load in flight per key, a short back-off after a
 * failure (so an outage does not turn every request into a slow fetch), bounded size.
 */
export interface CacheEntry<T> {
  value: T;
  fetchedAt: number;
}

export interface TtlCacheOptions {
  ttlMs: number;
  /** After a failed load, repeat the same error for this long without loading again. */
  failureBackoffMs: number;
  maxEntries: number;
  now?: () => number;
}

export class TtlCache<T> {
  readonly #entries = new Map<string, CacheEntry<T>>();
  readonly #inflight = new Map<string, Promise<CacheEntry<T>>>();
  readonly #failures = new Map<string, { at: number; error: unknown }>();
  readonly #options: TtlCacheOptions;
  readonly #now: () => number;

  constructor(options: TtlCacheOptions) {
    this.#options = options;
    this.#now = options.now ?? Date.now;
  }

  /** The cached value when fresh, else `load()` (deduplicated across concurrent callers). */
  async get(
    key: string,
    load: () => Promise<T>,
    options: { refresh?: boolean } = {},
  ): Promise<CacheEntry<T>> {
    const now = this.#now();
    const entry = this.#entries.get(key);
    if (entry !== undefined && !options.refresh && now - entry.fetchedAt < this.#options.ttlMs) return entry;
    const pending = this.#inflight.get(key);
    if (pending !== undefined) return pending;
    const failure = this.#failures.get(key);
    if (failure !== undefined && now - failure.at < this.#options.failureBackoffMs) throw failure.error;
    const promise = load().then(
      (value) => {
        const fresh = { value, fetchedAt: this.#now() };
        this.#failures.delete(key);
        this.#entries.delete(key);
        this.#entries.set(key, fresh);
        if (this.#entries.size > this.#options.maxEntries) {
          const oldest = this.#entries.keys().next().value;
          if (oldest !== undefined) this.#entries.delete(oldest);
        }
        return fresh;
      },
      (error: unknown) => {
        this.#failures.set(key, { at: this.#now(), error });
        throw error;
      },
    );
    this.#inflight.set(key, promise);
    try {
      return await promise;
    } finally {
      this.#inflight.delete(key);
    }
  }

  peek(key: string): CacheEntry<T> | undefined {
    return this.#entries.get(key);
  }
}
