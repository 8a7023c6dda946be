import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import type { McpError } from '@modelcontextprotocol/sdk/types.js';
import { SseParser } from '../../pkg/mcp/sse.js';
import { connectLegacy, type Harness, samplingCalls, startHarness } from './helpers/harness.js';
import { testEngine, testSource } from './helpers/test-policy.js';

/**
 * Legacy HTTP+SSE (2024-11-05) through the proxy with real SDK v1 peers: the `endpoint` event is
 * rewritten to the proxy's own /message URL, refused calls are answered on the client's stream.
 */
let h: Harness;
let client: Client;
let source: ReturnType<typeof testSource>;

function engine(mode: 'enforce' | 'audit' = 'enforce') {
  return testEngine({
    name: 'legacy',
    mode,
    issuers: h.trusted,
    rules: [
      { name: 'read', methods: ['tools/call'], tools: ['ask_llm', 'run_query'], action: 'allow' },
      // get_weather is allowed only through its declared annotation.
      {
        name: 'read-only',
        methods: ['tools/call'],
        toolAnnotations: { readOnlyHint: true },
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
  h = await startHarness(() => {
    source = testSource(undefined);
    return source;
  });
  source.set(engine());
  client = await connectLegacy(h.url, await h.token());
});
afterAll(async () => {
  await client?.close();
  await h?.close();
});

test('the endpoint event points at the proxy, with a proxy-minted session id', async () => {
  const res = await fetch(`${h.url}/sse`, { headers: { authorization: `Bearer ${await h.token()}` } });
  expect(res.status).toBe(200);
  const reader = res.body!.getReader();
  const p = new SseParser();
  let endpoint: string | undefined;
  while (endpoint === undefined) {
    const { value, done } = await reader.read();
    if (done) break;
    for (const item of p.push(new TextDecoder().decode(value))) {
      if (item.type === 'event' && item.event === 'endpoint') endpoint = item.data;
    }
  }
  await reader.cancel();
  expect(endpoint).toMatch(/^\/message\?sessionId=[0-9a-f-]{36}$/);
});

test('allowed call (before any tools/list: the proxy lists tools itself over the session stream)', async () => {
  const r = await client.callTool({ name: 'get_weather', arguments: { city: 'Lima' } });
  expect(r.content).toEqual([{ type: 'text', text: 'sunny in Lima' }]);
});

test('denied call gets -31403 on the event stream; the upstream never sees it', async () => {
  const before = h.upstream.stats.methods.filter((m) => m === 'tools/call').length;
  const err = (await client
    .callTool({ name: 'delete_repo', arguments: { name: 'x' } })
    .catch((e: unknown) => e)) as McpError;
  expect(err.code).toBe(-31403);
  expect(err.data).toEqual({ policy: 'legacy', rule: 'no-delete', reason: 'no deletes' });
  expect(h.upstream.stats.methods.filter((m) => m === 'tools/call').length).toBe(before);
});

test('tools/list is filtered', async () => {
  const r = await client.listTools();
  expect(r.tools.map((t) => t.name).sort()).toEqual(['ask_llm', 'get_weather', 'run_query']);
});

test('argument condition', async () => {
  const e = (await client
    .callTool({ name: 'run_query', arguments: { query: 'DROP TABLE t' } })
    .catch((x: unknown) => x)) as McpError;
  expect(e.code).toBe(-31403);
  expect(e.data).toMatchObject({ rule: 'no-drop' });
  const ok = await client.callTool({ name: 'run_query', arguments: { query: 'select 1' } });
  expect(ok.content).toEqual([{ type: 'text', text: 'ran: select 1' }]);
});

test('audit mode forwards what the rules deny', async () => {
  source.set(engine('audit'));
  try {
    const r = await client.callTool({ name: 'delete_repo', arguments: { name: 'tmp' } });
    expect(r.content).toEqual([{ type: 'text', text: 'deleted tmp' }]);
  } finally {
    source.set(engine());
  }
});

test('blocked sampling request answered upstream, client never asked, no hang', async () => {
  const seen = samplingCalls.count;
  const r = await client.callTool({ name: 'ask_llm', arguments: { prompt: 'x' } });
  expect(r.isError).toBe(true);
  expect(h.upstream.serverRequestOutcomes.at(-1)).toMatch(/sampling-error: .*Forbidden by policy/);
  expect(samplingCalls.count).toBe(seen);
});

test('another principal cannot post into the session', async () => {
  const res = await fetch(`${h.url}/sse`, { headers: { authorization: `Bearer ${await h.token()}` } });
  const reader = res.body!.getReader();
  const p = new SseParser();
  let endpoint: string | undefined;
  while (endpoint === undefined) {
    const { value, done } = await reader.read();
    if (done) break;
    for (const item of p.push(new TextDecoder().decode(value)))
      if (item.type === 'event' && item.event === 'endpoint') endpoint = item.data;
  }
  const before = h.upstream.stats.requests;
  const post = await fetch(`${h.url}${endpoint}`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      authorization: `Bearer ${await h.token({ oid: 'mallory' })}`,
    },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list' }),
  });
  expect(post.status).toBe(404);
  expect(h.upstream.stats.requests).toBe(before);
  await reader.cancel();
});

test('the token never reaches the upstream', () => {
  expect(h.upstream.stats.authorizationSeen).toBe(0);
});
