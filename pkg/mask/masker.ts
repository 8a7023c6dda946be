import { createHmac, randomBytes } from 'node:crypto';
import { errorMessage, WardenError } from '../errors.js';
import { isRawNumber, numberText, parseJson, type RawNumber } from '../json.js';
import { compileGlobs } from '../policy/glob.js';
import type { MaskingRule } from '../policy/schema.js';
import { credentialToken } from './checks.js';
import {
  closesPrivateKey,
  detectors,
  type Finder,
  isKeyBody,
  isSensitiveKey,
  isTokenKey,
  isTokenRecord,
  opensPrivateKey,
  type Span,
} from './detectors.js';
import { foldText, foldTriggers, mayFold } from './fold.js';
import { applyJsonPath, type CompiledPath, parseJsonPath } from './jsonpath.js';
import { compilePattern } from './patterns.js';
import type { Masker, MaskHit, MaskResult, MaskScope } from './types.js';

export interface MaskerOptions {
  /** Key for `hash: true` replacements. Default: 32 random bytes per process. */
  hashKey?: Uint8Array;
  /** Nesting deeper than this is replaced whole (fail closed). Default 256. */
  maxDepth?: number;
  /**
   * Run every finder on every string, skipping only the finders' own prefilters: no string is
   * let through for lacking the characters findings need. Same results, slower; for tests that
   * check the fast path against it.
   */
  exhaustive?: boolean;
}

interface CompiledRule {
  policy: string;
  name: string;
  finders: Finder[];
  sensitiveKeys: boolean;
  fields: CompiledPath[];
  tools: ((t: string) => boolean) | undefined;
  resources: ((r: string) => boolean) | undefined;
  template: string;
  /** No custom replacement: whole-value emails get an email-shaped token. */
  defaultTemplate: boolean;
  hash: boolean;
}

interface Plan {
  /** Indexes into the rule list. */
  active: number[];
  /** Shortest string any finder can match: shorter object keys are not scanned. */
  minKeyLength: number;
  /**
   * What the walk needs to know about an object key, worked out once per plan (keys repeat in
   * every record): `keyScan`, `keySensitive`, `keyRaw` and the `$..name` owner + 1 shifted by `keyOwnerShift`.
   * A key already scanned without a finding loses `keyScan`. Bounded; longer keys are not kept.
   */
  keys: Map<string, number>;
  /**
   * For strings over `shortString`: the class of the characters of each finder's first `needs`
   * set (every finding holds one of them); a string without any is returned unscanned.
   * Undefined when a finder cannot say.
   */
  needs: RegExp | undefined;
  /**
   * One condition bit of each finder (its lowest, see `CharFilter`): a short string meeting none
   * of them serves no finder and is returned at once. Undefined when some finder always runs.
   */
  firstBits: number | undefined;
  /**
   * `req`: the condition bits of the finder (0: it always runs); `minDigits`: digits a finding
   * has. A finder runs on a short string that meets all its conditions and has the digits.
   */
  finders: Array<{ finder: Finder; owner: number; req: number; minDigits: number }>;
  /**
   * The finders that can find something in an integer's digits (see `scansNumbers`: the card
   * number), and `numberFloor`, the smallest magnitude with as many digits as the least demanding
   * of them needs (Infinity without any): a number below it is passed on untouched, at the cost
   * of two comparisons.
   */
  numberFinders: Array<{ finder: Finder; owner: number; minDigits: number }>;
  numberFloor: number;
  keyOwner: number;
  fields: Array<{ path: CompiledPath; owner: number }>;
  /** `$..name` fields, applied during the walk (one traversal instead of two): name → owner. */
  descendKeys: Map<string, number>;
  /** The rule owning the `private-key` detector, or -1: a key split over several blocks is followed. */
  pemOwner: number;
}

interface Walk {
  plan: Plan;
  session: string;
  hits: MaskHit[] | undefined;
  produced: Set<string> | undefined;
  /** Content items whose `text` is an exact serialization of structuredContent: that text is not masked on its own. */
  copies: Set<object> | undefined;
  /** Objects and arrays `maskWhole` built: every leaf and key in them is masked already. */
  done: Set<object> | undefined;
  spans: Span[];
  /** `private-key` findings so far: an array element that had one may open a key the next ones continue. */
  keyHits: number;
  /**
   * The object being walked as a JSON Schema's `properties` (or `patternProperties`, `$defs`,
   * `definitions`): its keys name parameters, and a schema under a password-like name is a
   * schema, not a secret (see {@link secretSchema}).
   */
  schemaMap: object | undefined;
}

const keyScan = 1;
const keySensitive = 2;
/** The key `rawJSON`: the object may be a number kept as its text (pkg/json.ts). */
const keyRaw = 4;
/** `properties`, `patternProperties`, `$defs`, `definitions`: the value may map names to JSON Schemas. */
const keySchemaMap = 8;
/**
 * `token` alone: its value is masked whole like a password's, unless the object holding it is an
 * LLM's or a tokenizer's token record (`isTokenRecord`).
 */
const keyToken = 16;
const keyOwnerShift = 5;
/** Object keys up to this long are remembered per plan; at most `maxKnownKeys` of them. */
const maxKnownKeyLength = 128;
const maxKnownKeys = 10_000;

/**
 * Strings up to this long get their finders chosen by one pass over their characters (~1 ns a
 * character); longer ones are tested against the plan's `needs` class, then every finder runs.
 */
const shortString = 1024;

const noHits: MaskHit[] = [];
Object.freeze(noHits);

function invalid(policy: string, rule: string, why: string): never {
  throw new WardenError('ERR_POLICY_INVALID', `policy ${policy}, masking rule ${rule}: ${why}`, {
    details: { policy, rule },
  });
}

function compileRule(policy: string, rule: MaskingRule): CompiledRule {
  if (typeof rule !== 'object' || rule === null || typeof rule.name !== 'string' || rule.name === '') {
    invalid(policy, '?', 'a masking rule needs a name');
  }
  const finders: Finder[] = [];
  let sensitiveKeys = false;
  for (const d of rule.detectors ?? []) {
    const finder = detectors.get(d);
    if (finder === undefined)
      invalid(policy, rule.name, `unknown detector "${d}" (known: ${[...detectors.keys()].join(', ')})`);
    if (!finders.includes(finder)) finders.push(finder);
    if (d === 'password-assignment') sensitiveKeys = true;
  }
  for (const p of rule.patterns ?? []) {
    try {
      finders.push(compilePattern(p.name, p.regex));
    } catch (err) {
      invalid(policy, rule.name, errorMessage(err));
    }
  }
  const fields: CompiledPath[] = [];
  for (const f of rule.fields ?? []) {
    try {
      fields.push(parseJsonPath(f));
    } catch (err) {
      invalid(policy, rule.name, errorMessage(err));
    }
  }
  let tools: CompiledRule['tools'];
  let resources: CompiledRule['resources'];
  try {
    if (rule.tools !== undefined && rule.tools.length > 0) tools = compileGlobs(rule.tools, 'flat');
    if (rule.resources !== undefined && rule.resources.length > 0)
      resources = compileGlobs(rule.resources, 'path');
  } catch (err) {
    invalid(policy, rule.name, `bad glob: ${errorMessage(err)}`);
  }
  const hash = rule.hash === true;
  const template = rule.replacement ?? (hash ? '[masked:{name}:{hash}]' : '[masked:{name}]');
  if (template.includes('{hash}') && !hash)
    invalid(policy, rule.name, 'replacement uses {hash} but hash is not true');
  return {
    policy,
    name: rule.name,
    finders,
    sensitiveKeys,
    fields,
    tools,
    resources,
    template,
    defaultTemplate: rule.replacement === undefined,
    hash,
  };
}

