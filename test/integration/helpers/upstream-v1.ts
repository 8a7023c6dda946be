import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { SSEServerTransport } from '@modelcontextprotocol/sdk/server/sse.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { isInitializeRequest, type JSONRPCMessage } from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';

/**
 * A real MCP server (SDK v1) for integration tests: sessionful streamable HTTP at /mcp with an
 * event store (resumable SSE), and legacy HTTP+SSE at /sse + /message. It counts every request
 * and every Authorization/Cookie header it sees, so tests can assert what never reached it.
 */
export interface UpstreamStats {
  requests: number;
  /** JSON-RPC methods received (requests and notifications), in order. */
  methods: string[];
  /** JSON-RPC responses received from clients (ids). */
  responses: Array<{ id: unknown; error?: unknown }>;
  authorizationSeen: number;
  cookieSeen: number;
}

export interface Upstream {
  url: string;
  mcpUrl: string;
  stats: UpstreamStats;
  /** Results of sampling/elicitation attempts made by tools (for blocked server requests). */
  serverRequestOutcomes: string[];
  close(): Promise<void>;
}

/**
 * An event store with ordered ids (`<stream>_<seq>`). The SDK's example store orders events of the
 * same millisecond randomly, which loses events on replay.
 */
export class OrderedEventStore {
  #seq = 0;
  readonly #events: Array<{ id: string; stream: string; seq: number; message: JSONRPCMessage }> = [];
  async storeEvent(streamId: string, message: JSONRPCMessage): Promise<string> {
    const seq = ++this.#seq;
    const id = `${streamId}_${seq}`;
    this.#events.push({ id, stream: streamId, seq, message });
    return id;
  }
  async replayEventsAfter(
    lastEventId: string,
    { send }: { send: (eventId: string, message: JSONRPCMessage) => Promise<void> },
  ): Promise<string> {
    const last = this.#events.find((e) => e.id === lastEventId);
    if (!last) return '';
    for (const e of this.#events)
      if (e.stream === last.stream && e.seq > last.seq) await send(e.id, e.message);
    return last.stream;
  }
}

export function buildServer(outcomes: string[]): McpServer {
  const server = new McpServer(
    { name: 'test-upstream', version: '1.0.0' },
    { capabilities: { logging: {} } },
  );
  server.registerTool(
    'get_weather',
    {
      description: 'Weather for a city',
      inputSchema: { city: z.string() },
      annotations: { readOnlyHint: true },
    },
    async ({ city }) => ({ content: [{ type: 'text', text: `sunny in ${city}` }] }),
  );
  server.registerTool(
    'delete_repo',
    {
      description: 'Delete a repository',
      inputSchema: { name: z.string() },
      annotations: { destructiveHint: true },
    },
    async ({ name }) => ({ content: [{ type: 'text', text: `deleted ${name}` }] }),
  );
  server.registerTool(
    'run_query',
    { description: 'Run SQL', inputSchema: { query: z.string() }, annotations: { readOnlyHint: false } },
    async ({ query }) => ({ content: [{ type: 'text', text: `ran: ${query}` }] }),
  );
  server.registerTool('contact', { description: 'Who to contact', inputSchema: {} }, async () => ({
    content: [{ type: 'text', text: 'write to alice@example.com' }],
  }));
  server.registerTool(
    'ask_llm',
    { description: 'Uses sampling', inputSchema: { prompt: z.string() } },
    async ({ prompt }) => {
      try {
        const r = await server.server.createMessage(
          { messages: [{ role: 'user', content: { type: 'text', text: prompt } }], maxTokens: 10 },
          { timeout: 10_000 },
        );
        outcomes.push('sampling-ok');
        return {
          content: [{ type: 'text', text: `llm said ${(r.content as { text?: string }).text ?? ''}` }],
        };
      } catch (err) {
        const msg = (err as Error).message;
        outcomes.push(`sampling-error: ${msg}`);
        return { content: [{ type: 'text', text: `sampling refused: ${msg}` }], isError: true };
      }
    },
  );
  server.registerTool('ask_user', { description: 'Uses elicitation', inputSchema: {} }, async () => {
    try {
      const r = await server.server.elicitInput(
        {
          message: 'Your name?',
          requestedSchema: { type: 'object', properties: { name: { type: 'string' } } },
        },
        { timeout: 10_000 },
      );
      outcomes.push('elicitation-ok');
      return { content: [{ type: 'text', text: `hello ${String(r.content?.['name'])}` }] };
    } catch (err) {
      outcomes.push(`elicitation-error: ${(err as Error).message}`);
      return { content: [{ type: 'text', text: 'elicitation refused' }], isError: true };
    }
  });
  server.registerTool('list_roots', { description: 'Uses roots/list', inputSchema: {} }, async () => {
    try {
      const r = await server.server.listRoots(undefined, { timeout: 10_000 });
      outcomes.push('roots-ok');
      return { content: [{ type: 'text', text: r.roots.map((x) => x.uri).join(',') }] };
    } catch (err) {
      outcomes.push(`roots-error: ${(err as Error).message}`);
      return { content: [{ type: 'text', text: 'roots refused' }], isError: true };
    }
  });
  server.registerTool(
    'slow_steps',
    { description: 'Sends progress notifications then answers', inputSchema: { steps: z.number() } },
    async ({ steps }, extra) => {
      for (let i = 0; i < steps; i++) {
        await extra.sendNotification({
          method: 'notifications/message',
          params: { level: 'info', data: `step ${i}` },
        });
      }
      return { content: [{ type: 'text', text: `done ${steps}` }] };
    },
  );
  server.registerResource('readme', 'file:///readme.md', { mimeType: 'text/markdown' }, async (uri) => ({
    contents: [{ uri: uri.href, text: '# readme' }],
  }));
  server.registerResource('secrets', 'file:///secrets.txt', { mimeType: 'text/plain' }, async (uri) => ({
    contents: [{ uri: uri.href, text: 'top secret' }],
  }));
  server.registerPrompt('greet', { description: 'Greeting' }, async () => ({
    messages: [{ role: 'user', content: { type: 'text', text: 'hello' } }],
  }));
  return server;
}

async function readJson(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  const text = Buffer.concat(chunks).toString('utf8');
  return text.length > 0 ? JSON.parse(text) : undefined;
}

function note(stats: UpstreamStats, body: unknown): void {
  const items = Array.isArray(body) ? body : [body];
  for (const m of items) {
    if (typeof m !== 'object' || m === null) continue;
    const o = m as Record<string, unknown>;
    if (typeof o['method'] === 'string') stats.methods.push(o['method']);
    else if ('id' in o) stats.responses.push({ id: o['id'], error: o['error'] });
  }
}

/** `jsonResponse`: answer POSTs with one JSON body instead of an SSE stream. */
export async function startUpstream(options: { jsonResponse?: boolean } = {}): Promise<Upstream> {
  const stats: UpstreamStats = {
    requests: 0,
    methods: [],
    responses: [],
    authorizationSeen: 0,
    cookieSeen: 0,
  };
  const outcomes: string[] = [];
  const streamable = new Map<string, StreamableHTTPServerTransport>();
  const legacy = new Map<string, SSEServerTransport>();
  const eventStore = new OrderedEventStore();
  const server: Server = createServer((req, res) => {
    void (async () => {
      stats.requests++;
      if (req.headers.authorization !== undefined) stats.authorizationSeen++;
      if (req.headers.cookie !== undefined) stats.cookieSeen++;
      const path = (req.url ?? '/').split('?')[0];
      try {
        if (path === '/mcp') {
          const body = req.method === 'POST' ? await readJson(req) : undefined;
          note(stats, body);
          const sid = req.headers['mcp-session-id'];
          let transport = typeof sid === 'string' ? streamable.get(sid) : undefined;
          if (!transport) {
            if (sid === undefined && req.method === 'POST' && isInitializeRequest(body)) {
              const t = new StreamableHTTPServerTransport({
                sessionIdGenerator: () => randomUUID(),
                eventStore,
                enableJsonResponse: options.jsonResponse ?? false,
                onsessioninitialized: (id) => {
                  streamable.set(id, t);
                },
              });
              t.onclose = () => {
                if (t.sessionId) streamable.delete(t.sessionId);
              };
              await buildServer(outcomes).connect(t);
              transport = t;
            } else {
              res.writeHead(sid === undefined ? 400 : 404, { 'content-type': 'application/json' });
              res.end(
                JSON.stringify({ jsonrpc: '2.0', id: null, error: { code: -32000, message: 'Bad session' } }),
              );
              return;
            }
          }
          await transport.handleRequest(req, res, body);
          return;
        }
        if (path === '/sse' && req.method === 'GET') {
          const t = new SSEServerTransport('/message', res);
          legacy.set(t.sessionId, t);
          res.on('close', () => legacy.delete(t.sessionId));
          await buildServer(outcomes).connect(t);
          return;
        }
        if (path === '/message' && req.method === 'POST') {
          const sid = new URL(req.url ?? '/', 'http://x').searchParams.get('sessionId') ?? '';
          const t = legacy.get(sid);
          const body = await readJson(req);
          note(stats, body);
          if (!t) {
            res.writeHead(404).end('no session');
            return;
          }
          await t.handlePostMessage(req, res, body);
          return;
        }
        res.writeHead(404).end();
      } catch (err) {
        if (!res.headersSent) res.writeHead(500).end(String(err));
      }
    })();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  const url = `http://127.0.0.1:${port}`;
  return {
    url,
    mcpUrl: `${url}/mcp`,
    stats,
    serverRequestOutcomes: outcomes,
    async close() {
      for (const t of streamable.values()) await t.close().catch(() => undefined);
      for (const t of legacy.values()) await t.close().catch(() => undefined);
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
