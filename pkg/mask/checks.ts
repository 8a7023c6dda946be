/**
 * Checksums and shape checks that turn a regex candidate into a real finding. A candidate that
 * fails its check is not masked: a 16-digit order number that fails Luhn stays as it is.
 */

/** Luhn (mod 10) over the digits of `s` (other characters ignored). */
export function luhnValid(digits: string): boolean {
  let sum = 0;
  let double = false;
  for (let i = digits.length - 1; i >= 0; i--) {
    const c = digits.charCodeAt(i) - 48;
    if (c < 0 || c > 9) continue;
    let d = c;
    if (double) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
    double = !double;
  }
  return sum % 10 === 0;
}

/** Card-shaped: 13–19 digits, a known issuer range (2–6), Luhn-valid, not one repeated digit. */
export function cardValid(candidate: string): boolean {
  let digits = '';
  for (let i = 0; i < candidate.length; i++) {
    const c = candidate.charCodeAt(i);
    if (c >= 48 && c <= 57) digits += candidate[i];
  }
  if (digits.length < 13 || digits.length > 19) return false;
  const first = digits.charCodeAt(0) - 48;
  if (first < 2 || first > 6) return false;
  if (/^(\d)\1+$/.test(digits)) return false;
  return luhnValid(digits);
}

/** IBAN lengths per country (ISO 13616 registry). Unknown countries accept 15–34. */
const ibanLengths: Record<string, number> = {
  AD: 24,
  AE: 23,
  AL: 28,
  AT: 20,
  AZ: 28,
  BA: 20,
  BE: 16,
  BG: 22,
  BH: 22,
  BR: 29,
  BY: 28,
  CH: 21,
  CR: 22,
  CY: 28,
  CZ: 24,
  DE: 22,
  DK: 18,
  DO: 28,
  EE: 20,
  EG: 29,
  ES: 24,
  FI: 18,
  FO: 18,
  FR: 27,
  GB: 22,
  GE: 22,
  GI: 23,
  GL: 18,
  GR: 27,
  GT: 28,
  HR: 21,
  HU: 28,
  IE: 22,
  IL: 23,
  IQ: 23,
  IS: 26,
  IT: 27,
  JO: 30,
  KW: 30,
  KZ: 20,
  LB: 28,
  LC: 32,
  LI: 21,
  LT: 20,
  LU: 20,
  LV: 21,
  MC: 27,
  MD: 24,
  ME: 22,
  MK: 19,
  MR: 27,
  MT: 31,
  MU: 30,
  NL: 18,
  NO: 15,
  PK: 24,
  PL: 28,
  PS: 29,
  PT: 25,
  QA: 29,
  RO: 24,
  RS: 22,
  SA: 24,
  SC: 31,
  SE: 24,
  SI: 19,
  SK: 24,
  SM: 27,
  ST: 25,
  SV: 28,
  TL: 23,
  TN: 24,
  TR: 26,
  UA: 29,
  VA: 22,
  VG: 24,
  XK: 20,
};

/** ISO 7064 mod 97-10 over an IBAN without spaces. */
export function ibanChecksumValid(compact: string): boolean {
  if (compact.length < 15 || compact.length > 34) return false;
  const rearranged = compact.slice(4) + compact.slice(0, 4);
  let rem = 0;
  for (let i = 0; i < rearranged.length; i++) {
    const c = rearranged.charCodeAt(i);
    if (c >= 48 && c <= 57) rem = (rem * 10 + (c - 48)) % 97;
    else if (c >= 65 && c <= 90) rem = (rem * 100 + (c - 55)) % 97;
    else return false;
  }
  return rem === 1;
}

/**
 * Given an IBAN-shaped candidate (letters, digits and single spaces), return how many characters
 * of it form a valid IBAN (the country's registered length), or 0. Lets `DE89 3704 0044 0532 0130
 * 00 AND` mask the IBAN and leave the word after it.
 */
export function ibanPrefixLength(candidate: string): number {
  const country = candidate.slice(0, 2);
  const want = ibanLengths[country];
  let compact = '';
  let end = 0;
  for (let i = 0; i < candidate.length; i++) {
    const ch = candidate[i]!;
    if (ch === ' ') continue;
    compact += ch;
    end = i + 1;
    if (want !== undefined && compact.length === want) break;
  }
  if (want !== undefined && compact.length !== want) return 0;
  return ibanChecksumValid(compact) ? end : 0;
}

