import { parseJson } from '../json.js';
import type { MaskingRule } from '../policy/schema.js';
import { cpuMs, cpuStart, LINEAR_BUDGET_MS } from './cpu-time.js';
import { detectorNames } from './detectors.js';
import { digitZeros, foldText } from './fold.js';
import { createMasker } from './masker.js';

/**
 * Recall: secrets written with look-alike characters (folded), encoded more than once (JSON
 * escapes of JSON escapes), split over three or more blocks (a private key), or percent-encoded
 * (an e-mail in a URL's query); and what must stay as it is next to each.
 */
const all = createMasker([
  { policy: 'p', rule: { name: 'all', detectors: [...detectorNames] } as MaskingRule },
]);
const scope = { method: 'tools/call' };
function mask(text: string): { text: string; hits: string[] } {
  const { value, hits } = all.maskMessage({ content: [{ type: 'text', text }] }, scope);
  return { text: value.content[0]!.text, hits: hits.map((h) => h.detector) };
}

/** ASCII digits in `s` written as the Unicode digits whose zero is `zero`. */
function spell(s: string, zero: number): string {
  return s.replace(/[0-9]/g, (d) => String.fromCodePoint(zero + Number(d)));
}

describe('look-alike characters are read folded', () => {
  it.each([
    ['fullwidth digits', '４１１１ １１１１ １１１１ １１１１', 'credit-card'],
    ['fullwidth digits and hyphens', '４１１１－１１１１－１１１１－１１１１', 'credit-card'],
    ['no-break spaces', '4111\u00A01111\u00A01111\u00A01111', 'credit-card'],
    ['narrow no-break spaces', '4111\u202F1111\u202F1111\u202F1111', 'credit-card'],
    ['ideographic spaces', '4111\u30001111\u30001111\u30001111', 'credit-card'],
    ['en dashes', '4111\u20131111\u20131111\u20131111', 'credit-card'],
    ['Arabic-Indic digits', '٤١١١١١١١١١١١١١١١', 'credit-card'],
    ['Devanagari digits', spell('4111 1111 1111 1111', 0x966), 'credit-card'],
    ['mathematical bold digits', '𝟒𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏', 'credit-card'],
    ['mathematical monospace digits, spaced', '𝟺𝟷𝟷𝟷 𝟷𝟷𝟷𝟷 𝟷𝟷𝟷𝟷 𝟷𝟷𝟷𝟷', 'credit-card'],
    ['fullwidth full stop in the domain', 'bob@example．com', 'email'],
    ['ideographic full stop in the domain', 'bob@example。com', 'email'],
    ['one-dot leader in the domain', 'bob@example\u2024com', 'email'],
    ['an address all fullwidth', 'ｂｏｂ＠ｅｘａｍｐｌｅ．ｃｏｍ', 'email'],
    ['a zero-width space before the at sign', 'bob\u200B@example.com', 'email'],
    ['a soft hyphen in the domain', 'bob@exam\u00ADple.com', 'email'],
    ['a soft hyphen in an AWS key', 'AKIA\u00ADIOSFODNN7EXAMPLE', 'aws-access-key'],
    [
      'a zero-width space in a GitHub token',
      `ghp_R9aK2bQ7xLm4Tz8\u200BVwN3cYp6Hd1Fg5Js0Ue2i`,
      'github-token',
    ],
    ['a fullwidth phone number', '＋１ ４１５ ５５５ ２６７１', 'phone'],
    ['a fullwidth SSN', '１２３－４５－６７８９', 'us-ssn'],
    ['a fullwidth IBAN', 'ＤＥ８９ ３７０４ ００４４ ０５３２ ０１３０ ００', 'iban'],
  ])('%s: %s', (_name, secret, detector) => {
    const out = mask(`see ${secret} now`);
    // The original span, surrogate pairs and dropped characters included, is what is replaced.
    expect(out.text).toBe(`see [masked:${detector}] now`);
    expect(out.hits).toEqual([detector]);
  });

  it('masks only the value of a password assignment written with a fullwidth equals sign', () => {
    expect(mask('password＝hunter2 ok').text).toBe('password＝[masked:password-assignment] ok');
  });

  it('checks folded digits as it checks ASCII ones (Luhn, issuer, repeated digits)', () => {
    for (const near of [
      '４１１１ １１１１ １１１１ １１１２',
      '١٧٣٢٩٤٢٥٦٨٠٠٠',
      '０００００００００００００００',
      '𝟒𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟏𝟐',
    ])
      expect(mask(`n ${near} x`)).toEqual({ text: `n ${near} x`, hits: [] });
  });

  it('leaves text whose look-alikes read as nothing sensitive alone, the very same message', () => {
    for (const text of [
      '今日は、晴れです。明日も！　（予定）',
      'version：１．２．３ build ٢٠٢٦',
      'emoji 👨\u200D👩\u200D👧 and a\u00A0no-break space',
      'ｗｏｒｄｓ ｉｎ ｆｕｌｌｗｉｄｔｈ',
    ]) {
      const msg = { content: [{ type: 'text', text }] };
      const out = all.maskMessage(msg, scope);
      expect(out.value).toBe(msg);
      expect(out.hits).toEqual([]);
    }
  });

  it('folds in long strings and in object keys too', () => {
    const pad = 'plain words '.repeat(120);
    expect(mask(`${pad}４１１１ １１１１ １１１１ １１１１ and bob@example。com`).text).toBe(
      `${pad}[masked:credit-card] and [masked:email]`,
    );
    const { value } = all.maskMessage({ customers: { 'bob@example．com': { n: 1 } } }, scope);
    expect(Object.keys(value.customers)).toEqual(['masked-email@masked.invalid']);
  });

  it('folds what JSON escapes spell (\\uff14 is ４)', () => {
    expect(mask(String.raw`card \uff14\uff11\uff11\uff11 1111 1111 1111.`).text).toBe(
      'card [masked:credit-card].',
    );
  });

  it('foldText maps each folded unit back to where it starts', () => {
    const folded = foldText('a𝟒\u200Bb４')!;
    expect(folded.text).toBe('a4b4');
    expect([...folded.from]).toEqual([0, 1, 4, 5, 6]);
    expect(foldText('plain ascii, café')).toBeUndefined();
  });

  it('digitZeros lists every Unicode decimal digit beyond ASCII, in runs of ten from a zero', () => {
    const nd = /\p{Nd}/u;
    const listed = new Set<number>();
    for (const zero of digitZeros) for (let d = 0; d < 10; d++) listed.add(zero + d);
    const wrong: string[] = [];
    for (let cp = 0x80; cp < 0x20000; cp++) {
      if (cp >= 0xd800 && cp < 0xe000) continue;
      if (listed.has(cp) !== nd.test(String.fromCodePoint(cp))) wrong.push(cp.toString(16));
    }
    expect(wrong).toEqual([]);
  });
});

