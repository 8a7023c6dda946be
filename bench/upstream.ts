/**
 * The benchmark's upstream: a real MCP server built on the official SDK (v1, low-level `Server` +
 * `StreamableHTTPServerTransport`), stateful sessions (`Mcp-Session-Id`), SDK defaults (POST
 * responses are SSE streams; pass `--json-response` for `application/json` answers).
 *
 * Tools:
 * - every catalogue tool (`get_issue`, `search_code`, ...): a small result (~150 bytes)
 * - `list_issue`: a ~64 KiB result of typical JSON (issue records, a few e-mails and key-like ids)
 * - `list_workflow_run`: streams `--events` (default 200) `notifications/progress` events on the
 *   request's SSE stream before its result (the client must send `_meta.progressToken`)
 * - `tools/list`: the 40-tool catalogue (~25 KiB)
 *
 * Usage: node dist/bench/upstream.js [--port 0] [--events 200] [--json-response]
 * Prints one JSON line `{"url": "http://127.0.0.1:PORT/mcp", ...}` once listening. Loopback only.
 */
import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { parseArgs } from 'node:util';
import { Server } from '@modelcontextprotocol/sdk/server/index.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { CallToolRequestSchema, ListToolsRequestSchema } from '@modelcontextprotocol/sdk/types.js';
import { toolCatalogue, typicalJsonText } from './fixtures.js';

export const LARGE_TOOL = 'list_issue';
export const STREAM_TOOL = 'list_workflow_run';
export const SMALL_TOOL = 'get_issue';

interface UpstreamOptions {
  port: number;
  events: number;
  jsonResponse: boolean;
}

function mcpServer(options: UpstreamOptions): Server {
  const tools = toolCatalogue();
  const large = typicalJsonText(64 * 1024);
  const server = new Server({ name: 'bench-upstream', version: '1.0.0' }, { capabilities: { tools: {} } });
  server.setRequestHandler(ListToolsRequestSchema, () => ({ tools }));
  server.setRequestHandler(CallToolRequestSchema, async (req, extra) => {
    const name = req.params.name;
    if (name === LARGE_TOOL) return { content: [{ type: 'text', text: large }] };
    if (name === STREAM_TOOL) {
      const token = req.params._meta?.progressToken;
      if (token !== undefined) {
        for (let i = 1; i <= options.events; i++) {
          await extra.sendNotification({
            method: 'notifications/progress',
            params: { progressToken: token, progress: i, total: options.events, message: `step ${i} done` },
          });
        }
      }
      return { content: [{ type: 'text', text: `run finished after ${options.events} steps` }] };
    }
    if (!tools.some((t) => t.name === name)) {
      return { content: [{ type: 'text', text: `unknown tool ${name}` }], isError: true };
    }
    const args = req.params.arguments ?? {};
    const text = JSON.stringify({
      tool: name,
      owner: args.owner,
      repo: args.repo,
      number: 42,
      state: 'open',
      title: 'cache eviction regression',
    });
    return { content: [{ type: 'text', text }] };
  });
  return server;
}

export async function startUpstream(
  options: UpstreamOptions,
): Promise<{ url: string; close(): Promise<void> }> {
  const sessions = new Map<string, StreamableHTTPServerTransport>();

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (!req.url?.startsWith('/mcp')) {
      res.writeHead(404).end();
      return;
    }
    const sid = req.headers['mcp-session-id'];
    if (typeof sid === 'string') {
      const transport = sessions.get(sid);
      if (transport === undefined) {
        res.writeHead(404, { 'content-type': 'application/json' });
        res.end(
          JSON.stringify({ jsonrpc: '2.0', error: { code: -32001, message: 'Session not found' }, id: null }),
        );
        return;
      }
      await transport.handleRequest(req, res);
      return;
    }
    // No session id: only an initialize may open one; the transport answers anything else with 400.
    const transport = new StreamableHTTPServerTransport({
      sessionIdGenerator: () => randomUUID(),
      enableJsonResponse: options.jsonResponse,
      onsessioninitialized: (id) => {
        sessions.set(id, transport);
      },
      onsessionclosed: (id) => {
        sessions.delete(id);
      },
    });
    transport.onclose = () => {
      if (transport.sessionId !== undefined) sessions.delete(transport.sessionId);
    };
    await mcpServer(options).connect(transport);
    await transport.handleRequest(req, res);
  }

  const http = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
      res.end(`upstream error: ${err instanceof Error ? err.message : String(err)}`);
    });
  });
  http.keepAliveTimeout = 60_000;
  await new Promise<void>((resolve) => http.listen(options.port, '127.0.0.1', resolve));
  const { port } = http.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/mcp`,
    close: async () => {
      for (const t of sessions.values()) await t.close();
      http.closeAllConnections();
      await new Promise<void>((resolve) => http.close(() => resolve()));
    },
  };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      port: { type: 'string', default: '0' },
      events: { type: 'string', default: '200' },
      'json-response': { type: 'boolean', default: false },
    },
  });
  const options: UpstreamOptions = {
    port: Number(values.port),
    events: Number(values.events),
    jsonResponse: values['json-response'] === true,
  };
  if (!Number.isInteger(options.port) || !Number.isInteger(options.events) || options.events < 1) {
    process.stderr.write('upstream: --port and --events must be integers (events >= 1)\n');
    process.exitCode = 2;
    return;
  }
  const up = await startUpstream(options);
  process.stdout.write(
    `${JSON.stringify({ url: up.url, pid: process.pid, stateful: true, jsonResponse: options.jsonResponse, events: options.events })}\n`,
  );
  const stop = () => {
    up.close().then(() => process.exit(0));
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

if (import.meta.url === `file://${process.argv[1]}`) {
  main().catch((err: unknown) => {
    process.stderr.write(`upstream: ${err instanceof Error ? err.stack : String(err)}\n`);
    process.exitCode = 1;
  });
}
