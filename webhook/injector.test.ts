import { spawnSync } from 'node:child_process';
import type { V1Container, V1Pod } from '@kubernetes/client-node';
import { isWardenError } from '../pkg/errors.js';
import { type InjectorConfig, injectPod, SIDECAR_NODE_OPTIONS } from './injector.js';
import { applyPatch } from './jsonpatch.js';

const config: InjectorConfig = {
  image: 'img:1',
  version: '0.1.0',
  nativeSidecars: true,
  resources: { cpuRequest: '50m', memoryRequest: '64Mi' },
};

function pod(annotations?: Record<string, string>, ports = [{ name: 'mcp', containerPort: 8080 }]): V1Pod {
  return {
    metadata: {
      name: 'p',
      labels: { 'mcpwarden.io/inject': 'true' },
      ...(annotations ? { annotations } : {}),
    },
    spec: { containers: [{ name: 'app', image: 'app:1', ports }] },
  };
}

function injected(p: V1Pod, cfg = config): { pod: V1Pod; sidecar: V1Container } {
  const r = injectPod(p, { namespace: 'agents', config: cfg });
  if (r.kind !== 'inject') throw new Error(`expected inject, got ${r.kind}`);
  const out = applyPatch(p, r.patch);
  const sidecar = [...(out.spec?.initContainers ?? []), ...(out.spec?.containers ?? [])].find(
    (c) => c.name === 'mcp-warden',
  );
  return { pod: out, sidecar: sidecar! };
}

function badRequest(p: V1Pod): string {
  try {
    injectPod(p, { namespace: 'agents', config });
  } catch (err) {
    if (isWardenError(err, 'ERR_BAD_REQUEST')) return err.message;
    throw err;
  }
  throw new Error('expected ERR_BAD_REQUEST');
}

test('native sidecar: first init container, restartPolicy Always, startup probe on admin /readyz', () => {
  const { pod: out, sidecar } = injected(pod());
  expect(out.spec?.initContainers?.[0]?.name).toBe('mcp-warden');
  expect(sidecar.restartPolicy).toBe('Always');
  expect(sidecar.startupProbe?.httpGet?.path).toBe('/readyz');
  expect(sidecar.startupProbe?.httpGet?.port).toBe(15090);
});

test('regular container on old API servers: first container, no restartPolicy, readiness probe', () => {
  const { pod: out, sidecar } = injected(pod(), { ...config, nativeSidecars: false });
  expect(out.spec?.containers[0]?.name).toBe('mcp-warden');
  expect(out.spec?.initContainers).toBeUndefined();
  expect(sidecar.restartPolicy).toBeUndefined();
  expect(sidecar.readinessProbe?.httpGet?.path).toBe('/readyz');
});

test('port-name takeover: sidecar serves under "mcp", app port renamed, upstream is the app port', () => {
  const { pod: out, sidecar } = injected(pod());
  expect(sidecar.ports?.find((p) => p.name === 'mcp')?.containerPort).toBe(15080);
  expect(out.spec?.containers[0]?.ports?.[0]).toEqual({ name: 'mcp-upstream', containerPort: 8080 });
  expect(sidecar.env?.find((e) => e.name === 'MCP_WARDEN_UPSTREAM')?.value).toBe('http://127.0.0.1:8080/mcp');
});

test('long port names are shortened to a valid IANA service name', () => {
  const { pod: out } = injected(
    pod({ 'mcpwarden.io/upstream-port': 'streamable-http' }, [
      { name: 'streamable-http', containerPort: 80 },
    ]),
  );
  const name = out.spec?.containers[0]?.ports?.[0]?.name ?? '';
  expect(name).toBe('streamable-h-up');
  expect(name.length).toBeLessThanOrEqual(15);
});

test('hardened securityContext and downward-API env', () => {
  const { sidecar } = injected(pod());
  expect(sidecar.securityContext).toMatchObject({
    runAsNonRoot: true,
    runAsUser: 65532,
    readOnlyRootFilesystem: true,
    allowPrivilegeEscalation: false,
    capabilities: { drop: ['ALL'] },
    seccompProfile: { type: 'RuntimeDefault' },
  });
  const field = (n: string) => sidecar.env?.find((e) => e.name === n)?.valueFrom?.fieldRef?.fieldPath;
  expect(field('MCP_WARDEN_POD_NAME')).toBe('metadata.name');
  expect(field('MCP_WARDEN_POD_NAMESPACE')).toBe('metadata.namespace');
  expect(field('MCP_WARDEN_POD_UID')).toBe('metadata.uid');
});

test('NODE_OPTIONS caps the young generation, and node accepts it from the environment', () => {
  const { sidecar } = injected(pod());
  const value = sidecar.env?.find((e) => e.name === 'NODE_OPTIONS')?.value;
  expect(value).toBe(SIDECAR_NODE_OPTIONS);
  const semi = /--max-semi-space-size=(\d+)/.exec(value ?? '');
  expect(semi).not.toBeNull();
  // Not every V8 flag is allowed in NODE_OPTIONS (node refuses to start on one that is not): run
  // node with the injected value and read the new space's size (two semi-spaces at most).
  const { HOME, PATH } = process.env;
  const run = spawnSync(
    process.execPath,
    [
      '-e',
      "process.stdout.write(String(require('v8').getHeapSpaceStatistics().find((s) => s.space_name === 'new_space').space_size))",
    ],
    { env: { HOME, PATH, NODE_OPTIONS: value }, encoding: 'utf8' },
  );
  expect(run.stderr).toBe('');
  expect(run.status).toBe(0);
  expect(Number(run.stdout)).toBeGreaterThan(0);
  expect(Number(run.stdout)).toBeLessThanOrEqual(2 * Number(semi?.[1]) * 1024 * 1024);
});

