import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Cluster, helmTemplate, REPO_ROOT, startCluster } from './harness.js';

/**
 * The sidecar's Role from charts/mcp-warden/templates/rbac-sidecar.yaml, rendered by the real helm
 * and checked by the real RBAC authorizer: exactly the verbs the sidecar needs, nothing else.
 */
let cluster: Cluster;
let rendered: string;
let workDir: string;

const TEMPLATE = join(REPO_ROOT, 'charts', 'mcp-warden', 'templates', 'rbac-sidecar.yaml');

const render = (values: string) => helmTemplate(TEMPLATE, values, workDir);

interface Attributes {
  verb: string;
  resource: string;
  subresource?: string;
  namespace?: string;
  group?: string;
  name?: string;
}

/** SubjectAccessReview as the admin, for a service account. */
async function allowed(namespace: string, sa: string, a: Attributes): Promise<boolean> {
  const res = await cluster.admin.client.request<{ status: { allowed: boolean } }>(
    'POST',
    '/apis/authorization.k8s.io/v1/subjectaccessreviews',
    {
      body: {
        apiVersion: 'authorization.k8s.io/v1',
        kind: 'SubjectAccessReview',
        spec: {
          user: `system:serviceaccount:${namespace}:${sa}`,
          groups: ['system:serviceaccounts', `system:serviceaccounts:${namespace}`, 'system:authenticated'],
          resourceAttributes: {
            group: a.group ?? 'mcpwarden.io',
            resource: a.resource,
            ...(a.subresource ? { subresource: a.subresource } : {}),
            verb: a.verb,
            namespace: a.namespace ?? namespace,
            ...(a.name ? { name: a.name } : {}),
          },
        },
      },
    },
  );
  return res.status.allowed;
}

const NEEDED: Attributes[] = [
  { verb: 'get', resource: 'mcppolicies' },
  { verb: 'list', resource: 'mcppolicies' },
  { verb: 'watch', resource: 'mcppolicies' },
  { verb: 'patch', resource: 'mcppolicies', subresource: 'status' },
  { verb: 'create', resource: 'mcpapprovals' },
  { verb: 'get', resource: 'mcpapprovals' },
  { verb: 'watch', resource: 'mcpapprovals' },
  { verb: 'patch', resource: 'mcpapprovals', subresource: 'status' },
];

const FORBIDDEN: Attributes[] = [
  { verb: 'update', resource: 'mcppolicies' },
  { verb: 'patch', resource: 'mcppolicies' },
  { verb: 'create', resource: 'mcppolicies' },
  { verb: 'delete', resource: 'mcppolicies' },
  { verb: 'update', resource: 'mcppolicies', subresource: 'status' },
  { verb: 'list', resource: 'mcpapprovals' },
  { verb: 'update', resource: 'mcpapprovals' },
  { verb: 'patch', resource: 'mcpapprovals' },
  { verb: 'delete', resource: 'mcpapprovals' },
  { verb: 'update', resource: 'mcpapprovals', subresource: 'status' },
  { verb: 'get', resource: 'secrets', group: '' },
  { verb: 'list', resource: 'secrets', group: '' },
  { verb: 'get', resource: 'pods', group: '' },
  { verb: 'create', resource: 'events', group: '' },
  { verb: 'get', resource: 'leases', group: 'coordination.k8s.io' },
  { verb: 'list', resource: 'mcppolicies', namespace: 'other' },
  { verb: 'list', resource: 'mcppolicies', namespace: '' },
];

beforeAll(async () => {
  workDir = await mkdtemp(join(tmpdir(), 'mcp-warden-rbac-'));
  cluster = await startCluster({ crds: false });
  for (const ns of ['agents', 'tools', 'other']) await cluster.createNamespace(ns);
  for (const [ns, sa] of [
    ['agents', 'github-mcp'],
    ['agents', 'bystander'],
    ['tools', 'any-mcp'],
  ] as const) {
    await cluster.createServiceAccount(ns, sa);
  }
  const r = await render(
    'sidecarRBAC:\n  namespaces:\n    - name: agents\n      serviceAccounts: [github-mcp]\n    - name: tools\n      allServiceAccounts: true\n',
  );
  if (r.code !== 0) throw new Error(`helm template failed: ${r.stderr}`);
  rendered = r.stdout;
  const applied = await cluster.kubectl(['apply', '-f', '-'], { input: rendered });
  if (applied.code !== 0) throw new Error(`kubectl apply failed: ${applied.stderr}`);
}, 180_000);