function applies(rule: CompiledRule, scope: MaskScope): boolean {
  if (rule.tools === undefined && rule.resources === undefined) return true;
  // A message the proxy cannot tie to its call: every scoped rule applies (fail closed).
  if (scope.unknown === true) return true;
  if (rule.tools !== undefined && scope.tool !== undefined && rule.tools(scope.tool)) return true;
  if (rule.resources === undefined) return false;
  return (
    (scope.resource !== undefined && rule.resources(scope.resource)) ||
    (scope.canonicalResource !== undefined && rule.resources(scope.canonicalResource))
  );
}

/**
 * Member names of MCP messages themselves: never renamed, even when a user pattern matches one,
 * so a result keeps its shape (`content`, `structuredContent`, `text`...). Their values are masked.
 */
const protocolKeys: ReadonlySet<string> = new Set([
  'content',
  'structuredContent',
  'type',
  'text',
  'uri',
  'mimeType',
  'blob',
  'data',
  'resource',
  'isError',
  '_meta',
  'messages',
  'role',
  'contents',
  'name',
  'title',
  'description',
  'annotations',
  'level',
  'logger',
  'progress',
  'progressToken',
  'total',
  'message',
  'nextCursor',
  'tools',
  'resources',
  'resourceTemplates',
  'prompts',
  'arguments',
  'inputSchema',
  'outputSchema',
  'model',
  'stopReason',
  'maxTokens',
  'systemPrompt',
  'requestedSchema',
  'action',
  'task',
  'taskId',
  'status',
  'code',
  'error',
  'result',
  'params',
  'method',
  'id',
  'jsonrpc',
  'size',
  'icons',
  'properties',
  'required',
  'items',
]);

/** Members whose object value maps names (of parameters, of definitions) to JSON Schemas. */
const schemaMapKeys: ReadonlySet<string> = new Set([
  'properties',
  'patternProperties',
  '$defs',
  'definitions',
]);

/**
 * JSON Schema keywords (2020-12 and draft-07, plus MCP's elicitation `enumNames`) that describe a
 * parameter rather than carry its value. Values, which may be secrets, are not among them:
 * `default`, `const`, `enum`, `examples`.
 */
const schemaKeywords: ReadonlySet<string> = new Set([
  'type',
  'format',
  'title',
  'description',
  '$comment',
  '$ref',
  '$id',
  '$schema',
  '$anchor',
  'minLength',
  'maxLength',
  'pattern',
  'minimum',
  'maximum',
  'exclusiveMinimum',
  'exclusiveMaximum',
  'multipleOf',
  'items',
  'prefixItems',
  'minItems',
  'maxItems',
  'uniqueItems',
  'contains',
  'properties',
  'patternProperties',
  'additionalProperties',
  'required',
  'minProperties',
  'maxProperties',
  'propertyNames',
  'anyOf',
  'oneOf',
  'allOf',
  'not',
  'if',
  'then',
  'else',
  '$defs',
  'definitions',
  'deprecated',
  'readOnly',
  'writeOnly',
  'nullable',
  'contentEncoding',
  'contentMediaType',
]);

/** Keywords only a JSON Schema has at its top (a record `{"value": "…"}` is not a schema). */
const schemaMarkers = ['type', '$ref', 'anyOf', 'oneOf', 'allOf', 'properties', 'items', 'format'];

/** Whether `v` reads as a JSON Schema: an object with one of the keywords schemas are made of. */
function looksLikeSchema(v: unknown): v is Record<string, unknown> {
  if (!isObject(v)) return false;
  for (const k of schemaMarkers) if (Object.hasOwn(v, k)) return true;
  return false;
}

/**
 * `name`, or `name#2`, `name#3`... : the first that is not in `taken` (an object's own keys and
 * the names given so far), which it is then added to.
 */
function uniqueName(taken: Set<string>, name: string): string {
  let unique = name;
  for (let n = 2; taken.has(unique); n++) unique = `${name}#${n}`;
  taken.add(unique);
  return unique;
}