describe('JSON escapes of JSON escapes', () => {
  it.each([
    ['twice', String.raw`alice\\u0040example.com`, 'masked-email@masked.invalid'],
    ['three times', String.raw`mail alice\\\\u0040example.com now`, 'mail [masked:email] now'],
    ['four times', String.raw`mail alice\\\\\\\\u0040example.com now`, 'mail [masked:email] now'],
    [
      'escaped slashes, twice',
      String.raw`https:\\/\\/app:s3cret@db:5432\\/x`,
      String.raw`https:\\/\\/app:[masked:password-assignment]@db:5432\\/x`,
    ],
  ])('masks the encoded span (%s)', (_name, text, masked) => {
    expect(mask(text).text).toBe(masked);
  });

  it('masks an address escaped at the innermost of three levels of JSON text, end to end', () => {
    // A tool that logs JSON text inside JSON text inside its JSON result.
    const inner = String.raw`{"email":"alice\u0040example.com"}`;
    const wire = JSON.stringify({ content: [{ type: 'text', text: JSON.stringify({ log: inner }) }] });
    const { value } = all.maskMessage(parseJson(wire) as { content: Array<{ text: string }> }, scope);
    const text = value.content[0]!.text;
    expect(JSON.parse(JSON.parse(text).log)).toEqual({ email: '[masked:email]' });
  });

  it('leaves doubled escapes that spell nothing sensitive alone', () => {
    for (const s of [
      String.raw`C:\\Users\\bob\\file.txt`,
      String.raw`line\\nbreak \\u00e9t\\u00e9 \\"quoted\\"`,
      String.raw`version\\u00401.2`,
      String.raw`bad \\u00zz escape`,
    ])
      expect(mask(s)).toEqual({ text: s, hits: [] });
  });

  it('stays linear on 100 KB of doubled escapes', () => {
    for (const text of ['a\\\\u0040'.repeat(12_500), '\\\\\\\\'.repeat(25_000), 'x\\\\/'.repeat(25_000)]) {
      const start = cpuStart();
      all.maskMessage({ text }, scope);
      expect(cpuMs(start)).toBeLessThan(LINEAR_BUDGET_MS);
    }
  });
});