test('status annotation carries version and a hash that changes with the injected spec', () => {
  const a = injectPod(pod(), { namespace: 'agents', config });
  const b = injectPod(pod(), { namespace: 'agents', config: { ...config, image: 'img:2' } });
  if (a.kind !== 'inject' || b.kind !== 'inject') throw new Error('expected inject');
  expect(a.status.version).toBe('0.1.0');
  expect(a.status.hash).toMatch(/^[0-9a-f]{16}$/);
  expect(a.status.hash).not.toBe(b.status.hash);
  const out = applyPatch(pod(), a.patch);
  expect(JSON.parse(out.metadata?.annotations?.['mcpwarden.io/status'] ?? '{}')).toEqual(a.status);
});

test('injection clears a skip-reason left by an earlier skipped attempt', () => {
  const { pod: out } = injected(pod({ 'mcpwarden.io/skip-reason': 'no_mcp_port' }));
  expect(out.metadata?.annotations?.['mcpwarden.io/skip-reason']).toBeUndefined();
});

test('mcpwarden.io/upstream-timeout becomes the sidecar env MCP_WARDEN_UPSTREAM_TIMEOUT; absent, none', () => {
  const env = (p: V1Pod) =>
    injected(p).sidecar.env?.find((e) => e.name === 'MCP_WARDEN_UPSTREAM_TIMEOUT')?.value;
  expect(env(pod({ 'mcpwarden.io/upstream-timeout': '15m' }))).toBe('15m');
  expect(env(pod())).toBeUndefined();
  expect(badRequest(pod({ 'mcpwarden.io/upstream-timeout': 'soon' }))).toMatch(
    /mcpwarden.io\/upstream-timeout/,
  );
  expect(badRequest(pod({ 'mcpwarden.io/upstream-timeout': '500h' }))).toMatch(
    /mcpwarden.io\/upstream-timeout/,
  );
});

test('mcpwarden.io/request-timeout becomes the sidecar env MCP_WARDEN_REQUEST_TIMEOUT; absent, none', () => {
  const env = (p: V1Pod) =>
    injected(p).sidecar.env?.find((e) => e.name === 'MCP_WARDEN_REQUEST_TIMEOUT')?.value;
  expect(env(pod({ 'mcpwarden.io/request-timeout': '2m' }))).toBe('2m');
  expect(env(pod())).toBeUndefined();
  expect(badRequest(pod({ 'mcpwarden.io/request-timeout': 'later' }))).toMatch(
    /mcpwarden.io\/request-timeout/,
  );
});

test('mcpwarden.io/allowed-origins becomes MCP_WARDEN_ALLOWED_ORIGINS; a value that is not a list of origins is refused', () => {
  const env = (p: V1Pod) =>
    injected(p).sidecar.env?.find((e) => e.name === 'MCP_WARDEN_ALLOWED_ORIGINS')?.value;
  expect(env(pod({ 'mcpwarden.io/allowed-origins': 'https://agents.example.com' }))).toBe(
    'https://agents.example.com',
  );
  expect(env(pod())).toBeUndefined();
  expect(badRequest(pod({ 'mcpwarden.io/allowed-origins': '*' }))).toMatch(
    /mcpwarden.io\/allowed-origins.*not an origin/,
  );
});

test('malformed annotations are refused with a message naming the annotation', () => {
  expect(badRequest(pod({ 'mcpwarden.io/cpu-limit': 'lots' }))).toMatch(/mcpwarden.io\/cpu-limit.*quantity/);
  expect(badRequest(pod({ 'mcpwarden.io/transport': 'websocket' }))).toMatch(/mcpwarden.io\/transport/);
  expect(badRequest(pod({ 'mcpwarden.io/upstream-port': '70000' }))).toMatch(/upstream-port.*not a port/);
  expect(badRequest(pod({ 'mcpwarden.io/upstream-port': 'grpc' }))).toMatch(
    /no TCP container port is named "grpc"/,
  );
  expect(badRequest(pod({ 'mcpwarden.io/recordings-volume': 'nope' }))).toMatch(/no volume named "nope"/);
  expect(badRequest(pod({ 'mcpwarden.io/mcp-path': 'relative' }))).toMatch(/mcp-path/);
  expect(badRequest(pod({ 'mcpwarden.io/sidecar-image': 'a b' }))).toMatch(/sidecar-image/);
});

test('pods that claim the reserved ports or volume names are not injected', () => {
  const r = injectPod(pod(undefined, [{ name: 'mcp', containerPort: 15080 }]), {
    namespace: 'agents',
    config,
  });
  expect(r.kind === 'skip' && r.reason).toBe('port_conflict');
  const p = pod();
  p.spec!.volumes = [{ name: 'mcp-warden-token', emptyDir: {} }];
  expect(badRequest(p)).toMatch(/reserved for mcp-warden/);
});

test('a pod without metadata.annotations or metadata gets them created', () => {
  const p: V1Pod = { spec: { containers: [{ name: 'a', ports: [{ containerPort: 1 }] }] } };
  const r = injectPod(
    { ...p, metadata: { labels: { 'mcpwarden.io/inject': 'true' } } },
    { namespace: 'x', config },
  );
  expect(r.patch.at(-1)).toMatchObject({ op: 'add', path: '/metadata/annotations' });
});

test('UDP ports are never the MCP port', () => {
  const r = injectPod(pod(undefined, [{ name: 'dns', containerPort: 53, protocol: 'UDP' } as never]), {
    namespace: 'agents',
    config,
  });
  expect(r.kind === 'skip' && r.reason).toBe('no_mcp_port');
});
