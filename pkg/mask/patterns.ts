import v8 from 'node:v8';
import { RE2JS } from 're2js';
import { WardenError } from '../errors.js';
import type { Finder, Span } from './detectors.js';
import { literalProbe, rarestChars, rarestPair, requiredLiteral } from './probe.js';

/**
 * User-supplied patterns: RE2 syntax, linear time whatever the input.
 *
 * Every pattern is validated with re2js (a port of RE2: backreferences and lookarounds are
 * errors). It then runs on V8's own engine where that engine can guarantee linear time, else on
 * re2js. V8 guarantees it through its breadth-first fallback: with
 * `--enable-experimental-regexp-engine-on-excessive-backtracks`, a regexp that backtracks more
 * than `--regexp-backtracks-before-fallback` times is re-run on the linear engine. The fallback
 * only exists for regexps that engine can compile, so each pattern is also compiled with the `l`
 * flag (experimental engine only): if that fails, the pattern stays on re2js.
 * Measurements and reasoning: docs/performance.md (Masking).
 *
 * The flags are set here, at module load, with `v8.setFlagsFromString`: regexps compiled after it
 * see them, so the CLI needs no node flags. They change no regexp's result, only how a
 * catastrophic one is run.
 */
const linearFlag = 'l';
let v8Linear = false;
try {
  v8.setFlagsFromString('--enable-experimental-regexp-engine');
  v8.setFlagsFromString('--enable-experimental-regexp-engine-on-excessive-backtracks');
  // A variable flag, so no tool rewrites this into a literal the parser would reject.
  new RegExp('(a+)+$', linearFlag);
  v8Linear = true;
} catch {
  v8Linear = false;
}

/** Whether V8's linear fallback is active in this process (else every pattern runs on re2js). */
export function v8LinearFallbackActive(): boolean {
  return v8Linear;
}

export type PatternEngine = 'v8' | 're2js';

export interface CompiledPattern extends Finder {
  readonly engine: PatternEngine;
}

/** Check a pattern with RE2; returns the problem, or undefined when it compiles. */
export function re2Problem(regex: string): string | undefined {
  if (typeof regex !== 'string' || regex.length === 0) return 'must be a non-empty string';
  if (regex.length > 4096) return 'is longer than 4096 characters';
  try {
    RE2JS.compile(regex);
    return undefined;
  } catch (err) {
    return `is not valid RE2 syntax (${err instanceof Error ? err.message : String(err)}); backreferences and lookarounds are not supported`;
  }
}

// RE2 constructs whose JS spelling differs or that JS lacks: such patterns run on re2js.
// `[]a]` / `[^]a]`: in RE2 a class holding `]`; in JavaScript an empty (or full) class then text.
const re2Only = /\\[pPQECzAxa0-7]|\[\[:|\(\?[a-zA-Z-]+[:)]|\[\^?\]/;

/** Translate an RE2 pattern to a JS regexp source + flags, or undefined when unsafe to translate. */
export function toJsRegExp(regex: string): { source: string; flags: string } | undefined {
  let source = regex;
  let flags = 'g';
  const lead = /^\(\?i\)/.exec(source);
  if (lead !== null) {
    source = source.slice(lead[0].length);
    flags += 'i';
  }
  if (re2Only.test(source)) return undefined;
  source = source.replace(/\(\?P</g, '(?<');
  return { source: dotsAsRe2(source), flags };
}

/**
 * RE2's `.` matches anything but `\n`; JavaScript's also stops at `\r`, U+2028 and U+2029, so
 * `secret:.*` would mask less than RE2 says. Unescaped dots outside classes become `[^\n]`.
 */
function dotsAsRe2(source: string): string {
  let out = '';
  let inClass = false;
  for (let i = 0; i < source.length; i++) {
    const c = source[i]!;
    if (c === '\\') {
      out += c + (source[i + 1] ?? '');
      i++;
    } else if (inClass) {
      if (c === ']' && !(source[i - 1] === '[' || (source[i - 1] === '^' && source[i - 2] === '[')))
        inClass = false;
      out += c;
    } else if (c === '[') {
      inClass = true;
      out += c;
    } else {
      out += c === '.' ? '[^\\n]' : c;
    }
  }
  return out;
}

function spansFromV8(re: RegExp, name: string): Finder['find'] {
  return (s, owner, out) => {
    re.lastIndex = 0;
    let m = re.exec(s);
    while (m !== null) {
      if (m[0].length === 0) re.lastIndex++;
      else out.push({ start: m.index, end: m.index + m[0].length, name, owner });
      m = re.exec(s);
    }
  };
}

function spansFromRe2(re: RE2JS, name: string): Finder['find'] {
  return (s, owner, out: Span[]) => {
    const matcher = re.matcher(s);
    let from = 0;
    while (from <= s.length && matcher.find(from)) {
      const start = matcher.start();
      const end = matcher.end();
      if (end > start) out.push({ start, end, name, owner });
      from = end > start ? end : end + 1;
    }
  };
}

/**
 * Compile one user pattern, or throw ERR_POLICY_INVALID naming it.
 *
 * @example
 * const p = compilePattern('ticket', 'TCK-[0-9]{6}');
 * const spans = []; p.find('see TCK-123456', 0, spans); // [{start: 4, end: 14, name: 'ticket', owner: 0}]
 */
export function compilePattern(
  name: string,
  regex: string,
  options: { engine?: PatternEngine } = {},
): CompiledPattern {
  const compiled = compileEngine(name, regex, options.engine);
  // A literal every match contains (`.corp.internal`) lets most strings skip the regex entirely.
  const literal = requiredLiteral(regex);
  if (literal === undefined) return compiled;
  const probe = literalProbe(literal);
  return {
    name,
    engine: compiled.engine,
    minLength: literal.length,
    // Every match contains the literal, so each of its characters (the two rarest are enough)
    // and each two-character piece of it (the one at its rarest character).
    needs: rarestChars(literal, 2),
    needsPairs: [rarestPair(literal)],
    find: (s, owner, out) => {
      if (probe(s)) compiled.find(s, owner, out);
    },
  };
}

function compileEngine(name: string, regex: string, engine: PatternEngine | undefined): CompiledPattern {
  const problem = re2Problem(regex);
  if (problem !== undefined) {
    throw new WardenError('ERR_POLICY_INVALID', `masking pattern "${name}": regex ${problem}`, {
      details: { pattern: name },
    });
  }
  const re2 = RE2JS.compile(regex);
  const js = engine === 're2js' || !v8Linear ? undefined : toJsRegExp(regex);
  if (js !== undefined) {
    try {
      // Proves the linear engine can run it, so the backtracking fallback will kick in.
      new RegExp(js.source, js.flags.replace('g', '') + 'l');
      const re = new RegExp(js.source, js.flags);
      return { name, engine: 'v8', minLength: 1, find: spansFromV8(re, name) };
    } catch {
      // Not expressible for V8's linear engine: run on re2js.
    }
  }
  return { name, engine: 're2js', minLength: 1, find: spansFromRe2(re2, name) };
}
