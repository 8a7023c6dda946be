import type { V1Container, V1ContainerPort, V1Pod } from '@kubernetes/client-node';
import { Annotations, Sidecar } from './constants.js';
import type { PatchOperation } from './jsonpatch.js';
import { annotation, invalid } from './sidecar.js';

/**
 * The app side of port-name takeover: which container port serves MCP, how the app's
 * declarations of it are renamed so a Service's named `targetPort` reaches the sidecar, and what
 * else in the pod would still lead to the app around the sidecar (refused or warned about).
 * Pure; throws WardenError ERR_BAD_REQUEST for a pod that cannot be protected.
 *
 * @example
 * const mcp = findMcpPort(pod);
 * if (mcp) { const { portName, patch, warnings } = planPorts(pod, mcp); }
 */

/** One container port declaration (of `spec.containers`, or of a restartable init container). */
export interface PortDecl {
  /** JSON pointer of the container, e.g. `/spec/containers/0`. */
  base: string;
  owner: V1Container;
  port: number;
  spec: V1ContainerPort;
}

export interface McpPort {
  /** The app's MCP port number (127.0.0.1:<number> is the sidecar's upstream). */
  number: number;
  /** The declaration chosen (annotation, name `mcp`, or the only port); absent when undeclared. */
  primary?: PortDecl;
  /**
   * Every TCP declaration of `number`, the primary first: in `spec.containers` and in restartable
   * init containers (native sidecars, which Services reach by port name too).
   */
  decls: PortDecl[];
}

const ianaSvcName = /^(?=.{1,15}$)(?=.*[a-z])[a-z0-9]+(-[a-z0-9]+)*$/;

const isTcp = (p: V1ContainerPort) => (p.protocol ?? 'TCP') === 'TCP';

/**
 * Finds the app's MCP port: annotation (number or name), else the port named `mcp`, else the only
 * one. Each step looks in `spec.containers` first, then in restartable init containers (native
 * sidecars): an MCP server may run as one, and Services reach it by port name all the same. The
 * "only one" step falls back to the init containers only when `spec.containers` declare no TCP
 * port at all, so a native-sidecar helper (a log agent's port) never becomes the MCP port of an
 * app that declares several.
 */
export function findMcpPort(pod: V1Pod): McpPort | undefined {
  const declsOf = (list: 'containers' | 'initContainers'): PortDecl[] =>
    (pod.spec?.[list] ?? []).flatMap((owner, c) =>
      list === 'initContainers' && owner.restartPolicy !== 'Always'
        ? []
        : (owner.ports ?? []).flatMap((spec, port) =>
            isTcp(spec) ? [{ base: `/spec/${list}/${c}`, owner, port, spec }] : [],
          ),
    );
  const apps = declsOf('containers');
  const natives = declsOf('initContainers');
  const every = [...apps, ...natives];
  const find = (hit: (d: PortDecl) => boolean) => apps.find(hit) ?? natives.find(hit);
  const around = (primary: PortDecl | undefined, number: number): McpPort => {
    const decls = every.filter((e) => e.spec.containerPort === number && e !== primary);
    return primary === undefined ? { number, decls } : { number, primary, decls: [primary, ...decls] };
  };
  const wanted = annotation(pod, Annotations.upstreamPort);
  if (wanted !== undefined) {
    if (/^[0-9]+$/.test(wanted)) {
      const n = Number(wanted);
      if (n < 1 || n > 65535)
        invalid(`annotation ${Annotations.upstreamPort}: ${wanted} is not a port (1-65535)`);
      return around(
        find((e) => e.spec.containerPort === n),
        n,
      );
    }
    const hit = find((e) => e.spec.name === wanted);
    if (hit === undefined) {
      invalid(`annotation ${Annotations.upstreamPort}: no TCP container port is named "${wanted}"`);
    }
    return around(hit, hit.spec.containerPort);
  }
  const named = find((e) => e.spec.name === Sidecar.defaultPortName);
  if (named !== undefined) return around(named, named.spec.containerPort);
  const only = apps.length > 0 ? apps : natives;
  if (only.length === 1) return around(only[0], only[0]!.spec.containerPort);
  return undefined;
}

