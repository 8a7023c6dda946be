/**
 * mcp-warden's conformance upstream for protocol revision 2026-07-28 (stateless requests,
 * `server/discover`, multi-round-trip `input_required` results, `subscriptions/listen`,
 * `Mcp-Method`/`Mcp-Name`/`Mcp-Param-*` headers, caching hints). Written here on the official v2
 * SDK (`@modelcontextprotocol/server` 2.x, `createMcpHandler` with `legacy: 'reject'`: this
 * endpoint serves 2026-07-28 only; `server.ts` serves the 2025 revisions with sessions).
 *
 * It implements what the 2026-07-28 server scenarios of `@modelcontextprotocol/conformance`
 * 0.2.0-alpha call. Run: `node test/conformance/server-2026.ts [--port 0] [--ready-file PATH]`;
 * prints `READY http://127.0.0.1:PORT/mcp`.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { parseArgs } from 'node:util';
import {
  type CallToolResult,
  createMcpHandler,
  fromJsonSchema,
  type GetPromptResult,
  hostHeaderValidationResponse,
  type InputRequests,
  type InputRequiredResult,
  inputRequired,
  localhostAllowedHostnames,
  localhostAllowedOrigins,
  type McpHttpHandler,
  McpServer,
  originValidationResponse,
  ProtocolError,
  ResourceTemplate,
  type ServerContext,
} from '@modelcontextprotocol/server';

const MCP_PATH = '/mcp';
const MAX_BODY_BYTES = 4 * 1024 * 1024;
const INVALID_PARAMS = -32602;

const PNG_1X1 =
  'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==';
const WAV_HEADER_ONLY = Buffer.concat([
  Buffer.from('RIFF'),
  Buffer.from([36 + 16, 0, 0, 0]),
  Buffer.from('WAVEfmt '),
  Buffer.from([16, 0, 0, 0, 1, 0, 1, 0, 0x40, 0x1f, 0, 0, 0x80, 0x3e, 0, 0, 2, 0, 16, 0]),
  Buffer.from('data'),
  Buffer.from([16, 0, 0, 0]),
  Buffer.alloc(16),
]).toString('base64');

const delay = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

// ---------------------------------------------------------------------------------------------
// requestState: HMAC-protected, because it comes back from the client (attacker-controlled).

const STATE_KEY = randomBytes(32);

function mintState(payload: Record<string, unknown>): string {
  const body = Buffer.from(JSON.stringify(payload)).toString('base64url');
  const mac = createHmac('sha256', STATE_KEY).update(body).digest('base64url');
  return `${body}.${mac}`;
}

/** The verified payload, or a -32602 error for state that fails its integrity check. */
function verifyState(state: unknown): Record<string, unknown> {
  const fail = (): never => {
    throw new ProtocolError(INVALID_PARAMS, 'requestState failed its integrity check');
  };
  if (typeof state !== 'string') return fail();
  const [body, mac] = state.split('.');
  if (body === undefined || mac === undefined) return fail();
  const expected = createHmac('sha256', STATE_KEY).update(body).digest();
  const given = Buffer.from(mac, 'base64url');
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) return fail();
  try {
    const parsed: unknown = JSON.parse(Buffer.from(body, 'base64url').toString('utf8'));
    return typeof parsed === 'object' && parsed !== null ? (parsed as Record<string, unknown>) : fail();
  } catch {
    return fail();
  }
}

// ---------------------------------------------------------------------------------------------

const text = (t: string): CallToolResult => ({ content: [{ type: 'text', text: t }] });

const noArgs = fromJsonSchema({ type: 'object', properties: {} });

const askName = inputRequired.elicit({
  message: 'What is your name?',
  requestedSchema: { type: 'object', properties: { name: { type: 'string' } }, required: ['name'] },
});

