import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import {
  CallToolResultSchema,
  CreateMessageRequestSchema,
  CreateMessageResultSchema,
  ElicitRequestSchema,
  ElicitResultSchema,
  LoggingMessageNotificationSchema,
} from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';
import { ApprovalBroker, MemoryApprovalStore, type StoredApproval } from '../../pkg/approval/index.js';
import { createLogger } from '../../pkg/log.js';
import { SseParser } from '../../pkg/mcp/sse.js';
import { createMetrics, type Metrics } from '../../pkg/metrics/catalogue.js';
import { compilePolicies, type PolicyDocument } from '../../pkg/policy/index.js';
import { createRecorder } from '../../pkg/record/index.js';
import { AUDIENCE, connectLegacy, type Harness, samplingCalls, startHarness } from './helpers/harness.js';
import { hostMcpServer } from './helpers/sdk-host.js';
import { OrderedEventStore } from './helpers/upstream-v1.js';

/**
 * Server→client requests held for a human decision, end to end through the gateway's data path:
 * a real SDK server asking the client's model (`sampling/createMessage`) or user
 * (`elicitation/create`) in the middle of a tool call, a real SDK client answering, the real
 * policy engine, and the approval broker over an in-memory store.
 */

const CUSTOMER = 'ops@example.com';
/** What the server learnt from its requests to the client, in order. */
const outcomes: string[] = [];

function build(): McpServer {
  const server = new McpServer({ name: 'writer', version: '1.0.0' }, { capabilities: { logging: {} } });
  const samplingParams = (text: string) => ({
    messages: [{ role: 'user' as const, content: { type: 'text' as const, text: `Summarize: ${text}` } }],
    maxTokens: 50,
  });
  server.registerTool(
    'summarize',
    { description: 'Summarizes text with the client model', inputSchema: { text: z.string() } },
    async ({ text }, extra) => {
      // Related to this call: the request travels on the call's own response stream.
      const asked = extra.sendRequest(
        { method: 'sampling/createMessage', params: samplingParams(text) },
        CreateMessageResultSchema,
        { timeout: 20_000 },
      );
      asked.catch(() => undefined);
      const token = extra._meta?.progressToken;
      if (token !== undefined) {
        await extra.sendNotification({
          method: 'notifications/progress',
          params: { progressToken: token, progress: 1, message: 'asked the model' },
        });
      }
      try {
        const r = await asked;
        outcomes.push('sampling-ok');
        return { content: [{ type: 'text', text: `summary: ${(r.content as { text?: string }).text}` }] };
      } catch (err) {
        outcomes.push(`sampling-error: ${(err as Error).message}`);
        return {
          content: [{ type: 'text', text: `sampling refused: ${(err as Error).message}` }],
          isError: true,
        };
      }
    },
  );
  server.registerTool(
    'summarize_later',
    { description: 'Asks the model and answers without waiting', inputSchema: { text: z.string() } },
    async ({ text }, extra) => {
      extra
        .sendRequest(
          { method: 'sampling/createMessage', params: samplingParams(text) },
          CreateMessageResultSchema,
          { timeout: 20_000 },
        )
        .then(
          (r) => outcomes.push(`later-ok: ${(r.content as { text?: string }).text}`),
          (err: unknown) => outcomes.push(`later-error: ${(err as Error).message}`),
        );
      return { content: [{ type: 'text', text: 'queued' }] };
    },
  );
  server.registerTool(
    'summarize_standalone',
    { description: 'Asks the model on the session stream', inputSchema: { text: z.string() } },
    async ({ text }) => {
      // Not related to the call: the request travels on the session's GET stream.
      const r = await server.server.createMessage(samplingParams(text), { timeout: 20_000 });
      outcomes.push('standalone-ok');
      return { content: [{ type: 'text', text: `summary: ${(r.content as { text?: string }).text}` }] };
    },
  );
  server.registerTool('ask_name', { description: 'Asks the user', inputSchema: {} }, async (_args, extra) => {
    try {
      const r = await extra.sendRequest(
        {
          method: 'elicitation/create',
          params: {
            message: 'Your name?',
            requestedSchema: { type: 'object', properties: { name: { type: 'string' } } },
          },
        },
        ElicitResultSchema,
        { timeout: 20_000 },
      );
      outcomes.push('elicitation-ok');
      return { content: [{ type: 'text', text: `hello ${String(r.content?.['name'])}` }] };
    } catch (err) {
      outcomes.push(`elicitation-error: ${(err as Error).message}`);
      return { content: [{ type: 'text', text: (err as Error).message }], isError: true };
    }
  });
  server.registerTool(
    'announce',
    { description: 'Logs on the session stream', inputSchema: {} },
    async () => {
      await server.server.notification({
        method: 'notifications/message',
        params: { level: 'info', data: 'hi' },
      });
      return { content: [{ type: 'text', text: 'announced' }] };
    },
  );
  return server;
}

