import { parseJson } from '../json.js';
import { argumentsDigest, canonicalJson } from './digest.js';

describe('canonicalJson of numbers a double cannot carry', () => {
  const args = (json: string): unknown => parseJson(json);

  test('is the exact value, never rounded: neighbours get different digests', () => {
    expect(canonicalJson(args('{"id":12345678901234567890}'))).toBe('{"id":12345678901234567890}');
    expect(argumentsDigest(args('{"id":12345678901234567890}'))).not.toBe(
      argumentsDigest(args('{"id":12345678901234567891}')),
    );
    expect(canonicalJson(args('[0.1234567890123456789,1e400]'))).toBe('[0.1234567890123456789,1e+400]');
  });

  test('one value, one text, whatever its spelling or key order', () => {
    expect(argumentsDigest(args('{"b":1,"a":1.2345678901234567890e19}'))).toBe(
      argumentsDigest(args('{"a":12345678901234567890,"b":1.0}')),
    );
  });

  test('is never the text of an object holding the same digits', () => {
    expect(argumentsDigest(args('{"x":12345678901234567890}'))).not.toBe(
      argumentsDigest({ x: { rawJSON: '12345678901234567890' } }),
    );
  });
});
