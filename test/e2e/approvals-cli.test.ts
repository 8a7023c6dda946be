import { chmod, copyFile, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import {
  type Cluster,
  type ClusterUser,
  type KubectlResult,
  REPO_ROOT,
  requireTools,
  runProcess,
  startCluster,
  tsNodeArgs,
} from './harness.js';
import {
  applyApprovalRbac,
  heldCall,
  installWebhook,
  WEBHOOK_NS,
  type WebhookProcess,
} from './webhook-helpers.js';

/**
 * `mcp-warden approvals` and the kubectl plugin against a real kube-apiserver with the mcp-warden
 * webhook admitting decisions. The held calls are created as the sidecar would (its service
 * account, the chart's sidecar RBAC); reviewers have exactly the chart's `mcp-warden-approver`
 * ClusterRole, bound in the namespace. The CLI runs as its own process (TypeScript sources).
 */
let cluster: Cluster;
let workDir: string;
let webhook: WebhookProcess;
let rita: ClusterUser;
let rex: ClusterUser;
let requester: ClusterUser;
let outsider: ClusterUser;

const NS = 'agents';
const APPROVALS = `/apis/mcpwarden.io/v1alpha1/namespaces/${NS}/mcpapprovals`;
const DIGEST = `sha256:${'c0ffee'.repeat(10)}abcd`;

interface Approval {
  metadata: { name: string };
  spec: { decision?: { verdict: string; reason?: string; decidedBy?: string } };
  status?: { phase: string };
}

async function cli(user: ClusterUser | undefined, args: string[], env: NodeJS.ProcessEnv = {}) {
  return runProcess(
    process.execPath,
    [...(await tsNodeArgs(workDir)), join(REPO_ROOT, 'cmd', 'mcp-warden.ts'), ...args],
    {
      cwd: REPO_ROOT,
      env: {
        PATH: process.env['PATH'] ?? '',
        HOME: workDir,
        ...(user ? { KUBECONFIG: user.kubeconfigPath } : {}),
        ...env,
      },
    },
  );
}

const get = (name: string) => cluster.admin.client.request<Approval>('GET', `${APPROVALS}/${name}`);

/** No stack trace, exactly the given number of lines. */
function clean(r: KubectlResult, lines = 1): void {
  expect(r.stderr).not.toMatch(/\n\s+at /);
  expect(r.stderr.trimEnd().split('\n')).toHaveLength(lines);
}

beforeAll(async () => {
  workDir = await mkdtemp(join(tmpdir(), 'mcp-warden-approvals-e2e-'));
  cluster = await startCluster();
  await cluster.createNamespace(WEBHOOK_NS);
  await cluster.createNamespace(NS);
  await cluster.createServiceAccount(NS, 'github-mcp');
  webhook = await installWebhook(cluster, workDir);

  rita = await cluster.user('rita', ['mcp-reviewers']);
  rex = await cluster.user('rex', ['mcp-reviewers']);
  requester = await cluster.user('oid-requester', ['mcp-reviewers']);
  outsider = await cluster.user('olga', ['developers']);
  // The chart's reviewer ClusterRole and sidecar Role, bound as docs/approvals-cli.md says.
  await applyApprovalRbac(cluster, workDir, NS, 'github-mcp');

  const sidecar = await cluster.serviceAccountUser(NS, 'github-mcp');
  const create = (name: string, spec: Record<string, unknown> = {}) =>
    sidecar.client.request('POST', APPROVALS, {
      body: heldCall(name, {
        session: 'sess-7f3a',
        arguments: { repo: 'acme/site', owner: '[masked:email]' },
        argumentsDigest: DIGEST,
        mode: 'hold',
        ...spec,
      }),
    });
  for (const name of [
    'hold-approve',
    'hold-deny',
    'hold-self',
    'hold-show',
    'hold-plugin',
    'hold-executed',
  ]) {
    await create(name);
  }
  await create('hold-expired', { expiresAt: new Date(Date.now() - 60_000).toISOString() });
  // What the sidecar reports once a call ran (only the creator may write the phase).
  await sidecar.client.request('PATCH', `${APPROVALS}/hold-executed/status`, {
    contentType: 'application/merge-patch+json',
    body: { status: { phase: 'Executed', message: 'ran once' } },
  });
}, 240_000);

afterAll(async () => {
  await webhook?.stop();
  await cluster?.stop();
  if (workDir) await rm(workDir, { recursive: true, force: true });
});

describe('approve and deny', () => {
  test('a reviewer among the approvers approves: verdict Approved, decidedBy is the reviewer', async () => {
    const r = await cli(rita, ['approvals', 'approve', 'hold-approve', '-n', NS, '--reason', 'ok to delete']);
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe('mcpapproval/hold-approve Approved by rita ("ok to delete")\n');
    expect(r.code).toBe(0);
    expect((await get('hold-approve')).spec.decision).toEqual({
      verdict: 'Approved',
      reason: 'ok to delete',
      decidedBy: 'rita',
    });
  });

  test('a second decision on a decided approval is refused with a clear message, nothing changes', async () => {
    const r = await cli(rex, ['approvals', 'deny', 'hold-approve', '-n', NS]);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(
      'mcpapproval "hold-approve" is already decided: Approved by rita ("ok to delete"); a decision cannot be changed\n',
    );
    expect((await get('hold-approve')).spec.decision?.decidedBy).toBe('rita');
  });

  test('deny with a reason (the top-level shorthand)', async () => {
    const r = await cli(rex, ['deny', 'hold-deny', '-n', NS, '--reason', 'not on a Friday']);
    expect(r.stdout).toBe('mcpapproval/hold-deny Denied by rex ("not on a Friday")\n');
    expect(r.code).toBe(0);
    expect((await get('hold-deny')).spec.decision).toEqual({
      verdict: 'Denied',
      reason: 'not on a Friday',
      decidedBy: 'rex',
    });
  });

  test("the requester cannot approve their own call: the webhook's refusal, one line, exit 1", async () => {
    const r = await cli(requester, ['approvals', 'approve', 'hold-self', '-n', NS]);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    clean(r);
    expect(r.stderr).toMatch(
      /^Error from server \(Forbidden\): admission webhook "[^"]+" denied the request: spec\.decision refused: oid-requester is the requester of the held call: a requester cannot approve their own call\n$/,
    );
    expect((await get('hold-self')).spec.decision).toBeUndefined();
  });

  test('an expired call and one no longer Pending are refused before any patch', async () => {
    const expired = await cli(rita, ['approvals', 'approve', 'hold-expired', '-n', NS]);
    expect(expired.code).toBe(1);
    clean(expired);
    expect(expired.stderr).toMatch(
      /^mcpapproval "hold-expired" expired at \S+ \(\d+s ago\): the held call no longer waits for a decision\n$/,
    );
    const executed = await cli(rita, ['approvals', 'approve', 'hold-executed', '-n', NS]);
    expect(executed.stderr).toBe(
      'mcpapproval "hold-executed" is Executed: only a Pending approval can be decided\n',
    );
    expect((await get('hold-expired')).spec.decision).toBeUndefined();
  });

  test('not found, missing RBAC and missing credentials are clear messages, exit 1', async () => {
    const missing = await cli(rita, ['approvals', 'approve', 'nope', '-n', NS]);
    expect(missing.stderr).toBe(`mcpapproval "nope" not found in namespace "${NS}"\n`);
    expect(missing.code).toBe(1);

    const forbidden = await cli(outsider, ['approvals', 'list', '-n', NS]);
    expect(forbidden.code).toBe(1);
    clean(forbidden, 2);
    expect(forbidden.stderr).toMatch(
      /^Error from server \(Forbidden\): mcpapprovals\.mcpwarden\.io is forbidden: User "olga" cannot list resource "mcpapprovals"/,
    );
    expect(forbidden.stderr).toContain('ClusterRole mcp-warden-approver');

    const home = join(workDir, 'empty-home');
    await mkdir(home, { recursive: true });
    const nothing = await cli(undefined, ['approvals', 'list'], { HOME: home });
    expect(nothing.code).toBe(1);
    clean(nothing);
    expect(nothing.stderr).toBe(
      'cannot load Kubernetes credentials: neither KUBECONFIG nor the in-cluster service account (KUBERNETES_SERVICE_HOST) is available (give --kubeconfig PATH, set KUBECONFIG, or create ~/.kube/config)\n',
    );
  });
});

