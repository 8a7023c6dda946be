import type { IncomingMessage } from 'node:http';
import type { Authenticator, Identity } from '../identity/types.js';
import { createMasker } from '../mask/masker.js';
import type { Masker } from '../mask/types.js';
import type { JsonRpcRequest, JsonRpcResponse, ParsedItem } from '../mcp/jsonrpc.js';
import { createMetrics } from '../metrics/catalogue.js';
import type { CallContext, Decision, PolicyEngine } from '../policy/decision.js';
import { ProxyCore } from './core.js';
import {
  callContext,
  decideRequest,
  denialResponse,
  isDecided,
  requestInfo as requestInfoOf,
} from './decide.js';
import { headerMismatch } from './inbound.js';
import { type OutboundContext, processServerMessage } from './outbound.js';
import { paramDeclarations } from './params.js';
import type { RequestInfo, Session } from './session.js';

const identity: Identity = {
  principal: 'tid/oid',
  issuer: 'https://issuer',
  subject: 's',
  appOnly: false,
  groups: ['g'],
  roles: [],
  scopes: [],
  wids: [],
  audience: 'api://x',
  expiresAt: 0,
  claims: {},
};

function engine(decide: (ctx: CallContext) => Decision, masking = false): PolicyEngine {
  return {
    decide,
    filterList: (_m, items) => items.filter((i) => (i as { name?: string }).name !== 'hidden'),
    trustedIssuers: () => [],
    maskingRules: () => (masking ? [{ policy: 'p', rule: {} }] : []),
    recording: () => ({ enabled: false, payloads: 'masked' }),
    policies: () => [],
  };
}

const allow = (): Decision => ({
  action: 'allow',
  enforced: 'allow',
  policy: 'p',
  rule: 'r',
  reason: 'ok',
  mode: 'enforce',
});
const deny = (): Decision => ({
  action: 'deny',
  enforced: 'deny',
  policy: 'p',
  rule: 'no',
  reason: 'nope',
  mode: 'enforce',
});

function core(e: PolicyEngine, masker?: Masker): ProxyCore {
  const auth: Authenticator = {
    authenticate: async () => identity,
    acceptedUntil: () => Number.POSITIVE_INFINITY,
  };
  return new ProxyCore({
    upstream: 'http://127.0.0.1:9/mcp',
    policySource: { current: () => e, onChange: () => () => undefined, close: async () => undefined },
    authenticator: auth,
    metrics: createMetrics({ defaultMetrics: false }),
    podName: 'unit',
    ...(masker ? { maskerFactory: () => masker } : {}),
  });
}

const call = (name: string, args: Record<string, unknown> = {}): JsonRpcRequest => ({
  jsonrpc: '2.0',
  id: 1,
  method: 'tools/call',
  params: { name, arguments: args },
});

describe('decide stage', () => {
  test('call context per method', () => {
    expect(
      callContext(call('t', { a: 1 }), identity, 'client-to-server', { readOnlyHint: true }),
    ).toMatchObject({
      method: 'tools/call',
      tool: 't',
      args: { a: 1 },
      toolAnnotations: { readOnlyHint: true },
    });
    const read: JsonRpcRequest = {
      jsonrpc: '2.0',
      id: 2,
      method: 'resources/read',
      params: { uri: 'file:///x' },
    };
    expect(callContext(read, identity, 'client-to-server', undefined)).toMatchObject({
      resource: 'file:///x',
      args: { uri: 'file:///x' },
    });
    const noParams: JsonRpcRequest = { jsonrpc: '2.0', id: 3, method: 'completion/complete' };
    expect(callContext(noParams, identity, 'client-to-server', undefined).args).toEqual({});
  });

  test('which methods are decided', () => {
    for (const m of ['initialize', 'ping', 'server/discover', 'tools/list', 'prompts/list'])
      expect(isDecided(m, 'client-to-server')).toBe(false);
    for (const m of ['tools/call', 'resources/read', 'logging/setLevel', 'x/unknown'])
      expect(isDecided(m, 'client-to-server')).toBe(true);
    expect(isDecided('sampling/createMessage', 'server-to-client')).toBe(true);
    expect(isDecided('ping', 'server-to-client')).toBe(false);
  });

  test('denial and approval answers', () => {
    expect(denialResponse(7, deny())).toEqual({
      jsonrpc: '2.0',
      id: 7,
      error: {
        code: -31403,
        message: 'Forbidden by policy (policy p, rule no): nope',
        data: { policy: 'p', rule: 'no', reason: 'nope' },
      },
    });
    const approve: Decision = {
      action: 'approve',
      enforced: 'approve',
      policy: 'p',
      rule: 'a',
      reason: 'x',
      mode: 'enforce',
    };
    expect(denialResponse(8, approve).error).toMatchObject({
      code: -31403,
      data: { reason: 'approval required', rule: 'a' },
    });
  });

  test('an engine that throws fails closed', () => {
    const c = core(
      engine(() => {
        throw new Error('boom');
      }),
    );
    const out = decideRequest(
      c,
      { engine: c.engine()!, identity, session: undefined, recorder: undefined },
      call('t'),
      'client-to-server',
    );
    expect(out?.error?.code).toBe(-31403);
    expect(out!.error!.data).toMatchObject({ reason: expect.stringContaining('fail closed') });
  });

  test('audit: forwarded, counted as audit-deny', async () => {
    const c = core(engine(() => ({ ...deny(), enforced: 'allow', mode: 'audit' })));
    const out = decideRequest(
      c,
      { engine: c.engine()!, identity, session: undefined, recorder: undefined },
      call('t'),
      'client-to-server',
    );
    expect(out).toBeUndefined();
    expect(await c.metrics.registry.metrics()).toContain('decision="audit-deny"} 1');
  });
});

