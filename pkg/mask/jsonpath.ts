import { WardenError } from '../errors.js';
import { isRawNumber } from '../json.js';

/**
 * The small JSONPath subset masking rules use to point at whole values, relative to the payload
 * the server sent (a response's `result`, a notification's or server request's `params`):
 * `$.structuredContent.customer.ssn`, `$.content[*].text`, `$.items[0].card`, `$['odd key']`,
 * `$.*.secret`, `$..password` (any depth).
 */
export type Segment =
  | { kind: 'key'; key: string }
  | { kind: 'index'; index: number }
  | { kind: 'wildcard' }
  | { kind: 'descend'; key: string | undefined };

export interface CompiledPath {
  source: string;
  segments: Segment[];
}

/** Parse a path or throw ERR_POLICY_INVALID saying where it went wrong. */
export function parseJsonPath(path: string): CompiledPath {
  const fail = (why: string): never => {
    throw new WardenError(
      'ERR_POLICY_INVALID',
      `masking field "${path}": ${why} (use e.g. $.structuredContent.customer.ssn or $.content[*].text)`,
    );
  };
  if (typeof path !== 'string' || !path.startsWith('$')) fail('a JSON path must start with $');
  const segments: Segment[] = [];
  let i = 1;
  const ident = /[A-Za-z0-9_$@-]+/y;
  while (i < path.length) {
    const c = path[i];
    if (c === '.') {
      const descend = path[i + 1] === '.';
      i += descend ? 2 : 1;
      if (path[i] === '*') {
        i++;
        segments.push(descend ? { kind: 'descend', key: undefined } : { kind: 'wildcard' });
        continue;
      }
      ident.lastIndex = i;
      const m = ident.exec(path);
      if (m === null) fail(`expected a name at character ${i + 1}`);
      i += m![0].length;
      segments.push(descend ? { kind: 'descend', key: m![0] } : { kind: 'key', key: m![0] });
    } else if (c === '[') {
      const close = path.indexOf(']', i);
      if (close === -1) fail('unclosed [');
      const inner = path.slice(i + 1, close).trim();
      i = close + 1;
      if (inner === '*') segments.push({ kind: 'wildcard' });
      else if (/^\d+$/.test(inner)) segments.push({ kind: 'index', index: Number(inner) });
      else if (/^'[^']*'$|^"[^"]*"$/.test(inner)) segments.push({ kind: 'key', key: inner.slice(1, -1) });
      else fail(`unsupported selector [${inner}]`);
    } else {
      fail(`unexpected "${c}" at character ${i + 1}`);
    }
  }
  if (segments.length === 0) fail('a path must select something below $');
  return { source: path, segments };
}

/** Replaces a selected value, `depth` levels below the root. */
type Replace = (value: unknown, depth: number) => unknown;

/**
 * Apply `replace` to every value `path` selects in `root`; returns `root` itself when nothing was
 * selected. The search stops `maxDepth` levels down: the masker replaces anything deeper whole
 * with the same limit, so nothing below is left unmasked.
 */
export function applyJsonPath(root: unknown, path: CompiledPath, replace: Replace, maxDepth = 512): unknown {
  return applyFrom(root, path.segments, 0, replace, 0, maxDepth);
}

function applyFrom(
  node: unknown,
  segs: Segment[],
  i: number,
  replace: Replace,
  depth: number,
  maxDepth: number,
): unknown {
  if (i === segs.length) return replace(node, depth);
  // A number kept as its text (pkg/json.ts) is a leaf, not an object with a `rawJSON` member.
  if (typeof node !== 'object' || node === null || depth > maxDepth || isRawNumber(node)) return node;
  const seg = segs[i]!;
  switch (seg.kind) {
    case 'key': {
      if (Array.isArray(node) || !Object.hasOwn(node, seg.key)) return node;
      const obj = node as Record<string, unknown>;
      const next = applyFrom(obj[seg.key], segs, i + 1, replace, depth + 1, maxDepth);
      return next === obj[seg.key] ? node : { ...obj, [seg.key]: next };
    }
    case 'index': {
      if (!Array.isArray(node) || seg.index >= node.length) return node;
      const next = applyFrom(node[seg.index], segs, i + 1, replace, depth + 1, maxDepth);
      if (next === node[seg.index]) return node;
      const copy = node.slice();
      copy[seg.index] = next;
      return copy;
    }
    case 'wildcard':
      return mapChildren(node, (child) => applyFrom(child, segs, i + 1, replace, depth + 1, maxDepth));
    case 'descend': {
      // `..key`: the key on this node, then the same search in every child.
      let current: unknown = node;
      if (seg.key === undefined) {
        current = mapChildren(current, (child) =>
          applyFrom(child, segs, i + 1, replace, depth + 1, maxDepth),
        );
      } else if (!Array.isArray(current) && Object.hasOwn(current as object, seg.key)) {
        const obj = current as Record<string, unknown>;
        const next = applyFrom(obj[seg.key], segs, i + 1, replace, depth + 1, maxDepth);
        if (next !== obj[seg.key]) current = { ...obj, [seg.key]: next };
      }
      return mapChildren(current, (child) => applyFrom(child, segs, i, replace, depth + 1, maxDepth));
    }
  }
}

function mapChildren(node: unknown, fn: (child: unknown) => unknown): unknown {
  if (typeof node !== 'object' || node === null || isRawNumber(node)) return node;
  if (Array.isArray(node)) {
    let copy: unknown[] | undefined;
    for (let k = 0; k < node.length; k++) {
      const next = fn(node[k]);
      if (next !== node[k]) {
        copy ??= node.slice();
        copy[k] = next;
      }
    }
    return copy ?? node;
  }
  const obj = node as Record<string, unknown>;
  let copy: Record<string, unknown> | undefined;
  for (const key of Object.keys(obj)) {
    const next = fn(obj[key]);
    if (next !== obj[key]) {
      copy ??= { ...obj };
      copy[key] = next;
    }
  }
  return copy ?? node;
}