function policy(issuer: string): PolicyDocument {
  return {
    apiVersion: 'mcpwarden.io/v1alpha1',
    kind: 'MCPPolicy',
    metadata: { name: 'writer', namespace: 'agents', generation: 1 },
    spec: {
      podSelector: {},
      identity: { issuers: [{ issuer, audiences: [AUDIENCE] }] },
      rules: [
        { name: 'tools', subjects: [{ any: true }], match: { tools: ['*'] }, action: 'allow' },
        {
          name: 'sampling-needs-approval',
          subjects: [{ any: true }],
          match: { methods: ['sampling/createMessage'] },
          action: 'approve',
          approval: { approvers: [{ group: 'mcp-reviewers' }], timeout: '30s', mode: 'hold' },
        },
        {
          // `ticket` cannot apply to a server request (the server cannot repeat it): held too.
          name: 'elicitation-needs-approval',
          subjects: [{ any: true }],
          match: { methods: ['elicitation/create'] },
          action: 'approve',
          approval: { approvers: [{ group: 'mcp-reviewers' }], timeout: '1s', mode: 'ticket' },
        },
      ],
      masking: [{ name: 'pii', detectors: ['email'] }],
      recording: { enabled: true, payloads: 'masked' },
    },
  } as PolicyDocument;
}

let upstream: { url: string; close(): Promise<void> };
let h: Harness;
/** The same data path in front of an upstream with an event store (resumable streams). */
let resumableUpstream: { url: string; close(): Promise<void> };
let resumable: Harness;
/** The same data path in front of the test upstream that also speaks legacy HTTP+SSE. */
let legacy: Harness;
let store: MemoryApprovalStore;
let broker: ApprovalBroker;
let metrics: Metrics;
let dir: string;

beforeAll(async () => {
  upstream = await hostMcpServer(build);
  store = new MemoryApprovalStore({ creator: 'system:serviceaccount:agents:writer' });
  metrics = createMetrics({ defaultMetrics: false });
  dir = mkdtempSync(join(tmpdir(), 'approvals-srv-it-'));
  broker = new ApprovalBroker({
    store,
    pod: 'writer-0',
    metrics,
    logger: createLogger('approvals-srv-it'),
    trustedCreator: 'system:serviceaccount:agents:writer',
  });
  await broker.start();
  h = await startHarness(
    (trusted) => {
      const engine = compilePolicies([policy(trusted[0]!.issuer)]);
      return { current: () => engine, onChange: () => () => undefined, close: async () => undefined };
    },
    {
      upstream: upstream.url,
      metrics,
      approvals: broker,
      recorder: createRecorder({ directory: dir, metrics, logger: createLogger('approvals-srv-it') }),
      podName: 'writer-0',
    },
  );
  legacy = await startHarness(
    (trusted) => {
      const engine = compilePolicies([policy(trusted[0]!.issuer)]);
      return { current: () => engine, onChange: () => () => undefined, close: async () => undefined };
    },
    { metrics, approvals: broker, podName: 'writer-0' },
  );
  resumableUpstream = await hostMcpServer(build, { eventStore: new OrderedEventStore() });
  resumable = await startHarness(
    (trusted) => {
      const engine = compilePolicies([policy(trusted[0]!.issuer)]);
      return { current: () => engine, onChange: () => () => undefined, close: async () => undefined };
    },
    { upstream: resumableUpstream.url, metrics, approvals: broker, podName: 'writer-0' },
  );
});

