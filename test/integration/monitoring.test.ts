import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { CallToolResultSchema } from '@modelcontextprotocol/sdk/types.js';
import { ApprovalBroker, MemoryApprovalStore } from '../../pkg/approval/index.js';
import { createLogger } from '../../pkg/log.js';
import { createMetrics, type Metrics } from '../../pkg/metrics/catalogue.js';
import { compilePolicies, type PolicyDocument } from '../../pkg/policy/index.js';
import { startAdminServer } from '../../pkg/proxy/index.js';
import { AUDIENCE, connectStreamable, type Harness, startHarness } from './helpers/harness.js';

/**
 * The chart's Grafana dashboard and alerting rules against a real Prometheus (Debian package)
 * scraping a real gateway's /metrics after real MCP traffic: every panel query is valid PromQL,
 * the panels that matter show the traffic, and the rule file loads and passes its own unit tests.
 */
const CHART = resolve(import.meta.dirname, '../../charts/mcp-warden');
const DASHBOARD = join(CHART, 'dashboards', 'mcp-warden.json');
const ALERTS = join(CHART, 'prometheus', 'alerts.yaml');

function binary(name: string): string {
  for (const dir of [...(process.env['PATH'] ?? '').split(':'), '/usr/bin', '/usr/local/bin']) {
    const p = join(dir, name);
    if (spawnSync(p, ['--version']).status === 0) return p;
  }
  throw new Error(`${name} not found: install the Debian package prometheus (make prometheus)`);
}

interface Panel {
  title: string;
  type: string;
  targets?: Array<{ expr: string; legendFormat?: string }>;
}

const dashboard = JSON.parse(readFileSync(DASHBOARD, 'utf8')) as {
  panels: Panel[];
  templating: { list: Array<{ name: string; query?: unknown }> };
};

/** A panel's PromQL as Grafana sends it with "All" selected in every variable. */
function expand(expr: string): string {
  return expr
    .replaceAll('$namespace', '.*')
    .replaceAll('$pod', '.*')
    .replaceAll('$policy', '.*')
    .replaceAll('$__rate_interval', '1m')
    .replaceAll('$__range', '10m');
}

function policy(issuer: string): PolicyDocument {
  return {
    apiVersion: 'mcpwarden.io/v1alpha1',
    kind: 'MCPPolicy',
    metadata: { name: 'repo-tools', namespace: 'agents', generation: 1 },
    spec: {
      podSelector: {},
      identity: { issuers: [{ issuer, audiences: [AUDIENCE] }] },
      rules: [
        { name: 'read', subjects: [{ any: true }], match: { tools: ['get_*', 'contact'] }, action: 'allow' },
        { name: 'no-delete', subjects: [{ any: true }], match: { tools: ['delete_*'] }, action: 'deny' },
        {
          name: 'queries-by-ticket',
          subjects: [{ any: true }],
          match: { tools: ['run_query'] },
          action: 'approve',
          approval: { approvers: [{ user: 'rita' }], timeout: '1m', mode: 'ticket' },
        },
      ],
      masking: [{ name: 'pii', detectors: ['email'] }],
    },
  } as PolicyDocument;
}

async function freePort(): Promise<number> {
  const srv = createServer();
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  const { port } = srv.address() as { port: number };
  await new Promise((r) => srv.close(r));
  return port;
}

let h: Harness;
let metrics: Metrics;
let admin: { url: string; close(): Promise<void> };
let prometheus: ChildProcess;
let promUrl: string;
let promLog = '';
let dir: string;

async function query(
  expr: string,
): Promise<{ status: string; error?: string; data?: { result: unknown[] } }> {
  const r = await fetch(`${promUrl}/api/v1/query?query=${encodeURIComponent(expr)}`);
  return (await r.json()) as { status: string; error?: string; data?: { result: unknown[] } };
}

async function series(
  expr: string,
): Promise<Array<{ metric: Record<string, string>; value: [number, string] }>> {
  const r = await query(expr);
  if (r.status !== 'success') throw new Error(`${expr}: ${r.error}`);
  return r.data!.result as Array<{ metric: Record<string, string>; value: [number, string] }>;
}

