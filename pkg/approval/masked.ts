import { randomBytes } from 'node:crypto';
import { isRawNumber, numberText } from '../json.js';
import { type MaskedArgument, type MaskedArguments, MaxMaskedArgumentEntries } from '../policy/schema.js';
import { canonicalJson } from './digest.js';

/**
 * What masking hid from the reviewers of a held call (`spec.maskedArguments`): for each value a
 * mask replaced, where it is (a JSON path into the arguments as reviewers see them), what masked
 * it, and how many characters the mask covers. Never the value.
 *
 * The masker reports what it found (detector names) but not where or how much, and a replacement
 * (`[masked:private-key]`) says nothing of the text under it: a requester can wrap any text in a
 * `-----BEGIN PRIVATE KEY-----` frame and the reviewer sees one short token. So the arguments are
 * masked a second time with the same rules and a marker as the replacement (a private-use
 * character and a random nonce: no argument can forge one), and the marked copy is aligned with
 * the original: the text between markers is what the mask kept, the rest is what it hid.
 *
 * @example
 * const marker = maskMarker();
 * // marked: the arguments masked with `marker.replacement` as every rule's replacement
 * hiddenArguments({ body: 'key: -----BEGIN PRIVATE KEY-----…' }, shown, marked, marker.pattern);
 * // → { count: 1, length: 1766, entries: [{ path: '$.body', detector: 'private-key', length: 1766 }] }
 */

/** A replacement template for masking rules, and the pattern that finds what it produced (group 1: the name). */
export interface MaskMarker {
  replacement: string;
  pattern: RegExp;
}

/** A marker with a fresh random nonce. */
export function maskMarker(): MaskMarker {
  const nonce = randomBytes(9).toString('base64url');
  return {
    replacement: `\uE000${nonce}:{name}\uE001`,
    pattern: new RegExp(`\\uE000${nonce}:([^\\uE000\\uE001]*)\\uE001`, 'g'),
  };
}

const MAX_PATH = 512;
const MAX_DETECTOR = 256;

class Collector {
  count = 0;
  length = 0;
  readonly entries: MaskedArgument[] = [];

  add(path: string, detector: string, length: number): void {
    this.count++;
    this.length += length;
    if (this.entries.length >= MaxMaskedArgumentEntries) return;
    this.entries.push({
      path: path.length > MAX_PATH ? `${path.slice(0, MAX_PATH - 1)}…` : path,
      detector: detector.length > MAX_DETECTOR ? `${detector.slice(0, MAX_DETECTOR - 1)}…` : detector,
      length,
    });
  }
}

/** Characters as a reader counts them: Unicode code points (a surrogate pair is one). */
export function codePoints(s: string): number {
  let n = s.length;
  for (let i = 0; i < s.length - 1; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) {
        n--;
        i++;
      }
    }
  }
  return n;
}

const IDENT = /^[A-Za-z_][A-Za-z0-9_]*$/;

function keyPath(parent: string, key: string): string {
  return IDENT.test(key) ? `${parent}.${key}` : `${parent}['${key.replace(/[\\']/g, (c) => `\\${c}`)}']`;
}

function unique(names: string[]): string {
  return [...new Set(names)].join(',');
}

/**
 * The masks in `marked` (the original `text` with spans replaced by markers): one entry per mask,
 * or per run of masks that touch (their names comma-separated). The kept text between markers is
 * found in the original in order; what lies between is hidden. When the kept text cannot be found
 * (a renamed key's `#2`), the whole original counts as hidden: never less than the truth.
 */
function fromText(c: Collector, path: string, text: string, marked: string, pattern: RegExp): void {
  const literals: string[] = [];
  const names: string[] = [];
  let last = 0;
  for (const m of marked.matchAll(pattern)) {
    literals.push(marked.slice(last, m.index));
    names.push(m[1] ?? '');
    last = m.index + m[0].length;
  }
  literals.push(marked.slice(last));
  if (names.length === 0) {
    // Changed, but not by a marker (a masker that ignores replacements): all of it, unattributed.
    c.add(path, 'unknown', codePoints(text));
    return;
  }
  const spans: Array<{ names: string[]; length: number }> = [];
  let ok = text.startsWith(literals[0]!);
  let pos = literals[0]!.length;
  for (let i = 0; ok && i < names.length; ) {
    // A run of masks with no kept text between them is one span: where one ends is unknowable.
    const group = [names[i]!];
    i++;
    while (i < names.length && literals[i] === '') group.push(names[i++]!);
    const next = literals[i]!;
    let end: number;
    if (i === names.length) {
      end = text.length - next.length;
      ok = end > pos && text.endsWith(next);
    } else {
      end = text.indexOf(next, pos + 1);
      ok = end > pos;
    }
    if (ok) spans.push({ names: group, length: codePoints(text.slice(pos, end)) });
    pos = end + next.length;
  }
  if (!ok) {
    c.add(path, unique(names), codePoints(text));
    return;
  }
  for (const s of spans) c.add(path, unique(s.names), s.length);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !isRawNumber(v);
}