afterAll(async () => {
  await broker?.close();
  await h?.close();
  await legacy?.close();
  await resumable?.close();
  await upstream?.close();
  await resumableUpstream?.close();
  rmSync(dir, { recursive: true, force: true });
});

interface TestClient {
  client: Client;
  /** The params of every sampling / elicitation request that reached the client's handlers. */
  sampled: unknown[];
  elicited: unknown[];
  logs: unknown[];
}

async function connect(oid: string): Promise<TestClient> {
  const client = new Client(
    { name: 'reviewed-client', version: '1.0.0' },
    { capabilities: { sampling: {}, elicitation: {} } },
  );
  const t: TestClient = { client, sampled: [], elicited: [], logs: [] };
  client.setRequestHandler(CreateMessageRequestSchema, async (req) => {
    t.sampled.push(req.params);
    return { role: 'assistant', content: { type: 'text', text: 'a short summary' }, model: 'm' };
  });
  client.setRequestHandler(ElicitRequestSchema, async (req) => {
    t.elicited.push(req.params);
    return { action: 'accept', content: { name: 'Ada' } };
  });
  client.setNotificationHandler(LoggingMessageNotificationSchema, (n) => {
    t.logs.push(n.params.data);
  });
  const token = await h.token({ oid });
  await client.connect(
    new StreamableHTTPClientTransport(new URL(h.mcpUrl), {
      requestInit: { headers: { authorization: `Bearer ${token}` } },
    }),
  );
  return t;
}

