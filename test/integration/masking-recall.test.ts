import { readFileSync } from 'node:fs';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { z } from 'zod';
import type { RecordingSummary } from '../../pkg/record/index.js';
import { jsonForms, type MaskingProxy, startMaskingProxy, teeFetch } from './helpers/masking-proxy.js';
import { hostMcpServer } from './helpers/sdk-host.js';

/**
 * A real SDK server and client through the gateway: a card number in fullwidth digits, an e-mail
 * with a fullwidth full stop and a private key split over three text blocks are masked in the
 * bytes the client receives and in the recording.
 */
const card = '４１１１ １１１１ １１１１ １１１１';
const email = 'ops@example．com';
const body = [
  'MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun',
  'VTLw7onLRnrq0/IzW7yWR7QkrmBL7jTKEn5u+qKhbwKfBstIs+bMY2Zkp18gnTxK',
  'kqhkiG9w0BAQEFAASCBKgwggSkAgEAAoIBAQC7VJTUt9Us8cKjMzEfYyjiWA4R4',
];
/** What must never leave the gateway, as text and as JSON escapes it could travel as. */
const clear = [card, email, ...body, 'ops@example', '１１１１ １１１１'];

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

let upstream: { url: string; close(): Promise<void> };
let setup: MaskingProxy;

beforeAll(async () => {
  upstream = await startUpstream();
  setup = await startMaskingProxy({
    name: 'masking-recall',
    upstream: upstream.url,
    rules: [{ name: 'read', subjects: [{ any: true }], match: { tools: ['get_*'] }, action: 'allow' }],
  });
});

afterAll(async () => {
  await setup?.close();
  await upstream?.close();
});

it('masks a fullwidth card, a look-alike e-mail and a key split over three blocks, on the wire and in the recording', async () => {
  const token = await setup.token('user-9');
  // Every byte of every response body the client receives.
  const tee = teeFetch();
  const client = new Client({ name: 'recall-client', version: '1.0.0' });
  const transport = new StreamableHTTPClientTransport(new URL(setup.mcpUrl), {
    requestInit: { headers: { authorization: `Bearer ${token}` } },
    fetch: tee.fetch,
  });
  await client.connect(transport);
  const recorded = new Promise<RecordingSummary>((resolve) => setup.proxy.events.once('recording', resolve));

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

  const wire = tee.received();
  expect(wire).toContain('[masked:private-key]');
  for (const s of clear) {
    for (const form of jsonForms(s)) {
      expect(wire).not.toContain(form);
      expect(recording).not.toContain(form);
    }
  }
});
