import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { CallToolResultSchema, McpError } from '@modelcontextprotocol/sdk/types.js';
import { upstreamServer } from '../../cmd/gateway.js';
import { ApprovalBroker, type ApprovalOutcome } from '../../pkg/approval/index.js';
import { type DevIssuer, startDevIssuer } from '../../pkg/identity/dev-issuer.js';
import { createKubeApprovalStore } from '../../pkg/kube/approval-store.js';
import { KubeApiError, type KubeObject } from '../../pkg/kube/client.js';
import { approvalPath, approvalsPath, policiesPath } from '../../pkg/kube/resources.js';
import { createLogger } from '../../pkg/log.js';
import { createMetrics } from '../../pkg/metrics/catalogue.js';
import type { MCPApprovalSpec } from '../../pkg/policy/schema.js';
import { exited, spawnCli, waitForOutput } from '../integration/helpers/cli.js';
import { AUDIENCE, connectStreamable, samplingCalls } from '../integration/helpers/harness.js';
import { startUpstream, type Upstream } from '../integration/helpers/upstream-v1.js';
import {
  type Cluster,
  type ClusterUser,
  REPO_ROOT,
  runProcess,
  startCluster,
  tsNodeArgs,
  waitForObject,
} from './harness.js';
import {
  applyApprovalRbac,
  applyDocs,
  heldCall,
  installWebhook,
  WEBHOOK_NS,
  type WebhookProcess,
} from './webhook-helpers.js';

/**
 * The whole approval loop against a real kube-apiserver: `mcp-warden gateway --approvals-namespace`
 * holds calls as MCPApproval objects (as the gateway's Kubernetes user, with the chart's sidecar
 * Role), the mcp-warden webhook stamps the creator and admits decisions only from approvers,
 * reviewers decide with `mcp-warden approvals`, and the webhook leader reports
 * `MCPPolicy.status.approvals`. MCP peers are the real SDK client and server.
 */
const NS = 'agents';
let cluster: Cluster;
let workDir: string;
let webhook: WebhookProcess;
let issuer: DevIssuer;
let upstream: Upstream;
let gateway: Awaited<ReturnType<typeof spawnCli>>;
let mcpUrl: string;
let rita: ClusterUser;
let requester: ClusterUser;

type Approval = KubeObject & {
  metadata: { name: string; annotations?: Record<string, string> };
  spec: MCPApprovalSpec;
  status?: { phase?: string; message?: string; holder?: string; lastTransitionTime?: string };
};

function policy(issuerUrl: string): Record<string, unknown> {
  return {
    apiVersion: 'mcpwarden.io/v1alpha1',
    kind: 'MCPPolicy',
    metadata: { name: 'repo-tools', namespace: NS },
    spec: {
      podSelector: {},
      identity: { issuers: [{ issuer: issuerUrl, audiences: [AUDIENCE] }] },
      rules: [
        {
          name: 'deletes-need-approval',
          subjects: [{ any: true }],
          match: { tools: ['delete_*'] },
          action: 'approve',
          approval: { approvers: [{ group: 'mcp-reviewers' }], timeout: '2m', mode: 'hold' },
        },
        { name: 'llm-tool', subjects: [{ any: true }], match: { tools: ['ask_llm'] }, action: 'allow' },
        {
          // The server's request to the client's model, held like a call (direction server-to-client).
          name: 'sampling-needs-approval',
          subjects: [{ any: true }],
          match: { methods: ['sampling/createMessage'] },
          action: 'approve',
          approval: { approvers: [{ group: 'mcp-reviewers' }], timeout: '2m', mode: 'hold' },
        },
        {
          name: 'queries-by-ticket',
          subjects: [{ any: true }],
          match: { tools: ['run_query'] },
          action: 'approve',
          approval: { approvers: [{ user: 'rita' }], timeout: '2m', mode: 'ticket' },
        },
      ],
      masking: [{ name: 'secrets', detectors: ['private-key', 'password-assignment'] }],
    },
  };
}

