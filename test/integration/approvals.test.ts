import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { CallToolResultSchema, McpError } from '@modelcontextprotocol/sdk/types.js';
import { pino } from 'pino';
import {
  ApprovalBroker,
  argumentsDigest,
  MemoryApprovalStore,
  type StoredApproval,
} from '../../pkg/approval/index.js';
import { createLogger } from '../../pkg/log.js';
import { createMetrics, type Metrics } from '../../pkg/metrics/catalogue.js';
import { compilePolicies, type PolicyDocument } from '../../pkg/policy/index.js';
import { startAdminServer } from '../../pkg/proxy/admin.js';
import { createRecorder } from '../../pkg/record/index.js';
import {
  AUDIENCE,
  connectLegacy,
  connectStreamable,
  type Harness,
  openRawSession,
  startHarness,
} from './helpers/harness.js';

/**
 * Calls held for a human decision, end to end through the gateway's data path: a real SDK client
 * and server, the real policy engine, the approval broker over an in-memory store (the sidecar
 * uses the same broker over MCPApproval objects: test/e2e/approvals.test.ts).
 */

function policy(issuer: string): PolicyDocument {
  return {
    apiVersion: 'mcpwarden.io/v1alpha1',
    kind: 'MCPPolicy',
    metadata: { name: 'repo-tools', namespace: 'agents', generation: 2 },
    spec: {
      podSelector: {},
      identity: { issuers: [{ issuer, audiences: [AUDIENCE] }] },
      rules: [
        { name: 'read', subjects: [{ any: true }], match: { tools: ['get_*'] }, action: 'allow' },
        {
          name: 'deletes-need-approval',
          subjects: [{ any: true }],
          match: { tools: ['delete_*'] },
          action: 'approve',
          approval: { approvers: [{ group: 'mcp-reviewers' }], timeout: '2s', mode: 'hold' },
        },
        {
          name: 'secrets-by-ticket',
          subjects: [{ any: true }],
          match: { resources: ['file:///secrets.txt'] },
          action: 'approve',
          approval: { approvers: [{ user: 'rita' }], timeout: '1m', mode: 'ticket' },
        },
        {
          name: 'contact-one-request-an-hour',
          subjects: [{ any: true }],
          match: { tools: ['contact'] },
          action: 'approve',
          approval: { approvers: [{ user: 'rita' }], timeout: '1m', mode: 'ticket' },
          rateLimit: { requests: 1, per: '1h' },
        },
        {
          name: 'queries-by-ticket',
          subjects: [{ any: true }],
          match: { tools: ['run_query'] },
          action: 'approve',
          approval: { approvers: [{ user: 'rita' }], timeout: '1m', mode: 'ticket' },
        },
        {
          // A longer timeout, for what happens while nobody waits on a held call.
          name: 'steps-need-approval',
          subjects: [{ any: true }],
          match: { tools: ['slow_steps'] },
          action: 'approve',
          approval: { approvers: [{ group: 'mcp-reviewers' }], timeout: '1m', mode: 'hold' },
        },
        {
          // Refuses outright what masking would hide from a reviewer (approval.maskedArguments: deny).
          name: 'greetings-refuse-masked',
          subjects: [{ any: true }],
          match: { prompts: ['greet'] },
          action: 'approve',
          approval: { approvers: [{ user: 'rita' }], timeout: '1m', mode: 'hold', maskedArguments: 'deny' },
        },
      ],
      masking: [{ name: 'secrets', detectors: ['email'] }],
      recording: { enabled: true, payloads: 'masked' },
    },
  } as PolicyDocument;
}

let h: Harness;
let store: MemoryApprovalStore;
let broker: ApprovalBroker;
let dir: string;

let metrics: Metrics;
/** The broker's log events (its logger writes here, at info). */
const logged: Array<Record<string, unknown>> = [];

beforeAll(async () => {
  store = new MemoryApprovalStore({ creator: 'system:serviceaccount:agents:github-mcp' });
  dir = mkdtempSync(join(tmpdir(), 'approvals-it-'));
  metrics = createMetrics({ defaultMetrics: false });
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString('utf8').split('\n'))
        if (line !== '') logged.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  broker = new ApprovalBroker({
    store,
    pod: 'github-mcp-0',
    metrics,
    logger: pino({ level: 'info' }, sink),
    trustedCreator: 'system:serviceaccount:agents:github-mcp',
  });
  await broker.start();
  h = await startHarness(
    (trusted) => {
      const engine = compilePolicies([policy(trusted[0]!.issuer)]);
      return { current: () => engine, onChange: () => () => undefined, close: async () => undefined };
    },
    {
      metrics,
      approvals: broker,
      recorder: createRecorder({ directory: dir, metrics, logger: createLogger('approvals-it') }),
      podName: 'github-mcp-0',
    },
  );
});

afterAll(async () => {
  await broker?.close();
  await h?.close();
  rmSync(dir, { recursive: true, force: true });
});

/** The approvals created since `before` (names), newest last. */
function created(before: Set<string>): StoredApproval[] {
  return [...store.list()].filter((a) => !before.has(a.name));
}