describe('list and show', () => {
  test('list shows every held call with its phase; --phase filters; -o wide adds who decided', async () => {
    const r = await cli(rita, ['approvals', 'list', '-n', NS]);
    expect(r.code).toBe(0);
    const lines = r.stdout.trimEnd().split('\n');
    expect(lines[0]?.split(/ {3,}/)).toEqual([
      'NAME',
      'PHASE',
      'POLICY',
      'RULE',
      'REQUESTER',
      'CALL',
      'MASKED',
      'AGE',
      'EXPIRES',
    ]);
    const rows = new Map(lines.slice(1).map((l) => [l.split(/ {3,}/)[0], l.split(/ {3,}/)]));
    expect([...rows.keys()].sort()).toEqual([
      'hold-approve',
      'hold-deny',
      'hold-executed',
      'hold-expired',
      'hold-plugin',
      'hold-self',
      'hold-show',
    ]);
    expect(rows.get('hold-show')).toEqual([
      'hold-show',
      'Pending',
      'agents/github-tools',
      'deletes-need-approval',
      'oid-requester',
      'tools/call delete_repo',
      '-',
      expect.stringMatching(/^\d+s$/),
      expect.stringMatching(/^in (9m(\d+s)?|10m)$/),
    ]);
    expect(rows.get('hold-executed')?.[1]).toBe('Executed');
    expect(rows.get('hold-expired')?.[8]).toBe('expired');

    const executed = await cli(rita, ['approvals', 'list', '-n', NS, '--phase', 'Executed']);
    expect(
      executed.stdout
        .trimEnd()
        .split('\n')
        .slice(1)
        .map((l) => l.split(' ')[0]),
    ).toEqual(['hold-executed']);
    const wide = await cli(rita, ['approvals', 'list', '-n', NS, '-o', 'wide']);
    expect(wide.stdout.split('\n')[0]?.split(/ {3,}/).slice(-4)).toEqual([
      'POD',
      'DIGEST',
      'DECIDED-BY',
      'REASON',
    ]);
    const denied = wide.stdout.split('\n').find((l) => l.startsWith('hold-deny '));
    expect(denied?.split(/ {3,}/).slice(-4)).toEqual([
      'github-mcp-0',
      'sha256:c0ffeec0ffee',
      'rex',
      'not on a Friday',
    ]);
  });

  test('list -o json is valid JSON: a List of the stored objects', async () => {
    const r = await cli(rita, ['approvals', 'list', '-n', NS, '-o', 'json']);
    expect(r.code).toBe(0);
    const list = JSON.parse(r.stdout) as { kind: string; items: Approval[] };
    expect(list.kind).toBe('List');
    expect(list.items.find((a) => a.metadata.name === 'hold-approve')?.spec.decision?.decidedBy).toBe('rita');
    expect(list.items.find((a) => a.metadata.name === 'hold-executed')?.status?.phase).toBe('Executed');
  });

  test('show prints the held call: digest, masked arguments, requester, approvers, decision', async () => {
    const r = await cli(rita, ['approvals', 'show', 'hold-deny', '-n', NS]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`Digest:     ${DIGEST}\n`);
    expect(r.stdout).toContain(
      // (the API server stores free-form objects with their keys sorted)
      'Arguments:  (as masked by the policy)\n  {\n    "owner": "[masked:email]",\n    "repo": "acme/site"\n  }\n',
    );
    expect(r.stdout).toContain('Requester:  tenant-1/oid-requester (user oid-requester)\n');
    expect(r.stdout).toContain('Session:    sess-7f3a\n');
    expect(r.stdout).toContain('Approvers:  group mcp-reviewers\n');
    expect(r.stdout).toContain('Decision:   Denied by rex ("not on a Friday")\n');
  });

  test("without -n: the kubeconfig context's namespace", async () => {
    const kubeconfig = join(workDir, 'rita-in-agents');
    const yaml = await readFile(rita.kubeconfigPath, 'utf8');
    await writeFile(
      kubeconfig,
      yaml.replace('    cluster: e2e\n', `    cluster: e2e\n    namespace: ${NS}\n`),
    );
    const r = await cli(rita, ['approvals', 'show', 'hold-show', '--kubeconfig', kubeconfig]);
    expect(r.stderr).toBe('');
    expect(r.stdout).toContain(`Namespace:  ${NS}\n`);
    // No namespace in the context: `default` (where rita may not list: the refusal names it).
    const plain = await cli(rita, ['approvals', 'list']);
    expect(plain.code).toBe(1);
    expect(plain.stderr).toContain(
      'cannot list resource "mcpapprovals" in API group "mcpwarden.io" in the namespace "default"',
    );
  });
});

