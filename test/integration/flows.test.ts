import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import type { McpError } from '@modelcontextprotocol/sdk/types.js';
import type { TrustedIssuer } from '../../pkg/identity/types.js';
import { SseParser } from '../../pkg/mcp/sse.js';
import {
  connectStreamable,
  elicitCalls,
  type Harness,
  openRawSession,
  rootsCalls,
  samplingCalls,
  startHarness,
} from './helpers/harness.js';
import { type TestRule, testEngine, testSource } from './helpers/test-policy.js';

/**
 * Streamable HTTP flows beyond single calls: batches decided per element, server→client
 * requests under policy, SSE resumption, audit mode, and policy changes inside a live session.
 */
const baseRules: TestRule[] = [
  {
    name: 'read',
    methods: ['tools/call'],
    tools: ['get_*', 'ask_*', 'list_roots', 'slow_steps'],
    action: 'allow',
  },
  {
    name: 'no-delete',
    methods: ['tools/call'],
    tools: ['delete_*'],
    action: 'deny',
    reason: 'deleting is not allowed',
  },
];

let h: Harness;
/** Same, with an upstream answering POSTs with JSON bodies instead of SSE. */
let hj: Harness;
let source: ReturnType<typeof testSource>;
let trusted: TrustedIssuer[];
let token: string;

function engine(rules: TestRule[], mode: 'enforce' | 'audit' = 'enforce') {
  return testEngine({ name: 'flows', issuers: trusted, rules, mode });
}

beforeAll(async () => {
  h = await startHarness((t) => {
    trusted = t;
    source = testSource(engine(baseRules));
    return source;
  });
  hj = await startHarness(
    (t) => testSource(testEngine({ name: 'flows', issuers: t, rules: baseRules })),
    {},
    { jsonResponse: true },
  );
  token = await h.token();
});
afterAll(async () => {
  await h?.close();
  await hj?.close();
});
afterEach(() => source.set(engine(baseRules)));

async function rawSession(version: string, hh: Harness = h): Promise<Record<string, string>> {
  const h2 = await openRawSession(hh.mcpUrl, await hh.token(), version);
  // List tools first, as clients do (so the proxy does not need to list them itself).
  const list = await fetch(hh.mcpUrl, {
    method: 'POST',
    headers: h2,
    body: JSON.stringify({ jsonrpc: '2.0', id: 'list', method: 'tools/list' }),
  });
  expect(list.status).toBe(200);
  await list.text();
  return h2;
}

/** Messages from a JSON or SSE answer. */
async function messages(res: Response): Promise<Array<Record<string, unknown>>> {
  const text = await res.text();
  if ((res.headers.get('content-type') ?? '').startsWith('application/json')) {
    const v = JSON.parse(text) as unknown;
    return (Array.isArray(v) ? v : [v]) as Array<Record<string, unknown>>;
  }
  const out: Array<Record<string, unknown>> = [];
  const p = new SseParser();
  for (const item of p.push(text)) {
    if (item.type === 'event' && item.data) {
      const v = JSON.parse(item.data) as unknown;
      out.push(...((Array.isArray(v) ? v : [v]) as Array<Record<string, unknown>>));
    }
  }
  return out;
}

