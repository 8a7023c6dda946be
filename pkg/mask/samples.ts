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
  'password-assignment': [
    'password=hunter2',
    '"password": "s3cr3t!"',
    'SECRET_KEY=abc123xyz',
    'db_password: p4ssw0rd',
  ],
};

/** The clear secret inside each positive sample (what must never appear after masking). */
export function secretOf(detector: string, sample: string): string {
  if (detector === 'azure-sas-token') return sample.slice(sample.indexOf('sig=') + 4);
  if (detector === 'password-assignment') {
    const m = /[:=]\s*"?([^"\s]+)"?$/.exec(sample);
    return m?.[1] ?? sample;
  }
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
  'password-assignment': ['secretary: Bob', 'password reset link sent', 'passes: 3', 'the secret is out'],
};
