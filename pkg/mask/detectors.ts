import { isRawNumber } from '../json.js';
import {
  basicCredentials,
  cardValid,
  digitCount,
  hasUpper,
  ibanPrefixLength,
  jwtHeaderValid,
  luhnValid,
  opaqueToken,
} from './checks.js';
import {
  anyLiteralProbe,
  foldedLiteralFinder,
  foldedLiteralProbe,
  literalFinder,
  literalProbe,
} from './probe.js';

/**
 * The built-in detectors. Each is a small set of hand-checked regexes for V8's backtracking
 * engine, written to stay linear: every variable-length run starts behind a guard
 * (`(?<![class])`), so a run of N matching characters is entered once, not N times, and every
 * repetition is either bounded or unambiguous (no nested quantifiers over the same characters).
 * `detectors.test.ts` runs each on hostile 100 KB inputs to hold that promise.
 *
 * A regex may name a group `v` that is a suffix of the match: only that part is masked
 * (`AccountKey=[masked:azure-storage-key]` keeps the key name readable).
 */
export interface Span {
  start: number;
  end: number;
  /** Detector or pattern name. */
  name: string;
  /** Index of the rule that owns the finder (set by the masker). */
  owner: number;
}

export interface Finder {
  readonly name: string;
  /** Strings shorter than this cannot hold a finding: the masker skips the finder. */
  readonly minLength: number;
  /**
   * Sets of characters such that every finding contains at least one character of each set
   * (`['@']` for an email; `['_', 'g', 'h']` for a GitHub token), or undefined when nothing is
   * known. The masker runs a finder on a short string only when the string holds a character of
   * each set, and returns a string that serves no finder at once (`"closed"`, plain words).
   */
  readonly needs?: readonly string[];
  /**
   * Two-character sequences every finding contains one of (`gh` for a GitHub token), or
   * undefined. A condition like `needs`, read in the same pass over a short string.
   */
  readonly needsPairs?: readonly string[];
  /** Every finding holds at least this many ASCII digits (a card 13, an SSN 9). */
  readonly minDigits?: number;
  find(s: string, owner: number, out: Span[]): void;
  /**
   * For the finders whose findings can be digits alone (a card number; not an SSN or a phone
   * number, which need a separator, a `+` or a keyword): what `find` finds in the decimal text of
   * an integer (an optional `-`, then digits), found without a regex. The masker scans JSON
   * numbers with it.
   */
  findInDigits?(s: string, owner: number, out: Span[]): void;
  /**
   * With `findInDigits`: false when a plain number's text cannot hold a finding, told from its
   * value before the text is built (turning a large double into text costs ~100-200 ns).
   */
  numberMayHold?(v: number): boolean;
}

interface RegexPart {
  re: RegExp;
  /** Cheap test that must pass before the regex runs (most strings fail it). */
  quick?: (s: string) => boolean;
  /**
   * A literal every match starts with (after any lookbehind): the regex is then tried, sticky,
   * only where the literal occurs (found by its rarest character), instead of at every position.
   * Same matches as the global scan: that scan can only succeed where the literal starts.
   */
  anchor?: string;
  /** With `anchor`: the anchor's ASCII letters match in any case (an `/i` regex). */
  anyCase?: boolean;
  /**
   * Where a match can start, ascending: a superset of every position the global regex can match
   * at (worked out from the string's digit runs). The regex is then tried, sticky, only there.
   */
  starts?: (s: string) => readonly number[];
  /**
   * With `anchor`, for strings up to `shortAtLength`: where a match can start, ascending, worked
   * out from character positions other parts read too (`k` for `token` and `cookie`): the regex
   * is tried, sticky, only there, and the anchor is not searched for.
   */
  at?: (s: string) => readonly number[];
  /**
   * With `anchor`: a cheap necessary condition for a match at `at` (false: the regex is not
   * tried there).
   */
  worth?: (s: string, at: number) => boolean;
  /** Turn a candidate match into the masked span's length (0 = not a finding). Default: whole match. */
  check?: (match: string) => number;
  /**
   * For a regex with a `v` group: whether the value (and the match's other named groups) is a
   * finding. Default: every non-empty value is.
   */
  accept?: (value: string, groups: Readonly<Record<string, string | undefined>>) => boolean;
}

/** `starts` is used on strings longer than this (measured: below, the plain scans are faster). */
const startsMinLength = 256;
/**
 * `at` is used on strings up to this long. On longer ones a character's positions cost a call
 * per occurrence (`k` recurs every ~150 characters of English), the anchor's search a memchr.
 */
const shortAtLength = 1024;

interface CompiledPart extends RegexPart {
  next?: (s: string, from: number) => number;
  sticky?: RegExp;
}

/**
 * Push the finding of a (non-empty) match, if it is one, and return where the scan goes on: past
 * the match; or, when its value was refused (empty, or `accept` said no), at the value, past the
 * name (`Authorization: `): another match may start inside the refused value, never again inside
 * the name. (A part whose value can hold its next name and is often refused would rescan each
 * value once per name: `token` values are never refused, so `token=token=…` is one pass.)
 */
function record(m: RegExpExecArray, part: RegexPart, name: string, owner: number, out: Span[]): number {
  const text = m[0];
  const g = m.groups;
  const v = g === undefined ? undefined : (g['v'] ?? g['v2'] ?? g['v3'] ?? g['v4']);
  const end = m.index + text.length;
  if (v !== undefined) {
    if (v.length === 0 || (part.accept !== undefined && !part.accept(v, g!)))
      return Math.max(end - v.length, m.index + 1);
    out.push({ start: end - v.length, end, name, owner });
  } else {
    const len = part.check === undefined ? text.length : part.check(text);
    if (len > 0) out.push({ start: m.index, end: m.index + len, name, owner });
  }
  return end;
}

function regexFinder(
  name: string,
  minLength: number,
  needs: { sets: readonly string[]; pairs?: readonly string[]; minDigits?: number },
  parts: RegexPart[],
): Finder {
  // Every part gets every member, in one order: all detectors share `find` below, and parts of
  // one shape keep its property loads monomorphic (parts of several shapes cost the masker ~5 %).
  const compiled: CompiledPart[] = parts.map((part) => {
    if (!part.re.global) throw new Error(`detector ${name}: regexes must be global`);
    const fast = part.anchor !== undefined || part.starts !== undefined;
    return {
      re: part.re,
      quick: part.quick,
      anchor: part.anchor,
      anyCase: part.anyCase,
      starts: part.starts,
      at: part.at,
      worth: part.worth,
      check: part.check,
      accept: part.accept,
      next:
        part.anchor === undefined
          ? undefined
          : part.anyCase === true
            ? foldedLiteralFinder(part.anchor)
            : literalFinder(part.anchor),
      sticky: fast ? new RegExp(part.re.source, `${part.re.flags.replace('g', '')}y`) : undefined,
    };
  });
  return {
    name,
    minLength,
    needs: needs.sets,
    needsPairs: needs.pairs,
    minDigits: needs.minDigits ?? 0,
    find(s, owner, out) {
      for (let p = 0; p < compiled.length; p++) {
        const part = compiled[p]!;
        if (part.quick !== undefined && !part.quick(s)) continue;
        // On short strings one scan per regex is cheaper than listing digit runs first.
        if (part.starts !== undefined && s.length > startsMinLength) {
          // Same matches as the global scan: it can only succeed at these positions, and after a
          // match it goes on from the match's end.
          const re = part.sticky!;
          const starts = part.starts(s);
          let from = 0;
          for (let i = 0; i < starts.length; i++) {
            const at = starts[i]!;
            if (at < from) continue;
            re.lastIndex = at;
            const m = re.exec(s);
            if (m !== null && m[0].length > 0) from = record(m, part, name, owner, out);
          }
          continue;
        }
        if (part.at !== undefined && s.length <= shortAtLength) {
          const re = part.sticky!;
          const starts = part.at(s);
          let from = 0;
          for (let i = 0; i < starts.length; i++) {
            const at = starts[i]!;
            if (at < from) continue;
            re.lastIndex = at;
            const m = re.exec(s);
            if (m !== null) from = record(m, part, name, owner, out);
          }
          continue;
        }
        if (part.next !== undefined) {
          const re = part.sticky!;
          const worth = part.worth;
          let at = part.next(s, 0);
          while (at !== -1) {
            if (worth !== undefined && !worth(s, at)) {
              at = part.next(s, at + 1);
              continue;
            }
            re.lastIndex = at;
            const m = re.exec(s);
            // The anchor is not empty and starts every match, so a match is never empty.
            at = part.next(s, m !== null ? record(m, part, name, owner, out) : at + 1);
          }
          continue;
        }
        const re = part.re;
        re.lastIndex = 0;
        let m: RegExpExecArray | null = re.exec(s);
        while (m !== null) {
          if (m[0].length === 0) re.lastIndex++;
          else re.lastIndex = record(m, part, name, owner, out);
          m = re.exec(s);
        }
      }
    },
  };
}

