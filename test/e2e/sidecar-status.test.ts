import type { Identity } from '../../pkg/identity/types.js';
import type { KubeClient } from '../../pkg/kube/client.js';
import {
  createKubePolicySource,
  type KubePolicySource,
  type PolicyObject,
} from '../../pkg/kube/policy-source.js';
import { policiesPath, policyPath } from '../../pkg/kube/resources.js';
import {
  createStatusReporter,
  podFieldManager,
  type StatusReporter,
} from '../../pkg/kube/status-reporter.js';
import type { PolicyEngine } from '../../pkg/policy/decision.js';
import { compilePolicies, type PolicyDocument } from '../../pkg/policy/index.js';
import { type Cluster, startCluster, waitForObject } from './harness.js';

/**
 * The cluster PolicySource and the status reporter (pkg/kube) against a real kube-apiserver:
 * selection by podSelector, live edits, per-pod status entries by server-side apply, 20 reporters
 * at once without conflicts, and fail-closed when the API server goes away.
 */
const NS = 'agents';
let cluster: Cluster;
let client: KubeClient;
const cleanups: Array<() => Promise<void>> = [];

const compile = (docs: PolicyObject[], options: { podLabels: Record<string, string> }): PolicyEngine =>
  compilePolicies(docs as unknown as PolicyDocument[], options);

function policy(name: string, selector: Record<string, unknown>, rules: unknown[], mode = 'enforce'): string {
  return JSON.stringify({
    apiVersion: 'mcpwarden.io/v1alpha1',
    kind: 'MCPPolicy',
    metadata: { name, namespace: NS },
    spec: {
      podSelector: selector,
      mode,
      identity: { issuers: [{ kubernetes: { audiences: ['github-mcp'] } }] },
      rules,
    },
  });
}

const allowGet = {
  name: 'read',
  subjects: [{ serviceAccount: 'agents/planner' }],
  match: { tools: ['get_*'] },
  action: 'allow',
};
const allowDelete = {
  name: 'delete',
  subjects: [{ serviceAccount: 'agents/planner' }],
  match: { tools: ['delete_*'] },
  action: 'allow',
};

const planner: Identity = {
  principal: 'system:serviceaccount:agents:planner',
  issuer: 'https://kubernetes.default.svc.cluster.local',
  subject: 'system:serviceaccount:agents:planner',
  appOnly: true,
  groups: [],
  roles: [],
  scopes: [],
  wids: [],
  serviceAccount: { namespace: 'agents', name: 'planner' },
  audience: 'github-mcp',
  expiresAt: Math.floor(Date.now() / 1000) + 3600,
  claims: {},
};

const call = (engine: PolicyEngine | undefined, tool: string) =>
  engine?.decide({ method: 'tools/call', tool, args: {}, identity: planner, direction: 'client-to-server' });

async function apply(doc: string): Promise<void> {
  const r = await cluster.kubectl(['apply', '-f', '-'], { input: doc });
  if (r.code !== 0) throw new Error(`kubectl apply failed: ${r.stderr}`);
}

function nextChange(
  source: KubePolicySource,
  predicate: (e: PolicyEngine | undefined) => boolean,
): Promise<PolicyEngine | undefined> {
  return new Promise((resolve) => {
    const off = source.onChange((e) => {
      if (predicate(e)) {
        off();
        resolve(e);
      }
    });
  });
}

beforeAll(async () => {
  cluster = await startCluster();
  const crd = await cluster.kubectl(['get', 'crd', 'mcppolicies.mcpwarden.io', '-o', 'name']);
  if (crd.code !== 0)
    throw new Error(`the MCPPolicy CRD is not in ${'crds/'} (generate it: make crds): ${crd.stderr}`);
  client = cluster.admin.client;
  await cluster.createNamespace(NS);
  await apply(policy('github-tools', { matchLabels: { app: 'github-mcp' } }, [allowGet]));
  await apply(policy('other-app', { matchLabels: { app: 'other' } }, [allowDelete]));
  await apply(
    policy('namespace-wide', {}, [
      {
        name: 'no-drop',
        subjects: [{ any: true }],
        match: { tools: ['drop_*'] },
        action: 'deny',
        reason: 'never',
      },
    ]),
  );
}, 180_000);

afterAll(async () => {
  for (const c of cleanups.reverse()) await c();
  await cluster?.stop();
});

function track<T extends { close(): Promise<void> }>(x: T): T {
  cleanups.push(() => x.close());
  return x;
}

