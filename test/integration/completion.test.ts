import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { completable } from '@modelcontextprotocol/sdk/server/completable.js';
import { McpServer, ResourceTemplate } from '@modelcontextprotocol/sdk/server/mcp.js';
import { McpError } from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';
import { compilePolicies, type PolicyDocument } from '../../pkg/policy/index.js';
import { AUDIENCE, type Harness, openRawSession, startHarness } from './helpers/harness.js';
import { hostMcpServer } from './helpers/sdk-host.js';

/**
 * `completion/complete` is decided twice: by its method, and by the prompt or resource whose
 * arguments it completes (a caller who may not get a prompt may not enumerate what its
 * arguments accept either). Real SDK client and server.
 */
let h: Harness;
let upstream: { url: string; close(): Promise<void> };
let client: Client;

function build(): McpServer {
  const server = new McpServer({ name: 'reports', version: '1.0.0' });
  const prompt = (name: string, values: string[]) =>
    server.registerPrompt(
      name,
      {
        description: name,
        argsSchema: { team: completable(z.string(), (v) => values.filter((x) => x.startsWith(v))) },
      },
      ({ team }) => ({
        messages: [{ role: 'user', content: { type: 'text', text: `${name} for ${team}` } }],
      }),
    );
  prompt('public_summary', ['payments', 'platform']);
  prompt('admin_salaries', ['payroll-2026', 'payroll-bonus']);
  server.registerResource(
    'customer-files',
    new ResourceTemplate('crm://customers/{id}', {
      list: undefined,
      complete: { id: (v) => ['c-1001', 'c-1002'].filter((x) => x.startsWith(v)) },
    }),
    { mimeType: 'text/plain' },
    async (uri) => ({ contents: [{ uri: uri.href, text: 'customer' }] }),
  );
  return server;
}

function policy(issuer: string): PolicyDocument {
  return {
    apiVersion: 'mcpwarden.io/v1alpha1',
    kind: 'MCPPolicy',
    metadata: { name: 'reports' },
    spec: {
      podSelector: {},
      identity: { issuers: [{ issuer, audiences: [AUDIENCE] }] },
      rules: [
        {
          name: 'completions',
          subjects: [{ any: true }],
          match: { methods: ['completion/complete'] },
          action: 'allow',
        },
        {
          name: 'public-prompts',
          subjects: [{ any: true }],
          match: { prompts: ['public_*'] },
          action: 'allow',
        },
        {
          name: 'no-customer-data',
          subjects: [{ any: true }],
          match: { resources: ['crm://customers/**'] },
          action: 'deny',
          reason: 'customer records are off limits',
        },
      ],
    },
  } as PolicyDocument;
}

beforeAll(async () => {
  upstream = await hostMcpServer(build);
  h = await startHarness(
    (trusted) => {
      const engine = compilePolicies([policy(trusted[0]!.issuer)]);
      return { current: () => engine, onChange: () => () => undefined, close: async () => undefined };
    },
    { upstream: upstream.url },
  );
  client = new Client({ name: 'completer', version: '1.0.0' });
  await client.connect(
    new StreamableHTTPClientTransport(new URL(h.mcpUrl), {
      requestInit: { headers: { authorization: `Bearer ${await h.token()}` } },
    }),
  );
});

afterAll(async () => {
  await client?.close();
  await h?.close();
  await upstream?.close();
});

describe('completion/complete decided by what it completes', () => {
  it('completes the arguments of a prompt the caller may get', async () => {
    const r = await client.complete({
      ref: { type: 'ref/prompt', name: 'public_summary' },
      argument: { name: 'team', value: 'pa' },
    });
    expect(r.completion.values).toEqual(['payments']);
  });

  it("refuses to complete a prompt the caller may not get (no rule): the upstream's values never arrive", async () => {
    const err = (await client
      .complete({
        ref: { type: 'ref/prompt', name: 'admin_salaries' },
        argument: { name: 'team', value: 'pay' },
      })
      .catch((e: unknown) => e)) as McpError;
    expect(err).toBeInstanceOf(McpError);
    expect(err.code).toBe(-31403);
    expect(err.message).toContain('completing prompt admin_salaries');
    expect(err.message).not.toContain('payroll');
  });

  it('refuses to complete a resource template a deny rule covers, naming the rule', async () => {
    const err = (await client
      .complete({
        ref: { type: 'ref/resource', uri: 'crm://customers/{id}' },
        argument: { name: 'id', value: 'c-' },
      })
      .catch((e: unknown) => e)) as McpError;
    expect(err.code).toBe(-31403);
    expect(err.data).toMatchObject({ policy: 'reports', rule: 'no-customer-data' });
    expect(err.message).toContain('customer records are off limits');
  });

  it('refuses a ref the policy cannot read (unknown type, name not a string) before the upstream sees it', async () => {
    const headers = await openRawSession(h.mcpUrl, await h.token({ oid: 'raw' }), '2025-06-18');
    for (const ref of [
      { type: 'ref/tool', name: 'admin_salaries' },
      { type: 'ref/prompt', name: ['admin_salaries'] },
      'x',
    ]) {
      const r = await fetch(h.mcpUrl, {
        method: 'POST',
        headers,
        body: JSON.stringify({
          jsonrpc: '2.0',
          id: 5,
          method: 'completion/complete',
          params: { ref, argument: { name: 'team', value: 'pay' } },
        }),
      });
      const text = await r.text();
      expect(text).toContain('-32602');
      expect(text).not.toContain('payroll');
    }
  });
});
