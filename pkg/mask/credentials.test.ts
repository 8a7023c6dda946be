import type { MaskingRule } from '../policy/schema.js';
import { credentialToken } from './checks.js';
import { detectorNames, isSensitiveKey, isTokenKey } from './detectors.js';
import { createMasker } from './masker.js';
import { opaqueBearer, positives } from './samples.js';

/**
 * Credentials by name and by format: a `token` key alone masked only when its value reads as a
 * credential (an LLM's logprobs keep their tokens), a credential format named by its detector
 * even under a password-like name, header names in any case, card groups separated by tabs,
 * runs of spaces, underscores or slashes.
 */
const scope = { method: 'tools/call' };
const rule = (name: string, detectors: string[], extra: Partial<MaskingRule> = {}): MaskingRule =>
  ({ name, detectors, ...extra }) as MaskingRule;
const all = createMasker([{ policy: 'p', rule: rule('all', [...detectorNames]) }]);
const onlyNames = createMasker([{ policy: 'p', rule: rule('names', ['password-assignment']) }]);

function structured(masker: typeof all, sc: unknown): { value: unknown; hits: string[] } {
  const { value, hits } = masker.maskMessage({ structuredContent: sc }, scope);
  return { value: value.structuredContent, hits: hits.map((h) => h.detector) };
}
function text(masker: typeof all, t: string): { text: string; hits: string[] } {
  const { value, hits } = masker.maskMessage({ content: [{ type: 'text', text: t }] }, scope);
  return { text: value.content[0]!.text, hits: hits.map((h) => h.detector) };
}

const ghp = positives['github-token']![0]!;
const jwt = positives.jwt![0]!;
const openai = positives['api-key']![0]!;
const akia = positives['aws-access-key']![0]!;
const pem = positives['private-key']![0]!;

describe('a token key alone: masked when its value reads as a credential', () => {
  it('is told apart from names that end in token after another word', () => {
    for (const key of ['token', 'Token', 'TOKEN', 'tOkEn']) {
      expect(isTokenKey(key)).toBe(true);
      expect(isSensitiveKey(key)).toBe(false);
    }
    for (const key of ['access_token', 'sessionToken', 'x-auth-token', '_token', 'Access Token']) {
      expect(isTokenKey(key)).toBe(false);
      expect(isSensitiveKey(key)).toBe(true);
    }
  });

  it('leaves an LLM’s logprobs, a tokenizer’s output and token ids as they are', () => {
    const logprobs = {
      choices: [
        {
          logprobs: {
            content: [
              {
                token: ' the',
                logprob: -0.12,
                bytes: [32, 116, 104, 101],
                top_logprobs: [
                  { token: 'a', logprob: -2.3 },
                  { token: '<|endoftext|>', logprob: -9.1 },
                  { token: 'translatesAutoresizingMaskIntoConstraints', logprob: -12 },
                  { token: 'Hello', logprob: -0.3 },
                ],
              },
            ],
          },
        },
      ],
    };
    const tokenizer = {
      tokens: [
        { token: '▁the', id: 262 },
        { token: 'ing', id: 278 },
        { token: '2024', id: 2024 },
      ],
    };
    // Text Generation Inference's stream: `token` holds an object; a token id is a number.
    const tgi = { token: { id: 464, text: 'The', logprob: -0.1, special: false }, ids: { token: 198 } };
    for (const masker of [all, onlyNames]) {
      for (const v of [logprobs, tokenizer, tgi]) {
        const out = structured(masker, v);
        expect(out.value).toBe(v);
        expect(out.hits).toEqual([]);
      }
    }
  });

  it.each([
    ['a GitHub token', ghp, 'github-token'],
    ['a JWT', jwt, 'jwt'],
    ['a bearer credential', `Bearer ${opaqueBearer}`, 'api-key'],
    ['letters and digits', 'a1B2c3D4e5F6g7H8i9J0', 'password-assignment'],
    ['a kubeadm bootstrap token', 'abcdef.0123456789abcdef', 'password-assignment'],
    ['hex', '5f0c8b7e2a91d3c4e8f7', 'password-assignment'],
    ['random letters', 'xKpQmZvLwRtYbNcJhGfD', 'password-assignment'],
    ['a one-time code', '482913', 'password-assignment'],
  ])('masks %s whole, named by its format when a detector knows it', (_name, value, detector) => {
    for (const key of ['token', 'Token', 'TOKEN']) {
      const out = structured(all, { [key]: value, logprob: -0.5 });
      expect(out.value).toEqual({ [key]: `[masked:${detector}]`, logprob: -0.5 });
      expect(out.hits).toEqual([detector]);
    }
  });

  it('masks known formats by shape alone when only password-assignment is on', () => {
    for (const value of [ghp, jwt, `Bearer ${opaqueBearer}`, 'a1B2c3D4e5F6g7H8i9J0']) {
      expect(structured(onlyNames, { token: value }).value).toEqual({
        token: '[masked:password-assignment]',
      });
    }
  });

  it('masks a finding inside a token that is no credential as in any string', () => {
    expect(structured(all, { token: 'mail bob@example.com' }).value).toEqual({
      token: 'mail [masked:email]',
    });
  });

  it('keeps a parameter named token a schema and masks its values', () => {
    const schema = { type: 'object', properties: { token: { type: 'string', default: 'Hello' } } };
    expect(structured(all, { inputSchema: schema }).value).toEqual({
      inputSchema: {
        type: 'object',
        properties: { token: { type: 'string', default: '[masked:password-assignment]' } },
      },
    });
  });

  it('in text: `token` alone by its value, a token name after a word always', () => {
    expect(text(all, '{"token": " the", "logprob": -0.12}').text).toBe('{"token": " the", "logprob": -0.12}');
    expect(text(all, 'token: Hello\nTOKEN=ing').hits).toEqual([]);
    expect(text(all, '{"token": "a1B2c3D4e5F6g7H8i9J0"}').text).toBe(
      '{"token": "[masked:password-assignment]"}',
    );
    expect(text(all, `TOKEN=${ghp}`).text).toBe('TOKEN=[masked:github-token]');
    expect(text(all, 'Access Token: hello\nx-auth-token: abc').text).toBe(
      'Access Token: [masked:password-assignment]\nx-auth-token: [masked:password-assignment]',
    );
    // A refused `token` value running to the end of its line does not hide a credential in it.
    expect(text(all, '{\\"token\\": \\"x y", "access_token": "opaque-0123"}').text).toBe(
      '{\\"token\\": \\"x y", "access_token": "[masked:password-assignment]"}',
    );
  });

  it.each([
    [' the', false],
    ['Hello', false],
    ['<|begin_of_text|>', false],
    ['translatesAutoresizingMaskIntoConstraints', false],
    ['________________', false],
    ['12345', false],
    ['abc123', false],
    ['1.2.3.4.5.6.7.8.9', false],
    ['Bearer tokens', false],
    ['482913', true],
    ['a1B2c3D4e5F6g7H8i9J0', true],
    ['xKpQmZvLwRtYbNcJhGfD', true],
    ['Bearer abcdefghijklmnop1', true],
    [`basic ${Buffer.from('u:p').toString('base64')}`, true],
  ])('credentialToken(%j) is %s', (v, want) => {
    expect(credentialToken(v)).toBe(want);
  });
});