function elicitedField(response: unknown, field: string): string | undefined {
  if (typeof response !== 'object' || response === null) return undefined;
  const r = response as { action?: unknown; content?: Record<string, unknown> };
  const v = r.content?.[field];
  return r.action === 'accept' && (typeof v === 'string' || typeof v === 'boolean') ? String(v) : undefined;
}

function sampledText(response: unknown): string | undefined {
  if (typeof response !== 'object' || response === null) return undefined;
  const content = (response as { content?: unknown }).content;
  const block = Array.isArray(content) ? content[0] : content;
  return typeof block === 'object' && block !== null && typeof (block as { text?: unknown }).text === 'string'
    ? (block as { text: string }).text
    : undefined;
}

function rootsOf(response: unknown): string[] | undefined {
  if (typeof response !== 'object' || response === null) return undefined;
  const roots = (response as { roots?: unknown }).roots;
  return Array.isArray(roots)
    ? roots.map((r) => (typeof r === 'object' && r !== null ? String((r as { uri?: unknown }).uri) : ''))
    : undefined;
}

type ToolHandler = (
  args: Record<string, unknown>,
  ctx: ServerContext,
) => Promise<CallToolResult | InputRequiredResult>;
type ToolConfig = { description: string; inputSchema: ReturnType<typeof fromJsonSchema> };

/** The client capabilities a 2026-07-28 request declares in its `_meta` envelope. */
function clientCapabilities(ctx: { mcpReq: { envelope?: object } }): Record<string, unknown> {
  const envelope = (ctx.mcpReq.envelope ?? {}) as Record<string, unknown>;
  const caps = envelope['io.modelcontextprotocol/clientCapabilities'];
  return typeof caps === 'object' && caps !== null ? (caps as Record<string, unknown>) : {};
}

/** Changes to the tool and prompt lists, published to open `subscriptions/listen` streams. */
interface Notifier {
  toolsChanged(): void;
  promptsChanged(): void;
}

