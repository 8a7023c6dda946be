import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportJWK, exportSPKI, generateKeyPair, importJWK, SignJWT } from 'jose';
import { startDevIssuer } from '../../pkg/identity/dev-issuer.js';
import { createAuthenticator } from '../../pkg/identity/index.js';
import { createMetrics } from '../../pkg/metrics/catalogue.js';
import { createProxy, type ProxyOptions } from '../../pkg/proxy/index.js';
import { AUDIENCE, type Harness, startHarness } from './helpers/harness.js';
import { testEngine, testSource } from './helpers/test-policy.js';

/**
 * Bad input over raw HTTP: each gets a clear error, the process stays up, and nothing reaches
 * the upstream (the upstream counts every request it receives).
 */
let h: Harness;
let source: ReturnType<typeof testSource>;
let good: string;

beforeAll(async () => {
  h = await startHarness(
    (trusted) => {
      source = testSource(
        testEngine({
          name: 'p',
          issuers: trusted,
          rules: [{ name: 'all', methods: ['tools/call'], action: 'allow' }],
        }),
      );
      return source;
    },
    { maxBodyBytes: 64 * 1024 },
  );
  good = await h.token();
});
afterAll(() => h?.close());

/** A proxy of its own for one test: loopback issuers accepted, fresh metrics; `options` add the rest. */
function localProxy(options: Pick<ProxyOptions, 'upstream' | 'policySource'> & Partial<ProxyOptions>) {
  return createProxy({
    authenticator: createAuthenticator({ allowInsecureLoopback: true }),
    metrics: createMetrics({ defaultMetrics: false }),
    podName: 't',
    ...options,
  });
}

const initBody = {
  jsonrpc: '2.0',
  id: 1,
  method: 'initialize',
  params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'raw', version: '1' } },
};

/** `token: null` sends no Authorization header. */
function post(body: string | Uint8Array, headers: Record<string, string> = {}, token: string | null = good) {
  return fetch(h.mcpUrl, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      accept: 'application/json, text/event-stream',
      ...(token !== null ? { authorization: `Bearer ${token}` } : {}),
      ...headers,
    },
    body,
  });
}

async function expectNothingForwarded(run: () => Promise<Response>): Promise<Response> {
  const before = h.upstream.stats.requests;
  const res = await run();
  expect(h.upstream.stats.requests).toBe(before);
  return res;
}

async function rpcError(
  res: Response,
): Promise<{ code: number; message: string; data?: Record<string, unknown> }> {
  const body = (await res.json()) as {
    error: { code: number; message: string; data?: Record<string, unknown> };
  };
  return body.error;
}

