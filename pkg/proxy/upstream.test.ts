import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { isWardenError } from '../errors.js';
import {
  DISCARD_LIMIT,
  discardUpstreamBody,
  readUpstreamBody,
  Upstream,
  UpstreamCancel,
  upstreamHeaders,
} from './upstream.js';

/** The upstream client against real loopback servers: keep-alive, timeouts, refusals, headers. */
let server: Server;
let base: string;
let handler: (req: IncomingMessage, res: ServerResponse) => void;

beforeAll(async () => {
  server = createServer((req, res) => handler(req, res));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(async () => {
  server.closeAllConnections();
  await new Promise<void>((r) => server.close(() => r()));
});

test('reuses one keep-alive connection and sends the body with its length', async () => {
  const seen: Array<{
    port: number | undefined;
    length: string | undefined;
    host: string | undefined;
    body: string;
  }> = [];
  handler = (req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => {
      body += c.toString();
    });
    req.on('end', () => {
      seen.push({
        port: req.socket.remotePort,
        length: req.headers['content-length'],
        host: req.headers.host,
        body,
      });
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}');
    });
  };
  const up = new Upstream(`${base}/mcp`);
  try {
    for (let i = 0; i < 3; i++) {
      const r = await up.request('POST', '/mcp', { 'content-type': 'application/json' }, '{"é":1}');
      expect(r.status).toBe(200);
      expect((await readUpstreamBody(r.body, 1000)).toString('utf8')).toBe('{"ok":true}');
    }
    expect(seen.map((s) => s.body)).toEqual(['{"é":1}', '{"é":1}', '{"é":1}']);
    expect(seen[0]!.length).toBe(String(Buffer.byteLength('{"é":1}')));
    expect(seen[0]!.host).toBe(new URL(base).host);
    expect(new Set(seen.map((s) => s.port)).size).toBe(1);
  } finally {
    await up.destroy();
  }
});

test('an upstream that never answers times out as ERR_UPSTREAM with timeout set', async () => {
  handler = () => undefined;
  const up = new Upstream(`${base}/mcp`, { headersTimeoutMs: 100 });
  try {
    const err = await up.request('POST', '/mcp', {}, '{}').catch((e: unknown) => e);
    expect(isWardenError(err, 'ERR_UPSTREAM')).toBe(true);
    expect((err as { details?: { timeout?: boolean } }).details?.timeout).toBe(true);
  } finally {
    await up.destroy();
  }
});

test("a caller's timeout signal and a refused connection are upstream errors, not crashes", async () => {
  handler = () => undefined;
  const up = new Upstream(`${base}/mcp`);
  const closed = new Upstream('http://127.0.0.1:1/mcp');
  try {
    const timedOut = await up.request('GET', '/mcp', {}, undefined, AbortSignal.timeout(50)).catch((e) => e);
    expect(timedOut).toMatchObject({ code: 'ERR_UPSTREAM', details: { timeout: true } });
    const refused = await closed.request('POST', '/mcp', {}, '{}').catch((e: unknown) => e);
    expect(refused).toMatchObject({ code: 'ERR_UPSTREAM', message: expect.stringContaining('refused') });
  } finally {
    await Promise.all([up.destroy(), closed.destroy()]);
  }
});

test('a cancelled request closes its upstream connection and fails as aborted; after the answer, cancel leaves the body alone', async () => {
  let arrived: () => void = () => undefined;
  const arrival = new Promise<void>((r) => {
    arrived = r;
  });
  let upstreamSawClose: Promise<void> = Promise.resolve();
  handler = (req, res) => {
    if (req.url === '/hang') {
      upstreamSawClose = new Promise((r) => req.socket.once('close', () => r()));
      arrived();
      return; // never answers
    }
    res.writeHead(200, { 'content-type': 'text/plain' }).end('done');
  };
  const up = new Upstream(`${base}/mcp`);
  try {
    const cancel = new UpstreamCancel();
    const pending = up.request('POST', '/hang', {}, '{}', cancel).catch((e: unknown) => e);
    await arrival;
    cancel.cancel();
    expect(cancel.cancelled).toBe(true);
    expect(await pending).toMatchObject({ code: 'ERR_UPSTREAM', message: 'Upstream MCP server ABORT_ERR' });
    await upstreamSawClose;
    // Cancelled before it starts: refused at once, nothing sent.
    expect(await up.request('POST', '/mcp', {}, '{}', cancel).catch((e: unknown) => e)).toMatchObject({
      code: 'ERR_UPSTREAM',
    });
    // Cancelled once answered: the response is the caller's, still readable to its end.
    const late = new UpstreamCancel();
    const r = await up.request('POST', '/mcp', {}, '{}', late);
    late.cancel();
    expect((await readUpstreamBody(r.body, 1000)).toString('utf8')).toBe('done');
  } finally {
    await up.destroy();
  }
});

