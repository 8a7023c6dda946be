/**
 * Compares conformance runs: direct (suite → upstream) against gateway (suite → forwarder →
 * `mcp-warden gateway` → upstream), per spec version and per scenario, check by check.
 *
 * Run: `node test/conformance/report.ts --results DIR --listing 2025-06-18=FILE
 *        [--listing 2026-07-28@alpha=FILE2 ...] --out FILE`
 *
 * DIR holds `direct-<run>/` and `gateway-<run>/`, each the `--output-dir` of one suite run (one
 * `server-<scenario>-<timestamp>/checks.json` per scenario). Each `--listing` names a run — a
 * spec version, optionally tagged with the suite release (`2025-11-25@alpha`) — and the output of
 * `conformance list --server` of the suite release that ran it: the scenarios it must have run.
 *
 * Prints the two summaries side by side and every difference, writes `P F` to `--out` (checks
 * passed and failed, summed over both runs; each difference and each scenario missing from a
 * run counts as one more failure), and exits 1 when anything failed or differed.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { parseArgs } from 'node:util';

interface Check {
  id: string;
  name?: string;
  status: string;
  errorMessage?: string;
}

type Run = Map<string, Check[]>;

/** Checks that only log traffic (one per request/event): their count is not a verdict. */
const TRAFFIC_CHECKS = new Set([
  'outgoing-request',
  'incoming-response',
  'incoming-sse-event',
  'stream-closed',
]);

const TIMESTAMP = /-\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}-\d{3}Z$/;

export function loadRun(dir: string): Run {
  const run: Run = new Map();
  if (!existsSync(dir)) return run;
  for (const entry of readdirSync(dir)) {
    if (!entry.startsWith('server-') || !TIMESTAMP.test(entry)) continue;
    const scenario = entry.slice('server-'.length).replace(TIMESTAMP, '');
    const file = join(dir, entry, 'checks.json');
    if (!existsSync(file)) continue;
    const parsed: unknown = JSON.parse(readFileSync(file, 'utf8'));
    if (!Array.isArray(parsed)) throw new Error(`${file}: expected an array of checks`);
    run.set(scenario, parsed as Check[]);
  }
  return run;
}

/** `conformance list --server` lines look like `  - tools-list [2025-06-18,2025-11-25]`. */
export function scenariosFor(listing: string, version: string): string[] {
  const out: string[] = [];
  let inServer = false;
  for (const line of listing.split('\n')) {
    if (line.startsWith('Server scenarios')) inServer = true;
    else if (/^\S/.test(line)) inServer = false;
    const m = /^\s+- (\S+) \[([^\]]*)\]/.exec(line);
    if (inServer && m?.[1] !== undefined && m[2]?.split(',').includes(version)) out.push(m[1]);
  }
  return out;
}

/** Verdict checks keyed `id#n` (n-th occurrence of that id), so repeated ids compare in order. */
function verdicts(checks: readonly Check[]): Map<string, Check> {
  const seen = new Map<string, number>();
  const out = new Map<string, Check>();
  for (const c of checks) {
    if (TRAFFIC_CHECKS.has(c.id)) continue;
    const n = seen.get(c.id) ?? 0;
    seen.set(c.id, n + 1);
    out.set(`${c.id}#${n}`, c);
  }
  return out;
}

function tally(checks: readonly Check[] | undefined): { pass: number; fail: number; warn: number } {
  const list = checks ?? [];
  return {
    pass: list.filter((c) => c.status === 'SUCCESS').length,
    fail: list.filter((c) => c.status === 'FAILURE').length,
    warn: list.filter((c) => c.status === 'WARNING').length,
  };
}

export interface Comparison {
  passed: number;
  failed: number;
  differences: string[];
  lines: string[];
}