describe('malformed requests', () => {
  test('malformed JSON → 400, -32700', async () => {
    const res = await expectNothingForwarded(() => post('{"jsonrpc":"2.0",'));
    expect(res.status).toBe(400);
    const e = await rpcError(res);
    expect(e.code).toBe(-32700);
    expect(e.message).toMatch(/not valid JSON/);
  });

  test('invalid UTF-8 → 400, -32700', async () => {
    const bytes = Buffer.concat([
      Buffer.from('{"jsonrpc":"2.0","id":1,"method":"ping","params":{"x":"'),
      Buffer.from([0xff, 0xfe]),
      Buffer.from('"}}'),
    ]);
    const res = await expectNothingForwarded(() => post(bytes));
    expect(res.status).toBe(400);
    expect(await rpcError(res)).toMatchObject({
      code: -32700,
      message: 'Parse error: the body is not valid UTF-8',
    });
  });

  test.each([
    [{ id: 1, method: 'ping' }, '"jsonrpc" must be exactly "2.0"'],
    [{ jsonrpc: '2.0', id: 1 }, 'exactly one of "result" and "error"'],
    [{ jsonrpc: '2.0', id: null, method: 'tools/call' }, 'null is not allowed'],
    [{ jsonrpc: '2.0', id: { a: 1 }, method: 'tools/call' }, '"id" must be a string or an integer'],
    [{ jsonrpc: '2.0', id: 1, method: 42 }, '"method" must be a non-empty string'],
    [{ jsonrpc: '2.0', id: 1, method: 'tools/call', params: 'x' }, '"params" must be an object or an array'],
    [42, 'must be a JSON object'],
  ])('JSON-RPC rules: %j → 400, -32600', async (body, reason) => {
    const res = await expectNothingForwarded(() => post(JSON.stringify(body)));
    expect(res.status).toBe(400);
    const e = await rpcError(res);
    expect(e.code).toBe(-32600);
    expect(e.message).toContain(reason);
  });

  test('batches are refused on 2025-06-18', async () => {
    const res = await expectNothingForwarded(() =>
      post(JSON.stringify([initBody]), { 'mcp-protocol-version': '2025-06-18' }),
    );
    expect(res.status).toBe(400);
    expect((await rpcError(res)).message).toContain(
      'batches are only allowed with protocol version 2025-03-26',
    );
  });

  test('body over the limit → 413 with a JSON-RPC error', async () => {
    const big = JSON.stringify({
      jsonrpc: '2.0',
      id: 1,
      method: 'ping',
      params: { pad: 'x'.repeat(70 * 1024) },
    });
    const res = await expectNothingForwarded(() => post(big));
    expect(res.status).toBe(413);
    const e = await rpcError(res);
    expect(e.data).toMatchObject({ code: 'ERR_BODY_TOO_LARGE', limit: 64 * 1024 });
  });

  test('wrong content type → 415', async () => {
    const res = await expectNothingForwarded(() =>
      post(JSON.stringify(initBody), { 'content-type': 'text/plain' }),
    );
    expect(res.status).toBe(415);
  });

  test('Mcp-Method header disagreeing with the body → 400', async () => {
    const res = await expectNothingForwarded(() =>
      post(JSON.stringify(initBody), { 'mcp-method': 'tools/list' }),
    );
    expect(res.status).toBe(400);
    expect((await rpcError(res)).message).toContain('Mcp-Method header "tools/list" does not match');
  });

  test('unknown session id → 404', async () => {
    const res = await expectNothingForwarded(() =>
      post(JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'tools/list' }), { 'mcp-session-id': 'nope' }),
    );
    expect(res.status).toBe(404);
    expect((await rpcError(res)).data).toEqual({ code: 'ERR_SESSION_UNKNOWN' });
  });

  test('non-MCP paths → 404 JSON, even with a valid token', async () => {
    const res = await expectNothingForwarded(() =>
      fetch(`${h.url}/admin`, { headers: { authorization: `Bearer ${good}` } }),
    );
    expect(res.status).toBe(404);
    expect(await res.json()).toMatchObject({ error: 'not_found' });
  });

  test('PUT on the MCP path → 405', async () => {
    const res = await expectNothingForwarded(() =>
      fetch(h.mcpUrl, { method: 'PUT', headers: { authorization: `Bearer ${good}` } }),
    );
    expect(res.status).toBe(405);
  });
});

