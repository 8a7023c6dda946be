/**
 * `mcp-warden webhook`: the admission webhook Deployment (2+ replicas).
 *
 * - HTTPS (express) on `--listen`: `/inject` (pods), `/validate-mcppolicy`, `/mutate-mcpapproval`,
 *   `/validate-mcpapproval` (see webhook/admission.ts).
 * - Admin HTTP on `--admin-listen`: `/metrics`, `/healthz`, `/readyz` (ready once serving TLS).
 * - One replica, elected through a Lease, manages the serving certificate (Secret `--secret-name`,
 *   caBundle of the webhook configurations named `--webhook-config-name`) and the status pass
 *   (prune `MCPPolicy.status.pods` of deleted pods, aggregate `status.summary`). Every replica
 *   serves the certificate from the Secret and hot-reloads it.
 * - cert-manager mode (`--cert-dir DIR`): the certificate is read from DIR (tls.crt, tls.key) and
 *   reloaded when it changes; caBundle injection is cert-manager's job.
 *
 * SIGTERM/SIGINT: stop accepting, release the lease, exit 0.
 */
import { hostname } from 'node:os';
import { parseArgs } from 'node:util';
import { ErrorCodes, errorMessage, WardenError } from '../pkg/errors.js';
import { createKubeClient, loadKubeConfig } from '../pkg/kube/client.js';
import { createLogger, type Logger } from '../pkg/log.js';
import { createMetrics } from '../pkg/metrics/catalogue.js';
import { parseDuration } from '../pkg/policy/duration.js';
import { validatePolicy } from '../pkg/policy/validate.js';
import { startAdminServer } from '../pkg/proxy/admin.js';
import { releaseOptimizingCompiler } from '../pkg/startup.js';
import { VERSION } from '../pkg/version.js';
import { createAdmissionApp } from '../webhook/admission.js';
import { type CertStore, defaultRotation, type RotationOptions, reconcileCerts } from '../webhook/certs.js';
import {
  namespaceLabelCache,
  podServiceAccountLookup,
  serverMinorVersion,
  skipEventEmitter,
} from '../webhook/cluster.js';
import { isImagePattern, parseImageReference } from '../webhook/images.js';
import { allowedSidecarImages, defaultResources, type InjectorConfig } from '../webhook/injector.js';
import type { KubeApi } from '../webhook/kube.js';
import { createLeaderElector } from '../webhook/leader.js';
import { type CertSource, fileCertSource, secretCertSource, startHttpsServer } from '../webhook/serving.js';
import { reconcileStatuses } from '../webhook/status.js';
import { waitForStopSignal } from './signals.js';

export interface WebhookConfig {
  listen: { host: string; port: number };
  adminListen: { host: string; port: number };
  namespace: string;
  serviceName: string;
  secretName: string;
  webhookConfigName: string;
  leaseName: string;
  identity: string;
  certDir: string | undefined;
  certNames: string[];
  kubeconfig: string | undefined;
  nativeSidecars: 'auto' | boolean;
  injector: Omit<InjectorConfig, 'nativeSidecars'>;
  rotation: Omit<RotationOptions, 'dnsNames'>;
  rotationCheckMs: number;
  reloadMs: number;
  statusIntervalMs: number;
  statusGraceMs: number;
  /** Delete approvals finished (or expired unfinished) longer ago than this; 0 keeps them all. */
  approvalRetentionMs: number;
  leaseDurationMs: number;
}

const usage = `Usage: mcp-warden webhook [options]
  --listen HOST:PORT            HTTPS admission listener (default 0.0.0.0:8443)
  --admin-listen HOST:PORT      /metrics /healthz /readyz (default 0.0.0.0:9090)
  --namespace NS                the webhook's namespace (default $POD_NAMESPACE)
  --service-name NAME           Service in front of the webhook (default mcp-warden-webhook)
  --secret-name NAME            Secret holding CA + serving cert (default mcp-warden-webhook-tls)
  --webhook-config-name NAME    Mutating/ValidatingWebhookConfiguration name (default mcp-warden)
  --sidecar-image IMAGE         image injected as the sidecar (default ghcr.io/mcp-warden/mcp-warden:${VERSION})
  --allowed-sidecar-images a,b  images pods may name in mcpwarden.io/sidecar-image: a repository
                                (any tag or digest of it) or an exact reference; --sidecar-image is
                                always allowed; empty: only it (default: its repository)
  --sidecar-pull-policy P       Always | IfNotPresent | Never (default: unset)
  --sidecar-cpu-request Q, --sidecar-cpu-limit Q, --sidecar-memory-request Q, --sidecar-memory-limit Q
  --native-sidecars auto|true|false   native sidecars (Kubernetes >= 1.29); auto asks /version (default auto)
  --cert-dir DIR                cert-manager mode: read tls.crt/tls.key from DIR, never write the Secret
  --cert-names a,b              extra SANs for the serving cert (e.g. 127.0.0.1 when registered by url)
  --kubeconfig PATH             else $KUBECONFIG, else the in-cluster service account
  --lease-name NAME             leader-election Lease (default mcp-warden-webhook)
  --identity ID                 this replica's identity (default $POD_NAME or the hostname)
  --ca-lifetime D, --cert-lifetime D   (default 8760h, 2160h); rotated at 2/3 of the lifetime
  --ca-propagation D            wait after publishing a new caBundle before switching CA (default 60s)
  --rotation-check-interval D   (default 1m)   --reload-interval D (default 10s)
  --status-interval D           status prune/aggregate pass (default 30s)  --status-grace D (default 60s)
  --approval-retention D        delete MCPApprovals finished (or expired) longer ago (default 720h; 0 keeps all)
  --lease-duration D            (default 15s)`;

