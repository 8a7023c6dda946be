import { Client, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';
import { ApprovalBroker, MemoryApprovalStore } from '../../pkg/approval/index.js';
import { type DevIssuer, startDevIssuer } from '../../pkg/identity/dev-issuer.js';
import { createAuthenticator } from '../../pkg/identity/index.js';
import { createLogger } from '../../pkg/log.js';
import { createMetrics } from '../../pkg/metrics/catalogue.js';
import { createProxy } from '../../pkg/proxy/index.js';
import type { WardenProxy } from '../../pkg/proxy/options.js';
import { AUDIENCE } from './helpers/harness.js';
import { testEngine, testSource } from './helpers/test-policy.js';
import { startUpstreamV2, type UpstreamV2 } from './helpers/upstream-v2.js';

/**
 * 2026-07-28 (stateless, no initialize, no sessions) with the v2 SDK client and server through
 * the proxy. `Mcp-Method` / `Mcp-Name` must agree with the body.
 */
let issuer: DevIssuer;
let upstream: UpstreamV2;
let proxy: WardenProxy;
let url: string;
let token: string;
let source: ReturnType<typeof testSource>;
let approvals: MemoryApprovalStore;

function engine(mode: 'enforce' | 'audit' = 'enforce') {
  return testEngine({
    name: 'modern',
    mode,
    issuers: [{ issuer: issuer.v2Issuer, audiences: [AUDIENCE] }],
    rules: [
      {
        name: 'read',
        methods: ['tools/call'],
        tools: ['get_*', 'run_query', 'ask_name', 'deploy'],
        action: 'allow',
      },
      {
        name: 'no-delete',
        methods: ['tools/call'],
        tools: ['delete_*'],
        action: 'deny',
        reason: 'no deletes',
      },
      {
        name: 'vacuum-needs-approval',
        methods: ['tools/call'],
        tools: ['run_query'],
        when: (c) => /^vacuum\b/i.test(String(c.args['query'])),
        action: 'approve',
        approval: { approvers: [{ user: 'rita' }], timeout: '1m', mode: 'hold' },
      },
      { name: 'subscribe', methods: ['resources/subscribe'], action: 'allow' },
      {
        name: 'no-secret-subscriptions',
        methods: ['resources/subscribe'],
        tools: ['secret://*'],
        action: 'deny',
        reason: 'secrets are not for watching',
      },
      {
        name: 'no-drop',
        methods: ['tools/call'],
        tools: ['run_query'],
        when: (c) => /drop\s+table/i.test(String(c.args['query'])),
        action: 'deny',
        reason: 'destructive SQL',
      },
    ],
  });
}

beforeAll(async () => {
  issuer = await startDevIssuer();
  upstream = await startUpstreamV2();
  source = testSource(engine());
  const metrics = createMetrics({ defaultMetrics: false });
  approvals = new MemoryApprovalStore();
  proxy = createProxy({
    upstream: upstream.mcpUrl,
    policySource: source,
    authenticator: createAuthenticator({ allowInsecureLoopback: true }),
    metrics,
    approvals: new ApprovalBroker({ store: approvals, pod: 't', metrics, logger: createLogger('stateless') }),
    podName: 't',
  });
  url = (await proxy.listen('127.0.0.1', 0)).url;
  token = await issuer.issueToken({ audience: AUDIENCE, oid: 'modern-user' });
});
afterAll(async () => {
  await proxy?.close();
  await upstream?.close();
  await issuer?.close();
});

async function connect(): Promise<Client> {
  const client = new Client(
    { name: 'v2', version: '1' },
    { versionNegotiation: { mode: { pin: '2026-07-28' } } },
  );
  await client.connect(
    new StreamableHTTPClientTransport(new URL(`${url}/mcp`), {
      requestInit: { headers: { authorization: `Bearer ${token}` } },
    }),
  );
  return client;
}

describe('2026-07-28 with the v2 SDK', () => {
  let client: Client;
  beforeAll(async () => {
    client = await connect();
  });
  afterAll(() => client?.close());

  test('negotiates 2026-07-28 through the proxy', () => {
    expect(client.getNegotiatedProtocolVersion()).toBe('2026-07-28');
  });

  test('a call held for approval (no session): held open, run once approved', async () => {
    const calls = (): number => upstream.stats.methods.filter((m) => m === 'tools/call').length;
    const before = calls();
    const pending = client.callTool({ name: 'run_query', arguments: { query: 'vacuum orders' } });
    let name: string | undefined;
    for (let i = 0; i < 200 && name === undefined; i++) {
      name = [...approvals.list()].find((a) => a.spec.tool === 'run_query')?.name;
      if (name === undefined) await new Promise((r) => setTimeout(r, 20));
    }
    expect(name).toBeDefined();
    const held = approvals.get(name!)!;
    expect(held.spec.session).toBeUndefined();
    expect(held.spec.requester.principal).toContain('modern-user');
    expect(calls()).toBe(before);
    approvals.decide(name!, 'Approved', 'rita');
    const r = await pending;
    expect(r.content).toEqual([{ type: 'text', text: 'ran: vacuum orders' }]);
    expect(calls()).toBe(before + 1);
  });

  test('allowed call', async () => {
    const r = await client.callTool({ name: 'get_weather', arguments: { city: 'Kyiv' } });
    expect(r.content).toEqual([{ type: 'text', text: 'sunny in Kyiv' }]);
  });

  test('denied call: -31403 with policy, rule, reason; the upstream never sees it', async () => {
    const before = upstream.stats.methods.length;
    const err = (await client
      .callTool({ name: 'delete_repo', arguments: { name: 'x' } })
      .catch((e: unknown) => e)) as {
      code: number;
      data: unknown;
    };
    expect(err.code).toBe(-31403);
    expect(err.data).toEqual({ policy: 'modern', rule: 'no-delete', reason: 'no deletes' });
    expect(upstream.stats.methods.slice(before)).toEqual([]);
  });

  test('tools/list filtered', async () => {
    const r = await client.listTools();
    expect(r.tools.map((t) => t.name).sort()).toEqual(['ask_name', 'deploy', 'get_weather', 'run_query']);
  });

  test('argument condition', async () => {
    const err = (await client
      .callTool({ name: 'run_query', arguments: { query: 'drop table x' } })
      .catch((e: unknown) => e)) as {
      code: number;
    };
    expect(err.code).toBe(-31403);
    const ok = await client.callTool({ name: 'run_query', arguments: { query: 'select 1' } });
    expect(ok.content).toEqual([{ type: 'text', text: 'ran: select 1' }]);
  });

  test('audit mode lets the denied call through', async () => {
    source.set(engine('audit'));
    try {
      const r = await client.callTool({ name: 'delete_repo', arguments: { name: 'y' } });
      expect(r.content).toEqual([{ type: 'text', text: 'deleted y' }]);
    } finally {
      source.set(engine());
    }
  });

  test('Mcp-Param-* headers the SDK derives from x-mcp-header pass when they agree', async () => {
    const r = await client.callTool({ name: 'deploy', arguments: { region: 'eu-west' } });
    expect(r.content).toEqual([{ type: 'text', text: 'deployed to eu-west' }]);
    expect(upstream.stats.headers.at(-1)?.['mcp-param-region']).toBe('eu-west');
  });

  test('no Authorization header reached the upstream; Mcp-Method/Mcp-Name did', () => {
    expect(upstream.stats.authorizationSeen).toBe(0);
    const call = upstream.stats.headers.find((h) => h['mcp-method'] === 'tools/call');
    expect(call?.['mcp-name']).toBeDefined();
  });
});

describe('subscriptions/listen: each resource it subscribes to is decided as resources/subscribe', () => {
  const meta = {
    'io.modelcontextprotocol/protocolVersion': '2026-07-28',
    'io.modelcontextprotocol/clientCapabilities': {},
    'io.modelcontextprotocol/clientInfo': { name: 'raw', version: '1' },
  };
  async function listen(notifications: unknown): Promise<{ status: number; text: string }> {
    const abort = new AbortController();
    const res = await fetch(`${url}/mcp`, {
      method: 'POST',
      signal: abort.signal,
      headers: {
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
        authorization: `Bearer ${token}`,
        'mcp-protocol-version': '2026-07-28',
        'mcp-method': 'subscriptions/listen',
      },
      body: JSON.stringify({
        jsonrpc: '2.0',
        id: 21,
        method: 'subscriptions/listen',
        params: { notifications, _meta: meta },
      }),
    });
    // An allowed listen is a long-lived stream: its status is enough.
    if (res.headers.get('content-type')?.startsWith('text/event-stream')) {
      abort.abort();
      return { status: res.status, text: '' };
    }
    return { status: res.status, text: await res.text() };
  }
  const listens = (): number => upstream.stats.methods.filter((m) => m === 'subscriptions/listen').length;

  test('one refused URI refuses the request before the upstream sees it, naming the URI and the rule', async () => {
    const before = listens();
    const r = await listen({
      resourceSubscriptions: ['public://news', 'secret://payroll'],
      toolsListChanged: true,
    });
    const body = JSON.parse(r.text) as {
      error: { code: number; message: string; data: Record<string, unknown> };
    };
    expect(body.error.code).toBe(-31403);
    expect(body.error.message).toContain('subscribing to secret://payroll');
    expect(body.error.data).toMatchObject({ rule: 'no-secret-subscriptions', resource: 'secret://payroll' });
    expect(listens()).toBe(before);
  });

  test('a list the policy cannot read is invalid params, answered before the upstream sees it', async () => {
    const before = listens();
    for (const notifications of [
      { resourceSubscriptions: 'secret://payroll' },
      { resourceSubscriptions: [7] },
      'all',
    ]) {
      const r = await listen(notifications);
      expect(JSON.parse(r.text)).toMatchObject({ error: { code: -32602 } });
    }
    expect(listens()).toBe(before);
  });

  test('allowed subscriptions, and listens without any, reach the upstream', async () => {
    const before = listens();
    const r = await listen({ resourceSubscriptions: ['public://news'], toolsListChanged: true });
    expect(r.text).not.toContain('-31403');
    await listen({ toolsListChanged: true });
    expect(listens()).toBe(before + 2);
  });
});

describe('header/body agreement (raw HTTP)', () => {
  const meta = {
    'io.modelcontextprotocol/protocolVersion': '2026-07-28',
    'io.modelcontextprotocol/clientCapabilities': {},
    'io.modelcontextprotocol/clientInfo': { name: 'raw', version: '1' },
  };
  function call(name: string, headers: Record<string, string>) {
    return fetch(`${url}/mcp`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
        authorization: `Bearer ${token}`,
        'mcp-protocol-version': '2026-07-28',
        ...headers,
      },
      body: JSON.stringify({
        jsonrpc: '2.0',
        id: 9,
        method: 'tools/call',
        params: { name, arguments: { name: 'x', city: 'x' }, _meta: meta },
      }),
    });
  }
  test.each([
    [
      'Mcp-Name naming an allowed tool while the body calls a denied one',
      { 'mcp-method': 'tools/call', 'mcp-name': 'get_weather' },
      'delete_repo',
      /Mcp-Name header does not match/,
    ],
    [
      'Mcp-Method disagreeing',
      { 'mcp-method': 'tools/list', 'mcp-name': 'get_weather' },
      'get_weather',
      /Mcp-Method header "tools\/list" does not match/,
    ],
    ['Mcp-Method missing', { 'mcp-name': 'get_weather' }, 'get_weather', /Mcp-Method header is required/],
    ['Mcp-Name missing', { 'mcp-method': 'tools/call' }, 'get_weather', /Mcp-Name header is required/],
    [
      'version header disagreeing with _meta',
      { 'mcp-method': 'tools/call', 'mcp-name': 'get_weather', 'mcp-protocol-version': '2025-11-25' },
      'get_weather',
      /does not match the body's _meta version/,
    ],
  ])('%s → 400, nothing forwarded', async (_label, headers, tool, message) => {
    const before = upstream.stats.requests;
    const res = await call(tool, headers);
    expect(res.status).toBe(400);
    const body = (await res.json()) as { id: unknown; error: { code: number; message: string } };
    expect(body.id).toBe(9);
    expect(body.error.code).toBe(-32020); // HeaderMismatch, as a 2026 server answers
    expect(body.error.message).toMatch(message);
    expect(upstream.stats.requests).toBe(before);
  });

  test('Mcp-Param-Region disagreeing with the region argument → 400 -32020, nothing forwarded', async () => {
    const before = upstream.stats.requests;
    const res = await fetch(`${url}/mcp`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
        authorization: `Bearer ${token}`,
        'mcp-protocol-version': '2026-07-28',
        'mcp-method': 'tools/call',
        'mcp-name': 'deploy',
        'mcp-param-region': 'us-east',
      },
      body: JSON.stringify({
        jsonrpc: '2.0',
        id: 9,
        method: 'tools/call',
        params: { name: 'deploy', arguments: { region: 'eu-west' }, _meta: meta },
      }),
    });
    expect(res.status).toBe(400);
    const body = (await res.json()) as { error: { code: number; message: string } };
    expect(body.error).toMatchObject({
      code: -32020,
      message: expect.stringContaining('Mcp-Param-region header does not match'),
    });
    expect(upstream.stats.requests).toBe(before);
  });

  test('matching headers (base64 form of Mcp-Name too) pass', async () => {
    const b64 = `=?base64?${Buffer.from('get_weather').toString('base64')}?=`;
    const res = await call('get_weather', { 'mcp-method': 'tools/call', 'mcp-name': b64 });
    expect(res.status).toBe(200);
    expect(await res.text()).toContain('sunny in x');
  });
});