/** `mcp-warden approvals ...` as `user` (its own process, as a reviewer runs it). */
async function approvals(user: ClusterUser, args: string[]) {
  return runProcess(
    process.execPath,
    [...(await tsNodeArgs(workDir)), join(REPO_ROOT, 'cmd', 'mcp-warden.ts'), 'approvals', ...args],
    {
      cwd: REPO_ROOT,
      env: { PATH: process.env['PATH'] ?? '', HOME: workDir, KUBECONFIG: user.kubeconfigPath },
    },
  );
}

async function approvalsOf(tool: string): Promise<Approval[]> {
  return approvalsWhere((a) => a.spec.tool === tool);
}

async function approvalsWhere(keep: (a: Approval) => boolean): Promise<Approval[]> {
  const list = await cluster.admin.client.request<{ items: Approval[] }>('GET', approvalsPath(NS));
  return list.items.filter(keep);
}

async function newApproval(tool: string, known: Set<string>): Promise<Approval> {
  for (let i = 0; i < 200; i++) {
    const fresh = (await approvalsOf(tool)).find((a) => !known.has(a.metadata.name));
    if (fresh) return fresh;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`no new approval for ${tool}`);
}

const names = async (tool: string) => new Set((await approvalsOf(tool)).map((a) => a.metadata.name));

function phase(name: string, want: string): Promise<Approval> {
  return waitForObject<Approval>(
    cluster.admin.client,
    approvalsPath(NS),
    name,
    (o) => o.status?.phase === want,
  );
}

async function client(oid: string): Promise<Client> {
  return connectStreamable(mcpUrl, await issuer.issueToken({ audience: AUDIENCE, oid }));
}

beforeAll(async () => {
  workDir = await mkdtemp(join(tmpdir(), 'mcp-warden-approvals-gw-'));
  cluster = await startCluster();
  await cluster.createNamespace(WEBHOOK_NS);
  await cluster.createNamespace(NS);
  await cluster.createServiceAccount(NS, 'github-mcp');
  webhook = await installWebhook(cluster, workDir, [
    '--status-interval',
    '500ms',
    '--approval-retention',
    '1h',
  ]);
  rita = await cluster.user('rita', ['mcp-reviewers']);
  // A reviewer by group who is also the caller below (token oid `oid-requester`).
  requester = await cluster.user('oid-requester', ['mcp-reviewers']);
  await applyApprovalRbac(cluster, workDir, NS, 'github-mcp');
  issuer = await startDevIssuer();
  upstream = await startUpstream();
  const doc = policy(issuer.v2Issuer);
  // The same policy in the cluster (its status gets the approval counts) and in the gateway's file.
  await applyDocs(cluster, [doc]);
  const policyFile = join(workDir, 'policy.json');
  await writeFile(policyFile, JSON.stringify(doc));
  // The gateway acts as the MCP server's service account (the chart's sidecar Role).
  const gatewayUser = await cluster.serviceAccountUser(NS, 'github-mcp', { expirationSeconds: 3600 });
  gateway = await spawnCli(workDir, [
    'gateway',
    '--upstream',
    upstream.mcpUrl,
    '--policy',
    policyFile,
    '--listen',
    '127.0.0.1:0',
    '--admin-listen',
    '127.0.0.1:0',
    '--approvals-namespace',
    NS,
    '--kubeconfig',
    gatewayUser.kubeconfigPath,
  ]);
  const started = await waitForOutput(gateway, /"mcp":"([^"]+)"/, 60_000);
  mcpUrl = started[1]!;
  await waitForOutput(gateway, /approvals: watching MCPApprovals/, 60_000);
}, 240_000);

afterAll(async () => {
  if (gateway && gateway.exitCode === null) {
    gateway.kill('SIGTERM');
    await exited(gateway);
  }
  await upstream?.close();
  await issuer?.close();
  await webhook?.stop();
  await cluster?.stop();
  if (workDir) await rm(workDir, { recursive: true, force: true });
});