function buildServer(notifier: () => Notifier | undefined): McpServer {
  const server = new McpServer(
    { name: 'mcp-warden-conformance-upstream-2026', version: '1.0.0' },
    {
      capabilities: {
        tools: { listChanged: true },
        prompts: { listChanged: true },
        resources: {},
        completions: {},
        logging: {},
      },
    },
  );

  // Tools are listed by McpServer, but called through our own dispatcher (installed below):
  // McpServer turns every error a tool throws into an `isError` result, and two scenarios need
  // real JSON-RPC errors (-32021 missing capability, -32602 tampered requestState).
  const handlers = new Map<string, ToolHandler>();
  const tool = (name: string, config: ToolConfig, handler: ToolHandler): void => {
    handlers.set(name, handler);
    server.registerTool(name, config, handler as never);
  };

  // --- content tools (same fixtures as the 2025 upstream) ---
  tool('test_simple_text', { description: 'Returns one text block', inputSchema: noArgs }, async () =>
    text('This is a simple text response for testing.'),
  );
  tool(
    'test_image_content',
    { description: 'Returns one PNG image block', inputSchema: noArgs },
    async () => ({ content: [{ type: 'image', data: PNG_1X1, mimeType: 'image/png' }] }),
  );
  tool(
    'test_audio_content',
    { description: 'Returns one WAV audio block', inputSchema: noArgs },
    async () => ({ content: [{ type: 'audio', data: WAV_HEADER_ONLY, mimeType: 'audio/wav' }] }),
  );
  tool(
    'test_embedded_resource',
    { description: 'Returns an embedded text resource', inputSchema: noArgs },
    async () => ({
      content: [
        {
          type: 'resource',
          resource: {
            uri: 'test://embedded-resource',
            mimeType: 'text/plain',
            text: 'This is an embedded resource content.',
          },
        },
      ],
    }),
  );
  tool(
    'test_multiple_content_types',
    { description: 'Returns text, image and resource blocks', inputSchema: noArgs },
    async () => ({
      content: [
        { type: 'text', text: 'Multiple content types test:' },
        { type: 'image', data: PNG_1X1, mimeType: 'image/png' },
        {
          type: 'resource',
          resource: {
            uri: 'test://mixed-content-resource',
            mimeType: 'application/json',
            text: JSON.stringify({ test: 'data', value: 123 }),
          },
        },
      ],
    }),
  );
  tool(
    'test_error_handling',
    { description: 'Always answers with isError: true', inputSchema: noArgs },
    async () => ({
      isError: true,
      content: [{ type: 'text', text: 'This tool intentionally returns an error for testing' }],
    }),
  );
  tool(
    'test_tool_with_progress',
    { description: 'Reports progress 0, 50, 100 of 100', inputSchema: noArgs },
    async (_args, ctx) => {
      const token = ctx.mcpReq._meta?.progressToken;
      for (const progress of [0, 50, 100]) {
        if (token !== undefined) {
          await ctx.mcpReq.notify({
            method: 'notifications/progress',
            params: { progressToken: token, progress, total: 100 },
          });
        }
        if (progress < 100) await delay(50);
      }
      return text('Tool with progress executed successfully');
    },
  );
  tool(
    'test_logging_tool',
    { description: 'Logs one message, only when the request asked for a log level', inputSchema: noArgs },
    async (_args, ctx) => {
      // The SDK drops log notifications unless the request's envelope carries a logLevel.
      await ctx.mcpReq.log('info', 'test_logging_tool ran');
      return text('logged');
    },
  );
  tool(
    'json_schema_2020_12_tool',
    {
      description: 'Tool with JSON Schema 2020-12 features',
      inputSchema: fromJsonSchema({
        $schema: 'https://json-schema.org/draft/2020-12/schema',
        type: 'object',
        $defs: {
          address: {
            $anchor: 'addressDef',
            type: 'object',
            properties: { street: { type: 'string' }, city: { type: 'string' } },
          },
        },
        properties: {
          name: { type: 'string' },
          address: { $ref: '#/$defs/address' },
          contactMethod: { type: 'string', enum: ['phone', 'email'] },
          phone: { type: 'string' },
          email: { type: 'string' },
        },
        allOf: [{ anyOf: [{ required: ['phone'] }, { required: ['email'] }] }],
        if: { properties: { contactMethod: { const: 'phone' } }, required: ['contactMethod'] },
        // biome-ignore lint/suspicious/noThenProperty: the JSON Schema if/then/else keywords under test
        then: { required: ['phone'] },
        else: { required: ['email'] },
        additionalProperties: false,
      }),
    },
    async (args) => text(`Received: ${JSON.stringify(args)}`),
  );
  tool(
    'test_custom_header',
    {
      description: 'Echoes a region argument that is mirrored into the Mcp-Param-Region header (SEP-2243)',
      // `x-mcp-header` is a 2026-07-28 annotation the SDK's JSON Schema type does not know yet.
      inputSchema: fromJsonSchema<{ region: string }>({
        type: 'object',
        properties: {
          region: { type: 'string', description: 'Deployment region', 'x-mcp-header': 'Region' },
        },
        required: ['region'],
      } as Parameters<typeof fromJsonSchema>[0]),
    },
    async (args) => text(`region=${(args as { region: string }).region}`),
  );

  // --- stateless-era diagnostics (server-stateless scenario) ---
  tool(
    'test_missing_capability',
    {
      description: 'Needs the client sampling capability; refuses with -32021 without it',
      inputSchema: noArgs,
    },
    async (_args, ctx) => {
      if (clientCapabilities(ctx).sampling === undefined) {
        throw new ProtocolError(-32021, 'This tool needs the client sampling capability', {
          requiredCapabilities: { sampling: {} },
        });
      }
      return text('sampling capability present');
    },
  );
  tool(
    'test_streaming_elicitation',
    {
      description: 'Asks for input through an input_required result (never a top-level request)',
      inputSchema: noArgs,
    },
    async (_args, ctx) => {
      const name = elicitedField(ctx.mcpReq.inputResponses?.user_name, 'name');
      if (name !== undefined) return text(`Hello, ${name}!`);
      await ctx.mcpReq.notify({
        method: 'notifications/progress',
        params: { progressToken: `stream-${String(ctx.mcpReq.id)}`, progress: 0, total: 1 },
      });
      return inputRequired({ inputRequests: { user_name: askName } });
    },
  );
  tool(
    'test_trigger_tool_change',
    { description: 'Publishes notifications/tools/list_changed to listen streams', inputSchema: noArgs },
    async () => {
      notifier()?.toolsChanged();
      return text('tools list changed');
    },
  );
  tool(
    'test_trigger_prompt_change',
    { description: 'Publishes notifications/prompts/list_changed to listen streams', inputSchema: noArgs },
    async () => {
      notifier()?.promptsChanged();
      return text('prompts list changed');
    },
  );

  // --- multi-round-trip input_required tools (SEP-2322) ---
  tool(
    'test_input_required_result_elicitation',
    { description: 'Asks the user for a name, then greets', inputSchema: noArgs },
    async (_args, ctx) => {
      const name = elicitedField(ctx.mcpReq.inputResponses?.user_name, 'name');
      // Missing, wrong or malformed responses: ask again (not an error).
      if (name === undefined) return inputRequired({ inputRequests: { user_name: askName } });
      return text(`Hello, ${name}!`);
    },
  );
  tool(
    'test_input_required_result_sampling',
    { description: 'Asks the client to sample a completion', inputSchema: noArgs },
    async (_args, ctx) => {
      const answer = sampledText(ctx.mcpReq.inputResponses?.capital_question);
      if (answer === undefined) {
        return inputRequired({
          inputRequests: {
            capital_question: inputRequired.createMessage({
              messages: [{ role: 'user', content: { type: 'text', text: 'What is the capital of France?' } }],
              maxTokens: 100,
            }),
          },
        });
      }
      return text(`Sampling response: ${answer}`);
    },
  );
  tool(
    'test_input_required_result_list_roots',
    { description: 'Asks the client for its roots', inputSchema: noArgs },
    async (_args, ctx) => {
      const roots = rootsOf(ctx.mcpReq.inputResponses?.client_roots);
      if (roots === undefined)
        return inputRequired({ inputRequests: { client_roots: inputRequired.listRoots() } });
      return text(`Client roots: ${roots.join(', ')}`);
    },
  );
  tool(
    'test_input_required_result_request_state',
    { description: 'Round-trips an integrity-protected requestState', inputSchema: noArgs },
    async (_args, ctx) => {
      const ok = elicitedField(ctx.mcpReq.inputResponses?.confirm, 'ok');
      const raw = ctx.mcpReq.requestState();
      if (ok === undefined || raw === undefined) {
        return inputRequired({
          inputRequests: {
            confirm: inputRequired.elicit({
              message: 'Please confirm',
              requestedSchema: { type: 'object', properties: { ok: { type: 'boolean' } }, required: ['ok'] },
            }),
          },
          requestState: mintState({ tool: 'request_state', round: 1 }),
        });
      }
      const state = verifyState(raw);
      if (state.tool !== 'request_state')
        throw new ProtocolError(INVALID_PARAMS, 'requestState is for another tool');
      return text(`state-ok: confirmed=${ok}`);
    },
  );
  tool(
    'test_input_required_result_multiple_inputs',
    { description: 'Asks for an elicitation, a sampling and the roots at once', inputSchema: noArgs },
    async (_args, ctx) => {
      const responses = ctx.mcpReq.inputResponses ?? {};
      const raw = ctx.mcpReq.requestState();
      const name = elicitedField(responses.user_name, 'name');
      const greeting = sampledText(responses.greeting);
      const roots = rootsOf(responses.client_roots);
      if (name === undefined || greeting === undefined || roots === undefined || raw === undefined) {
        return inputRequired({
          inputRequests: {
            user_name: askName,
            greeting: inputRequired.createMessage({
              messages: [{ role: 'user', content: { type: 'text', text: 'Generate a greeting' } }],
              maxTokens: 50,
            }),
            client_roots: inputRequired.listRoots(),
          },
          requestState: mintState({ tool: 'multiple_inputs' }),
        });
      }
      verifyState(raw);
      return text(`name=${name}; greeting=${greeting}; roots=${roots.length}`);
    },
  );
  tool(
    'test_input_required_result_multi_round',
    { description: 'Two elicitation rounds with evolving requestState', inputSchema: noArgs },
    async (_args, ctx) => {
      const raw = ctx.mcpReq.requestState();
      const responses = ctx.mcpReq.inputResponses ?? {};
      const step1 = () =>
        inputRequired({
          inputRequests: {
            step1: inputRequired.elicit({
              message: 'Step 1: What is your name?',
              requestedSchema: {
                type: 'object',
                properties: { name: { type: 'string' } },
                required: ['name'],
              },
            }),
          },
          requestState: mintState({ tool: 'multi_round', round: 1 }),
        });
      if (raw === undefined) return step1();
      const state = verifyState(raw);
      if (state.round === 1) {
        const name = elicitedField(responses.step1, 'name');
        if (name === undefined) return step1();
        return inputRequired({
          inputRequests: {
            step2: inputRequired.elicit({
              message: 'Step 2: What is your favorite color?',
              requestedSchema: {
                type: 'object',
                properties: { color: { type: 'string' } },
                required: ['color'],
              },
            }),
          },
          requestState: mintState({ tool: 'multi_round', round: 2, name }),
        });
      }
      const color = elicitedField(responses.step2, 'color');
      if (state.round !== 2 || color === undefined) return step1();
      return text(`name=${String(state.name)}, color=${color}`);
    },
  );
  tool(
    'test_input_required_result_tampered_state',
    { description: 'Rejects a requestState that fails its HMAC check', inputSchema: noArgs },
    async (_args, ctx) => {
      const raw = ctx.mcpReq.requestState();
      if (raw === undefined) {
        return inputRequired({
          inputRequests: { user_name: askName },
          requestState: mintState({ tool: 'tampered_state' }),
        });
      }
      verifyState(raw);
      return text('state verified');
    },
  );
  tool(
    'test_input_required_result_capabilities',
    { description: 'Asks only for what the client declared it supports', inputSchema: noArgs },
    async (_args, ctx) => {
      const responses = ctx.mcpReq.inputResponses ?? {};
      if (Object.keys(responses).length > 0)
        return text(`received: ${Object.keys(responses).sort().join(', ')}`);
      const caps = clientCapabilities(ctx);
      const requests: InputRequests = {};
      if (caps.elicitation !== undefined) requests.user_name = askName;
      if (caps.sampling !== undefined) {
        requests.greeting = inputRequired.createMessage({
          messages: [{ role: 'user', content: { type: 'text', text: 'Generate a greeting' } }],
          maxTokens: 50,
        });
      }
      if (caps.roots !== undefined) requests.client_roots = inputRequired.listRoots();
      if (Object.keys(requests).length === 0) return text('the client declared no input capability');
      return inputRequired({ inputRequests: requests });
    },
  );

  server.server.setRequestHandler('tools/call', async (request, ctx) => {
    const handler = handlers.get(request.params.name);
    if (handler === undefined) {
      throw new ProtocolError(INVALID_PARAMS, `Unknown tool: ${request.params.name}`, {
        name: request.params.name,
      });
    }
    return handler(request.params.arguments ?? {}, ctx);
  });

  server.server.setRequestHandler('completion/complete', async (request) => {
    const { ref, argument } = request.params;
    const candidates =
      ref.type === 'ref/prompt' && ref.name === 'test_prompt_with_arguments' && argument.name === 'arg1'
        ? ['paris', 'park', 'party', 'test', 'testing', 'tested']
        : [];
    const values = candidates.filter((v) => v.startsWith(argument.value));
    return { completion: { values, total: values.length, hasMore: false } };
  });

  // --- resources ---
  server.registerResource(
    'static-text',
    'test://static-text',
    { description: 'A fixed text resource', mimeType: 'text/plain' },
    async (uri) => ({
      contents: [
        { uri: uri.href, mimeType: 'text/plain', text: 'This is the content of the static text resource.' },
      ],
    }),
  );
  server.registerResource(
    'static-binary',
    'test://static-binary',
    { description: 'A fixed binary resource (PNG)', mimeType: 'image/png' },
    async (uri) => ({ contents: [{ uri: uri.href, mimeType: 'image/png', blob: PNG_1X1 }] }),
  );
  server.registerResource(
    'template-data',
    new ResourceTemplate('test://template/{id}/data', { list: undefined }),
    { description: 'JSON data for one id', mimeType: 'application/json' },
    async (uri, variables) => {
      const id = String(variables.id);
      return {
        contents: [
          {
            uri: uri.href,
            mimeType: 'application/json',
            text: JSON.stringify({ id, templateTest: true, data: `Data for ID: ${id}` }),
          },
        ],
      };
    },
  );

  // --- prompts ---
  server.registerPrompt('test_simple_prompt', { description: 'A prompt without arguments' }, async () => ({
    messages: [{ role: 'user', content: { type: 'text', text: 'This is a simple prompt for testing.' } }],
  }));
  server.registerPrompt(
    'test_prompt_with_arguments',
    {
      description: 'A prompt with two required arguments',
      argsSchema: fromJsonSchema<{ arg1: string; arg2: string }>({
        type: 'object',
        properties: {
          arg1: { type: 'string', description: 'First test argument' },
          arg2: { type: 'string', description: 'Second test argument' },
        },
        required: ['arg1', 'arg2'],
      }),
    },
    async (args) => {
      const { arg1, arg2 } = args as { arg1: string; arg2: string };
      return {
        messages: [
          {
            role: 'user',
            content: { type: 'text', text: `Prompt with arguments: arg1='${arg1}', arg2='${arg2}'` },
          },
        ],
      };
    },
  );
  server.registerPrompt(
    'test_prompt_with_embedded_resource',
    {
      description: 'A prompt that embeds a resource',
      argsSchema: fromJsonSchema<{ resourceUri: string }>({
        type: 'object',
        properties: { resourceUri: { type: 'string', description: 'URI of the resource to embed' } },
        required: ['resourceUri'],
      }),
    },
    async (args): Promise<GetPromptResult> => ({
      messages: [
        {
          role: 'user',
          content: {
            type: 'resource',
            resource: {
              uri: (args as { resourceUri: string }).resourceUri,
              mimeType: 'text/plain',
              text: 'Embedded resource content for testing.',
            },
          },
        },
        { role: 'user', content: { type: 'text', text: 'Please process the embedded resource above.' } },
      ],
    }),
  );
  server.registerPrompt('test_prompt_with_image', { description: 'A prompt with an image' }, async () => ({
    messages: [
      { role: 'user', content: { type: 'image', data: PNG_1X1, mimeType: 'image/png' } },
      { role: 'user', content: { type: 'text', text: 'Please analyze the image above.' } },
    ],
  }));
  server.registerPrompt(
    'test_input_required_result_prompt',
    { description: 'A prompt that needs context from the user first' },
    async (ctx) => {
      const context = elicitedField(ctx.mcpReq.inputResponses?.user_context, 'context');
      if (context === undefined) {
        return inputRequired({
          inputRequests: {
            user_context: inputRequired.elicit({
              message: 'What context should the prompt use?',
              requestedSchema: {
                type: 'object',
                properties: { context: { type: 'string' } },
                required: ['context'],
              },
            }),
          },
        });
      }
      return {
        messages: [{ role: 'user', content: { type: 'text', text: `Use this context: ${context}` } }],
      };
    },
  );
  return server;
}

