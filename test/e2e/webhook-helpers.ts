/**
 * Helpers for the webhook e2e suites: render the chart with the real helm, register the webhook
 * configurations by `url:` (loopback) instead of a Service, and run `mcp-warden webhook` as a real
 * process (TypeScript sources, as the harness runs the sidecar).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import {
  type Cluster,
  type ClusterUser,
  REPO_ROOT,
  requireTools,
  runProcess,
  tsNodeArgs,
  waitForObject,
} from './harness.js';

export const CHART = join(REPO_ROOT, 'charts', 'mcp-warden');
export const WEBHOOK_NS = 'mcp-warden';
/** `--sidecar-image` of every webhook the e2e suite starts (image.test.ts builds this tag). */
export const SIDECAR_IMAGE = 'ghcr.io/mcp-warden/mcp-warden:e2e';

/** `helm template` of the real chart, only the given templates, parsed. */
export async function renderChart(
  templates: string[],
  workDir: string,
  set: string[] = [],
): Promise<Array<Record<string, unknown>>> {
  const args = ['template', 'rel', CHART, '-n', WEBHOOK_NS, ...templates.flatMap((t) => ['--show-only', t])];
  for (const s of set) args.push('--set', s);
  const { code, stdout, stderr } = await runProcess(requireTools(true).helm, args, {
    env: { PATH: process.env['PATH'] ?? '', HOME: workDir },
  });
  if (code !== 0) throw new Error(`helm template failed (${code}): ${stderr}`);
  return parseAllDocuments(stdout)
    .map((d) => d.toJS() as Record<string, unknown> | null)
    .filter((d): d is Record<string, unknown> => d !== null);
}

/** The chart's webhook configurations with every `service:` replaced by `url: https://127.0.0.1:PORT/path`. */
export async function webhookConfigsByUrl(
  port: number,
  workDir: string,
): Promise<Array<Record<string, unknown>>> {
  const docs = await renderChart(['templates/webhooks.yaml'], workDir);
  for (const doc of docs) {
    for (const w of doc['webhooks'] as Array<{
      clientConfig: { service?: { path: string }; url?: string };
    }>) {
      const path = w.clientConfig.service?.path ?? '/';
      delete w.clientConfig.service;
      w.clientConfig.url = `https://127.0.0.1:${port}${path}`;
    }
  }
  return docs;
}

export async function applyDocs(cluster: Cluster, docs: unknown[], user?: ClusterUser): Promise<void> {
  const input = docs.map((d) => JSON.stringify(d)).join('\n');
  const r = await cluster.kubectl(['apply', '-f', '-'], { input, ...(user ? { user } : {}) });
  if (r.code !== 0) throw new Error(`kubectl apply failed: ${r.stderr}`);
}

export async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const address = server.address();
  const port = typeof address === 'object' && address !== null ? address.port : 0;
  server.close();
  await once(server, 'close');
  return port;
}

export interface WebhookProcess {
  child: ChildProcess;
  url: string;
  admin: string;
  log(): string;
  stop(): Promise<void>;
}

/**
 * How to start `mcp-warden <args>`: by default from the TypeScript sources with a kubeconfig;
 * image.test.ts starts it from the container image (in-cluster credentials, no kubeconfig).
 */
export type Launcher = (args: string[]) => Promise<{ bin: string; args: string[]; env: NodeJS.ProcessEnv }>;

function sourcesLauncher(workDir: string): Launcher {
  return async (args) => ({
    bin: process.execPath,
    args: [...(await tsNodeArgs(workDir)), join(REPO_ROOT, 'cmd', 'mcp-warden.ts'), ...args],
    env: { PATH: process.env['PATH'] ?? '', HOME: workDir, MCP_WARDEN_LOG_LEVEL: 'info' },
  });
}

/** Starts `mcp-warden webhook` and resolves once it printed its `listening` line (it has a certificate). */
export async function startWebhookProcess(options: {
  workDir: string;
  /** Omitted with a `launch` that provides in-cluster credentials. */
  kubeconfig?: string;
  port: number;
  identity: string;
  args?: string[];
  timeoutMs?: number;
  launch?: Launcher;
}): Promise<WebhookProcess> {
  const command = await (options.launch ?? sourcesLauncher(options.workDir))([
    'webhook',
    '--listen',
    `127.0.0.1:${options.port}`,
    '--admin-listen',
    '127.0.0.1:0',
    '--namespace',
    WEBHOOK_NS,
    ...(options.kubeconfig === undefined ? [] : ['--kubeconfig', options.kubeconfig]),
    '--identity',
    options.identity,
    '--cert-names',
    '127.0.0.1',
    '--sidecar-image',
    SIDECAR_IMAGE,
    ...(options.args ?? []),
  ]);
  const child = spawn(command.bin, command.args, {
    cwd: REPO_ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: command.env,
  });
  let log = '';
  child.stderr?.setEncoding('utf8').on('data', (c: string) => {
    log = (log + c).slice(-40_000);
  });
  const exited = once(child, 'exit');
  const listening = new Promise<{ url: string; admin: string }>((resolve) => {
    let buf = '';
    child.stdout?.setEncoding('utf8').on('data', (c: string) => {
      buf += c;
      for (const line of buf.split('\n')) {
        if (line.includes('"event":"listening"')) resolve(JSON.parse(line) as { url: string; admin: string });
      }
    });
  });
  const timeout = new Promise<never>((_, reject) => {
    const t = setTimeout(
      () => reject(new Error(`webhook ${options.identity} did not start:\n${log}`)),
      options.timeoutMs ?? 60_000,
    );
    t.unref();
  });
  const early = exited.then(() => {
    throw new Error(`webhook ${options.identity} exited early (${child.exitCode}):\n${log}`);
  });
  early.catch(() => {});
  let addr: { url: string; admin: string };
  try {
    addr = await Promise.race([listening, timeout, early]);
  } catch (err) {
    // A webhook that never listened is stopped here: nobody else holds it.
    child.kill('SIGKILL');
    throw err;
  }
  return {
    child,
    url: addr.url,
    admin: addr.admin,
    log: () => log,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 8_000);
      await exited;
      clearTimeout(t);
    },
  };
}

