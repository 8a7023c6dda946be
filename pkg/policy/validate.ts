import { createRequire } from 'node:module';
import type { Ajv, ErrorObject, ValidateFunction } from 'ajv';
import { compileRe2, compileWhen, re2Error } from './cel.js';
import { DurationPattern, durationError, parseDuration } from './duration.js';
import { globError } from './glob.js';
import { celValidations, type KeywordFn, listMapKeys } from './keywords.js';
import { methodClass } from './methods.js';
import type { CelRule, PolicyDocument } from './schema.js';
import * as precompiled from './validator.generated.js';

/**
 * Validation of `MCPPolicy` documents: the schema (ajv, every error at once, including the CEL
 * `x-kubernetes-validations` rules and list-map key uniqueness the API server checks), then what
 * no schema can say: CEL `when` compiles and type-checks, RE2 patterns compile, globs, durations,
 * issuer URLs and JSON paths are valid.
 *
 * The schema validators are precompiled (validator.generated.ts, ajv standalone code generated
 * from schema.ts): compiling the MCPPolicy schema with ajv at start-up cost every gateway and
 * sidecar ~6 MiB of resident memory and ~0.3 s, and loading schema.ts (TypeBox, 200 modules)
 * another ~3 MiB. validator.generated.test.ts fails when the file no longer matches schema.ts
 * (rewrite it with `UPDATE_GOLDEN=1 jest pkg/policy/validator.generated`), and checks that it
 * gives exactly the errors of ajv compiling the schema at run time.
 *
 * @example
 * validatePolicy(doc); // [{ path: 'spec.rules[1].match.when', message: 'CEL does not parse: ...' }]
 */
export interface ValidationIssue {
  /** Field path, e.g. `spec.rules[1].match.when` (`''` for the document itself). */
  path: string;
  message: string;
}

const require = createRequire(import.meta.url);

/** Which factory and schema value made each keyword function: the precompiled code rebuilds it. */
const keywordOrigins = new WeakMap<
  KeywordFn,
  { factory: 'listMapKeys' | 'celValidations'; schema: unknown }
>();

/** What the keyword functions of a compiled schema were made from (for validator.generated.ts). */
export function keywordOrigin(
  fn: unknown,
): { factory: 'listMapKeys' | 'celValidations'; schema: unknown } | undefined {
  return typeof fn === 'function' ? keywordOrigins.get(fn as KeywordFn) : undefined;
}

/**
 * An ajv instance that understands the x-kubernetes-* keywords (CEL rules through cel-js). ajv
 * and ajv-formats are CommonJS, loaded on first use: the precompiled validators need neither.
 * `source: true` keeps the generated code (for ajv's standalone code).
 */
export function createAjv(options: { source?: boolean } = {}): Ajv {
  const { Ajv: AjvClass } = require('ajv') as typeof import('ajv');
  const addFormats = require('ajv-formats') as (ajv: Ajv, formats?: string[]) => Ajv;
  const ajv = new AjvClass({
    allErrors: true,
    verbose: true,
    strict: true,
    strictTypes: false,
    useDefaults: false,
    ...(options.source ? { code: { source: true, esm: true } } : {}),
  });
  addFormats(ajv, ['date-time', 'int64']);
  ajv.addKeyword({ keyword: 'x-kubernetes-preserve-unknown-fields', schemaType: 'boolean' });
  ajv.addKeyword({ keyword: 'x-kubernetes-list-type', schemaType: 'string' });
  ajv.addKeyword({ keyword: 'x-kubernetes-int-or-string', schemaType: 'boolean' });
  ajv.addKeyword({
    keyword: 'x-kubernetes-list-map-keys',
    schemaType: 'array',
    errors: true,
    compile(keys: string[]) {
      const fn = listMapKeys(keys);
      keywordOrigins.set(fn, { factory: 'listMapKeys', schema: keys });
      return fn;
    },
  });
  ajv.addKeyword({
    keyword: 'x-kubernetes-validations',
    schemaType: 'array',
    errors: true,
    compile(rules: CelRule[]) {
      const fn = celValidations(rules);
      keywordOrigins.set(fn, { factory: 'celValidations', schema: rules });
      return fn;
    },
  });
  return ajv;
}

/** The precompiled schema validators (ajv standalone code). */
const validators = {
  policy: precompiled.policy as unknown as ValidateFunction,
  approval: precompiled.approval as unknown as ValidateFunction,
};

