import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { V1Pod } from '@kubernetes/client-node';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { KubeObject } from '../../pkg/kube/client.js';
import type { PolicyObject } from '../../pkg/kube/policy-source.js';
import { approvalsPath, policiesPath } from '../../pkg/kube/resources.js';
import { defaultResources, injectPod } from '../../webhook/injector.js';
import { applyPatch } from '../../webhook/jsonpatch.js';
import { startUpstream, type Upstream } from '../integration/helpers/upstream-v1.js';
import {
  type Cluster,
  helmTemplate,
  REPO_ROOT,
  startCluster,
  waitForObject,
  writeTokenVolume,
} from './harness.js';
import { type BuiltImage, buildImage, containerCommand } from './image-runtime.js';

/**
 * The sidecar container the webhook's injector put into a real stored Pod, run from the real
 * mcp-warden image (hack/build-image.sh, started by image-runtime.ts as a kubelet would: the
 * image's entrypoint, the container's args, its downward-API env resolved from the stored pod,
 * its uid/gid and read-only root filesystem, its volumes mounted at their paths: the projected
 * token volume emulated with a pod-bound TokenRequest token, CA, namespace and labels, and the
 * two emptyDirs) with the in-cluster config (KUBERNETES_SERVICE_HOST/PORT) — in front of a real
 * MCP server (SDK v1), against a real kube-apiserver with the chart's sidecar Role.
 */
const NS = 'agents';
const POD = 'github-mcp-0';
let cluster: Cluster;
let upstream: Upstream;
let workDir: string;
let sidecar: ChildProcess;
let sidecarLog = '';
let mcpUrl: string;
let adminUrl: string;
let plannerToken: string;
let intruderToken: string;
let saDir: string;
/** The recordings emptyDir, mounted into the sidecar container. */
let recordingsDir: string;
let image: BuiltImage;
let sidecarCommand: Awaited<ReturnType<typeof containerCommand>>;

function policyDoc(rules: unknown[]): string {
  return JSON.stringify({
    apiVersion: 'mcpwarden.io/v1alpha1',
    kind: 'MCPPolicy',
    metadata: { name: 'github-tools', namespace: NS },
    spec: {
      podSelector: { matchLabels: { app: 'github-mcp' } },
      identity: { issuers: [{ kubernetes: { audiences: ['github-mcp'] } }] },
      rules,
      recording: { enabled: true, payloads: 'masked' },
    },
  });
}

const approveRule = {
  name: 'deletes-need-approval',
  subjects: [{ serviceAccount: 'agents/planner' }],
  match: { tools: ['delete_*'] },
  action: 'approve',
  approval: { approvers: [{ group: 'mcp-reviewers' }], timeout: '1m', mode: 'hold' },
};
const readRule = {
  name: 'planner-reads',
  subjects: [{ serviceAccount: 'agents/planner' }],
  match: { tools: ['get_*'] },
  action: 'allow',
};
const deleteRule = {
  name: 'planner-deletes',
  subjects: [{ serviceAccount: 'agents/planner' }],
  match: { tools: ['delete_*'] },
  action: 'allow',
};

async function kubectlOk(args: string[], input?: string): Promise<string> {
  const r = await cluster.kubectl(args, input === undefined ? {} : { input });
  if (r.code !== 0) throw new Error(`kubectl ${args.join(' ')} failed: ${r.stderr}`);
  return r.stdout;
}

/**
 * Apply the policy with these rules and wait until the sidecar reports enforcing its generation
 * (its status entry): wait for that, not for a clock.
 */
async function applyEnforced(rules: unknown[]): Promise<void> {
  await kubectlOk(['apply', '-f', '-'], policyDoc(rules));
  const generation = Number(
    JSON.parse(await kubectlOk(['get', 'mcpp', 'github-tools', '-n', NS, '-o', 'json'])).metadata.generation,
  );
  await waitForObject<PolicyObject>(cluster.admin.client, policiesPath(NS), 'github-tools', (o) =>
    ((o.status?.['pods'] as Array<Record<string, unknown>> | undefined) ?? []).some(
      (p) => p['name'] === POD && p['generation'] === generation,
    ),
  );
}

