/**
 * End-to-end harness: a real etcd + kube-apiserver on loopback, built by `hack/build-k8s-tools.sh`
 * (`make k8s-tools`). RBAC and the Node authorizer are on, the service-account issuer is
 * configured, the admission webhooks plugins are enabled, and there is no kubelet (pods stay
 * Pending). One cluster per test file is the intended use (start-up takes a few seconds):
 *
 * @example
 * let cluster: Cluster;
 * beforeAll(async () => { cluster = await startCluster(); }, 120_000);
 * afterAll(async () => { await cluster?.stop(); });
 * test('x', async () => {
 *   const reviewer = await cluster.user('rita', ['mcp-reviewers']);
 *   const { stdout } = await cluster.kubectl(['get', 'mcpp', '-A'], { user: reviewer });
 * });
 *
 * Everything lives in one temp dir (certificates, kubeconfigs, etcd data, logs) that `stop()`
 * removes; the processes are killed on `stop()` and, as a last resort, when the jest worker exits.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { createWriteStream, existsSync, type WriteStream } from 'node:fs';
import { copyFile, mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { KubeConfig } from '@kubernetes/client-node';
import forge from 'node-forge';
import { createKubeClient, type KubeClient, type KubeObject } from '../../pkg/kube/client.js';

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
export const TOOLS_DIR = join(REPO_ROOT, '.cache', 'bin');
/** The CRDs applied by default (`MCP_WARDEN_E2E_CRDS` overrides, e.g. to try a freshly generated set). */
export const CRDS_DIR = process.env['MCP_WARDEN_E2E_CRDS'] || join(REPO_ROOT, 'crds');

/** A principal the tests act as: a kubeconfig file for kubectl plus ready clients. */
export interface ClusterUser {
  /** Username as the API server sees it (`system:serviceaccount:ns:name` for service accounts). */
  name: string;
  groups: string[];
  kubeconfigPath: string;
  kubeConfig: KubeConfig;
  client: KubeClient;
}

export interface KubectlResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface ServiceAccountTokenOptions {
  audiences?: string[];
  expirationSeconds?: number;
  /** Bind the token to a pod (as the kubelet's projected token is). */
  boundPod?: { name: string; uid: string };
}

export interface Cluster {
  /** Temp dir holding certificates, kubeconfigs, data and logs (removed by `stop()`). */
  dir: string;
  /** `https://127.0.0.1:PORT` */
  server: string;
  /** `gitVersion` reported by the server, e.g. `v1.37.2`. */
  version: string;
  caPem: string;
  caFile: string;
  /** `--service-account-issuer` (the `iss` of service-account tokens): equals `server`. */
  serviceAccountIssuer: string;
  /** system:admin in group system:masters. */
  admin: ClusterUser;
  /** A client-certificate user with the given name and groups (no permissions until bound). */
  user(name: string, groups?: string[]): Promise<ClusterUser>;
  /** Create the namespace (with labels) and its `default` service account (no controller-manager runs). */
  createNamespace(name: string, labels?: Record<string, string>): Promise<void>;
  /** Create a service account if missing. */
  createServiceAccount(namespace: string, name: string): Promise<void>;
  /** A real token from the TokenRequest API. */
  serviceAccountToken(namespace: string, name: string, options?: ServiceAccountTokenOptions): Promise<string>;
  /** A user presenting `token` (any bearer token) and nothing else. */
  tokenUser(token: string, label?: string): Promise<ClusterUser>;
  /** A user acting with a fresh TokenRequest token of the service account. */
  serviceAccountUser(
    namespace: string,
    name: string,
    options?: ServiceAccountTokenOptions,
  ): Promise<ClusterUser & { token: string }>;
  /** Run the built kubectl as `user` (default admin). Never throws on a non-zero exit. */
  kubectl(
    args: string[],
    options?: { user?: ClusterUser; input?: string; timeoutMs?: number },
  ): Promise<KubectlResult>;
  /** `kubectl apply -f crds/` and wait until every CRD is Established. Returns the files applied. */
  applyCrds(dir?: string): Promise<string[]>;
  /** Environment for child processes that use kubectl/helm against this cluster as admin. */
  env(user?: ClusterUser): NodeJS.ProcessEnv;
  /** Process groups of etcd and kube-apiserver (each runs under its guardian shell). */
  processGroups(): number[];
  /** Last lines of the etcd and kube-apiserver logs (for failure messages). */
  logs(): { etcd: string; apiserver: string };
  stop(): Promise<void>;
}

