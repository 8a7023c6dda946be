import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import type { McpError } from '@modelcontextprotocol/sdk/types.js';
import { type DevIssuer, startDevIssuer } from '../../pkg/identity/dev-issuer.js';
import { createAuthenticator } from '../../pkg/identity/index.js';
import { createMetrics, type Metrics } from '../../pkg/metrics/catalogue.js';
import { compilePolicies, type PolicyDocument } from '../../pkg/policy/index.js';
import { createProxy } from '../../pkg/proxy/index.js';
import type { WardenProxy } from '../../pkg/proxy/options.js';
import { createRecorder, type Recorder, verifyRecording } from '../../pkg/record/index.js';
import { connectStreamable } from './helpers/harness.js';
import { testSource } from './helpers/test-policy.js';
import { startUpstream, type Upstream } from './helpers/upstream-v1.js';

/**
 * `rateLimit` on a rule, through the gateway with real SDK peers: each caller gets its own bucket,
 * a call over the limit is refused with -31429 and `retryAfterSeconds` and never reaches the
 * upstream, a second rule allowing the same call is no way around the limit, a shared (`by: all`)
 * limit counts every caller, and the refusal is counted, recorded and logged.
 */
const AUDIENCE = 'api://rate-test';

function policies(issuer: string): PolicyDocument[] {
  const identity = { issuers: [{ issuer, audiences: [AUDIENCE] }] };
  return [
    {
      apiVersion: 'mcpwarden.io/v1alpha1',
      kind: 'MCPPolicy',
      metadata: { name: 'tools', generation: 1 },
      spec: {
        podSelector: {},
        identity,
        rules: [
          {
            name: 'weather-3-per-hour',
            subjects: [{ any: true }],
            match: { tools: ['get_weather'] },
            action: 'allow',
            rateLimit: { requests: 3, per: '1h' },
          },
          {
            name: 'secrets-1-per-hour',
            subjects: [{ any: true }],
            match: { resources: ['file:///secrets.txt'] },
            action: 'allow',
            rateLimit: { requests: 1, per: '1h' },
          },
          {
            name: 'queries-2-per-hour-shared',
            subjects: [{ any: true }],
            match: { tools: ['run_query'] },
            action: 'allow',
            rateLimit: { requests: 2, per: '1h', by: 'all' },
          },
        ],
        recording: { enabled: true, payloads: 'masked' },
      },
    },
    {
      // Another team's policy that allows every tool without a limit: not a way around it.
      apiVersion: 'mcpwarden.io/v1alpha1',
      kind: 'MCPPolicy',
      metadata: { name: 'wide', generation: 1 },
      spec: {
        podSelector: {},
        identity,
        rules: [{ name: 'everything', subjects: [{ any: true }], action: 'allow' }],
      },
    },
  ] as PolicyDocument[];
}

let issuer: DevIssuer;
let upstream: Upstream;
let proxy: WardenProxy;
let metrics: Metrics;
let recorder: Recorder;
let dir: string;
let mcpUrl: string;
const clients: Client[] = [];

async function client(oid: string): Promise<Client> {
  const token = await issuer.issueToken({ audience: AUDIENCE, oid, groups: [] });
  const c = await connectStreamable(mcpUrl, token, { version: '2025-06-18' });
  clients.push(c);
  return c;
}

const weather = (c: Client) => c.callTool({ name: 'get_weather', arguments: { city: 'Bern' } });
const refusal = (p: Promise<unknown>) => p.then(() => undefined).catch((e: unknown) => e as McpError);

beforeAll(async () => {
  issuer = await startDevIssuer();
  upstream = await startUpstream();
  dir = mkdtempSync(join(tmpdir(), 'rate-it-'));
  metrics = createMetrics({ defaultMetrics: false });
  const engine = compilePolicies(policies(issuer.v2Issuer));
  const source = testSource(engine);
  recorder = createRecorder({ directory: dir, metrics });
  proxy = createProxy({
    upstream: upstream.mcpUrl,
    policySource: source,
    authenticator: createAuthenticator({ allowInsecureLoopback: true }),
    metrics,
    recorder,
    podName: 'rate-it',
  });
  mcpUrl = `${(await proxy.listen('127.0.0.1', 0)).url}/mcp`;
});