describe.each(['sse', 'json'] as const)(
  '2025-03-26 batches (upstream answers %s): every element decided on its own',
  (mode) => {
    const pick = (): Harness => (mode === 'json' ? hj : h);
    test('a denied call cannot ride along with allowed ones', async () => {
      const hh = pick();
      const headers = await rawSession('2025-03-26', hh);
      const before = hh.upstream.stats.methods.length;
      const res = await fetch(hh.mcpUrl, {
        method: 'POST',
        headers,
        body: JSON.stringify([
          {
            jsonrpc: '2.0',
            id: 10,
            method: 'tools/call',
            params: { name: 'get_weather', arguments: { city: 'Rome' } },
          },
          {
            jsonrpc: '2.0',
            id: 11,
            method: 'tools/call',
            params: { name: 'delete_repo', arguments: { name: 'prod' } },
          },
          { jsonrpc: '2.0', id: 12, method: 'tools/list' },
        ]),
      });
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toContain(
        mode === 'json' ? 'application/json' : 'text/event-stream',
      );
      const byId = new Map((await messages(res)).map((m) => [m['id'], m]));
      expect(byId.get(10)).toMatchObject({ result: { content: [{ type: 'text', text: 'sunny in Rome' }] } });
      expect(byId.get(11)).toMatchObject({
        error: {
          code: -31403,
          data: { policy: 'flows', rule: 'no-delete', reason: 'deleting is not allowed' },
        },
      });
      const tools = (byId.get(12)!['result'] as { tools: Array<{ name: string }> }).tools.map((t) => t.name);
      expect(tools.sort()).toEqual(['ask_llm', 'ask_user', 'get_weather', 'list_roots', 'slow_steps']);
      // The upstream got the smaller batch only.
      expect(hh.upstream.stats.methods.slice(before)).toEqual(['tools/call', 'tools/list']);
    });

    test('a batch of only refused calls never reaches the upstream', async () => {
      const hh = pick();
      const headers = await rawSession('2025-03-26', hh);
      const before = hh.upstream.stats.requests;
      const res = await fetch(hh.mcpUrl, {
        method: 'POST',
        headers,
        body: JSON.stringify([
          { jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'delete_repo', arguments: {} } },
          {
            jsonrpc: '2.0',
            id: 2,
            method: 'tools/call',
            params: { name: 'run_query', arguments: { query: 'x' } },
          },
        ]),
      });
      expect(res.status).toBe(200);
      const out = await messages(res);
      expect(out.map((m) => (m['error'] as { code: number }).code)).toEqual([-31403, -31403]);
      expect((out[1]!['error'] as { data: { reason: string } }).data.reason).toBe('no rule allows this call');
      expect(hh.upstream.stats.requests).toBe(before);
    });
  },
);

describe('server-to-client requests', () => {
  let client: Client;
  beforeAll(async () => {
    client = await connectStreamable(h.mcpUrl, token, { version: '2025-06-18' });
  });
  afterAll(() => client?.close());

  test('a blocked sampling request is answered upstream with -31403 and never reaches the client', async () => {
    const seen = samplingCalls.count;
    const r = await client.callTool({ name: 'ask_llm', arguments: { prompt: 'hi' } });
    expect(r.isError).toBe(true);
    expect(JSON.stringify(r.content)).toContain('sampling refused');
    expect(h.upstream.serverRequestOutcomes.at(-1)).toMatch(/^sampling-error: .*Forbidden by policy/);
    expect(samplingCalls.count).toBe(seen);
    expect(h.upstream.stats.responses.at(-1)?.error).toMatchObject({ code: -31403 });
  });

  test('blocked elicitation/create and roots/list: answered upstream, the client never asked', async () => {
    const e = elicitCalls.count;
    const r = rootsCalls.count;
    const a = await client.callTool({ name: 'ask_user', arguments: {} });
    expect(a.isError).toBe(true);
    expect(h.upstream.serverRequestOutcomes.at(-1)).toMatch(/^elicitation-error: .*Forbidden by policy/);
    const b = await client.callTool({ name: 'list_roots', arguments: {} });
    expect(b.isError).toBe(true);
    expect(h.upstream.serverRequestOutcomes.at(-1)).toMatch(/^roots-error: .*Forbidden by policy/);
    expect([elicitCalls.count, rootsCalls.count]).toEqual([e, r]);
  });

  test('allowed elicitation/create and roots/list reach the client', async () => {
    source.set(
      engine([
        ...baseRules,
        { name: 'interactive', methods: ['elicitation/create', 'roots/list'], action: 'allow' },
      ]),
    );
    expect((await client.callTool({ name: 'ask_user', arguments: {} })).content).toEqual([
      { type: 'text', text: 'hello Ada' },
    ]);
    expect((await client.callTool({ name: 'list_roots', arguments: {} })).content).toEqual([
      { type: 'text', text: 'file:///work' },
    ]);
  });

  test('an allowed sampling request reaches the client and its answer passes back', async () => {
    source.set(
      engine([...baseRules, { name: 'sampling', methods: ['sampling/createMessage'], action: 'allow' }]),
    );
    const seen = samplingCalls.count;
    const r = await client.callTool({ name: 'ask_llm', arguments: { prompt: 'hi' } });
    expect(r.content).toEqual([{ type: 'text', text: 'llm said hi' }]);
    expect(samplingCalls.count).toBe(seen + 1);
  });
});

