import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import {
  Client as ClientV2,
  StreamableHTTPClientTransport as TransportV2,
} from '@modelcontextprotocol/client';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { pino } from 'pino';
import { z } from 'zod';
import { type DevIssuer, startDevIssuer } from '../../pkg/identity/dev-issuer.js';
import { createAuthenticator } from '../../pkg/identity/index.js';
import { positives, secretOf } from '../../pkg/mask/samples.js';
import { createMetrics, type Metrics } from '../../pkg/metrics/catalogue.js';
import type { PolicySource } from '../../pkg/policy/decision.js';
import { compilePolicies, type PolicyDocument } from '../../pkg/policy/index.js';
import { createProxy } from '../../pkg/proxy/index.js';
import type { WardenProxy } from '../../pkg/proxy/options.js';
import { createRecorder, type RecordingSummary, verifyRecording } from '../../pkg/record/index.js';
import { hostMcpServer } from './helpers/sdk-host.js';

/**
 * A real SDK v1 server and client through the gateway: a tool result carrying every detector's
 * sample is masked in `content` and `structuredContent`, the client still validates it against the
 * tool's outputSchema, and no clear value reaches the recording, the logs or the metrics.
 */
const AUDIENCE = 'api://mask-test';
const sample = (d: string): string => positives[d]![0]!;

const customer = {
  name: 'Ann Example',
  email: sample('email'),
  phone: sample('phone'),
  card: sample('credit-card'),
  iban: sample('iban'),
  ssn: sample('us-ssn'),
  session: sample('jwt'),
  deployKey: sample('private-key'),
  awsKey: sample('aws-access-key'),
  storageKey: sample('azure-storage-key'),
  sasUrl: `https://acct.blob.core.windows.net/c/b.txt?${sample('azure-sas-token')}`,
  githubPat: sample('github-token'),
  slackBot: sample('slack-token'),
  llmKey: sample('api-key'),
  config: `db_host=10.0.0.1 ${sample('password-assignment')}`,
  ticket: 'TCK-123456',
  balance: 1234.56,
  orders: 3,
};
/** Every clear value that must never leave the gateway. */
const secrets = [
  ...Object.entries(positives).flatMap(([d, values]) => values.slice(0, 1).map((v) => secretOf(d, v))),
  'TCK-123456',
];

function startUpstream(): Promise<{ url: string; close(): Promise<void> }> {
  const build = (): McpServer => {
    const server = new McpServer({ name: 'crm', version: '1.0.0' });
    server.registerTool(
      'get_customer',
      {
        description: 'A customer record',
        inputSchema: { id: z.number() },
        outputSchema: {
          name: z.string(),
          email: z.string().email(),
          phone: z.string(),
          card: z.string(),
          iban: z.string(),
          ssn: z.string(),
          session: z.string(),
          deployKey: z.string(),
          awsKey: z.string(),
          storageKey: z.string(),
          sasUrl: z.string(),
          githubPat: z.string(),
          slackBot: z.string(),
          llmKey: z.string(),
          config: z.string(),
          ticket: z.string(),
          balance: z.number(),
          orders: z.number().int(),
        },
        annotations: { readOnlyHint: true },
      },
      async () => ({
        content: [
          { type: 'text', text: JSON.stringify(customer, null, 2) },
          { type: 'text', text: `Summary: ${Object.values(customer).join(' | ')}` },
          {
            type: 'resource',
            resource: {
              uri: 'crm://customers/7',
              mimeType: 'text/plain',
              text: `card ${customer.card}, mail ${customer.email}`,
            },
          },
        ],
        structuredContent: customer,
      }),
    );
    return server;
  };
  return hostMcpServer(build);
}

function policy(issuer: string): PolicyDocument {
  return {
    apiVersion: 'mcpwarden.io/v1alpha1',
    kind: 'MCPPolicy',
    metadata: { name: 'crm-pii', generation: 4 },
    spec: {
      podSelector: {},
      identity: { issuers: [{ issuer, audiences: [AUDIENCE] }] },
      rules: [{ name: 'read', subjects: [{ any: true }], match: { tools: ['get_*'] }, action: 'allow' }],
      masking: [
        {
          name: 'pii',
          detectors: Object.keys(positives) as never,
          patterns: [{ name: 'ticket', regex: 'TCK-[0-9]{6}' }],
          fields: ['$.structuredContent.balance'],
        },
      ],
      recording: { enabled: true, payloads: 'masked' },
    },
  } as PolicyDocument;
}

let issuer: DevIssuer;
let upstream: { url: string; close(): Promise<void> };
let proxy: WardenProxy;
let metrics: Metrics;
let dir: string;
let mcpUrl: string;
const logs = new PassThrough();
const logChunks: Buffer[] = [];
logs.on('data', (c: Buffer) => logChunks.push(c));

beforeAll(async () => {
  issuer = await startDevIssuer();
  upstream = await startUpstream();
  dir = mkdtempSync(join(tmpdir(), 'masking-it-'));
  metrics = createMetrics({ defaultMetrics: false });
  const engine = compilePolicies([policy(issuer.v2Issuer)]);
  const source: PolicySource = {
    current: () => engine,
    onChange: () => () => undefined,
    close: async () => undefined,
  };
  const logger = pino({ level: 'trace' }, logs);
  proxy = createProxy({
    upstream: upstream.url,
    policySource: source,
    authenticator: createAuthenticator({ allowInsecureLoopback: true }),
    metrics,
    recorder: createRecorder({ directory: dir, metrics, logger }),
    podName: 'masking-it',
    logger,
  });
  mcpUrl = `${(await proxy.listen('127.0.0.1', 0)).url}/mcp`;
});

