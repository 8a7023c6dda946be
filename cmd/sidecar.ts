/**
 * `mcp-warden sidecar`: the data path inside an MCP server pod, injected by the webhook. Policies
 * come from the `MCPPolicy` objects that select the pod (watched through the API server), status
 * goes back to `MCPPolicy.status` (one entry per pod), metrics and probes on the admin port.
 *
 * Configuration (flags win over env). The env names are the ones webhook/injector.ts sets:
 *   MCP_WARDEN_POD_NAME, MCP_WARDEN_POD_NAMESPACE, MCP_WARDEN_POD_UID
 *                                   downward API (metadata.name/namespace/uid); name and namespace required
 *   MCP_WARDEN_SERVICE_ACCOUNT      downward API (spec.serviceAccountName): approvals this service account
 *                                   created (stamped by the webhook) are the only ones whose tickets are honoured
 *   MCP_WARDEN_UPSTREAM             --upstream URL   the app's MCP endpoint, e.g. http://127.0.0.1:8080/mcp
 *   MCP_WARDEN_TRANSPORT            --transport      streamable-http (default) | sse (legacy HTTP+SSE upstream)
 *   MCP_WARDEN_MCP_PATH             --mcp-path       path served by the proxy (default: the upstream URL's path)
 *   MCP_WARDEN_LISTEN               --listen         host:port or :port (default 0.0.0.0:15080)
 *   MCP_WARDEN_ADMIN_LISTEN         --admin-listen   /metrics /healthz /readyz (default 0.0.0.0:15090)
 *   MCP_WARDEN_RECORDINGS_DIR       --recordings     recordings volume (default: none → recording off)
 *   MCP_WARDEN_POD_LABELS           the pod's labels as a JSON object, or
 *   MCP_WARDEN_POD_LABELS_FILE      a downward-API `metadata.labels` file (default
 *                                   /var/run/secrets/kubernetes.io/serviceaccount/labels when present).
 *                                   Without labels the sidecar cannot evaluate podSelector: it refuses to start.
 *   MCP_WARDEN_UPSTREAM_TIMEOUT     --upstream-timeout  how long to wait for the app's answer headers (a
 *                                   duration, default 5m; annotation mcpwarden.io/upstream-timeout)
 *   MCP_WARDEN_REQUEST_TIMEOUT      --request-timeout  how long a client may take to send a whole request (a
 *                                   duration, default 60s; annotation mcpwarden.io/request-timeout)
 *   MCP_WARDEN_ALLOWED_ORIGINS      --allowed-origins  browser origins accepted besides the sidecar's own, with
 *                                   CORS (comma-separated; annotation mcpwarden.io/allowed-origins)
 *   MCP_WARDEN_POLICY_GRACE_SECONDS --policy-grace   serve the last policies this long while the API server
 *                                   is unreachable, then refuse every call (default 30)
 *   MCP_WARDEN_STATUS_INTERVAL_SECONDS --status-interval  least time between two status writes per policy (default 5)
 *   KUBERNETES_SERVICE_HOST/PORT    the in-cluster API server (set by the kubelet), reached over HTTPS with
 *                                   the service account's token and CA: the only credentials in a pod
 *                                   --kubeconfig PATH  a kubeconfig instead, for a sidecar run outside a pod
 *                                   (tests, local development). There is no env for it: the sidecar
 *                                   never reads KUBECONFIG, and refuses to start when it is set without
 *                                   --kubeconfig (the webhook injects none: fail closed)
 *   MCP_WARDEN_FS_PREFIX            testing seam: prefix of /var/run/secrets/kubernetes.io/serviceaccount
 *                                   (in-cluster token, CA, labels), so e2e tests emulate the pod's volume
 *
 * SIGTERM/SIGINT: stop accepting, write the last status, close recordings, exit 0.
 */
