import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  createMcpHandler,
  fromJsonSchema,
  inputRequired,
  type McpHttpHandler,
  McpServer,
} from '@modelcontextprotocol/server';

/**
 * A real 2026-07-28 (stateless) MCP server on the v2 SDK (`createMcpHandler`, legacy rejected),
 * served over node:http. Counts requests, Authorization headers and the methods it receives.
 */
export interface UpstreamV2 {
  mcpUrl: string;
  stats: {
    requests: number;
    authorizationSeen: number;
    methods: string[];
    headers: Array<Record<string, string>>;
  };
  close(): Promise<void>;
}

const cityArgs = fromJsonSchema({
  type: 'object',
  properties: { city: { type: 'string' } },
  required: ['city'],
});
const nameArgs = fromJsonSchema({
  type: 'object',
  properties: { name: { type: 'string' } },
  required: ['name'],
});
const queryArgs = fromJsonSchema({
  type: 'object',
  properties: { query: { type: 'string' } },
  required: ['query'],
});

function text(t: string) {
  return { content: [{ type: 'text' as const, text: t }] };
}

type ToolConfig = {
  description: string;
  inputSchema: ReturnType<typeof fromJsonSchema>;
  annotations?: Record<string, boolean>;
};

function reg(server: McpServer, name: string, config: ToolConfig, handler: unknown): void {
  server.registerTool(name, config, handler as never);
}

function buildServer(): McpServer {
  const server = new McpServer({ name: 'test-upstream-v2', version: '2.0.0' }, { capabilities: {} });
  reg(
    server,
    'get_weather',
    { description: 'Weather', inputSchema: cityArgs, annotations: { readOnlyHint: true } },
    async (args: { city: string }) => ({
      content: [{ type: 'text' as const, text: `sunny in ${args.city}` }],
    }),
  );
  reg(
    server,
    'delete_repo',
    { description: 'Delete', inputSchema: nameArgs, annotations: { destructiveHint: true } },
    async (args: { name: string }) => ({
      content: [{ type: 'text' as const, text: `deleted ${args.name}` }],
    }),
  );
  server.registerTool('run_query', { description: 'SQL', inputSchema: queryArgs }, (async (args: unknown) =>
    text(`ran: ${(args as { query: string }).query}`)) as never);
  reg(
    server,
    'deploy',
    {
      description: 'Deploys to a region mirrored into the Mcp-Param-Region header',
      inputSchema: fromJsonSchema({
        type: 'object',
        properties: { region: { type: 'string', 'x-mcp-header': 'Region' } },
        required: ['region'],
      } as Parameters<typeof fromJsonSchema>[0]),
    },
    (async (args: unknown) => text(`deployed to ${(args as { region: string }).region}`)) as never,
  );
  reg(
    server,
    'ask_name',
    {
      description: 'Asks the user for their name (input_required)',
      inputSchema: fromJsonSchema({ type: 'object', properties: {} }),
    },
    (async (_args: unknown, ctx: { mcpReq: { inputResponses?: Record<string, unknown> } }) => {
      const r = ctx.mcpReq.inputResponses?.['user_name'] as { content?: { name?: string } } | undefined;
      if (r?.content?.name) return text(`Hello, ${r.content.name}!`);
      return inputRequired({
        inputRequests: {
          user_name: inputRequired.elicit({
            message: 'What is your name?',
            requestedSchema: { type: 'object', properties: { name: { type: 'string' } }, required: ['name'] },
          }),
        },
      });
    }) as never,
  );
  return server;
}

async function serve(
  handler: McpHttpHandler,
  req: IncomingMessage,
  res: ServerResponse,
  stats: UpstreamV2['stats'],
): Promise<void> {
  stats.requests++;
  if (req.headers.authorization !== undefined) stats.authorizationSeen++;
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  const body = Buffer.concat(chunks);
  if (body.length > 0) {
    try {
      const m = JSON.parse(body.toString()) as { method?: string };
      if (typeof m.method === 'string') stats.methods.push(m.method);
    } catch {
      /* the SDK answers it */
    }
  }
  const headers = new Headers();
  const seen: Record<string, string> = {};
  for (const [name, value] of Object.entries(req.headers)) {
    if (typeof value === 'string') {
      headers.set(name, value);
      seen[name] = value;
    }
  }
  stats.headers.push(seen);
  const abort = new AbortController();
  res.on('close', () => abort.abort());
  const request = new Request(`http://${req.headers.host}${req.url}`, {
    method: req.method ?? 'GET',
    headers,
    body: body.length > 0 ? new Uint8Array(body) : undefined,
    signal: abort.signal,
  });
  const response = await handler.fetch(request);
  const out: Record<string, string> = {};
  response.headers.forEach((v, k) => {
    out[k] = v;
  });
  res.writeHead(response.status, out);
  if (!response.body) {
    res.end();
    return;
  }
  const reader = response.body.getReader();
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

export async function startUpstreamV2(): Promise<UpstreamV2> {
  const stats: UpstreamV2['stats'] = { requests: 0, authorizationSeen: 0, methods: [], headers: [] };
  const handler = createMcpHandler(() => buildServer(), { legacy: 'reject' });
  const server = createServer((req, res) => {
    serve(handler, req, res, stats).catch(() => {
      if (!res.headersSent) res.writeHead(500);
      res.end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return {
    mcpUrl: `http://127.0.0.1:${port}/mcp`,
    stats,
    async close() {
      await handler.close();
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
