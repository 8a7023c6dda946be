/**
 * The demo's upstream: a real MCP server built with the official SDK (streamable HTTP, stateful
 * sessions) with a handful of tools that show what mcp-warden decides. It knows nothing about
 * mcp-warden: any Authorization header it receives is counted, so the demo can prove the caller's
 * token never reaches it.
 */
import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { z } from 'zod';

export interface DemoServer {
  url: string;
  /** Requests that arrived carrying an Authorization header (must stay 0 behind mcp-warden). */
  authorizationHeadersSeen(): number;
  /** Tool calls that reached the server, by tool name. */
  calls(): Record<string, number>;
  close(): Promise<void>;
}

function buildMcpServer(calls: Record<string, number>): McpServer {
  const server = new McpServer({ name: 'demo-mcp', version: '1.0.0' });
  const count = (tool: string) => {
    calls[tool] = (calls[tool] ?? 0) + 1;
  };
  server.registerTool(
    'get_weather',
    {
      description: 'Current weather for a city',
      inputSchema: { city: z.string() },
      annotations: { readOnlyHint: true },
    },
    async ({ city }) => {
      count('get_weather');
      return { content: [{ type: 'text', text: `${city}: 18°C, light rain` }] };
    },
  );
  server.registerTool(
    'search_docs',
    {
      description: 'Search the support knowledge base',
      inputSchema: { query: z.string() },
      outputSchema: { title: z.string(), owner: z.string(), contact: z.string() },
      annotations: { readOnlyHint: true },
    },
    async ({ query }) => {
      count('search_docs');
      const hit = { title: `Runbook: ${query}`, owner: 'Dana Reyes', contact: 'dana.reyes@contoso.example' };
      return { content: [{ type: 'text', text: JSON.stringify(hit) }], structuredContent: hit };
    },
  );
  server.registerTool(
    'run_query',
    { description: 'Run a SQL query against the reporting database', inputSchema: { query: z.string() } },
    async ({ query }) => {
      count('run_query');
      return { content: [{ type: 'text', text: `ok: ${query.length} characters executed, 3 rows` }] };
    },
  );
  server.registerTool(
    'delete_repo',
    {
      description: 'Delete a repository',
      inputSchema: { name: z.string() },
      annotations: { destructiveHint: true },
    },
    async ({ name }) => {
      count('delete_repo');
      return { content: [{ type: 'text', text: `deleted ${name}` }] };
    },
  );
  server.registerTool(
    'send_email',
    { description: 'Send an email', inputSchema: { to: z.string(), body: z.string() } },
    async ({ to }) => {
      count('send_email');
      return { content: [{ type: 'text', text: `sent to ${to}` }] };
    },
  );
  return server;
}

async function readJson(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  const text = Buffer.concat(chunks).toString('utf8');
  return text === '' ? undefined : JSON.parse(text);
}

export async function startDemoServer(options: { host?: string; port?: number } = {}): Promise<DemoServer> {
  const transports = new Map<string, StreamableHTTPServerTransport>();
  const calls: Record<string, number> = {};
  let authSeen = 0;

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    if (req.headers.authorization !== undefined) authSeen++;
    if (!req.url?.startsWith('/mcp')) {
      res.writeHead(404).end();
      return;
    }
    const sessionId = req.headers['mcp-session-id'];
    const body = req.method === 'POST' ? await readJson(req) : undefined;
    let transport = typeof sessionId === 'string' ? transports.get(sessionId) : undefined;
    if (transport === undefined) {
      if (sessionId !== undefined) {
        res.writeHead(404, { 'content-type': 'application/json' });
        res.end(
          JSON.stringify({ jsonrpc: '2.0', error: { code: -32001, message: 'Session not found' }, id: null }),
        );
        return;
      }
      const created = new StreamableHTTPServerTransport({
        sessionIdGenerator: () => randomUUID(),
        onsessioninitialized: (id) => {
          transports.set(id, created);
        },
      });
      created.onclose = () => {
        if (created.sessionId !== undefined) transports.delete(created.sessionId);
      };
      await buildMcpServer(calls).connect(created);
      transport = created;
    }
    await transport.handleRequest(req, res, body);
  };

  const server: Server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
      res.end(String(err));
    });
  });
  await new Promise<void>((resolve) =>
    server.listen(options.port ?? 0, options.host ?? '127.0.0.1', resolve),
  );
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/mcp`,
    authorizationHeadersSeen: () => authSeen,
    calls: () => ({ ...calls }),
    close: async () => {
      for (const t of transports.values()) await t.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