test('a body larger than the limit is refused while reading', async () => {
  handler = (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end('x'.repeat(10_000));
  };
  const up = new Upstream(`${base}/mcp`);
  try {
    const r = await up.request('POST', '/mcp', {}, '{}');
    await expect(readUpstreamBody(r.body, 1000)).rejects.toMatchObject({ code: 'ERR_UPSTREAM' });
  } finally {
    await up.destroy();
  }
});

test('a body that stalls after its headers times out as ERR_UPSTREAM with timeout set, and its connection is closed', async () => {
  let upstreamSawClose: Promise<void> = Promise.resolve();
  handler = (req, res) => {
    upstreamSawClose = new Promise((r) => req.socket.once('close', () => r()));
    res.writeHead(200, { 'content-type': 'application/json' });
    res.write('{"jsonrpc":"2.0",');
  };
  const up = new Upstream(`${base}/mcp`);
  try {
    const r = await up.request('POST', '/mcp', {}, '{}');
    const err = await readUpstreamBody(r.body, 1000, 100).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'ERR_UPSTREAM', details: { timeout: true } });
    expect((err as Error).message).toContain('response body');
    await upstreamSawClose;
  } finally {
    await up.destroy();
  }
});

test('a discarded body: a short one keeps its connection, an endless one is cut at the limit', async () => {
  let written = 0;
  const ports = new Set<number | undefined>();
  handler = (req, res) => {
    if (req.url === '/endless') {
      res.writeHead(202, { 'content-type': 'text/plain' });
      const chunk = Buffer.alloc(16 * 1024, 0x61);
      const pump = (): void => {
        while (!res.destroyed && written < 64 * 1024 * 1024) {
          written += chunk.length;
          if (!res.write(chunk)) {
            res.once('drain', pump);
            return;
          }
        }
      };
      pump();
      return;
    }
    ports.add(req.socket.remotePort);
    res.writeHead(202, { 'content-type': 'text/plain' }).end('accepted');
  };
  const up = new Upstream(`${base}/mcp`);
  try {
    for (let i = 0; i < 2; i++) {
      const r = await up.request('POST', '/mcp', {}, '{}');
      await discardUpstreamBody(r.body, 1000);
    }
    expect(ports.size).toBe(1);
    const r = await up.request('POST', '/endless', {}, '{}');
    const closed = new Promise<void>((done) => r.body.stream.once('close', () => done()));
    await discardUpstreamBody(r.body, 10_000);
    await closed;
    expect(r.body.stream.destroyed).toBe(true);
    // Cut near the limit, not read to its end (socket buffers hold a few MiB at most).
    expect(written).toBeLessThan(16 * 1024 * 1024);
    expect(DISCARD_LIMIT).toBe(64 * 1024);
  } finally {
    await up.destroy();
  }
});

test('only allowlisted request headers travel upstream; the caller token never does', () => {
  expect(
    upstreamHeaders({
      authorization: 'Bearer secret',
      cookie: 'a=b',
      'content-type': 'application/json',
      'mcp-session-id': 's1',
      'mcp-param-owner': 'acme',
      host: 'evil',
    }),
  ).toEqual({ 'content-type': 'application/json', 'mcp-session-id': 's1', 'mcp-param-owner': 'acme' });
});

test('URLs that are not http(s) are configuration errors', () => {
  expect(() => new Upstream('ftp://127.0.0.1/mcp')).toThrow(/http/);
  expect(() => new Upstream('not a url')).toThrow(/Invalid upstream URL/);
});
