import { RE2JS } from 're2js';
import { anyLiteralProbe, literalProbe, requiredLiteral } from './probe.js';

describe('literalProbe', () => {
  it('finds a literal wherever it is, by its rarest character', () => {
    const p = literalProbe('sig=');
    expect(p('a=b&sig=x')).toBe(true);
    expect(p('sig=')).toBe(true);
    expect(p('si=g sig')).toBe(false);
    expect(p('')).toBe(false);
    expect(literalProbe('eyJ')('xxeyJhbG')).toBe(true);
    expect(literalProbe('eyJ')('J eyj eJ')).toBe(false);
    expect(anyLiteralProbe(['ghp_', 'github_pat_'])('token github_pat_x')).toBe(true);
    expect(anyLiteralProbe(['ghp_', 'github_pat_'])('gh_p')).toBe(false);
  });
});

describe('requiredLiteral', () => {
  it.each([
    ['TCK-[0-9]{6}', 'TCK-'],
    ['[a-z0-9-]+\\.corp\\.internal', '.corp.internal'],
    ['ab*cdef', 'cdef'],
    ['(foo|bar)-baz', '-baz'],
    ['[]a]xyz', 'xyz'],
    ['[^]a]-key', '-key'],
    ['[\\]]ab', 'ab'],
  ])('%s needs %s', (regex, literal) => {
    expect(requiredLiteral(regex)).toBe(literal);
  });

  it.each([
    ['top-level alternation', 'abc|def'],
    ['case folding', '(?i)secret'],
    ['hex escape', '\\x41BC'],
    ['unicode class', '\\pLabc'],
    ['quoted', '\\Qa.b\\E'],
    ['only classes', '[0-9]{6}'],
    ['single char', 'a[0-9]'],
    ['repetition counts only', '[a-z]{4,12}'],
    ['a POSIX class', '[[:alpha:]]xyz'],
    ['repetition count then one char', '[0-9]{16}x'],
  ])('gives up on %s', (_why, regex) => {
    expect(requiredLiteral(regex)).toBeUndefined();
  });

  it('every match of the pattern contains the literal (checked on samples)', () => {
    const cases: Array<[string, string[]]> = [
      ['TCK-[0-9]{6}', ['TCK-123456']],
      ['x?yzz+w', ['yzzw', 'xyzzzzw']],
      ['ab\\.c(d|e)f', ['ab.cdf', 'ab.cef']],
      ['[0-9]{4,}-ABC', ['1234-ABC', '99999-ABC']],
    ];
    for (const [regex, matches] of cases) {
      const lit = requiredLiteral(regex)!;
      for (const m of matches) {
        expect(new RegExp(regex).test(m)).toBe(true);
        expect(m).toContain(lit);
      }
    }
  });
});

describe('requiredLiteral against RE2 on random patterns', () => {
  /** mulberry32: a small seeded PRNG, so a failure reproduces. */
  function prng(seed: number): (n: number) => number {
    let a = seed >>> 0;
    return (n) => {
      a = (a + 0x6d2b79f5) >>> 0;
      let t = a;
      t = Math.imul(t ^ (t >>> 15), t | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      return ((((t ^ (t >>> 14)) >>> 0) / 4294967296) * n) | 0;
    };
  }

  it('never names a literal that a real match lacks', () => {
    const pick = prng(42);
    const textRand = prng(7);
    const atoms = [
      'a',
      'b',
      'c',
      'ab',
      'ba',
      '-',
      '\\.',
      '[ab]',
      '[^a]',
      '[]a]',
      '.',
      '\\d',
      '(a|bc)',
      '(?:ab)',
      'x{2}',
      '[0-9]{1,3}',
    ];
    const quant = ['', '', '', '', '?', '*', '+', '{2}', '{0,2}'];
    const alphabet = 'aabbc-.x01]';
    let checked = 0;
    let withLiteral = 0;
    for (let p = 0; p < 1500; p++) {
      let src = '';
      const n = 1 + pick(6);
      for (let k = 0; k < n; k++) src += atoms[pick(atoms.length)]! + quant[pick(quant.length)]!;
      if (pick(8) === 0) src += `|${atoms[pick(atoms.length)]}`;
      let re: RE2JS;
      try {
        re = RE2JS.compile(src);
      } catch {
        continue; // the generator made something RE2 rejects (x{2}{2})
      }
      const lit = requiredLiteral(src);
      if (lit === undefined) continue;
      withLiteral++;
      for (let t = 0; t < 100; t++) {
        let text = '';
        const len = 4 + textRand(40);
        for (let k = 0; k < len; k++) text += alphabet[textRand(alphabet.length)];
        const m = re.matcher(text);
        while (m.find()) {
          const match = m.group() ?? '';
          if (!match.includes(lit)) throw new Error(`${src}: match "${match}" lacks the literal "${lit}"`);
          checked++;
          if (m.end() === m.start()) break;
        }
      }
    }
    expect({ withLiteral: withLiteral > 100, checked: checked > 1000 }).toEqual({
      withLiteral: true,
      checked: true,
    });
  });
});
