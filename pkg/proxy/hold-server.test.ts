import { ApprovalBroker } from '../approval/broker.js';
import { MemoryApprovalStore } from '../approval/memory-store.js';
import type { StoredApproval } from '../approval/types.js';
import type { Authenticator, Identity } from '../identity/types.js';
import { createLogger } from '../log.js';
import type { JsonRpcResponse } from '../mcp/jsonrpc.js';
import { createMetrics, type Metrics } from '../metrics/catalogue.js';
import type { ApprovalSettings, Decision, PolicyEngine } from '../policy/decision.js';
import { ClientStream } from './client-stream.js';
import { ProxyCore } from './core.js';
import { type OutboundContext, processServerMessage } from './outbound.js';
import type { Session } from './session.js';

const identity: Identity = {
  principal: 'tid/oid',
  user: 'ana@example.com',
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

const SECRET = 'dave.private@example.com';

/** Every server request needs approval; everything else is allowed. */
function engine(settings: ApprovalSettings): PolicyEngine {
  const decide = (ctx: { method: string; direction: string }): Decision =>
    ctx.direction === 'server-to-client'
      ? {
          action: 'approve',
          enforced: 'approve',
          policy: 'agents/p',
          rule: 'sampling-needs-approval',
          reason: 'r',
          mode: 'enforce',
          approval: settings,
        }
      : { action: 'allow', enforced: 'allow', policy: 'agents/p', rule: 'r', reason: 'ok', mode: 'enforce' };
  return {
    decide,
    filterList: (_m, items) => [...items],
    trustedIssuers: () => [],
    maskingRules: () => [{ policy: 'agents/p', rule: { name: 'pii', detectors: ['email'] } }],
    recording: () => ({ enabled: false, payloads: 'masked' }),
    policies: () => [],
  };
}

interface Setup {
  core: ProxyCore;
  store: MemoryApprovalStore;
  broker: ApprovalBroker | undefined;
  metrics: Metrics;
  answered: JsonRpcResponse[];
  ctx(o?: { session?: Session; stream?: ClientStream }): OutboundContext;
  close(): Promise<void>;
}

const HOLD: ApprovalSettings = { approvers: [{ user: 'rita' }], timeout: '1m', mode: 'hold' };

function setup(settings: ApprovalSettings = HOLD, withBroker = true): Setup {
  const store = new MemoryApprovalStore({ creator: 'system:serviceaccount:agents:mcp' });
  const metrics = createMetrics({ defaultMetrics: false });
  const broker = withBroker
    ? new ApprovalBroker({
        store,
        pod: 'mcp-0',
        metrics,
        logger: createLogger('hold-server-test'),
        trustedCreator: 'system:serviceaccount:agents:mcp',
      })
    : undefined;
  const e = engine(settings);
  const auth: Authenticator = {
    authenticate: async () => identity,
    acceptedUntil: () => Number.POSITIVE_INFINITY,
  };
  const core = new ProxyCore({
    upstream: 'http://127.0.0.1:9/mcp',
    policySource: { current: () => e, onChange: () => () => undefined, close: async () => undefined },
    authenticator: auth,
    metrics,
    podName: 'mcp-0',
    ...(broker ? { approvals: broker } : {}),
  });
  const answered: JsonRpcResponse[] = [];
  return {
    core,
    store,
    broker,
    metrics,
    answered,
    ctx: (o = {}) => ({
      engine: e,
      identity,
      session: o.session,
      recorder: undefined,
      pending: new Map(),
      call: { method: 'tools/call', tool: 'ask_llm' },
      answerUpstream: async (r) => answered.push(r) > 0,
      ...(o.stream ? { stream: o.stream } : {}),
    }),
    close: async () => {
      await broker?.close();
    },
  };
}

/** A client stream a relay is writing: what was added to it, and a way to close it. */
function openStream(): { stream: ClientStream; written: string[] } {
  const stream = new ClientStream();
  const written: string[] = [];
  stream.attach((text) => {
    written.push(text);
    return true;
  });
  return { stream, written };
}

const sampling = (id: number | string = 7) => ({
  jsonrpc: '2.0',
  id,
  method: 'sampling/createMessage',
  params: {
    messages: [{ role: 'user', content: { type: 'text', text: `write to ${SECRET}` } }],
    maxTokens: 10,
    _meta: { progressToken: 'p-1' },
  },
});

/** The next approval the store creates. */
function nextApproval(store: MemoryApprovalStore): Promise<StoredApproval> {
  return new Promise((resolve) => {
    const off = store.subscribe(({ approval, deleted }) => {
      if (deleted || approval.phase !== undefined || approval.spec.decision !== undefined) return;
      off();
      resolve(approval);
    });
  });
}

/** The next phase the store records for `name` that satisfies `phase`. */
function phaseOf(store: MemoryApprovalStore, name: string, phase: string): Promise<void> {
  if (store.get(name)?.phase === phase) return Promise.resolve();
  return new Promise((resolve) => {
    const off = store.subscribe(({ approval }) => {
      if (approval.name !== name || approval.phase !== phase) return;
      off();
      resolve();
    });
  });
}

async function until(probe: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 500 && !probe(); i++) await new Promise((r) => setImmediate(r));
  if (!probe()) throw new Error(`never happened: ${what}`);
}

