import { parseJson } from '../json.js';
import { celArgs, compileRe2, compileSelfRule, compileWhen, re2Error } from './cel.js';

const identity = {
  principal: 't/o',
  user: 'alice@example.com',
  groups: ['readers'],
  roles: ['MCP.Read'],
  scopes: ['mcp.access'],
  appId: 'app',
  appOnly: false,
  tenantId: 't',
  claims: { tid: 't', level: 3 },
};
const run = (source: string, args: Record<string, unknown> = {}, extra: Record<string, unknown> = {}) => {
  const { program, issues } = compileWhen(source);
  if (program === undefined) throw new Error(issues.join('; '));
  return program.evaluate({
    method: 'tools/call',
    tool: 'run_query',
    resource: '',
    prompt: '',
    args,
    identity,
    ...extra,
  });
};

describe('when expressions', () => {
  test('variables: method, tool, args, identity', () => {
    expect(run('method == "tools/call" && tool == "run_query"')).toBe(true);
    expect(run('args.limit > 10', { limit: 11 })).toBe(true);
    expect(run('args.tags.exists(t, t == "prod")', { tags: ['dev', 'prod'] })).toBe(true);
    expect(run('args.nested.deep.x == "y"', { nested: { deep: { x: 'y' } } })).toBe(true);
    expect(run('"readers" in identity.groups && identity.claims.level >= 3 && !identity.appOnly')).toBe(true);
    expect(run('has(args.dryRun) && args.dryRun', { dryRun: true })).toBe(true);
    expect(run('has(args.dryRun)')).toBe(false);
  });

  test('matches() uses RE2: (?i) flags work, partial match as in the CEL spec', () => {
    expect(run('args.q.matches("(?i)drop\\\\s+table")', { q: 'please DROP  Table x' })).toBe(true);
    expect(run('args.q.matches("^select")', { q: 'delete' })).toBe(false);
    expect(run('matches(args.q, "a+b")', { q: 'xaab' })).toBe(true);
  });

  test('a regex built at run time that RE2 refuses is an evaluation error', () => {
    expect(() => run('args.q.matches(args.re)', { q: 'aa', re: '(a)\\1' })).toThrow(/not valid RE2/);
  });

  test('missing keys and type mismatches are evaluation errors', () => {
    expect(() => run('args.missing == 1')).toThrow();
    expect(() => run('args.q.startsWith("a")', { q: 5 })).toThrow();
  });

  test('compile issues: parse errors, unknown variables and identity fields, non-bool results, bad regex literals', () => {
    expect(compileWhen('args.x ==').issues[0]).toMatch(/^CEL does not parse/);
    expect(compileWhen('foo == 1').issues[0]).toMatch(/CEL type error: Unknown variable: foo/);
    expect(compileWhen('identity.gropus.size() > 0').issues[0]).toMatch(/gropus/);
    expect(compileWhen('args.x + 1 == 2').issues).toEqual([]);
    expect(compileWhen('1 + 2').issues).toEqual(['must evaluate to a bool, not int']);
    expect(compileWhen('tool').issues).toEqual(['must evaluate to a bool, not string']);
    const lookaround = compileWhen('args.q.matches("(?=x)y")').issues;
    expect(lookaround).toHaveLength(1);
    expect(lookaround[0]).toMatch(
      /regex "\(\?=x\)y" is not valid RE2 syntax.*no backreferences or lookarounds/,
    );
    expect(compileWhen('args.q.matches("(a)\\\\1")').issues[0]).toMatch(/backreferences/);
  });

  test('nested comprehensions are refused (quadratic in the size of the arguments); single ones are fine', () => {
    expect(compileWhen('args.l.exists(x, x == 1) && args.m.all(y, y > 0)').issues).toEqual([]);
    expect(compileWhen('args.l.exists(x, args.l.all(y, y != x))').issues).toEqual([
      "all() inside another comprehension is not allowed: its cost grows with the square of the arguments' size",
    ]);
    expect(compileWhen('args.l.map(x, x * 2).filter(y, y > 2).size() > 0').issues).toEqual([]);
    expect(compileWhen('args.l.filter(x, args.l.map(y, y).size() > 0).size() > 0').issues[0]).toMatch(
      /^map\(\) inside/,
    );
  });
});