describe('a credential format under a password-like name is named by its detector', () => {
  it.each([
    ['password', openai, 'api-key'],
    ['client_secret', ghp, 'github-token'],
    ['api_key', akia, 'aws-access-key'],
    ['secret', pem, 'private-key'],
    ['access_token', jwt, 'jwt'],
    ['Authorization', `Bearer ${jwt}`, 'jwt'],
    ['dbPassword', `prefix ${ghp}`, 'github-token'],
    ['password', 'hunter2', 'password-assignment'],
  ])('%s: %s', (key, value, detector) => {
    const out = structured(all, { [key]: value });
    expect(out.value).toEqual({ [key]: `[masked:${detector}]` });
    expect(out.hits).toEqual([detector]);
  });

  it('only by an enabled detector; a list or object stays password-assignment', () => {
    expect(structured(onlyNames, { password: openai }).value).toEqual({
      password: '[masked:password-assignment]',
    });
    expect(structured(all, { secrets: [ghp], token: { a: 1 } }).value).toEqual({
      secrets: '[masked:password-assignment]',
      token: { a: 1 },
    });
  });

  it('with the replacement of the rule whose detector named it', () => {
    const two = createMasker([
      { policy: 'p', rule: rule('names', ['password-assignment']) },
      { policy: 'q', rule: rule('keys', ['api-key'], { replacement: '<{name}>' }) },
    ]);
    const { value, hits } = two.maskMessage({ structuredContent: { password: openai, pwd: 'x' } }, scope);
    expect(value.structuredContent).toEqual({ password: '<api-key>', pwd: '[masked:password-assignment]' });
    expect(hits).toEqual([
      { policy: 'q', detector: 'api-key' },
      { policy: 'p', detector: 'password-assignment' },
    ]);
  });

  it('in a schema under a password-like name: the schema stays, a default is named by its format', () => {
    const schema = { properties: { password: { type: 'string', default: ghp, examples: ['hunter2'] } } };
    expect(structured(all, schema).value).toEqual({
      properties: {
        password: {
          type: 'string',
          default: '[masked:github-token]',
          examples: '[masked:password-assignment]',
        },
      },
    });
  });

  it('in text, whatever order the rule lists its detectors in', () => {
    const reversed = createMasker([
      { policy: 'p', rule: rule('r', ['password-assignment', 'github-token', 'api-key', 'jwt']) },
    ]);
    for (const masker of [all, reversed]) {
      expect(text(masker, `password=${ghp}`).text).toBe('password=[masked:github-token]');
      expect(text(masker, `OPENAI_API_KEY="${openai}"`).text).toBe('OPENAI_API_KEY="[masked:api-key]"');
      expect(text(masker, `authorization: Bearer ${jwt}`).text).toBe('authorization: Bearer [masked:jwt]');
      expect(text(masker, 'password=hunter2').text).toBe('password=[masked:password-assignment]');
    }
  });
});