// ---------------------------------------------------------------------------------------------
// node:http <-> fetch bridge (the v2 handler is web-standard), with the SDK DNS-rebinding checks.

async function readBody(req: IncomingMessage): Promise<Buffer | undefined> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    const buf = chunk as Buffer;
    size += buf.length;
    if (size > MAX_BODY_BYTES) return undefined;
    chunks.push(buf);
  }
  return Buffer.concat(chunks);
}

async function serve(handler: McpHttpHandler, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const json = (status: number, message: string): void => {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ jsonrpc: '2.0', error: { code: -32000, message }, id: null }));
  };
  const url = new URL(req.url ?? '/', `http://${req.headers.host}`);
  if (url.pathname !== MCP_PATH) return json(404, `Not found: ${url.pathname}`);
  const body = req.method === 'GET' || req.method === 'HEAD' ? undefined : await readBody(req);
  if (body === undefined && req.method !== 'GET' && req.method !== 'HEAD') {
    return json(413, `Request body larger than ${MAX_BODY_BYTES} bytes`);
  }
  const headers = new Headers();
  for (const [name, value] of Object.entries(req.headers)) {
    if (Array.isArray(value)) for (const v of value) headers.append(name, v);
    else if (value !== undefined) headers.set(name, value);
  }
  const abort = new AbortController();
  res.on('close', () => abort.abort());
  const request = new Request(url, {
    method: req.method,
    headers,
    body: body === undefined ? undefined : new Uint8Array(body),
    signal: abort.signal,
  });
  // DNS rebinding: Host and Origin must name loopback (the SDK's own validators).
  const response =
    hostHeaderValidationResponse(request, localhostAllowedHostnames()) ??
    originValidationResponse(request, localhostAllowedOrigins()) ??
    (await handler.fetch(request));
  const out: Record<string, string> = {};
  response.headers.forEach((value, name) => {
    out[name] = value;
  });
  res.writeHead(response.status, out);
  res.flushHeaders();
  if (response.body === null) {
    res.end();
    return;
  }
  const reader = response.body.getReader();
  res.on('close', () => {
    reader.cancel().catch(() => undefined);
  });
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      res.write(value);
    }
  } finally {
    res.end();
  }
}