describe('refused tokens → 401 with WWW-Authenticate, nothing forwarded', () => {
  async function expect401(
    token: string | null,
    codeRe: RegExp,
    header?: Record<string, string>,
  ): Promise<void> {
    const res = await expectNothingForwarded(() => post(JSON.stringify(initBody), header ?? {}, token));
    expect(res.status).toBe(401);
    const www = res.headers.get('www-authenticate') ?? '';
    expect(www).toContain(`Bearer resource_metadata="${h.url}/.well-known/oauth-protected-resource/mcp"`);
    const e = await rpcError(res);
    expect(e.code).toBe(-31401);
    expect(String(e.data?.['code'])).toMatch(codeRe);
  }

  test('missing token', () => expect401(null, /ERR_AUTH_MISSING/));
  test('not a bearer token', () =>
    expect401(null, /ERR_AUTH_INVALID/, { authorization: 'Basic dXNlcjpwYXNz' }));
  test('expired', async () => {
    const t = await h.issuer.issueToken({ audience: AUDIENCE, expiresInSec: -600 });
    await expect401(t, /ERR_AUTH_EXPIRED/);
  });
  test('forged (payload changed, signature kept)', async () => {
    const [hd, pl, sig] = good.split('.');
    const claims = JSON.parse(Buffer.from(pl!, 'base64url').toString()) as Record<string, unknown>;
    claims['groups'] = ['admins'];
    await expect401(`${hd}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.${sig}`, /ERR_AUTH_/);
  });
  test('alg:none', async () => {
    const [, pl] = good.split('.');
    const header = Buffer.from(JSON.stringify({ alg: 'none', typ: 'JWT' })).toString('base64url');
    await expect401(`${header}.${pl}.`, /ERR_AUTH_/);
  });
  test('HS256 signed with the issuer public key', async () => {
    const jwks = (await (await fetch(h.issuer.jwksUri)).json()) as { keys: Array<Record<string, unknown>> };
    const pub = await importJWK(jwks.keys[0]!, 'RS256');
    const pem = await exportSPKI(pub as Parameters<typeof exportSPKI>[0]);
    const claims = JSON.parse(Buffer.from(good.split('.')[1]!, 'base64url').toString()) as Record<
      string,
      unknown
    >;
    const t = await new SignJWT(claims)
      .setProtectedHeader({ alg: 'HS256', kid: String(jwks.keys[0]!['kid']) })
      .sign(new TextEncoder().encode(pem));
    await expect401(t, /ERR_AUTH_/);
  });
  test('wrong audience', async () => {
    await expect401(await h.issuer.issueToken({ audience: 'api://other' }), /ERR_AUTH_AUDIENCE/);
  });
  test('wrong issuer', async () => {
    const other = await startDevIssuer({ tenantId: 'other-tenant' });
    try {
      await expect401(await other.issueToken({ audience: AUDIENCE }), /ERR_AUTH_ISSUER/);
    } finally {
      await other.close();
    }
  });
  test('unknown kid', async () => {
    const { privateKey } = await generateKeyPair('RS256', { extractable: true });
    const jwk = await exportJWK(privateKey);
    const claims = JSON.parse(Buffer.from(good.split('.')[1]!, 'base64url').toString()) as Record<
      string,
      unknown
    >;
    const t = await new SignJWT(claims)
      .setProtectedHeader({ alg: 'RS256', kid: 'not-a-known-kid' })
      .sign(await importJWK(jwk, 'RS256'));
    await expect401(t, /ERR_AUTH_KEY_UNKNOWN|ERR_AUTH_INVALID/);
  });

  test('RFC 9728 metadata is served without a token', async () => {
    for (const path of [
      '/.well-known/oauth-protected-resource',
      '/.well-known/oauth-protected-resource/mcp',
    ]) {
      const res = await fetch(`${h.url}${path}`);
      expect(res.status).toBe(200);
      expect(await res.json()).toMatchObject({
        resource: `${h.url}/mcp`,
        authorization_servers: [h.issuer.v2Issuer],
        bearer_methods_supported: ['header'],
      });
    }
  });

  test('auth failures are counted once, by reason', async () => {
    const text = await h.metrics.registry.metrics();
    expect(text).toMatch(/mcp_warden_auth_failures_total\{reason="missing"\} 1\n/);
    expect(text).toMatch(/mcp_warden_auth_failures_total\{reason="expired"\} 1\n/);
  });
});