/** Resolves with the first pino line whose msg matches (the sidecar logs JSON to stderr). */
function logLine(child: ChildProcess, msg: string): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    let buffered = '';
    const onData = (chunk: Buffer): void => {
      buffered += chunk.toString('utf8');
      let nl = buffered.indexOf('\n');
      while (nl >= 0) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        try {
          const parsed = JSON.parse(line) as Record<string, unknown>;
          if (parsed['msg'] === msg) {
            clearTimeout(timer);
            child.stderr?.off('data', onData);
            child.off('exit', onExit);
            resolve(parsed);
            return;
          }
        } catch {
          // not a log line
        }
        nl = buffered.indexOf('\n');
      }
    };
    const onExit = (code: number | null): void => {
      clearTimeout(timer);
      reject(new Error(`sidecar exited (${code}) before "${msg}":\n${sidecarLog.slice(-3000)}`));
    };
    const timer = setTimeout(
      () => reject(new Error(`no "${msg}" from the sidecar within 60 s:\n${sidecarLog.slice(-3000)}`)),
      60_000,
    );
    child.stderr?.on('data', onData);
    child.once('exit', onExit);
  });
}

/** An MCP client session through the sidecar; `end()` terminates the session (HTTP DELETE) and closes. */
/** The creator the webhook stamps on the sidecar's approvals: the pod's service account. */
const CREATOR = 'system:serviceaccount:agents:github-mcp';

type ApprovalObject = {
  metadata: { name: string; annotations?: Record<string, string> };
  spec: Record<string, unknown>;
  status?: { phase?: string };
};

/**
 * The pod's MCPApproval objects holding `delete_repo` with these arguments, once at least one
 * exists, each with the creator stamp the admission webhook puts on an approval when it is created
 * (this suite runs no webhook): the sidecar honours verdicts only on approvals its own service
 * account created.
 */
async function heldApprovals(args: Record<string, unknown>): Promise<ApprovalObject[]> {
  const held = await listHeld(args);
  for (const a of held) {
    if (a.metadata.annotations?.['mcpwarden.io/created-by'] === CREATOR) continue;
    await kubectlOk([
      'annotate',
      '--overwrite',
      'mcpa',
      a.metadata.name,
      '-n',
      NS,
      `mcpwarden.io/created-by=${CREATOR}`,
    ]);
  }
  return held;
}