export async function startConformanceServer2026(
  port: number,
): Promise<{ url: string; close(): Promise<void> }> {
  let handler: McpHttpHandler | undefined;
  handler = createMcpHandler(() => buildServer(() => handler?.notify), { legacy: 'reject' });
  const http = createServer((req, res) => {
    serve(handler, req, res).catch((err: unknown) => {
      process.stderr.write(
        `conformance upstream 2026: ${err instanceof Error ? err.message : String(err)}\n`,
      );
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'application/json' });
      res.end();
    });
  });
  await new Promise<void>((resolve, reject) => {
    http.once('error', reject);
    http.listen(port, '127.0.0.1', () => resolve());
  });
  const { port: bound } = http.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${bound}${MCP_PATH}`,
    async close() {
      await handler?.close();
      http.closeAllConnections();
      await new Promise<void>((resolve) => http.close(() => resolve()));
    },
  };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { port: { type: 'string', default: '0' }, 'ready-file': { type: 'string' } },
  });
  const port = Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    process.stderr.write(
      `conformance upstream 2026: --port must be an integer 0..65535, got "${values.port}"\n`,
    );
    process.exit(2);
  }
  const running = await startConformanceServer2026(port);
  const stop = (): void => {
    running.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  if (values['ready-file'] !== undefined) writeFileSync(values['ready-file'], `${running.url}\n`);
  process.stdout.write(`READY ${running.url}\n`);
}

if (import.meta.url === `file://${process.argv[1]}`) {
  main().catch((err: unknown) => {
    process.stderr.write(`conformance upstream 2026: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  });
}