/** `/spec/rules/1/match/when` → `spec.rules[1].match.when`. */
export function toFieldPath(pointer: string): string {
  let out = '';
  for (const raw of pointer.split('/').slice(1)) {
    const seg = raw.replaceAll('~1', '/').replaceAll('~0', '~');
    if (/^[0-9]+$/.test(seg)) out += `[${seg}]`;
    else if (/^[A-Za-z_$][\w$-]*$/.test(seg)) out += out === '' ? seg : `.${seg}`;
    else out += `[${JSON.stringify(seg)}]`;
  }
  return out;
}

function join(path: string, key: string): string {
  return path === '' ? key : `${path}.${key}`;
}

function describe(value: unknown): string {
  const json = JSON.stringify(value);
  if (json === undefined) return String(value);
  return json.length > 60 ? `${json.slice(0, 57)}...` : json;
}

function resolve(doc: unknown, pointer: string): unknown {
  let cur = doc;
  for (const raw of pointer.split('/').slice(1)) {
    if (typeof cur !== 'object' || cur === null) return undefined;
    cur = (cur as Record<string, unknown>)[raw.replaceAll('~1', '/').replaceAll('~0', '~')];
  }
  return cur;
}

/** What a schema pattern means, in words. */
function patternHint(pattern: string): string {
  if (pattern === DurationPattern)
    return 'a duration: a number and a unit (ms, s, m, h), e.g. 90s, 5m, 1h30m';
  if (pattern.startsWith('^[A-Za-z0-9]([-A-Za-z0-9_.]*')) {
    return "a valid name: letters, digits, '-', '_' and '.', starting and ending with a letter or digit";
  }
  if (pattern.startsWith('^(system:serviceaccount:'))
    return 'a service account: namespace/name or system:serviceaccount:namespace:name';
  if (pattern.startsWith('^sha256:')) return 'a digest: sha256: followed by 64 lowercase hex digits';
  return `of the form ${pattern}`;
}

function ajvIssue(doc: unknown, e: ErrorObject): ValidationIssue | undefined {
  const path = toFieldPath(e.instancePath);
  const value = resolve(doc, e.instancePath);
  const p = e.params as Record<string, unknown>;
  const schema = e.parentSchema as Record<string, unknown> | undefined;
  switch (e.keyword) {
    case 'required':
      return { path: join(path, String(p['missingProperty'])), message: 'is required' };
    case 'additionalProperties': {
      const known = Object.keys((schema?.['properties'] as object | undefined) ?? {});
      return {
        path: join(path, String(p['additionalProperty'])),
        message: `is not a known field${known.length > 0 ? `; expected one of: ${known.join(', ')}` : ''}`,
      };
    }
    case 'enum':
      return {
        path,
        message: `must be one of ${(p['allowedValues'] as unknown[]).map((v) => describe(v)).join(', ')} (got ${describe(value)})`,
      };
    case 'type':
      return {
        path,
        message: `must be ${/^[aeiou]/.test(String(p['type'])) ? 'an' : 'a'} ${String(p['type'])} (got ${describe(value)})`,
      };
    case 'pattern':
      return { path, message: `${describe(value)} is not ${patternHint(String(p['pattern']))}` };
    case 'minItems':
      return { path, message: `must have at least ${String(p['limit'])} item${p['limit'] === 1 ? '' : 's'}` };
    case 'maxItems':
      return { path, message: `must have at most ${String(p['limit'])} items` };
    case 'minLength':
      return {
        path,
        message: p['limit'] === 1 ? 'must not be empty' : `must be at least ${String(p['limit'])} characters`,
      };
    case 'maxLength':
      return { path, message: `must be at most ${String(p['limit'])} characters` };
    case 'maxProperties':
      return { path, message: `must have at most ${String(p['limit'])} entries` };
    case 'format':
      return { path, message: `must be a ${String(p['format'])} (got ${describe(value)})` };
    case 'minimum':
      return { path, message: `must be at least ${String(p['limit'])}` };
    case 'x-kubernetes-validations':
    case 'x-kubernetes-list-map-keys':
      return { path, message: e.message ?? 'is invalid' };
    default:
      return { path, message: e.message ?? 'is invalid' };
  }
}

