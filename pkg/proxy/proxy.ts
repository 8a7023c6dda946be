import { readFileSync } from 'node:fs';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import cors from 'cors';
import { errorMessage } from '../errors.js';
import { protectedResourceMetadata } from '../identity/index.js';
import { RpcCodes } from '../mcp/jsonrpc.js';
import { createServer } from '../node-http.js';
import { authenticate, baseUrl } from './auth.js';
import { ProxyCore } from './core.js';
import { header, sendJson, sendRpcError } from './http.js';
import { handleLegacyMessage, handleLegacySse } from './legacy.js';
import type { ProxyOptions, WardenProxy } from './options.js';
import { handleDelete, handleGet, handlePost } from './streamable.js';

const METADATA_PATH = '/.well-known/oauth-protected-resource';

/**
 * The mcp-warden data path as an HTTP handler: authenticate → parse → decide → forward → mask →
 * record → report, for streamable HTTP, stateless 2026-07-28 and legacy HTTP+SSE.
 *
 * @example
 * const proxy = createProxy({ upstream: 'http://127.0.0.1:3000/mcp', policySource, authenticator, metrics, podName: 'local' });
 * const { url } = await proxy.listen('127.0.0.1', 8080);
 */
export function createProxy(options: ProxyOptions): WardenProxy {
  const core = new ProxyCore(options);
  const allowedHosts = options.allowedHosts
    ? new Set(options.allowedHosts.map((h) => h.toLowerCase()))
    : undefined;
  const allowedOrigins = options.allowedOrigins ? new Set(options.allowedOrigins) : undefined;
  // CORS for the listed origins only (a browser page of another origin calls the proxy directly):
  // preflights answered, the MCP headers exposed. No credentials mode: the token is a header.
  const corsHeaders =
    allowedOrigins === undefined
      ? undefined
      : cors({
          origin: [...allowedOrigins],
          methods: ['GET', 'POST', 'DELETE'],
          exposedHeaders: ['mcp-session-id', 'mcp-protocol-version', 'www-authenticate'],
          maxAge: 600,
        });
  const metadataPaths = new Set([METADATA_PATH, `${METADATA_PATH}${core.mcpPath}`]);
  let server: Server | undefined;
  let closing = false;

  const sweep = setInterval(() => {
    const idle = options.sessionIdleMs ?? 30 * 60_000;
    const now = Date.now();
    for (const s of core.sessions.values()) {
      if (s.transport !== 'legacy-sse' && !s.openStreams && now - s.lastSeen > idle)
        void core.closeSession(s, 'expired');
    }
    void core.sweepStateless();
  }, 60_000);
  sweep.unref();

  function hostAllowed(req: IncomingMessage): boolean {
    if (!allowedHosts) return true;
    const host = header(req.headers.host)?.toLowerCase();
    if (host === undefined) return false;
    if (allowedHosts.has(host)) return true;
    const bare = host.startsWith('[') ? host.slice(0, host.indexOf(']') + 1) : host.split(':')[0]!;
    return allowedHosts.has(bare);
  }

  /**
   * Whether `origin` is the proxy's own: its host and port are the `Host` header's (a page served
   * from the same host). `null`, malformed and non-http(s) values are not.
   */
  function ownOrigin(origin: string, req: IncomingMessage): boolean {
    const host = header(req.headers.host);
    if (host === undefined) return false;
    try {
      const from = new URL(origin);
      if (from.protocol !== 'http:' && from.protocol !== 'https:') return false;
      return new URL(`${from.protocol}//${host}`).host === from.host;
    } catch {
      return false;
    }
  }

  async function route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const started = process.hrtime.bigint();
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const path = q === -1 ? url : url.slice(0, q);
    if (!hostAllowed(req)) {
      sendRpcError(res, 403, null, RpcCodes.invalidRequest, 'Forbidden: Host header not allowed', {
        code: 'ERR_BAD_REQUEST',
      });
      return;
    }
    // A request without `Origin` (every non-browser client) passes. With one, it must be listed
    // in `allowedOrigins` (and then gets CORS) or be the proxy's own; any other is a page of
    // another site: refused (the MCP transport requires servers to validate `Origin`).
    const origin = header(req.headers.origin);
    if (origin !== undefined) {
      if (corsHeaders !== undefined && allowedOrigins?.has(origin)) {
        // Sets the CORS headers (synchronously: static options); answers an OPTIONS preflight itself.
        let preflight = true;
        corsHeaders(req, res, () => {
          preflight = false;
        });
        if (preflight) return;
      } else if (!ownOrigin(origin, req)) {
        sendRpcError(
          res,
          403,
          null,
          RpcCodes.invalidRequest,
          "Forbidden: Origin not allowed (only the proxy's own origin and --allowed-origins are accepted)",
          { code: 'ERR_BAD_REQUEST' },
        );
        return;
      }
    }
    if (metadataPaths.has(path)) {
      if (req.method !== 'GET') {
        sendJson(res, 405, { error: 'method_not_allowed' }, { allow: 'GET' });
        return;
      }
      const engine = core.engine();
      const issuers = engine ? engine.trustedIssuers() : [];
      sendJson(res, 200, protectedResourceMetadata(`${baseUrl(core, req)}${core.mcpPath}`, issuers));
      return;
    }
    const isMcp = path === core.mcpPath;
    const isLegacySse = core.legacy !== undefined && path === core.legacy.sse;
    const isLegacyMessage = core.legacy !== undefined && path === core.legacy.message;
    if (!isMcp && !isLegacySse && !isLegacyMessage) {
      sendJson(res, 404, { error: 'not_found', message: `Not found: only ${core.mcpPath} is served here` });
      return;
    }
    const method = req.method ?? 'GET';
    // The legacy SSE path may equal the MCP path (a legacy-only upstream): route by method.
    const kind: 'legacy-sse' | 'legacy-message' | 'mcp' | undefined =
      isLegacySse && method === 'GET'
        ? 'legacy-sse'
        : isLegacyMessage && method === 'POST'
          ? 'legacy-message'
          : isMcp && (method === 'GET' || method === 'POST' || method === 'DELETE')
            ? 'mcp'
            : undefined;
    if (kind === undefined) {
      const allowed = isMcp ? 'GET, POST, DELETE' : isLegacySse ? 'GET' : 'POST';
      sendRpcError(
        res,
        405,
        null,
        RpcCodes.invalidRequest,
        `Method not allowed: use ${allowed}`,
        { code: 'ERR_BAD_REQUEST' },
        { allow: allowed },
      );
      return;
    }
    const engine = core.engine();
    if (!engine) {
      // No valid policy: refuse everything (fail closed).
      sendRpcError(
        res,
        503,
        null,
        RpcCodes.policyUnavailable,
        'Service unavailable: no valid policy is loaded; every call is refused',
        {
          code: 'ERR_POLICY_UNAVAILABLE',
        },
        { 'retry-after': '5' },
      );
      return;
    }
    const identity = await authenticate(core, engine, req, res);
    if (!identity) return;
    if (kind === 'legacy-sse') return handleLegacySse(core, req, res, identity, engine);
    if (kind === 'legacy-message') return handleLegacyMessage(core, req, res, identity, engine, started);
    if (method === 'POST') return handlePost(core, req, res, identity, engine, started);
    if (method === 'GET') return handleGet(core, req, res, identity, engine, started);
    return handleDelete(core, req, res, identity, started);
  }

  const handler = (req: IncomingMessage, res: ServerResponse): void => {
    if (closing) {
      sendRpcError(res, 503, null, RpcCodes.internalError, 'Service unavailable: shutting down', {
        code: 'ERR_WARDEN',
      });
      return;
    }
    route(req, res).catch((err: unknown) => {
      core.logger.error({ event: 'handler-failed', err: errorMessage(err) }, 'request handling failed');
      if (!res.headersSent) {
        sendRpcError(res, 500, null, RpcCodes.internalError, 'Internal error in mcp-warden', {
          code: 'ERR_WARDEN',
        });
      } else if (!res.writableEnded) res.end();
    });
  };

  return {
    handler,
    events: core.events,
    async listen(host: string, port: number) {
      // requestTimeout bounds receiving a request (headers + body: no slowloris), not the response,
      // so long-lived SSE answers are unaffected. node checks both timeouts every
      // connectionsCheckingInterval: at most 5 s here, so a slow client is cut within 5 s of its
      // deadline (node's default, 30 s, let a 60 s timeout run to 90 s).
      const requestTimeout = options.requestTimeoutMs ?? 60_000;
      server = createServer(
        {
          requestTimeout,
          headersTimeout: Math.min(30_000, requestTimeout),
          keepAliveTimeout: 30_000,
          connectionsCheckingInterval: Math.min(5_000, Math.max(250, Math.floor(requestTimeout / 4))),
        },
        handler,
      );
      // Idle or slow connections cost a file descriptor each, before any token is checked: past
      // half the process's descriptor limit new ones are refused, so the upstream connections,
      // recordings and key fetches always keep descriptors (else EMFILE refuses everyone).
      server.maxConnections = options.maxConnections ?? defaultMaxConnections();
      let droppedAt = 0;
      server.on('drop', () => {
        const now = Date.now();
        if (now - droppedAt < 10_000) return;
        droppedAt = now;
        core.logger.warn(
          { event: 'connections-full', max: server?.maxConnections },
          'refusing new connections: the connection limit is reached',
        );
      });
      server.on('clientError', (err: NodeJS.ErrnoException, socket) => {
        if (!socket.writable) {
          socket.destroy(err);
          return;
        }
        const status =
          err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
            ? '408 Request Timeout'
            : err.code === 'HPE_HEADER_OVERFLOW'
              ? '431 Request Header Fields Too Large'
              : '400 Bad Request';
        socket.end(`HTTP/1.1 ${status}\r\nconnection: close\r\ncontent-length: 0\r\n\r\n`);
      });
      await new Promise<void>((resolve, reject) => {
        server!.once('error', reject);
        server!.listen(port, host, () => {
          server!.off('error', reject);
          resolve();
        });
      });
      const addr = server.address() as AddressInfo;
      const h = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
      const url = `http://${h}:${addr.port}`;
      // Without --public-url the metadata names the URL each client used (its Host header), which
      // is what MCP clients compare the `resource` with.
      return { host: addr.address, port: addr.port, url };
    },
    async close() {
      closing = true;
      clearInterval(sweep);
      const closed = server
        ? new Promise<void>((resolve) => server!.close(() => resolve()))
        : Promise.resolve();
      await Promise.all([...core.sessions.values()].map((s) => core.closeSession(s, 'shutdown')));
      await core.sweepStateless(true);
      server?.closeAllConnections();
      await closed;
      await core.upstream.destroy();
    },
  };
}

/**
 * Half the process's open-file limit (Linux `/proc/self/limits`, soft limit), at least 64 and at
 * most 100 000; 10 000 where the limit cannot be read.
 */
export function defaultMaxConnections(limits = '/proc/self/limits'): number {
  let soft: number | undefined;
  try {
    const m = /^Max open files\s+(\d+|unlimited)/m.exec(readFileSync(limits, 'utf8'));
    if (m) soft = m[1] === 'unlimited' ? Number.POSITIVE_INFINITY : Number(m[1]);
  } catch {
    // not Linux, or no /proc
  }
  if (soft === undefined) return 10_000;
  return Math.min(100_000, Math.max(64, Math.floor(soft / 2)));
}
