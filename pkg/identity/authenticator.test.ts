import { createPublicKey } from 'node:crypto';
import { createServer, type Server, type Socket } from 'node:net';
import { base64url, exportJWK, generateKeyPair, SignJWT } from 'jose';
import { isWardenError, type WardenError } from '../errors.js';
import { createMetrics } from '../metrics/catalogue.js';
import { createAuthenticator } from './authenticator.js';
import { type DevIssuer, startDevIssuer } from './dev-issuer.js';
import type { TrustedIssuer } from './types.js';

const aud = 'api://github-mcp';
let dev: DevIssuer;
let v2: TrustedIssuer[];
let v1: TrustedIssuer[];

beforeAll(async () => {
  dev = await startDevIssuer();
  v2 = [{ issuer: dev.v2Issuer, audiences: [aud] }];
  v1 = [{ issuer: dev.v1Issuer, audiences: [aud] }];
});
afterAll(() => dev.close());

async function failure(p: Promise<unknown>): Promise<WardenError> {
  try {
    await p;
  } catch (err) {
    if (isWardenError(err)) return err;
    throw err;
  }
  throw new Error('expected a WardenError, but the call succeeded');
}

describe('valid tokens', () => {
  it('accepts a v2 user token and maps the Entra claims', async () => {
    const token = await dev.issueToken({
      audience: aud,
      oid: 'aaaaaaaa-0000-4000-8000-000000000001',
      groups: ['g1', 'g2'],
      roles: ['MCP.Read'],
      scopes: ['tools.read', 'tools.write'],
      extraClaims: { wids: ['62e90394-69f5-4237-9190-012177145e10'] },
    });
    const who = await createAuthenticator().authenticate(token, v2);
    expect(who.principal).toBe(`${dev.tenantId}/aaaaaaaa-0000-4000-8000-000000000001`);
    expect(who.tenantId).toBe(dev.tenantId);
    expect(who.objectId).toBe('aaaaaaaa-0000-4000-8000-000000000001');
    expect(who.issuer).toBe(dev.v2Issuer);
    expect(who.groups).toEqual(['g1', 'g2']);
    expect(who.roles).toEqual(['MCP.Read']);
    expect(who.scopes).toEqual(['tools.read', 'tools.write']);
    expect(who.wids).toEqual(['62e90394-69f5-4237-9190-012177145e10']);
    expect(who.appOnly).toBe(false);
    expect(who.user).toBe('dev.user@contoso.example');
    expect(who.appId).toBe('22222222-2222-4222-8222-222222222222');
    expect(who.audience).toBe(aud);
    expect(who.expiresAt).toBeGreaterThan(Date.now() / 1000);
    expect(who.claims['ver']).toBe('2.0');
  });

  it('accepts a v1 token (upn, appid) through the v1 discovery document', async () => {
    const token = await dev.issueToken({
      audience: aud,
      version: 1,
      upn: 'alice@contoso.example',
      clientId: 'c1',
    });
    const who = await createAuthenticator().authenticate(token, v1);
    expect(who.issuer).toBe(dev.v1Issuer);
    expect(who.user).toBe('alice@contoso.example');
    expect(who.appId).toBe('c1');
    expect(who.claims['ver']).toBe('1.0');
    expect(who.appOnly).toBe(false);
  });

  it('recognises app-only tokens (idtyp=app, no scp)', async () => {
    const token = await dev.issueToken({ audience: aud, appOnly: true, roles: ['MCP.Admin'] });
    const who = await createAuthenticator().authenticate(token, v2);
    expect(who.appOnly).toBe(true);
    expect(who.user).toBeUndefined();
    expect(who.roles).toEqual(['MCP.Admin']);
    expect(who.scopes).toEqual([]);
  });
});

