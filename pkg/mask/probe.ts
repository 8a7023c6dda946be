/**
 * Cheap "could this string contain X" checks that run before a detector's regex.
 *
 * `String.prototype.includes` with a multi-character needle costs about 2 ns per character in
 * V8, while `indexOf` of one character is a memchr that skips text at memory speed. A literal is
 * therefore found by its rarest character (by a typical frequency in JSON and English text), and
 * each hit compared in place: `eyJ` is searched as `J`, `sig=` as `=`.
 */

// Rough frequency (per mille) in JSON tool results: prose, keys, ids, timestamps. Unlisted: rare.
const frequency = new Map<string, number>(
  Object.entries({
    ' ': 150,
    e: 95,
    t: 70,
    a: 65,
    o: 60,
    i: 60,
    n: 60,
    s: 55,
    r: 55,
    h: 40,
    l: 35,
    d: 35,
    c: 28,
    u: 27,
    m: 24,
    w: 20,
    f: 20,
    g: 19,
    y: 18,
    p: 18,
    b: 14,
    v: 9,
    k: 7,
    x: 2,
    j: 2,
    q: 1,
    z: 1,
    '"': 60,
    ':': 30,
    ',': 30,
    '.': 12,
    '-': 10,
    _: 8,
    '/': 8,
    '0': 20,
    '1': 20,
    '2': 18,
    '3': 12,
    '4': 10,
    '5': 10,
    '6': 9,
    '7': 9,
    '8': 9,
    '9': 9,
    T: 3,
    Z: 2,
    S: 3,
    A: 3,
    E: 2,
    I: 2,
    C: 2,
    '\n': 5,
  }),
);

/** A predicate: does `s` contain `literal` (case-sensitive)? */
export function literalProbe(literal: string): (s: string) => boolean {
  if (literal.length === 0) return () => true;
  let k = 0;
  for (let i = 1; i < literal.length; i++) {
    if ((frequency.get(literal[i]!) ?? 0) < (frequency.get(literal[k]!) ?? 0)) k = i;
  }
  const anchor = literal[k]!;
  const len = literal.length;
  return (s) => {
    if (s.length < len) return false;
    let i = s.indexOf(anchor, k);
    while (i !== -1) {
      if (s.startsWith(literal, i - k)) return true;
      i = s.indexOf(anchor, i + 1);
    }
    return false;
  };
}

/** A predicate: does `s` contain any of `literals`? */
export function anyLiteralProbe(literals: readonly string[]): (s: string) => boolean {
  const probes = literals.map(literalProbe);
  return (s) => {
    for (const p of probes) if (p(s)) return true;
    return false;
  };
}

/**
 * The longest literal every match of an RE2 pattern must contain, found conservatively (or
 * undefined): only top-level literal characters count, a `|` outside groups gives up, groups,
 * classes and quantified characters end a run, and case-insensitive patterns give up.
 *
 * @example
 * requiredLiteral('[a-z0-9-]+\\.corp\\.internal'); // '.corp.internal'
 */
export function requiredLiteral(regex: string): string | undefined {
  // Flags may fold case; escapes with arguments (\x41, \pL, \Q..\E, octal) spell literals this scan would misread.
  if (regex.includes('(?') || /\\[^dDwWsSbB\W]/.test(regex)) return undefined;
  let best = '';
  let run = '';
  let depth = 0;
  const end = (): void => {
    if (run.length > best.length) best = run;
    run = '';
  };
  for (let i = 0; i < regex.length; i++) {
    const c = regex[i]!;
    if (c === '\\') {
      const next = regex[i + 1];
      i++;
      // An escaped punctuation character is that character; \d, \w, \b, \pN... are not literals.
      if (depth === 0 && next !== undefined && /[^A-Za-z0-9]/.test(next) && !isQuantifier(regex[i + 1]))
        run += next;
      else end();
      continue;
    }
    if (c === '[') {
      // A class: `]` right after `[` or `[^` is a member, not the end; POSIX classes give up.
      end();
      let j = i + 1;
      if (regex[j] === '^') j++;
      if (regex[j] === ']') j++;
      for (; j < regex.length && regex[j] !== ']'; j++) {
        if (regex[j] === '\\') j++;
        else if (regex[j] === '[' && regex[j + 1] === ':') return undefined;
      }
      if (j >= regex.length) return undefined;
      i = j;
      continue;
    }
    if (c === '(') {
      depth++;
      end();
      continue;
    }
    if (c === ')') {
      depth--;
      end();
      continue;
    }
    if (c === '|') {
      if (depth === 0) return undefined;
      end();
      continue;
    }
    if (depth > 0) continue;
    if (c === '{') {
      // A repetition count ({4,}): its digits are not literals.
      const close = regex.indexOf('}', i);
      end();
      if (close === -1) return undefined;
      i = close;
      continue;
    }
    if ('.^$*+?}'.includes(c)) {
      end();
      continue;
    }
    if (isQuantifier(regex[i + 1])) {
      // `ab?`: the b is optional; `ab+` still needs one b, but ending the run is always safe.
      end();
      continue;
    }
    run += c;
  }
  end();
  return best.length >= 2 ? best : undefined;
}

function isQuantifier(c: string | undefined): boolean {
  return c === '*' || c === '+' || c === '?' || c === '{';
}
