// jose by subpath: its index loads every module (JWE, key generation, remote JWKS...), ~9 MiB of
// resident memory the sidecar never uses (measured: index +9.7 MiB, these subpaths +0.4 MiB).
import type { JWSHeaderParameters, JWTPayload } from 'jose';
import { decodeProtectedHeader } from 'jose/decode/protected_header';
import * as errors from 'jose/errors';
import { decodeJwt } from 'jose/jwt/decode';
import { jwtVerify } from 'jose/jwt/verify';
import { type ErrorCode, WardenError } from '../errors.js';
import type { Metrics } from '../metrics/catalogue.js';
import { hasGroupsOverage, toIdentity } from './claims.js';
import {
  discoveryUrlFor,
  fillTenant,
  graphAudiences,
  type ResolvedIssuer,
  resolveIssuer,
} from './issuers.js';
import { type Freshness, type KeyGetter, KeyStore } from './keys.js';
import { checkFetchUrl, clip } from './lib/url.js';
import type { Authenticator, GraphResolver, Identity, TrustedIssuer } from './types.js';

/** Options of `createAuthenticator`; every one has a safe default. */
export interface AuthenticatorOptions {
  /** Timeout of every discovery/JWKS fetch (default 5000 ms). Failures fail closed. */
  fetchTimeoutMs?: number;
  /** Allow `http://` issuers and JWKS on loopback hosts (default true). Never allowed elsewhere. */
  allowInsecureLoopback?: boolean;
  /** Clock skew tolerated on `exp`/`nbf` (default 60 s). */
  clockToleranceSec?: number;
  /** Resolves Entra groups overage for issuers with `groupsOverage: graph`. */
  graph?: GraphResolver;
  /** When given, every failure counts in `auth_failures_total{reason}`. */
  metrics?: Metrics;
  /** How long discovery documents and JWKS are cached (default 10 min). */
  cacheTtlMs?: number;
  /** Least time between two refetches of a JWKS triggered by unknown `kid`s (default 30 s). */
  cooldownMs?: number;
  /** Testing seam: the clock of the discovery/JWKS caches (token times use the real clock). */
  now?: () => number;
  /**
   * How long a verified token is remembered (default 60 s; 0 disables): never past its `exp`, nor
   * past the fetch time + `cacheTtlMs` of the discovery document and JWKS it was checked with.
   * A client sends the same token on every request: re-checking its RSA signature each time was
   * the top cost of the data path in the bench profile.
   */
  verifiedCacheMs?: number;
}

/** Verified tokens remembered at most (oldest dropped first). */
const VERIFIED_CACHE_MAX = 1024;

/** The only signature algorithms accepted: asymmetric, as issued by Entra ID and Kubernetes. */
export const acceptedAlgorithms = ['RS256', 'ES256', 'PS256'] as const;

/**
 * Verify bearer JWTs against the issuers that the applicable policies trust.
 *
 * @example
 * const auth = createAuthenticator({ metrics });
 * const who = await auth.authenticate(token, [{ issuer: 'https://login.microsoftonline.com/<tid>/v2.0', audiences: ['api://github-mcp'] }]);
 * who.principal; // '<tid>/<oid>'
 */
