import { once } from 'node:events';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import { isWardenError, type WardenError } from '../errors.js';
import { createAuthenticator } from './authenticator.js';

const issuer = 'https://issuer.example.com';
const aud = 'api://alg';

async function failure(p: Promise<unknown>): Promise<WardenError> {
  try {
    await p;
  } catch (err) {
    if (isWardenError(err)) return err;
    throw err;
  }
  throw new Error('expected a WardenError, but the call succeeded');
}

async function signed(alg: string, opts: { crv?: string } = {}) {
  const { privateKey, publicKey } = await generateKeyPair(alg, { ...(opts.crv ? { crv: opts.crv } : {}) });
  const jwk = { ...(await exportJWK(publicKey)), kid: `k-${alg}`, alg, use: 'sig' };
  const token = await new SignJWT({ aud, sub: 'svc-1', scope: 'read' })
    .setProtectedHeader({ alg, kid: `k-${alg}` })
    .setIssuer(issuer)
    .setExpirationTime('5m')
    .sign(privateKey);
  return { token, trusted: [{ issuer, audiences: [aud], jwks: { keys: [jwk as Record<string, unknown>] } }] };
}

describe('pinned algorithms', () => {
  it.each(['RS256', 'ES256', 'PS256'])(
    'accepts %s, naming a generic OIDC principal <iss>#<sub>',
    async (alg) => {
      const { token, trusted } = await signed(alg);
      const who = await createAuthenticator().authenticate(token, trusted);
      expect(who.principal).toBe(`${issuer}#svc-1`);
      expect(who.scopes).toEqual(['read']);
    },
  );

  it.each(['RS384', 'RS512', 'ES384', 'PS512', 'EdDSA'])('refuses %s', async (alg) => {
    const { token, trusted } = await signed(alg, alg === 'EdDSA' ? { crv: 'Ed25519' } : {});
    const err = await failure(createAuthenticator().authenticate(token, trusted));
    expect(err.code).toBe('ERR_AUTH_ALGORITHM');
    expect(err.message).toContain(alg);
  });

  it('ignores symmetric ("oct") and private keys published in a JWKS', async () => {
    const { token, trusted } = await signed('RS256');
    const withOct = [{ ...trusted[0]!, jwks: { keys: [{ kty: 'oct', k: 'c2VjcmV0', kid: 'k-RS256' }] } }];
    expect((await failure(createAuthenticator().authenticate(token, withOct))).code).toBe(
      'ERR_AUTH_KEY_UNKNOWN',
    );
    // The right public key, but published with its private part: a broken JWKS, not used.
    const { privateKey } = await generateKeyPair('RS256', { extractable: true });
    const privateJwk = { ...(await exportJWK(privateKey)), kid: 'k-priv', alg: 'RS256' };
    const token2 = await new SignJWT({ aud, sub: 's' })
      .setProtectedHeader({ alg: 'RS256', kid: 'k-priv' })
      .setIssuer(issuer)
      .setExpirationTime('5m')
      .sign(privateKey);
    const withPrivate = [
      { issuer, audiences: [aud], jwks: { keys: [privateJwk as Record<string, unknown>] } },
    ];
    expect((await failure(createAuthenticator().authenticate(token2, withPrivate))).code).toBe(
      'ERR_AUTH_KEY_UNKNOWN',
    );
    const { d: _d, p: _p, q: _q, dp: _dp, dq: _dq, qi: _qi, ...publicOnly } = privateJwk;
    const fixed = [{ issuer, audiences: [aud], jwks: { keys: [publicOnly as Record<string, unknown>] } }];
    expect((await createAuthenticator().authenticate(token2, fixed)).principal).toBe(`${issuer}#s`);
  });
});

describe('fetch safety', () => {
  it('refuses a discovery document whose jwks_uri is http:// off loopback', async () => {
    const server = createServer((_req, res) => {
      const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ issuer: base, jwks_uri: 'http://10.11.12.13/keys' }));
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const local = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    try {
      const { privateKey } = await generateKeyPair('RS256');
      const token = await new SignJWT({ aud, sub: 's' })
        .setProtectedHeader({ alg: 'RS256', kid: 'k' })
        .setIssuer(local)
        .setExpirationTime('5m')
        .sign(privateKey);
      const err = await failure(
        createAuthenticator().authenticate(token, [{ issuer: local, audiences: [aud] }]),
      );
      expect(err.code).toBe('ERR_AUTH_ISSUER_UNAVAILABLE');
      expect(err.message).toMatch(/jwks_uri .* refused.*only allowed on loopback/);
    } finally {
      server.closeAllConnections();
      server.close();
    }
  });

  it('does not follow redirects and fails closed on non-JSON or error answers', async () => {
    let mode = 'redirect' as 'redirect' | 'html' | '500';
    const server = createServer((_req, res) => {
      if (mode === 'redirect') res.writeHead(302, { location: 'http://10.1.1.1/' }).end();
      else if (mode === 'html') res.writeHead(200, { 'content-type': 'text/html' }).end('<html>');
      else res.writeHead(500).end('{}');
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const local = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    try {
      const { privateKey } = await generateKeyPair('RS256');
      const token = await new SignJWT({ aud, sub: 's' })
        .setProtectedHeader({ alg: 'RS256', kid: 'k' })
        .setIssuer(local)
        .setExpirationTime('5m')
        .sign(privateKey);
      const expectations: Array<[typeof mode, RegExp]> = [
        ['redirect', /could not fetch/],
        ['html', /not valid JSON/],
        ['500', /HTTP 500/],
      ];
      for (const [m, pattern] of expectations) {
        mode = m;
        const err = await failure(
          createAuthenticator().authenticate(token, [{ issuer: local, audiences: [aud] }]),
        );
        expect(err.code).toBe('ERR_AUTH_ISSUER_UNAVAILABLE');
        expect(err.message).toMatch(pattern);
      }
    } finally {
      server.closeAllConnections();
      server.close();
    }
  });
});