async function waitFor<T>(probe: () => T | undefined, what: string, ms = 5000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = probe();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function toolCalls(): number {
  return h.upstream.stats.methods.filter((m) => m === 'tools/call').length;
}

async function metric(name: string, labels: Record<string, string>): Promise<number> {
  const m = await metrics.registry.getSingleMetric(name)?.get();
  const v = m?.values.find((x) => Object.entries(labels).every(([k, l]) => x.labels[k] === l));
  return v?.value ?? 0;
}

async function client(oid = 'user-1'): Promise<Client> {
  return connectStreamable(h.mcpUrl, await h.token({ oid }));
}

describe('hold mode', () => {
  it('holds the call open, tells the client which approval it waits for, and runs it once approved', async () => {
    const c = await client();
    const before = new Set([...store.list()].map((a) => a.name));
    const calls = toolCalls();
    const progress: string[] = [];
    const pending = c.callTool(
      { name: 'delete_repo', arguments: { name: 'widgets', owner: 'ops@example.com' } },
      CallToolResultSchema,
      { onprogress: (p) => progress.push(String(p.message)), timeout: 10_000 },
    );
    const a = await waitFor(() => created(before)[0], 'an approval');
    // What reviewers see: the call, masked, bound to the unmasked arguments by their digest.
    expect(a.spec).toMatchObject({
      policy: 'agents/repo-tools',
      rule: 'deletes-need-approval',
      pod: 'github-mcp-0',
      method: 'tools/call',
      tool: 'delete_repo',
      mode: 'hold',
      approvers: [{ group: 'mcp-reviewers' }],
      arguments: { name: 'widgets', owner: 'masked-email@masked.invalid' },
      argumentsDigest: argumentsDigest({ owner: 'ops@example.com', name: 'widgets' }),
    });
    expect(a.spec.requester.principal).toContain('user-1');
    expect(a.spec.session).toMatch(/^[0-9a-f]{16}$/);
    expect(JSON.stringify(a.spec)).not.toContain('ops@example.com');
    // What the masking hid from the reviewer: where, by which detector, how many characters.
    expect(a.spec.maskedArguments).toEqual({
      count: 1,
      length: 15,
      entries: [{ path: '$.owner', detector: 'email', length: 15 }],
    });
    await waitFor(() => (progress.length > 0 ? true : undefined), 'a progress notification');
    expect(progress[0]).toContain(a.name);
    expect(toolCalls()).toBe(calls); // nothing reached the upstream while held
    store.decide(a.name, 'Approved', 'rita', 'ok for the cleanup', { acknowledgeMaskedArguments: true });
    const result = await pending;
    expect(result.content).toEqual([{ type: 'text', text: 'deleted widgets' }]);
    expect(toolCalls()).toBe(calls + 1);
    await waitFor(() => (store.get(a.name)?.phase === 'Executed' ? true : undefined), 'phase Executed');
    expect(await metric('mcp_warden_approvals_total', { outcome: 'approved' })).toBeGreaterThanOrEqual(1);
    expect(await metric('mcp_warden_approvals_pending', { policy: 'agents/repo-tools' })).toBe(0);
    await c.close();
  });

  it('answers -31409 with the reviewer reason when denied, and never runs the call', async () => {
    const c = await client();
    const before = new Set([...store.list()].map((a) => a.name));
    const calls = toolCalls();
    const pending = c.callTool({ name: 'delete_repo', arguments: { name: 'prod' } }, CallToolResultSchema, {
      timeout: 10_000,
    });
    const a = await waitFor(() => created(before)[0], 'an approval');
    store.decide(a.name, 'Denied', 'rita', 'not the production repo');
    const err = (await pending.catch((e: unknown) => e)) as McpError;
    expect(err).toBeInstanceOf(McpError);
    expect(err.code).toBe(-31409);
    expect(err.message).toContain('not the production repo');
    expect(err.data).toMatchObject({
      policy: 'agents/repo-tools',
      rule: 'deletes-need-approval',
      approval: { name: a.name, status: 'Denied' },
    });
    expect(toolCalls()).toBe(calls);
    await waitFor(() => (store.get(a.name)?.phase === 'Denied' ? true : undefined), 'phase Denied');
    await c.close();
  });

  it('answers -31408 when nobody decides before the timeout', async () => {
    const c = await client();
    const before = new Set([...store.list()].map((a) => a.name));
    const calls = toolCalls();
    const err = (await c
      .callTool({ name: 'delete_repo', arguments: { name: 'stale' } }, CallToolResultSchema, {
        timeout: 10_000,
      })
      .catch((e: unknown) => e)) as McpError;
    expect(err.code).toBe(-31408);
    const a = created(before)[0]!;
    expect(err.data).toMatchObject({ approval: { name: a.name, status: 'Expired' } });
    expect(store.get(a.name)?.phase).toBe('Expired');
    expect(toolCalls()).toBe(calls);
    // A verdict after expiry changes nothing: the call is gone.
    store.decide(a.name, 'Approved', 'rita');
    await new Promise((r) => setTimeout(r, 100));
    expect(toolCalls()).toBe(calls);
    await c.close();
  });

  it('cancels the approval when the client cancels the request (notifications/cancelled)', async () => {
    const c = await client();
    const before = new Set([...store.list()].map((a) => a.name));
    const calls = toolCalls();
    const abort = new AbortController();
    const pending = c
      .callTool({ name: 'delete_repo', arguments: { name: 'gone' } }, CallToolResultSchema, {
        signal: abort.signal,
        timeout: 10_000,
      })
      .catch((e: unknown) => e);
    const a = await waitFor(() => created(before)[0], 'an approval');
    abort.abort();
    await pending;
    // The SDK sends notifications/cancelled for the request id: the hold ends.
    await waitFor(() => (store.get(a.name)?.phase === 'Cancelled' ? true : undefined), 'phase Cancelled');
    store.decide(a.name, 'Approved', 'rita');
    await new Promise((r) => setTimeout(r, 100));
    expect(toolCalls()).toBe(calls);
    await c.close();
  });

  it('a client that leaves while the approval is still being created leaves it open for its repeat; it expires at expiresAt', async () => {
    const headers = await openRawSession(h.mcpUrl, await h.token({ oid: 'user-10' }), '2025-06-18');
    const before = new Set([...store.list()].map((a) => a.name));
    store.setCreateDelay(300);
    try {
      const abort = new AbortController();
      const response = fetch(h.mcpUrl, {
        method: 'POST',
        headers,
        signal: abort.signal,
        body: JSON.stringify({
          jsonrpc: '2.0',
          id: 11,
          method: 'tools/call',
          params: { name: 'delete_repo', arguments: { name: 'early' } },
        }),
      }).catch(() => undefined);
      await new Promise((r) => setTimeout(r, 50));
      abort.abort();
      await response;
      const a = await waitFor(() => created(before)[0], 'the approval');
      await leftOpen(a.name);
      expect(store.get(a.name)).toMatchObject({ phase: 'Pending', holder: 'github-mcp-0' });
      // Nobody repeated the call: this pod expires it on time (the rule's timeout is 2 s).
      await waitFor(() => (store.get(a.name)?.phase === 'Expired' ? true : undefined), 'phase Expired');
    } finally {
      store.setCreateDelay(0);
    }
  });
  it('records the hold and its outcome in the session recording, masked', async () => {
    const read = (): { text: string; lines: Array<Record<string, unknown>> } => {
      const text = readdirSync(dir)
        .filter((f) => f.endsWith('.jsonl'))
        .map((f) => readFileSync(join(dir, f), 'utf8'))
        .join('');
      const lines = text
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as Record<string, unknown>);
      return { text, lines };
    };
    const wanted = ['approved', 'denied', 'expired', 'cancelled'];
    // Recordings are written in the background (at most a second behind).
    const { text, lines } = await waitFor(() => {
      const r = read();
      const outcomes = new Set(r.lines.filter((l) => l['type'] === 'approval').map((l) => l['outcome']));
      return wanted.every((w) => outcomes.has(w)) ? r : undefined;
    }, 'the approval outcomes in the recordings');
    expect(lines.find((l) => l['type'] === 'approval' && l['outcome'] === 'approved')).toMatchObject({
      method: 'tools/call',
      tool: 'delete_repo',
      policy: 'agents/repo-tools',
      rule: 'deletes-need-approval',
      decidedBy: 'rita',
    });
    expect(text).not.toContain('ops@example.com');
  });
});

