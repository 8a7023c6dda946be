/**
 * Lossless JSON parsing for the data path. `JSON.parse` turns every number into a double, so
 * `12345678901234567890` would be re-serialized as `12345678901234567000` and
 * `0.1234567890123456789` as `0.12345678901234568`. The proxy re-serializes every message it
 * relays, so it parses with {@link parseJson}: a number whose double does not serialize back to
 * the same value is kept as its source text, a raw-JSON object (`JSON.rawJSON`) that
 * `JSON.stringify` writes back byte for byte. Every other number is a plain JavaScript number, as
 * before.
 *
 * Only a text that may hold such a number takes the slower path (a reviver with the source of
 * every value): one with a number token of 16 or more digits (see {@link mayHoldInexactNumber}).
 * A decimal of at most 15 significant digits within the double's range always round-trips. Out
 * of that range (`1e400`, `1e-400`, written with fewer digits) a number is read as a double
 * (Infinity, 0), as every MCP SDK reads it: finding those would cost a scan of every character.
 *
 * Whatever reads parsed values must expect a {@link RawNumber} where a number can be: it is an
 * object to `typeof`. Use {@link isRawNumber}, {@link isJsonObject} and {@link numberText}.
 *
 * @example
 * const v = parseJson('{"id":12345678901234567890,"n":1}') as { id: unknown; n: number };
 * isRawNumber(v.id); // true
 * JSON.stringify(v); // '{"id":12345678901234567890,"n":1}'
 */

/** A JSON number kept as its source text (a `JSON.rawJSON` object): serialized byte for byte. */
export interface RawNumber {
  readonly rawJSON: string;
}

interface ReviverContext {
  source?: string;
}

/** Node 24's JSON additions, not yet in TypeScript's ES2024 lib. */
interface JsonSourceText {
  rawJSON(text: string): RawNumber;
  isRawJSON(value: unknown): boolean;
  parse(text: string, reviver: (key: string, value: unknown, context?: ReviverContext) => unknown): unknown;
}

const json = JSON as unknown as JsonSourceText;
const isRawJSON = json.isRawJSON;
const rawJSON = json.rawJSON;

/** UTF-16 code unit → 1 for a digit or '.', else 0 (every unit has an entry: no bounds check). */
const numberChar = new Uint8Array(65536);
for (let c = 48; c <= 57; c++) numberChar[c] = 1;
numberChar[46] = 1;

/** What a JSON value (a number token) can follow: `:` `,` `[` and JSON whitespace. */
const valueStart = [58, 44, 91, 32, 10, 13, 9];

/**
 * Whether `text` may hold a number that a double does not carry exactly: a run of 16 or more
 * digits (counted on both sides of a decimal point; leading zeros count) where a JSON value
 * starts: at the start, or after `:`, `,`, `[` or whitespace, and an optional `-`. Digits inside
 * strings (ids as strings, hashes, tokens) follow a letter or a quote and do not count, unless
 * they follow one of those characters; a false positive only costs the slower parse.
 *
 * Every run of 16 or more such characters holds a position that is 15 modulo 16, so only those
 * are read: a sixteenth of the text, each looked up in a table (comparisons there cost 2-3 times
 * as much, mispredicted; a regexp over every character ~60 % of JSON.parse). A run is looked at
 * once, from the first of its positions read.
 */
export function mayHoldInexactNumber(text: string): boolean {
  const n = text.length;
  for (let i = 15; i < n; i += 16) {
    if (numberChar[text.charCodeAt(i)] === 0) continue;
    const end = longNumberAt(text, i);
    if (end < 0) return true;
    // Go on with the first position read past this run.
    i = end - 1 - ((end - 16) & 15);
  }
  return false;
}

/**
 * At `i`, inside a run of digits and points: -1 when the run is a number token of 16 or more
 * digits where a JSON value starts, else the run's end.
 */
function longNumberAt(text: string, i: number): number {
  let end = i + 1;
  while (end < text.length && numberChar[text.charCodeAt(end)] === 1) end++;
  // Leftwards only as far as a run of 16 needs, unless it is one (most runs are dates, short ids).
  let start = i;
  const enough = end - 16;
  while (start > enough && start > 0 && numberChar[text.charCodeAt(start - 1)] === 1) start--;
  if (start > enough) return end;
  while (start > 0 && numberChar[text.charCodeAt(start - 1)] === 1) start--;
  let digits = 0;
  for (let k = start; k < end; k++) if (text.charCodeAt(k) !== 46) digits++;
  if (digits < 16) return end;
  if (start > 0 && text.charCodeAt(start - 1) === 45) start--;
  return start === 0 || valueStart.includes(text.charCodeAt(start - 1)) ? -1 : end;
}

/**
 * `JSON.parse`, except that a number whose double would serialize to another value is kept as a
 * {@link RawNumber}. Throws what `JSON.parse` throws (a SyntaxError; a RangeError when nested too
 * deeply for the reviver).
 */