export interface StartClusterOptions {
  /** Apply crds/*.yaml when present (default true). */
  crds?: boolean;
  /** Extra kube-apiserver flags. */
  apiserverArgs?: string[];
  /** Readiness deadline (default 90 s: the machine may be busy). */
  readyTimeoutMs?: number;
}

/** Throws a clear error when the tools have not been built (helm only when `withHelm`). */
export function requireTools(withHelm = false): {
  etcd: string;
  kubeApiserver: string;
  kubectl: string;
  helm: string;
} {
  const tools = {
    etcd: join(TOOLS_DIR, 'etcd'),
    kubeApiserver: join(TOOLS_DIR, 'kube-apiserver'),
    kubectl: join(TOOLS_DIR, 'kubectl'),
    helm: join(TOOLS_DIR, 'helm'),
  };
  const missing = Object.entries(tools)
    .filter(([name, p]) => (withHelm || name !== 'helm') && !existsSync(p))
    .map(([, p]) => p);
  if (missing.length > 0) {
    throw new Error(
      `e2e tools missing (${missing.join(', ')}): run \`make k8s-tools\` (bash hack/build-k8s-tools.sh) first`,
    );
  }
  return tools;
}

// ---------------------------------------------------------------------------------------------
// Helpers for tests

const LOADER = `export async function resolve(specifier, context, next) {
  try {
    return await next(specifier, context);
  } catch (err) {
    if (err?.code === 'ERR_MODULE_NOT_FOUND' && /^\\.{1,2}\\//.test(specifier) && specifier.endsWith('.js')) {
      return next(specifier.slice(0, -3) + '.ts', context);
    }
    throw err;
  }
}
`;

/**
 * Node flags that run this repo's TypeScript sources directly as a child process (type stripping,
 * `.js` specifiers resolved to the `.ts` files), so e2e tests exercise the code under test rather
 * than a possibly stale `dist/`. Usage: spawn(process.execPath, [...await tsNodeArgs(dir), 'cmd/mcp-warden.ts', ...]).
 */
export async function tsNodeArgs(dir: string): Promise<string[]> {
  const loader = join(dir, 'ts-loader.mjs');
  const register = join(dir, 'ts-register.mjs');
  if (!existsSync(register)) {
    await writeFile(loader, LOADER);
    await writeFile(
      register,
      `import { register } from 'node:module';\nregister(${JSON.stringify(`file://${loader}`)});\n`,
    );
  }
  return ['--experimental-transform-types', '--no-warnings', '--import', register];
}

/**
 * Write what the kubelet projects into the sidecar's token volume (`mcp-warden-token`): the
 * pod-bound token, the cluster CA, the namespace, and the pod's labels (downward API format,
 * sorted, values JSON-quoted). Returns the directory.
 */
export async function writeTokenVolume(
  dir: string,
  volume: { token: string; caPem: string; namespace: string; labels: Record<string, string> | undefined },
): Promise<string> {
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'token'), volume.token);
  await writeFile(join(dir, 'ca.crt'), volume.caPem);
  await writeFile(join(dir, 'namespace'), volume.namespace);
  await writeFile(
    join(dir, 'labels'),
    Object.entries(volume.labels ?? {})
      .sort()
      .map(([k, v]) => `${k}=${JSON.stringify(v)}`)
      .join('\n'),
  );
  return dir;
}