/** The broker logged that the hold of `name` ended with its approval left open, and why. */
function leftOpen(name: string): Promise<Record<string, unknown>> {
  return waitFor(
    () => logged.find((l) => l['event'] === 'approval-left-open' && l['approval'] === name),
    `approval ${name} left open`,
  );
}

/**
 * A held call whose connection the client drops (no notifications/cancelled: a network blip, a
 * load balancer's idle cut, a crash): its approval and name, once the hold ended.
 */
async function dropHeld(
  oid: string,
  args: Record<string, unknown>,
  tool = 'slow_steps',
  session?: Record<string, string>,
): Promise<StoredApproval> {
  const headers = session ?? (await openRawSession(h.mcpUrl, await h.token({ oid }), '2025-06-18'));
  const before = new Set([...store.list()].map((a) => a.name));
  const abort = new AbortController();
  const response = await fetch(h.mcpUrl, {
    method: 'POST',
    headers,
    signal: abort.signal,
    body: JSON.stringify({
      jsonrpc: '2.0',
      id: 9,
      method: 'tools/call',
      params: { name: tool, arguments: args },
    }),
  });
  // The answer is an event stream from the start, with the approval's name in a comment.
  expect(response.headers.get('content-type')).toBe('text/event-stream');
  const reader = response.body!.getReader();
  const first = new TextDecoder().decode((await reader.read()).value);
  const a = await waitFor(() => created(before)[0], 'an approval');
  expect(first).toContain(`waiting for approval ${a.name}`);
  abort.abort();
  const log = await leftOpen(a.name);
  expect(String(log['reason'])).toContain('closed the connection');
  return a;
}