async function eventually<T>(probe: () => Promise<T | undefined>, what: string, ms = 30_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}\n${promLog.slice(-2000)}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

beforeAll(async () => {
  const prometheusBin = binary('prometheus');
  dir = mkdtempSync(join(tmpdir(), 'monitoring-it-'));
  metrics = createMetrics({ defaultMetrics: false });
  const store = new MemoryApprovalStore();
  h = await startHarness(
    (trusted) => {
      const engine = compilePolicies([policy(trusted[0]!.issuer)]);
      return { current: () => engine, onChange: () => () => undefined, close: async () => undefined };
    },
    {
      metrics,
      approvals: new ApprovalBroker({ store, pod: 'gw', metrics, logger: createLogger('monitoring-it') }),
    },
  );
  admin = await startAdminServer({ host: '127.0.0.1', port: 0, metrics, ready: () => true });
  const port = await freePort();
  promUrl = `http://127.0.0.1:${port}`;
  writeFileSync(
    join(dir, 'prometheus.yml'),
    JSON.stringify({
      global: { scrape_interval: '1s', evaluation_interval: '1s' },
      rule_files: [ALERTS],
      scrape_configs: [
        {
          job_name: 'mcp-warden',
          static_configs: [
            { targets: [new URL(admin.url).host], labels: { namespace: 'agents', pod: 'gw' } },
          ],
        },
      ],
    }),
  );
  prometheus = spawn(
    prometheusBin,
    [
      `--config.file=${join(dir, 'prometheus.yml')}`,
      `--storage.tsdb.path=${join(dir, 'data')}`,
      `--web.listen-address=127.0.0.1:${port}`,
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  prometheus.stderr?.on('data', (c: Buffer) => {
    promLog = (promLog + c.toString()).slice(-20_000);
  });
  await eventually(async () => {
    const ok = await fetch(`${promUrl}/-/ready`).then(
      (r) => r.ok,
      () => false,
    );
    return ok ? true : undefined;
  }, 'prometheus ready');

  // Traffic: allowed, masked, denied, held for approval, and requests without a token. A first
  // round creates the series; Prometheus must see them before the next rounds, or a rate over
  // the window has no increase to show (a counter's first sample is its baseline).
  const c: Client = await connectStreamable(h.mcpUrl, await h.token({ oid: 'user-1' }));
  const round = async (i: number): Promise<void> => {
    await c.callTool({ name: 'get_weather', arguments: { city: 'Oslo' } }, CallToolResultSchema);
    await c.callTool({ name: 'contact', arguments: {} }, CallToolResultSchema);
    await c
      .callTool({ name: 'delete_repo', arguments: { name: 'x' } }, CallToolResultSchema)
      .catch(() => undefined);
    await c
      .callTool({ name: 'run_query', arguments: { query: `q${i}` } }, CallToolResultSchema)
      .catch(() => undefined);
    await fetch(h.mcpUrl, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{}',
    }).then((r) => r.text());
  };
  await round(0);
  await eventually(async () => {
    const s = await series('mcp_warden_auth_failures_total');
    return s.length > 0 ? true : undefined;
  }, 'a scrape of the first round');
  await round(1);
  await round(2);
  await c.close();
  await eventually(async () => {
    const s = await series('sum by (decision) (increase(mcp_warden_requests_total[1m])) > 0');
    return s.length >= 3 ? true : undefined;
  }, 'a scrape of the later rounds');
}, 90_000);

afterAll(async () => {
  if (prometheus && prometheus.exitCode === null) {
    prometheus.kill('SIGTERM');
    await once(prometheus, 'exit');
  }
  await admin?.close();
  await h?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('the Grafana dashboard against real metrics', () => {
  const targets = dashboard.panels.flatMap((p) =>
    (p.targets ?? []).map((t) => ({ panel: p.title, expr: t.expr })),
  );

  it('has panels for every metric of the catalogue', () => {
    const text = JSON.stringify(dashboard);
    const names = Object.values(createMetrics({ defaultMetrics: false }))
      .filter((m) => typeof m === 'object' && m !== null && 'name' in (m as object))
      .map((m) => (m as { name: string }).name);
    expect(names.length).toBeGreaterThan(10);
    for (const name of names)
      expect({ name, inDashboard: text.includes(name) }).toEqual({ name, inDashboard: true });
  });

  it('every panel query is valid PromQL that Prometheus evaluates', async () => {
    expect(targets.length).toBeGreaterThan(15);
    for (const t of targets) {
      const r = await query(expand(t.expr));
      expect({ panel: t.panel, status: r.status, error: r.error }).toEqual({
        panel: t.panel,
        status: 'success',
        error: undefined,
      });
    }
  });

  it('the decision, blocking, approval, masking and authentication panels show the traffic', async () => {
    const expr = (title: string, i = 0): string => {
      const p = dashboard.panels.find((x) => x.title === title);
      if (p?.targets?.[i] === undefined) throw new Error(`no panel "${title}"`);
      return expand(p.targets[i].expr);
    };
    const labels = async (title: string, label: string): Promise<string[]> =>
      (await series(expr(title))).filter((s) => Number(s.value[1]) > 0).map((s) => s.metric[label]!);
    await eventually(
      async () => ((await labels('Decisions', 'decision')).length >= 3 ? true : undefined),
      'three decisions',
    );
    expect((await labels('Decisions', 'decision')).sort()).toEqual(['allow', 'approve', 'deny']);
    expect(await labels('Blocked calls by policy and rule', 'rule')).toEqual(
      expect.arrayContaining(['no-delete', 'queries-by-ticket']),
    );
    expect(await labels('Most blocked tools', 'tool')).toEqual(
      expect.arrayContaining(['delete_repo', 'run_query']),
    );
    expect(await labels('Approvals by outcome', 'outcome')).toEqual(expect.arrayContaining(['requested']));
    expect(await labels('Masked values by detector', 'detector')).toEqual(['email']);
    expect((await labels('Authentication failures', 'reason')).length).toBeGreaterThan(0);
    const pending = await series(expr('Approvals pending'));
    expect(Number(pending[0]?.value[1])).toBe(3);
    const p99 = await series(expr('Latency by method (p50, p99)', 1));
    const call = p99.find((s) => s.metric['method'] === 'tools/call');
    expect(Number(call?.value[1])).toBeGreaterThan(0);
  });

  it('the variables list the values Prometheus has', async () => {
    const r = await fetch(`${promUrl}/api/v1/label/policy/values?match[]=mcp_warden_requests_total`);
    expect(((await r.json()) as { data: string[] }).data).toContain('agents/repo-tools');
    expect(dashboard.templating.list.map((v) => v.name)).toEqual([
      'datasource',
      'namespace',
      'pod',
      'policy',
    ]);
  });
});

describe('the alerting rules', () => {
  it('load into Prometheus and evaluate without errors', async () => {
    const groups = await eventually(async () => {
      const r = (await (await fetch(`${promUrl}/api/v1/rules`)).json()) as {
        data: { groups: Array<{ rules: Array<{ name: string; health: string; lastError?: string }> }> };
      };
      const rules = r.data.groups.flatMap((g) => g.rules);
      return rules.length > 0 && rules.every((x) => x.health === 'ok') ? rules : undefined;
    }, 'rules evaluated');
    expect(groups.map((g) => g.name)).toEqual(
      expect.arrayContaining(['MCPWardenWebhookCertificateExpiring', 'MCPWardenApprovalsWaiting']),
    );
  });

  it('pass promtool check and their unit tests (each fires on its case and not on the others)', () => {
    const promtool = binary('promtool');
    const check = spawnSync(promtool, ['check', 'rules', ALERTS], { encoding: 'utf8' });
    expect(check.stdout + check.stderr).toContain('SUCCESS');
    expect(check.status).toBe(0);
    const unit = spawnSync(promtool, ['test', 'rules', 'alerts.test.yaml'], {
      cwd: join(CHART, 'prometheus'),
      encoding: 'utf8',
    });
    expect(unit.stdout + unit.stderr).toContain('SUCCESS');
    expect(unit.status).toBe(0);
  });
});
