/**
 * Cheap "could this string contain X" checks that run before a detector's regex.
 *
 * `String.prototype.includes` with a multi-character needle searches for its first character
 * (`includes('ecret')` stops at every `e`: ~50 µs per 64 KiB of prose on the bench VM), while
 * `indexOf` of one rare character is a memchr that skips text at memory speed (~1 µs). A literal is
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

/** Index of the rarest character of `literal` (by `frequency`; unlisted characters count as rare). */
function anchorIndex(literal: string, fold = false): number {
  const freq = (c: string): number => {
    if (!fold) return frequency.get(c) ?? 0;
    // Folded: both cases are searched, so a letter costs what its two cases cost together.
    return (frequency.get(c.toLowerCase()) ?? 0) + (frequency.get(c.toUpperCase()) ?? 0);
  };
  let k = 0;
  for (let i = 1; i < literal.length; i++) if (freq(literal[i]!) < freq(literal[k]!)) k = i;
  return k;
}

/** The `n` rarest distinct characters of a literal (by a typical frequency in JSON and prose), rarest first. */
export function rarestChars(literal: string, n: number): string[] {
  if (literal.length === 0) throw new Error('rarestChars: empty literal');
  const distinct = [...new Set(literal.split(''))];
  distinct.sort((a, b) => (frequency.get(a) ?? 0) - (frequency.get(b) ?? 0));
  return distinct.slice(0, n);
}

/** The two characters of a literal (2 or more long) starting at, or ending with, its rarest one. */
export function rarestPair(literal: string): string {
  if (literal.length < 2) throw new Error('rarestPair: literal shorter than 2');
  const k = anchorIndex(literal);
  return k + 1 < literal.length ? literal.slice(k, k + 2) : literal.slice(k - 1, k + 1);
}

/**
 * A predicate: does `s` contain `literal` (case-sensitive)? The part of the literal from its
 * rarest character on is searched with `indexOf` (V8 then runs a memchr of that character and
 * compares the rest in C++); the characters before it are compared only where that part is found.
 */
export function literalProbe(literal: string): (s: string) => boolean {
  if (literal.length === 0) return () => true;
  const find = literalFinder(literal);
  return (s) => find(s, 0) !== -1;
}

/**
 * A predicate: does `s` contain any of `literals`? Literals that share the part searched for
 * (`ghp_`, `gho_`, `ghu_`... all search `_`) share one scan.
 */
export function anyLiteralProbe(literals: readonly string[]): (s: string) => boolean {
  if (literals.some((l) => l.length === 0)) return () => true;
  const groups = new Map<string, Array<{ literal: string; k: number; first: number }>>();
  for (const literal of literals) {
    const k = anchorIndex(literal);
    const tail = searched(literal, k);
    const member = { literal, k, first: literal.charCodeAt(0) };
    const g = groups.get(tail);
    if (g === undefined) groups.set(tail, [member]);
    else g.push(member);
  }
  const scans = [...groups].map(([tail, members]) => ({
    tail,
    members,
    // The search may start at the smallest offset; each member checks its own.
    from: Math.min(...members.map((m) => m.k)),
    shortest: Math.min(...members.map((m) => m.literal.length)),
  }));
  return (s) => {
    for (let g = 0; g < scans.length; g++) {
      const scan = scans[g]!;
      if (s.length < scan.shortest) continue;
      const members = scan.members;
      let i = s.indexOf(scan.tail, scan.from);
      while (i !== -1) {
        for (let m = 0; m < members.length; m++) {
          const member = members[m]!;
          const at = i - member.k;
          // The first character is compared before the call (the searched part often recurs: `_`).
          if (at >= 0 && s.charCodeAt(at) === member.first && s.startsWith(member.literal, at)) return true;
        }
        i = s.indexOf(scan.tail, i + 1);
      }
    }
    return false;
  };
}

/**
 * What both any-case searches build from a literal: the rarest letter's index `k`, its cases to
 * search for, and a comparison at a position that folds ASCII letters only.
 */
