import { once } from 'node:events';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { JWK } from 'jose';
import { calculateJwkThumbprint } from 'jose/jwk/thumbprint';
// By subpath, not the index (see authenticator.ts).
import { createLocalJWKSet } from 'jose/jwks/local';
import { jwtVerify } from 'jose/jwt/verify';
import { exportJWK } from 'jose/key/export';
import { generateKeyPair } from 'jose/key/generate/keypair';
import { errorMessage, WardenError } from '../errors.js';
import {
  type DevIssuerState,
  type DevSigningKey,
  type DevTokenOptions,
  devDefaults,
  signDevToken,
  stableUuid,
} from './dev-token.js';
import { isLoopbackHost } from './lib/url.js';

export type { DevIssuerState, DevSigningKey, DevTokenOptions } from './dev-token.js';

/**
 * A local OIDC issuer shaped like Entra ID, for demos and tests: discovery documents for the v2
 * (`/<tid>/v2.0`) and v1 (`/<tid>/`, standing in for `sts.windows.net`) issuers, a JWKS, a
 * client-credentials token endpoint accepting a federated `client_assertion` (workload identity),
 * and `issueToken` for Entra-shaped access tokens. Listens on loopback only.
 *
 * @example
 * const dev = await startDevIssuer();
 * const token = await dev.issueToken({ audience: 'api://github-mcp', groups: ['readers'] });
 * // trust { issuer: dev.v2Issuer, audiences: ['api://github-mcp'] }
 * await dev.close();
 */
export interface DevIssuer {
  /** Base URL, `http://127.0.0.1:PORT`. */
  url: string;
  tenantId: string;
  v2Issuer: string;
  v1Issuer: string;
  discoveryUrlV2: string;
  discoveryUrlV1: string;
  jwksUri: string;
  /** `<url>/<tid>/oauth2/v2.0/token`: client_credentials with a federated client_assertion. */
  tokenEndpoint: string;
  issueToken(o: DevTokenOptions): Promise<string>;
  /** Publish a new signing key and make it current (old keys stay published). Returns its kid. */
  rotateKey(): Promise<string>;
  /** Key ids in the JWKS, oldest first; the last one signs by default. */
  keyIds(): string[];
  /** Signing state (includes private keys): what `mcp-warden dev issuer` persists for `dev token`. */
  state(): DevIssuerState;
  /** Requests served, for tests that check caching. */
  readonly requests: { discovery: number; jwks: number; token: number };
  close(): Promise<void>;
}

export interface DevIssuerOptions {
  host?: string;
  port?: number;
  tenantId?: string;
  /** Reuse signing keys (e.g. from a state file) instead of generating one. */
  keys?: DevSigningKey[];
}

const assertionType = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';
const exchangeAudience = 'api://AzureADTokenExchange';

/** Generate an RS256 signing key; its kid is the JWK thumbprint. */
export async function generateDevKey(): Promise<DevSigningKey> {
  const { privateKey } = await generateKeyPair('RS256', { extractable: true, modulusLength: 2048 });
  const privateJwk = await exportJWK(privateKey);
  const kid = await calculateJwkThumbprint(publicJwk(privateJwk));
  return { kid, privateJwk: { ...privateJwk, kid, alg: 'RS256', use: 'sig' } };
}

function publicJwk(jwk: JWK): JWK {
  const { d: _d, p: _p, q: _q, dp: _dp, dq: _dq, qi: _qi, key_ops: _ops, ext: _ext, ...pub } = jwk;
  return pub;
}

