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

  /** `values`: how many masks the entry covers (touching ones, or ones it cannot tell apart). */
  add(path: string, detector: string, length: number, values = 1): void {
    this.count += values;
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
 *
 * Kept text can occur more than once (` mid ` inside a masked private key and again after it), so
 * where a mask ends may be unknowable: each kept piece is placed as early and as late as the rest
 * allows, and a piece whose two places differ does not split the masks around it. They make one
 * entry, every name listed, covering all they hide together (which is the same whatever the
 * placement): a requester cannot move hidden length from one entry to another.
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
  // A run of masks with no kept text between them is one group: where one ends is unknowable.
  // Group k lies between kept[k] and kept[k + 1] (kept[0] the head, the last one the tail).
  const groups: string[][] = [];
  const kept: string[] = [literals[0]!];
  for (let i = 0; i < names.length; ) {
    const group = [names[i++]!];
    while (i < names.length && literals[i] === '') group.push(names[i++]!);
    groups.push(group);
    kept.push(literals[i]!);
  }
  const n = groups.length;
  // Where each kept piece starts: as early (lo) and as late (hi) as the others allow, each mask
  // hiding at least one character.
  const lo: number[] = [0];
  let ok = text.startsWith(kept[0]!);
  for (let k = 1; ok && k < n; k++) {
    lo[k] = text.indexOf(kept[k]!, lo[k - 1]! + kept[k - 1]!.length + 1);
    ok = lo[k]! >= 0;
  }
  lo[n] = text.length - kept[n]!.length;
  ok = ok && lo[n]! > lo[n - 1]! + kept[n - 1]!.length && text.endsWith(kept[n]!);
  if (!ok) {
    c.add(path, unique(names), codePoints(text), names.length);
    return;
  }
  const hi: number[] = [];
  hi[n] = lo[n]!;
  for (let k = n - 1; k >= 1; k--) hi[k] = text.lastIndexOf(kept[k]!, hi[k + 1]! - 1 - kept[k]!.length);
  hi[0] = 0;
  // One entry from each kept piece whose place is certain to the next: the text between, less the
  // kept pieces of uncertain place inside it.
  for (let a = 0; a < n; ) {
    let b = a + 1;
    let keptInside = 0;
    while (b < n && hi[b] !== lo[b]) keptInside += codePoints(kept[b++]!);
    const from = lo[a]! + kept[a]!.length;
    const covered = groups.slice(a, b).flat();
    c.add(path, unique(covered), codePoints(text.slice(from, lo[b])) - keptInside, covered.length);
    a = b;
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !isRawNumber(v);
}

function scalarText(v: unknown): string | undefined {
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  if (isRawNumber(v)) return numberText(v);
  return undefined;
}

/** A part of `original` whose shape the views do not keep: all of it (its JSON text), named `structure`. */
function whole(c: Collector, path: string, original: unknown): void {
  const text = typeof original === 'string' ? original : (scalarText(original) ?? canonicalJson(original));
  c.add(path, 'structure', codePoints(text));
}

/** Same JSON text (a view that copied what it did not change). */
function sameJson(a: unknown, b: unknown): boolean {
  return a === b || canonicalJson(a) === canonicalJson(b);
}

function isContainer(v: unknown): boolean {
  return Array.isArray(v) || isObject(v);
}

/**
 * Both views (`shown` as reviewers see it, `marked` as aligned here) must have the original's
 * shape wherever they do not replace a value with text: the same members under the same keys,
 * renamed in place only where a mask marked the name, and arrays of the same length. A level
 * where either differs (a masked key renamed onto another member's name, which drops that member
 * from what reviewers see) counts whole as hidden: a dropped member is never counted nowhere.
 */
function walk(
  c: Collector,
  path: string,
  original: unknown,
  shown: unknown,
  marked: unknown,
  pattern: RegExp,
): void {
  if (marked === original) {
    // The masker hands back what it did not change; what reviewers see must then be it too.
    if (!sameJson(shown, original)) whole(c, path, original);
    return;
  }
  if (typeof original === 'string') {
    if (typeof marked !== 'string' || isContainer(shown)) c.add(path, 'structure', codePoints(original));
    else if (marked !== original) fromText(c, path, original, marked, pattern);
    return;
  }
  const scalar = scalarText(original);
  if (scalar !== undefined) {
    // A card number becomes a masked string; a JSON path makes a number 0 and a boolean false.
    if (isContainer(shown) || isContainer(marked)) c.add(path, 'structure', codePoints(scalar));
    else if (typeof marked === 'string') fromText(c, path, scalar, marked, pattern);
    else if (scalarText(marked) !== scalar) c.add(path, 'field', codePoints(scalar));
    return;
  }
  if (original === null || original === undefined) return;
  if (typeof marked === 'string') {
    // Replaced whole (a value under a password-like key, past the depth limit): its JSON text.
    if (typeof shown === 'string') fromText(c, path, canonicalJson(original), marked, pattern);
    else whole(c, path, original);
    return;
  }
  if (Array.isArray(original)) {
    if (
      !Array.isArray(marked) ||
      !Array.isArray(shown) ||
      marked.length !== original.length ||
      shown.length !== original.length
    ) {
      whole(c, path, original);
      return;
    }
    for (let i = 0; i < original.length; i++)
      walk(c, `${path}[${i}]`, original[i], shown[i], marked[i], pattern);
    return;
  }
  if (!isObject(original)) return;
  const keys = Object.keys(original);
  const markedKeys = isObject(marked) ? Object.keys(marked) : [];
  const shownKeys = isObject(shown) ? Object.keys(shown) : [];
  if (
    !isObject(marked) ||
    !isObject(shown) ||
    markedKeys.length !== keys.length ||
    shownKeys.length !== keys.length
  ) {
    whole(c, path, original);
    return;
  }
  // Masked keys are renamed in place (docs/masking.md): the i-th key of each copy is the same
  // member. Checked before anything is counted: a key kept in one copy is kept in the other, and a
  // renamed one carries a marker (the nonce: no original key has it).
  for (let i = 0; i < keys.length; i++) {
    const renamed = markedKeys[i] !== keys[i];
    if (renamed !== (shownKeys[i] !== keys[i]) || (renamed && markedKeys[i]!.search(pattern) < 0)) {
      whole(c, path, original);
      return;
    }
  }
  for (let i = 0; i < keys.length; i++) {
    const key = keys[i]!;
    const markedKey = markedKeys[i]!;
    const seen = shownKeys[i]!;
    // The path as reviewers read spec.arguments: a masked key as they see it, never as it was.
    const child = keyPath(path, seen);
    if (markedKey !== key) fromText(c, child, key, markedKey, pattern);
    walk(c, child, original[key], shown[seen], marked[markedKey], pattern);
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
