import type {
  V1Container,
  V1ContainerPort,
  V1EnvVar,
  V1Pod,
  V1Volume,
  V1VolumeMount,
} from '@kubernetes/client-node';
import { isWardenError } from '../pkg/errors.js';
import { Annotations, Sidecar } from './constants.js';
import { checkVolumeMounts, SIDECAR_VOLUMES } from './mounts.js';
import { findMcpPort, isRenamedPortName, planPorts, refuseHostPort, renameCandidates } from './ports.js';
import {
  buildSidecar,
  describeAllowedImages,
  type InjectorConfig,
  injectionHash,
  invalid,
  sidecarImageAllowed,
  sidecarSettings,
} from './sidecar.js';

/**
 * The already-injected path. A pod that carries `mcpwarden.io/status` and a container named
 * `mcp-warden` is left alone (reinvocation, `kubectl get -o yaml | kubectl create`) only if it is
 * what `injectPod` produces for some pod: the container is the sidecar this webhook would inject
 * for the pod's annotations, the status hash is the one it would write, and the rest of the pod
 * passes the checks injection makes. Otherwise anyone could bring their own `mcp-warden` container
 * and a hand-written status and run unprotected while looking protected.
 *
 * Tolerated on the sidecar, because the API server or other admission steps add them: API
 * defaults (`terminationMessagePath`, `imagePullPolicy`, probe `successThreshold`), `resources`
 * and `resizePolicy`, a digest appended to the image tag (digest-pinning policies) when the
 * allowlist allows the pinned reference, and what identity webhooks add to every container:
 * the env names of IDENTITY_ENV and a read-only mount of a projected service-account token at
 * one of IDENTITY_TOKEN_PATHS. Nothing else: an allowlist, because any env or file the sidecar
 * reads (KUBECONFIG, KUBERNETES_SERVICE_HOST, NODE_OPTIONS, …) can change whom it trusts.
 *
 * The rest of the pod must not undo the protection either (as on injection, webhook/ports.ts and
 * webhook/mounts.ts): the upstream must be the MCP port the injector picks, with no hostPort and
 * no declaration still under the name Services target; no other container may name a port like
 * the sidecar's or mount its volumes.
 *
 * @example
 * const warnings = verifyInjected(pod, config); // throws WardenError ERR_BAD_REQUEST with what differs
 */

const DEFAULT_TERMINATION_MESSAGE_PATH = '/dev/termination-log';

/**
 * Env names identity webhooks add to every container, the sidecar's included; any other env
 * name on the sidecar is refused. None of these changes what the sidecar enforces: it does not
 * use AWS credentials at all, and it uses the Azure ones only to ask Microsoft Graph (a fixed
 * URL) for the groups of an overage token, which fails closed with a wrong credential.
 */
export const IDENTITY_ENV: ReadonlySet<string> = new Set([
  // Azure Workload Identity (azure-workload-identity webhook).
  'AZURE_CLIENT_ID',
  'AZURE_TENANT_ID',
  'AZURE_FEDERATED_TOKEN_FILE',
  'AZURE_AUTHORITY_HOST',
  // AWS IAM roles for service accounts (amazon-eks-pod-identity-webhook).
  'AWS_ROLE_ARN',
  'AWS_WEB_IDENTITY_TOKEN_FILE',
  'AWS_REGION',
  'AWS_DEFAULT_REGION',
  'AWS_STS_REGIONAL_ENDPOINTS',
  // EKS Pod Identity.
  'AWS_CONTAINER_CREDENTIALS_FULL_URI',
  'AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE',
]);

/**
 * Where those webhooks mount their projected token (read-only), the only extra mounts tolerated.
 * Not `/var/run/secrets/kubernetes.io/serviceaccount`: the sidecar's own token is mounted there,
 * and the API server's ServiceAccount admission adds its `kube-api-access-*` mount only to
 * containers without a mount at that path, so a second one there is never the API server's.
 */
export const IDENTITY_TOKEN_PATHS: ReadonlySet<string> = new Set([
  '/var/run/secrets/azure/tokens',
  '/var/run/secrets/eks.amazonaws.com/serviceaccount',
  '/var/run/secrets/pods.eks.amazonaws.com/serviceaccount',
]);

/** Container fields the API server or admission controllers set that say nothing about what runs. */
const IGNORED_FIELDS = new Set(['resources', 'resizePolicy']);

/** Refuses the pod: its `mcp-warden` container or its status is not what the webhook injects. */
function notOurs(what: string): never {
  invalid(
    `the pod carries ${Annotations.status} but not the sidecar mcp-warden injects: ${what}. Remove ` +
      `the container "${Sidecar.containerName}" and the ${Annotations.status} annotation and create ` +
      `the pod again: the webhook then injects the sidecar`,
  );
}

function deepEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  if (Array.isArray(a) && Array.isArray(b))
    return a.length === b.length && a.every((v, i) => deepEqual(v, b[i]));
  const ra = a as Record<string, unknown>;
  const rb = b as Record<string, unknown>;
  const keys = new Set([...Object.keys(ra), ...Object.keys(rb)]);
  for (const k of keys) if (!deepEqual(ra[k], rb[k])) return false;
  return true;
}

/** `actual` is `expected`, or `expected@sha256:<digest>` (a policy pinned the tag to its digest). */
function sameImage(actual: string | undefined, expected: string): boolean {
  if (actual === expected) return true;
  if (actual === undefined || expected.includes('@') || !actual.startsWith(expected)) return false;
  return /^@sha256:[0-9a-f]{64}$/.test(actual.slice(expected.length));
}

/** A volume that holds only service-account tokens (what identity webhooks mount), nothing else. */
function tokenOnlyVolume(volume: V1Volume | undefined): boolean {
  const sources = volume?.projected?.sources ?? [];
  return (
    volume !== undefined &&
    !SIDECAR_VOLUMES.has(volume.name) &&
    Object.keys(volume).every((k) => k === 'name' || k === 'projected') &&
    sources.length > 0 &&
    sources.every(
      (s) => s.serviceAccountToken !== undefined && Object.keys(s).every((k) => k === 'serviceAccountToken'),
    )
  );
}

/** An identity webhook's token mount: a known path, read-only, the whole of a token-only volume. */
function identityTokenMount(m: V1VolumeMount, volumes: V1Volume[]): boolean {
  return (
    IDENTITY_TOKEN_PATHS.has(m.mountPath) &&
    m.readOnly === true &&
    (m.subPath ?? '') === '' &&
    (m.subPathExpr ?? '') === '' &&
    (m.mountPropagation ?? 'None') === 'None' &&
    tokenOnlyVolume(volumes.find((v) => v.name === m.name))
  );
}

/** What differs between the pod's sidecar and the expected one (empty: it is ours). */
function containerDiffs(actual: V1Container, expected: V1Container, volumes: V1Volume[]): string[] {
  const diffs: string[] = [];
  if (!sameImage(actual.image, expected.image ?? '')) {
    diffs.push(`image "${actual.image ?? ''}" (expected "${expected.image}")`);
  }
  const a: Record<string, unknown> = { ...actual };
  const e: Record<string, unknown> = { ...expected };
  for (const k of ['image', 'env', 'volumeMounts', ...IGNORED_FIELDS]) {
    delete a[k];
    delete e[k];
  }
  if (
    e['terminationMessagePath'] === undefined &&
    a['terminationMessagePath'] === DEFAULT_TERMINATION_MESSAGE_PATH
  )
    delete a['terminationMessagePath'];
  if (e['imagePullPolicy'] === undefined) delete a['imagePullPolicy'];
  for (const probe of ['startupProbe', 'readinessProbe'] as const) {
    const p = a[probe] as Record<string, unknown> | undefined;
    const want = e[probe] as Record<string, unknown> | undefined;
    if (p?.['successThreshold'] === 1 && want?.['successThreshold'] === undefined) {
      a[probe] = { ...p };
      delete (a[probe] as Record<string, unknown>)['successThreshold'];
    }
  }
  for (const k of [...new Set([...Object.keys(a), ...Object.keys(e)])].sort()) {
    if (!deepEqual(a[k], e[k])) diffs.push(e[k] === undefined ? `${k} (not injected)` : k);
  }

  // Env: exactly the injected variables, plus the names identity webhooks add (an allowlist).
  const env: V1EnvVar[] = actual.env ?? [];
  const wanted = new Map((expected.env ?? []).map((v) => [v.name, v]));
  const envDiffs: string[] = [];
  for (const [name, want] of wanted) {
    const got = env.filter((v) => v.name === name);
    if (got.length === 0 || !got.every((v) => deepEqual(v, want))) envDiffs.push(name);
  }
  for (const v of env) {
    if (!wanted.has(v.name) && !IDENTITY_ENV.has(v.name)) envDiffs.push(`${v.name} (not injected)`);
  }
  if (envDiffs.length > 0) diffs.push(`env ${few(envDiffs)}`);

  // Mounts: exactly the injected ones, plus identity webhooks' token mounts.
  const mounts: V1VolumeMount[] = actual.volumeMounts ?? [];
  const ours = expected.volumeMounts ?? [];
  const mountDiffs: string[] = [];
  for (const want of ours) {
    if (!mounts.some((m) => deepEqual(m, want))) mountDiffs.push(want.mountPath);
  }
  for (const m of mounts) {
    if (ours.some((want) => deepEqual(m, want)) || identityTokenMount(m, volumes)) continue;
    mountDiffs.push(`${m.mountPath} (not injected)`);
  }
  if (mountDiffs.length > 0) diffs.push(`volumeMounts ${few(mountDiffs)}`);
  return diffs;
}

