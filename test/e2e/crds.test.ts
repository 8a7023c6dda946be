/**
 * The CRDs on their own, with no webhook registered: what the API server itself enforces from the
 * generated structural schema and its CEL `x-kubernetes-validations`, and what `kubectl` shows
 * users (short names, category, printer columns, `kubectl explain`).
 */
import { type Cluster, startCluster } from './harness.js';

let cluster: Cluster;

beforeAll(async () => {
  cluster = await startCluster();
  await cluster.createNamespace('crd-e2e');
}, 120_000);

afterAll(async () => {
  await cluster?.stop();
});

function policy(rules: string): string {
  return `apiVersion: mcpwarden.io/v1alpha1
kind: MCPPolicy
metadata: {name: p, namespace: crd-e2e}
spec:
  podSelector: {}
  identity:
    issuers:
      - issuer: https://login.microsoftonline.com/00000000-0000-0000-0000-000000000001/v2.0
        audiences: [api://x]
  rules:
${rules}`;
}

const apply = (yaml: string) => cluster.kubectl(['apply', '-f', '-'], { input: yaml });

describe('CRDs enforced by the API server itself', () => {
  test('a valid policy applies and is listed by short name and category with its columns', async () => {
    const r = await apply(
      policy(`    - name: readers
      subjects: [{group: g1}]
      match: {tools: ["get_*"]}
      action: allow`),
    );
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const byShort = await cluster.kubectl(['get', 'mcpp', '-n', 'crd-e2e']);
    expect(byShort.code).toBe(0);
    expect(byShort.stdout).toMatch(/^NAME\s+MODE\s+RULES\s+PODS\s+DENIED\s+AGE/m);
    expect(byShort.stdout).toMatch(/^p\s/m);
    const byCategory = await cluster.kubectl(['get', 'mcp-warden', '-n', 'crd-e2e', '-o', 'name']);
    expect(byCategory.stdout).toContain('mcppolicy.mcpwarden.io/p');
  });

  test('a subject naming two kinds is refused by the CRD CEL rule, naming the field', async () => {
    const r = await apply(
      policy(`    - name: bad
      subjects: [{group: g1, role: r1}]
      action: allow`),
    );
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('spec.rules[0].subjects[0]');
    expect(r.stderr).toContain(
      'a subject names exactly one of group, role, user, app, serviceAccount or any',
    );
  });

  test('action approve without approval settings is refused', async () => {
    const r = await apply(
      policy(`    - name: deletes
      subjects: [{group: g1}]
      match: {tools: ["delete_*"]}
      action: approve`),
    );
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('approval is required when action is approve');
  });

  test('rateLimit: accepted on an allow rule; refused on a deny rule and with an unknown key', async () => {
    const ok = await apply(
      policy(`    - name: search
      subjects: [{group: g1}]
      match: {tools: ["search_*"]}
      action: allow
      rateLimit: {requests: 60, per: 1m, by: all}`),
    );
    expect(ok.stderr).toBe('');
    expect(ok.code).toBe(0);
    const denied = await apply(
      policy(`    - name: no-deletes
      subjects: [{group: g1}]
      match: {tools: ["delete_*"]}
      action: deny
      rateLimit: {requests: 1, per: 1m}`),
    );
    expect(denied.code).not.toBe(0);
    expect(denied.stderr).toContain('spec.rules[0].rateLimit');
    expect(denied.stderr).toContain('allowed on allow and approve rules only');
    const by = await apply(
      policy(`    - name: search
      subjects: [{group: g1}]
      action: allow
      rateLimit: {requests: 60, per: 1m, by: session}`),
    );
    expect(by.code).not.toBe(0);
    expect(by.stderr).toMatch(/spec\.rules\[0\]\.rateLimit\.by.*Unsupported value/);
  });

  test('duplicate rule names and unknown actions are refused by the structural schema', async () => {
    const dup = await apply(
      policy(`    - name: same
      subjects: [{group: g1}]
      action: allow
    - name: same
      subjects: [{group: g2}]
      action: deny`),
    );
    expect(dup.code).not.toBe(0);
    expect(dup.stderr).toMatch(/spec\.rules\[1\].*[Dd]uplicate/);
    const action = await apply(
      policy(`    - name: r
      subjects: [{group: g1}]
      action: permit`),
    );
    expect(action.code).not.toBe(0);
    expect(action.stderr).toMatch(/spec\.rules\[0\]\.action: Unsupported value: "permit"/);
  });

  test('an approval in a final phase keeps it: no status write rewinds Executed, none removes the status', async () => {
    const r = await apply(`apiVersion: mcpwarden.io/v1alpha1
kind: MCPApproval
metadata: {name: run-once, namespace: crd-e2e}
spec:
  policy: crd-e2e/p
  rule: needs-approval
  pod: mcp-0
  requester: {principal: tenant/user-1}
  method: tools/call
  tool: delete_repo
  argumentsDigest: sha256:${'0'.repeat(64)}
  expiresAt: '2030-01-01T00:00:00Z'
  approvers: [{group: reviewers}]
  decision: {verdict: Approved, decidedBy: rita}`);
    expect(r.stderr).toBe('');
    const patchStatus = (type: 'merge' | 'json', patch: unknown) =>
      cluster.kubectl([
        'patch',
        'mcpa',
        'run-once',
        '-n',
        'crd-e2e',
        '--subresource=status',
        `--type=${type}`,
        '-p',
        JSON.stringify(patch),
      ]);
    const status = (phase: string) => patchStatus('merge', { status: { phase } });
    expect((await status('Approved')).code).toBe(0);
    expect((await status('Executed')).code).toBe(0);
    const rewind = await status('Approved');
    expect(rewind.code).not.toBe(0);
    expect(rewind.stderr).toContain('a final phase (Denied, Expired, Executed, Cancelled) cannot change');
    const removed = await patchStatus('json', [{ op: 'remove', path: '/status' }]);
    expect(removed.code).not.toBe(0);
    expect(removed.stderr).toContain('the status cannot be removed');
    const phase = await cluster.kubectl([
      'get',
      'mcpa',
      'run-once',
      '-n',
      'crd-e2e',
      '-o',
      'jsonpath={.status.phase}',
    ]);
    expect(phase.stdout).toBe('Executed');
  });

  test('kubectl explain shows the schema descriptions', async () => {
    const r = await cluster.kubectl(['explain', 'mcppolicy.spec.rules']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/FIELDS:/);
    for (const field of ['action', 'match', 'subjects', 'reason']) {
      expect(r.stdout).toMatch(new RegExp(`^\\s+${field}\\s`, 'm'));
    }
    // Descriptions, not just field names.
    const description = r.stdout.split('DESCRIPTION:')[1]?.split('FIELDS:')[0]?.trim() ?? '';
    expect(description.length).toBeGreaterThan(20);
    const approvals = await cluster.kubectl(['explain', 'mcpa.spec.decision']);
    expect(approvals.code).toBe(0);
    expect(approvals.stdout).toMatch(/verdict/);
  });
});