describe('hold mode through the gateway, decided with the CLI', () => {
  test('the requester cannot approve their own call; an approver can, and the call runs once', async () => {
    const c = await client('oid-requester');
    try {
      const known = await names('delete_repo');
      const calls = upstream.stats.methods.filter((m) => m === 'tools/call').length;
      const pending = c.callTool(
        { name: 'delete_repo', arguments: { name: 'widgets' } },
        CallToolResultSchema,
        {
          timeout: 60_000,
        },
      );
      const a = await newApproval('delete_repo', known);
      // Created by the gateway's user, stamped by the webhook (what ticket grants are checked against).
      expect(a.metadata.annotations?.['mcpwarden.io/created-by']).toBe(
        'system:serviceaccount:agents:github-mcp',
      );
      expect(a.spec).toMatchObject({
        policy: `${NS}/repo-tools`,
        rule: 'deletes-need-approval',
        mode: 'hold',
      });

      const self = await approvals(requester, ['approve', a.metadata.name, '-n', NS]);
      expect(self.code).toBe(1);
      expect(self.stderr).toContain('requester of the held call');
      expect(upstream.stats.methods.filter((m) => m === 'tools/call')).toHaveLength(calls);

      const ok = await approvals(rita, ['approve', a.metadata.name, '-n', NS, '--reason', 'cleanup']);
      expect(ok.code).toBe(0);
      const result = await pending;
      expect(result.content).toEqual([{ type: 'text', text: 'deleted widgets' }]);
      const done = await phase(a.metadata.name, 'Executed');
      expect(done.spec.decision).toMatchObject({ verdict: 'Approved', decidedBy: 'rita', reason: 'cleanup' });
      expect(upstream.stats.methods.filter((m) => m === 'tools/call')).toHaveLength(calls + 1);
    } finally {
      await c.close();
    }
  });

  test('denied with the CLI: -31409 with the reason; the phase is Denied', async () => {
    const c = await client('oid-other');
    try {
      const known = await names('delete_repo');
      const pending = c
        .callTool({ name: 'delete_repo', arguments: { name: 'prod' } }, CallToolResultSchema, {
          timeout: 60_000,
        })
        .catch((e: unknown) => e as McpError);
      const a = await newApproval('delete_repo', known);
      expect((await approvals(rita, ['deny', a.metadata.name, '-n', NS, '--reason', 'not prod'])).code).toBe(
        0,
      );
      const err = (await pending) as McpError;
      expect(err.code).toBe(-31409);
      expect(err.message).toContain('not prod');
      await phase(a.metadata.name, 'Denied');
    } finally {
      await c.close();
    }
  });
});

describe('what masking hid from the reviewer', () => {
  test('the approval lists it (path, detector, length; never the value); Approved without acknowledging it is refused by the webhook, with it the call runs', async () => {
    const c = await client('oid-masked');
    // Any text in a private-key frame is masked: the reviewer sees one token, the upstream all of it.
    const hiddenText = 'DROP DATABASE production; '.repeat(8);
    const framed = `-----BEGIN PRIVATE KEY-----\n${hiddenText}\n-----END PRIVATE KEY-----`;
    try {
      const known = await names('delete_repo');
      const calls = upstream.stats.methods.filter((m) => m === 'tools/call').length;
      const pending = c.callTool({ name: 'delete_repo', arguments: { name: framed } }, CallToolResultSchema, {
        timeout: 60_000,
      });
      const a = await newApproval('delete_repo', known);
      // The API server kept the new fields (the CRD's schema declares them).
      expect(a.spec.arguments).toEqual({ name: '[masked:private-key]' });
      expect(a.spec.maskedArguments).toEqual({
        count: 1,
        length: framed.length,
        entries: [{ path: '$.name', detector: 'private-key', length: framed.length }],
      });
      expect(JSON.stringify(a)).not.toContain('DROP DATABASE');

      // Any client, here a merge patch as kubectl sends it: the webhook refuses, naming what was hidden.
      const patch = (decision: Record<string, unknown>) =>
        rita.client.request('PATCH', approvalPath(NS, a.metadata.name), {
          contentType: 'application/merge-patch+json',
          body: { spec: { decision } },
        });
      const refused = (await patch({ verdict: 'Approved', reason: 'looks fine' }).catch(
        (e: unknown) => e,
      )) as KubeApiError;
      expect(refused).toBeInstanceOf(KubeApiError);
      expect(refused.status).toBe(403);
      expect(refused.message).toContain(
        `masking hid part of the held call's arguments from reviewers: private-key at $.name (${framed.length} characters)`,
      );
      expect(refused.message).toContain('spec.decision.acknowledgeMaskedArguments: true');
      // The CLI shows what was hidden and refuses without the flag, before writing anything.
      const show = await approvals(rita, ['show', a.metadata.name, '-n', NS]);
      expect(show.stdout).toContain('Masked:     1 value');
      expect(show.stdout).toMatch(new RegExp(`\\$\\.name +private-key +${framed.length} characters`));
      const list = await approvals(rita, ['list', '-n', NS, '--phase', 'Pending']);
      expect(list.stdout).toMatch(new RegExp(`${a.metadata.name} .* 1 \\(${framed.length} chars\\)`));
      const cli = await approvals(rita, ['approve', a.metadata.name, '-n', NS]);
      expect(cli.code).toBe(1);
      expect(cli.stderr).toContain('--acknowledge-masked');
      const unchanged = await cluster.admin.client.request<Approval>(
        'GET',
        approvalPath(NS, a.metadata.name),
      );
      expect(unchanged.spec.decision).toBeUndefined();
      expect(upstream.stats.methods.filter((m) => m === 'tools/call')).toHaveLength(calls);

      const ok = await approvals(rita, ['approve', a.metadata.name, '-n', NS, '--acknowledge-masked']);
      expect(ok.code).toBe(0);
      expect(ok.stdout).toContain('Approved by rita, masked arguments acknowledged');
      const result = await pending;
      // The upstream got the whole text (its answer quotes it, masked again on the way back).
      expect(result.content).toEqual([{ type: 'text', text: 'deleted [masked:private-key]' }]);
      const done = await phase(a.metadata.name, 'Executed');
      expect(done.spec.decision).toMatchObject({
        verdict: 'Approved',
        decidedBy: 'rita',
        acknowledgeMaskedArguments: true,
      });
      expect(upstream.stats.methods.filter((m) => m === 'tools/call')).toHaveLength(calls + 1);
    } finally {
      await c.close();
    }
  });
});