describe('header/body agreement', () => {
  const req = (headers: Record<string, string>) => ({ headers }) as unknown as IncomingMessage;
  const items = (m: JsonRpcRequest): ParsedItem[] => [{ kind: 'request', message: m }];
  const env = { _meta: { 'io.modelcontextprotocol/protocolVersion': '2026-07-28' } };
  test('legacy requests without headers pass', () => {
    expect(headerMismatch(req({}), items(call('t')))).toBeUndefined();
  });
  test('modern requests need agreeing headers', () => {
    const m: JsonRpcRequest = { jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 't', ...env } };
    const ok = { 'mcp-protocol-version': '2026-07-28', 'mcp-method': 'tools/call', 'mcp-name': 't' };
    expect(headerMismatch(req(ok), items(m))).toBeUndefined();
    expect(headerMismatch(req({ ...ok, 'mcp-name': 'u' }), items(m))).toMatchObject({ code: -32020 });
    expect(headerMismatch(req({ ...ok, 'mcp-method': 'tools/list' }), items(m))).toMatchObject({
      code: -32020,
    });
    expect(
      headerMismatch(req({ 'mcp-protocol-version': '2026-07-28', 'mcp-method': 'tools/call' }), items(m)),
    ).toMatchObject({
      code: -32020,
    });
    expect(headerMismatch(req(ok), items(call('t')))?.code).toBe(-32602);
  });
  test('no method headers on batches or responses', () => {
    const batch: ParsedItem[] = [...items(call('a')), ...items(call('b'))];
    expect(headerMismatch(req({ 'mcp-method': 'tools/call' }), batch)).toBeDefined();
    const resp: ParsedItem[] = [{ kind: 'response', message: { jsonrpc: '2.0', id: 1, result: {} } }];
    expect(headerMismatch(req({ 'mcp-method': 'x' }), resp)).toBeDefined();
  });
});