afterAll(async () => {
  for (const c of clients) await c.close().catch(() => undefined);
  await proxy?.close();
  await recorder?.close();
  await upstream?.close();
  await issuer?.close();
  rmSync(dir, { recursive: true, force: true });
});

test('each caller gets its limit; the call over it is refused with -31429 and never reaches the upstream', async () => {
  const alice = await client('alice');
  for (let i = 0; i < 3; i++)
    expect((await weather(alice)).content).toEqual([{ type: 'text', text: 'sunny in Bern' }]);
  const before = upstream.stats.methods.filter((m) => m === 'tools/call').length;
  const e = await refusal(weather(alice));
  expect(e?.code).toBe(-31429);
  expect(e?.message).toMatch(/rate limit of 3 calls per 1h per caller \(rule weather-3-per-hour\) exceeded/);
  expect(e?.data).toMatchObject({ policy: 'tools', rule: 'weather-3-per-hour' });
  const retry = (e?.data as { retryAfterSeconds?: number } | undefined)?.retryAfterSeconds;
  // One token comes back every 20 minutes.
  expect(retry).toBeGreaterThan(1190);
  expect(retry).toBeLessThanOrEqual(1200);
  expect(upstream.stats.methods.filter((m) => m === 'tools/call').length).toBe(before);
  // Another caller has a bucket of its own, and alice's other tools are not limited by it.
  const bob = await client('bob');
  expect((await weather(bob)).content).toEqual([{ type: 'text', text: 'sunny in Bern' }]);
  expect((await alice.callTool({ name: 'delete_repo', arguments: { name: 'x' } })).content).toEqual([
    { type: 'text', text: 'deleted x' },
  ]);
});

test('a shared limit (by: all) counts every caller together', async () => {
  const carol = await client('carol');
  const dave = await client('dave');
  await carol.callTool({ name: 'run_query', arguments: { query: 'select 1' } });
  await dave.callTool({ name: 'run_query', arguments: { query: 'select 2' } });
  const e = await refusal(carol.callTool({ name: 'run_query', arguments: { query: 'select 3' } }));
  expect(e?.code).toBe(-31429);
  expect(e?.message).toMatch(/2 calls per 1h for all callers together/);
});

test("an alias of a limited resource's URI is the same resource: it does not escape the limit", async () => {
  const erin = await client('erin');
  const read = (uri: string) => erin.readResource({ uri });
  expect((await read('file:///secrets.txt')).contents[0]).toMatchObject({ uri: 'file:///secrets.txt' });
  // The wide policy allows every resource without a limit; the aliases resolve to the limited one.
  for (const alias of ['file:///secrets.txt', 'file:///x/../secrets.txt', 'file:///./secrets.txt']) {
    const e = await refusal(read(alias));
    expect(e?.code).toBe(-31429);
    expect(e?.message).toMatch(/rule secrets-1-per-hour/);
  }
});

test('refusals are counted as rate-limited, recorded as such, and the recording still verifies', async () => {
  const text = await metrics.registry.metrics();
  expect(text).toMatch(
    /mcp_warden_requests_total\{policy="tools",method="tools\/call",decision="rate-limited"\} 2/,
  );
  expect(text).toMatch(
    /mcp_warden_blocked_total\{policy="tools",rule="weather-3-per-hour",tool="get_weather",reason="rate-limit"\} 1/,
  );
  for (const c of clients.splice(0)) await c.close();
  await recorder.close();
  const files = readdirSync(dir).filter((f) => f.endsWith('.jsonl'));
  for (const f of files)
    expect(await verifyRecording(join(dir, f))).toMatchObject({ ok: true, status: 'closed' });
  const lines = files
    .flatMap((f) => readFileSync(join(dir, f), 'utf8').trim().split('\n'))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
  const limited = lines.filter((l) => l['type'] === 'decision' && l['rateLimited'] === true);
  expect([...new Set(limited.map((l) => l['rule']))].sort()).toEqual([
    'queries-2-per-hour-shared',
    'secrets-1-per-hour',
    'weather-3-per-hour',
  ]);
  expect(limited[0]).toMatchObject({ decision: 'deny', enforced: 'deny' });
});