/**
 * One-entry memos: the masker runs every finder on the same string in a row, so a feature several
 * finders (or parts) test is computed once per string. See also `digitRuns`.
 */
function memo(test: (s: string) => boolean): (s: string) => boolean {
  let last: string | undefined;
  let result = false;
  return (s) => {
    if (s !== last) {
      last = s;
      result = test(s);
    }
    return result;
  };
}
/**
 * Positions of one character in a string, ascending (one `indexOf` loop, remembered for the next
 * finder or part on the same string): `github-token` and `api-key` both read the underscores,
 * `password-assignment`'s parts the k and K of `key`, `token`, `cookie`.
 */
function positionsOf(ch: string): (s: string) => readonly number[] {
  let of: string | undefined;
  let at: number[] = [];
  return (s) => {
    if (s !== of) {
      of = s;
      at = [];
      for (let i = s.indexOf(ch); i !== -1; i = s.indexOf(ch, i + 1)) at.push(i);
    }
    return at;
  };
}
const underscores = positionsOf('_');
const dashes = positionsOf('-');
const lowerKs = positionsOf('k');
const upperKs = positionsOf('K');
/** The positions of `k` and `K` together, ascending (remembered for the last string). */
const anyKs = ((): ((s: string) => readonly number[]) => {
  let of: string | undefined;
  let at: number[] = [];
  return (s) => {
    if (s !== of) {
      of = s;
      const lo = lowerKs(s);
      const up = upperKs(s);
      at = up.length === 0 ? (lo as number[]) : [...lo, ...up].sort((a, b) => a - b);
    }
    return at;
  };
})();

/** Where `before` + the k + `after` occurs around a k (or K) of `ks`: the positions `shift` from the k. */
function around(s: string, ks: readonly number[], before: string, after: string, shift: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < ks.length; i++) {
    const k = ks[i]!;
    if (s.startsWith(before, k - before.length) && s.startsWith(after, k + 1)) out.push(k + shift);
  }
  return out;
}

/** `around` with `before` and `after` (lowercase letters) matched in any case. */
function aroundAnyCase(
  s: string,
  ks: readonly number[],
  before: string,
  after: string,
  shift: number,
): number[] {
  const out: number[] = [];
  for (let i = 0; i < ks.length; i++) {
    const k = ks[i]!;
    if (lettersAt(s, before, k - before.length) && lettersAt(s, after, k + 1)) out.push(k + shift);
  }
  return out;
}

/** Whether `s` holds the lowercase letters `word` at `at`, in any case. */
function lettersAt(s: string, word: string, at: number): boolean {
  if (at < 0 || at + word.length > s.length) return false;
  for (let j = 0; j < word.length; j++) if ((s.charCodeAt(at + j) | 32) !== word.charCodeAt(j)) return false;
  return true;
}

const digits = '0123456789';
const upper = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ';
const hasDigit = memo((s) => /\d/.test(s));
/**
 * Keyword gates, each a set of literals one of which every match of its regex contains, searched
 * by rare characters (a case-insensitive alternation of the keywords scanned 64 KiB at ~1.6 ns per
 * character; these cost a memchr per anchor character).
 */
const passwordKeywordProbe = anyLiteralProbe([
  // [Pp]ass(word|wd|phrase), PASS(WORD|WD|PHRASE), [Pp]wd, PWD
  'word',
  'wd',
  'phrase',
  'WORD',
  'WD',
  'PHRASE',
  // [Ss]ecret, SECRET
  'ecret',
  'ECRET',
  // [Aa]pi[_-]?[Kk]ey, API[_-]?KEY
  'key',
  'Key',
  'KEY',
]);
/** `passwordKeywordProbe` without the `key` literals: short strings read those at their k and K. */
const passwordWordProbe = anyLiteralProbe(['word', 'wd', 'phrase', 'WORD', 'WD', 'PHRASE', 'ecret', 'ECRET']);
const ssnKeywordProbe = anyLiteralProbe(['SSN', 'ocial ']);
const foldedKey = foldedLiteralProbe('key');
const foldedSecret = foldedLiteralProbe('secret');
const doubleEquals = literalProbe('==');
const sigProbe = literalProbe('sig=');

