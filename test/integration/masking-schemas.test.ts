import { readFileSync } from 'node:fs';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { ElicitRequestSchema } from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';
import type { RecordingSummary } from '../../pkg/record/index.js';
import { type MaskingProxy, startMaskingProxy } from './helpers/masking-proxy.js';
import { hostMcpServer } from './helpers/sdk-host.js';

/**
 * Tools and forms that take a secret (a `password` parameter, an `apiKey`) stay usable with every
 * detector on: the schema under a password-like name reaches the client as a schema, the secret
 * the client sends reaches the server, and neither the secret nor a schema's default value
 * reaches the client's copy of the list or the recording.
 */
const PASSWORD = 'Tr0ub4dor-and-3';
const API_KEY = 'k-77f0c2a9e1b34d5a';
const ELICITED = 'elicited-s3cret-991';
const DEFAULT_SECRET = 'changeme-default-55';

const received: { login?: { password: string; apiKey?: string }; elicited?: unknown } = {};

function startUpstream(): Promise<{ url: string; close(): Promise<void> }> {
  return hostMcpServer(() => {
    const server = new McpServer({ name: 'accounts', version: '1.0.0' });
    server.registerTool(
      'login',
      {
        description: 'Log in to the accounts service',
        inputSchema: {
          username: z.string(),
          password: z.string().min(8),
          apiKey: z.string().default(DEFAULT_SECRET),
        },
      },
      async ({ password, apiKey }) => {
        received.login = { password, apiKey };
        return { content: [{ type: 'text', text: 'logged in' }] };
      },
    );
    server.registerTool('unlock', { description: 'Asks for the vault password' }, async () => {
      const answer = await server.server.elicitInput({
        message: 'Vault password?',
        requestedSchema: {
          type: 'object',
          properties: { password: { type: 'string', title: 'Password', minLength: 4 } },
          required: ['password'],
        },
      });
      received.elicited = answer.content;
      return { content: [{ type: 'text', text: `unlock: ${answer.action}` }] };
    });
    return server;
  });
}

let upstream: { url: string; close(): Promise<void> };
let setup: MaskingProxy;

beforeAll(async () => {
  upstream = await startUpstream();
  setup = await startMaskingProxy({
    name: 'masking-schemas',
    upstream: upstream.url,
    rules: [
      { name: 'all', subjects: [{ any: true }], match: { tools: ['*'] }, action: 'allow' },
      {
        name: 'forms',
        subjects: [{ any: true }],
        match: { methods: ['elicitation/create'] },
        action: 'allow',
      },
    ],
  });
});

afterAll(async () => {
  await setup?.close();
  await upstream?.close();
});

it('keeps the schemas of secret parameters and forms, masks their values', async () => {
  const token = await setup.token('user-4');
  const client = new Client(
    { name: 'schemas-client', version: '1.0.0' },
    { capabilities: { elicitation: {} } },
  );
  client.setRequestHandler(ElicitRequestSchema, async (request) => {
    // The form arrives as the server sent it: a string field the user can fill in.
    expect('requestedSchema' in request.params && request.params.requestedSchema).toEqual({
      type: 'object',
      properties: { password: { type: 'string', title: 'Password', minLength: 4 } },
      required: ['password'],
    });
    return { action: 'accept', content: { password: ELICITED } };
  });
  const transport = new StreamableHTTPClientTransport(new URL(setup.mcpUrl), {
    requestInit: { headers: { authorization: `Bearer ${token}` } },
  });
  await client.connect(transport);
  const recorded = new Promise<RecordingSummary>((resolve) => setup.proxy.events.once('recording', resolve));

  const { tools } = await client.listTools();
  const login = tools.find((t) => t.name === 'login')!;
  const properties = login.inputSchema.properties as Record<string, Record<string, unknown>>;
  expect(properties['username']).toEqual({ type: 'string' });
  expect(properties['password']).toEqual({ type: 'string', minLength: 8 });
  // The schema stays a schema; the default value a secret parameter carries does not pass.
  expect(properties['apiKey']).toEqual({ type: 'string', default: '[masked:password-assignment]' });
  expect(login.inputSchema.required).toEqual(['username', 'password']);

  const result = await client.callTool({
    name: 'login',
    arguments: { username: 'ann', password: PASSWORD, apiKey: API_KEY },
  });
  expect(result.isError).toBeFalsy();
  // The server gets the secrets the client sent: masking protects what is shown and kept, not the call.
  expect(received.login).toEqual({ password: PASSWORD, apiKey: API_KEY });

  const unlocked = await client.callTool({ name: 'unlock', arguments: {} });
  expect((unlocked.content as Array<{ text: string }>)[0]!.text).toBe('unlock: accept');
  expect(received.elicited).toEqual({ password: ELICITED });

  await transport.terminateSession();
  await client.close();
  const recording = readFileSync((await recorded).location, 'utf8');
  expect(recording).toContain('"password":{"type":"string","minLength":8}');
  for (const secret of [PASSWORD, API_KEY, ELICITED, DEFAULT_SECRET]) expect(recording).not.toContain(secret);
});
