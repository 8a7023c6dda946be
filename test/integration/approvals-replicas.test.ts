import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { CallToolResultSchema, McpError } from '@modelcontextprotocol/sdk/types.js';
import { ApprovalBroker, MemoryApprovalStore, type StoredApproval } from '../../pkg/approval/index.js';
import { type DevIssuer, startDevIssuer } from '../../pkg/identity/dev-issuer.js';
import { createAuthenticator } from '../../pkg/identity/index.js';
import { createLogger } from '../../pkg/log.js';
import { createMetrics } from '../../pkg/metrics/catalogue.js';
import { compilePolicies, type PolicyDocument } from '../../pkg/policy/index.js';
import { createProxy } from '../../pkg/proxy/index.js';
import type { WardenProxy } from '../../pkg/proxy/options.js';
import { AUDIENCE, connectStreamable } from './helpers/harness.js';
import { startUpstream, type Upstream } from './helpers/upstream-v1.js';

/**
 * Calls held for approval (`mode: hold`) when the MCP server runs as several replicas, or its pods
 * are replaced: two data paths (two pods of one Deployment: one `spec.server`) in front of one real
 * MCP server, sharing one approval store as the sidecars share the namespace's MCPApproval objects.
 * The client is the real SDK client; its repeat of a held call lands on the other replica.
 */

const CREATOR = 'system:serviceaccount:agents:github-mcp';
const SERVER = 'Deployment/github-mcp';

let issuer: DevIssuer;
let upstream: Upstream;
let store: MemoryApprovalStore;

interface Replica {
  pod: string;
  broker: ApprovalBroker;
  proxy: WardenProxy;
  mcpUrl: string;
  /** The pod goes away as a rollout stops it: the broker first, then the connections. */
  stop(): Promise<void>;
}

function policy(): PolicyDocument {
  return {
    apiVersion: 'mcpwarden.io/v1alpha1',
    kind: 'MCPPolicy',
    metadata: { name: 'repo-tools', namespace: 'agents' },
    spec: {
      podSelector: {},
      identity: { issuers: [{ issuer: issuer.v2Issuer, audiences: [AUDIENCE] }] },
      rules: [
        {
          name: 'deletes-need-approval',
          subjects: [{ any: true }],
          match: { tools: ['delete_*'] },
          action: 'approve',
          approval: { approvers: [{ group: 'mcp-reviewers' }], timeout: '1m', mode: 'hold' },
        },
      ],
    },
  } as PolicyDocument;
}

async function startReplica(pod: string): Promise<Replica> {
  const metrics = createMetrics({ defaultMetrics: false });
  const logger = createLogger('approvals-replicas-it');
  const broker = new ApprovalBroker({ store, pod, server: SERVER, metrics, logger, trustedCreator: CREATOR });
  await broker.start();
  const engine = compilePolicies([policy()]);
  const proxy = createProxy({
    upstream: upstream.mcpUrl,
    policySource: { current: () => engine, onChange: () => () => undefined, close: async () => undefined },
    authenticator: createAuthenticator({ allowInsecureLoopback: true, metrics }),
    metrics,
    podName: pod,
    approvals: broker,
  });
  const { url } = await proxy.listen('127.0.0.1', 0);
  let stopped = false;
  return {
    pod,
    broker,
    proxy,
    mcpUrl: `${url}/mcp`,
    async stop() {
      if (stopped) return;
      stopped = true;
      await broker.close();
      await proxy.close();
    },
  };
}

beforeAll(async () => {
  issuer = await startDevIssuer();
  upstream = await startUpstream();
});

afterAll(async () => {
  await upstream?.close();
  await issuer?.close();
});

beforeEach(() => {
  store = new MemoryApprovalStore({ creator: CREATOR });
});

async function client(r: Replica, oid = 'user-1'): Promise<Client> {
  return connectStreamable(
    r.mcpUrl,
    await issuer.issueToken({ audience: AUDIENCE, oid, groups: ['readers'] }),
  );
}