afterAll(async () => {
  await cluster?.stop();
  if (workDir) await rm(workDir, { recursive: true, force: true });
});

describe('sidecar RBAC (charts/mcp-warden/templates/rbac-sidecar.yaml) on the real authorizer', () => {
  test('renders one Role and one RoleBinding per namespace and nothing cluster-wide', () => {
    const kinds = [...rendered.matchAll(/^kind: (\w+)$/gm)].map((m) => m[1]).sort();
    expect(kinds).toEqual(['Role', 'Role', 'RoleBinding', 'RoleBinding']);
    expect(rendered).not.toMatch(/ClusterRole|secrets|pods|"\*"/);
  });

  test.each(NEEDED)('allows the sidecar SA to $verb $resource $subresource', async (a) => {
    expect(await allowed('agents', 'github-mcp', a)).toBe(true);
  });

  test.each(FORBIDDEN)(
    'forbids the sidecar SA to $verb $group $resource $subresource (namespace "$namespace")',
    async (a) => {
      expect(await allowed('agents', 'github-mcp', a)).toBe(false);
    },
  );

  test('a service account that is not listed gets nothing; allServiceAccounts covers every SA of its namespace', async () => {
    for (const a of NEEDED) expect(await allowed('agents', 'bystander', a)).toBe(false);
    for (const a of NEEDED) expect(await allowed('tools', 'any-mcp', a)).toBe(true);
    for (const a of FORBIDDEN)
      expect(
        await allowed('tools', 'any-mcp', {
          ...a,
          namespace: a.namespace === undefined ? 'tools' : a.namespace,
        }),
      ).toBe(false);
  });

  test('acting as the service account (TokenRequest token), its mcpwarden.io rules are exactly the needed ones', async () => {
    const sa = await cluster.serviceAccountUser('agents', 'github-mcp');
    const review = await sa.client.request<{
      status: { resourceRules: Array<{ verbs: string[]; apiGroups?: string[]; resources?: string[] }> };
    }>('POST', '/apis/authorization.k8s.io/v1/selfsubjectrulesreviews', {
      body: {
        apiVersion: 'authorization.k8s.io/v1',
        kind: 'SelfSubjectRulesReview',
        spec: { namespace: 'agents' },
      },
    });
    const ours = review.status.resourceRules
      .filter(
        (rule) =>
          rule.apiGroups?.includes('mcpwarden.io') || rule.resources?.some((res) => res.startsWith('mcp')),
      )
      .flatMap((rule) => (rule.resources ?? []).flatMap((res) => rule.verbs.map((v) => `${v} ${res}`)))
      .sort();
    expect(ours).toEqual(
      [
        'get mcppolicies',
        'list mcppolicies',
        'watch mcppolicies',
        'patch mcppolicies/status',
        'create mcpapprovals',
        'get mcpapprovals',
        'watch mcpapprovals',
        'patch mcpapprovals/status',
      ].sort(),
    );
    // And the API server enforces it on a real request: reading secrets is refused.
    const secrets = await cluster.kubectl(['get', 'secrets', '-n', 'agents'], { user: sa });
    expect(secrets.code).not.toBe(0);
    expect(secrets.stderr).toContain('forbidden');
  });

  test('bad values fail the render with a message naming the field', async () => {
    const r = await render('sidecarRBAC:\n  namespaces:\n    - name: agents\n');
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain(
      'sidecarRBAC.namespaces[agents]: set serviceAccounts or allServiceAccounts: true',
    );
  });
});
