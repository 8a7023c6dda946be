import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { V1Pod } from '@kubernetes/client-node';
import { parse as parseYaml } from 'yaml';
import type { KubeClient } from '../../pkg/kube/client.js';
import { Sidecar } from '../../webhook/constants.js';
import {
  type Cluster,
  type ClusterUser,
  helmTemplate,
  REPO_ROOT,
  requireTools,
  runProcess,
  startCluster,
  waitForObject,
} from './harness.js';
import {
  applyDocs,
  CHART,
  heldCall,
  installWebhook,
  renderChart,
  SIDECAR_IMAGE,
  WEBHOOK_NS,
  type WebhookProcess,
} from './webhook-helpers.js';

/**
 * The admission webhook on a real kube-apiserver: registered by `url:` on loopback with the CA
 * bundle the webhook itself publishes, running as its own service account with exactly the chart's
 * RBAC, and exercised by ordinary users through kubectl and the API.
 */
let cluster: Cluster;
let workDir: string;
let webhook: WebhookProcess;
let dev: ClusterUser;
let rita: ClusterUser;
let requester: ClusterUser;

const NS = 'agents';

const mcpPod = (name: string, labels: Record<string, string>, extra: Record<string, unknown> = {}) => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name, labels },
  spec: {
    containers: [
      {
        name: 'server',
        image: 'ghcr.io/example/github-mcp:1.2.0',
        ports: [{ name: 'mcp', containerPort: 8080 }],
      },
    ],
    ...extra,
  },
});

interface StoredPod {
  metadata: { name: string; annotations?: Record<string, string>; labels?: Record<string, string> };
  spec: {
    initContainers?: Array<{
      name: string;
      restartPolicy?: string;
      ports?: Array<{ name?: string; containerPort: number }>;
    }>;
    containers: Array<{ name: string; ports?: Array<{ name?: string; containerPort: number }> }>;
  };
}

async function createPod(client: KubeClient, namespace: string, pod: unknown): Promise<StoredPod> {
  return client.request<StoredPod>('POST', `/api/v1/namespaces/${namespace}/pods`, { body: pod });
}

interface EventObject {
  reason: string;
  message: string;
}

/** Waits (list, then watch) for an Event about `name` matching `predicate`. */
async function waitForEvent(
  client: KubeClient,
  namespace: string,
  name: string,
  predicate: (e: EventObject) => boolean,
  timeoutMs = 15_000,
): Promise<boolean> {
  const path = `/api/v1/namespaces/${namespace}/events`;
  const fieldSelector = `involvedObject.name=${name}`;
  const list = await client.request<{ metadata: { resourceVersion: string }; items: EventObject[] }>(
    'GET',
    path,
    {
      query: { fieldSelector },
    },
  );
  if (list.items.some(predicate)) return true;
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), timeoutMs);
  let found = false;
  await client
    .watch(
      path,
      { query: { fieldSelector, resourceVersion: list.metadata.resourceVersion }, signal: abort.signal },
      (ev) => {
        if (predicate(ev.object as unknown as EventObject)) {
          found = true;
          abort.abort();
        }
      },
    )
    .catch(() => {});
  clearTimeout(timer);
  return found;
}

function sidecars(pod: StoredPod): number {
  return [...(pod.spec.initContainers ?? []), ...pod.spec.containers].filter((c) => c.name === 'mcp-warden')
    .length;
}

/** `kubectl get -o json` of pod `from` as a new pod `name`: what `| kubectl create -f -` sends. */
const exported = async (from: string, name: string): Promise<V1Pod> => {
  const got = await cluster.kubectl(['get', 'pod', from, '-n', NS, '-o', 'json'], { user: dev });
  expect(got.code).toBe(0);
  const stored = JSON.parse(got.stdout) as V1Pod;
  const { labels: podLabels, annotations } = stored.metadata ?? {};
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name,
      ...(podLabels ? { labels: podLabels } : {}),
      ...(annotations ? { annotations } : {}),
    },
    ...(stored.spec ? { spec: stored.spec } : {}),
  };
};
const sidecarOf = (pod: V1Pod) =>
  [...(pod.spec?.initContainers ?? []), ...(pod.spec?.containers ?? [])].find(
    (c) => c.name === 'mcp-warden',
  )!;

beforeAll(async () => {
  workDir = await mkdtemp(join(tmpdir(), 'mcp-warden-webhook-e2e-'));
  cluster = await startCluster();
  await cluster.createNamespace(WEBHOOK_NS);
  await cluster.createNamespace(NS);
  await cluster.createNamespace('sandbox', { 'mcpwarden.io/injection': 'disabled' });
  await cluster.createServiceAccount('kube-system', 'default');

  // The webhook with its ServiceAccount and RBAC exactly as the chart renders them.
  webhook = await installWebhook(cluster, workDir, ['--status-interval', '500ms']);

  // A developer who may create pods in `agents` (nothing else), a reviewer, the requester of a call.
  dev = await cluster.user('dev', ['developers']);
  rita = await cluster.user('rita', ['mcp-reviewers']);
  requester = await cluster.user('oid-requester', ['mcp-reviewers']);
  await applyDocs(cluster, [
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'Role',
      metadata: { name: 'pod-author', namespace: NS },
      rules: [{ apiGroups: [''], resources: ['pods'], verbs: ['create', 'get', 'list'] }],
    },
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'RoleBinding',
      metadata: { name: 'pod-author', namespace: NS },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'pod-author' },
      subjects: [{ apiGroup: 'rbac.authorization.k8s.io', kind: 'Group', name: 'developers' }],
    },
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'Role',
      metadata: { name: 'approval-reviewer', namespace: NS },
      rules: [
        {
          apiGroups: ['mcpwarden.io'],
          resources: ['mcpapprovals'],
          verbs: ['get', 'list', 'patch', 'update'],
        },
      ],
    },
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'RoleBinding',
      metadata: { name: 'approval-reviewer', namespace: NS },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'approval-reviewer' },
      subjects: [
        { apiGroup: 'rbac.authorization.k8s.io', kind: 'Group', name: 'mcp-reviewers' },
        // A misconfiguration on purpose: the MCP pod's own service account may patch approvals too.
        // RBAC would let it decide; the webhook must not.
        { kind: 'ServiceAccount', name: 'github-mcp', namespace: NS },
      ],
    },
  ]);
  await cluster.createServiceAccount(NS, 'github-mcp');
  const sidecarRbac = await helmTemplate(
    join(REPO_ROOT, 'charts', 'mcp-warden', 'templates', 'rbac-sidecar.yaml'),
    `sidecarRBAC:\n  namespaces:\n    - name: ${NS}\n      serviceAccounts: [github-mcp]\n`,
    workDir,
  );
  if (sidecarRbac.code !== 0) throw new Error(sidecarRbac.stderr);
  const applied = await cluster.kubectl(['apply', '-f', '-'], { input: sidecarRbac.stdout });
  if (applied.code !== 0) throw new Error(applied.stderr);
}, 240_000);

