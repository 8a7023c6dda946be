/**
 * The masker's fast paths (keyword and literal probes, anchored sticky regexes, the reordered
 * credit-card lookbehind, the per-plan "needs" character class that lets plain strings through
 * unscanned, per-plan key facts) must find exactly what the plain regexes find. Each test here
 * compares a fast path with the straightforward version on many generated strings.
 */
import type { MaskingRule } from '../policy/schema.js';
import {
  basicCredentials,
  cardValid,
  digitCount,
  hasUpper,
  ibanPrefixLength,
  jwtHeaderValid,
  opaqueToken,
} from './checks.js';
import { cpuMs, cpuStart, LINEAR_BUDGET_MS } from './cpu-time.js';
import { detectorNames, detectors, nonSecretTokenWords, type Span } from './detectors.js';
import { createMasker, needsClass } from './masker.js';
import { compilePattern } from './patterns.js';
import {
  anyLiteralProbe,
  foldedLiteralFinder,
  foldedLiteralProbe,
  literalFinder,
  literalProbe,
  rarestChars,
  rarestPair,
} from './probe.js';
import { positives, secretOf } from './samples.js';

/** mulberry32: the same strings on every run. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface Part {
  re: RegExp;
  check?: (m: string) => number;
  /** A precondition that is part of the detector's meaning, not only a shortcut. */
  when?: (s: string) => boolean;
  /** Whether a `v` value is a finding. */
  accept?: (v: string, groups: Record<string, string | undefined>) => boolean;
}

/**
 * The built-in regex detectors as they were before the fast paths (commit 2724f25): every regex
 * run globally over the whole string, no prefilter, no anchor, the credit-card lookbehind first.
 */
const passwordKeyword =
  '(?:[Pp]ass(?:word|wd|phrase)|PASS(?:WORD|WD|PHRASE)|[Pp]wd|PWD|[Ss]ecret|SECRET|[Aa]pi[_-]?[Kk]ey|API[_-]?(?:KEY|Key))';
const assigned =
  `(?:\\\\{0,16}["'])?[ \\t]*[:=][ \\t]*` +
  `(?:"(?<v>(?:[^"\\\\\\r\\n]|\\\\.){1,512})(?=")|'(?<v2>[^'\\r\\n]{1,512})(?=')` +
  `|(?<q>\\\\{1,16})"(?<v4>(?:(?!(?<!\\\\)\\k<q>")[^\\r\\n]){1,512})` +
  `|(?<v3>[^\\s"',;&<>{}\\[\\]]{1,512}))`;
