import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { LoggingMessageNotificationSchema } from '@modelcontextprotocol/sdk/types.js';
import { type DevIssuer, startDevIssuer } from '../../pkg/identity/dev-issuer.js';
import { createAuthenticator } from '../../pkg/identity/index.js';
import { positives } from '../../pkg/mask/samples.js';
import { createMetrics, type Metrics } from '../../pkg/metrics/catalogue.js';
import type { PolicySource } from '../../pkg/policy/decision.js';
import { compilePolicies, type PolicyDocument } from '../../pkg/policy/index.js';
import { createProxy } from '../../pkg/proxy/index.js';
import type { WardenProxy } from '../../pkg/proxy/options.js';
import { createRecorder, type RecordingSummary, verifyRecording } from '../../pkg/record/index.js';

/**
 * An upstream that answers tools/call with a long SSE stream and writes its bytes in tiny random
 * chunks (1–8 bytes, each in its own event-loop turn, so they cross the socket separately): every
 * sensitive value is split across TCP chunk boundaries. The gateway must mask each event whole.
 */
const AUDIENCE = 'api://mask-sse';
const EVENTS = 300;
const card = positives['credit-card']![0]!;
const aws = positives['aws-access-key']![0]!;
const jwt = positives['jwt']![0]!;
const email = (i: number): string => `user${i}.name@example.com`;

/** A small deterministic PRNG, so a failure reproduces. */
function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

async function readJson(req: IncomingMessage): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  return JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>;
}

function sseBody(id: unknown): string {
  let out = '';
  for (let i = 0; i < EVENTS; i++) {
    const note = {
      jsonrpc: '2.0',
      method: 'notifications/message',
      params: { level: 'info', logger: 'export', data: `row ${i}: card ${card} mail ${email(i)} key ${aws}` },
    };
    out += `id: ${i}\nevent: message\ndata: ${JSON.stringify(note)}\n\n`;
  }
  const result = {
    jsonrpc: '2.0',
    id,
    result: { content: [{ type: 'text', text: `exported ${EVENTS} rows; token ${jwt}` }] },
  };
  return `${out}id: ${EVENTS}\nevent: message\ndata: ${JSON.stringify(result)}\n\n`;
}

function startChunkyUpstream(): Promise<{ url: string; close(): Promise<void> }> {
  const random = prng(20261130);
  const server: Server = createServer((req, res) => {
    void (async () => {
      if (req.method !== 'POST') {
        res.writeHead(req.method === 'DELETE' ? 200 : 405).end();
        return;
      }
      const msg = await readJson(req);
      const method = msg['method'];
      if (method === 'initialize') {
        const params = msg['params'] as { protocolVersion: string };
        res.writeHead(200, { 'content-type': 'application/json', 'mcp-session-id': 'chunky-1' });
        res.end(
          JSON.stringify({
            jsonrpc: '2.0',
            id: msg['id'],
            result: {
              protocolVersion: params.protocolVersion,
              capabilities: { tools: {}, logging: {} },
              serverInfo: { name: 'chunky', version: '1' },
            },
          }),
        );
        return;
      }
      if (typeof method === 'string' && method.startsWith('notifications/')) {
        res.writeHead(202).end();
        return;
      }
      if (method === 'tools/list') {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(
          JSON.stringify({
            jsonrpc: '2.0',
            id: msg['id'],
            result: { tools: [{ name: 'export_rows', inputSchema: { type: 'object' } }] },
          }),
        );
        return;
      }
      // tools/call: the SSE stream, dribbled out.
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
      const bytes = Buffer.from(sseBody(msg['id']));
      for (let at = 0; at < bytes.length; ) {
        const n = 1 + Math.floor(random() * 8);
        res.write(bytes.subarray(at, at + n));
        at += n;
        await new Promise((r) => setImmediate(r));
      }
      res.end();
    })().catch(() => {
      if (!res.headersSent) res.writeHead(500).end();
    });
  });
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as AddressInfo;
      resolve({
        url: `http://127.0.0.1:${port}/mcp`,
        close: () =>
          new Promise<void>((r) => {
            server.closeAllConnections();
            server.close(() => r());
          }),
      });
    }),
  );
}

