/**
 * `make demo`: the gateway end to end on one machine, nothing to configure.
 *
 * Starts a real MCP server (official SDK), the local Entra-shaped OIDC issuer and
 * `mcp-warden gateway` (as its own process, with examples/policy.yaml), then drives it with a real
 * MCP client as two users and prints what was decided, the metrics that counted it, and the
 * session recording. Exits 0 and leaves nothing running.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { type DevIssuer, startDevIssuer } from '../pkg/identity/dev-issuer.js';
import { type DemoServer, startDemoServer } from './demo-server.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const cli = join(root, 'dist/cmd/mcp-warden.js');
const TENANT = '00000000-0000-0000-0000-000000000001';
const AUDIENCE = 'api://demo-mcp';
/** Group object ids used by examples/policy.yaml. */
const READERS = '11111111-1111-1111-1111-111111111111';
const OPERATORS = '22222222-2222-2222-2222-222222222222';

interface Row {
  who: string;
  call: string;
  outcome: string;
  detail: string;
}

function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
      srv.close(() => resolvePort(port));
    });
  });
}

async function waitReady(url: string, gateway: ChildProcess, timeoutMs = 20000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (gateway.exitCode !== null) throw new Error(`gateway exited with code ${gateway.exitCode}`);
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(1000) });
      if (res.ok) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`gateway not ready at ${url} after ${timeoutMs} ms`);
}

async function connect(url: string, token: string): Promise<Client> {
  const client = new Client({ name: 'demo-agent', version: '1.0.0' });
  const transport = new StreamableHTTPClientTransport(new URL(url), {
    requestInit: { headers: { authorization: `Bearer ${token}` } },
  });
  await client.connect(transport);
  return client;
}

async function call(client: Client, who: string, tool: string, args: Record<string, unknown>): Promise<Row> {
  const label = `${tool}(${JSON.stringify(args)})`;
  try {
    const result = await client.callTool({ name: tool, arguments: args });
    const content = result.content as Array<{ type: string; text?: string }>;
    const text = content.map((c) => c.text ?? `[${c.type}]`).join(' ');
    return { who, call: label, outcome: result.isError ? 'tool error' : 'allowed', detail: text };
  } catch (err) {
    const e = err as { code?: number; message?: string; data?: { rule?: string; policy?: string } };
    const where = e.data?.rule ? ` (${e.data.policy}/${e.data.rule})` : '';
    const message = (e.message ?? String(err))
      .replace(/^MCP error -?\d+: /, '')
      .replace(/ \(policy [^)]*\)/, '');
    return { who, call: label, outcome: `denied ${e.code ?? ''}`.trim(), detail: `${message}${where}` };
  }
}

function table(rows: Row[]): string {
  const cols: Array<keyof Row> = ['who', 'call', 'outcome', 'detail'];
  const clip = (s: string) => (s.length > 120 ? `${s.slice(0, 117)}...` : s);
  const widths = cols.map((c) => Math.max(c.length, ...rows.map((r) => clip(r[c]).length)));
  const line = (vals: string[]) => `| ${vals.map((v, i) => v.padEnd(widths[i] ?? 0)).join(' | ')} |`;
  return [
    line(cols),
    `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`,
    ...rows.map((r) => line(cols.map((c) => clip(r[c])))),
  ].join('\n');
}

