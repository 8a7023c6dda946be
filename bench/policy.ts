/**
 * A realistic 50-rule `MCPPolicy` for the bench: the bench caller's group may use the read tools
 * (one allow rule with a CEL condition on the arguments), five deny rules with CEL guards that
 * every call evaluates, three approval rules for destructive tools, and 41 allow rules for other
 * teams (groups, roles, apps, tool globs, annotations, CEL) that the engine must skip. Masking
 * uses every built-in detector plus user patterns and JSON paths; recording is on.
 */
import { stringify } from 'yaml';
import { Detectors } from '../pkg/policy/schema.js';

export const BENCH_AUDIENCE = 'api://bench-mcp';
export const BENCH_GROUP = '6f1c2d3e-0000-4000-8000-000000000001';
export const BENCH_OID = '0b3c6a52-1111-4111-8111-000000000042';

const teamGroup = (i: number) => `6f1c2d3e-0000-4000-8000-${String(1000 + i).padStart(12, '0')}`;
const toolGlobs = [
  'get_*',
  'list_*',
  'search_*',
  'create_issue',
  'update_issue',
  'create_comment',
  'get_me',
  'run_workflow',
];

/** Parts of full enforcement that can be switched off, to see what each one costs (BENCH_ABLATION=1). */
export interface PolicyVariant {
  masking?: boolean;
  recording?: boolean;
  /** Only the one rule the bench caller needs instead of 50. */
  minimalRules?: boolean;
}

export function benchPolicy(
  issuer: string,
  variant: PolicyVariant = {},
): {
  doc: Record<string, unknown>;
  rules: number;
  detectors: string[];
} {
  const rules: Array<Record<string, unknown>> = [
    {
      name: 'bench-readers',
      subjects: [{ group: BENCH_GROUP }, { role: 'MCP.Read' }],
      match: {
        methods: ['tools/call'],
        tools: ['get_*', 'list_*', 'search_*'],
        when: 'has(args.owner) && args.owner == "acme"',
      },
      action: 'allow',
    },
    {
      name: 'no-drop-table',
      subjects: [{ any: true }],
      match: { when: 'has(args.query) && args.query.matches("(?i)\\\\bdrop\\\\s+table\\\\b")' },
      action: 'deny',
      reason: 'SQL DDL in queries is not allowed',
    },
    {
      name: 'no-foreign-owners',
      subjects: [{ any: true }],
      match: { when: 'has(args.owner) && args.owner in ["evil-corp", "blocked-org", "competitor"]' },
      action: 'deny',
      reason: 'repository owner is blocked',
    },
    {
      name: 'no-secret-repos',
      subjects: [{ any: true }],
      match: { when: 'has(args.repo) && args.repo.startsWith("secrets-")' },
      action: 'deny',
      reason: 'secret repositories are off limits',
    },
    {
      name: 'no-force-push',
      subjects: [{ any: true }],
      match: { tools: ['update_branch', 'merge_*'], when: 'has(args.force) && args.force == true' },
      action: 'deny',
      reason: 'force updates are not allowed',
    },
    {
      name: 'app-only-read-only',
      subjects: [{ any: true }],
      match: { tools: ['create_*', 'update_*', 'delete_*', 'merge_*', 'close_*'], when: 'identity.appOnly' },
      action: 'deny',
      reason: 'app-only callers may not write',
    },
    {
      name: 'deletes-need-approval',
      subjects: [{ group: BENCH_GROUP }],
      match: { tools: ['delete_*'] },
      action: 'approve',
      approval: { approvers: [{ group: 'platform-admins' }], timeout: '3m', mode: 'hold' },
    },
    {
      name: 'merges-need-approval',
      subjects: [{ group: teamGroup(90) }],
      match: { tools: ['merge_*'] },
      action: 'approve',
      approval: { approvers: [{ group: 'release-managers' }], timeout: '10m', mode: 'ticket' },
    },
    {
      name: 'closes-need-approval',
      subjects: [{ role: 'MCP.Triage' }],
      match: { tools: ['close_*'] },
      action: 'approve',
      approval: { approvers: [{ user: 'lead@example.com' }], timeout: '5m', mode: 'hold' },
    },
  ];
  for (let i = 0; rules.length < 50; i++) {
    const subjects =
      i % 5 === 0
        ? [{ role: `Team${i}.Write` }]
        : i % 7 === 0
          ? [{ app: `00000000-0000-4000-8000-${String(i).padStart(12, '0')}` }]
          : [{ group: teamGroup(i) }];
    const match: Record<string, unknown> = {
      tools: [toolGlobs[i % toolGlobs.length], toolGlobs[(i + 3) % toolGlobs.length]],
    };
    if (i % 4 === 0) match.toolAnnotations = { readOnlyHint: true };
    if (i % 3 === 0) match.when = `has(args.owner) && args.owner == "team-${i}"`;
    rules.push({ name: `team-${i}-tools`, subjects, match, action: 'allow' });
  }
  const detectors = variant.masking === false ? [] : [...Detectors];
  const kept = variant.minimalRules === true ? rules.slice(0, 1) : rules;
  const doc = {
    apiVersion: 'mcpwarden.io/v1alpha1',
    kind: 'MCPPolicy',
    metadata: { name: 'bench', generation: 1 },
    spec: {
      podSelector: {},
      mode: 'enforce',
      identity: { issuers: [{ issuer, audiences: [BENCH_AUDIENCE] }] },
      rules: kept,
      masking:
        variant.masking === false
          ? []
          : [
              {
                name: 'pii-and-secrets',
                detectors,
                patterns: [
                  { name: 'ticket', regex: 'TCK-[0-9]{6}' },
                  { name: 'internal-host', regex: '[a-z0-9-]+\\.corp\\.internal' },
                ],
                fields: ['$.structuredContent.customer.ssn', '$..password'],
                replacement: '[masked:{name}]',
              },
            ],
      recording: { enabled: variant.recording !== false, payloads: 'masked' },
    },
  };
  return { doc, rules: kept.length, detectors };
}

export function benchPolicyYaml(issuer: string): string {
  return stringify(benchPolicy(issuer).doc);
}