describe('hold mode: a dropped connection is not a cancellation', () => {
  it('the approval stays Pending, held by this pod; the repeat waits on it and runs the call once approved', async () => {
    const calls = toolCalls();
    const cancelled = await metric('mcp_warden_approvals_total', { outcome: 'cancelled' });
    const a = await dropHeld('user-8', { steps: 1 });
    expect(store.get(a.name)).toMatchObject({ phase: 'Pending', holder: 'github-mcp-0' });
    expect(await metric('mcp_warden_approvals_total', { outcome: 'cancelled' })).toBe(cancelled);
    expect(toolCalls()).toBe(calls);
    // The repeat (a new connection and session of the same principal) waits on the same approval.
    const count = [...store.list()].length;
    const c = await client('user-8');
    const progress: string[] = [];
    const repeat = c.callTool({ name: 'slow_steps', arguments: { steps: 1 } }, CallToolResultSchema, {
      onprogress: (p) => progress.push(String(p.message)),
      timeout: 10_000,
    });
    await waitFor(() => (progress.length > 0 ? true : undefined), 'the repeat waiting');
    expect(progress[0]).toContain(a.name);
    expect([...store.list()]).toHaveLength(count);
    store.decide(a.name, 'Approved', 'rita');
    expect((await repeat).content).toEqual([{ type: 'text', text: 'done 1' }]);
    expect(toolCalls()).toBe(calls + 1);
    await waitFor(() => (store.get(a.name)?.phase === 'Executed' ? true : undefined), 'phase Executed');
    await c.close();
  });

  it('approved while nobody waits: the phase says Approved, and the repeat runs the call at once, once', async () => {
    const calls = toolCalls();
    const a = await dropHeld('user-11', { steps: 2 });
    store.decide(a.name, 'Approved', 'rita', 'fine');
    // Written by this pod as soon as the verdict arrives (the sweeper would wait for its pass).
    await waitFor(() => (store.get(a.name)?.phase === 'Approved' ? true : undefined), 'phase Approved');
    expect(store.get(a.name)?.phase).toBe('Approved');
    expect(toolCalls()).toBe(calls);
    const c = await client('user-11');
    const result = await c.callTool({ name: 'slow_steps', arguments: { steps: 2 } }, CallToolResultSchema, {
      timeout: 10_000,
    });
    expect(result.content).toEqual([{ type: 'text', text: 'done 2' }]);
    expect(toolCalls()).toBe(calls + 1);
    expect(store.get(a.name)?.phase).toBe('Executed');
    // Used: the next repeat asks anew.
    const before = new Set([...store.list()].map((x) => x.name));
    const abort = new AbortController();
    const next = c
      .callTool({ name: 'slow_steps', arguments: { steps: 2 } }, CallToolResultSchema, {
        signal: abort.signal,
        timeout: 10_000,
      })
      .catch((e: unknown) => e);
    const again = await waitFor(() => created(before)[0], 'a new approval');
    expect(again.name).not.toBe(a.name);
    abort.abort();
    await next;
    await waitFor(() => (store.get(again.name)?.phase === 'Cancelled' ? true : undefined), 'phase Cancelled');
    expect(toolCalls()).toBe(calls + 1);
    await c.close();
  });

  it('nobody repeats the call: this pod writes Expired at expiresAt', async () => {
    const expired = await metric('mcp_warden_approvals_total', { outcome: 'expired' });
    const a = await dropHeld('user-12', { name: 'dropped' }, 'delete_repo');
    expect(store.get(a.name)?.phase).toBe('Pending');
    // The rule's timeout is 2 s; its expiry timer writes it (the sweeper leaves it alone).
    const gone = await waitFor(
      () => (store.get(a.name)?.phase === 'Expired' ? store.get(a.name) : undefined),
      'phase Expired',
      10_000,
    );
    expect(Date.parse(gone!.phaseTime!)).toBeGreaterThanOrEqual(Date.parse(a.spec.expiresAt));
    expect(await metric('mcp_warden_approvals_total', { outcome: 'expired' })).toBe(expired + 1);
  });
});

