/**
 * `make demo` is the first thing a new user runs: this runs the built demo (dist/examples/demo.js,
 * produced by `make build`, which `make test` runs first) as its own process and checks that every
 * decision it promises is really shown, that nothing is left running, and that it exits 0.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const demo = join(root, 'dist/examples/demo.js');

function runDemo(): Promise<{ code: number | null; out: string }> {
  return new Promise((resolveRun, reject) => {
    const child = spawn(process.execPath, [demo], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
      out += d.toString();
    });
    child.once('error', reject);
    child.once('exit', (code) => resolveRun({ code, out }));
  });
}

/** The table row of `who` whose call column starts with `call` (or contains it, for arguments). */
const row = (out: string, who: string, call: string) =>
  out.split('\n').find((l) => {
    const cols = l.split('|').map((c) => c.trim());
    return cols[1] === who && (cols[2]?.startsWith(call) || (call.includes(' ') && cols[2]?.includes(call)));
  }) ?? '';

describe('make demo', () => {
  it('shows allowed, denied, filtered, argument-condition and audit decisions, masking and the recording', async () => {
    expect(existsSync(demo)).toBe(true);
    const { code, out } = await runDemo();
    expect(code).toBe(0);
    // A filtered tool list: readers do not see run_query or delete_repo; operators see run_query.
    const readerList = row(out, 'reader', 'tools/list');
    expect(readerList).toContain('get_weather');
    expect(readerList).not.toContain('run_query');
    expect(readerList).not.toContain('delete_repo');
    expect(row(out, 'operator', 'tools/list')).toContain('run_query');
    // Allowed, denied with its reason, argument condition.
    expect(row(out, 'reader', 'get_weather')).toContain('allowed');
    expect(row(out, 'reader', 'delete_repo')).toMatch(/denied -31403 .*deleting repositories/);
    expect(row(out, 'operator', 'SELECT count')).toContain('allowed');
    expect(row(out, 'operator', 'DROP TABLE')).toMatch(/denied -31403 .*DROP TABLE is not allowed/);
    // Masking: the contact email never reaches the client.
    expect(row(out, 'reader', 'search_docs')).toContain('[masked:email]');
    expect(out).not.toContain('dana.reyes@contoso.example');
    // Audit mode and the metrics that counted everything.
    expect(out).toMatch(
      /audit mode: 1 tools\/call call\(s\) would have been denied by policy "demo-email-audit"/,
    );
    expect(out).toMatch(/mcp_warden_blocked_total\{[^}]*rule="no-drop-table"[^}]*\} 1/);
    expect(out).toContain('Authorization headers that reached the upstream: 0');
    // The denied calls never reached the upstream.
    expect(out).not.toMatch(/"delete_repo":/);
    // Recordings: printed, verified, replayed.
    expect(out).toMatch(/session recording: \S+\.jsonl/);
    expect(out).toMatch(/verify: OK/);
    expect(out).toMatch(/DENY tools\/call delete_repo/);
  }, 90000);
});