/** At most three items, then how many more (keeps refusal messages short). */
function few(items: string[]): string {
  const shown = items.slice(0, 3).join(', ');
  return items.length > 3 ? `${shown} and ${items.length - 3} more` : shown;
}

const isTcp = (p: V1ContainerPort) => (p.protocol ?? 'TCP') === 'TCP';

function portLabel(p: V1ContainerPort): string {
  return p.name === undefined ? `${p.containerPort}` : `"${p.name}" (${p.containerPort})`;
}

/**
 * The port takeover, checked as on injection: findMcpPort and planPorts (webhook/ports.ts) run on
 * the pod as it was before injection, rebuilt from this one: without the sidecar, and with the
 * app's declaration of the upstream port that the injector renamed after the sidecar's port name
 * (`mcp` → `mcp-upstream`) given that name back. Refuses an upstream that is not the MCP port the
 * injector picks, a declaration of it that was not renamed (a Service with that `targetPort`
 * reaches the app directly), a hostPort on it, another container naming a port like the sidecar's
 * (regular and restartable init containers, as Services resolve names), the sidecar's reserved
 * ports declared elsewhere, and a proxy port name the injector would not give. Returns the
 * warnings injection gives about what still reaches the app around the sidecar (a port named
 * `mcp` on another number): they hold for the re-submitted pod as much as for the injected one.
 * (The warnings about the ports injection renamed are not repeated: nothing is renamed now.)
 */
function checkPorts(pod: V1Pod, upstreamPort: number, portName: string): string[] {
  const view = structuredClone(pod);
  const spec = view.spec!;
  spec.containers = spec.containers.filter((c) => c.name !== Sidecar.containerName);
  if (spec.initContainers !== undefined)
    spec.initContainers = spec.initContainers.filter((c) => c.name !== Sidecar.containerName);

  // Kubernetes resolves port names in containers and restartable init containers only.
  const served = [
    ...spec.containers,
    ...(spec.initContainers ?? []).filter((c) => c.restartPolicy === 'Always'),
  ];
  const decls = served.flatMap((c) =>
    (c.ports ?? []).filter((p) => isTcp(p) && p.containerPort === upstreamPort).map((p) => ({ c, p })),
  );
  // As on injection (planPorts checks the rebuilt pod again), named as they are in this one.
  for (const { c, p } of decls) refuseHostPort(c, p);
  const named = decls.filter(({ p }) => (p.name ?? '') !== '');
  if (named.length > 0) {
    // The injector renamed every named declaration of the MCP port; the sidecar took one's name.
    const stale = named.find(({ p }) => !isRenamedPortName(p.name!));
    if (stale !== undefined) {
      notOurs(
        `container "${stale.c.name}" port ${portLabel(stale.p)} is the sidecar's upstream but keeps its ` +
          `name: a Service with targetPort: ${stale.p.name} would reach the app directly, around the ` +
          `sidecar (injection renames it)`,
      );
    }
    const renamedFrom = renameCandidates(portName);
    const back = named.find(({ p }) => renamedFrom.includes(p.name!));
    if (back === undefined) {
      notOurs(
        `the sidecar's proxy port is named "${portName}", but no declaration of its upstream port ` +
          `${upstreamPort} was renamed from that name (${named.map(({ p }) => `"${p.name}"`).join(', ')}; ` +
          `injection gives the sidecar the name of the app's MCP port and renames that to ` +
          `"${renamedFrom[0] ?? `${portName}-upstream`}")`,
      );
    }
    // The others keep no name in the rebuilt pod: their original names are lost, and only the
    // declaration the sidecar took its name from decides anything in findMcpPort and planPorts.
    for (const { p } of named) delete p.name;
    back.p.name = portName;
  }
  if (upstreamPort === Sidecar.proxyPort || upstreamPort === Sidecar.adminPort) {
    notOurs(`the sidecar forwards to its own port ${upstreamPort}`);
  }

  // Ports 15080 and 15090 belong to the sidecar: the injector skips a pod that declares them.
  const clash = [...spec.containers, ...(spec.initContainers ?? [])]
    .flatMap((c) => (c.ports ?? []).map((p) => ({ c, p })))
    .find(({ p }) => p.containerPort === Sidecar.proxyPort || p.containerPort === Sidecar.adminPort);
  if (clash !== undefined) {
    notOurs(
      `container "${clash.c.name}" declares port ${clash.p.containerPort}, reserved for the sidecar ` +
        `(the webhook does not inject such a pod: port_conflict)`,
    );
  }

  let mcp: ReturnType<typeof findMcpPort>;
  try {
    mcp = findMcpPort(view);
  } catch (err) {
    if (isWardenError(err, 'ERR_BAD_REQUEST')) notOurs(`its MCP port cannot be found: ${err.message}`);
    throw err;
  }
  if (mcp === undefined) {
    notOurs(
      `the sidecar forwards to port ${upstreamPort}, but the pod has no MCP port the webhook would ` +
        `take over (name a container port "mcp" or set ${Annotations.upstreamPort})`,
    );
  }
  if (mcp.number !== upstreamPort) {
    const why =
      mcp.primary === undefined
        ? `${Annotations.upstreamPort}`
        : `container "${mcp.primary.owner.name}" port ${portLabel(mcp.primary.spec)}`;
    notOurs(
      `the sidecar forwards to port ${upstreamPort}, but the MCP port is ${mcp.number} (${why}): ` +
        `Services reach the app there directly, around the sidecar`,
    );
  }
  // Throws, as on injection, for a hostPort/hostIP on the MCP port or a port named like the sidecar's.
  const plan = planPorts(view, mcp);
  if (plan.portName !== portName) {
    notOurs(`its proxy port is named "${portName}", the webhook names it "${plan.portName}" for this pod`);
  }
  return plan.warnings;
}