/**
 * The webhook as the chart installs it: its ServiceAccount and RBAC rendered by helm, one replica
 * (`webhook-0`) running as that account, both configurations registered by url; resolves once
 * both carry the CA bundle the webhook published (admission works from then on). The rotation
 * check and certificate reload run every 300 ms (the configurations appear after the webhook
 * starts: its next check patches their caBundle); `args` are added to the command line;
 * `launch` starts it another way than from the sources with a kubeconfig (image.test.ts).
 */
export async function installWebhook(
  cluster: Cluster,
  workDir: string,
  args: string[] = [],
  launch?: Launcher,
): Promise<WebhookProcess> {
  await applyDocs(
    cluster,
    await renderChart(['templates/serviceaccount.yaml', 'templates/rbac-webhook.yaml'], workDir),
  );
  const port = await freePort();
  const webhook = await startWebhookProcess({
    workDir,
    ...(launch === undefined
      ? { kubeconfig: (await cluster.serviceAccountUser(WEBHOOK_NS, 'mcp-warden-webhook')).kubeconfigPath }
      : { launch }),
    port,
    identity: 'webhook-0',
    args: ['--rotation-check-interval', '300ms', '--reload-interval', '300ms', ...args],
  });
  try {
    // Registered by url with the chart's rules and selectors; no caBundle: the webhook publishes it.
    await applyDocs(cluster, await webhookConfigsByUrl(port, workDir));
    for (const kind of ['mutatingwebhookconfigurations', 'validatingwebhookconfigurations']) {
      await waitForObject(
        cluster.admin.client,
        `/apis/admissionregistration.k8s.io/v1/${kind}`,
        'mcp-warden',
        (o) =>
          ((o as { webhooks?: Array<{ clientConfig?: { caBundle?: string } }> }).webhooks ?? []).every(
            (w) => !!w.clientConfig?.caBundle,
          ),
      );
    }
  } catch (err) {
    // The caller never gets the process to stop: stop it here, or it keeps jest alive.
    await webhook.stop();
    throw new Error(`${err instanceof Error ? err.message : String(err)}\nwebhook log:\n${webhook.log()}`);
  }
  return webhook;
}

/**
 * An MCPApproval as the sidecar creates it for a held `tools/call` (no decision, no status);
 * `spec` overrides any field.
 */
export function heldCall(name: string, spec: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    apiVersion: 'mcpwarden.io/v1alpha1',
    kind: 'MCPApproval',
    metadata: { name },
    spec: {
      policy: 'agents/github-tools',
      rule: 'deletes-need-approval',
      pod: 'github-mcp-0',
      requester: { principal: 'tenant-1/oid-requester', user: 'oid-requester' },
      method: 'tools/call',
      tool: 'delete_repo',
      argumentsDigest: `sha256:${'ab'.repeat(32)}`,
      expiresAt: new Date(Date.now() + 600_000).toISOString().replace(/\.\d{3}Z$/, 'Z'),
      approvers: [{ group: 'mcp-reviewers' }],
      ...spec,
    },
  };
}

/**
 * Approval RBAC as docs/approvals-cli.md sets it up: the chart's reviewer ClusterRole bound to the
 * group `mcp-reviewers` in `namespace`, and the chart's sidecar Role for the MCP server's
 * `serviceAccount` (what creates the approvals).
 */
export async function applyApprovalRbac(
  cluster: Cluster,
  workDir: string,
  namespace: string,
  serviceAccount: string,
): Promise<void> {
  await applyDocs(cluster, [
    ...(await renderChart(['templates/rbac-approver.yaml', 'templates/rbac-sidecar.yaml'], workDir, [
      `sidecarRBAC.namespaces[0].name=${namespace}`,
      `sidecarRBAC.namespaces[0].serviceAccounts[0]=${serviceAccount}`,
    ])),
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'RoleBinding',
      metadata: { name: 'mcp-reviewers', namespace },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'mcp-warden-approver' },
      subjects: [{ apiGroup: 'rbac.authorization.k8s.io', kind: 'Group', name: 'mcp-reviewers' }],
    },
  ]);
}
