/**
 * mcp-warden's own conformance upstream: an MCP server (official SDK, streamable HTTP, loopback
 * only) that implements every tool, resource, prompt, completion and capability the server
 * scenarios of `@modelcontextprotocol/conformance` call. `hack/conformance.sh` runs the suite
 * against it directly and through `mcp-warden gateway`, and compares the two.
 *
 * Run: `node test/conformance/server.ts [--port 0] [--ready-file PATH]` (Node 24 strips the
 * types). It prints `READY http://127.0.0.1:PORT/mcp` on stdout (and writes the URL to
 * `--ready-file`) once it listens.
 *
 * Fixture texts are plain: nothing in them looks like an e-mail address, card number, key or
 * token, so the gateway's masking rules match nothing and the run stays byte-transparent.
 */
import { randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { parseArgs } from 'node:util';
import { Server } from '@modelcontextprotocol/sdk/server/index.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import type { EventStore } from '@modelcontextprotocol/sdk/server/webStandardStreamableHttp.js';
import {
  CallToolRequestSchema,
  type CallToolResult,
  CompleteRequestSchema,
  CreateMessageResultSchema,
  ElicitResultSchema,
  ErrorCode,
  GetPromptRequestSchema,
  type GetPromptResult,
  isInitializeRequest,
  type JSONRPCMessage,
  ListPromptsRequestSchema,
  ListResourcesRequestSchema,
  ListResourceTemplatesRequestSchema,
  ListToolsRequestSchema,
  type LoggingLevel,
  McpError,
  ReadResourceRequestSchema,
  type ReadResourceResult,
  SetLevelRequestSchema,
  SubscribeRequestSchema,
  type Tool,
  UnsubscribeRequestSchema,
} from '@modelcontextprotocol/sdk/types.js';

const MCP_PATH = '/mcp';
const MAX_BODY_BYTES = 4 * 1024 * 1024;
const LOOPBACK_HOSTS = new Set(['127.0.0.1', 'localhost', '[::1]']);

// ---------------------------------------------------------------------------------------------
// Fixtures (generated here, not copied): a 1x1 PNG and a short silent 8 kHz mono WAV.

/** A 1x1 red PNG. */
const PNG_1X1 =
  'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==';

/** 80 samples of 16-bit silence, with a canonical 44-byte RIFF/WAVE header. */
function silentWav(): string {
  const samples = 80;
  const dataBytes = samples * 2;
  const buf = Buffer.alloc(44 + dataBytes);
  buf.write('RIFF', 0, 'ascii');
  buf.writeUInt32LE(36 + dataBytes, 4);
  buf.write('WAVE', 8, 'ascii');
  buf.write('fmt ', 12, 'ascii');
  buf.writeUInt32LE(16, 16); // PCM fmt chunk size
  buf.writeUInt16LE(1, 20); // PCM
  buf.writeUInt16LE(1, 22); // mono
  buf.writeUInt32LE(8000, 24); // sample rate
  buf.writeUInt32LE(8000 * 2, 28); // byte rate
  buf.writeUInt16LE(2, 32); // block align
  buf.writeUInt16LE(16, 34); // bits per sample
  buf.write('data', 36, 'ascii');
  buf.writeUInt32LE(dataBytes, 40);
  return buf.toString('base64');
}
const WAV_SILENCE = silentWav();

const LOG_LEVELS: readonly LoggingLevel[] = [
  'debug',
  'info',
  'notice',
  'warning',
  'error',
  'critical',
  'alert',
  'emergency',
];

const delay = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

const noArgs = { type: 'object' as const, properties: {} };

const TOOLS: Tool[] = [
  { name: 'test_simple_text', description: 'Returns one text block', inputSchema: noArgs },
  { name: 'test_image_content', description: 'Returns one PNG image block', inputSchema: noArgs },
  { name: 'test_audio_content', description: 'Returns one WAV audio block', inputSchema: noArgs },
  { name: 'test_embedded_resource', description: 'Returns an embedded text resource', inputSchema: noArgs },
  {
    name: 'test_multiple_content_types',
    description: 'Returns text, image and resource blocks',
    inputSchema: noArgs,
  },
  { name: 'test_tool_with_logging', description: 'Logs three messages while it runs', inputSchema: noArgs },
  { name: 'test_tool_with_progress', description: 'Reports progress 0, 50, 100 of 100', inputSchema: noArgs },
  { name: 'test_error_handling', description: 'Always answers with isError: true', inputSchema: noArgs },
  {
    name: 'test_sampling',
    description: 'Asks the client to sample an LLM message',
    inputSchema: {
      type: 'object',
      properties: { prompt: { type: 'string', description: 'The prompt to send to the LLM' } },
      required: ['prompt'],
    },
  },
  {
    name: 'test_elicitation',
    description: 'Asks the user for a username and address through the client',
    inputSchema: {
      type: 'object',
      properties: { message: { type: 'string', description: 'The message to show the user' } },
      required: ['message'],
    },
  },
  {
    name: 'test_elicitation_sep1034_defaults',
    description: 'Elicitation whose schema carries defaults for every primitive type (SEP-1034)',
    inputSchema: noArgs,
  },
  {
    name: 'test_elicitation_sep1330_enums',
    description: 'Elicitation with the five enum schema variants (SEP-1330)',
    inputSchema: noArgs,
  },
  {
    name: 'test_reconnection',
    description:
      'Closes its SSE response stream mid-call; the result arrives after the client resumes (SEP-1699)',
    inputSchema: noArgs,
  },
  {
    name: 'json_schema_2020_12_tool',
    description: 'Tool with JSON Schema 2020-12 features',
    inputSchema: {
      $schema: 'https://json-schema.org/draft/2020-12/schema',
      type: 'object',
      $defs: {
        address: {
          type: 'object',
          properties: { street: { type: 'string' }, city: { type: 'string' } },
        },
      },
      properties: { name: { type: 'string' }, address: { $ref: '#/$defs/address' } },
      additionalProperties: false,
    },
  },
];

const STATIC_RESOURCES = [
  {
    uri: 'test://static-text',
    name: 'static-text',
    description: 'A fixed text resource',
    mimeType: 'text/plain',
    text: 'This is the content of the static text resource.',
  },
  {
    uri: 'test://static-binary',
    name: 'static-binary',
    description: 'A fixed binary resource (PNG)',
    mimeType: 'image/png',
    blob: PNG_1X1,
  },
  {
    uri: 'test://watched-resource',
    name: 'watched-resource',
    description: 'A resource clients may subscribe to',
    mimeType: 'text/plain',
    text: 'Watched resource content.',
  },
] as const;

const TEMPLATE_PATTERN = /^test:\/\/template\/([^/]+)\/data$/;

const PROMPTS = [
  { name: 'test_simple_prompt', description: 'A prompt without arguments' },
  {
    name: 'test_prompt_with_arguments',
    description: 'A prompt with two required arguments',
    arguments: [
      { name: 'arg1', description: 'First test argument', required: true },
      { name: 'arg2', description: 'Second test argument', required: true },
    ],
  },
  {
    name: 'test_prompt_with_embedded_resource',
    description: 'A prompt that embeds a resource',
    arguments: [{ name: 'resourceUri', description: 'URI of the resource to embed', required: true }],
  },
  { name: 'test_prompt_with_image', description: 'A prompt with an image' },
];

/** Completion candidates per prompt argument. */
const COMPLETIONS: Record<string, Record<string, string[]>> = {
  test_prompt_with_arguments: {
    arg1: ['paris', 'park', 'party', 'test', 'testing', 'tested'],
    arg2: ['alpha', 'beta', 'gamma'],
  },
};

// ---------------------------------------------------------------------------------------------
// Resumability: an in-memory event store, bounded, one per session.

class MemoryEventStore implements EventStore {
  readonly #events = new Map<string, { streamId: string; message: JSONRPCMessage }>();
  readonly #max: number;
  #next = 0;

  constructor(max = 10_000) {
    this.#max = max;
  }

  async storeEvent(streamId: string, message: JSONRPCMessage): Promise<string> {
    const id = `${streamId}.${(this.#next++).toString(36)}`;
    this.#events.set(id, { streamId, message });
    if (this.#events.size > this.#max) {
      const oldest = this.#events.keys().next().value;
      if (oldest !== undefined) this.#events.delete(oldest);
    }
    return id;
  }

  async getStreamIdForEventId(eventId: string): Promise<string | undefined> {
    return this.#events.get(eventId)?.streamId;
  }

  async replayEventsAfter(
    lastEventId: string,
    { send }: { send: (eventId: string, message: JSONRPCMessage) => Promise<void> },
  ): Promise<string> {
    const last = this.#events.get(lastEventId);
    if (last === undefined) throw new Error('unknown Last-Event-ID');
    let after = false;
    for (const [id, event] of this.#events) {
      if (id === lastEventId) {
        after = true;
        continue;
      }
      // Priming events carry an empty object: nothing to replay.
      if (after && event.streamId === last.streamId && Object.keys(event.message).length > 0) {
        await send(id, event.message);
      }
    }
    return last.streamId;
  }
}

// ---------------------------------------------------------------------------------------------
// One MCP server per session.

interface Session {
  server: Server;
  transport: StreamableHTTPServerTransport;
}

function createMcpServer(getTransport: () => StreamableHTTPServerTransport): Server {
  const server = new Server(
    { name: 'mcp-warden-conformance-upstream', version: '1.0.0' },
    {
      capabilities: {
        tools: { listChanged: true },
        resources: { subscribe: true, listChanged: true },
        prompts: { listChanged: true },
        logging: {},
        completions: {},
      },
    },
  );
  const subscriptions = new Set<string>();
  let logLevel: LoggingLevel = 'info';

  server.setRequestHandler(SetLevelRequestSchema, async (request) => {
    logLevel = request.params.level;
    return {};
  });

  server.setRequestHandler(ListToolsRequestSchema, async () => ({ tools: TOOLS }));

  server.setRequestHandler(CallToolRequestSchema, async (request, extra): Promise<CallToolResult> => {
    const args = request.params.arguments ?? {};
    const log = async (level: LoggingLevel, data: string): Promise<void> => {
      if (LOG_LEVELS.indexOf(level) < LOG_LEVELS.indexOf(logLevel)) return;
      await extra.sendNotification({
        method: 'notifications/message',
        params: { level, logger: 'conformance', data },
      });
    };
    switch (request.params.name) {
      case 'test_simple_text':
        return { content: [{ type: 'text', text: 'This is a simple text response for testing.' }] };
      case 'test_image_content':
        return { content: [{ type: 'image', data: PNG_1X1, mimeType: 'image/png' }] };
      case 'test_audio_content':
        return { content: [{ type: 'audio', data: WAV_SILENCE, mimeType: 'audio/wav' }] };
      case 'test_embedded_resource':
        return {
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
        };
      case 'test_multiple_content_types':
        return {
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
        };
      case 'test_tool_with_logging':
        await log('info', 'Tool execution started');
        await delay(50);
        await log('info', 'Tool processing data');
        await delay(50);
        await log('info', 'Tool execution completed');
        return { content: [{ type: 'text', text: 'Tool with logging executed successfully' }] };
      case 'test_tool_with_progress': {
        const token = request.params._meta?.progressToken;
        for (const progress of [0, 50, 100]) {
          if (token !== undefined) {
            await extra.sendNotification({
              method: 'notifications/progress',
              params: { progressToken: token, progress, total: 100, message: `step ${progress}` },
            });
          }
          if (progress < 100) await delay(50);
        }
        return { content: [{ type: 'text', text: 'Tool with progress executed successfully' }] };
      }
      case 'test_error_handling':
        return {
          isError: true,
          content: [{ type: 'text', text: 'This tool intentionally returns an error for testing' }],
        };
      case 'test_sampling': {
        if (server.getClientCapabilities()?.sampling === undefined) {
          return { isError: true, content: [{ type: 'text', text: 'The client does not support sampling' }] };
        }
        const prompt = typeof args.prompt === 'string' ? args.prompt : '';
        const sampled = await extra.sendRequest(
          {
            method: 'sampling/createMessage',
            params: { messages: [{ role: 'user', content: { type: 'text', text: prompt } }], maxTokens: 100 },
          },
          CreateMessageResultSchema,
        );
        const content = sampled.content;
        const text =
          !Array.isArray(content) && content.type === 'text' ? content.text : JSON.stringify(content);
        return { content: [{ type: 'text', text: `LLM response: ${text}` }] };
      }
      case 'test_elicitation': {
        if (server.getClientCapabilities()?.elicitation === undefined) {
          return {
            isError: true,
            content: [{ type: 'text', text: 'The client does not support elicitation' }],
          };
        }
        const message = typeof args.message === 'string' ? args.message : '';
        const answer = await extra.sendRequest(
          {
            method: 'elicitation/create',
            params: {
              message,
              requestedSchema: {
                type: 'object',
                properties: {
                  username: { type: 'string', description: "User's response" },
                  email: { type: 'string', description: "User's email address" },
                },
                required: ['username', 'email'],
              },
            },
          },
          ElicitResultSchema,
        );
        // The answer is echoed only as its shape: the user's values never leave this process.
        const fields = Object.keys(answer.content ?? {}).join(',');
        return {
          content: [{ type: 'text', text: `User response: action=${answer.action}, fields=${fields}` }],
        };
      }
      case 'test_elicitation_sep1034_defaults': {
        const answer = await extra.sendRequest(
          {
            method: 'elicitation/create',
            params: {
              message: 'Please review the defaults',
              requestedSchema: {
                type: 'object',
                properties: {
                  name: { type: 'string', description: 'Name', default: 'John Doe' },
                  age: { type: 'integer', description: 'Age', default: 30 },
                  score: { type: 'number', description: 'Score', default: 95.5 },
                  status: {
                    type: 'string',
                    description: 'Status',
                    enum: ['active', 'inactive', 'pending'],
                    default: 'active',
                  },
                  verified: { type: 'boolean', description: 'Verified', default: true },
                },
              },
            },
          },
          ElicitResultSchema,
        );
        return {
          content: [
            {
              type: 'text',
              text: `Elicitation completed: action=${answer.action}, content=${JSON.stringify(answer.content ?? {})}`,
            },
          ],
        };
      }
      case 'test_elicitation_sep1330_enums': {
        const answer = await extra.sendRequest(
          {
            method: 'elicitation/create',
            params: {
              message: 'Please pick the options',
              requestedSchema: {
                type: 'object',
                properties: {
                  untitledSingle: { type: 'string', enum: ['option1', 'option2', 'option3'] },
                  titledSingle: {
                    type: 'string',
                    oneOf: [
                      { const: 'value1', title: 'First Option' },
                      { const: 'value2', title: 'Second Option' },
                      { const: 'value3', title: 'Third Option' },
                    ],
                  },
                  legacyEnum: {
                    type: 'string',
                    enum: ['opt1', 'opt2', 'opt3'],
                    enumNames: ['Option One', 'Option Two', 'Option Three'],
                  },
                  untitledMulti: {
                    type: 'array',
                    items: { type: 'string', enum: ['option1', 'option2', 'option3'] },
                  },
                  titledMulti: {
                    type: 'array',
                    items: {
                      anyOf: [
                        { const: 'value1', title: 'First Choice' },
                        { const: 'value2', title: 'Second Choice' },
                        { const: 'value3', title: 'Third Choice' },
                      ],
                    },
                  },
                },
              },
            },
          },
          ElicitResultSchema,
        );
        return {
          content: [
            {
              type: 'text',
              text: `Elicitation completed: action=${answer.action}, content=${JSON.stringify(answer.content ?? {})}`,
            },
          ],
        };
      }
      case 'test_reconnection': {
        // One event with an id on the POST stream (so the client holds a Last-Event-ID even when
        // no priming event was sent), then close the stream; the result goes to the event store
        // and is delivered when the client resumes with GET + Last-Event-ID.
        await extra.sendNotification({
          method: 'notifications/progress',
          params: { progressToken: `reconnect-${String(extra.requestId)}`, progress: 0, total: 1 },
        });
        getTransport().closeSSEStream(extra.requestId);
        await delay(100);
        return { content: [{ type: 'text', text: 'Reconnection test completed' }] };
      }
      case 'json_schema_2020_12_tool':
        return { content: [{ type: 'text', text: `Received: ${JSON.stringify(args)}` }] };
      default:
        throw new McpError(ErrorCode.InvalidParams, `Unknown tool: ${request.params.name}`);
    }
  });

  server.setRequestHandler(ListResourcesRequestSchema, async () => ({
    resources: STATIC_RESOURCES.map(({ uri, name, description, mimeType }) => ({
      uri,
      name,
      description,
      mimeType,
    })),
  }));

  server.setRequestHandler(ListResourceTemplatesRequestSchema, async () => ({
    resourceTemplates: [
      {
        uriTemplate: 'test://template/{id}/data',
        name: 'template-data',
        description: 'JSON data for one id',
        mimeType: 'application/json',
      },
    ],
  }));

  server.setRequestHandler(ReadResourceRequestSchema, async (request): Promise<ReadResourceResult> => {
    const { uri } = request.params;
    const found = STATIC_RESOURCES.find((r) => r.uri === uri);
    if (found !== undefined) {
      return 'blob' in found
        ? { contents: [{ uri, mimeType: found.mimeType, blob: found.blob }] }
        : { contents: [{ uri, mimeType: found.mimeType, text: found.text }] };
    }
    const match = TEMPLATE_PATTERN.exec(uri);
    if (match?.[1] !== undefined) {
      const id = decodeURIComponent(match[1]);
      return {
        contents: [
          {
            uri,
            mimeType: 'application/json',
            text: JSON.stringify({ id, templateTest: true, data: `Data for ID: ${id}` }),
          },
        ],
      };
    }
    throw new McpError(-32002, `Resource not found: ${uri}`);
  });

  server.setRequestHandler(SubscribeRequestSchema, async (request) => {
    subscriptions.add(request.params.uri);
    return {};
  });

  server.setRequestHandler(UnsubscribeRequestSchema, async (request) => {
    subscriptions.delete(request.params.uri);
    return {};
  });

  server.setRequestHandler(ListPromptsRequestSchema, async () => ({ prompts: PROMPTS }));

  server.setRequestHandler(GetPromptRequestSchema, async (request): Promise<GetPromptResult> => {
    const args = request.params.arguments ?? {};
    switch (request.params.name) {
      case 'test_simple_prompt':
        return {
          messages: [
            { role: 'user', content: { type: 'text', text: 'This is a simple prompt for testing.' } },
          ],
        };
      case 'test_prompt_with_arguments': {
        const { arg1, arg2 } = args;
        if (arg1 === undefined || arg2 === undefined) {
          throw new McpError(ErrorCode.InvalidParams, 'arg1 and arg2 are required');
        }
        return {
          messages: [
            {
              role: 'user',
              content: { type: 'text', text: `Prompt with arguments: arg1='${arg1}', arg2='${arg2}'` },
            },
          ],
        };
      }
      case 'test_prompt_with_embedded_resource': {
        const resourceUri = args.resourceUri;
        if (resourceUri === undefined) throw new McpError(ErrorCode.InvalidParams, 'resourceUri is required');
        return {
          messages: [
            {
              role: 'user',
              content: {
                type: 'resource',
                resource: {
                  uri: resourceUri,
                  mimeType: 'text/plain',
                  text: 'Embedded resource content for testing.',
                },
              },
            },
            { role: 'user', content: { type: 'text', text: 'Please process the embedded resource above.' } },
          ],
        };
      }
      case 'test_prompt_with_image':
        return {
          messages: [
            { role: 'user', content: { type: 'image', data: PNG_1X1, mimeType: 'image/png' } },
            { role: 'user', content: { type: 'text', text: 'Please analyze the image above.' } },
          ],
        };
      default:
        throw new McpError(ErrorCode.InvalidParams, `Unknown prompt: ${request.params.name}`);
    }
  });

  server.setRequestHandler(CompleteRequestSchema, async (request) => {
    const { ref, argument } = request.params;
    const candidates = ref.type === 'ref/prompt' ? (COMPLETIONS[ref.name]?.[argument.name] ?? []) : [];
    const values = candidates.filter((v) => v.startsWith(argument.value));
    return { completion: { values, total: values.length, hasMore: false } };
  });

  return server;
}

// ---------------------------------------------------------------------------------------------
// HTTP: DNS-rebinding protection, session routing, bounded bodies.

function hostnameOf(hostHeader: string): string {
  if (hostHeader.startsWith('[')) {
    const end = hostHeader.indexOf(']');
    return end < 0 ? hostHeader : hostHeader.slice(0, end + 1);
  }
  const colon = hostHeader.indexOf(':');
  return (colon < 0 ? hostHeader : hostHeader.slice(0, colon)).toLowerCase();
}

/** Host and Origin must name loopback: a rebound DNS name must not reach this server. */
function rebindingViolation(req: IncomingMessage): string | undefined {
  const host = req.headers.host;
  if (host === undefined || !LOOPBACK_HOSTS.has(hostnameOf(host)))
    return `Invalid Host header: ${host ?? '(none)'}`;
  const origin = req.headers.origin;
  if (origin !== undefined) {
    let originHost: string;
    try {
      originHost = new URL(origin).host;
    } catch {
      return `Invalid Origin header: ${origin}`;
    }
    if (!LOOPBACK_HOSTS.has(hostnameOf(originHost))) return `Invalid Origin header: ${origin}`;
  }
  return undefined;
}

function sendJsonError(res: ServerResponse, status: number, code: number, message: string): void {
  if (res.headersSent) {
    res.end();
    return;
  }
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ jsonrpc: '2.0', error: { code, message }, id: null }));
}

