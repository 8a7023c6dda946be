import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isWardenError, type WardenError } from '../errors.js';
import { createMetrics } from '../metrics/catalogue.js';
import { createAuthenticator } from './authenticator.js';
import { type DevIssuer, startDevIssuer } from './dev-issuer.js';
import { createGraphResolverFromEnv } from './graph.js';
import { type FakeGraph, startFakeGraph } from './testing/fake-graph.js';
import type { GraphResolver, TrustedIssuer } from './types.js';

const aud = 'api://overage';
const userOid = 'aaaaaaaa-1111-4111-8111-000000000001';
const appOid = 'bbbbbbbb-2222-4222-8222-000000000002';
const sidecarClientId = 'cccccccc-3333-4333-8333-000000000003';
let dev: DevIssuer;
let graph: FakeGraph;
let dir: string;
let tokenFile: string;
let resolver: GraphResolver;

async function failure(p: Promise<unknown>): Promise<WardenError> {
  try {
    await p;
  } catch (err) {
    if (isWardenError(err)) return err;
    throw err;
  }
  throw new Error('expected a WardenError, but the call succeeded');
}

/** The claims Entra puts in a token whose user is in too many groups (no `groups` claim). */
function overageClaims(tid: string, oid: string) {
  return {
    _claim_names: { groups: 'src1' },
    _claim_sources: { src1: { endpoint: `https://graph.windows.net/${tid}/users/${oid}/getMemberObjects` } },
  };
}

beforeAll(async () => {
  dev = await startDevIssuer();
  graph = await startFakeGraph({ jwksUri: dev.jwksUri, issuer: dev.v1Issuer });
  graph.memberships.set(userOid, ['group-a', 'group-b', 'role-x']);
  graph.memberships.set(appOid, ['group-apps']);
  dir = await mkdtemp(join(tmpdir(), 'warden-overage-'));
  tokenFile = join(dir, 'azure-identity-token');
  // The projected service-account token the kubelet would write: audience api://AzureADTokenExchange.
  await writeFile(
    tokenFile,
    await dev.issueToken({
      audience: 'api://AzureADTokenExchange',
      appOnly: true,
      clientId: sidecarClientId,
    }),
  );
  resolver = createGraphResolverFromEnv(
    {
      AZURE_CLIENT_ID: sidecarClientId,
      AZURE_TENANT_ID: dev.tenantId,
      AZURE_FEDERATED_TOKEN_FILE: tokenFile,
      AZURE_AUTHORITY_HOST: dev.url,
      MCP_WARDEN_GRAPH_URL: graph.url,
    },
    { allowInsecureLoopback: true },
  )!;
});
afterAll(async () => {
  await graph.close();
  await dev.close();
  await rm(dir, { recursive: true, force: true });
});

const trusted = (groupsOverage?: 'graph' | 'deny'): TrustedIssuer[] => [
  { issuer: dev.v2Issuer, audiences: [aud], ...(groupsOverage === undefined ? {} : { groupsOverage }) },
];

