import { X509Certificate } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from 'node:tls';
import { type Cluster, type ClusterUser, startCluster, waitForObject } from './harness.js';
import {
  applyDocs,
  freePort,
  renderChart,
  startWebhookProcess,
  WEBHOOK_NS,
  type WebhookProcess,
  webhookConfigsByUrl,
} from './webhook-helpers.js';

/**
 * Serving-certificate rotation on a real kube-apiserver with two webhook replicas: short lifetimes
 * make the serving certificate rotate every few seconds and the CA rotate once; pods are created in
 * a loop the whole time and every single one must come back injected. The API server calls the
 * *follower* replica, so the certificate it sees is the one the follower reloaded from the Secret
 * the leader wrote.
 */
let cluster: Cluster;
let workDir: string;
let leader: WebhookProcess;
let follower: WebhookProcess;
let dev: ClusterUser;
const NS = 'agents';

const fastRotation = [
  '--ca-lifetime',
  '36s',
  '--cert-lifetime',
  '12s',
  '--ca-propagation',
  '2s',
  '--rotation-check-interval',
  '250ms',
  '--reload-interval',
  '250ms',
  '--lease-duration',
  '4s',
];

interface SecretObject {
  metadata?: { resourceVersion?: string };
  data: Record<string, string>;
}

const decode = (s: string | undefined) => Buffer.from(s ?? '', 'base64').toString('utf8');
const pems = (bundle: string) =>
  bundle.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n?/g) ?? [];

function secretOf(s: SecretObject): { bundle: string[]; serving: X509Certificate; resourceVersion: string } {
  return {
    bundle: pems(decode(s.data['ca.crt'])),
    serving: new X509Certificate(decode(s.data['tls.crt'])),
    resourceVersion: s.metadata?.resourceVersion ?? '',
  };
}

async function readSecret(): Promise<{
  bundle: string[];
  serving: X509Certificate;
  resourceVersion: string;
}> {
  return secretOf(
    await cluster.admin.client.request<SecretObject>(
      'GET',
      `/api/v1/namespaces/${WEBHOOK_NS}/secrets/mcp-warden-webhook-tls`,
    ),
  );
}

/** Fingerprint of the certificate a TLS server presents (handshake without verification: we only look). */
function presented(url: string): Promise<string> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = connect({ host: u.hostname, port: Number(u.port), rejectUnauthorized: false }, () => {
      const fp = socket.getPeerX509Certificate()?.fingerprint256 ?? '';
      socket.end();
      resolve(fp);
    });
    socket.once('error', reject);
  });
}

beforeAll(async () => {
  workDir = await mkdtemp(join(tmpdir(), 'mcp-warden-rotation-e2e-'));
  cluster = await startCluster();
  await cluster.createNamespace(WEBHOOK_NS);
  await cluster.createNamespace(NS);
  await applyDocs(
    cluster,
    await renderChart(['templates/serviceaccount.yaml', 'templates/rbac-webhook.yaml'], workDir),
  );
  const sa = await cluster.serviceAccountUser(WEBHOOK_NS, 'mcp-warden-webhook');
  dev = await cluster.user('dev', ['developers']);
  await applyDocs(cluster, [
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'Role',
      metadata: { name: 'pod-author', namespace: NS },
      rules: [{ apiGroups: [''], resources: ['pods'], verbs: ['create'] }],
    },
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'RoleBinding',
      metadata: { name: 'dev-edit', namespace: NS },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'pod-author' },
      subjects: [{ apiGroup: 'rbac.authorization.k8s.io', kind: 'Group', name: 'developers' }],
    },
  ]);

  leader = await startWebhookProcess({
    workDir,
    kubeconfig: sa.kubeconfigPath,
    port: await freePort(),
    identity: 'replica-a',
    args: fastRotation,
  });
  const followerPort = await freePort();
  follower = await startWebhookProcess({
    workDir,
    kubeconfig: sa.kubeconfigPath,
    port: followerPort,
    identity: 'replica-b',
    args: fastRotation,
  });
  await applyDocs(cluster, await webhookConfigsByUrl(followerPort, workDir));
  await waitForObject(
    cluster.admin.client,
    '/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations',
    'mcp-warden',
    (o) =>
      ((o as { webhooks?: Array<{ clientConfig?: { caBundle?: string } }> }).webhooks ?? []).every(
        (w) => !!w.clientConfig?.caBundle,
      ),
  );
}, 240_000);

afterAll(async () => {
  await follower?.stop();
  await leader?.stop();
  await cluster?.stop();
  if (workDir) await rm(workDir, { recursive: true, force: true });
});

test('exactly one replica holds the Lease and writes', async () => {
  const lease = await cluster.admin.client.request<{ spec: { holderIdentity: string } }>(
    'GET',
    `/apis/coordination.k8s.io/v1/namespaces/${WEBHOOK_NS}/leases/mcp-warden-webhook`,
  );
  expect(lease.spec.holderIdentity).toBe('replica-a');
  expect(leader.log()).toMatch(/certificates reconciled/);
  expect(follower.log()).not.toMatch(/certificates reconciled/);
});