/**
 * Watch one object until `predicate` holds (resolves with it) or `timeoutMs` passes (rejects with
 * the last state seen). Event-driven: no polling.
 */
export async function waitForObject<T extends KubeObject>(
  client: KubeClient,
  collectionPath: string,
  name: string,
  predicate: (obj: T) => boolean,
  timeoutMs = 30_000,
): Promise<T> {
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), timeoutMs);
  let last: T | undefined;
  try {
    for (;;) {
      const list = await client.request<{ metadata: { resourceVersion: string }; items: T[] }>(
        'GET',
        collectionPath,
        {
          query: { fieldSelector: `metadata.name=${name}` },
        },
      );
      last = list.items[0];
      if (last !== undefined && predicate(last)) return last;
      let found: T | undefined;
      await client
        .watch(
          collectionPath,
          {
            query: {
              fieldSelector: `metadata.name=${name}`,
              resourceVersion: list.metadata.resourceVersion,
              timeoutSeconds: Math.ceil(timeoutMs / 1000),
            },
            signal: abort.signal,
          },
          (event) => {
            if (event.type === 'ADDED' || event.type === 'MODIFIED') {
              last = event.object as T;
              if (found === undefined && predicate(last)) {
                found = last;
                abort.abort();
              }
            }
          },
        )
        .catch((err: unknown) => {
          if (!abort.signal.aborted) throw err;
        });
      if (found !== undefined) return found;
      if (abort.signal.aborted)
        throw new Error(
          `${collectionPath}/${name}: condition not met within ${timeoutMs} ms; last seen:\n${JSON.stringify(last, null, 1)?.slice(0, 4000)}`,
        );
    }
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Run a program to completion and collect its output. Never throws on a non-zero exit; killed
 * (SIGKILL, code -1) after `timeoutMs` (default 60 s).
 */
export async function runProcess(
  bin: string,
  args: string[],
  options: { env: NodeJS.ProcessEnv; input?: string; cwd?: string; timeoutMs?: number },
): Promise<KubectlResult> {
  const child = spawn(bin, args, {
    stdio: ['pipe', 'pipe', 'pipe'],
    env: options.env,
    ...(options.cwd ? { cwd: options.cwd } : {}),
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (c: string) => {
    stdout += c;
  });
  child.stderr.setEncoding('utf8').on('data', (c: string) => {
    stderr += c;
  });
  child.stdin.end(options.input ?? '');
  const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 60_000);
  const [code] = (await once(child, 'close')) as [number | null];
  clearTimeout(timer);
  return { code: code ?? -1, stdout, stderr };
}

/** `helm template` of one template file of charts/mcp-warden in a throwaway chart (values given). */
export async function helmTemplate(
  template: string,
  values: string,
  workDir: string,
): Promise<KubectlResult> {
  const chart = join(workDir, `chart-${randomBytes(4).toString('hex')}`);
  await mkdir(join(chart, 'templates'), { recursive: true });
  await writeFile(join(chart, 'Chart.yaml'), 'apiVersion: v2\nname: mcp-warden\nversion: 0.1.0\n');
  await copyFile(template, join(chart, 'templates', basename(template)));
  await writeFile(join(chart, 'values.yaml'), values);
  return runProcess(requireTools(true).helm, ['template', 'rel', chart], {
    env: { PATH: process.env['PATH'] ?? '', HOME: workDir },
  });
}

// ---------------------------------------------------------------------------------------------
// Certificates (node:crypto keys, node-forge X.509)

interface KeyPair {
  privateKeyPem: string;
  publicKeyPem: string;
}

function rsaKey(): KeyPair {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', {
    modulusLength: 2048,
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
    publicKeyEncoding: { type: 'spki', format: 'pem' },
  });
  return { privateKeyPem: privateKey, publicKeyPem: publicKey };
}

interface Issued {
  certPem: string;
  keyPem: string;
}