/**
 * The names `renamedPort` tries for `name`, in order, the valid ones only: `<name>-upstream`,
 * `<first 12>-up`, `<first 11>-up2` … `-up9`.
 */
export function renameCandidates(name: string): string[] {
  const cut = (n: number) => name.slice(0, n).replace(/-+$/, '');
  const candidates = [`${name}-upstream`, `${cut(12)}-up`];
  for (let i = 2; i <= 9; i++) candidates.push(`${cut(11)}-up${i}`);
  return candidates.filter((c) => ianaSvcName.test(c));
}

/** True when `name` has the shape of a name `renamedPort` gives (any original). */
export function isRenamedPortName(name: string): boolean {
  return ianaSvcName.test(name) && /-(upstream|up[2-9]?)$/.test(name);
}

/**
 * A free, valid (IANA_SVC_NAME: at most 15 characters) name for the renamed app port:
 * `<name>-upstream`, else `<first 12>-up`, else `<first 11>-up2` … `-up9`.
 */
export function renamedPort(name: string, taken: ReadonlySet<string>): string {
  for (const c of renameCandidates(name)) if (!taken.has(c)) return c;
  invalid(`cannot rename container port "${name}": pick a shorter name (at most 12 characters)`);
}

export interface PortPlan {
  /** Name of the sidecar's proxy port (15080): the app's MCP port name, taken over. */
  portName: string;
  /** Renames of the app's MCP port declarations and of the probes/handlers that named them. */
  patch: PatchOperation[];
  /** Admission warnings: what still reaches the app around the sidecar. */
  warnings: string[];
}

const PROBES = ['livenessProbe', 'readinessProbe', 'startupProbe'] as const;
const HOOKS = ['postStart', 'preStop'] as const;
const HANDLERS = ['httpGet', 'tcpSocket'] as const;

/**
 * Paths of the probe and lifecycle handler ports of `container` that name one of `names`. The
 * kubelet resolves such a name among the probed container's own ports only, so once the port is
 * renamed the reference must become its number. (`grpc` probes take a number only.)
 */
function namedPortRefs(
  container: V1Container,
  base: string,
  names: ReadonlyMap<string, number>,
): PatchOperation[] {
  const ops: PatchOperation[] = [];
  const visit = (
    handler: Partial<Record<(typeof HANDLERS)[number], { port?: unknown }>> | undefined,
    path: string,
  ) => {
    for (const kind of HANDLERS) {
      const port = handler?.[kind]?.port;
      if (typeof port === 'string' && names.has(port)) {
        ops.push({ op: 'replace', path: `${path}/${kind}/port`, value: names.get(port) });
      }
    }
  };
  for (const probe of PROBES) visit(container[probe], `${base}/${probe}`);
  for (const hook of HOOKS) visit(container.lifecycle?.[hook], `${base}/lifecycle/${hook}`);
  return ops;
}

function portLabel(p: V1ContainerPort): string {
  return p.name === undefined ? `${p.containerPort}` : `"${p.name}" (${p.containerPort})`;
}

/**
 * Refuses a hostPort/hostIP on `spec`, a declaration of the MCP port by `owner`: the node would
 * forward `<node IP>:<hostPort>` to the app around the sidecar.
 */
export function refuseHostPort(owner: V1Container, spec: V1ContainerPort): void {
  if ((spec.hostPort ?? 0) === 0 && (spec.hostIP ?? '') === '') return;
  const host = spec.hostPort ? `hostPort ${spec.hostPort}` : `hostIP ${spec.hostIP}`;
  invalid(
    `container "${owner.name}" port ${portLabel(spec)} is the MCP port and sets ${host}: the node ` +
      `would forward to the app directly, around the mcp-warden sidecar. Remove hostPort/hostIP ` +
      `from the MCP port (or move it to another port) and reach the pod through a Service ` +
      `with a named targetPort`,
  );
}

