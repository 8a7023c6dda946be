import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { run } from './policy.js';

const tenant = '00000000-0000-0000-0000-000000000001';
const readers = '11111111-1111-1111-1111-111111111111';
const operators = '22222222-2222-2222-2222-222222222222';

function claims(oid: string, group: string, extra: Record<string, unknown> = {}) {
  return {
    iss: `http://127.0.0.1:8400/${tenant}/v2.0`,
    aud: 'api://demo-mcp',
    tid: tenant,
    oid,
    sub: `sub-${oid}`,
    ver: '2.0',
    scp: 'mcp.access',
    preferred_username: `${oid}@example.com`,
    groups: [group],
    exp: 4_102_444_800,
    ...extra,
  };
}

const tools = {
  tools: [
    { name: 'get_weather', annotations: { readOnlyHint: true } },
    { name: 'search_docs', annotations: { readOnlyHint: true } },
    { name: 'run_query' },
    { name: 'delete_repo', annotations: { destructiveHint: true } },
    { name: 'send_email' },
  ],
};

let dir: string;
const file = (name: string) => join(dir, name);

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'mcp-warden-cli-'));
  await writeFile(file('reader.json'), JSON.stringify(claims('reader', readers)));
  await writeFile(file('operator.json'), JSON.stringify(claims('operator', operators)));
  await writeFile(file('tools.json'), JSON.stringify(tools));
  const call = (name: string, args: Record<string, unknown> = {}) =>
    JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name, arguments: args } });
  await writeFile(file('weather.json'), call('get_weather', { city: 'Oslo' }));
  await writeFile(file('delete.json'), call('delete_repo', { repo: 'x' }));
  await writeFile(file('drop.json'), call('run_query', { query: 'DROP TABLE users' }));
  await writeFile(file('select.json'), call('run_query', { query: 'select 1' }));
  await writeFile(file('email.json'), call('send_email', { to: 'x@example.com' }));
  await writeFile(file('list.json'), JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'tools/list' }));
  await writeFile(
    file('approve.yaml'),
    `apiVersion: mcpwarden.io/v1alpha1
kind: MCPPolicy
metadata: {name: approvals}
spec:
  podSelector: {}
  rules:
    - name: hold-everything
      subjects: [{any: true}]
      action: approve
      approval: {approvers: [{group: reviewers}], timeout: 2m}
`,
  );
  await writeFile(
    file('bad.yaml'),
    `apiVersion: mcpwarden.io/v1alpha1
kind: MCPPolicy
metadata: {name: bad}
spec:
  podSelector: {}
  rules:
    - name: r
      subjects: [{group: g, role: r}]
      match: {when: 'args.q.matches("(?=x)")'}
      action: allow
`,
  );
  await writeFile(file('not-json.json'), '{');
  await writeFile(
    file('completion.yaml'),
    `apiVersion: mcpwarden.io/v1alpha1
kind: MCPPolicy
metadata: {name: completions}
spec:
  podSelector: {}
  rules:
    - name: complete-anything
      subjects: [{any: true}]
      match: {methods: [completion/complete]}
      action: allow
    - name: public-prompts
      subjects: [{any: true}]
      match: {prompts: ["public_*"]}
      action: allow
    - name: public-subscriptions
      subjects: [{any: true}]
      match: {methods: [resources/subscribe], resources: ["public://**"]}
      action: allow
`,
  );
  const complete = (name: string) =>
    JSON.stringify({
      jsonrpc: '2.0',
      id: 3,
      method: 'completion/complete',
      params: { ref: { type: 'ref/prompt', name }, argument: { name: 'team', value: 'p' } },
    });
  await writeFile(file('complete-public.json'), complete('public_summary'));
  await writeFile(file('complete-admin.json'), complete('admin_salaries'));
  const listen = (uris: string[]) =>
    JSON.stringify({
      jsonrpc: '2.0',
      id: 4,
      method: 'subscriptions/listen',
      params: { notifications: { resourceSubscriptions: uris } },
    });
  await writeFile(file('listen-public.json'), listen(['public://news']));
  await writeFile(file('listen-secret.json'), listen(['public://news', 'secret://payroll']));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function cli(argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const stdoutWrite = process.stdout.write;
  const stderrWrite = process.stderr.write;
  process.stdout.write = ((chunk: string) => out.push(String(chunk)) > 0) as typeof process.stdout.write;
  process.stderr.write = ((chunk: string) => err.push(String(chunk)) > 0) as typeof process.stderr.write;
  try {
    const code = await run(argv);
    return { code, stdout: out.join(''), stderr: err.join('') };
  } finally {
    process.stdout.write = stdoutWrite;
    process.stderr.write = stderrWrite;
  }
}

const example = 'examples/policy.yaml';