/** Define an own member, even one named `__proto__` (JSON.parse makes those; `=` would set the prototype). */
function setOwn(obj: Record<string, unknown>, key: string, value: unknown): void {
  Object.defineProperty(obj, key, { value, enumerable: true, writable: true, configurable: true });
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * What one pass over a short string's characters tells: which of the finders' conditions it
 * meets. A condition is a finder's `needsPairs` (one of these two-character sequences occurs) or
 * one of its `needs` sets (one of these characters occurs); each distinct condition is one of 30
 * bits. Past 30, a finder keeps the conditions that got bits (it is then chosen less finely).
 */
interface CharFilter {
  /**
   * UTF-16 code unit → bits of the sets holding it, plus `pairStart` if a pair begins with it and
   * `digitBit` for a digit. A non-ASCII unit has the bits of the sets holding it (`＠` for an
   * email). 65 536 entries, so the pass has no branch (256 KiB per masker).
   */
  charBits: Int32Array;
  /**
   * (first << 7 | second & 127) → bits of the pair conditions holding that pair (16 384 entries);
   * undefined without any. A non-ASCII second unit is looked up by its low 7 bits, which can
   * only report a pair that is not there (the finder then runs for nothing), never miss one.
   */
  pairBits: Int32Array | undefined;
  /** Finder → its condition bits (absent or 0: it always runs). */
  req: Map<Finder, number>;
  /**
   * The bit of `\` (a string that may hold JSON escapes, see `decodeEscapes`): the first
   * condition, so it always has one.
   */
  escBit: number;
  /**
   * The bit of every character `foldText` reads as a letter, a digit, `@`, `=` or `:` or drops
   * (fullwidth forms, Unicode digits, zero-width characters): the second condition.
   */
  foldBit: number;
  /**
   * The bit of the other look-alikes (dots, hyphens, spaces, punctuation): the third condition.
   * They are folded only in a string that serves a finder already.
   */
  weakFoldBit: number;
}

const pairStart = 1 << 30;
const digitBit = 1 << 31;
const maxConditions = 30;

function charFilter(finders: readonly Finder[]): CharFilter {
  const ascii = new Int32Array(128);
  /** Non-ASCII code unit → bits of the sets holding it. */
  const nonAscii = new Map<number, number>();
  let pairBits: Int32Array | undefined;
  const req = new Map<Finder, number>();
  const bitOf = new Map<string, number>();
  const assign = (key: string, register: (bit: number) => void): number => {
    let bit = bitOf.get(key);
    if (bit === undefined) {
      if (bitOf.size >= maxConditions) return 0;
      bit = 1 << bitOf.size;
      bitOf.set(key, bit);
      register(bit);
    }
    return bit;
  };
  const escBit = assign('chars:\\', (bit) => {
    ascii[92]! |= bit;
  });
  const foldBit = assign('fold', () => undefined);
  const weakFoldBit = assign('fold:weak', () => undefined);
  for (const finder of finders) {
    if (req.has(finder)) continue;
    let bits = 0;
    // Only pairs of two ASCII characters (the first not NUL) can be recognised; without them
    // the pair condition is left out, which only chooses the finder less finely.
    const pairs = finder.needsPairs;
    if (pairs !== undefined && pairs.length > 0 && pairs.every((p) => /^[\x01-\x7f]{2}$/.test(p))) {
      bits |= assign(`pairs:${[...pairs].sort().join(' ')}`, (bit) => {
        pairBits ??= new Int32Array(128 * 128);
        for (const p of pairs) {
          const a = p.charCodeAt(0);
          ascii[a]! |= pairStart;
          pairBits[(a << 7) | p.charCodeAt(1)]! |= bit;
        }
      });
    }
    for (const set of finder.needs ?? []) {
      if (set.length === 0) continue;
      bits |= assign(`chars:${set}`, (bit) => {
        for (let j = 0; j < set.length; j++) {
          const code = set.charCodeAt(j);
          if (code >= 128) nonAscii.set(code, (nonAscii.get(code) ?? 0) | bit);
          else ascii[code]! |= bit;
        }
      });
    }
    req.set(finder, bits);
  }
  for (let c = 48; c <= 57; c++) ascii[c]! |= digitBit;
  const charBits = new Int32Array(65536);
  charBits.set(ascii);
  for (const [code, bit] of nonAscii) charBits[code] = bit;
  const triggers = foldTriggers();
  for (const code of triggers.strong) charBits[code]! |= foldBit;
  for (const code of triggers.weak) charBits[code]! |= weakFoldBit;
  return { charBits, pairBits, req, escBit, foldBit, weakFoldBit };
}

/**
 * JSON escapes left in a string that held JSON text encoded once more (`{\"email\":\"alice\\u0040example.com\"}`
 * after one parse holds `alice\u0040example.com`; PHP and others write `https:\/\/user:pass@host`):
 * the string with every `\uXXXX` and `\/` decoded (an escaped backslash `\\` is kept as it is),
 * and `from`, where each decoded unit starts in the original (and the original's length at the
 * end), so that a finding in the decoded text masks its encoded span. Undefined when the string
 * holds no such escape (one memchr of `\` for most strings).
 */
export function decodeEscapes(s: string): { text: string; from: Int32Array } | undefined {
  const first = s.indexOf('\\');
  if (first === -1) return undefined;
  const u = s.indexOf('\\u', first);
  const slash = s.indexOf('\\/', first);
  if ((u === -1 || !hex4(s, u + 2)) && slash === -1) {
    if (u === -1) return undefined;
    // A `\u` not followed by four hex digits: look for a real one further on.
    let at = s.indexOf('\\u', u + 2);
    while (at !== -1 && !hex4(s, at + 2)) at = s.indexOf('\\u', at + 2);
    if (at === -1) return undefined;
  }
  const from = new Int32Array(s.length + 1);
  let text = s.slice(0, first);
  let n = 0;
  for (; n < first; n++) from[n] = n;
  let k = first;
  let decoded = false;
  while (k < s.length) {
    const c = s.charCodeAt(k);
    if (c === 92 && k + 1 < s.length) {
      const next = s.charCodeAt(k + 1);
      if (next === 47 || (next === 117 && hex4(s, k + 2))) {
        decoded = true;
        from[n++] = k;
        text += next === 47 ? '/' : String.fromCharCode(Number.parseInt(s.slice(k + 2, k + 6), 16));
        k += next === 47 ? 2 : 6;
        continue;
      }
      if (next === 92) {
        from[n++] = k;
        from[n++] = k + 1;
        text += '\\\\';
        k += 2;
        continue;
      }
    }
    // Copy the run up to the next backslash at once.
    let end = s.indexOf('\\', k + 1);
    if (end === -1) end = s.length;
    text += s.slice(k, end);
    for (; k < end; k++) from[n++] = k;
  }
  if (!decoded) return undefined;
  from[n] = s.length;
  return { text, from: from.subarray(0, n + 1) };
}

/** The single-character JSON escapes, by the character after the backslash. */
const simpleEscapes: Readonly<Record<number, string>> = {
  34: '"',
  47: '/',
  92: '\\',
  98: '\b',
  102: '\f',
  110: '\n',
  114: '\r',
  116: '\t',
};

/**
 * One level of JSON string escapes decoded, all of them (`\\` → `\`, `\"` → `"`, `\n` → a line
 * break, `\uXXXX`...; a backslash before anything else stays), for text encoded more than once
 * (`alice\\u0040example.com` after one parse): its next level then reads `alice\u0040example.com`.
 * `from` as in `decodeEscapes`. Undefined when nothing was decoded.
 */
export function unescapeOnce(s: string): { text: string; from: Int32Array } | undefined {
  const first = s.indexOf('\\');
  if (first === -1) return undefined;
  const from = new Int32Array(s.length + 1);
  let text = s.slice(0, first);
  let n = 0;
  for (; n < first; n++) from[n] = n;
  let k = first;
  let decoded = false;
  while (k < s.length) {
    if (s.charCodeAt(k) === 92 && k + 1 < s.length) {
      const next = s.charCodeAt(k + 1);
      const simple = simpleEscapes[next];
      if (simple !== undefined || (next === 117 && hex4(s, k + 2))) {
        decoded = true;
        from[n++] = k;
        text += simple ?? String.fromCharCode(Number.parseInt(s.slice(k + 2, k + 6), 16));
        k += simple !== undefined ? 2 : 6;
        continue;
      }
    }
    let end = s.indexOf('\\', k + 1);
    if (end === -1) end = s.length;
    text += s.slice(k, end);
    for (; k < end; k++) from[n++] = k;
  }
  from[n] = s.length;
  return decoded ? { text, from: from.subarray(0, n + 1) } : undefined;
}

/** `outer[inner[i]]` for every `i`: where a unit of a view of a view starts in the original. */
function composeFrom(outer: Int32Array | undefined, inner: Int32Array): Int32Array {
  if (outer === undefined) return inner;
  const out = new Int32Array(inner.length);
  for (let i = 0; i < inner.length; i++) out[i] = outer[inner[i]!]!;
  return out;
}

/**
 * Levels of JSON encoding a string is decoded through for scanning: text escaped up to four
 * times (as the escaped quotes `password-assignment` reads), each level one linear pass.
 */
const maxEscapeLevels = 4;

function hex4(s: string, at: number): boolean {
  if (at + 4 > s.length) return false;
  for (let i = at; i < at + 4; i++) {
    const c = s.charCodeAt(i) | 32;
    if (!((c >= 48 && c <= 57) || (c >= 97 && c <= 102))) return false;
  }
  return true;
}

/** Digits counted by the last `charPass` / `charPairPass`. */
let passDigits = 0;

/**
 * One pass over a short string: the OR of its characters' condition bits; the number of digits
 * is left in `passDigits`.
 */
function charPass(s: string, bits: Int32Array): number {
  let present = 0;
  let digits = 0;
  for (let i = 0; i < s.length; i++) {
    const b = bits[s.charCodeAt(i)]!;
    present |= b;
    digits += b >>> 31;
  }
  passDigits = digits;
  return present;
}

/** `charPass`, also looking up each two-character pair after a character that begins one. */
function charPairPass(s: string, bits: Int32Array, pairs: Int32Array): number {
  let present = 0;
  let digits = 0;
  // (previous character << 7) when it begins a pair, else 0; branch-free.
  let prev = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    const b = bits[c]!;
    present |= b | pairs[prev | (c & 127)]!;
    prev = ((b >>> 30) & 1) * ((c & 127) << 7);
    digits += b >>> 31;
  }
  passDigits = digits;
  return present;
}

/**
 * Base64 as MCP carries it (standard or URL alphabet, padding, MIME line breaks): anything else
 * in a `blob` or image/audio `data` is not binary and is masked like any string.
 */
const notBase64 = /[^A-Za-z0-9+/=_\-\r\n]/;

/**
 * A base64 payload that masking would only corrupt: `blob` of a resource contents item (it has a
 * `uri`), `data` of an image or audio content block. Only called for keys `blob` and `data`.
 */
function isBinaryMember(obj: Record<string, unknown>, key: string, v: unknown): boolean {
  if (typeof v !== 'string') return false;
  if (key === 'blob' ? typeof obj['uri'] !== 'string' : obj['type'] !== 'image' && obj['type'] !== 'audio')
    return false;
  return !notBase64.test(v);
}