describe('hold mode: the client can still cancel what its dropped connection left open', () => {
  /** POST a `notifications/cancelled` naming request `requestId` in the session of `headers`. */
  const cancelLater = async (headers: Record<string, string>, requestId: number): Promise<void> => {
    const r = await fetch(h.mcpUrl, {
      method: 'POST',
      headers,
      body: JSON.stringify({
        jsonrpc: '2.0',
        method: 'notifications/cancelled',
        params: { requestId, reason: 'the user gave up' },
      }),
    });
    await r.text();
    expect(r.status).toBe(202);
  };
  const phase = (name: string, want: string) =>
    waitFor(() => (store.get(name)?.phase === want ? true : undefined), `phase ${want}`);

  it('a notifications/cancelled naming the request, after its connection closed, cancels the approval', async () => {
    const calls = toolCalls();
    const cancelled = await metric('mcp_warden_approvals_total', { outcome: 'cancelled' });
    const headers = await openRawSession(h.mcpUrl, await h.token({ oid: 'user-20' }), '2025-06-18');
    const a = await dropHeld('user-20', { steps: 20 }, 'slow_steps', headers);
    expect(store.get(a.name)?.phase).toBe('Pending');
    await cancelLater(headers, 9);
    await phase(a.name, 'Cancelled');
    expect(await metric('mcp_warden_approvals_total', { outcome: 'cancelled' })).toBe(cancelled + 1);
    // A verdict after it runs nothing, and the repeat asks anew.
    store.decide(a.name, 'Approved', 'rita');
    const c = await client('user-20');
    const before = new Set([...store.list()].map((x) => x.name));
    const abort = new AbortController();
    const repeat = c
      .callTool({ name: 'slow_steps', arguments: { steps: 20 } }, CallToolResultSchema, {
        signal: abort.signal,
        timeout: 10_000,
      })
      .catch((e: unknown) => e);
    const again = await waitFor(() => created(before)[0], 'a new approval');
    expect(again.name).not.toBe(a.name);
    abort.abort();
    await repeat;
    expect(toolCalls()).toBe(calls);
    await c.close();
  });

  it('a late notifications/cancelled for the old request does not cancel the approval a repeat took over', async () => {
    const calls = toolCalls();
    const headers = await openRawSession(h.mcpUrl, await h.token({ oid: 'user-21' }), '2025-06-18');
    const a = await dropHeld('user-21', { steps: 21 }, 'slow_steps', headers);
    const c = await client('user-21');
    const progress: string[] = [];
    const repeat = c.callTool({ name: 'slow_steps', arguments: { steps: 21 } }, CallToolResultSchema, {
      onprogress: (p) => progress.push(String(p.message)),
      timeout: 10_000,
    });
    await waitFor(() => (progress.length > 0 ? true : undefined), 'the repeat waiting');
    expect(progress[0]).toContain(a.name);
    await cancelLater(headers, 9);
    // The repeat's call is the one that counts now: approved, it runs.
    store.decide(a.name, 'Approved', 'rita');
    expect((await repeat).content).toEqual([{ type: 'text', text: 'done 21' }]);
    expect(toolCalls()).toBe(calls + 1);
    expect(store.get(a.name)?.phase).toBe('Executed');
    await c.close();
  });

  it('deleting the session cancels the approvals its dropped requests left open, and its calls still held', async () => {
    const calls = toolCalls();
    const headers = await openRawSession(h.mcpUrl, await h.token({ oid: 'user-22' }), '2025-06-18');
    const dropped = await dropHeld('user-22', { steps: 22 }, 'slow_steps', headers);
    // A second call of the session, still held when the session is deleted.
    const before = new Set([...store.list()].map((x) => x.name));
    const stillHeld = await fetch(h.mcpUrl, {
      method: 'POST',
      headers,
      body: JSON.stringify({
        jsonrpc: '2.0',
        id: 10,
        method: 'tools/call',
        params: { name: 'slow_steps', arguments: { steps: 23 } },
      }),
    });
    const held = await waitFor(() => created(before)[0], 'the second approval');
    const gone = await fetch(h.mcpUrl, { method: 'DELETE', headers });
    await gone.text();
    expect(gone.status).toBe(200);
    await phase(dropped.name, 'Cancelled');
    await phase(held.name, 'Cancelled');
    const answer = await stillHeld.text();
    expect(answer).toContain('Approval cancelled: the client ended the session');
    store.decide(dropped.name, 'Approved', 'rita');
    store.decide(held.name, 'Approved', 'rita');
    expect(toolCalls()).toBe(calls);
  });

  // What the MCP SDK does on abort: the request's connection closes at once, then
  // notifications/cancelled follows; here both come while the approval is still being created.
  for (const [how, n, end] of [
    ['a notifications/cancelled', 30, (headers: Record<string, string>) => cancelLater(headers, 11)],
    [
      'deleting the session',
      31,
      async (headers: Record<string, string>) => {
        const r = await fetch(h.mcpUrl, { method: 'DELETE', headers });
        await r.text();
        expect(r.status).toBe(200);
      },
    ],
  ] as const) {
    it(`${how} after the connection closed, while the approval was still being created, cancels it`, async () => {
      const oid = `user-${n}`;
      const headers = await openRawSession(h.mcpUrl, await h.token({ oid }), '2025-06-18');
      const before = new Set([...store.list()].map((a) => a.name));
      store.setCreateDelay(400);
      try {
        const abort = new AbortController();
        const response = fetch(h.mcpUrl, {
          method: 'POST',
          headers,
          signal: abort.signal,
          body: JSON.stringify({
            jsonrpc: '2.0',
            id: 11,
            method: 'tools/call',
            params: { name: 'slow_steps', arguments: { steps: n } },
          }),
        }).catch(() => undefined);
        await new Promise((r) => setTimeout(r, 50));
        abort.abort();
        await response;
        await new Promise((r) => setTimeout(r, 30));
        expect(created(before)).toEqual([]); // still being created
        await end(headers);
        const a = await waitFor(() => created(before)[0], 'the approval');
        await phase(a.name, 'Cancelled');
      } finally {
        store.setCreateDelay(0);
      }
    });
  }

  // A session that expires idle (the proxy forgets it after sessionIdleMs, checked once a minute)
  // forgets its left-open approvals without cancelling them: there is no quick way to make the
  // real proxy expire a session here, so that is covered by pkg/proxy/held-calls.test.ts.
});