describe('outbound stage', () => {
  function ctx(c: ProxyCore, answered: JsonRpcResponse[]): OutboundContext {
    return {
      engine: c.engine()!,
      identity,
      session: undefined,
      recorder: undefined,
      pending: new Map([['n:1', { method: 'tools/list', list: 'tools/list' as const }]]),
      answerUpstream: async (r) => answered.push(r) > 0,
    };
  }

  test('list results are filtered and tools learnt', () => {
    const c = core(engine(allow));
    const out = processServerMessage(c, ctx(c, []), {
      jsonrpc: '2.0',
      id: 1,
      result: { tools: [{ name: 'shown', annotations: { readOnlyHint: true } }, { name: 'hidden' }] },
    });
    expect(out).toEqual({
      jsonrpc: '2.0',
      id: 1,
      result: { tools: [{ name: 'shown', annotations: { readOnlyHint: true } }] },
    });
    expect(c.knownTools.has('hidden')).toBe(true);
    expect(c.toolAnnotations.get('shown')).toEqual({ readOnlyHint: true });
  });

  test('an unmatched list-shaped result is still filtered', () => {
    const c = core(engine(allow));
    const out = processServerMessage(c, ctx(c, []), {
      jsonrpc: '2.0',
      id: 99,
      result: { tools: [{ name: 'hidden' }] },
    });
    expect(out).toEqual({ jsonrpc: '2.0', id: 99, result: { tools: [] } });
  });

  test('a denied server request is answered upstream and not delivered', () => {
    const c = core(engine(deny));
    const answered: JsonRpcResponse[] = [];
    const out = processServerMessage(c, ctx(c, answered), {
      jsonrpc: '2.0',
      id: 'srv-1',
      method: 'sampling/createMessage',
      params: {},
    });
    expect(out).toBeUndefined();
    expect(answered).toEqual([
      expect.objectContaining({ id: 'srv-1', error: expect.objectContaining({ code: -31403 }) }),
    ]);
  });

  test('unchanged messages keep their identity (sent as the upstream bytes)', () => {
    const c = core(engine(allow));
    const msg = { jsonrpc: '2.0', method: 'notifications/message', params: { data: 'x' } };
    expect(processServerMessage(c, ctx(c, []), msg)).toBe(msg);
  });

  test('masking applies and is counted', async () => {
    const masker: Masker = {
      empty: false,
      maskMessage: <T>(m: T) => ({
        value: { ...(m as object), masked: true } as T,
        hits: [{ policy: 'p', detector: 'email' }],
      }),
    };
    const c = core(engine(allow, true), masker);
    const out = processServerMessage(c, ctx(c, []), { jsonrpc: '2.0', id: 5, result: { content: [] } });
    expect(out).toMatchObject({ masked: true });
    expect(await c.metrics.registry.metrics()).toContain(
      'mcp_warden_masked_values_total{policy="p",detector="email"} 1',
    );
  });

  test('every masked value is counted once, per policy and detector', async () => {
    const hits = [
      { policy: 'p', detector: 'email' },
      { policy: 'p', detector: 'phone' },
      { policy: 'p', detector: 'email' },
      { policy: 'q', detector: 'email' },
      { policy: 'p', detector: 'email' },
    ];
    const masker: Masker = {
      empty: false,
      maskMessage: <T>(m: T) => ({ value: m, hits }),
    };
    const c = core(engine(allow, true), masker);
    processServerMessage(c, ctx(c, []), { jsonrpc: '2.0', id: 5, result: { content: [] } });
    processServerMessage(c, ctx(c, []), { jsonrpc: '2.0', id: 6, result: { content: [] } });
    const text = await c.metrics.registry.metrics();
    expect(text).toContain('mcp_warden_masked_values_total{policy="p",detector="email"} 6');
    expect(text).toContain('mcp_warden_masked_values_total{policy="p",detector="phone"} 2');
    expect(text).toContain('mcp_warden_masked_values_total{policy="q",detector="email"} 2');
  });

  test('a masker failure never lets the unmasked result through', () => {
    const masker: Masker = {
      empty: false,
      maskMessage: () => {
        throw new Error('detector crashed');
      },
    };
    const c = core(engine(allow, true), masker);
    const out = processServerMessage(c, ctx(c, []), {
      jsonrpc: '2.0',
      id: 6,
      result: { content: [{ type: 'text', text: 'secret' }] },
    });
    expect(out).toEqual({ jsonrpc: '2.0', id: 6, error: expect.objectContaining({ code: -32603 }) });
    expect(JSON.stringify(out)).not.toContain('secret');
    expect(
      processServerMessage(c, ctx(c, []), {
        jsonrpc: '2.0',
        method: 'notifications/message',
        params: { data: 'secret' },
      }),
    ).toBeUndefined();
  });

  test('invalid messages from the upstream are dropped', () => {
    const c = core(engine(allow));
    expect(processServerMessage(c, ctx(c, []), { jsonrpc: '1.0', id: 1, result: {} })).toBeUndefined();
  });
});

