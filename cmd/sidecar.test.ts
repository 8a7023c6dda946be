import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isWardenError } from '../pkg/errors.js';
import { parseConfig, parseLabelsFile, parseListen, run, workloadOf } from './sidecar.js';

let dir: string;
let labelsFile: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sidecar-config-'));
  labelsFile = join(dir, 'labels');
  await writeFile(labelsFile, 'app="github-mcp"\nmcpwarden.io/inject="true"\nquote="a\\"b"\n');
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const baseEnv = (): NodeJS.ProcessEnv => ({
  MCP_WARDEN_POD_NAME: 'github-mcp-0',
  MCP_WARDEN_POD_NAMESPACE: 'agents',
  MCP_WARDEN_POD_UID: 'uid-1',
  MCP_WARDEN_UPSTREAM: 'http://127.0.0.1:8080/mcp',
  MCP_WARDEN_LISTEN: '0.0.0.0:15080',
  MCP_WARDEN_ADMIN_LISTEN: '0.0.0.0:15090',
  MCP_WARDEN_POD_LABELS_FILE: labelsFile,
});

function configError(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    if (isWardenError(err, 'ERR_CONFIG')) return err.message;
    throw err;
  }
  throw new Error('expected ERR_CONFIG');
}

describe('sidecar configuration', () => {
  test('reads the injector env; flags win', () => {
    const c = parseConfig(['--listen', '127.0.0.1:0', '--upstream', 'http://127.0.0.1:9000/rpc'], baseEnv());
    expect(c).toMatchObject({
      podName: 'github-mcp-0',
      namespace: 'agents',
      podUid: 'uid-1',
      upstream: 'http://127.0.0.1:9000/rpc',
      mcpPath: '/rpc',
      transport: 'streamable-http',
      listen: { host: '127.0.0.1', port: 0 },
      adminListen: { host: '0.0.0.0', port: 15090 },
      podLabels: { app: 'github-mcp', 'mcpwarden.io/inject': 'true', quote: 'a"b' },
      graceMs: 30_000,
      statusIntervalMs: 5000,
      upstreamTimeoutMs: 300_000,
      requestTimeoutMs: 60_000,
    });
  });

  test('the upstream timeout: MCP_WARDEN_UPSTREAM_TIMEOUT (from the annotation) or the flag, a duration', () => {
    expect(parseConfig([], { ...baseEnv(), MCP_WARDEN_UPSTREAM_TIMEOUT: '15m' }).upstreamTimeoutMs).toBe(
      900_000,
    );
    expect(
      parseConfig(['--upstream-timeout', '90s'], { ...baseEnv(), MCP_WARDEN_UPSTREAM_TIMEOUT: '15m' })
        .upstreamTimeoutMs,
    ).toBe(90_000);
    expect(configError(() => parseConfig(['--upstream-timeout', 'forever'], baseEnv()))).toMatch(
      /--upstream-timeout/,
    );
  });

  test('the request timeout: MCP_WARDEN_REQUEST_TIMEOUT (from the annotation) or the flag, a duration', () => {
    expect(parseConfig([], { ...baseEnv(), MCP_WARDEN_REQUEST_TIMEOUT: '2m' }).requestTimeoutMs).toBe(
      120_000,
    );
    expect(
      parseConfig(['--request-timeout', '5s'], { ...baseEnv(), MCP_WARDEN_REQUEST_TIMEOUT: '2m' })
        .requestTimeoutMs,
    ).toBe(5_000);
    expect(configError(() => parseConfig([], { ...baseEnv(), MCP_WARDEN_REQUEST_TIMEOUT: '0s' }))).toMatch(
      /--request-timeout.*too short/,
    );
  });

  test('allowed origins: MCP_WARDEN_ALLOWED_ORIGINS (from the annotation) or the flag; none by default', () => {
    expect(parseConfig([], baseEnv()).allowedOrigins).toBeUndefined();
    expect(
      parseConfig([], {
        ...baseEnv(),
        MCP_WARDEN_ALLOWED_ORIGINS: 'https://a.example.com,http://localhost:6274',
      }).allowedOrigins,
    ).toEqual(['https://a.example.com', 'http://localhost:6274']);
    expect(
      configError(() => parseConfig(['--allowed-origins', 'https://a.example.com/'], baseEnv())),
    ).toMatch(/--allowed-origins: .*write https:\/\/a\.example\.com/);
  });

  test('labels from MCP_WARDEN_POD_LABELS (JSON) take precedence over the file', () => {
    const c = parseConfig([], { ...baseEnv(), MCP_WARDEN_POD_LABELS: '{"app":"x"}' });
    expect(c.podLabels).toEqual({ app: 'x' });
    expect(configError(() => parseConfig([], { ...baseEnv(), MCP_WARDEN_POD_LABELS: '["app"]' }))).toMatch(
      /JSON object of string labels/,
    );
  });

  test('refuses to start without labels (fail closed), naming where it looked', () => {
    const env = { ...baseEnv(), MCP_WARDEN_POD_LABELS_FILE: join(dir, 'missing') };
    expect(configError(() => parseConfig([], env))).toMatch(/labels are unknown.*missing.*fail closed/);
  });

  test.each([
    [{ MCP_WARDEN_POD_NAME: '' }, /MCP_WARDEN_POD_NAME is not set/],
    [{ MCP_WARDEN_POD_NAMESPACE: undefined }, /MCP_WARDEN_POD_NAMESPACE is not set/],
    [{ MCP_WARDEN_UPSTREAM: undefined }, /--upstream .* is required/],
    [{ MCP_WARDEN_UPSTREAM: 'not a url' }, /is not a URL/],
    [{ MCP_WARDEN_UPSTREAM: 'ftp://127.0.0.1/x' }, /must be http/],
    [{ MCP_WARDEN_LISTEN: '15080' }, /--listen: "15080" is not host:port/],
    [{ MCP_WARDEN_TRANSPORT: 'grpc' }, /--transport: "grpc"/],
    [{ MCP_WARDEN_POLICY_GRACE_SECONDS: '-1' }, /--policy-grace/],
    [{ MCP_WARDEN_STATUS_INTERVAL_SECONDS: 'soon' }, /--status-interval/],
  ])('bad env %j → clear ERR_CONFIG', (patch, message) => {
    expect(configError(() => parseConfig([], { ...baseEnv(), ...patch }))).toMatch(message);
  });

  test('in-cluster credentials by default; a kubeconfig only with --kubeconfig, never from KUBECONFIG', () => {
    expect(parseConfig([], baseEnv()).kubeconfig).toBeUndefined();
    expect(parseConfig(['--kubeconfig', '/tmp/kc'], baseEnv()).kubeconfig).toBe('/tmp/kc');
    // With the flag, the env var is ignored.
    expect(
      parseConfig(['--kubeconfig', '/tmp/kc'], { ...baseEnv(), KUBECONFIG: '/var/run/secrets/evil/config' })
        .kubeconfig,
    ).toBe('/tmp/kc');
    // Without it, KUBECONFIG in the environment stops the sidecar: the webhook never injects one.
    expect(
      configError(() => parseConfig([], { ...baseEnv(), KUBECONFIG: '/var/run/secrets/evil/config' })),
    ).toMatch(
      /^KUBECONFIG is set \("\/var\/run\/secrets\/evil\/config"\), but the sidecar does not read it: .*pass --kubeconfig PATH .*fail closed/,
    );
    expect(parseConfig([], { ...baseEnv(), KUBECONFIG: '' }).kubeconfig).toBeUndefined();
    expect(configError(() => parseConfig(['--kubeconfig', ''], baseEnv()))).toMatch(
      /--kubeconfig: give the path/,
    );
  });

  test('plain HTTP to the in-cluster API server is refused; HTTPS ports are fine', () => {
    for (const port of ['80', '8080', '8001']) {
      const env = { ...baseEnv(), KUBERNETES_SERVICE_HOST: '127.0.0.1', KUBERNETES_SERVICE_PORT: port };
      expect(configError(() => parseConfig([], env))).toMatch(
        new RegExp(
          `KUBERNETES_SERVICE_PORT is ${port}: the in-cluster API server would be reached over plain HTTP`,
        ),
      );
      // An explicit kubeconfig (a local run against `kubectl proxy`) is the operator's choice.
      expect(parseConfig(['--kubeconfig', '/tmp/kc'], env).kubeconfig).toBe('/tmp/kc');
    }
    const https = { ...baseEnv(), KUBERNETES_SERVICE_HOST: '10.96.0.1', KUBERNETES_SERVICE_PORT: '443' };
    expect(parseConfig([], https).kubeconfig).toBeUndefined();
  });

  test('the command refuses to start with KUBECONFIG set, before it talks to any API server', async () => {
    const saved = { ...process.env };
    const stderr: string[] = [];
    const write = process.stderr.write.bind(process.stderr);
    process.stderr.write = ((chunk: string) => {
      stderr.push(String(chunk));
      return true;
    }) as typeof process.stderr.write;
    try {
      Object.assign(process.env, baseEnv(), {
        KUBECONFIG: '/var/run/secrets/evil/config',
        KUBERNETES_SERVICE_HOST: '127.0.0.1',
        KUBERNETES_SERVICE_PORT: '6443',
      });
      expect(await run(['--listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0'])).toBe(2);
    } finally {
      process.stderr.write = write;
      for (const k of Object.keys(process.env)) if (!(k in saved)) delete process.env[k];
      Object.assign(process.env, saved);
    }
    expect(stderr.join('')).toMatch(/^mcp-warden sidecar: KUBECONFIG is set .*\[ERR_CONFIG\]\n$/);
  });

  test('unknown flags are refused', () => {
    expect(configError(() => parseConfig(['--bogus'], baseEnv()))).toMatch(/bogus/);
  });

  test('listen addresses', () => {
    expect(parseListen(':15080', 'x')).toEqual({ host: '0.0.0.0', port: 15080 });
    expect(parseListen('[::1]:80', 'x')).toEqual({ host: '::1', port: 80 });
    expect(() => parseListen('127.0.0.1:70000', 'x')).toThrow(/not host:port/);
  });

  test('the downward-API labels format', () => {
    expect(parseLabelsFile('a="1"\n\nb="x=y"\n')).toEqual({ a: '1', b: 'x=y' });
    expect(configError(() => parseLabelsFile('a=1'))).toMatch(/cannot parse line "a=1"/);
  });
});

test("approvals name the sidecar's workload: replicas share it, other workloads and bare pods do not", () => {
  expect(
    workloadOf('github-mcp-7d9f8c5b6-x2k9p', { app: 'github-mcp', 'pod-template-hash': '7d9f8c5b6' }),
  ).toBe('Deployment/github-mcp');
  expect(workloadOf('github-mcp-7d9f8c5b6-q8w7e', { 'pod-template-hash': '7d9f8c5b6' })).toBe(
    'Deployment/github-mcp',
  );
  expect(workloadOf('prod-mcp-7d9f8c5b6-x2k9p', { 'pod-template-hash': '7d9f8c5b6' })).toBe(
    'Deployment/prod-mcp',
  );
  expect(workloadOf('db-mcp-2', { 'statefulset.kubernetes.io/pod-name': 'db-mcp-2' })).toBe(
    'StatefulSet/db-mcp',
  );
  // A label that does not fit the pod's name proves nothing: the pod itself.
  expect(workloadOf('lone', { 'pod-template-hash': 'abc' })).toBe('Pod/lone');
  expect(workloadOf('lone-2', { 'statefulset.kubernetes.io/pod-name': 'other-2' })).toBe('Pod/lone-2');
});
