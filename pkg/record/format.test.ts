import { GENESIS, sealLine, sealLineHashed, sealValid, sha256Hex } from './format.js';

describe('line sealing', () => {
  const obj = {
    seq: 2,
    prev: GENESIS,
    type: 'message',
    message: { text: 'a "quoted" ,"sha":"x" value', n: 1 },
  };

  it('sealLineHashed writes the same bytes as sealLine and returns their hash', () => {
    const { line, hash } = sealLineHashed(obj);
    expect(line).toBe(sealLine(obj));
    expect(hash).toBe(sha256Hex(line));
    const big = { ...obj, message: { text: 'x'.repeat(200_000) } };
    expect(sealLineHashed(big).hash).toBe(sha256Hex(sealLine(big)));
  });

  it('a seal holds for the untouched line and breaks on any change, even payloads that mimic it', () => {
    const line = sealLine(obj);
    expect(sealValid(line)).toBe(true);
    expect(sealValid(line.replace('quoted', 'quotes'))).toBe(false);
    expect(sealValid(line.slice(0, -1))).toBe(false);
    expect(sealValid(`${line} `)).toBe(false);
    expect(sealValid('{}')).toBe(false);
    expect(GENESIS).toBe(sha256Hex(''));
  });
});
