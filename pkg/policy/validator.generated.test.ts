import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ValidateFunction } from 'ajv';
import { schemaHash, validatorSource } from './gen-validator.js';
import { MCPApprovalSchema, MCPPolicySchema } from './schema.js';
import { createAjv, validatePolicy } from './validate.js';
import * as precompiled from './validator.generated.js';

/**
 * The precompiled validators (validator.generated.ts) are what the run-time ajv would compile:
 * the committed file is regenerated and compared (a stale file fails; UPDATE_GOLDEN=1 rewrites
 * it), and both validators give the same errors for valid and invalid documents.
 */
const file = join(import.meta.dirname, 'validator.generated.ts');

test('validator.generated.ts is up to date with the schema', () => {
  const source = validatorSource();
  if (process.env['UPDATE_GOLDEN'] === '1') writeFileSync(file, source);
  expect(readFileSync(file, 'utf8')).toBe(source);
  expect(precompiled.schemaHash).toBe(schemaHash());
});

/** Errors as data (the run-time schema objects carry TypeBox's symbols; the generated ones do not). */
function errorsOf(v: ValidateFunction, doc: unknown): unknown {
  const ok = v(doc);
  return { ok, errors: JSON.parse(JSON.stringify(v.errors ?? null)) as unknown };
}

const valid = (): Record<string, unknown> =>
  JSON.parse(
    JSON.stringify({
      apiVersion: 'mcpwarden.io/v1alpha1',
      kind: 'MCPPolicy',
      metadata: { name: 'p', namespace: 'agents' },
      spec: {
        podSelector: {
          matchLabels: { app: 'x' },
          matchExpressions: [{ key: 'tier', operator: 'In', values: ['a'] }],
        },
        mode: 'enforce',
        identity: {
          issuers: [
            { issuer: 'https://login.example/t/v2.0', audiences: ['api://x'] },
            { kubernetes: { audiences: ['x'] } },
          ],
        },
        rules: [
          {
            name: 'readers',
            subjects: [{ group: 'g1' }, { serviceAccount: 'agents/planner' }],
            match: { methods: ['tools/call'], tools: ['get_*'], when: 'has(args.owner)' },
            action: 'allow',
          },
          {
            name: 'deletes',
            subjects: [{ any: true }],
            match: { tools: ['delete_*'] },
            action: 'approve',
            approval: { timeout: '5m', approvers: [{ group: 'admins' }] },
          },
        ],
        masking: [{ name: 'pii', detectors: ['email'], fields: ['$.a'], replacement: '[masked:{name}]' }],
        recording: { enabled: true, payloads: 'masked' },
      },
      status: {
        conditions: [
          {
            type: 'Ready',
            status: 'True',
            lastTransitionTime: '2026-01-01T00:00:00Z',
            reason: 'x',
            message: 'y',
          },
        ],
      },
    }),
  ) as Record<string, unknown>;

/** Bad values at many places: every kind of schema error (type, enum, pattern, required, ...). */
function corpus(): unknown[] {
  const docs: unknown[] = [valid(), null, 'x', 1, [], {}];
  const paths = [
    ['apiVersion'],
    ['kind'],
    ['metadata'],
    ['metadata', 'name'],
    ['spec'],
    ['spec', 'mode'],
    ['spec', 'podSelector'],
    ['spec', 'podSelector', 'matchExpressions', 0, 'operator'],
    ['spec', 'identity', 'issuers'],
    ['spec', 'identity', 'issuers', 0],
    ['spec', 'identity', 'issuers', 1, 'kubernetes'],
    ['spec', 'rules'],
    ['spec', 'rules', 0, 'name'],
    ['spec', 'rules', 0, 'subjects'],
    ['spec', 'rules', 0, 'subjects', 0],
    ['spec', 'rules', 0, 'match', 'tools'],
    ['spec', 'rules', 1, 'action'],
    ['spec', 'rules', 1, 'approval', 'timeout'],
    ['spec', 'rules', 1, 'approval', 'approvers', 0],
    ['spec', 'masking', 0],
    ['spec', 'masking', 0, 'detectors'],
    ['spec', 'recording', 'payloads'],
    ['status', 'conditions', 0, 'lastTransitionTime'],
  ] as const;
  const bad: unknown[] = [null, 'x', -1, [], {}, 'no spaces allowed here!', '5 minutes', [{}], { extra: 1 }];
  for (const path of paths) {
    for (const value of bad) {
      const doc = valid();
      let cur = doc as Record<string | number, unknown>;
      for (const key of path.slice(0, -1)) cur = cur[key] as Record<string | number, unknown>;
      cur[path[path.length - 1] as string | number] = value;
      docs.push(doc);
    }
  }
  // CEL rules and list-map keys.
  const twoKinds = valid();
  (twoKinds['spec'] as { rules: Array<{ subjects: unknown[] }> }).rules[0]!.subjects[0] = {
    group: 'g',
    role: 'r',
  };
  const dupNames = valid();
  const rules = (dupNames['spec'] as { rules: Array<{ name: string }> }).rules;
  rules[1]!.name = rules[0]!.name;
  const emptyMask = valid();
  (emptyMask['spec'] as { masking: unknown[] }).masking = [{ name: 'm' }];
  docs.push(twoKinds, dupNames, emptyMask);
  return docs;
}

test('the precompiled validators give exactly the run-time validators’ results and errors', () => {
  expect(precompiled.schemaHash).toBe(schemaHash());
  const ajv = createAjv();
  const runtimePolicy = ajv.compile(MCPPolicySchema);
  const runtimeApproval = ajv.compile(MCPApprovalSchema);
  const docs = corpus();
  let invalid = 0;
  for (const doc of docs) {
    const expected = errorsOf(runtimePolicy, doc) as { ok: boolean };
    if (!expected.ok) invalid++;
    expect(errorsOf(precompiled.policy as unknown as ValidateFunction, doc)).toEqual(expected);
    expect(errorsOf(precompiled.approval as unknown as ValidateFunction, doc)).toEqual(
      errorsOf(runtimeApproval, doc),
    );
  }
  expect(invalid).toBeGreaterThan(docs.length * 0.8);
  // The corpus reaches the compile-style keywords (CEL rules, list-map keys), the ones rebuilt by
  // factories in the generated code.
  const keywordsHit = new Set(
    docs.flatMap((doc) => {
      (precompiled.policy as unknown as ValidateFunction)(doc);
      return ((precompiled.policy as unknown as ValidateFunction).errors ?? []).map((e) => e.keyword);
    }),
  );
  for (const k of [
    'x-kubernetes-validations',
    'x-kubernetes-list-map-keys',
    'pattern',
    'enum',
    'required',
    'type',
  ])
    expect(keywordsHit).toContain(k);
  // And through the public API: the valid document passes.
  expect(validatePolicy(valid())).toEqual([]);
});
