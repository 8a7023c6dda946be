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
import { positives } from '../../pkg/mask/samples.js';
import { createMetrics } from '../../pkg/metrics/catalogue.js';
import { compilePolicies, type PolicyDocument } from '../../pkg/policy/index.js';
import { createProxy } from '../../pkg/proxy/index.js';
import type { WardenProxy } from '../../pkg/proxy/options.js';
import { createRecorder, type RecordingSummary } from '../../pkg/record/index.js';
import { hostMcpServer } from './helpers/sdk-host.js';
import { testSource } from './helpers/test-policy.js';

/**
 * A real SDK server and client through the gateway: a tool that echoes the HTTP headers it got
 * (structured, and as a curl line) and one that reads a .env file. Tokens named by their key or
 * assignment, Authorization and Cookie headers and API keys of well-known formats are masked in
 * the bytes the client receives and in the recording; `max_tokens`, `nextPageToken` and MCP's
 * own progress token pass unchanged.
 */
const AUDIENCE = 'api://mask-credentials';
const bearer = 'ya29.a0AfH6SMBx3kq9' + 'Zt7Lm2Pq';
const cookie = 'sid=s%3A8f14e45fceea167a.' + 'Xk2P9q';
const authToken = '5f0c8b7e2a91' + 'd3c4';
const session = 'IQoJb3JpZ2luX2VjEJr' + 'zZ9k';
const refresh = '1//0gLx7yN2pQ8rS3tU4' + 'vW5x';
const basic = Buffer.from('deploy:' + 'hunter2-prod').toString('base64');
const [openai, anthropic] = [
  positives['api-key']!.find((k) => k.startsWith('sk-proj-'))!,
  positives['api-key']!.find((k) => k.startsWith('sk-ant-'))!,
];
const hf = positives['api-key']!.find((k) => k.startsWith('hf_'))!;
const nextPage = 'CiAKGjBpNDd2Nmp2Zml2cXRwYjBpOXA';

/** What must never leave the gateway. */
const clear = [bearer, cookie, authToken, session, refresh, basic, openai, anthropic, hf];
const escaped = (s: string): string => JSON.stringify(s).slice(1, -1);

const env = [
  '# deploy/.env',
  `AWS_SESSION_TOKEN=${session}`,
  `OPENAI_API_KEY=${openai}`,
  `refresh_token: ${refresh}`,
  `anthropic = ${anthropic}`,
  `hf ${hf}`,
  `2026-11-30T07:00:00Z GET /v1 authorization: Basic ${basic}`,
  'MAX_TOKENS=1024',
  `PAGE_TOKEN=${nextPage}`,
].join('\n');

function startUpstream(): Promise<{ url: string; close(): Promise<void> }> {
  return hostMcpServer(() => {
    const server = new McpServer({ name: 'ops', version: '1.0.0' });
    server.registerTool(
      'get_headers',
      { description: 'Echo the request headers', inputSchema: { url: z.string() } },
      async (_args, extra) => {
        const progressToken = extra._meta?.progressToken;
        if (progressToken !== undefined) {
          await extra.sendNotification({
            method: 'notifications/progress',
            params: { progressToken, progress: 1, total: 2 },
          });
        }
        const headers = {
          authorization: `Bearer ${bearer}`,
          cookie,
          'x-auth-token': authToken,
          'user-agent': 'curl/8.5.0',
        };
        return {
          content: [
            {
              type: 'text',
              text: `curl -H "Authorization: Bearer ${bearer}" -H 'Cookie: ${cookie}' https://api.example.com/v1`,
            },
          ],
          structuredContent: {
            headers,
            request: { max_tokens: 1024, nextPageToken: nextPage, session_token: session },
          },
        };
      },
    );
    server.registerTool(
      'read_env',
      { description: 'Read a file', inputSchema: { path: z.string() } },
      async () => ({ content: [{ type: 'text', text: env }] }),
    );
    return server;
  });
}