function schemaIssues(schema: keyof typeof validators, doc: unknown): ValidationIssue[] {
  const validate = validators[schema];
  if (validate(doc)) return [];
  const out: ValidationIssue[] = [];
  const seen = new Set<string>();
  for (const e of validate.errors ?? []) {
    const issue = ajvIssue(doc, e);
    if (issue === undefined) continue;
    const key = `${issue.path}\0${issue.message}`;
    if (seen.has(key)) continue;
    seen.add(key);
    out.push(issue);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Semantic checks

const jsonPathRe =
  /^\$(?:\.\.?(?:[A-Za-z_$][\w$-]*|\*)|\[(?:[0-9]+|\*|'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")\])+$/;

/** Why `path` is not a JSON path the masker understands, or undefined. */
export function jsonPathError(path: string): string | undefined {
  if (path === '$')
    return '"$" would mask the whole message: name a field below it, e.g. $.structuredContent.ssn';
  if (!jsonPathRe.test(path)) {
    return `${describe(path)} is not a JSON path: start with $ and use .name, ['name'], [0], [*], .* or ..name`;
  }
  return undefined;
}

const loopbackHosts = new Set(['127.0.0.1', 'localhost', '[::1]', '::1']);

/** Why `url` may not be used as an issuer / JWKS / discovery URL, or undefined. */
export function issuerUrlError(url: string): string | undefined {
  let u: URL;
  try {
    u = new URL(url.replaceAll('{tenantid}', '00000000-0000-0000-0000-000000000000'));
  } catch {
    return `${describe(url)} is not a URL`;
  }
  if (u.protocol === 'https:') return undefined;
  if (u.protocol === 'http:' && loopbackHosts.has(u.hostname)) return undefined;
  if (u.protocol === 'http:')
    return `${describe(url)} uses http:// on a non-loopback host: use https:// (http is only for local use on 127.0.0.1)`;
  return `${describe(url)} must be an https:// URL`;
}

const placeholderRe = /\{([^{}]*)\}/g;

function asArray(v: unknown): unknown[] {
  return Array.isArray(v) ? v : [];
}
function asObject(v: unknown): Record<string, unknown> | undefined {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
    ? (v as Record<string, unknown>)
    : undefined;
}

function globIssues(out: ValidationIssue[], base: string, list: unknown, mode: 'flat' | 'path'): void {
  asArray(list).forEach((g, i) => {
    if (typeof g !== 'string') return;
    const e = globError(g, mode);
    if (e !== undefined) out.push({ path: `${base}[${i}]`, message: `glob ${describe(g)} ${e}` });
  });
}

function semanticIssues(doc: unknown): ValidationIssue[] {
  const out: ValidationIssue[] = [];
  const spec = asObject(asObject(doc)?.['spec']);
  if (spec === undefined) return out;

  asArray(spec['rules']).forEach((r, i) => {
    const rule = asObject(r);
    if (rule === undefined) return;
    const base = `spec.rules[${i}]`;
    const match = asObject(rule['match']);
    if (match !== undefined) {
      asArray(match['methods']).forEach((m, j) => {
        if (typeof m !== 'string') return;
        const e = globError(m, 'flat');
        if (e !== undefined)
          out.push({ path: `${base}.match.methods[${j}]`, message: `glob ${describe(m)} ${e}` });
        else if (!/[*?\\]/.test(m)) {
          const cls = methodClass(m);
          if (cls === 'protocol') {
            out.push({
              path: `${base}.match.methods[${j}]`,
              message: `${m} is never decided: the protocol needs it, so it is always allowed`,
            });
          } else if (cls === 'list') {
            out.push({
              path: `${base}.match.methods[${j}]`,
              message: `${m} is not decided but filtered: rules on the matching call (e.g. tools/call) decide which items are listed`,
            });
          }
        }
      });
      globIssues(out, `${base}.match.tools`, match['tools'], 'flat');
      globIssues(out, `${base}.match.prompts`, match['prompts'], 'flat');
      globIssues(out, `${base}.match.resources`, match['resources'], 'path');
      if (typeof match['when'] === 'string') {
        for (const message of compileWhen(match['when']).issues)
          out.push({ path: `${base}.match.when`, message });
      }
    }
    const approval = asObject(rule['approval']);
    // The form is the schema's business (pattern); here only the range.
    if (
      approval !== undefined &&
      typeof approval['timeout'] === 'string' &&
      parseDuration(approval['timeout']) !== undefined
    ) {
      const e = durationError(approval['timeout']);
      if (e !== undefined) out.push({ path: `${base}.approval.timeout`, message: e });
    }
    const limit = asObject(rule['rateLimit']);
    if (
      limit !== undefined &&
      typeof limit['per'] === 'string' &&
      parseDuration(limit['per']) !== undefined
    ) {
      const e = durationError(limit['per'], 24 * 3_600_000);
      if (e !== undefined) out.push({ path: `${base}.rateLimit.per`, message: e });
    }
  });

  asArray(asObject(spec['identity'])?.['issuers']).forEach((x, i) => {
    const iss = asObject(x);
    if (iss === undefined) return;
    for (const key of ['issuer', 'jwksUri', 'discoveryUrl'] as const) {
      if (typeof iss[key] !== 'string') continue;
      const e = issuerUrlError(iss[key]);
      if (e !== undefined) out.push({ path: `spec.identity.issuers[${i}].${key}`, message: e });
    }
    const k8s = asObject(iss['kubernetes']);
    if (k8s !== undefined && typeof k8s['issuer'] === 'string') {
      const e = issuerUrlError(k8s['issuer']);
      if (e !== undefined) out.push({ path: `spec.identity.issuers[${i}].kubernetes.issuer`, message: e });
    }
  });

  asArray(spec['masking']).forEach((x, i) => {
    const m = asObject(x);
    if (m === undefined) return;
    const base = `spec.masking[${i}]`;
    asArray(m['patterns']).forEach((p, j) => {
      const regex = asObject(p)?.['regex'];
      if (typeof regex !== 'string') return;
      const e = re2Error(regex);
      if (e !== undefined) out.push({ path: `${base}.patterns[${j}].regex`, message: e });
      else if (re2EmptyMatch(regex)) {
        out.push({
          path: `${base}.patterns[${j}].regex`,
          message: `regex ${describe(regex)} matches the empty string`,
        });
      }
    });
    asArray(m['fields']).forEach((f, j) => {
      if (typeof f !== 'string') return;
      const e = jsonPathError(f);
      if (e !== undefined) out.push({ path: `${base}.fields[${j}]`, message: e });
    });
    globIssues(out, `${base}.tools`, m['tools'], 'flat');
    globIssues(out, `${base}.resources`, m['resources'], 'path');
    if (typeof m['replacement'] === 'string') {
      for (const [, name] of m['replacement'].matchAll(placeholderRe)) {
        if (name === 'name') continue;
        if (name === 'hash' && m['hash'] === true) continue;
        out.push({
          path: `${base}.replacement`,
          message:
            name === 'hash'
              ? '{hash} needs hash: true'
              : `unknown placeholder {${name}}: use {name}${m['hash'] === true ? ' or {hash}' : ''}`,
        });
      }
    }
  });
  return out;
}

/** A pattern that matches "" would mask at every position. */
function re2EmptyMatch(regex: string): boolean {
  try {
    return compileRe2(regex).test('');
  } catch {
    return false;
  }
}

/** Validate an MCPPolicy document (schema + semantics). Empty array means valid. */
export function validatePolicy(doc: unknown): ValidationIssue[] {
  // `status` is written by sidecars and the webhook and checked by the API server's CRD schema; it
  // never changes what a policy decides, so a status field this version does not know must not
  // make a policy uncompilable (or an update of its spec inadmissible).
  const subject =
    asObject(doc) !== undefined && 'status' in (doc as object)
      ? withoutStatus(doc as Record<string, unknown>)
      : doc;
  const issues = schemaIssues('policy', subject);
  return [...issues, ...semanticIssues(subject)];
}

function withoutStatus(doc: Record<string, unknown>): Record<string, unknown> {
  const { status: _status, ...rest } = doc;
  return rest;
}

/** Schema-only validation of an MCPPolicy (what the CRD's structural schema also checks). */
export function validatePolicySchema(doc: unknown): ValidationIssue[] {
  return schemaIssues('policy', doc);
}

/** Validate an MCPApproval object (schema, including its CEL rules). */
export function validateApproval(doc: unknown): ValidationIssue[] {
  return schemaIssues('approval', doc);
}

/** Type guard over `validatePolicy`. */
export function isPolicyDocument(doc: unknown): doc is PolicyDocument {
  return validatePolicy(doc).length === 0;
}