function issueCert(options: {
  subject: forge.pki.CertificateField[];
  ca?: { certPem: string; keyPem: string };
  isCa?: boolean;
  server?: { dns: string[]; ips: string[] };
  client?: boolean;
}): Issued {
  const key = rsaKey();
  const cert = forge.pki.createCertificate();
  cert.publicKey = forge.pki.publicKeyFromPem(key.publicKeyPem);
  cert.serialNumber = `01${randomBytes(15).toString('hex')}`;
  const now = Date.now();
  cert.validity.notBefore = new Date(now - 60 * 60 * 1000);
  cert.validity.notAfter = new Date(now + 24 * 60 * 60 * 1000);
  cert.setSubject(options.subject);
  const exts: Array<Record<string, unknown>> = [];
  if (options.isCa) {
    exts.push({ name: 'basicConstraints', cA: true, critical: true });
    exts.push({ name: 'keyUsage', keyCertSign: true, cRLSign: true, digitalSignature: true, critical: true });
  } else {
    exts.push({ name: 'basicConstraints', cA: false });
    exts.push({ name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true });
    exts.push({
      name: 'extKeyUsage',
      serverAuth: options.server !== undefined,
      clientAuth: options.client === true,
    });
  }
  if (options.server) {
    exts.push({
      name: 'subjectAltName',
      altNames: [
        ...options.server.dns.map((value) => ({ type: 2, value })),
        ...options.server.ips.map((ip) => ({ type: 7, ip })),
      ],
    });
  }
  cert.setExtensions(exts);
  if (options.ca) {
    const caCert = forge.pki.certificateFromPem(options.ca.certPem);
    cert.setIssuer(caCert.subject.attributes);
    cert.sign(forge.pki.privateKeyFromPem(options.ca.keyPem), forge.md.sha256.create());
  } else {
    cert.setIssuer(options.subject);
    cert.sign(forge.pki.privateKeyFromPem(key.privateKeyPem), forge.md.sha256.create());
  }
  // node-forge writes PKCS#1 keys; Go's TLS stack reads both.
  return { certPem: forge.pki.certificateToPem(cert), keyPem: key.privateKeyPem };
}

// ---------------------------------------------------------------------------------------------
// Processes

async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const address = server.address();
  const port = typeof address === 'object' && address !== null ? address.port : 0;
  server.close();
  await once(server, 'close');
  return port;
}

/**
 * `sh -c GUARDIAN guardian PARENT_PID BIN ARGS...`: runs BIN, forwards SIGTERM/SIGINT to it, and
 * terminates it once PARENT_PID is gone (checked every second). Exits with BIN's exit code.
 */
const GUARDIAN = `parent=$1; shift
"$@" &
child=$!
(while kill -0 "$parent" 2>/dev/null; do sleep 1; done; kill -TERM "$child" 2>/dev/null) </dev/null >/dev/null 2>&1 &
watchdog=$!
trap 'kill -TERM "$child" 2>/dev/null' TERM INT
while :; do
  wait "$child"; code=$?
  # A trapped signal ends wait early: wait again until the child is really gone (reaped).
  kill -0 "$child" 2>/dev/null || break
done
kill "$watchdog" 2>/dev/null
exit "$code"
`;

class Proc {
  readonly child: ChildProcess;
  private tail = '';
  private readonly log: WriteStream;
  exited = false;
  exitCode: number | null = null;
  readonly exitPromise: Promise<void>;

