/**
 * Side-by-side A/B of gateway variants: the same upstream, each variant's `mcp-warden gateway`
 * with full enforcement (as in `make bench`), saturating runs interleaved round by round (A, B,
 * A, B, …) so drift in the machine's speed hits every variant alike. Reports, per variant, the
 * gateway's CPU per request and the pair's throughput, and each variant's ratio to the first.
 *
 * A variant is a built tree (its `dist/`; a git worktree of another commit, built) plus node flags
 * and environment. Use it to measure a change against what it replaces before keeping it.
 *
 * Usage:
 *   node dist/bench/ab.js --scenario small --rounds 6 --duration 4 \
 *     --variant '{"name":"main","root":"/tmp/base"}' \
 *     --variant '{"name":"change","root":"."}' \
 *     --variant '{"name":"semi4","root":".","flags":["--max-semi-space-size=4"]}'
 * `root` defaults to this tree; `flags` to the injected sidecar's NODE_OPTIONS; `env` adds to
 * the sidecar's malloc settings. Loopback only; servers on CPU 0, the load generator on CPU 1.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type { Scenario } from './load.js';
import { Scenarios } from './load.js';
import { loadRun } from './loadgen.js';
import { firstLine, runTimeUs, start, stop } from './proc.js';
import type { Target } from './target.js';
import { startWarden } from './warden.js';

const here = resolve(fileURLToPath(import.meta.url), '../../..');
const SERVER_CPU = '0';

interface Variant {
  name: string;
  root?: string;
  flags?: string[];
  env?: Record<string, string>;
}

interface Sample {
  rps: number;
  proxyUs: number;
  upstreamUs: number;
}

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.floor((s.length - 1) / 2)] ?? Number.NaN;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      variant: { type: 'string', multiple: true },
      scenario: { type: 'string', default: 'small' },
      rounds: { type: 'string', default: '6' },
      duration: { type: 'string', default: '4' },
      warmup: { type: 'string', default: '1' },
      connections: { type: 'string', default: '16' },
    },
  });
  const variants = (values.variant ?? []).map((v) => JSON.parse(v) as Variant);
  if (variants.length < 1) throw new Error('give at least one --variant');
  const scenario = values.scenario as Scenario;
  if (!Scenarios.includes(scenario)) throw new Error(`--scenario: one of ${Scenarios.join(', ')}`);
  const rounds = Number(values.rounds);
  const work = await mkdtemp(join(tmpdir(), 'mcp-warden-ab-'));
  const log = (m: string) => process.stderr.write(`ab: ${m}\n`);
  const upstream = start(process.execPath, [join(here, 'dist/bench/upstream.js'), '--port', '0'], {
    cpus: SERVER_CPU,
  });
  const up = JSON.parse(await firstLine(upstream)) as { url: string };
  const targets: Target[] = [];
  const samples = new Map<string, Sample[]>();
  try {
    for (const v of variants) {
      const w = await startWarden({
        upstreamUrl: up.url,
        // Each gateway writes its policy (trusting its own dev issuer) into its work directory.
        work: await mkdtemp(join(work, `${v.name}-`)),
        cpus: SERVER_CPU,
        profile: false,
        log,
        ...(v.root === undefined ? {} : { root: resolve(v.root) }),
        ...(v.flags === undefined ? {} : { nodeFlags: v.flags, sidecarEnv: true }),
        ...(v.env === undefined ? {} : { env: v.env }),
      });
      targets.push(w.target);
      samples.set(v.name, []);
    }
    for (let round = 1; round <= rounds; round++) {
      // Alternate the order every round, so neither variant always runs right after the other.
      const order = round % 2 === 1 ? variants.keys() : [...variants.keys()].reverse();
      for (const i of order) {
        const t = targets[i]!;
        const v = variants[i]!;
        const up0 = await runTimeUs(upstream.pid);
        const px0 = await runTimeUs(t.pid as number);
        const r = await loadRun(t, scenario, 'saturate', {
          duration: Number(values.duration),
          warmup: Number(values.warmup),
          connections: Number(values.connections),
        });
        if (r.errors > 0) throw new Error(`${v.name}: ${r.errors} errors: ${r.errorSamples.join('; ')}`);
        const per = (us: number) => us / Math.max(1, r.completed);
        const s = {
          rps: r.rps,
          proxyUs: per((await runTimeUs(t.pid as number)) - px0),
          upstreamUs: per((await runTimeUs(upstream.pid)) - up0),
        };
        samples.get(v.name)!.push(s);
        log(
          `round ${round} ${v.name}: ${Math.round(s.rps)} req/s, gateway ${Math.round(s.proxyUs)} µs, upstream ${Math.round(s.upstreamUs)} µs`,
        );
      }
    }
  } finally {
    for (const t of targets) await t.stop();
    await stop(upstream);
    await rm(work, { recursive: true, force: true });
  }
  const base = samples.get(variants[0]!.name)!;
  const lines = [
    `scenario ${scenario}, ${rounds} rounds of ${values.duration} s, medians`,
    '| variant | req/s | gateway µs/request | upstream µs/request | gateway CPU vs first | throughput vs first |',
    '| --- | ---: | ---: | ---: | ---: | ---: |',
  ];
  for (const v of variants) {
    const s = samples.get(v.name)!;
    // Per-round ratios against the first variant in the same round, then their median.
    const cpuRatio = median(s.map((x, i) => x.proxyUs / base[i]!.proxyUs));
    const rpsRatio = median(s.map((x, i) => x.rps / base[i]!.rps));
    lines.push(
      `| ${v.name} | ${Math.round(median(s.map((x) => x.rps)))} | ${Math.round(median(s.map((x) => x.proxyUs)))} | ${Math.round(median(s.map((x) => x.upstreamUs)))} | ${cpuRatio.toFixed(3)} | ${rpsRatio.toFixed(3)} |`,
    );
  }
  process.stdout.write(`${lines.join('\n')}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`ab: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exitCode = 1;
});