describe('refused tokens', () => {
  it('refuses a missing token', async () => {
    expect((await failure(createAuthenticator().authenticate('', v2))).code).toBe('ERR_AUTH_MISSING');
  });

  it('refuses an expired token and counts it', async () => {
    const metrics = createMetrics({ defaultMetrics: false });
    const token = await dev.issueToken({ audience: aud, expiresInSec: -600 });
    const err = await failure(createAuthenticator({ metrics }).authenticate(token, v2));
    expect(err.code).toBe('ERR_AUTH_EXPIRED');
    expect(err.message).not.toContain(token);
    expect(await metrics.registry.getSingleMetricAsString('mcp_warden_auth_failures_total')).toContain(
      'reason="expired"} 1',
    );
  });

  it('refuses a wrong audience, a wrong issuer, and alg none', async () => {
    const auth = createAuthenticator();
    const wrongAud = await dev.issueToken({ audience: 'api://other' });
    expect((await failure(auth.authenticate(wrongAud, v2))).code).toBe('ERR_AUTH_AUDIENCE');
    const ok = await dev.issueToken({ audience: aud });
    expect((await failure(auth.authenticate(ok, v1))).code).toBe('ERR_AUTH_ISSUER');
    const [, payload] = ok.split('.');
    const none = `${base64url.encode(JSON.stringify({ alg: 'none', typ: 'JWT' }))}.${payload}.`;
    expect((await failure(auth.authenticate(none, v2))).code).toBe('ERR_AUTH_ALGORITHM');
  });

  it('refuses a token that is not valid yet, but tolerates small clock skew', async () => {
    const now = Math.floor(Date.now() / 1000);
    const auth = createAuthenticator();
    const later = await dev.issueToken({ audience: aud, extraClaims: { nbf: now + 3600 } });
    const err = await failure(auth.authenticate(later, v2));
    expect(err.code).toBe('ERR_AUTH_INVALID');
    expect(err.message).toMatch(/not valid before/);
    const skewed = await dev.issueToken({ audience: aud, extraClaims: { nbf: now + 30 } });
    expect((await auth.authenticate(skewed, v2)).principal).toContain(dev.tenantId);
    const justExpired = await dev.issueToken({ audience: aud, expiresInSec: -30 });
    expect((await auth.authenticate(justExpired, v2)).principal).toContain(dev.tenantId);
    const strict = createAuthenticator({ clockToleranceSec: 0 });
    expect((await failure(strict.authenticate(justExpired, v2))).code).toBe('ERR_AUTH_EXPIRED');
  });

  it("refuses a signature made with another key under the issuer's kid", async () => {
    const { privateKey } = await generateKeyPair('RS256');
    const forged = await new SignJWT({ aud, tid: dev.tenantId, oid: 'x', scp: 'all' })
      .setProtectedHeader({ alg: 'RS256', kid: dev.keyIds()[0]! })
      .setIssuer(dev.v2Issuer)
      .setExpirationTime('1h')
      .sign(privateKey);
    const err = await failure(createAuthenticator().authenticate(forged, v2));
    expect(err.code).toBe('ERR_AUTH_INVALID');
    expect(err.message).toMatch(/signature/);
    expect(err.message).not.toContain(forged);
  });

  it("refuses HS256 signed with the issuer's public key as the HMAC secret", async () => {
    const pub = dev.state().keys[0]!.privateJwk;
    const pem = createPublicKey({ key: { kty: 'RSA', n: pub.n!, e: pub.e! }, format: 'jwk' }).export({
      type: 'spki',
      format: 'pem',
    });
    for (const secret of [
      new TextEncoder().encode(String(pem)),
      new TextEncoder().encode(JSON.stringify({ kty: 'RSA', n: pub.n, e: pub.e })),
    ]) {
      const token = await new SignJWT({ aud, tid: dev.tenantId, oid: 'x', scp: 'all' })
        .setProtectedHeader({ alg: 'HS256', kid: dev.keyIds()[0]! })
        .setIssuer(dev.v2Issuer)
        .setExpirationTime('1h')
        .sign(secret);
      const err = await failure(createAuthenticator().authenticate(token, v2));
      expect(err.code).toBe('ERR_AUTH_ALGORITHM');
      expect(err.message).toMatch(/HS256 is not accepted/);
    }
  });

  it('refuses Microsoft Graph tokens even from a trusted issuer', async () => {
    for (const graphAud of ['https://graph.microsoft.com', '00000003-0000-0000-c000-000000000000']) {
      const token = await dev.issueToken({ audience: graphAud });
      const trusted = [{ issuer: dev.v2Issuer, audiences: [aud, graphAud] }];
      const err = await failure(createAuthenticator().authenticate(token, trusted));
      expect(err.code).toBe('ERR_AUTH_AUDIENCE');
      expect(err.message).toMatch(/Microsoft Graph/);
    }
  });

  it('refuses http:// issuers and JWKS that are not on loopback, before fetching anything', async () => {
    const { privateKey } = await generateKeyPair('RS256');
    const sign = (issuer: string) =>
      new SignJWT({ aud, sub: 's' })
        .setProtectedHeader({ alg: 'RS256', kid: 'k' })
        .setIssuer(issuer)
        .setExpirationTime('1h')
        .sign(privateKey);
    const auth = createAuthenticator({ fetchTimeoutMs: 100 });
    const remote = 'http://10.20.30.40/t/v2.0';
    let err = await failure(auth.authenticate(await sign(remote), [{ issuer: remote, audiences: [aud] }]));
    expect(err.code).toBe('ERR_AUTH_ISSUER');
    expect(err.message).toMatch(/only allowed on loopback/);
    const https = 'https://issuer.example.com';
    err = await failure(
      auth.authenticate(await sign(https), [
        { issuer: https, audiences: [aud], jwksUri: 'http://issuer.example.com/keys' },
      ]),
    );
    expect(err.code).toBe('ERR_AUTH_ISSUER');
    expect(err.message).toMatch(/jwksUri .* refused.*only allowed on loopback/);
    // Loopback http can be switched off entirely.
    const token = await dev.issueToken({ audience: aud });
    err = await failure(createAuthenticator({ allowInsecureLoopback: false }).authenticate(token, v2));
    expect(err.code).toBe('ERR_AUTH_ISSUER');
    expect(err.message).toMatch(/allowInsecureLoopback/);
  });

  it('matches multi-tenant {tenantid} templates against allowedTenants and the tid claim', async () => {
    const template = `${dev.url}/{tenantid}/v2.0`;
    const auth = createAuthenticator();
    const token = await dev.issueToken({ audience: aud });
    const who = await auth.authenticate(token, [
      { issuer: template, audiences: [aud], allowedTenants: [dev.tenantId] },
    ]);
    expect(who.issuer).toBe(dev.v2Issuer);
    expect(who.tenantId).toBe(dev.tenantId);
    let err = await failure(
      auth.authenticate(token, [{ issuer: template, audiences: [aud], allowedTenants: ['contoso'] }]),
    );
    expect(err.code).toBe('ERR_AUTH_ISSUER');
    expect(err.message).toMatch(/allowedTenants/);
    err = await failure(auth.authenticate(token, [{ issuer: template, audiences: [aud] }]));
    expect(err.code).toBe('ERR_AUTH_ISSUER');
    // A token whose tid differs from the tenant in its iss cannot borrow another tenant's issuer.
    const mixed = await dev.issueToken({ audience: aud, extraClaims: { tid: 'other-tenant' } });
    err = await failure(
      auth.authenticate(mixed, [
        { issuer: template, audiences: [aud], allowedTenants: [dev.tenantId, 'other-tenant'] },
      ]),
    );
    expect(err.code).toBe('ERR_AUTH_ISSUER');
    expect(err.message).toMatch(/tid is other-tenant/);
  });

  it('refuses garbage, JWE-shaped and unsigned-looking input with ERR_AUTH_INVALID', async () => {
    const auth = createAuthenticator();
    for (const bad of ['abc', 'a.b.c.d.e', 'not.a.jwt', `${base64url.encode('{"alg":"RS256"}')}.!!!.sig`]) {
      const err = await failure(auth.authenticate(bad, v2));
      expect(err.code).toBe('ERR_AUTH_INVALID');
    }
  });

  it('refuses when no issuer is trusted, and names the untrusted issuer', async () => {
    const token = await dev.issueToken({ audience: aud });
    expect((await failure(createAuthenticator().authenticate(token, []))).code).toBe('ERR_AUTH_ISSUER');
    const err = await failure(
      createAuthenticator().authenticate(token, [
        { issuer: 'https://login.microsoftonline.com/x/v2.0', audiences: [aud] },
      ]),
    );
    expect(err.code).toBe('ERR_AUTH_ISSUER');
    expect(err.message).toContain(dev.v2Issuer);
  });

  it('fails closed when the issuer does not answer', async () => {
    const sockets: Socket[] = [];
    const silent: Server = createServer((socket) => sockets.push(socket));
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    const port = (silent.address() as { port: number }).port;
    const issuer = `http://127.0.0.1:${port}/t/v2.0`;
    const { privateKey } = await generateKeyPair('RS256');
    const token = await new SignJWT({ aud, sub: 's' })
      .setProtectedHeader({ alg: 'RS256', kid: 'k' })
      .setIssuer(issuer)
      .setExpirationTime('1h')
      .sign(privateKey);
    const err = await failure(
      createAuthenticator({ fetchTimeoutMs: 200 }).authenticate(token, [{ issuer, audiences: [aud] }]),
    );
    expect(err.code).toBe('ERR_AUTH_ISSUER_UNAVAILABLE');
    expect(err.message).toMatch(/no answer within 200 ms/);
    for (const socket of sockets) socket.destroy();
    silent.close();
  });

  it('maps Kubernetes service-account tokens', async () => {
    const { privateKey, publicKey } = await generateKeyPair('RS256');
    const jwk = { ...(await exportJWK(publicKey)), kid: 'k8s-1', alg: 'RS256', use: 'sig' };
    const issuer = 'https://kubernetes.default.svc.cluster.local';
    const token = await new SignJWT({
      aud: ['github-mcp'],
      sub: 'system:serviceaccount:agents:planner',
      'kubernetes.io': {
        namespace: 'agents',
        serviceaccount: { name: 'planner', uid: 'u-1' },
        pod: { name: 'p', uid: 'pu' },
      },
    })
      .setProtectedHeader({ alg: 'RS256', kid: 'k8s-1' })
      .setIssuer(issuer)
      .setIssuedAt()
      .setExpirationTime('1h')
      .sign(privateKey);
    const who = await createAuthenticator().authenticate(token, [
      { issuer, audiences: ['github-mcp'], kubernetes: true, jwks: { keys: [jwk] } },
    ]);
    expect(who.principal).toBe('system:serviceaccount:agents:planner');
    expect(who.serviceAccount).toEqual({ namespace: 'agents', name: 'planner', uid: 'u-1' });
  });
});
