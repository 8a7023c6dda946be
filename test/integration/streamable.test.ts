import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { McpError } from '@modelcontextprotocol/sdk/types.js';
import { connectStreamable, type Harness, startHarness } from './helpers/harness.js';
import { testEngine, testSource } from './helpers/test-policy.js';

/**
 * Streamable HTTP through the proxy with real SDK v1 peers, for each protocol version.
 */
const cases = (['2025-03-26', '2025-06-18', '2025-11-25'] as const).flatMap((v) => [
  [v, 'sse'] as const,
  [v, 'json'] as const,
]);

describe.each(cases)('streamable HTTP %s through the proxy (upstream answers %s)', (version, mode) => {
  let h: Harness;
  let client: Client;
  let source: ReturnType<typeof testSource>;
  const engine = (trusted: Harness['trusted'], mode: 'enforce' | 'audit') =>
    testEngine({
      name: 'tools',
      mode,
      issuers: trusted,
      rules: [
        {
          name: 'readers-read',
          groups: ['readers'],
          methods: ['tools/call'],
          tools: ['get_*', 'run_query', 'contact'],
          action: 'allow',
        },
        {
          name: 'no-delete',
          methods: ['tools/call'],
          tools: ['delete_*'],
          action: 'deny',
          reason: 'deleting is not allowed',
        },
        {
          name: 'no-drop',
          methods: ['tools/call'],
          tools: ['run_query'],
          when: (ctx) => /drop\s+table/i.test(String(ctx.args['query'])),
          action: 'deny',
          reason: 'destructive SQL',
        },
      ],
    });
  beforeAll(async () => {
    h = await startHarness(
      (trusted) => {
        source = testSource(engine(trusted, 'enforce'));
        return source;
      },
      {},
      { jsonResponse: mode === 'json' },
    );
    client = await connectStreamable(h.mcpUrl, await h.token(), { version });
  });
  afterAll(async () => {
    await client?.close();
    await h?.close();
  });

  test('negotiates the pinned version', () => {
    expect(client.getServerVersion()?.name).toBe('test-upstream');
  });

  test('allowed call passes', async () => {
    const r = await client.callTool({ name: 'get_weather', arguments: { city: 'Oslo' } });
    expect(r.content).toEqual([{ type: 'text', text: 'sunny in Oslo' }]);
  });

  test('denied call answers -31403 with policy, rule and reason, and never reaches the upstream', async () => {
    const before = h.upstream.stats.methods.length;
    const err = await client
      .callTool({ name: 'delete_repo', arguments: { name: 'x' } })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(McpError);
    const e = err as McpError;
    expect(e.code).toBe(-31403);
    expect(e.data).toEqual({ policy: 'tools', rule: 'no-delete', reason: 'deleting is not allowed' });
    expect(h.upstream.stats.methods.slice(before)).not.toContain('tools/call');
  });

  test('tools/list is filtered to what the caller may use', async () => {
    const r = await client.listTools();
    expect(r.tools.map((t) => t.name).sort()).toEqual(['contact', 'get_weather', 'run_query']);
  });

  test('an argument condition blocks a dangerous call', async () => {
    const ok = await client.callTool({ name: 'run_query', arguments: { query: 'select 1' } });
    expect(ok.content).toEqual([{ type: 'text', text: 'ran: select 1' }]);
    const err = (await client
      .callTool({ name: 'run_query', arguments: { query: 'DROP TABLE users' } })
      .catch((e: unknown) => e)) as McpError;
    expect(err.code).toBe(-31403);
    expect((err.data as { rule: string }).rule).toBe('no-drop');
  });

  test('audit mode: the denied call is forwarded', async () => {
    source.set(engine(h.trusted, 'audit'));
    try {
      const r = await client.callTool({ name: 'delete_repo', arguments: { name: 'scratch' } });
      expect(r.content).toEqual([{ type: 'text', text: 'deleted scratch' }]);
    } finally {
      source.set(engine(h.trusted, 'enforce'));
    }
  });

  test('the caller token and cookies never reach the upstream', () => {
    expect(h.upstream.stats.requests).toBeGreaterThan(0);
    expect(h.upstream.stats.authorizationSeen).toBe(0);
    expect(h.upstream.stats.cookieSeen).toBe(0);
  });

  test('metrics count decisions, tool labels bounded to tools the upstream listed', async () => {
    // A tool the upstream never listed folds into `other` (clients cannot invent label values).
    await client.callTool({ name: 'delete_invented_thing', arguments: {} }).catch(() => undefined);
    const text = await h.metrics.registry.metrics();
    expect(text).toMatch(
      /mcp_warden_requests_total\{policy="tools",method="tools\/call",decision="deny"\} [1-9]/,
    );
    expect(text).toMatch(
      /mcp_warden_blocked_total\{policy="tools",rule="no-delete",tool="delete_repo",reason="rule"\} 1/,
    );
    expect(text).toMatch(
      /mcp_warden_blocked_total\{policy="tools",rule="no-delete",tool="other",reason="rule"\} 1/,
    );
    expect(text).toMatch(/mcp_warden_sessions_active 1/);
  });
});
