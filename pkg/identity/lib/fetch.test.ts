import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { brotliCompressSync, gzipSync } from 'node:zlib';
import { isWardenError, type WardenError } from '../../errors.js';
import { fetchJson } from './fetch.js';

/** fetchJson against a real loopback HTTP server: every limit and every failure mode. */
let server: Server;
let base: string;
let handler: (req: IncomingMessage, res: ServerResponse, body: string) => void;
const requests: Array<{ method: string; url: string; headers: IncomingMessage['headers']; body: string }> =
  [];

beforeAll(async () => {
  server = createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (c: string) => {
      body += c;
    });
    req.on('end', () => {
      requests.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body });
      handler(req, res, body);
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(() => {
  server.closeAllConnections();
  server.close();
});

beforeEach(() => {
  requests.length = 0;
});

const opts = { what: 'test document', timeoutMs: 2000, allowInsecureLoopback: true };

async function failure(
  url: string,
  o: Partial<typeof opts> & { maxBytes?: number; code?: 'ERR_AUTH_FORBIDDEN' } = {},
) {
  const err = await fetchJson(url, { ...opts, ...o }).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(isWardenError(err)).toBe(true);
  return err as WardenError;
}

test('GET: parses the JSON answer and asks for JSON', async () => {
  handler = (_q, res) => res.writeHead(200, { 'content-type': 'application/json' }).end('{"keys":[1,2]}');
  await expect(fetchJson(`${base}/jwks`, opts)).resolves.toEqual({ keys: [1, 2] });
  expect(requests).toHaveLength(1);
  expect(requests[0]).toMatchObject({ method: 'GET', url: '/jwks' });
  expect(requests[0]?.headers['accept']).toBe('application/json');
});

test('POST: method, headers and body go out as given (token endpoint, Graph)', async () => {
  handler = (_q, res) => res.writeHead(200).end('{"access_token":"x"}');
  const body = 'grant_type=client_credentials&scope=s%20t';
  await expect(
    fetchJson(`${base}/token?x=1`, {
      ...opts,
      init: {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: 'Bearer a' },
        body,
      },
    }),
  ).resolves.toEqual({ access_token: 'x' });
  expect(requests[0]).toMatchObject({ method: 'POST', url: '/token?x=1', body });
  expect(requests[0]?.headers['content-type']).toBe('application/x-www-form-urlencoded');
  expect(requests[0]?.headers['authorization']).toBe('Bearer a');
  expect(requests[0]?.headers['content-length']).toBe(String(body.length));
});

test('gzip and brotli answers are decoded, as fetch decodes them', async () => {
  const doc = { issuer: 'https://issuer.example', jwks_uri: 'https://issuer.example/keys' };
  handler = (req, res) => {
    expect(req.headers['accept-encoding']).toMatch(/gzip/);
    if (req.url === '/gz')
      res.writeHead(200, { 'content-encoding': 'gzip' }).end(gzipSync(JSON.stringify(doc)));
    else res.writeHead(200, { 'content-encoding': 'br' }).end(brotliCompressSync(JSON.stringify(doc)));
  };
  await expect(fetchJson(`${base}/gz`, opts)).resolves.toEqual(doc);
  await expect(fetchJson(`${base}/br`, opts)).resolves.toEqual(doc);
});

test('a redirect is refused, never followed', async () => {
  handler = (_q, res) => res.writeHead(302, { location: `${base}/elsewhere` }).end();
  const err = await failure(`${base}/start`);
  expect(err.code).toBe('ERR_AUTH_ISSUER_UNAVAILABLE');
  expect(err.message).toMatch(
    /could not fetch the test document from http:\/\/127\.0\.0\.1:\d+\/start: redirect refused \(HTTP 302\)/,
  );
  expect(requests.map((r) => r.url)).toEqual(['/start']);
});

test('non-2xx: the status and the start of the body are in the details', async () => {
  handler = (_q, res) => res.writeHead(503).end('x'.repeat(1000));
  const err = await failure(`${base}/down`);
  expect(err.message).toMatch(/answered HTTP 503/);
  expect(err.details).toEqual({ status: 503, body: 'x'.repeat(300) });
});

test('not JSON', async () => {
  handler = (_q, res) => res.writeHead(200).end('<html>login</html>');
  expect((await failure(`${base}/html`)).message).toMatch(/is not valid JSON/);
});

test('size limit: by content-length before reading, and while reading a chunked body', async () => {
  handler = (req, res) => {
    if (req.url === '/declared') {
      res.writeHead(200, { 'content-length': '5000' }).end('x'.repeat(5000));
      return;
    }
    res.writeHead(200); // chunked: no content-length
    for (let i = 0; i < 10; i++) res.write('y'.repeat(1000));
    res.end();
  };
  const declared = await failure(`${base}/declared`, { maxBytes: 4096 });
  expect(declared.message).toMatch(
    /could not read the test document .*response of 5000 bytes is over the 4096-byte limit/,
  );
  const streamed = await failure(`${base}/chunked`, { maxBytes: 4096 });
  expect(streamed.message).toMatch(/could not read the test document .*response is over the 4096-byte limit/);
  // A gzip bomb is bounded by its decoded size.
  handler = (_q, res) =>
    res.writeHead(200, { 'content-encoding': 'gzip' }).end(gzipSync(' '.repeat(100_000)));
  expect((await failure(`${base}/bomb`, { maxBytes: 4096 })).message).toMatch(/over the 4096-byte limit/);
});

test('timeout: no headers in time, and a body that stalls', async () => {
  const open: ServerResponse[] = [];
  handler = (req, res) => {
    open.push(res);
    if (req.url === '/stall-body') {
      res.writeHead(200, { 'content-length': '100' });
      res.write('{"a":');
    }
  };
  const t0 = Date.now();
  const silent = await failure(`${base}/silent`, { timeoutMs: 200 });
  expect(silent.message).toMatch(/no answer within 200 ms/);
  const stalled = await failure(`${base}/stall-body`, { timeoutMs: 200 });
  expect(stalled.message).toMatch(/no answer within 200 ms/);
  expect(Date.now() - t0).toBeLessThan(1800);
  for (const r of open) r.destroy();
});

test('connection refused, and URLs refused before anything is sent', async () => {
  const closed = createServer();
  closed.listen(0, '127.0.0.1');
  await once(closed, 'listening');
  const port = (closed.address() as AddressInfo).port;
  closed.close();
  await once(closed, 'close');
  const refused = await failure(`http://127.0.0.1:${port}/x`, { code: 'ERR_AUTH_FORBIDDEN' });
  expect(refused.code).toBe('ERR_AUTH_FORBIDDEN');
  expect(refused.message).toMatch(/could not fetch .*ECONNREFUSED.*check that it is reachable/);
  expect((await failure('http://10.0.0.1/jwks')).message).toMatch(
    /refusing to fetch .*only allowed on loopback/,
  );
  expect((await failure(`${base}/x`, { allowInsecureLoopback: false })).message).toMatch(
    /http:\/\/ is disabled/,
  );
  expect((await failure('https://user:pw@issuer.example/x')).message).toMatch(/credentials are refused/);
  expect(requests).toEqual([]);
});
