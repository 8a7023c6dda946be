import { exportJWK, generateKeyPair, type JWTPayload, SignJWT } from 'jose';
import { isWardenError, type WardenError } from '../errors.js';
import { createAuthenticator } from './authenticator.js';
import type { TrustedIssuer } from './types.js';

// Kubernetes projected service-account tokens, in the shape the API server signs them.
const issuer = 'https://kubernetes.default.svc.cluster.local';
let sign: (claims: JWTPayload) => Promise<string>;
let trusted: TrustedIssuer[];

beforeAll(async () => {
  const { privateKey, publicKey } = await generateKeyPair('RS256');
  const jwk = { ...(await exportJWK(publicKey)), kid: 'sa-key', alg: 'RS256', use: 'sig' };
  trusted = [
    { issuer, audiences: ['github-mcp'], kubernetes: true, jwks: { keys: [jwk as Record<string, unknown>] } },
  ];
  sign = (claims) =>
    new SignJWT({ aud: ['github-mcp'], ...claims })
      .setProtectedHeader({ alg: 'RS256', kid: 'sa-key' })
      .setIssuer(issuer)
      .setIssuedAt()
      .setNotBefore('0s')
      .setExpirationTime('1h')
      .sign(privateKey);
});

async function failure(p: Promise<unknown>): Promise<WardenError> {
  try {
    await p;
  } catch (err) {
    if (isWardenError(err)) return err;
    throw err;
  }
  throw new Error('expected a WardenError, but the call succeeded');
}

const claimsOf = (ns: string, name: string) => ({
  sub: `system:serviceaccount:${ns}:${name}`,
  'kubernetes.io': {
    namespace: ns,
    serviceaccount: { name, uid: '5f1c-uid' },
    pod: { name: `${name}-7d9f`, uid: 'pod-uid' },
    node: { name: 'node-1', uid: 'node-uid' },
  },
});

describe('Kubernetes service-account tokens', () => {
  it('maps principal and serviceAccount, and no Entra fields', async () => {
    const who = await createAuthenticator().authenticate(await sign(claimsOf('agents', 'planner')), trusted);
    expect(who).toMatchObject({
      principal: 'system:serviceaccount:agents:planner',
      subject: 'system:serviceaccount:agents:planner',
      serviceAccount: { namespace: 'agents', name: 'planner', uid: '5f1c-uid' },
      issuer,
      audience: 'github-mcp',
      appOnly: true,
      groups: [],
    });
    expect(who.tenantId).toBeUndefined();
  });

  it('refuses a token without the kubernetes.io claim, or whose sub disagrees with it', async () => {
    let err = await failure(
      createAuthenticator().authenticate(await sign({ sub: 'system:serviceaccount:a:b' }), trusted),
    );
    expect(err.code).toBe('ERR_AUTH_INVALID');
    expect(err.message).toMatch(/kubernetes\.io/);
    err = await failure(
      createAuthenticator().authenticate(
        await sign({ ...claimsOf('agents', 'planner'), sub: 'system:serviceaccount:kube-system:admin' }),
        trusted,
      ),
    );
    expect(err.code).toBe('ERR_AUTH_INVALID');
    expect(err.message).toMatch(/does not match/);
  });

  it('refuses a service-account token for another audience', async () => {
    const token = await sign({ ...claimsOf('agents', 'planner'), aud: ['https://kubernetes.default.svc'] });
    expect((await failure(createAuthenticator().authenticate(token, trusted))).code).toBe(
      'ERR_AUTH_AUDIENCE',
    );
  });

  it("marks tokens of the cluster's own issuer (the entry standing for kubernetes entries without issuer)", async () => {
    const { privateKey, publicKey } = await generateKeyPair('RS256');
    const jwk = { ...(await exportJWK(publicKey)), kid: 'own', alg: 'RS256', use: 'sig' };
    const discovered = 'https://oidc.cluster.example/abc';
    const own = await new SignJWT({ aud: ['github-mcp'], ...claimsOf('agents', 'planner') })
      .setProtectedHeader({ alg: 'RS256', kid: 'own' })
      .setIssuer(discovered)
      .setIssuedAt()
      .setExpirationTime('1h')
      .sign(privateKey);
    const entry = { issuer: discovered, audiences: ['github-mcp'], kubernetes: true, jwks: { keys: [jwk] } };
    const marked = await createAuthenticator().authenticate(own, [{ ...entry, clusterIssuer: true }]);
    expect(marked).toMatchObject({ issuer: discovered, clusterIssuer: true });
    // An entry naming its issuer (another cluster, or this one by name) does not mark.
    const named = await createAuthenticator().authenticate(own, [entry]);
    expect(named.clusterIssuer).toBeUndefined();
    expect(
      (await createAuthenticator().authenticate(await sign(claimsOf('a', 'b')), trusted)).clusterIssuer,
    ).toBeUndefined();
  });
});
