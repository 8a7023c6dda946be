import { Environment } from '@marcbachmann/cel-js';
import { UnsignedInt } from '@marcbachmann/cel-js/evaluator';
import { RE2JS } from 're2js';
import { integerValue, isRawNumber, type RawNumber } from '../json.js';

/**
 * CEL for `match.when` (and for the `x-kubernetes-validations` rules the ajv validator checks).
 *
 * Variables of `when`: `method`, `tool`, `resource`, `prompt` (strings, `''` when absent), `args`
 * (the call arguments), `identity` {principal, user, groups, roles, scopes, appId, appOnly,
 * tenantId, claims}.
 *
 * `string.matches(re)` follows the CEL spec and uses RE2 syntax (through re2js: linear time, no
 * backreferences or lookarounds, `(?i)` flags work). cel-js implements `matches` with JavaScript
 * RegExp (backtracking, no `(?i)`), so every `matches` call is redirected to an RE2 function after
 * parsing.
 */

const RE2_FN = 'mcpwardenRe2Matches';
const limits = {
  maxAstNodes: 2000,
  maxDepth: 64,
  maxListElements: 256,
  maxMapEntries: 256,
  maxCallArguments: 16,
};

const re2Cache = new Map<string, RE2JS>();
const RE2_CACHE_MAX = 512;

/** Compile (and cache) an RE2 pattern. Throws with a message naming the pattern. */
export function compileRe2(pattern: string): RE2JS {
  let re = re2Cache.get(pattern);
  if (re === undefined) {
    try {
      re = RE2JS.compile(pattern);
    } catch (err) {
      throw new Error(re2Message(pattern, err));
    }
    if (re2Cache.size >= RE2_CACHE_MAX) re2Cache.clear();
    re2Cache.set(pattern, re);
  }
  return re;
}

