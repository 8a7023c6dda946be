import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ErrorObject } from 'ajv';
import { parse } from 'yaml';
import { approvalCrd, policyCrd, renderCrds } from './crd.js';
import type { MCPApproval, PolicyDocument } from './schema.js';
import { createAjv, toFieldPath, validateApproval, validatePolicySchema } from './validate.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

// The repository's crds/ (kubectl apply -f crds/) and the chart's copy (templates/crds.yaml).
test.each(['crds', 'charts/mcp-warden/files/crds'])(
  'the committed CRDs in %s are exactly what the schema generates (run `make crds` after changing pkg/policy/schema.ts)',
  async (dir) => {
    for (const [name, text] of Object.entries(renderCrds())) {
      const committed = await readFile(join(root, dir, name), 'utf8').catch(
        () => `(missing: ${dir}/${name})`,
      );
      expect(committed).toBe(text);
    }
  },
);

type Json = Record<string, unknown>;

function walk(node: unknown, path: string, visit: (n: Json, path: string) => void): void {
  if (typeof node !== 'object' || node === null) return;
  const n = node as Json;
  visit(n, path);
  for (const [k, v] of Object.entries((n['properties'] as Json | undefined) ?? {}))
    walk(v, `${path}.${k}`, visit);
  if (n['items']) walk(n['items'], `${path}[]`, visit);
  if (typeof n['additionalProperties'] === 'object') walk(n['additionalProperties'], `${path}{}`, visit);
}

describe.each([
  ['MCPPolicy', policyCrd],
  ['MCPApproval', approvalCrd],
])('%s CRD', (_kind, make) => {
  const crd = make() as Json;
  const version = ((crd['spec'] as Json)['versions'] as Json[])[0]!;
  const schema = (version['schema'] as Json)['openAPIV3Schema'] as Json;

  test('is structural: every node typed, nothing structural schemas forbid', () => {
    walk(schema, '', (n, path) => {
      const forbidden = [
        '$ref',
        '$id',
        '$schema',
        'anyOf',
        'oneOf',
        'allOf',
        'not',
        'const',
        'patternProperties',
        'uniqueItems',
        'definitions',
      ];
      for (const key of forbidden) expect([path, key, n[key]]).toEqual([path, key, undefined]);
      expect([path, n['additionalProperties']]).not.toEqual([path, false]);
      if (n['x-kubernetes-preserve-unknown-fields'] !== true)
        expect([path, typeof n['type']]).toEqual([path, 'string']);
      if (n['properties'] && n['additionalProperties'])
        throw new Error(`${path}: properties and additionalProperties together`);
    });
  });

  test('every spec and status field has a description (kubectl explain)', () => {
    walk(schema, '', (n, path) => {
      if (path.startsWith('.spec') || path.startsWith('.status')) {
        if (!path.endsWith('{}')) expect([path, typeof n['description']]).toEqual([path, 'string']);
      }
    });
  });

  test('namespaced, v1alpha1, status subresource, categories, printer columns', () => {
    const spec = crd['spec'] as Json;
    expect(spec['group']).toBe('mcpwarden.io');
    expect(spec['scope']).toBe('Namespaced');
    expect((spec['names'] as Json)['categories']).toEqual(['mcp-warden']);
    expect(version['name']).toBe('v1alpha1');
    expect(version['subresources']).toEqual({ status: {} });
    expect((version['additionalPrinterColumns'] as Json[]).length).toBeGreaterThanOrEqual(4);
  });
});

test('names, short names and printer columns as the contract says', () => {
  const cols = (crd: Json) =>
    (((crd['spec'] as Json)['versions'] as Json[])[0]!['additionalPrinterColumns'] as Json[])
      .filter((c) => c['priority'] === undefined)
      .map((c) => c['name']);
  const names = (crd: Json) => (crd['spec'] as Json)['names'] as Json;
  expect(names(policyCrd())['shortNames']).toEqual(['mcpp']);
  expect(names(approvalCrd())['shortNames']).toEqual(['mcpa']);
  expect(cols(policyCrd())).toEqual(['Mode', 'Rules', 'Pods', 'Denied', 'Age']);
  expect(cols(approvalCrd())).toEqual(['Phase', 'Tool', 'Requester', 'Masked', 'Age']);
});

