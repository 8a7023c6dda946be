import { readFile } from 'node:fs/promises';
import { parseAllDocuments } from 'yaml';
import type { PolicyRule } from './schema.js';
import { policy } from './testing.js';
import { issuerUrlError, jsonPathError, toFieldPath, validatePolicy } from './validate.js';

const base = (rules: PolicyRule[], spec: Record<string, unknown> = {}) => ({
  ...policy('p', rules),
  spec: { podSelector: {}, rules, ...spec },
});
const ok: PolicyRule = { name: 'ok', subjects: [{ any: true }], action: 'allow' };

test('the example policy is valid', async () => {
  const docs = parseAllDocuments(await readFile('examples/policy.yaml', 'utf8')).map((d) => d.toJS());
  expect(docs).toHaveLength(2);
  for (const doc of docs) expect(validatePolicy(doc)).toEqual([]);
});

test('status is not validated: unknown status fields never make a policy invalid', () => {
  const doc = { ...base([ok]), status: { pods: [{ name: 'p', futureField: 1 }], somethingNew: true } };
  expect(validatePolicy(doc)).toEqual([]);
});

test('not an object at all', () => {
  expect(validatePolicy(null)).toEqual([{ path: '', message: 'must be an object (got null)' }]);
  expect(validatePolicy('x')[0]?.message).toMatch(/must be an object/);
});

test('missing and unknown fields name the field and what is expected', () => {
  const issues = validatePolicy({
    apiVersion: 'mcpwarden.io/v1',
    kind: 'MCPPolicy',
    metadata: { name: 'p' },
    spec: { podSelector: {}, rule: [] },
  });
  expect(issues).toEqual(
    expect.arrayContaining([
      { path: 'apiVersion', message: 'must be one of "mcpwarden.io/v1alpha1" (got "mcpwarden.io/v1")' },
      { path: 'spec.rules', message: 'is required' },
      {
        path: 'spec.rule',
        message:
          'is not a known field; expected one of: podSelector, mode, identity, rules, masking, recording',
      },
    ]),
  );
});

test('every problem is reported at once, with paths like spec.rules[1].match.when', () => {
  const issues = validatePolicy(
    base([
      ok,
      {
        name: 'two',
        subjects: [{ group: 'g' }],
        match: { when: 'args.x ==', tools: ['a\\'] },
        action: 'allow',
      },
      {
        name: 'three',
        subjects: [{ group: 'g' }],
        action: 'approve',
        approval: { approvers: [{ user: 'u' }], timeout: '9d' },
      },
    ]),
  );
  expect(issues).toEqual([
    {
      path: 'spec.rules[2].approval.timeout',
      message: '"9d" is not a duration: a number and a unit (ms, s, m, h), e.g. 90s, 5m, 1h30m',
    },
    { path: 'spec.rules[1].match.tools[0]', message: 'glob "a\\\\" ends with an unfinished escape (\\)' },
    { path: 'spec.rules[1].match.when', message: expect.stringMatching(/^CEL does not parse: /) },
  ]);
});

test('pattern messages say what is expected', () => {
  expect(validatePolicy(base([{ ...ok, name: 'has space' }]))).toEqual([
    {
      path: 'spec.rules[0].name',
      message: `"has space" is not a valid name: letters, digits, '-', '_' and '.', starting and ending with a letter or digit`,
    },
  ]);
  expect(validatePolicy(base([{ ...ok, subjects: [{ serviceAccount: 'Bad/Name' }] }]))).toEqual([
    {
      path: 'spec.rules[0].subjects[0].serviceAccount',
      message: '"Bad/Name" is not a service account: namespace/name or system:serviceaccount:namespace:name',
    },
  ]);
});

test('durations out of range', () => {
  const rule = (timeout: string): PolicyRule => ({
    name: 'a',
    subjects: [{ any: true }],
    action: 'approve',
    approval: { approvers: [{ user: 'u' }], timeout },
  });
  expect(validatePolicy(base([rule('200h')]))).toEqual([
    { path: 'spec.rules[0].approval.timeout', message: '"200h" is too long: at most 168h' },
  ]);
  expect(validatePolicy(base([rule('10ms')]))).toEqual([
    { path: 'spec.rules[0].approval.timeout', message: '"10ms" is too short: at least 1s' },
  ]);
});

test('CEL: type errors, unknown identity fields, non-bool, RE2 literals', () => {
  const when = (w: string) =>
    validatePolicy(base([{ ...ok, match: { when: w } }])).map((i) => `${i.path}: ${i.message}`);
  expect(when('identity.grups.size() > 0')).toEqual([
    expect.stringMatching(/^spec\.rules\[0\]\.match\.when: CEL type error: .*grups/),
  ]);
  // dyn could be a bool at run time: accepted here; a non-bool result is an evaluation error then.
  expect(when('args.n + 1 > 2')).toEqual([]);
  expect(when('args.flag')).toEqual([]);
  expect(when('size(args) + 1')).toEqual(['spec.rules[0].match.when: must evaluate to a bool, not int']);
  expect(when('args.q.matches("(?<=a)b")')).toEqual([
    expect.stringMatching(/regex "\(\?<=a\)b" is not valid RE2 syntax.*lookarounds/),
  ]);
  expect(when('args.q.matches("(?i)ok")')).toEqual([]);
});

test('methods that are never decided are refused in match.methods', () => {
  const methods = (m: string[]) => validatePolicy(base([{ ...ok, match: { methods: m } }]));
  expect(methods(['initialize'])).toEqual([
    { path: 'spec.rules[0].match.methods[0]', message: expect.stringMatching(/never decided/) },
  ]);
  expect(methods(['tools/call', 'tools/list'])).toEqual([
    { path: 'spec.rules[0].match.methods[1]', message: expect.stringMatching(/not decided but filtered/) },
  ]);
  expect(methods(['notifications/*', 'resources/*'])).toEqual([]);
});