export function parseJson(text: string): unknown {
  if (!mayHoldInexactNumber(text)) return JSON.parse(text);
  return json.parse(text, revive);
}

function revive(_key: string, value: unknown, context?: ReviverContext): unknown {
  if (typeof value !== 'number') return value;
  const source = context?.source;
  if (source === undefined || exactDouble(value, source)) return value;
  return rawJSON(source);
}

/**
 * Whether the double parsed from `source` serializes to the same value (`1.0` → `1` is the same
 * value; `-0` is written `0`, the same value too).
 */
function exactDouble(value: number, source: string): boolean {
  const text = String(value);
  if (text === source) return true;
  if (!Number.isFinite(value)) return false;
  const a = decimal(source);
  const b = decimal(text);
  return a !== undefined && b !== undefined && a.neg === b.neg && a.digits === b.digits && a.exp === b.exp;
}

/** A decimal value: (-1)^neg × digits × 10^exp, `digits` without leading or trailing zeros ('' for 0). */
export interface Decimal {
  neg: boolean;
  digits: string;
  exp: number;
}

const numberSyntax = /^(-?)(\d+)(?:\.(\d+))?(?:[eE]([+-]?\d+))?$/;

/** The exact decimal value of a JSON number's text (or of `String(number)`), or undefined. */
export function decimal(text: string): Decimal | undefined {
  const m = numberSyntax.exec(text);
  if (m === null) return undefined;
  const frac = m[3] ?? '';
  const all = m[2]! + frac;
  let start = 0;
  while (start < all.length && all.charCodeAt(start) === 48) start++;
  if (start === all.length) return { neg: false, digits: '', exp: 0 };
  let end = all.length;
  while (all.charCodeAt(end - 1) === 48) end--;
  const exponent = m[4] === undefined ? 0 : Number(m[4]);
  return {
    neg: m[1] === '-',
    digits: all.slice(start, end),
    exp: exponent - frac.length + (all.length - end),
  };
}

/** Whether `v` is a {@link RawNumber} (a number kept as its source text). */
export function isRawNumber(v: unknown): v is RawNumber {
  return typeof v === 'object' && v !== null && isRawJSON(v);
}

/** A JSON object as parsed: not null, not an array, not a {@link RawNumber}. */
export function isJsonObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !isRawJSON(v);
}

/** A JSON number as parsed: a finite number or a {@link RawNumber}. */
export function isJsonNumber(v: unknown): v is number | RawNumber {
  return typeof v === 'number' ? Number.isFinite(v) : isRawNumber(v);
}

/**
 * The text of a number's exact value, written as ECMAScript writes numbers (`String(n)` for a
 * plain number; `12345678901234567890`, `1.2345678901234567891e+25`, `0.1234567890123456789` for
 * raw ones). Equal values give equal texts whatever their spelling (`1E3`, `1000.0`), and a raw
 * number never gets the text of another value: usable as a key or in a digest.
 */
export function numberText(v: number | RawNumber): string {
  if (typeof v === 'number') return String(v);
  const d = decimal(v.rawJSON);
  return d === undefined ? v.rawJSON : formatDecimal(d);
}

/** Number::toString's layout (ECMA-262 §6.1.6.1.20) for an exact decimal. */
function formatDecimal(d: Decimal): string {
  const { digits } = d;
  if (digits === '') return '0';
  const k = digits.length;
  // value = 0.digits × 10^n
  const n = d.exp + k;
  let body: string;
  if (k <= n && n <= 21) body = digits + '0'.repeat(n - k);
  else if (0 < n && n <= 21) body = `${digits.slice(0, n)}.${digits.slice(n)}`;
  else if (-6 < n && n <= 0) body = `0.${'0'.repeat(-n)}${digits}`;
  else {
    const e = n - 1;
    const mantissa = k === 1 ? digits : `${digits[0]}.${digits.slice(1)}`;
    body = `${mantissa}e${e < 0 ? '-' : '+'}${Math.abs(e)}`;
  }
  return d.neg ? `-${body}` : body;
}

/**
 * The exact integer a number is, when it is an integer of at most `maxDigits` digits; else
 * undefined (a fraction, or larger). For a plain number the integer is the value its text says
 * (what the upstream receives), not the double's binary value: `4611686018427388000` is not 2^62.
 */
export function integerValue(v: number | RawNumber, maxDigits = 20): bigint | undefined {
  if (typeof v === 'number') {
    if (!Number.isInteger(v)) return undefined;
    if (Number.isSafeInteger(v))
      return String(v).length - (v < 0 ? 1 : 0) <= maxDigits ? BigInt(v) : undefined;
  }
  const d = decimal(typeof v === 'number' ? String(v) : v.rawJSON);
  if (d === undefined || d.exp < 0) return undefined;
  if (d.digits === '') return 0n;
  if (d.digits.length + d.exp > maxDigits) return undefined;
  const n = BigInt(d.digits + '0'.repeat(d.exp));
  return d.neg ? -n : n;
}