test('pods are injected throughout serving-cert and CA rotation; the follower serves what the leader wrote', async () => {
  const first = await readSecret();
  const fingerprint = (pem: string) => new X509Certificate(pem).fingerprint256;
  // CAs are compared by fingerprint, not PEM text: a rewrite may re-encode the same certificate.
  const firstCa = fingerprint(first.bundle[0]!);
  const servingSeen = new Set<string>([first.serving.fingerprint256]);
  let sawOverlap = false;
  let switchedToNewCa = false;
  let created = 0;
  const failures: string[] = [];
  // What each version held, for a failure message: short CA and serving fingerprints.
  const short = (fp: string) => fp.replace(/:/g, '').slice(0, 8);
  const history: string[] = [];
  // Every version of the secret is seen through a watch (the CA overlap lasts --ca-propagation,
  // 2 s: polling it, even every 100 ms, missed it on a busy machine).
  const see = (now: { bundle: string[]; serving: X509Certificate }): void => {
    const cas = now.bundle.map(fingerprint);
    servingSeen.add(now.serving.fingerprint256);
    history.push(`bundle=[${cas.map(short).join(',')}] serving=${short(now.serving.fingerprint256)}`);
    if (cas.length >= 2 && cas.includes(firstCa)) sawOverlap = true;
    if (cas[0] !== firstCa && now.serving.checkIssued(new X509Certificate(now.bundle[0]!))) {
      switchedToNewCa = true;
    }
  };
  const stopWatching = new AbortController();
  const observer = cluster.admin.client
    .watch(
      `/api/v1/namespaces/${WEBHOOK_NS}/secrets`,
      {
        query: {
          fieldSelector: 'metadata.name=mcp-warden-webhook-tls',
          resourceVersion: first.resourceVersion,
        },
        signal: stopWatching.signal,
      },
      (ev) => {
        if (ev.type === 'ADDED' || ev.type === 'MODIFIED')
          see(secretOf(ev.object as unknown as SecretObject));
      },
    )
    .then(
      () => history.push('watch ended'),
      (err: Error) => history.push(`watch failed: ${err.message}`),
    );
  const deadline = Date.now() + 90_000;
  while (Date.now() < deadline && failures.length < 5 && !(switchedToNewCa && servingSeen.size >= 4)) {
    const name = `rot-${created}`;
    try {
      const pod = await dev.client.request<{ spec: { initContainers?: Array<{ name: string }> } }>(
        'POST',
        `/api/v1/namespaces/${NS}/pods`,
        {
          body: {
            apiVersion: 'v1',
            kind: 'Pod',
            metadata: { name, labels: { 'mcpwarden.io/inject': 'true' } },
            spec: { containers: [{ name: 's', image: 'x', ports: [{ name: 'mcp', containerPort: 8080 }] }] },
          },
        },
      );
      if (pod.spec.initContainers?.[0]?.name !== 'mcp-warden') failures.push(`${name}: not injected`);
    } catch (err) {
      failures.push(`${name}: ${(err as Error).message}`);
    }
    created++;
  }
  stopWatching.abort();
  await observer;
  expect(failures).toEqual([]);
  expect(created).toBeGreaterThan(20);
  expect({
    sawOverlap,
    switchedToNewCa,
    firstCa: short(firstCa),
    history,
  }).toMatchObject({
    sawOverlap: true,
    switchedToNewCa: true,
  });
  expect(servingSeen.size).toBeGreaterThanOrEqual(4);

  // The caBundle in both configurations is the Secret's bundle, old CA still in it during overlap.
  const secret = await readSecret();
  const bundle = Buffer.from(secret.bundle.join('')).toString('base64');
  for (const kind of ['mutatingwebhookconfigurations', 'validatingwebhookconfigurations']) {
    const cfg = await cluster.admin.client.request<{
      webhooks: Array<{ clientConfig: { caBundle: string } }>;
    }>('GET', `/apis/admissionregistration.k8s.io/v1/${kind}/mcp-warden`);
    for (const w of cfg.webhooks) expect(w.clientConfig.caBundle).toBe(bundle);
  }
  // Both replicas present the Secret's current certificate: each reloads it within one poll
  // (250 ms); the certificate may rotate meanwhile, so compare against a fresh read each time.
  const servesSecret = async (url: string) => {
    for (let i = 0; i < 40; i++) {
      const [fp, now] = await Promise.all([presented(url), readSecret()]);
      if (fp === now.serving.fingerprint256) return true;
      await new Promise((r) => setTimeout(r, 100));
    }
    return false;
  };
  expect(await servesSecret(follower.url)).toBe(true);
  expect(await servesSecret(leader.url)).toBe(true);
  // The expiry metric follows the certificate.
  const metrics = await (await fetch(`${follower.admin}/metrics`)).text();
  const expiry = Number(/mcp_warden_webhook_cert_expiry_timestamp_seconds (\d+)/.exec(metrics)?.[1]);
  expect(expiry).toBeGreaterThan(Date.now() / 1000);
}, 150_000);

test('when the leader stops it releases the Lease; the follower takes over the writes and keeps serving', async () => {
  await leader.stop();
  await waitForObject<{ metadata: { name: string }; spec?: { holderIdentity?: string } }>(
    cluster.admin.client,
    `/apis/coordination.k8s.io/v1/namespaces/${WEBHOOK_NS}/leases`,
    'mcp-warden-webhook',
    (l) => l.spec?.holderIdentity === 'replica-b',
    15_000,
  );
  // The new leader reconciles (the serving certificate rotates every few seconds here).
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`no reconcile by replica-b:\n${follower.log()}`)),
      30_000,
    );
    const check = () => {
      if (/certificates reconciled/.test(follower.log())) {
        clearTimeout(timer);
        follower.child.stderr?.off('data', check);
        resolve();
      }
    };
    follower.child.stderr?.on('data', check);
    check();
  });
  const pod = await dev.client.request<{ spec: { initContainers?: Array<{ name: string }> } }>(
    'POST',
    `/api/v1/namespaces/${NS}/pods`,
    {
      body: {
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: { name: 'after-failover', labels: { 'mcpwarden.io/inject': 'true' } },
        spec: { containers: [{ name: 's', image: 'x', ports: [{ name: 'mcp', containerPort: 8080 }] }] },
      },
    },
  );
  expect(pod.spec.initContainers?.[0]?.name).toBe('mcp-warden');
}, 60_000);