describe('cluster PolicySource (pkg/kube) on a real API server', () => {
  let source: KubePolicySource;

  test('loads the policies whose podSelector selects the pod (empty selects all)', async () => {
    source = track(
      createKubePolicySource({ client, namespace: NS, podLabels: { app: 'github-mcp', tier: 'x' }, compile }),
    );
    expect(source.current()).toBeUndefined(); // fail closed until the first load
    await source.synced;
    expect(source.compileError()).toBeUndefined();
    expect(source.selected().map((p) => p.metadata.name)).toEqual(['github-tools', 'namespace-wide']);
    const engine = source.current();
    expect(
      engine
        ?.policies()
        .map((p) => p.name)
        .sort(),
    ).toEqual(
      expect.arrayContaining([
        expect.stringContaining('github-tools'),
        expect.stringContaining('namespace-wide'),
      ]),
    );
    expect(call(engine, 'get_issue')?.enforced).toBe('allow');
    expect(call(engine, 'delete_repo')?.enforced).toBe('deny'); // other-app does not select this pod
    expect(call(engine, 'drop_table')?.enforced).toBe('deny');
  });

  test('an edit of a selecting policy changes decisions within seconds', async () => {
    const changed = nextChange(source, (e) => call(e, 'delete_repo')?.enforced === 'allow');
    const started = Date.now();
    await apply(policy('github-tools', { matchLabels: { app: 'github-mcp' } }, [allowGet, allowDelete]));
    const engine = await changed;
    expect(Date.now() - started).toBeLessThan(5000);
    expect(call(engine, 'delete_repo')?.enforced).toBe('allow');
    expect(source.current()).toBe(engine);
  });

  test('status-only writes do not recompile; a deleted policy is dropped', async () => {
    const before = source.current();
    let changes = 0;
    const off = source.onChange(() => {
      changes++;
    });
    const objects = new Promise<void>((resolve) => {
      const offObjects = source.onObjects((objs) => {
        const p = objs.find((o) => o.metadata.name === 'github-tools');
        if ((p?.status as { observedGeneration?: number } | undefined)?.observedGeneration === 99) {
          offObjects();
          resolve();
        }
      });
    });
    await client.request('PATCH', policyPath(NS, 'github-tools', 'status'), {
      query: { fieldManager: 'e2e' },
      contentType: 'application/merge-patch+json',
      body: { status: { observedGeneration: 99 } },
    });
    await objects;
    expect(changes).toBe(0);
    expect(source.current()).toBe(before);

    const gone = nextChange(
      source,
      (e) => call(e, 'drop_table')?.enforced === 'deny' && e?.policies().length === 1,
    );
    await cluster.kubectl(['delete', 'mcpp', 'namespace-wide', '-n', NS]);
    const engine = await gone;
    expect(source.selected().map((p) => p.metadata.name)).toEqual(['github-tools']);
    expect(call(engine, 'get_issue')?.enforced).toBe('allow');
    off();
  });

  test('an invalid policy keeps the last good engine and reports the error', async () => {
    const errors: Error[] = [];
    const s = track(
      createKubePolicySource({
        client,
        namespace: NS,
        podLabels: { app: 'github-mcp' },
        compile,
        onError: (e) => errors.push(e),
      }),
    );
    await s.synced;
    const good = s.current();
    expect(good).toBeDefined();
    // Bypass the (absent) validating webhook: the CRD schema accepts a CEL text that does not compile.
    const failed = new Promise<void>((resolve) => {
      const off = s.onObjects(() => {
        if (s.compileError() !== undefined) {
          off();
          resolve();
        }
      });
    });
    await apply(
      policy('broken', {}, [
        {
          name: 'bad-cel',
          subjects: [{ any: true }],
          match: { tools: ['x'], when: 'args.( ===' },
          action: 'allow',
        },
      ]),
    );
    await failed;
    expect(s.compileError()).toMatch(/broken/);
    // Attributed to the broken policy only.
    expect(s.compileError('broken')).toMatch(/spec\.rules\[0\]\.match\.when/);
    expect(s.compileError('github-tools')).toBeUndefined();
    expect(s.current()).toBe(good);
    expect(errors.length).toBeGreaterThan(0);
    // The sidecar's report marks the broken policy Accepted=False, with the field, and only it.
    const reporter = createStatusReporter({
      client,
      namespace: NS,
      podName: 'compile-check',
      policies: () => s.selected(),
      compileError: (policy) => s.compileError(policy),
      intervalMs: 100,
    });
    reporter.policiesChanged();
    const accepted = (o: PolicyObject) =>
      (
        (o.status?.['conditions'] as Array<{ type: string; status: string; message: string }> | undefined) ??
        []
      ).find((c) => c.type === 'Accepted');
    const broken = await waitForObject<PolicyObject>(
      client,
      policiesPath(NS),
      'broken',
      (o) => accepted(o)?.status === 'False',
    );
    expect(accepted(broken)?.message).toMatch(/spec\.rules\[0\]\.match\.when/);
    const fine = await waitForObject<PolicyObject>(
      client,
      policiesPath(NS),
      'github-tools',
      (o) => accepted(o) !== undefined,
    );
    expect(accepted(fine)?.status).toBe('True');
    await reporter.close();
    // Server-side apply semantics: an empty apply by the pod's manager removes what it owned.
    await client.request('PATCH', `${policiesPath(NS)}/github-tools/status`, {
      query: { fieldManager: podFieldManager('compile-check') },
      contentType: 'application/apply-patch+yaml',
      body: {
        apiVersion: 'mcpwarden.io/v1alpha1',
        kind: 'MCPPolicy',
        metadata: { name: 'github-tools', namespace: NS },
      },
    });
    const pruned = await client.request<PolicyObject>('GET', `${policiesPath(NS)}/github-tools`);
    expect(
      ((pruned.status?.['pods'] as Array<{ name: string }> | undefined) ?? []).map((p) => p.name),
    ).not.toContain('compile-check');
    await cluster.kubectl(['delete', 'mcpp', 'broken', '-n', NS]);
  });
});