afterAll(async () => {
  await webhook?.stop();
  await cluster?.stop();
  if (workDir) await rm(workDir, { recursive: true, force: true });
});

describe('MCPPolicy validation', () => {
  const policy = (when: string, name = 'github-tools') => `apiVersion: mcpwarden.io/v1alpha1
kind: MCPPolicy
metadata: {name: ${name}, namespace: ${NS}}
spec:
  podSelector: {matchLabels: {app: github-mcp}}
  mode: enforce
  identity:
    issuers:
      - kubernetes: {audiences: [github-mcp]}
  rules:
    - name: readers-read
      subjects: [{group: readers}]
      match:
        tools: ["get_*"]
        when: '${when}'
      action: allow
`;

  test('kubectl apply -f crds/ then a valid policy is accepted', async () => {
    const crds = await cluster.kubectl(['apply', '-f', join(REPO_ROOT, 'crds')]);
    expect(crds.code).toBe(0);
    const r = await cluster.kubectl(['apply', '-f', '-'], { input: policy('args.size() > 0') });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
  });

  test('an invalid policy is refused with a message naming the field', async () => {
    const created = await cluster.kubectl(['apply', '-f', '-'], {
      input: policy('args.query.matches(', 'broken'),
    });
    expect(created.code).not.toBe(0);
    // The webhook answers 422 Invalid with one cause per field: kubectl prints them.
    expect(created.stderr).toMatch(
      /The request is invalid: spec\.rules\[0\]\.match\.when: CEL does not parse/,
    );
    const updated = await cluster.kubectl(['apply', '-f', '-'], { input: policy('args.query.matches(') });
    expect(updated.code).not.toBe(0);
    expect(updated.stderr).toMatch(/spec\.rules\[0\]\.match\.when/);
    const stored = await cluster.kubectl(['get', 'mcpp', 'broken', '-n', NS]);
    expect(stored.stderr).toMatch(/NotFound/);
  });
});

describe('pod injection', () => {
  test('a labelled pod created by a normal user comes back injected (native sidecar, port takeover)', async () => {
    const pod = await createPod(
      dev.client,
      NS,
      mcpPod('github-mcp-0', { app: 'github-mcp', 'mcpwarden.io/inject': 'true' }),
    );
    expect(sidecars(pod)).toBe(1);
    const sidecar = pod.spec.initContainers?.[0];
    expect(sidecar?.name).toBe('mcp-warden');
    expect(sidecar?.restartPolicy).toBe('Always');
    expect(sidecar?.ports?.find((p) => p.name === 'mcp')?.containerPort).toBe(15080);
    expect(pod.spec.containers[0]?.ports?.[0]).toMatchObject({ name: 'mcp-upstream', containerPort: 8080 });
    expect(JSON.parse(pod.metadata.annotations?.['mcpwarden.io/status'] ?? '{}')).toMatchObject({
      version: '0.1.0',
    });
  });

  test('an unlabelled pod, a kube-system pod and a pod in a disabled namespace are not touched', async () => {
    const plain = await createPod(dev.client, NS, mcpPod('plain', { app: 'x' }));
    expect(sidecars(plain)).toBe(0);
    expect(plain.metadata.annotations?.['mcpwarden.io/status']).toBeUndefined();
    const system = await createPod(
      cluster.admin.client,
      'kube-system',
      mcpPod('sys', { 'mcpwarden.io/inject': 'true' }),
    );
    expect(sidecars(system)).toBe(0);
    expect(system.metadata.annotations).toBeUndefined();
    const sandbox = await createPod(
      cluster.admin.client,
      'sandbox',
      mcpPod('sb', { 'mcpwarden.io/inject': 'true' }),
    );
    expect(sidecars(sandbox)).toBe(0);
  });

  test('re-submitting an injected pod (get -o json | create) produces no second sidecar', async () => {
    const got = await cluster.kubectl(['get', 'pod', 'github-mcp-0', '-n', NS, '-o', 'json'], { user: dev });
    const stored = JSON.parse(got.stdout) as StoredPod & {
      metadata: Record<string, unknown>;
      status?: unknown;
    };
    const copy = {
      ...stored,
      metadata: {
        name: 'github-mcp-copy',
        labels: stored.metadata.labels,
        annotations: stored.metadata.annotations,
      },
      status: undefined,
    };
    const r = await cluster.kubectl(['create', '-n', NS, '-f', '-', '-o', 'json'], {
      input: JSON.stringify(copy),
      user: dev,
    });
    expect(r.stderr).toBe('');
    const again = JSON.parse(r.stdout) as StoredPod;
    expect(sidecars(again)).toBe(1);
    expect(again.metadata.annotations?.['mcpwarden.io/status']).toBe(
      stored.metadata.annotations?.['mcpwarden.io/status'],
    );
    // kubectl apply of the original manifest, twice: the second apply is an update, still one sidecar.
    const manifest = JSON.stringify(mcpPod('applied', { 'mcpwarden.io/inject': 'true' }));
    expect((await cluster.kubectl(['apply', '-n', NS, '-f', '-'], { input: manifest, user: dev })).code).toBe(
      0,
    );
    await cluster.kubectl(['apply', '-n', NS, '-f', '-'], { input: manifest, user: dev });
    const applied = await dev.client.request<StoredPod>('GET', `/api/v1/namespaces/${NS}/pods/applied`);
    expect(sidecars(applied)).toBe(1);
  });

  test('a hostNetwork pod is skipped with a machine-readable reason: annotation, warning and Event', async () => {
    const r = await cluster.kubectl(['create', '-n', NS, '-f', '-', '-o', 'json'], {
      input: JSON.stringify(mcpPod('host', { 'mcpwarden.io/inject': 'true' }, { hostNetwork: true })),
    });
    expect(r.stderr).toMatch(/Warning: mcp-warden: not injected \(host_network_enabled\)/);
    const pod = JSON.parse(r.stdout) as StoredPod;
    expect(sidecars(pod)).toBe(0);
    expect(pod.metadata.annotations?.['mcpwarden.io/skip-reason']).toBe('host_network_enabled');
    const found = await waitForEvent(
      cluster.admin.client,
      NS,
      'host',
      (e) => e.reason === 'InjectionSkipped' && e.message.startsWith('host_network_enabled'),
    );
    expect(found).toBe(true);
  });

  test('a malformed override annotation is refused with a message naming it', async () => {
    const r = await cluster.kubectl(['create', '-n', NS, '-f', '-'], {
      input: JSON.stringify(mcpPod('bad', { 'mcpwarden.io/inject': 'true' })).replace(
        '"labels"',
        '"annotations":{"mcpwarden.io/cpu-limit":"lots"},"labels"',
      ),
      user: dev,
    });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/mcpwarden\.io\/cpu-limit/);
  });
});