async function listHeld(args: Record<string, unknown>): Promise<ApprovalObject[]> {
  for (let i = 0; ; i++) {
    const list = JSON.parse(await kubectlOk(['get', 'mcpa', '-n', NS, '-o', 'json'])) as {
      items: ApprovalObject[];
    };
    const held = list.items.filter(
      (a) =>
        a.spec['pod'] === POD &&
        a.spec['tool'] === 'delete_repo' &&
        JSON.stringify(a.spec['arguments']) === JSON.stringify(args),
    );
    if (held.length > 0 || i >= 100) return held;
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** A reviewer's approval as the admission webhook leaves it, stamped (this suite runs no webhook). */
async function approveAsReviewer(name: string, reason?: string): Promise<void> {
  const decision = { verdict: 'Approved', decidedBy: 'rita', ...(reason === undefined ? {} : { reason }) };
  await kubectlOk([
    'patch',
    'mcpa',
    name,
    '-n',
    NS,
    '--type',
    'merge',
    '-p',
    JSON.stringify({ spec: { decision } }),
  ]);
}

async function mcpClient(token: string | undefined): Promise<{ client: Client; end(): Promise<void> }> {
  const client = new Client({ name: 'e2e-agent', version: '1.0.0' });
  const transport = new StreamableHTTPClientTransport(new URL(mcpUrl), {
    requestInit: token === undefined ? {} : { headers: { authorization: `Bearer ${token}` } },
  });
  await client.connect(transport);
  return {
    client,
    async end() {
      try {
        await transport.terminateSession();
      } finally {
        await client.close();
      }
    },
  };
}

async function callError(
  client: Client,
  name: string,
  args: Record<string, unknown>,
): Promise<{ code?: number; message: string } | undefined> {
  try {
    await client.callTool({ name, arguments: args });
    return undefined;
  } catch (err) {
    return err as { code?: number; message: string };
  }
}

beforeAll(async () => {
  workDir = await mkdtemp(join(tmpdir(), 'mcp-warden-sidecar-e2e-'));
  // Its linux/amd64 image only (image.test.ts builds and checks both platforms).
  const built = buildImage(join(workDir, 'image'), 'e2e', ['amd64']);
  built.catch(() => {});
  cluster = await startCluster();
  const crd = await cluster.kubectl(['get', 'crd', 'mcppolicies.mcpwarden.io', '-o', 'name']);
  if (crd.code !== 0)
    throw new Error(`the MCPPolicy CRD is not in crds/ (generate it: make crds): ${crd.stderr}`);
  await cluster.createNamespace(NS);
  for (const sa of ['github-mcp', 'planner', 'intruder']) await cluster.createServiceAccount(NS, sa);
  // The chart's sidecar Role, bound to the MCP pod's service account.
  const rbac = await helmTemplate(
    join(REPO_ROOT, 'charts', 'mcp-warden', 'templates', 'rbac-sidecar.yaml'),
    `sidecarRBAC:\n  namespaces:\n    - name: ${NS}\n      serviceAccounts: [github-mcp]\n`,
    workDir,
  );
  if (rbac.code !== 0) throw new Error(rbac.stderr);
  await kubectlOk(['apply', '-f', '-'], rbac.stdout);
  await kubectlOk(['apply', '-f', '-'], policyDoc([readRule]));

  upstream = await startUpstream();
  const upstreamPort = Number(new URL(upstream.mcpUrl).port);

  // The MCP pod as a user writes it, mutated exactly as the webhook's injector mutates it, then
  // stored by the API server (no kubelet: it stays Pending).
  const userPod: V1Pod = {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: POD, namespace: NS, labels: { app: 'github-mcp', 'mcpwarden.io/inject': 'true' } },
    spec: {
      serviceAccountName: 'github-mcp',
      containers: [
        {
          name: 'app',
          image: 'example.invalid/github-mcp:1',
          ports: [{ name: 'mcp', containerPort: upstreamPort }],
        },
      ],
    },
  };
  image = await built;
  const injected = injectPod(userPod, {
    namespace: NS,
    config: {
      image: image.ref,
      version: '0.1.0',
      nativeSidecars: true,
      resources: { ...defaultResources },
    },
  });
  if (injected.kind !== 'inject') throw new Error(`the injector did not inject: ${JSON.stringify(injected)}`);
  const stored = JSON.parse(
    await kubectlOk(['create', '-o', 'json', '-f', '-'], JSON.stringify(applyPatch(userPod, injected.patch))),
  ) as V1Pod;
  const container = stored.spec?.initContainers?.find((c) => c.name === 'mcp-warden');
  if (container?.args === undefined) throw new Error('the stored pod has no mcp-warden sidecar');
  expect(container.image).toBe(image.ref);

  // What the kubelet would provide: the downward-API env...
  const fieldValue = (path: string): string => {
    const values: Record<string, string | undefined> = {
      'metadata.name': stored.metadata?.name,
      'metadata.namespace': stored.metadata?.namespace,
      'metadata.uid': stored.metadata?.uid,
      'spec.serviceAccountName': stored.spec?.serviceAccountName,
    };
    const v = values[path];
    if (v === undefined) throw new Error(`unsupported fieldRef ${path}`);
    return v;
  };
  const env: Record<string, string> = {};
  for (const e of container.env ?? []) {
    env[e.name] = e.valueFrom?.fieldRef ? fieldValue(e.valueFrom.fieldRef.fieldPath) : (e.value ?? '');
  }
  // ...the projected token volume (a pod-bound TokenRequest token, the CA, namespace, labels)...
  const tokenVolume = stored.spec?.volumes?.find((v) => v.name === 'mcp-warden-token');
  const expirationSeconds = tokenVolume?.projected?.sources?.find((src) => src.serviceAccountToken)
    ?.serviceAccountToken?.expirationSeconds;
  const podToken = await cluster.serviceAccountToken(NS, fieldValue('spec.serviceAccountName'), {
    ...(expirationSeconds === undefined ? {} : { expirationSeconds }),
    boundPod: { name: POD, uid: fieldValue('metadata.uid') },
  });
  saDir = await writeTokenVolume(join(workDir, 'volumes', 'mcp-warden-token'), {
    token: podToken,
    caPem: cluster.caPem,
    namespace: NS,
    labels: stored.metadata?.labels,
  });
  // ...and the two emptyDir volumes (world-writable, as the kubelet makes them).
  const emptyDir = async (name: string): Promise<string> => {
    const dir = join(workDir, 'volumes', name);
    await mkdir(dir, { recursive: true });
    await chmod(dir, 0o777);
    return dir;
  };
  const volumeDirs: Record<string, string> = { 'mcp-warden-token': saDir };
  for (const v of stored.spec?.volumes ?? []) {
    if (v.emptyDir !== undefined) volumeDirs[v.name] = await emptyDir(v.name);
  }
  const mounts = (container.volumeMounts ?? []).map((m) => {
    const hostPath = volumeDirs[m.name];
    if (hostPath === undefined) throw new Error(`no emulation for the sidecar's volume ${m.name}`);
    return { hostPath, containerPath: m.mountPath, readOnly: m.readOnly === true };
  });
  recordingsDir = volumeDirs['mcp-warden-recordings'] ?? '';

  plannerToken = await cluster.serviceAccountToken(NS, 'planner', { audiences: ['github-mcp'] });
  intruderToken = await cluster.serviceAccountToken(NS, 'intruder', { audiences: ['github-mcp'] });

  // The container's args as stored, except that the listen addresses move to loopback port 0
  // (a pod has its own network namespace; here every process shares the host's).
  const args = container.args.map((a, i, all) =>
    all[i - 1] === '--listen' || all[i - 1] === '--admin-listen' ? '127.0.0.1:0' : a,
  );
  expect(args.slice(0, 3)).toEqual(['sidecar', '--upstream', upstream.mcpUrl]);
  const security = container.securityContext;
  if (security?.runAsUser === undefined || security.runAsGroup === undefined)
    throw new Error('the injected sidecar has no runAsUser / runAsGroup');
  const server = new URL(cluster.server);
  const command = await containerCommand(image, {
    args,
    env: {
      ...env,
      // The kubelet's service env (in-cluster config) and HOSTNAME.
      KUBERNETES_SERVICE_HOST: server.hostname,
      KUBERNETES_SERVICE_PORT: server.port,
      HOSTNAME: POD,
      HOME: '/home/nonroot',
      MCP_WARDEN_LOG_LEVEL: 'info',
      MCP_WARDEN_STATUS_INTERVAL_SECONDS: '1',
    },
    mounts,
    runAsUser: security.runAsUser,
    runAsGroup: security.runAsGroup,
    readOnlyRootFilesystem: security.readOnlyRootFilesystem === true,
  });
  sidecarCommand = command;
  await startSidecar();
}, 900_000);

/** Starts the sidecar container (again, after it stopped: the kubelet restarting it). */
async function startSidecar(): Promise<void> {
  const command = sidecarCommand;
  sidecar = spawn(command.bin, command.args, { stdio: ['ignore', 'pipe', 'pipe'], env: command.env });
  sidecar.stderr?.on('data', (c: Buffer) => {
    sidecarLog = (sidecarLog + c.toString('utf8')).slice(-20000);
  });
  const loaded = Promise.all([
    logLine(sidecar, 'policies loaded'),
    logLine(sidecar, 'service-account issuer loaded'),
    // Its view of MCPApproval objects is current: holds and grants are served from here on.
    logLine(sidecar, 'approvals synced: open approvals of this pod wait for a verdict or a repeat'),
  ]);
  const started = await logLine(sidecar, 'sidecar started');
  mcpUrl = `${String(started['listen']).replace(/\/$/, '')}/mcp`;
  adminUrl = String(started['admin']).replace(/\/$/, '');
  await loaded;
}

afterAll(async () => {
  if (process.env['E2E_DUMP_SIDECAR_LOG']) await writeFile(process.env['E2E_DUMP_SIDECAR_LOG'], sidecarLog);
  if (sidecar && sidecar.exitCode === null) {
    sidecar.kill('SIGKILL');
    await once(sidecar, 'exit');
  }
  await upstream?.close();
  await cluster?.stop();
  if (workDir) await rm(workDir, { recursive: true, force: true });
});

describe('mcp-warden sidecar in front of a real MCP server, policies from a real API server', () => {
  test('is ready once the policy loaded; refuses callers without a token', async () => {
    const ready = await fetch(`${adminUrl}/readyz`);
    expect(ready.status).toBe(200);
    const res = await fetch(mcpUrl, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list' }),
    });
    expect(res.status).toBe(401);
    expect(res.headers.get('www-authenticate')).toMatch(/^Bearer resource_metadata="/);
  });

  test('allows and denies calls per MCPPolicy, with real service-account tokens', async () => {
    const { client, end } = await mcpClient(plannerToken);
    try {
      const ok = await client.callTool({ name: 'get_weather', arguments: { city: 'Oslo' } });
      expect(ok.content).toEqual([{ type: 'text', text: 'sunny in Oslo' }]);
      const denied = await callError(client, 'delete_repo', { name: 'warden' });
      expect(denied?.code).toBe(-31403);
      const listed = await client.listTools();
      expect(listed.tools.map((t) => t.name)).toEqual(['get_weather']);
    } finally {
      await end();
    }
    const { client: intruder, end: endIntruder } = await mcpClient(intruderToken);
    try {
      expect((await callError(intruder, 'get_weather', { city: 'Oslo' }))?.code).toBe(-31403);
    } finally {
      await endIntruder();
    }
    expect(upstream.stats.methods.filter((m) => m === 'tools/call')).toHaveLength(1);
  });

  test('kubectl get mcpp -o yaml shows the pod entry with its counts', async () => {
    const obj = await waitForObject<PolicyObject>(
      cluster.admin.client,
      policiesPath(NS),
      'github-tools',
      (o) => {
        const pods = (o.status?.['pods'] as Array<Record<string, number | string>> | undefined) ?? [];
        const mine = pods.find((p) => p['name'] === POD);
        return mine !== undefined && Number(mine['allowed']) >= 1 && Number(mine['denied']) >= 2;
      },
    );
    expect(obj.status?.['observedGeneration']).toBe(obj.metadata.generation);
    const yaml = await kubectlOk(['get', 'mcpp', 'github-tools', '-n', NS, '-o', 'yaml']);
    expect(yaml).toContain(`name: ${POD}`);
    expect(yaml).toMatch(/allowed: 1\b/);
    expect(yaml).toMatch(/denied: 2\b/);
    expect(yaml).toMatch(/type: Accepted/);
  });

  test('editing the policy changes decisions within seconds, without dropping the session', async () => {
    const { client, end } = await mcpClient(plannerToken);
    try {
      expect((await callError(client, 'delete_repo', { name: 'warden' }))?.code).toBe(-31403);
      const started = Date.now();
      await applyEnforced([readRule, deleteRule]);
      const ok = await client.callTool({ name: 'delete_repo', arguments: { name: 'warden' } });
      expect(ok.content).toEqual([{ type: 'text', text: 'deleted warden' }]);
      expect(Date.now() - started).toBeLessThan(10_000);
    } finally {
      await end();
    }
  });

  test('relabelling the pod (the downward-API labels file changes) reselects its policies', async () => {
    const labelsFile = join(saDir, 'labels');
    const original = await readFile(labelsFile, 'utf8');
    const { client, end } = await mcpClient(plannerToken);
    try {
      expect(
        (await client.callTool({ name: 'get_weather', arguments: { city: 'Oslo' } })).isError,
      ).toBeFalsy();
      // No policy selects app=other: no issuer is trusted any more, every request is refused (401).
      const relabelled = logLine(sidecar, 'pod labels changed; reselecting policies');
      await kubectlOk(['label', 'pod', POD, '-n', NS, '--overwrite', 'app=other']);
      await writeFile(labelsFile, original.replace('app="github-mcp"', 'app="other"'));
      await relabelled;
      const calls = upstream.stats.methods.filter((m) => m === 'tools/call').length;
      expect((await callError(client, 'get_weather', { city: 'Oslo' }))?.message).toMatch(
        /401|Unauthorized/i,
      );
      expect(upstream.stats.methods.filter((m) => m === 'tools/call')).toHaveLength(calls);
      const restored = logLine(sidecar, 'pod labels changed; reselecting policies');
      await kubectlOk(['label', 'pod', POD, '-n', NS, '--overwrite', 'app=github-mcp']);
      await writeFile(labelsFile, original);
      await restored;
      expect(
        (await client.callTool({ name: 'get_weather', arguments: { city: 'Oslo' } })).isError,
      ).toBeFalsy();
    } finally {
      await end();
    }
  });

  test('holds a call for approval as an MCPApproval, runs it once decided, and writes its phase', async () => {
    await applyEnforced([readRule, approveRule]);
    const { client, end } = await mcpClient(plannerToken);
    try {
      const calls = upstream.stats.methods.filter((m) => m === 'tools/call').length;
      const pending = client.callTool({ name: 'delete_repo', arguments: { name: 'held' } });
      // The sidecar (as the pod's service account, with the chart's Role) created the approval.
      const held = await heldApprovals({ name: 'held' });
      expect(held).toHaveLength(1);
      const name = held[0]!.metadata.name;
      expect(held[0]!.spec).toMatchObject({
        policy: `${NS}/github-tools`,
        rule: 'deletes-need-approval',
        method: 'tools/call',
        mode: 'hold',
        arguments: { name: 'held' },
        requester: { principal: 'system:serviceaccount:agents:planner' },
      });
      expect(upstream.stats.methods.filter((m) => m === 'tools/call')).toHaveLength(calls);
      await approveAsReviewer(name, 'ok');
      const result = await pending;
      expect(result.content).toEqual([{ type: 'text', text: 'deleted held' }]);
      // The sidecar wrote the phase (patch on mcpapprovals/status, the chart's Role).
      const done = await waitForObject<KubeObject & { status?: { phase?: string; message?: string } }>(
        cluster.admin.client,
        approvalsPath(NS),
        name,
        (o) => o.status?.phase === 'Executed',
      );
      expect(done.status?.message).toContain('approved by rita');
    } finally {
      await end();
    }
  });

  test('closed sessions appear in status.recordings.recent', async () => {
    const obj = await waitForObject<PolicyObject>(
      cluster.admin.client,
      policiesPath(NS),
      'github-tools',
      (o) => {
        const recent = (o.status?.['recordings'] as { recent?: unknown[] } | undefined)?.recent ?? [];
        return recent.length >= 2;
      },
    );
    const recent =
      (obj.status?.['recordings'] as { recent?: Array<Record<string, unknown>> } | undefined)?.recent ?? [];
    expect(recent.every((r) => r['pod'] === POD)).toBe(true);
    expect(recent.map((r) => r['principal'])).toContain('system:serviceaccount:agents:planner');
    for (const r of recent) expect(String(r['sha256'])).toMatch(/^[0-9a-f]{64}$/);
  });

  test('a call held when the sidecar stops stays open: the repeat to the restarted sidecar waits on it and runs once', async () => {
    await applyEnforced([readRule, approveRule]);
    const args = { name: 'kept' };
    const first = await mcpClient(plannerToken);
    const calls = upstream.stats.methods.filter((m) => m === 'tools/call').length;
    const lost = first.client.callTool({ name: 'delete_repo', arguments: args }).then(
      () => 'answered',
      () => 'failed',
    );
    const held = await heldApprovals(args);
    expect(held).toHaveLength(1);
    const name = held[0]!.metadata.name;
    // The container stops (SIGTERM, as the kubelet stops it) and is started again.
    const exited = once(sidecar, 'exit');
    sidecar.kill('SIGTERM');
    expect((await exited)[0]).toBe(0);
    // Whatever the client made of its stream ending, closing it settles the request.
    await first.client.close().catch(() => {});
    expect(await lost).toBe('failed');
    expect((await heldApprovals(args)).map((a) => [a.metadata.name, a.status?.phase])).toEqual([
      [name, 'Pending'],
    ]);
    await startSidecar();
    // The caller repeats the call through a new session: it waits on the same approval.
    const second = await mcpClient(plannerToken);
    try {
      const again = second.client.callTool({ name: 'delete_repo', arguments: args });
      await logLine(sidecar, 'a repeated call waits on the approval its earlier hold asked for');
      expect((await heldApprovals(args)).map((a) => a.metadata.name)).toEqual([name]);
      await approveAsReviewer(name);
      expect((await again).content).toEqual([{ type: 'text', text: 'deleted kept' }]);
      expect(upstream.stats.methods.filter((m) => m === 'tools/call')).toHaveLength(calls + 1);
      await waitForObject<KubeObject & { status?: { phase?: string } }>(
        cluster.admin.client,
        approvalsPath(NS),
        name,
        (o) => o.status?.phase === 'Executed',
      );
    } finally {
      await second.end();
    }
  });

  test('the same container with KUBECONFIG set refuses to start: in a pod it uses the in-cluster account only', async () => {
    // What a re-submitted pod would bring if the webhook let it through (it refuses such a pod):
    // a kubeconfig naming an API server the app runs. The sidecar never reads one from the env.
    const { bin, args, env } = sidecarCommand;
    const child = spawn(bin, args, {
      stdio: ['ignore', 'ignore', 'pipe'],
      env: { ...env, KUBECONFIG: '/var/run/secrets/evil/config' },
    });
    let stderr = '';
    child.stderr?.on('data', (c: Buffer) => {
      stderr += c.toString('utf8');
    });
    const [code] = (await once(child, 'exit')) as [number | null];
    expect(code).toBe(2);
    expect(stderr).toMatch(
      /^mcp-warden sidecar: KUBECONFIG is set \("\/var\/run\/secrets\/evil\/config"\), but the sidecar does not read it: .* \[ERR_CONFIG\]\n$/,
    );
  });

  test('SIGTERM: writes the last status and exits 0', async () => {
    const exited = once(sidecar, 'exit');
    sidecar.kill('SIGTERM');
    const [code] = (await exited) as [number | null];
    expect(code).toBe(0);
    expect(sidecarLog).toContain('sidecar stopped');
    expect(sidecarLog).not.toMatch(new RegExp(plannerToken.slice(-20)));
    const files = await readdir(recordingsDir);
    expect(files.length).toBeGreaterThan(0);
  });
});