describe('a rate limit on an approve rule counts approval requests', () => {
  const contact = async (c: Client): Promise<McpError | string> => {
    try {
      const r = await c.callTool({ name: 'contact', arguments: {} }, CallToolResultSchema);
      return (r.content as Array<{ text: string }>)[0]!.text;
    } catch (e) {
      return e as McpError;
    }
  };

  it('asking costs one; repeating a pending or approved ticket costs nothing; the next request is refused', async () => {
    const c = await client('user-7');
    const before = new Set([...store.list()].map((a) => a.name));
    const first = (await contact(c)) as McpError;
    expect(first.code).toBe(-31403);
    const name = (first.data as { approval: { name: string } }).approval.name;
    // The pending ticket's repeat finds its approval: not a new request, not limited.
    const again = (await contact(c)) as McpError;
    expect(again.code).toBe(-31403);
    expect((again.data as { approval: { name: string } }).approval.name).toBe(name);
    store.decide(name, 'Approved', 'rita');
    await waitFor(() => (store.get(name)?.phase === 'Approved' ? true : undefined), 'phase Approved');
    expect(await contact(c)).toBe('write to [masked:email]');
    // A new approval would be the second request this hour.
    const over = (await contact(c)) as McpError;
    expect(over.code).toBe(-31429);
    expect(over.data).toMatchObject({ policy: 'agents/repo-tools', rule: 'contact-one-request-an-hour' });
    expect(created(before).map((a) => a.name)).toEqual([name]);
    // Another caller has a bucket of their own.
    const d = await client('user-8');
    expect(((await contact(d)) as McpError).code).toBe(-31403);
    await d.close();
    await c.close();
  });
});

describe('a call over the rate limit of an approve rule, in the metrics', () => {
  let admin: { url: string; close: () => Promise<void> };
  beforeAll(async () => {
    admin = await startAdminServer({ host: '127.0.0.1', port: 0, metrics, ready: () => true });
  });
  afterAll(async () => {
    await admin?.close();
  });

  /** The decision counters as the real /metrics endpoint shows them, by series. */
  async function scrape(): Promise<Map<string, number>> {
    const text = await (await fetch(`${admin.url}/metrics`)).text();
    const out = new Map<string, number>();
    for (const line of text.split('\n')) {
      const m = /^(mcp_warden_(?:requests|blocked|approvals)_total\{[^}]*\}) (\S+)$/.exec(line);
      if (m) out.set(m[1]!, Number(m[2]));
    }
    return out;
  }

  /** The series that changed between two scrapes, and by how much. */
  function delta(before: Map<string, number>, after: Map<string, number>): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [k, v] of after) if (v !== (before.get(k) ?? 0)) out[k] = v - (before.get(k) ?? 0);
    return out;
  }

  const series = {
    approve: 'mcp_warden_requests_total{policy="agents/repo-tools",method="tools/call",decision="approve"}',
    rateLimited:
      'mcp_warden_requests_total{policy="agents/repo-tools",method="tools/call",decision="rate-limited"}',
    held: 'mcp_warden_blocked_total{policy="agents/repo-tools",rule="contact-one-request-an-hour",tool="contact",reason="approval-required"}',
    limited:
      'mcp_warden_blocked_total{policy="agents/repo-tools",rule="contact-one-request-an-hour",tool="contact",reason="rate-limit"}',
    requested: 'mcp_warden_approvals_total{policy="agents/repo-tools",outcome="requested"}',
    executed: 'mcp_warden_approvals_total{policy="agents/repo-tools",outcome="executed"}',
  };

  it('is counted once, as rate-limited with reason rate-limit; a held call once, as approve', async () => {
    const c = await client('user-9');
    const call = async (): Promise<McpError | string> => {
      try {
        const r = await c.callTool({ name: 'contact', arguments: {} }, CallToolResultSchema);
        return (r.content as Array<{ text: string }>)[0]!.text;
      } catch (e) {
        return e as McpError;
      }
    };
    let before = await scrape();
    const first = (await call()) as McpError;
    expect(first.code).toBe(-31403);
    expect(delta(before, await scrape())).toEqual({
      [series.approve]: 1,
      [series.held]: 1,
      [series.requested]: 1,
    });

    const name = (first.data as { approval: { name: string } }).approval.name;
    store.decide(name, 'Approved', 'rita');
    await waitFor(() => (store.get(name)?.phase === 'Approved' ? true : undefined), 'phase Approved');
    before = await scrape();
    expect(await call()).toBe('write to [masked:email]');
    expect(delta(before, await scrape())).toEqual({
      [series.approve]: 1,
      [series.held]: 1,
      [series.executed]: 1,
    });

    // Over the limit: refused by it, and counted only as such.
    before = await scrape();
    const over = (await call()) as McpError;
    expect(over.code).toBe(-31429);
    expect(delta(before, await scrape())).toEqual({ [series.rateLimited]: 1, [series.limited]: 1 });
    await c.close();
  });
});