  constructor(
    readonly name: string,
    bin: string,
    args: string[],
    logFile: string,
    env: NodeJS.ProcessEnv,
  ) {
    this.log = createWriteStream(logFile);
    // Run under a tiny shell guardian that stops the server when this test process disappears
    // (jest killed, Ctrl-C): no orphaned etcd/kube-apiserver on a shared machine.
    // Its own process group, so a last-resort SIGKILL reaches the server too, not just the shell.
    this.child = spawn('/bin/sh', ['-c', GUARDIAN, 'guardian', String(process.pid), bin, ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env,
      detached: true,
    });
    const onData = (chunk: Buffer): void => {
      this.log.write(chunk);
      this.tail = (this.tail + chunk.toString('utf8')).slice(-8000);
    };
    this.child.stdout?.on('data', onData);
    this.child.stderr?.on('data', onData);
    this.exitPromise = new Promise((resolveExit) => {
      this.child.once('exit', (code) => {
        this.exited = true;
        this.exitCode = code;
        resolveExit();
      });
      this.child.once('error', (err) => {
        this.tail += `\nspawn error: ${err.message}`;
        this.exited = true;
        resolveExit();
      });
    });
    live.add(this);
  }

  /** SIGKILL the guardian, the server and the watchdog. */
  killGroup(): void {
    if (this.child.pid === undefined) return;
    try {
      process.kill(-this.child.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }

  lastLines(n = 30): string {
    return this.tail.split('\n').slice(-n).join('\n');
  }

  async stop(): Promise<void> {
    if (!this.exited) {
      this.child.kill('SIGTERM');
      const timer = setTimeout(() => this.killGroup(), 5000);
      await this.exitPromise;
      clearTimeout(timer);
    }
    live.delete(this);
    await new Promise<void>((r) => this.log.end(r));
  }
}

/**
 * Processes still running: killed synchronously if the worker exits without `stop()`. One set and
 * one exit hook per process (jest re-imports this module for every test file in a worker).
 */
const liveKey = Symbol.for('mcp-warden.e2e.live-processes');
const globalRef = globalThis as unknown as Record<symbol, Set<Proc> | undefined>;
const live: Set<Proc> =
  globalRef[liveKey] ??
  (() => {
    const set = new Set<Proc>();
    globalRef[liveKey] = set;
    process.once('exit', () => {
      for (const p of set) if (!p.exited) p.killGroup();
    });
    return set;
  })();

function probe(
  url: string,
  tls?: { ca: string; cert: string; key: string },
): Promise<{ status: number; body: string }> {
  return new Promise((resolveProbe) => {
    const u = new URL(url);
    const req = (u.protocol === 'https:' ? httpsRequest : httpRequest)(
      {
        hostname: u.hostname,
        port: u.port,
        path: u.pathname + u.search,
        method: 'GET',
        timeout: 2000,
        ...(tls ?? {}),
      },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => {
          body += c;
        });
        res.on('end', () => resolveProbe({ status: res.statusCode ?? 0, body }));
        res.on('error', () => resolveProbe({ status: 0, body: '' }));
      },
    );
    req.on('timeout', () => req.destroy());
    req.on('error', (err) => resolveProbe({ status: 0, body: err.message }));
    req.end();
  });
}

/** Poll `check` every 100 ms until it returns true, the process dies, or the deadline passes. */
async function waitUntil(
  what: string,
  proc: Proc,
  deadline: number,
  check: () => Promise<boolean>,
): Promise<void> {
  for (;;) {
    if (proc.exited)
      throw new Error(
        `${what}: ${proc.name} exited with code ${proc.exitCode} before it was ready:\n${proc.lastLines()}`,
      );
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`${what}: not ready in time:\n${proc.lastLines()}`);
    // Poll, but wake at once if the process dies.
    await Promise.race([new Promise((r) => setTimeout(r, 100)), proc.exitPromise]);
  }
}

// ---------------------------------------------------------------------------------------------
// Kubeconfig