/** The clear value a `hash: true` token is keyed on, for a value that is not a string. */
function clearText(v: unknown): string {
  try {
    return JSON.stringify(v) ?? '';
  } catch {
    return '';
  }
}

function isJsonRpc(v: unknown): v is Record<string, unknown> {
  return isObject(v) && v['jsonrpc'] === '2.0';
}

/**
 * Build the masking stage from the union of the policies' masking rules. Throws
 * ERR_POLICY_INVALID naming policy and rule for an unknown detector, a pattern RE2 rejects, a
 * bad JSON path or glob.
 *
 * @example
 * const masker = createMasker([{ policy: 'pii', rule: { name: 'pii', detectors: ['email'] } }]);
 * masker.maskMessage({ content: [{ type: 'text', text: 'mail bob@example.com' }] }, { method: 'tools/call' });
 * // → { value: { content: [{ type: 'text', text: 'mail [masked:email]' }] }, hits: [{ policy: 'pii', detector: 'email' }] }
 */
export function createMasker(
  rules: ReadonlyArray<{ policy: string; rule: MaskingRule }>,
  options: MaskerOptions = {},
): Masker {
  const compiled = rules.map((r) => compileRule(r.policy, r.rule));
  const hashKey = options.hashKey ?? randomBytes(32);
  const maxDepth = options.maxDepth ?? 256;
  const exhaustive = options.exhaustive === true;
  const filter = charFilter(exhaustive ? [] : compiled.flatMap((r) => r.finders));
  const plans = new Map<string, Plan>();
  const empty = compiled.every((r) => r.finders.length === 0 && r.fields.length === 0 && !r.sensitiveKeys);
  // Without tool or resource scoping every call gets the same plan: no per-call work to find it.
  const unscoped = compiled.every((r) => r.tools === undefined && r.resources === undefined);
  let single: Plan | undefined;

  function planFor(scope: MaskScope): Plan {
    if (single !== undefined) return single;
    const active: number[] = [];
    for (let i = 0; i < compiled.length; i++) if (applies(compiled[i]!, scope)) active.push(i);
    const key = active.join(',');
    let plan = plans.get(key);
    if (plan !== undefined) return plan;
    plan = {
      active,
      minKeyLength: Number.POSITIVE_INFINITY,
      keys: new Map(),
      needs: undefined,
      firstBits: undefined,
      finders: [],
      numberFinders: [],
      numberFloor: Number.POSITIVE_INFINITY,
      keyOwner: -1,
      fields: [],
      descendKeys: new Map(),
      pemOwner: -1,
    };
    const seen = new Set<Finder>();
    for (const i of active) {
      const rule = compiled[i]!;
      for (const finder of rule.finders) {
        // Two policies enabling `email` run it once; the first owns the replacement.
        if (seen.has(finder)) continue;
        seen.add(finder);
        if (finder === privateKeyFinder) plan.pemOwner = i;
        const req = filter.req.get(finder) ?? 0;
        plan.finders.push({ finder, owner: i, req, minDigits: finder.minDigits ?? 0 });
        plan.minKeyLength = Math.min(plan.minKeyLength, finder.minLength);
        // exhaustive: every finder whose needs digits meet runs its regexes (`find`) on every
        // integer, so tests can check that `findInDigits` and the finders left out miss nothing.
        if (exhaustive ? digitsMeetNeeds(finder) : scansNumbers(finder)) {
          const minDigits = finder.minDigits!;
          plan.numberFinders.push({ finder, owner: i, minDigits });
          const floor = exhaustive ? 0 : 10 ** (minDigits - 1);
          if (floor < plan.numberFloor) plan.numberFloor = floor;
        }
      }
      if (rule.sensitiveKeys && plan.keyOwner === -1) plan.keyOwner = i;
      for (const path of rule.fields) {
        const only = path.segments.length === 1 ? path.segments[0] : undefined;
        if (only?.kind === 'descend' && only.key !== undefined) {
          if (!plan.descendKeys.has(only.key)) plan.descendKeys.set(only.key, i);
        } else {
          plan.fields.push({ path, owner: i });
        }
      }
    }
    if (!exhaustive) {
      plan.needs = needsClass(plan.finders.map((f) => f.finder));
      let firstBits: number | undefined = 0;
      for (const f of plan.finders) {
        if (f.req === 0) firstBits = undefined;
        // The lowest bit of a finder's conditions is its first one.
        else if (firstBits !== undefined) firstBits |= f.req & -f.req;
      }
      plan.firstBits = firstBits;
    }
    if (plans.size < 1024) plans.set(key, plan);
    if (unscoped) single = plan;
    return plan;
  }

  /** The key's `keyScan` / `keySensitive` / `keyToken` / `keyRaw` / `keySchemaMap` / `$..name` owner bits for this plan. */
  function keyInfo(plan: Plan, key: string): number {
    let info = key === 'rawJSON' ? keyRaw : schemaMapKeys.has(key) ? keySchemaMap : 0;
    if (key.length >= plan.minKeyLength && !protocolKeys.has(key)) info |= keyScan;
    if (plan.keyOwner >= 0) {
      if (isSensitiveKey(key)) info |= keySensitive;
      else if (isTokenKey(key)) info |= keyToken;
    }
    const owner = plan.descendKeys.size === 0 ? undefined : plan.descendKeys.get(key);
    if (owner !== undefined) info |= (owner + 1) << keyOwnerShift;
    if (key.length <= maxKnownKeyLength && plan.keys.size < maxKnownKeys) plan.keys.set(key, info);
    return info;
  }

  function token(
    w: Walk,
    owner: number,
    name: string,
    value: string,
    detector = name,
    whole = false,
  ): string {
    const rule = compiled[owner]!;
    w.hits ??= [];
    w.hits.push({ policy: rule.policy, detector });
    if (detector === 'private-key') w.keyHits++;
    const digest = rule.hash
      ? createHmac('sha256', hashKey)
          .update(w.session)
          .update('\u0000')
          .update(value)
          .digest('hex')
          .slice(0, 12)
      : '';
    let out: string;
    if (whole && name === 'email' && rule.defaultTemplate) {
      // A string that is one email address stays a valid address, so `format: email` in a tool's
      // outputSchema still validates ('.invalid' is reserved: it can never be delivered).
      out = rule.hash ? `masked-${digest}@masked.invalid` : 'masked-email@masked.invalid';
    } else {
      out = rule.template.replaceAll('{name}', name);
      if (rule.hash) out = out.replaceAll('{hash}', digest);
    }
    w.produced ??= new Set();
    w.produced.add(out);
    return out;
  }

  const escBit = filter.escBit;
  const foldBit = filter.foldBit;
  const weakFoldBit = filter.weakFoldBit;
  const anyFold = foldBit | weakFoldBit;
  /** Strings holding these are also scanned through a decoded or folded copy. */
  const viewBits = escBit | anyFold;
  /** The same for a string that serves no finder: weak look-alikes cannot make it serve one. */
  const strongViewBits = escBit | foldBit;
  /** The condition bits of a short string (its digits left in `passDigits`). */
  function presentIn(s: string): number {
    return filter.pairBits === undefined
      ? charPass(s, filter.charBits)
      : charPairPass(s, filter.charBits, filter.pairBits);
  }

  /**
   * `s` with its findings masked. What `findAll` does, written out again on this hot path (a
   * call more per string cost the masker ~5 %).
   */
  function maskString(w: Walk, s: string): string {
    if (w.produced?.has(s)) return s;
    const plan = w.plan;
    const len = s.length;
    let present = -1;
    let digits = len;
    if (len <= shortString) {
      present =
        filter.pairBits === undefined
          ? charPass(s, filter.charBits)
          : charPairPass(s, filter.charBits, filter.pairBits);
      digits = passDigits;
      if (plan.firstBits !== undefined && (present & plan.firstBits) === 0)
        return (present & strongViewBits) === 0 ? s : maskViews(w, s, present & ~weakFoldBit);
    } else if (plan.needs !== undefined && !plan.needs.test(s)) return maskViews(w, s, ~weakFoldBit);
    const spans = w.spans;
    spans.length = 0;
    const finders = plan.finders;
    for (let i = 0; i < finders.length; i++) {
      const f = finders[i]!;
      if ((present & f.req) === f.req && digits >= f.minDigits && len >= f.finder.minLength) {
        f.finder.find(s, f.owner, spans);
      }
    }
    if ((present & viewBits) !== 0) findInViews(plan, s, present, spans);
    if (spans.length === 0) return s;
    return replaceSpans(w, s);
  }

  /** `maskString` for a string no finder was chosen for: only what its copies hold. */
  function maskViews(w: Walk, s: string, present: number): string {
    const spans = w.spans;
    spans.length = 0;
    findInViews(w.plan, s, present, spans);
    if (spans.length === 0) return s;
    return replaceSpans(w, s);
  }

  /** Every finding in `s` (and in its decoded and folded copies), added to `out`. */
  function findAll(plan: Plan, s: string, out: Span[]): void {
    const len = s.length;
    // Which finders can match: those whose every needed set has a character in the string and
    // that have their digits (for long strings, all of them if any needed character is there).
    // A string holding `\` may hold JSON escapes, one holding a look-alike character may read
    // as something else: their decoded and folded copies are scanned too.
    let present = -1;
    let digits = len;
    if (len <= shortString) {
      present =
        filter.pairBits === undefined
          ? charPass(s, filter.charBits)
          : charPairPass(s, filter.charBits, filter.pairBits);
      digits = passDigits;
      if (plan.firstBits !== undefined && (present & plan.firstBits) === 0) {
        if ((present & strongViewBits) !== 0) findInViews(plan, s, present & ~weakFoldBit, out);
        return;
      }
    } else if (plan.needs !== undefined && !plan.needs.test(s)) {
      findInViews(plan, s, ~weakFoldBit, out);
      return;
    }
    const finders = plan.finders;
    for (let i = 0; i < finders.length; i++) {
      const f = finders[i]!;
      if ((present & f.req) === f.req && digits >= f.minDigits && len >= f.finder.minLength) {
        f.finder.find(s, f.owner, out);
      }
    }
    // (Long strings: `decodeEscapes` first searches for a `\`, `mayFold` for a look-alike.)
    if ((present & viewBits) !== 0) findInViews(plan, s, present, out);
  }

  function runFinders(plan: Plan, s: string, present: number, digits: number, out: Span[]): void {
    const finders = plan.finders;
    const len = s.length;
    for (let i = 0; i < finders.length; i++) {
      const f = finders[i]!;
      if ((present & f.req) === f.req && digits >= f.minDigits && len >= f.finder.minLength) {
        f.finder.find(s, f.owner, out);
      }
    }
  }

  /**
   * Findings in a view of the original string (decoded, folded), added to `out` as the spans of
   * the original text they were read from (`from`). A view holding look-alike characters is
   * scanned folded too, when `fold` allows.
   */
  function findInView(plan: Plan, text: string, from: Int32Array, out: Span[], fold: boolean): void {
    let present = -1;
    let digits = text.length;
    if (text.length <= shortString) {
      present = presentIn(text);
      digits = passDigits;
    }
    const found: Span[] = [];
    runFinders(plan, text, present, digits, found);
    for (const sp of found) out.push({ ...sp, start: from[sp.start]!, end: from[sp.end]! });
    if (fold && (present & anyFold) !== 0 && (present !== -1 || mayFold(text, true))) {
      const folded = foldText(text);
      if (folded !== undefined) findInView(plan, folded.text, composeFrom(from, folded.from), out, false);
    }
  }

  /**
   * Findings in the copies of a string holding look-alike characters (`４１１１ …`, read folded) or
   * JSON escapes (`alice\u0040example.com`, read decoded, through up to `maxEscapeLevels` levels
   * of encoding), added to `out` as the spans of the original text. `present`: the string's
   * condition bits, -1 for a long string (then each copy is looked for).
   */
  function findInViews(plan: Plan, s: string, present: number, out: Span[]): void {
    // (A long string has every bit but, when it serves no finder, the weak look-alikes'.)
    const long = present === -1 || present === ~weakFoldBit;
    if ((present & anyFold) !== 0 && (!long || mayFold(s, (present & weakFoldBit) !== 0))) {
      const folded = foldText(s);
      if (folded !== undefined) findInView(plan, folded.text, folded.from, out, false);
    }
    if ((present & escBit) === 0 || s.indexOf('\\') === -1) return;
    // Level 1: the `\uXXXX` and `\/` left after one parse. A doubled backslash means one more
    // level of encoding: its text is unescaped once and read the same way.
    let view = s;
    let map: Int32Array | undefined;
    for (let level = 1; ; level++) {
      const decoded = decodeEscapes(view);
      if (decoded !== undefined) findInView(plan, decoded.text, composeFrom(map, decoded.from), out, true);
      else if (map !== undefined) findInView(plan, view, map, out, true);
      if (level === maxEscapeLevels || view.indexOf('\\\\') === -1) return;
      const once = unescapeOnce(view);
      if (once === undefined) return;
      map = composeFrom(map, once.from);
      view = once.text;
    }
  }

  /** `s` with the findings in `w.spans` replaced by their tokens (the spans are used up). */
  function replaceSpans(w: Walk, s: string): string {
    const spans = w.spans;
    if (spans.length > 1) spans.sort((a, b) => a.start - b.start || b.end - a.end);
    let out = '';
    let cursor = 0;
    let i = 0;
    while (i < spans.length) {
      const first = spans[i]!;
      let end = first.end;
      // The run is named by its first finding, or by the most specific credential format in it
      // (`password=ghp_…`: github-token, not password-assignment).
      let label = first;
      let rank = credentialRank(first.name);
      i++;
      // Overlapping findings merge into one masked run: no tail of either leaks.
      while (i < spans.length && spans[i]!.start < end) {
        const sp = spans[i]!;
        end = Math.max(end, sp.end);
        const r = credentialRank(sp.name);
        if (r < rank) {
          rank = r;
          label = sp;
        }
        i++;
      }
      const whole = first.start === 0 && end === s.length;
      out +=
        s.slice(cursor, first.start) +
        token(w, label.owner, label.name, s.slice(first.start, end), label.name, whole);
      cursor = end;
    }
    spans.length = 0;
    return out + s.slice(cursor);
  }

  /**
   * A number holding a finding (a card number sent as `4111111111111111`): its digits are scanned
   * by the plan's number finders when it is an integer with enough digits, and a finding replaces
   * the whole number by the masked string (a JSON string where the number was). Anything else is
   * returned as it is.
   */
  function maskNumber(w: Walk, v: number | RawNumber): unknown {
    let text: string;
    const finders = w.plan.numberFinders;
    if (typeof v === 'number') {
      // Integers below 1e21 are written as plain digits; anything else holds no digit run to scan.
      if (!Number.isInteger(v) || v >= 1e21 || v <= -1e21) return v;
      if (!exhaustive) {
        // Most large integers (epoch milliseconds) are no finding: told without building the text.
        let may = false;
        for (let i = 0; i < finders.length && !may; i++)
          may = finders[i]!.finder.numberMayHold?.(v) !== false;
        if (!may) return v;
      }
      text = String(v);
    } else {
      text = numberText(v);
      if (!integerDigits.test(text)) return v;
    }
    const digits = text.charCodeAt(0) === 45 ? text.length - 1 : text.length;
    const spans = w.spans;
    spans.length = 0;
    for (let i = 0; i < finders.length; i++) {
      const f = finders[i]!;
      if (digits < f.minDigits || text.length < f.finder.minLength) continue;
      if (exhaustive) f.finder.find(text, f.owner, spans);
      else f.finder.findInDigits!(text, f.owner, spans);
    }
    if (spans.length === 0) return v;
    return replaceSpans(w, text);
  }

  /** Mask an object key holding a finding: the masked name, or the key itself. */
  function maskKey(w: Walk, key: string, info: number): string {
    if ((info & keyScan) === 0) return key;
    const masked = maskString(w, key);
    if (masked === key && w.plan.keys.has(key)) w.plan.keys.set(key, info & ~keyScan);
    return masked;
  }

  /**
   * A value a JSON path selected: strings become a token, numbers 0, booleans false; shape kept,
   * keys masked like anywhere else. Nesting past `maxDepth` is replaced whole, as in `walk`.
   */
  function maskWhole(w: Walk, owner: number, value: unknown, depth: number): unknown {
    const name = compiled[owner]!.name;
    if (typeof value === 'string') return token(w, owner, name, value, 'field');
    if (typeof value === 'number') {
      token(w, owner, name, String(value), 'field');
      return 0;
    }
    if (typeof value === 'boolean') {
      token(w, owner, name, String(value), 'field');
      return false;
    }
    if (typeof value !== 'object' || value === null) return value;
    if (isRawNumber(value)) {
      token(w, owner, name, value.rawJSON, 'field');
      return 0;
    }
    if (depth > maxDepth) return token(w, owner, 'depth-limit', '');
    let out: unknown[] | Record<string, unknown>;
    if (Array.isArray(value)) {
      out = value.map((v) => maskWhole(w, owner, v, depth + 1));
    } else {
      const plan = w.plan;
      let obj: Record<string, unknown> = {};
      let renames: Map<string, string> | undefined;
      for (const [k, v] of Object.entries(value)) {
        setOwn(obj, k, maskWhole(w, owner, v, depth + 1));
        const masked = maskKey(w, k, plan.keys.get(k) ?? keyInfo(plan, k));
        if (masked !== k) {
          renames ??= new Map();
          renames.set(k, masked);
        }
      }
      if (renames !== undefined) obj = renameKeys(obj, renames);
      out = obj;
    }
    // The walk need not go through it again (and must not mask its 0s and falses a second time).
    w.done ??= new Set();
    w.done.add(out);
    return out;
  }

  /** What a value under a password-like key is masked from: itself, or its JSON when hashing. */
  function secretText(plan: Plan, v: unknown): string {
    return typeof v === 'string' ? v : compiled[plan.keyOwner]!.hash ? clearText(v) : '';
  }

  /**
   * A value under a password-like key, masked whole: named by the most specific credential
   * format an enabled detector finds in it (`{"token": "ghp_…"}`: github-token), else
   * password-assignment.
   */
  function secretValue(w: Walk, v: unknown): string {
    const plan = w.plan;
    if (typeof v === 'string') {
      const spans = w.spans;
      spans.length = 0;
      findAll(plan, v, spans);
      const label = credentialFinding(spans);
      spans.length = 0;
      if (label !== undefined) return token(w, label.owner, label.name, v);
    }
    return token(w, plan.keyOwner, 'password-assignment', secretText(plan, v));
  }

  /**
   * A string under a `token` key alone in a token record (`isTokenRecord`): masked whole when a
   * credential format is found in it or it reads as a credential (`credentialToken`); else masked
   * as any string (an LLM's `{"token": " the", "logprob": -0.1}` stays).
   */
  function tokenValue(w: Walk, v: string): string {
    const plan = w.plan;
    const spans = w.spans;
    spans.length = 0;
    findAll(plan, v, spans);
    const label = credentialFinding(spans);
    if (label === undefined && !credentialToken(v)) return spans.length === 0 ? v : replaceSpans(w, v);
    spans.length = 0;
    return label !== undefined
      ? token(w, label.owner, label.name, v)
      : token(w, plan.keyOwner, 'password-assignment', v);
  }

  /**
   * The schema of a parameter with a password-like name (`properties.password` of an inputSchema,
   * an elicitation's requestedSchema): kept a schema, so the client can still call the tool or
   * show the form. Its JSON Schema keywords are walked as any value; any other member
   * (`default`, `const`, `enum`, `examples`, a `value` that is data, not a schema) is a value of
   * the secret and is masked whole.
   */
  function secretSchema(w: Walk, schema: Record<string, unknown>, depth: number): unknown {
    let copy: Record<string, unknown> | undefined;
    for (const key in schema) {
      if (!Object.hasOwn(schema, key)) continue;
      const v = schema[key];
      let next: unknown;
      if (schemaKeywords.has(key)) {
        if (schemaMapKeys.has(key) && isObject(v)) w.schemaMap = v;
        next = walk(w, v, depth + 1);
      } else if (v === null || v === '' || isMasked(w, v)) next = v;
      else next = secretValue(w, v);
      if (next !== v) {
        copy ??= { ...schema };
        setOwn(copy, key, next);
      }
    }
    return copy ?? schema;
  }

  /** Masked already, by a finder or a JSON path (numbers and booleans cannot be told). */
  function isMasked(w: Walk, v: unknown): boolean {
    if (typeof v === 'string') return w.produced?.has(v) === true;
    return typeof v === 'object' && v !== null && w.done?.has(v) === true;
  }

  function walk(w: Walk, value: unknown, depth: number): unknown {
    if (typeof value === 'string') return maskString(w, value);
    if (typeof value === 'number') {
      const floor = w.plan.numberFloor;
      return value >= floor || value <= -floor ? maskNumber(w, value) : value;
    }
    if (typeof value !== 'object' || value === null) return value;
    if (depth > maxDepth) {
      // Deeper than any real result: replaced whole rather than passed on unchecked.
      return token(w, w.plan.active[0]!, 'depth-limit', '');
    }
    if (w.done?.has(value)) return value;
    if (Array.isArray(value)) {
      let copy: unknown[] | undefined;
      const pem = w.plan.pemOwner;
      for (let i = 0; i < value.length; i++) {
        const keyHits = w.keyHits;
        const next = walk(w, value[i], depth + 1);
        if (next !== value[i]) {
          copy ??= value.slice();
          copy[i] = next;
        }
        // A private key found here may be cut off and go on in the next elements (content blocks,
        // lines): their bare base64 is masked too.
        if (pem >= 0 && w.keyHits !== keyHits && i + 1 < value.length) {
          const last = maskKeyBodies(w, pem, value, i, depth);
          if (last !== undefined) {
            copy ??= value.slice();
            for (let k = i + 1; k <= last.end; k++) copy[k] = last.masked[k - i - 1];
            i = last.end;
          }
        }
      }
      return copy ?? value;
    }
    const obj = value as Record<string, unknown>;
    let copy: Record<string, unknown> | undefined;
    let renames: Map<string, string> | undefined;
    const inSchemaMap = w.schemaMap === obj;
    // An exact text copy of structuredContent: its text is re-serialized from the masked
    // structuredContent afterwards; its other members are masked here like any.
    const textCopy = w.copies?.has(obj) === true;
    const plan = w.plan;
    for (const key in obj) {
      if (!Object.hasOwn(obj, key)) continue;
      const v = obj[key];
      // Base64 payloads (resource blobs, image/audio data) are not text: a detector hit there would corrupt them.
      if ((key === 'blob' || key === 'data') && isBinaryMember(obj, key, v)) continue;
      const info = plan.keys.get(key) ?? keyInfo(plan, key);
      // A number kept as its text (pkg/json.ts) is an object whose one member is `rawJSON`: told
      // here, from the key's facts, rather than by a call for every object.
      if ((info & keyRaw) !== 0 && isRawNumber(obj)) {
        return plan.numberFinders.length === 0 ? obj : maskNumber(w, obj as unknown as RawNumber);
      }
      let next: unknown;
      const fieldOwner = (info >> keyOwnerShift) - 1;
      // A `$..text` path still masks the copy's text.
      if (textCopy && key === 'text' && fieldOwner < 0) continue;
      if (fieldOwner >= 0 && !isMasked(w, v)) {
        next = maskWhole(w, fieldOwner, v, depth + 1);
      } else if ((info & keySensitive) !== 0 && v !== null && v !== '' && !isMasked(w, v)) {
        // Whatever the value under a password-like key is (a string, a number, a list, an
        // object), it is replaced whole; but in a JSON Schema's `properties` a schema under
        // `password` describes a parameter (a tool's inputSchema, an elicitation's form).
        next = inSchemaMap && looksLikeSchema(v) ? secretSchema(w, v, depth + 1) : secretValue(w, v);
      } else if ((info & keyToken) !== 0 && inSchemaMap && looksLikeSchema(v)) {
        // A parameter named `token` is a credential parameter: its schema stays, its values are masked.
        next = secretSchema(w, v, depth + 1);
      } else if ((info & keyToken) !== 0 && v !== null && v !== '' && !isMasked(w, v)) {
        // `token` alone is a credential (a kubeconfig user, a token Secret, Vault, an API's
        // `{id, token}`) unless its object is an LLM's or a tokenizer's token record, where a
        // string is masked whole only when it reads as a credential and anything else is walked
        // (a token id; TGI's `{"token": {"id": 464, "text": "The", "logprob": -0.1}}`).
        if (isTokenRecord(obj) || (isObject(v) && isTokenRecord(v)))
          next = typeof v === 'string' ? tokenValue(w, v) : walk(w, v, depth + 1);
        else next = secretValue(w, v);
      } else {
        if ((info & keySchemaMap) !== 0 && isObject(v)) w.schemaMap = v;
        next = walk(w, v, depth + 1);
      }
      if (next !== v) {
        copy ??= { ...obj };
        copy[key] = next;
      }
      // Keys are data too (`{"bob@example.com": {...}}`).
      if ((info & keyScan) !== 0) {
        const masked = maskString(w, key);
        if (masked !== key) {
          renames ??= new Map();
          renames.set(key, masked);
        } else if (plan.keys.has(key)) plan.keys.set(key, info & ~keyScan);
      }
    }
    const out = copy ?? obj;
    return renames === undefined ? out : renameKeys(out, renames);
  }

  /**
   * A private key split over three or more blocks: element `i` of `arr` ends inside a key (BEGIN,
   * no END). The elements after it holding nothing but base64 lines are its body: masked whole
   * when an element holding the END line follows them; without one (a key cut off), those with
   * at least 16 base64 characters are. An image or an unrelated element in between ends the run.
   * Returns the masked elements `i + 1 … end`, or undefined when there are none.
   */
  function maskKeyBodies(
    w: Walk,
    owner: number,
    arr: unknown[],
    i: number,
    depth: number,
  ): { end: number; masked: unknown[] } | undefined {
    const opening = elementText(arr[i]);
    if (opening === undefined || !opensPrivateKey(opening)) return undefined;
    let j = i + 1;
    while (j < arr.length) {
      const body = elementText(arr[j]);
      if (body === undefined || !isKeyBody(body, 1)) break;
      j++;
    }
    const closing = j < arr.length ? elementText(arr[j]) : undefined;
    const closed = closing !== undefined && closesPrivateKey(closing);
    const masked: unknown[] = [];
    for (let k = i + 1; k < j; k++) {
      const body = elementText(arr[k])!;
      if (!closed && !isKeyBody(body, 16)) break;
      // Its other members (`_meta`, `annotations`) are masked as usual.
      masked.push(withText(walk(w, arr[k], depth + 1), token(w, owner, 'private-key', body)));
    }
    return masked.length === 0 ? undefined : { end: i + masked.length, masked };
  }

  /**
   * Rebuild an object whose keys held findings, in order. A masked key takes a name no member
   * of the object has and no masked key took before it (`#2`, `#3`... when its replacement is
   * taken): a member never overwrites another, whichever comes first
   * (`{"home/bob@x.io/.bashrc": …, "home/[masked:email]/.bashrc": …}` keeps both).
   */
  function renameKeys(obj: Record<string, unknown>, renames: Map<string, string>): Record<string, unknown> {
    const keys = Object.keys(obj);
    const taken = new Set(keys);
    const out: Record<string, unknown> = {};
    for (const key of keys) {
      const masked = renames.get(key);
      setOwn(out, masked === undefined ? key : uniqueName(taken, masked), obj[key]);
    }
    return out;
  }

  function maskPayload(w: Walk, payload: unknown): unknown {
    const serialized = findSerializations(payload);
    if (serialized !== undefined) {
      for (const c of serialized) {
        if (!c.exact) continue;
        w.copies ??= new Set();
        w.copies.add(c.item);
      }
    }
    let out = payload;
    for (const { path, owner } of w.plan.fields) {
      out = applyJsonPath(out, path, (v, depth) => maskWhole(w, owner, v, depth), maxDepth);
    }
    out = walk(w, out, 0);
    w.copies = undefined;
    if (
      serialized !== undefined &&
      isObject(out) &&
      isObject(payload) &&
      out['structuredContent'] !== payload['structuredContent']
    ) {
      out = rewriteSerializations(out, serialized);
    }
    return out;
  }

  /**
   * One JSON-RPC message (or a bare payload). Its `result`, `params` and `error` are masked as
   * payloads (JSON paths are relative to them); every other member but `jsonrpc`, `id` and
   * `method` is masked as a member of an object (its value, and its name if that holds a finding).
   */
  function maskOne(w: Walk, m: unknown): unknown {
    if (!isJsonRpc(m)) return maskPayload(w, m);
    let copy: Record<string, unknown> | undefined;
    let others: Map<string, Record<string, unknown>> | undefined;
    for (const key in m) {
      if (!Object.hasOwn(m, key)) continue;
      if (key === 'result' || key === 'params' || key === 'error') {
        const next = maskPayload(w, m[key]);
        if (next !== m[key]) {
          copy ??= { ...m };
          copy[key] = next;
        }
      } else if (key !== 'jsonrpc' && key !== 'id' && key !== 'method') {
        // Rare (`_meta`, a server's own `debug`): walked as the one member of an object, so the
        // key rules (password-like names, `$..name` paths, findings in the name) apply to it.
        const one: Record<string, unknown> = {};
        setOwn(one, key, m[key]);
        const masked = walk(w, one, 0);
        if (masked !== one) {
          others ??= new Map();
          others.set(key, masked as Record<string, unknown>);
        }
      }
    }
    if (others === undefined) return copy ?? m;
    const base = copy ?? m;
    const keys = Object.keys(base);
    // As in `renameKeys`: a renamed member takes a name no other member has or took.
    const taken = new Set(keys);
    const out: Record<string, unknown> = {};
    for (const key of keys) {
      const masked = others.get(key);
      if (masked === undefined) {
        setOwn(out, key, base[key]);
        continue;
      }
      for (const name of Object.keys(masked)) {
        setOwn(out, name === key ? key : uniqueName(taken, name), masked[name]);
      }
    }
    return out;
  }

  function maskMessage<T>(message: T, scope: MaskScope): MaskResult<T> {
    if (empty) return { value: message, hits: noHits };
    const plan = planFor(scope);
    if (plan.active.length === 0) return { value: message, hits: noHits };
    const w: Walk = {
      plan,
      session: scope.session ?? '',
      hits: undefined,
      produced: undefined,
      copies: undefined,
      done: undefined,
      spans: [],
      keyHits: 0,
      schemaMap: undefined,
    };
    const value =
      Array.isArray(message) && message.length > 0 && message.every(isJsonRpc)
        ? mapArray(message, (m) => maskOne(w, m))
        : maskOne(w, message);
    return { value: value as T, hits: w.hits ?? noHits };
  }

  return { empty, maskMessage };
}

