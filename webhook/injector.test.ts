import { spawnSync } from 'node:child_process';
import type { V1Container, V1Pod, V1Volume } from '@kubernetes/client-node';
import { isWardenError } from '../pkg/errors.js';
import { type InjectorConfig, injectPod, SIDECAR_NODE_OPTIONS } from './injector.js';
import { applyPatch } from './jsonpatch.js';
import { injectionHash } from './sidecar.js';

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

function refusal(p: V1Pod, cfg = config): string {
  try {
    injectPod(p, { namespace: 'agents', config: cfg });
  } catch (err) {
    if (isWardenError(err, 'ERR_BAD_REQUEST')) return err.message;
    throw err;
  }
  throw new Error('expected a refusal');
}

function app(out: V1Pod): V1Container {
  return out.spec!.containers.find((c) => c.name === 'app')!;
}

test('the projected token lives 3600 s, not 3607 (which the API server extends to a year)', () => {
  const { pod: out } = injected(pod());
  const token = out.spec?.volumes?.find((v) => v.name === 'mcp-warden-token');
  expect(token?.projected?.sources?.[0]?.serviceAccountToken?.expirationSeconds).toBe(3600);
});

test('probes and lifecycle handlers that name the renamed MCP port get its number; others stay', () => {
  const p = pod(undefined, [
    { name: 'http', containerPort: 8080 },
    { name: 'metrics', containerPort: 9100 },
  ]);
  p.metadata!.annotations = { 'mcpwarden.io/upstream-port': 'http' };
  Object.assign(p.spec!.containers[0]!, {
    readinessProbe: { httpGet: { path: '/healthz', port: 'http' } },
    livenessProbe: { tcpSocket: { port: 'http' } },
    startupProbe: { httpGet: { path: '/m', port: 'metrics' } },
    lifecycle: {
      preStop: { httpGet: { path: '/drain', port: 'http' } },
      postStart: { tcpSocket: { port: 'http' } },
    },
  });
  const { pod: out } = injected(p);
  const c = app(out);
  expect(c.ports?.[0]?.name).toBe('http-upstream');
  expect(c.readinessProbe?.httpGet?.port).toBe(8080);
  expect(c.livenessProbe?.tcpSocket?.port).toBe(8080);
  expect(c.startupProbe?.httpGet?.port).toBe('metrics');
  expect(c.lifecycle?.preStop?.httpGet?.port).toBe(8080);
  expect(c.lifecycle?.postStart?.tcpSocket?.port).toBe(8080);
  // After the patch, every named probe port resolves in the probed container's own ports (kubelet).
  const names = new Set(c.ports?.map((port) => port.name));
  for (const port of [c.readinessProbe?.httpGet?.port, c.startupProbe?.httpGet?.port]) {
    if (typeof port === 'string') expect(names.has(port)).toBe(true);
  }
});

test('every declaration of the MCP port number is renamed under a distinct valid name, with a warning', () => {
  const p = pod({ 'mcpwarden.io/upstream-port': 'streamable-http' }, [
    { name: 'streamable-http', containerPort: 8080 },
    { name: 'streamable-https', containerPort: 8080 },
    { name: 'mcp-ish', containerPort: 8080 },
  ]);
  const r = injectPod(p, { namespace: 'agents', config });
  if (r.kind !== 'inject') throw new Error(`expected inject, got ${r.kind}`);
  const out = applyPatch(p, r.patch);
  const names = app(out).ports?.map((port) => port.name) ?? [];
  expect(names).toEqual(['streamable-h-up', 'streamable-up2', 'mcp-ish-up']);
  for (const n of names) expect(n).toMatch(/^(?=.{1,15}$)(?=.*[a-z])[a-z0-9]+(-[a-z0-9]+)*$/);
  const sidecar = out.spec?.initContainers?.[0];
  expect(sidecar?.ports?.[0]).toMatchObject({ name: 'streamable-http', containerPort: 15080 });
  expect(r.warnings).toHaveLength(2);
  expect(r.warnings[0]).toMatch(/port "streamable-https" also declares the MCP port 8080/);
  expect(r.warnings[1]).toMatch(
    /targetPort: mcp-ish finds no port on this pod, use targetPort: streamable-http/,
  );
});

test('an unnamed MCP port declared again under a name: the sidecar takes that name', () => {
  const p = pod({ 'mcpwarden.io/upstream-port': '8080' }, [
    { containerPort: 8080 } as never,
    { name: 'http', containerPort: 8080 },
  ]);
  const { pod: out, sidecar } = injected(p);
  expect(app(out).ports?.map((port) => port.name)).toEqual([undefined, 'http-upstream']);
  expect(sidecar.ports?.[0]?.name).toBe('http');
});

test('a hostPort or hostIP on the MCP port is refused, naming container, port and what to do', () => {
  expect(refusal(pod(undefined, [{ name: 'mcp', containerPort: 8080, hostPort: 30080 } as never]))).toMatch(
    /container "app" port "mcp" \(8080\) is the MCP port and sets hostPort 30080.*Remove hostPort\/hostIP from the MCP port/,
  );
  expect(
    refusal(pod(undefined, [{ name: 'mcp', containerPort: 8080, hostIP: '10.0.0.1' } as never])),
  ).toMatch(/sets hostIP 10\.0\.0\.1/);
  // The duplicate declaration counts too; a hostPort on another port is fine.
  expect(
    refusal(
      pod(undefined, [
        { name: 'mcp', containerPort: 8080 },
        { name: 'http', containerPort: 8080, hostPort: 80 } as never,
      ]),
    ),
  ).toMatch(/port "http" \(8080\) is the MCP port/);
  const ok = injected(
    pod(undefined, [
      { name: 'mcp', containerPort: 8080 },
      { name: 'metrics', containerPort: 9100, hostPort: 9100 } as never,
    ]),
  );
  expect(ok.sidecar.name).toBe('mcp-warden');
});

