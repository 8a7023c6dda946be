import { createHash, randomUUID } from 'node:crypto';
import type { JWK } from 'jose';
// By subpath, not the index (see authenticator.ts).
import { SignJWT } from 'jose/jwt/sign';
import { importJWK } from 'jose/key/import';
import { WardenError } from '../errors.js';

/**
 * Minting Entra-shaped access tokens for local use (the dev issuer, `mcp-warden dev token`).
 * Kept apart from the HTTP server so another process holding the issuer's state file can sign
 * tokens the running issuer's JWKS verifies.
 */

/** What a dev token says. */
export interface DevTokenOptions {
  oid?: string;
  audience: string;
  groups?: string[];
  roles?: string[];
  scopes?: string[];
  appOnly?: boolean;
  version?: 1 | 2;
  expiresInSec?: number;
  upn?: string;
  extraClaims?: Record<string, unknown>;
  /** Client application id (azp/appid); default the dev client app. */
  clientId?: string;
  /** Sign with this key id (default: the issuer's current key). */
  kid?: string;
}

/** One signing key: a private RSA JWK with its `kid`. */
export interface DevSigningKey {
  kid: string;
  privateJwk: JWK;
}

/** Everything needed to sign: persisted by `mcp-warden dev issuer` as its state file. */
export interface DevIssuerState {
  url: string;
  tenantId: string;
  v2Issuer: string;
  v1Issuer: string;
  keys: DevSigningKey[];
}

export const devDefaults = {
  tenantId: '00000000-0000-0000-0000-000000000001',
  userOid: '11111111-1111-4111-8111-111111111111',
  clientId: '22222222-2222-4222-8222-222222222222',
  domain: 'contoso.example',
} as const;

/**
 * Sign an Entra v1/v2 access token with the state's keys (the last key is current).
 *
 * @example
 * const token = await signDevToken(state, { audience: 'api://github-mcp', groups: ['readers'] });
 */
export async function signDevToken(state: DevIssuerState, o: DevTokenOptions): Promise<string> {
  if (typeof o.audience !== 'string' || o.audience === '')
    throw new WardenError('ERR_CONFIG', 'dev token: an audience is required');
  const key = o.kid === undefined ? state.keys.at(-1) : state.keys.find((k) => k.kid === o.kid);
  if (key === undefined)
    throw new WardenError('ERR_CONFIG', `dev token: no signing key ${o.kid ?? ''} in the issuer state`);
  const version = o.version ?? 2;
  const appOnly = o.appOnly === true;
  const now = Math.floor(Date.now() / 1000);
  const exp = now + (o.expiresInSec ?? 3600);
  const clientId = o.clientId ?? devDefaults.clientId;
  const oid = o.oid ?? (appOnly ? stableUuid(`sp:${clientId}`) : devDefaults.userOid);
  const upn = o.upn ?? `dev.user@${devDefaults.domain}`;
  const claims: Record<string, unknown> = {
    aud: o.audience,
    iss: version === 2 ? state.v2Issuer : state.v1Issuer,
    iat: now,
    nbf: now,
    exp,
    aio: randomUUID().replaceAll('-', ''),
    oid,
    // Entra's sub is pairwise per application: stable for (user, app), never the oid itself.
    sub: b64url(createHash('sha256').update(`${oid}|${clientId}`).digest()).slice(0, 43),
    tid: state.tenantId,
    uti: b64url(createHash('sha256').update(randomUUID()).digest()).slice(0, 22),
    ver: version === 2 ? '2.0' : '1.0',
    rh: '0.dev.',
  };
  if (version === 2) {
    claims['azp'] = clientId;
    claims['azpacr'] = '0';
  } else {
    claims['appid'] = clientId;
    claims['appidacr'] = '0';
  }
  if (appOnly) {
    claims['idtyp'] = 'app';
  } else {
    claims['scp'] = (o.scopes !== undefined && o.scopes.length > 0 ? o.scopes : ['access_as_user']).join(' ');
    claims['name'] = 'Dev User';
    if (version === 2) claims['preferred_username'] = upn;
    else {
      claims['upn'] = upn;
      claims['unique_name'] = upn;
      claims['amr'] = ['pwd'];
    }
  }
  if (o.groups !== undefined && o.groups.length > 0) claims['groups'] = o.groups;
  if (o.roles !== undefined && o.roles.length > 0) claims['roles'] = o.roles;
  Object.assign(claims, o.extraClaims);
  const privateKey = await importJWK(key.privateJwk, 'RS256');
  return new SignJWT(claims).setProtectedHeader({ alg: 'RS256', typ: 'JWT', kid: key.kid }).sign(privateKey);
}

function b64url(buf: Buffer): string {
  return buf.toString('base64url');
}

/** A deterministic UUID-shaped id from a seed (stable object ids for dev service principals). */
export function stableUuid(seed: string): string {
  const h = createHash('sha256').update(seed).digest('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-8${h.slice(17, 20)}-${h.slice(20, 32)}`;
}