// ---------------------------------------------------------------------------------------------
// TS types, ajv validator and CRD agree on examples

const valid = {
  apiVersion: 'mcpwarden.io/v1alpha1',
  kind: 'MCPPolicy',
  metadata: { name: 'github-tools', namespace: 'agents' },
  spec: {
    podSelector: {
      matchLabels: { app: 'github-mcp' },
      matchExpressions: [{ key: 'tier', operator: 'In', values: ['prod'] }],
    },
    mode: 'enforce',
    identity: {
      issuers: [
        {
          issuer: 'https://login.microsoftonline.com/t/v2.0',
          audiences: ['api://github-mcp'],
          groupsOverage: 'graph',
        },
        { kubernetes: { audiences: ['github-mcp'] } },
      ],
    },
    rules: [
      {
        name: 'readers-read',
        subjects: [{ group: 'g' }, { role: 'MCP.Read' }],
        match: {
          methods: ['tools/call'],
          tools: ['get_*'],
          toolAnnotations: { readOnlyHint: true },
          when: 'args.q != ""',
        },
        action: 'allow',
        reason: 'ok',
      },
      {
        name: 'deletes-need-approval',
        subjects: [{ group: 'g' }],
        match: { tools: ['delete_*'] },
        action: 'approve',
        approval: { approvers: [{ group: 'reviewers' }], timeout: '3m', mode: 'hold' },
      },
    ],
    masking: [
      {
        name: 'pii',
        detectors: ['email', 'jwt'],
        patterns: [{ name: 'ticket', regex: 'TCK-[0-9]{6}' }],
        fields: ['$.a.b'],
      },
    ],
    recording: { enabled: true, payloads: 'masked' },
  },
  status: {
    observedGeneration: 3,
    conditions: [
      {
        type: 'Accepted',
        status: 'True',
        lastTransitionTime: '2026-01-01T00:00:00Z',
        reason: 'Compiled',
        message: '',
      },
    ],
    pods: [
      {
        name: 'p-1',
        generation: 3,
        lastReportTime: '2026-01-01T00:00:00Z',
        allowed: 1,
        denied: 0,
        approvalsRequested: 0,
        masked: 0,
        sessions: 1,
      },
    ],
    approvals: { pending: 0, approved: 1, denied: 0, expired: 0, recent: [] },
    recordings: { total: 0 },
  },
} satisfies PolicyDocument;

function withSpec(patch: (spec: Json) => void): Json {
  // A JSON round trip, not structuredClone: under jest that returns objects of another realm.
  const doc = JSON.parse(JSON.stringify(valid)) as Json;
  patch(doc['spec'] as Json);
  return doc;
}

