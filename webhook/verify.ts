import type { V1Container, V1EnvVar, V1Pod, V1VolumeMount } from '@kubernetes/client-node';
import { Annotations, Sidecar } from './constants.js';
import { checkVolumeMounts } from './mounts.js';
import { buildSidecar, type InjectorConfig, injectionHash, invalid, sidecarSettings } from './sidecar.js';

/**
 * The already-injected path. A pod that carries `mcpwarden.io/status` and a container named
 * `mcp-warden` is left alone (reinvocation, `kubectl get -o yaml | kubectl create`) only if that
 * container is the sidecar this webhook would inject for the pod's annotations and the status hash
 * is the one it would write. Otherwise anyone could bring their own `mcp-warden` container and a
 * hand-written status and run unprotected while looking protected.
 *
 * Tolerated, because the API server or other admission steps add them: API defaults
 * (`terminationMessagePath`, `imagePullPolicy`, probe `successThreshold`), `resources` and
 * `resizePolicy`, a digest appended to the image tag (digest-pinning policies), and env variables
 * and read-only secret mounts under `/var/run/secrets/` added by identity webhooks (Azure workload
 * identity, EKS pod identity) — except names that change how the sidecar runs (`NODE_*`, `LD_*`,
 * `MCP_WARDEN_*`, proxies, TLS trust).
 *
 * The rest of the pod must not undo the protection either: another container (init, regular or
 * ephemeral) naming the sidecar's port or mounting its volumes is refused, as on injection.
 *
 * @example
 * const warnings = verifyInjected(pod, config); // throws WardenError ERR_BAD_REQUEST with what differs
 */

const DEFAULT_TERMINATION_MESSAGE_PATH = '/dev/termination-log';
/** Extra env names that would change what the sidecar runs or whom it trusts. */
const FORBIDDEN_ENV =
  /^(MCP_WARDEN_|NODE_|LD_|UV_|MALLOC_|GLIBC_|OPENSSL_|SSL_CERT_)|^(https?|no|all)_proxy$/i;
/** Where identity webhooks mount their tokens (Azure workload identity, EKS). */
const EXTRA_MOUNT_ROOT = '/var/run/secrets/';
/** Container fields the API server or admission controllers set that say nothing about what runs. */
const IGNORED_FIELDS = new Set(['resources', 'resizePolicy']);

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

function under(path: string, root: string): boolean {
  const r = root.endsWith('/') ? root : `${root}/`;
  return path === root || path.startsWith(r);
}

/** What differs between the pod's sidecar and the expected one (empty: it is ours). */
function containerDiffs(actual: V1Container, expected: V1Container): string[] {
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

  const env: V1EnvVar[] = actual.env ?? [];
  const wanted = new Map((expected.env ?? []).map((v) => [v.name, v]));
  const envDiffs: string[] = [];
  for (const [name, want] of wanted) {
    const got = env.filter((v) => v.name === name);
    if (got.length === 0 || !got.every((v) => deepEqual(v, want))) envDiffs.push(name);
  }
  for (const v of env) {
    if (!wanted.has(v.name) && FORBIDDEN_ENV.test(v.name)) envDiffs.push(`${v.name} (not injected)`);
  }
  if (envDiffs.length > 0) diffs.push(`env ${few(envDiffs)}`);

  const mounts: V1VolumeMount[] = actual.volumeMounts ?? [];
  const ours = expected.volumeMounts ?? [];
  const mountDiffs: string[] = [];
  for (const want of ours) {
    if (!mounts.some((m) => deepEqual(m, want))) mountDiffs.push(want.mountPath);
  }
  for (const m of mounts) {
    if (ours.some((want) => deepEqual(m, want))) continue;
    const shadows = ours.some((o) => under(m.mountPath, o.mountPath) || under(o.mountPath, m.mountPath));
    if (shadows || !under(m.mountPath, EXTRA_MOUNT_ROOT) || m.readOnly !== true) {
      mountDiffs.push(`${m.mountPath} (not injected)`);
    }
  }
  if (mountDiffs.length > 0) diffs.push(`volumeMounts ${few(mountDiffs)}`);
  return diffs;
}