describe('server-to-client requests through the gateway', () => {
  test('a sampling request is held as an MCPApproval (direction server-to-client); approved, the client model answers', async () => {
    const c = await client('oid-sampler');
    const sampling = (a: Approval) => a.spec.method === 'sampling/createMessage';
    try {
      const known = new Set((await approvalsWhere(sampling)).map((a) => a.metadata.name));
      const seen = samplingCalls.count;
      const pending = c.callTool({ name: 'ask_llm', arguments: { prompt: 'hello' } }, CallToolResultSchema, {
        timeout: 60_000,
      });
      let a: Approval | undefined;
      for (let i = 0; i < 200 && a === undefined; i++) {
        a = (await approvalsWhere(sampling)).find((x) => !known.has(x.metadata.name));
        if (a === undefined) await new Promise((r) => setTimeout(r, 100));
      }
      if (a === undefined) throw new Error('no approval for the sampling request');
      // The API server kept the new field (the CRD's schema declares it).
      expect(a.spec).toMatchObject({
        policy: `${NS}/repo-tools`,
        rule: 'sampling-needs-approval',
        method: 'sampling/createMessage',
        direction: 'server-to-client',
        mode: 'hold',
      });
      expect(a.spec.requester.principal).toContain('oid-sampler');
      expect(samplingCalls.count).toBe(seen);
      // As the CLI decides: a merge patch of spec.decision by an approver, stamped by the webhook.
      await rita.client.request('PATCH', approvalPath(NS, a.metadata.name), {
        contentType: 'application/merge-patch+json',
        body: { spec: { decision: { verdict: 'Approved', reason: 'fine' } } },
      });
      const result = await pending;
      expect(result.content).toEqual([{ type: 'text', text: 'llm said hi' }]);
      expect(samplingCalls.count).toBe(seen + 1);
      const done = await phase(a.metadata.name, 'Executed');
      expect(done.spec.decision).toMatchObject({ verdict: 'Approved', decidedBy: 'rita' });
    } finally {
      await c.close();
    }
  });
});

