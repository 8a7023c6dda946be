/**
 * A reference point, not a product: the thinnest Node.js reverse proxy (node:http server + the
 * same undici Pool the gateway uses, bodies streamed through untouched, no parsing). The gap
 * between it and nginx is what Node's HTTP stack costs; the gap between it and mcp-warden is
 * what the enforcement costs.
 *
 * Usage: node dist/bench/passthrough.js --upstream URL [--port 0]
 * Prints one JSON line `{"url": ...}` once listening. Loopback only.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { pipeline } from 'node:stream/promises';
import { parseArgs } from 'node:util';
import { Pool } from 'undici';

const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'transfer-encoding', 'host', 'content-length']);

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { upstream: { type: 'string' }, port: { type: 'string', default: '0' } },
  });
  if (values.upstream === undefined) throw new Error('--upstream is required');
  const upstream = new URL(values.upstream);
  const pool = new Pool(upstream.origin, { connections: 256, keepAliveTimeout: 30_000, pipelining: 1 });
  const server = createServer((req, res) => {
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries(req.headers))
      if (typeof v === 'string' && !HOP_BY_HOP.has(k)) headers[k] = v;
    pool
      .request({
        path: req.url ?? '/',
        method: (req.method ?? 'GET') as 'GET' | 'POST' | 'DELETE',
        headers,
        body: req.method === 'GET' || req.method === 'DELETE' ? null : req,
        bodyTimeout: 0,
      })
      .then(async (up) => {
        const out: Record<string, string> = {};
        for (const [k, v] of Object.entries(up.headers))
          if (typeof v === 'string' && !HOP_BY_HOP.has(k)) out[k] = v;
        res.writeHead(up.statusCode, out);
        res.flushHeaders();
        await pipeline(up.body, res);
      })
      .catch((err: unknown) => {
        if (!res.headersSent) res.writeHead(502, { 'content-type': 'text/plain' });
        res.end(`passthrough: ${err instanceof Error ? err.message : String(err)}`);
      });
  });
  await new Promise<void>((resolve) => server.listen(Number(values.port), '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  process.stdout.write(
    `${JSON.stringify({ url: `http://127.0.0.1:${port}${upstream.pathname}`, pid: process.pid })}\n`,
  );
  const stop = () => {
    server.closeAllConnections();
    server.close(() => process.exit(0));
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main().catch((err: unknown) => {
  process.stderr.write(`passthrough: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exitCode = 1;
});
