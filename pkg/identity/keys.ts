import type { CryptoKey, FlattenedJWSInput, JSONWebKeySet, JWSHeaderParameters } from 'jose';
// By subpath, not the index (see authenticator.ts).
import * as errors from 'jose/errors';
import { createLocalJWKSet } from 'jose/jwks/local';
import { WardenError } from '../errors.js';
import { TtlCache } from './lib/cache.js';
import { fetchJson } from './lib/fetch.js';
import { checkFetchUrl, clip } from './lib/url.js';

/**
 * Discovery documents and JWKS, fetched with a timeout and cached with a TTL. A token whose `kid`
 * is not in the cached set triggers one refetch, at most once per cooldown per JWKS, so a flood
 * of made-up `kid`s cannot hammer the issuer.
 */
export interface KeyStoreOptions {
  fetchTimeoutMs: number;
  allowInsecureLoopback: boolean;
  cacheTtlMs: number;
  cooldownMs: number;
  now?: () => number;
}

interface KeySet {
  jwks: JSONWebKeySet;
  local: ReturnType<typeof createLocalJWKSet>;
}

interface Discovery {
  issuer: string;
  jwksUri: string;
}

export type KeyGetter = (header: JWSHeaderParameters, token: FlattenedJWSInput) => Promise<CryptoKey>;

/**
 * Until when (on the store's clock) what one verification took from the caches is fresh: the
 * earliest `fetchedAt + ttl` of the discovery document and JWKS it used. A verification repeated
 * after that would have to fetch them again, so its result must not be remembered longer.
 */
export interface Freshness {
  until: number;
}

export class KeyStore {
  readonly #options: KeyStoreOptions;
  readonly #now: () => number;
  readonly #discovery: TtlCache<Discovery>;
  readonly #jwks: TtlCache<KeySet>;

  constructor(options: KeyStoreOptions) {
    this.#options = options;
    this.#now = options.now ?? Date.now;
    const common = {
      ttlMs: options.cacheTtlMs,
      failureBackoffMs: Math.min(2000, options.cooldownMs),
      maxEntries: 256,
      now: this.#now,
    };
    this.#discovery = new TtlCache<Discovery>(common);
    this.#jwks = new TtlCache<KeySet>(common);
  }

