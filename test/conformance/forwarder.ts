/**
 * A loopback forwarder that puts a bearer token on every request: the conformance client sends
 * none, and `mcp-warden gateway` refuses calls without one. Everything else passes unchanged —
 * method, path, body, and the `Host`/`Origin` headers (so the gateway, not this hop, decides on
 * DNS rebinding) — and responses, SSE streams included, stream back as they arrive.
 *
 * Run: `node test/conformance/forwarder.ts --target http://127.0.0.1:PORT --token-file FILE
 *        [--port 0] [--ready-file PATH]`
 * It prints `READY http://127.0.0.1:PORT` once it listens. The token is read from the file (so it
 * never appears in a process listing) and is never logged.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingHttpHeaders, request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { parseArgs } from 'node:util';

/** Hop-by-hop headers (RFC 9110 §7.6.1) are not forwarded. */
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
]);

function forwardHeaders(headers: IncomingHttpHeaders): IncomingHttpHeaders {
  const out: IncomingHttpHeaders = {};
  for (const [name, value] of Object.entries(headers)) {
    if (!HOP_BY_HOP.has(name) && value !== undefined) out[name] = value;
  }
  return out;
}

export async function startForwarder(options: {
  target: string;
  token: string;
  port?: number;
}): Promise<{ url: string; close(): Promise<void> }> {
  const target = new URL(options.target);
  if (target.protocol !== 'http:' || !['127.0.0.1', 'localhost', '[::1]'].includes(target.hostname)) {
    throw new Error(`--target must be an http:// loopback URL, got ${options.target}`);
  }
  const server = createServer((req, res) => {
    const headers = forwardHeaders(req.headers);
    headers.authorization = `Bearer ${options.token}`;
    const upstream = request(
      {
        host: target.hostname.replace(/^\[|\]$/g, ''),
        port: target.port,
        method: req.method,
        path: req.url,
        headers,
      },
      (upstreamRes) => {
        res.writeHead(
          upstreamRes.statusCode ?? 502,
          upstreamRes.statusMessage,
          forwardHeaders(upstreamRes.headers),
        );
        res.flushHeaders();
        upstreamRes.pipe(res);
        upstreamRes.on('error', () => res.destroy());
      },
    );
    upstream.on('error', (err) => {
      if (res.headersSent) {
        res.destroy();
        return;
      }
      res.writeHead(502, { 'content-type': 'application/json' });
      res.end(
        JSON.stringify({
          jsonrpc: '2.0',
          error: { code: -32000, message: `forwarder: ${err.message}` },
          id: null,
        }),
      );
    });
    // The client went away (e.g. it cancelled an SSE stream): end the upstream leg too.
    res.on('close', () => {
      if (!res.writableFinished) upstream.destroy();
    });
    req.pipe(upstream);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      target: { type: 'string' },
      'token-file': { type: 'string' },
      port: { type: 'string', default: '0' },
      'ready-file': { type: 'string' },
    },
  });
  if (values.target === undefined || values['token-file'] === undefined) {
    process.stderr.write(
      'usage: forwarder.ts --target URL --token-file FILE [--port 0] [--ready-file PATH]\n',
    );
    process.exit(2);
  }
  const token = readFileSync(values['token-file'], 'utf8').trim();
  if (!/^[\w-]+\.[\w-]+\.[\w-]*$/.test(token)) {
    process.stderr.write(`forwarder: ${values['token-file']} does not hold a JWT\n`);
    process.exit(2);
  }
  const port = Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    process.stderr.write(`forwarder: --port must be an integer 0..65535, got "${values.port}"\n`);
    process.exit(2);
  }
  const running = await startForwarder({ target: values.target, token, port });
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
    process.stderr.write(`forwarder: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  });
}
