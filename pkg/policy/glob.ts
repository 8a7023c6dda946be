/**
 * Small, linear-time globs for tool, prompt and method names (`flat`) and resource URIs (`path`).
 *
 * - `flat`: `*` matches any run of characters (including `/`), `?` exactly one character.
 * - `path`: `*` matches any run of characters except `/`, `**` any run including `/`, `?` exactly
 *   one character other than `/`.
 * - `\` escapes the next character (`\*` is a literal star). Everything else is literal
 *   (`[`, `{` have no special meaning) and matching is case-sensitive.
 *
 * Matching simulates the pattern as an NFA over a preallocated state set: O(len(text) ×
 * len(pattern)) in the worst case, never exponential, and no allocation per match.
 *
 * @example
 * compileGlob('get_*', 'flat').test('get_weather'); // true
 * compileGlob('file:///repo/*.md', 'path').test('file:///repo/docs/a.md'); // false
 */
export type GlobMode = 'flat' | 'path';

export interface Glob {
  readonly source: string;
  readonly mode: GlobMode;
  test(text: string): boolean;
}

const ANY_ONE = -1;
const STAR = -2;
const GLOBSTAR = -3;
const SLASH = 0x2f;

export class GlobError extends Error {
  override name = 'GlobError';
}

function tokenize(pattern: string, mode: GlobMode): Int32Array {
  if (pattern.length === 0) throw new GlobError('is empty');
  const out: number[] = [];
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern.charCodeAt(i);
    if (c < 0x20 || c === 0x7f) throw new GlobError(`contains a control character at offset ${i}`);
    if (c === 0x5c /* \ */) {
      if (i + 1 >= pattern.length) throw new GlobError('ends with an unfinished escape (\\)');
      out.push(pattern.charCodeAt(++i));
    } else if (c === 0x3f /* ? */) {
      out.push(ANY_ONE);
    } else if (c === 0x2a /* * */) {
      let run = 1;
      while (pattern.charCodeAt(i + 1) === 0x2a) {
        run++;
        i++;
      }
      if (mode === 'path' && run > 2)
        throw new GlobError(`has ${run} stars in a row: use * (one segment) or ** (any depth)`);
      const tok = mode === 'path' && run === 2 ? GLOBSTAR : STAR;
      // Consecutive stars of the same kind are one star; a star next to a globstar is subsumed.
      const prev = out[out.length - 1];
      if (prev === GLOBSTAR || (prev === STAR && tok === STAR)) continue;
      if (prev === STAR && tok === GLOBSTAR) out[out.length - 1] = GLOBSTAR;
      else out.push(tok);
    } else {
      out.push(c);
    }
  }
  return Int32Array.from(out);
}

class NfaGlob implements Glob {
  readonly #tokens: Int32Array;
  readonly #flat: boolean;
  // Reused between calls: matching is synchronous and JavaScript is single-threaded.
  #cur: Uint8Array;
  #next: Uint8Array;

  constructor(
    readonly source: string,
    readonly mode: GlobMode,
    tokens: Int32Array,
  ) {
    this.#tokens = tokens;
    this.#flat = mode === 'flat';
    this.#cur = new Uint8Array(tokens.length + 1);
    this.#next = new Uint8Array(tokens.length + 1);
  }

  test(text: string): boolean {
    const tokens = this.#tokens;
    const m = tokens.length;
    let cur = this.#cur;
    let next = this.#next;
    cur.fill(0);
    cur[0] = 1;
    closure(tokens, cur);
    for (let p = 0; p < text.length; p++) {
      const c = text.charCodeAt(p);
      next.fill(0);
      let any = false;
      for (let i = 0; i < m; i++) {
        if (cur[i] === 0) continue;
        const t = tokens[i]!;
        if (t >= 0) {
          if (t === c) {
            next[i + 1] = 1;
            any = true;
          }
        } else if (t === ANY_ONE) {
          if (this.#flat || c !== SLASH) {
            next[i + 1] = 1;
            any = true;
          }
        } else if (t === GLOBSTAR || this.#flat || c !== SLASH) {
          next[i] = 1;
          any = true;
        }
      }
      if (!any) return false;
      closure(tokens, next);
      const swap = cur;
      cur = next;
      next = swap;
    }
    return cur[m] === 1;
  }
}

/** Stars match the empty string: state i before a star also reaches i + 1. */
function closure(tokens: Int32Array, states: Uint8Array): void {
  for (let i = 0; i < tokens.length; i++) {
    if (states[i] === 1 && tokens[i]! <= STAR) states[i + 1] = 1;
  }
}

function literal(tokens: Int32Array, from: number, to: number): string | undefined {
  let s = '';
  for (let i = from; i < to; i++) {
    const t = tokens[i]!;
    if (t < 0) return undefined;
    s += String.fromCharCode(t);
  }
  return s;
}

/** Compile a glob. Throws `GlobError` (message says what is wrong) for an invalid pattern. */
export function compileGlob(pattern: string, mode: GlobMode): Glob {
  const tokens = tokenize(pattern, mode);
  const m = tokens.length;
  const whole = literal(tokens, 0, m);
  if (whole !== undefined) return { source: pattern, mode, test: (s) => s === whole };
  const unbounded = mode === 'flat' ? STAR : GLOBSTAR;
  if (m === 1 && tokens[0] === unbounded) {
    return { source: pattern, mode, test: () => true };
  }
  // Fast paths for the common `prefix*` and `*suffix` shapes.
  if (tokens[m - 1] === unbounded) {
    const prefix = literal(tokens, 0, m - 1);
    if (prefix !== undefined) return { source: pattern, mode, test: (s) => s.startsWith(prefix) };
  }
  if (tokens[0] === unbounded) {
    const suffix = literal(tokens, 1, m);
    if (suffix !== undefined) return { source: pattern, mode, test: (s) => s.endsWith(suffix) };
  }
  return new NfaGlob(pattern, mode, tokens);
}

/** Why `pattern` is not a valid glob, or undefined when it is. */
export function globError(pattern: string, mode: GlobMode): string | undefined {
  try {
    tokenize(pattern, mode);
    return undefined;
  } catch (err) {
    return err instanceof GlobError ? err.message : String(err);
  }
}

/** A set of globs: matches when any matches. */
export function compileGlobs(patterns: readonly string[], mode: GlobMode): (text: string) => boolean {
  const globs = patterns.map((p) => compileGlob(p, mode));
  if (globs.length === 1) {
    const g = globs[0]!;
    return (s) => g.test(s);
  }
  return (s) => {
    for (let i = 0; i < globs.length; i++) if (globs[i]!.test(s)) return true;
    return false;
  };
}
