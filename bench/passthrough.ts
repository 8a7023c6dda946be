/**
 * A reference point, not a product: the thinnest Node.js reverse proxy (node:http server + a
 * node:http keep-alive Agent to the upstream, as the gateway uses; bodies streamed through
 * untouched, no parsing). The gap
 * between it and nginx is what Node's HTTP stack costs; the gap between it and mcp-warden is
 * what the enforcement costs.
 *
 * Usage: node dist/bench/passthrough.js --upstream URL [--port 0]
 * Prints one JSON line `{"url": ...}` once listening. Loopback only.
 */
import { Agent, createServer, request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { parseArgs } from 'node:util';

const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'transfer-encoding', 'host', 'content-length']);

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { upstream: { type: 'string' }, port: { type: 'string', default: '0' } },
  });
  if (values.upstream === undefined) throw new Error('--upstream is required');
  const upstream = new URL(values.upstream);
  const agent = new Agent({ keepAlive: true, maxSockets: 256 });
  const server = createServer((req, res) => {
    const headers: Record<string, string> = { host: upstream.host };
    for (const [k, v] of Object.entries(req.headers))
      if (typeof v === 'string' && !HOP_BY_HOP.has(k)) headers[k] = v;
    const fail = (err: Error): void => {
      if (!res.headersSent) res.writeHead(502, { 'content-type': 'text/plain' });
      res.end(`passthrough: ${err.message}`);
    };
    const up = request(
      {
        agent,
        host: upstream.hostname,
        port: upstream.port,
        method: req.method ?? 'GET',
        path: req.url ?? '/',
        headers,
      },
      (ur) => {
        const out: Record<string, string> = {};
        for (const [k, v] of Object.entries(ur.headers))
          if (typeof v === 'string' && !HOP_BY_HOP.has(k)) out[k] = v;
        res.writeHead(ur.statusCode ?? 502, out);
        ur.pipe(res);
        ur.on('error', fail);
      },
    );
    up.on('error', fail);
    req.pipe(up);
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