describe('masking scope: every message is masked as the call it belongs to, or with every scoped rule', () => {
  // One rule scoped to a tool, one to a resource tree; nothing unscoped.
  const masker = createMasker([
    { policy: 'p', rule: { name: 'crm', detectors: ['email'], tools: ['get_customer'] } },
    { policy: 'p', rule: { name: 'files', detectors: ['email'], resources: ['file:///srv/customers/**'] } },
  ]);
  const text = (v: unknown): string => JSON.stringify(v);
  const secret = 'dave.private@example.com';
  function ctx(c: ProxyCore, pending: Array<[string, RequestInfo]>, extra: Partial<OutboundContext> = {}) {
    return {
      engine: c.engine()!,
      identity,
      session: undefined,
      recorder: undefined,
      pending: new Map(pending),
      answerUpstream: async () => true,
      ...extra,
    } as OutboundContext;
  }
  const result = (id: number) => ({
    jsonrpc: '2.0',
    id,
    result: { content: [{ type: 'text', text: `mail ${secret}` }] },
  });

  test('an answer to a call of another tool is left alone; its own tool is masked', () => {
    const c = core(engine(allow, true), masker);
    const other = processServerMessage(
      c,
      ctx(c, [['n:1', { method: 'tools/call', tool: 'get_weather' }]]),
      result(1),
    );
    expect(text(other)).toContain(secret);
    const own = processServerMessage(
      c,
      ctx(c, [['n:1', { method: 'tools/call', tool: 'get_customer' }]]),
      result(1),
    );
    expect(text(own)).not.toContain(secret);
  });

  test('an answer whose request is not known (a replayed event, a forgotten id) gets every scoped rule', () => {
    const c = core(engine(allow, true), masker);
    const out = processServerMessage(c, ctx(c, []), result(7));
    expect(text(out)).not.toContain(secret);
  });

  test("messages on a call's stream are masked as that call; on a session stream with every scoped rule", () => {
    const c = core(engine(allow, true), masker);
    const note = { jsonrpc: '2.0', method: 'notifications/message', params: { level: 'info', data: secret } };
    const weather = ctx(c, [], { call: { method: 'tools/call', tool: 'get_weather' } });
    expect(text(processServerMessage(c, weather, note))).toContain(secret);
    const customer = ctx(c, [], { call: { method: 'tools/call', tool: 'get_customer' } });
    expect(text(processServerMessage(c, customer, note))).not.toContain(secret);
    expect(text(processServerMessage(c, ctx(c, []), note))).not.toContain(secret);
  });

  test("a task's result is masked as the call that created the task; an unknown task's with every scoped rule", () => {
    const c = core(engine(allow, true), masker);
    const session = { id: 's', taskCalls: undefined } as unknown as Session;
    const created = processServerMessage(
      c,
      ctx(c, [['n:1', { method: 'tools/call', tool: 'get_customer' }]], { session }),
      { jsonrpc: '2.0', id: 1, result: { task: { taskId: 'task-1', status: 'working' } } },
    );
    expect(created).toBeDefined();
    const fetched = processServerMessage(
      c,
      ctx(c, [['n:2', { method: 'tasks/result', taskId: 'task-1' }]], { session }),
      result(2),
    );
    expect(text(fetched)).not.toContain(secret);
    const unknown = processServerMessage(
      c,
      ctx(c, [['n:3', { method: 'tasks/result', taskId: 'task-9' }]], { session }),
      result(3),
    );
    expect(text(unknown)).not.toContain(secret);
  });

  test('an alias of a resource a rule names is masked like the resource', () => {
    const c = core(engine(allow, true), masker);
    for (const uri of ['file:///srv/public/../customers/7.txt', 'file:///srv/%63ustomers/7.txt']) {
      const info = { method: 'resources/read', resource: uri } as RequestInfo;
      const read: JsonRpcRequest = { jsonrpc: '2.0', method: 'resources/read', id: 1, params: { uri } };
      Object.assign(info, requestInfoOf(read));
      const out = processServerMessage(c, ctx(c, [['n:1', info]]), {
        jsonrpc: '2.0',
        id: 1,
        result: { contents: [{ uri, text: `mail ${secret}` }] },
      });
      expect(text(out)).not.toContain(secret);
    }
  });

  test('a refused server request is recorded masked, in the scope of the call it came with', () => {
    const c = core(engine(deny, true), masker);
    const recorded: unknown[] = [];
    const recorder = { record: (e: unknown) => recorded.push(e), close: async () => undefined };
    const out = processServerMessage(
      c,
      ctx(c, [], {
        recorder: recorder as unknown as OutboundContext['recorder'],
        call: { method: 'tools/call', tool: 'get_customer' },
      }),
      {
        jsonrpc: '2.0',
        id: 'srv-1',
        method: 'sampling/createMessage',
        params: { messages: [{ role: 'user', content: { type: 'text', text: `write to ${secret}` } }] },
      },
    );
    expect(out).toBeUndefined();
    expect(recorded).toEqual([
      expect.objectContaining({ type: 'decision', decision: 'deny' }),
      expect.objectContaining({ type: 'message', direction: 'server-to-client' }),
    ]);
    expect(text(recorded)).not.toContain(secret);
  });

  test("a refusal quoting the call's target is recorded masked", () => {
    const uri = `file:///srv/customers/${secret}`;
    const quoting = (): Decision => ({
      ...deny(),
      reason: `no rule allows resources/read of resource "${uri}"`,
    });
    const c = core(engine(quoting, true), masker);
    const recorded: unknown[] = [];
    const recorder = { record: (e: unknown) => recorded.push(e), close: async () => undefined };
    const read: JsonRpcRequest = { jsonrpc: '2.0', id: 3, method: 'resources/read', params: { uri } };
    const refused = decideRequest(
      c,
      {
        engine: c.engine()!,
        identity,
        session: undefined,
        recorder: recorder as unknown as OutboundContext['recorder'],
      },
      read,
      'client-to-server',
    );
    expect(text(refused)).toContain(secret); // the caller's own input, in its answer
    expect(recorded).toEqual([expect.objectContaining({ type: 'decision', reason: expect.any(String) })]);
    expect(text(recorded)).not.toContain(secret);
  });

  test('every list a result carries is filtered, whatever its request asked', () => {
    const c = core(engine(allow));
    const out = processServerMessage(
      c,
      ctx(c, [['n:4', { method: 'resources/list', list: 'resources/list' }]]),
      {
        jsonrpc: '2.0',
        id: 4,
        result: { resources: [], tools: [{ name: 'shown' }, { name: 'hidden' }] },
      },
    );
    expect(out).toEqual({ jsonrpc: '2.0', id: 4, result: { resources: [], tools: [{ name: 'shown' }] } });
  });
});

