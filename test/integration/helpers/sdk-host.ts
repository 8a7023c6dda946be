import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import {
  type EventStore,
  StreamableHTTPServerTransport,
} from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { isInitializeRequest } from '@modelcontextprotocol/sdk/types.js';

export interface HostOptions {
  /** Answer POSTs with JSON instead of an SSE stream. */
  jsonResponse?: boolean;
  /** Sees each POST body's text exactly as it arrived (before the SDK parses it). */
  onBody?: (text: string) => void;
  /** Keep events for resumption (`Last-Event-ID`): SSE events then carry ids. */
  eventStore?: EventStore;
}

/**
 * Host SDK servers over stateful streamable HTTP on a loopback port: one `build()` server per
 * session, as an MCP server process would. For tests that need their own tool set.
 *
 * @example
 * const upstream = await hostMcpServer(() => { const s = new McpServer(...); s.registerTool(...); return s; });
 */
export function hostMcpServer(
  build: () => McpServer,
  options: HostOptions = {},
): Promise<{ url: string; close(): Promise<void> }> {
  const transports = new Map<string, StreamableHTTPServerTransport>();
  const server = createServer((req, res) => {
    void (async () => {
      const body = req.method === 'POST' ? await readJson(req, options.onBody) : undefined;
      const sid = req.headers['mcp-session-id'];
      let t = typeof sid === 'string' ? transports.get(sid) : undefined;
      if (t === undefined) {
        if (!(req.method === 'POST' && isInitializeRequest(body))) {
          res.writeHead(404).end();
          return;
        }
        const created = new StreamableHTTPServerTransport({
          sessionIdGenerator: () => randomUUID(),
          enableJsonResponse: options.jsonResponse === true,
          ...(options.eventStore === undefined ? {} : { eventStore: options.eventStore }),
          onsessioninitialized: (id) => {
            transports.set(id, created);
          },
        });
        await build().connect(created);
        t = created;
      }
      await t.handleRequest(req, res, body);
    })().catch(() => {
      if (!res.headersSent) res.writeHead(500).end();
    });
  });
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as AddressInfo;
      resolve({
        url: `http://127.0.0.1:${port}/mcp`,
        close: () =>
          new Promise<void>((r) => {
            server.closeAllConnections();
            server.close(() => r());
          }),
      });
    }),
  );
}

async function readJson(req: IncomingMessage, onBody?: (text: string) => void): Promise<unknown> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  const text = Buffer.concat(chunks).toString('utf8');
  onBody?.(text);
  return JSON.parse(text);
}
