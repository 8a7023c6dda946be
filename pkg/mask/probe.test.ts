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
  ])('gives up on %s', (_why, regex) => {
    expect(requiredLiteral(regex)).toBeUndefined();
  });

  it('every match of the pattern contains the literal (checked on samples)', () => {
    const cases: Array<[string, string[]]> = [
      ['TCK-[0-9]{6}', ['TCK-123456']],
      ['x?yzz+w', ['yzzw', 'xyzzzzw']],
      ['ab\\.c(d|e)f', ['ab.cdf', 'ab.cef']],
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