async function main(): Promise<number> {
  const work = mkdtempSync(join(tmpdir(), 'mcp-warden-demo-'));
  const recordings = join(work, 'recordings');
  let upstream: DemoServer | undefined;
  let issuer: DevIssuer | undefined;
  let gateway: ChildProcess | undefined;
  const clients: Client[] = [];
  try {
    upstream = await startDemoServer();
    issuer = await startDevIssuer({ tenantId: TENANT });
    const policy = readFileSync(join(root, 'examples/policy.yaml'), 'utf8').replaceAll(
      'http://127.0.0.1:8400',
      issuer.url.replace(/\/$/, ''),
    );
    const policyPath = join(work, 'policy.yaml');
    writeFileSync(policyPath, policy);

    const [port, adminPort] = [await freePort(), await freePort()];
    gateway = spawn(
      process.execPath,
      [
        cli,
        'gateway',
        '--upstream',
        upstream.url,
        '--policy',
        policyPath,
        '--listen',
        `127.0.0.1:${port}`,
        '--admin-listen',
        `127.0.0.1:${adminPort}`,
        '--recordings',
        recordings,
      ],
      { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, MCP_WARDEN_LOG_LEVEL: 'warn' } },
    );
    let gatewayLog = '';
    gateway.stderr?.on('data', (d: Buffer) => {
      gatewayLog += d.toString();
    });
    try {
      await waitReady(`http://127.0.0.1:${adminPort}/readyz`, gateway);
    } catch (err) {
      process.stderr.write(gatewayLog);
      throw err;
    }
    const mcpUrl = `http://127.0.0.1:${port}/mcp`;
    console.log(`upstream MCP server  ${upstream.url}`);
    console.log(`local OIDC issuer    ${issuer.v2Issuer}`);
    console.log(`mcp-warden gateway   ${mcpUrl}  (metrics: http://127.0.0.1:${adminPort}/metrics)\n`);

    const readerToken = await issuer.issueToken({
      audience: AUDIENCE,
      oid: 'a0000000-0000-4000-8000-00000000000a',
      groups: [READERS],
      upn: 'rita@contoso.example',
    });
    const operatorToken = await issuer.issueToken({
      audience: AUDIENCE,
      oid: 'b0000000-0000-4000-8000-00000000000b',
      groups: [OPERATORS],
      upn: 'omar@contoso.example',
    });
    const reader = await connect(mcpUrl, readerToken);
    const operator = await connect(mcpUrl, operatorToken);
    clients.push(reader, operator);

    const rows: Row[] = [];
    const readerTools = (await reader.listTools()).tools.map((t) => t.name);
    const operatorTools = (await operator.listTools()).tools.map((t) => t.name);
    rows.push({ who: 'reader', call: 'tools/list', outcome: 'filtered', detail: readerTools.join(', ') });
    rows.push({ who: 'operator', call: 'tools/list', outcome: 'filtered', detail: operatorTools.join(', ') });
    rows.push(await call(reader, 'reader', 'get_weather', { city: 'Oslo' }));
    rows.push(await call(reader, 'reader', 'search_docs', { query: 'vpn reset' }));
    rows.push(await call(reader, 'reader', 'delete_repo', { name: 'payments' }));
    rows.push(await call(operator, 'operator', 'run_query', { query: 'SELECT count(*) FROM orders' }));
    rows.push(await call(operator, 'operator', 'run_query', { query: 'DROP TABLE orders' }));
    rows.push(
      await call(operator, 'operator', 'send_email', { to: 'ops@contoso.example', body: 'weekly report' }),
    );
    console.log(table(rows));

    const metrics = await (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text();
    const counted = metrics
      .split('\n')
      .filter((l) => /^mcp_warden_(requests_total|blocked_total|masked_values_total)\{/.test(l));
    console.log('\nmetrics (mcp_warden_*):');
    for (const l of counted) console.log(`  ${l}`);
    for (const l of counted) {
      const audit =
        /^mcp_warden_requests_total\{policy="([^"]+)",method="([^"]+)",decision="audit-deny"\} (\d+)/.exec(l);
      if (audit) {
        console.log(
          `\naudit mode: ${audit[3]} ${audit[2]} call(s) would have been denied by policy "${audit[1]}" and were let through`,
        );
      }
    }
    console.log(`\nAuthorization headers that reached the upstream: ${upstream.authorizationHeadersSeen()}`);
    console.log(`tool calls that reached the upstream: ${JSON.stringify(upstream.calls())}`);

    for (const c of clients.splice(0)) await c.close();
    gateway.kill('SIGTERM');
    await new Promise((r) => gateway?.once('exit', r));
    gateway = undefined;

    const files = readdirSync(recordings).filter((f) => f.endsWith('.jsonl'));
    for (const f of files) {
      const path = join(recordings, f);
      console.log(`\nsession recording: ${path}`);
      const verify = spawnSync(process.execPath, [cli, 'recordings', 'verify', path], { encoding: 'utf8' });
      console.log(`  verify: ${(verify.stdout + verify.stderr).trim()}`);
      const replay = spawnSync(process.execPath, [cli, 'recordings', 'replay', path], { encoding: 'utf8' });
      console.log(replay.stdout.replace(/^/gm, '  '));
    }
    return 0;
  } finally {
    for (const c of clients) await c.close().catch(() => undefined);
    if (gateway && gateway.exitCode === null) {
      gateway.kill('SIGTERM');
      await new Promise((r) => gateway?.once('exit', r));
    }
    await upstream?.close();
    await issuer?.close();
    // Recordings stay for inspection (`mcp-warden recordings replay <file>`); the rest goes.
    rmSync(join(work, 'policy.yaml'), { force: true });
  }
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    console.error(`demo failed: ${err instanceof Error ? err.message : String(err)}`);
    process.exitCode = 1;
  },
);