function kubeconfigYaml(
  server: string,
  caPem: string,
  user: { certPem: string; keyPem: string } | { token: string },
  name: string,
): string {
  const b64 = (s: string): string => Buffer.from(s).toString('base64');
  const userEntry =
    'token' in user
      ? `    token: ${user.token}`
      : `    client-certificate-data: ${b64(user.certPem)}\n    client-key-data: ${b64(user.keyPem)}`;
  return [
    'apiVersion: v1',
    'kind: Config',
    'clusters:',
    '- name: e2e',
    '  cluster:',
    `    server: ${server}`,
    `    certificate-authority-data: ${b64(caPem)}`,
    'users:',
    `- name: ${JSON.stringify(name)}`,
    '  user:',
    userEntry,
    'contexts:',
    '- name: e2e',
    '  context:',
    '    cluster: e2e',
    `    user: ${JSON.stringify(name)}`,
    'current-context: e2e',
    '',
  ].join('\n');
}

// ---------------------------------------------------------------------------------------------

export async function startCluster(options: StartClusterOptions = {}): Promise<Cluster> {
  const tools = requireTools();
  const dir = await mkdtemp(join(tmpdir(), 'mcp-warden-e2e-'));
  const procs: Proc[] = [];
  const stopAll = async (): Promise<void> => {
    for (const p of procs.reverse()) await p.stop();
    await rm(dir, { recursive: true, force: true });
  };
  try {
    return await boot(dir, tools, procs, options, stopAll);
  } catch (err) {
    await stopAll();
    throw err;
  }
}