describe('kubectl plugin', () => {
  /**
   * The package as `npm i -g` lays it out: bin/kubectl-mcp_warden (the real file) next to
   * dist/cmd/mcp-warden.js (here a stub loading the TypeScript entrypoint), linked from a PATH
   * directory under the plugin's name.
   */
  async function pluginEnv(user: ClusterUser): Promise<NodeJS.ProcessEnv> {
    const pkg = join(workDir, 'pkg');
    const pathDir = join(workDir, 'path');
    await mkdir(join(pkg, 'bin'), { recursive: true });
    await mkdir(join(pkg, 'dist', 'cmd'), { recursive: true });
    await mkdir(pathDir, { recursive: true });
    await writeFile(join(pkg, 'package.json'), '{"type":"module"}\n');
    await copyFile(join(REPO_ROOT, 'bin', 'kubectl-mcp_warden'), join(pkg, 'bin', 'kubectl-mcp_warden'));
    await chmod(join(pkg, 'bin', 'kubectl-mcp_warden'), 0o755);
    const entry = pathToFileURL(join(REPO_ROOT, 'cmd', 'mcp-warden.ts')).href;
    await writeFile(join(pkg, 'dist', 'cmd', 'mcp-warden.js'), `import ${JSON.stringify(entry)};\n`);
    await rm(join(pathDir, 'kubectl-mcp_warden'), { force: true });
    await symlink(join(pkg, 'bin', 'kubectl-mcp_warden'), join(pathDir, 'kubectl-mcp_warden'));
    return {
      // The plugin's `#!/usr/bin/env node` finds this test's node first.
      PATH: [pathDir, dirname(process.execPath), '/usr/bin', '/bin'].join(':'),
      HOME: workDir,
      KUBECONFIG: user.kubeconfigPath,
      KUBECACHEDIR: join(workDir, 'kubectl-cache'),
      NODE_OPTIONS: (await tsNodeArgs(workDir)).join(' '),
    };
  }

  test('kubectl finds it and forwards: `kubectl mcp-warden approvals list`, `kubectl mcp-warden approve`', async () => {
    const kubectl = requireTools().kubectl;
    const env = await pluginEnv(rita);
    const plugins = await runProcess(kubectl, ['plugin', 'list'], { env });
    expect(plugins.stdout).toContain(join(workDir, 'path', 'kubectl-mcp_warden'));

    const listed = await runProcess(kubectl, ['mcp-warden', 'approvals', 'list', '-n', NS], { env });
    expect(listed.stderr).toBe('');
    expect(listed.code).toBe(0);
    expect(listed.stdout).toMatch(/^NAME {3,}PHASE {3,}POLICY/);
    expect(listed.stdout).toMatch(/^hold-plugin {3,}Pending {3,}agents\/github-tools /m);

    const approved = await runProcess(
      kubectl,
      ['mcp-warden', 'approve', 'hold-plugin', '-n', NS, '--reason', 'via kubectl'],
      { env },
    );
    expect(approved.stdout).toBe('mcpapproval/hold-plugin Approved by rita ("via kubectl")\n');
    expect(approved.code).toBe(0);
    expect((await get('hold-plugin')).spec.decision).toEqual({
      verdict: 'Approved',
      reason: 'via kubectl',
      decidedBy: 'rita',
    });

    const refused = await runProcess(kubectl, ['mcp-warden', 'approve', 'hold-plugin', '-n', NS], { env });
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('mcpapproval "hold-plugin" is already decided');
  });
});
