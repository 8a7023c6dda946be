/**
 * The chart renders the CRDs as templates (templates/crds.yaml), so `helm upgrade` upgrades them:
 * a cluster still serving an MCPApproval CRD from before `spec.maskedArguments` (installed by an
 * older chart's crds/, which Helm never upgrades) gets the current schema from a real
 * `helm upgrade --install` against the real kube-apiserver, and `helm uninstall` leaves it.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parse, stringify } from 'yaml';
import { type Cluster, CRDS_DIR, requireTools, runProcess, startCluster } from './harness.js';
import { CHART, WEBHOOK_NS } from './webhook-helpers.js';

const APPROVALS = 'mcpapprovals.mcpwarden.io';
const RELEASE = 'mcp-warden';

interface Schema {
  type?: string;
  properties?: Record<string, Schema>;
}
interface Crd {
  metadata: { annotations?: Record<string, string> };
  spec: {
    versions: Array<{
      schema: { openAPIV3Schema: Schema };
      additionalPrinterColumns?: Array<{ jsonPath: string }>;
    }>;
  };
}

let cluster: Cluster;

beforeAll(async () => {
  cluster = await startCluster({ crds: false });
  await cluster.createNamespace(WEBHOOK_NS);
}, 120_000);

afterAll(async () => {
  await cluster?.stop();
});

const helm = (args: string[]) =>
  runProcess(requireTools(true).helm, args, { env: cluster.env(), timeoutMs: 120_000 });

/** The current MCPApproval CRD without spec.maskedArguments and decision.acknowledgeMaskedArguments. */
async function olderApprovalCrd(): Promise<string> {
  const crd = parse(await readFile(join(CRDS_DIR, 'mcpwarden.io_mcpapprovals.yaml'), 'utf8')) as Crd;
  const props = specProperties(crd);
  expect(props['maskedArguments']).toBeDefined();
  delete props['maskedArguments'];
  delete props['decision']?.properties?.['acknowledgeMaskedArguments'];
  const version = crd.spec.versions[0]!;
  version.additionalPrinterColumns = version.additionalPrinterColumns?.filter(
    (c) => !c.jsonPath.includes('maskedArguments'),
  );
  return stringify(crd);
}

async function servedCrd(name: string): Promise<Crd> {
  const r = await cluster.kubectl(['get', 'crd', name, '-o', 'json']);
  expect(r.stderr).toBe('');
  return JSON.parse(r.stdout) as Crd;
}

function specProperties(crd: Crd): Record<string, Schema> {
  return crd.spec.versions[0]?.schema.openAPIV3Schema.properties?.['spec']?.properties ?? {};
}

/**
 * The release, light: one webhook replica (no kubelet runs it anyway) and no admission policies;
 * its webhook configurations match only pods and mcp-warden objects, which this suite never writes.
 */
const installArgs = [
  'upgrade',
  '--install',
  RELEASE,
  CHART,
  '-n',
  WEBHOOK_NS,
  '--set',
  'webhook.replicas=1',
  '--set',
  'sidecarGuard.enabled=false',
];

describe('CRDs rendered by the chart (crds.enabled, crds.keep)', () => {
  test('helm upgrade --install upgrades an outdated MCPApproval CRD once it is adopted, and keeps it on uninstall', async () => {
    // What an older chart left behind: its crds/ installed once, with no Helm ownership metadata.
    const old = await cluster.kubectl(['apply', '-f', '-'], { input: await olderApprovalCrd() });
    expect(old.stderr).toBe('');
    expect((await cluster.kubectl(['wait', '--for=condition=Established', `crd/${APPROVALS}`])).code).toBe(0);
    expect(specProperties(await servedCrd(APPROVALS))['maskedArguments']).toBeUndefined();

    // Helm refuses to take over a CRD another tool created (the documented adoption step follows).
    const refused = await helm(installArgs);
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toContain('invalid ownership metadata');
    expect(refused.stderr).toContain(APPROVALS);

    const adopt = [
      ['label', 'crd', APPROVALS, 'app.kubernetes.io/managed-by=Helm'],
      [
        'annotate',
        'crd',
        APPROVALS,
        `meta.helm.sh/release-name=${RELEASE}`,
        `meta.helm.sh/release-namespace=${WEBHOOK_NS}`,
      ],
    ];
    for (const args of adopt) expect((await cluster.kubectl(args)).stderr).toBe('');

    const up = await helm(installArgs);
    expect(up.stderr).toBe('');
    expect(up.code).toBe(0);

    const served = await servedCrd(APPROVALS);
    const props = specProperties(served);
    expect(props['maskedArguments']).toMatchObject({ type: 'object' });
    expect(props['decision']?.properties?.['acknowledgeMaskedArguments']).toMatchObject({ type: 'boolean' });
    expect(served.metadata.annotations).toMatchObject({
      'helm.sh/resource-policy': 'keep',
      'meta.helm.sh/release-name': RELEASE,
    });
    // The MCPPolicy CRD, absent before, was created by the same release.
    const policies = await servedCrd('mcppolicies.mcpwarden.io');
    expect(policies.metadata.annotations?.['helm.sh/resource-policy']).toBe('keep');

    const un = await helm(['uninstall', RELEASE, '-n', WEBHOOK_NS]);
    expect(un.code).toBe(0);
    expect(un.stdout).toContain(`kept due to the resource policy`);
    for (const name of [APPROVALS, 'mcppolicies.mcpwarden.io']) {
      const r = await cluster.kubectl(['get', 'crd', name, '-o', 'name']);
      expect(r.stdout.trim()).toBe(`customresourcedefinition.apiextensions.k8s.io/${name}`);
    }
  }, 240_000);

  test('helm template: both CRDs by default, none with crds.enabled=false, no keep annotation with crds.keep=false', async () => {
    const kinds = async (set: string[]) => {
      const r = await helm(['template', 'rel', CHART, '-n', WEBHOOK_NS, ...set.flatMap((s) => ['--set', s])]);
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      return {
        crds: [...r.stdout.matchAll(/^kind: CustomResourceDefinition$/gm)].length,
        keep: [...r.stdout.matchAll(/helm\.sh\/resource-policy: keep/g)].length,
      };
    };
    expect(await kinds([])).toEqual({ crds: 2, keep: 2 });
    expect(await kinds(['crds.enabled=false'])).toEqual({ crds: 0, keep: 0 });
    expect(await kinds(['crds.keep=false'])).toEqual({ crds: 2, keep: 0 });
  }, 60_000);
});
