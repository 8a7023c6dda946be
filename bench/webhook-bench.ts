/**
 * Admission-webhook latency: p50/p99 of pod creation through a real kube-apiserver (the e2e
 * harness: etcd + kube-apiserver on loopback, built by `make k8s-tools`), first without any
 * webhook, then with mcp-warden's injecting webhook registered (the real admission app over
 * HTTPS with a generated CA, `failurePolicy: Fail`). Every pod of the second run is checked to
 * have been injected. Prints one JSON line (WebhookBenchResult); `pending` says why when the
 * Kubernetes binaries are missing.
 *
 * Usage: node dist/bench/webhook-bench.js [--pods 100]
 */
import { existsSync, symlinkSync } from 'node:fs';
import { createServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import forge from 'node-forge';
import { createLogger } from '../pkg/log.js';
import { createMetrics } from '../pkg/metrics/catalogue.js';
import { validatePolicy } from '../pkg/policy/index.js';
import { type Cluster, requireTools, startCluster, TOOLS_DIR } from '../test/e2e/harness.js';
import { createAdmissionApp } from '../webhook/admission.js';
import { Annotations, Labels } from '../webhook/constants.js';
import { defaultResources } from '../webhook/injector.js';
import type { WebhookBenchResult } from './report.js';

const root = resolve(fileURLToPath(import.meta.url), '../../..');

/**
 * A throw-away CA and a 127.0.0.1 serving certificate. (Built here rather than with
 * webhook/tls.ts, whose CA common name carries an '@' that Go's x509 refuses in a
 * PrintableString: the API server then cannot load the caBundle. Reported to its owner.)
 */
function certificates(): { caPem: string; certPem: string; keyPem: string } {
  const make = (
    cn: string,
    keys: forge.pki.rsa.KeyPair,
    issuer: forge.pki.Certificate | undefined,
    signer: forge.pki.rsa.PrivateKey,
  ) => {
    const cert = forge.pki.createCertificate();
    cert.publicKey = keys.publicKey;
    cert.serialNumber = `0${forge.util.bytesToHex(forge.random.getBytesSync(8))}`;
    cert.validity.notBefore = new Date(Date.now() - 60_000);
    cert.validity.notAfter = new Date(Date.now() + 24 * 3600_000);
    cert.setSubject([{ name: 'commonName', value: cn }]);
    cert.setIssuer(issuer === undefined ? [{ name: 'commonName', value: cn }] : issuer.subject.attributes);
    cert.setExtensions(
      issuer === undefined
        ? [
            { name: 'basicConstraints', cA: true, critical: true },
            { name: 'keyUsage', keyCertSign: true, digitalSignature: true, critical: true },
          ]
        : [
            { name: 'basicConstraints', cA: false },
            { name: 'extKeyUsage', serverAuth: true },
            { name: 'subjectAltName', altNames: [{ type: 7, ip: '127.0.0.1' }] },
          ],
    );
    cert.sign(signer, forge.md.sha256.create());
    return cert;
  };
  const caKeys = forge.pki.rsa.generateKeyPair(2048);
  const ca = make('bench-webhook-ca', caKeys, undefined, caKeys.privateKey);
  const leafKeys = forge.pki.rsa.generateKeyPair(2048);
  const leaf = make('127.0.0.1', leafKeys, ca, caKeys.privateKey);
  return {
    caPem: forge.pki.certificateToPem(ca),
    certPem: forge.pki.certificateToPem(leaf),
    keyPem: forge.pki.privateKeyToPem(leafKeys.privateKey),
  };
}

function stats(ms: number[]): { p50: number; p99: number; n: number } {
  const s = [...ms].sort((a, b) => a - b);
  const at = (p: number) =>
    s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))] ?? Number.NaN;
  const r = (v: number) => Math.round(v * 100) / 100;
  return { p50: r(at(50)), p99: r(at(99)), n: s.length };
}

function pod(name: string): Record<string, unknown> {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, labels: { app: 'bench-mcp', [Labels.inject]: 'true' } },
    spec: {
      containers: [
        { name: 'mcp', image: 'example.test/mcp-server:1', ports: [{ name: 'mcp', containerPort: 3000 }] },
      ],
    },
  };
}

interface CreatedPod {
  metadata?: { annotations?: Record<string, string> };
  spec?: { initContainers?: Array<{ name: string }>; containers?: Array<{ name: string }> };
}