async function metric(metrics: Metrics, name: string, labels: Record<string, string>): Promise<number> {
  const m = await metrics.registry.getSingleMetric(name)?.get();
  const v = m?.values.find((x) => Object.entries(labels).every(([k, l]) => x.labels[k] === l));
  return v?.value ?? 0;
}

describe('server→client requests held for approval', () => {
  test('not delivered while held; approved, it is delivered masked on the stream it came on, once', async () => {
    const s = setup();
    const session = s.core.createSession('sess-1', identity, s.core.engine()!, 'streamable-http', undefined);
    const origin = openStream();
    const ctx = s.ctx({ session, stream: origin.stream });
    const created = nextApproval(s.store);
    expect(processServerMessage(s.core, ctx, sampling())).toBeUndefined();
    const a = await created;
    expect(a.spec).toMatchObject({
      policy: 'agents/p',
      rule: 'sampling-needs-approval',
      method: 'sampling/createMessage',
      direction: 'server-to-client',
      requester: { principal: 'tid/oid', user: 'ana@example.com' },
      mode: 'hold',
      approvers: [{ user: 'rita' }],
    });
    expect(a.spec.session).toMatch(/^[0-9a-f]{16}$/);
    expect(a.spec.tool).toBeUndefined();
    // Reviewers see the request's params as masked, without the per-request `_meta`.
    expect(JSON.stringify(a.spec.arguments)).toContain('maxTokens');
    expect(JSON.stringify(a.spec.arguments)).not.toContain(SECRET);
    expect(JSON.stringify(a.spec.arguments)).not.toContain('progressToken');
    // What the masking hid from the reviewer, as for a client's call: where, by what, how much.
    expect(a.spec.maskedArguments).toEqual({
      count: 1,
      length: SECRET.length,
      entries: [{ path: '$.messages[0].content.text', detector: 'email', length: SECRET.length }],
    });
    // Other messages of the stream pass meanwhile.
    const note = {
      jsonrpc: '2.0',
      method: 'notifications/progress',
      params: { progressToken: 'x', progress: 1 },
    };
    expect(processServerMessage(s.core, ctx, note)).toEqual(note);
    await until(() => origin.written.length > 0, 'the waiting comment');
    expect(origin.written).toEqual([
      `:waiting for approval ${a.name} of a sampling/createMessage request from the server\n\n`,
    ]);
    expect(await metric(s.metrics, 'mcp_warden_approvals_pending', { policy: 'agents/p' })).toBe(1);

    s.store.decide(a.name, 'Approved', 'rita', undefined, { acknowledgeMaskedArguments: true });
    await until(() => origin.written.length > 1, 'the released request');
    const event = origin.written[1]!;
    expect(event).toMatch(/^event: message\ndata: /);
    const delivered = JSON.parse(event.slice(event.indexOf('data: ') + 6)) as Record<string, unknown>;
    expect(delivered).toMatchObject({ jsonrpc: '2.0', id: 7, method: 'sampling/createMessage' });
    expect(event).not.toContain(SECRET);
    expect(s.store.get(a.name)?.phase).toBe('Executed');
    expect(s.answered).toEqual([]);
    expect(session.serverHolds?.size).toBe(0);
    expect(await metric(s.metrics, 'mcp_warden_approvals_total', { outcome: 'approved' })).toBe(1);
    expect(await metric(s.metrics, 'mcp_warden_approvals_pending', { policy: 'agents/p' })).toBe(0);
    await s.close();
  });

  test("the stream it came on closed: delivered on the session's GET stream", async () => {
    const s = setup();
    const session = s.core.createSession('sess-2', identity, s.core.engine()!, 'streamable-http', undefined);
    const origin = openStream();
    const get = openStream();
    session.serverStreams = new Set([get.stream]);
    const created = nextApproval(s.store);
    processServerMessage(s.core, s.ctx({ session, stream: origin.stream }), sampling(8));
    const a = await created;
    origin.stream.detach(); // the tool call's stream ended (its answer was delivered)
    s.store.decide(a.name, 'Approved', 'rita', undefined, { acknowledgeMaskedArguments: true });
    await until(() => get.written.length > 0, 'the request on the GET stream');
    expect(get.written[0]).toContain('"method":"sampling/createMessage"');
    expect(s.store.get(a.name)?.phase).toBe('Executed');
    expect(s.answered).toEqual([]);
    await s.close();
  });

  test('no stream left when approved: Cancelled (the approval is not used), the upstream gets -31403', async () => {
    const s = setup();
    const session = s.core.createSession('sess-3', identity, s.core.engine()!, 'streamable-http', undefined);
    const origin = openStream();
    const created = nextApproval(s.store);
    processServerMessage(s.core, s.ctx({ session, stream: origin.stream }), sampling(9));
    const a = await created;
    origin.stream.detach();
    s.store.decide(a.name, 'Approved', 'rita', undefined, { acknowledgeMaskedArguments: true });
    await phaseOf(s.store, a.name, 'Cancelled');
    await until(() => s.answered.length > 0, 'the answer upstream');
    expect(s.answered[0]).toMatchObject({
      id: 9,
      error: { code: -31403, data: { approval: { name: a.name, status: 'Cancelled' } } },
    });
    expect(s.answered[0]!.error!.message).toContain('no event stream of the client is left');
    await s.close();
  });

  test('denied: the upstream gets -31409 with the reviewer reason; expired: -31408', async () => {
    const s = setup({ ...HOLD, timeout: '150ms' });
    const origin = openStream();
    const ctx = s.ctx({ stream: origin.stream });
    let created = nextApproval(s.store);
    processServerMessage(s.core, ctx, sampling(10));
    const a = await created;
    s.store.decide(a.name, 'Denied', 'rita', 'no sampling of customer data');
    await until(() => s.answered.length > 0, 'the denial upstream');
    expect(s.answered[0]).toMatchObject({
      jsonrpc: '2.0',
      id: 10,
      error: {
        code: -31409,
        data: {
          policy: 'agents/p',
          rule: 'sampling-needs-approval',
          reason: 'no sampling of customer data',
          approval: { name: a.name, status: 'Denied' },
        },
      },
    });
    expect(s.answered[0]!.error!.message).toContain('no sampling of customer data');
    expect(origin.written.join('')).not.toContain('sampling/createMessage"');

    created = nextApproval(s.store);
    processServerMessage(s.core, ctx, sampling(11));
    const b = await created;
    await phaseOf(s.store, b.name, 'Expired');
    await until(() => s.answered.length > 1, 'the expiry upstream');
    expect(s.answered[1]).toMatchObject({
      id: 11,
      error: { code: -31408, data: { approval: { name: b.name } } },
    });
    await s.close();
  });

  test('the server cancelling its request ends the hold without an answer; the cancellation is not relayed', async () => {
    const s = setup();
    const session = s.core.createSession('sess-4', identity, s.core.engine()!, 'streamable-http', undefined);
    const origin = openStream();
    const ctx = s.ctx({ session, stream: origin.stream });
    const created = nextApproval(s.store);
    processServerMessage(s.core, ctx, sampling('srv-12'));
    const a = await created;
    const cancelled = {
      jsonrpc: '2.0',
      method: 'notifications/cancelled',
      params: { requestId: 'srv-12', reason: 'timed out' },
    };
    expect(processServerMessage(s.core, ctx, cancelled)).toBeUndefined();
    await phaseOf(s.store, a.name, 'Cancelled');
    // Another request's cancellation passes as usual.
    const other = { ...cancelled, params: { requestId: 'srv-99' } };
    expect(processServerMessage(s.core, ctx, other)).toEqual(other);
    s.store.decide(a.name, 'Approved', 'rita', undefined, { acknowledgeMaskedArguments: true });
    await new Promise((r) => setImmediate(r));
    expect(s.answered).toEqual([]);
    expect(origin.written.join('')).not.toContain('"method":"sampling/createMessage"');
    await s.close();
  });

  test('the session ending cancels the hold and answers the upstream', async () => {
    const s = setup();
    const session = s.core.createSession('sess-5', identity, s.core.engine()!, 'streamable-http', undefined);
    const origin = openStream();
    const created = nextApproval(s.store);
    processServerMessage(s.core, s.ctx({ session, stream: origin.stream }), sampling(13));
    const a = await created;
    await s.core.closeSession(session, 'ended');
    await phaseOf(s.store, a.name, 'Cancelled');
    await until(() => s.answered.length > 0, 'the answer upstream');
    expect(s.answered[0]).toMatchObject({
      id: 13,
      error: { code: -31403, data: { reason: 'the session ended' } },
    });
    await s.close();
  });

  test('without a session, the hold ends with the stream it came on', async () => {
    const s = setup();
    const origin = openStream();
    const created = nextApproval(s.store);
    processServerMessage(s.core, s.ctx({ stream: origin.stream }), sampling(14));
    const a = await created;
    origin.stream.detach();
    await phaseOf(s.store, a.name, 'Cancelled');
    await until(() => s.answered.length > 0, 'the answer upstream');
    expect(s.answered[0]).toMatchObject({ id: 14, error: { code: -31403 } });
    await s.close();
  });

  test('a ticket rule holds a server request too (the server cannot repeat it)', async () => {
    const s = setup({ ...HOLD, mode: 'ticket' });
    const origin = openStream();
    const created = nextApproval(s.store);
    processServerMessage(s.core, s.ctx({ stream: origin.stream }), sampling(15));
    const a = await created;
    expect(a.spec.mode).toBe('hold');
    expect(a.labels['mcpwarden.io/mode']).toBe('hold');
    s.store.decide(a.name, 'Approved', 'rita', undefined, { acknowledgeMaskedArguments: true });
    await until(() => origin.written.length > 1, 'the released request');
    expect(origin.written[1]).toContain('"id":15');
    await s.close();
  });

  test('the same request replayed while held (a resumed stream) asks for no second approval', async () => {
    const s = setup();
    const session = s.core.createSession('sess-6', identity, s.core.engine()!, 'streamable-http', undefined);
    const origin = openStream();
    const created = nextApproval(s.store);
    processServerMessage(s.core, s.ctx({ session, stream: origin.stream }), sampling(16));
    const a = await created;
    const resumed = openStream();
    expect(
      processServerMessage(s.core, s.ctx({ session, stream: resumed.stream }), sampling(16)),
    ).toBeUndefined();
    await new Promise((r) => setImmediate(r));
    expect([...s.store.list()].map((x) => x.name)).toEqual([a.name]);
    s.store.decide(a.name, 'Approved', 'rita', undefined, { acknowledgeMaskedArguments: true });
    await until(() => origin.written.length > 1, 'the released request');
    expect(resumed.written.join('')).not.toContain('sampling/createMessage');
    await s.close();
  });

  test('refused as before when nothing can hold it: no approval store, or no stream to deliver it on', async () => {
    const none = setup(HOLD, false);
    expect(
      processServerMessage(none.core, none.ctx({ stream: openStream().stream }), sampling(17)),
    ).toBeUndefined();
    expect(none.answered).toEqual([
      expect.objectContaining({
        id: 17,
        error: expect.objectContaining({
          code: -31403,
          data: expect.objectContaining({
            approval: { status: 'unavailable', detail: 'approvals are not configured on this data path' },
          }),
        }),
      }),
    ]);
    const s = setup();
    // A JSON answer (no relay attached to the stream) and no session: nothing could carry it later.
    expect(processServerMessage(s.core, s.ctx({ stream: new ClientStream() }), sampling(18))).toBeUndefined();
    expect(s.answered[0]).toMatchObject({
      id: 18,
      error: { code: -31403, data: { approval: { status: 'unavailable' } } },
    });
    expect([...s.store.list()]).toEqual([]);
    await s.close();
  });
});
