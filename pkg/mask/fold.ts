/**
 * Look-alike characters read as ASCII for detection: a reader takes `４１１１ １１１１ …`
 * (fullwidth digits), `٤١١١…` (Arabic-Indic), `𝟒𝟏𝟏𝟏…` (mathematical digits) for a card number,
 * `bob@example．com` for an address, and does not see a zero-width space or a soft hyphen inside
 * a token at all. The masker scans a folded copy of a string that holds such characters and masks
 * the findings' spans in the original (see `foldText`).
 */

/** First code point of every run of ten Unicode decimal digits (`\p{Nd}`) beyond ASCII. */
export const digitZeros: readonly number[] = [
  0x660, 0x6f0, 0x7c0, 0x966, 0x9e6, 0xa66, 0xae6, 0xb66, 0xbe6, 0xc66, 0xce6, 0xd66, 0xde6, 0xe50, 0xed0,
  0xf20, 0x1040, 0x1090, 0x17e0, 0x1810, 0x1946, 0x19d0, 0x1a80, 0x1a90, 0x1b50, 0x1bb0, 0x1c40, 0x1c50,
  0xa620, 0xa8d0, 0xa900, 0xa9d0, 0xa9f0, 0xaa50, 0xabf0, 0xff10, 0x104a0, 0x10d30, 0x10d40, 0x11066, 0x110f0,
  0x11136, 0x111d0, 0x112f0, 0x11450, 0x114d0, 0x11650, 0x116c0, 0x116d0, 0x116da, 0x11730, 0x118e0, 0x11950,
  0x11bf0, 0x11c50, 0x11d50, 0x11da0, 0x11de0, 0x11f50, 0x16130, 0x16a60, 0x16ac0, 0x16b50, 0x16d70, 0x1ccf0,
  0x1d7ce, 0x1d7d8, 0x1d7e2, 0x1d7ec, 0x1d7f6, 0x1e140, 0x1e2f0, 0x1e4f0, 0x1e5f1, 0x1e950, 0x1fbf0,
];

/** Characters read as a dot, a hyphen, a plus, a space or an at sign (besides the fullwidth block). */
const lookAlikes: ReadonlyArray<readonly [number, string]> = [
  // Dots: ideographic full stop, halfwidth ideographic full stop, one-dot leader, small full stop.
  [0x3002, '.'],
  [0xff61, '.'],
  [0x2024, '.'],
  [0xfe52, '.'],
  // Hyphens and dashes typed between digit groups: hyphen, non-breaking hyphen, figure dash,
  // en dash, minus sign, small hyphen-minus. (The em dash is prose punctuation: left alone.)
  [0x2010, '-'],
  [0x2011, '-'],
  [0x2012, '-'],
  [0x2013, '-'],
  [0x2212, '-'],
  [0xfe63, '-'],
  [0xfe62, '+'],
  [0xfe6b, '@'],
  // Spaces: no-break, the typographic spaces U+2000-200A, narrow no-break, ideographic.
  [0x00a0, ' '],
  ...Array.from({ length: 11 }, (_, i) => [0x2000 + i, ' '] as const),
  [0x202f, ' '],
  [0x3000, ' '],
];

/** Invisible characters, dropped: soft hyphen, zero-width space / joiners, word joiner, BOM, Mongolian vowel separator. */
const invisible: readonly number[] = [0x00ad, 0x200b, 0x200c, 0x200d, 0x2060, 0xfeff, 0x180e];

/** `foldTo` value of a unit that is dropped. */
const drop = -1;

/**
 * BMP code unit → the ASCII code it reads as, `drop`, or 0 (kept as it is). High surrogates that
 * begin a folded astral digit map to 0 here and are listed in `foldLeads`.
 */
const foldTo = new Int8Array(65536);
/** Astral code point → ASCII digit code. */
const astralDigits = new Map<number, number>();
for (let c = 0xff01; c <= 0xff5e; c++) foldTo[c] = c - 0xfee0;
for (const [c, to] of lookAlikes) foldTo[c] = to.charCodeAt(0);
for (const c of invisible) foldTo[c] = drop;
for (const zero of digitZeros) {
  for (let d = 0; d < 10; d++) {
    if (zero + d > 0xffff) astralDigits.set(zero + d, 48 + d);
    else foldTo[zero + d] = 48 + d;
  }
}
/** High surrogates that begin a folded astral digit. */
export const foldLeads: readonly number[] = [...new Set([...astralDigits.keys()].map(leadOf))];

function leadOf(cp: number): number {
  return 0xd800 + ((cp - 0x10000) >> 10);
}