function re2Message(pattern: string, err: unknown): string {
  const detail = (err instanceof Error ? err.message : String(err)).replace(/^error parsing regexp: /, '');
  const hint = /\\[1-9]|\(\?[=!<]/.test(pattern) ? ' (RE2 has no backreferences or lookarounds)' : '';
  return `regex ${JSON.stringify(pattern)} is not valid RE2 syntax: ${detail}${hint}`;
}

/** Why `pattern` is not a valid RE2 regex, or undefined. */
export function re2Error(pattern: string): string | undefined {
  try {
    compileRe2(pattern);
    return undefined;
  } catch (err) {
    return err instanceof Error ? err.message : String(err);
  }
}

function re2Matches(text: string, pattern: string): boolean {
  return compileRe2(pattern).test(text);
}

function withRe2(env: Environment): Environment {
  env.registerFunction({
    name: RE2_FN,
    receiverType: 'string',
    returnType: 'bool',
    params: [{ name: 're', type: 'string' }],
    handler: re2Matches,
  });
  env.registerFunction(`${RE2_FN}(string, string): bool`, re2Matches);
  return env;
}

/** The evaluation environment: `identity` and `args` are maps (no per-call conversion). */
const whenEnv = withRe2(
  new Environment({ unlistedVariablesAreDyn: false, homogeneousAggregateLiterals: false, limits })
    .registerVariable('method', 'string')
    .registerVariable('tool', 'string')
    .registerVariable('resource', 'string')
    .registerVariable('prompt', 'string')
    .registerVariable('args', 'map')
    .registerVariable('identity', 'map'),
);

/** The checking environment: `identity` has a schema, so `identity.gropus` is caught at lint time. */
const whenCheckEnv = withRe2(
  new Environment({ unlistedVariablesAreDyn: false, homogeneousAggregateLiterals: false, limits })
    .registerVariable('method', 'string')
    .registerVariable('tool', 'string')
    .registerVariable('resource', 'string')
    .registerVariable('prompt', 'string')
    .registerVariable('args', 'map')
    .registerVariable({
      name: 'identity',
      schema: {
        principal: 'string',
        user: 'string',
        groups: 'list<string>',
        roles: 'list<string>',
        scopes: 'list<string>',
        appId: 'string',
        appOnly: 'bool',
        tenantId: 'string',
        claims: 'map',
      },
    }),
);

/** For `x-kubernetes-validations`: `self` is the object the rule is attached to. */
const selfEnv = withRe2(
  new Environment({
    unlistedVariablesAreDyn: false,
    homogeneousAggregateLiterals: false,
    limits,
  }).registerVariable('self', 'dyn'),
);

interface AstNode {
  op: string;
  args: unknown;
}

function isNode(v: unknown): v is AstNode {
  return typeof v === 'object' && v !== null && typeof (v as AstNode).op === 'string';
}

/**
 * Redirect `matches` to RE2 and collect the literal patterns (checked at lint time).
 * `call` nodes are `[name, args[]]`, `rcall` nodes `[name, receiver, args[]]`.
 */
function rewriteMatches(node: unknown, literals: string[]): void {
  if (Array.isArray(node)) {
    for (const n of node) rewriteMatches(n, literals);
    return;
  }
  if (!isNode(node)) return;
  const args = node.args;
  if ((node.op === 'call' || node.op === 'rcall') && Array.isArray(args) && args[0] === 'matches') {
    args[0] = RE2_FN;
    const fnArgs: unknown = node.op === 'rcall' ? args[2] : args[1];
    const pattern = Array.isArray(fnArgs) ? fnArgs[fnArgs.length - 1] : undefined;
    if (isNode(pattern) && pattern.op === 'value' && typeof pattern.args === 'string')
      literals.push(pattern.args);
  }
  if (Array.isArray(args)) for (const a of args) rewriteMatches(a, literals);
  else if (isNode(args)) rewriteMatches(args, literals);
}

const comprehensions = new Set([
  'all',
  'exists',
  'exists_one',
  'map',
  'filter',
  'transformList',
  'transformMap',
  'sortBy',
]);

/**
 * cel-js has no runtime cost budget (the API server's CEL has one), and `args` is sized by the
 * caller. One comprehension over the arguments is linear; a comprehension inside another one is
 * quadratic, so a large request could stall the data path. Refuse nesting.
 */
function nestedComprehension(node: unknown, inside: boolean): string | undefined {
  if (Array.isArray(node)) {
    for (const n of node) {
      const found = nestedComprehension(n, inside);
      if (found !== undefined) return found;
    }
    return undefined;
  }
  if (!isNode(node)) return undefined;
  const args = node.args;
  if (
    node.op === 'rcall' &&
    Array.isArray(args) &&
    typeof args[0] === 'string' &&
    comprehensions.has(args[0])
  ) {
    if (inside) return args[0];
    return nestedComprehension(args[1], false) ?? nestedComprehension(args[2], true);
  }
  if (Array.isArray(args) || isNode(args)) return nestedComprehension(args, inside);
  return undefined;
}

/** Identifiers referenced (`id` nodes): the variables, plus comprehension iteration variables. */
function collectIds(node: unknown, out: Set<string>): void {
  if (Array.isArray(node)) {
    for (const n of node) collectIds(n, out);
    return;
  }
  if (!isNode(node)) return;
  if (node.op === 'id' && typeof node.args === 'string') out.add(node.args);
  else if (Array.isArray(node.args) || isNode(node.args)) collectIds(node.args, out);
}

type Program = ((activation: Record<string, unknown>) => unknown) & {
  ast: unknown;
  check(): { valid: boolean; type?: string; error?: Error };
};

export interface CelProgram {
  readonly source: string;
  /** The variables the expression reads (e.g. `args`, `identity`). */
  readonly variables: ReadonlySet<string>;
  /** Evaluate; throws on evaluation errors (missing keys, type mismatches, bad regex). */
  evaluate(activation: Record<string, unknown>): unknown;
}

function firstLine(err: unknown): string {
  const msg = err instanceof Error ? err.message : String(err);
  return msg.split('\n')[0]!.trim();
}

function compile(
  env: Environment,
  checkEnv: Environment,
  source: string,
): { program?: CelProgram; issues: string[] } {
  const issues: string[] = [];
  let parsed: Program;
  try {
    parsed = env.parse(source) as unknown as Program;
  } catch (err) {
    return { issues: [`CEL does not parse: ${firstLine(err)}`] };
  }
  const literals: string[] = [];
  rewriteMatches(parsed.ast, literals);
  const nested = nestedComprehension(parsed.ast, false);
  if (nested !== undefined) {
    issues.push(
      `${nested}() inside another comprehension is not allowed: its cost grows with the square of the arguments' size`,
    );
  }
  for (const lit of literals) {
    const e = re2Error(lit);
    if (e !== undefined) issues.push(e);
  }
  // Type-check with the stricter environment (same source, same rewrite).
  try {
    const strict = checkEnv.parse(source) as unknown as Program;
    rewriteMatches(strict.ast, []);
    const result = strict.check();
    if (!result.valid) issues.push(`CEL type error: ${firstLine(result.error)}`);
    else if (result.type !== 'bool' && result.type !== 'dyn')
      issues.push(`must evaluate to a bool, not ${result.type}`);
  } catch (err) {
    issues.push(`CEL type error: ${firstLine(err)}`);
  }
  if (issues.length > 0) return { issues };
  const variables = new Set<string>();
  collectIds(parsed.ast, variables);
  return { program: { source, variables, evaluate: (activation) => parsed(activation) }, issues };
}

/** Compile a `match.when` expression. Returns the program or the reasons it is invalid. */
export function compileWhen(source: string): { program?: CelProgram; issues: string[] } {
  return compile(whenEnv, whenCheckEnv, source);
}

/** Compile an `x-kubernetes-validations` rule (variable `self`). */
export function compileSelfRule(source: string): { program?: CelProgram; issues: string[] } {
  return compile(selfEnv, selfEnv, source);
}

const MIN_INT = -(2n ** 63n);
const MAX_INT = 2n ** 63n - 1n;
const MAX_UINT = 2n ** 64n - 1n;
/** Arguments nested deeper are passed as they are (no CEL expression reaches that deep). */
const MAX_ARGS_DEPTH = 256;

/**
 * The value of `args` in CEL, for the exact numbers the upstream receives. An integer beyond
 * ±2^53 (a double cannot hold every one of them; pkg/json.ts keeps such numbers as their text) is
 * the exact integer: a CEL `int` when it fits int64, a `uint` when it fits uint64 only, the nearest
 * double beyond. Any other number kept as text (`0.1234567890123456789`) is its nearest double,
 * as CEL has no decimal type. Numbers up to 2^53 stay doubles, as they always were. Copies only
 * what changes; the parsed arguments themselves are left untouched.
 *
 * @example
 * celArgs(parseJson('{"id":12345678901234567891}')) // { id: UnsignedInt 12345678901234567891n }
 */
export function celArgs(value: unknown): unknown {
  return celValue(value, 0);
}

function celValue(v: unknown, depth: number): unknown {
  if (typeof v === 'number') return Number.isSafeInteger(v) || !Number.isInteger(v) ? v : celNumber(v);
  if (typeof v !== 'object' || v === null) return v;
  if (isRawNumber(v)) return celNumber(v);
  if (depth >= MAX_ARGS_DEPTH) return v;
  if (Array.isArray(v)) {
    let copy: unknown[] | undefined;
    for (let i = 0; i < v.length; i++) {
      const next = celValue(v[i], depth + 1);
      if (next !== v[i]) {
        copy ??= v.slice();
        copy[i] = next;
      }
    }
    return copy ?? v;
  }
  const obj = v as Record<string, unknown>;
  let copy: Record<string, unknown> | undefined;
  for (const key in obj) {
    if (!Object.hasOwn(obj, key)) continue;
    const next = celValue(obj[key], depth + 1);
    if (next === obj[key]) continue;
    copy ??= { ...obj };
    // defineProperty: an own `__proto__` member (JSON.parse makes those) stays a member.
    Object.defineProperty(copy, key, { value: next, enumerable: true, writable: true, configurable: true });
  }
  return copy ?? obj;
}

function celNumber(v: number | RawNumber): unknown {
  const n = integerValue(v, 20);
  if (n !== undefined) {
    if (n >= MIN_INT && n <= MAX_INT) return n;
    if (n > MAX_INT && n <= MAX_UINT) return new UnsignedInt(n);
  }
  return typeof v === 'number' ? v : Number(v.rawJSON);
}