describe('pod injection: what would lead around the sidecar', () => {
  const labels = { app: 'github-mcp', 'mcpwarden.io/inject': 'true' };
  const create = (pod: unknown, user: ClusterUser = dev) =>
    cluster.kubectl(['create', '-n', NS, '-f', '-', '-o', 'json'], { input: JSON.stringify(pod), user });
  type AppContainer = {
    name: string;
    ports?: Array<{ name?: string; containerPort: number }>;
    readinessProbe?: { httpGet?: { port: unknown } };
    livenessProbe?: { tcpSocket?: { port: unknown } };
    lifecycle?: { preStop?: { httpGet?: { port: unknown } } };
  };

  test('probes and hooks that named the MCP port get its number, which the kubelet resolves', async () => {
    const pod = mcpPod('probed', labels);
    Object.assign(pod.spec.containers[0]!, {
      ports: [{ name: 'http', containerPort: 8080 }],
      readinessProbe: { httpGet: { path: '/healthz', port: 'http' } },
      livenessProbe: { tcpSocket: { port: 'http' } },
      lifecycle: { preStop: { httpGet: { path: '/drain', port: 'http' } } },
    });
    const r = await create(pod);
    expect(r.stderr).toBe('');
    const stored = JSON.parse(r.stdout) as { spec: { containers: AppContainer[] } };
    const app = stored.spec.containers.find((c) => c.name === 'server')!;
    expect(app.ports).toEqual([{ name: 'http-upstream', containerPort: 8080, protocol: 'TCP' }]);
    expect(app.readinessProbe?.httpGet?.port).toBe(8080);
    expect(app.livenessProbe?.tcpSocket?.port).toBe(8080);
    expect(app.lifecycle?.preStop?.httpGet?.port).toBe(8080);
  });

  test('every declaration of the MCP port is renamed, and kubectl prints why', async () => {
    const pod = mcpPod('dup', labels);
    pod.spec.containers[0]!.ports = [
      { name: 'mcp', containerPort: 8080 },
      { name: 'http', containerPort: 8080 },
    ];
    const r = await create(pod);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(
      /Warning: mcp-warden: container "server" port "http" also declares the MCP port 8080/,
    );
    const stored = JSON.parse(r.stdout) as StoredPod;
    expect(stored.spec.containers[0]?.ports?.map((p) => p.name)).toEqual(['mcp-upstream', 'http-upstream']);
    expect(stored.spec.initContainers?.[0]?.ports?.[0]).toMatchObject({ name: 'mcp', containerPort: 15080 });
  });

  test('upstream-port on another number than the port named mcp: kubectl prints a warning', async () => {
    const pod = mcpPod('beside', labels);
    (pod.metadata as Record<string, unknown>)['annotations'] = { 'mcpwarden.io/upstream-port': '9000' };
    const r = await create(pod);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/Warning: mcp-warden: .*targetPort: mcp reaches the app on 8080 directly/);
    // Re-submitted as exported (kubectl get -o json | kubectl create): the port named mcp still
    // leads around the sidecar in the new pod, and kubectl prints the same warning again.
    const again = await create(await exported('beside', 'beside-copy'));
    expect(again.code).toBe(0);
    expect(sidecars(JSON.parse(again.stdout) as StoredPod)).toBe(1);
    const warned = (text: string) => text.split('\n').filter((l) => l.startsWith('Warning: mcp-warden:'));
    expect(warned(again.stderr)).toEqual(warned(r.stderr));
    expect(warned(again.stderr)).toHaveLength(1);
  });

  test('a hostPort on the MCP port is refused, naming the container and port', async () => {
    const pod = mcpPod('hostport', labels);
    pod.spec.containers[0]!.ports = [{ name: 'mcp', containerPort: 8080, hostPort: 30080 } as never];
    const r = await create(pod);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(
      /mcp-warden cannot inject this pod: container "server" port "mcp" \(8080\) is the MCP port and sets hostPort 30080/,
    );
    expect(r.stderr).toMatch(/Remove hostPort\/hostIP from the MCP port/);
  });

  test('its own mcp-warden container with a hand-written status is refused, not taken as injected', async () => {
    const pod = mcpPod('spoof', labels);
    (pod.metadata as Record<string, unknown>)['annotations'] = {
      'mcpwarden.io/status': '{"version":"0.1.0","hash":"0123456789abcdef"}',
    };
    pod.spec.containers.push({
      name: 'mcp-warden',
      image: 'alpine/socat',
      ports: [{ name: 'mcp-proxy', containerPort: 15080 }],
    });
    const r = await create(pod);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(
      /carries mcpwarden\.io\/status but not the sidecar mcp-warden injects: .*image "alpine\/socat"/,
    );
  });

  test('a sidecar image outside the allowlist is refused; another tag of the default repository is not', async () => {
    const pod = mcpPod('byo-image', labels);
    (pod.metadata as Record<string, unknown>)['annotations'] = {
      'mcpwarden.io/sidecar-image': 'alpine/socat:1',
    };
    const r = await create(pod);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(
      /mcp-warden cannot inject this pod: annotation mcpwarden\.io\/sidecar-image: "alpine\/socat:1" is not an allowed sidecar image/,
    );
    expect(r.stderr).toMatch(/--allowed-sidecar-images/);
    const other = mcpPod('other-tag', labels);
    (other.metadata as Record<string, unknown>)['annotations'] = {
      'mcpwarden.io/sidecar-image': 'ghcr.io/mcp-warden/mcp-warden:0.0.9',
    };
    const ok = await create(other);
    expect(ok.stderr).toBe('');
    const stored = JSON.parse(ok.stdout) as {
      spec: { initContainers: Array<{ name: string; image: string }> };
    };
    expect(stored.spec.initContainers[0]).toMatchObject({
      name: 'mcp-warden',
      image: 'ghcr.io/mcp-warden/mcp-warden:0.0.9',
    });
  });

  test("an app container mounting the sidecar's token volume is refused", async () => {
    const pod = mcpPod('token-thief', labels);
    Object.assign(pod.spec.containers[0]!, {
      volumeMounts: [{ name: Sidecar.tokenVolume, mountPath: '/stolen', readOnly: true }],
    });
    const r = await create(pod);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(
      /mcp-warden cannot inject this pod: container "server" mounts the volume "mcp-warden-token", which mcp-warden adds for its sidecar only/,
    );
  });

  test('an MCP server that runs as a native sidecar is protected: the proxy goes first, its port is taken over', async () => {
    const pod = {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'native-server', labels },
      spec: {
        initContainers: [
          {
            name: 'server',
            image: 'ghcr.io/example/github-mcp:1.2.0',
            restartPolicy: 'Always',
            ports: [{ name: 'mcp', containerPort: 8080 }],
            readinessProbe: { httpGet: { path: '/healthz', port: 'mcp' } },
          },
        ],
        containers: [{ name: 'agent', image: 'ghcr.io/example/agent:1.0.0' }],
      },
    };
    const r = await create(pod);
    expect(r.stderr).toBe('');
    const stored = JSON.parse(r.stdout) as {
      spec: { initContainers: Array<AppContainer & { restartPolicy?: string }> };
    };
    expect(stored.spec.initContainers.map((c) => c.name)).toEqual(['mcp-warden', 'server']);
    const [proxy, server] = stored.spec.initContainers;
    expect(proxy?.ports?.[0]).toMatchObject({ name: 'mcp', containerPort: 15080 });
    expect(server?.ports).toEqual([{ name: 'mcp-upstream', containerPort: 8080, protocol: 'TCP' }]);
    expect(server?.readinessProbe?.httpGet?.port).toBe(8080);
  });

  test("re-submitted with KUBECONFIG and a kubeconfig of its own on the sidecar: refused; identity webhooks' env and token: kept", async () => {
    const evil = await exported('github-mcp-0', 'kubeconfig-swap');
    sidecarOf(evil).env!.push({ name: 'KUBECONFIG', value: '/var/run/secrets/evil/config' });
    sidecarOf(evil).volumeMounts!.push({ name: 'evil', mountPath: '/var/run/secrets/evil', readOnly: true });
    evil.spec!.volumes!.push({ name: 'evil', configMap: { name: 'evil-kubeconfig' } });
    const refused = await create(evil);
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toMatch(
      /carries mcpwarden\.io\/status but not the sidecar mcp-warden injects: its mcp-warden container differs in env KUBECONFIG \(not injected\), volumeMounts \/var\/run\/secrets\/evil \(not injected\)/,
    );

    // What Azure Workload Identity's webhook adds to every container: admitted as it is.
    const azure = await exported('github-mcp-0', 'azure-identity');
    sidecarOf(azure).env!.push(
      { name: 'AZURE_CLIENT_ID', value: '00000000-0000-0000-0000-000000000001' },
      { name: 'AZURE_TENANT_ID', value: '00000000-0000-0000-0000-000000000002' },
      { name: 'AZURE_FEDERATED_TOKEN_FILE', value: '/var/run/secrets/azure/tokens/azure-identity-token' },
      { name: 'AZURE_AUTHORITY_HOST', value: 'https://login.microsoftonline.com/' },
    );
    sidecarOf(azure).volumeMounts!.push({
      name: 'azure-identity-token',
      mountPath: '/var/run/secrets/azure/tokens',
      readOnly: true,
    });
    azure.spec!.volumes!.push({
      name: 'azure-identity-token',
      projected: {
        sources: [
          {
            serviceAccountToken: {
              path: 'azure-identity-token',
              audience: 'api://AzureADTokenExchange',
              expirationSeconds: 3600,
            },
          },
        ],
      },
    });
    const kept = await create(azure);
    expect(kept.stderr).toBe('');
    expect(sidecars(JSON.parse(kept.stdout) as StoredPod)).toBe(1);
  });

  test('re-submitted with the sidecar on a decoy port or a hostPort on the MCP port: refused', async () => {
    // "beside" was injected for upstream-port 9000; without the annotation, "mcp" (8080) is the MCP port.
    const decoy = await exported('beside', 'decoy');
    delete decoy.metadata!.annotations!['mcpwarden.io/upstream-port'];
    const r = await create(decoy);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(
      /the sidecar forwards to port 9000, but the MCP port is 8080 \(container "server" port "mcp" \(8080\)\)/,
    );
    const host = await exported('github-mcp-0', 'hostport-again');
    host.spec!.containers.find((c) => c.name === 'server')!.ports![0]!.hostPort = 30080;
    const h = await create(host);
    expect(h.code).not.toBe(0);
    expect(h.stderr).toMatch(
      /container "server" port "mcp-upstream" \(8080\) is the MCP port and sets hostPort 30080/,
    );
  });

  test('a run-to-completion init container naming a port mcp: injected, and re-submitted as it is', async () => {
    const pod = mcpPod('migrating', labels);
    Object.assign(pod.spec, {
      initContainers: [
        {
          name: 'migrate',
          image: 'ghcr.io/example/github-mcp:1.2.0',
          args: ['migrate'],
          ports: [{ name: 'mcp', containerPort: 8080 }],
        },
      ],
    });
    // The API server itself warns about the duplicate name and number across containers (and that
    // Services resolve "mcp" to the first declaration: the proxy's); mcp-warden has nothing to add.
    const r = await create(pod);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/duplicate port name "mcp" .* will use spec\.initContainers\[0\]\.ports\[0\]/);
    expect(r.stderr).not.toMatch(/mcp-warden/);
    const again = await create(await exported('migrating', 'migrating-copy'));
    expect(again.code).toBe(0);
    expect(again.stderr).not.toMatch(/mcp-warden/);
    expect(sidecars(JSON.parse(again.stdout) as StoredPod)).toBe(1);
  });

  test('the projected token asks for 3600 s, and the API server issues exactly one hour', async () => {
    const pod = await cluster.admin.client.request<
      StoredPod & {
        metadata: { uid: string };
        spec: {
          volumes: Array<{
            name: string;
            projected?: { sources: Array<Record<string, { expirationSeconds?: number }>> };
          }>;
        };
      }
    >('GET', `/api/v1/namespaces/${NS}/pods/github-mcp-0`);
    const volume = pod.spec.volumes.find((v) => v.name === Sidecar.tokenVolume);
    const seconds = volume?.projected?.sources[0]?.['serviceAccountToken']?.expirationSeconds;
    expect(seconds).toBe(3600);
    // What the kubelet asks for this projection (the legacy 3607 would come back valid for a year).
    const token = await cluster.serviceAccountToken(NS, 'default', {
      expirationSeconds: seconds!,
      boundPod: { name: 'github-mcp-0', uid: pod.metadata.uid },
    });
    const claims = JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()) as {
      exp: number;
      iat: number;
    };
    expect(claims.exp - claims.iat).toBe(3600);
  });
});

