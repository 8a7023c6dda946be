import { EventEmitter } from 'node:events';
import { request } from 'node:https';
import type { PeerCertificate, TLSSocket } from 'node:tls';
import { createLogger } from '../pkg/log.js';
import { createMetrics } from '../pkg/metrics/catalogue.js';
import { createAdmissionApp } from './admission.js';
import { type InjectorConfig, injectPod } from './injector.js';
import { applyPatch, type PatchOperation } from './jsonpatch.js';
import type { AdmissionResponse } from './review.js';
import { type CertSource, type ServingCert, startHttpsServer } from './serving.js';
import { certInfo, createCA, issueServingCert } from './tls.js';

const logger = createLogger('admission-test');
const injector: InjectorConfig = {
  image: 'img:1',
  version: '0.1.0',
  nativeSidecars: true,
  resources: { cpuRequest: '50m', memoryRequest: '64Mi' },
};
const ca = createCA({ commonName: 'test', lifetimeMs: 3600_000 });

function serving(): ServingCert {
  const c = issueServingCert(ca, { dnsNames: ['127.0.0.1'], lifetimeMs: 600_000 });
  return { cert: c.certPem, key: c.keyPem, notAfter: certInfo(c.certPem).notAfter };
}

/** A CertSource the test drives by hand (the Secret- and file-backed ones poll the same way). */
function manualSource(first: ServingCert): CertSource & { set(c: ServingCert): void } {
  const events = new EventEmitter();
  let current = first;
  return {
    current: () => current,
    ready: async () => current,
    refresh: async () => {},
    on: (e, l) => void events.on(e, l),
    close: () => events.removeAllListeners(),
    set(c) {
      current = c;
      events.emit('change', c);
    },
  };
}

const metrics = createMetrics({ defaultMetrics: false });
const events: Array<{ namespace: string; pod: string; reason: string }> = [];
const source = manualSource(serving());
let server: Awaited<ReturnType<typeof startHttpsServer>>;

beforeAll(async () => {
  const app = createAdmissionApp({
    injector,
    validatePolicy: (doc) =>
      (doc as { spec?: { mode?: string } }).spec?.mode === 'enforce'
        ? []
        : [{ path: 'spec.mode', message: 'must be enforce or audit' }],
    metrics,
    logger,
    namespaceLabels: async (ns): Promise<Record<string, string>> =>
      ns === 'sandbox' ? { 'mcpwarden.io/injection': 'disabled' } : {},
    emitSkipEvent: (e) => events.push(e),
  });
  server = await startHttpsServer({ host: '127.0.0.1', port: 0, handler: app, source, logger });
});
afterAll(async () => {
  await server.close();
});