import { existsSync, type FSWatcher, readFileSync, watch } from 'node:fs';
import { dirname } from 'node:path';
import { parseArgs } from 'node:util';
import { ApprovalBroker } from '../pkg/approval/broker.js';
import { ErrorCodes, errorMessage, isWardenError, WardenError } from '../pkg/errors.js';
import { createAuthenticator, createGraphResolverFromEnv } from '../pkg/identity/index.js';
import { createKubeApprovalStore } from '../pkg/kube/approval-store.js';
import {
  createKubeClient,
  createKubePolicySource,
  createStatusReporter,
  loadKubeConfig,
} from '../pkg/kube/index.js';
import {
  awaitingServiceAccountIssuer,
  createServiceAccountIssuer,
  withServiceAccountIssuer,
} from '../pkg/kube/sa-issuer.js';
import { createLogger, type Logger } from '../pkg/log.js';
import { createMetrics } from '../pkg/metrics/catalogue.js';
// The policy modules themselves, not pkg/policy/index.js: that also loads the file source (and
// the yaml parser), which a sidecar never uses.
import { compilePolicies } from '../pkg/policy/compile.js';
import { KubernetesDefaultIssuer } from '../pkg/policy/engine.js';
import type { PolicyDocument } from '../pkg/policy/schema.js';
import { createProxy, startAdminServer } from '../pkg/proxy/index.js';
import { createRecorder } from '../pkg/record/index.js';
import { releaseOptimizingCompiler } from '../pkg/startup.js';
import { durationFlag, originsFlag } from './flags.js';
import { waitForStopSignal } from './signals.js';

const SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

export interface SidecarConfig {
  podName: string;
  namespace: string;
  podUid: string | undefined;
  serviceAccount: string | undefined;
  upstream: string;
  transport: 'streamable-http' | 'sse';
  mcpPath: string;
  listen: { host: string; port: number };
  adminListen: { host: string; port: number };
  recordingsDir: string | undefined;
  podLabels: Record<string, string>;
  /** The downward-API labels file, when labels come from one (watched: pods can be relabelled). */
  podLabelsFile: string | undefined;
  graceMs: number;
  upstreamTimeoutMs: number;
  requestTimeoutMs: number;
  /** Browser origins accepted besides the sidecar's own, with CORS. */
  allowedOrigins: string[] | undefined;
  statusIntervalMs: number;
  /** `--kubeconfig` only (never KUBECONFIG); undefined: the in-cluster service account. */
  kubeconfig: string | undefined;
  fsPrefix: string;
}

/** Ports on which the in-cluster config would speak plain HTTP (client-node's rule, not client-go's). */
const PLAIN_HTTP_PORTS: ReadonlySet<string> = new Set(['80', '8080', '8001']);

/**
 * The API server the sidecar talks to. In a pod, the in-cluster service account only: a
 * KUBECONFIG in its environment is not something the webhook injects (the webhook refuses a
 * re-submitted sidecar that carries one), and it would let whoever set it choose the API server
 * the policies, the token keys and the approvals come from. So KUBECONFIG is never read, and its
 * presence without `--kubeconfig` stops the sidecar (fail closed); a sidecar run outside a pod
 * names its kubeconfig with `--kubeconfig PATH`. Plain HTTP to the in-cluster API server (which
 * client-node's in-cluster rule would use on ports 80, 8080 and 8001) is refused for the same
 * reason: the token would travel in clear to whatever answers, and its answers be trusted.
 */
function kubeconfigOf(flag: string | undefined, env: NodeJS.ProcessEnv): string | undefined {
  if (flag !== undefined) {
    if (flag === '') throw configError('--kubeconfig: give the path of a kubeconfig file');
    return flag;
  }
  if (env['KUBECONFIG']) {
    throw configError(
      `KUBECONFIG is set ("${env['KUBECONFIG']}"), but the sidecar does not read it: in a pod it uses ` +
        'the in-cluster service account only, and the webhook injects no KUBECONFIG. Remove it from ' +
        'the container, or pass --kubeconfig PATH to run the sidecar against a kubeconfig outside a ' +
        'pod (refusing to start: fail closed)',
    );
  }
  const port = env['KUBERNETES_SERVICE_PORT'] ?? '';
  if (PLAIN_HTTP_PORTS.has(port)) {
    throw configError(
      `KUBERNETES_SERVICE_PORT is ${port}: the in-cluster API server would be reached over plain ` +
        'HTTP, sending the service-account token in clear and trusting unauthenticated answers ' +
        '(refusing to start: fail closed). Serve the API server over HTTPS, or pass --kubeconfig PATH',
    );
  }
  return undefined;
}