describe('policy lint', () => {
  test('valid: exit 0', async () => {
    const r = await cli(['lint', example]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/2 policies valid \(demo-tools, demo-email-audit\)/);
  });

  test('invalid: exit 1, every issue as file: path: message', async () => {
    const r = await cli(['lint', file('bad.yaml'), example]);
    expect(r.code).toBe(1);
    const lines = r.stderr.trim().split('\n');
    expect(lines).toEqual([
      `${file('bad.yaml')}: spec.rules[0].subjects[0]: a subject names exactly one of group, role, user, app, serviceAccount or any`,
      expect.stringMatching(
        new RegExp(
          `^${file('bad.yaml')}: spec\\.rules\\[0\\]\\.match\\.when: regex "\\(\\?=x\\)" is not valid RE2`,
        ),
      ),
    ]);
    expect(r.stdout).toMatch(/demo-tools/); // the valid path is still reported
  });

  test('usage errors exit 2', async () => {
    expect((await cli(['lint'])).code).toBe(2);
    expect((await cli(['frobnicate'])).code).toBe(2);
  });
});

describe('policy test', () => {
  const test3 = (identityFile: string, callFile: string, ...more: string[]) =>
    cli([
      'test',
      example,
      '--identity',
      file(identityFile),
      '--call',
      file(callFile),
      '--tools',
      file('tools.json'),
      ...more,
    ]);

  test("--cluster-issuer: a kubernetes entry without issuer matches the cluster's own service-account tokens only", async () => {
    const policy = `apiVersion: mcpwarden.io/v1alpha1
kind: MCPPolicy
metadata: {name: agents, namespace: agents}
spec:
  podSelector: {}
  identity:
    issuers:
      - kubernetes: {audiences: [mcp]}
  rules:
    - name: bot-reads
      subjects: [{serviceAccount: agents/bot}]
      match: {tools: [get_weather]}
      action: allow
`;
    await writeFile(file('sa-policy.yaml'), policy);
    const iss = 'https://oidc.prod-cluster.example';
    await writeFile(
      file('bot.json'),
      JSON.stringify({
        iss,
        aud: ['mcp'],
        sub: 'system:serviceaccount:agents:bot',
        exp: 4_102_444_800,
        'kubernetes.io': { namespace: 'agents', serviceaccount: { name: 'bot', uid: 'u-1' } },
      }),
    );
    const args = [
      'test',
      file('sa-policy.yaml'),
      '--identity',
      file('bot.json'),
      '--call',
      file('weather.json'),
    ];
    expect((await cli(args)).code).toBe(3);
    expect((await cli([...args, '--cluster-issuer', iss])).code).toBe(0);
    expect((await cli([...args, '--cluster-issuer', 'https://oidc.other-cluster.example'])).code).toBe(3);
    expect((await cli([...args, '--cluster-issuer'])).code).toBe(2);
  });

  test('allowed call: exit 0, names policy and rule', async () => {
    const r = await test3('reader.json', 'weather.json');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/decision: allow/);
    expect(r.stdout).toMatch(/policy:\s+demo-tools/);
    expect(r.stdout).toMatch(/rule:\s+read-only-tools/);
  });

  test('a call some rate limit covers: the decision lists every limit that counts it', async () => {
    const policy = `apiVersion: mcpwarden.io/v1alpha1
kind: MCPPolicy
metadata: {name: limited}
spec:
  podSelector: {}
  rules:
    - name: weather
      subjects: [{any: true}]
      match: {tools: [get_weather]}
      action: allow
      rateLimit: {requests: 60, per: 1m}
    - name: everything-shared
      subjects: [{any: true}]
      action: allow
      rateLimit: {requests: 1000, per: 1h, by: all}
`;
    await writeFile(file('limited.yaml'), policy);
    const r = await cli([
      'test',
      file('limited.yaml'),
      '--identity',
      file('reader.json'),
      '--call',
      file('weather.json'),
    ]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(
      'limit:    limited/weather: 60 calls per 1m per caller (counted by the proxy, not here)',
    );
    expect(r.stdout).toContain(
      'limit:    limited/everything-shared: 1000 calls per 1h for all callers together (counted by the proxy, not here)',
    );
  });

  test('completion/complete: decided as the data path does, also by the prompt it completes', async () => {
    const args = (call: string) => [
      'test',
      file('completion.yaml'),
      '--identity',
      file('reader.json'),
      '--call',
      file(call),
    ];
    const ok = await cli(args('complete-public.json'));
    expect(ok.code).toBe(0);
    const refused = await cli(args('complete-admin.json'));
    expect(refused.code).toBe(3);
    expect(refused.stdout).toMatch(/reason:\s+completing prompt admin_salaries: no rule allows/);
    // subscriptions/listen (2026-07-28): each resource it subscribes to, as resources/subscribe.
    expect((await cli(args('listen-public.json'))).code).toBe(0);
    const secret = await cli(args('listen-secret.json'));
    expect(secret.code).toBe(3);
    expect(secret.stdout).toMatch(/reason:\s+subscribing to secret:\/\/payroll: no rule allows/);
  });

  test('an integer argument beyond 2^53 is decided on its exact value, as the proxy decides it', async () => {
    await writeFile(
      file('order.yaml'),
      `apiVersion: mcpwarden.io/v1alpha1
kind: MCPPolicy
metadata: {name: orders}
spec:
  podSelector: {}
  rules:
    - name: one-order
      subjects: [{any: true}]
      match: {tools: [get_order], when: 'args.id == 9007199254740993'}
      action: allow
`,
    );
    // Written as text: JSON.stringify could not write these numbers.
    const order = (id: string) =>
      `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_order","arguments":{"id":${id}}}}`;
    await writeFile(file('order-exact.json'), order('9007199254740993'));
    await writeFile(file('order-neighbour.json'), order('9007199254740992'));
    const args = (call: string) => [
      'test',
      file('order.yaml'),
      '--identity',
      file('reader.json'),
      '--call',
      file(call),
    ];
    expect((await cli(args('order-exact.json'))).code).toBe(0);
    // As doubles these are one number; the neighbour is refused.
    expect((await cli(args('order-neighbour.json'))).code).toBe(3);
  });

  test('denied call: exit 3 with the reason', async () => {
    const r = await test3('reader.json', 'delete.json');
    expect(r.code).toBe(3);
    expect(r.stdout).toMatch(/rule:\s+no-repo-deletion/);
    expect(r.stdout).toMatch(/reason:\s+deleting repositories through MCP is not allowed/);
  });

  test('argument condition: DROP TABLE denied, select allowed for operators; readers default-denied', async () => {
    expect((await test3('operator.json', 'drop.json')).code).toBe(3);
    expect((await test3('operator.json', 'select.json')).code).toBe(0);
    const r = await test3('reader.json', 'select.json');
    expect(r.code).toBe(3);
    expect(r.stdout).toMatch(/rule:\s+\(none: default deny\)/);
  });

  test('audit mode: reported as a deny, enforced allow, exit 0', async () => {
    const r = await test3('reader.json', 'email.json');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/decision: deny \(enforced: allow\)/);
    expect(r.stdout).toMatch(/mode:\s+audit/);
    expect(r.stdout).toMatch(/policy:\s+demo-email-audit/);
  });

  test('approve: exit 4 and the approval settings', async () => {
    const r = await cli([
      'test',
      file('approve.yaml'),
      '--identity',
      file('reader.json'),
      '--call',
      file('weather.json'),
    ]);
    expect(r.code).toBe(4);
    expect(r.stdout).toMatch(/approval: hold, timeout 2m, approvers group=reviewers/);
  });

  test('--explain lists every rule considered and why', async () => {
    const r = await test3('operator.json', 'drop.json', '--explain');
    expect(r.stdout).toMatch(
      /APPLIES\s+demo-tools\/no-drop-table\s+deny\s+enforce\s+subjects and match apply; when is true/,
    );
    expect(r.stdout).toMatch(/APPLIES\s+demo-tools\/operators-run-query/);
    expect(r.stdout).toMatch(
      /skipped\s+demo-tools\/read-only-tools\s+allow\s+enforce\s+tool annotations differ/,
    );
    expect(r.stdout).toMatch(/skipped\s+demo-email-audit\/no-email/);
  });

  test('tools/list with --tools prints the filtered list', async () => {
    expect((await test3('reader.json', 'list.json')).stdout).toMatch(
      /listed:\s+get_weather, search_docs, send_email\n/,
    );
    expect((await test3('operator.json', 'list.json')).stdout).toMatch(
      /listed:\s+get_weather, search_docs, run_query, send_email\n/,
    );
  });

  test('--json output', async () => {
    const r = await test3('operator.json', 'drop.json', '--json', '--explain');
    const parsed = JSON.parse(r.stdout) as {
      decision: { rule: string };
      rules: unknown[];
      principal: string;
    };
    expect(parsed.decision.rule).toBe('no-drop-table');
    expect(parsed.rules).toHaveLength(6);
    expect(parsed.principal).toBe(`${tenant}/operator`);
  });

  test('bad inputs: clear errors, exit 1 or 2', async () => {
    let r = await cli(['test', example, '--identity', file('not-json.json'), '--call', file('weather.json')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/identity claims .*not-json\.json is not JSON/);
    r = await cli(['test', example, '--identity', file('reader.json'), '--call', file('tools.json')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/must be a JSON-RPC request with a "method"/);
    r = await cli([
      'test',
      file('bad.yaml'),
      '--identity',
      file('reader.json'),
      '--call',
      file('weather.json'),
    ]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/bad\.yaml: spec\.rules\[0\]\.subjects\[0\]/);
    r = await cli(['test', example, '--call', file('weather.json')]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/missing --identity/);
    r = await cli(['test', example, '--identity', file('missing.json'), '--call', file('weather.json')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/cannot read identity claims/);
  });
});
