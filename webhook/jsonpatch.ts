/**
 * The small part of RFC 6902 (JSON Patch) the webhook emits: add, replace, remove. `applyPatch`
 * exists so tests (and the idempotency check) can see the pod the API server would store.
 */
export type PatchOperation =
  | { op: 'add'; path: string; value: unknown }
  | { op: 'replace'; path: string; value: unknown }
  | { op: 'remove'; path: string };

/** Escapes one JSON Pointer token (RFC 6901): `~` → `~0`, `/` → `~1`. */
export function escapePointer(token: string): string {
  return token.replaceAll('~', '~0').replaceAll('/', '~1');
}

function unescapeToken(token: string): string {
  return token.replaceAll('~1', '/').replaceAll('~0', '~');
}

type Container = Record<string, unknown> | unknown[];

function isContainer(v: unknown): v is Container {
  return typeof v === 'object' && v !== null;
}

/**
 * Applies `ops` to a deep copy of `doc` and returns it. Throws on a path that does not exist
 * (as the API server would refuse the patch).
 */
export function applyPatch<T>(doc: T, ops: readonly PatchOperation[]): T {
  const root: { v: unknown } = { v: structuredClone(doc) };
  for (const op of ops) {
    if (!op.path.startsWith('/')) throw new Error(`json patch: path "${op.path}" must start with /`);
    const tokens = op.path.slice(1).split('/').map(unescapeToken);
    let parent: unknown = root.v;
    for (const t of tokens.slice(0, -1)) {
      if (!isContainer(parent)) throw new Error(`json patch: ${op.path}: missing parent`);
      parent = Array.isArray(parent) ? parent[Number(t)] : (parent as Record<string, unknown>)[t];
    }
    const last = tokens[tokens.length - 1]!;
    if (!isContainer(parent)) throw new Error(`json patch: ${op.path}: missing parent`);
    if (Array.isArray(parent)) {
      const index = last === '-' ? parent.length : Number(last);
      if (!Number.isInteger(index) || index < 0 || index > parent.length) {
        throw new Error(`json patch: ${op.path}: index out of range`);
      }
      if (op.op === 'add') parent.splice(index, 0, structuredClone(op.value));
      else if (index >= parent.length) throw new Error(`json patch: ${op.path}: index out of range`);
      else if (op.op === 'replace') parent[index] = structuredClone(op.value);
      else parent.splice(index, 1);
    } else {
      const obj = parent as Record<string, unknown>;
      if (op.op !== 'add' && !(last in obj)) throw new Error(`json patch: ${op.path}: no such member`);
      if (op.op === 'remove') delete obj[last];
      else obj[last] = structuredClone(op.value);
    }
  }
  return root.v as T;
}