describe('ticket mode through the gateway', () => {
  test('answered at once with the name; after approval the same call runs exactly once', async () => {
    const c = await client('oid-ticket');
    const query = { query: 'select count(*) from orders' };
    const call = () =>
      c.callTool({ name: 'run_query', arguments: query }, CallToolResultSchema).then(
        (r) => (r.content as Array<{ text: string }>)[0]!.text,
        (e: unknown) => e as McpError,
      );
    try {
      const first = (await call()) as McpError;
      expect(first.code).toBe(-31403);
      const name = (first.data as { approval: { name: string } }).approval.name;
      expect((await approvals(rita, ['approve', name, '-n', NS])).code).toBe(0);
      await phase(name, 'Approved');
      expect(await call()).toBe('ran: select count(*) from orders');
      await phase(name, 'Executed');
      const again = (await call()) as McpError;
      expect(again.code).toBe(-31403);
      expect((again.data as { approval: { name: string } }).approval.name).not.toBe(name);
    } finally {
      await c.close();
    }
  });
});

describe("a second replica of the gateway's MCP server (another pod: its own broker and watch)", () => {
  const SA = 'system:serviceaccount:agents:github-mcp';
  let replica: ApprovalBroker;
  let closeStore: () => Promise<void>;

  beforeAll(async () => {
    // As the gateway's pods do: the MCP server's service account, the chart's sidecar Role.
    const sa = await cluster.serviceAccountUser(NS, 'github-mcp', { expirationSeconds: 3600 });
    const store = createKubeApprovalStore({ client: sa.client, namespace: NS });
    closeStore = () => store.close();
    replica = new ApprovalBroker({
      store,
      pod: 'gateway-replica-b',
      server: upstreamServer(upstream.mcpUrl),
      metrics: createMetrics({ defaultMetrics: false }),
      logger: createLogger('e2e-replica'),
      trustedCreator: SA,
      sweepIntervalMs: 200,
      sweepGraceMs: 1000,
    });
    await replica.start();
  });

  afterAll(async () => {
    await replica?.close();
    await closeStore?.();
  });

  test("the client's repeat through the other pod takes the held call's approval over; approved, it runs there once", async () => {
    const c = await client('oid-replicas');
    const cancelRepeat: Array<(reason: string) => void> = [];
    try {
      const known = await names('delete_repo');
      const calls = upstream.stats.methods.filter((m) => m === 'tools/call').length;
      const first = c
        .callTool({ name: 'delete_repo', arguments: { name: 'moved' } }, CallToolResultSchema, {
          timeout: 60_000,
        })
        .catch((e: unknown) => e as McpError);
      const a = await newApproval('delete_repo', known);
      // The API server keeps the holder the gateway wrote with the phase (the CRD's schema has it).
      const pending = await waitForObject<Approval>(
        cluster.admin.client,
        approvalsPath(NS),
        a.metadata.name,
        (o) => o.status?.phase === 'Pending' && o.status.holder !== undefined,
      );
      expect(pending.status?.holder).toBe(hostname());
      // The same principal repeats the same call through the other pod.
      let resumed = '';
      const repeat: Promise<ApprovalOutcome> = replica.hold(
        {
          policy: a.spec.policy,
          rule: a.spec.rule,
          settings: { approvers: a.spec.approvers, timeout: '2m', mode: 'hold' },
          principal: a.spec.requester.principal,
          user: a.spec.requester.user,
          appId: a.spec.requester.appId,
          session: undefined,
          method: 'tools/call',
          tool: 'delete_repo',
          arguments: { name: 'moved' },
          maskedArguments: { name: 'moved' },
        },
        {
          onCancel: (l) => cancelRepeat.push(l),
          onCreated: (name) => {
            resumed = name;
          },
        },
      );
      // The gateway's request ends: the approval is held by the other pod now (a status write the
      // webhook admits from the creator's service account), and nothing was asked twice.
      const err = await first;
      expect(err).toBeInstanceOf(McpError);
      expect(err.code).toBe(-31403);
      expect(err.data).toMatchObject({
        approval: { name: a.metadata.name, status: 'TakenOver', holder: 'gateway-replica-b' },
      });
      for (let i = 0; i < 200 && resumed === ''; i++) await new Promise((r) => setTimeout(r, 25));
      expect(resumed).toBe(a.metadata.name);
      const moved = await waitForObject<Approval>(
        cluster.admin.client,
        approvalsPath(NS),
        a.metadata.name,
        (o) => o.status?.holder === 'gateway-replica-b',
      );
      expect(moved.status?.phase).toBe('Pending');
      expect((await names('delete_repo')).size).toBe(known.size + 1);

      expect((await approvals(rita, ['approve', a.metadata.name, '-n', NS])).code).toBe(0);
      expect(await repeat).toMatchObject({ kind: 'approved', name: a.metadata.name, decidedBy: 'rita' });
      const done = await phase(a.metadata.name, 'Executed');
      expect(done.status?.holder).toBe('gateway-replica-b');
      // Run through the pod holding it, not through the gateway it was first asked on.
      expect(upstream.stats.methods.filter((m) => m === 'tools/call')).toHaveLength(calls);
    } finally {
      for (const l of cancelRepeat) l('test over');
      await c.close();
    }
  });

  test('an approval whose pod is gone gets Expired from another pod of its server once past expiresAt', async () => {
    const sa = await cluster.serviceAccountUser(NS, 'github-mcp');
    const expiresAt = new Date(Date.now() + 2_000).toISOString().replace(/\.\d{3}Z$/, 'Z');
    // Created (and stamped by the webhook) as a pod of this server that a rollout then removed.
    await sa.client.request('POST', approvalsPath(NS), {
      body: heldCall('left-by-a-gone-pod', {
        pod: 'gateway-gone-0',
        server: upstreamServer(upstream.mcpUrl),
        policy: `${NS}/repo-tools`,
        mode: 'hold',
        expiresAt,
      }),
    });
    // And one of another server, under the same service account: none of this server's business.
    await sa.client.request('POST', approvalsPath(NS), {
      body: heldCall('other-server', {
        pod: 'other-0',
        server: 'Deployment/other-mcp',
        policy: `${NS}/repo-tools`,
        mode: 'hold',
        expiresAt,
      }),
    });
    const expired = await phase('left-by-a-gone-pod', 'Expired');
    // Its time is its deadline, not the moment a sweep came by.
    expect(Date.parse(expired.status?.lastTransitionTime ?? '')).toBe(Date.parse(expiresAt));
    expect(expired.status?.message).toContain('nobody held the call any more');
    const other = await cluster.admin.client.request<Approval>('GET', approvalPath(NS, 'other-server'));
    expect(other.status?.phase).toBeUndefined();
  });
});