describe('status reporter (pkg/kube) on a real API server', () => {
  const path = policiesPath(NS);

  test('writes the pod entry with counts, observedGeneration and conditions; kubectl shows it', async () => {
    const source = track(
      createKubePolicySource({ client, namespace: NS, podLabels: { app: 'github-mcp' }, compile }),
    );
    await source.synced;
    const errors: Error[] = [];
    const reporter: StatusReporter = createStatusReporter({
      client,
      namespace: NS,
      podName: 'github-mcp-0',
      policies: () => source.selected(),
      compileError: (policy) => source.compileError(policy),
      intervalMs: 200,
      onError: (e) => errors.push(e),
    });
    cleanups.push(() => reporter.close());
    reporter.recordDecision({
      action: 'allow',
      enforced: 'allow',
      policy: `${NS}/github-tools`,
      rule: 'read',
      reason: 'ok',
      mode: 'enforce',
    });
    reporter.recordDecision({
      action: 'deny',
      enforced: 'deny',
      policy: '',
      reason: 'no rule',
      mode: 'enforce',
    });
    reporter.recordMask([{ policy: `${NS}/github-tools`, detector: 'email' }]);
    reporter.recordSession(1);
    const generation = source.selected().find((p) => p.metadata.name === 'github-tools')?.metadata.generation;
    const obj = await waitForObject<PolicyObject>(client, path, 'github-tools', (o) => {
      const pods = (o.status?.['pods'] as Array<Record<string, unknown>> | undefined) ?? [];
      return pods.some((p) => p['name'] === 'github-mcp-0' && p['denied'] === 1);
    });
    const entry = ((obj.status?.['pods'] as Array<Record<string, unknown>> | undefined) ?? []).find(
      (p) => p['name'] === 'github-mcp-0',
    );
    expect(entry).toMatchObject({
      name: 'github-mcp-0',
      generation,
      allowed: 1,
      denied: 1,
      masked: 1,
      sessions: 1,
      approvalsRequested: 0,
    });
    expect(typeof entry?.['lastReportTime']).toBe('string');
    const withConditions = await waitForObject<PolicyObject>(
      client,
      path,
      'github-tools',
      (o) => o.status?.['observedGeneration'] === generation,
    );
    const conditions = withConditions.status?.['conditions'] as Array<{ type: string; status: string }>;
    expect(conditions.map((c) => [c.type, c.status])).toEqual([
      ['Accepted', 'True'],
      ['Enforced', 'True'],
    ]);
    // Owned by the pod's own field manager.
    const managers =
      (withConditions.metadata as { managedFields?: Array<{ manager: string; subresource?: string }> })
        .managedFields ?? [];
    expect(managers.map((m) => m.manager)).toEqual(
      expect.arrayContaining([podFieldManager('github-mcp-0'), 'mcp-warden-sidecar']),
    );

    const yaml = await cluster.kubectl(['get', 'mcpp', 'github-tools', '-n', NS, '-o', 'yaml']);
    expect(yaml.code).toBe(0);
    expect(yaml.stdout).toContain('name: github-mcp-0');
    expect(yaml.stdout).toMatch(/denied: 1/);
    expect(errors).toEqual([]);
  });

  test('20 reporters at once: no conflicts, one entry each, the object stays bounded', async () => {
    const source = track(
      createKubePolicySource({ client, namespace: NS, podLabels: { app: 'github-mcp' }, compile }),
    );
    await source.synced;
    const errors: Error[] = [];
    let writes = 0;
    const reporters = Array.from({ length: 20 }, (_, i) =>
      createStatusReporter({
        client,
        namespace: NS,
        podName: `fleet-${i}`,
        policies: () => source.selected(),
        intervalMs: 100,
        onError: (e) => errors.push(e),
        onWrite: () => {
          writes++;
        },
      }),
    );
    for (const r of reporters) cleanups.push(() => r.close());
    // Three rounds of concurrent writes, each reporter with its own counts and recordings.
    for (let round = 1; round <= 3; round++) {
      reporters.forEach((r, i) => {
        r.recordRecording({
          session: `s-${i}-${round}`,
          principal: 'system:serviceaccount:agents:planner',
          pod: `fleet-${i}`,
          startTime: new Date().toISOString(),
          endTime: new Date().toISOString(),
          messages: 4,
          denied: 1,
          location: `/var/lib/mcp-warden/recordings/s-${i}-${round}.jsonl`,
          sha256: 'a'.repeat(64),
        });
        for (let k = 0; k <= i; k++)
          r.recordDecision({
            action: 'allow',
            enforced: 'allow',
            policy: `${NS}/github-tools`,
            rule: 'read',
            reason: '',
            mode: 'enforce',
          });
        r.recordDecision({
          action: 'deny',
          enforced: 'deny',
          policy: `${NS}/github-tools`,
          rule: 'x',
          reason: '',
          mode: 'enforce',
        });
      });
      await Promise.all(reporters.map((r) => r.flush()));
    }
    expect(errors).toEqual([]);
    expect(writes).toBeGreaterThanOrEqual(20);
    const obj = await waitForObject<PolicyObject>(client, path, 'github-tools', (o) => {
      const pods = (o.status?.['pods'] as Array<Record<string, unknown>> | undefined) ?? [];
      return pods.filter((p) => String(p['name']).startsWith('fleet-') && p['denied'] === 3).length === 20;
    });
    const pods = obj.status?.['pods'] as Array<Record<string, unknown>>;
    for (let i = 0; i < 20; i++) {
      expect(pods.filter((p) => p['name'] === `fleet-${i}`)).toEqual([
        expect.objectContaining({ allowed: 3 * (i + 1), denied: 3 }),
      ]);
    }
    // Bounded: one entry per pod (20 + the earlier pod), far below the 1.5 MiB object limit.
    expect(pods.length).toBe(21);
    expect(JSON.stringify(obj).length).toBeLessThan(64 * 1024);

    // Once every reporter has seen all 21 pods, recordings.recent holds one per pod for the first
    // 20 pods by name: 20 in all, each pod's newest.
    await new Promise<void>((resolve) => {
      const check = (objs: PolicyObject[]): boolean => {
        const p = objs.find((o) => o.metadata.name === 'github-tools');
        return ((p?.status?.['pods'] as unknown[] | undefined) ?? []).length === 21;
      };
      if (check(source.selected())) return resolve();
      const off = source.onObjects((objs) => {
        if (check(objs)) {
          off();
          resolve();
        }
      });
    });
    reporters.forEach((r) => {
      r.recordDecision({
        action: 'allow',
        enforced: 'allow',
        policy: `${NS}/github-tools`,
        rule: 'read',
        reason: '',
        mode: 'enforce',
      });
    });
    await Promise.all(reporters.map((r) => r.flush()));
    expect(errors).toEqual([]);
    const settled = await waitForObject<PolicyObject>(client, path, 'github-tools', (o) => {
      const recent = ((o.status?.['recordings'] as { recent?: unknown[] } | undefined)?.recent ??
        []) as unknown[];
      return recent.length === 20;
    });
    const recent =
      (settled.status?.['recordings'] as { recent?: Array<{ session: string; pod: string }> } | undefined)
        ?.recent ?? [];
    expect(new Set(recent.map((r) => r.pod)).size).toBe(20);
    for (const r of recent) expect(r.session).toBe(`s-${r.pod.slice('fleet-'.length)}-3`);
  });
});

describe('fail closed when the API server is gone (runs last: stops the cluster)', () => {
  test('current() becomes undefined after the grace period, and onChange says so', async () => {
    let firstError = 0;
    const source = track(
      createKubePolicySource({
        client,
        namespace: NS,
        podLabels: { app: 'github-mcp' },
        compile,
        gracePeriodMs: 3000,
        backoff: { initialMs: 100, maxMs: 400 },
        onError: () => {
          firstError ||= Date.now();
        },
      }),
    );
    await source.synced;
    expect(source.current()).toBeDefined();
    const closed = nextChange(source, (e) => e === undefined);
    await cluster.stop();
    await closed;
    // Served the last policies through the grace period (counted from the broken watch), then refused.
    expect(firstError).toBeGreaterThan(0);
    expect(Date.now() - firstError).toBeGreaterThanOrEqual(2500);
    expect(source.current()).toBeUndefined();
  }, 60_000);
});