  /**
   * The JWKS URI of an issuer, from its discovery document. The document must name the issuer
   * itself (or the Entra `{tenantid}` template of it).
   */
  async jwksUriFromDiscovery(
    discoveryUrl: string,
    issuer: string,
    tenantId?: string,
    freshness?: Freshness,
  ): Promise<string> {
    const entry = await this.#discovery.get(discoveryUrl, async () => {
      const doc = await fetchJson(discoveryUrl, {
        what: `discovery document of issuer ${issuer}`,
        timeoutMs: this.#options.fetchTimeoutMs,
        allowInsecureLoopback: this.#options.allowInsecureLoopback,
      });
      const record = (typeof doc === 'object' && doc !== null ? doc : {}) as Record<string, unknown>;
      if (typeof record['issuer'] !== 'string' || typeof record['jwks_uri'] !== 'string') {
        throw new WardenError(
          'ERR_AUTH_ISSUER_UNAVAILABLE',
          `the discovery document at ${discoveryUrl} has no "issuer" or "jwks_uri"`,
        );
      }
      return { issuer: record['issuer'], jwksUri: record['jwks_uri'] };
    });
    this.#used(entry.fetchedAt, freshness);
    const named = entry.value.issuer;
    const sameIssuer =
      named === issuer || (tenantId !== undefined && named.replace(/\{tenantid\}/gi, tenantId) === issuer);
    if (!sameIssuer) {
      throw new WardenError(
        'ERR_AUTH_ISSUER',
        `the discovery document at ${discoveryUrl} is for issuer ${clip(named)}, not ${issuer}; fix the issuer or its discoveryUrl in the policy`,
      );
    }
    const checked = checkFetchUrl(entry.value.jwksUri, this.#options.allowInsecureLoopback);
    if ('problem' in checked) {
      throw new WardenError(
        'ERR_AUTH_ISSUER_UNAVAILABLE',
        `the jwks_uri of issuer ${issuer} is refused: ${checked.problem}`,
      );
    }
    return entry.value.jwksUri;
  }

  /** A jose key getter over the JWKS at `jwksUri` (refetching once per cooldown on an unknown kid). */
  getter(jwksUri: string, issuer: string, freshness?: Freshness): KeyGetter {
    return async (header, token) => {
      let entry = await this.#load(jwksUri, issuer, false);
      try {
        const key = await entry.value.local(header, token);
        this.#used(entry.fetchedAt, freshness);
        return key;
      } catch (err) {
        if (!(err instanceof errors.JWKSNoMatchingKey)) throw keyError(err, issuer, header);
        if (this.#now() - entry.fetchedAt < this.#options.cooldownMs)
          throw keyError(err, issuer, header, true);
      }
      // Key rotation: the issuer may have published a new key since we fetched.
      entry = await this.#load(jwksUri, issuer, true);
      try {
        const key = await entry.value.local(header, token);
        this.#used(entry.fetchedAt, freshness);
        return key;
      } catch (err) {
        throw keyError(err, issuer, header);
      }
    };
  }

  /** A key getter over keys given inline (for example the Kubernetes API server's JWKS). */
  static inline(jwks: JSONWebKeySet, issuer: string): KeyGetter {
    const local = createLocalJWKSet(usableKeys(jwks.keys));
    return async (header, token) => {
      try {
        return await local(header, token);
      } catch (err) {
        throw keyError(err, issuer, header);
      }
    };
  }

  #used(fetchedAt: number, freshness: Freshness | undefined): void {
    if (freshness !== undefined)
      freshness.until = Math.min(freshness.until, fetchedAt + this.#options.cacheTtlMs);
  }

  #load(jwksUri: string, issuer: string, refresh: boolean) {
    return this.#jwks.get(
      jwksUri,
      async () => {
        const doc = await fetchJson(jwksUri, {
          what: `JWKS of issuer ${issuer}`,
          timeoutMs: this.#options.fetchTimeoutMs,
          allowInsecureLoopback: this.#options.allowInsecureLoopback,
        });
        const keys = (doc as { keys?: unknown } | null)?.keys;
        if (!Array.isArray(keys))
          throw new WardenError('ERR_AUTH_ISSUER_UNAVAILABLE', `the JWKS at ${jwksUri} has no "keys" array`);
        const jwks = usableKeys(keys);
        return { jwks, local: createLocalJWKSet(jwks) };
      },
      { refresh },
    );
  }
}

/** Only public, asymmetric signature keys: an "oct" key in a JWKS would enable HMAC forgery. */
function usableKeys(keys: readonly unknown[]): JSONWebKeySet {
  const usable = keys.filter((k): k is Record<string, unknown> => {
    if (typeof k !== 'object' || k === null) return false;
    const { kty, d, use } = k as { kty?: unknown; d?: unknown; use?: unknown };
    return (kty === 'RSA' || kty === 'EC') && d === undefined && (use === undefined || use === 'sig');
  });
  return { keys: usable } as JSONWebKeySet;
}

function keyError(
  err: unknown,
  issuer: string,
  header: JWSHeaderParameters,
  coolingDown = false,
): WardenError {
  const kid = header.kid === undefined ? '(none)' : clip(header.kid, 100);
  if (err instanceof errors.JWKSNoMatchingKey) {
    const why = coolingDown ? ' (the key set was fetched moments ago; refetch is rate-limited)' : '';
    return new WardenError(
      'ERR_AUTH_KEY_UNKNOWN',
      `no signing key with kid ${kid} for ${header.alg} at issuer ${issuer}${why}; get a fresh token from the issuer`,
      { cause: err },
    );
  }
  if (err instanceof errors.JWKSMultipleMatchingKeys) {
    return new WardenError(
      'ERR_AUTH_KEY_UNKNOWN',
      `the token names no kid and issuer ${issuer} has several keys; the token must carry a kid`,
      {
        cause: err,
      },
    );
  }
  if (err instanceof WardenError) return err;
  return new WardenError(
    'ERR_AUTH_INVALID',
    `the signing key of issuer ${issuer} (kid ${kid}) could not be used`,
    { cause: err },
  );
}