export function createAuthenticator(options: AuthenticatorOptions = {}): Authenticator {
  const fetchTimeoutMs = positive(options.fetchTimeoutMs, 5000, 'fetchTimeoutMs');
  const clockToleranceSec = nonNegative(options.clockToleranceSec, 60, 'clockToleranceSec');
  const allowInsecureLoopback = options.allowInsecureLoopback ?? true;
  const keys = new KeyStore({
    fetchTimeoutMs,
    allowInsecureLoopback,
    cacheTtlMs: positive(options.cacheTtlMs, 10 * 60_000, 'cacheTtlMs'),
    cooldownMs: nonNegative(options.cooldownMs, 30_000, 'cooldownMs'),
    ...(options.now === undefined ? {} : { now: options.now }),
  });

  /** The keys for `resolved`; `freshness` learns how long the cached documents used stay fresh. */
  async function keyGetter(resolved: ResolvedIssuer, freshness: Freshness): Promise<KeyGetter> {
    const entry = resolved.entries[0]!;
    if (entry.jwks !== undefined)
      return KeyStore.inline(entry.jwks as Parameters<typeof KeyStore.inline>[0], resolved.issuer);
    const issuerUrl = checkFetchUrl(resolved.issuer, allowInsecureLoopback);
    if ('problem' in issuerUrl) {
      throw new WardenError(
        'ERR_AUTH_ISSUER',
        `trusted issuer ${resolved.issuer} is refused: ${issuerUrl.problem}`,
      );
    }
    if (entry.jwksUri !== undefined) {
      const jwksUri = fillTenant(entry.jwksUri, resolved.tenantId);
      const checked = checkFetchUrl(jwksUri, allowInsecureLoopback);
      if ('problem' in checked)
        throw new WardenError(
          'ERR_AUTH_ISSUER',
          `the jwksUri of issuer ${resolved.issuer} is refused: ${checked.problem}`,
        );
      return keys.getter(jwksUri, resolved.issuer, freshness);
    }
    const discoveryUrl = discoveryUrlFor(entry, resolved.issuer, resolved.tenantId);
    const checked = checkFetchUrl(discoveryUrl, allowInsecureLoopback);
    if ('problem' in checked)
      throw new WardenError(
        'ERR_AUTH_ISSUER',
        `the discovery URL of issuer ${resolved.issuer} is refused: ${checked.problem}`,
      );
    const jwksUri = await keys.jwksUriFromDiscovery(
      discoveryUrl,
      resolved.issuer,
      resolved.tenantId,
      freshness,
    );
    return keys.getter(jwksUri, resolved.issuer, freshness);
  }

  /**
   * Verify `token`. `freshness.until` ends up at when the cached discovery document and JWKS used
   * expire (unchanged for keys given inline, which change with the trusted list itself).
   */
  async function verify(
    token: string,
    trusted: readonly TrustedIssuer[],
    freshness: Freshness,
  ): Promise<Identity> {
    if (typeof token !== 'string' || token.trim() === '') {
      throw new WardenError(
        'ERR_AUTH_MISSING',
        'no bearer token: send "Authorization: Bearer <token>" with a token from a trusted issuer',
      );
    }
    if (trusted.length === 0) {
      throw new WardenError(
        'ERR_AUTH_ISSUER',
        'no issuer is trusted here: add spec.identity.issuers to a policy that selects this server',
      );
    }
    const { header, claims } = decode(token);
    const iss = claims.iss;
    if (typeof iss !== 'string' || iss === '')
      throw new WardenError('ERR_AUTH_INVALID', 'the token has no "iss" claim');
    const tokenAud =
      typeof claims.aud === 'string' ? [claims.aud] : Array.isArray(claims.aud) ? claims.aud : [];
    const graphAud = tokenAud.find((a) => graphAudiences.has(a));
    if (graphAud !== undefined) {
      throw new WardenError(
        'ERR_AUTH_AUDIENCE',
        `the token is for Microsoft Graph (aud ${graphAud}), not for this server; request a token for this server's audience (scope "<audience>/.default")`,
      );
    }
    const resolved = resolveIssuer(iss, claims['tid'], trusted);
    if (resolved === undefined) {
      const names = [...new Set(trusted.map((t) => t.issuer))].slice(0, 5).join(', ');
      throw new WardenError(
        'ERR_AUTH_ISSUER',
        `the token's issuer ${clip(iss)} is not trusted here (trusted: ${names}); get a token from a trusted issuer`,
      );
    }
    if ('problem' in resolved) throw new WardenError('ERR_AUTH_ISSUER', `${resolved.problem}`);
    const audiences = [...new Set(resolved.entries.flatMap((e) => e.audiences))];
    if (audiences.length === 0) {
      throw new WardenError(
        'ERR_AUTH_AUDIENCE',
        `issuer ${resolved.issuer} is trusted with no audiences; add audiences to it in the policy`,
      );
    }
    const getKey = await keyGetter(resolved, freshness);
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, getKey, {
        issuer: resolved.issuer,
        audience: audiences,
        algorithms: [...acceptedAlgorithms],
        clockTolerance: clockToleranceSec,
        requiredClaims: ['exp'],
      }));
    } catch (err) {
      throw joseError(err, header, claims, resolved.issuer, audiences);
    }
    const audience = tokenAud.find((a) => audiences.includes(a))!;
    const applicable = resolved.entries.filter((e) => e.audiences.includes(audience));
    const kubernetes = applicable.some((e) => e.kubernetes === true);
    const identity = toIdentity({ claims: payload, issuer: resolved.issuer, audience, kubernetes });
    // The issuer is the cluster's own (whatever its URL): the policy engine matches it to the
    // policies whose kubernetes entries name no issuer. A property of the issuer, not the audience.
    if (kubernetes && resolved.entries.some((e) => e.kubernetes === true && e.clusterIssuer === true))
      identity.clusterIssuer = true;
    if (!kubernetes && hasGroupsOverage(payload)) {
      identity.groups = await overageGroups(identity, applicable, resolved.issuer);
    }
    return identity;
  }

  async function overageGroups(
    identity: Identity,
    applicable: TrustedIssuer[],
    issuer: string,
  ): Promise<string[]> {
    const useGraph = applicable.some((e) => e.groupsOverage === 'graph');
    if (!useGraph) {
      throw new WardenError(
        'ERR_AUTH_FORBIDDEN',
        `the caller is in too many groups for the token to list them (Entra groups overage) and issuer ${issuer} is set to groupsOverage: deny; ` +
          'set groupsOverage: graph (the sidecar then asks Microsoft Graph) or use app roles instead of groups',
      );
    }
    if (options.graph === undefined || identity.tenantId === undefined || identity.objectId === undefined) {
      throw new WardenError(
        'ERR_AUTH_FORBIDDEN',
        `groups overage for issuer ${issuer} needs Microsoft Graph, but no Graph credential is configured; ` +
          'give the sidecar a workload identity (AZURE_CLIENT_ID, AZURE_TENANT_ID, AZURE_FEDERATED_TOKEN_FILE)',
      );
    }
    try {
      return await options.graph.memberObjects({
        tenantId: identity.tenantId,
        objectId: identity.objectId,
        appOnly: identity.appOnly,
      });
    } catch (err) {
      if (err instanceof WardenError) throw err;
      throw new WardenError(
        'ERR_AUTH_ISSUER_UNAVAILABLE',
        "groups overage: Microsoft Graph could not be asked for the caller's groups",
        { cause: err },
      );
    }
  }

  // Verified tokens, keyed by the trusted issuers they were checked against and the token itself
  // (memory only, never logged). A hit skips the signature check; `exp` still bounds it.
  // It never outlives the discovery document and JWKS it was checked with either (their fetch
  // time + TTL, not the verification's), so an issuer outage past the TTL still fails closed.
  const verifiedCacheMs = Math.min(
    nonNegative(options.verifiedCacheMs, 60_000, 'verifiedCacheMs'),
    positive(options.cacheTtlMs, 10 * 60_000, 'cacheTtlMs'),
  );
  const cacheNow = options.now ?? Date.now;
  const verified = new Map<string, { identity: Identity; until: number; expMs: number }>();
  // The trusted list's part of the key, per list object (engines hand out one list each).
  const trustedKeys = new WeakMap<readonly TrustedIssuer[], string>();

  return {
    async authenticate(token, trusted) {
      let key = '';
      if (verifiedCacheMs > 0) {
        let trustedKey = trustedKeys.get(trusted);
        if (trustedKey === undefined) {
          trustedKey = JSON.stringify(trusted);
          trustedKeys.set(trusted, trustedKey);
        }
        key = `${trustedKey}\n${token}`;
        const hit = verified.get(key);
        if (hit !== undefined) {
          // The same frozen identity for every request with this token: what is derived from it
          // (the policy's view, the rules whose subjects match) is computed once, not per request.
          if (hit.until > cacheNow() && hit.expMs > Date.now()) return hit.identity;
          verified.delete(key);
        }
      }
      try {
        const freshness: Freshness = { until: Number.POSITIVE_INFINITY };
        const identity = deepFreeze(await verify(token, trusted, freshness));
        const until = Math.min(cacheNow() + verifiedCacheMs, freshness.until);
        if (verifiedCacheMs > 0 && until > cacheNow()) {
          if (verified.size >= VERIFIED_CACHE_MAX) verified.delete(verified.keys().next().value as string);
          verified.set(key, { identity, until, expMs: identity.expiresAt * 1000 });
        }
        return identity;
      } catch (err) {
        const failure =
          err instanceof WardenError && err.code.startsWith('ERR_AUTH_')
            ? err
            : new WardenError('ERR_AUTH_INVALID', 'the token could not be verified', { cause: err });
        options.metrics?.authFailures.inc({ reason: failureReason(failure.code) });
        throw failure;
      }
    },
    acceptedUntil(identity) {
      return (identity.expiresAt + clockToleranceSec) * 1000;
    },
  };
}