test('variables read by an expression (for list filtering: does it need the arguments?)', () => {
  expect(
    [...(compileWhen('"args" in identity.groups && tool == "x"').program?.variables ?? [])].sort(),
  ).toEqual(['identity', 'tool']);
  expect(compileWhen('args.l.exists(x, x == 1)').program?.variables.has('args')).toBe(true);
});

describe('RE2', () => {
  test('re2Error names the pattern; valid patterns compile and are cached', () => {
    expect(re2Error('TCK-[0-9]{6}')).toBeUndefined();
    expect(re2Error('[')).toMatch(/regex "\[" is not valid RE2 syntax: missing closing \]/);
    expect(compileRe2('a+')).toBe(compileRe2('a+'));
  });

  test('linear time on a classic catastrophic pattern', () => {
    const start = performance.now();
    expect(compileRe2('(a+)+$').test(`${'a'.repeat(100_000)}!`)).toBe(false);
    expect(performance.now() - start).toBeLessThan(2000);
  });
});

test('self rules (x-kubernetes-validations)', () => {
  const { program } = compileSelfRule('[has(self.a), has(self.b)].filter(x, x).size() == 1');
  expect(program?.evaluate({ self: { a: 1 } })).toBe(true);
  expect(program?.evaluate({ self: { a: 1, b: 2 } })).toBe(false);
  expect(program?.evaluate({ self: {} })).toBe(false);
});

describe('numbers beyond what a double carries (celArgs)', () => {
  // Arguments as the proxy parses them (pkg/json.ts): such numbers are kept as their text.
  const args = (json: string) => celArgs(parseJson(json)) as Record<string, unknown>;
  const big = args(
    '{"i":9007199254740993,"neg":-9223372036854775808,"u":12345678901234567891,"huge":123456789012345678901234,"frac":0.1234567890123456789,"plain":42,"list":[9007199254740993],"nested":{"id":9223372036854775807},"exactBig":4611686018427388000}',
  );

  test('an integer that fits int64 is a CEL int with its exact value', () => {
    expect(big['i']).toBe(9007199254740993n);
    expect(run('args.i == 9007199254740993', big)).toBe(true);
    expect(run('args.i != 9007199254740992', big)).toBe(true);
    expect(run('args.i > 9007199254740992', big)).toBe(true);
    expect(run('args.i > 9007199254740992.0', big)).toBe(true);
    expect(run('type(args.i) == int', big)).toBe(true);
    expect(run('args.neg == -9223372036854775808', big)).toBe(true);
    expect(run('args.list[0] == 9007199254740993 && args.nested.id == 9223372036854775807', big)).toBe(true);
  });

  test('an integer that fits uint64 only is a CEL uint', () => {
    expect(run('args.u == 12345678901234567891u', big)).toBe(true);
    expect(run('args.u != 12345678901234567890u', big)).toBe(true);
    expect(run('type(args.u) == uint && args.u > 10', big)).toBe(true);
  });

  test('anything else is its nearest double; plain numbers stay doubles', () => {
    expect(run('type(args.huge) == double && args.huge > 1.2e23', big)).toBe(true);
    expect(run('type(args.frac) == double && args.frac > 0.12', big)).toBe(true);
    expect(run('type(args.plain) == double && args.plain == 42', big)).toBe(true);
  });

  test('an integer beyond 2^53 that a double carries is the value its text says, not the double', () => {
    // 4611686018427388000 parses to 2^62 = 4611686018427387904; the upstream receives ...8000.
    expect(run('args.exactBig == 4611686018427388000', big)).toBe(true);
    expect(run('args.exactBig != 4611686018427387904', big)).toBe(true);
  });

  test('the parsed arguments are not changed, and nothing is copied without such numbers', () => {
    const parsed = parseJson('{"a":{"b":[1,"x",{"c":true}]},"d":null}');
    expect(celArgs(parsed)).toBe(parsed);
    const withBig = parseJson('{"a":{"b":[12345678901234567891]},"c":{"d":1}}') as Record<string, unknown>;
    const converted = celArgs(withBig) as Record<string, unknown>;
    expect(converted).not.toBe(withBig);
    expect(converted['c']).toBe(withBig['c']);
    expect(JSON.stringify(withBig)).toBe('{"a":{"b":[12345678901234567891]},"c":{"d":1}}');
  });
});