describe('header names in text, in any case', () => {
  const basic = Buffer.from('svc:hunter2').toString('base64');
  it.each([
    [
      'AUTHORIZATION: Basic x',
      `AUTHORIZATION: Basic ${basic}`,
      'AUTHORIZATION: Basic [masked:password-assignment]',
    ],
    [
      'a lowercase scheme',
      `authorization: basic ${basic}`,
      'authorization: basic [masked:password-assignment]',
    ],
    [
      'PROXY-AUTHORIZATION',
      'PROXY-AUTHORIZATION: token 9f8e7d6c5b4a39281706',
      'PROXY-AUTHORIZATION: token [masked:password-assignment]',
    ],
    [
      'Proxy-AUTHORIZATION',
      'Proxy-AUTHORIZATION: BEARER 9f8e7d6c5b4a39281706',
      'Proxy-AUTHORIZATION: BEARER [masked:password-assignment]',
    ],
    ['mixed case', 'AuThOrIzAtIoN: 9f8e7d6c5b4a39281706', 'AuThOrIzAtIoN: [masked:password-assignment]'],
    ['COOKIE', 'COOKIE: a=b', 'COOKIE: [masked:password-assignment]'],
    ['SET-COOKIE', 'SET-COOKIE: sid=8f14e45f; Path=/', 'SET-COOKIE: [masked:password-assignment]'],
    [
      'cOOkie',
      'GET / HTTP/1.1\ncOOkie: sid=1\nHost: x',
      'GET / HTTP/1.1\ncOOkie: [masked:password-assignment]\nHost: x',
    ],
  ])('%s', (_name, t, want) => {
    expect(text(all, t).text).toBe(want);
    expect(text(onlyNames, t).text).toBe(want);
  });

  it('also in long text (the anchor searched in both cases)', () => {
    const pad = 'plain words '.repeat(120);
    expect(text(onlyNames, `${pad}AUTHORIZATION: Basic ${basic} ${pad}COOKIE: a=b`).text).toBe(
      `${pad}AUTHORIZATION: Basic [masked:password-assignment] ${pad}COOKIE: [masked:password-assignment]`,
    );
  });

  it.each([
    'AUTHORIZATION: required',
    'COOKIE: a small text file',
    'AUTHORIZATION_URL: https://x/y',
    'X-COOKIE: a=b',
  ])('leaves %s alone', (t) => {
    expect(text(all, t).text).toBe(t);
  });
});

describe('card numbers with tabs, runs of spaces, underscores or slashes between the groups', () => {
  const cc = createMasker([{ policy: 'p', rule: rule('cc', ['credit-card']) }]);
  it.each([
    '4111\t1111\t1111\t1111',
    '4111  1111  1111  1111',
    '4111 \t 1111\t1111    1111',
    '3782\t822463\t10005',
    '4111_1111_1111_1111',
    '3782_822463_10005',
    '4111/1111/1111/1111',
  ])('masks %j', (card) => {
    expect(text(cc, `card ${card}.`).text).toBe('card [masked:credit-card].');
    expect(text(cc, `${'plain words '.repeat(30)}card ${card}.`).hits).toEqual(['credit-card']);
  });

  it('masks a tab JSON text still holds escaped (a TSV row in a JSON document)', () => {
    const doc = JSON.stringify({ row: 'alice\t4111\t1111\t1111\t1111' });
    expect(text(cc, doc).text).toBe('{"row":"alice\\t[masked:credit-card]"}');
  });

  it.each([
    '4111\t1111\t1111\t1112',
    '4111     1111 1111 1111',
    'IMG_4111_1111_1111_1111',
    '4111_1111_1111_1111_2',
    'x4111_1111_1111_1111',
    'a/4111/1111/1111/1111',
    '4111/1111/1111/1111/x',
    '4111/1111/1111/1111.jpg',
    'host:4111/1111/1111/1111',
    '4111/1111/1111/1112',
    '4111/1111/1111 1111',
    '4111/1111/1111',
    '2026/11/30',
    '3/4 of 1234/5678',
  ])('leaves %j alone', (near) => {
    expect(text(cc, `v ${near} x`).hits).toEqual([]);
  });
});
