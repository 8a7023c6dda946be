import { copyFileSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { z } from 'zod';
import { run } from '../../cmd/recordings.js';
import { type DevIssuer, startDevIssuer } from '../../pkg/identity/dev-issuer.js';
import { createAuthenticator } from '../../pkg/identity/index.js';
import { createMetrics } from '../../pkg/metrics/catalogue.js';
import type { PolicySource } from '../../pkg/policy/decision.js';
import { compilePolicies, type PolicyDocument } from '../../pkg/policy/index.js';
import { createProxy } from '../../pkg/proxy/index.js';
import type { WardenProxy } from '../../pkg/proxy/options.js';
import {
  createRecorder,
  type FileRecorder,
  type RecordingSummary,
  verifyRecording,
} from '../../pkg/record/index.js';
import { hostMcpServer } from './helpers/sdk-host.js';

/**
 * Session recordings through the gateway with real SDK peers: the recording of a session with an
 * allowed, a masked and a denied call verifies, replays as a transcript and exports; tampering is
 * caught by `mcp-warden recordings verify` naming the line; a crash mid-session is recovered.
 */
const AUDIENCE = 'api://rec-test';
const CARD = '4111 1111 1111 1111';

function startUpstream(): Promise<{ url: string; close(): Promise<void> }> {
  const build = (): McpServer => {
    const server = new McpServer({ name: 'billing', version: '1.0.0' });
    server.registerTool('get_invoice', { inputSchema: { id: z.number() } }, async ({ id }) => ({
      content: [{ type: 'text', text: `invoice ${id} paid with card ${CARD}` }],
    }));
    server.registerTool('delete_invoice', { inputSchema: { id: z.number() } }, async ({ id }) => ({
      content: [{ type: 'text', text: `deleted ${id}` }],
    }));
    return server;
  };
  return hostMcpServer(build);
}

function cli(): { io: { stdout: PassThrough; stderr: PassThrough }; out: () => string } {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  const chunks: Buffer[] = [];
  stdout.on('data', (c: Buffer) => chunks.push(c));
  stderr.on('data', (c: Buffer) => chunks.push(c));
  return { io: { stdout, stderr }, out: () => Buffer.concat(chunks).toString('utf8') };
}

let issuer: DevIssuer;
let upstream: { url: string; close(): Promise<void> };
let proxy: WardenProxy;
let recorder: FileRecorder;
let dir: string;
let mcpUrl: string;

beforeAll(async () => {
  issuer = await startDevIssuer();
  upstream = await startUpstream();
  dir = mkdtempSync(join(tmpdir(), 'recording-it-'));
  const doc = {
    apiVersion: 'mcpwarden.io/v1alpha1',
    kind: 'MCPPolicy',
    metadata: { name: 'billing', generation: 7 },
    spec: {
      podSelector: {},
      identity: { issuers: [{ issuer: issuer.v2Issuer, audiences: [AUDIENCE] }] },
      rules: [
        { name: 'read', subjects: [{ any: true }], match: { tools: ['get_*'] }, action: 'allow' },
        {
          name: 'no-delete',
          subjects: [{ any: true }],
          match: { tools: ['delete_*'] },
          action: 'deny',
          reason: 'invoices are never deleted by agents',
        },
      ],
      masking: [{ name: 'cards', detectors: ['credit-card'] }],
      recording: { enabled: true, payloads: 'masked' },
    },
  } as PolicyDocument;
  const engine = compilePolicies([doc]);
  const source: PolicySource = {
    current: () => engine,
    onChange: () => () => undefined,
    close: async () => undefined,
  };
  const metrics = createMetrics({ defaultMetrics: false });
  recorder = createRecorder({ directory: dir, metrics, flushIntervalMs: 100 });
  proxy = createProxy({
    upstream: upstream.url,
    policySource: source,
    authenticator: createAuthenticator({ allowInsecureLoopback: true }),
    metrics,
    recorder,
    podName: 'billing-0',
    namespace: 'finance',
  });
  mcpUrl = `${(await proxy.listen('127.0.0.1', 0)).url}/mcp`;
});

afterAll(async () => {
  await proxy?.close();
  await upstream?.close();
  await issuer?.close();
  rmSync(dir, { recursive: true, force: true });
});

async function session(oid: string): Promise<{ client: Client; transport: StreamableHTTPClientTransport }> {
  const token = await issuer.issueToken({ audience: AUDIENCE, oid });
  const client = new Client({ name: 'rec-client', version: '1.0.0' });
  const transport = new StreamableHTTPClientTransport(new URL(mcpUrl), {
    requestInit: { headers: { authorization: `Bearer ${token}` } },
  });
  await client.connect(transport);
  return { client, transport };
}

describe('recordings through the gateway', () => {
  let summary: RecordingSummary;

  beforeAll(async () => {
    const { client, transport } = await session('auditor-1');
    const recorded = new Promise<RecordingSummary>((resolve) => proxy.events.once('recording', resolve));
    const ok = await client.callTool({ name: 'get_invoice', arguments: { id: 17 } });
    expect((ok.content as Array<{ text: string }>)[0]!.text).toBe(
      'invoice 17 paid with card [masked:credit-card]',
    );
    await expect(client.callTool({ name: 'delete_invoice', arguments: { id: 17 } })).rejects.toThrow(
      /never deleted/,
    );
    await transport.terminateSession();
    await client.close();
    summary = await recorded;
  });

  it('writes one verified, masked recording per session, summarised with the last line hash', async () => {
    expect(summary).toMatchObject({ pod: 'billing-0', messages: expect.any(Number), denied: 1 });
    expect(summary.location.startsWith(dir)).toBe(true);
    const text = readFileSync(summary.location, 'utf8');
    expect(text).not.toContain(CARD);
    expect(text).toContain('[masked:credit-card]');
    const lines = text
      .trimEnd()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines[0]).toMatchObject({
      type: 'header',
      pod: 'billing-0',
      namespace: 'finance',
      policies: [{ name: 'billing', generation: 7 }],
    });
    expect(
      lines.some(
        (l) => l['type'] === 'decision' && l['tool'] === 'delete_invoice' && l['enforced'] === 'deny',
      ),
    ).toBe(true);
    expect(lines.some((l) => l['type'] === 'mask')).toBe(true);
    expect(lines.at(-1)).toMatchObject({ type: 'close' });
    const v = await verifyRecording(summary.location);
    expect(v).toMatchObject({ ok: true, status: 'closed', sha256: summary.sha256 });
  });

  it('mcp-warden recordings verify/replay/export work on it', async () => {
    const v = cli();
    expect(await run(['verify', dir], v.io)).toBe(0);
    expect(v.out()).toContain(`OK   ${summary.location}`);

    const r = cli();
    expect(await run(['replay', summary.location], r.io)).toBe(0);
    const transcript = r.out();
    expect(transcript).toContain('pod billing-0 (namespace finance)');
    expect(transcript).toMatch(/→ client calls tools\/call get_invoice \{"id":17\}/);
    expect(transcript).toMatch(/✓ ALLOW tools\/call get_invoice by billing\/read/);
    expect(transcript).toMatch(
      /← server answers #\d+ \(tools\/call get_invoice\): text: invoice 17 paid with card \[masked:credit-card\]/,
    );
    expect(transcript).toMatch(
      /✗ DENY tools\/call delete_invoice by billing\/no-delete: invoices are never deleted by agents/,
    );
    expect(transcript).toContain('Hash chain verified');
    expect(transcript).not.toContain(CARD);

    const e = cli();
    expect(await run(['export', dir, '--tool', 'delete_*', '--since', '1h'], e.io)).toBe(0);
    const events = e
      .out()
      .trimEnd()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(events.length).toBeGreaterThanOrEqual(2);
    for (const ev of events)
      expect(ev).toMatchObject({ tool: 'delete_invoice', pod: 'billing-0', session: summary.session });
  });

  it.each([
    [
      'one byte edited',
      (l: string[]) => {
        l[3] = l[3]!.replace('"', "'");
        return l;
      },
      4,
    ],
    ['one line deleted', (l: string[]) => l.filter((_, i) => i !== 2), 3],
    [
      'two lines swapped',
      (l: string[]) => {
        [l[4], l[5]] = [l[5]!, l[4]!];
        return l;
      },
      5,
    ],
    ['the tail truncated without a trailer', (l: string[]) => l.slice(0, 5), 6],
  ])('verify exits 1 and names line %s', async (_what, edit, line) => {
    const tamperDir = mkdtempSync(join(tmpdir(), 'tamper-'));
    try {
      const lines = readFileSync(summary.location, 'utf8').split('\n').slice(0, -1);
      const file = join(tamperDir, 'rec.jsonl');
      writeFileSync(file, `${edit(lines).join('\n')}\n`);
      const t = cli();
      expect(await run(['verify', tamperDir], t.io)).toBe(1);
      expect(t.out()).toContain(`FAIL ${file}:${line}: `);
    } finally {
      rmSync(tamperDir, { recursive: true, force: true });
    }
  });

  it('recovers the recording of a session cut off by a crash', async () => {
    const { client, transport } = await session('auditor-2');
    await client.callTool({ name: 'get_invoice', arguments: { id: 18 } });
    await recorder.flush();
    // The bytes on disk at the moment the process dies: copy them before the session closes.
    const open = readdirSync(dir).filter(
      (n) => !readFileSync(join(dir, n), 'utf8').includes('"type":"close"'),
    );
    expect(open).toHaveLength(1);
    const crashDir = mkdtempSync(join(tmpdir(), 'crash-'));
    try {
      const crashed = join(crashDir, open[0]!);
      copyFileSync(join(dir, open[0]!), crashed);
      expect((await verifyRecording(crashed)).ok).toBe(false);
      const restarted = createRecorder({ directory: crashDir });
      expect(restarted.recovered).toEqual([crashed]);
      expect(await verifyRecording(crashed)).toMatchObject({ ok: true, status: 'truncated' });
      const t = cli();
      expect(await run(['replay', crashed], t.io)).toBe(0);
      expect(t.out()).toContain('■ recording truncated');
      await restarted.close();
    } finally {
      rmSync(crashDir, { recursive: true, force: true });
      await transport.terminateSession();
      await client.close();
    }
  });
});