async function waitFor<T>(probe: () => T | undefined, what: string, ms = 10_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = probe();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** The next approval created from now on. */
function nextApproval(): Promise<StoredApproval> {
  const before = new Set([...store.list()].map((a) => a.name));
  return waitFor(() => [...store.list()].find((a) => !before.has(a.name)), 'an approval');
}

function phase(name: string, want: string): Promise<true> {
  return waitFor(() => (store.get(name)?.phase === want ? true : undefined), `phase ${want}`);
}

async function metric(name: string, labels: Record<string, string>): Promise<number> {
  const m = await metrics.registry.getSingleMetric(name)?.get();
  const v = m?.values.find((x) => Object.entries(labels).every(([k, l]) => x.labels[k] === l));
  return v?.value ?? 0;
}

const text = (r: Record<string, unknown>): string => (r['content'] as Array<{ text: string }>)[0]!.text;

describe('server-to-client requests with action: approve (mode hold)', () => {
  it('holds a sampling request of a tool call; approved, the client model answers and the call completes', async () => {
    const t = await connect('user-1');
    const created = nextApproval();
    const progress: string[] = [];
    const call = t.client.callTool(
      { name: 'summarize', arguments: { text: `mail ${CUSTOMER} about the outage` } },
      CallToolResultSchema,
      { onprogress: (p) => progress.push(String(p.message)), timeout: 20_000 },
    );
    const a = await created;
    // What reviewers see: the server's request, masked, on the client's behalf.
    expect(a.spec).toMatchObject({
      policy: 'agents/writer',
      rule: 'sampling-needs-approval',
      pod: 'writer-0',
      method: 'sampling/createMessage',
      direction: 'server-to-client',
      mode: 'hold',
      approvers: [{ group: 'mcp-reviewers' }],
    });
    expect(a.spec.requester.principal).toContain('user-1');
    expect(a.spec.session).toMatch(/^[0-9a-f]{16}$/);
    expect(JSON.stringify(a.spec.arguments)).toContain('Summarize: mail');
    expect(JSON.stringify(a.spec)).not.toContain(CUSTOMER);
    // What the masking hid, as for a client's call: a path into the request's params.
    expect(a.spec.maskedArguments).toMatchObject({
      count: 1,
      length: CUSTOMER.length,
      entries: [{ path: expect.stringMatching(/^\$\.messages\[0\]\.content\.text$/), detector: 'email' }],
    });
    // The stream keeps flowing while the request is held: the call's progress arrives.
    await waitFor(() => (progress.includes('asked the model') ? true : undefined), 'progress while held');
    expect(t.sampled).toEqual([]);
    expect(await metric('mcp_warden_approvals_pending', { policy: 'agents/writer' })).toBe(1);

    store.decide(a.name, 'Approved', 'rita', 'fine to summarize', { acknowledgeMaskedArguments: true });
    const result = await call;
    expect(text(result)).toBe('summary: a short summary');
    expect(t.sampled).toHaveLength(1);
    // Delivered masked, as any server message.
    expect(JSON.stringify(t.sampled[0])).not.toContain(CUSTOMER);
    expect(outcomes.at(-1)).toBe('sampling-ok');
    await phase(a.name, 'Executed');
    expect(await metric('mcp_warden_approvals_total', { outcome: 'approved' })).toBe(1);
    expect(await metric('mcp_warden_approvals_pending', { policy: 'agents/writer' })).toBe(0);
    await t.client.close();
  });

  it('denied: the server gets -31409 with the reviewer reason, and the client handler never runs', async () => {
    const t = await connect('user-2');
    const created = nextApproval();
    const call = t.client.callTool(
      { name: 'summarize', arguments: { text: 'the roadmap' } },
      CallToolResultSchema,
      {
        timeout: 20_000,
      },
    );
    const a = await created;
    store.decide(a.name, 'Denied', 'rita', 'no sampling from this server');
    const result = await call;
    expect(result.isError).toBe(true);
    expect(outcomes.at(-1)).toMatch(/^sampling-error: MCP error -31409: .*no sampling from this server/);
    expect(text(result)).toContain(a.name);
    expect(t.sampled).toEqual([]);
    await phase(a.name, 'Denied');
    await t.client.close();
  });

  it('no verdict in time: the server gets -31408, and the client is never asked (a ticket rule holds too)', async () => {
    const t = await connect('user-3');
    const created = nextApproval();
    const result = await t.client.callTool({ name: 'ask_name', arguments: {} }, CallToolResultSchema, {
      timeout: 20_000,
    });
    const a = await created;
    expect(a.spec).toMatchObject({
      method: 'elicitation/create',
      direction: 'server-to-client',
      mode: 'hold',
    });
    expect(result.isError).toBe(true);
    expect(outcomes.at(-1)).toMatch(/^elicitation-error: MCP error -31408: Approval expired/);
    expect(t.elicited).toEqual([]);
    await phase(a.name, 'Expired');
    // A verdict after expiry delivers nothing.
    store.decide(a.name, 'Approved', 'rita');
    await t.client.callTool({ name: 'announce', arguments: {} }, CallToolResultSchema);
    expect(t.elicited).toEqual([]);
    await t.client.close();
  });

  it("the call's answer is not held up; approved after its stream ended, the request goes on the session's GET stream", async () => {
    const t = await connect('user-4');
    // The client's GET stream is open once a message the server sends on it arrives.
    for (let i = 0; t.logs.length === 0; i++) {
      if (i === 100) throw new Error('the GET stream never opened');
      await t.client.callTool({ name: 'announce', arguments: {} }, CallToolResultSchema);
    }
    const created = nextApproval();
    const result = await t.client.callTool(
      { name: 'summarize_later', arguments: { text: 'later' } },
      CallToolResultSchema,
      { timeout: 20_000 },
    );
    expect(text(result)).toBe('queued');
    const a = await created;
    expect(t.sampled).toEqual([]);
    store.decide(a.name, 'Approved', 'rita');
    await waitFor(
      () => (outcomes.at(-1) === 'later-ok: a short summary' ? true : undefined),
      'the late answer',
    );
    expect(t.sampled).toHaveLength(1);
    await phase(a.name, 'Executed');
    await t.client.close();
  });

  it("a request on the session's GET stream is held there and delivered there once approved", async () => {
    const t = await connect('user-5');
    const created = nextApproval();
    const call = t.client.callTool(
      { name: 'summarize_standalone', arguments: { text: 'standalone' } },
      CallToolResultSchema,
      { timeout: 20_000 },
    );
    const a = await created;
    expect(t.sampled).toEqual([]);
    store.decide(a.name, 'Approved', 'rita');
    expect(text(await call)).toBe('summary: a short summary');
    expect(t.sampled).toHaveLength(1);
    await t.client.close();
  });

  it("legacy HTTP+SSE: held on the session's one stream, delivered there once approved", async () => {
    const c = await connectLegacy(legacy.url, await legacy.token({ oid: 'user-6' }));
    const seen = samplingCalls.count;
    const created = nextApproval();
    const call = c.callTool({ name: 'ask_llm', arguments: { prompt: 'hello' } }, CallToolResultSchema, {
      timeout: 20_000,
    });
    const a = await created;
    expect(a.spec).toMatchObject({ method: 'sampling/createMessage', direction: 'server-to-client' });
    expect(samplingCalls.count).toBe(seen);
    store.decide(a.name, 'Approved', 'rita');
    expect(text(await call)).toBe('llm said hi');
    expect(samplingCalls.count).toBe(seen + 1);
    await phase(a.name, 'Executed');
    await c.close();
  });

  it('records each hold and its outcome, masked', async () => {
    const read = () => {
      const all = readdirSync(dir)
        .filter((f) => f.endsWith('.jsonl'))
        .map((f) => readFileSync(join(dir, f), 'utf8'))
        .join('');
      const lines = all
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as Record<string, unknown>);
      return { all, lines };
    };
    // Recordings are written in the background (at most a second behind).
    const { all, lines } = await waitFor(() => {
      const r = read();
      const seen = new Set(r.lines.filter((l) => l['type'] === 'approval').map((l) => l['outcome']));
      return ['approved', 'denied', 'expired'].every((o) => seen.has(o)) ? r : undefined;
    }, 'the approval outcomes in the recordings');
    expect(lines.find((l) => l['type'] === 'approval' && l['outcome'] === 'approved')).toMatchObject({
      method: 'sampling/createMessage',
      policy: 'agents/writer',
      rule: 'sampling-needs-approval',
      decidedBy: 'rita',
    });
    expect(lines.some((l) => l['type'] === 'decision' && l['enforced'] === 'approve')).toBe(true);
    expect(all).not.toContain(CUSTOMER);
  });
});