const invalid: Array<[string, Json, string[]]> = [
  [
    'action not in the enum',
    withSpec((s) => ((s['rules'] as Json[])[0]!['action'] = 'nope')),
    ['spec.rules[0].action'],
  ],
  [
    'approve without approval',
    withSpec((s) => delete (s['rules'] as Json[])[1]!['approval']),
    ['spec.rules[1].approval'],
  ],
  [
    'approval on allow',
    withSpec((s) => ((s['rules'] as Json[])[0]!['approval'] = { approvers: [{ user: 'u' }] })),
    ['spec.rules[0].approval'],
  ],
  [
    'two keys in a subject',
    withSpec((s) => ((s['rules'] as Json[])[0]!['subjects'] = [{ group: 'g', user: 'u' }])),
    ['spec.rules[0].subjects[0]'],
  ],
  [
    'empty subject',
    withSpec((s) => ((s['rules'] as Json[])[0]!['subjects'] = [{}])),
    ['spec.rules[0].subjects[0]'],
  ],
  ['no subjects', withSpec((s) => ((s['rules'] as Json[])[0]!['subjects'] = [])), ['spec.rules[0].subjects']],
  [
    'duplicate rule names',
    withSpec((s) => ((s['rules'] as Json[])[1]!['name'] = 'readers-read')),
    ['spec.rules[1].name'],
  ],
  [
    'rule name with spaces',
    withSpec((s) => ((s['rules'] as Json[])[0]!['name'] = 'bad name')),
    ['spec.rules[0].name'],
  ],
  ['missing rules', withSpec((s) => delete s['rules']), ['spec.rules']],
  ['bad mode', withSpec((s) => (s['mode'] = 'permissive')), ['spec.mode']],
  [
    'issuer with kubernetes too',
    withSpec(
      (s) => (((s['identity'] as Json)['issuers'] as Json[])[0]!['kubernetes'] = { audiences: ['x'] }),
    ),
    ['spec.identity.issuers[0]'],
  ],
  [
    'tenant template without allowedTenants',
    withSpec(
      (s) =>
        (((s['identity'] as Json)['issuers'] as Json[])[0]!['issuer'] =
          'https://login.microsoftonline.com/{tenantid}/v2.0'),
    ),
    ['spec.identity.issuers[0].allowedTenants'],
  ],
  [
    'unknown detector',
    withSpec((s) => ((s['masking'] as Json[])[0]!['detectors'] = ['dna'])),
    ['spec.masking[0].detectors[0]'],
  ],
  [
    'masking rule with nothing to mask',
    withSpec((s) => (s['masking'] = [{ name: 'empty' }])),
    ['spec.masking[0]'],
  ],
  [
    'In without values',
    withSpec((s) => ((s['podSelector'] as Json)['matchExpressions'] = [{ key: 'a', operator: 'In' }])),
    ['spec.podSelector.matchExpressions[0].values'],
  ],
  [
    'bad duration form',
    withSpec((s) => (((s['rules'] as Json[])[1]!['approval'] as Json)['timeout'] = '3 minutes')),
    ['spec.rules[1].approval.timeout'],
  ],
  [
    'any: false',
    withSpec((s) => ((s['rules'] as Json[])[0]!['subjects'] = [{ any: false }])),
    ['spec.rules[0].subjects[0].any'],
  ],
];

function crdValidator(crd: Json) {
  const version = ((crd['spec'] as Json)['versions'] as Json[])[0]!;
  return createAjv().compile((version['schema'] as Json)['openAPIV3Schema'] as Json);
}

function crdPaths(errors: ErrorObject[] | null | undefined): string[] {
  return [
    ...new Set(
      (errors ?? []).map((e) =>
        e.keyword === 'required'
          ? `${toFieldPath(e.instancePath)}${e.instancePath ? '.' : ''}${String(e.params['missingProperty'])}`
          : toFieldPath(e.instancePath),
      ),
    ),
  ].sort();
}