function policy(issuer: string): PolicyDocument {
  return {
    apiVersion: 'mcpwarden.io/v1alpha1',
    kind: 'MCPPolicy',
    metadata: { name: 'credentials', generation: 1 },
    spec: {
      podSelector: {},
      identity: { issuers: [{ issuer, audiences: [AUDIENCE] }] },
      rules: [{ name: 'all', subjects: [{ any: true }], match: {}, action: 'allow' }],
      masking: [{ name: 'secrets', detectors: [...detectorNames] as never }],
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
  dir = mkdtempSync(join(tmpdir(), 'masking-credentials-'));
  const metrics = createMetrics({ defaultMetrics: false });
  const logger = pino({ level: 'silent' });
  proxy = createProxy({
    upstream: upstream.url,
    policySource: testSource(compilePolicies([policy(issuer.v2Issuer)])),
    authenticator: createAuthenticator({ allowInsecureLoopback: true }),
    metrics,
    recorder: createRecorder({ directory: dir, metrics, logger }),
    podName: 'masking-credentials',
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

it('masks a header dump and a .env file on the wire and in the recording; max_tokens, nextPageToken and the progress token pass', async () => {
  const token = await issuer.issueToken({ audience: AUDIENCE, oid: 'user-7' });
  const received: Buffer[] = [];
  const tee = async (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
    const res = await fetch(input, init);
    if (res.body === null) return res;
    const bytes = Buffer.from(await res.arrayBuffer());
    received.push(bytes);
    return new Response(bytes, { status: res.status, statusText: res.statusText, headers: res.headers });
  };
  const client = new Client({ name: 'credentials-client', version: '1.0.0' });
  const transport = new StreamableHTTPClientTransport(new URL(mcpUrl), {
    requestInit: { headers: { authorization: `Bearer ${token}` } },
    fetch: tee,
  });
  await client.connect(transport);
  const recorded = new Promise<RecordingSummary>((resolve) => proxy.events.once('recording', resolve));

  const progress: number[] = [];
  const headers = await client.callTool(
    { name: 'get_headers', arguments: { url: 'https://api.example.com/v1' } },
    undefined,
    { onprogress: (p) => progress.push(p.progress) },
  );
  // The progress notification reached the client: its token was not masked.
  expect(progress).toEqual([1]);
  expect(headers.structuredContent).toEqual({
    headers: {
      authorization: '[masked:password-assignment]',
      cookie: '[masked:password-assignment]',
      'x-auth-token': '[masked:password-assignment]',
      'user-agent': 'curl/8.5.0',
    },
    request: { max_tokens: 1024, nextPageToken: nextPage, session_token: '[masked:password-assignment]' },
  });
  expect((headers.content as Array<{ text: string }>)[0]!.text).toBe(
    `curl -H "Authorization: Bearer [masked:api-key]" -H 'Cookie: [masked:password-assignment]' https://api.example.com/v1`,
  );

  const file = await client.callTool({ name: 'read_env', arguments: { path: 'deploy/.env' } });
  expect((file.content as Array<{ text: string }>)[0]!.text).toBe(
    [
      '# deploy/.env',
      'AWS_SESSION_TOKEN=[masked:password-assignment]',
      'OPENAI_API_KEY=[masked:api-key]',
      'refresh_token: [masked:password-assignment]',
      'anthropic = [masked:api-key]',
      'hf [masked:api-key]',
      '2026-11-30T07:00:00Z GET /v1 authorization: Basic [masked:password-assignment]',
      'MAX_TOKENS=1024',
      `PAGE_TOKEN=${nextPage}`,
    ].join('\n'),
  );

  await transport.terminateSession();
  await client.close();
  const recording = readFileSync((await recorded).location, 'utf8');
  expect(recording).toContain('[masked:api-key]');
  expect(recording).toContain(nextPage);
  const wire = Buffer.concat(received).toString('utf8');
  for (const s of clear) {
    for (const form of [s, escaped(s)]) {
      expect(wire).not.toContain(form);
      expect(recording).not.toContain(form);
    }
  }
});