async function waitFor<T>(probe: () => T | undefined, what: string, ms = 5000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = probe();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const toolCalls = (): number => upstream.stats.methods.filter((m) => m === 'tools/call').length;
const approvals = (): StoredApproval[] => [...store.list()];
const deleteRepo = (c: Client, name: string) =>
  c.callTool({ name: 'delete_repo', arguments: { name } }, CallToolResultSchema, { timeout: 20_000 });

describe('a held call through two replicas of one MCP server', () => {
  it("the client's repeat through the other replica waits on the first approval and runs exactly once when approved", async () => {
    const a = await startReplica('github-mcp-5d7f-a');
    const b = await startReplica('github-mcp-5d7f-b');
    const first = await client(a);
    const repeatClient = await client(b);
    try {
      const calls = toolCalls();
      // The first request stays open on pod a (as a connection that went half-open would).
      const lost = deleteRepo(first, 'widgets').catch((e: unknown) => e);
      const held = await waitFor(() => approvals()[0], 'an approval');
      await waitFor(() => (store.get(held.name)?.holder === a.pod ? true : undefined), 'holder pod a');
      // The client repeats the call; the load balancer sends it to pod b.
      const repeat = deleteRepo(repeatClient, 'widgets');
      await waitFor(() => (store.get(held.name)?.holder === b.pod ? true : undefined), 'holder pod b');
      // Pod a's request ends, naming the pod that holds the approval now; nothing was asked twice.
      const err = (await lost) as McpError;
      expect(err).toBeInstanceOf(McpError);
      expect(err.code).toBe(-31403);
      expect(err.data).toMatchObject({
        approval: { name: held.name, status: 'TakenOver', holder: b.pod },
      });
      expect(approvals()).toHaveLength(1);
      expect(store.get(held.name)?.phase).toBe('Pending');
      expect(toolCalls()).toBe(calls);
      store.decide(held.name, 'Approved', 'rita');
      const result = await repeat;
      expect(result.content).toEqual([{ type: 'text', text: 'deleted widgets' }]);
      expect(toolCalls()).toBe(calls + 1);
      expect(store.get(held.name)).toMatchObject({ phase: 'Executed', holder: b.pod });
    } finally {
      await first.close();
      await repeatClient.close();
      await a.stop();
      await b.stop();
    }
  });

  it('rollout: the pod holding the call stops; the repeat through the new pod waits on the same approval and runs once', async () => {
    const old = await startReplica('github-mcp-5d7f-a');
    const next = await startReplica('github-mcp-8c2e-x');
    const first = await client(old);
    try {
      const calls = toolCalls();
      const lost = deleteRepo(first, 'rollout').then(
        () => 'answered',
        () => 'failed',
      );
      const held = await waitFor(() => approvals()[0], 'an approval');
      await old.stop();
      // Whatever the client made of its stream ending (the SDK tries to resume it), closing it
      // settles the request.
      await first.close().catch(() => {});
      expect(await lost).toBe('failed');
      // Left open for the repeat, not Cancelled: the pod went away, not the client.
      expect(store.get(held.name)?.phase).toBe('Pending');
      const second = await client(next);
      try {
        const repeat = deleteRepo(second, 'rollout');
        await waitFor(() => (store.get(held.name)?.holder === next.pod ? true : undefined), 'holder new pod');
        expect(approvals()).toHaveLength(1);
        store.decide(held.name, 'Approved', 'rita');
        expect((await repeat).content).toEqual([{ type: 'text', text: 'deleted rollout' }]);
        expect(toolCalls()).toBe(calls + 1);
        expect(store.get(held.name)).toMatchObject({ phase: 'Executed', holder: next.pod });
      } finally {
        await second.close();
      }
    } finally {
      await first.close().catch(() => {});
      await old.stop();
      await next.stop();
    }
  });

  it('another principal repeating the call through the other replica asks for its own approval', async () => {
    const a = await startReplica('github-mcp-5d7f-a');
    const b = await startReplica('github-mcp-5d7f-b');
    const mine = await client(a, 'user-1');
    const theirs = await client(b, 'user-2');
    try {
      const abort = new AbortController();
      const one = mine
        .callTool({ name: 'delete_repo', arguments: { name: 'shared' } }, CallToolResultSchema, {
          signal: abort.signal,
          timeout: 20_000,
        })
        .catch((e: unknown) => e);
      const held = await waitFor(() => approvals()[0], 'an approval');
      const other = theirs
        .callTool({ name: 'delete_repo', arguments: { name: 'shared' } }, CallToolResultSchema, {
          signal: abort.signal,
          timeout: 20_000,
        })
        .catch((e: unknown) => e);
      const second = await waitFor(() => approvals().find((x) => x.name !== held.name), 'a second approval');
      expect(second.spec.requester.principal).toContain('user-2');
      expect(store.get(held.name)?.holder).toBe(a.pod);
      abort.abort();
      await Promise.all([one, other]);
    } finally {
      await mine.close();
      await theirs.close();
      await a.stop();
      await b.stop();
    }
  });
});

describe('a held call repeated with the same request id through the same pod', () => {
  it('without a session, the repeat that took the hold over can still be cancelled by notifications/cancelled: a cancelled call never runs', async () => {
    const a = await startReplica('github-mcp-5d7f-a');
    try {
      const token = await issuer.issueToken({ audience: AUDIENCE, oid: 'user-1', groups: ['readers'] });
      // A client without a session (each POST stands alone): the same principal, its ids restart.
      const headers = {
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
        authorization: `Bearer ${token}`,
        'mcp-protocol-version': '2025-06-18',
      };
      const post = (body: unknown) =>
        fetch(a.mcpUrl, { method: 'POST', headers, body: JSON.stringify(body) });
      const callTool = {
        jsonrpc: '2.0',
        id: 7,
        method: 'tools/call',
        params: { name: 'delete_repo', arguments: { name: 'same-id' } },
      };
      const calls = toolCalls();
      // The first request's connection went half-open; the client repeats it (with the same id).
      const first = post(callTool).then((r) => r.text());
      const held = await waitFor(() => approvals()[0], 'an approval');
      const repeat = post(callTool).then((r) => r.text());
      // The first request ends, taken over by the repeat (same pod).
      expect(await first).toContain('TakenOver');
      expect(store.get(held.name)?.phase).toBe('Pending');
      // The client gives up on the repeat: the MCP way is notifications/cancelled naming its id.
      // (Forwarded afterwards: this test's upstream wants a session and refuses it, which is moot.)
      await post({
        jsonrpc: '2.0',
        method: 'notifications/cancelled',
        params: { requestId: 7, reason: 'user aborted' },
      }).then((r) => r.text());
      await waitFor(
        () => (store.get(held.name)?.phase === 'Cancelled' ? true : undefined),
        'phase Cancelled',
        2000,
      );
      expect(await repeat).toContain('the client cancelled the request');
      // A verdict afterwards runs nothing.
      store.decide(held.name, 'Approved', 'rita');
      await new Promise((r) => setTimeout(r, 200));
      expect(toolCalls()).toBe(calls);
      expect(store.get(held.name)?.phase).toBe('Cancelled');
    } finally {
      await a.stop();
    }
  });
});