async function boot(
  dir: string,
  tools: ReturnType<typeof requireTools>,
  procs: Proc[],
  options: StartClusterOptions,
  stopAll: () => Promise<void>,
): Promise<Cluster> {
  const deadline = Date.now() + (options.readyTimeoutMs ?? 90_000);
  const childEnv: NodeJS.ProcessEnv = { PATH: process.env['PATH'] ?? '/usr/bin:/bin', HOME: dir };

  // --- PKI
  const ca = issueCert({ subject: [{ name: 'commonName', value: 'mcp-warden-e2e-ca' }], isCa: true });
  const serving = issueCert({
    subject: [{ name: 'commonName', value: 'kube-apiserver' }],
    ca: { certPem: ca.certPem, keyPem: ca.keyPem },
    server: {
      dns: [
        'localhost',
        'kubernetes',
        'kubernetes.default',
        'kubernetes.default.svc',
        'kubernetes.default.svc.cluster.local',
      ],
      ips: ['127.0.0.1', '10.96.0.1'],
    },
  });
  const mintClient = (name: string, groups: string[]): Issued =>
    issueCert({
      subject: [
        { name: 'commonName', value: name },
        ...groups.map((g) => ({ name: 'organizationName', value: g })),
      ],
      ca: { certPem: ca.certPem, keyPem: ca.keyPem },
      client: true,
    });
  const adminCert = mintClient('system:admin', ['system:masters']);
  const saKey = rsaKey();
  const caFile = join(dir, 'ca.crt');
  await Promise.all([
    writeFile(caFile, ca.certPem),
    writeFile(join(dir, 'apiserver.crt'), serving.certPem),
    writeFile(join(dir, 'apiserver.key'), serving.keyPem, { mode: 0o600 }),
    writeFile(join(dir, 'sa.key'), saKey.privateKeyPem, { mode: 0o600 }),
    writeFile(join(dir, 'sa.pub'), saKey.publicKeyPem),
  ]);

  // --- etcd
  const [etcdClientPort, etcdPeerPort, apiPort] = await Promise.all([freePort(), freePort(), freePort()]);
  const etcdUrl = `http://127.0.0.1:${etcdClientPort}`;
  const peerUrl = `http://127.0.0.1:${etcdPeerPort}`;
  const etcd = new Proc(
    'etcd',
    tools.etcd,
    [
      '--name=e2e',
      `--data-dir=${join(dir, 'etcd')}`,
      `--listen-client-urls=${etcdUrl}`,
      `--advertise-client-urls=${etcdUrl}`,
      `--listen-peer-urls=${peerUrl}`,
      `--initial-advertise-peer-urls=${peerUrl}`,
      `--initial-cluster=e2e=${peerUrl}`,
      '--unsafe-no-fsync=true',
      '--log-level=warn',
    ],
    join(dir, 'etcd.log'),
    childEnv,
  );
  procs.push(etcd);
  await waitUntil('etcd', etcd, deadline, async () => {
    const r = await probe(`${etcdUrl}/health`);
    return r.status === 200 && r.body.includes('"health":"true"');
  });

  // --- kube-apiserver
  const server = `https://127.0.0.1:${apiPort}`;
  const apiserver = new Proc(
    'kube-apiserver',
    tools.kubeApiserver,
    [
      `--etcd-servers=${etcdUrl}`,
      '--bind-address=127.0.0.1',
      '--advertise-address=127.0.0.1',
      `--secure-port=${apiPort}`,
      `--cert-dir=${join(dir, 'apiserver-certs')}`,
      `--tls-cert-file=${join(dir, 'apiserver.crt')}`,
      `--tls-private-key-file=${join(dir, 'apiserver.key')}`,
      `--client-ca-file=${caFile}`,
      '--authorization-mode=Node,RBAC',
      `--service-account-issuer=${server}`,
      `--service-account-key-file=${join(dir, 'sa.pub')}`,
      `--service-account-signing-key-file=${join(dir, 'sa.key')}`,
      '--service-cluster-ip-range=10.96.0.0/24',
      '--enable-admission-plugins=NamespaceLifecycle,ServiceAccount,NodeRestriction,MutatingAdmissionWebhook,ValidatingAdmissionWebhook,ValidatingAdmissionPolicy',
      // No nodes: a loopback endpoint for the `kubernetes` Service would be rejected anyway.
      '--endpoint-reconciler-type=none',
      '--allow-privileged=true',
      '--profiling=false',
      '--enable-priority-and-fairness=false',
      ...(options.apiserverArgs ?? []),
    ],
    join(dir, 'kube-apiserver.log'),
    childEnv,
  );
  procs.push(apiserver);
  const adminTls = { ca: ca.certPem, cert: adminCert.certPem, key: adminCert.keyPem };
  await waitUntil(
    'kube-apiserver',
    apiserver,
    deadline,
    async () => (await probe(`${server}/readyz`, adminTls)).status === 200,
  );
  const versionInfo = JSON.parse((await probe(`${server}/version`, adminTls)).body) as { gitVersion: string };

  // --- users
  const makeUser = async (
    name: string,
    groups: string[],
    creds: { certPem: string; keyPem: string } | { token: string },
  ): Promise<ClusterUser> => {
    const file = join(
      dir,
      `kubeconfig-${name.replace(/[^A-Za-z0-9._-]/g, '_')}-${randomBytes(3).toString('hex')}`,
    );
    const yaml = kubeconfigYaml(server, ca.certPem, creds, name);
    await writeFile(file, yaml, { mode: 0o600 });
    const kubeConfig = new KubeConfig();
    kubeConfig.loadFromString(yaml);
    return { name, groups, kubeconfigPath: file, kubeConfig, client: createKubeClient(kubeConfig) };
  };
  const admin = await makeUser('system:admin', ['system:masters'], adminCert);
  const kubecache = join(dir, 'kubectl-cache');

  const kubectl = (
    args: string[],
    opts: { user?: ClusterUser; input?: string; timeoutMs?: number } = {},
  ): Promise<KubectlResult> =>
    runProcess(tools.kubectl, args, {
      env: { ...childEnv, KUBECONFIG: (opts.user ?? admin).kubeconfigPath, KUBECACHEDIR: kubecache },
      ...(opts.input === undefined ? {} : { input: opts.input }),
      ...(opts.timeoutMs === undefined ? {} : { timeoutMs: opts.timeoutMs }),
    });

  const createServiceAccount = async (namespace: string, name: string): Promise<void> => {
    try {
      await admin.client.request('POST', `/api/v1/namespaces/${namespace}/serviceaccounts`, {
        body: { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name, namespace } },
      });
    } catch (err) {
      if ((err as { status?: number }).status !== 409) throw err;
    }
  };

  const serviceAccountToken = async (
    namespace: string,
    name: string,
    o: ServiceAccountTokenOptions = {},
  ): Promise<string> => {
    const res = await admin.client.request<{ status: { token: string } }>(
      'POST',
      `/api/v1/namespaces/${namespace}/serviceaccounts/${name}/token`,
      {
        body: {
          apiVersion: 'authentication.k8s.io/v1',
          kind: 'TokenRequest',
          spec: {
            ...(o.audiences ? { audiences: o.audiences } : {}),
            expirationSeconds: o.expirationSeconds ?? 3600,
            ...(o.boundPod
              ? {
                  boundObjectRef: {
                    apiVersion: 'v1',
                    kind: 'Pod',
                    name: o.boundPod.name,
                    uid: o.boundPod.uid,
                  },
                }
              : {}),
          },
        },
      },
    );
    return res.status.token;
  };

  const applyCrds = async (crdDir = CRDS_DIR): Promise<string[]> => {
    const files = existsSync(crdDir) ? (await readdir(crdDir)).filter((f) => /\.ya?ml$/.test(f)).sort() : [];
    if (files.length === 0) return [];
    const r = await kubectl(['apply', '--server-side', '--force-conflicts', '-f', crdDir]);
    if (r.code !== 0) throw new Error(`kubectl apply -f ${crdDir} failed:\n${r.stderr}`);
    const w = await kubectl(['wait', '--for=condition=Established', 'crd', '--all', '--timeout=60s']);
    if (w.code !== 0) throw new Error(`CRDs did not become Established:\n${w.stderr}`);
    return files.map((f) => join(crdDir, f));
  };

  // Service-account tokens are verified by discovery (`<issuer>/.well-known/openid-configuration`):
  // let anyone read it, as clusters that publish their issuer do.
  await admin.client.request('POST', '/apis/rbac.authorization.k8s.io/v1/clusterrolebindings', {
    body: {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'ClusterRoleBinding',
      metadata: { name: 'e2e-public-issuer-discovery' },
      roleRef: {
        apiGroup: 'rbac.authorization.k8s.io',
        kind: 'ClusterRole',
        name: 'system:service-account-issuer-discovery',
      },
      subjects: [{ apiGroup: 'rbac.authorization.k8s.io', kind: 'Group', name: 'system:unauthenticated' }],
    },
  });

  const cluster: Cluster = {
    dir,
    server,
    version: versionInfo.gitVersion,
    caPem: ca.certPem,
    caFile,
    serviceAccountIssuer: server,
    admin,
    user: (name, groups = []) => makeUser(name, groups, mintClient(name, groups)),
    async createNamespace(name, labels) {
      await admin.client.request('POST', '/api/v1/namespaces', {
        body: { apiVersion: 'v1', kind: 'Namespace', metadata: { name, ...(labels ? { labels } : {}) } },
      });
      await createServiceAccount(name, 'default');
    },
    createServiceAccount,
    serviceAccountToken,
    tokenUser: (token, label = 'token-user') => makeUser(label, [], { token }),
    async serviceAccountUser(namespace, name, o) {
      const token = await serviceAccountToken(namespace, name, o);
      const user = await makeUser(
        `system:serviceaccount:${namespace}:${name}`,
        ['system:serviceaccounts', `system:serviceaccounts:${namespace}`],
        { token },
      );
      return { ...user, token };
    },
    kubectl,
    applyCrds,
    env: (user) => ({ ...childEnv, KUBECONFIG: (user ?? admin).kubeconfigPath, KUBECACHEDIR: kubecache }),
    logs: () => ({ etcd: etcd.lastLines(), apiserver: apiserver.lastLines() }),
    processGroups: () => [etcd.child.pid, apiserver.child.pid].filter((p): p is number => p !== undefined),
    stop: stopAll,
  };
  if (options.crds !== false) await applyCrds();
  return cluster;
}
