import { once } from 'node:events';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { request } from 'node:http';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import type { McpError } from '@modelcontextprotocol/sdk/types.js';
import { type DevIssuer, startDevIssuer } from '../../pkg/identity/dev-issuer.js';
import { verifyRecording } from '../../pkg/record/index.js';
import { exited, spawnCli, waitForOutput } from './helpers/cli.js';
import { connectStreamable } from './helpers/harness.js';
import { startUpstream, type Upstream } from './helpers/upstream-v1.js';

/**
 * `mcp-warden gateway` as a real process, with a real policy file (the real policy engine: CEL,
 * globs, annotations, audit mode), a real upstream and SDK client, the dev issuer for tokens.
 */
const AUD = 'api://gateway-test';
const READERS = '11111111-1111-1111-1111-111111111111';
let dir: string;
let issuer: DevIssuer;
let upstream: Upstream;

function policyYaml(extraRule = ''): string {
  return `apiVersion: mcpwarden.io/v1alpha1
kind: MCPPolicy
metadata: {name: tools}
spec:
  podSelector: {}
  mode: enforce
  identity:
    issuers:
      - issuer: ${issuer.v2Issuer}
        audiences: [${AUD}]
  rules:${extraRule}
    - name: read-only
      subjects: [{group: ${READERS}}]
      match:
        tools: ["*"]
        toolAnnotations: {readOnlyHint: true}
      action: allow
    - name: queries
      subjects: [{group: ${READERS}}]
      match: {tools: [run_query, contact]}
      action: allow
    - name: no-drop
      subjects: [{any: true}]
      match:
        tools: [run_query]
        when: 'args.query.matches("(?i)\\\\bdrop\\\\s+table\\\\b")'
      action: deny
      reason: DROP TABLE is not allowed
    - name: no-delete
      subjects: [{any: true}]
      match: {tools: [delete_repo]}
      action: deny
      reason: deleting repositories is not allowed
  masking:
    - name: pii
      detectors: [email]
  recording: {enabled: true}
---
apiVersion: mcpwarden.io/v1alpha1
kind: MCPPolicy
metadata: {name: trial}
spec:
  podSelector: {}
  mode: audit
  identity:
    issuers:
      - issuer: ${issuer.v2Issuer}
        audiences: [${AUD}]
  rules:
    - name: trial-no-contact
      subjects: [{any: true}]
      match: {tools: [contact]}
      action: deny
      reason: trialling a block on contact
`;
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'warden-gw-'));
  issuer = await startDevIssuer();
  upstream = await startUpstream();
});
afterAll(async () => {
  await upstream?.close();
  await issuer?.close();
  await rm(dir, { recursive: true, force: true });
});

test('an invalid policy is refused at start with file, field and reason (exit 1)', async () => {
  const bad = join(dir, 'bad.yaml');
  await writeFile(bad, policyYaml().replace('action: allow', 'action: permit'));
  const child = await spawnCli(dir, [
    'gateway',
    '--upstream',
    upstream.mcpUrl,
    '--policy',
    bad,
    '--listen',
    '127.0.0.1:0',
    '--admin-listen',
    '127.0.0.1:0',
  ]);
  expect(await exited(child)).toBe(1);
  expect(child.output()).toContain('bad.yaml');
  expect(child.output()).toMatch(/spec\.rules\[0\]\.action/);
});

test('bad flags exit 2 with usage', async () => {
  const child = await spawnCli(dir, ['gateway', '--upstream', upstream.mcpUrl]);
  expect(await exited(child)).toBe(2);
  expect(child.output()).toContain('--upstream and --policy are required');
  // A flag whose value is refused: exit 2, naming the flag (and why).
  for (const [flag, value, said] of [
    ['--upstream-timeout', 'whenever', '--upstream-timeout'],
    ['--request-timeout', 'eventually', '--request-timeout'],
    ['--policy-poll-interval', 'often', '--policy-poll-interval'],
    ['--policy-poll-interval', '500ms', '--policy-poll-interval: "500ms" is too short'],
    [
      '--allowed-origins',
      'https://app.example.com/',
      '--allowed-origins: "https://app.example.com/" is not an origin',
    ],
  ]) {
    const bad = await spawnCli(dir, [
      'gateway',
      '--upstream',
      upstream.mcpUrl,
      '--policy',
      join(dir, 'policy.yaml'),
      flag as string,
      value as string,
    ]);
    expect(await exited(bad)).toBe(2);
    expect(bad.output()).toContain(said);
  }
});