function configError(message: string): WardenError {
  return new WardenError(ErrorCodes.config, `${message}\n${usage}`);
}

function listenAddress(value: string, what: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(value.trim());
  const port = m ? Number(m[3]) : Number.NaN;
  if (!m || port > 65535) throw configError(`${what}: "${value}" is not host:port (e.g. 0.0.0.0:8443)`);
  return { host: m[1] ?? (m[2] === '' || m[2] === undefined ? '0.0.0.0' : m[2]), port };
}

function duration(value: string | undefined, fallback: number, what: string): number {
  if (value === undefined) return fallback;
  const ms = parseDuration(value);
  if (ms === undefined || ms <= 0)
    throw configError(`${what}: "${value}" is not a duration (e.g. 500ms, 30s, 5m, 24h)`);
  return ms;
}

const quantity = /^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$/;
function quantityFlag(
  value: string | undefined,
  fallback: string | undefined,
  what: string,
): string | undefined {
  if (value === undefined) return fallback;
  if (value === '' || value === 'none') return undefined;
  if (!quantity.test(value)) throw configError(`${what}: "${value}" is not a Kubernetes quantity`);
  return value;
}

/** A comma-separated flag value, trimmed, empty items dropped; undefined when the flag is absent. */
function commaList(value: string | undefined): string[] | undefined {
  if (value === undefined) return undefined;
  return value
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
}