/**
 * A strong look-alike reads as a letter, a digit, `@`, `=` or `:`, or is invisible: folding it
 * can make a finding of text that holds no other character a finder needs. A weak one (a dot, a
 * hyphen, a space, other punctuation; `。` and `！` in CJK prose) can only complete a finding
 * around characters a finder needs: strings without them are not folded for it.
 */
function strong(c: number): boolean {
  const to = foldTo[c]!;
  return (
    to === drop || (to >= 48 && to <= 58) || to === 61 || (to >= 64 && to <= 90) || (to >= 97 && to <= 122)
  );
}
const triggers: { strong: number[]; weak: number[] } = (() => {
  const out = { strong: [...foldLeads], weak: [] as number[] };
  for (let c = 0x80; c < 65536; c++) if (foldTo[c] !== 0) (strong(c) ? out.strong : out.weak).push(c);
  return out;
})();

/** The code units the masker's per-character pass marks as strong and weak look-alikes. */
export function foldTriggers(): { readonly strong: readonly number[]; readonly weak: readonly number[] } {
  return triggers;
}

/** A character class of code units beyond Latin-1 (V8 fails it at once on a one-byte string). */
function wideClass(units: readonly number[]): RegExp {
  const wide = units.filter((c) => c > 0xff).map((c) => `\\u${c.toString(16).padStart(4, '0')}`);
  return new RegExp(`[${wide.join('')}]`);
}
const wideStrong = wideClass(triggers.strong);
const wideWeak = wideClass(triggers.weak);

/**
 * Whether a long string may hold a character to fold (weak ones too when `weak`): a memchr for
 * each Latin-1 one (soft hyphen; no-break space) and one regex test per class that V8 ends at
 * once on a one-byte string (no character there can be beyond Latin-1); a two-byte string pays
 * one scan (~1.5 ns a character) per class.
 */
export function mayFold(s: string, weak: boolean): boolean {
  if (s.indexOf('\u00ad') !== -1 || wideStrong.test(s)) return true;
  return weak && (s.indexOf('\u00a0') !== -1 || wideWeak.test(s));
}

/**
 * `s` with every look-alike character read as its ASCII character (fullwidth forms U+FF01-FF5E,
 * Unicode decimal digits, look-alike dots, hyphens, spaces and at signs) and invisible ones
 * dropped, and `from`: where each unit of the folded text starts in `s` (`s.length` at the end),
 * so that a finding in the folded text masks its span in `s`. Undefined when nothing folds.
 *
 * @example
 * foldText('４１１１')!.text; // '4111'
 */
export function foldText(s: string): { text: string; from: Int32Array } | undefined {
  let k = 0;
  const len = s.length;
  for (; k < len; k++) {
    const c = s.charCodeAt(k);
    if (c >= 0x80 && (foldTo[c] !== 0 || astralAt(s, k, c) !== 0)) break;
  }
  if (k === len) return undefined;
  const from = new Int32Array(len + 1);
  for (let i = 0; i < k; i++) from[i] = i;
  let text = s.slice(0, k);
  let n = k;
  while (k < len) {
    const c = s.charCodeAt(k);
    const to = c < 0x80 ? 0 : foldTo[c]!;
    if (to > 0) {
      from[n++] = k;
      text += String.fromCharCode(to);
      k++;
      continue;
    }
    if (to === drop) {
      k++;
      continue;
    }
    const digit = c >= 0xd800 && c < 0xdc00 ? astralAt(s, k, c) : 0;
    if (digit !== 0) {
      from[n++] = k;
      text += String.fromCharCode(digit);
      k += 2;
      continue;
    }
    // Copy the run of units that stay as they are at once.
    let end = k + 1;
    while (end < len) {
      const e = s.charCodeAt(end);
      if (e >= 0x80 && (foldTo[e] !== 0 || (e >= 0xd800 && e < 0xdc00 && astralAt(s, end, e) !== 0))) break;
      end++;
    }
    text += s.slice(k, end);
    for (; k < end; k++) from[n++] = k;
  }
  from[n] = len;
  return { text, from: from.subarray(0, n + 1) };
}

/** The ASCII digit code of an astral digit starting at `k` (lead `c`), or 0. */
function astralAt(s: string, k: number, c: number): number {
  if (c < 0xd800 || c >= 0xdc00 || k + 1 >= s.length) return 0;
  const t = s.charCodeAt(k + 1);
  if (t < 0xdc00 || t >= 0xe000) return 0;
  return astralDigits.get(((c - 0xd800) << 10) + (t - 0xdc00) + 0x10000) ?? 0;
}