function scalarText(v: unknown): string | undefined {
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  if (isRawNumber(v)) return numberText(v);
  return undefined;
}

function walk(
  c: Collector,
  path: string,
  original: unknown,
  shown: unknown,
  marked: unknown,
  pattern: RegExp,
): void {
  if (marked === original) return; // the masker hands back what it did not change
  if (typeof original === 'string') {
    if (typeof marked === 'string') {
      if (marked !== original) fromText(c, path, original, marked, pattern);
    } else c.add(path, 'unknown', codePoints(original));
    return;
  }
  const scalar = scalarText(original);
  if (scalar !== undefined) {
    // A card number becomes a masked string; a JSON path makes a number 0 and a boolean false.
    if (typeof marked === 'string') fromText(c, path, scalar, marked, pattern);
    else if (scalarText(marked) !== scalar) c.add(path, 'field', codePoints(scalar));
    return;
  }
  if (original === null || original === undefined) return;
  if (typeof marked === 'string') {
    // Replaced whole (a value under a password-like key, past the depth limit): its JSON text.
    fromText(c, path, canonicalJson(original), marked, pattern);
    return;
  }
  if (Array.isArray(original)) {
    if (!Array.isArray(marked) || marked.length !== original.length) {
      c.add(path, 'unknown', codePoints(canonicalJson(original)));
      return;
    }
    for (let i = 0; i < original.length; i++) {
      walk(c, `${path}[${i}]`, original[i], Array.isArray(shown) ? shown[i] : undefined, marked[i], pattern);
    }
    return;
  }
  if (!isObject(original)) return;
  const keys = Object.keys(original);
  const markedKeys = isObject(marked) ? Object.keys(marked) : [];
  if (!isObject(marked) || markedKeys.length !== keys.length) {
    c.add(path, 'unknown', codePoints(canonicalJson(original)));
    return;
  }
  // Masked keys are renamed in place (docs/masking.md): the i-th key of each copy is the same member.
  const shownKeys = isObject(shown) ? Object.keys(shown) : [];
  for (let i = 0; i < keys.length; i++) {
    const key = keys[i]!;
    const markedKey = markedKeys[i]!;
    // The path as reviewers read spec.arguments: a masked key as they see it, never as it was.
    const seen = shownKeys.length === keys.length ? shownKeys[i]! : markedKey;
    const child = keyPath(
      path,
      seen.replace(pattern, (_m, name: string) => `[masked:${name}]`),
    );
    if (markedKey !== key) fromText(c, child, key, markedKey, pattern);
    walk(c, child, original[key], isObject(shown) ? shown[seen] : undefined, marked[markedKey], pattern);
  }
}

/**
 * What masking hid in `original`: `shown` is it masked as reviewers see it, `marked` masked by the
 * same rules with `pattern`'s marker as the replacement. Undefined when nothing was masked.
 */
export function hiddenArguments(
  original: unknown,
  shown: unknown,
  marked: unknown,
  pattern: RegExp,
): MaskedArguments | undefined {
  const c = new Collector();
  walk(c, '$', original, shown, marked, pattern);
  if (c.count === 0) return undefined;
  return { count: c.count, length: c.length, entries: c.entries };
}

/** `private-key at $.body (1766 characters), email at $.owner (15 characters) and 3 more`. */
export function describeMasked(m: MaskedArguments, max = 5): string {
  const shown = m.entries
    .slice(0, max)
    .map((e) => `${e.detector} at ${e.path} (${e.length} character${e.length === 1 ? '' : 's'})`);
  const more = m.count - shown.length;
  return `${shown.join(', ')}${more > 0 ? ` and ${more} more` : ''}`;
}