describe('the TypeBox schema (ajv) and the generated CRD schema agree', () => {
  // The committed YAML, not the in-memory object: this is what the API server is given.
  let crdValidate: ReturnType<typeof crdValidator>;
  beforeAll(async () => {
    crdValidate = crdValidator(
      parse(await readFile(join(root, 'crds', 'mcpwarden.io_mcppolicies.yaml'), 'utf8')) as Json,
    );
  });

  test('a valid policy is valid for both', () => {
    expect(validatePolicySchema(valid)).toEqual([]);
    expect(crdValidate(valid)).toBe(true);
  });

  test.each(invalid)('%s: both refuse, at the same field', (_name, doc, paths) => {
    const ours = [...new Set(validatePolicySchema(doc).map((i) => i.path))].sort();
    expect(ours).toEqual(paths);
    expect(crdValidate(doc)).toBe(false);
    expect(crdPaths(crdValidate.errors)).toEqual(paths);
  });

  test('the one deliberate difference: unknown fields are refused by us and pruned by the API server', () => {
    const doc = withSpec((s) => (s['modee'] = 'audit'));
    expect(validatePolicySchema(doc)).toEqual([
      expect.objectContaining({
        path: 'spec.modee',
        message: expect.stringMatching(/is not a known field; expected one of: podSelector, mode/),
      }),
    ]);
    expect(crdValidate(doc)).toBe(true);
  });

  test('the TypeScript types reject what the schema rejects', () => {
    const badAction: PolicyDocument['spec']['rules'][number] = {
      name: 'x',
      subjects: [{ any: true }],
      // @ts-expect-error action must be allow | deny | approve
      action: 'nope',
    };
    // @ts-expect-error rules are required
    const noRules: PolicyDocument['spec'] = { podSelector: {} };
    // @ts-expect-error any is only `true`
    const anyFalse: PolicyDocument['spec']['rules'][number]['subjects'][number] = { any: false };
    expect(validatePolicySchema({ ...valid, spec: { ...valid.spec, rules: [badAction] } })).not.toEqual([]);
    expect(validatePolicySchema({ ...valid, spec: noRules })).not.toEqual([]);
    expect(
      validatePolicySchema({
        ...valid,
        spec: { ...valid.spec, rules: [{ name: 'x', subjects: [anyFalse], action: 'allow' }] },
      }),
    ).not.toEqual([]);
  });
});

describe('MCPApproval', () => {
  const approval = {
    apiVersion: 'mcpwarden.io/v1alpha1',
    kind: 'MCPApproval',
    metadata: { name: 'a1', namespace: 'agents' },
    spec: {
      policy: 'agents/github-tools',
      rule: 'deletes-need-approval',
      pod: 'github-mcp-0',
      session: 's',
      requester: { principal: 't/o', user: 'alice@example.com' },
      method: 'tools/call',
      tool: 'delete_repo',
      arguments: { repo: 'x', nested: { list: [1, 2] } },
      argumentsDigest: `sha256:${'a'.repeat(64)}`,
      expiresAt: '2026-01-01T00:05:00Z',
      mode: 'hold',
      approvers: [{ group: 'reviewers' }],
      decision: { verdict: 'Approved', reason: 'ok', decidedBy: 'rita' },
    },
    status: { phase: 'Approved' },
  } satisfies MCPApproval;

  let crdValidate: ReturnType<typeof crdValidator>;
  beforeAll(async () => {
    crdValidate = crdValidator(
      parse(await readFile(join(root, 'crds', 'mcpwarden.io_mcpapprovals.yaml'), 'utf8')) as Json,
    );
  });

  test('valid for both; free-form arguments are kept', () => {
    expect(validateApproval(approval)).toEqual([]);
    expect(crdValidate(approval)).toBe(true);
  });

  test.each([
    ['bad verdict', { decision: { verdict: 'Maybe' } }, 'spec.decision.verdict'],
    ['bad digest', { argumentsDigest: 'md5:abc' }, 'spec.argumentsDigest'],
    ['approver with two keys', { approvers: [{ user: 'a', group: 'b' }] }, 'spec.approvers[0]'],
    ['bad expiry', { expiresAt: 'tomorrow' }, 'spec.expiresAt'],
  ])('%s: both refuse', (_name, patch, path) => {
    const doc = { ...approval, spec: { ...approval.spec, ...patch } };
    expect(validateApproval(doc).map((i) => i.path)).toEqual([path]);
    expect(crdValidate(doc)).toBe(false);
    expect(crdPaths(crdValidate.errors)).toEqual([path]);
  });

  test('bad phase', () => {
    const doc = { ...approval, status: { phase: 'Done' } };
    expect(validateApproval(doc)).toEqual([
      { path: 'status.phase', message: expect.stringMatching(/must be one of "Pending"/) },
    ]);
    expect(crdValidate(doc)).toBe(false);
  });
});