export function parseWebhookArgs(argv: string[], env: NodeJS.ProcessEnv = process.env): WebhookConfig {
  let values: Record<string, string | undefined>;
  try {
    values = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: Object.fromEntries(
        [
          'listen',
          'admin-listen',
          'namespace',
          'service-name',
          'secret-name',
          'webhook-config-name',
          'sidecar-image',
          'allowed-sidecar-images',
          'sidecar-pull-policy',
          'sidecar-cpu-request',
          'sidecar-cpu-limit',
          'sidecar-memory-request',
          'sidecar-memory-limit',
          'native-sidecars',
          'cert-dir',
          'cert-names',
          'kubeconfig',
          'lease-name',
          'identity',
          'ca-lifetime',
          'cert-lifetime',
          'ca-propagation',
          'rotation-check-interval',
          'reload-interval',
          'status-interval',
          'status-grace',
          'approval-retention',
          'lease-duration',
        ].map((n) => [n, { type: 'string' as const }]),
      ),
    }).values as Record<string, string | undefined>;
  } catch (err) {
    throw configError(errorMessage(err));
  }
  const namespace = values['namespace'] ?? env['POD_NAMESPACE'] ?? env['MCP_WARDEN_POD_NAMESPACE'];
  if (namespace === undefined || namespace === '')
    throw configError('--namespace (or $POD_NAMESPACE) is required');
  const serviceName = values['service-name'] ?? 'mcp-warden-webhook';
  const native = values['native-sidecars'] ?? 'auto';
  if (!['auto', 'true', 'false'].includes(native))
    throw configError('--native-sidecars: auto, true or false');
  const pull = values['sidecar-pull-policy'];
  if (pull !== undefined && !['Always', 'IfNotPresent', 'Never'].includes(pull)) {
    throw configError('--sidecar-pull-policy: Always, IfNotPresent or Never');
  }
  const cpuLimit = quantityFlag(values['sidecar-cpu-limit'], undefined, '--sidecar-cpu-limit');
  const memoryLimit = quantityFlag(
    values['sidecar-memory-limit'],
    defaultResources.memoryLimit,
    '--sidecar-memory-limit',
  );
  const image = values['sidecar-image'] ?? `ghcr.io/mcp-warden/mcp-warden:${VERSION}`;
  if (parseImageReference(image) === undefined)
    throw configError(`--sidecar-image: "${image}" is not an image reference`);
  const allowedImages = commaList(values['allowed-sidecar-images']);
  for (const pattern of allowedImages ?? []) {
    if (!isImagePattern(pattern)) {
      throw configError(
        `--allowed-sidecar-images: "${pattern}" is neither a repository (registry.example.com/mirror/mcp-warden) ` +
          `nor an image reference (…/mcp-warden:0.1.0, …/mcp-warden@sha256:…); wildcards are not supported`,
      );
    }
  }
  const certNames = commaList(values['cert-names']) ?? [];
  return {
    listen: listenAddress(values['listen'] ?? '0.0.0.0:8443', '--listen'),
    adminListen: listenAddress(values['admin-listen'] ?? '0.0.0.0:9090', '--admin-listen'),
    namespace,
    serviceName,
    secretName: values['secret-name'] ?? 'mcp-warden-webhook-tls',
    webhookConfigName: values['webhook-config-name'] ?? 'mcp-warden',
    leaseName: values['lease-name'] ?? 'mcp-warden-webhook',
    identity: values['identity'] ?? env['POD_NAME'] ?? hostname(),
    certDir: values['cert-dir'],
    certNames,
    kubeconfig: values['kubeconfig'],
    nativeSidecars: native === 'auto' ? 'auto' : native === 'true',
    injector: {
      image,
      ...(allowedImages === undefined ? {} : { allowedImages }),
      ...(pull === undefined ? {} : { imagePullPolicy: pull as 'Always' | 'IfNotPresent' | 'Never' }),
      version: VERSION,
      resources: {
        cpuRequest:
          quantityFlag(values['sidecar-cpu-request'], defaultResources.cpuRequest, '--sidecar-cpu-request') ??
          '',
        memoryRequest:
          quantityFlag(
            values['sidecar-memory-request'],
            defaultResources.memoryRequest,
            '--sidecar-memory-request',
          ) ?? '',
        ...(cpuLimit === undefined ? {} : { cpuLimit }),
        ...(memoryLimit === undefined ? {} : { memoryLimit }),
      },
      webhookNamespace: namespace,
    },
    rotation: {
      ...defaultRotation,
      caLifetimeMs: duration(values['ca-lifetime'], defaultRotation.caLifetimeMs, '--ca-lifetime'),
      servingLifetimeMs: duration(
        values['cert-lifetime'],
        defaultRotation.servingLifetimeMs,
        '--cert-lifetime',
      ),
      propagationMs: duration(values['ca-propagation'], defaultRotation.propagationMs, '--ca-propagation'),
    },
    rotationCheckMs: duration(values['rotation-check-interval'], 60_000, '--rotation-check-interval'),
    reloadMs: duration(values['reload-interval'], 10_000, '--reload-interval'),
    statusIntervalMs: duration(values['status-interval'], 30_000, '--status-interval'),
    statusGraceMs: duration(values['status-grace'], 60_000, '--status-grace'),
    approvalRetentionMs:
      values['approval-retention'] === '0'
        ? 0
        : duration(values['approval-retention'], 720 * 3_600_000, '--approval-retention'),
    leaseDurationMs: duration(values['lease-duration'], 15_000, '--lease-duration'),
  };
}

/** DNS names of the serving certificate: the Service's in-cluster names plus `--cert-names`. */
export function servingNames(
  config: Pick<WebhookConfig, 'serviceName' | 'namespace' | 'certNames'>,
): string[] {
  const { serviceName: s, namespace: n } = config;
  return [...new Set([`${s}.${n}.svc`, `${s}.${n}.svc.cluster.local`, `${s}.${n}`, s, ...config.certNames])];
}

export interface RunningWebhook {
  url: string;
  adminUrl: string;
  isLeader(): boolean;
  close(): Promise<void>;
}

/** A timer that runs `fn` now and then every `ms`, never overlapping itself. */
function loop(fn: () => Promise<void>, ms: number): () => void {
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  const tick = async () => {
    if (stopped) return;
    await fn();
    if (!stopped) timer = setTimeout(() => void tick(), ms);
  };
  void tick();
  return () => {
    stopped = true;
    if (timer !== undefined) clearTimeout(timer);
  };
}

async function decideNativeSidecars(
  kube: KubeApi,
  setting: 'auto' | boolean,
  logger: Logger,
): Promise<boolean> {
  if (setting !== 'auto') return setting;
  try {
    const v = await serverMinorVersion(kube);
    const native = v.major > 1 || (v.major === 1 && v.minor >= 29);
    logger.info({ server: v.gitVersion, nativeSidecars: native }, 'API server version detected');
    return native;
  } catch (err) {
    logger.warn(
      { err: errorMessage(err) },
      'cannot read the API server version: injecting regular containers',
    );
    return false;
  }
}