const deny = `(?:${nonSecretTokenWords.map((w) => `[${w[0]}${w[0]!.toUpperCase()}]${w.slice(1)}|${w.toUpperCase()}`).join('|')})[_-]?`;
const cookiePair = `[^\\s"'\\\\;=]{1,256}`;
const cookieVal = `[^\\s"'\\\\;]{0,4096}`;
const alone = (src: string): Part => ({
  re: new RegExp(`(?<![A-Za-z0-9_-])(?:${src})(?![A-Za-z0-9_-])`, 'g'),
  check: (m) => (hasUpper(m) ? m.length : 0),
});
const reference: Record<string, Part[]> = {
  phone: [
    {
      re: /(?<![\w+])\+[1-9](?:[ .-]?\(?\d\)?){7,14}(?!\w)/g,
      check: (m) => {
        const n = digitCount(m);
        return n >= 8 && n <= 15 ? m.length : 0;
      },
    },
    { re: /(?<![\w+\-.])(?:\(\d{3}\) ?|\d{3}[-. ])\d{3}[-. ]\d{4}(?![\w-])/g },
  ],
  'credit-card': [
    {
      // Since the separators may mix and be dots: the same, no backreferences, `[ .-]`; since
      // runs of up to 4 spaces and tabs, or `\t` (a tab as JSON text escapes it), underscores only (standing alone) and slashes only
      // (4-4-4-4, standing alone). One regex, as the detector's: a candidate refused by its
      // check is passed over whole, whichever shape matched.
      re: /(?<![\d.])(?:\d{13,19}|\d{4}(?:[ \t]{1,4}|[.-]|\\t)\d{4}(?:[ \t]{1,4}|[.-]|\\t)\d{4}(?:[ \t]{1,4}|[.-]|\\t)\d{1,7}|\d{4}(?:[ \t]{1,4}|[.-]|\\t)\d{6}(?:[ \t]{1,4}|[.-]|\\t)\d{4,5}|(?<![A-Za-z_])(?:\d{4}_\d{4}_\d{4}_\d{1,7}|\d{4}_\d{6}_\d{4,5})(?![A-Za-z0-9_])|(?<![A-Za-z_/:-])\d{4}\/\d{4}\/\d{4}\/\d{4}(?![A-Za-z0-9_/]|[.-][A-Za-z0-9]))(?!\.?\d)/g,
      check: (m) => (cardValid(m) ? m.length : 0),
    },
  ],
  iban: [
    {
      re: /(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}(?![A-Za-z0-9])/g,
      check: ibanPrefixLength,
    },
  ],
  'us-ssn': [
    { re: /(?<![\d-])(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![\d-])/g },
    // Since spaced SSNs are found.
    { re: /(?<![\d-]|\d )(?!000|666|9\d\d)\d{3} (?!00)\d{2} (?!0000)\d{4}(?! ?\d|-)/g },
    {
      re: /(?:\bSSN|[Ss]ocial [Ss]ecurity(?: [Nn]umber| [Nn]o\.?)?)[ \t]*[:#]?[ \t]*(?<v>(?!000|666|9\d\d)\d{3} ?(?!00)\d{2} ?(?!0000)\d{4})(?!\d)/g,
    },
  ],
  jwt: [
    {
      re: /(?<![A-Za-z0-9_-])eyJ[A-Za-z0-9_-]{6,}\.[A-Za-z0-9_-]{6,}\.[A-Za-z0-9_-]*/g,
      check: (m) => (jwtHeaderValid(m) ? m.length : 0),
    },
  ],
  'aws-access-key': [
    {
      re: /(?<![A-Za-z0-9])(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AIPA|ANPA|ANVA|AROA|APKA|ASCA|A3T[A-Z0-9])[A-Z0-9]{16}(?![A-Za-z0-9])/g,
    },
    {
      re: /(?:aws_?)?secret_?access_?key["']?[ \t]*[:=][ \t]*["']?(?<v>[A-Za-z0-9/+]{40})(?![A-Za-z0-9/+=])/gi,
    },
  ],
  'azure-storage-key': [
    { re: /(?:AccountKey|SharedAccessKey)=(?<v>[A-Za-z0-9+/]{20,}={0,2})/g },
    { re: /(?<![A-Za-z0-9+/=])[A-Za-z0-9+/]{86}==(?![A-Za-z0-9+/=])/g },
  ],
  'azure-sas-token': [
    {
      // A sig= only counts in a URL with another SAS parameter.
      when: (s) => /[?&;](?:sv|se|sp|sr|spr|st|srt|ss)=/.test(s),
      re: /(?<=[?&;=])sig=(?<v>[A-Za-z0-9%+/=_-]{10,})/g,
    },
  ],
  'github-token': [{ re: /(?<![A-Za-z0-9_])(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,})/g }],
  'slack-token': [
    { re: /(?<![A-Za-z0-9-])xox[abposr]-[A-Za-z0-9-]{10,}/g },
    { re: /hooks\.slack\.com\/(?:services|workflows|triggers)\/(?<v>[A-Za-z0-9/_-]{10,})/g },
  ],
  'password-assignment': [
    {
      re: new RegExp(
        `${passwordKeyword}(?:[_-][A-Za-z0-9_-]{0,30}|[A-Z][A-Za-z0-9_-]{0,30})?["']?[ \\t]*[:=][ \\t]*` +
          `(?:"(?<v>(?:[^"\\\\\\r\\n]|\\\\.){1,512})(?=")|'(?<v2>[^'\\r\\n]{1,512})(?=')|(?<v3>[^\\s"',;&<>{}\\[\\]]{1,512}))`,
        'g',
      ),
    },
    { re: /:\/\/[^/\s:@]{1,64}:(?<v>[^/\s@]{1,128})(?=@)/g },
    // Since names ending in token (and `token` alone, whatever its value), Authorization and
    // Cookie headers are found; since the header names in any case. `token` and `TOKEN` are
    // two regexes, as in the detector: each scan goes on past its own matches only.
    { re: new RegExp(`(?<!${deny})[Tt]oken${assigned}`, 'g') },
    { re: new RegExp(`(?<!${deny})TOKEN${assigned}`, 'g') },
    {
      re: new RegExp(
        `(?<![A-Za-z0-9_])(?:proxy-)?authorization(?:\\\\{0,16}["'])?[ \\t]*[:=][ \\t]*(?:\\\\{0,16}["'])?` +
          `(?:(?<s>[A-Za-z][A-Za-z0-9_-]{0,30}) +)?(?<v>[A-Za-z0-9._~+/-]{4,2048}=*)(?![A-Za-z0-9._~+/=-])`,
        'gi',
      ),
      accept: (v, g) => (g['s']?.toLowerCase() === 'basic' ? basicCredentials(v) : opaqueToken(v)),
    },
    {
      re: new RegExp(
        `(?<![A-Za-z0-9_-])(?:set-)?cookie(?:\\\\{0,16}["'])?[ \\t]*:[ \\t]*(?:\\\\{0,16}["'])?` +
          `(?<v>${cookiePair}=${cookieVal}(?:; *${cookiePair}(?:=${cookieVal})?){0,64})`,
        'gi',
      ),
    },
  ],
  'api-key': [
    alone(
      'sk-(?:(?:proj|svcacct|admin|None)-[A-Za-z0-9_-]{20,}|ant-[a-z]{2,10}\\d{2}-[A-Za-z0-9_-]{32,}|[A-Za-z0-9]{48})',
    ),
    alone('[sr]k_(?:live|test)_[A-Za-z0-9]{16,}|gsk_[A-Za-z0-9]{40,}'),
    alone('whsec_[A-Za-z0-9+/]{24,}={0,2}'),
    alone('AIza[A-Za-z0-9_-]{35}'),
    alone('gl(?:pat|dt|rt|ptt|ft|cbt|soat)-[A-Za-z0-9_-]{20,}(?:\\.[A-Za-z0-9_-]+)*'),
    alone('npm_[A-Za-z0-9]{36}'),
    alone('pypi-AgE[A-Za-z0-9_-]{50,}'),
    alone('hf_[A-Za-z0-9]{34}'),
    alone('SG\\.[A-Za-z0-9_-]{22}\\.[A-Za-z0-9_-]{43}'),
    alone('xai-[A-Za-z0-9]{70,}'),
    {
      re: /(?<![A-Za-z0-9_-])Bearer +(?<v>[A-Za-z0-9._~+/-]{16,2048}=*)(?![A-Za-z0-9._~+/=-])/g,
      accept: (v) => opaqueToken(v),
    },
  ],
};

/** What the plain version finds: [start, end] pairs, sorted. */
function referenceSpans(detector: string, s: string): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  for (const { re, check, when, accept } of reference[detector]!) {
    if (when !== undefined && !when(s)) continue;
    re.lastIndex = 0;
    for (let m = re.exec(s); m !== null; m = re.exec(s)) {
      if (m[0].length === 0) {
        re.lastIndex++;
        continue;
      }
      const g = m.groups;
      const v = g === undefined ? undefined : (g['v'] ?? g['v2'] ?? g['v3'] ?? g['v4']);
      const end = m.index + m[0].length;
      if (v !== undefined) {
        // A refused value: the scan goes on at the value, past the name.
        if (v.length > 0 && (accept === undefined || accept(v, g!))) out.push([end - v.length, end]);
        else re.lastIndex = Math.max(end - v.length, m.index + 1);
      } else {
        const len = check === undefined ? m[0].length : check(m[0]);
        if (len > 0) out.push([m.index, m.index + len]);
      }
    }
  }
  return out.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
}