export function compare(version: string, expected: readonly string[], direct: Run, gateway: Run): Comparison {
  const lines: string[] = [];
  const differences: string[] = [];
  let passed = 0;
  let failed = 0;
  const scenarios = [...new Set([...expected, ...direct.keys(), ...gateway.keys()])];
  const width = Math.max(28, ...scenarios.map((s) => s.length));
  const fmt = (t: { pass: number; fail: number; warn: number } | undefined): string =>
    t === undefined ? 'not run'.padEnd(20) : `${t.pass} ok ${t.fail} fail ${t.warn} warn`.padEnd(20);
  lines.push(`spec ${version}`);
  lines.push(`  ${'scenario'.padEnd(width)}  ${'direct'.padEnd(20)}  ${'gateway'.padEnd(20)}  same`);
  for (const scenario of scenarios) {
    const d = direct.get(scenario);
    const g = gateway.get(scenario);
    const td = d === undefined ? undefined : tally(d);
    const tg = g === undefined ? undefined : tally(g);
    passed += (td?.pass ?? 0) + (tg?.pass ?? 0);
    failed += (td?.fail ?? 0) + (tg?.fail ?? 0);
    const diffs: string[] = [];
    if (d === undefined || g === undefined) {
      diffs.push(`${version} ${scenario}: ${d === undefined ? 'direct' : 'gateway'} run has no result`);
      if (d === undefined && g === undefined) diffs.push(`${version} ${scenario}: gateway run has no result`);
    } else {
      const vd = verdicts(d);
      const vg = verdicts(g);
      for (const key of new Set([...vd.keys(), ...vg.keys()])) {
        const a = vd.get(key);
        const b = vg.get(key);
        if (a?.status !== b?.status) {
          const why = b?.errorMessage ?? a?.errorMessage ?? '';
          diffs.push(
            `${version} ${scenario} ${key}: direct ${a?.status ?? 'absent'}, gateway ${b?.status ?? 'absent'}${why ? ` (${why})` : ''}`,
          );
        }
      }
    }
    failed += diffs.length;
    // A run with no result at all is reported once, not once per scenario (each still counts).
    if (d === undefined && direct.size === 0)
      diffs.splice(0, diffs.length, `${version}: the direct run produced no result`);
    else if (g === undefined && gateway.size === 0)
      diffs.splice(0, diffs.length, `${version}: the gateway run produced no result`);
    for (const diff of diffs) if (!differences.includes(diff)) differences.push(diff);
    lines.push(`  ${scenario.padEnd(width)}  ${fmt(td)}  ${fmt(tg)}  ${diffs.length === 0 ? 'yes' : 'NO'}`);
  }
  return { passed, failed, differences, lines };
}

function main(): number {
  const { values } = parseArgs({
    options: {
      results: { type: 'string' },
      listing: { type: 'string', multiple: true },
      out: { type: 'string' },
    },
  });
  const listings: Array<{ version: string; file: string }> = [];
  for (const arg of values.listing ?? []) {
    const eq = arg.indexOf('=');
    if (eq > 0) listings.push({ version: arg.slice(0, eq), file: arg.slice(eq + 1) });
  }
  if (
    !values.results ||
    !values.out ||
    listings.length === 0 ||
    listings.length !== (values.listing ?? []).length
  ) {
    process.stderr.write(
      'usage: report.ts --results DIR --listing VERSION=LIST_FILE [--listing ...] --out FILE\n',
    );
    return 2;
  }
  let passed = 0;
  let failed = 0;
  const differences: string[] = [];
  const output: string[] = ['', '=== MCP conformance: direct vs through mcp-warden gateway ==='];
  for (const { version: run, file } of listings) {
    // A run label is a spec version, optionally tagged with the suite release (`2025-11-25@alpha`).
    const version = run.split('@')[0] ?? run;
    const expected = scenariosFor(readFileSync(file, 'utf8'), version);
    if (expected.length === 0) {
      output.push(`spec ${run}: the suite lists no server scenario for this version`);
      failed += 1;
      continue;
    }
    const result = compare(
      run,
      expected,
      loadRun(join(values.results, `direct-${run}`)),
      loadRun(join(values.results, `gateway-${run}`)),
    );
    passed += result.passed;
    failed += result.failed;
    differences.push(...result.differences);
    output.push(...result.lines);
  }
  if (differences.length > 0) {
    output.push('', `Differences (${differences.length}):`, ...differences.map((d) => `  - ${d}`));
  } else {
    output.push('', 'No difference between the direct and the gateway runs.');
  }
  output.push(`Checks: ${passed} passed, ${failed} failed (both runs; differences count as failures)`);
  process.stdout.write(`${output.join('\n')}\n`);
  mkdirSync(dirname(values.out), { recursive: true });
  writeFileSync(values.out, `${passed} ${failed}\n`);
  return failed > 0 ? 1 : 0;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  try {
    process.exitCode = main();
  } catch (err) {
    process.stderr.write(`conformance report: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  }
}
