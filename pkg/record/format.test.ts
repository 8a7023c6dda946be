import { GENESIS, sealLine, sealOpenBytes, sealValid, sha256Hex } from './format.js';

describe('line sealing', () => {
  const obj = {
    seq: 2,
    prev: GENESIS,
    type: 'message',
    message: { text: 'a "quoted" ,"sha":"x" value', n: 1 },
  };

  /** What the recorder writes for `obj`: its line without the closing brace, sealed to bytes. */
  const sealed = (o: Record<string, unknown>) => sealOpenBytes(JSON.stringify(o).slice(0, -1));

  it('sealOpenBytes writes the same bytes as sealLine, a newline, and returns the line hash', () => {
    const { bytes, hash } = sealed(obj);
    expect(bytes.toString('utf8')).toBe(`${sealLine(obj)}\n`);
    expect(hash).toBe(sha256Hex(sealLine(obj)));
    const big = { ...obj, message: { text: 'x'.repeat(200_000) } };
    expect(sealed(big).hash).toBe(sha256Hex(sealLine(big)));
    // Both hashing strategies (one-shot digests for short lines, a copied state for long ones),
    // on each side of the boundary, with multi-byte characters.
    for (let n = 900; n < 1200; n += 7) {
      const o = { ...obj, message: { text: `é${'y'.repeat(n)}` } };
      const out = sealed(o);
      const line = out.bytes.toString('utf8');
      expect(line).toBe(`${sealLine(o)}\n`);
      expect(out.hash).toBe(sha256Hex(line.slice(0, -1)));
      expect(sealValid(line.slice(0, -1))).toBe(true);
    }
    const huge = JSON.stringify({ seq: 1, text: `ü${'z'.repeat(70_000)}\u2028"` }).slice(0, -1);
    const whole = sealOpenBytes(huge);
    expect(whole.bytes.toString('utf8')).toBe(`${sealLine(JSON.parse(`${huge}}`))}\n`);
    expect(whole.hash).toBe(sha256Hex(whole.bytes.toString('utf8').slice(0, -1)));
  });

  it('a line given in two parts seals to the same bytes and hash as the joined line', () => {
    for (const n of [10, 500, 1_000, 1_100, 70_000]) {
      const o = { seq: 3, prev: GENESIS, message: { text: `ü€${'q'.repeat(n)}😀"\u2028` } };
      const joined = JSON.stringify(o).slice(0, -1);
      const cut = joined.indexOf('"message":') + '"message":'.length;
      for (const at of [0, 1, cut, joined.length - 1, joined.length]) {
        const two = sealOpenBytes(joined.slice(0, at), joined.slice(at));
        const one = sealOpenBytes(joined);
        expect(two.bytes.equals(one.bytes)).toBe(true);
        expect(two.hash).toBe(one.hash);
        expect(two.bytes.toString('utf8')).toBe(`${sealLine(o)}\n`);
      }
    }
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