describe('ticket mode', () => {
  const query = { query: 'select count(*) from orders' };

  async function callQuery(c: Client, args: Record<string, unknown> = query): Promise<McpError | string> {
    try {
      const r = await c.callTool({ name: 'run_query', arguments: args }, CallToolResultSchema);
      return (r.content as Array<{ text: string }>)[0]!.text;
    } catch (e) {
      return e as McpError;
    }
  }

  it('answers at once with the approval name; the same call repeated after approval runs exactly once', async () => {
    const c = await client('user-2');
    const calls = toolCalls();
    const first = (await callQuery(c)) as McpError;
    expect(first.code).toBe(-31403);
    const approval = (first.data as { approval: { name: string; status: string; mode: string } }).approval;
    expect(approval).toMatchObject({ status: 'Pending', mode: 'ticket' });
    expect(first.message).toContain(approval.name);
    // Repeated before any verdict: the same approval, not a second one.
    const again = (await callQuery(c)) as McpError;
    expect((again.data as { approval: { name: string } }).approval.name).toBe(approval.name);
    expect(toolCalls()).toBe(calls);

    store.decide(approval.name, 'Approved', 'rita');
    await waitFor(
      () => (store.get(approval.name)?.phase === 'Approved' ? true : undefined),
      'phase Approved',
    );
    // Another principal repeating the same call is not covered by the verdict.
    const other = await client('user-3');
    const theirs = (await callQuery(other)) as McpError;
    expect(theirs.code).toBe(-31403);
    expect((theirs.data as { approval: { name: string } }).approval.name).not.toBe(approval.name);
    // Other arguments are another call.
    const changed = (await callQuery(c, { query: 'drop table orders' })) as McpError;
    expect(changed.code).toBe(-31403);

    expect(await callQuery(c)).toBe('ran: select count(*) from orders');
    expect(store.get(approval.name)?.phase).toBe('Executed');
    expect(toolCalls()).toBe(calls + 1);
    // Once: the next repeat needs a new approval.
    const third = (await callQuery(c)) as McpError;
    expect(third.code).toBe(-31403);
    expect((third.data as { approval: { name: string } }).approval.name).not.toBe(approval.name);
    expect(toolCalls()).toBe(calls + 1);
    await other.close();
    await c.close();
  });

  it('legacy HTTP+SSE: a hold rule works as a ticket (the POST is answered 202 at once)', async () => {
    const c = await connectLegacy(h.url, await h.token({ oid: 'user-9' }));
    const calls = toolCalls();
    const first = (await c
      .callTool({ name: 'delete_repo', arguments: { name: 'legacy' } }, CallToolResultSchema)
      .catch((e: unknown) => e)) as McpError;
    expect(first.code).toBe(-31403);
    const approval = (first.data as { approval: { name: string; status: string; mode: string } }).approval;
    expect(approval).toMatchObject({ status: 'Pending', mode: 'ticket' });
    expect(store.get(approval.name)?.spec.mode).toBe('ticket');
    store.decide(approval.name, 'Approved', 'rita');
    const r = await c.callTool({ name: 'delete_repo', arguments: { name: 'legacy' } }, CallToolResultSchema);
    expect(r.content).toEqual([{ type: 'text', text: 'deleted legacy' }]);
    expect(toolCalls()).toBe(calls + 1);
    await c.close();
  });

  it('a resource read repeated with another progress token is the same call', async () => {
    const c = await client('user-11');
    const read = (token: string) =>
      c.readResource({ uri: 'file:///secrets.txt', _meta: { progressToken: token } }).then(
        (r) => r,
        (e: unknown) => e as McpError,
      );
    const first = (await read('t-1')) as McpError;
    expect(first.code).toBe(-31403);
    const name = (first.data as { approval: { name: string } }).approval.name;
    // `_meta` is not part of the call: the same approval, not a second one.
    const again = (await read('t-2')) as McpError;
    expect((again.data as { approval: { name: string } }).approval.name).toBe(name);
    expect(store.get(name)?.spec.arguments).toEqual({ uri: 'file:///secrets.txt' });
    store.decide(name, 'Approved', 'rita');
    const ok = (await read('t-3')) as { contents: Array<{ uri: string }> };
    expect(ok.contents[0]!.uri).toBe('file:///secrets.txt');
    await c.close();
  });

  it('answers -31409 while a denial stands', async () => {
    const c = await client('user-4');
    const first = (await callQuery(c, { query: 'delete from users' })) as McpError;
    const name = (first.data as { approval: { name: string } }).approval.name;
    store.decide(name, 'Denied', 'rita', 'no deletes');
    const again = (await callQuery(c, { query: 'delete from users' })) as McpError;
    expect(again.code).toBe(-31409);
    expect(again.message).toContain('no deletes');
    await c.close();
  });
});