describe('policy changes apply to the next message of a live session', () => {
  test('allowed, then denied after the change, session kept', async () => {
    const client = await connectStreamable(h.mcpUrl, token, { version: '2025-11-25' });
    try {
      const ok = await client.callTool({ name: 'get_weather', arguments: { city: 'Paris' } });
      expect(ok.isError).toBeFalsy();
      source.set(
        engine([
          {
            name: 'weather-off',
            methods: ['tools/call'],
            tools: ['get_weather'],
            action: 'deny',
            reason: 'maintenance',
          },
          ...baseRules,
        ]),
      );
      const err = (await client
        .callTool({ name: 'get_weather', arguments: { city: 'Paris' } })
        .catch((e: unknown) => e)) as McpError;
      expect(err.code).toBe(-31403);
      expect(err.data).toMatchObject({ rule: 'weather-off', reason: 'maintenance' });
      const still = await client.callTool({ name: 'slow_steps', arguments: { steps: 1 } });
      expect(still.content).toEqual([{ type: 'text', text: 'done 1' }]);
    } finally {
      await client.close();
    }
  });
});

describe('audit mode', () => {
  test('a call the rules deny is forwarded, and counted as audit-deny', async () => {
    source.set(engine(baseRules, 'audit'));
    const client = await connectStreamable(h.mcpUrl, token, { version: '2025-06-18' });
    const decisions: Array<{ decision: { action: string; enforced: string } }> = [];
    const listener = (e: { decision: { action: string; enforced: string } }) => decisions.push(e);
    h.proxy.events.on('decision', listener);
    try {
      const r = await client.callTool({ name: 'delete_repo', arguments: { name: 'tmp' } });
      expect(r.content).toEqual([{ type: 'text', text: 'deleted tmp' }]);
      expect(decisions.at(-1)?.decision).toMatchObject({ action: 'deny', enforced: 'allow' });
      const text = await h.metrics.registry.metrics();
      expect(text).toMatch(
        /mcp_warden_requests_total\{policy="flows",method="tools\/call",decision="audit-deny"\} 1/,
      );
    } finally {
      h.proxy.events.off('decision', listener);
      await client.close();
    }
  });
});

describe('SSE resumption through the proxy', () => {
  test('GET with Last-Event-ID replays the rest of a broken POST stream from the upstream event store', async () => {
    const headers = await rawSession('2025-06-18');
    const res = await fetch(h.mcpUrl, {
      method: 'POST',
      headers,
      body: JSON.stringify({
        jsonrpc: '2.0',
        id: 40,
        method: 'tools/call',
        params: { name: 'slow_steps', arguments: { steps: 3 } },
      }),
    });
    expect(res.headers.get('content-type')).toBe('text/event-stream');
    // Read only the first event, remember its id, and drop the connection.
    const reader = res.body!.getReader();
    const parser = new SseParser();
    let firstId: string | undefined;
    let firstData = '';
    while (firstId === undefined) {
      const { value, done } = await reader.read();
      if (done) break;
      for (const item of parser.push(new TextDecoder().decode(value))) {
        if (item.type === 'event' && item.id !== undefined && firstId === undefined) {
          firstId = item.id;
          firstData = item.data ?? '';
        }
      }
    }
    await reader.cancel();
    expect(firstData).toContain('step 0');
    const resumed = await fetch(h.mcpUrl, {
      method: 'GET',
      headers: { ...headers, accept: 'text/event-stream', 'last-event-id': firstId! },
    });
    expect(resumed.status).toBe(200);
    const reader2 = resumed.body!.getReader();
    const p2 = new SseParser();
    const got: string[] = [];
    const ids: string[] = [];
    // The SDK's in-memory event store replays events of the same millisecond in any order.
    const want = ['step 1', 'step 2', 'done 3'];
    while (!want.every((w) => got.some((d) => d.includes(w)))) {
      const { value, done } = await reader2.read();
      if (done) break;
      for (const item of p2.push(new TextDecoder().decode(value))) {
        if (item.type === 'event' && item.data) {
          got.push(item.data);
          if (item.id) ids.push(item.id);
        }
      }
    }
    await reader2.cancel();
    expect(got.some((d) => d.includes('step 1'))).toBe(true);
    expect(got.some((d) => d.includes('step 2'))).toBe(true);
    expect(got.some((d) => d.includes('done 3'))).toBe(true);
    expect(got.some((d) => d.includes('step 0'))).toBe(false);
    expect(ids).not.toContain(firstId);
  });
});