export async function startDevIssuer(options: DevIssuerOptions = {}): Promise<DevIssuer> {
  const host = options.host ?? '127.0.0.1';
  if (!isLoopbackHost(host.includes(':') && !host.startsWith('[') ? `[${host}]` : host)) {
    throw new WardenError(
      'ERR_CONFIG',
      `dev issuer: ${host} is not a loopback address; the dev issuer mints tokens for anyone and listens on loopback only`,
    );
  }
  const tenantId = options.tenantId ?? devDefaults.tenantId;
  if (!/^[0-9A-Za-z][0-9A-Za-z.-]{0,127}$/.test(tenantId))
    throw new WardenError('ERR_CONFIG', `dev issuer: tenant id "${tenantId}" is not valid`);
  const keys: DevSigningKey[] =
    options.keys !== undefined && options.keys.length > 0 ? [...options.keys] : [await generateDevKey()];
  const requests = { discovery: 0, jwks: 0, token: 0 };
  let url = '';
  const state = (): DevIssuerState => ({
    url,
    tenantId,
    v2Issuer: `${url}/${tenantId}/v2.0`,
    v1Issuer: `${url}/${tenantId}/`,
    keys: [...keys],
  });
  const jwks = () => ({ keys: keys.map((k) => publicJwk(k.privateJwk)) });

  const discovery = (version: 1 | 2) => {
    const s = state();
    const base = `${url}/${tenantId}`;
    return {
      issuer: version === 2 ? s.v2Issuer : s.v1Issuer,
      token_endpoint: version === 2 ? `${base}/oauth2/v2.0/token` : `${base}/oauth2/token`,
      authorization_endpoint: version === 2 ? `${base}/oauth2/v2.0/authorize` : `${base}/oauth2/authorize`,
      jwks_uri: version === 2 ? `${base}/discovery/v2.0/keys` : `${base}/discovery/keys`,
      token_endpoint_auth_methods_supported: ['client_secret_post', 'private_key_jwt', 'client_secret_basic'],
      response_types_supported: ['code', 'id_token', 'code id_token', 'id_token token'],
      subject_types_supported: ['pairwise'],
      id_token_signing_alg_values_supported: ['RS256'],
      scopes_supported: ['openid', 'profile', 'email', 'offline_access'],
      grant_types_supported: ['client_credentials'],
      claims_supported: [
        'sub',
        'iss',
        'aud',
        'exp',
        'iat',
        'nbf',
        'oid',
        'tid',
        'ver',
        'groups',
        'roles',
        'scp',
        'wids',
      ],
      tenant_region_scope: 'WW',
    };
  };

  async function token(req: IncomingMessage, res: ServerResponse): Promise<void> {
    requests.token++;
    const body = await readBody(req, 64 * 1024);
    const form = new URLSearchParams(body);
    const fail = (status: number, error: string, description: string) =>
      json(res, status, { error, error_description: description });
    if (form.get('grant_type') !== 'client_credentials')
      return fail(400, 'unsupported_grant_type', 'only client_credentials is supported');
    const clientId = form.get('client_id');
    if (clientId === null || clientId === '') return fail(400, 'invalid_request', 'client_id is required');
    const scope = form.get('scope') ?? '';
    if (!scope.endsWith('/.default'))
      return fail(400, 'invalid_scope', 'scope must be "<resource>/.default"');
    const assertion = form.get('client_assertion');
    if (form.get('client_assertion_type') !== assertionType || assertion === null) {
      return fail(401, 'invalid_client', `a federated client_assertion (${assertionType}) is required`);
    }
    try {
      await jwtVerify(assertion, createLocalJWKSet(jwks()), {
        audience: exchangeAudience,
        algorithms: ['RS256'],
      });
    } catch (err) {
      return fail(401, 'invalid_client', `client_assertion rejected: ${errorMessage(err)}`);
    }
    const expiresIn = 3599;
    const accessToken = await signDevToken(state(), {
      audience: scope.slice(0, -'/.default'.length),
      appOnly: true,
      version: 1,
      clientId,
      oid: stableUuid(`sp:${clientId}`),
      roles: ['GroupMember.Read.All'],
      expiresInSec: expiresIn,
    });
    json(res, 200, {
      token_type: 'Bearer',
      expires_in: expiresIn,
      ext_expires_in: expiresIn,
      access_token: accessToken,
    });
  }

  const server = createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://dev').pathname;
    const prefix = `/${tenantId}`;
    const route = path.startsWith(`${prefix}/`) ? path.slice(prefix.length) : undefined;
    const handle = async () => {
      if (req.method === 'GET' && route === '/v2.0/.well-known/openid-configuration') {
        requests.discovery++;
        return json(res, 200, discovery(2));
      }
      if (req.method === 'GET' && route === '/.well-known/openid-configuration') {
        requests.discovery++;
        return json(res, 200, discovery(1));
      }
      if (req.method === 'GET' && (route === '/discovery/v2.0/keys' || route === '/discovery/keys')) {
        requests.jwks++;
        return json(res, 200, jwks());
      }
      if (req.method === 'POST' && (route === '/oauth2/v2.0/token' || route === '/oauth2/token'))
        return token(req, res);
      json(res, 404, {
        error: 'not_found',
        error_description: `no such endpoint ${path} (tenant ${tenantId})`,
      });
    };
    handle().catch((err: unknown) => {
      if (!res.headersSent)
        json(res, 400, { error: 'invalid_request', error_description: errorMessage(err) });
      else res.destroy();
    });
  });
  server.listen(options.port ?? 0, host);
  await once(server, 'listening');
  const address = server.address() as AddressInfo;
  url = `http://${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port}`;
  const s = state();
  return {
    url,
    tenantId,
    v2Issuer: s.v2Issuer,
    v1Issuer: s.v1Issuer,
    discoveryUrlV2: `${s.v2Issuer}/.well-known/openid-configuration`,
    discoveryUrlV1: `${s.v1Issuer}.well-known/openid-configuration`,
    jwksUri: `${url}/${tenantId}/discovery/v2.0/keys`,
    tokenEndpoint: `${url}/${tenantId}/oauth2/v2.0/token`,
    issueToken: (o) => signDevToken(state(), o),
    async rotateKey() {
      const key = await generateDevKey();
      keys.push(key);
      return key.kid;
    },
    keyIds: () => keys.map((k) => k.kid),
    state,
    requests,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((err) => (err ? reject(err) : resolve()));
        server.closeAllConnections();
      }),
  };
}

function json(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
  });
  res.end(text);
}

async function readBody(req: IncomingMessage, limit: number): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > limit) throw new Error(`request body over ${limit} bytes`);
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}