describe("sidecar guard (the chart's ValidatingAdmissionPolicy)", () => {
  const imagePatch = (pod: string, path: string, image: string, dryRun = false) =>
    cluster.kubectl([
      'patch',
      'pod',
      pod,
      '-n',
      NS,
      '--type',
      'json',
      ...(dryRun ? ['--dry-run=server'] : []),
      '-p',
      JSON.stringify([{ op: 'replace', path, value: image }]),
    ]);

  beforeAll(async () => {
    await applyDocs(cluster, await renderChart(['templates/sidecar-guard.yaml'], workDir));
    // The policy is enforced once the API server's policy informer has it: poll with a dry run.
    const deadline = Date.now() + 30_000;
    for (;;) {
      const r = await imagePatch('github-mcp-0', '/spec/initContainers/0/image', 'alpine/socat', true);
      if (r.code !== 0) break;
      if (Date.now() > deadline) throw new Error('the sidecar guard policy was never enforced');
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  }, 60_000);

  test('an UPDATE that swaps the injected sidecar image is refused, even for a cluster admin', async () => {
    const r = await imagePatch('github-mcp-0', '/spec/initContainers/0/image', 'alpine/socat:latest');
    expect(r.code).not.toBe(0);
    // The policy's own message: its CEL compiled and evaluated (a broken expression would fail otherwise).
    expect(r.stderr).toMatch(/the injected sidecar \(container mcp-warden\) of this pod cannot be changed/);
    const pod = await cluster.admin.client.request<{ spec: { initContainers: Array<{ image: string }> } }>(
      'GET',
      `/api/v1/namespaces/${NS}/pods/github-mcp-0`,
    );
    expect(pod.spec.initContainers[0]?.image).toBe('ghcr.io/mcp-warden/mcp-warden:e2e');
  });

  test('the status annotation cannot be removed or changed (else a second update could swap the sidecar)', async () => {
    const annotationPatch = (op: Record<string, unknown>) =>
      cluster.kubectl([
        'patch',
        'pod',
        'github-mcp-0',
        '-n',
        NS,
        '--type',
        'json',
        '-p',
        JSON.stringify([{ ...op, path: '/metadata/annotations/mcpwarden.io~1status' }]),
      ]);
    for (const op of [{ op: 'remove' }, { op: 'replace', value: '{"version":"0","hash":"forged"}' }]) {
      const r = await annotationPatch(op);
      expect(r.code).not.toBe(0);
      expect(r.stderr).toMatch(
        /the mcpwarden\.io\/status annotation of an injected pod cannot be removed or changed/,
      );
    }
    const pod = await cluster.admin.client.request<{ metadata: { annotations: Record<string, string> } }>(
      'GET',
      `/api/v1/namespaces/${NS}/pods/github-mcp-0`,
    );
    expect(pod.metadata.annotations['mcpwarden.io/status']).toMatch(/"hash"/);
  });

  test("an ephemeral container cannot mount the sidecar's volumes; one that does not is added", async () => {
    const ephemeral = (name: string, mounts: unknown[], dryRun = false) =>
      cluster.kubectl([
        'patch',
        'pod',
        'github-mcp-0',
        '-n',
        NS,
        '--subresource',
        'ephemeralcontainers',
        '--type',
        'strategic',
        ...(dryRun ? ['--dry-run=server'] : []),
        '-p',
        JSON.stringify({
          spec: { ephemeralContainers: [{ name, image: 'busybox:1', volumeMounts: mounts }] },
        }),
      ]);
    const token = [{ name: Sidecar.tokenVolume, mountPath: '/stolen', readOnly: true }];
    // The second policy of the template may reach the API server's informer after the first.
    const deadline = Date.now() + 30_000;
    while ((await ephemeral('probe', token, true)).code === 0) {
      if (Date.now() > deadline) throw new Error('the sidecar volume policy was never enforced');
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
    for (const volume of [Sidecar.tokenVolume, Sidecar.recordingsVolume, Sidecar.tmpVolume]) {
      const r = await ephemeral('debug', [{ name: volume, mountPath: '/x' }]);
      expect(r.code).not.toBe(0);
      expect(r.stderr).toMatch(
        /an ephemeral container cannot mount the volumes mcp-warden adds for its sidecar/,
      );
    }
    const plain = await ephemeral('debug', []);
    expect(plain.stderr).toBe('');
    expect(plain.code).toBe(0);
  });

  test("the app's own image may still change; pods that were never injected are not matched", async () => {
    const app = await imagePatch(
      'github-mcp-0',
      '/spec/containers/0/image',
      'ghcr.io/example/github-mcp:1.3.0',
    );
    expect(app.stderr).toBe('');
    expect(app.code).toBe(0);
    // A hand-added mcp-warden container (skipped: sidecar_already_exists) carries no status.
    const own = mcpPod('own-warden', { 'mcpwarden.io/inject': 'true' });
    own.spec.containers.unshift({ name: 'mcp-warden', image: 'x:1', ports: [] });
    await createPod(cluster.admin.client, NS, own);
    const r = await imagePatch('own-warden', '/spec/containers/0/image', 'x:2');
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
  });
});

describe('MCPApproval decisions', () => {
  const digest = `sha256:${'ab'.repeat(32)}`;
  const patchDecision = (user: ClusterUser, decision: Record<string, unknown>) =>
    cluster.kubectl(
      ['patch', 'mcpa', 'hold-1', '-n', NS, '--type', 'merge', '-p', JSON.stringify({ spec: { decision } })],
      {
        user,
      },
    );

  beforeAll(async () => {
    // The sidecar (the pod's service account) creates the held call.
    const sidecar = await cluster.serviceAccountUser(NS, 'github-mcp');
    await sidecar.client.request('POST', `/apis/mcpwarden.io/v1alpha1/namespaces/${NS}/mcpapprovals`, {
      body: heldCall('hold-1', { policy: `${NS}/github-tools`, argumentsDigest: digest }),
    });
  });

  test("the MCP pod's service account cannot decide, even with RBAC to patch", async () => {
    const sa = await cluster.serviceAccountUser(NS, 'github-mcp');
    const r = await patchDecision(sa, { verdict: 'Approved' });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/service account|created this approval/);
  });

  test('the requester cannot approve their own call', async () => {
    const r = await patchDecision(requester, { verdict: 'Approved' });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/requester/);
  });

  test('a reviewer decides; decidedBy is stamped from the admission userInfo, not the request', async () => {
    const r = await patchDecision(rita, {
      verdict: 'Approved',
      reason: 'looks fine',
      decidedBy: 'somebody-else',
    });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const got = await rita.client.request<{
      metadata: { annotations: Record<string, string> };
      spec: { decision: Record<string, unknown> };
    }>('GET', `/apis/mcpwarden.io/v1alpha1/namespaces/${NS}/mcpapprovals/hold-1`);
    expect(got.spec.decision).toEqual({ verdict: 'Approved', reason: 'looks fine', decidedBy: 'rita' });
    expect(got.metadata.annotations['mcpwarden.io/created-by']).toBe(
      `system:serviceaccount:${NS}:github-mcp`,
    );
  });

  test('the decision cannot be changed afterwards', async () => {
    const r = await patchDecision(rita, { verdict: 'Denied' });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/cannot be changed|immutable/);
  });
});