/**
 * A fetch whose event streams lose the connection once: the first chunk that holds `marker` never
 * reaches the client (the proxy wrote it; the network lost it), and the stream breaks there.
 */
function losingOnce(marker: string): {
  fetch: typeof fetch;
  lost: string[];
  resumedFrom: string[];
  /** The event ids each event stream delivered, per stream. */
  ids: string[][];
} {
  const lost: string[] = [];
  const resumedFrom: string[] = [];
  const ids: string[][] = [];
  const losing: typeof fetch = async (input, init) => {
    const last = new Headers(init?.headers).get('last-event-id');
    if (init?.method === 'GET' && last !== null) resumedFrom.push(last);
    const res = await fetch(input, init);
    if (!res.headers.get('content-type')?.includes('text/event-stream') || res.body === null) return res;
    const decoder = new TextDecoder();
    const parser = new SseParser();
    const seen: string[] = [];
    ids.push(seen);
    const body = res.body.pipeThrough(
      new TransformStream<Uint8Array, Uint8Array>({
        transform(chunk, controller) {
          const text = decoder.decode(chunk, { stream: true });
          if (lost.length === 0 && text.includes(marker)) {
            lost.push(text);
            controller.error(new TypeError('terminated: connection lost'));
            return;
          }
          for (const item of parser.push(text)) if (item.type === 'event' && item.id) seen.push(item.id);
          controller.enqueue(chunk);
        },
      }),
    );
    return new Response(body, { status: res.status, statusText: res.statusText, headers: res.headers });
  };
  return { fetch: losing, lost, resumedFrom, ids };
}

/** The events of an SSE stream until `enough` says so (or the stream ends). */
async function readEvents(
  res: Response,
  enough: (events: Array<{ id?: string; data: string }>) => boolean,
): Promise<Array<{ id?: string; data: string }>> {
  const events: Array<{ id?: string; data: string }> = [];
  const reader = res.body!.getReader();
  const parser = new SseParser();
  const decoder = new TextDecoder();
  try {
    while (!enough(events)) {
      const { value, done } = await reader.read();
      if (done) break;
      for (const item of parser.push(decoder.decode(value, { stream: true }))) {
        if (item.type === 'event' && item.data) {
          events.push(item.id === undefined ? { data: item.data } : { id: item.id, data: item.data });
        }
      }
    }
  } finally {
    await reader.cancel();
  }
  return events;
}

