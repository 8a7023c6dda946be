import type { V1Container, V1EphemeralContainer, V1Pod } from '@kubernetes/client-node';
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

/**
 * Refuses a pod in which a container other than `sidecar` mounts (or maps as a device) one of the
 * sidecar's volumes; returns admission warnings for containers that mount the pod's own
 * recordings volume (`recordingsVolume`, annotation `mcpwarden.io/recordings-volume`) read-write.
 *
 * That volume belongs to the pod: a log shipper may have to move or delete what it uploaded, and
 * whoever can write the volume elsewhere (another pod, its backing store) could as well, so a
 * warning, not a refusal. Read-only mounts of it are fine.
 */
export function checkVolumeMounts(
  pod: V1Pod,
  options: { sidecar?: V1Container; recordingsVolume?: string | undefined },
): string[] {
  const writers = new Set<string>();
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
      if (name === options.recordingsVolume && !readOnly) writers.add(label);
    }
  }
  return [...writers].map(
    (label) =>
      `${label} mounts the recordings volume "${options.recordingsVolume}" (${Annotations.recordingsVolume}) ` +
      `read-write: it can rewrite or delete session recordings (recordings verify shows an edited ` +
      `recording, not a deleted one). Mount it with readOnly: true unless it must move or delete recordings`,
  );
}
