import { posix } from 'node:path';
import type { V1Container, V1EphemeralContainer, V1Pod, V1Volume } from '@kubernetes/client-node';
import { Annotations, Sidecar } from './constants.js';
import { invalid } from './sidecar.js';

/**
 * The sidecar's volumes belong to the sidecar. A pod spec may mount a volume name the webhook adds
 * only later (the API server validates the patched pod), so without this check an app container
 * could mount `mcp-warden-token` and read the sidecar's token, or `mcp-warden-recordings` and
 * rewrite the recordings. Checked on injection and again when an already-injected pod is
 * re-submitted (webhook/verify.ts); ephemeral containers added later are refused by the chart's
 * sidecar guard (templates/sidecar-guard.yaml). Pure.
 *
 * @example
 * const warnings = checkVolumeMounts(pod, { recordingsVolume: 'audit' }); // throws ERR_BAD_REQUEST
 */

/** The volumes the webhook adds, and what another container could do with each. */
export const SIDECAR_VOLUMES: ReadonlyMap<string, string> = new Map([
  [Sidecar.tokenVolume, "read the sidecar's service-account token"],
  [Sidecar.tmpVolume, "tamper with the sidecar's temporary files"],
  [Sidecar.recordingsVolume, 'read, rewrite or delete the session recordings'],
]);

type AnyContainer = V1Container | V1EphemeralContainer;

/** Every container of the pod with how messages name it (init, regular, ephemeral). */
function containersOf(pod: V1Pod): Array<{ label: string; container: AnyContainer }> {
  const spec = pod.spec;
  return [
    ...(spec?.initContainers ?? []).map((c) => ({ label: `init container "${c.name}"`, container: c })),
    ...(spec?.containers ?? []).map((c) => ({ label: `container "${c.name}"`, container: c })),
    ...(spec?.ephemeralContainers ?? []).map((c) => ({
      label: `ephemeral container "${c.name}"`,
      container: c,
    })),
  ];
}

/** A hostPath, normalized (`/data/rec/` and `/data//rec` are `/data/rec`). */
function hostPathOf(volume: V1Volume): string | undefined {
  const path = volume.hostPath?.path;
  return path === undefined || path === '' ? undefined : posix.normalize(`${path}/`).replace(/(.)\/$/, '$1');
}

/** True when one of two normalized paths contains the other. */
function overlaps(a: string, b: string): boolean {
  const under = (x: string, root: string) => x === root || x.startsWith(root === '/' ? '/' : `${root}/`);
  return under(a, b) || under(b, a);
}

/**
 * Why another volume of the pod holds the same files as the recordings volume `recordings` (the
 * same PersistentVolumeClaim, or a hostPath inside or around its hostPath), else undefined.
 * A volume that is read-only itself (`persistentVolumeClaim.readOnly`) cannot write them.
 */
function sameStorage(volume: V1Volume, recordings: V1Volume): string | undefined {
  const claim = recordings.persistentVolumeClaim?.claimName;
  if (
    claim !== undefined &&
    volume.persistentVolumeClaim?.claimName === claim &&
    volume.persistentVolumeClaim.readOnly !== true
  ) {
    return `which uses the same persistentVolumeClaim "${claim}" as`;
  }
  const path = hostPathOf(recordings);
  const other = hostPathOf(volume);
  if (path === undefined || other === undefined || !overlaps(path, other)) return undefined;
  if (other === path) return `which uses the same hostPath "${path}" as`;
  return other.length < path.length
    ? `whose hostPath "${other}" contains the hostPath "${path}" of`
    : `whose hostPath "${other}" lies inside the hostPath "${path}" of`;
}

/**
 * Refuses a pod in which a container other than `sidecar` mounts (or maps as a device) one of the
 * sidecar's volumes; returns admission warnings for containers that mount the pod's own
 * recordings volume (`recordingsVolume`, annotation `mcpwarden.io/recordings-volume`) read-write,
 * under its name or through another volume of the pod on the same storage (the same
 * PersistentVolumeClaim, an overlapping hostPath).
 *
 * That volume belongs to the pod: a log shipper may have to move or delete what it uploaded, and
 * whoever can write the volume elsewhere (another pod, its backing store) could as well, so a
 * warning, not a refusal. Read-only mounts of it are fine.
 */
export function checkVolumeMounts(
  pod: V1Pod,
  options: { sidecar?: V1Container; recordingsVolume?: string | undefined },
): string[] {
  const volumes = pod.spec?.volumes ?? [];
  const recordings = volumes.find((v) => v.name === options.recordingsVolume);
  // The pod's other volumes on the recordings volume's storage, and why.
  const aliases = new Map<string, string>();
  if (recordings !== undefined) {
    for (const v of volumes) {
      const why = v === recordings ? undefined : sameStorage(v, recordings);
      if (why !== undefined) aliases.set(v.name, why);
    }
  }
  const writers = new Map<string, string>();
  for (const { label, container } of containersOf(pod)) {
    if (container === options.sidecar) continue;
    const uses = [
      ...(container.volumeMounts ?? []).map((m) => ({ name: m.name, readOnly: m.readOnly === true })),
      ...(container.volumeDevices ?? []).map((d) => ({ name: d.name, readOnly: false })),
    ];
    for (const { name, readOnly } of uses) {
      const risk = SIDECAR_VOLUMES.get(name);
      if (risk !== undefined) {
        invalid(
          `${label} mounts the volume "${name}", which mcp-warden adds for its sidecar only: it could ` +
            `${risk}. Remove that volumeMount (the volume names ${[...SIDECAR_VOLUMES.keys()].join(', ')} ` +
            `are reserved for the mcp-warden sidecar)`,
        );
      }
      if (readOnly || writers.has(label)) continue;
      if (name === options.recordingsVolume) {
        writers.set(label, `the recordings volume "${name}" (${Annotations.recordingsVolume})`);
      } else if (aliases.has(name)) {
        writers.set(
          label,
          `the volume "${name}", ${aliases.get(name)} the recordings volume ` +
            `"${options.recordingsVolume}" (${Annotations.recordingsVolume}),`,
        );
      }
    }
  }
  return [...writers].map(
    ([label, what]) =>
      `${label} mounts ${what} read-write: it can rewrite or delete session recordings (recordings ` +
      `verify shows an edited recording, not a deleted one). Mount it with readOnly: true unless it ` +
      `must move or delete recordings`,
  );
}
