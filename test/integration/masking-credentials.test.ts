import { readFileSync } from 'node:fs';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { z } from 'zod';
import { positives } from '../../pkg/mask/samples.js';
import type { RecordingSummary } from '../../pkg/record/index.js';
import { jsonForms, type MaskingProxy, startMaskingProxy, teeFetch } from './helpers/masking-proxy.js';
import { hostMcpServer } from './helpers/sdk-host.js';

/**
 * A real SDK server and client through the gateway: a tool that echoes the HTTP headers it got
 * (structured, and as a curl line) and one that reads a .env file. Tokens named by their key or
 * assignment, Authorization and Cookie headers and API keys of well-known formats are masked in
 * the bytes the client receives and in the recording; `max_tokens`, `nextPageToken` and MCP's
 * own progress token pass unchanged.
 */
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

let upstream: { url: string; close(): Promise<void> };
let setup: MaskingProxy;

beforeAll(async () => {
  upstream = await startUpstream();
  setup = await startMaskingProxy({ name: 'masking-credentials', upstream: upstream.url });
});

afterAll(async () => {
  await setup?.close();
  await upstream?.close();
});

it('masks a header dump and a .env file on the wire and in the recording; max_tokens, nextPageToken and the progress token pass', async () => {
  const token = await setup.token('user-7');
  const tee = teeFetch();
  const client = new Client({ name: 'credentials-client', version: '1.0.0' });
  const transport = new StreamableHTTPClientTransport(new URL(setup.mcpUrl), {
    requestInit: { headers: { authorization: `Bearer ${token}` } },
    fetch: tee.fetch,
  });
  await client.connect(transport);
  const recorded = new Promise<RecordingSummary>((resolve) => setup.proxy.events.once('recording', resolve));

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
      // Masked whole for its key, named by the detector that knows a bearer credential.
      authorization: '[masked:api-key]',
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
  const wire = tee.received();
  for (const s of clear) {
    for (const form of jsonForms(s)) {
      expect(wire).not.toContain(form);
      expect(recording).not.toContain(form);
    }
  }
});