describe('status pass and metrics', () => {
  test('entries of deleted pods are pruned and totals aggregated', async () => {
    const old = '2020-01-01T00:00:00Z';
    const entry = (name: string, allowed: number) => ({
      name,
      generation: 1,
      lastReportTime: old,
      allowed,
      denied: 1,
      approvalsRequested: 0,
      masked: 2,
      sessions: 1,
    });
    await cluster.admin.client.request(
      'PATCH',
      `/apis/mcpwarden.io/v1alpha1/namespaces/${NS}/mcppolicies/github-tools/status`,
      {
        contentType: 'application/merge-patch+json',
        body: { status: { pods: [entry('ghost-pod', 3), entry('github-mcp-0', 5)] } },
      },
    );
    const policy = await waitForObject<
      {
        status?: { pods?: Array<{ name: string }>; summary?: Record<string, number> };
      } & { metadata: { name: string } }
    >(
      cluster.admin.client,
      `/apis/mcpwarden.io/v1alpha1/namespaces/${NS}/mcppolicies`,
      'github-tools',
      (o) => o.status?.pods?.length === 1 && o.status.summary?.['pods'] === 1,
    );
    expect(policy.status?.pods?.map((p) => p.name)).toEqual(['github-mcp-0']);
    expect(policy.status?.summary).toEqual({
      rules: 1,
      pods: 1,
      allowed: 5,
      denied: 1,
      approvalsRequested: 0,
      masked: 2,
      sessions: 1,
    });
  });

  test('admission and certificate metrics are exported', async () => {
    const res = await fetch(`${webhook.admin}/metrics`);
    const text = await res.text();
    const expiry = Number(/mcp_warden_webhook_cert_expiry_timestamp_seconds (\d+)/.exec(text)?.[1]);
    expect(expiry).toBeGreaterThan(Date.now() / 1000 + 30 * 24 * 3600);
    expect(text).toMatch(/mcp_warden_injections_total\{result="injected"\} [1-9]/);
    expect(text).toMatch(
      /mcp_warden_admission_requests_total\{kind="MCPPolicy",operation="CREATE",result="denied"\} [1-9]/,
    );
    expect((await fetch(`${webhook.admin}/readyz`)).status).toBe(200);
  });

  test('the webhook service account cannot read other secrets (chart RBAC is minimal)', async () => {
    const can = async (args: string[]) =>
      (
        await cluster.kubectl([
          'auth',
          'can-i',
          ...args,
          `--as=system:serviceaccount:${WEBHOOK_NS}:mcp-warden-webhook`,
        ])
      ).stdout.trim();
    expect(await can(['get', 'secrets/mcp-warden-webhook-tls', '-n', WEBHOOK_NS])).toBe('yes');
    expect(await can(['get', 'secrets/other', '-n', WEBHOOK_NS])).toBe('no');
    expect(await can(['list', 'secrets', '-n', WEBHOOK_NS])).toBe('no');
    expect(await can(['get', 'secrets', '-n', NS])).toBe('no');
    expect(await can(['update', 'mutatingwebhookconfigurations/other'])).toBe('no');
    expect(await can(['update', 'mcppolicies.mcpwarden.io', '-n', NS])).toBe('no');
    // It deletes approvals past their retention, and can never decide one.
    expect(await can(['delete', 'mcpapprovals.mcpwarden.io', '-n', NS])).toBe('yes');
    expect(await can(['patch', 'mcpapprovals.mcpwarden.io', '-n', NS])).toBe('no');
    expect(await can(['update', 'mcpapprovals.mcpwarden.io', '-n', NS])).toBe('no');
  });
});