afterAll(async () => {
  await proxy?.close();
  await upstream?.close();
  await issuer?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('masking through the gateway (SDK v1 client and server)', () => {
  it('masks every detector in content and structuredContent; the client validates the outputSchema; nothing leaks', async () => {
    const token = await issuer.issueToken({ audience: AUDIENCE, oid: 'user-7' });
    const client = new Client({ name: 'mask-client', version: '1.0.0' });
    const transport = new StreamableHTTPClientTransport(new URL(mcpUrl), {
      requestInit: { headers: { authorization: `Bearer ${token}` } },
    });
    await client.connect(transport);
    const recorded = new Promise<RecordingSummary>((resolve) => proxy.events.once('recording', resolve));

    const tools = await client.listTools();
    expect(tools.tools.map((t) => t.name)).toEqual(['get_customer']);
    // callTool validates structuredContent against the cached outputSchema (ajv with formats): it throws when invalid.
    const result = await client.callTool({ name: 'get_customer', arguments: { id: 7 } });

    const sc = result.structuredContent as Record<string, unknown>;
    expect(sc['name']).toBe('Ann Example');
    expect(sc['email']).toBe('masked-email@masked.invalid');
    expect(sc['phone']).toBe('[masked:phone]');
    expect(sc['card']).toBe('[masked:credit-card]');
    expect(sc['iban']).toBe('[masked:iban]');
    expect(sc['ssn']).toBe('[masked:us-ssn]');
    expect(sc['session']).toBe('[masked:jwt]');
    expect(sc['deployKey']).toBe('[masked:private-key]');
    expect(sc['awsKey']).toBe('[masked:aws-access-key]');
    expect(sc['storageKey']).toBe('[masked:azure-storage-key]');
    expect(sc['sasUrl']).toMatch(/&sig=\[masked:azure-sas-token\]$/);
    expect(sc['githubPat']).toBe('[masked:github-token]');
    expect(sc['slackBot']).toBe('[masked:slack-token]');
    expect(sc['llmKey']).toBe('[masked:api-key]');
    expect(sc['config']).toBe('db_host=10.0.0.1 password=[masked:password-assignment]');
    expect(sc['ticket']).toBe('[masked:ticket]');
    expect(sc['balance']).toBe(0);
    expect(sc['orders']).toBe(3);

    const content = result.content as Array<Record<string, unknown>>;
    // The text copy of structuredContent is the masked structuredContent, serialized the same way.
    expect(content[0]!['text']).toBe(JSON.stringify(sc, null, 2));
    const summary = String(content[1]!['text']);
    for (const d of Object.keys(positives)) expect(summary).toContain(`[masked:${d}]`);
    expect((content[2]!['resource'] as { text: string }).text).toBe(
      'card [masked:credit-card], mail [masked:email]',
    );
    const clientSees = JSON.stringify(result);
    for (const s of secrets) expect(clientSees).not.toContain(s);

    await transport.terminateSession();
    await client.close();
    const rec = await recorded;

    // The recording holds masked payloads only, and its chain verifies.
    const recording = readFileSync(rec.location, 'utf8');
    expect(recording).toContain('[masked:credit-card]');
    expect(await verifyRecording(rec.location)).toMatchObject({ ok: true, status: 'closed' });
    expect(rec).toMatchObject({ principal: expect.stringContaining('user-7'), pod: 'masking-it' });

    // Metrics count per detector, without values.
    const text = await metrics.registry.metrics();
    for (const d of Object.keys(positives)) {
      expect(text).toMatch(
        new RegExp(`mcp_warden_masked_values_total\\{policy="crm-pii",detector="${d}"\\} [1-9]`),
      );
    }
    expect(text).toMatch(/mcp_warden_masked_values_total\{policy="crm-pii",detector="field"\} 1/);

    const logText = Buffer.concat(logChunks).toString('utf8');
    expect(logText.length).toBeGreaterThan(0);
    for (const s of secrets) {
      expect(recording).not.toContain(s);
      expect(logText).not.toContain(s);
      expect(text).not.toContain(s);
    }
  });

  it('keeps the masked result valid for the v2 SDK client as well', async () => {
    const token = await issuer.issueToken({ audience: AUDIENCE, oid: 'user-8' });
    const client = new ClientV2({ name: 'mask-client-v2', version: '1.0.0' });
    await client.connect(
      new TransportV2(new URL(mcpUrl), { requestInit: { headers: { authorization: `Bearer ${token}` } } }),
    );
    try {
      await client.listTools();
      const result = await client.callTool({ name: 'get_customer', arguments: { id: 7 } });
      const sc = result.structuredContent as Record<string, unknown>;
      expect(sc['email']).toBe('masked-email@masked.invalid');
      expect(sc['card']).toBe('[masked:credit-card]');
      expect(sc['balance']).toBe(0);
      const seen = JSON.stringify(result);
      for (const s of secrets) expect(seen).not.toContain(s);
    } finally {
      await client.close();
    }
  });
});
