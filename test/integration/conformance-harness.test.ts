/**
 * The conformance harness's own parts, over real loopback sockets: the upstream's DNS-rebinding
 * checks, the token-adding forwarder (headers kept, SSE streamed as it arrives), and the report's
 * direct-vs-gateway comparison. `make conformance` runs the suite itself.
 */
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  compilePolicies,
  type PolicyDocument,
  parsePolicyText,
  validatePolicy,
} from '../../pkg/policy/index.js';
import { startForwarder } from '../conformance/forwarder.js';
import { callsInLine, EXPECTED } from '../conformance/recordings-check.js';
import { compare, scenariosFor } from '../conformance/report.js';
import { startConformanceServer } from '../conformance/server.js';
import { startConformanceServer2026 } from '../conformance/server-2026.js';

const initialize = JSON.stringify({
  jsonrpc: '2.0',
  id: 1,
  method: 'initialize',
  params: {
    protocolVersion: '2025-11-25',
    capabilities: {},
    clientInfo: { name: 'harness-test', version: '1' },
  },
});

/** Raw HTTP so the Host header is exactly what the test says (fetch would set its own). */
async function post(url: string, headers: Record<string, string>, body: string): Promise<number> {
  const { request } = await import('node:http');
  const target = new URL(url);
  return new Promise((resolve, reject) => {
    const req = request(
      { host: target.hostname, port: target.port, path: target.pathname, method: 'POST', headers },
      (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

const mcpHeaders = { 'content-type': 'application/json', accept: 'application/json, text/event-stream' };

describe('conformance upstream', () => {
  let upstream: Awaited<ReturnType<typeof startConformanceServer>>;
  beforeAll(async () => {
    upstream = await startConformanceServer(0);
  });
  afterAll(async () => {
    await upstream.close();
  });

  it('rejects a rebound Host or Origin with 403 and accepts loopback ones', async () => {
    const port = new URL(upstream.url).port;
    expect(await post(upstream.url, { ...mcpHeaders, host: 'evil.example.com' }, initialize)).toBe(403);
    expect(
      await post(
        upstream.url,
        { ...mcpHeaders, host: `127.0.0.1:${port}`, origin: 'http://evil.example.com' },
        initialize,
      ),
    ).toBe(403);
    expect(
      await post(
        upstream.url,
        { ...mcpHeaders, host: `localhost:${port}`, origin: `http://localhost:${port}` },
        initialize,
      ),
    ).toBe(200);
  });

  it('answers malformed JSON with 400 and does not crash', async () => {
    expect(await post(upstream.url, { ...mcpHeaders, host: '127.0.0.1' }, '{"jsonrpc":')).toBe(400);
    expect(await post(upstream.url, { ...mcpHeaders, host: '127.0.0.1' }, initialize)).toBe(200);
  });
});

describe('conformance upstream for 2026-07-28', () => {
  it('rejects a rebound Host, and refuses 2025-era initialize (this endpoint is 2026-07-28 only)', async () => {
    const upstream = await startConformanceServer2026(0);
    try {
      const port = new URL(upstream.url).port;
      expect(await post(upstream.url, { ...mcpHeaders, host: 'evil.example.com' }, initialize)).toBe(403);
      const status = await post(upstream.url, { ...mcpHeaders, host: `127.0.0.1:${port}` }, initialize);
      expect(status).toBeGreaterThanOrEqual(400);
      expect(status).toBeLessThan(500);
    } finally {
      await upstream.close();
    }
  });
});

describe('forwarder', () => {
  let target: Server;
  let seen: IncomingHttpHeaders[];
  let releaseSecondEvent: () => void;
  let forwarder: Awaited<ReturnType<typeof startForwarder>>;
  const token = 'eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ0ZXN0In0.c2ln';

  beforeAll(async () => {
    seen = [];
    target = createServer((req, res) => {
      seen.push(req.headers);
      if (req.url === '/sse') {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.write('id: 1\ndata: first\n\n');
        // The second event is written only once the client has read the first one: a
        // forwarder that buffered the response would deadlock this test.
        releaseSecondEvent = () => res.end('id: 2\ndata: second\n\n');
        return;
      }
      req.resume();
      req.on('end', () => res.writeHead(418, { 'x-target': 'yes' }).end('teapot'));
    });
    target.listen(0, '127.0.0.1');
    await once(target, 'listening');
    const { port } = target.address() as AddressInfo;
    forwarder = await startForwarder({ target: `http://127.0.0.1:${port}`, token });
  });
  afterAll(async () => {
    await forwarder.close();
    target.closeAllConnections();
    target.close();
  });

  it('keeps Host and Origin, replaces any Authorization with the bearer token, passes status and body', async () => {
    const url = `${forwarder.url}/mcp`;
    const status = await post(
      url,
      { host: 'evil.example.com', origin: 'http://evil.example.com', authorization: 'Bearer client-sent' },
      '{}',
    );
    expect(status).toBe(418);
    const headers = seen.at(-1);
    expect(headers?.host).toBe('evil.example.com');
    expect(headers?.origin).toBe('http://evil.example.com');
    expect(headers?.authorization).toBe(`Bearer ${token}`);
  });

  it('streams SSE events as they arrive', async () => {
    const res = await fetch(`${forwarder.url}/sse`);
    expect(res.headers.get('content-type')).toBe('text/event-stream');
    const reader = res.body?.pipeThrough(new TextDecoderStream()).getReader();
    if (reader === undefined) throw new Error('no body');
    let text = '';
    while (!text.includes('data: first')) text += (await reader.read()).value ?? '';
    releaseSecondEvent();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      text += value;
    }
    expect(text).toBe('id: 1\ndata: first\n\nid: 2\ndata: second\n\n');
  });

  it('refuses a non-loopback target', async () => {
    await expect(startForwarder({ target: 'http://example.com', token })).rejects.toThrow(/loopback/);
  });
});

describe('report', () => {
  const ok = (id: string) => ({ id, status: 'SUCCESS' });
  const listing = [
    'Server scenarios (test against a server):',
    '  - ping [2025-06-18,2025-11-25]',
    '  - dns-rebinding-protection [2025-11-25]',
    '',
    'Client scenarios (test against a client):',
    '  - initialize [2025-06-18,2025-11-25]',
  ].join('\n');

  it('lists the server scenarios of one spec version', () => {
    expect(scenariosFor(listing, '2025-06-18')).toEqual(['ping']);
    expect(scenariosFor(listing, '2025-11-25')).toEqual(['ping', 'dns-rebinding-protection']);
  });

  it('finds no difference between identical runs, ignoring traffic-log checks', () => {
    const direct = new Map([['ping', [ok('ping'), { id: 'outgoing-request', status: 'INFO' }]]]);
    const gateway = new Map([['ping', [ok('ping')]]]);
    const r = compare('2025-06-18', ['ping'], direct, gateway);
    expect(r.differences).toEqual([]);
    expect([r.passed, r.failed]).toEqual([2, 0]);
  });

  it('counts a check that passes directly but fails through the gateway, and a missing scenario', () => {
    const direct = new Map([
      ['ping', [ok('ping')]],
      ['dns-rebinding-protection', [ok('localhost-host-rebinding-rejected')]],
    ]);
    const gateway = new Map([['ping', [{ id: 'ping', status: 'FAILURE', errorMessage: 'boom' }]]]);
    const r = compare('2025-11-25', ['ping', 'dns-rebinding-protection'], direct, gateway);
    expect(r.differences).toEqual([
      '2025-11-25 ping ping#0: direct SUCCESS, gateway FAILURE (boom)',
      '2025-11-25 dns-rebinding-protection: gateway run has no result',
    ]);
    expect(r.passed).toBe(2);
    expect(r.failed).toBe(3); // the gateway's failure plus two differences
  });
});

describe('recordings check', () => {
  it('finds calls in recorded messages, batches included, and matches scenario expectations', () => {
    const calls = callsInLine({
      type: 'message',
      direction: 'client-to-server',
      message: [
        { jsonrpc: '2.0', id: 3, method: 'resources/read', params: { uri: 'test://static-text' } },
        { jsonrpc: '2.0', id: 4, method: 'tools/call', params: { name: 'test_simple_text' } },
      ],
    });
    expect(calls.map((c) => `${c.method} ${c.key}`)).toEqual([
      'resources/read test://static-text',
      'tools/call test_simple_text',
    ]);
    expect(EXPECTED['resources-read-text']?.(calls)).toBe(true);
    expect(EXPECTED['tools-call-simple-text']?.(calls)).toBe(true);
    expect(EXPECTED['resources-read-binary']?.(calls)).toBe(false);
  });
});

describe('conformance policy', () => {
  // The same substitution hack/conformance.sh makes; a policy the gateway refuses would only show
  // up as "the gateway run produced no result" there.
  const text = readFileSync(new URL('../conformance/policy.yaml', import.meta.url), 'utf8').replace(
    /__([A-Z]+)__/g,
    (_, key: string) =>
      ({
        ISSUER: 'http://127.0.0.1:8400/72f988bf-0000-4000-8000-00000000d3e5/v2.0',
        AUDIENCE: 'api://mcp-warden-conformance',
        GROUP: 'c0a1f0e5-0000-4000-8000-00000000c0f0',
      })[key] ?? `__${key}__`,
  );

  it('is a valid MCPPolicy once its placeholders are filled in', () => {
    const { docs, issues } = parsePolicyText(text, 'policy.yaml');
    expect(issues).toEqual([]);
    expect(docs).toHaveLength(1);
    expect(validatePolicy(docs[0])).toEqual([]);
    expect(() => compilePolicies(docs as PolicyDocument[])).not.toThrow();
  });
});