async function createPods(
  cluster: Cluster,
  ns: string,
  prefix: string,
  n: number,
  expectInjected: boolean,
): Promise<number[]> {
  const times: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    const created = await cluster.admin.client.request<CreatedPod>('POST', `/api/v1/namespaces/${ns}/pods`, {
      body: pod(`${prefix}-${i}`),
    });
    times.push(performance.now() - t0);
    const injected = created.metadata?.annotations?.[Annotations.status] !== undefined;
    if (injected !== expectInjected)
      throw new Error(`pod ${prefix}-${i}: expected injected=${expectInjected}, got ${injected}`);
  }
  return times;
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { pods: { type: 'string', default: '100' } } });
  const pods = Number(values.pods);
  if (!Number.isInteger(pods) || pods < 1 || pods > 2000)
    throw new Error('--pods must be an integer in [1, 2000]');
  // The harness finds the binaries relative to its own file; compiled, that is dist/: link it.
  const built = join(root, '.cache');
  if (!existsSync(resolve(TOOLS_DIR, '..')) && existsSync(built))
    symlinkSync(built, resolve(TOOLS_DIR, '..'));
  try {
    requireTools();
  } catch (err) {
    const result: WebhookBenchResult = {
      pending: `pending: ${err instanceof Error ? err.message : String(err)}`,
    };
    process.stdout.write(`${JSON.stringify(result)}\n`);
    return;
  }

  const cluster = await startCluster({ crds: false });
  const tls = certificates();
  const logger = createLogger('webhook-bench');
  logger.level = 'warn';
  const app = createAdmissionApp({
    injector: {
      image: 'example.test/mcp-warden:bench',
      version: '0.1.0',
      nativeSidecars: true,
      resources: { ...defaultResources },
    },
    validatePolicy,
    metrics: createMetrics({ defaultMetrics: false }),
    logger,
  });
  const https = createServer({ cert: tls.certPem, key: tls.keyPem }, app);
  await new Promise<void>((r) => https.listen(0, '127.0.0.1', r));
  const port = (https.address() as AddressInfo).port;
  try {
    await cluster.createNamespace('bench');
    await createPods(cluster, 'bench', 'warm-plain', 5, false);
    const without = await createPods(cluster, 'bench', 'plain', pods, false);

    await cluster.admin.client.request(
      'POST',
      '/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations',
      {
        body: {
          apiVersion: 'admissionregistration.k8s.io/v1',
          kind: 'MutatingWebhookConfiguration',
          metadata: { name: 'mcp-warden-bench' },
          webhooks: [
            {
              name: 'inject.mcpwarden.io',
              clientConfig: {
                url: `https://127.0.0.1:${port}/inject`,
                caBundle: Buffer.from(tls.caPem).toString('base64'),
              },
              rules: [{ operations: ['CREATE'], apiGroups: [''], apiVersions: ['v1'], resources: ['pods'] }],
              objectSelector: { matchLabels: { [Labels.inject]: 'true' } },
              sideEffects: 'None',
              admissionReviewVersions: ['v1'],
              failurePolicy: 'Fail',
              reinvocationPolicy: 'IfNeeded',
              timeoutSeconds: 10,
            },
          ],
        },
      },
    );
    // The API server picks the configuration up asynchronously: wait for the first injected pod.
    const deadline = Date.now() + 30_000;
    for (let i = 0; ; i++) {
      const created = await cluster.admin.client.request<CreatedPod>(
        'POST',
        '/api/v1/namespaces/bench/pods',
        { body: pod(`probe-${i}`) },
      );
      if (created.metadata?.annotations?.[Annotations.status] !== undefined) break;
      if (Date.now() > deadline) throw new Error('the webhook was never called within 30 s');
      await new Promise((r) => setTimeout(r, 100));
    }
    await createPods(cluster, 'bench', 'warm-injected', 5, true);
    const withWebhook = await createPods(cluster, 'bench', 'injected', pods, true);
    const result: WebhookBenchResult = { pods, without: stats(without), with: stats(withWebhook) };
    process.stdout.write(`${JSON.stringify(result)}\n`);
  } finally {
    https.closeAllConnections();
    await new Promise<void>((r) => https.close(() => r()));
    await cluster.stop();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`webhook-bench: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exitCode = 1;
});
