import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { z } from 'zod';
import { type DevIssuer, startDevIssuer } from '../../pkg/identity/dev-issuer.js';
import { createAuthenticator } from '../../pkg/identity/index.js';
import { createMetrics } from '../../pkg/metrics/catalogue.js';
import { compilePolicies, type PolicyDocument } from '../../pkg/policy/index.js';
import { createProxy } from '../../pkg/proxy/index.js';
import type { WardenProxy } from '../../pkg/proxy/options.js';
import { createRecorder, type RecordingSummary, verifyRecording } from '../../pkg/record/index.js';
import { hostMcpServer } from './helpers/sdk-host.js';
import { testSource } from './helpers/test-policy.js';

/**
 * Numbers a double cannot carry, through the gateway with a real SDK v1 client and server, over
 * SSE and JSON answers: a 64-bit id argument reaches the upstream with every digit (asserted on the
 * HTTP body the upstream received: the SDK's own JSON.parse would round it), the policy decides on
 * that exact value, a result holding such numbers reaches the client's bytes exactly, and a card
 * number sent as a JSON number is masked.
 */
const AUDIENCE = 'api://big-numbers';
const ID = '12345678901234567890';
const NEIGHBOUR = '12345678901234567891';
const json = JSON as unknown as { rawJSON(text: string): unknown };