const localChar = new Uint8Array(128);
for (const c of 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._%+-')
  localChar[c.charCodeAt(0)] = 1;
const emailDomain = /(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.){1,8}[A-Za-z]{2,24}(?![A-Za-z0-9-])/y;

/**
 * Emails are found from their `@` (a memchr), the local part read backwards (at most 64
 * characters, and it must start a run) and the domain matched forwards with a sticky regex.
 * A look-alike at sign (fullwidth `＠` U+FF20, small `﹫` U+FE6B) is read as `@`: a human reads
 * `alice＠example.com` as an address. Strings without one (every one-byte string: V8 answers
 * `indexOf` of a two-byte character there at once) take the plain `@` loop.
 */
const fullwidthAt = '\uFF20';
const smallAt = '\uFE6B';
/**
 * The at sign percent-encoded, as in a URL's query (`?email=bob%40example.com`): a reader (and
 * the server the URL goes to) reads an address.
 */
const percentAt = '%40';
function emailAt(s: string, at: number, owner: number, out: Span[], width = 1): number {
  let start = at;
  while (start > 0 && at - start < 64) {
    const c = s.charCodeAt(start - 1);
    if (c >= 128 || localChar[c] === 0) break;
    start--;
  }
  const before = start > 0 ? s.charCodeAt(start - 1) : 128;
  const runStarts = before >= 128 || localChar[before] === 0;
  if (start < at && runStarts) {
    emailDomain.lastIndex = at + width;
    const m = emailDomain.exec(s);
    if (m !== null) {
      out.push({ start, end: at + width + m[0].length, name: 'email', owner });
      return at + width + m[0].length;
    }
  }
  return at + width;
}
/** The first `@` or look-alike at or after `from`, or -1. */
function nextAnyAt(s: string, from: number): number {
  let best = s.indexOf('@', from);
  const f = s.indexOf(fullwidthAt, from);
  if (f !== -1 && (best === -1 || f < best)) best = f;
  const m = s.indexOf(smallAt, from);
  if (m !== -1 && (best === -1 || m < best)) best = m;
  return best;
}
const email: Finder = {
  name: 'email',
  minLength: 6,
  needs: [`@${fullwidthAt}${smallAt}%`],
  find(s, owner, out) {
    // `%` is in URLs (one memchr where there is none), `%40` in few of them.
    let pct = s.indexOf(percentAt);
    while (pct !== -1) pct = s.indexOf(percentAt, emailAt(s, pct, owner, out, 3));
    if (s.indexOf(fullwidthAt) === -1 && s.indexOf(smallAt) === -1) {
      let at = s.indexOf('@');
      while (at !== -1) at = s.indexOf('@', emailAt(s, at, owner, out));
      return;
    }
    let at = nextAnyAt(s, 0);
    while (at !== -1) at = nextAnyAt(s, emailAt(s, at, owner, out));
  },
};

// +CC form: its check wants 8-15 digits; North American forms have 10.
/**
 * Maximal runs of three or more ASCII digits in one string, as [start, end, start, end...]
 * (one regex scan, remembered for the next finder on the same string). The card, SSN and
 * North American phone regexes can only match at the start of such a run (their lookbehinds
 * forbid a digit before it), so each is tried only there instead of scanning the string again:
 * three scans become one.
 */
const runRe = /\d{3,}/g;
let runsOf: string | undefined;
let runs: number[] = [];
function digitRuns(s: string): readonly number[] {
  if (s !== runsOf) {
    runsOf = s;
    runs = [];
    runRe.lastIndex = 0;
    for (let m = runRe.exec(s); m !== null; m = runRe.exec(s)) runs.push(m.index, m.index + m[0].length);
  }
  return runs;
}

/**
 * Runs of 13-19 digits (a card written without separators) or of 4 followed by a separator: a
 * space, tab, dash, dot, underscore or slash.
 */
function cardStarts(s: string): number[] {
  const r = digitRuns(s);
  const out: number[] = [];
  for (let i = 0; i < r.length; i += 2) {
    const start = r[i]!;
    const end = r[i + 1]!;
    const len = end - start;
    if (len === 4 ? cardSeparator[s.charCodeAt(end)] === 1 : len >= 13 && len <= 19) out.push(start);
  }
  return out;
}
/** Characters that may follow a card's first group of four: space, tab, the backslash of an escaped tab, `-`, `.`, `_`, `/`. */
const cardSeparator = new Uint8Array(128);
for (const c of ' \t\\-._/') cardSeparator[c.charCodeAt(0)] = 1;

/** Runs of exactly 3 digits followed by a dash. */
function ssnStarts(s: string): number[] {
  const r = digitRuns(s);
  const out: number[] = [];
  for (let i = 0; i < r.length; i += 2) {
    if (r[i + 1]! - r[i]! === 3 && s.charCodeAt(r[i + 1]!) === 45) out.push(r[i]!);
  }
  return out;
}

/** Runs of exactly 3 digits followed by a space (`123 45 6789`). */
function ssnSpacedStarts(s: string): number[] {
  const r = digitRuns(s);
  const out: number[] = [];
  for (let i = 0; i < r.length; i += 2) {
    if (r[i + 1]! - r[i]! === 3 && s.charCodeAt(r[i + 1]!) === 32) out.push(r[i]!);
  }
  return out;
}

/** Runs of exactly 3 digits followed by - . or space, or in parentheses (the match starts at the `(`). */
function phoneStarts(s: string): number[] {
  const r = digitRuns(s);
  const out: number[] = [];
  for (let i = 0; i < r.length; i += 2) {
    const start = r[i]!;
    const end = r[i + 1]!;
    if (end - start !== 3) continue;
    const next = s.charCodeAt(end);
    if (next === 45 || next === 46 || next === 32) out.push(start);
    else if (next === 41 && start > 0 && s.charCodeAt(start - 1) === 40) out.push(start - 1);
  }
  return out;
}

/**
 * For long strings, the SSN keyword form's gate from the digit runs instead of a search for
 * `ocial ` (whose `c` recurs every ~45 characters): its nine digits start a run of exactly 9, or
 * of 3 or 5 followed by a space; walking back from there over `[ \t]*[:#]?[ \t]*` reaches the
 * end of the keyword (`SSN`, or `[Ss]ocial [Ss]ecurity` with ` [Nn]umber` / ` [Nn]o.`: 22
 * characters at most), so `SSN` or `ocial ` lies in the 25 characters ending there.
 */
function ssnKeywordNearDigits(s: string): boolean {
  const r = digitRuns(s);
  for (let i = 0; i < r.length; i += 2) {
    const start = r[i]!;
    const len = r[i + 1]! - start;
    if (!(len === 9 || ((len === 3 || len === 5) && s.charCodeAt(start + len) === 32))) continue;
    let j = start - 1;
    while (j >= 0 && (s.charCodeAt(j) === 32 || s.charCodeAt(j) === 9)) j--;
    if (j >= 0 && (s.charCodeAt(j) === 58 || s.charCodeAt(j) === 35)) {
      j--;
      while (j >= 0 && (s.charCodeAt(j) === 32 || s.charCodeAt(j) === 9)) j--;
    }
    if (j < 2) continue;
    const before = s.slice(Math.max(0, j - 24), j + 1);
    if (before.includes('SSN') || before.includes('ocial ')) return true;
  }
  return false;
}

const phone = regexFinder('phone', 9, { sets: [digits], minDigits: 8 }, [
  {
    anchor: '+',
    // +CC then 7–14 more digits, each optionally preceded by one separator or wrapped in (): one way to read any input.
    re: /(?<![\w+])\+[1-9](?:[ .-]?\(?\d\)?){7,14}(?!\w)/g,
    check: (m) => {
      const n = digitCount(m);
      return n >= 8 && n <= 15 ? m.length : 0;
    },
  },
  {
    // North American shapes with separators: (415) 555-2671, 415-555-2671, 415.555.2671.
    starts: phoneStarts,
    re: /(?<![\w+\-.])(?:\(\d{3}\) ?|\d{3}[-. ])\d{3}[-. ]\d{4}(?![\w-])/g,
  },
]);

const oneRepeatedDigit = /^-?(\d)\1+$/;

/**
 * Between two groups of a card: a dash, a dot, up to 4 spaces and tabs, or a tab as JSON text
 * writes it, `\\t` (a TSV row carried in a JSON document as text).
 */
const cardSep = '(?:[ \\t]{1,4}|[.-]|\\\\t)';
/**
 * The card shapes: 13-19 digits; 4-4-4-(1-7) or 4-6-(4-5) groups with `cardSep` between them;
 * the same with underscores only (`4111_1111_1111_1111`), standing alone (no letter, digit or
 * `_` touching it: `IMG_2024_0101_1234_5678` is a file name); 4-4-4-4 with slashes only, standing
 * alone (no name character, `/`, `:`, `-` or `.` before it, no name character or `/` after it,
 * no `.` or `-` and a name character: paths like `a/4111/…`, `host:4111/…`, `…/1111.jpg`).
 */
const cardRegex = new RegExp(
  `\\d{4}(?<![\\d.]\\d{4})(?:\\d{9,15}` +
    `|${cardSep}\\d{4}${cardSep}\\d{4}${cardSep}\\d{1,7}|${cardSep}\\d{6}${cardSep}\\d{4,5}` +
    `|_(?<![A-Za-z0-9_]\\d{4}_)(?:\\d{4}_\\d{4}_\\d{1,7}|\\d{6}_\\d{4,5})(?![A-Za-z0-9_])` +
    `|\\/(?<![A-Za-z0-9_/:.-]\\d{4}\\/)\\d{4}\\/\\d{4}\\/\\d{4}(?![A-Za-z0-9_/]|[.-][A-Za-z0-9]))(?!\\.?\\d)`,
  'g',
);

// cardValid wants 13-19 digits.
const creditCard: Finder = {
  ...regexFinder('credit-card', 13, { sets: [digits], minDigits: 13 }, [
    {
      starts: cardStarts,
      // (?<![\d.]) written after the first four digits (it then only tests the character before them),
      // so V8 looks for a digit first instead of running the lookbehind at every position.
      // Groups may be separated by a dash, a dot or a run of up to 4 spaces and tabs, mixed
      // (`4111 1111-1111 1111`, as typed into forms; `4111\t1111…` in a TSV, aligned columns); a
      // dot then a digit after the last group is a longer dotted number, not a card.
      re: cardRegex,
      check: (m) => (cardValid(m) ? m.length : 0),
    },
  ]),
  // An integer's digits are a card when the regex's first form matches them all: 13-19 digits
  // (a `-` before them is no digit), then cardValid: issuer digit 2-6 (checked first: epoch
  // milliseconds start with 1), not one repeated digit, Luhn.
  findInDigits(s, owner, out) {
    const start = s.charCodeAt(0) === 45 ? 1 : 0;
    const len = s.length - start;
    const first = s.charCodeAt(start);
    if (len < 13 || len > 19 || first < 50 || first > 54) return;
    // cardValid's other checks, on digits alone: Luhn (which skips the `-`) first, as it allocates nothing.
    if (luhnValid(s) && !oneRepeatedDigit.test(s))
      out.push({ start, end: s.length, name: 'credit-card', owner });
  },
  // 13-19 digits, the first 2-6: [2, 7) × 10^12 ... 10^18 (powers of ten are exact doubles).
  numberMayHold(v) {
    const a = v < 0 ? -v : v;
    for (let p = 1e12; p <= 1e18; p *= 10) if (a < 10 * p) return a >= 2 * p && a < 7 * p;
    return false;
  },
};

// [A-Z]{2}\d{2} starts every match.
const iban = regexFinder('iban', 15, { sets: [upper], minDigits: 2 }, [
  {
    quick: hasDigit,
    re: /(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}(?![A-Za-z0-9])/g,
    check: ibanPrefixLength,
  },
]);

// Both forms have 3 + 2 + 4 digits.
const usSsn = regexFinder('us-ssn', 9, { sets: [digits], minDigits: 9 }, [
  {
    starts: ssnStarts,
    re: /(?<![\d-])(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![\d-])/g,
  },
  {
    // With spaces (`123 45 6789`): not inside a longer run of space-separated digit groups.
    // Timestamps and ids (the digit-rich short strings) have no space: one memchr skips them.
    quick: (s) => s.indexOf(' ') !== -1,
    starts: ssnSpacedStarts,
    // The lookbehind follows the first three digits (so V8 looks for a digit first) and also
    // rules out the 000, 666 and 9xx areas.
    re: /\d{3}(?<![\d-]\d{3}|\d \d{3}|000|666|9\d\d) (?!00)\d{2} (?!0000)\d{4}(?! ?\d|-)/g,
  },
  {
    quick: (s) =>
      (s.length > startsMinLength ? ssnKeywordNearDigits(s) : ssnKeywordProbe(s)) &&
      /SSN|[Ss]ocial [Ss]ecurity/.test(s),
    re: /(?:\bSSN|[Ss]ocial [Ss]ecurity(?: [Nn]umber| [Nn]o\.?)?)[ \t]*[:#]?[ \t]*(?<v>(?!000|666|9\d\d)\d{3} ?(?!00)\d{2} ?(?!0000)\d{4})(?!\d)/g,
  },
]);

// eyJ, then two dots (the pair holds the J: no set of its own, to save a condition bit).
const jwt = regexFinder('jwt', 17, { sets: ['.'], pairs: ['yJ'] }, [
  {
    anchor: 'eyJ',
    re: /(?<![A-Za-z0-9_-])eyJ[A-Za-z0-9_-]{6,}\.[A-Za-z0-9_-]{6,}\.[A-Za-z0-9_-]*/g,
    check: (m) => (jwtHeaderValid(m) ? m.length : 0),
  },
]);

/** PEM private-key blocks, found with indexOf so a thousand unterminated BEGIN lines stay linear. */
/** Every BEGIN and END line of a private key holds `PRIVATE KEY`: one search (from its `V`) gates both. */
const privateKeyProbe = literalProbe('VATE K');
const beginRe = /-----BEGIN (?:[A-Z0-9]+ ){0,3}PRIVATE KEY(?: BLOCK)?-----/g;
const endRe = /-----END (?:[A-Z0-9]+ ){0,3}PRIVATE KEY(?: BLOCK)?-----/g;
/** Base64 characters, as PEM bodies hold them. */
const b64Char = new Uint8Array(128);
for (const c of 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=')
  b64Char[c.charCodeAt(0)] = 1;

/**
 * Where a line break (`\n`, `\r\n`, or the same escaped in JSON text: `\\n`, `\\r\\n`) ends at
 * `p`: the position before it, or -1.
 */
function breakBefore(s: string, p: number, floor: number): number {
  if (p > floor && s.charCodeAt(p - 1) === 10) {
    p--;
    return p > floor && s.charCodeAt(p - 1) === 13 ? p - 1 : p;
  }
  if (p - 1 > floor && s.charCodeAt(p - 1) === 110 && s.charCodeAt(p - 2) === 92) {
    p -= 2;
    return p - 1 > floor && s.charCodeAt(p - 1) === 114 && s.charCodeAt(p - 2) === 92 ? p - 2 : p;
  }
  return -1;
}

const isBlank = (c: number): boolean => c === 32 || c === 9;

/**
 * The start of the tail of a key whose BEGIN line is elsewhere (a server that splits its output
 * over two content blocks: BEGIN in one, the body and END in the next), walking back from the
 * END line at `endAt`, no further than `floor`: the line before END (any length), and above it
 * whole lines of base64 of 40 characters or more (PEM writes 64), or a line cut anywhere at
 * `floor` (where the split fell). A line that starts mid-text (`the rest: MIIE…`) is masked from
 * its base64 run if that is 16 characters or more, and ends the walk. Headers (`DEK-Info: …`),
 * blank lines and prose stop it and stay visible.
 */
function orphanTailStart(s: string, endAt: number, floor: number): number {
  let start = endAt;
  let p = breakBefore(s, endAt, floor);
  if (p === -1) p = endAt;
  for (let nearest = true; ; nearest = false) {
    let e = p;
    while (e > floor && isBlank(s.charCodeAt(e - 1))) e--;
    let q = e;
    while (q > floor) {
      const c = s.charCodeAt(q - 1);
      if (c >= 128 || b64Char[c] === 0) break;
      // `\n` escaped in JSON text: its `n` is no body character.
      if ((c === 110 || c === 114) && q - 2 >= floor && s.charCodeAt(q - 2) === 92) break;
      q--;
    }
    const len = e - q;
    if (len === 0) return start;
    let k = q;
    while (k > floor && isBlank(s.charCodeAt(k - 1))) k--;
    if (k === floor) return q;
    const b = breakBefore(s, k, floor);
    if (b === -1) return len >= 16 ? q : start;
    if (!nearest && len < 40) return start;
    start = q;
    p = b;
  }
}

const privateKey: Finder = {
  name: 'private-key',
  minLength: 25,
  // Both `-----BEGIN … PRIVATE KEY-----` and `-----END … PRIVATE KEY-----` hold a V (rare in
  // JSON; one condition bit, see the masker's `charFilter`).
  needs: ['V'],
  find(s, owner, out) {
    if (!privateKeyProbe(s)) return;
    /** Where the last span ended: an END before the next BEGIN, after it, is an orphan tail. */
    let done = 0;
    const nextBegin = (from: number): RegExpExecArray | null => {
      beginRe.lastIndex = from;
      return beginRe.exec(s);
    };
    let m = nextBegin(0);
    // The next END line of a private key at or after `done` (each search starts past the last, so
    // the whole scan stays linear).
    endRe.lastIndex = 0;
    let e = endRe.exec(s);
    while (true) {
      const limit = m === null ? s.length : m.index;
      // END lines between the last span and the next BEGIN: tails of a key begun elsewhere.
      while (e !== null && e.index < limit) {
        let after = e.index + e[0].length;
        if (e.index >= done) {
          out.push({ start: orphanTailStart(s, e.index, done), end: after, name: 'private-key', owner });
          done = after;
        } else after = Math.max(after, done);
        endRe.lastIndex = after;
        e = endRe.exec(s);
      }
      if (m === null) return;
      const start = m.index;
      const endAt = s.indexOf('-----END ', start + m[0].length);
      if (endAt === -1) {
        // An unterminated key (cut off by the server): mask to the end rather than leak half a key.
        out.push({ start, end: s.length, name: 'private-key', owner });
        return;
      }
      const close = s.indexOf('-----', endAt + 9);
      const end = close === -1 ? s.length : close + 5;
      out.push({ start, end, name: 'private-key', owner });
      done = end;
      m = nextBegin(end);
    }
  },
};

/**
 * Whether `s` ends inside a private key: a `-----BEGIN … PRIVATE KEY-----` line with no END line
 * after it (what the finder masks to the end of the text). The masker then reads the blocks
 * after it (see `isKeyBody`).
 */
export function opensPrivateKey(s: string): boolean {
  if (!privateKeyProbe(s)) return false;
  let after = -1;
  beginRe.lastIndex = 0;
  for (let m = beginRe.exec(s); m !== null; m = beginRe.exec(s)) after = m.index + m[0].length;
  return after !== -1 && s.indexOf('-----END ', after) === -1;
}

/** Whether `s` holds the END line of a private key. */
export function closesPrivateKey(s: string): boolean {
  if (!privateKeyProbe(s)) return false;
  endRe.lastIndex = 0;
  return endRe.test(s);
}

/**
 * Whether `s` is nothing but base64 lines, with at least `min` base64 characters: blanks and
 * line breaks (real or JSON-escaped) around and between them, nothing else. The middle blocks
 * of a key split over three or more blocks look like this.
 */
export function isKeyBody(s: string, min: number): boolean {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 128 && b64Char[c] === 1) n++;
    else if (c === 92 && i + 1 < s.length && (s.charCodeAt(i + 1) === 110 || s.charCodeAt(i + 1) === 114))
      i++;
    else if (!(c === 10 || c === 13 || isBlank(c))) return false;
  }
  return n >= min;
}

// AKIA… starts with A; a secret access key assignment has `key` (any case) and its `:` or `=`.
// Pairs: the first two characters of each AKIA-like prefix; `ke` in any case.
const awsAccessKey = regexFinder(
  'aws-access-key',
  20,
  {
    sets: ['AkK', 'A:='],
    pairs: ['AK', 'AS', 'AB', 'AC', 'AG', 'AI', 'AN', 'AR', 'AP', 'A3', 'ke', 'kE', 'Ke', 'KE'],
  },
  [
    {
      anchor: 'A',
      re: /(?<![A-Za-z0-9])(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AIPA|ANPA|ANVA|AROA|APKA|ASCA|A3T[A-Z0-9])[A-Z0-9]{16}(?![A-Za-z0-9])/g,
    },
    {
      quick: (s) => foldedKey(s) && foldedSecret(s) && /secret_?access_?key/i.test(s),
      re: /(?:aws_?)?secret_?access_?key["']?[ \t]*[:=][ \t]*["']?(?<v>[A-Za-z0-9/+]{40})(?![A-Za-z0-9/+=])/gi,
    },
  ],
);

// (Account|SharedAccess)Key= or a bare key's ==.
const azureStorageKey = regexFinder('azure-storage-key', 31, { sets: ['='], pairs: ['y=', '=='] }, [
  {
    quick: anyLiteralProbe(['AccountKey=', 'SharedAccessKey=']),
    re: /(?:AccountKey|SharedAccessKey)=(?<v>[A-Za-z0-9+/]{20,}={0,2})/g,
  },
  {
    quick: (s) => s.length >= 88 && doubleEquals(s),
    // A bare 64-byte key: exactly 86 base64 characters and `==`, standing alone.
    re: /(?<![A-Za-z0-9+/=])[A-Za-z0-9+/]{86}==(?![A-Za-z0-9+/=])/g,
  },
]);

// sig=, in a string that has a [?&;]sv=-like parameter (the quick test requires one).
const azureSasToken = regexFinder('azure-sas-token', 14, { sets: ['=', 'g', '?&;'], pairs: ['g='] }, [
  {
    quick: (s) => sigProbe(s) && /[?&;](?:sv|se|sp|sr|spr|st|srt|ss)=/.test(s),
    anchor: 'sig=',
    re: /(?<=[?&;=])sig=(?<v>[A-Za-z0-9%+/=_-]{10,})/g,
  },
]);

// gh?_ or github_pat_.
// gh?_ holds gh, github_pat_ holds b_.
/** Whether `s` holds `ghp_`, `gho_`, `ghu_`, `ghs_`, `ghr_` or `github_pat_` (read at its underscores). */
function hasGithubPrefix(s: string): boolean {
  const us = underscores(s);
  for (let i = 0; i < us.length; i++) {
    const p = us[i]!;
    const c = s.charCodeAt(p - 1);
    if (
      (p >= 3 &&
        s.charCodeAt(p - 3) === 103 &&
        s.charCodeAt(p - 2) === 104 &&
        (c === 112 || c === 111 || c === 117 || c === 115 || c === 114)) ||
      (c === 98 && p >= 6 && s.startsWith('github_pat_', p - 6))
    )
      return true;
  }
  return false;
}

const githubToken = regexFinder('github-token', 33, { sets: ['_', 'g', 'h'], pairs: ['gh', 'b_'] }, [
  {
    quick: hasGithubPrefix,
    anchor: 'g',
    re: /(?<![A-Za-z0-9_])(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,})/g,
  },
]);

// xox?- has its x and dash; a webhook URL (hooks.slack.com/) its k and slash.
/**
 * The pairs `slack-token` and `api-key` are chosen by: one set for both, so the two take one
 * condition bit (each also needs its own sets). Slack: xo of xox?-, ho of hooks.slack.com. API
 * keys: a piece of each prefix: sk-, [sr]k_/gsk_, whsec_, AIza, gl…-, npm_, pypi-/xai-, hf_,
 * SG., Bearer.
 */
const slackAndKeyPairs = ['xo', 'ho', 'k-', 'k_', 'c_', 'Iz', 'gl', 'm_', 'i-', 'f_', 'SG', 'Be'];

const slackToken = regexFinder('slack-token', 15, { sets: ['-/', 'xk'], pairs: slackAndKeyPairs }, [
  {
    anchor: 'xox',
    re: /(?<![A-Za-z0-9-])xox[abposr]-[A-Za-z0-9-]{10,}/g,
  },
  {
    // Incoming-webhook URLs carry their secret in the path.
    anchor: 'hooks.slack.com/',
    re: /hooks\.slack\.com\/(?:services|workflows|triggers)\/(?<v>[A-Za-z0-9/_-]{10,})/g,
  },
]);

const passwordKeyword =
  '(?:[Pp]ass(?:word|wd|phrase)|PASS(?:WORD|WD|PHRASE)|[Pp]wd|PWD|[Ss]ecret|SECRET|[Aa]pi[_-]?[Kk]ey|API[_-]?(?:KEY|Key))';
/**
 * From the key's closing quote to the value: `: "…"`, `='…'`, `=…`. The key's closing quote may
 * be escaped (`\"password\": \"x\"`: JSON carried inside a JSON string, or deeper). Such a value
 * opens with a run of backslashes and a quote (`q`) and ends at the same run and quote not
 * preceded by another backslash: an inner quote is escaped once more (`\\\"`) and stays inside.
 * A value with no such end is masked to the end of its line (at most 512 characters): more
 * masked rather than a tail let through.
 */
const assignedValue =
  `(?:\\\\{0,16}["'])?[ \\t]*[:=][ \\t]*` +
  `(?:"(?<v>(?:[^"\\\\\\r\\n]|\\\\.){1,512})(?=")|'(?<v2>[^'\\r\\n]{1,512})(?=')` +
  `|(?<q>\\\\{1,16})"(?<v4>(?:(?!(?<!\\\\)\\k<q>")[^\\r\\n]){1,512})` +
  `|(?<v3>[^\\s"',;&<>{}\\[\\]]{1,512}))`;

/**
 * Words before `token` in a name that make it something else than a credential: pagination
 * (`nextPageToken`, `continuation_token`, AWS's `NextToken`), MCP's `progressToken`, counts
 * (`max_token`), a tokenizer's special tokens (`eos_token`, `pad_token`). Lowercase.
 */
export const nonSecretTokenWords: readonly string[] = [
  'page',
  'next',
  'prev',
  'previous',
  'continuation',
  'cursor',
  'progress',
  'resume',
  'sync',
  'skip',
  'delta',
  'sequence',
  'change',
  'cancellation',
  'pagination',
  'idempotency',
  'max',
  'min',
  'num',
  'total',
  'input',
  'output',
  'prompt',
  'completion',
  'reasoning',
  'cached',
  'count',
  'eos',
  'bos',
  'pad',
  'unk',
  'sep',
  'cls',
  'mask',
  'special',
  'stop',
  'first',
  'last',
];
/** `nonSecretTokenWords` as they are written before `Token`/`_token`/`_TOKEN`: page, Page, PAGE. */
const nonSecretTokenPrefix = `(?:${nonSecretTokenWords
  .map((w) => `[${w[0]}${w[0]!.toUpperCase()}]${w.slice(1)}|${w.toUpperCase()}`)
  .join('|')})[_-]?`;

/** A cookie's name and value, as a Cookie header lists them (`; ` between pairs). */
const cookieName = `[^\\s"'\\\\;=]{1,256}`;
const cookieValue = `[^\\s"'\\\\;]{0,4096}`;

// A keyword assignment has its `:` or `=` and a keyword: word/wd/WORD/WD/pwd/PWD hold w or W,
// phrase/PHRASE h or H, secret/SECRET c or C, key/Key/KEY/token/TOKEN/cookie k or K,
// authorization h or H. URL credentials: `:` and `/`.
// Pairs: wo/wd/ph, WO/WD/PH, cr/CR, ke/Ke/KE (also in token, Token, TOKEN) from the keywords; za
// from authorization, ki from cookie, in any case; :/ from ://.

const passwordAssignment = regexFinder(
  'password-assignment',
  5,
  {
    sets: [':=', 'wWhHcCkK/'],
    pairs: [
      ...['wo', 'wd', 'ph', 'WO', 'WD', 'PH', 'cr', 'CR', 'ke', 'Ke', 'KE'],
      ...['za', 'zA', 'Za', 'ZA', 'ki', 'kI', 'Ki', 'KI', ':/'],
    ],
  },
  [
    {
      quick: (s) =>
        s.length > shortAtLength
          ? passwordKeywordProbe(s)
          : passwordWordProbe(s) ||
            around(s, lowerKs(s), '', 'ey', 0).length > 0 ||
            around(s, upperKs(s), '', 'ey', 0).length > 0 ||
            around(s, upperKs(s), '', 'EY', 0).length > 0,
      re: new RegExp(
        `${passwordKeyword}(?:[_-][A-Za-z0-9_-]{0,30}|[A-Z][A-Za-z0-9_-]{0,30})?${assignedValue}`,
        'g',
      ),
    },
    // A name ending in `token` (`access_token=`, `refresh_token: `, `"idToken": "…"`,
    // `AWS_SESSION_TOKEN=`, `X-Auth-Token:`, `Access Token:`) or `token` alone (`token=…`,
    // `"token": "…"`, whatever the value: the object around a `"token"` in JSON text is not
    // read, so an LLM's logprobs carried as text lose their tokens), unless the word before it
    // says it is no credential (`nextPageToken`, `progressToken`). `tokens`, `token_count`,
    // `tokenizer` are other names. The match starts at `oken` (found by its `k`); the
    // lookbehinds read the `T` and the word. No value is refused: a scan goes on past the match.
    {
      anchor: 'oken',
      at: (s) => around(s, lowerKs(s), 'o', 'en', -1),
      re: new RegExp(`(?<=[Tt])(?<!${nonSecretTokenPrefix}[Tt])oken${assignedValue}`, 'g'),
    },
    {
      anchor: 'OKEN',
      at: (s) => around(s, upperKs(s), 'O', 'EN', -1),
      re: new RegExp(`(?<=T)(?<!${nonSecretTokenPrefix}T)OKEN${assignedValue}`, 'g'),
    },
    // An Authorization header in text (a log line, `curl -H "Authorization: Bearer …"`, a JSON
    // document carried as text): the credential after the scheme, which stays readable. A
    // bearer (or other scheme's) credential of 16 characters or more that is not a word, Basic
    // credentials that decode to `user:password`. Not `authorization_url` or prose. Header
    // names and schemes are case-insensitive (`AUTHORIZATION: BASIC …`, `proxy-Authorization`).
    {
      anchor: 'uthorization',
      anyCase: true,
      re: new RegExp(
        `(?<=(?<![A-Za-z0-9_])(?:proxy-)?a)uthorization(?:\\\\{0,16}["'])?[ \\t]*[:=][ \\t]*(?:\\\\{0,16}["'])?` +
          `(?:(?<s>[A-Za-z][A-Za-z0-9_-]{0,30}) +)?(?<v>[A-Za-z0-9._~+/-]{4,2048}=*)(?![A-Za-z0-9._~+/=-])`,
        'gi',
      ),
      accept: (v, g) =>
        g['s'] !== undefined && g['s'].toLowerCase() === 'basic' ? basicCredentials(v) : opaqueToken(v),
    },
    // A Cookie or Set-Cookie header in text: its `name=value` pairs (`; `-separated; a
    // Set-Cookie's attributes after a space, such as `Expires=Wed, 21 Oct…`, stay). Prose after
    // `Cookie:` holds no `=` and stays. The name in any case (`COOKIE:`, `set-cookie:`).
    {
      anchor: 'ookie',
      anyCase: true,
      at: (s) => aroundAnyCase(s, anyKs(s), 'oo', 'ie', -2),
      re: new RegExp(
        `(?<=(?<![A-Za-z0-9_-])(?:set-)?c)ookie(?:\\\\{0,16}["'])?[ \\t]*:[ \\t]*(?:\\\\{0,16}["'])?` +
          `(?<v>${cookieName}=${cookieValue}(?:; *${cookieName}(?:=${cookieValue})?){0,64})`,
        'gi',
      ),
    },
    {
      // Credentials in a URL: postgres://app:s3cret@db:5432 (the match starts at `://`, so it stays linear).
      anchor: '://',
      // [^/\s:@]{1,64} then ':': the first ':' after the '://' comes within 65 characters and
      // before any '/'. A URL's path ('https://host/...') fails this without running the regex.
      worth: (s, at) => {
        const colon = s.indexOf(':', at + 3);
        if (colon === -1 || colon > at + 67) return false;
        const slash = s.indexOf('/', at + 3);
        return slash === -1 || slash > colon;
      },
      re: /:\/\/[^/\s:@]{1,64}:(?<v>[^/\s@]{1,128})(?=@)/g,
    },
  ],
);

/**
 * Well-known API key formats, by their prefixes: what MCP servers' tools leak most (LLM keys above
 * all). Every key stands alone (no key character before or after it) and has the length its
 * issuer gives it; each form is a sticky regex tried only where its prefix is. The prefixes are
 * found without a search of their own where they can be: at the underscores and dashes after them
 * (the positions `github-token` lists too), or by a rare character (`za` of `AIza`, `G` of `SG.`,
 * `B` of `Bearer`). A search for a literal starting with a common letter (`npm_`, `glpat-`) would
 * cost 10-20 µs per 64 KiB of text.
 */
const guard = '(?<![A-Za-z0-9_-])';
const end = '(?![A-Za-z0-9_-])';
const sticky = (src: string): RegExp => new RegExp(`${guard}${src}${end}`, 'y');
/** Stripe secret and restricted keys (live and test); Groq. */
const stripeKeyRe = sticky('(?:[sr]k_(?:live|test)_[A-Za-z0-9]{16,}|gsk_[A-Za-z0-9]{40,})');
/** npm access tokens. */
const npmTokenRe = sticky('npm_[A-Za-z0-9]{36}');
/** Hugging Face user access tokens. */
const hfTokenRe = sticky('hf_[A-Za-z0-9]{34}');
/** Stripe webhook signing secrets. */
const webhookSecretRe = sticky('whsec_[A-Za-z0-9+/]{24,}={0,2}');
/** OpenAI project, service-account, admin and legacy keys; Anthropic API and admin keys. */
const skKeyRe = sticky(
  'sk-(?:(?:proj|svcacct|admin|None)-[A-Za-z0-9_-]{20,}|ant-[a-z]{2,10}\\d{2}-[A-Za-z0-9_-]{32,}|[A-Za-z0-9]{48})',
);
/** GitLab personal, deploy, runner, trigger, feed, CI/CD job and service-account tokens. */
const gitlabTokenRe = sticky('gl(?:pat|dt|rt|ptt|ft|cbt|soat)-[A-Za-z0-9_-]{20,}(?:\\.[A-Za-z0-9_-]+)*');
/** PyPI and TestPyPI upload tokens (macaroons: `pypi-AgEIcHlwaS5vcmc…`, `pypi-AgENdGVzdC5weXBp…`). */
const pypiTokenRe = sticky('pypi-AgE[A-Za-z0-9_-]{50,}');
/** xAI (Grok) API keys. */
const xaiKeyRe = sticky('xai-[A-Za-z0-9]{70,}');
/** Google API keys (Gemini, Maps…). */
const googleKeyRe = sticky('AIza[A-Za-z0-9_-]{35}');
/** SendGrid API keys. */
const sendgridKeyRe = sticky('SG\\.[A-Za-z0-9_-]{22}\\.[A-Za-z0-9_-]{43}');
/** `Bearer <credential>` anywhere (a header's value alone, as a HAR `{name, value}` pair holds it). */
const bearerRe = /(?<![A-Za-z0-9_-])Bearer +(?<v>[A-Za-z0-9._~+/-]{16,2048}=*)(?![A-Za-z0-9._~+/=-])/y;

/**
 * A key of form `re` starting at `start` (-1: none): pushed when it holds an uppercase letter.
 * Returns where the next search may go on: past the match, even one that is no finding (no key
 * starts inside a run of key characters).
 */
function keyAt(s: string, start: number, re: RegExp, owner: number, out: Span[]): number {
  if (start < 0) return start;
  re.lastIndex = start;
  const m = re.exec(s);
  if (m === null) return start;
  const end = start + m[0].length;
  if (hasUpper(m[0])) out.push({ start, end, name: 'api-key', owner });
  return end;
}

/** Where a GitLab prefix (`glpat`, `gldt`, `glsoat`…) ending at `p` (its dash) starts, or -1. */
function gitlabStart(s: string, p: number): number {
  for (let len = 4; len <= 6; len++) {
    const at = p - len;
    if (at >= 0 && s.charCodeAt(at) === 103 && s.charCodeAt(at + 1) === 108) return at;
  }
  return -1;
}

/**
 * OpenAI, Anthropic, Stripe, Groq, Google, GitLab, npm, PyPI, Hugging Face, SendGrid and xAI
 * keys, and an opaque `Bearer` credential. A finding must hold an uppercase letter (its `needs`,
 * shared with `iban`, so the finder costs no condition bit for it): random keys of 34 characters
 * or more always do in practice; GitLab's shortest (20 random characters) miss one in ~30 000.
 */
const apiKey: Finder = {
  name: 'api-key',
  minLength: 23,
  needs: [upper],
  needsPairs: slackAndKeyPairs,
  find(s, owner, out) {
    let from = 0;
    const us = underscores(s);
    for (let i = 0; i < us.length; i++) {
      const p = us[i]!;
      if (p < from || p < 2) continue;
      const c = s.charCodeAt(p - 1);
      let next = -1;
      if (c === 107) {
        // sk_, rk_, gsk_
        next = keyAt(s, p >= 3 && s.charCodeAt(p - 3) === 103 ? p - 3 : p - 2, stripeKeyRe, owner, out);
      } else if (c === 109) {
        if (p >= 3 && s.startsWith('np', p - 3)) next = keyAt(s, p - 3, npmTokenRe, owner, out);
      } else if (c === 102) {
        if (s.charCodeAt(p - 2) === 104) next = keyAt(s, p - 2, hfTokenRe, owner, out);
      } else if (c === 99) {
        if (p >= 5 && s.startsWith('whse', p - 5)) next = keyAt(s, p - 5, webhookSecretRe, owner, out);
      }
      if (next > from) from = next;
    }
    from = 0;
    const ds = dashes(s);
    for (let i = 0; i < ds.length; i++) {
      const p = ds[i]!;
      if (p < from || p < 2) continue;
      const c = s.charCodeAt(p - 1);
      let next = -1;
      if (c === 107) {
        if (s.charCodeAt(p - 2) === 115) next = keyAt(s, p - 2, skKeyRe, owner, out);
      } else if (c === 116) {
        next = keyAt(s, gitlabStart(s, p), gitlabTokenRe, owner, out);
      } else if (c === 105) {
        if (p >= 4 && s.startsWith('pyp', p - 4)) next = keyAt(s, p - 4, pypiTokenRe, owner, out);
        else if (p >= 3 && s.startsWith('xa', p - 3)) next = keyAt(s, p - 3, xaiKeyRe, owner, out);
      }
      if (next > from) from = next;
    }
    for (let at = s.indexOf('za', 2); at !== -1; ) {
      const next =
        s.charCodeAt(at - 2) === 65 && s.charCodeAt(at - 1) === 73
          ? keyAt(s, at - 2, googleKeyRe, owner, out)
          : -1;
      at = s.indexOf('za', Math.max(at + 1, next));
    }
    for (let at = s.indexOf('SG.'); at !== -1; ) {
      const next = keyAt(s, at, sendgridKeyRe, owner, out);
      at = s.indexOf('SG.', Math.max(at + 1, next));
    }
    for (let at = s.indexOf('Bearer '); at !== -1; ) {
      bearerRe.lastIndex = at;
      const m = bearerRe.exec(s);
      let next = at + 1;
      if (m !== null) {
        next = at + m[0].length;
        const v = m.groups!['v']!;
        if (opaqueToken(v)) out.push({ start: next - v.length, end: next, name: 'api-key', owner });
      }
      at = s.indexOf('Bearer ', next);
    }
  },
};

export const detectors: ReadonlyMap<string, Finder> = new Map(
  [
    email,
    phone,
    creditCard,
    iban,
    usSsn,
    jwt,
    privateKey,
    awsAccessKey,
    azureStorageKey,
    azureSasToken,
    githubToken,
    slackToken,
    apiKey,
    passwordAssignment,
  ].map((f) => [f.name, f]),
);

/** Built-in detector names, as policies spell them. */
export const detectorNames: readonly string[] = [...detectors.keys()];

/** Words naming a secret, singular and plural (`secrets`, `apiKeys`: a list of them is no less secret). */
const sensitiveWords = new Set([
  'password',
  'passwords',
  'passwd',
  'passwds',
  'passphrase',
  'passphrases',
  'pwd',
  'pwds',
  'secret',
  'secrets',
  'apikey',
  'apikeys',
]);
/** Header names whose value is a credential, as a header dump keys them (compared lowercased). */
const credentialHeaders = new Set(['authorization', 'proxy-authorization', 'cookie', 'set-cookie']);
/** Words before `tokens` that make it a list of credentials (`access_tokens`), not a count (`max_tokens`). */
const credentialTokenWords = new Set([
  'access',
  'refresh',
  'id',
  'auth',
  'bearer',
  'session',
  'api',
  'oauth',
  'bot',
  'app',
  'csrf',
  'xsrf',
  'client',
  'personal',
  'service',
  'deploy',
]);

/** Whether a name's part before `token` (`next_page`, `nextpage`) ends with a word that makes it no credential. */
function nonSecretBefore(prefix: string): boolean {
  for (const w of nonSecretTokenWords) if (prefix.endsWith(w)) return true;
  return false;
}

const keyCache = new Map<string, boolean>();

/**
 * Whether an object key names a secret: with `password-assignment` enabled, any value under such
 * a key (string, number, list, object) is masked whole. Such keys are those whose words include
 * password, passwd, passphrase, pwd, secret or api key (`db_password`, `clientSecret`,
 * `api-key`); those ending in `token` after another word (`access_token`, `sessionToken`,
 * `x-auth-token`, `_token`) unless that word is one of `nonSecretTokenWords` (`nextPageToken`,
 * `progressToken`, `eos_token`); `access_tokens` and the like (not `max_tokens`); and the header
 * names `authorization`, `proxy-authorization`, `cookie`, `set-cookie` (the whole key). `token`
 * alone is not one of them: see `isTokenKey`.
 */
export function isSensitiveKey(key: string): boolean {
  const cached = keyCache.get(key);
  if (cached !== undefined) return cached;
  let result = false;
  if (key.length <= 64 && !isTokenKey(key)) {
    const lower = key.toLowerCase();
    const words = key
      .replace(/([a-z0-9])([A-Z])/g, '$1 $2')
      .replace(/([A-Z])([A-Z][a-z])/g, '$1 $2')
      .toLowerCase()
      .split(/[^a-z0-9]+/)
      .filter((w) => w !== '');
    result = credentialHeaders.has(lower);
    for (let i = 0; i < words.length && !result; i++) {
      const w = words[i]!;
      if (sensitiveWords.has(w) || (w === 'api' && (words[i + 1] === 'key' || words[i + 1] === 'keys')))
        result = true;
    }
    const last = words[words.length - 1];
    if (!result && last !== undefined) {
      const before = words.length > 1 ? words[words.length - 2]! : '';
      if (last === 'token') result = !nonSecretBefore(before);
      // One word (`idtoken`, `nextpagetoken`): what comes before `token` is read the same way.
      else if (last.endsWith('token')) result = !nonSecretBefore(last.slice(0, -5));
      else if (last === 'tokens') result = credentialTokenWords.has(before);
    }
  }
  if (keyCache.size < 10_000) keyCache.set(key, result);
  return result;
}

/**
 * Whether an object key is `token` alone, in any case. A kubeconfig user, a Kubernetes token
 * Secret, Vault and many APIs' `{id, token}` hold a credential under it, an LLM's logprobs
 * (`{"token": " the", "logprob": -0.3}`) a sampled token: its value is masked whole unless its
 * object is a token record (see `isTokenRecord`).
 */
export function isTokenKey(key: string): boolean {
  return key.length === 5 && key.toLowerCase() === 'token';
}

/**
 * The members that make an object holding `token` an LLM's or a tokenizer's token record, each
 * with the JSON type it has there (a member of another type does not count: `{"token": …,
 * "bytes": 1024}` is an upload, not OpenAI's UTF-8 bytes). Exact names, as the APIs write them.
 * Not `id`, `token_id`, `tokenId` or `rank`: a credential API answers `{"id": 7, "token": "…"}`,
 * and every format that has these also has one of the members below (Vertex AI's
 * `{token, tokenId, logProbability}`, vLLM's `rank` beside `logprob`).
 */
export const tokenRecordMembers: ReadonlyMap<string, 'number' | 'array' | 'boolean'> = new Map([
  // OpenAI chat and completions logprobs, Ollama, llama.cpp, vLLM, TGI.
  ['logprob', 'number'],
  ['top_logprobs', 'array'],
  // OpenAI: the token's UTF-8 bytes.
  ['bytes', 'array'],
  // llama.cpp's `n_probs` with post-sampling probabilities.
  ['prob', 'number'],
  ['top_probs', 'array'],
  ['probability', 'number'],
  // Google Vertex AI / Gemini `logprobsResult`.
  ['logProbability', 'number'],
  // Cohere's `token_likelihoods`.
  ['likelihood', 'number'],
  // Text Generation Inference, Hugging Face tokenizers: a special token or not.
  ['special', 'boolean'],
] as const);

/**
 * Whether an object holding a `token` member is an LLM's or a tokenizer's token record: it has
 * one of `tokenRecordMembers`, of its type (a number may be one kept as its text, pkg/json.ts).
 *
 * @example
 * isTokenRecord({ token: ' the', logprob: -0.12 }); // true
 * isTokenRecord({ id: 7, token: 'hunter2' }); // false
 */
export function isTokenRecord(obj: Readonly<Record<string, unknown>>): boolean {
  for (const [name, type] of tokenRecordMembers) {
    if (!Object.hasOwn(obj, name)) continue;
    const v = obj[name];
    if (
      type === 'number'
        ? typeof v === 'number' || isRawNumber(v)
        : type === 'array'
          ? Array.isArray(v)
          : typeof v === 'boolean'
    )
      return true;
  }
  return false;
}