test('--request-timeout: a client that does not finish sending its request in time gets 408; oversized headers 431, garbage 400', async () => {
  await writeFile(join(dir, 'policy.yaml'), policyYaml());
  const gw = await spawnCli(dir, [
    'gateway',
    '--upstream',
    upstream.mcpUrl,
    '--policy',
    join(dir, 'policy.yaml'),
    '--listen',
    '127.0.0.1:0',
    '--admin-listen',
    '127.0.0.1:0',
    '--request-timeout',
    '1s',
  ]);
  try {
    const m = await waitForOutput(gw, /"mcp":"(http:\/\/[^"]+)"/);
    const url = new URL(m[1]!);
    // An authenticated request (so the gateway reads its body) whose headers announce 100 bytes
    // of body; 10 arrive, then nothing.
    const token = await issuer.issueToken({ audience: AUD, oid: 'reader-1', groups: [READERS] });
    const socket = connect(Number(url.port), url.hostname);
    await once(socket, 'connect');
    const started = Date.now();
    socket.write(
      `POST ${url.pathname} HTTP/1.1\r\nhost: ${url.host}\r\nauthorization: Bearer ${token}\r\naccept: application/json, text/event-stream\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{"jsonrpc"`,
    );
    let received = '';
    socket.on('data', (c: Buffer) => {
      received += c.toString('latin1');
    });
    await once(socket, 'close');
    const took = Date.now() - started;
    expect(received).toMatch(/^HTTP\/1\.1 408 Request Timeout\r\n/);
    expect(took).toBeGreaterThanOrEqual(900);
    expect(took).toBeLessThan(5_000);

    // What HTTP cannot parse gets its own status, and the connection is closed.
    const raw = async (text: string): Promise<string> => {
      const s = connect(Number(url.port), url.hostname);
      let got = '';
      s.on('data', (c: Buffer) => {
        got += c.toString('latin1');
      });
      s.on('error', () => {});
      s.write(text);
      await once(s, 'close');
      return got;
    };
    expect(
      await raw(
        `POST ${url.pathname} HTTP/1.1\r\nhost: ${url.host}\r\nx-filler: ${'a'.repeat(20_000)}\r\n\r\n`,
      ),
    ).toMatch(/^HTTP\/1\.1 431 Request Header Fields Too Large\r\n/);
    expect(await raw('NOT AN HTTP REQUEST\r\n\r\n')).toMatch(/^HTTP\/1\.1 400 Bad Request\r\n/);
  } finally {
    gw.kill('SIGKILL');
    await exited(gw);
  }
});

test('--help prints every option of the command (exit 0), not just the one-line form', async () => {
  const gateway = await spawnCli(dir, ['gateway', '--help']);
  expect(await exited(gateway)).toBe(0);
  expect(gateway.output()).toContain('--approvals-namespace NS');
  expect(gateway.output()).toContain('--allowed-origins LIST');
  const approvals = await spawnCli(dir, ['approvals', '--help']);
  expect(await exited(approvals)).toBe(0);
  expect(approvals.output()).toContain('mcp-warden approvals show NAME');
  expect(approvals.output()).toContain('--reason TEXT');
});