const privateKeyFinder = detectors.get('private-key');

/**
 * The detectors that name a credential format, most specific first: in a masked run, or a value
 * masked whole under a password-like key, the best of them found names the finding.
 */
const credentialFormats: ReadonlyMap<string, number> = new Map(
  [
    'private-key',
    'jwt',
    'aws-access-key',
    'azure-storage-key',
    'azure-sas-token',
    'github-token',
    'slack-token',
    'api-key',
  ].map((name, i) => [name, i]),
);
/** A name's place in `credentialFormats`, or past every one of them. */
function credentialRank(name: string): number {
  return credentialFormats.get(name) ?? credentialFormats.size;
}

/** The finding of the most specific credential format among `spans`, or undefined. */
function credentialFinding(spans: readonly Span[]): Span | undefined {
  let best: Span | undefined;
  let rank = credentialFormats.size;
  for (const sp of spans) {
    const r = credentialRank(sp.name);
    if (r < rank) {
      rank = r;
      best = sp;
    }
  }
  return best;
}

/**
 * The text of an array element as a block of a key split over several: the string itself, or
 * the `text` of a content block, of an embedded resource, of a prompt message's content.
 */
function elementText(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (!isObject(v)) return undefined;
  if (typeof v['text'] === 'string') return v['text'];
  for (const inner of [v['resource'], v['content']]) {
    if (isObject(inner) && typeof inner['text'] === 'string') return inner['text'];
  }
  return undefined;
}