/**
 * The MCP server a sidecar fronts, as approvals name it (`spec.server`): the workload its pod
 * belongs to, read from the labels its controller sets (`pod-template-hash` for a Deployment's
 * pods, `statefulset.kubernetes.io/pod-name` for a StatefulSet's), else the pod itself. Replicas
 * share approvals; two workloads under one service account do not.
 */
export function workloadOf(podName: string, labels: Record<string, string>): string {
  const hash = labels['pod-template-hash'];
  if (hash !== undefined) {
    const marker = `-${hash}-`;
    const at = podName.lastIndexOf(marker);
    if (at > 0 && /^[a-z0-9]+$/.test(podName.slice(at + marker.length)))
      return `Deployment/${podName.slice(0, at)}`;
  }
  if (labels['statefulset.kubernetes.io/pod-name'] === podName) {
    const m = /^(.+)-\d+$/.exec(podName);
    if (m) return `StatefulSet/${m[1]}`;
  }
  return `Pod/${podName}`;
}

function configError(message: string): WardenError {
  return new WardenError(ErrorCodes.config, message);
}

/** `host:port`, `:port` or `[v6]:port`. */
export function parseListen(value: string, what: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(value.trim());
  const port = m ? Number(m[3]) : Number.NaN;
  if (!m || port > 65535)
    throw configError(`${what}: "${value}" is not host:port (e.g. 0.0.0.0:15080 or :15080)`);
  return { host: m[1] ?? (m[2] === '' || m[2] === undefined ? '0.0.0.0' : m[2]), port };
}

/** The downward-API `metadata.labels` file format: one `key="value"` per line (Go %q quoting). */
export function parseLabelsFile(text: string): Record<string, string> {
  const labels: Record<string, string> = {};
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '') continue;
    const eq = line.indexOf('=');
    const key = eq > 0 ? line.slice(0, eq) : '';
    const quoted = line.slice(eq + 1);
    if (key === '' || !quoted.startsWith('"') || !quoted.endsWith('"') || quoted.length < 2) {
      throw configError(`pod labels file: cannot parse line "${line.slice(0, 100)}" (expected key="value")`);
    }
    try {
      labels[key] = JSON.parse(quoted) as string;
    } catch {
      throw configError(`pod labels file: cannot parse the value of "${key}"`);
    }
  }
  return labels;
}

function readLabels(env: NodeJS.ProcessEnv): { labels: Record<string, string>; file: string | undefined } {
  const json = env['MCP_WARDEN_POD_LABELS'];
  if (json !== undefined && json !== '') {
    let parsed: unknown;
    try {
      parsed = JSON.parse(json);
    } catch {
      throw configError('MCP_WARDEN_POD_LABELS must be a JSON object of string labels');
    }
    if (
      typeof parsed !== 'object' ||
      parsed === null ||
      Array.isArray(parsed) ||
      Object.values(parsed).some((v) => typeof v !== 'string')
    ) {
      throw configError('MCP_WARDEN_POD_LABELS must be a JSON object of string labels');
    }
    return { labels: parsed as Record<string, string>, file: undefined };
  }
  const file =
    env['MCP_WARDEN_POD_LABELS_FILE'] || `${env['MCP_WARDEN_FS_PREFIX'] ?? ''}${SERVICE_ACCOUNT_DIR}/labels`;
  if (!existsSync(file)) {
    throw configError(
      `the pod's labels are unknown, so no MCPPolicy podSelector can be evaluated: mount the downward-API labels at ${file} or set MCP_WARDEN_POD_LABELS (refusing to start: fail closed)`,
    );
  }
  return { labels: parseLabelsFile(readFileSync(file, 'utf8')), file };
}

/**
 * Follow the downward-API labels file (the kubelet swaps it atomically through a symlink, so the
 * directory is watched). Unparseable content keeps the last labels.
 */
