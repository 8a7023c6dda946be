/**
 * Realistic samples for every built-in detector (built at runtime so no scanner mistakes this
 * file for leaked credentials). Used by the unit tests, the integration tests and the benchmark.
 */
const b64url = (o: object): string => Buffer.from(JSON.stringify(o)).toString('base64url');

const pemLines = [
  '-----BEGIN RSA PRIVATE KEY-----',
  'MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun',
  'VTLw7onLRnrq0/IzW7yWR7QkrmBL7jTKEn5u+qKhbwKfBstIs+bMY2Zkp18gnTxK',
  '-----END RSA PRIVATE KEY-----',
];
const pem = pemLines.join('\n');
/** The second half of a key split over two content blocks: body and END, no BEGIN. */
const pemTail = pemLines.slice(1).join('\n');

/** 48 characters of a random-looking key body (mixed case and digits). */
const body48 = 'aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zA5bC7dE9fG1hJ3';
/** A bearer credential as an OAuth server issues it (opaque, not a JWT). */
export const opaqueBearer = 'ya29.a0AfH6SMBx3kq9' + 'Zt7Lm2Pq';

/** detector → values that must be masked (each appears whole in the masked output as a token). */
export const positives: Record<string, string[]> = {
  email: [
    'bob.smith@example.com',
    'ops+alerts@mail.contoso.co.uk',
    'alice\uFF20example.com',
    'carol\uFE6Bexample.org',
  ],
  phone: ['+1 415 555 2671', '+44 20 7946 0958', '(415) 555-2671', '415-555-2671'],
  'credit-card': [
    '4111111111111111',
    '4111 1111 1111 1111',
    '5500-0000-0000-0004',
    '3782 822463 10005',
    '4111 1111-1111 1111',
    '4111.1111.1111.1111',
    '4111\t1111\t1111\t1111',
    '4111  1111  1111  1111',
    '4111_1111_1111_1111',
    '4111/1111/1111/1111',
  ],
  iban: ['DE89 3704 0044 0532 0130 00', 'GB82WEST12345698765432', 'FR1420041010050500013M02606'],
  'us-ssn': ['123-45-6789', '078-05-1120', '123 45 6789'],
  jwt: [
    `${b64url({ alg: 'HS256', typ: 'JWT' })}.${b64url({ sub: '1234567890', name: 'Jane' })}.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c`,
  ],
  'private-key': [pem, pemTail],
  'aws-access-key': ['AKIA' + 'IOSFODNN7EXAMPLE', 'ASIA' + 'ZZ4EXAMPLE7ABCDE'],
  'azure-storage-key': [
    'Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==',
  ],
  'azure-sas-token': [
    'sv=2022-11-02&ss=b&srt=o&sp=r&se=2026-12-01T00:00:00Z&sig=AbCdEfGhIjKlMnOpQrStUv%2BwXyZ%3D',
  ],
  'github-token': [
    'ghp_' + 'R9aK2bQ7xLm4Tz8VwN3cYp6Hd1Fg5Js0Ue2i',
    'github_pat_' + '11ABCDEFG0aBcDeFgHiJkL_mNoPqRsTuVwXyZ0123456789aBcDeFgHiJkLmNoPqRsTuVwXyZ01234',
  ],
  'slack-token': ['xoxb-' + '1234567890-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx'],
  'api-key': [
    `sk-proj-${body48}${body48.slice(0, 20)}`,
    `sk-svcacct-${body48}`,
    `sk-${body48}`,
    `sk-ant-api03-${body48}${body48}AA`,
    `sk-ant-admin01-${body48}${body48}AA`,
    `sk_live_${body48.slice(0, 24)}`,
    `rk_live_${body48.slice(0, 24)}`,
    `sk_test_${body48.slice(0, 24)}`,
    `whsec_${body48.slice(0, 32)}`,
    `gsk_${body48}abcd`,
    `AIza${body48.slice(0, 35)}`,
    `glpat-${body48.slice(0, 20)}`,
    `npm_${body48.slice(0, 36)}`,
    `pypi-AgEIcHlwaS5vcmc${body48}${body48.slice(0, 20)}`,
    `hf_${body48.slice(0, 34)}`,
    `SG.${body48.slice(0, 22)}.${body48.slice(0, 43)}`,
    `xai-${body48}${body48.slice(0, 32)}`,
    `Bearer ${opaqueBearer}`,
  ],
  'password-assignment': [
    'password=hunter2',
    '"password": "s3cr3t!"',
    'SECRET_KEY=abc123xyz',
    'db_password: p4ssw0rd',
    'access_token=opaque0123456789',
    'refresh_token: 1//0gLx7yN2pQ8rS3tU',
    'AWS_SESSION_TOKEN=IQoJb3JpZ2luX2VjEJr',
    '"sessionToken": "FwoGZXIvYXdzEBYaD"',
    'X-Auth-Token: 5f0c8b7e2a',
    `Authorization: Basic ${Buffer.from('admin:hunter2').toString('base64')}`,
    'Cookie: session=8f14e45fceea167a',
    'X-API-Key: 9a8b7c6d5e',
    `PROXY-AUTHORIZATION: Basic ${Buffer.from('svc:hunter2').toString('base64')}`,
    'COOKIE: session=8f14e45fceea167a',
    '"token": "a1B2c3D4e5F6g7H8i9J0"',
    // `token` alone in text, whatever its value.
    'token: hunter2',
    'TOKEN=hunter2',
    '"token": "shortpw123"',
  ],
};