describe('helm chart', () => {
  const helm = (args: string[]) =>
    runProcess(requireTools(true).helm, args, { env: { PATH: process.env['PATH'] ?? '', HOME: workDir } });

  /** A chart template that renders nothing by default (helm finds no such template to show). */
  async function expectOffByDefault(template: string): Promise<void> {
    const off = await helm(['template', 'rel', CHART, '-n', WEBHOOK_NS, '--show-only', template]);
    expect(off.code).not.toBe(0);
    expect(off.stderr).toContain('could not find template');
  }

  test('helm lint passes', async () => {
    const r = await helm(['lint', CHART]);
    expect(r.stdout).toMatch(/1 chart\(s\) linted, 0 chart\(s\) failed/);
    expect(r.code).toBe(0);
  });

  test('the full render (CRDs included) is accepted by the API server (server-side dry run)', async () => {
    const r = await helm([
      'template',
      'rel',
      CHART,
      '-n',
      WEBHOOK_NS,
      '--include-crds',
      '--set',
      'sidecarRBAC.namespaces[0].name=agents',
      '--set',
      'sidecarRBAC.namespaces[0].allServiceAccounts=true',
    ]);
    expect(r.code).toBe(0);
    const kinds = [...r.stdout.matchAll(/^kind: (\w+)$/gm)].map((m) => m[1]).sort();
    expect(kinds).toEqual([
      'ClusterRole',
      'ClusterRole',
      'ClusterRoleBinding',
      'CustomResourceDefinition',
      'CustomResourceDefinition',
      'Deployment',
      'MutatingWebhookConfiguration',
      'PodDisruptionBudget',
      'Role',
      'Role',
      'RoleBinding',
      'RoleBinding',
      'Service',
      'ServiceAccount',
      'ValidatingAdmissionPolicy',
      'ValidatingAdmissionPolicy',
      'ValidatingAdmissionPolicyBinding',
      'ValidatingAdmissionPolicyBinding',
      'ValidatingWebhookConfiguration',
    ]);
    const dry = await cluster.kubectl(['apply', '--dry-run=server', '-f', '-'], {
      input: r.stdout,
    });
    expect(dry.stderr).toBe('');
    expect(dry.code).toBe(0);
  });

  test('networkPolicy (off by default): per MCP namespace, only the sidecar ports, accepted by the API server', async () => {
    await expectOffByDefault('templates/networkpolicy.yaml');
    const docs = await renderChart(['templates/networkpolicy.yaml'], workDir, [
      'networkPolicy.enabled=true',
      `sidecarRBAC.namespaces[0].name=${NS}`,
      'sidecarRBAC.namespaces[0].allServiceAccounts=true',
      'networkPolicy.extraIngress[0].ports[0].port=9100',
    ]);
    expect(docs).toHaveLength(1);
    expect(docs[0]).toMatchObject({
      kind: 'NetworkPolicy',
      metadata: { namespace: NS },
      spec: {
        podSelector: { matchLabels: { 'mcpwarden.io/inject': 'true' } },
        policyTypes: ['Ingress'],
        ingress: [
          { ports: [{ protocol: 'TCP', port: Sidecar.proxyPort }] },
          { ports: [{ protocol: 'TCP', port: Sidecar.adminPort }] },
          { ports: [{ port: 9100 }] },
        ],
      },
    });
    const dry = await cluster.kubectl(['apply', '--dry-run=server', '-f', '-'], {
      input: docs.map((d) => JSON.stringify(d)).join('\n'),
    });
    expect(dry.stderr).toBe('');
    expect(dry.code).toBe(0);
  });

  test('webhook configuration: fail closed, short timeout, selectors, reinvocation, dry-run aware', async () => {
    const [mutating] = await renderChart(['templates/webhooks.yaml'], workDir);
    if (mutating === undefined) throw new Error('webhooks.yaml rendered nothing');
    const inject = (mutating['webhooks'] as Array<Record<string, unknown>>)[0]!;
    expect(inject).toMatchObject({
      name: 'inject.mcpwarden.io',
      failurePolicy: 'Fail',
      timeoutSeconds: 5,
      reinvocationPolicy: 'IfNeeded',
      sideEffects: 'NoneOnDryRun',
      objectSelector: { matchLabels: { 'mcpwarden.io/inject': 'true' } },
      namespaceSelector: {
        matchExpressions: [
          { key: 'mcpwarden.io/injection', operator: 'NotIn', values: ['disabled'] },
          {
            key: 'kubernetes.io/metadata.name',
            operator: 'NotIn',
            values: ['kube-system', 'kube-public', 'kube-node-lease'],
          },
        ],
      },
    });
  });

  test('monitoring: the dashboard and rules come from the chart files; the monitors select the sidecars and the webhook', async () => {
    const docs = await renderChart(['templates/monitoring.yaml', 'templates/service.yaml'], workDir, [
      'monitoring.dashboard.enabled=true',
      'monitoring.prometheusRule.enabled=true',
      'monitoring.podMonitor.enabled=true',
      'monitoring.serviceMonitor.enabled=true',
    ]);
    const byKind = <T>(kind: string): T => docs.find((d) => d['kind'] === kind) as T;
    type Labelled = { metadata: { labels: Record<string, string> } };
    const dashboard = byKind<Labelled & { data: Record<string, string> }>('ConfigMap');
    expect(dashboard.metadata.labels['grafana_dashboard']).toBe('1');
    expect(JSON.parse(dashboard.data['mcp-warden.json']!)).toEqual(
      JSON.parse(await readFile(join(CHART, 'dashboards', 'mcp-warden.json'), 'utf8')),
    );
    expect(byKind<{ spec: unknown }>('PrometheusRule').spec).toEqual(
      parseYaml(await readFile(join(CHART, 'prometheus', 'alerts.yaml'), 'utf8')),
    );
    // The PodMonitor scrapes the port the injector gives the sidecar's admin server.
    const pods = byKind<{
      spec: {
        podMetricsEndpoints: Array<{ port: string }>;
        selector: { matchLabels: Record<string, string> };
        namespaceSelector: unknown;
      };
    }>('PodMonitor').spec;
    expect(pods.podMetricsEndpoints[0]!.port).toBe(Sidecar.adminPortName);
    expect(pods.selector.matchLabels).toEqual({ 'mcpwarden.io/inject': 'true' });
    expect(pods.namespaceSelector).toEqual({ any: true });
    // The ServiceMonitor's selector matches the webhook Service, and its port exists there.
    const svc = byKind<Labelled & { spec: { ports: Array<{ name: string }> } }>('Service');
    const sm = byKind<{
      spec: { selector: { matchLabels: Record<string, string> }; endpoints: Array<{ port: string }> };
    }>('ServiceMonitor').spec;
    for (const [k, v] of Object.entries(sm.selector.matchLabels)) expect(svc.metadata.labels[k]).toBe(v);
    expect(svc.spec.ports.map((p) => p.name)).toContain(sm.endpoints[0]!.port);
    // Off by default: a plain install renders none of them.
    await expectOffByDefault('templates/monitoring.yaml');
  });

  test('cert-manager mode: a Certificate, the mounted secret, --cert-dir, and no secret creation right', async () => {
    const docs = await renderChart(
      [
        'templates/certmanager.yaml',
        'templates/deployment.yaml',
        'templates/rbac-webhook.yaml',
        'templates/webhooks.yaml',
      ],
      workDir,
      ['certManager.enabled=true'],
    );
    const kinds = docs.map((d) => d['kind']);
    expect(kinds).toContain('Certificate');
    expect(kinds).toContain('Issuer');
    const text = JSON.stringify(docs);
    expect(text).toContain('--cert-dir=/etc/mcp-warden/tls');
    expect(text).toContain('cert-manager.io/inject-ca-from');
    const role = docs.find((d) => d['kind'] === 'Role') as {
      rules: Array<{ resources: string[]; verbs: string[] }>;
    };
    expect(role.rules.some((r) => r.resources.includes('secrets') && r.verbs.includes('create'))).toBe(false);
  });
});