describe('groups overage', () => {
  it('resolves groups through Microsoft Graph with the workload identity credential, cached per principal', async () => {
    const auth = createAuthenticator({ graph: resolver });
    const token = await dev.issueToken({
      audience: aud,
      oid: userOid,
      extraClaims: overageClaims(dev.tenantId, userOid),
    });
    const who = await auth.authenticate(token, trusted('graph'));
    expect(who.groups).toEqual(['group-a', 'group-b', 'role-x']);
    expect(graph.calls).toEqual([{ kind: 'users', objectId: userOid, securityEnabledOnly: false }]);
    expect(dev.requests.token).toBe(1);
    await auth.authenticate(token, trusted('graph'));
    expect(graph.calls).toHaveLength(1);
    expect(dev.requests.token).toBe(1);
  });

  it('asks servicePrincipals/getMemberObjects for app-only tokens', async () => {
    const auth = createAuthenticator({ graph: resolver });
    const token = await dev.issueToken({
      audience: aud,
      oid: appOid,
      appOnly: true,
      extraClaims: overageClaims(dev.tenantId, appOid),
    });
    const who = await auth.authenticate(token, trusted('graph'));
    expect(who.appOnly).toBe(true);
    expect(who.groups).toEqual(['group-apps']);
    expect(graph.calls.at(-1)).toEqual({
      kind: 'servicePrincipals',
      objectId: appOid,
      securityEnabledOnly: false,
    });
  });

  it('denies with ERR_AUTH_FORBIDDEN when the issuer says groupsOverage: deny (and by default)', async () => {
    const metrics = createMetrics({ defaultMetrics: false });
    const auth = createAuthenticator({ graph: resolver, metrics });
    const token = await dev.issueToken({
      audience: aud,
      oid: userOid,
      extraClaims: overageClaims(dev.tenantId, userOid),
    });
    const before = graph.calls.length;
    for (const mode of ['deny', undefined] as const) {
      const err = await failure(auth.authenticate(token, trusted(mode)));
      expect(err.code).toBe('ERR_AUTH_FORBIDDEN');
      expect(err.message).toMatch(/groups overage.*groupsOverage: deny.*groupsOverage: graph/);
    }
    expect(graph.calls.length).toBe(before);
    expect(await metrics.registry.getSingleMetricAsString('mcp_warden_auth_failures_total')).toContain(
      'reason="forbidden"} 2',
    );
  });

  it('treats the v1 hasgroups claim as overage too', async () => {
    const token = await dev.issueToken({
      audience: aud,
      version: 1,
      oid: userOid,
      extraClaims: { hasgroups: true },
    });
    const v1: TrustedIssuer[] = [{ issuer: dev.v1Issuer, audiences: [aud] }];
    expect((await failure(createAuthenticator({ graph: resolver }).authenticate(token, v1))).code).toBe(
      'ERR_AUTH_FORBIDDEN',
    );
    const who = await createAuthenticator({ graph: resolver }).authenticate(token, [
      { ...v1[0]!, groupsOverage: 'graph' },
    ]);
    expect(who.groups).toEqual(['group-a', 'group-b', 'role-x']);
  });

  it('fails closed when Graph fails, when the principal is unknown, and when no Graph credential exists', async () => {
    const token = await dev.issueToken({
      audience: aud,
      oid: 'dddddddd-0000-4000-8000-00000000000d',
      extraClaims: overageClaims(dev.tenantId, 'd'),
    });
    let err = await failure(createAuthenticator({ graph: resolver }).authenticate(token, trusted('graph')));
    expect(err.code).toBe('ERR_AUTH_ISSUER_UNAVAILABLE');
    expect(err.message).toMatch(/getMemberObjects.*HTTP 404/);

    const other = await dev.issueToken({
      audience: aud,
      oid: appOid,
      extraClaims: overageClaims(dev.tenantId, appOid),
    });
    graph.failWith = 503;
    try {
      err = await failure(createAuthenticator({ graph: resolver }).authenticate(other, trusted('graph')));
    } finally {
      delete graph.failWith;
    }
    expect(err.code).toBe('ERR_AUTH_ISSUER_UNAVAILABLE');
    expect(err.message).toMatch(/HTTP 503/);

    err = await failure(createAuthenticator().authenticate(other, trusted('graph')));
    expect(err.code).toBe('ERR_AUTH_FORBIDDEN');
    expect(err.message).toMatch(/no Graph credential/);
  });

  it('fails closed when the federated token is refused by the token endpoint', async () => {
    const badFile = join(dir, 'bad-token');
    await writeFile(badFile, 'not-a-jwt');
    const bad = createGraphResolverFromEnv(
      {
        AZURE_CLIENT_ID: 'x',
        AZURE_TENANT_ID: dev.tenantId,
        AZURE_FEDERATED_TOKEN_FILE: badFile,
        AZURE_AUTHORITY_HOST: dev.url,
        MCP_WARDEN_GRAPH_URL: graph.url,
      },
      { allowInsecureLoopback: true },
    )!;
    const token = await dev.issueToken({
      audience: aud,
      oid: userOid,
      extraClaims: overageClaims(dev.tenantId, userOid),
    });
    const err = await failure(createAuthenticator({ graph: bad }).authenticate(token, trusted('graph')));
    expect(err.code).toBe('ERR_AUTH_ISSUER_UNAVAILABLE');
    expect(err.message).toMatch(/workload identity token.*HTTP 401/);
    expect(err.message).not.toContain('not-a-jwt');
  });

  it('is not configured without the workload identity environment, and refuses http Graph off loopback', async () => {
    expect(createGraphResolverFromEnv({})).toBeUndefined();
    const remote = createGraphResolverFromEnv(
      {
        AZURE_CLIENT_ID: sidecarClientId,
        AZURE_TENANT_ID: dev.tenantId,
        AZURE_FEDERATED_TOKEN_FILE: tokenFile,
        AZURE_AUTHORITY_HOST: dev.url,
        MCP_WARDEN_GRAPH_URL: 'http://10.9.8.7',
      },
      { allowInsecureLoopback: true },
    )!;
    const err = await failure(
      remote.memberObjects({ tenantId: dev.tenantId, objectId: userOid, appOnly: false }),
    );
    expect(err.code).toBe('ERR_AUTH_ISSUER_UNAVAILABLE');
    expect(err.message).toMatch(/only allowed on loopback/);
  });
});
