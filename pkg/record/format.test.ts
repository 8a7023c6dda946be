import { GENESIS, sealLine, sealLineHashed, sealOpenBytes, sealValid, sha256Hex } from './format.js';

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
    // Both hashing strategies (one-shot digests for short lines, a copied state for long ones),
    // on each side of the boundary, and with the payload given already serialized.
    for (let n = 900; n < 1200; n += 7) {
      const o = { ...obj, message: { text: `é${'y'.repeat(n)}` } };
      const sealed = sealLineHashed(o);
      expect(sealed.line).toBe(sealLine(o));
      expect(sealed.hash).toBe(sha256Hex(sealed.line));
      expect(sealValid(sealed.line)).toBe(true);
      const { message, ...rest } = o;
      expect(sealLineHashed(rest, JSON.stringify(message))).toEqual(sealed);
      const asBytes = sealOpenBytes(sealed.line.slice(0, sealed.line.lastIndexOf(',"sha":"')));
      expect(asBytes.bytes.toString('utf8')).toBe(`${sealed.line}\n`);
      expect(asBytes.hash).toBe(sealed.hash);
    }
    const huge = JSON.stringify({ seq: 1, text: `ü${'z'.repeat(70_000)}\u2028"` }).slice(0, -1);
    const bytes = sealOpenBytes(huge);
    expect(bytes.bytes.toString('utf8')).toBe(`${sealLine(JSON.parse(`${huge}}`))}\n`);
    expect(bytes.hash).toBe(sha256Hex(bytes.bytes.toString('utf8').slice(0, -1)));
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
