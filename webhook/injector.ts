import type { V1Pod } from '@kubernetes/client-node';
import {
  Annotations,
  Labels,
  SELF_LABELS,
  Sidecar,
  type SkipReason,
  SkipReasons,
  SYSTEM_NAMESPACES,
} from './constants.js';
import { escapePointer, type PatchOperation } from './jsonpatch.js';
import { checkVolumeMounts } from './mounts.js';
import { findMcpPort, planPorts } from './ports.js';
import {
  annotation,
  buildSidecar,
  type InjectorConfig,
  injectionHash,
  invalid,
  sidecarSettings,
} from './sidecar.js';
import { verifyInjected } from './verify.js';

export {
  allowedSidecarImages,
  defaultResources,
  type InjectorConfig,
  SIDECAR_MALLOC_ENV,
  SIDECAR_NODE_OPTIONS,
} from './sidecar.js';

/**
 * The pod injector: decides whether a pod gets the mcp-warden sidecar and returns the JSONPatch
 * that adds it. Pure: no I/O, the same pod and config always give the same patch (golden tests).
 *
 * @example
 * const r = injectPod(pod, { namespace: 'agents', config });
 * if (r.kind === 'inject') respondWithPatch(r.patch, r.warnings);
 */
export interface InjectContext {
  /** Namespace of the request (a pod being created may not carry metadata.namespace). */
  namespace: string;
  /** Labels of that namespace when known (the namespaceSelector already filters; this double-checks). */
  namespaceLabels?: Record<string, string>;
  config: InjectorConfig;
}

export type InjectResult =
  | {
      kind: 'inject';
      patch: PatchOperation[];
      status: InjectionStatus;
      /** Admission warnings: app ports that still lead around the sidecar, renamed duplicates. */
      warnings: string[];
    }
  /**
   * Already carries our sidecar with a status annotation: nothing to do (reinvocation,
   * re-submission). `warnings` as for `inject` (a read-write mount of the recordings volume).
   */
  | { kind: 'noop'; patch: PatchOperation[]; warnings: string[] }
  /**
   * Not injected. `patch` records the reason as an annotation when the pod asked for injection
   * and may be touched; `event` says whether a Kubernetes Event should tell the user.
   */
  | { kind: 'skip'; reason: SkipReason; message: string; patch: PatchOperation[]; event: boolean };

export interface InjectionStatus {
  version: string;
  hash: string;
}

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

/**
 * The injector's decision for one pod. Throws WardenError ERR_BAD_REQUEST for a pod that asked for
 * protection but cannot get it as written (malformed annotation, a sidecar image outside the
 * webhook's allowlist, hostPort on the MCP port, another container mounting the sidecar's
 * volumes, a sidecar that is not the one mcp-warden injects): the admission handler refuses it.
 */
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
    if (annotation(pod, Annotations.status) !== undefined) {
      // Reinvocation or re-submission: left alone only if it is exactly our sidecar.
      return { kind: 'noop', patch: [], warnings: verifyInjected(pod, config) };
    }
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

  const settings = sidecarSettings(pod, config);
  const mcp = findMcpPort(pod);
  if (mcp === undefined) {
    return skip(
      pod,
      SkipReasons.noMcpPort,
      `no MCP port: name a container port "mcp" or set ${Annotations.upstreamPort}`,
      true,
    );
  }
  // Any container's declaration counts: native sidecars and (in native mode) init containers run
  // beside the sidecar in the same network namespace.
  const allPorts = [...(spec.initContainers ?? []), ...spec.containers].flatMap((c) => c.ports ?? []);
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

  // Port-name takeover: the sidecar serves under the app's port name, the app's ports are renamed.
  const ports = planPorts(pod, mcp);
  const patch: PatchOperation[] = [...ports.patch];

  const { container: sidecar, volumes } = buildSidecar(settings, config, {
    upstreamPort: mcp.number,
    portName: ports.portName,
    native: config.nativeSidecars,
  });
  const volumeNames = new Set((spec.volumes ?? []).map((v) => v.name));
  for (const v of volumes) {
    if (volumeNames.has(v.name))
      invalid(`the pod already has a volume named "${v.name}" (reserved for mcp-warden)`);
  }
  const mountWarnings = checkVolumeMounts(pod, { recordingsVolume: settings.recordingsVolume });

  const status: InjectionStatus = { version: config.version, hash: injectionHash(sidecar, volumes) };

  // Sidecar first: native sidecars start before any other init container (an MCP server that is
  // itself a native sidecar included: it starts once the proxy is ready, and stops before it);
  // regular ones start first.
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
  return { kind: 'inject', patch, status, warnings: [...ports.warnings, ...mountWarnings] };
}
