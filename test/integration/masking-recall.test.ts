import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { pino } from 'pino';
import { z } from 'zod';
import { type DevIssuer, startDevIssuer } from '../../pkg/identity/dev-issuer.js';
import { createAuthenticator } from '../../pkg/identity/index.js';
import { detectorNames } from '../../pkg/mask/index.js';
import { createMetrics } from '../../pkg/metrics/catalogue.js';
import type { PolicySource } from '../../pkg/policy/decision.js';
import { compilePolicies, type PolicyDocument } from '../../pkg/policy/index.js';
import { createProxy } from '../../pkg/proxy/index.js';
import type { WardenProxy } from '../../pkg/proxy/options.js';
import { createRecorder, type RecordingSummary } from '../../pkg/record/index.js';
import { hostMcpServer } from './helpers/sdk-host.js';

/**
 * A real SDK server and client through the gateway: a card number in fullwidth digits, an e-mail
 * with a fullwidth full stop and a private key split over three text blocks are masked in the
 * bytes the client receives and in the recording.
 */
const AUDIENCE = 'api://mask-recall';
const card = '４１１１ １１１１ １１１１ １１１１';
const email = 'ops@example．com';
const body = [
  'MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun',
  'VTLw7onLRnrq0/IzW7yWR7QkrmBL7jTKEn5u+qKhbwKfBstIs+bMY2Zkp18gnTxK',
  'kqhkiG9w0BAQEFAASCBKgwggSkAgEAAoIBAQC7VJTUt9Us8cKjMzEfYyjiWA4R4',
];
/** What must never leave the gateway, as text and as JSON escapes it could travel as. */
const clear = [card, email, ...body, 'ops@example', '１１１１ １１１１'];
const escaped = (s: string): string => JSON.stringify(s).slice(1, -1);
const asciiEscaped = (s: string): string =>
  escaped(s).replace(/[\u0080-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);

function startUpstream(): Promise<{ url: string; close(): Promise<void> }> {
  return hostMcpServer(() => {
    const server = new McpServer({ name: 'ops', version: '1.0.0' });
    server.registerTool(
      'get_deploy_info',
      { description: 'Deploy info', inputSchema: { env: z.string() } },
      async () => ({
        content: [
          { type: 'text', text: `billing card ${card}, contact ${email}` },
          { type: 'text', text: 'deploy key:\n-----BEGIN RSA PRIVATE KEY-----\n' },
          { type: 'text', text: `${body[0]}\n${body[1]}\n` },
          { type: 'text', text: `${body[2]}\n-----END RSA PRIVATE KEY-----\nrotate it monthly` },
        ],
      }),
    );
    return server;
  });
}

function policy(issuer: string): PolicyDocument {
  return {
    apiVersion: 'mcpwarden.io/v1alpha1',
    kind: 'MCPPolicy',
    metadata: { name: 'recall', generation: 1 },
    spec: {
      podSelector: {},
      identity: { issuers: [{ issuer, audiences: [AUDIENCE] }] },
      rules: [{ name: 'read', subjects: [{ any: true }], match: { tools: ['get_*'] }, action: 'allow' }],
      masking: [{ name: 'pii', detectors: [...detectorNames] as never }],
      recording: { enabled: true, payloads: 'masked' },
    },
  } as PolicyDocument;
}

let issuer: DevIssuer;
let upstream: { url: string; close(): Promise<void> };
let proxy: WardenProxy;
let dir: string;
let mcpUrl: string;

beforeAll(async () => {
  issuer = await startDevIssuer();
  upstream = await startUpstream();
  dir = mkdtempSync(join(tmpdir(), 'masking-recall-'));
  const metrics = createMetrics({ defaultMetrics: false });
  const engine = compilePolicies([policy(issuer.v2Issuer)]);
  const source: PolicySource = {
    current: () => engine,
    onChange: () => () => undefined,
    close: async () => undefined,
  };
  const logger = pino({ level: 'silent' });
  proxy = createProxy({
    upstream: upstream.url,
    policySource: source,
    authenticator: createAuthenticator({ allowInsecureLoopback: true }),
    metrics,
    recorder: createRecorder({ directory: dir, metrics, logger }),
    podName: 'masking-recall',
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

it('masks a fullwidth card, a look-alike e-mail and a key split over three blocks, on the wire and in the recording', async () => {
  const token = await issuer.issueToken({ audience: AUDIENCE, oid: 'user-9' });
  // Every byte of every response body the client receives.
  const received: Buffer[] = [];
  const tee = async (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
    const res = await fetch(input, init);
    if (res.body === null) return res;
    const bytes = Buffer.from(await res.arrayBuffer());
    received.push(bytes);
    return new Response(bytes, { status: res.status, statusText: res.statusText, headers: res.headers });
  };
  const client = new Client({ name: 'recall-client', version: '1.0.0' });
  const transport = new StreamableHTTPClientTransport(new URL(mcpUrl), {
    requestInit: { headers: { authorization: `Bearer ${token}` } },
    fetch: tee,
  });
  await client.connect(transport);
  const recorded = new Promise<RecordingSummary>((resolve) => proxy.events.once('recording', resolve));

  const result = await client.callTool({ name: 'get_deploy_info', arguments: { env: 'prod' } });
  const texts = (result.content as Array<{ text: string }>).map((c) => c.text);
  expect(texts).toEqual([
    'billing card [masked:credit-card], contact [masked:email]',
    'deploy key:\n[masked:private-key]',
    '[masked:private-key]',
    '[masked:private-key]\nrotate it monthly',
  ]);

  await transport.terminateSession();
  await client.close();
  const recording = readFileSync((await recorded).location, 'utf8');
  expect(recording).toContain('[masked:credit-card]');
  expect(recording.split('[masked:private-key]').length - 1).toBeGreaterThanOrEqual(3);

  const wire = Buffer.concat(received).toString('utf8');
  expect(wire).toContain('[masked:private-key]');
  for (const s of clear) {
    for (const form of [s, escaped(s), asciiEscaped(s)]) {
      expect(wire).not.toContain(form);
      expect(recording).not.toContain(form);
    }
  }
});