async function readBody(req: IncomingMessage): Promise<string | undefined> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    const buf = chunk as Buffer;
    size += buf.length;
    if (size > MAX_BODY_BYTES) return undefined;
    chunks.push(buf);
  }
  return Buffer.concat(chunks).toString('utf8');
}

function isInitialize(body: unknown): boolean {
  return Array.isArray(body) ? body.some((m) => isInitializeRequest(m)) : isInitializeRequest(body);
}

export async function startConformanceServer(port: number): Promise<{ url: string; close(): Promise<void> }> {
  const sessions = new Map<string, Session>();

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const violation = rebindingViolation(req);
    if (violation !== undefined) {
      sendJsonError(res, 403, -32000, violation);
      return;
    }
    const path = new URL(req.url ?? '/', 'http://127.0.0.1').pathname;
    if (path !== MCP_PATH) {
      sendJsonError(res, 404, -32000, `Not found: ${path}`);
      return;
    }
    const sessionId = req.headers['mcp-session-id'];
    const existing = typeof sessionId === 'string' ? sessions.get(sessionId) : undefined;

    if (req.method === 'POST') {
      const raw = await readBody(req);
      if (raw === undefined) {
        sendJsonError(res, 413, -32000, `Request body larger than ${MAX_BODY_BYTES} bytes`);
        return;
      }
      let body: unknown;
      try {
        body = JSON.parse(raw);
      } catch {
        sendJsonError(res, 400, ErrorCode.ParseError, 'Parse error: the body is not valid JSON');
        return;
      }
      if (existing !== undefined) {
        await existing.transport.handleRequest(req, res, body);
        return;
      }
      if (sessionId !== undefined) {
        sendJsonError(res, 404, -32001, 'Session not found');
        return;
      }
      if (!isInitialize(body)) {
        sendJsonError(res, 400, -32000, 'Bad Request: no session id, and the request is not initialize');
        return;
      }
      const transport: StreamableHTTPServerTransport = new StreamableHTTPServerTransport({
        sessionIdGenerator: () => randomUUID(),
        eventStore: new MemoryEventStore(),
        retryInterval: 500,
        onsessioninitialized: (id) => {
          sessions.set(id, { server, transport });
        },
        onsessionclosed: (id) => {
          sessions.delete(id);
        },
      });
      const server = createMcpServer(() => transport);
      // Set before connect(): the SDK chains its own close handling onto this one.
      transport.onclose = () => {
        if (transport.sessionId !== undefined) sessions.delete(transport.sessionId);
      };
      await server.connect(transport);
      await transport.handleRequest(req, res, body);
      return;
    }

    if (req.method === 'GET' || req.method === 'DELETE') {
      if (existing === undefined) {
        sendJsonError(res, sessionId === undefined ? 400 : 404, -32000, 'Missing or unknown Mcp-Session-Id');
        return;
      }
      await existing.transport.handleRequest(req, res);
      return;
    }
    res.setHeader('allow', 'GET, POST, DELETE');
    sendJsonError(res, 405, -32000, 'Method not allowed');
  };

  const http = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      process.stderr.write(`conformance upstream: ${err instanceof Error ? err.message : String(err)}\n`);
      sendJsonError(res, 500, ErrorCode.InternalError, 'Internal error');
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
      for (const { server } of sessions.values()) await server.close().catch(() => undefined);
      sessions.clear();
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
    process.stderr.write(`conformance upstream: --port must be an integer 0..65535, got "${values.port}"\n`);
    process.exit(2);
  }
  const running = await startConformanceServer(port);
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
    process.stderr.write(`conformance upstream: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  });
}
