import { isWardenError } from '../errors.js';
import { createAuthenticator } from './authenticator.js';
import { type DevIssuer, startDevIssuer } from './dev-issuer.js';
import type { TrustedIssuer } from './types.js';

// The verified-token cache (added for the data path's hot path, see docs/performance.md): a hit
// must behave exactly like a fresh verification for the same token and the same trusted issuers.
const aud = 'api://github-mcp';
let dev: DevIssuer;
let trusted: TrustedIssuer[];

beforeAll(async () => {
  dev = await startDevIssuer();
  trusted = [{ issuer: dev.v2Issuer, audiences: [aud] }];
});
afterAll(() => dev.close());

it('answers a repeated token with the same frozen identity, which no caller can alter for the next', async () => {
  const auth = createAuthenticator();
  const token = await dev.issueToken({
    audience: aud,
    oid: 'aaaaaaaa-0000-4000-8000-0000000000c1',
    groups: ['g1'],
  });
  const first = await auth.authenticate(token, trusted);
  expect(() => first.groups.push('injected')).toThrow(TypeError);
  expect(() => {
    (first as { principal: string }).principal = 'someone-else';
  }).toThrow(TypeError);
  expect(() => {
    (first.claims as Record<string, unknown>)['oid'] = 'someone-else';
  }).toThrow(TypeError);
  const second = await auth.authenticate(token, trusted);
  expect(second).toBe(first);
  expect(second.principal).toBe(`${dev.tenantId}/aaaaaaaa-0000-4000-8000-0000000000c1`);
  expect(second.groups).toEqual(['g1']);
  const fresh = await createAuthenticator({ verifiedCacheMs: 0 }).authenticate(token, trusted);
  expect({ ...second, claims: undefined }).toEqual({ ...fresh, claims: undefined });
});

it('never reuses a verification made against other trusted issuers', async () => {
  const auth = createAuthenticator();
  const token = await dev.issueToken({ audience: aud, oid: 'aaaaaaaa-0000-4000-8000-0000000000c2' });
  await auth.authenticate(token, trusted);
  const otherAudience: TrustedIssuer[] = [{ issuer: dev.v2Issuer, audiences: ['api://another-server'] }];
  const err = await auth.authenticate(token, otherAudience).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(isWardenError(err, 'ERR_AUTH_AUDIENCE')).toBe(true);
});

it('keeps tokens apart: two callers get their own identities', async () => {
  const auth = createAuthenticator();
  const a = await dev.issueToken({ audience: aud, oid: 'aaaaaaaa-0000-4000-8000-0000000000a1' });
  const b = await dev.issueToken({ audience: aud, oid: 'aaaaaaaa-0000-4000-8000-0000000000b1' });
  await auth.authenticate(a, trusted);
  await auth.authenticate(b, trusted);
  expect((await auth.authenticate(a, trusted)).objectId).toBe('aaaaaaaa-0000-4000-8000-0000000000a1');
  expect((await auth.authenticate(b, trusted)).objectId).toBe('aaaaaaaa-0000-4000-8000-0000000000b1');
});

it('refuses a negative verifiedCacheMs', () => {
  expect(() => createAuthenticator({ verifiedCacheMs: -1 })).toThrow(/verifiedCacheMs/);
});

it('accepts a token until its exp plus the clock tolerance, which is how long a stream it opened may last', async () => {
  const token = await dev.issueToken({
    audience: aud,
    oid: 'aaaaaaaa-0000-4000-8000-0000000000c2',
    expiresInSec: 600,
  });
  const identity = await createAuthenticator().authenticate(token, trusted);
  expect(identity.expiresAt).toBeGreaterThan(Date.now() / 1000);
  expect(createAuthenticator().acceptedUntil(identity)).toBe((identity.expiresAt + 60) * 1000);
  expect(createAuthenticator({ clockToleranceSec: 0 }).acceptedUntil(identity)).toBe(
    identity.expiresAt * 1000,
  );
});

it('never remembers a token past the JWKS it was checked with: issuer down, a fresh check is needed', async () => {
  const issuer = await startDevIssuer();
  let t = Date.now();
  const auth = createAuthenticator({ now: () => t, cacheTtlMs: 600_000, verifiedCacheMs: 60_000 });
  const own: TrustedIssuer[] = [{ issuer: issuer.v2Issuer, audiences: [aud] }];
  const early = await issuer.issueToken({ audience: aud, oid: 'aaaaaaaa-0000-4000-8000-0000000000d1' });
  await auth.authenticate(early, own); // discovery and JWKS fetched now
  t += 590_000;
  // First seen 10 s before the JWKS expires: verified with the cached keys.
  const late = await issuer.issueToken({ audience: aud, oid: 'aaaaaaaa-0000-4000-8000-0000000000d2' });
  const identity = await auth.authenticate(late, own);
  expect(issuer.requests.jwks).toBe(1);
  await issuer.close(); // the issuer goes down
  t += 9_000;
  expect(await auth.authenticate(late, own)).toBe(identity); // still within the JWKS TTL
  t += 2_000; // the JWKS entry is 601 s old: a fresh verification would fail, so must this
  for (const token of [late, early]) {
    const err = await auth.authenticate(token, own).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(isWardenError(err, 'ERR_AUTH_ISSUER_UNAVAILABLE')).toBe(true);
  }
});