describe('input_required results (2026 multi-round-trip) are decided as server-to-client requests', () => {
  const meta = {
    'io.modelcontextprotocol/protocolVersion': '2026-07-28',
    'io.modelcontextprotocol/clientCapabilities': { elicitation: {} },
    'io.modelcontextprotocol/clientInfo': { name: 'raw', version: '1' },
  };
  async function askName(): Promise<Record<string, unknown>> {
    const res = await fetch(`${url}/mcp`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
        authorization: `Bearer ${token}`,
        'mcp-protocol-version': '2026-07-28',
        'mcp-method': 'tools/call',
        'mcp-name': 'ask_name',
      },
      body: JSON.stringify({
        jsonrpc: '2.0',
        id: 21,
        method: 'tools/call',
        params: { name: 'ask_name', arguments: {}, _meta: meta },
      }),
    });
    expect(res.status).toBe(200);
    const text = await res.text();
    const json = text.startsWith('{')
      ? text
      : (text.split('\n').find((l) => l.startsWith('data: ')) ?? '').slice(6);
    return JSON.parse(json) as Record<string, unknown>;
  }

  test('elicitation not allowed by any rule: the client gets -31403 instead of the input request', async () => {
    const r = await askName();
    expect(r['error']).toMatchObject({ code: -31403, data: { reason: 'no rule allows this call' } });
  });

  test('allowed elicitation: the input_required result reaches the client', async () => {
    const base = engine();
    source.set({
      ...base,
      decide: (ctx) =>
        ctx.method === 'elicitation/create'
          ? {
              action: 'allow',
              enforced: 'allow',
              policy: 'modern',
              rule: 'elicit',
              reason: '',
              mode: 'enforce',
            }
          : base.decide(ctx),
    });
    try {
      const r = await askName();
      expect(r['result']).toMatchObject({
        resultType: 'input_required',
        inputRequests: { user_name: { method: 'elicitation/create' } },
      });
    } finally {
      source.set(engine());
    }
  });
});