describe('approval.maskedArguments: deny', () => {
  it('refuses a call whose arguments masking changes at once (-31403, counted as a block), asks for no approval', async () => {
    const c = await client('user-strict');
    const before = new Set([...store.list()].map((a) => a.name));
    const blocked = () =>
      metric('mcp_warden_blocked_total', { rule: 'greetings-refuse-masked', reason: 'masked-arguments' });
    const blockedBefore = await blocked();
    const err = (await c
      .getPrompt({ name: 'greet', arguments: { to: 'write to ops@example.com' } })
      .catch((e: unknown) => e)) as McpError;
    expect(err).toBeInstanceOf(McpError);
    expect(err.code).toBe(-31403);
    expect(err.data).toMatchObject({ policy: 'agents/repo-tools', rule: 'greetings-refuse-masked' });
    const reason = (err.data as { reason: string }).reason;
    expect(reason).toContain('email at $.to (15 characters)');
    expect(reason).toContain('approval.maskedArguments: deny');
    expect(JSON.stringify(err)).not.toContain('ops@example.com');
    expect(created(before)).toEqual([]);
    expect(h.upstream.stats.methods).not.toContain('prompts/get');
    expect(await blocked()).toBe(blockedBefore + 1);
    expect(
      await metric('mcp_warden_requests_total', {
        policy: 'agents/repo-tools',
        method: 'prompts/get',
        decision: 'deny',
      }),
    ).toBe(1);

    // Nothing masked: the call is held for a reviewer as usual.
    const pending = c.getPrompt({ name: 'greet', arguments: { to: 'the team' } }).catch((e: unknown) => e);
    const a = await waitFor(() => created(before)[0], 'an approval');
    expect(a.spec.maskedArguments).toBeUndefined();
    store.decide(a.name, 'Denied', 'rita', 'not now');
    expect(((await pending) as McpError).code).toBe(-31409);
    await c.close();
  });
});

describe('fail closed', () => {
  it('refuses a held call when the approval store is unreachable', async () => {
    const c = await client();
    store.setReady(false);
    try {
      const calls = toolCalls();
      const err = (await c
        .callTool({ name: 'delete_repo', arguments: { name: 'x' } }, CallToolResultSchema)
        .catch((e: unknown) => e)) as McpError;
      expect(err.code).toBe(-31403);
      expect(err.data).toMatchObject({ approval: { status: 'unavailable' } });
      expect(toolCalls()).toBe(calls);
    } finally {
      store.setReady(true);
    }
    await c.close();
  });

  it('a batch cannot be held open: its held request is answered as a ticket', async () => {
    const token = await h.token({ oid: 'user-6' });
    const headers = {
      authorization: `Bearer ${token}`,
      'content-type': 'application/json',
      accept: 'application/json, text/event-stream',
      'mcp-protocol-version': '2025-03-26',
    };
    const init = await fetch(h.mcpUrl, {
      method: 'POST',
      headers,
      body: JSON.stringify({
        jsonrpc: '2.0',
        id: 1,
        method: 'initialize',
        params: {
          protocolVersion: '2025-03-26',
          capabilities: {},
          clientInfo: { name: 'raw', version: '1' },
        },
      }),
    });
    const sid = init.headers.get('mcp-session-id')!;
    await init.text();
    await fetch(h.mcpUrl, {
      method: 'POST',
      headers: { ...headers, 'mcp-session-id': sid },
      body: JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' }),
    }).then((r) => r.text());
    const calls = toolCalls();
    const r = await fetch(h.mcpUrl, {
      method: 'POST',
      headers: { ...headers, 'mcp-session-id': sid },
      body: JSON.stringify([
        {
          jsonrpc: '2.0',
          id: 2,
          method: 'tools/call',
          params: { name: 'delete_repo', arguments: { name: 'b' } },
        },
        {
          jsonrpc: '2.0',
          id: 3,
          method: 'tools/call',
          params: { name: 'get_weather', arguments: { city: 'Oslo' } },
        },
      ]),
    });
    const text = await r.text();
    if (!text.includes('"id":2')) throw new Error(`HTTP ${r.status}: ${text}`);
    const body = (text.startsWith('[') ? JSON.parse(text) : parseSse(text)) as Array<Record<string, unknown>>;
    const held = body.find((m) => m['id'] === 2) as {
      error: { code: number; data: { approval: { name: string; status: string } } };
    };
    expect(held.error.code).toBe(-31403);
    expect(held.error.data.approval.status).toBe('Pending');
    // Stored as a ticket: the same call repeated after approval finds it.
    expect(store.get(held.error.data.approval.name)?.spec.mode).toBe('ticket');
    const weather = body.find((m) => m['id'] === 3) as { result: unknown };
    expect(JSON.stringify(weather.result)).toContain('sunny in Oslo');
    expect(toolCalls()).toBe(calls + 1);
  });
});

function parseSse(text: string): unknown[] {
  const out: unknown[] = [];
  for (const block of text.split('\n\n')) {
    const data = block
      .split('\n')
      .filter((l) => l.startsWith('data:'))
      .map((l) => l.slice(5).trimStart())
      .join('\n');
    if (data === '') continue;
    const v = JSON.parse(data) as unknown;
    if (Array.isArray(v)) out.push(...v);
    else out.push(v);
  }
  return out;
}
