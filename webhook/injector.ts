import { createHash } from 'node:crypto';
import type { V1Container, V1ContainerPort, V1Pod, V1Volume } from '@kubernetes/client-node';
import { errorMessage, WardenError } from '../pkg/errors.js';
import { durationError } from '../pkg/policy/duration.js';
import { parseOrigins } from '../pkg/proxy/origins.js';
import {
  Annotations,
  DefaultMcpPath,
  Labels,
  SELF_LABELS,
  Sidecar,
  type SkipReason,
  SkipReasons,
  SYSTEM_NAMESPACES,
  type Transport,
  Transports,
} from './constants.js';
import { escapePointer, type PatchOperation } from './jsonpatch.js';

/**
 * The pod injector: decides whether a pod gets the mcp-warden sidecar and returns the JSONPatch
 * that adds it. Pure: no I/O, the same pod and config always give the same patch (golden tests).
 *
 * @example
 * const r = injectPod(pod, { namespace: 'agents', config });
 * if (r.kind === 'inject') respondWithPatch(r.patch);
 */
export interface InjectorConfig {
  /** Default sidecar image (annotation `mcpwarden.io/sidecar-image` overrides it). */
  image: string;
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

export interface InjectContext {
  /** Namespace of the request (a pod being created may not carry metadata.namespace). */
  namespace: string;
  /** Labels of that namespace when known (the namespaceSelector already filters; this double-checks). */
  namespaceLabels?: Record<string, string>;
  config: InjectorConfig;
}

export type InjectResult =
  | { kind: 'inject'; patch: PatchOperation[]; status: InjectionStatus }
  /** Already carries our sidecar with a status annotation: nothing to do (reinvocation, re-submission). */
  | { kind: 'noop'; patch: PatchOperation[] }
  /**
   * Not injected. `patch` records the reason as an annotation when the pod asked for injection
   * and may be touched; `event` says whether a Kubernetes Event should tell the user.
   */
  | { kind: 'skip'; reason: SkipReason; message: string; patch: PatchOperation[]; event: boolean };

export interface InjectionStatus {
  version: string;
  hash: string;
}

const quantity = /^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$/;
const ianaSvcName = /^(?=.{1,15}$)(?=.*[a-z])[a-z0-9]+(-[a-z0-9]+)*$/;
const absPath = /^\/[A-Za-z0-9._~!$&'()*+,;=:@%/-]*$/;

/** Ops that set `set` annotations and drop `remove` ones, creating metadata/annotations when absent. */
function annotationOps(pod: V1Pod, set: Record<string, string>, remove: string[] = []): PatchOperation[] {
  const annotations = pod.metadata?.annotations;
  if (pod.metadata === undefined) return [{ op: 'add', path: '/metadata', value: { annotations: set } }];
  if (annotations === undefined) return [{ op: 'add', path: '/metadata/annotations', value: set }];
  const ops: PatchOperation[] = [];
  for (const [k, v] of Object.entries(set)) {
    if (annotations[k] !== v)
      ops.push({ op: 'add', path: `/metadata/annotations/${escapePointer(k)}`, value: v });
  }
  for (const k of remove) {
    if (annotations[k] !== undefined)
      ops.push({ op: 'remove', path: `/metadata/annotations/${escapePointer(k)}` });
  }
  return ops;
}

function skip(pod: V1Pod, reason: SkipReason, message: string, annotate: boolean): InjectResult {
  const patch = annotate ? annotationOps(pod, { [Annotations.skipReason]: reason }) : [];
  return { kind: 'skip', reason, message, patch, event: annotate };
}

function invalid(message: string): never {
  throw new WardenError('ERR_BAD_REQUEST', message);
}

function annotation(pod: V1Pod, key: string): string | undefined {
  const v = pod.metadata?.annotations?.[key];
  return v === undefined ? undefined : v.trim();
}

function quantityAnnotation(pod: V1Pod, key: string, fallback: string | undefined): string | undefined {
  const v = annotation(pod, key);
  if (v === undefined) return fallback;
  if (!quantity.test(v)) invalid(`annotation ${key}: "${v}" is not a Kubernetes quantity (e.g. 100m, 128Mi)`);
  return v;
}

interface McpPort {
  /** Index of the container and port that serve MCP, when declared. */
  container?: number;
  port?: number;
  number: number;
  name?: string;
}

/** Finds the app's MCP port: annotation (number or name), else the port named `mcp`, else the only one. */
function findMcpPort(pod: V1Pod): McpPort | undefined {
  const containers = pod.spec?.containers ?? [];
  const all: Array<{ c: number; p: number; port: V1ContainerPort }> = [];
  containers.forEach((container, c) => {
    (container.ports ?? []).forEach((port, p) => {
      if ((port.protocol ?? 'TCP') === 'TCP') all.push({ c, p, port });
    });
  });
  const pick = (e: { c: number; p: number; port: V1ContainerPort }): McpPort => ({
    container: e.c,
    port: e.p,
    number: e.port.containerPort,
    ...(e.port.name === undefined ? {} : { name: e.port.name }),
  });
  const wanted = annotation(pod, Annotations.upstreamPort);
  if (wanted !== undefined) {
    if (/^[0-9]+$/.test(wanted)) {
      const n = Number(wanted);
      if (n < 1 || n > 65535)
        invalid(`annotation ${Annotations.upstreamPort}: ${wanted} is not a port (1-65535)`);
      const hit = all.find((e) => e.port.containerPort === n);
      return hit === undefined ? { number: n } : pick(hit);
    }
    const hit = all.find((e) => e.port.name === wanted);
    if (hit === undefined) {
      invalid(`annotation ${Annotations.upstreamPort}: no TCP container port is named "${wanted}"`);
    }
    return pick(hit);
  }
  const named = all.find((e) => e.port.name === Sidecar.defaultPortName);
  if (named !== undefined) return pick(named);
  if (all.length === 1) return pick(all[0]!);
  return undefined;
}

function renamedPort(name: string, taken: Set<string>): string {
  const candidates = [`${name}-upstream`, `${name.slice(0, 12).replace(/-+$/, '')}-up`, 'mcp-upstream'];
  for (const c of candidates) if (ianaSvcName.test(c) && !taken.has(c)) return c;
  invalid(`cannot rename container port "${name}": pick a shorter name (at most 12 characters)`);
}

function hashOf(value: unknown): string {
  return createHash('sha256').update(JSON.stringify(value)).digest('hex').slice(0, 16);
}

/** The injector's decision for one pod. Throws WardenError ERR_BAD_REQUEST for a malformed annotation. */
export function injectPod(pod: V1Pod, ctx: InjectContext): InjectResult {
  const { config } = ctx;
  const labels = pod.metadata?.labels ?? {};
  const namespace = pod.metadata?.namespace ?? ctx.namespace;
  if (SYSTEM_NAMESPACES.has(namespace)) {
    return skip(pod, SkipReasons.namespaceExcluded, `namespace ${namespace} is never injected`, false);
  }
  if (labels[Labels.inject] !== 'true') {
    return skip(pod, SkipReasons.notLabelled, `pod is not labelled ${Labels.inject}: "true"`, false);
  }
  if (
    config.webhookNamespace === namespace &&
    Object.entries(SELF_LABELS).every(([k, v]) => labels[k] === v)
  ) {
    return skip(pod, SkipReasons.webhookPod, 'the webhook never mutates its own pods', false);
  }
  if (ctx.namespaceLabels?.[Labels.injection] === 'disabled') {
    // Never touched: an Event explains why, but the pod is not mutated.
    const message = `namespace ${namespace} is labelled ${Labels.injection}=disabled`;
    return { kind: 'skip', reason: SkipReasons.namespaceExcluded, message, patch: [], event: true };
  }
  const spec = pod.spec;
  if (spec === undefined || !Array.isArray(spec.containers) || spec.containers.length === 0) {
    invalid('pod has no spec.containers');
  }
  const existing = [...(spec.initContainers ?? []), ...spec.containers].some(
    (c) => c.name === Sidecar.containerName,
  );
  if (existing) {
    if (annotation(pod, Annotations.status) !== undefined) return { kind: 'noop', patch: [] };
    return skip(
      pod,
      SkipReasons.sidecarExists,
      `a container named ${Sidecar.containerName} already exists`,
      true,
    );
  }
  if (spec.hostNetwork === true) {
    return skip(
      pod,
      SkipReasons.hostNetwork,
      'hostNetwork pods share the node ports: port takeover is impossible',
      true,
    );
  }

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
  if (image === '' || /\s/.test(image))
    invalid(`annotation ${Annotations.sidecarImage}: "${image}" is not an image reference`);
  const resources = {
    cpuRequest: quantityAnnotation(pod, Annotations.cpuRequest, config.resources.cpuRequest),
    cpuLimit: quantityAnnotation(pod, Annotations.cpuLimit, config.resources.cpuLimit),
    memoryRequest: quantityAnnotation(pod, Annotations.memoryRequest, config.resources.memoryRequest),
    memoryLimit: quantityAnnotation(pod, Annotations.memoryLimit, config.resources.memoryLimit),
  };

  const mcp = findMcpPort(pod);
  if (mcp === undefined) {
    return skip(
      pod,
      SkipReasons.noMcpPort,
      `no MCP port: name a container port "mcp" or set ${Annotations.upstreamPort}`,
      true,
    );
  }
  const allPorts = spec.containers.flatMap((c) => c.ports ?? []);
  const clash = allPorts.find(
    (p) => p.containerPort === Sidecar.proxyPort || p.containerPort === Sidecar.adminPort,
  );
  if (clash !== undefined || mcp.number === Sidecar.proxyPort || mcp.number === Sidecar.adminPort) {
    return skip(
      pod,
      SkipReasons.portConflict,
      `ports ${Sidecar.proxyPort} and ${Sidecar.adminPort} are reserved for the sidecar`,
      true,
    );
  }

  const patch: PatchOperation[] = [];
  const takenNames = new Set(allPorts.map((p) => p.name).filter((n): n is string => n !== undefined));
  let sidecarPortName: string;
  if (mcp.name !== undefined && mcp.container !== undefined && mcp.port !== undefined) {
    // Port-name takeover: the sidecar serves under the app's port name, the app port is renamed.
    sidecarPortName = mcp.name;
    const renamed = renamedPort(mcp.name, takenNames);
    patch.push({
      op: 'replace',
      path: `/spec/containers/${mcp.container}/ports/${mcp.port}/name`,
      value: renamed,
    });
  } else {
    sidecarPortName = takenNames.has(Sidecar.defaultPortName) ? 'mcp-warden' : Sidecar.defaultPortName;
  }

  // Volumes: a projected token (the sidecar reads MCPPolicy and writes status even when the pod
  // disables automount), recordings (emptyDir unless the pod names its own volume), a writable /tmp.
  const podVolumes = spec.volumes ?? [];
  const volumeNames = new Set(podVolumes.map((v) => v.name));
  const recordingsVolume = annotation(pod, Annotations.recordingsVolume);
  if (recordingsVolume !== undefined && !volumeNames.has(recordingsVolume)) {
    invalid(`annotation ${Annotations.recordingsVolume}: the pod has no volume named "${recordingsVolume}"`);
  }
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
  if (recordingsVolume === undefined)
    volumes.push({ name: Sidecar.recordingsVolume, emptyDir: { sizeLimit: '1Gi' } });
  for (const v of volumes) {
    if (volumeNames.has(v.name))
      invalid(`the pod already has a volume named "${v.name}" (reserved for mcp-warden)`);
  }

  // Annotations passed to the sidecar as its env, each checked first.
  const originsError = (value: string): string | undefined => {
    try {
      parseOrigins(value);
      return undefined;
    } catch (err) {
      return errorMessage(err);
    }
  };
  const annotationEnv: Array<{ name: string; value: string }> = [];
  for (const [key, name, problemOf] of [
    [Annotations.upstreamTimeout, 'MCP_WARDEN_UPSTREAM_TIMEOUT', durationError],
    [Annotations.requestTimeout, 'MCP_WARDEN_REQUEST_TIMEOUT', durationError],
    [Annotations.allowedOrigins, 'MCP_WARDEN_ALLOWED_ORIGINS', originsError],
  ] as const) {
    const value = annotation(pod, key);
    if (value === undefined) continue;
    const problem = problemOf(value);
    if (problem !== undefined) invalid(`annotation ${key}: ${problem}`);
    annotationEnv.push({ name, value });
  }
  const upstream = `http://127.0.0.1:${mcp.number}${mcpPath}`;
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
  const requests: Record<string, string> = {};
  const limits: Record<string, string> = {};
  if (resources.cpuRequest !== undefined) requests['cpu'] = resources.cpuRequest;
  if (resources.memoryRequest !== undefined) requests['memory'] = resources.memoryRequest;
  if (resources.cpuLimit !== undefined) limits['cpu'] = resources.cpuLimit;
  if (resources.memoryLimit !== undefined) limits['memory'] = resources.memoryLimit;

  const sidecar: V1Container = {
    name: Sidecar.containerName,
    image,
    ...(config.imagePullPolicy === undefined ? {} : { imagePullPolicy: config.imagePullPolicy }),
    args: ['sidecar', '--upstream', upstream, '--listen', listen, '--admin-listen', adminListen],
    ...(config.nativeSidecars ? { restartPolicy: 'Always' } : {}),
    ports: [
      { name: sidecarPortName, containerPort: Sidecar.proxyPort, protocol: 'TCP' },
      { name: Sidecar.adminPortName, containerPort: Sidecar.adminPort, protocol: 'TCP' },
    ],
    env: [
      fieldEnv('MCP_WARDEN_POD_NAME', 'metadata.name'),
      fieldEnv('MCP_WARDEN_POD_NAMESPACE', 'metadata.namespace'),
      fieldEnv('MCP_WARDEN_POD_UID', 'metadata.uid'),
      fieldEnv('MCP_WARDEN_SERVICE_ACCOUNT', 'spec.serviceAccountName'),
      { name: 'MCP_WARDEN_UPSTREAM', value: upstream },
      { name: 'MCP_WARDEN_TRANSPORT', value: transport },
      { name: 'MCP_WARDEN_MCP_PATH', value: mcpPath },
      { name: 'MCP_WARDEN_LISTEN', value: listen },
      { name: 'MCP_WARDEN_ADMIN_LISTEN', value: adminListen },
      { name: 'MCP_WARDEN_RECORDINGS_DIR', value: Sidecar.recordingsMountPath },
      ...annotationEnv,
      { name: 'NODE_OPTIONS', value: SIDECAR_NODE_OPTIONS },
      ...SIDECAR_MALLOC_ENV.map((e) => ({ ...e })),
    ],
    resources: {
      ...(Object.keys(requests).length > 0 ? { requests } : {}),
      ...(Object.keys(limits).length > 0 ? { limits } : {}),
    },
    // Native sidecars gate the app on the startup probe; both modes gate traffic on readiness.
    ...(config.nativeSidecars ? { startupProbe: probe(60, 1) } : {}),
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
      { name: recordingsVolume ?? Sidecar.recordingsVolume, mountPath: Sidecar.recordingsMountPath },
      { name: Sidecar.tmpVolume, mountPath: Sidecar.tmpMountPath },
    ],
    terminationMessagePolicy: 'FallbackToLogsOnError',
  };

  const status: InjectionStatus = { version: config.version, hash: hashOf({ sidecar, volumes }) };

  // Sidecar first: native sidecars start before any other init container; regular ones start first.
  if (config.nativeSidecars) {
    patch.push(
      spec.initContainers === undefined || spec.initContainers.length === 0
        ? { op: 'add', path: '/spec/initContainers', value: [sidecar] }
        : { op: 'add', path: '/spec/initContainers/0', value: sidecar },
    );
  } else {
    patch.push({ op: 'add', path: '/spec/containers/0', value: sidecar });
  }
  if (spec.volumes === undefined) {
    patch.push({ op: 'add', path: '/spec/volumes', value: volumes });
  } else {
    for (const v of volumes) patch.push({ op: 'add', path: '/spec/volumes/-', value: v });
  }
  patch.push(
    ...annotationOps(pod, { [Annotations.status]: JSON.stringify(status) }, [Annotations.skipReason]),
  );
  return { kind: 'inject', patch, status };
}
