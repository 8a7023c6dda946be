import { compileGlob, compileGlobs, globError } from './glob.js';

describe('flat globs (tools, prompts, methods)', () => {
  test.each([
    ['get_*', 'get_weather', true],
    ['get_*', 'get_', true],
    ['get_*', 'set_weather', false],
    ['*_docs', 'search_docs', true],
    ['*', '', true],
    ['*', 'any/thing', true],
    ['a?c', 'abc', true],
    ['a?c', 'ac', false],
    ['a*b*c', 'a-x-b-y-c', true],
    ['a*b*c', 'a-x-c-y-b', false],
    ['*a*', 'bab', true],
    ['exact', 'exact', true],
    ['exact', 'exactly', false],
    ['resources/*', 'resources/templates/list', true],
    ['literal\\*', 'literal*', true],
    ['literal\\*', 'literalX', false],
    ['a\\?', 'a?', true],
    ['[ab]', '[ab]', true],
    ['[ab]', 'a', false],
    ['Get_*', 'get_x', false],
  ])('%s vs %s → %s', (pattern, text, want) => {
    expect(compileGlob(pattern, 'flat').test(text)).toBe(want);
  });
});

describe('path globs (resource URIs)', () => {
  test.each([
    ['file:///docs/*', 'file:///docs/a.md', true],
    ['file:///docs/*', 'file:///docs/sub/a.md', false],
    ['file:///docs/**', 'file:///docs/sub/a.md', true],
    ['file:///docs/**', 'file:///docs/', true],
    ['file:///**/*.md', 'file:///a/b/c.md', true],
    ['file:///**/*.md', 'file:///a/b/c.txt', false],
    ['file:///*/x', 'file:///a/x', true],
    ['file:///*/x', 'file:///a/b/x', false],
    ['db://t/?', 'db://t/a', true],
    ['db://t/?', 'db://t//', false],
    ['**', 'anything/at/all', true],
    ['a/**/b', 'a/b', false],
    ['a/**/b', 'a//b', true],
    ['a/**/b', 'a/x/y/b', true],
    ['file:///repo/*.md', 'file:///repo/{name}.md', true],
  ])('%s vs %s → %s', (pattern, text, want) => {
    expect(compileGlob(pattern, 'path').test(text)).toBe(want);
  });
});

describe('invalid globs', () => {
  test.each([
    ['', 'flat', 'is empty'],
    ['abc\\', 'flat', 'unfinished escape'],
    ['a***b', 'path', '3 stars in a row'],
    ['a\u0001', 'flat', 'control character'],
  ] as const)('%j (%s): %s', (pattern, mode, message) => {
    expect(globError(pattern, mode)).toMatch(message);
    expect(() => compileGlob(pattern, mode)).toThrow(message);
  });

  test('valid globs have no error; *** is fine in flat mode', () => {
    expect(globError('a***b', 'flat')).toBeUndefined();
    expect(compileGlob('a***b', 'flat').test('a-b')).toBe(true);
  });
});

describe('no catastrophic backtracking', () => {
  test.each([
    ['flat', `${'*a'.repeat(100)}b`, 'a'.repeat(100_000)],
    ['path', `${'*a'.repeat(100)}b`, 'a'.repeat(100_000)],
    ['path', `${'**a'.repeat(100)}b`, `${'a/'.repeat(50_000)}`],
    ['flat', `${'?'.repeat(200)}*x`, 'y'.repeat(100_000)],
  ] as const)('%s %s… against a long near-miss finishes fast', (mode, pattern, text) => {
    const glob = compileGlob(pattern, mode);
    const start = performance.now();
    expect(glob.test(text)).toBe(false);
    expect(performance.now() - start).toBeLessThan(2000);
  });

  test('the same glob object can be used repeatedly and interleaved', () => {
    const g = compileGlob('a*b?c', 'flat');
    const h = compileGlob('x*y', 'flat');
    for (let i = 0; i < 100; i++) {
      expect(g.test('aXXbYc')).toBe(true);
      expect(h.test('xzzy')).toBe(true);
      expect(g.test('aXXbc')).toBe(false);
    }
  });
});

test('compileGlobs matches when any glob matches', () => {
  const m = compileGlobs(['get_*', 'search_*'], 'flat');
  expect(m('get_a')).toBe(true);
  expect(m('search_b')).toBe(true);
  expect(m('delete_c')).toBe(false);
});

describe('agrees with a reference implementation (property test)', () => {
  /** Reference: translate to a JavaScript RegExp (backtracking is fine for these tiny inputs). */
  function reference(pattern: string, mode: 'flat' | 'path'): RegExp {
    let re = '';
    for (let i = 0; i < pattern.length; i++) {
      const c = pattern[i]!;
      if (c === '\\') re += `\\${pattern[++i]}`;
      else if (c === '?') re += mode === 'flat' ? '[\\s\\S]' : '[^/]';
      else if (c === '*') {
        let run = 1;
        while (pattern[i + 1] === '*') {
          run++;
          i++;
        }
        re += mode === 'path' && run === 1 ? '[^/]*' : '[\\s\\S]*';
      } else re += c.replace(/[.+^${}()|[\]]/g, '\\$&');
    }
    return new RegExp(`^${re}$`);
  }

  function rng(seed: number): () => number {
    let s = seed;
    return () => {
      s = (s * 1103515245 + 12345) & 0x7fffffff;
      return s / 0x80000000;
    };
  }

  test.each(['flat', 'path'] as const)('%s: 5000 random patterns and texts', (mode) => {
    const rand = rng(mode === 'flat' ? 7 : 11);
    const pick = (chars: string[]) => chars[Math.floor(rand() * chars.length)]!;
    for (let n = 0; n < 5000; n++) {
      let pattern = '';
      const plen = Math.floor(rand() * 7);
      for (let i = 0; i < plen; i++) pattern += pick(['a', 'b', '/', '*', '**', '?', '\\*', '.']);
      if (pattern === '' || (mode === 'path' && /\*\*\*/.test(pattern.replaceAll('\\*', '')))) continue;
      let text = '';
      const tlen = Math.floor(rand() * 8);
      for (let i = 0; i < tlen; i++) text += pick(['a', 'b', '/', '*', '.']);
      const ours = compileGlob(pattern, mode).test(text);
      expect([pattern, text, ours]).toEqual([pattern, text, reference(pattern, mode).test(text)]);
    }
  });
});
