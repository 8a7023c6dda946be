import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import type { McpError } from '@modelcontextprotocol/sdk/types.js';
import { exportJWK, generateKeyPair, type JWTPayload, SignJWT } from 'jose';
import { createAuthenticator } from '../../pkg/identity/index.js';
import { type ServiceAccountIssuer, withServiceAccountIssuer } from '../../pkg/kube/sa-issuer.js';
import { compilePolicies, KubernetesDefaultIssuer, type PolicyDocument } from '../../pkg/policy/index.js';
import { exited, spawnCli, waitForOutput } from './helpers/cli.js';
import { connectStreamable } from './helpers/harness.js';
import { startUpstream, type Upstream } from './helpers/upstream-v1.js';

/**
 * Issuers are the union across policies, rules are not: `mcp-warden gateway` (a real process, a
 * real policy file) with one local issuer that is both a multi-tenant Entra-shaped issuer
 * (`/{tenantid}/v2.0`) and the service-account issuer of two clusters (`/k8s/<name>`). Policy
 * team-a trusts tenant-a, partner-b tenant-b (another audience); cluster-a and cluster-b trust
 * their own cluster's tokens. Each caller gets its own policy's rules and no other's, and
 * `mcp-warden policy test` answers the same for the same claims.
 */

interface LocalIssuer {
  base: string;
  sign(claims: JWTPayload): Promise<string>;
  close(): Promise<void>;
}

async function startLocalIssuer(): Promise<LocalIssuer> {
  const { privateKey, publicKey } = await generateKeyPair('RS256');
  const jwk = { ...(await exportJWK(publicKey)), kid: 'k1', alg: 'RS256', use: 'sig' };
  let base = '';
  const server: Server = createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    const json = (body: unknown) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    if (/^\/[^/]+\/v2\.0\/\.well-known\/openid-configuration$/.test(path))
      return json({ issuer: `${base}/{tenantid}/v2.0`, jwks_uri: `${base}/keys` });
    const cluster = /^\/k8s\/([^/]+)\/\.well-known\/openid-configuration$/.exec(path);
    if (cluster) return json({ issuer: `${base}/k8s/${cluster[1]}`, jwks_uri: `${base}/keys` });
    if (path === '/keys') return json({ keys: [jwk] });
    res.writeHead(404).end();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    base,
    sign: (claims) =>
      new SignJWT(claims)
        .setProtectedHeader({ alg: 'RS256', kid: 'k1', typ: 'JWT' })
        .setIssuedAt()
        .setExpirationTime('1h')
        .sign(privateKey),
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

let dir: string;
let issuer: LocalIssuer;
let upstream: Upstream;
let gw: Awaited<ReturnType<typeof spawnCli>>;
let mcpUrl: string;

const policyFile = () => join(dir, 'policies.yaml');

function policies(): string {
  const template = `${issuer.base}/{tenantid}/v2.0`;
  const doc = (name: string, issuers: string, rules: string) => `apiVersion: mcpwarden.io/v1alpha1
kind: MCPPolicy
metadata: {name: ${name}}
spec:
  podSelector: {}
  identity:
    issuers:
${issuers}
  rules:
${rules}`;
  return [
    doc(
      'team-a',
      `      - {issuer: "${template}", audiences: [api://x], allowedTenants: [tenant-a]}`,
      `    - {name: everyone-in-a, subjects: [{any: true}, {group: a-admins}], match: {tools: [get_weather]}, action: allow}`,
    ),
    doc(
      'partner-b',
      `      - {issuer: "${template}", audiences: [api://y], allowedTenants: [tenant-b]}`,
      `    - {name: b-nothing, subjects: [{any: true}], match: {tools: [nothing_here]}, action: allow}`,
    ),
    doc(
      'cluster-a',
      `      - kubernetes: {issuer: "${issuer.base}/k8s/cluster-a", audiences: [mcp]}`,
      `    - {name: bot-of-a, subjects: [{serviceAccount: agents/bot}], match: {tools: [get_weather]}, action: allow}`,
    ),
    doc(
      'cluster-b',
      `      - kubernetes: {issuer: "${issuer.base}/k8s/cluster-b", audiences: [mcp]}`,
      `    - {name: b-nothing, subjects: [{any: true}], match: {tools: [nothing_here]}, action: allow}`,
    ),
  ].join('\n---\n');
}

const entraClaims = (tid: string, aud: string): JWTPayload => ({
  iss: `${issuer.base}/${tid}/v2.0`,
  aud,
  tid,
  oid: `oid-${tid}`,
  sub: `sub-${tid}`,
  scp: 'access_as_user',
  preferred_username: `user@${tid}.example`,
  groups: ['a-admins'],
});

const botClaims = (cluster: string): JWTPayload => ({
  iss: `${issuer.base}/k8s/${cluster}`,
  aud: ['mcp'],
  sub: 'system:serviceaccount:agents:bot',
  'kubernetes.io': { namespace: 'agents', serviceaccount: { name: 'bot', uid: `${cluster}-uid` } },
});

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'warden-issuer-scope-'));
  issuer = await startLocalIssuer();
  upstream = await startUpstream();
  await writeFile(policyFile(), policies());
  gw = await spawnCli(dir, [
    'gateway',
    '--upstream',
    upstream.mcpUrl,
    '--policy',
    policyFile(),
    '--listen',
    '127.0.0.1:0',
    '--admin-listen',
    '127.0.0.1:0',
  ]);
  mcpUrl = (await waitForOutput(gw, /"mcp":"(http:\/\/[^"]+)"/))[1]!;
});
afterAll(async () => {
  if (gw && gw.exitCode === null) {
    gw.kill('SIGKILL');
    await exited(gw);
  }
  await upstream?.close();
  await issuer?.close();
  await rm(dir, { recursive: true, force: true });
});

