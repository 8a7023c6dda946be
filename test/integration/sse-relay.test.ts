import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { type DevIssuer, startDevIssuer } from '../../pkg/identity/dev-issuer.js';
import { createAuthenticator } from '../../pkg/identity/index.js';
import { type SseItem, SseParser } from '../../pkg/mcp/sse.js';
import { createMetrics } from '../../pkg/metrics/catalogue.js';
import { createProxy } from '../../pkg/proxy/index.js';
import type { WardenProxy } from '../../pkg/proxy/options.js';
import { AUDIENCE } from './helpers/harness.js';
import { testEngine, testSource } from './helpers/test-policy.js';

/**
 * The SSE relay against a hand-written upstream that splits its stream at awkward places: inside
 * a multi-byte UTF-8 character, between CR and LF, inside field names. What the client gets must
 * mean exactly what the upstream sent: same ids, retry, comments, data.
 */
let issuer: DevIssuer;
let upstream: Server;
let proxy: WardenProxy;
let url: string;
let token: string;
/** What the upstream sends, in order: bytes, a pause, or a dropped connection. */
type Piece = Buffer | { delayMs: number } | 'destroy';
let chunks: Piece[] = [];

beforeAll(async () => {
  issuer = await startDevIssuer();
  upstream = createServer((req, res) => {
    req.resume();
    req.on('end', async () => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.flushHeaders();
      for (const c of chunks) {
        if (c === 'destroy') {
          res.socket?.destroy();
          return;
        }
        if (Buffer.isBuffer(c)) res.write(c);
        else await new Promise((r) => setTimeout(r, c.delayMs));
        // Let each piece travel on its own.
        await new Promise((r) => setImmediate(r));
      }
      res.end();
    });
  });
  await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
  proxy = createProxy({
    upstream: `http://127.0.0.1:${(upstream.address() as AddressInfo).port}/mcp`,
    policySource: testSource(
      testEngine({
        name: 'p',
        issuers: [{ issuer: issuer.v2Issuer, audiences: [AUDIENCE] }],
        rules: [{ name: 'all', methods: ['tools/call'], action: 'allow' }],
      }),
    ),
    authenticator: createAuthenticator({ allowInsecureLoopback: true }),
    metrics: createMetrics({ defaultMetrics: false }),
    podName: 't',
  });
  url = (await proxy.listen('127.0.0.1', 0)).url;
  token = await issuer.issueToken({ audience: AUDIENCE });
});
afterAll(async () => {
  await proxy?.close();
  upstream?.closeAllConnections();
  await new Promise<void>((r) => upstream.close(() => r()));
  await issuer?.close();
});

async function call(timing?: { headersMs?: number; endMs?: number }): Promise<SseItem[]> {
  const started = performance.now();
  const res = await fetch(`${url}/mcp`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      accept: 'application/json, text/event-stream',
      authorization: `Bearer ${token}`,
    },
    body: JSON.stringify({
      jsonrpc: '2.0',
      id: 1,
      method: 'tools/call',
      params: { name: 'x', arguments: {} },
    }),
  });
  expect(res.headers.get('content-type')).toBe('text/event-stream');
  if (timing) timing.headersMs = performance.now() - started;
  const p = new SseParser();
  const items = p.push(await res.text());
  if (timing) timing.endMs = performance.now() - started;
  expect(p.end().truncated).toBe(false);
  // Relayed event ids carry the proxy's per-caller prefix (Last-Event-ID is bound to the caller).
  return items.map((i) =>
    i.type === 'event' && i.id ? { ...i, id: i.id.replace(/^[A-Za-z0-9_-]{16}\./, '') } : i,
  );
}

test('events split inside UTF-8 characters, CRLF pairs and field names arrive intact', async () => {
  const note = JSON.stringify({
    jsonrpc: '2.0',
    method: 'notifications/message',
    params: { level: 'info', data: 'héllo wörld ✓' },
  });
  const result = JSON.stringify({
    jsonrpc: '2.0',
    id: 1,
    result: { content: [{ type: 'text', text: 'ok ✓' }] },
  });
  const stream = Buffer.from(
    `retry: 2500\r\n: keepalive\r\n\r\nid: ev-1\r\nevent: message\r\ndata: ${note}\r\n\r\nid: ev-2\r\ndata: ${result}\r\n\r\n`,
  );
  // Cut every 7 bytes: lands inside multi-byte characters and between \r and \n.
  chunks = [];
  for (let i = 0; i < stream.length; i += 7) chunks.push(stream.subarray(i, i + 7));
  const items = await call();
  expect(items).toEqual([
    // A comment is passed on at once, bare (its text is never masked, so never relayed); the retry
    // field travels with its (empty) event.
    { type: 'comment', text: '' },
    { type: 'event', retry: 2500 },
    { type: 'event', id: 'ev-1', event: 'message', data: note },
    { type: 'event', id: 'ev-2', data: result },
  ]);
});