async function post(
  path: string,
  body: string,
): Promise<{ status: number; json: unknown; peer: PeerCertificate }> {
  return new Promise((resolve, reject) => {
    const req = request(
      `${server.url}${path}`,
      { method: 'POST', ca: ca.certPem, agent: false, headers: { 'content-type': 'application/json' } },
      (res) => {
        const peer = (res.socket as TLSSocket).getPeerCertificate();
        let text = '';
        res.setEncoding('utf8').on('data', (c: string) => {
          text += c;
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, json: JSON.parse(text), peer }));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

async function review(path: string, request: Record<string, unknown>): Promise<AdmissionResponse> {
  const r = await post(
    path,
    JSON.stringify({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', request }),
  );
  expect(r.status).toBe(200);
  const out = r.json as { kind: string; response: AdmissionResponse };
  expect(out.kind).toBe('AdmissionReview');
  return out.response;
}

const pod = (labels: Record<string, string>, annotations?: Record<string, string>) => ({
  metadata: { name: 'p', labels, ...(annotations ? { annotations } : {}) },
  spec: { containers: [{ name: 'app', ports: [{ name: 'mcp', containerPort: 8080 }] }] },
});

const podReview = (object: unknown, extra: Record<string, unknown> = {}) => ({
  uid: 'uid-1',
  kind: { group: '', version: 'v1', kind: 'Pod' },
  operation: 'CREATE',
  namespace: 'agents',
  object,
  ...extra,
});

test('a labelled pod gets a base64 JSONPatch that adds the sidecar', async () => {
  const r = await review('/inject', podReview(pod({ 'mcpwarden.io/inject': 'true' })));
  expect(r.uid).toBe('uid-1');
  expect(r.allowed).toBe(true);
  expect(r.patchType).toBe('JSONPatch');
  const patch = JSON.parse(Buffer.from(r.patch ?? '', 'base64').toString()) as PatchOperation[];
  expect(patch.some((op) => op.op === 'add' && op.path === '/spec/initContainers')).toBe(true);
  const text = await metrics.registry.metrics();
  expect(text).toMatch(/mcp_warden_injections_total\{result="injected"\} 1/);
  expect(text).toMatch(
    /mcp_warden_admission_requests_total\{kind="Pod",operation="CREATE",result="injected"\} 1/,
  );
});

test('injection warnings reach the user as admission warnings; a hostPort on the MCP port is refused', async () => {
  const beside = pod({ 'mcpwarden.io/inject': 'true' }, { 'mcpwarden.io/upstream-port': '9000' });
  const r = await review('/inject', podReview(beside));
  expect(r.allowed).toBe(true);
  expect(r.warnings).toEqual([
    expect.stringMatching(/^mcp-warden: container "app" port "mcp" \(8080\) is not the MCP port/),
  ]);
  const hostPort = {
    ...pod({ 'mcpwarden.io/inject': 'true' }),
    spec: { containers: [{ name: 'app', ports: [{ name: 'mcp', containerPort: 8080, hostPort: 30080 }] }] },
  };
  const refused = await review('/inject', podReview(hostPort));
  expect(refused.allowed).toBe(false);
  expect(refused.status?.code).toBe(400);
  expect(refused.status?.message).toMatch(
    /^mcp-warden cannot inject this pod: container "app" port "mcp" \(8080\) is the MCP port and sets hostPort 30080/,
  );
});

test('an already-injected pod is allowed unchanged, with the warnings its verification gave', async () => {
  const own = {
    metadata: {
      name: 'p',
      labels: { 'mcpwarden.io/inject': 'true' },
      annotations: { 'mcpwarden.io/recordings-volume': 'audit' },
    },
    spec: {
      containers: [
        { name: 'app', ports: [{ name: 'mcp', containerPort: 8080 }] },
        { name: 'pruner', volumeMounts: [{ name: 'audit', mountPath: '/r' }] },
      ],
      volumes: [{ name: 'audit', emptyDir: {} }],
    },
  };
  const first = injectPod(own, { namespace: 'agents', config: injector });
  if (first.kind !== 'inject') throw new Error(`expected inject, got ${first.kind}`);
  const r = await review('/inject', podReview(applyPatch(own, first.patch)));
  expect(r.allowed).toBe(true);
  expect(r.patch).toBeUndefined();
  expect(r.warnings).toEqual([
    expect.stringMatching(/^mcp-warden: container "pruner" mounts the recordings volume "audit"/),
  ]);
  expect(await metrics.registry.metrics()).toMatch(
    /mcp_warden_injections_total\{result="already_injected"\} 1/,
  );
});

test('skips carry a warning, an annotation patch and an event (but no event on dry-run)', async () => {
  const hostNet = {
    ...pod({ 'mcpwarden.io/inject': 'true' }),
    spec: { hostNetwork: true, containers: [{ name: 'a' }] },
  };
  const r = await review('/inject', podReview(hostNet));
  expect(r.allowed).toBe(true);
  expect(r.warnings?.[0]).toMatch(/host_network_enabled/);
  expect(JSON.parse(Buffer.from(r.patch ?? '', 'base64').toString())).toEqual([
    {
      op: 'add',
      path: '/metadata/annotations',
      value: { 'mcpwarden.io/skip-reason': 'host_network_enabled' },
    },
  ]);
  expect(events).toEqual([
    { namespace: 'agents', pod: 'p', reason: 'host_network_enabled', message: expect.any(String) },
  ]);
  await review('/inject', podReview(hostNet, { dryRun: true }));
  expect(events).toHaveLength(1);
});

test('a namespace labelled injection=disabled (looked up) is never patched', async () => {
  const r = await review(
    '/inject',
    podReview(pod({ 'mcpwarden.io/inject': 'true' }), { namespace: 'sandbox' }),
  );
  expect(r.allowed).toBe(true);
  expect(r.patch).toBeUndefined();
  expect(events.at(-1)?.reason).toBe('namespace_excluded');
});

test('unlabelled pods and non-CREATE operations pass untouched', async () => {
  expect((await review('/inject', podReview(pod({})))).patch).toBeUndefined();
  const update = await review(
    '/inject',
    podReview(pod({ 'mcpwarden.io/inject': 'true' }), { operation: 'UPDATE' }),
  );
  expect(update.allowed).toBe(true);
  expect(update.patch).toBeUndefined();
});

test('a malformed override annotation refuses the pod with a message naming it', async () => {
  const r = await review(
    '/inject',
    podReview(pod({ 'mcpwarden.io/inject': 'true' }, { 'mcpwarden.io/memory-limit': 'big' })),
  );
  expect(r.allowed).toBe(false);
  expect(r.status?.code).toBe(400);
  expect(r.status?.message).toMatch(/mcpwarden.io\/memory-limit/);
});

test('MCPPolicy refusals name the field', async () => {
  const r = await review('/validate-mcppolicy', {
    uid: 'u2',
    operation: 'CREATE',
    object: { metadata: { name: 'p1' }, spec: { mode: 'sometimes' } },
  });
  expect(r.allowed).toBe(false);
  expect(r.status?.code).toBe(422);
  expect(r.status?.message).toBe('MCPPolicy p1 is invalid: spec.mode: must be enforce or audit');
  expect(r.status?.details?.causes?.[0]?.field).toBe('spec.mode');
});

test('bad bodies get a clear 4xx, never a crash', async () => {
  const garbage = await post('/inject', '{not json');
  expect(garbage.status).toBe(400);
  const notReview = await post('/inject', JSON.stringify({ kind: 'Pod' }));
  expect(notReview.status).toBe(400);
  expect((notReview.json as { error: string }).error).toMatch(/not an AdmissionReview/);
  const noUid = await post('/inject', JSON.stringify({ kind: 'AdmissionReview', request: {} }));
  expect((noUid.json as { error: string }).error).toMatch(/uid/);
  const big = await post(
    '/inject',
    JSON.stringify({ kind: 'AdmissionReview', pad: 'x'.repeat(9 * 1024 * 1024) }),
  );
  expect(big.status).toBe(413);
  expect((await post('/nope', '{}')).status).toBe(404);
  // Still serving.
  expect((await review('/inject', podReview(pod({})))).allowed).toBe(true);
});

test('a new serving certificate is picked up by new connections without a restart', async () => {
  const before = (await post('/inject', '{}')).peer.fingerprint256;
  const next = serving();
  source.set(next);
  const after = (await post('/inject', '{}')).peer.fingerprint256;
  expect(after).not.toBe(before);
  expect(after).toBe(certInfo(next.cert).fingerprint256);
});