describe('fail closed and upstream trouble', () => {
  test('no valid policy → 503 and nothing forwarded', async () => {
    const engine = source.current();
    source.set(undefined);
    try {
      const res = await expectNothingForwarded(() => post(JSON.stringify(initBody)));
      expect(res.status).toBe(503);
      expect(await rpcError(res)).toMatchObject({ code: -31503, data: { code: 'ERR_POLICY_UNAVAILABLE' } });
    } finally {
      source.set(engine);
    }
  });

  test('session opened by one principal is refused to another (404), the upstream never sees it', async () => {
    const init = await post(JSON.stringify(initBody));
    expect(init.status).toBe(200);
    const sid = init.headers.get('mcp-session-id')!;
    expect(sid).toBeTruthy();
    await init.text();
    const mallory = await h.token({ oid: 'mallory' });
    const res = await expectNothingForwarded(() =>
      post(
        JSON.stringify({ jsonrpc: '2.0', id: 5, method: 'tools/list' }),
        { 'mcp-session-id': sid, 'mcp-protocol-version': '2025-06-18' },
        mallory,
      ),
    );
    expect(res.status).toBe(404);
    expect((await rpcError(res)).data).toEqual({ code: 'ERR_SESSION_UNKNOWN' });
    // The rightful owner still uses it.
    const ok = await post(JSON.stringify({ jsonrpc: '2.0', id: 6, method: 'tools/list' }), {
      'mcp-session-id': sid,
      'mcp-protocol-version': '2025-06-18',
    });
    expect(ok.status).toBe(200);
    expect(await ok.text()).toContain('get_weather');
    const del = await fetch(h.mcpUrl, {
      method: 'DELETE',
      headers: { authorization: `Bearer ${mallory}`, 'mcp-session-id': sid },
    });
    expect(del.status).toBe(404);
  });

  test('Host and Origin outside the allowed lists → 403 before authentication (DNS rebinding)', async () => {
    const proxy = localProxy({
      upstream: h.upstream.mcpUrl,
      policySource: source,
      allowedHosts: ['localhost', '127.0.0.1'],
      allowedOrigins: ['http://localhost:6274'],
    });
    const { port } = await proxy.listen('127.0.0.1', 0);
    try {
      const { request } = await import('node:http');
      const send = (headers: Record<string, string>) =>
        new Promise<{ status: number; body: string }>((resolve, reject) => {
          const r = request(
            {
              host: '127.0.0.1',
              port,
              path: '/mcp',
              method: 'POST',
              headers: { 'content-type': 'application/json', ...headers },
            },
            (res) => {
              let body = '';
              res.on('data', (c: Buffer) => {
                body += c.toString();
              });
              res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
            },
          );
          r.on('error', reject);
          r.end(JSON.stringify(initBody));
        });
      const before = h.upstream.stats.requests;
      const rebound = await send({ host: 'evil.example:80', authorization: `Bearer ${good}` });
      expect(rebound.status).toBe(403);
      expect(rebound.body).toContain('Host header not allowed');
      const origin = await send({
        host: `127.0.0.1:${port}`,
        origin: 'http://evil.example',
        authorization: `Bearer ${good}`,
      });
      expect(origin.status).toBe(403);
      expect(origin.body).toContain('Origin not allowed');
      expect(h.upstream.stats.requests).toBe(before);
      const fine = await send({
        host: `localhost:${port}`,
        origin: 'http://localhost:6274',
        authorization: `Bearer ${good}`,
      });
      expect(fine.status).toBe(200);
    } finally {
      await proxy.close();
    }
  });

  test("without --allowed-origins, only the proxy's own Origin passes: another site, null and malformed ones → 403", async () => {
    const proxy = localProxy({
      upstream: h.upstream.mcpUrl,
      policySource: source,
    });
    const { port } = await proxy.listen('127.0.0.1', 0);
    try {
      const send = async (origin: string | undefined) => {
        const res = await fetch(`http://127.0.0.1:${port}/mcp`, {
          method: 'POST',
          headers: {
            'content-type': 'application/json',
            accept: 'application/json, text/event-stream',
            authorization: `Bearer ${good}`,
            ...(origin === undefined ? {} : { origin }),
          },
          body: JSON.stringify(initBody),
        });
        await res.text();
        return res.status;
      };
      const before = h.upstream.stats.requests;
      expect(await send('http://evil.example')).toBe(403);
      expect(await send(`http://127.0.0.1:${port + 1}`)).toBe(403);
      expect(await send('null')).toBe(403);
      expect(await send('not a url')).toBe(403);
      expect(await send(`file://127.0.0.1:${port}`)).toBe(403);
      expect(h.upstream.stats.requests).toBe(before);
      expect(await send(`http://127.0.0.1:${port}`)).toBe(200);
      expect(await send(undefined)).toBe(200);
    } finally {
      await proxy.close();
    }
  });

  test('a listed origin gets CORS: preflight answered, MCP headers exposed, on errors too; others get none', async () => {
    const page = 'http://localhost:6274';
    const proxy = localProxy({
      upstream: h.upstream.mcpUrl,
      policySource: source,
      allowedOrigins: [page],
    });
    const { port } = await proxy.listen('127.0.0.1', 0);
    const url = `http://127.0.0.1:${port}/mcp`;
    try {
      const preflight = await fetch(url, {
        method: 'OPTIONS',
        headers: {
          origin: page,
          'access-control-request-method': 'POST',
          'access-control-request-headers': 'authorization, content-type, mcp-protocol-version',
        },
      });
      expect(preflight.status).toBe(204);
      expect(preflight.headers.get('access-control-allow-origin')).toBe(page);
      expect(preflight.headers.get('access-control-allow-methods')).toBe('GET,POST,DELETE');
      expect(preflight.headers.get('access-control-allow-headers')).toBe(
        'authorization, content-type, mcp-protocol-version',
      );
      expect(preflight.headers.get('access-control-max-age')).toBe('600');
      expect(preflight.headers.get('vary')).toMatch(/Origin/);
      expect(preflight.headers.get('access-control-allow-credentials')).toBeNull();
      await preflight.text();

      const post = (headers: Record<string, string>) =>
        fetch(url, {
          method: 'POST',
          headers: {
            'content-type': 'application/json',
            accept: 'application/json, text/event-stream',
            ...headers,
          },
          body: JSON.stringify(initBody),
        });
      const ok = await post({ origin: page, authorization: `Bearer ${good}` });
      expect(ok.status).toBe(200);
      expect(ok.headers.get('access-control-allow-origin')).toBe(page);
      expect(ok.headers.get('access-control-expose-headers')).toBe(
        'mcp-session-id,mcp-protocol-version,www-authenticate',
      );
      expect(ok.headers.get('mcp-session-id')).toBeTruthy();
      await ok.text();
      // The 401 a browser must read (WWW-Authenticate names the resource metadata) is readable too.
      const unauthenticated = await post({ origin: page });
      expect(unauthenticated.status).toBe(401);
      expect(unauthenticated.headers.get('access-control-allow-origin')).toBe(page);
      await unauthenticated.text();

      // Another site: refused before any CORS answer, preflight included.
      const foreign = await fetch(url, {
        method: 'OPTIONS',
        headers: { origin: 'http://evil.example', 'access-control-request-method': 'POST' },
      });
      expect(foreign.status).toBe(403);
      expect(foreign.headers.get('access-control-allow-origin')).toBeNull();
      await foreign.text();
      // The proxy's own origin needs no CORS and gets none.
      const own = await post({ origin: `http://127.0.0.1:${port}`, authorization: `Bearer ${good}` });
      expect(own.status).toBe(200);
      expect(own.headers.get('access-control-allow-origin')).toBeNull();
      await own.text();
    } finally {
      await proxy.close();
    }
  });

  test('duplicate JSON keys cannot smuggle a call: the upstream gets the re-serialized message that was decided', async () => {
    const bodies: string[] = [];
    const echo: Server = createServer((req, res) => {
      let b = '';
      req.on('data', (c: Buffer) => {
        b += c.toString();
      });
      req.on('end', () => {
        bodies.push(b);
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ jsonrpc: '2.0', id: 1, result: { content: [] } }));
      });
    });
    await new Promise<void>((r) => echo.listen(0, '127.0.0.1', r));
    const allowWeather = testSource(
      testEngine({
        name: 'p',
        issuers: h.trusted,
        rules: [{ name: 'weather', methods: ['tools/call'], tools: ['get_weather'], action: 'allow' }],
      }),
    );
    const proxy = localProxy({
      upstream: `http://127.0.0.1:${(echo.address() as AddressInfo).port}/mcp`,
      policySource: allowWeather,
    });
    const { url } = await proxy.listen('127.0.0.1', 0);
    try {
      // A parser that keeps the first duplicate would run delete_repo; JSON.parse keeps the last.
      const raw =
        '\ufeff{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"delete_repo","name":"get_weather","arguments":{}}}';
      const res = await fetch(`${url}/mcp`, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          accept: 'application/json, text/event-stream',
          authorization: `Bearer ${good}`,
        },
        body: raw,
      });
      expect(res.status).toBe(200);
      await res.text();
      // (The proxy's own tools/list for annotations comes first.)
      expect(bodies.at(-1)).toBe(
        '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_weather","arguments":{}}}',
      );
      expect(bodies.join('\n')).not.toContain('delete_repo');
    } finally {
      await proxy.close();
      echo.closeAllConnections();
      await new Promise<void>((r) => echo.close(() => r()));
    }
  });

  test('upstream unreachable → 502 JSON-RPC error, the proxy keeps serving', async () => {
    const dead = createServer();
    await new Promise<void>((r) => dead.listen(0, '127.0.0.1', r));
    const port = (dead.address() as AddressInfo).port;
    await new Promise<void>((r) => dead.close(() => r()));
    const proxy = localProxy({
      upstream: `http://127.0.0.1:${port}/mcp`,
      policySource: source,
    });
    const { url } = await proxy.listen('127.0.0.1', 0);
    try {
      for (let i = 0; i < 2; i++) {
        const res = await fetch(`${url}/mcp`, {
          method: 'POST',
          headers: {
            'content-type': 'application/json',
            accept: 'application/json, text/event-stream',
            authorization: `Bearer ${good}`,
          },
          body: JSON.stringify(initBody),
        });
        expect(res.status).toBe(502);
        const e = await rpcError(res);
        expect(e).toMatchObject({ code: -32002, data: { code: 'ERR_UPSTREAM' } });
        expect(e.message).toContain('refused the connection');
      }
    } finally {
      await proxy.close();
    }
  });

  test('upstream that never answers → 504 after upstreamTimeoutMs', async () => {
    const silent: Server = createServer((req) => {
      req.resume();
    });
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    const proxy = localProxy({
      upstream: `http://127.0.0.1:${(silent.address() as AddressInfo).port}/mcp`,
      policySource: source,
      upstreamTimeoutMs: 300,
    });
    const { url } = await proxy.listen('127.0.0.1', 0);
    try {
      const res = await fetch(`${url}/mcp`, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          accept: 'application/json, text/event-stream',
          authorization: `Bearer ${good}`,
        },
        body: JSON.stringify(initBody),
      });
      expect(res.status).toBe(504);
      expect(await rpcError(res)).toMatchObject({
        code: -32002,
        message: expect.stringContaining('timed out'),
      });
    } finally {
      await proxy.close();
      silent.closeAllConnections();
      await new Promise<void>((r) => silent.close(() => r()));
    }
  });

  test('truncated SSE from the upstream: the pending request gets an error, nothing hangs', async () => {
    const broken: Server = createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.write(
          ': hello\n\nid: 1\ndata: {"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"x"}}\n\n',
        );
        res.end('id: 2\ndata: {"jsonrpc":"2.0","id":1,"res');
      });
    });
    await new Promise<void>((r) => broken.listen(0, '127.0.0.1', r));
    const proxy = localProxy({
      upstream: `http://127.0.0.1:${(broken.address() as AddressInfo).port}/mcp`,
      policySource: source,
    });
    const { url } = await proxy.listen('127.0.0.1', 0);
    try {
      const res = await fetch(`${url}/mcp`, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          accept: 'application/json, text/event-stream',
          authorization: `Bearer ${good}`,
        },
        body: JSON.stringify({
          jsonrpc: '2.0',
          id: 1,
          method: 'tools/call',
          params: { name: 'x', arguments: {} },
        }),
      });
      expect(res.status).toBe(200);
      const text = await res.text();
      // The upstream's comment passes as a bare keep-alive: its text is never masked, so never relayed.
      expect(text).toMatch(/^:\n\n/);
      expect(text).not.toContain('hello');
      expect(text).toContain('notifications/message');
      expect(text).toContain('"id":1');
      expect(text).toContain('truncated');
      expect(text).not.toContain('"res');
    } finally {
      await proxy.close();
      broken.closeAllConnections();
      await new Promise<void>((r) => broken.close(() => r()));
    }
  });

  /**
   * A hostile upstream: answers `initialize` (session `s1`) and `tools/list` properly, everything else with
   * `answer`. Returns the proxy's URL and a `post` that sends one message on that session.
   */
  async function hostile(
    answer: (req: import('node:http').IncomingMessage, res: import('node:http').ServerResponse) => void,
    options: Partial<ProxyOptions> = {},
  ) {
    const server: Server = createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => {
        body += c.toString();
      });
      req.on('end', () => {
        if (body.includes('"initialize"')) {
          res.writeHead(200, { 'content-type': 'application/json', 'mcp-session-id': 's1' });
          res.end(
            JSON.stringify({
              jsonrpc: '2.0',
              id: 1,
              result: {
                protocolVersion: '2025-06-18',
                capabilities: { tools: {} },
                serverInfo: { name: 'hostile', version: '1' },
              },
            }),
          );
          return;
        }
        if (body.includes('"tools/list"')) {
          const id = (JSON.parse(body) as { id: unknown }).id;
          res.writeHead(200, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ jsonrpc: '2.0', id, result: { tools: [] } }));
          return;
        }
        answer(req, res);
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const proxy = localProxy({
      upstream: `http://127.0.0.1:${(server.address() as AddressInfo).port}/mcp`,
      policySource: source,
      ...options,
    });
    const { url } = await proxy.listen('127.0.0.1', 0);
    const headers = {
      'content-type': 'application/json',
      accept: 'application/json, text/event-stream',
      authorization: `Bearer ${good}`,
      'mcp-protocol-version': '2025-06-18',
    };
    const init = await fetch(`${url}/mcp`, { method: 'POST', headers, body: JSON.stringify(initBody) });
    expect(init.status).toBe(200);
    await init.text();
    const onSession = { ...headers, 'mcp-session-id': 's1' };
    return {
      post: (message: unknown) =>
        fetch(`${url}/mcp`, { method: 'POST', headers: onSession, body: JSON.stringify(message) }),
      delete: () => fetch(`${url}/mcp`, { method: 'DELETE', headers: onSession }),
      close: async () => {
        await proxy.close();
        server.closeAllConnections();
        await new Promise<void>((r) => server.close(() => r()));
      },
    };
  }

  /** Writes 1 MiB chunks until the client goes away (or 1 GiB); `sent()` says how much went out. */
  function endless(status: number) {
    let sent = 0;
    const chunk = Buffer.alloc(1024 * 1024, 0x61);
    return {
      sent: () => sent,
      answer: (_req: unknown, res: import('node:http').ServerResponse) => {
        res.writeHead(status, { 'content-type': 'text/plain' });
        const pump = (): void => {
          while (!res.destroyed && sent < 1024 * 1024 * 1024) {
            sent += chunk.length;
            if (!res.write(chunk)) {
              res.once('drain', pump);
              return;
            }
          }
        };
        pump();
      },
    };
  }

  const toolsCall = { jsonrpc: '2.0', id: 7, method: 'tools/call', params: { name: 'x', arguments: {} } };

  test('an endless body on a 202 (notification) or a DELETE: the client gets its status, the body is cut', async () => {
    for (const kind of ['notification', 'delete'] as const) {
      const body = endless(kind === 'delete' ? 200 : 202);
      const up = await hostile((req, res) => body.answer(req, res));
      try {
        const res =
          kind === 'delete'
            ? await up.delete()
            : await up.post({
                jsonrpc: '2.0',
                method: 'notifications/progress',
                params: { progressToken: 1, progress: 1 },
              });
        expect(res.status).toBe(kind === 'delete' ? 200 : 202);
        expect(await res.text()).toBe('');
        // Drained up to a small cap, then the connection is closed: the upstream stops at its
        // socket buffers, far below the gigabyte it would send.
        await new Promise((r) => setTimeout(r, 100));
        expect(body.sent()).toBeLessThan(64 * 1024 * 1024);
      } finally {
        await up.close();
      }
    }
  });

  test('a JSON body that stalls after its headers → 504, -32002 ERR_UPSTREAM after upstreamTimeoutMs', async () => {
    const up = await hostile(
      (_req, res) => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.write('{"jsonrpc":"2.0",');
      },
      { upstreamTimeoutMs: 300 },
    );
    try {
      const res = await up.post(toolsCall);
      expect(res.status).toBe(504);
      const body = (await res.json()) as { id: unknown; error: Record<string, unknown> };
      expect(body.id).toBe(7);
      expect(body.error).toMatchObject({
        code: -32002,
        message: expect.stringContaining('timed out'),
        data: { code: 'ERR_UPSTREAM' },
      });
    } finally {
      await up.close();
    }
  });

  test.each([
    ['HTTP 500 with HTML', 500, 'text/html', '<html>Internal Server Error secret=abc</html>'],
    ['HTTP 500 with broken JSON', 500, 'application/json', '{"oops": true, "token":"sekrit'],
    ['a 302 redirect', 302, undefined, ''],
    [
      'a 307 redirect with a result body',
      307,
      'application/json',
      '{"jsonrpc":"2.0","id":7,"result":{"content":[]}}',
    ],
  ])(
    '%s → 502 with the request id and data {code: ERR_UPSTREAM, status}',
    async (_name, status, type, text) => {
      const up = await hostile((_req, res) => {
        res.writeHead(status, {
          location: 'http://127.0.0.1:1/evil',
          ...(type ? { 'content-type': type } : {}),
        });
        res.end(text);
      });
      try {
        const res = await up.post(toolsCall);
        expect(res.status).toBe(502);
        expect(res.headers.get('location')).toBeNull();
        const raw = await res.text();
        expect(raw).not.toMatch(/secret|sekrit|content/);
        expect(JSON.parse(raw)).toEqual({
          jsonrpc: '2.0',
          id: 7,
          error: {
            code: -32002,
            message: `Upstream error: the upstream answered HTTP ${status}`,
            data: { code: 'ERR_UPSTREAM', status },
          },
        });
      } finally {
        await up.close();
      }
    },
  );

  test("an upstream 5xx with a JSON-RPC error body is passed on as the upstream's error, with its status", async () => {
    const up = await hostile((_req, res) => {
      res.writeHead(503, { 'content-type': 'application/json' });
      res.end('{"jsonrpc":"2.0","id":7,"error":{"code":-32603,"message":"overloaded"}}');
    });
    try {
      const res = await up.post(toolsCall);
      expect(res.status).toBe(503);
      expect(await res.json()).toMatchObject({ id: 7, error: { code: -32603, message: 'overloaded' } });
    } finally {
      await up.close();
    }
  });

  test('the proxy is still healthy after all of the above', async () => {
    const res = await post(JSON.stringify(initBody));
    expect(res.status).toBe(200);
    await res.text();
  });
});