let issuer: DevIssuer;
let upstream: { url: string; close(): Promise<void> };
let proxy: WardenProxy;
let metrics: Metrics;
let dir: string;
let mcpUrl: string;

beforeAll(async () => {
  issuer = await startDevIssuer();
  upstream = await startChunkyUpstream();
  dir = mkdtempSync(join(tmpdir(), 'masking-sse-'));
  metrics = createMetrics({ defaultMetrics: false });
  const doc = {
    apiVersion: 'mcpwarden.io/v1alpha1',
    kind: 'MCPPolicy',
    metadata: { name: 'export', generation: 1 },
    spec: {
      podSelector: {},
      identity: { issuers: [{ issuer: issuer.v2Issuer, audiences: [AUDIENCE] }] },
      rules: [{ name: 'export', subjects: [{ any: true }], match: { tools: ['export_*'] }, action: 'allow' }],
      masking: [{ name: 'secrets', detectors: ['credit-card', 'email', 'aws-access-key', 'jwt'] }],
      recording: { enabled: true },
    },
  } as PolicyDocument;
  const engine = compilePolicies([doc]);
  const source: PolicySource = {
    current: () => engine,
    onChange: () => () => undefined,
    close: async () => undefined,
  };
  proxy = createProxy({
    upstream: upstream.url,
    policySource: source,
    authenticator: createAuthenticator({ allowInsecureLoopback: true }),
    metrics,
    recorder: createRecorder({ directory: dir, metrics }),
    podName: 'masking-sse',
  });
  mcpUrl = `${(await proxy.listen('127.0.0.1', 0)).url}/mcp`;
});

afterAll(async () => {
  await proxy?.close();
  await upstream?.close();
  await issuer?.close();
  rmSync(dir, { recursive: true, force: true });
});

it('masks every event of an SSE stream whose bytes arrive in tiny random chunks', async () => {
  const token = await issuer.issueToken({ audience: AUDIENCE, oid: 'exporter' });
  const client = new Client({ name: 'sse-client', version: '1.0.0' });
  const notes: string[] = [];
  client.setNotificationHandler(LoggingMessageNotificationSchema, (n) => {
    notes.push(String(n.params.data));
  });
  const transport = new StreamableHTTPClientTransport(new URL(mcpUrl), {
    requestInit: { headers: { authorization: `Bearer ${token}` } },
  });
  await client.connect(transport);
  const recorded = new Promise<RecordingSummary>((resolve) => proxy.events.once('recording', resolve));

  const result = await client.callTool({ name: 'export_rows', arguments: {} });
  expect((result.content as Array<{ text: string }>)[0]!.text).toBe(
    `exported ${EVENTS} rows; token [masked:jwt]`,
  );
  expect(notes).toHaveLength(EVENTS);
  notes.forEach((text, i) => {
    expect(text).toBe(`row ${i}: card [masked:credit-card] mail [masked:email] key [masked:aws-access-key]`);
  });

  await transport.terminateSession();
  await client.close();
  const rec = await recorded;
  const recording = readFileSync(rec.location, 'utf8');
  const metricsText = await metrics.registry.metrics();
  for (const clear of [card, aws, jwt, email(0), email(EVENTS - 1)]) {
    expect(recording).not.toContain(clear);
    expect(metricsText).not.toContain(clear);
  }
  expect(metricsText).toContain(
    `mcp_warden_masked_values_total{policy="export",detector="credit-card"} ${EVENTS}`,
  );
  expect(metricsText).toContain(`mcp_warden_masked_values_total{policy="export",detector="email"} ${EVENTS}`);
  expect(metricsText).toContain(`mcp_warden_masked_values_total{policy="export",detector="jwt"} 1`);
  expect(await verifyRecording(rec.location)).toMatchObject({ ok: true, status: 'closed' });
});
