import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import type { Ajv } from 'ajv';
import { MCPApprovalSchema, MCPPolicySchema } from './schema.js';
import { createAjv, keywordOrigin } from './validate.js';

/** Identifies the schemas the precompiled validators were generated from. */
export function schemaHash(): string {
  return createHash('sha256')
    .update(JSON.stringify([MCPPolicySchema, MCPApprovalSchema]))
    .digest('hex')
    .slice(0, 32);
}

/**
 * The source of validator.generated.ts: ajv's standalone code for the MCPPolicy and MCPApproval
 * schemas, compiled with the same ajv options and keywords as validate.ts's run-time ajv. The
 * compile-style x-kubernetes-* keyword functions are rebuilt by the same factories (keywords.ts)
 * from their schema values. A unit test regenerates it and fails when the committed file is stale
 * (`UPDATE_GOLDEN=1` rewrites it).
 */
const require_ = createRequire(import.meta.url);

export function validatorSource(): string {
  const ajv: Ajv = createAjv({ source: true });
  ajv.addSchema(MCPPolicySchema, 'policy');
  ajv.addSchema(MCPApprovalSchema, 'approval');
  ajv.getSchema('policy');
  ajv.getSchema('approval');
  const codegen = require_('ajv') as typeof import('ajv');
  // ajv keeps a keyword function as a scope value without code; give each one the factory call
  // that rebuilds it (ajv's ValueScope internals: pinned ajv 8, checked by the staleness test).
  const scope = ajv.scope as unknown as {
    _values: Record<string, Map<unknown, { value?: { ref: unknown; code?: unknown } }> | undefined>;
  };
  for (const name of scope._values['keyword']?.values() ?? []) {
    const origin = keywordOrigin(name.value?.ref);
    if (origin === undefined || name.value === undefined)
      throw new Error('a schema keyword of unknown origin');
    name.value.code =
      origin.factory === 'listMapKeys'
        ? codegen._`keywords.listMapKeys(${codegen.stringify(origin.schema)})`
        : codegen._`keywords.celValidations(${codegen.stringify(origin.schema)})`;
  }
  const standaloneCode = require_('ajv/dist/standalone') as (
    ajv: Ajv,
    refs: Record<string, string>,
  ) => string;
  const code = standaloneCode(ajv, { policy: 'policy', approval: 'approval' });
  return [
    '// biome-ignore-all format: generated',
    '// biome-ignore-all lint: generated',
    '// biome-ignore-all assist: generated',
    '// @ts-nocheck',
    '// Generated from pkg/policy/schema.ts by pkg/policy/gen-validator.ts (ajv standalone code):',
    '// do not edit. `UPDATE_GOLDEN=1 jest pkg/policy/validator.generated` rewrites it.',
    "import { createRequire } from 'node:module';",
    "import * as keywords from './keywords.js';",
    '',
    'const require = createRequire(import.meta.url);',
    '// ajv calls keyword functions with its instance as `this` (ours do not use it).',
    'const self = undefined;',
    `export const schemaHash = ${JSON.stringify(schemaHash())};`,
    // ASCII only: one non-ASCII character (a schema description's dash) makes V8 keep the whole
    // module source as a two-byte string, twice the memory. In string literals \uXXXX is the same.
    code
      .replace(/^"use strict";/, '')
      .replace(/[^\x00-\x7f]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`),
    '',
  ].join('\n');
}
