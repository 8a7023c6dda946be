import { importJWK, SignJWT } from 'jose';
import { isWardenError, type WardenError } from '../errors.js';
import { createAuthenticator } from './authenticator.js';
import { type DevIssuer, startDevIssuer } from './dev-issuer.js';
import type { TrustedIssuer } from './types.js';

const aud = 'api://rotation';
let dev: DevIssuer;
let trusted: TrustedIssuer[];

beforeEach(async () => {
  dev = await startDevIssuer();
  trusted = [{ issuer: dev.v2Issuer, audiences: [aud] }];
});
afterEach(() => dev.close());

async function failure(p: Promise<unknown>): Promise<WardenError> {
  try {
    await p;
  } catch (err) {
    if (isWardenError(err)) return err;
    throw err;
  }
  throw new Error('expected a WardenError, but the call succeeded');
}

/** A clock the caches read; tokens still use real time. */
function fakeClock() {
  let t = Date.now();
  return { now: () => t, advance: (ms: number) => (t += ms) };
}

describe('discovery and JWKS caching', () => {
  it('fetches discovery and JWKS once, then serves from cache', async () => {
    const auth = createAuthenticator();
    for (let i = 0; i < 3; i++) await auth.authenticate(await dev.issueToken({ audience: aud }), trusted);
    expect(dev.requests).toEqual({ discovery: 1, jwks: 1, token: 0 });
  });

  it('shares one fetch between concurrent first requests', async () => {
    const auth = createAuthenticator();
    const tokens = await Promise.all([1, 2, 3, 4].map(() => dev.issueToken({ audience: aud })));
    await Promise.all(tokens.map((t) => auth.authenticate(t, trusted)));
    expect(dev.requests.discovery).toBe(1);
    expect(dev.requests.jwks).toBe(1);
  });

  it('refetches an unknown kid (key rotation), but not again within the cooldown', async () => {
    const clock = fakeClock();
    const auth = createAuthenticator({ now: clock.now, cooldownMs: 30_000 });
    await auth.authenticate(await dev.issueToken({ audience: aud }), trusted);
    expect(dev.requests.jwks).toBe(1);

    clock.advance(31_000);
    await dev.rotateKey();
    const rotated = await dev.issueToken({ audience: aud });
    expect((await auth.authenticate(rotated, trusted)).audience).toBe(aud);
    expect(dev.requests.jwks).toBe(2);

    // A second new kid right away: refused without touching the issuer.
    await dev.rotateKey();
    const third = await dev.issueToken({ audience: aud });
    const err = await failure(auth.authenticate(third, trusted));
    expect(err.code).toBe('ERR_AUTH_KEY_UNKNOWN');
    expect(err.message).toMatch(/rate-limited/);
    expect(dev.requests.jwks).toBe(2);
    // Tokens under the old key still verify from the cache; made-up kids are refused without fetching.
    const old = await dev.issueToken({ audience: aud, kid: dev.keyIds()[0]! });
    expect((await auth.authenticate(old, trusted)).principal).toContain(dev.tenantId);
    const key = await importJWK(dev.state().keys[0]!.privateJwk, 'RS256');
    for (const kid of ['made-up-1', 'made-up-2', 'made-up-3']) {
      const bogus = await new SignJWT({ aud, tid: dev.tenantId, oid: 'o' })
        .setProtectedHeader({ alg: 'RS256', kid })
        .setIssuer(dev.v2Issuer)
        .setExpirationTime('1h')
        .sign(key);
      expect((await failure(auth.authenticate(bogus, trusted))).code).toBe('ERR_AUTH_KEY_UNKNOWN');
    }
    expect(dev.requests.jwks).toBe(2);

    clock.advance(31_000);
    expect((await auth.authenticate(third, trusted)).audience).toBe(aud);
    expect(dev.requests.jwks).toBe(3);
  });

  it('keeps verifying from cache while the issuer is down, and fails closed after the TTL', async () => {
    const clock = fakeClock();
    const auth = createAuthenticator({ now: clock.now, cacheTtlMs: 60_000, fetchTimeoutMs: 500 });
    const token = await dev.issueToken({ audience: aud });
    await auth.authenticate(token, trusted);
    await dev.close();
    expect((await auth.authenticate(token, trusted)).audience).toBe(aud);
    clock.advance(61_000);
    const err = await failure(auth.authenticate(token, trusted));
    expect(err.code).toBe('ERR_AUTH_ISSUER_UNAVAILABLE');
    dev = await startDevIssuer(); // afterEach closes it
  });

  it('fails closed with ERR_AUTH_ISSUER_UNAVAILABLE when the issuer is down from the start', async () => {
    const token = await dev.issueToken({ audience: aud });
    await dev.close();
    const err = await failure(createAuthenticator({ fetchTimeoutMs: 1000 }).authenticate(token, trusted));
    expect(err.code).toBe('ERR_AUTH_ISSUER_UNAVAILABLE');
    expect(err.message).toContain('discovery document');
    expect(err.message).not.toContain(token);
    dev = await startDevIssuer();
  });

  it('uses an explicit jwksUri without discovery', async () => {
    const auth = createAuthenticator();
    await auth.authenticate(await dev.issueToken({ audience: aud }), [
      { issuer: dev.v2Issuer, audiences: [aud], jwksUri: dev.jwksUri },
    ]);
    expect(dev.requests).toEqual({ discovery: 0, jwks: 1, token: 0 });
  });

  it('refuses a discovery document that names another issuer', async () => {
    const err = await failure(
      createAuthenticator().authenticate(await dev.issueToken({ audience: aud }), [
        { issuer: dev.v2Issuer, audiences: [aud], discoveryUrl: dev.discoveryUrlV1 },
      ]),
    );
    expect(err.code).toBe('ERR_AUTH_ISSUER');
    expect(err.message).toMatch(/is for issuer/);
  });
});