test('a port of another container named like the sidecar port is refused: it would take its Services', () => {
  const p = pod();
  p.spec!.containers.push({ name: 'shipper', image: 's', ports: [{ name: 'mcp', containerPort: 9000 }] });
  expect(refusal(p)).toMatch(/container "shipper" also names a port "mcp" \(9000\)/);
});

test('upstream-port elsewhere while a port is named mcp: a warning that mcp reaches the app directly', () => {
  const p = pod({ 'mcpwarden.io/upstream-port': '9000' });
  const r = injectPod(p, { namespace: 'agents', config });
  if (r.kind !== 'inject') throw new Error(`expected inject, got ${r.kind}`);
  expect(r.warnings).toEqual([
    expect.stringMatching(
      /port "mcp" \(8080\) is not the MCP port \(mcpwarden.io\/upstream-port: 9000\): a Service with targetPort: mcp reaches the app on 8080 directly/,
    ),
  ]);
  expect(applyPatch(p, r.patch).spec?.initContainers?.[0]?.ports?.[0]?.name).toBe('mcp-warden');
});

describe('already injected: left alone only when it is our sidecar', () => {
  /** The pod as the API server stores and returns it (defaults, the ServiceAccount plugin's volume). */
  function stored(cfg = config, p = pod()): V1Pod {
    const { pod: out } = injected(p, cfg);
    const s = out.spec!.initContainers![0]!;
    Object.assign(s, { terminationMessagePath: '/dev/termination-log', imagePullPolicy: 'IfNotPresent' });
    s.startupProbe!.successThreshold = 1;
    s.readinessProbe!.successThreshold = 1;
    out.spec!.volumes!.push({ name: 'kube-api-access-x', projected: { sources: [] } });
    return out;
  }
  const sidecarOf = (p: V1Pod) => p.spec!.initContainers![0]!;
  const noop = (p: V1Pod, cfg = config) =>
    expect(injectPod(p, { namespace: 'agents', config: cfg }).kind).toBe('noop');
  /** The projected token volume an identity webhook adds (here Azure Workload Identity's). */
  const azureTokenVolume = (name = 'azure-identity-token'): V1Volume => ({
    name,
    projected: {
      defaultMode: 420,
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
  /**
   * Stamps the status a forger would compute for the pod's sidecar as it stands (the hash is
   * public: the injected container and volumes), so a refusal is about what else is wrong.
   */
  const restamp = (p: V1Pod): V1Pod => {
    const s = [...(p.spec!.initContainers ?? []), ...p.spec!.containers].find(
      (c) => c.name === 'mcp-warden',
    )!;
    const volumes = p.spec!.volumes!.filter((v) => v.name.startsWith('mcp-warden-'));
    p.metadata!.annotations!['mcpwarden.io/status'] = JSON.stringify({
      version: '0.1.0',
      hash: injectionHash(s, volumes),
    });
    return p;
  };

  test('a re-submitted pod with API defaults, identity-webhook env and token mount, a digest-pinned image', () => {
    noop(stored());
    const p = stored();
    sidecarOf(p).image = `img:1@sha256:${'a'.repeat(64)}`;
    sidecarOf(p).env!.push(
      { name: 'AZURE_CLIENT_ID', value: 'x' },
      { name: 'AZURE_FEDERATED_TOKEN_FILE', value: '/t' },
    );
    sidecarOf(p).volumeMounts!.push({
      name: 'azure-identity-token',
      mountPath: '/var/run/secrets/azure/tokens',
      readOnly: true,
    });
    p.spec!.volumes!.push(azureTokenVolume());
    noop(p);
    // An annotated image the webhook allows (here a mirror's repository).
    const mirrored = { ...config, allowedImages: ['mirror/warden'] };
    noop(stored(mirrored, pod({ 'mcpwarden.io/sidecar-image': 'mirror/warden:2' })), mirrored);
  });

  test('an annotated sidecar image the webhook no longer allows is refused on re-submission', () => {
    const mirrored = { ...config, allowedImages: ['mirror/warden'] };
    const p = stored(mirrored, pod({ 'mcpwarden.io/sidecar-image': 'mirror/warden:2' }));
    expect(refusal(p)).toMatch(/"mirror\/warden:2" is not an allowed sidecar image/);
  });

  test("another container mounting the sidecar's volumes is refused, ephemeral ones included", () => {
    const app = stored();
    app.spec!.containers[0]!.volumeMounts = [{ name: 'mcp-warden-token', mountPath: '/t', readOnly: true }];
    expect(refusal(app)).toMatch(
      /^container "app" mounts the volume "mcp-warden-token", which mcp-warden adds/,
    );
    const debug = stored();
    debug.spec!.ephemeralContainers = [
      { name: 'debug', image: 'busybox', volumeMounts: [{ name: 'mcp-warden-recordings', mountPath: '/r' }] },
    ];
    expect(refusal(debug)).toMatch(/^ephemeral container "debug" mounts the volume "mcp-warden-recordings"/);
    const init = stored();
    init.spec!.initContainers!.push({
      name: 'late',
      image: 'x',
      volumeMounts: [{ name: 'mcp-warden-tmp', mountPath: '/w' }],
    });
    expect(refusal(init)).toMatch(/^init container "late" mounts the volume "mcp-warden-tmp"/);
  });

  test("a read-write mount of the pod's own recordings volume is left alone with a warning", () => {
    const own = () => {
      const p = pod({ 'mcpwarden.io/recordings-volume': 'audit' });
      p.spec!.volumes = [{ name: 'audit', emptyDir: {} }];
      return p;
    };
    const p = stored(config, own());
    noop(p);
    expect(injectPod(p, { namespace: 'agents', config })).toMatchObject({ kind: 'noop', warnings: [] });
    p.spec!.containers[0]!.volumeMounts = [{ name: 'audit', mountPath: '/audit' }];
    expect(injectPod(p, { namespace: 'agents', config })).toMatchObject({
      kind: 'noop',
      warnings: [expect.stringMatching(/^container "app" mounts the recordings volume "audit"/)],
    });
  });

  test('another image, command, env that changes how it runs, or a mount elsewhere is refused', () => {
    const cases: Array<[(s: V1Container) => void, RegExp]> = [
      [(s) => (s.image = 'alpine/socat'), /image "alpine\/socat" \(expected "img:1"\)/],
      [(s) => (s.image = 'img:1@sha256:zz'), /image/],
      [(s) => (s.command = ['sh', '-c', 'socat ...']), /command \(not injected\)/],
      [(s) => (s.args = ['sidecar', '--upstream', 'http://10.0.0.1:8080/mcp']), /args/],
      [(s) => (s.securityContext = { runAsUser: 0 }), /securityContext/],
      [(s) => (s.livenessProbe = { exec: { command: ['sh'] } }), /livenessProbe \(not injected\)/],
      [(s) => s.env!.push({ name: 'LD_PRELOAD', value: '/x.so' }), /env LD_PRELOAD \(not injected\)/],
      [(s) => s.env!.push({ name: 'NODE_OPTIONS', value: '--require /x.js' }), /env NODE_OPTIONS/],
      [
        (s) => s.env!.push({ name: 'MCP_WARDEN_GRAPH_URL', value: 'http://evil' }),
        /env MCP_WARDEN_GRAPH_URL/,
      ],
      [
        (s) => s.volumeMounts!.push({ name: 'code', mountPath: '/app' }),
        /volumeMounts \/app \(not injected\)/,
      ],
      [
        (s) =>
          s.volumeMounts!.push({
            name: 't',
            mountPath: '/var/run/secrets/kubernetes.io/serviceaccount/token',
            readOnly: true,
          }),
        /volumeMounts/,
      ],
      [(s) => (s.restartPolicy = undefined), /restartPolicy/],
    ];
    for (const [mutate, message] of cases) {
      const p = stored();
      mutate(sidecarOf(p));
      expect(refusal(p)).toMatch(message);
      expect(refusal(p)).toMatch(/Remove the container "mcp-warden" and the mcpwarden.io\/status annotation/);
    }
  });

  test('a changed volume, a forged or stale status hash, or an app port under the sidecar port name is refused', () => {
    const vol = stored();
    vol.spec!.volumes![0]!.projected!.sources![0]!.serviceAccountToken!.expirationSeconds = 3607;
    expect(refusal(vol)).toMatch(/volumes mcp-warden-token/);
    const forged = stored();
    forged.metadata!.annotations!['mcpwarden.io/status'] = '{"version":"0.1.0","hash":"0123456789abcdef"}';
    expect(refusal(forged)).toMatch(/hash 0123456789abcdef is not this webhook's [0-9a-f]{16}/);
    const garbage = stored();
    garbage.metadata!.annotations!['mcpwarden.io/status'] = 'yes';
    expect(refusal(garbage)).toMatch(/is not JSON/);
    // Injected by a webhook with another default image: the version/hash says so.
    expect(refusal(stored({ ...config, image: 'img:0' }))).toMatch(/image "img:0"/);
    const shadow = stored();
    shadow.spec!.containers.push({ name: 'x', image: 'x', ports: [{ name: 'mcp', containerPort: 9000 }] });
    expect(refusal(shadow)).toMatch(/container "x" also names a port "mcp"/);
  });

  test('a regular-container sidecar (old API servers) is verified the same way', () => {
    const old = { ...config, nativeSidecars: false };
    const { pod: out } = injected(pod(), old);
    noop(out, old);
    out.spec!.containers[0]!.image = 'evil';
    expect(refusal(out, old)).toMatch(/image "evil"/);
  });

  test('the env and token mounts of Azure Workload Identity, IRSA and EKS Pod Identity are tolerated', () => {
    const p = stored();
    const s = sidecarOf(p);
    s.env!.push(
      { name: 'AZURE_CLIENT_ID', value: '00000000-0000-0000-0000-000000000001' },
      { name: 'AZURE_TENANT_ID', value: '00000000-0000-0000-0000-000000000002' },
      { name: 'AZURE_FEDERATED_TOKEN_FILE', value: '/var/run/secrets/azure/tokens/azure-identity-token' },
      { name: 'AZURE_AUTHORITY_HOST', value: 'https://login.microsoftonline.com/' },
      { name: 'AWS_STS_REGIONAL_ENDPOINTS', value: 'regional' },
      { name: 'AWS_DEFAULT_REGION', value: 'eu-west-1' },
      { name: 'AWS_REGION', value: 'eu-west-1' },
      { name: 'AWS_ROLE_ARN', value: 'arn:aws:iam::111122223333:role/mcp' },
      {
        name: 'AWS_WEB_IDENTITY_TOKEN_FILE',
        value: '/var/run/secrets/eks.amazonaws.com/serviceaccount/token',
      },
      { name: 'AWS_CONTAINER_CREDENTIALS_FULL_URI', value: 'http://169.254.170.23/v1/credentials' },
      {
        name: 'AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE',
        value: '/var/run/secrets/pods.eks.amazonaws.com/serviceaccount/eks-pod-identity-token',
      },
    );
    s.volumeMounts!.push(
      { name: 'azure-identity-token', mountPath: '/var/run/secrets/azure/tokens', readOnly: true },
      {
        name: 'aws-iam-token',
        mountPath: '/var/run/secrets/eks.amazonaws.com/serviceaccount',
        readOnly: true,
      },
      {
        name: 'eks-pod-identity-token',
        mountPath: '/var/run/secrets/pods.eks.amazonaws.com/serviceaccount',
        readOnly: true,
      },
    );
    p.spec!.volumes!.push(
      azureTokenVolume(),
      {
        name: 'aws-iam-token',
        projected: {
          sources: [
            {
              serviceAccountToken: { audience: 'sts.amazonaws.com', expirationSeconds: 86400, path: 'token' },
            },
          ],
        },
      },
      {
        name: 'eks-pod-identity-token',
        projected: {
          sources: [
            {
              serviceAccountToken: {
                audience: 'pods.eks.amazonaws.com',
                expirationSeconds: 86400,
                path: 'eks-pod-identity-token',
              },
            },
          ],
        },
      },
    );
    noop(p);
  });

  test('any other env on the sidecar is refused: KUBECONFIG, the in-cluster API server, anything', () => {
    for (const name of [
      'KUBECONFIG',
      'KUBERNETES_SERVICE_HOST',
      'KUBERNETES_SERVICE_PORT',
      'KUBERNETES_SERVICE_PORT_HTTPS',
      'HOME',
      'MCP_WARDEN_LOG_LEVEL',
      'SOMETHING_NEW',
    ]) {
      const p = stored();
      sidecarOf(p).env!.push({ name, value: '127.0.0.1' });
      expect(refusal(p)).toMatch(new RegExp(`differs in env ${name} \\(not injected\\)`));
    }
    const envFrom = stored();
    sidecarOf(envFrom).envFrom = [{ configMapRef: { name: 'evil' } }];
    expect(refusal(envFrom)).toMatch(/envFrom \(not injected\)/);
  });

  test('the reproduced attack: KUBECONFIG and a kubeconfig of the pod mounted under /var/run/secrets/', () => {
    const p = stored();
    sidecarOf(p).env!.push({ name: 'KUBECONFIG', value: '/var/run/secrets/evil/config' });
    sidecarOf(p).volumeMounts!.push({ name: 'evil', mountPath: '/var/run/secrets/evil', readOnly: true });
    p.spec!.volumes!.push({ name: 'evil', configMap: { name: 'evil' } });
    expect(refusal(p)).toMatch(
      /differs in env KUBECONFIG \(not injected\), volumeMounts \/var\/run\/secrets\/evil \(not injected\)/,
    );
    // The mount alone is refused too: only identity webhooks' token paths are tolerated.
    const mountOnly = stored();
    sidecarOf(mountOnly).volumeMounts!.push({
      name: 'evil',
      mountPath: '/var/run/secrets/evil',
      readOnly: true,
    });
    mountOnly.spec!.volumes!.push({ name: 'evil', configMap: { name: 'evil' } });
    expect(refusal(mountOnly)).toMatch(/volumeMounts \/var\/run\/secrets\/evil \(not injected\)/);
  });

  test('an identity token path is tolerated only read-only, whole, and holding nothing but service-account tokens', () => {
    const path = '/var/run/secrets/azure/tokens';
    const cases: Array<[string, (p: V1Pod) => void]> = [
      [
        'read-write',
        (p) => sidecarOf(p).volumeMounts!.push({ name: 'azure-identity-token', mountPath: path }),
      ],
      [
        'a subPath',
        (p) =>
          sidecarOf(p).volumeMounts!.push({
            name: 'azure-identity-token',
            mountPath: path,
            readOnly: true,
            subPath: 'x',
          }),
      ],
      [
        'a configMap there',
        (p) => {
          sidecarOf(p).volumeMounts!.push({ name: 'evil', mountPath: path, readOnly: true });
          p.spec!.volumes!.push({ name: 'evil', configMap: { name: 'evil' } });
        },
      ],
      [
        'a projected volume with a configMap',
        (p) => {
          sidecarOf(p).volumeMounts!.push({ name: 'evil', mountPath: path, readOnly: true });
          const v = azureTokenVolume('evil');
          v.projected!.sources!.push({ configMap: { name: 'evil' } });
          p.spec!.volumes!.push(v);
        },
      ],
      [
        'the sidecar token volume',
        (p) => sidecarOf(p).volumeMounts!.push({ name: 'mcp-warden-token', mountPath: path, readOnly: true }),
      ],
      [
        'a volume the pod does not declare',
        (p) => sidecarOf(p).volumeMounts!.push({ name: 'missing', mountPath: path, readOnly: true }),
      ],
      [
        'another path',
        (p) => {
          sidecarOf(p).volumeMounts!.push({
            name: 'azure-identity-token',
            mountPath: '/var/run/secrets/azure',
            readOnly: true,
          });
          p.spec!.volumes!.push(azureTokenVolume());
        },
      ],
    ];
    for (const [what, mutate] of cases) {
      const p = stored();
      if (
        what !== 'a configMap there' &&
        what !== 'a projected volume with a configMap' &&
        what !== 'another path'
      )
        p.spec!.volumes!.push(azureTokenVolume());
      mutate(p);
      expect([what, refusal(p)]).toEqual([
        what,
        expect.stringMatching(/volumeMounts \/var\/run\/secrets\/azure.* \(not injected\)/),
      ]);
    }
  });

  test('a hostPort on the MCP port is refused on re-submission, as on injection', () => {
    const p = stored();
    p.spec!.containers[0]!.ports![0]!.hostPort = 30080;
    expect(refusal(p)).toMatch(
      /container "app" port "mcp-upstream" \(8080\) is the MCP port and sets hostPort 30080/,
    );
    const ip = stored();
    ip.spec!.containers[0]!.ports!.push({
      containerPort: 8080,
      protocol: 'TCP',
      hostIP: '0.0.0.0',
      name: 'x-up',
    });
    expect(refusal(ip)).toMatch(/is the MCP port and sets hostIP 0.0.0.0/);
  });

  test('the MCP port keeping its name while the sidecar serves under another is refused', () => {
    // The app port is still "mcp" (a Service with targetPort: mcp reaches the app), the sidecar
    // serves as "mcp-warden"; the status is what a forger computes for that sidecar.
    const p = stored();
    p.spec!.containers[0]!.ports![0]!.name = 'mcp';
    sidecarOf(p).ports![0]!.name = 'mcp-warden';
    expect(refusal(restamp(p))).toMatch(
      /container "app" port "mcp" \(8080\) is the sidecar's upstream but keeps its name: a Service with targetPort: mcp would reach the app directly/,
    );
    // Renamed, but not after the sidecar's name: the sidecar did not take the app port's name.
    const q = stored();
    sidecarOf(q).ports![0]!.name = 'proxy';
    expect(refusal(restamp(q))).toMatch(
      /the sidecar's proxy port is named "proxy", but no declaration of its upstream port 8080 was renamed from that name \("mcp-upstream"/,
    );
    // The app's port unnamed, the sidecar under a name injection would not give it.
    const r = stored();
    delete r.spec!.containers[0]!.ports![0]!.name;
    sidecarOf(r).ports![0]!.name = 'web';
    expect(refusal(restamp(r))).toMatch(
      /its proxy port is named "web", the webhook names it "mcp" for this pod/,
    );
  });

  test('a sidecar forwarding to another port than the MCP port the injector picks is refused', () => {
    // Injected for upstream-port 9000 (a decoy), then re-submitted without the annotation: the
    // port named mcp, untouched, is the MCP port.
    const decoy = pod({ 'mcpwarden.io/upstream-port': '9000' }, [
      { name: 'mcp', containerPort: 8080 },
      { name: 'decoy', containerPort: 9000 },
    ]);
    const { pod: out } = injected(decoy);
    noop(out);
    delete out.metadata!.annotations!['mcpwarden.io/upstream-port'];
    expect(refusal(out)).toMatch(
      /the sidecar forwards to port 9000, but the MCP port is 8080 \(container "app" port "mcp" \(8080\)\)/,
    );
    // The same with the decoy's name kept: it was not renamed.
    const named = injected(decoy).pod;
    named.spec!.containers[0]!.ports![1]!.name = 'decoy';
    expect(refusal(restamp(named))).toMatch(
      /port "decoy" \(9000\) is the sidecar's upstream but keeps its name/,
    );
    // An annotation naming another port than the sidecar's upstream.
    const moved = injected(
      pod(undefined, [
        { name: 'mcp', containerPort: 8080 },
        { name: 'other', containerPort: 7000 },
      ]),
    ).pod;
    moved.metadata!.annotations!['mcpwarden.io/upstream-port'] = '7000';
    expect(refusal(moved)).toMatch(/forwards to port 8080, but the MCP port is 7000/);
  });

  test("the sidecar's reserved ports declared by another container are refused on re-submission", () => {
    const p = stored();
    p.spec!.containers[0]!.ports!.push({ containerPort: 15090, name: 'admin' });
    expect(refusal(p)).toMatch(/container "app" declares port 15090, reserved for the sidecar/);
  });

  test('with an exact reference allowed, that reference with any digest appended is refused on re-submission', () => {
    const exact = { ...config, allowedImages: ['mirror/warden:2'] };
    const p = stored(exact, pod({ 'mcpwarden.io/sidecar-image': 'mirror/warden:2' }));
    noop(p, exact);
    sidecarOf(p).image = `mirror/warden:2@sha256:${'b'.repeat(64)}`;
    expect(refusal(p, exact)).toMatch(
      /container runs "mirror\/warden:2@sha256:b{64}", which is not an allowed sidecar image \(allowed: img:1 \(the default\), mirror\/warden:2\)/,
    );
    // Listed, or its repository allowed: fine.
    noop(p, { ...config, allowedImages: ['mirror/warden:2', `mirror/warden:2@sha256:${'b'.repeat(64)}`] });
    noop(p, { ...config, allowedImages: ['mirror/warden'] });
    // The default image pinned by digest: allowed by the default allowlist (its repository), not by
    // an allowlist that leaves the repository out.
    const pinned = stored();
    sidecarOf(pinned).image = `img:1@sha256:${'c'.repeat(64)}`;
    noop(pinned);
    expect(refusal(pinned, { ...config, allowedImages: [] })).toMatch(/is not an allowed sidecar image/);
  });

  test('a regular init container naming a port like the sidecar is not refused on reinvocation', () => {
    // Kubernetes checks port names per container and Services never resolve a name in a
    // run-to-completion init container: injection allows it, so re-verification must too.
    const p = pod();
    p.spec!.initContainers = [
      { name: 'migrate', image: 'app:1', ports: [{ name: 'mcp', containerPort: 8080 }] },
    ];
    const { pod: out } = injected(p);
    noop(out);
    // A restartable one is served by Services: refused, as on injection (which renames its
    // declaration of the MCP port, and refuses another port under the sidecar's name).
    const migrate = (o: V1Pod) => o.spec!.initContainers!.find((c) => c.name === 'migrate')!;
    migrate(out).restartPolicy = 'Always';
    expect(refusal(out)).toMatch(
      /container "migrate" port "mcp" \(8080\) is the sidecar's upstream but keeps its name/,
    );
    migrate(out).ports![0]!.containerPort = 5000;
    expect(refusal(out)).toMatch(/container "migrate" also names a port "mcp" \(5000\)/);
  });
});

test('a native-sidecar init container declaring the MCP port number is renamed too, probes included', () => {
  const p: V1Pod = {
    metadata: {
      name: 'p',
      labels: { 'mcpwarden.io/inject': 'true' },
      annotations: { 'mcpwarden.io/upstream-port': '8080' },
    },
    spec: {
      initContainers: [
        {
          name: 'mcpsrv',
          image: 'a',
          restartPolicy: 'Always',
          ports: [{ name: 'mcp', containerPort: 8080 }],
          readinessProbe: { tcpSocket: { port: 'mcp' as never } },
        },
      ],
      containers: [{ name: 'app', image: 'a' }],
    },
  };
  const { pod: out, sidecar } = injected(p);
  const server = out.spec?.initContainers?.find((c) => c.name === 'mcpsrv');
  expect(server?.ports?.[0]?.name).toBe('mcp-upstream');
  expect(server?.readinessProbe?.tcpSocket?.port).toBe(8080);
  expect(sidecar.ports?.[0]?.name).toBe('mcp');
  expect(out.spec?.initContainers?.[0]?.name).toBe('mcp-warden');
});

describe('mcpwarden.io/sidecar-image: only images the webhook allows', () => {
  const withImage = (image: string) => pod({ 'mcpwarden.io/sidecar-image': image });
  const digest = `sha256:${'b'.repeat(64)}`;

  test("by default, any tag or digest of the default image's repository, and nothing else", () => {
    // config.image is img:1, i.e. docker.io/library/img.
    for (const image of ['img:2', `img@${digest}`, `img:2@${digest}`, 'img', 'docker.io/library/img:3']) {
      expect(injected(withImage(image)).sidecar.image).toBe(image);
    }
    for (const image of [
      'mirror/warden:2',
      'alpine/socat',
      'img-evil:1',
      'library/img-evil:1',
      'docker.io/img/sub:1',
      'registry.example.com/img:1',
      'registry.example.com/library/img:1',
    ]) {
      expect(refusal(withImage(image))).toMatch(`"${image}" is not an allowed sidecar image`);
    }
  });

  test('the refusal says what is allowed and what to do', () => {
    expect(refusal(withImage('alpine/socat:1.8.0'))).toBe(
      'annotation mcpwarden.io/sidecar-image: "alpine/socat:1.8.0" is not an allowed sidecar image ' +
        '(allowed: img:1 (the default), docker.io/library/img (any tag or digest)). Remove the ' +
        "annotation to get the default sidecar, or ask the cluster admin to add the image to the webhook's " +
        '--allowed-sidecar-images (chart value sidecar.allowedImages)',
    );
    expect(refusal(withImage('Not An Image'))).toMatch(/"Not An Image" is not an image reference/);
  });

  test('configured: a repository allows any tag or digest of it, a reference exactly itself', () => {
    const cfg: InjectorConfig = {
      ...config,
      allowedImages: ['registry.example.com/mirror/mcp-warden', 'ghcr.io/mcp-warden/mcp-warden:0.2.0'],
    };
    const ok = (image: string) => expect(injected(withImage(image), cfg).sidecar.image).toBe(image);
    const no = (image: string) =>
      expect(refusal(withImage(image), cfg)).toMatch(`"${image}" is not an allowed sidecar image`);
    ok('registry.example.com/mirror/mcp-warden:1.2');
    ok(`registry.example.com/mirror/mcp-warden@${digest}`);
    ok('ghcr.io/mcp-warden/mcp-warden:0.2.0');
    // The default image is always allowed, however it is spelled.
    ok('img:1');
    ok('docker.io/library/img:1');
    no('img:2'); // its repository is not listed any more
    no('ghcr.io/mcp-warden/mcp-warden:0.2.1');
    no(`ghcr.io/mcp-warden/mcp-warden:0.2.0@${digest}`); // a digest makes it another image
    no('registry.example.com/mirror/mcp-warden-dev:1');
    no('registry.example.com/mirror/mcp-warden/debug:1');
    no('registry.example.com/mirror:1');
    // An empty list: only the default image.
    const locked: InjectorConfig = { ...config, allowedImages: [] };
    expect(injected(withImage('img:1'), locked).sidecar.image).toBe('img:1');
    expect(refusal(withImage('img:2'), locked)).toMatch(/\(allowed: img:1 \(the default\)\)/);
  });
});

describe("the sidecar's volumes are its own", () => {
  const volumes = ['mcp-warden-token', 'mcp-warden-tmp', 'mcp-warden-recordings'];

  test('a container, init container or ephemeral container that mounts one is refused, naming it', () => {
    for (const volume of volumes) {
      const app = pod();
      app.spec!.containers[0]!.volumeMounts = [{ name: volume, mountPath: '/x', readOnly: true }];
      expect(refusal(app)).toMatch(
        new RegExp(
          `^container "app" mounts the volume "${volume}", which mcp-warden adds for its sidecar only: it could .*Remove that volumeMount`,
        ),
      );
      const init = pod();
      init.spec!.initContainers = [
        { name: 'setup', image: 's', volumeMounts: [{ name: volume, mountPath: '/x' }] },
      ];
      expect(refusal(init)).toMatch(`init container "setup" mounts the volume "${volume}"`);
      const ephemeral = pod();
      ephemeral.spec!.ephemeralContainers = [
        { name: 'debug', image: 'busybox', volumeMounts: [{ name: volume, mountPath: '/x' }] },
      ];
      expect(refusal(ephemeral)).toMatch(`ephemeral container "debug" mounts the volume "${volume}"`);
    }
  });

  test('each refusal says what the container could do with that volume', () => {
    const mounting = (volume: string) => {
      const p = pod();
      p.spec!.containers.push({ name: 'c', image: 'c', volumeMounts: [{ name: volume, mountPath: '/x' }] });
      return refusal(p);
    };
    expect(mounting('mcp-warden-token')).toMatch(/read the sidecar's service-account token/);
    expect(mounting('mcp-warden-recordings')).toMatch(/read, rewrite or delete the session recordings/);
    expect(mounting('mcp-warden-tmp')).toMatch(/tamper with the sidecar's temporary files/);
  });

  test('the recordings volume is reserved even when the pod names its own', () => {
    const p = pod({ 'mcpwarden.io/recordings-volume': 'audit' });
    p.spec!.volumes = [{ name: 'audit', emptyDir: {} }];
    p.spec!.containers[0]!.volumeMounts = [{ name: 'mcp-warden-recordings', mountPath: '/r' }];
    expect(refusal(p)).toMatch(/mounts the volume "mcp-warden-recordings"/);
  });

  test("the pod's own recordings volume: read-only mounts are fine, a read-write mount is a warning", () => {
    const p = pod({ 'mcpwarden.io/recordings-volume': 'audit' });
    p.spec!.volumes = [{ name: 'audit', emptyDir: {} }];
    p.spec!.containers.push(
      { name: 'uploader', image: 'u', volumeMounts: [{ name: 'audit', mountPath: '/r', readOnly: true }] },
      {
        name: 'pruner',
        image: 'p',
        volumeMounts: [
          { name: 'audit', mountPath: '/r' },
          { name: 'audit', mountPath: '/r2', subPath: 'x' },
        ],
      },
    );
    const r = injectPod(p, { namespace: 'agents', config });
    if (r.kind !== 'inject') throw new Error(`expected inject, got ${r.kind}`);
    expect(r.warnings).toEqual([
      expect.stringMatching(
        /^container "pruner" mounts the recordings volume "audit" \(mcpwarden.io\/recordings-volume\) read-write: it can rewrite or delete session recordings.*readOnly: true/,
      ),
    ]);
    // Without the annotation the volume is just the pod's: no warning.
    delete p.metadata!.annotations;
    const plain = injectPod(p, { namespace: 'agents', config });
    expect(plain.kind === 'inject' && plain.warnings).toEqual([]);
  });

  test('a second volume on the same claim or hostPath as the recordings volume gets the same warning', () => {
    const warningsFor = (recordings: V1Volume, other: V1Volume, readOnly = false): string[] => {
      const p = pod({ 'mcpwarden.io/recordings-volume': 'audit' });
      p.spec!.volumes = [recordings, other];
      p.spec!.containers.push({
        name: 'pruner',
        image: 'p',
        volumeMounts: [{ name: other.name, mountPath: '/r', readOnly }],
      });
      const r = injectPod(p, { namespace: 'agents', config });
      if (r.kind !== 'inject') throw new Error(`expected inject, got ${r.kind}`);
      // Re-submitted, the same warning.
      const again = injectPod(injected(p).pod, { namespace: 'agents', config });
      expect(again).toMatchObject({ kind: 'noop', warnings: r.warnings });
      return r.warnings;
    };
    const claim = (name: string, claimName: string, readOnly?: boolean): V1Volume => ({
      name,
      persistentVolumeClaim: { claimName, ...(readOnly === undefined ? {} : { readOnly }) },
    });
    const host = (name: string, path: string): V1Volume => ({ name, hostPath: { path } });

    expect(warningsFor(claim('audit', 'recordings'), claim('alias', 'recordings'))).toEqual([
      expect.stringMatching(
        /^container "pruner" mounts the volume "alias", which uses the same persistentVolumeClaim "recordings" as the recordings volume "audit" \(mcpwarden.io\/recordings-volume\), read-write: it can rewrite or delete session recordings/,
      ),
    ]);
    expect(warningsFor(host('audit', '/data/rec'), host('alias', '/data//rec/'))).toEqual([
      expect.stringMatching(
        /mounts the volume "alias", which uses the same hostPath "\/data\/rec" as the recordings volume "audit"/,
      ),
    ]);
    expect(warningsFor(host('audit', '/data/rec'), host('alias', '/data'))).toEqual([
      expect.stringMatching(
        /the volume "alias", whose hostPath "\/data" contains the hostPath "\/data\/rec" of the recordings volume/,
      ),
    ]);
    expect(warningsFor(host('audit', '/data/rec'), host('alias', '/data/rec/2026'))).toEqual([
      expect.stringMatching(/whose hostPath "\/data\/rec\/2026" lies inside the hostPath "\/data\/rec" of/),
    ]);
    // Read-only (the mount, or the claim in the volume), another claim, a sibling path: nothing.
    expect(warningsFor(claim('audit', 'recordings'), claim('alias', 'recordings'), true)).toEqual([]);
    expect(warningsFor(claim('audit', 'recordings'), claim('alias', 'recordings', true))).toEqual([]);
    expect(warningsFor(claim('audit', 'recordings'), claim('alias', 'other'))).toEqual([]);
    expect(warningsFor(host('audit', '/data/rec'), host('alias', '/data/records'))).toEqual([]);
  });
});

describe('an MCP server that runs as a native sidecar (init container, restartPolicy: Always)', () => {
  const server = (ports: V1Container['ports'], extra: Partial<V1Container> = {}): V1Container => ({
    name: 'mcpsrv',
    image: 's',
    restartPolicy: 'Always',
    ports,
    ...extra,
  });
  const podWith = (
    init: V1Container[],
    containers: V1Container[],
    annotations?: Record<string, string>,
  ): V1Pod => ({
    metadata: {
      name: 'p',
      labels: { 'mcpwarden.io/inject': 'true' },
      ...(annotations ? { annotations } : {}),
    },
    spec: { initContainers: init, containers },
  });

  test('its port named mcp is the MCP port: taken over, renamed, probes rewritten, the proxy first', () => {
    const p = podWith(
      [
        { name: 'migrate', image: 'm' },
        server([{ name: 'mcp', containerPort: 8080 }], {
          readinessProbe: { httpGet: { path: '/h', port: 'mcp' as never } },
          startupProbe: { tcpSocket: { port: 'mcp' as never } },
        }),
      ],
      [{ name: 'agent', image: 'a' }],
    );
    const { pod: out, sidecar } = injected(p);
    expect(out.spec?.initContainers?.map((c) => c.name)).toEqual(['mcp-warden', 'migrate', 'mcpsrv']);
    const srv = out.spec!.initContainers![2]!;
    expect(srv.ports).toEqual([{ name: 'mcp-upstream', containerPort: 8080 }]);
    expect(srv.readinessProbe?.httpGet?.port).toBe(8080);
    expect(srv.startupProbe?.tcpSocket?.port).toBe(8080);
    expect(sidecar.ports?.[0]).toMatchObject({ name: 'mcp', containerPort: 15080 });
    expect(sidecar.env?.find((e) => e.name === 'MCP_WARDEN_UPSTREAM')?.value).toBe(
      'http://127.0.0.1:8080/mcp',
    );
  });

  test('its only port, or the port the annotation names, is the MCP port when the app declares none', () => {
    const only = injected(podWith([server([{ containerPort: 3000 }])], [{ name: 'agent', image: 'a' }]));
    expect(only.sidecar.ports?.[0]).toMatchObject({ name: 'mcp', containerPort: 15080 });
    expect(only.sidecar.args?.[2]).toBe('http://127.0.0.1:3000/mcp');
    const named = injected(
      podWith(
        [
          server([
            { name: 'http', containerPort: 3000 },
            { name: 'metrics', containerPort: 9100 },
          ]),
        ],
        [{ name: 'agent', image: 'a', ports: [{ name: 'ui', containerPort: 80 }] }],
        { 'mcpwarden.io/upstream-port': 'http' },
      ),
    );
    expect(named.sidecar.ports?.[0]).toMatchObject({ name: 'http', containerPort: 15080 });
    expect(named.pod.spec?.initContainers?.[1]?.ports?.[0]).toEqual({
      name: 'http-upstream',
      containerPort: 3000,
    });
  });

  test("the app's own single port still wins over a native helper's; a port named mcp wins over both", () => {
    const helper = server([{ name: 'logs', containerPort: 2020 }], { name: 'log-agent' });
    const app = { name: 'app', image: 'a', ports: [{ name: 'http', containerPort: 8080 }] };
    expect(injected(podWith([helper], [app])).sidecar.args?.[2]).toBe('http://127.0.0.1:8080/mcp');
    const mcp = server([{ name: 'mcp', containerPort: 9000 }]);
    expect(injected(podWith([mcp], [app])).sidecar.args?.[2]).toBe('http://127.0.0.1:9000/mcp');
    // Several candidates and no signal: not guessed.
    const r = injectPod(podWith([server([{ containerPort: 1 }, { containerPort: 2 }])], [{ name: 'a' }]), {
      namespace: 'agents',
      config,
    });
    expect(r.kind === 'skip' && r.reason).toBe('no_mcp_port');
  });

  test('a regular init container is never the MCP server', () => {
    const r = injectPod(
      podWith(
        [{ name: 'setup', image: 's', ports: [{ name: 'mcp', containerPort: 8080 }] }],
        [{ name: 'a' }],
      ),
      {
        namespace: 'agents',
        config,
      },
    );
    expect(r.kind === 'skip' && r.reason).toBe('no_mcp_port');
  });

  test('without native sidecars for mcp-warden the proxy is the first regular container, still taking the name', () => {
    const p = podWith([server([{ name: 'mcp', containerPort: 8080 }])], [{ name: 'agent', image: 'a' }]);
    const { pod: out, sidecar } = injected(p, { ...config, nativeSidecars: false });
    expect(out.spec?.containers.map((c) => c.name)).toEqual(['mcp-warden', 'agent']);
    expect(out.spec?.initContainers?.map((c) => c.name)).toEqual(['mcpsrv']);
    expect(sidecar.ports?.[0]?.name).toBe('mcp');
    expect(out.spec?.initContainers?.[0]?.ports?.[0]?.name).toBe('mcp-upstream');
  });

  test('a native sidecar declaring 15080 or 15090 is a port conflict', () => {
    const p = podWith(
      [
        server([{ name: 'mcp', containerPort: 8080 }]),
        { name: 'x', image: 'x', restartPolicy: 'Always', ports: [{ containerPort: 15090 }] },
      ],
      [{ name: 'agent', image: 'a' }],
    );
    const r = injectPod(p, { namespace: 'agents', config });
    expect(r.kind === 'skip' && r.reason).toBe('port_conflict');
  });
});