/** The `"id":<digits>` a request body's arguments carried, as text. */
const idIn = (body: string): string | undefined => /"arguments":\{"id":(-?\d+)/.exec(body)?.[1];

interface Upstream {
  url: string;
  bodies: string[];
  close(): Promise<void>;
}

function startUpstream(jsonResponse: boolean): Promise<Upstream> {
  const bodies: string[] = [];
  const build = (): McpServer => {
    const server = new McpServer({ name: 'orders', version: '1.0.0' });
    server.registerTool(
      'get_order',
      { description: 'An order by its 64-bit id', inputSchema: { id: z.number() } },
      async () => {
        // The SDK hands the tool a rounded double; the digits it was sent are in the raw body.
        const sent = idIn(bodies.findLast((b) => b.includes('"get_order"')) ?? '') ?? 'unknown';
        const order = {
          id: json.rawJSON(sent),
          total: json.rawJSON('0.1234567890123456789'),
          card: 4111111111111111,
          backupCard: json.rawJSON('4000000000000000006'),
          createdMs: 1700000000000,
        };
        return {
          content: [{ type: 'text', text: `order ${sent}` }],
          structuredContent: order as Record<string, unknown>,
        };
      },
    );
    return server;
  };
  return hostMcpServer(build, { jsonResponse, onBody: (text) => bodies.push(text) }).then((h) => ({
    ...h,
    bodies,
  }));
}

function policy(issuer: string): PolicyDocument {
  return {
    apiVersion: 'mcpwarden.io/v1alpha1',
    kind: 'MCPPolicy',
    metadata: { name: 'orders' },
    spec: {
      podSelector: {},
      identity: { issuers: [{ issuer, audiences: [AUDIENCE] }] },
      rules: [
        // Decided on the exact value: as doubles, ID and NEIGHBOUR are one number (and neither is ID).
        {
          name: 'one-order',
          subjects: [{ any: true }],
          match: { tools: ['get_order'], when: `args.id == ${ID}u` },
          action: 'allow',
        },
      ],
      masking: [{ name: 'cards', detectors: ['credit-card'] }],
      recording: { enabled: true, payloads: 'masked' },
    },
  } as PolicyDocument;
}

let issuer: DevIssuer;
let dir: string;

beforeAll(async () => {
  issuer = await startDevIssuer();
  dir = mkdtempSync(join(tmpdir(), 'big-numbers-it-'));
});
afterAll(async () => {
  await issuer?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe.each([
  ['SSE', false],
  ['JSON', true],
])('numbers beyond a double through the gateway (upstream answers with %s)', (_kind, jsonResponse) => {
  let upstream: Upstream;
  let proxy: WardenProxy;
  let mcpUrl: string;

  beforeAll(async () => {
    upstream = await startUpstream(jsonResponse);
    const engine = compilePolicies([policy(issuer.v2Issuer)]);
    const source = testSource(engine);
    const metrics = createMetrics({ defaultMetrics: false });
    proxy = createProxy({
      upstream: upstream.url,
      policySource: source,
      authenticator: createAuthenticator({ allowInsecureLoopback: true }),
      metrics,
      recorder: createRecorder({ directory: dir, metrics }),
      podName: 'big-numbers-it',
    });
    mcpUrl = `${(await proxy.listen('127.0.0.1', 0)).url}/mcp`;
  });
  afterAll(async () => {
    await proxy?.close();
    await upstream?.close();
  });

  it('relays a 64-bit id argument and result exactly, decides on it, and masks a card sent as a number', async () => {
    const token = await issuer.issueToken({ audience: AUDIENCE, oid: 'user-1' });
    // What the client's socket received, byte for byte (the SDK parses it with JSON.parse).
    const received: string[] = [];
    const client = new Client({ name: 'big-numbers', version: '1.0.0' });
    const transport = new StreamableHTTPClientTransport(new URL(mcpUrl), {
      requestInit: { headers: { authorization: `Bearer ${token}` } },
      fetch: async (url, init) => {
        const res = await fetch(url, init);
        if (init?.method !== 'POST' || res.body === null) return res;
        const text = await res.text();
        received.push(text);
        return new Response(text, { status: res.status, statusText: res.statusText, headers: res.headers });
      },
    });
    await client.connect(transport);
    const recorded = new Promise<RecordingSummary>((resolve) => proxy.events.once('recording', resolve));

    // The SDK client serializes with JSON.stringify, which writes a raw JSON value as it is.
    const result = await client.callTool({ name: 'get_order', arguments: { id: json.rawJSON(ID) } });
    expect(result.isError).toBeFalsy();

    // The upstream received every digit, as the client sent them.
    const call = upstream.bodies.find((b) => b.includes('"get_order"'))!;
    expect(idIn(call)).toBe(ID);
    expect(call).toContain(`"arguments":{"id":${ID}}`);

    // The client's bytes hold the result's numbers exactly; the card numbers are masked.
    const answer = received.find((t) => t.includes('structuredContent'))!;
    expect(answer).toContain(`"id":${ID}`);
    expect(answer).toContain('"total":0.1234567890123456789');
    expect(answer).toContain('"card":"[masked:credit-card]"');
    expect(answer).toContain('"backupCard":"[masked:credit-card]"');
    expect(answer).toContain('"createdMs":1700000000000');
    expect(answer).not.toContain('4111111111111111');
    expect(answer).not.toContain('4000000000000000006');
    expect(answer).toContain(`"text":"order ${ID}"`);

    // The neighbour is another number: the rule does not match it, the call is refused.
    const before = upstream.bodies.length;
    const refused = await client
      .callTool({ name: 'get_order', arguments: { id: json.rawJSON(NEIGHBOUR) } })
      .then(
        () => undefined,
        (err: unknown) => err as { code?: number },
      );
    expect(refused?.code).toBe(-31403);
    expect(upstream.bodies.length).toBe(before);
    expect(received.at(-1)).toContain('Forbidden by policy');

    await transport.terminateSession();
    await client.close();

    // The recording keeps the exact digits too, masked like what the client got.
    const rec = await recorded;
    const recording = readFileSync(rec.location, 'utf8');
    expect(recording).toContain(`"arguments":{"id":${ID}}`);
    expect(recording).toContain(`"id":${ID},"total":0.1234567890123456789,"card":"[masked:credit-card]"`);
    expect(recording).not.toContain('4111111111111111');
    expect(await verifyRecording(rec.location)).toMatchObject({ ok: true, status: 'closed' });
  });
});