function watchLabels(
  file: string,
  onLabels: (labels: Record<string, string>) => void,
  logger: Logger,
): () => void {
  let timer: NodeJS.Timeout | undefined;
  const reread = (): void => {
    if (timer !== undefined) clearTimeout(timer);
    timer = setTimeout(() => {
      try {
        onLabels(parseLabelsFile(readFileSync(file, 'utf8')));
      } catch (err) {
        logger.warn({ err: errorMessage(err) }, 'cannot re-read the pod labels; keeping the last ones');
      }
    }, 100);
  };
  let watcher: FSWatcher | undefined;
  try {
    watcher = watch(dirname(file), reread);
    watcher.on('error', (err) => logger.warn({ err: errorMessage(err) }, 'pod labels watch failed'));
  } catch (err) {
    logger.warn({ err: errorMessage(err) }, 'cannot watch the pod labels file; relabelling needs a restart');
  }
  return () => {
    watcher?.close();
    if (timer !== undefined) clearTimeout(timer);
  };
}

/** A duration flag or its env (`--upstream-timeout`, `--request-timeout`; 1s to 168h), in ms. */
function duration(value: string | undefined, flag: string, fallbackMs: number): number {
  return value === undefined || value === '' ? fallbackMs : durationFlag(value, flag);
}

/** `--allowed-origins` / MCP_WARDEN_ALLOWED_ORIGINS: origins as browsers send them, or none. */
function origins(value: string | undefined): string[] | undefined {
  return value === undefined || value.trim() === '' ? undefined : originsFlag(value, '--allowed-origins');
}

function seconds(value: string | undefined, what: string, fallback: number): number {
  if (value === undefined || value === '') return fallback * 1000;
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0)
    throw configError(`${what}: "${value}" is not a positive number of seconds`);
  return n * 1000;
}

export function parseConfig(argv: string[], env: NodeJS.ProcessEnv): SidecarConfig {
  let values: Record<string, string | undefined>;
  try {
    ({ values } = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        upstream: { type: 'string' },
        transport: { type: 'string' },
        'mcp-path': { type: 'string' },
        listen: { type: 'string' },
        'admin-listen': { type: 'string' },
        recordings: { type: 'string' },
        'policy-grace': { type: 'string' },
        'upstream-timeout': { type: 'string' },
        'request-timeout': { type: 'string' },
        'allowed-origins': { type: 'string' },
        'status-interval': { type: 'string' },
        kubeconfig: { type: 'string' },
      },
    }) as { values: Record<string, string | undefined> });
  } catch (err) {
    throw configError(`sidecar: ${errorMessage(err)}`);
  }
  const podName = env['MCP_WARDEN_POD_NAME'];
  const namespace = env['MCP_WARDEN_POD_NAMESPACE'];
  if (!podName) throw configError('MCP_WARDEN_POD_NAME is not set (downward API metadata.name)');
  if (!namespace) throw configError('MCP_WARDEN_POD_NAMESPACE is not set (downward API metadata.namespace)');
  const upstream = values['upstream'] ?? env['MCP_WARDEN_UPSTREAM'];
  if (!upstream)
    throw configError(
      '--upstream (or MCP_WARDEN_UPSTREAM) is required: the URL of the MCP server in the pod',
    );
  let upstreamUrl: URL;
  try {
    upstreamUrl = new URL(upstream);
  } catch {
    throw configError(`--upstream: "${upstream}" is not a URL`);
  }
  if (upstreamUrl.protocol !== 'http:' && upstreamUrl.protocol !== 'https:')
    throw configError(`--upstream: "${upstream}" must be http(s)`);
  const transport = values['transport'] ?? env['MCP_WARDEN_TRANSPORT'] ?? 'streamable-http';
  if (transport !== 'streamable-http' && transport !== 'sse')
    throw configError(`--transport: "${transport}" is not streamable-http or sse`);
  const mcpPath = values['mcp-path'] ?? env['MCP_WARDEN_MCP_PATH'] ?? (upstreamUrl.pathname || '/mcp');
  if (!mcpPath.startsWith('/')) throw configError(`--mcp-path: "${mcpPath}" must start with /`);
  const labels = readLabels(env);
  return {
    podName,
    namespace,
    podUid: env['MCP_WARDEN_POD_UID'] || undefined,
    serviceAccount: env['MCP_WARDEN_SERVICE_ACCOUNT'] || undefined,
    upstream,
    transport,
    mcpPath,
    listen: parseListen(values['listen'] ?? env['MCP_WARDEN_LISTEN'] ?? '0.0.0.0:15080', '--listen'),
    adminListen: parseListen(
      values['admin-listen'] ?? env['MCP_WARDEN_ADMIN_LISTEN'] ?? '0.0.0.0:15090',
      '--admin-listen',
    ),
    recordingsDir: values['recordings'] ?? (env['MCP_WARDEN_RECORDINGS_DIR'] || undefined),
    podLabels: labels.labels,
    podLabelsFile: labels.file,
    graceMs: seconds(values['policy-grace'] ?? env['MCP_WARDEN_POLICY_GRACE_SECONDS'], '--policy-grace', 30),
    upstreamTimeoutMs: duration(
      values['upstream-timeout'] ?? env['MCP_WARDEN_UPSTREAM_TIMEOUT'],
      '--upstream-timeout',
      5 * 60_000,
    ),
    requestTimeoutMs: duration(
      values['request-timeout'] ?? env['MCP_WARDEN_REQUEST_TIMEOUT'],
      '--request-timeout',
      60_000,
    ),
    allowedOrigins: origins(values['allowed-origins'] ?? env['MCP_WARDEN_ALLOWED_ORIGINS']),
    statusIntervalMs: seconds(
      values['status-interval'] ?? env['MCP_WARDEN_STATUS_INTERVAL_SECONDS'],
      '--status-interval',
      5,
    ),
    kubeconfig: kubeconfigOf(values['kubeconfig'], env),
    fsPrefix: env['MCP_WARDEN_FS_PREFIX'] ?? '',
  };
}