describe('a private key split over three or more blocks', () => {
  const lines = [
    'MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun',
    'VTLw7onLRnrq0/IzW7yWR7QkrmBL7jTKEn5u+qKhbwKfBstIs+bMY2Zkp18gnTxK',
    'kqhkiG9w0BAQEFAASCBKgwggSkAgEAAoIBAQC7VJTUt9Us8cKjMzEfYyjiWA4R4',
    'Zkp18gnTxK==',
  ];
  const texts = (v: unknown): string[] =>
    (v as { content: Array<{ text?: string }> }).content.map((c) => c.text ?? '');
  const block = (text: string): { type: string; text: string } => ({ type: 'text', text });

  it('masks the middle blocks of bare base64 between the BEGIN block and the END block', () => {
    const msg = {
      content: [
        block('deploy key:\n-----BEGIN RSA PRIVATE KEY-----\n'),
        block(`${lines[0]}\n`),
        block(`${lines[1]}\n${lines[2]}\n`),
        block(`${lines[3]}\n-----END RSA PRIVATE KEY-----\nthat is all`),
      ],
    };
    const { value, hits } = all.maskMessage(msg, scope);
    expect(texts(value)).toEqual([
      'deploy key:\n[masked:private-key]',
      '[masked:private-key]',
      '[masked:private-key]',
      '[masked:private-key]\nthat is all',
    ]);
    expect(hits.map((h) => h.detector)).toEqual(Array(4).fill('private-key'));
  });

  it('masks a key sent as an array of lines, a short last line included', () => {
    const key = ['-----BEGIN PRIVATE KEY-----', ...lines, '-----END PRIVATE KEY-----'];
    const { value } = all.maskMessage({ structuredContent: { key, owner: 'ops' } }, scope);
    expect(value.structuredContent.key).toEqual(Array(key.length).fill('[masked:private-key]'));
    expect(value.structuredContent.owner).toBe('ops');
  });

  it('masks the body of a key cut off after its BEGIN block (no END), keeping a short word after it', () => {
    const msg = { content: [block('-----BEGIN EC PRIVATE KEY-----'), block(lines[0]!), block('done')] };
    expect(texts(all.maskMessage(msg, scope).value)).toEqual([
      '[masked:private-key]',
      '[masked:private-key]',
      'done',
    ]);
  });

  it('masks the body in embedded resources and JSON-escaped line breaks alike', () => {
    const msg = {
      content: [
        { type: 'resource', resource: { uri: 'file:///k', text: '-----BEGIN PRIVATE KEY-----\\n' } },
        { type: 'resource', resource: { uri: 'file:///k', text: `${lines[0]}\\n${lines[1]}\\n` } },
        block('-----END PRIVATE KEY-----'),
      ],
    };
    const { value } = all.maskMessage(msg, scope);
    expect(value.content[1]).toEqual({
      type: 'resource',
      resource: { uri: 'file:///k', text: '[masked:private-key]' },
    });
  });

  it('leaves base64 that is not between an open BEGIN and its END alone', () => {
    const image = { type: 'image', mimeType: 'image/png', data: lines[0] };
    const cases: unknown[][] = [
      // No BEGIN before it.
      [block(lines[0]!), block(lines[1]!)],
      // A whole key before it: nothing left open.
      [block(`-----BEGIN PRIVATE KEY-----\n${lines[0]}\n-----END PRIVATE KEY-----`), block(lines[1]!)],
      // Prose between the BEGIN block and the base64.
      [block('-----BEGIN PRIVATE KEY-----'), block('and now a picture:'), block(lines[1]!)],
      // An image (its data is binary, never masked) ends the run.
      [block('-----BEGIN PRIVATE KEY-----'), image, block(lines[1]!)],
      // The BEGIN of something else.
      [block('-----BEGIN CERTIFICATE-----'), block(lines[0]!), block('-----END CERTIFICATE-----')],
    ];
    for (const content of cases) {
      const { value } = all.maskMessage({ content }, scope);
      const out = (value as { content: unknown[] }).content;
      for (let i = 1; i < content.length; i++) expect(out[i]).toEqual(content[i]);
    }
  });

  it('does not carry an open key from one message to the next', () => {
    all.maskMessage({ content: [block('-----BEGIN PRIVATE KEY-----')] }, scope);
    const next = { content: [block(lines[0]!)] };
    expect(all.maskMessage(next, scope).value).toBe(next);
  });
});