test('x-mcp-header declarations are collected through properties chains only', () => {
  const schema = {
    type: 'object',
    properties: {
      region: { type: 'string', 'x-mcp-header': 'Region' },
      target: { type: 'object', properties: { env: { type: 'string', 'x-mcp-header': 'Env' } } },
      list: { type: 'array', items: { type: 'object', properties: { x: { 'x-mcp-header': 'X' } } } },
    },
  };
  expect(paramDeclarations(schema)).toEqual([
    { name: 'region', path: ['region'] },
    { name: 'env', path: ['target', 'env'] },
  ]);
  expect(paramDeclarations(undefined)).toEqual([]);
});

test('the session table is bounded per principal (least recently used forgotten)', async () => {
  const auth: Authenticator = {
    authenticate: async () => identity,
    acceptedUntil: () => Number.POSITIVE_INFINITY,
  };
  const e = engine(allow);
  const c = new ProxyCore({
    upstream: 'http://127.0.0.1:9/mcp',
    policySource: { current: () => e, onChange: () => () => undefined, close: async () => undefined },
    authenticator: auth,
    metrics: createMetrics({ defaultMetrics: false }),
    podName: 'unit',
    maxSessionsPerPrincipal: 2,
  });
  const a = c.createSession('a', identity, e, 'streamable-http', undefined);
  a.lastSeen = 1;
  c.createSession('b', identity, e, 'streamable-http', undefined);
  c.createSession('c', identity, e, 'streamable-http', undefined);
  expect([...c.sessions.keys()].sort()).toEqual(['b', 'c']);
  c.createSession('x', { ...identity, principal: 'other' }, e, 'streamable-http', undefined);
  expect(c.sessions.size).toBe(3);
  expect(await c.metrics.registry.metrics()).toContain('mcp_warden_sessions_active 3');
});

test('an upstream SSE URL on another origin is refused at construction', () => {
  const e = engine(allow);
  const base = {
    upstream: 'http://127.0.0.1:9/mcp',
    policySource: { current: () => e, onChange: () => () => undefined, close: async () => undefined },
    authenticator: { authenticate: async () => identity, acceptedUntil: () => Number.POSITIVE_INFINITY },
    metrics: createMetrics({ defaultMetrics: false }),
    podName: 'unit',
  };
  expect(() => new ProxyCore({ ...base, upstreamSse: 'http://evil.example/sse' })).toThrow(
    /upstream's origin/,
  );
  expect(new ProxyCore({ ...base, upstreamSse: '/events?x=1' }).upstreamSsePath).toBe('/events?x=1');
});