/** The clear secret inside each positive sample (what must never appear after masking). */
export function secretOf(detector: string, sample: string): string {
  if (detector === 'azure-sas-token') return sample.slice(sample.indexOf('sig=') + 4);
  if (detector === 'password-assignment') {
    const m = /[:=]\s*(?:Basic )?"?([^"\s]+)"?$/.exec(sample);
    return m?.[1] ?? sample;
  }
  if (detector === 'api-key' && sample.startsWith('Bearer ')) return sample.slice(7);
  return sample;
}

/** detector → realistic near-misses that must stay as they are. */
export const negatives: Record<string, string[]> = {
  email: [
    '@handle on social',
    'user@localhost',
    'a @ b.com',
    'version@1.2',
    'team\uFF20 chat',
    '\uFF20handle',
  ],
  phone: ['2026-11-30', 'build 1.2.3.4', 'order 12345678', 'call ext. 4412', '10.0.0.1'],
  'credit-card': [
    '4111111111111112',
    '1732942568000',
    '0000000000000000',
    'id 123456789012',
    '4111 1111-1111 1112',
    'v4111.1111.1111.1111.2',
    '2026.1130.1234.5678',
    '4111111111111111.25',
    'IMG_4111_1111_1111_1111.jpg',
    'img/4111/1111/1111/1111',
    '4111/1111/1111/1111.jpg',
    'localhost:4111/1111/1111/1111',
    '4111/1111/1111',
    '2026/11/30',
    '4111     1111 1111 1111',
  ],
  iban: ['DE89 3704 0044 0532 0130 01', 'ABCD1234', 'XX00 0000 0000 0000'],
  'us-ssn': [
    '000-12-3456',
    '666-12-3456',
    '123-00-6789',
    '123-45-0000',
    '2026-11-3000',
    '000 12 3456',
    '123 45 67890',
    '1 123 45 6789',
    '123 45 6789 12',
    '123 456 789',
    '415 555 2671',
  ],
  jwt: [`${b64url({ not: 'a jwt' })}.${b64url({ a: 1 })}.abcdefgh`, 'eyJ alone'],
  'private-key': [
    '-----BEGIN PUBLIC KEY-----\nMIIBIjANBg\n-----END PUBLIC KEY-----',
    '-----BEGIN CERTIFICATE-----',
    'MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAu1SU1LfVLPHCozMxH2Mo\n-----END PUBLIC KEY-----',
    '-----END CERTIFICATE-----',
  ],
  'aws-access-key': ['AKIA123', 'AKIAIOSFODNN7EXAMPLEXYZ', 'MAKIAIOSFODNN7EXAMPLE'],
  'azure-storage-key': ['AccountName=devstore;', 'a'.repeat(87) + '='],
  'azure-sas-token': ['https://example.com/search?sig=abcdefghijkl', 'signature=abcdefghijklmnop'],
  'github-token': ['ghp_short', 'gh_' + 'a'.repeat(36), 'the ghp_ prefix'],
  'slack-token': ['xoxz-1234567890-abc', 'xoxb-short'],
  'api-key': [
    // Too short, not standing alone, other prefixes, no uppercase letter, public keys, prose.
    `sk-${body48.slice(0, 40)}`,
    `xsk-proj-${body48}`,
    'sk-learn and task-force',
    `pk_live_${body48.slice(0, 24)}`,
    `sk_live_${'a'.repeat(24)}`,
    `glpat-${'abcd'.repeat(5)}`,
    'glpat-short',
    `npm_${body48.slice(0, 30)}`,
    `hf_${body48.slice(0, 30)}`,
    `AIza${body48.slice(0, 30)}`,
    'SG.short.key',
    'Bearer tokens are sent in a header',
    'Bearer authentication-required',
    `SK${'0123456789abcdef'.repeat(2)}`,
  ],
  'password-assignment': [
    'secretary: Bob',
    'password reset link sent',
    'passes: 3',
    'the secret is out',
    'max_tokens=1024',
    'nextPageToken=CiAKGjBpNDd2Nmp2Zml2cXRwYjBpOXA',
    'progressToken: 7',
    'token_count=12',
    'tokenizer: bpe',
    'eos_token: </s>',
    'Authorization: required for every call',
    'Authorization: Bearer tokens are required',
    'authorization_url: https://example.com/oauth/authorize',
    'Cookie: a small text file',
    'cookie_policy: strict',
    'COOKIE: a small text file',
    'AUTHORIZATION: required',
  ],
};