test('the webhook leader deletes approvals past --approval-retention, and only those', async () => {
  const sa = await cluster.serviceAccountUser(NS, 'github-mcp');
  const old = new Date(Date.now() - 2 * 3_600_000).toISOString().replace(/\.\d{3}Z$/, 'Z');
  await sa.client.request('POST', approvalsPath(NS), { body: heldCall('abandoned', { expiresAt: old }) });
  for (let i = 0; ; i++) {
    const left = (await cluster.admin.client.request<{ items: Approval[] }>('GET', approvalsPath(NS))).items;
    if (!left.some((a) => a.metadata.name === 'abandoned')) {
      // The approvals of the tests above (finished minutes ago) are kept.
      expect(left.filter((a) => a.status?.phase === 'Executed').length).toBeGreaterThanOrEqual(2);
      break;
    }
    if (i > 100) throw new Error('the abandoned approval was not deleted');
    await new Promise((r) => setTimeout(r, 200));
  }
});

test('MCPPolicy.status.approvals counts the approvals by phase (the webhook leader)', async () => {
  const obj = await waitForObject<KubeObject & { status?: { approvals?: Record<string, unknown> } }>(
    cluster.admin.client,
    policiesPath(NS),
    'repo-tools',
    (o) => {
      const s = o.status?.approvals as { approved?: number; denied?: number } | undefined;
      return (s?.approved ?? 0) >= 2 && (s?.denied ?? 0) >= 1;
    },
  );
  const s = obj.status?.approvals as { recent: Array<Record<string, unknown>>; pending: number };
  expect(s.pending).toBeGreaterThanOrEqual(1); // the last ticket, still waiting
  expect(s.recent.length).toBeGreaterThanOrEqual(4);
  expect(s.recent.map((r) => r['phase'])).toEqual(expect.arrayContaining(['Executed', 'Denied']));
  expect(s.recent[0]).toMatchObject({ rule: expect.any(String), requester: expect.stringContaining('oid-') });
});