export async function startWebhook(
  config: WebhookConfig,
  logger = createLogger('webhook'),
): Promise<RunningWebhook> {
  const metrics = createMetrics();
  const kube: KubeApi = createKubeClient(
    loadKubeConfig(config.kubeconfig === undefined ? {} : { kubeconfig: config.kubeconfig }),
  );
  const nativeSidecars = await decideNativeSidecars(kube, config.nativeSidecars, logger);
  let serving = false;
  const admin = await startAdminServer({ ...config.adminListen, metrics, ready: () => serving });

  const store: CertStore = {
    namespace: config.namespace,
    secretName: config.secretName,
    webhookConfigName: config.webhookConfigName,
  };
  const onChange = (c: { notAfter: Date }) => metrics.certExpiry.set(Math.floor(c.notAfter.getTime() / 1000));
  const source: CertSource =
    config.certDir === undefined
      ? secretCertSource(kube, store, { reloadMs: config.reloadMs, logger, onChange })
      : fileCertSource(config.certDir, { reloadMs: config.reloadMs, logger, onChange });

  const rotation: RotationOptions = { ...config.rotation, dnsNames: servingNames(config) };
  const elector = createLeaderElector({
    kube,
    namespace: config.namespace,
    name: config.leaseName,
    identity: config.identity,
    logger,
    leaseDurationMs: config.leaseDurationMs,
    renewDeadlineMs: Math.floor((config.leaseDurationMs * 2) / 3),
    retryPeriodMs: Math.max(200, Math.floor(config.leaseDurationMs / 7)),
  });
  let stopLoops: Array<() => void> = [];
  elector.on('started', () => {
    if (config.certDir === undefined) {
      stopLoops.push(
        loop(async () => {
          try {
            const r = await reconcileCerts(kube, store, rotation);
            if (r.actions.length > 0)
              logger.info({ actions: r.actions, published: r.published }, 'certificates reconciled');
            await source.refresh();
          } catch (err) {
            logger.warn({ err: errorMessage(err) }, 'certificate reconcile failed (retrying)');
          }
        }, config.rotationCheckMs),
      );
    }
    stopLoops.push(
      loop(async () => {
        try {
          await reconcileStatuses(kube, {
            logger,
            graceMs: config.statusGraceMs,
            approvalRetentionMs: config.approvalRetentionMs,
          });
        } catch (err) {
          logger.warn({ err: errorMessage(err) }, 'status pass failed (retrying)');
        }
      }, config.statusIntervalMs),
    );
  });
  elector.on('stopped', () => {
    for (const stop of stopLoops) stop();
    stopLoops = [];
  });
  elector.start();

  const app = createAdmissionApp({
    injector: { ...config.injector, nativeSidecars },
    validatePolicy,
    metrics,
    logger,
    namespaceLabels: namespaceLabelCache(kube, { logger }),
    emitSkipEvent: skipEventEmitter(kube, { logger }),
    podServiceAccount: podServiceAccountLookup(kube, { logger }),
  });
  const abort = new AbortController();
  let https: Awaited<ReturnType<typeof startHttpsServer>>;
  try {
    https = await startHttpsServer({ ...config.listen, handler: app, source, logger, signal: abort.signal });
  } catch (err) {
    await elector.stop();
    source.close();
    await admin.close();
    throw err;
  }
  serving = true;
  logger.info(
    {
      url: https.url,
      admin: admin.url,
      nativeSidecars,
      identity: config.identity,
      sidecarImage: config.injector.image,
      allowedSidecarImages: allowedSidecarImages({ ...config.injector, nativeSidecars }),
    },
    'webhook serving',
  );
  let closed = false;
  return {
    url: https.url,
    adminUrl: admin.url,
    isLeader: () => elector.isLeader(),
    async close() {
      if (closed) return;
      closed = true;
      serving = false;
      abort.abort();
      for (const stop of stopLoops) stop();
      await https.close();
      await elector.stop();
      source.close();
      await admin.close();
    },
  };
}

export async function run(argv: string[]): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(`${usage}\n`);
    return 0;
  }
  const config = parseWebhookArgs(argv);
  const logger = createLogger('webhook');
  const webhook = await startWebhook(config, logger);
  // Parents (tests, supervisors) read this line to learn the bound addresses.
  process.stdout.write(
    `${JSON.stringify({ event: 'listening', url: webhook.url, admin: webhook.adminUrl })}\n`,
  );
  releaseOptimizingCompiler(); // start-up is over (see pkg/startup.ts)
  const signal = await waitForStopSignal();
  logger.info({ signal }, 'shutting down');
  await webhook.close();
  return 0;
}