describe('an e-mail address percent-encoded in a URL', () => {
  it('masks bob%40example.com, keeping the rest of the URL', () => {
    expect(mask('https://crm.example/search?email=bob%40example.com&page=2').text).toBe(
      'https://crm.example/search?email=[masked:email]&page=2',
    );
  });

  it('leaves other percent escapes and a %40 without an address alone', () => {
    for (const s of ['save 50%40 today', 'a%40b', 'https://x.example/a%20b%40', '%40handle.'])
      expect(mask(s)).toEqual({ text: s, hits: [] });
  });
});

describe('the new paths stay linear on hostile 100 KB inputs', () => {
  const n = 100_000;
  const b64 = 'QUFB'.repeat(16);
  it.each<[string, unknown]>([
    ['fullwidth digit groups', '４１１１ '.repeat(n / 5)],
    ['mathematical digits', '𝟒'.repeat(n / 2)],
    ['Arabic-Indic digit groups', '٤١١١\u00A0'.repeat(n / 5)],
    ['zero-width spaces', '\u200B'.repeat(n)],
    ['soft hyphens between letters', 'a\u00AD'.repeat(n / 2)],
    ['look-alike dots after an at sign', `a@${'b．'.repeat(n / 2)}`],
    ['escaped fullwidth digits', '\\uff14'.repeat(n / 6)],
    ['percent-encoded at signs', 'a%40'.repeat(n / 4)],
    ['a BEGIN and 2 000 base64 lines, no END', ['-----BEGIN PRIVATE KEY-----', ...Array(2000).fill(b64)]],
    [
      'BEGIN elements each followed by short base64',
      Array.from({ length: 4000 }, (_, i) => (i % 2 === 0 ? '-----BEGIN PRIVATE KEY-----' : 'QUFB')),
    ],
  ])('%s', (_name, text) => {
    const start = cpuStart();
    all.maskMessage({ text }, scope);
    expect(cpuMs(start)).toBeLessThan(LINEAR_BUDGET_MS);
  });
});