function foldedLiteral(
  literal: string,
  caller: string,
): { k: number; anchors: string[]; len: number; matchesAt: (s: string, at: number) => boolean } {
  const lower = literal.toLowerCase();
  if (!/^[\x20-\x7e]+$/.test(lower)) throw new Error(`${caller}: printable ASCII only`);
  const k = anchorIndex(lower, true);
  const anchors = [...new Set([lower[k]!, lower[k]!.toUpperCase()])];
  const len = lower.length;
  const codes = Array.from(lower, (c) => c.charCodeAt(0));
  const isLetter = codes.map((c) => c >= 97 && c <= 122);
  const matchesAt = (s: string, at: number): boolean => {
    if (at < 0 || at + len > s.length) return false;
    for (let j = 0; j < len; j++) {
      const c = s.charCodeAt(at + j);
      const want = codes[j]!;
      if (c !== want && !(isLetter[j] && c === want - 32)) return false;
    }
    return true;
  };
  return { k, anchors, len, matchesAt };
}

/**
 * A predicate: does `s` contain `literal` with ASCII letters in any case? This is what a
 * non-unicode `/i` regexp folds for ASCII letters (it never folds a non-ASCII character into
 * ASCII: `ſ` is not `s`, the Kelvin sign is not `k`). Each case of the rarest letter is searched
 * with `indexOf`.
 */
export function foldedLiteralProbe(literal: string): (s: string) => boolean {
  if (literal.length === 0) return () => true;
  const { k, anchors, len, matchesAt } = foldedLiteral(literal, 'foldedLiteralProbe');
  return (s) => {
    if (s.length < len) return false;
    for (let a = 0; a < anchors.length; a++) {
      const anchor = anchors[a]!;
      let i = s.indexOf(anchor, k);
      while (i !== -1) {
        if (matchesAt(s, i - k)) return true;
        i = s.indexOf(anchor, i + 1);
      }
    }
    return false;
  };
}

/**
 * Where `literal` occurs in `s` at or after `from` (or -1): `s.indexOf(literal, from)`, but
 * searched from the literal's rarest character, so a literal starting with a common character
 * (`://`, `ecret`) does not stop at each of those. Build once per literal.
 */
export function literalFinder(literal: string): (s: string, from: number) => number {
  if (literal.length === 0) throw new Error('literalFinder: empty literal');
  const k = anchorIndex(literal);
  const tail = searched(literal, k);
  const len = literal.length;
  return (s, from) => {
    if (s.length < len) return -1;
    let i = s.indexOf(tail, Math.max(from, 0) + k);
    while (i !== -1) {
      if (s.startsWith(literal, i - k)) return i - k;
      i = s.indexOf(tail, i + 1);
    }
    return -1;
  };
}

/**
 * `literalFinder` with ASCII letters in any case (`uthorization` finds `UTHORIZATION`,
 * `uthoriZation`), as a non-unicode `/i` regexp folds them: each case of the rarest letter is
 * searched with `indexOf` and each hit compared in place. The next hit of each case is
 * remembered for the last string, so a scan that asks again and again from further on (the
 * finder's loop) reads the string once per case, not once per call.
 */
export function foldedLiteralFinder(literal: string): (s: string, from: number) => number {
  const { k, anchors, len, matchesAt } = foldedLiteral(literal, 'foldedLiteralFinder');
  // Per anchor: the first hit at or after `lo` (-1: none), for the string `of`.
  let of: string | undefined;
  const lo = anchors.map(() => 0);
  const hit = anchors.map(() => -1);
  return (s, from) => {
    if (s.length < len) return -1;
    if (s !== of) {
      of = s;
      for (let a = 0; a < anchors.length; a++) {
        lo[a] = Number.MAX_SAFE_INTEGER;
        hit[a] = -1;
      }
    }
    const q = Math.max(from, 0) + k;
    let best = -1;
    for (let a = 0; a < anchors.length; a++) {
      // The remembered hit answers when the search it came from started at or before q and
      // found nothing before q.
      if (!(lo[a]! <= q && (hit[a] === -1 || hit[a]! >= q))) {
        let i = s.indexOf(anchors[a]!, q);
        while (i !== -1 && !matchesAt(s, i - k)) i = s.indexOf(anchors[a]!, i + 1);
        lo[a] = q;
        hit[a] = i;
      }
      const h = hit[a]!;
      if (h !== -1 && (best === -1 || h < best)) best = h;
    }
    return best === -1 ? -1 : best - k;
  };
}

/**
 * What `indexOf` is given for a literal whose rarest character is at `k`: from that character on,
 * at most 6 characters. V8 searches a needle of up to 6 characters with a memchr of its first
 * character and compares the rest in place; a longer one goes to a Boyer-Moore-Horspool search
 * that is 3-5x slower on JSON than the memchr (`.corp.internal`: 23 µs per 64 KiB against 5).
 */
function searched(literal: string, k: number): string {
  return literal.slice(k, k + 6);
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
