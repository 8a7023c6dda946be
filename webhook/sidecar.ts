import { createHash } from 'node:crypto';
import type { V1Container, V1Pod, V1Volume } from '@kubernetes/client-node';
import { errorMessage, WardenError } from '../pkg/errors.js';
import { durationError } from '../pkg/policy/duration.js';
import { parseOrigins } from '../pkg/proxy/origins.js';
import { Annotations, DefaultMcpPath, Sidecar, type Transport, Transports } from './constants.js';
import {
  describePattern,
  formatImageReference,
  imageAllowed,
  parseImageReference,
  repositoryOf,
} from './images.js';

/**
 * The injected container and volumes, built from the pod's `mcpwarden.io/*` annotations and the
 * webhook's configuration. Pure. Used twice: to inject (webhook/injector.ts) and to check that a
 * pod claiming to be injected carries exactly this container (webhook/verify.ts).
 *
 * @example
 * const settings = sidecarSettings(pod, config);
 * const { container, volumes } = buildSidecar(settings, config, { upstreamPort: 8080, portName: 'mcp', native: true });
 */
export interface InjectorConfig {
  /** Default sidecar image (annotation `mcpwarden.io/sidecar-image` overrides it). */
  image: string;
  /**
   * Images the annotation `mcpwarden.io/sidecar-image` may name (webhook/images.ts: a repository,
   * any tag or digest, or an exact reference). `image` itself is always allowed. Undefined: the
   * repository of `image`, any tag or digest.
   */
  allowedImages?: readonly string[];
  imagePullPolicy?: 'Always' | 'IfNotPresent' | 'Never';
  /** mcp-warden version, written into `mcpwarden.io/status`. */
  version: string;
  /** Native sidecar (init container, restartPolicy Always): Kubernetes >= 1.29. */
  nativeSidecars: boolean;
  resources: { cpuRequest: string; cpuLimit?: string; memoryRequest: string; memoryLimit?: string };
  /** Namespace the webhook runs in: its own pods there are never mutated. */
  webhookNamespace?: string;
}

/**
 * Sidecar resources by default (measured with bench/idle-rss.ts, see docs/performance.md "Memory"):
 * the request covers the RSS once it has served calls (~84 MiB; 74 MiB idle before its first
 * call), the limit the peak under saturation (170-210 MiB with 16-128 connections, 64 KiB results,
 * SIDECAR_NODE_OPTIONS).
 */
export const defaultResources = { cpuRequest: '50m', memoryRequest: '96Mi', memoryLimit: '256Mi' } as const;

/**
 * NODE_OPTIONS of the injected sidecar container. V8 sizes its heap only at start-up, so these
 * flags must be on the command line or in the environment, not set from code. bench/warden.ts and
 * bench/idle-rss.ts run the gateway with the same flags, so the bench measures what pods run.
 *
 * `--max-semi-space-size=2` caps V8's young generation at 2 × 2 MiB (by default it grows to 2 × 16
 * MiB on a large host): idle RSS −7..−10 MiB and peak under load −50 MiB, for CPU per request within
 * the measurement's noise of `=4` (+0..10 % over no flag); `=1` saved 2-3 MiB more but cost +15 %.
 */
export const SIDECAR_NODE_OPTIONS = '--max-semi-space-size=2';

/**
 * glibc malloc settings of the injected sidecar container (musl-based images ignore them).
 * Buffers, socket reads and V8's compiler zones are malloc'd; by default glibc keeps what a burst
 * of traffic freed (one arena per thread, up to 8 × cores, and a trim threshold that grows with
 * the largest block freed), so the sidecar stayed at ~150 MiB long after a burst of 64 KiB results.
 * Two arenas and a fixed 128 KiB trim threshold (which also keeps blocks of 128 KiB and more in
 * their own mappings, returned when freed): ~135 MiB after the same burst, 1-2 MiB less idle, CPU
 * per request within the noise of the defaults (docs/performance.md, Memory).
 */
export const SIDECAR_MALLOC_ENV: ReadonlyArray<{ name: string; value: string }> = [
  { name: 'MALLOC_ARENA_MAX', value: '2' },
  { name: 'MALLOC_TRIM_THRESHOLD_', value: '131072' },
];