describe('sidecar image allowlist narrowed after injection: re-submitted pods are checked again', () => {
  const labels = { app: 'github-mcp', 'mcpwarden.io/inject': 'true' };
  const create = (pod: unknown) =>
    cluster.kubectl(['create', '-n', NS, '-f', '-', '-o', 'json'], { input: JSON.stringify(pod), user: dev });
  const digest = (seed: string) => createHash('sha256').update(seed).digest('hex');
  /** The one digest-pinned reference the narrowed webhook allows besides its default image. */
  const allowedPin = `${SIDECAR_IMAGE}@sha256:${digest('allowed')}`;
  const otherPin = `${SIDECAR_IMAGE}@sha256:${digest('another build')}`;
  const oldTag = 'ghcr.io/mcp-warden/mcp-warden:0.0.9';

  beforeAll(async () => {
    // Injected while the webhook allows the default image's whole repository (its default list).
    expect(sidecars(await createPod(dev.client, NS, mcpPod('allow-src', labels)))).toBe(1);
    const oldPod = mcpPod('allow-old-src', labels);
    (oldPod.metadata as Record<string, unknown>)['annotations'] = { 'mcpwarden.io/sidecar-image': oldTag };
    expect(sidecars(await createPod(dev.client, NS, oldPod))).toBe(1);
    const copy = await create(await exported('allow-old-src', 'allow-old-copy'));
    expect(copy.stderr).toBe('');
    // The same webhook (its configurations, its serving certificate), restarted with a narrower list.
    await webhook.stop();
    webhook = await installWebhook(cluster, workDir, [
      '--status-interval',
      '500ms',
      '--allowed-sidecar-images',
      allowedPin,
    ]);
  }, 120_000);

  test('a pod injected with an image the list no longer allows is refused with the documented message', async () => {
    const r = await create(await exported('allow-old-src', 'allow-old-again'));
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain(
      `mcp-warden cannot inject this pod: annotation mcpwarden.io/sidecar-image: "${oldTag}" is not an ` +
        `allowed sidecar image (allowed: ${SIDECAR_IMAGE} (the default), ${allowedPin}). Remove the ` +
        `annotation to get the default sidecar, or ask the cluster admin to add the image to the ` +
        `webhook's --allowed-sidecar-images (chart value sidecar.allowedImages)`,
    );
    const gone = await cluster.kubectl(['get', 'pod', 'allow-old-again', '-n', NS], { user: dev });
    expect(gone.code).not.toBe(0);
  });

  test('the same pod with its sidecar image pinned to an allowed digest is accepted; another digest is refused', async () => {
    const pinned = await exported('allow-src', 'allow-pinned');
    sidecarOf(pinned).image = allowedPin;
    const ok = await create(pinned);
    expect(ok.stderr).toBe('');
    const stored = JSON.parse(ok.stdout) as V1Pod;
    expect(sidecarOf(stored).image).toBe(allowedPin);
    expect(
      [...(stored.spec?.initContainers ?? []), ...(stored.spec?.containers ?? [])].filter(
        (c) => c.name === 'mcp-warden',
      ),
    ).toHaveLength(1);

    const other = await exported('allow-src', 'allow-other-pin');
    sidecarOf(other).image = otherPin;
    const refused = await create(other);
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toContain(
      `the pod's mcp-warden container runs "${otherPin}", which is not an allowed sidecar image ` +
        `(allowed: ${SIDECAR_IMAGE} (the default), ${allowedPin})`,
    );
  });
});