/** What the gateway does with get_weather for this caller: the text, or the JSON-RPC error code. */
async function weather(claims: JWTPayload): Promise<{ listed: string[]; call: string | number }> {
  const client: Client = await connectStreamable(mcpUrl, await issuer.sign(claims), {
    version: '2025-06-18',
  });
  try {
    const listed = (await client.listTools()).tools.map((t) => t.name);
    const call = await client.callTool({ name: 'get_weather', arguments: { city: 'Bern' } }).then(
      (r) => (r.content as Array<{ text: string }>)[0]!.text,
      (e: unknown) => (e as McpError).code,
    );
    return { listed, call };
  } finally {
    await client.close();
  }
}

/** `mcp-warden policy test` on the same policy file and claims: its exit code (0 allow, 3 deny). */
async function policyTest(name: string, claims: JWTPayload): Promise<number | null> {
  const identity = join(dir, `${name}.json`);
  const call = join(dir, 'call.json');
  await writeFile(identity, JSON.stringify({ ...claims, exp: 4_102_444_800 }));
  await writeFile(
    call,
    JSON.stringify({
      jsonrpc: '2.0',
      id: 1,
      method: 'tools/call',
      params: { name: 'get_weather', arguments: { city: 'Bern' } },
    }),
  );
  return exited(
    await spawnCli(dir, ['policy', 'test', policyFile(), '--identity', identity, '--call', call]),
  );
}

const calls = () => upstream.stats.methods.filter((m) => m === 'tools/call').length;

test("a tenant another policy trusts gets none of team-a's rules, even with team-a's audience", async () => {
  const before = calls();
  expect(await weather(entraClaims('tenant-a', 'api://x'))).toEqual({
    listed: ['get_weather'],
    call: 'sunny in Bern',
  });
  expect(calls()).toBe(before + 1);
  // tenant-b is trusted (by partner-b), and its token carries team-a's audience and group.
  expect(await weather(entraClaims('tenant-b', 'api://x'))).toEqual({ listed: [], call: -31403 });
  expect(await weather(entraClaims('tenant-b', 'api://y'))).toEqual({ listed: [], call: -31403 });
  expect(calls()).toBe(before + 1);
});

test("another trusted cluster's agents/bot does not get cluster-a's serviceAccount rule", async () => {
  const before = calls();
  expect(await weather(botClaims('cluster-a'))).toEqual({ listed: ['get_weather'], call: 'sunny in Bern' });
  expect(await weather(botClaims('cluster-b'))).toEqual({ listed: [], call: -31403 });
  expect(calls()).toBe(before + 1);
});

test('policy test gives the same answers for the same claims', async () => {
  const codes = await Promise.all([
    policyTest('tenant-a', entraClaims('tenant-a', 'api://x')),
    policyTest('tenant-b-x', entraClaims('tenant-b', 'api://x')),
    policyTest('bot-a', botClaims('cluster-a')),
    policyTest('bot-b', botClaims('cluster-b')),
  ]);
  expect(codes).toEqual([0, 3, 0, 3]);
});

test("in the sidecar: kubernetes entries without issuer match the cluster's discovered issuer, and only it", async () => {
  // The sidecar reads its API server's issuer and keys and substitutes them for the placeholder.
  const discovered = `${issuer.base}/k8s/cluster-a`;
  const keys = (await (await fetch(`${issuer.base}/keys`)).json()) as {
    keys: Array<Record<string, unknown>>;
  };
  const sa: ServiceAccountIssuer = {
    issuer: () => discovered,
    jwks: () => keys,
    ready: Promise.resolve(),
    refresh: async () => undefined,
    onChange: () => () => undefined,
    close: () => undefined,
  };
  const doc = (name: string, kubernetes: { issuer?: string; audiences: string[] }, tool: string) =>
    ({
      apiVersion: 'mcpwarden.io/v1alpha1',
      kind: 'MCPPolicy',
      metadata: { name },
      spec: {
        podSelector: {},
        identity: { issuers: [{ kubernetes }] },
        rules: [
          {
            name: `${name}-bot`,
            subjects: [{ serviceAccount: 'agents/bot' }],
            match: { tools: [tool] },
            action: 'allow',
          },
        ],
      },
    }) as PolicyDocument;
  const engine = compilePolicies([
    doc('own', { audiences: ['mcp'] }, 'get_weather'),
    doc('other', { issuer: `${issuer.base}/k8s/cluster-b`, audiences: ['mcp'] }, 'other_tool'),
  ]);
  const source = withServiceAccountIssuer(
    { current: () => engine, onChange: () => () => undefined, close: async () => undefined },
    sa,
    KubernetesDefaultIssuer,
  );
  const wrapped = source.current()!;
  const auth = createAuthenticator();
  const decide = async (cluster: string, tool: string) => {
    const identity = await auth.authenticate(await issuer.sign(botClaims(cluster)), wrapped.trustedIssuers());
    return wrapped.decide({
      method: 'tools/call',
      tool,
      args: {},
      identity,
      direction: 'client-to-server',
    }).enforced;
  };
  expect(await decide('cluster-a', 'get_weather')).toBe('allow');
  expect(await decide('cluster-a', 'other_tool')).toBe('deny');
  expect(await decide('cluster-b', 'other_tool')).toBe('allow');
  expect(await decide('cluster-b', 'get_weather')).toBe('deny');
  await source.close();
});