const quantity = /^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$/;
const absPath = /^\/[A-Za-z0-9._~!$&'()*+,;=:@%/-]*$/;

/** Refuses the pod: the admission handler answers 400 with this message. */
export function invalid(message: string): never {
  throw new WardenError('ERR_BAD_REQUEST', message);
}

/** A pod annotation, trimmed; undefined when absent. */
export function annotation(pod: V1Pod, key: string): string | undefined {
  const v = pod.metadata?.annotations?.[key];
  return v === undefined ? undefined : v.trim();
}

function quantityAnnotation(pod: V1Pod, key: string, fallback: string | undefined): string | undefined {
  const v = annotation(pod, key);
  if (v === undefined) return fallback;
  if (!quantity.test(v)) invalid(`annotation ${key}: "${v}" is not a Kubernetes quantity (e.g. 100m, 128Mi)`);
  return v;
}

/** The patterns `config` allows besides its default image (see InjectorConfig.allowedImages). */
export function allowedSidecarImages(config: InjectorConfig): readonly string[] {
  if (config.allowedImages !== undefined) return config.allowedImages;
  const repository = repositoryOf(config.image);
  return repository === undefined ? [] : [repository];
}

/**
 * True when `image` may run as the sidecar: the webhook's default image (`config.image`) or one
 * its allowlist matches (webhook/images.ts). A malformed reference is not allowed.
 */
export function sidecarImageAllowed(image: string, config: InjectorConfig): boolean {
  const ref = parseImageReference(image);
  if (ref === undefined) return false;
  const fallback = parseImageReference(config.image);
  const isDefault = fallback !== undefined && formatImageReference(fallback) === formatImageReference(ref);
  return isDefault || imageAllowed(ref, allowedSidecarImages(config));
}

/** What the webhook allows as the sidecar image, for messages. */
export function describeAllowedImages(config: InjectorConfig): string {
  return [`${config.image} (the default)`, ...allowedSidecarImages(config).map(describePattern)].join(', ');
}

/**
 * Refuses an annotated sidecar image outside the allowlist: any other image would run in the
 * sidecar's place, enforcing nothing, while the pod carries the status of a protected one.
 */
function checkSidecarImage(image: string, config: InjectorConfig): void {
  if (parseImageReference(image) === undefined) {
    invalid(
      `annotation ${Annotations.sidecarImage}: "${image}" is not an image reference ` +
        `(e.g. ghcr.io/mcp-warden/mcp-warden:0.1.0)`,
    );
  }
  if (sidecarImageAllowed(image, config)) return;
  invalid(
    `annotation ${Annotations.sidecarImage}: "${image}" is not an allowed sidecar image ` +
      `(allowed: ${describeAllowedImages(config)}). Remove the annotation to get the default sidecar, ` +
      `or ask the cluster admin to add the image to the webhook's --allowed-sidecar-images (chart ` +
      `value sidecar.allowedImages)`,
  );
}

/** What the pod's annotations ask of the sidecar, each one checked. */
export interface SidecarSettings {
  transport: Transport;
  mcpPath: string;
  image: string;
  resources: { cpuRequest?: string; cpuLimit?: string; memoryRequest?: string; memoryLimit?: string };
  /** The pod's own volume for recordings (annotation), else undefined: an emptyDir is added. */
  recordingsVolume?: string;
  /** Annotations passed to the sidecar as env. */
  env: Array<{ name: string; value: string }>;
}

/** Reads and checks the `mcpwarden.io/*` annotations; throws ERR_BAD_REQUEST naming a malformed one. */
export function sidecarSettings(pod: V1Pod, config: InjectorConfig): SidecarSettings {
  const transportValue = annotation(pod, Annotations.transport) ?? 'streamable-http';
  if (!(Transports as readonly string[]).includes(transportValue)) {
    invalid(
      `annotation ${Annotations.transport}: "${transportValue}" is not one of ${Transports.join(', ')}`,
    );
  }
  const transport = transportValue as Transport;
  const mcpPath = annotation(pod, Annotations.mcpPath) ?? DefaultMcpPath[transport];
  if (!absPath.test(mcpPath))
    invalid(`annotation ${Annotations.mcpPath}: "${mcpPath}" is not an absolute URL path`);
  const image = annotation(pod, Annotations.sidecarImage) ?? config.image;
  if (image !== config.image) checkSidecarImage(image, config);
  const resources: SidecarSettings['resources'] = {};
  for (const [key, annotationKey] of [
    ['cpuRequest', Annotations.cpuRequest],
    ['cpuLimit', Annotations.cpuLimit],
    ['memoryRequest', Annotations.memoryRequest],
    ['memoryLimit', Annotations.memoryLimit],
  ] as const) {
    const v = quantityAnnotation(pod, annotationKey, config.resources[key]);
    if (v !== undefined) resources[key] = v;
  }
  const recordingsVolume = annotation(pod, Annotations.recordingsVolume);
  if (recordingsVolume !== undefined && !(pod.spec?.volumes ?? []).some((v) => v.name === recordingsVolume)) {
    invalid(`annotation ${Annotations.recordingsVolume}: the pod has no volume named "${recordingsVolume}"`);
  }
  const originsError = (value: string): string | undefined => {
    try {
      parseOrigins(value);
      return undefined;
    } catch (err) {
      return errorMessage(err);
    }
  };
  const env: Array<{ name: string; value: string }> = [];
  for (const [key, name, problemOf] of [
    [Annotations.upstreamTimeout, 'MCP_WARDEN_UPSTREAM_TIMEOUT', durationError],
    [Annotations.requestTimeout, 'MCP_WARDEN_REQUEST_TIMEOUT', durationError],
    [Annotations.allowedOrigins, 'MCP_WARDEN_ALLOWED_ORIGINS', originsError],
  ] as const) {
    const value = annotation(pod, key);
    if (value === undefined) continue;
    const problem = problemOf(value);
    if (problem !== undefined) invalid(`annotation ${key}: ${problem}`);
    env.push({ name, value });
  }
  return {
    transport,
    mcpPath,
    image,
    resources,
    ...(recordingsVolume === undefined ? {} : { recordingsVolume }),
    env,
  };
}

/** Where the sidecar forwards and under which port name it serves. */
export interface SidecarShape {
  /** The app's MCP port (127.0.0.1:<port>). */
  upstreamPort: number;
  /** Name of the proxy port (15080): the app's MCP port name, taken over. */
  portName: string;
  /** Native sidecar (init container, restartPolicy Always) or regular container. */
  native: boolean;
}

/** The upstream URL the sidecar is given (`--upstream` and MCP_WARDEN_UPSTREAM). */
export function upstreamUrl(port: number, mcpPath: string): string {
  return `http://127.0.0.1:${port}${mcpPath}`;
}

/** The container and volumes to inject. */
export function buildSidecar(
  settings: SidecarSettings,
  config: InjectorConfig,
  shape: SidecarShape,
): { container: V1Container; volumes: V1Volume[] } {
  // Volumes: a projected token (the sidecar reads MCPPolicy and writes status even when the pod
  // disables automount), recordings (emptyDir unless the pod names its own volume), a writable /tmp.
  // The token lives one hour: the sidecar re-reads the file every minute and the kubelet renews it
  // at 80 % of its life. (3607 s would be the API server's legacy marker, which it extends to a
  // year with the default --service-account-extend-token-expiration.)
  const volumes: V1Volume[] = [
    {
      name: Sidecar.tokenVolume,
      projected: {
        defaultMode: 0o444,
        sources: [
          { serviceAccountToken: { path: 'token', expirationSeconds: Sidecar.tokenExpirationSeconds } },
          { configMap: { name: 'kube-root-ca.crt', items: [{ key: 'ca.crt', path: 'ca.crt' }] } },
          {
            downwardAPI: {
              items: [
                { path: 'namespace', fieldRef: { apiVersion: 'v1', fieldPath: 'metadata.namespace' } },
                // The sidecar evaluates MCPPolicy podSelectors against its own pod's labels.
                { path: 'labels', fieldRef: { apiVersion: 'v1', fieldPath: 'metadata.labels' } },
              ],
            },
          },
        ],
      },
    },
    { name: Sidecar.tmpVolume, emptyDir: { sizeLimit: '64Mi' } },
  ];
  if (settings.recordingsVolume === undefined)
    volumes.push({ name: Sidecar.recordingsVolume, emptyDir: { sizeLimit: '1Gi' } });

  const upstream = upstreamUrl(shape.upstreamPort, settings.mcpPath);
  const listen = `0.0.0.0:${Sidecar.proxyPort}`;
  const adminListen = `0.0.0.0:${Sidecar.adminPort}`;
  const fieldEnv = (name: string, fieldPath: string) => ({
    name,
    valueFrom: { fieldRef: { apiVersion: 'v1', fieldPath } },
  });
  const probe = (failureThreshold: number, periodSeconds: number) => ({
    httpGet: { path: '/readyz', port: Sidecar.adminPort, scheme: 'HTTP' },
    periodSeconds,
    failureThreshold,
    timeoutSeconds: 2,
  });
  const { resources } = settings;
  const requests: Record<string, string> = {};
  const limits: Record<string, string> = {};
  if (resources.cpuRequest !== undefined) requests['cpu'] = resources.cpuRequest;
  if (resources.memoryRequest !== undefined) requests['memory'] = resources.memoryRequest;
  if (resources.cpuLimit !== undefined) limits['cpu'] = resources.cpuLimit;
  if (resources.memoryLimit !== undefined) limits['memory'] = resources.memoryLimit;

  const container: V1Container = {
    name: Sidecar.containerName,
    image: settings.image,
    ...(config.imagePullPolicy === undefined ? {} : { imagePullPolicy: config.imagePullPolicy }),
    args: ['sidecar', '--upstream', upstream, '--listen', listen, '--admin-listen', adminListen],
    ...(shape.native ? { restartPolicy: 'Always' } : {}),
    ports: [
      { name: shape.portName, containerPort: Sidecar.proxyPort, protocol: 'TCP' },
      { name: Sidecar.adminPortName, containerPort: Sidecar.adminPort, protocol: 'TCP' },
    ],
    env: [
      fieldEnv('MCP_WARDEN_POD_NAME', 'metadata.name'),
      fieldEnv('MCP_WARDEN_POD_NAMESPACE', 'metadata.namespace'),
      fieldEnv('MCP_WARDEN_POD_UID', 'metadata.uid'),
      fieldEnv('MCP_WARDEN_SERVICE_ACCOUNT', 'spec.serviceAccountName'),
      { name: 'MCP_WARDEN_UPSTREAM', value: upstream },
      { name: 'MCP_WARDEN_TRANSPORT', value: settings.transport },
      { name: 'MCP_WARDEN_MCP_PATH', value: settings.mcpPath },
      { name: 'MCP_WARDEN_LISTEN', value: listen },
      { name: 'MCP_WARDEN_ADMIN_LISTEN', value: adminListen },
      { name: 'MCP_WARDEN_RECORDINGS_DIR', value: Sidecar.recordingsMountPath },
      ...settings.env.map((e) => ({ ...e })),
      { name: 'NODE_OPTIONS', value: SIDECAR_NODE_OPTIONS },
      ...SIDECAR_MALLOC_ENV.map((e) => ({ ...e })),
    ],
    resources: {
      ...(Object.keys(requests).length > 0 ? { requests } : {}),
      ...(Object.keys(limits).length > 0 ? { limits } : {}),
    },
    // Native sidecars gate the app on the startup probe; both modes gate traffic on readiness.
    ...(shape.native ? { startupProbe: probe(60, 1) } : {}),
    readinessProbe: probe(3, 5),
    securityContext: {
      runAsNonRoot: true,
      runAsUser: Sidecar.runAsUser,
      runAsGroup: Sidecar.runAsUser,
      readOnlyRootFilesystem: true,
      allowPrivilegeEscalation: false,
      privileged: false,
      capabilities: { drop: ['ALL'] },
      seccompProfile: { type: 'RuntimeDefault' },
    },
    volumeMounts: [
      { name: Sidecar.tokenVolume, mountPath: Sidecar.tokenMountPath, readOnly: true },
      {
        name: settings.recordingsVolume ?? Sidecar.recordingsVolume,
        mountPath: Sidecar.recordingsMountPath,
      },
      { name: Sidecar.tmpVolume, mountPath: Sidecar.tmpMountPath },
    ],
    terminationMessagePolicy: 'FallbackToLogsOnError',
  };
  return { container, volumes };
}

/** The `hash` of `mcpwarden.io/status`: the injected container and volumes (16 hex). */
export function injectionHash(container: V1Container, volumes: V1Volume[]): string {
  return createHash('sha256')
    .update(JSON.stringify({ sidecar: container, volumes }))
    .digest('hex')
    .slice(0, 16);
}