test('resource globs: three stars refused', () => {
  expect(validatePolicy(base([{ ...ok, match: { resources: ['file:///***'] } }]))).toEqual([
    {
      path: 'spec.rules[0].match.resources[0]',
      message: 'glob "file:///***" has 3 stars in a row: use * (one segment) or ** (any depth)',
    },
  ]);
});

test('issuers: https, or http on loopback only', () => {
  const issuers = (issuer: string) =>
    validatePolicy(base([ok], { identity: { issuers: [{ issuer, audiences: ['a'] }] } }));
  expect(issuers('https://login.microsoftonline.com/t/v2.0')).toEqual([]);
  expect(issuers('http://127.0.0.1:8400/t/v2.0')).toEqual([]);
  expect(issuers('http://issuer.example/t')).toEqual([
    {
      path: 'spec.identity.issuers[0].issuer',
      message: expect.stringMatching(/http:\/\/ on a non-loopback host/),
    },
  ]);
  expect(issuerUrlError('ftp://x')).toMatch(/must be an https:\/\/ URL/);
  expect(issuerUrlError('not a url')).toMatch(/is not a URL/);
  expect(issuerUrlError('https://login.microsoftonline.com/{tenantid}/v2.0')).toBeUndefined();
});

test('masking: RE2 patterns, empty matches, JSON paths, globs, placeholders', () => {
  const masking = (rule: Record<string, unknown>) =>
    validatePolicy(base([ok], { masking: [{ name: 'm', ...rule }] }));
  expect(masking({ patterns: [{ name: 'bad', regex: '(\\d)\\1' }] })).toEqual([
    {
      path: 'spec.masking[0].patterns[0].regex',
      message: expect.stringMatching(/regex .* is not valid RE2 syntax.*backreferences/),
    },
  ]);
  expect(masking({ patterns: [{ name: 'empty', regex: 'a*' }] })).toEqual([
    { path: 'spec.masking[0].patterns[0].regex', message: 'regex "a*" matches the empty string' },
  ]);
  expect(masking({ fields: ['$.a.b', 'a.b', '$'] })).toEqual([
    { path: 'spec.masking[0].fields[1]', message: expect.stringMatching(/is not a JSON path/) },
    { path: 'spec.masking[0].fields[2]', message: expect.stringMatching(/whole message/) },
  ]);
  expect(masking({ detectors: ['email'], tools: ['ok_*', 'bad\\'] })).toEqual([
    { path: 'spec.masking[0].tools[1]', message: expect.stringMatching(/unfinished escape/) },
  ]);
  expect(masking({ detectors: ['email'], replacement: '<{name}:{hash}:{x}>' })).toEqual([
    { path: 'spec.masking[0].replacement', message: '{hash} needs hash: true' },
    { path: 'spec.masking[0].replacement', message: 'unknown placeholder {x}: use {name}' },
  ]);
  expect(masking({ detectors: ['email'], hash: true, replacement: '<{name}:{hash}>' })).toEqual([]);
});

test('JSON path grammar', () => {
  for (const p of ['$.a', '$.a.b_c', "$['x y']", '$.items[*].email', '$..password', '$.a[0]', '$.*'])
    expect(jsonPathError(p)).toBeUndefined();
  for (const p of ['a', '$a', '$.', '$[x]', '$.a[', "$['x]"]) expect(jsonPathError(p)).toBeDefined();
});

test('toFieldPath', () => {
  expect(toFieldPath('/spec/rules/1/match/when')).toBe('spec.rules[1].match.when');
  expect(toFieldPath('/spec/podSelector/matchLabels/app.kubernetes.io~1name')).toBe(
    'spec.podSelector.matchLabels["app.kubernetes.io/name"]',
  );
  expect(toFieldPath('')).toBe('');
});

test('empty match lists are refused (a rule with tools: [] could never apply)', () => {
  expect(validatePolicy(base([{ ...ok, match: { tools: [] } }]))).toEqual([
    { path: 'spec.rules[0].match.tools', message: 'must have at least 1 item' },
  ]);
});

test('rateLimit: only on allow and approve rules; per between 1s and 24h; requests a positive integer', () => {
  const limited = (extra: Partial<PolicyRule>) => validatePolicy(base([{ ...ok, ...extra }]));
  expect(limited({ rateLimit: { requests: 60, per: '1m' } })).toEqual([]);
  expect(limited({ rateLimit: { requests: 60, per: '1m', by: 'all' } })).toEqual([]);
  expect(limited({ action: 'deny', rateLimit: { requests: 60, per: '1m' } })).toEqual([
    {
      path: 'spec.rules[0].rateLimit',
      message: 'rateLimit limits the calls a rule lets through: allowed on allow and approve rules only',
    },
  ]);
  expect(limited({ rateLimit: { requests: 60, per: '25h' } })).toEqual([
    { path: 'spec.rules[0].rateLimit.per', message: '"25h" is too long: at most 24h' },
  ]);
  expect(limited({ rateLimit: { requests: 60, per: '500ms' } })[0]?.message).toMatch(/too short/);
  expect(limited({ rateLimit: { requests: 0, per: '1m' } })[0]?.path).toBe(
    'spec.rules[0].rateLimit.requests',
  );
  expect(limited({ rateLimit: { requests: 1.5, per: '1m' } })[0]?.path).toBe(
    'spec.rules[0].rateLimit.requests',
  );
  expect(
    limited({ rateLimit: { requests: 1, per: '1m', by: 'session' } as unknown as PolicyRule['rateLimit'] })[0]
      ?.path,
  ).toBe('spec.rules[0].rateLimit.by');
});