/** `v` (as `elementText` read it) with its text replaced. */
function withText(v: unknown, text: string): unknown {
  if (typeof v === 'string' || !isObject(v)) return text;
  if (typeof v['text'] === 'string') return { ...v, text };
  for (const key of ['resource', 'content']) {
    const inner = v[key];
    if (isObject(inner) && typeof inner['text'] === 'string') return { ...v, [key]: { ...inner, text } };
  }
  return text;
}

/** A decimal integer as `numberText` writes it. */
const integerDigits = /^-?\d+$/;

/**
 * Whether the masker scans JSON integers with a finder: it declares how many digits its findings
 * hold and has `findInDigits` (the card number; an SSN or a phone number needs more than digits).
 */
export function scansNumbers(finder: Pick<Finder, 'minDigits' | 'findInDigits'>): boolean {
  return finder.findInDigits !== undefined && (finder.minDigits ?? 0) > 0;
}

/**
 * Whether a string of digits alone meets a finder's declared needs: `minDigits`, each `needs`
 * set holds a digit, one of `needsPairs` is two digits. Card, SSN and phone do; IBAN (an
 * uppercase letter) does not. The exhaustive masker runs these on every integer.
 */
export function digitsMeetNeeds(finder: Pick<Finder, 'minDigits' | 'needs' | 'needsPairs'>): boolean {
  if (finder.minDigits === undefined || finder.minDigits <= 0) return false;
  const digit = /[0-9]/;
  if (finder.needs?.some((set) => !digit.test(set)) === true) return false;
  return finder.needsPairs === undefined || finder.needsPairs.some((p) => /^[0-9]{2}$/.test(p));
}