/**
 * Throws WardenError ERR_BAD_REQUEST unless the pod is what `injectPod` produces: its
 * `mcp-warden` container, its volumes and its `mcpwarden.io/status` are what the webhook injects
 * for this pod with `config`, the sidecar image is allowed, the ports are taken over as on
 * injection and no other container mounts the sidecar's volumes. Returns admission warnings, as
 * injection gives them for what still holds in this pod (checkPorts, checkVolumeMounts).
 */
export function verifyInjected(pod: V1Pod, config: InjectorConfig): string[] {
  const raw = pod.metadata?.annotations?.[Annotations.status] ?? '';
  let status: { version?: unknown; hash?: unknown };
  try {
    status = JSON.parse(raw) as typeof status;
  } catch {
    notOurs(`${Annotations.status} is not JSON`);
  }
  if (typeof status !== 'object' || status === null || typeof status.hash !== 'string') {
    notOurs(`${Annotations.status} has no hash`);
  }

  const init = (pod.spec?.initContainers ?? []).find((c) => c.name === Sidecar.containerName);
  const actual = init ?? (pod.spec?.containers ?? []).find((c) => c.name === Sidecar.containerName);
  if (actual === undefined) notOurs(`no container named ${Sidecar.containerName}`);
  const settings = sidecarSettings(pod, config);
  const upstream = /^http:\/\/127\.0\.0\.1:([0-9]{1,5})\//.exec(actual.args?.[2] ?? '');
  const upstreamPort = Number(upstream?.[1] ?? 0);
  const portName = actual.ports?.find((p) => p.containerPort === Sidecar.proxyPort)?.name ?? '';
  const expected = buildSidecar(settings, config, { upstreamPort, portName, native: init !== undefined });

  const volumes = pod.spec?.volumes ?? [];
  const diffs = containerDiffs(actual, expected.container, volumes);
  const volumeDiffs = expected.volumes
    .filter(
      (want) =>
        !deepEqual(
          volumes.find((v) => v.name === want.name),
          want,
        ),
    )
    .map((v) => v.name);
  if (volumeDiffs.length > 0) diffs.push(`volumes ${few(volumeDiffs)}`);
  if (diffs.length > 0) notOurs(`its ${Sidecar.containerName} container differs in ${diffs.join(', ')}`);

  // A digest appended to the tag names another image, which the allowlist must allow as well
  // (an exact reference in --allowed-sidecar-images allows that reference only).
  const image = actual.image ?? '';
  if (image !== expected.container.image && !sidecarImageAllowed(image, config)) {
    invalid(
      `the pod's ${Sidecar.containerName} container runs "${image}", which is not an allowed sidecar ` +
        `image (allowed: ${describeAllowedImages(config)}): a digest appended to a tag names whatever ` +
        `image has that digest. Ask the cluster admin to add that reference, or its repository, to ` +
        `the webhook's --allowed-sidecar-images (chart value sidecar.allowedImages), or remove the ` +
        `digest, the container "${Sidecar.containerName}" and the ${Annotations.status} annotation ` +
        `and create the pod again`,
    );
  }

  const portWarnings = checkPorts(pod, upstreamPort, portName);
  // The sidecar's volumes are its own (its token, its recordings): not another container's.
  const warnings = [
    ...portWarnings,
    ...checkVolumeMounts(pod, { sidecar: actual, recordingsVolume: settings.recordingsVolume }),
  ];

  const hash = injectionHash(expected.container, expected.volumes);
  if (status.hash !== hash) {
    notOurs(
      `${Annotations.status} hash ${String(status.hash)} is not this webhook's ${hash} ` +
        `(injected by mcp-warden ${String(status.version)}, this webhook is ${config.version})`,
    );
  }
  return warnings;
}