/** `ERR_AUTH_KEY_UNKNOWN` → `key_unknown`: the `reason` label of `auth_failures_total`. */
export function failureReason(code: ErrorCode): string {
  return code.replace(/^ERR_AUTH_/, '').toLowerCase();
}

function decode(token: string): { header: JWSHeaderParameters; claims: JWTPayload } {
  if (token.split('.').length !== 3) {
    throw new WardenError(
      'ERR_AUTH_INVALID',
      'the bearer token is not a signed JWT (three base64url parts); send an access token',
    );
  }
  let header: JWSHeaderParameters;
  try {
    header = decodeProtectedHeader(token) as JWSHeaderParameters;
  } catch {
    throw new WardenError(
      'ERR_AUTH_INVALID',
      'the bearer token header is not valid base64url JSON; send an access token',
    );
  }
  const alg = header.alg;
  if (typeof alg !== 'string' || !(acceptedAlgorithms as readonly string[]).includes(alg)) {
    const what =
      typeof alg === 'string' && alg.toLowerCase() === 'none'
        ? 'an unsigned token (alg none)'
        : `alg ${clip(alg ?? '(none)', 40)}`;
    throw new WardenError(
      'ERR_AUTH_ALGORITHM',
      `${what} is not accepted; tokens must be signed with ${acceptedAlgorithms.join(', ')}`,
    );
  }
  try {
    return { header, claims: decodeJwt(token) };
  } catch {
    throw new WardenError(
      'ERR_AUTH_INVALID',
      'the bearer token payload is not valid JWT claims JSON; send an access token',
    );
  }
}