/**
 * One character class of the union of each finder's first `needs` set, or undefined when a finder
 * has none (then every long string is scanned): a string holding none of these serves no finder.
 */
export function needsClass(finders: ReadonlyArray<Pick<Finder, 'needs'>>): RegExp | undefined {
  let chars = '';
  for (const f of finders) {
    const first = f.needs?.[0];
    if (first === undefined || first.length === 0) return undefined;
    for (const c of first) if (!chars.includes(c)) chars += c;
  }
  if (chars.length === 0) return undefined;
  const escaped = [...chars]
    .map((c) => c.charCodeAt(0))
    .map((code) => `\\u${code.toString(16).padStart(4, '0')}`)
    .join('');
  return new RegExp(`[${escaped}]`);
}

function mapArray(arr: unknown[], fn: (v: unknown) => unknown): unknown[] {
  let copy: unknown[] | undefined;
  for (let i = 0; i < arr.length; i++) {
    const next = fn(arr[i]);
    if (next !== arr[i]) {
      copy ??= arr.slice();
      copy[i] = next;
    }
  }
  return copy ?? arr;
}

/** A text block of a tool result that holds the JSON of its `structuredContent`. */
interface TextCopy {
  /** Its index in `content`. */
  index: number;
  item: object;
  /** Re-serialized compact (0) or indented by 2, as it had no newline or had one. */
  indent: 0 | 2;
  /**
   * Byte-equal to `JSON.stringify(structuredContent)` (or indented by 2): not masked on its own.
   * Otherwise it only parses to the same value (other spacing, escapes, duplicate keys): it is
   * masked as text, since what it says need not be what structuredContent says.
   */
  exact: boolean;
}

