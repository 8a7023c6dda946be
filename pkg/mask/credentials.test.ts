import { parseJson } from '../json.js';
import type { MaskingRule } from '../policy/schema.js';
import { credentialToken } from './checks.js';
import { detectorNames, isSensitiveKey, isTokenKey, isTokenRecord } from './detectors.js';
import { createMasker } from './masker.js';
import { opaqueBearer, positives } from './samples.js';

/**
 * Credentials by name and by format: a `token` key alone masked unless its object is an LLM's or a
 * tokenizer's token record (logprobs keep their tokens), a credential format named by its detector
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

describe('a token key alone: masked unless its object is an LLM’s or a tokenizer’s token record', () => {
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

  // Credentials 4fa4786 let through because they did not read as one: masked whole again,
  // whatever their type, as any value under a password-like name.
  it.each<[string, Record<string, unknown>, unknown]>([
    ['a long password', { token: 'hunter2hunter2' }, { token: '[masked:password-assignment]' }],
    ['12 letters and digits', { token: 'Ab3dEf9hIj2k' }, { token: '[masked:password-assignment]' }],
    ['Token, a short password', { Token: 'mysecret' }, { Token: '[masked:password-assignment]' }],
    ['a short sk- key', { token: 'sk-abc' }, { token: '[masked:password-assignment]' }],
    [
      'client id and secret',
      { token: 'client123:s3cretValueHere456' },
      { token: '[masked:password-assignment]' },
    ],
    ['punctuation', { token: 's3cr3t!P@ssw0rd#2024$xyz' }, { token: '[masked:password-assignment]' }],
    ['a base32 TOTP seed', { token: 'JBSWYDPEHPKPXPQRABCD' }, { token: '[masked:password-assignment]' }],
    ['a number', { token: 48291357 }, { token: '[masked:password-assignment]' }],
    ['a list', { token: ['s3cr3tT0kenValue123!'] }, { token: '[masked:password-assignment]' }],
    ['a boolean', { token: true }, { token: '[masked:password-assignment]' }],
    ['a short bearer credential', { token: 'Bearer hunter2' }, { token: '[masked:password-assignment]' }],
    [
      'a kubeconfig user',
      { users: [{ name: 'kubeadm', user: { token: 'kubeadm-bootstrap-secret' } }] },
      { users: [{ name: 'kubeadm', user: { token: '[masked:password-assignment]' } }] },
    ],
    ['an API’s {id, token}', { id: 7, token: 'hunter2' }, { id: 7, token: '[masked:password-assignment]' }],
    ['an object', { token: { a: 1 } }, { token: '[masked:password-assignment]' }],
    // Members of another type than in a token record do not make one.
    [
      'an upload’s byte count',
      { token: 'hunter2', bytes: 1024 },
      { token: '[masked:password-assignment]', bytes: 1024 },
    ],
    [
      'a logprob that is no number',
      { token: 'hunter2', logprob: 'high' },
      { token: '[masked:password-assignment]', logprob: 'high' },
    ],
    [
      'token_id, tokenId and rank are no token record',
      { token: 'hunter2', token_id: 7, tokenId: 7, rank: 1 },
      { token: '[masked:password-assignment]', token_id: 7, tokenId: 7, rank: 1 },
    ],
    // A tokenizer's `{token, id}` is the shape of a credential answer: masked (fail safe).
    [
      'a tokenizer piece with its id only',
      { token: '▁the', id: 262 },
      { token: '[masked:password-assignment]', id: 262 },
    ],
    [
      'a token id outside a record',
      { ids: { token: 198 } },
      { ids: { token: '[masked:password-assignment]' } },
    ],
  ])('masks %s', (_name, value, want) => {
    for (const masker of [all, onlyNames]) {
      const out = structured(masker, value);
      expect(out.value).toEqual(want);
      expect(out.hits).toEqual(['password-assignment']);
    }
  });

  it('names a credential format under token by its detector, as under password', () => {
    expect(structured(all, { token: ghp }).value).toEqual({ token: '[masked:github-token]' });
    expect(structured(all, { user: { token: jwt } }).value).toEqual({ user: { token: '[masked:jwt]' } });
    expect(structured(onlyNames, { token: ghp }).value).toEqual({ token: '[masked:password-assignment]' });
  });

  it('leaves LLM logprobs and token records as they are', () => {
    // OpenAI chat completions (and Ollama, vLLM): logprob, bytes, top_logprobs.
    const openaiLogprobs = {
      choices: [
        {
          logprobs: {
            content: [
              {
                token: ' the',
                logprob: -0.12,
                bytes: [32, 116, 104, 101],
                top_logprobs: [
                  { token: 'a', logprob: -2.3, bytes: [97] },
                  { token: '<|endoftext|>', logprob: -9.1, bytes: null },
                  { token: 'translatesAutoresizingMaskIntoConstraints', logprob: -12, bytes: [] },
                  { token: 'Hello', logprob: -0.3, bytes: [72] },
                  { token: 'hunter2', logprob: -14 },
                ],
              },
            ],
          },
        },
      ],
    };
    const llamaCpp = {
      completion_probabilities: [
        {
          id: 450,
          token: ' The',
          bytes: [32, 84, 104, 101],
          prob: 0.9,
          top_probs: [{ id: 1, token: 'A', prob: 0.1 }],
        },
      ],
    };
    const vertex = {
      logprobsResult: {
        chosenCandidates: [{ token: 'The', tokenId: 450, logProbability: -0.2 }],
        topCandidates: [{ candidates: [{ token: 'A', tokenId: 1, logProbability: -2.1 }] }],
      },
    };
    const cohere = { token_likelihoods: [{ token: 'Hello', likelihood: -0.4 }] };
    const probability = { tokens: [{ token: 'ing', probability: 0.7 }] };
    // Text Generation Inference's stream: `token` holds a token record; a special token.
    const tgi = {
      index: 1,
      token: { id: 464, text: 'The', logprob: -0.1, special: false },
      generated_text: null,
      details: { tokens: [{ token: '</s>', id: 2, special: true }] },
    };
    // A 19-digit logprob is kept as its text (a RawNumber): still a number.
    const raw = parseJson('{"token":"the","logprob":-0.12345678901234567891}') as object;
    for (const masker of [all, onlyNames]) {
      for (const v of [openaiLogprobs, llamaCpp, vertex, cohere, probability, tgi, raw]) {
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
  ])(
    'masks %s whole even in a token record, named by its format when a detector knows it',
    (_name, value, detector) => {
      for (const key of ['token', 'Token', 'TOKEN']) {
        const out = structured(all, { [key]: value, logprob: -0.5 });
        expect(out.value).toEqual({ [key]: `[masked:${detector}]`, logprob: -0.5 });
        expect(out.hits).toEqual([detector]);
      }
      expect(structured(onlyNames, { token: value, top_logprobs: [] }).value).toEqual({
        token: '[masked:password-assignment]',
        top_logprobs: [],
      });
    },
  );

  it('in a token record, masks a finding inside a token that is no credential as in any string', () => {
    expect(structured(all, { token: 'mail bob@example.com', logprob: -1 }).value).toEqual({
      token: 'mail [masked:email]',
      logprob: -1,
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

  it.each([
    [
      'a query parameter',
      'GET /cb?token=shortpw123 HTTP/1.1',
      'GET /cb?token=[masked:password-assignment] HTTP/1.1',
    ],
    [
      'after &',
      'https://x.example/a?b=1&token=hunter2',
      'https://x.example/a?b=1&token=[masked:password-assignment]',
    ],
    ['TOKEN=', 'TOKEN=hunter2', 'TOKEN=[masked:password-assignment]'],
    ['TOKEN= in a .env file', 'HOST=db\nTOKEN=hunter2\n', 'HOST=db\nTOKEN=[masked:password-assignment]\n'],
    ['Token: ', 'Token: hunter2', 'Token: [masked:password-assignment]'],
    ['token:', 'token:hunter2', 'token:[masked:password-assignment]'],
    ['JSON text', '{"token": "hunter2hunter2"}', '{"token": "[masked:password-assignment]"}'],
    ['a format', `TOKEN=${ghp}`, 'TOKEN=[masked:github-token]'],
    [
      'a name with a word before',
      'Access Token: hello\nx-auth-token: abc',
      'Access Token: [masked:password-assignment]\nx-auth-token: [masked:password-assignment]',
    ],
    // The object around a `"token"` in JSON text is not read: logprobs as text lose their tokens.
    [
      'logprobs as JSON text',
      '{"token": " the", "logprob": -0.12}',
      '{"token": "[masked:password-assignment]", "logprob": -0.12}',
    ],
  ])('in text, masks token alone whatever its value: %s', (_name, t, want) => {
    expect(text(all, t).text).toBe(want);
    expect(text(onlyNames, t).text).toBe(
      want.replace('[masked:github-token]', '[masked:password-assignment]'),
    );
  });

  it('in text, leaves names that are no credential alone', () => {
    for (const t of [
      'max_tokens=1024',
      'nextPageToken=abc',
      'token_count=12',
      'tokens: 3',
      'tokenizer: bpe',
    ]) {
      expect(text(all, t).text).toBe(t);
    }
  });

  it.each<[string, Record<string, unknown>, boolean]>([
    ['logprob', { token: 'a', logprob: -1 }, true],
    ['top_logprobs', { token: 'a', top_logprobs: [] }, true],
    ['bytes, a list', { token: 'a', bytes: [97] }, true],
    ['prob', { token: 'a', prob: 0.5 }, true],
    ['top_probs', { token: 'a', top_probs: [] }, true],
    ['probability', { token: 'a', probability: 0.5 }, true],
    ['logProbability', { token: 'a', logProbability: -1 }, true],
    ['likelihood', { token: 'a', likelihood: -1 }, true],
    ['special', { token: 'a', special: false }, true],
    ['bytes, a number', { token: 'a', bytes: 1 }, false],
    ['logprob, a string', { token: 'a', logprob: '-1' }, false],
    ['logprob, null', { token: 'a', logprob: null }, false],
    ['special, a string', { token: 'a', special: 'no' }, false],
    ['id', { token: 'a', id: 1 }, false],
    ['token_id', { token: 'a', token_id: 1 }, false],
    ['tokenId', { token: 'a', tokenId: 1 }, false],
    ['rank', { token: 'a', rank: 1 }, false],
    ['Logprob (another case)', { token: 'a', Logprob: -1 }, false],
  ])('isTokenRecord with %s: %s', (_name, obj, want) => {
    expect(isTokenRecord(obj)).toBe(want);
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
  ])('credentialToken(%j) is %s (a token in a token record)', (v, want) => {
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
    expect(structured(all, { secrets: [ghp], token: { a: ghp } }).value).toEqual({
      secrets: '[masked:password-assignment]',
      token: '[masked:password-assignment]',
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