/** A JWT's first segment decodes to a JSON object naming `alg` or `typ`. */
export function jwtHeaderValid(token: string): boolean {
  const dot = token.indexOf('.');
  if (dot <= 0) return false;
  try {
    const header: unknown = JSON.parse(Buffer.from(token.slice(0, dot), 'base64url').toString('utf8'));
    return typeof header === 'object' && header !== null && ('alg' in header || 'typ' in header);
  } catch {
    return false;
  }
}

/** Count ASCII digits. */
export function digitCount(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 48 && c <= 57) n++;
  }
  return n;
}

/** A word of prose, capitalised or not, maybe hyphenated (`tokens`, `Authentication-Required`). */
const proseWord = /^[A-Za-z][a-z]*(?:-[A-Za-z][a-z]*)*$/;

/**
 * An opaque credential after `Bearer` (or another scheme, or none) in an Authorization header:
 * 16 characters or more and not a word, so `Bearer tokens are…` or `Bearer authentication` stay.
 */
export function opaqueToken(v: string): boolean {
  return v.length >= 16 && !proseWord.test(v);
}

/** `Basic` credentials: base64 of `user:password` (the decoded text holds a colon). */
export function basicCredentials(v: string): boolean {
  if (v.length < 4 || !/^[A-Za-z0-9+/]+={0,2}$/.test(v)) return false;
  return Buffer.from(v, 'base64').toString('latin1').includes(':');
}

/** Holds an ASCII uppercase letter (every `api-key` finding does: its `needs` say so). */
export function hasUpper(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 65 && c <= 90) return true;
  }
  return false;
}

/** `credentialToken`'s alphabet: letters, digits and what base64, base64url, token68, hex and dotted tokens hold. */
const tokenChar = new Uint8Array(128);
for (const c of 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=._~-%')
  tokenChar[c.charCodeAt(0)] = 1;
/** An auth scheme before the credential (`Bearer eyJ…`, `Basic dXNlcjpwdw==`, `token ghp_…`), any case. */
const schemePrefix = /^(bearer|basic|token) +/i;

/**
 * Whether the value of a bare `token` member in a token record (an object with `logprob`,
 * `top_logprobs`…: see `isTokenRecord`; elsewhere the value is masked whatever it is) reads as a
 * credential rather than an LLM's sampled token (`" the"`, `"ing"`, `"<|endoftext|>"`): one of
 * - a one-time code: 6 ASCII digits or more and nothing else (`"482913"`);
 * - 16 characters or more of letters, digits and `+/=._~-%` (no space, no other character)
 *   holding a letter and a digit (`a1B2c3D4e5F6g7H8i9J0`, hex, base64, a JWT, `ghp_…`);
 * - the same without a digit, when upper and lower case letters alternate like random text
 *   (a case change at least every third letter), not like an identifier
 *   (`translatesAutoresizingMaskIntoConstraints` is one GPT token);
 * - a scheme (`Bearer`, `Basic`, `token`, any case) and then a credential as an Authorization
 *   header holds one (`opaqueToken`, `basicCredentials`).
 * Known formats (`ghp_`, `sk-`, JWTs…) are also found by their detectors, whatever this says.
 *
 * @example
 * credentialToken('a1B2c3D4e5F6g7H8i9J0'); // true
 * credentialToken(' the'); // false
 */
export function credentialToken(v: string): boolean {
  const scheme = schemePrefix.exec(v);
  if (scheme !== null) {
    const rest = v.slice(scheme[0].length);
    return scheme[1]!.toLowerCase() === 'basic' ? basicCredentials(rest) : opaqueToken(rest);
  }
  const n = v.length;
  if (n < 6) return false;
  let digits = 0;
  let letters = 0;
  let changes = 0;
  /** Case of the last letter: 1 upper, 2 lower, 0 none yet. */
  let last = 0;
  for (let i = 0; i < n; i++) {
    const c = v.charCodeAt(i);
    if (c >= 128 || tokenChar[c] === 0) return false;
    if (c >= 48 && c <= 57) digits++;
    else if ((c >= 65 && c <= 90) || (c >= 97 && c <= 122)) {
      const kase = c <= 90 ? 1 : 2;
      if (last !== 0 && kase !== last) changes++;
      last = kase;
      letters++;
    }
  }
  if (digits === n) return true;
  if (n < 16 || letters === 0) return false;
  return digits > 0 || changes * 3 >= letters;
}