/**
 * In a tool result, the text blocks that hold the JSON of `structuredContent` (servers are asked
 * to send both). When structuredContent had anything masked, their text is re-serialized from the
 * masked structuredContent, so both copies stay identical and a value a JSON path masked in
 * structuredContent does not stay in the text.
 */
function findSerializations(payload: unknown): TextCopy[] | undefined {
  if (!isObject(payload)) return undefined;
  const sc = payload['structuredContent'];
  const content = payload['content'];
  if (!isObject(sc) || !Array.isArray(content)) return undefined;
  let found: TextCopy[] | undefined;
  let compact: string | undefined;
  let pretty: string | undefined;
  for (let index = 0; index < content.length; index++) {
    const item: unknown = content[index];
    if (!isObject(item) || item['type'] !== 'text' || typeof item['text'] !== 'string') continue;
    const text = item['text'];
    const head = text.trimStart()[0];
    if (head !== '{') continue;
    // A compact serialization has no raw newline (JSON.stringify escapes them) and an indented one
    // of a non-empty object always has one ('{}' is both): one of the two is worth building.
    const multiline = text.includes('\n');
    let exact: boolean;
    let same: boolean;
    try {
      if (!multiline) {
        compact ??= JSON.stringify(sc);
        exact = text === compact;
      } else {
        pretty ??= JSON.stringify(sc, null, 2);
        exact = text === pretty;
      }
      if (exact) same = true;
      else {
        compact ??= JSON.stringify(sc);
        same = JSON.stringify(parseJson(text)) === compact;
      }
    } catch {
      // Not JSON, or too deep to serialize: masked as text like any.
      continue;
    }
    if (same) {
      found ??= [];
      found.push({ index, item, indent: multiline ? 2 : 0, exact });
    }
  }
  return found;
}

function rewriteSerializations(out: Record<string, unknown>, copies: TextCopy[]): Record<string, unknown> {
  const content = out['content'];
  if (!Array.isArray(content)) return out;
  const sc = out['structuredContent'];
  const next = content.slice();
  const texts: Array<string | undefined> = [undefined, undefined, undefined];
  for (const { index, indent } of copies) {
    const item: unknown = next[index];
    if (!isObject(item)) continue;
    texts[indent] ??= indent === 0 ? JSON.stringify(sc) : JSON.stringify(sc, null, indent);
    next[index] = { ...item, text: texts[indent] };
  }
  return { ...out, content: next };
}