describe('a running gateway', () => {
  let gw: Awaited<ReturnType<typeof spawnCli>>;
  let mcpUrl: string;
  let adminUrl: string;
  let client: Client;
  const policyFile = () => join(dir, 'policy.yaml');
  const recordings = () => join(dir, 'recordings');

  beforeAll(async () => {
    await writeFile(policyFile(), policyYaml());
    gw = await spawnCli(dir, [
      'gateway',
      '--upstream',
      upstream.mcpUrl,
      '--policy',
      policyFile(),
      '--listen',
      '127.0.0.1:0',
      '--admin-listen',
      '127.0.0.1:0',
      '--recordings',
      recordings(),
      '--allowed-hosts',
      'localhost,127.0.0.1,[::1]',
      '--policy-poll-interval',
      '1s',
    ]);
    const m = await waitForOutput(gw, /"mcp":"(http:\/\/[^"]+)","admin":"(http:\/\/[^"]+)"/);
    mcpUrl = m[1]!;
    adminUrl = m[2]!;
    const token = await issuer.issueToken({ audience: AUD, oid: 'reader-1', groups: [READERS] });
    client = await connectStreamable(mcpUrl, token, { version: '2025-06-18' });
  });
  afterAll(async () => {
    await client?.close().catch(() => undefined);
    if (gw && gw.exitCode === null) {
      gw.kill('SIGKILL');
      await exited(gw);
    }
  });

  test('ready', async () => {
    expect((await fetch(`${adminUrl}/readyz`)).status).toBe(200);
    expect((await fetch(`${adminUrl}/healthz`)).status).toBe(200);
  });

  test('a call before any tools/list still sees the declared annotations (readOnlyHint rule allows)', async () => {
    const r = await client.callTool({ name: 'get_weather', arguments: { city: 'Bern' } });
    expect(r.content).toEqual([{ type: 'text', text: 'sunny in Bern' }]);
  });

  test('denied call with the policy reason', async () => {
    const e = (await client
      .callTool({ name: 'delete_repo', arguments: { name: 'x' } })
      .catch((x: unknown) => x)) as McpError;
    expect(e.code).toBe(-31403);
    expect(e.data).toMatchObject({
      policy: 'tools',
      rule: 'no-delete',
      reason: 'deleting repositories is not allowed',
    });
  });

  test('CEL argument condition', async () => {
    const e = (await client
      .callTool({ name: 'run_query', arguments: { query: 'drop  TABLE users' } })
      .catch((x: unknown) => x)) as McpError;
    expect(e.code).toBe(-31403);
    expect(e.data).toMatchObject({ rule: 'no-drop' });
    const ok = await client.callTool({ name: 'run_query', arguments: { query: 'select * from users' } });
    expect(ok.isError).toBeFalsy();
  });

  test('filtered tools/list', async () => {
    const r = await client.listTools();
    expect(r.tools.map((t) => t.name).sort()).toEqual(['contact', 'get_weather', 'run_query']);
  });

  test('audit-mode policy: decided, reported, let through (and the result masked)', async () => {
    const r = await client.callTool({ name: 'contact', arguments: {} });
    expect(r.isError).toBeFalsy();
    const text = JSON.stringify(r.content);
    expect(text).not.toContain('alice@example.com');
    expect(text).toContain('write to ');
    const metrics = await (await fetch(`${adminUrl}/metrics`)).text();
    expect(metrics).toMatch(
      /mcp_warden_requests_total\{policy="trial",method="tools\/call",decision="audit-deny"\} 1/,
    );
    expect(metrics).toMatch(
      /mcp_warden_blocked_total\{policy="tools",rule="no-delete",tool="delete_repo",reason="rule"\} 1/,
    );
    expect(metrics).toMatch(/mcp_warden_sessions_active 1/);
    expect(metrics).toMatch(/mcp_warden_masked_values_total\{policy="tools",detector="email"\} 1/);
  });

  test('a refused token is counted once in auth_failures_total, by reason', async () => {
    const expired = await issuer.issueToken({
      audience: AUD,
      oid: 'reader-1',
      groups: [READERS],
      expiresInSec: -3600,
    });
    const res = await fetch(mcpUrl, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${expired}`,
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
      },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'ping' }),
    });
    expect(res.status).toBe(401);
    expect(res.headers.get('www-authenticate')).toMatch(/^Bearer .*resource_metadata="/);
    const metrics = await (await fetch(`${adminUrl}/metrics`)).text();
    expect(metrics).toMatch(/mcp_warden_auth_failures_total\{reason="expired"\} 1\n/);
  });

  test('editing the policy file applies to the next message without dropping the session', async () => {
    const applied = gw.output().split('policy change applied').length;
    await writeFile(
      policyFile(),
      policyYaml(`
    - name: weather-closed
      subjects: [{any: true}]
      match: {tools: [get_weather]}
      action: deny
      reason: weather is closed today`),
    );
    await waitForOutput(gw, new RegExp(`(policy change applied[\\s\\S]*){${applied}}`));
    const e = (await client
      .callTool({ name: 'get_weather', arguments: { city: 'Bern' } })
      .catch((x: unknown) => x)) as McpError;
    expect(e.code).toBe(-31403);
    expect(e.data).toMatchObject({ rule: 'weather-closed', reason: 'weather is closed today' });
    const still = await client.callTool({ name: 'run_query', arguments: { query: 'select 2' } });
    expect(still.content).toEqual([{ type: 'text', text: 'ran: select 2' }]);
  });

  test('an invalid edit is refused loudly and the last good policy stays', async () => {
    await writeFile(
      policyFile(),
      'apiVersion: mcpwarden.io/v1alpha1\nkind: MCPPolicy\nmetadata: {name: tools}\nspec: {rules: [{name: x, action: nope}]}\n',
    );
    await waitForOutput(gw, /"event":"policy-rejected"/);
    const e = (await client
      .callTool({ name: 'get_weather', arguments: { city: 'Bern' } })
      .catch((x: unknown) => x)) as McpError;
    expect(e.data).toMatchObject({ rule: 'weather-closed' });
    expect((await fetch(`${adminUrl}/readyz`)).status).toBe(200);
    // One line per rejected change, naming the field, whatever noticed it (watch or poll).
    const rejected = gw
      .output()
      .split('\n')
      .filter((l) => /rejected/i.test(l));
    expect(rejected).toHaveLength(1);
    expect(rejected[0]).toContain('POLICY CHANGE REJECTED');
    expect(rejected[0]).toContain('spec.rules[0].action');
  });

  test('SIGTERM: graceful exit 0, recordings closed and verifiable', async () => {
    gw.kill('SIGTERM');
    expect(await exited(gw)).toBe(0);
    const files = (await readdir(recordings())).filter((f) => f.endsWith('.jsonl'));
    expect(files.length).toBeGreaterThan(0);
    let all = '';
    for (const f of files) {
      const v = await verifyRecording(join(recordings(), f));
      expect(v).toMatchObject({ ok: true, status: 'closed' });
      all += await readFile(join(recordings(), f), 'utf8');
    }
    // Every decision is recorded, and payloads only masked.
    expect(all).toContain('"no-delete"');
    expect(all).toContain('"weather-closed"');
    expect(all).not.toContain('alice@example.com');
    expect(upstream.stats.authorizationSeen).toBe(0);
  });
});

test('recording.sink: stdout writes the hash-chained recording to stdout (logs stay on stderr)', async () => {
  const file = join(dir, 'stdout-policy.yaml');
  await writeFile(
    file,
    policyYaml().replace('recording: {enabled: true}', 'recording: {enabled: true, sink: stdout}'),
  );
  const gw = await spawnCli(dir, [
    'gateway',
    '--upstream',
    upstream.mcpUrl,
    '--policy',
    file,
    '--listen',
    '127.0.0.1:0',
    '--admin-listen',
    '127.0.0.1:0',
  ]);
  let stdout = '';
  gw.stdout?.on('data', (d: Buffer) => {
    stdout += d.toString();
  });
  try {
    const m = await waitForOutput(gw, /"mcp":"(http:\/\/[^"]+)"/);
    const token = await issuer.issueToken({ audience: AUD, oid: 'reader-2', groups: [READERS] });
    const client = await connectStreamable(m[1]!, token, { version: '2025-06-18' });
    await client.callTool({ name: 'run_query', arguments: { query: 'select 1' } });
    await client.close();
    gw.kill('SIGTERM');
    expect(await exited(gw)).toBe(0);
  } finally {
    if (gw.exitCode === null) gw.kill('SIGKILL');
  }
  const lines = stdout.split('\n').filter((l) => l !== '');
  expect(lines.length).toBeGreaterThan(3);
  // Only recording lines on stdout: every one parses, none is a log event.
  for (const l of lines) expect(JSON.parse(l)).not.toHaveProperty('level');
  expect(stdout).toContain('run_query');
  const copy = join(dir, 'from-stdout.jsonl');
  await writeFile(copy, `${lines.join('\n')}\n`);
  const report = await verifyRecording(copy);
  expect(report).toMatchObject({ ok: true });
});

test('a loopback gateway refuses a rebound Host by default (DNS-rebinding protection)', async () => {
  const file = join(dir, 'rebinding-policy.yaml');
  await writeFile(file, policyYaml());
  const gw = await spawnCli(dir, [
    'gateway',
    '--upstream',
    upstream.mcpUrl,
    '--policy',
    file,
    '--listen',
    '127.0.0.1:0',
    '--admin-listen',
    '127.0.0.1:0',
  ]);
  try {
    const m = await waitForOutput(gw, /"mcp":"(http:\/\/[^"]+)"/);
    const url = new URL(m[1]!);
    const status = (host: string) =>
      new Promise<number>((resolve, reject) => {
        const req = request(
          { host: url.hostname, port: url.port, path: url.pathname, method: 'POST', headers: { host } },
          (res) => {
            res.resume();
            resolve(res.statusCode ?? 0);
          },
        );
        req.once('error', reject);
        req.end('{}');
      });
    const before = upstream.stats.requests;
    expect(await status('attacker.example')).toBe(403);
    expect(await status(`attacker.example:${url.port}`)).toBe(403);
    // A local client's Host passes the check and meets authentication.
    expect(await status(`127.0.0.1:${url.port}`)).toBe(401);
    expect(await status(`localhost:${url.port}`)).toBe(401);
    expect(upstream.stats.requests).toBe(before);
  } finally {
    gw.kill('SIGTERM');
    await exited(gw);
  }
});