/** At most three items, then how many more (keeps refusal messages short). */
function few(items: string[]): string {
  const shown = items.slice(0, 3).join(', ');
  return items.length > 3 ? `${shown} and ${items.length - 3} more` : shown;
}

/**
 * Throws WardenError ERR_BAD_REQUEST unless the pod's `mcp-warden` container, its volumes and its
 * `mcpwarden.io/status` are what `injectPod` produces for this pod with `config`, and no other
 * container mounts the sidecar's volumes. Returns admission warnings (see checkVolumeMounts).
 */
export function verifyInjected(pod: V1Pod, config: InjectorConfig): string[] {
  const refuse: (what: string) => never = (what) =>
    invalid(
      `the pod carries ${Annotations.status} but not the sidecar mcp-warden injects: ${what}. Remove ` +
        `the container "${Sidecar.containerName}" and the ${Annotations.status} annotation and create ` +
        `the pod again: the webhook then injects the sidecar`,
    );
  const raw = pod.metadata?.annotations?.[Annotations.status] ?? '';
  let status: { version?: unknown; hash?: unknown };
  try {
    status = JSON.parse(raw) as typeof status;
  } catch {
    refuse(`${Annotations.status} is not JSON`);
  }
  if (typeof status !== 'object' || status === null || typeof status.hash !== 'string') {
    refuse(`${Annotations.status} has no hash`);
  }

  const init = (pod.spec?.initContainers ?? []).find((c) => c.name === Sidecar.containerName);
  const actual = init ?? (pod.spec?.containers ?? []).find((c) => c.name === Sidecar.containerName);
  if (actual === undefined) refuse(`no container named ${Sidecar.containerName}`);
  const settings = sidecarSettings(pod, config);
  const upstream = /^http:\/\/127\.0\.0\.1:([0-9]{1,5})\//.exec(actual.args?.[2] ?? '');
  const portName = actual.ports?.find((p) => p.containerPort === Sidecar.proxyPort)?.name ?? '';
  const expected = buildSidecar(settings, config, {
    upstreamPort: Number(upstream?.[1] ?? 0),
    portName,
    native: init !== undefined,
  });

  const diffs = containerDiffs(actual, expected.container);
  const volumeDiffs = expected.volumes
    .filter(
      (want) =>
        !deepEqual(
          (pod.spec?.volumes ?? []).find((v) => v.name === want.name),
          want,
        ),
    )
    .map((v) => v.name);
  if (volumeDiffs.length > 0) diffs.push(`volumes ${few(volumeDiffs)}`);
  if (diffs.length > 0) refuse(`its ${Sidecar.containerName} container differs in ${diffs.join(', ')}`);

  // A port of another container under the sidecar's port name would take its Services.
  for (const c of [...(pod.spec?.initContainers ?? []), ...(pod.spec?.containers ?? [])]) {
    if (c === actual) continue;
    const p = (c.ports ?? []).find((p) => p.name === portName && (p.protocol ?? 'TCP') === 'TCP');
    if (p !== undefined) {
      refuse(`container "${c.name}" also names a port "${portName}", the sidecar's proxy port`);
    }
  }
  // The sidecar's volumes are its own (its token, its recordings): not another container's.
  const warnings = checkVolumeMounts(pod, { sidecar: actual, recordingsVolume: settings.recordingsVolume });

  const hash = injectionHash(expected.container, expected.volumes);
  if (status.hash !== hash) {
    refuse(
      `${Annotations.status} hash ${String(status.hash)} is not this webhook's ${hash} ` +
        `(injected by mcp-warden ${String(status.version)}, this webhook is ${config.version})`,
    );
  }
  return warnings;
}