describe('an approved server request on a resumable stream (Last-Event-ID)', () => {
  it('carries an event id; lost with its stream, it is replayed once to the SDK client that resumes', async () => {
    const net = losingOnce('"method":"sampling/createMessage"');
    const client = new Client(
      { name: 'resuming-client', version: '1.0.0' },
      { capabilities: { sampling: {} } },
    );
    const sampled: unknown[] = [];
    client.setRequestHandler(CreateMessageRequestSchema, async (req) => {
      sampled.push(req.params);
      return { role: 'assistant', content: { type: 'text', text: 'a short summary' }, model: 'm' };
    });
    const token = await resumable.token({ oid: 'user-7' });
    const transport = new StreamableHTTPClientTransport(new URL(resumable.mcpUrl), {
      requestInit: { headers: { authorization: `Bearer ${token}` } },
      fetch: net.fetch,
      reconnectionOptions: {
        initialReconnectionDelay: 10,
        maxReconnectionDelay: 100,
        reconnectionDelayGrowFactor: 2,
        maxRetries: 5,
      },
    });
    await client.connect(transport);
    const created = nextApproval();
    const call = client.callTool(
      { name: 'summarize', arguments: { text: 'resume me' } },
      CallToolResultSchema,
      { timeout: 15_000 },
    );
    const a = await created;
    store.decide(a.name, 'Approved', 'rita');
    expect(text(await call)).toBe('summary: a short summary');

    // The first delivery was lost on the way, and it carried an id in the caller's scheme.
    expect(net.lost).toHaveLength(1);
    const [released] = new SseParser()
      .push(net.lost[0]!)
      .filter((e) => e.type === 'event' && e.data?.includes('sampling/createMessage')) as Array<{
      id?: string;
    }>;
    const releasedId = released?.id;
    expect(releasedId).toBeDefined();
    const prefix = releasedId!.slice(0, releasedId!.indexOf('.') + 1);
    expect(prefix).toMatch(/^[\w-]{16}\.$/);
    // The client resumed from the event before it, got it there, and its model ran exactly once.
    expect(net.resumedFrom).toHaveLength(1);
    expect(net.resumedFrom[0]!.startsWith(prefix)).toBe(true);
    expect(net.resumedFrom[0]).not.toBe(releasedId);
    expect(sampled).toHaveLength(1);
    await phase(a.name, 'Executed');

    // Raw resumes of the same stream: from before the request (its first event) the upstream
    // replays the server's request, which is not held again, and the approved request does not
    // come again (it was replayed once already, and the client answered it: released.ts; the
    // order of a replay from before it: released-replay.test.ts); from its own id neither, while
    // the upstream's later events (the call's answer) do.
    const first = net.ids.find((s) => s.includes(net.resumedFrom[0]!))?.[0];
    expect(first).toBeDefined();
    const headers = {
      authorization: `Bearer ${token}`,
      accept: 'text/event-stream',
      'mcp-session-id': transport.sessionId!,
      'mcp-protocol-version': transport.protocolVersion!,
    };
    const isAnswer = (e: { data: string }) => e.data.includes('summary: a short summary');
    const fromBefore = await readEvents(
      await fetch(resumable.mcpUrl, { headers: { ...headers, 'last-event-id': first! } }),
      (events) => events.some(isAnswer),
    );
    expect(fromBefore.some(isAnswer)).toBe(true);
    expect(fromBefore.some((e) => e.data.includes('sampling/createMessage'))).toBe(false);
    const fromReleased = await readEvents(
      await fetch(resumable.mcpUrl, { headers: { ...headers, 'last-event-id': releasedId! } }),
      (events) => events.some(isAnswer),
    );
    expect(fromReleased.some(isAnswer)).toBe(true);
    expect(fromReleased.some((e) => e.data.includes('sampling/createMessage'))).toBe(false);
    // Nothing was held a second time by the replays.
    expect([...store.list()].filter((x) => x.spec.requester.principal.includes('user-7'))).toHaveLength(1);
    expect(sampled).toHaveLength(1);
    await client.close();
  });
});