export async function run(argv: string[]): Promise<number> {
  let config: SidecarConfig;
  try {
    config = parseConfig(argv, process.env);
  } catch (err) {
    if (!isWardenError(err)) throw err;
    process.stderr.write(`mcp-warden sidecar: ${err.message} [${err.code}]\n`);
    return 2;
  }
  const logger = createLogger('sidecar');
  // In-cluster unless --kubeconfig: only the kubelet's service env reaches the loader, so
  // KUBECONFIG can never be picked up (see kubeconfigOf).
  const client = createKubeClient(
    loadKubeConfig(
      config.kubeconfig === undefined
        ? {
            pathPrefix: config.fsPrefix,
            env: {
              KUBERNETES_SERVICE_HOST: process.env['KUBERNETES_SERVICE_HOST'],
              KUBERNETES_SERVICE_PORT: process.env['KUBERNETES_SERVICE_PORT'],
            },
          }
        : { kubeconfig: config.kubeconfig },
    ),
  );
  const metrics = createMetrics();

  const kubeSource = createKubePolicySource({
    client,
    namespace: config.namespace,
    podLabels: config.podLabels,
    compile: (docs, options) => compilePolicies(docs as unknown as PolicyDocument[], options),
    gracePeriodMs: config.graceMs,
    logger,
  });
  const saIssuer = createServiceAccountIssuer({ client, logger });
  const source = withServiceAccountIssuer(kubeSource, saIssuer, KubernetesDefaultIssuer);
  const reporter = createStatusReporter({
    client,
    namespace: config.namespace,
    podName: config.podName,
    policies: () => kubeSource.selected(),
    compileError: (policy) => kubeSource.compileError(policy),
    intervalMs: config.statusIntervalMs,
    logger,
  });
  const stopObjects = kubeSource.onObjects(() => reporter.policiesChanged());
  const stopLabels =
    config.podLabelsFile === undefined
      ? () => undefined
      : watchLabels(config.podLabelsFile, (l) => kubeSource.setPodLabels(l), logger);
  // Logs go to stderr, so stdout (the container log) is free for `spec.recording.sink: stdout`.
  const recorder = createRecorder({
    ...(config.recordingsDir === undefined ? {} : { directory: config.recordingsDir }),
    stdout: true,
    metrics,
    logger,
  });

  // Calls a policy decides `approve` become MCPApproval objects in the pod's namespace; the
  // reviewer's verdict (admitted and stamped by the webhook) comes back through a watch.
  const approvalStore = createKubeApprovalStore({ client, namespace: config.namespace, logger });
  const approvals = new ApprovalBroker({
    store: approvalStore,
    pod: config.podName,
    server: workloadOf(config.podName, config.podLabels),
    metrics,
    logger,
    ...(config.serviceAccount === undefined
      ? {}
      : { trustedCreator: `system:serviceaccount:${config.namespace}:${config.serviceAccount}` }),
  });
  approvals
    .start()
    .catch((err: unknown) =>
      logger.error(
        { event: 'approvals-start-failed', err: errorMessage(err) },
        'approval broker failed to start',
      ),
    );

  const proxy = createProxy({
    upstream: config.upstream,
    mcpPath: config.transport === 'sse' ? '/mcp' : config.mcpPath,
    ...(config.transport === 'sse'
      ? { legacySsePaths: { sse: config.mcpPath, message: '/message' }, upstreamSse: config.upstream }
      : {}),
    policySource: source,
    upstreamTimeoutMs: config.upstreamTimeoutMs,
    requestTimeoutMs: config.requestTimeoutMs,
    ...(config.allowedOrigins === undefined ? {} : { allowedOrigins: config.allowedOrigins }),
    // Groups overage (`groupsOverage: graph`) resolves through Microsoft Graph with the pod's own
    // workload identity (AZURE_CLIENT_ID / AZURE_TENANT_ID / AZURE_FEDERATED_TOKEN_FILE, as the Azure
    // Workload Identity webhook injects them); without them an overage token is refused (fail closed).
    authenticator: createAuthenticator({
      metrics,
      allowInsecureLoopback: false,
      graph: createGraphResolverFromEnv(),
    }),
    metrics,
    ...(recorder ? { recorder } : {}),
    approvals,
    podName: config.podName,
    namespace: config.namespace,
    logger,
  });
  const detach = reporter.attach(proxy.events);

  let admin: { url: string; close: () => Promise<void> } | undefined;
  try {
    // Ready once policies are loaded and, when they trust Kubernetes tokens, the cluster's issuer keys.
    const ready = (): boolean => {
      const engine = source.current();
      return engine !== undefined && !awaitingServiceAccountIssuer(engine, saIssuer);
    };
    admin = await startAdminServer({ ...config.adminListen, metrics, ready });
    const bound = await proxy.listen(config.listen.host, config.listen.port);
    logger.info(
      {
        listen: bound.url,
        admin: admin.url,
        upstream: config.upstream,
        pod: config.podName,
        namespace: config.namespace,
        serviceAccount: config.serviceAccount,
        labels: Object.keys(config.podLabels).length,
      },
      'sidecar started',
    );
    // Start-up ends once the policies are compiled and the issuer known (see pkg/startup.ts).
    const startup = setInterval(() => {
      if (!ready()) return;
      clearInterval(startup);
      releaseOptimizingCompiler();
    }, 100);
    startup.unref();
  } catch (err) {
    logger.error({ err: errorMessage(err) }, 'sidecar failed to start');
    detach();
    stopObjects();
    stopLabels();
    saIssuer.close();
    await Promise.allSettled([
      proxy.close(),
      admin?.close(),
      reporter.close(),
      source.close(),
      recorder?.close(),
      approvals.close(),
      approvalStore.close(),
    ]);
    throw err;
  }

  const signal = await waitForStopSignal();
  logger.info({ signal }, 'sidecar stopping');
  // Before the connections drop: calls still held stay open for their callers' repeat.
  await approvals.close();
  await proxy.close();
  detach();
  stopObjects();
  stopLabels();
  saIssuer.close();
  // The last counts reach the status before the pod goes away.
  const results = await Promise.allSettled([reporter.close(), recorder?.close(), admin.close()]);
  await approvalStore.close();
  await source.close();
  for (const r of results)
    if (r.status === 'rejected') logger.warn({ err: errorMessage(r.reason) }, 'shutdown step failed');
  logger.info('sidecar stopped');
  logger.flush();
  return 0;
}