function joseError(
  err: unknown,
  header: JWSHeaderParameters,
  claims: JWTPayload,
  issuer: string,
  audiences: string[],
): WardenError {
  if (err instanceof WardenError) return err;
  if (err instanceof errors.JWTExpired) {
    const when =
      typeof claims.exp === 'number' ? new Date(claims.exp * 1000).toISOString() : 'an unknown time';
    return new WardenError(
      'ERR_AUTH_EXPIRED',
      `the token expired at ${when}; get a new token from ${issuer}`,
      { cause: err },
    );
  }
  if (err instanceof errors.JWTClaimValidationFailed) {
    if (err.claim === 'aud') {
      return new WardenError(
        'ERR_AUTH_AUDIENCE',
        `the token's audience ${clip(claims.aud)} is not accepted here; request a token for one of: ${audiences.join(', ')}`,
        {
          cause: err,
        },
      );
    }
    if (err.claim === 'iss')
      return new WardenError('ERR_AUTH_ISSUER', `the token's issuer is not ${issuer}`, { cause: err });
    if (err.claim === 'nbf') {
      const when = typeof claims.nbf === 'number' ? new Date(claims.nbf * 1000).toISOString() : 'later';
      return new WardenError(
        'ERR_AUTH_INVALID',
        `the token is not valid before ${when}; check the clocks of client and issuer`,
        { cause: err },
      );
    }
    return new WardenError(
      'ERR_AUTH_INVALID',
      `the token's "${err.claim}" claim is ${err.reason === 'missing' ? 'missing' : 'invalid'}`,
      { cause: err },
    );
  }
  if (err instanceof errors.JOSEAlgNotAllowed) {
    return new WardenError(
      'ERR_AUTH_ALGORITHM',
      `alg ${clip(header.alg ?? '', 40)} is not accepted; tokens must be signed with ${acceptedAlgorithms.join(', ')}`,
      { cause: err },
    );
  }
  if (err instanceof errors.JWSSignatureVerificationFailed) {
    return new WardenError(
      'ERR_AUTH_INVALID',
      `the token's signature does not verify with issuer ${issuer}'s key ${clip(header.kid ?? '(no kid)', 100)}: it was altered or not issued by that issuer`,
      { cause: err },
    );
  }
  return new WardenError(
    'ERR_AUTH_INVALID',
    `the token is malformed (${err instanceof Error ? err.message : 'unknown error'})`,
    { cause: err },
  );
}

function positive(value: number | undefined, fallback: number, name: string): number {
  if (value === undefined) return fallback;
  if (!Number.isFinite(value) || value <= 0)
    throw new WardenError(
      'ERR_CONFIG',
      `createAuthenticator: ${name} must be a positive number, got ${value}`,
    );
  return value;
}

function nonNegative(value: number | undefined, fallback: number, name: string): number {
  if (value === undefined) return fallback;
  if (!Number.isFinite(value) || value < 0)
    throw new WardenError('ERR_CONFIG', `createAuthenticator: ${name} must be zero or more, got ${value}`);
  return value;
}

/** Freeze an identity and everything in it (claims included): it is shared between requests. */
function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value as object)) deepFreeze(v);
  }
  return value;
}