/**
 * Plans the port takeover for `mcp`: refuses a hostPort/hostIP on the MCP port and a port name that
 * would shadow the sidecar, renames every named declaration of the MCP port (the sidecar takes the
 * primary's name, or the first named one's), rewrites probes that named a renamed port, and warns
 * about what still reaches the app directly.
 */
export function planPorts(pod: V1Pod, mcp: McpPort): PortPlan {
  const containers = pod.spec?.containers ?? [];
  const nameOf = (d: PortDecl) => d.owner.name;
  for (const d of mcp.decls) refuseHostPort(d.owner, d.spec);

  const restartable = (pod.spec?.initContainers ?? []).filter((c) => c.restartPolicy === 'Always');
  const taken = new Set(
    [...containers, ...(pod.spec?.initContainers ?? [])]
      .flatMap((c) => c.ports ?? [])
      .map((p) => p.name)
      .filter((n): n is string => n !== undefined && n !== ''),
  );
  const named = mcp.decls.filter((d) => d.spec.name !== undefined && d.spec.name !== '');
  const portName =
    named[0]?.spec.name ?? (taken.has(Sidecar.defaultPortName) ? 'mcp-warden' : Sidecar.defaultPortName);

  const patch: PatchOperation[] = [];
  const warnings: string[] = [];
  const renamedIn = new Map<string, { owner: V1Container; names: Map<string, number> }>();
  for (const d of named) {
    const old = d.spec.name!;
    const renamed = renamedPort(old, taken);
    taken.add(renamed);
    patch.push({
      op: 'replace',
      path: `${d.base}/ports/${d.port}/name`,
      value: renamed,
    });
    const entry = renamedIn.get(d.base) ?? { owner: d.owner, names: new Map<string, number>() };
    entry.names.set(old, d.spec.containerPort);
    renamedIn.set(d.base, entry);
    if (old !== portName) {
      warnings.push(
        `container "${nameOf(d)}" port "${old}" also declares the MCP port ${mcp.number}: renamed to ` +
          `"${renamed}" so it no longer leads to the app around the sidecar; a Service with ` +
          `targetPort: ${old} finds no port on this pod, use targetPort: ${portName}`,
      );
    }
  }
  for (const [base, { owner, names }] of renamedIn) patch.push(...namedPortRefs(owner, base, names));

  // Ports left under their name: one named like the sidecar's port would take its Services
  // (Kubernetes resolves a named targetPort in the app containers first); one named `mcp` on
  // another number reaches the app directly.
  const renamedDecls = new Set(named.map((d) => d.spec));
  for (const c of [...containers, ...restartable]) {
    for (const p of c.ports ?? []) {
      if (!isTcp(p) || renamedDecls.has(p) || p.name === undefined) continue;
      if (p.name === portName) {
        invalid(
          `container "${c.name}" also names a port "${portName}" (${p.containerPort}): a Service with ` +
            `targetPort: ${portName} would reach it instead of the mcp-warden sidecar. Rename that port`,
        );
      }
      if (p.name === Sidecar.defaultPortName && p.containerPort !== mcp.number) {
        warnings.push(
          `container "${c.name}" port "${p.name}" (${p.containerPort}) is not the MCP port ` +
            `(${Annotations.upstreamPort}: ${annotation(pod, Annotations.upstreamPort) ?? mcp.number}): ` +
            `a Service with targetPort: ${p.name} reaches the app on ${p.containerPort} directly, not ` +
            `through the sidecar (port "${portName}"); point Services at "${portName}" or rename that port`,
        );
      }
    }
  }
  return { portName, patch, warnings };
}
