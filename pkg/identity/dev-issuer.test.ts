import { decodeJwt, decodeProtectedHeader } from 'jose';
import { isWardenError } from '../errors.js';
import { type DevIssuer, startDevIssuer } from './dev-issuer.js';

let dev: DevIssuer;
beforeAll(async () => {
  dev = await startDevIssuer({ tenantId: 'aaaabbbb-0000-4000-8000-000000000001' });
});
afterAll(() => dev.close());

const getJson = async (url: string) => {
  const res = await fetch(url);
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
};

const postForm = async (fields: Record<string, string>) => {
  const res = await fetch(dev.tokenEndpoint, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams(fields).toString(),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
};

describe('dev issuer', () => {
  it('serves Entra-shaped v2 and v1 discovery documents and one JWKS of public keys', async () => {
    expect(dev.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(dev.v2Issuer).toBe(`${dev.url}/${dev.tenantId}/v2.0`);
    expect(dev.v1Issuer).toBe(`${dev.url}/${dev.tenantId}/`);
    const v2 = await getJson(dev.discoveryUrlV2);
    expect(v2.body).toMatchObject({
      issuer: dev.v2Issuer,
      jwks_uri: dev.jwksUri,
      token_endpoint: dev.tokenEndpoint,
    });
    const v1 = await getJson(dev.discoveryUrlV1);
    expect(v1.body['issuer']).toBe(dev.v1Issuer);
    const jwks = await getJson(dev.jwksUri);
    const keys = jwks.body['keys'] as Array<Record<string, unknown>>;
    expect(keys.map((k) => k['kid'])).toEqual(dev.keyIds());
    for (const k of keys) {
      expect(k).toMatchObject({ kty: 'RSA', alg: 'RS256', use: 'sig' });
      expect(k['d']).toBeUndefined();
      expect(k['p']).toBeUndefined();
    }
    expect((await getJson(`${dev.url}/other-tenant/v2.0/.well-known/openid-configuration`)).status).toBe(404);
  });

  it('issues realistic v2 user tokens and v1 app-only tokens', async () => {
    const v2 = await dev.issueToken({
      audience: 'api://a',
      groups: ['g'],
      roles: ['r'],
      scopes: ['s1', 's2'],
      oid: 'o',
    });
    expect(decodeProtectedHeader(v2)).toEqual({ alg: 'RS256', typ: 'JWT', kid: dev.keyIds().at(-1) });
    const c2 = decodeJwt(v2);
    expect(c2).toMatchObject({
      aud: 'api://a',
      iss: dev.v2Issuer,
      ver: '2.0',
      tid: dev.tenantId,
      oid: 'o',
      scp: 's1 s2',
      groups: ['g'],
      roles: ['r'],
    });
    expect(c2['azp']).toBeDefined();
    expect(c2['preferred_username']).toBeDefined();
    expect(c2['idtyp']).toBeUndefined();
    expect(c2.sub).not.toBe('o');
    expect(c2.exp! - c2.iat!).toBe(3600);
    const v1 = decodeJwt(
      await dev.issueToken({ audience: 'api://a', appOnly: true, version: 1, expiresInSec: 60 }),
    );
    expect(v1).toMatchObject({ iss: dev.v1Issuer, ver: '1.0', idtyp: 'app' });
    expect(v1['appid']).toBeDefined();
    expect(v1['scp']).toBeUndefined();
    expect(v1['upn']).toBeUndefined();
    expect(v1.exp! - v1.iat!).toBe(60);
  });

  it('token endpoint: client_credentials with a federated assertion, and OAuth errors otherwise', async () => {
    const assertion = await dev.issueToken({ audience: 'api://AzureADTokenExchange', appOnly: true });
    const base = {
      grant_type: 'client_credentials',
      client_id: 'app-1',
      scope: 'https://graph.microsoft.com/.default',
      client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
      client_assertion: assertion,
    };
    const ok = await postForm(base);
    expect(ok.status).toBe(200);
    expect(ok.body['token_type']).toBe('Bearer');
    const claims = decodeJwt(ok.body['access_token'] as string);
    expect(claims).toMatchObject({
      aud: 'https://graph.microsoft.com',
      appid: 'app-1',
      idtyp: 'app',
      iss: dev.v1Issuer,
    });

    expect((await postForm({ ...base, grant_type: 'password' })).body['error']).toBe(
      'unsupported_grant_type',
    );
    expect((await postForm({ ...base, scope: 'User.Read' })).body['error']).toBe('invalid_scope');
    const { client_assertion: _, ...noAssertion } = base;
    expect(await postForm(noAssertion)).toMatchObject({ status: 401, body: { error: 'invalid_client' } });
    const wrongAud = await dev.issueToken({ audience: 'api://not-exchange', appOnly: true });
    expect(await postForm({ ...base, client_assertion: wrongAud })).toMatchObject({
      status: 401,
      body: { error: 'invalid_client' },
    });
  });

  it('rotates keys: a new current key, old keys stay published', async () => {
    const local = await startDevIssuer();
    try {
      const first = local.keyIds()[0]!;
      const second = await local.rotateKey();
      expect(local.keyIds()).toEqual([first, second]);
      expect(decodeProtectedHeader(await local.issueToken({ audience: 'a' })).kid).toBe(second);
      expect(decodeProtectedHeader(await local.issueToken({ audience: 'a', kid: first })).kid).toBe(first);
    } finally {
      await local.close();
    }
  });

  it('listens on loopback only', async () => {
    try {
      await startDevIssuer({ host: '0.0.0.0' });
      throw new Error('expected a refusal');
    } catch (err) {
      expect(isWardenError(err, 'ERR_CONFIG')).toBe(true);
    }
  });
});