function fastSpans(detector: string, s: string): Array<[number, number]> {
  const finder = detectors.get(detector)!;
  if (s.length < finder.minLength) return [];
  const spans: Span[] = [];
  finder.find(s, 0, spans);
  return spans.map((sp): [number, number] => [sp.start, sp.end]).sort((a, b) => a[0] - b[0] || a[1] - b[1]);
}

const randomCase = (rand: () => number, s: string): string =>
  [...s].map((c) => (rand() < 0.5 ? c.toUpperCase() : c.toLowerCase())).join('');

/**
 * Strings built from pieces of what the detectors look for (prefixes, keywords in several
 * cases, separators, digit runs, real samples cut at random points) and plain text, so that
 * matches, near-misses and overlaps all occur often.
 */
function corpus(count: number, seed: number): string[] {
  const rand = prng(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
  const run = (chars: string, min: number, max: number): string => {
    let out = '';
    const n = min + Math.floor(rand() * (max - min + 1));
    for (let i = 0; i < n; i++) out += chars[Math.floor(rand() * chars.length)];
    return out;
  };
  const alnum = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
  const upperDigits = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789';
  const b64 = `${alnum}+/`;
  const samples = Object.values(positives).flat();
  const pieces: Array<() => string> = [
    () => run('0123456789', 1, 20),
    () =>
      `${run('0123456789', 3, 4)}${pick([' ', '-', '.', '\t', '  ', '_', '/', ' \t '])}${run('0123456789', 2, 6)}`,
    () => {
      // Card-shaped groups with each separator (a real card number, or its digits changed).
      const sep = pick([' ', '\t', '  ', '   ', '_', '/', '-', '.', ' \t', '\\t', '\\t ', ' \\t']);
      const same = rand() < 0.7;
      const digits = rand() < 0.5 ? '4111111111111111' : run('0123456789', 16, 16);
      return [0, 4, 8, 12].map((i) => digits.slice(i, i + 4)).join(same ? sep : pick([' ', '_', '/', '\t']));
    },
    () =>
      pick([
        ' ',
        '-',
        '.',
        '(',
        ')',
        '+',
        ':',
        '=',
        '"',
        "'",
        '\t',
        '\n',
        '/',
        '?',
        '&',
        ';',
        '@',
        '_',
        ',',
        '#',
      ]),
    () => run('abcdefghijklmnopqrstuvwxyz', 1, 8),
    () => run(alnum, 1, 12),
    () => run(upperDigits, 14, 24),
    () => pick(['AKIA', 'ASIA', 'A3T', 'ABIA', 'A', 'AK']) + run(upperDigits, 14, 18),
    () => `eyJ${run(`${alnum}_-`, 4, 12)}.${run(alnum, 4, 10)}.${run(alnum, 0, 8)}`,
    () =>
      pick(['ghp_', 'gho_', 'ghu_', 'ghs_', 'ghr_', 'gh_', 'github_pat_', 'github_', 'g']) +
      run(alnum, 20, 40),
    () => pick(['xoxb-', 'xoxp-', 'xoxz-', 'xox', 'xo']) + run(`${alnum}-`, 6, 14),
    () =>
      `hooks.slack.com/${pick(['services', 'workflows', 'triggers', 'other'])}/${run(`${alnum}/_-`, 6, 14)}`,
    () =>
      `${pick(['?', '&', ';', '=', ' '])}${pick(['sv', 'se', 'sp', 'sig', 'sr'])}=${run(`${alnum}%+/=_-`, 6, 14)}`,
    () => `${pick(['AccountKey=', 'SharedAccessKey=', 'Key='])}${run(b64, 16, 30)}${pick(['', '=', '=='])}`,
    () => `${run(b64, 84, 88)}${pick(['==', '=', ''])}`,
    () =>
      randomCase(
        rand,
        pick(['password', 'passwd', 'passphrase', 'pwd', 'secret', 'api_key', 'apikey', 'api-key', 'pass']),
      ),
    () =>
      pick([
        'Password',
        'PASSWORD',
        'Passphrase',
        'PASSPHRASE',
        'PWD',
        'Secret',
        'SECRET',
        'ApiKey',
        'API_KEY',
      ]),
    () =>
      `${pick(['db_', 'client', ''])}${pick(['password', 'Secret', 'PWD'])}${pick(['', '_x', 'Y'])}${pick([':', '=', ': ', '="', "='", ' = '])}${run(alnum, 1, 10)}${pick(['', '"', "'"])}`,
    () =>
      `${randomCase(rand, pick(['aws_secret_access_key', 'secretaccesskey', 'secret_accesskey', 'secret_key']))}${pick([' = ', ':', '="', '='])}${run(b64, 38, 42)}`,
    () =>
      pick([
        'SSN',
        'ssn',
        'Social Security',
        'social security',
        'Social Security Number',
        'social Security No.',
      ]),
    () =>
      `${pick(['SSN', 'Social Security'])}${pick([' ', ': ', '#', ''])}${run('0123456789', 3, 3)}${pick([' ', '-', ''])}${run('0123456789', 2, 2)}${pick([' ', '-', ''])}${run('0123456789', 4, 4)}`,
    () =>
      `${pick(['https', 'postgres', 'x'])}://${run(alnum, 1, 6)}${pick([':', ''])}${run(`${alnum}!`, 1, 8)}${pick(['@', '/', ''])}${run(alnum, 0, 6)}`,
    () => `${run(alnum, 1, 8)}@${run('abcdefghij', 1, 6)}.${pick(['com', 'co.uk', 'x'])}`,
    () =>
      `${pick(['access_', 'next_page_', 'AWS_SESSION_', 'nextPage', 'x-auth-', 'max_', 'progress', 'eos_', '', 'my', '"', ' ', 'Access ', '{"', '. '])}${pick(['token', 'Token', 'TOKEN', 'tokens', 'token_count'])}${pick([':', '=', ': ', '="', '":"', ' = ', '\\":\\"', '": "'])}${pick([run(alnum, 1, 20), run(alnum, 14, 30), run('0123456789', 4, 9), run('abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ', 14, 24), ` ${run(alnum, 1, 5)}`, `Bearer ${run(alnum, 10, 24)}`])}`,
    () =>
      `${pick(['Authorization', 'authorization', 'Proxy-Authorization', 'authorization_url', 'AUTHORIZATION', 'PROXY-authoriZation', 'aUTHORIZATIOn'])}${pick([': ', ':', '="', '": "'])}${pick(['Bearer ', 'Basic ', 'token ', '', 'Bearer tokens ', 'BASIC ', 'bearer '])}${pick([run(`${alnum}._~+/-`, 2, 30), Buffer.from(`${run(alnum, 1, 5)}:${run(alnum, 1, 5)}`).toString('base64')])}`,
    () =>
      `${pick(['Cookie', 'cookie', 'Set-Cookie', 'cookies', 'cookie_policy', 'COOKIE', 'SET-COOKIE', 'cOOkIe', 'x-cookie'])}${pick([': ', ':', '":"'])}${run(alnum, 1, 6)}${pick(['=', ' '])}${run(`${alnum}=`, 0, 10)}${pick(['; ', ';', ' '])}${run(alnum, 1, 4)}${pick(['=', ''])}${run(alnum, 0, 6)}`,
    () =>
      `${pick(['sk-', 'sk-proj-', 'sk-ant-api03-', 'sk_live_', 'rk_test_', 'gsk_', 'whsec_', 'AIza', 'glpat-', 'gldt-', 'npm_', 'pypi-AgE', 'hf_', 'xai-', 'SG.', 'Bearer ', 'xsk-', 'pk_live_'])}${run(`${alnum}_-`, 15, 50)}${pick(['', `.${run(alnum, 40, 45)}`, run(alnum, 20, 60)])}`,
    () => `+${run('0123456789', 1, 3)}${pick([' ', '', '-', '.'])}${run('0123456789 ().-', 7, 16)}`,
    () => `(${run('0123456789', 3, 3)}) ${run('0123456789', 3, 3)}-${run('0123456789', 4, 4)}`,
    () =>
      `${run('0123456789', 3, 3)}${pick(['-', '.', ' ', ''])}${run('0123456789', 3, 3)}${pick(['-', '.', ' '])}${run('0123456789', 4, 4)}`,
    () => `${run('0123456789', 3, 3)}-${run('0123456789', 2, 2)}-${run('0123456789', 4, 4)}`,
    () =>
      `${pick(['DE', 'GB', 'FR', 'NL', 'XX'])}${run('0123456789', 2, 2)}${run(' ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789', 11, 30)}`,
    () => {
      // A real sample, whole or cut, so a finding sits at every kind of boundary.
      const s = pick(samples);
      const a = rand() < 0.7 ? 0 : Math.floor(rand() * s.length);
      const b = rand() < 0.7 ? s.length : a + Math.floor(rand() * (s.length - a + 1));
      return s.slice(a, b);
    },
  ];
  const out: string[] = [];
  for (let i = 0; i < count; i++) {
    let s = '';
    const n = 1 + Math.floor(rand() * 12);
    for (let j = 0; j < n; j++) s += pick(['', '', '', ' ', '\n', '"', ',', ':', '=', '&']) + pick(pieces)();
    out.push(s);
  }
  return out;
}

const strings = corpus(8000, 1);

describe('fast detectors find exactly what the plain regexes find', () => {
  const regexDetectors = Object.keys(reference);

  it('covers every regex-based built-in detector', () => {
    expect([...regexDetectors, 'email', 'private-key'].sort()).toEqual([...detectorNames].sort());
  });

  it.each(regexDetectors)('%s, on generated strings', (detector) => {
    let found = 0;
    for (const s of strings) {
      const want = referenceSpans(detector, s);
      found += want.length;
      const got = fastSpans(detector, s);
      if (JSON.stringify(got) !== JSON.stringify(want)) {
        // Name the string that differs.
        expect({ s, got }).toEqual({ s, got: want });
      }
    }
    // The corpus really exercises each detector (a test that finds nothing proves nothing).
    expect(found).toBeGreaterThan(10);
  });

  // Long strings take other paths (digit runs listed once, then sticky regexes at their starts).
  const long = [
    ...strings.slice(0, 3000).map((s) => `${'plain words '.repeat(22)}${s}`),
    ...Array.from({ length: 150 }, (_, i) => strings.slice(i * 20, i * 20 + 20).join(' ')),
    ...Array.from({ length: 150 }, (_, i) => strings.slice(i * 20, i * 20 + 20).join('')),
  ];

  it('the long-string corpus is long', () => {
    expect(long.filter((s) => s.length > 256).length).toBeGreaterThan(2200);
  });

  it('us-ssn keyword form on long strings, with any run of spaces and tabs around : or #', () => {
    const pad = 'plain words '.repeat(25);
    const keywords = [
      'SSN',
      'Social Security',
      'social Security Number',
      'Social security No.',
      'Social Security no',
    ];
    const gaps = ['', ' ', '\t', ' '.repeat(40), '\t \t'.repeat(12)];
    const marks = ['', ':', '#'];
    const numbers = ['123456789', '123 45 6789', '12345 6789', '123 456789', '1234567890', '078-05-1120'];
    let found = 0;
    for (const k of keywords)
      for (const g1 of gaps)
        for (const m of marks)
          for (const g2 of gaps)
            for (const n of numbers) {
              const text = `${pad}${k}${g1}${m}${g2}${n} and ${pad}`;
              const want = referenceSpans('us-ssn', text);
              found += want.length;
              expect(fastSpans('us-ssn', text)).toEqual(want);
            }
    expect(found).toBeGreaterThan(1000);
  });

  it.each(regexDetectors)('%s, on long generated strings', (detector) => {
    let found = 0;
    for (const s of long) {
      const want = referenceSpans(detector, s);
      found += want.length;
      const got = fastSpans(detector, s);
      if (JSON.stringify(got) !== JSON.stringify(want)) expect({ s, got }).toEqual({ s, got: want });
    }
    expect(found).toBeGreaterThan(10);
  });

  it.each(regexDetectors)('%s, on every positive sample at every offset of typical text', (detector) => {
    const text = '{"title":"cache eviction","n":12,"at":"2026-11-30T07:00:00Z","x":"a_b-c.d/e"}';
    for (const sample of positives[detector]!) {
      for (let at = 0; at <= text.length; at++) {
        const s = text.slice(0, at) + sample + text.slice(at);
        expect(fastSpans(detector, s)).toEqual(referenceSpans(detector, s));
      }
    }
  });
});

describe('needs: the characters every finding contains', () => {
  const finders = [
    ...detectors.values(),
    compilePattern('ticket', 'TCK-[0-9]{6}'),
    compilePattern('host', '[a-z0-9-]+\\.corp\\.internal'),
  ];

  it('a string where a finder finds something holds a character of each of its sets and its digits', () => {
    const extra = ['ticket TCK-123456', 'db.corp.internal', 'x-y.corp.internal:80'];
    let checked = 0;
    const wrong: string[] = [];
    for (const f of finders) {
      expect(f.needs).toBeDefined();
      for (const s of [...strings, ...extra]) {
        const spans: Span[] = [];
        if (s.length >= f.minLength) f.find(s, 0, spans);
        if (spans.length === 0) continue;
        checked++;
        for (const set of f.needs!)
          if (![...set].some((c) => s.includes(c))) wrong.push(`${f.name} [${set}] ${s}`);
        const pairs = f.needsPairs ?? [];
        if (pairs.length > 0 && !pairs.some((p) => s.includes(p))) wrong.push(`${f.name} pairs ${s}`);
        if (digitCount(s) < (f.minDigits ?? 0)) wrong.push(`${f.name} digits ${s}`);
        // And the finding itself holds the digits.
        for (const sp of spans) {
          if (
            sp.name === 'phone' ||
            sp.name === 'credit-card' ||
            sp.name === 'us-ssn' ||
            sp.name === 'iban'
          ) {
            const whole = s.slice(Math.max(0, sp.start - 40), sp.end);
            if (digitCount(whole) < (f.minDigits ?? 0)) wrong.push(`${f.name} span digits ${s}`);
          }
        }
      }
    }
    expect(wrong).toEqual([]);
    expect(checked).toBeGreaterThan(1000);
  });

  it('every positive sample holds a character of each set its detector needs, and its digits', () => {
    for (const [detector, samples] of Object.entries(positives)) {
      const finder = detectors.get(detector)!;
      for (const s of samples) {
        expect(needsClass([finder])!.test(s)).toBe(true);
        for (const set of finder.needs!) expect([...set].some((c) => s.includes(c))).toBe(true);
        if (finder.needsPairs !== undefined) expect(finder.needsPairs.some((p) => s.includes(p))).toBe(true);
        expect(digitCount(s)).toBeGreaterThanOrEqual(finder.minDigits ?? 0);
      }
    }
  });

  it('is undefined when any finder cannot say (a pattern without a required literal)', () => {
    const loose = compilePattern('long-word', '[a-z]{12,}');
    expect(loose.needs).toBeUndefined();
    expect(needsClass([detectors.get('email')!, loose])).toBeUndefined();
    expect(needsClass([detectors.get('email')!, detectors.get('jwt')!])!.test('plain words only')).toBe(
      false,
    );
  });

  it('a pattern without a required literal still sees plain strings', () => {
    const masker = createMasker([
      {
        policy: 'p',
        rule: {
          name: 'r',
          detectors: [...detectorNames],
          patterns: [{ name: 'long-word', regex: '[a-z]{12,}' }],
        } as MaskingRule,
      },
    ]);
    const out = masker.maskMessage({ title: 'an extraordinarily plain title' }, { method: 'tools/call' });
    expect(out.value.title).toBe('an [masked:long-word] plain title');
  });

  it('plain strings pass through as the very same objects; a secret next to them is still masked', () => {
    const masker = createMasker([
      { policy: 'p', rule: { name: 'r', detectors: [...detectorNames] } as MaskingRule },
    ]);
    const msg = {
      jsonrpc: '2.0',
      id: 1,
      result: { structuredContent: { a: { title: 'plain words', tags: ['x', 'y'] }, b: 'token ghp_' } },
    };
    expect(masker.maskMessage(msg, { method: 'tools/call' }).value).toBe(msg);
    const token = positives['github-token']![0]!;
    const withSecret = {
      ...msg,
      result: { structuredContent: { ...msg.result.structuredContent, c: token } },
    };
    const out = masker.maskMessage(withSecret, { method: 'tools/call' });
    expect(out.value.result.structuredContent.c).toBe('[masked:github-token]');
    expect(out.value.result.structuredContent.a).toBe(msg.result.structuredContent.a);
  });
});

describe('every positive sample is masked wherever it sits in a message (all detectors, patterns and fields on)', () => {
  const rules: MaskingRule[] = [
    {
      name: 'all',
      detectors: [...detectorNames],
      patterns: [
        { name: 'ticket', regex: 'TCK-[0-9]{6}' },
        { name: 'internal-host', regex: '[a-z0-9-]+\\.corp\\.internal' },
      ],
      fields: ['$.structuredContent.customer.ssn', '$..password'],
    } as MaskingRule,
  ];
  const masker = createMasker(rules.map((rule) => ({ policy: 'p', rule })));
  const scope = { method: 'tools/call', tool: 'get_x', session: 's' };
  const cases = Object.entries(positives).flatMap(([detector, samples]) =>
    samples.map((sample) => [detector, sample] as const),
  );

  it.each(cases)('%s: %s', (detector, sample) => {
    const secret = secretOf(detector, sample);
    const places: unknown[] = [
      { content: [{ type: 'text', text: sample }] },
      { content: [{ type: 'text', text: `plain words then ${sample} and more plain words` }] },
      { structuredContent: { deep: [[{ x: sample }]] } },
      // As an object key (a whole-key finding is renamed to its token).
      { structuredContent: { [sample]: 'plain' } },
      { structuredContent: { [`key ${sample} key`]: 1 } },
      // Inside a JSON document carried as text (newlines and quotes escaped).
      { content: [{ type: 'text', text: JSON.stringify({ note: `see ${sample}`, list: [sample] }) }] },
      // A text block that is the serialization of structuredContent.
      {
        content: [{ type: 'text', text: JSON.stringify({ v: sample }) }],
        structuredContent: { v: sample },
      },
      // Among many plain strings and keys (the fast path lets those through unscanned).
      {
        structuredContent: {
          items: Array.from({ length: 20 }, (_, i) => ({
            title: 'plain words',
            body: i === 7 ? sample : 'more',
          })),
        },
      },
    ];
    for (const payload of places) {
      const out = masker.maskMessage({ jsonrpc: '2.0', id: 1, result: payload }, scope);
      const text = JSON.stringify(out.value);
      // Line by line: JSON escapes a newline, once per level of serialization.
      for (const line of secret.split('\n')) if (line.length >= 6) expect(text).not.toContain(line);
      expect(out.hits.length).toBeGreaterThan(0);
    }
  });
});

describe('probes agree with String.prototype.includes / indexOf and /i', () => {
  const literals = [
    'sig=',
    'eyJ',
    '://',
    'word',
    'wd',
    'phrase',
    'ecret',
    'ECRET',
    'Key',
    'SSN',
    'ocial ',
    '-----BEGIN ',
    'hooks.slack.com/',
    '.corp.internal',
    'TCK-',
    'ab',
    'aa',
    'aaa',
    'x',
    'github_pat_',
    'ghp_',
  ];
  const rand = prng(2);
  const alphabet = 'aabcdeEgGhijKkprRsStwxyJ_=:/.-  ';
  const texts: string[] = [];
  for (let i = 0; i < 3000; i++) {
    let s = '';
    const n = Math.floor(rand() * 40);
    for (let j = 0; j < n; j++) {
      s +=
        rand() < 0.1
          ? literals[Math.floor(rand() * literals.length)]
          : alphabet[Math.floor(rand() * alphabet.length)];
    }
    texts.push(s);
  }

  it('literalProbe, literalFinder (from every offset)', () => {
    const wrong: string[] = [];
    for (const lit of literals) {
      const probe = literalProbe(lit);
      const find = literalFinder(lit);
      for (const s of texts) {
        if (probe(s) !== s.includes(lit)) wrong.push(`probe ${lit} in ${s}`);
        for (let from = 0; from <= s.length + 1; from++) {
          if (find(s, from) !== s.indexOf(lit, from)) wrong.push(`find ${lit} from ${from} in ${s}`);
        }
      }
    }
    expect(wrong).toEqual([]);
  });

  it('foldedLiteralFinder finds as a /gi regexp from every offset, forwards, backwards and across strings', () => {
    const wrong: string[] = [];
    for (const lit of ['uthorization', 'ookie', 'key']) {
      const find = foldedLiteralFinder(lit);
      const re = new RegExp(lit, 'gi');
      const want = (s: string, from: number): number => {
        re.lastIndex = Math.max(from, 0);
        return re.exec(s)?.index ?? -1;
      };
      const extra = [
        `${lit} ${lit.toUpperCase()} ${randomCase(rand, lit)}`,
        `${randomCase(rand, lit)}${randomCase(rand, lit)}x${lit.toUpperCase()}`,
        `Proxy-AUTHORIZATION: a\nauthorization: b\nAuThOrIzAtIoN: c COOKIE: k=v; cookie: x=y`,
        `\u212A${lit.slice(1)}`,
      ];
      for (const s of [...texts, ...extra]) {
        // The finder remembers its last hits: ask from every offset up, then down again.
        for (let from = 0; from <= s.length + 1; from++)
          if (find(s, from) !== want(s, from)) wrong.push(`${lit} from ${from} in ${s}`);
        for (let from = s.length + 1; from >= 0; from -= 3)
          if (find(s, from) !== want(s, from)) wrong.push(`${lit} back from ${from} in ${s}`);
      }
    }
    expect(wrong).toEqual([]);
  });

  it('anyLiteralProbe, with literals sharing a searched part', () => {
    const sets = [
      ['ghp_', 'gho_', 'ghu_', 'ghs_', 'ghr_', 'github_pat_'],
      ['word', 'wd', 'phrase', 'WORD', 'WD', 'PHRASE', 'ecret', 'ECRET', 'key', 'Key', 'KEY'],
      ['aa', 'aaa', 'a'],
      ['SSN', 'ocial '],
    ];
    const wrong: string[] = [];
    for (const set of sets) {
      const probe = anyLiteralProbe(set);
      for (const s of texts) if (probe(s) !== set.some((l) => s.includes(l))) wrong.push(`${set} in ${s}`);
    }
    expect(wrong).toEqual([]);
  });

  it('foldedLiteralProbe folds ASCII letters only, as a non-unicode /i regexp does', () => {
    const wrong: string[] = [];
    for (const lit of ['key', 'secret', 'a_b', 'sig=']) {
      const probe = foldedLiteralProbe(lit);
      const re = new RegExp(lit.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'), 'i');
      const extra = [
        lit.toUpperCase(),
        `x${randomCase(rand, lit)}y`,
        '\u212Aey',
        'ſecret',
        'SECRET'.slice(1),
      ];
      for (const s of [...texts, ...extra]) if (probe(s) !== re.test(s)) wrong.push(`${lit} in ${s}`);
    }
    expect(wrong).toEqual([]);
  });

  it('rarestPair is a piece of the literal holding its rarest character', () => {
    for (const lit of literals.filter((l) => l.length >= 2)) {
      const pair = rarestPair(lit);
      expect(pair).toHaveLength(2);
      expect(lit).toContain(pair);
      expect(pair).toContain(rarestChars(lit, 1)[0]);
    }
  });

  it('rarestChars are distinct characters of the literal', () => {
    for (const lit of literals) {
      const chars = rarestChars(lit, 2);
      expect(new Set(chars).size).toBe(Math.min(2, new Set(lit).size));
      for (const c of chars) expect(lit).toContain(c);
    }
  });
});

describe('per-plan key facts', () => {
  it('masks a key holding a finding on every call, not only the first', () => {
    const masker = createMasker([{ policy: 'p', rule: { name: 'r', detectors: ['email'] } as MaskingRule }]);
    for (let i = 0; i < 3; i++) {
      const out = masker.maskMessage(
        { structuredContent: { 'bob@example.com': i } },
        { method: 'tools/call' },
      );
      expect(out.value).toEqual({ structuredContent: { 'masked-email@masked.invalid': i } });
    }
  });

  it('keeps sensitive keys, $..name fields and scoped rules apart per tool', () => {
    const masker = createMasker([
      {
        policy: 'p',
        rule: { name: 'pw', detectors: ['password-assignment'], tools: ['a_*'] } as MaskingRule,
      },
      { policy: 'p', rule: { name: 'f', fields: ['$..pin'], tools: ['b_*'] } as MaskingRule },
    ]);
    const msg = { structuredContent: { password: 'hunter2', pin: '1234' } };
    expect(masker.maskMessage(msg, { method: 'tools/call', tool: 'a_x' }).value).toEqual({
      structuredContent: { password: '[masked:password-assignment]', pin: '1234' },
    });
    expect(masker.maskMessage(msg, { method: 'tools/call', tool: 'b_x' }).value).toEqual({
      structuredContent: { password: 'hunter2', pin: '[masked:f]' },
    });
    expect(masker.maskMessage(msg, { method: 'tools/call', tool: 'c_x' }).value).toBe(msg);
    expect(masker.maskMessage(msg, { method: 'tools/call', tool: 'a_x' }).value).toEqual({
      structuredContent: { password: '[masked:password-assignment]', pin: '1234' },
    });
  });
});

describe('choosing finders by the characters a string holds', () => {
  const rules: MaskingRule[] = [
    {
      name: 'all',
      detectors: [...detectorNames],
      patterns: [
        { name: 'ticket', regex: 'TCK-[0-9]{6}' },
        { name: 'internal-host', regex: '[a-z0-9-]+\\.corp\\.internal' },
        // Rarest character of the literal is not ASCII.
        { name: 'uber', regex: 'Über-[0-9]{3}' },
        // Its needed character ends every match.
        { name: 'eat', regex: 'eat=' },
      ],
    } as MaskingRule,
  ];
  const fast = createMasker(rules.map((rule) => ({ policy: 'p', rule })));
  const slow = createMasker(
    rules.map((rule) => ({ policy: 'p', rule })),
    { exhaustive: true },
  );
  const scope = { method: 'tools/call' };
  const pad = (s: string, n: number): string =>
    (s.length >= n ? s : s + ' plain'.repeat((n - s.length) / 6 + 1)).slice(0, Math.max(n, s.length));

  it('masks exactly as running every finder on every string does (values and keys, short and long)', () => {
    let masked = 0;
    const wrong: string[] = [];
    const extra = [
      'x Über-123 y',
      'Über-123',
      'ticket TCK-123456',
      'db.corp.internal',
      'é bob@example.com ü',
      'we eat=',
      'eat=',
    ];
    const all = [...extra, ...strings];
    for (let i = 0; i < all.length; i++) {
      const s = all[i]!;
      // Around the length where the character pass gives way to the class test, for some.
      const long =
        i < 1500 ? [pad(s, 1023), pad(s, 1024), pad(s, 1025), `plain ${'words '.repeat(300)}${s}`] : [];
      for (const v of [s, ...long]) {
        const msg = { structuredContent: { v, [v]: 1 } };
        const a = JSON.stringify(fast.maskMessage(msg, scope));
        const b = JSON.stringify(slow.maskMessage(msg, scope));
        if (a !== b) wrong.push(v);
        if (a !== JSON.stringify({ value: msg, hits: [] })) masked++;
      }
    }
    expect(wrong).toEqual([]);
    expect(masked).toBeGreaterThan(4000);
  });

  it('a pattern whose needed character is not ASCII still runs on strings holding it', () => {
    expect(fast.maskMessage({ t: 'x Über-123 y' }, scope).value.t).toBe('x [masked:uber] y');
  });

  it('a pattern whose rarest pair is not ASCII is still chosen (by its other conditions)', () => {
    const m = createMasker([
      { policy: 'p', rule: { name: 'r', patterns: [{ name: 'u', regex: 'xÜ-[0-9]' }] } as MaskingRule },
    ]);
    expect(m.maskMessage({ t: 'a xÜ-1 b' }, scope).value.t).toBe('a [masked:u] b');
  });

  it('more than 31 finders: the ones past the 31st always run', () => {
    const patterns = Array.from({ length: 40 }, (_, i) => ({ name: `p${i}`, regex: `ZQ${i}Q-[0-9]{2}` }));
    const many = createMasker([
      { policy: 'p', rule: { name: 'many', detectors: [...detectorNames], patterns } as MaskingRule },
    ]);
    for (let i = 0; i < 40; i++) {
      const out = many.maskMessage({ t: `a ZQ${i}Q-12 b`, [`k ZQ${i}Q-34`]: 1 }, scope);
      expect(out.value).toEqual({ t: `a [masked:p${i}] b`, [`k [masked:p${i}]`]: 1 });
    }
  });
});

describe('the new paths stay linear on hostile 100 KB inputs', () => {
  const n = 100_000;
  const masker = createMasker([
    { policy: 'p', rule: { name: 'all', detectors: [...detectorNames] } as MaskingRule },
  ]);
  const hostile: Array<[string, string]> = [
    ['runs of 3 then a space (phone, SSN keyword starts)', '123 '.repeat(n / 4)],
    ['parenthesised runs', '(123) '.repeat(n / 6)],
    ['runs of 4 then a space (card starts)', '1234 '.repeat(n / 5)],
    ['runs of 3 then a dash (SSN starts)', '123-'.repeat(n / 4)],
    ['SSN keyword far before its digits', `SSN${' '.repeat(n)}123456789`],
    ['SSN keywords and short runs', 'SSN 123 '.repeat(n / 8)],
    ['ocial and digit groups', 'ocial 123 45 6789 '.repeat(n / 18)],
    [':// without a colon after', `${'://'.repeat(10)}${'a'.repeat(n)}`],
    ['many ://', '://a'.repeat(n / 4)],
    ['13-digit runs', '4111111111111 '.repeat(n / 14)],
    ['short strings, many', 'x'],
  ];
  it.each(hostile)('%s', (name, text) => {
    const start = cpuStart();
    if (name === 'short strings, many') {
      const many = Array.from({ length: 20_000 }, (_, i) => `k${i} 123-45-${i} gh_ wo:/ ${i}`);
      masker.maskMessage({ many }, { method: 'tools/call' });
    } else masker.maskMessage({ text }, { method: 'tools/call' });
    expect(cpuMs(start)).toBeLessThan(LINEAR_BUDGET_MS);
  });
});

describe('finding the text copy of structuredContent builds only the serialization that can match', () => {
  const masker = createMasker([{ policy: 'p', rule: { name: 'pii', detectors: ['email'] } as MaskingRule }]);
  const sc = { email: 'bob@example.com', note: 'line one\nline two', n: 1 };
  const masked = { email: 'masked-email@masked.invalid', note: 'line one\nline two', n: 1 };
  const cases: Array<[string, string, string]> = [
    ['compact', JSON.stringify(sc), JSON.stringify(masked)],
    ['indented by 2', JSON.stringify(sc, null, 2), JSON.stringify(masked, null, 2)],
    // Other whitespace: parsed, and re-serialized compact or indented by 2 as it had newlines.
    ['indented by 4', JSON.stringify(sc, null, 4), JSON.stringify(masked, null, 2)],
    [
      'Python-style separators',
      JSON.stringify(sc).replaceAll('","', '", "').replaceAll('":', '": '),
      JSON.stringify(masked),
    ],
    // Not a serialization of it: masked as text.
    ['other JSON with newlines', '{\n  "email": "bob@example.com"\n}', '{\n  "email": "[masked:email]"\n}'],
    ['other JSON on one line', '{"x":"bob@example.com"}', '{"x":"[masked:email]"}'],
  ];
  it.each(cases)('%s', (_name, text, want) => {
    const out = masker.maskMessage(
      { content: [{ type: 'text', text }], structuredContent: sc },
      { method: 'tools/call' },
    );
    expect(out.value.content[0]!.text).toBe(want);
    expect(out.value.structuredContent).toEqual(masked);
  });

  it('an empty structuredContent and its copy {} stay as they are', () => {
    const msg = { content: [{ type: 'text', text: '{}' }], structuredContent: {} };
    expect(masker.maskMessage(msg, { method: 'tools/call' }).value).toBe(msg);
  });
});