test('large events arrive intact, multi-byte characters and all, in one upstream read or many', async () => {
  const big = (n: number, text: string) =>
    JSON.stringify({
      jsonrpc: '2.0',
      method: 'notifications/message',
      params: { level: 'info', data: text, n },
    });
  const note1 = big(1, `é✓😀${'x'.repeat(40_000)}ü`);
  const note2 = big(2, 'small ✓');
  const result = JSON.stringify({
    jsonrpc: '2.0',
    id: 1,
    result: { content: [{ type: 'text', text: `${'ß'.repeat(30_000)}\u2028end ✓` }] },
  });
  const stream = Buffer.from(
    `id: a\ndata: ${note1}\n\nretry: 10\nid: b\ndata: ${note2}\n\n: ka\n\nid: c\ndata: ${result}\n\n`,
  );
  const expected = [
    { type: 'event', id: 'a', data: note1 },
    { type: 'event', id: 'b', retry: 10, data: note2 },
    { type: 'comment', text: '' },
    { type: 'event', id: 'c', data: result },
  ];
  // All in one piece (the relay writes them in one flush), then cut at awkward sizes.
  chunks = [stream];
  expect(await call()).toEqual(expected);
  chunks = [];
  for (let i = 0; i < stream.length; i += 4093) chunks.push(stream.subarray(i, i + 4093));
  expect(await call()).toEqual(expected);
});

test('events of an unknown type and non-JSON data are dropped, their ids kept', async () => {
  const result = JSON.stringify({ jsonrpc: '2.0', id: 1, result: {} });
  chunks = [
    Buffer.from(
      `id: a\nevent: sneaky\ndata: {"secret":1}\n\nid: b\ndata: not json\n\nid: c\ndata: ${result}\n\n`,
    ),
  ];
  const items = await call();
  expect(items).toEqual([
    { type: 'event', id: 'a' },
    { type: 'event', id: 'b' },
    { type: 'event', id: 'c', data: result },
  ]);
});

test('invalid UTF-8 from the upstream ends the stream with an error for the open request', async () => {
  chunks = [
    Buffer.from('id: 1\ndata: {"jsonrpc":"2.0","method":"notifications/message","params":{"data":"'),
    Buffer.from([0xff, 0xfe]),
    Buffer.from('"}}\n\n'),
  ];
  const items = await call();
  const last = items.at(-1) as { data: string };
  expect(JSON.parse(last.data)).toMatchObject({
    id: 1,
    error: { code: -32002, message: expect.stringContaining('not valid UTF-8') },
  });
});

test('a slow first event: the headers of the answer still leave at once, the event when it comes', async () => {
  const result = JSON.stringify({ jsonrpc: '2.0', id: 1, result: { content: [] } });
  chunks = [{ delayMs: 400 }, Buffer.from(`id: r\ndata: ${result}\n\n`)];
  await call(); // the first call of the suite may wait for the issuer's keys
  const timing: { headersMs?: number; endMs?: number } = {};
  const items = await call(timing);
  expect(items).toEqual([{ type: 'event', id: 'r', data: result }]);
  // The relay holds headers back only briefly (to send them with a first event that follows at once).
  expect(timing.headersMs).toBeLessThan(250);
  expect(timing.endMs).toBeGreaterThanOrEqual(390);
});

test('an upstream connection lost in the middle of the stream ends it with an error for the open request', async () => {
  const note = JSON.stringify({ jsonrpc: '2.0', method: 'notifications/message', params: { data: 'one' } });
  chunks = [Buffer.from(`id: 1\ndata: ${note}\n\nid: 2\ndata: {"jsonrpc":"2.0","id":1,"res`), 'destroy'];
  const items = await call();
  expect(items[0]).toEqual({ type: 'event', id: '1', data: note });
  const last = items.at(-1) as { data: string };
  expect(JSON.parse(last.data)).toMatchObject({ id: 1, error: { code: -32002 } });
  expect(items).toHaveLength(2);
});

test('a stream that ends cleanly without a valid answer: the request gets an error instead of hanging', async () => {
  const lost = (items: SseItem[]) =>
    items
      .filter((i): i is Extract<SseItem, { type: 'event' }> => i.type === 'event' && !!i.data)
      .map((i) => JSON.parse(i.data!) as { id?: number; error?: { code: number; message: string } });
  // The answer is not JSON, not JSON-RPC, or an event of another type: dropped, so it is answered.
  for (const bad of [
    'data: {"jsonrpc":"2.0","id":1,"result":\n\n',
    'data: {"hello":"world"}\n\n',
    'event: weird\ndata: {"jsonrpc":"2.0","id":1,"result":{}}\n\n',
  ]) {
    chunks = [Buffer.from(bad)];
    const msgs = lost(await call());
    expect(msgs).toEqual([
      expect.objectContaining({
        id: 1,
        error: expect.objectContaining({
          code: -32002,
          message: expect.stringContaining('ended without a valid answer'),
        }),
      }),
    ]);
  }
  // No answer at all and no event id to resume from: answered too.
  chunks = [Buffer.from(': keepalive\n\n')];
  expect(lost(await call())).toEqual([expect.objectContaining({ id: 1, error: expect.anything() })]);
  // With an event id the client can resume (GET with Last-Event-ID): the stream ends as it is.
  chunks = [Buffer.from('id: ev-1\ndata: \n\n')];
  expect(lost(await call())).toEqual([]);
});
