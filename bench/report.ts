/**
 * Renders a bench run as markdown: how to read it, the machine, the headline ratios against the
 * targets of issue 4, then the detailed tables. Pure function of the collected numbers.
 */
import type { LoadResult, Scenario } from './load.js';
import type { Mode } from './target.js';

export interface MachineInfo {
  host: string;
  cpuModel: string;
  cores: number;
  memoryGiB: number;
  freeMemoryGiB: number;
  node: string;
  kernel: string;
  nginx: string;
  loadavgBefore: number[];
  loadavgAfter?: number[];
  /** ms of a fixed CPU job at the start and the end (main.ts speedCheck): host contention shows here. */
  speedBefore?: number;
  speedAfter?: number;
  pinned: boolean;
}

export interface WardenDetails {
  describe: string;
  policyRules: number;
  detectors: string[];
  recordingDir: string;
  recordingFiles?: number;
  profileDir?: string;
}

export interface ProfileFrame {
  name: string;
  location: string;
  selfPct: number;
  selfMs: number;
}

export interface ProfileSummary {
  totalMs: number;
  idlePct: number;
  gcPct: number;
  top: ProfileFrame[];
  /** Our own functions (pkg/, cmd/) with their callees: `selfPct` holds the inclusive share. */
  inclusive: ProfileFrame[];
  byPackage: Array<{ name: string; selfPct: number }>;
}

export interface MaskBenchResult {
  detectors?: string[];
  docs?: Array<{ name: string; bytes: number; mbPerSec: number; hits: number }>;
  mbPerSec?: number;
  error?: string;
}

export interface WebhookBenchResult {
  pods?: number;
  without?: { p50: number; p99: number; n: number };
  with?: { p50: number; p99: number; n: number };
  pending?: string;
}

export interface BenchReport {
  date: string;
  machine: MachineInfo;
  settings: {
    duration: number;
    warmup: number;
    connections: number;
    repeat?: number;
    serverCpu: string;
    loadCpu: string;
    upstream: { url: string; stateful: boolean; jsonResponse: boolean; events: number };
  };
  targets: Array<{ mode: Mode; describe: string }>;
  warden?: WardenDetails;
  /** `cpu`: time on CPU per request at saturation (scheduler run time, µs), of the upstream and the proxy. */
  saturate: Array<{
    target: Mode;
    result: LoadResult;
    cpu?: { upstreamUs: number; proxyUs?: number };
    /** requests/s of every repetition (the median one is `result`). */
    runs?: number[];
  }>;
  /**
   * `runs`: p50 (ms) of every repetition (the median one is `result`); `proxyUs`: the proxy's time
   * on CPU per request at that rate (scheduler run time, median of the repetitions).
   */
  rate: Array<{ target: Mode; result: LoadResult; runs?: number[]; proxyUs?: number }>;
  rssIdleKiB?: number;
  /**
   * The injected sidecar (bench/idle-rss.ts --mode sidecar): idle (anonymous / file-backed), after
   * its first calls, peak under `loadSec` s of saturating small and 64 KiB calls, and after that.
   */
  sidecarRss?: {
    idleKiB: number;
    idleAnonKiB?: number;
    idleFileKiB?: number;
    warmKiB?: number;
    peakKiB?: number;
    afterKiB?: number;
    loadSec?: number;
  };
  rssLoadPeakKiB?: number;
  rssAfterKiB?: number;
  profile?: ProfileSummary;
  /** BENCH_ABLATION=1: the gateway with parts of the enforcement switched off. */
  ablation?: Array<{
    variant: string;
    scenario: Scenario;
    rps: number;
    proxyUs: number;
    errors: number;
    idleKiB: number;
    peakKiB: number;
  }>;
  mask?: MaskBenchResult | Record<string, unknown>;
  webhook?: WebhookBenchResult | Record<string, unknown>;
  notes: string[];
}

const scenarioNames: Record<Scenario, string> = {
  small: 'tools/call, small result',
  large: 'tools/call, 64 KiB result',
  list: 'tools/list (40 tools)',
  sse: 'tools/call, SSE stream of progress events',
};

export const HOW_TO_READ = `How to read this: the same MCP workload (a real SDK server over streamable HTTP) is sent
directly, through nginx (plain reverse proxy), and through mcp-warden with full enforcement
(token verification, a 50-rule policy, masking with every detector, recording on); "node" is a
reference, the thinnest Node.js proxy (what Node's HTTP stack alone costs). The servers
share one pinned core, the load generator runs on the other. **Ratios are the headline**:
absolute times depend on the machine and on whatever else it was running (see loadavg).
"added p50" = p50 latency through the proxy minus p50 latency direct, at a fixed moderate
request rate, all paths measured together (one open loop sends request i to path i mod 4, so
they share the same seconds of the machine) and the difference taken per repetition (median of
the repetitions). "warden/nginx throughput" = requests/s at saturation through mcp-warden
divided by the same through nginx. Nothing here is a pass/fail test; the targets are those of
issue 4 and are reported as met or not.`;

const f = (v: number | undefined, digits = 2): string =>
  v === undefined || !Number.isFinite(v) ? 'n/a' : v.toFixed(digits);
const mib = (kib: number | undefined): string =>
  kib === undefined ? 'n/a' : `${(kib / 1024).toFixed(1)} MiB`;

function find(list: BenchReport['rate'], target: Mode, scenario: Scenario): LoadResult | undefined {
  return list.find((r) => r.target === target && r.result.scenario === scenario)?.result;
}

export interface Headline {
  scenario: Scenario;
  nginxAdded?: number;
  wardenAdded?: number;
  latencyRatio?: number;
  throughputRatio?: number;
}

/**
 * p50 through `mode` minus p50 direct, per repetition (both measured in the same paired run),
 * then the median over the repetitions; undefined when the runs do not pair up.
 */
function added(r: BenchReport, mode: Mode, scenario: Scenario): number | undefined {
  const runs = (m: Mode) => r.rate.find((x) => x.target === m && x.result.scenario === scenario)?.runs;
  const direct = runs('direct');
  const through = runs(mode);
  if (
    direct === undefined ||
    through === undefined ||
    direct.length !== through.length ||
    direct.length === 0
  )
    return undefined;
  const diffs = through.map((v, i) => v - (direct[i] as number)).sort((a, b) => a - b);
  return diffs[Math.floor((diffs.length - 1) / 2)];
}

export function headlines(r: BenchReport): Headline[] {
  const scenarios = [...new Set(r.saturate.map((x) => x.result.scenario))];
  return scenarios.map((scenario) => {
    const d = find(r.rate, 'direct', scenario)?.latencyMs.p50;
    const n = find(r.rate, 'nginx', scenario)?.latencyMs.p50;
    const w = find(r.rate, 'warden', scenario)?.latencyMs.p50;
    const nginxAdded =
      added(r, 'nginx', scenario) ?? (d !== undefined && n !== undefined ? n - d : undefined);
    const wardenAdded =
      added(r, 'warden', scenario) ?? (d !== undefined && w !== undefined ? w - d : undefined);
    const ns = find(r.saturate, 'nginx', scenario)?.rps;
    const ws = find(r.saturate, 'warden', scenario)?.rps;
    const h: Headline = { scenario };
    if (nginxAdded !== undefined) h.nginxAdded = nginxAdded;
    if (wardenAdded !== undefined) h.wardenAdded = wardenAdded;
    // A ratio over a non-positive nginx cost is meaningless (noise): report it as n/a.
    if (nginxAdded !== undefined && wardenAdded !== undefined && nginxAdded > 0.001)
      h.latencyRatio = wardenAdded / nginxAdded;
    if (ns !== undefined && ws !== undefined && ns > 0) h.throughputRatio = ws / ns;
    return h;
  });
}

const yesNo = (ok: boolean | undefined): string =>
  ok === undefined ? 'n/a' : ok ? '**met**' : '**not met**';

export function renderReport(r: BenchReport): string {
  const m = r.machine;
  const out: string[] = [];
  out.push(`# mcp-warden benchmark: ${r.date.slice(0, 16).replace('T', ' ')} UTC on ${m.host}`, '');
  out.push(HOW_TO_READ, '');
  out.push('## Machine', '');
  out.push('| | |', '| --- | --- |');
  out.push(`| CPU | ${m.cpuModel}, ${m.cores} cores |`);
  out.push(`| memory | ${m.memoryGiB} GiB (${m.freeMemoryGiB} GiB free at start) |`);
  out.push(`| Node.js | ${m.node} |`, `| kernel | ${m.kernel} |`, `| nginx | ${m.nginx} |`);
  out.push(`| load average before (1/5/15 min) | ${m.loadavgBefore.join(' / ')} |`);
  if (m.loadavgAfter !== undefined) out.push(`| load average after | ${m.loadavgAfter.join(' / ')} |`);
  if (m.speedBefore !== undefined)
    out.push(
      `| CPU speed check (fixed job, ms; lower is faster; compare runs by it) | ${m.speedBefore} before, ${m.speedAfter ?? 'n/a'} after |`,
    );
  out.push(
    `| pinning | ${m.pinned ? `servers on CPU ${r.settings.serverCpu}, load generator on CPU ${r.settings.loadCpu} (taskset)` : 'unavailable: everything shares all cores'} |`,
  );
  out.push(
    `| runs | ${r.settings.warmup} s warm-up + ${r.settings.duration} s recorded each, ${r.settings.repeat ?? 1} interleaved repetitions per path (median reported); ${r.settings.connections} connections at saturation |`,
  );
  const up = r.settings.upstream;
  out.push(
    `| upstream | @modelcontextprotocol/sdk v1 Server, streamable HTTP, ${up.stateful ? 'stateful sessions' : 'stateless'}, ${up.jsonResponse ? 'JSON' : 'SSE'} responses, ${up.events} events per stream |`,
  );
  for (const t of r.targets) out.push(`| ${t.mode} | ${t.describe} |`);
  out.push('');

  const hs = headlines(r);
  out.push('## Headline: the ratios', '');
  out.push(
    '| scenario | nginx added p50 | mcp-warden added p50 | warden/nginx added latency | warden/nginx saturated throughput |',
  );
  out.push('| --- | --- | --- | --- | --- |');
  for (const h of hs) {
    out.push(
      `| ${scenarioNames[h.scenario]} | ${f(h.nginxAdded)} ms | ${f(h.wardenAdded)} ms | ${h.latencyRatio === undefined ? 'n/a' : `${f(h.latencyRatio, 1)}×`} | ${h.throughputRatio === undefined ? 'n/a' : `${Math.round(h.throughputRatio * 100)}%`} |`,
    );
  }
  out.push('');

  const small = hs.find((h) => h.scenario === 'small');
  const worstLat = Math.max(...hs.map((h) => h.latencyRatio ?? Number.NEGATIVE_INFINITY));
  const worstTp = Math.min(...hs.map((h) => h.throughputRatio ?? Number.POSITIVE_INFINITY));
  const maskRate = typeof r.mask?.mbPerSec === 'number' ? r.mask.mbPerSec : undefined;
  out.push('## Targets (issue 4)', '');
  out.push('| target | measured | verdict |', '| --- | --- | --- |');
  out.push(
    `| warden added p50 ≤ 2× nginx added p50 | small call: ${small?.latencyRatio === undefined ? 'n/a' : `${f(small.latencyRatio, 1)}×`}; worst scenario: ${Number.isFinite(worstLat) ? `${f(worstLat, 1)}×` : 'n/a'} | ${yesNo(Number.isFinite(worstLat) ? worstLat <= 2 : undefined)} |`,
  );
  out.push(
    `| saturated throughput ≥ 60% of nginx | small call: ${small?.throughputRatio === undefined ? 'n/a' : `${Math.round(small.throughputRatio * 100)}%`}; worst scenario: ${Number.isFinite(worstTp) ? `${Math.round(worstTp * 100)}%` : 'n/a'} | ${yesNo(Number.isFinite(worstTp) ? worstTp >= 0.6 : undefined)} |`,
  );
  out.push(
    `| masking ≥ 50 MB/s per core, typical JSON | ${maskRate === undefined ? 'n/a' : `${f(maskRate, 1)} MB/s`} | ${yesNo(maskRate === undefined ? undefined : maskRate >= 50)} |`,
  );
  out.push(
    r.sidecarRss !== undefined
      ? `| sidecar idle RSS < 80 MiB | sidecar ${mib(r.sidecarRss.idleKiB)} (gateway ${mib(r.rssIdleKiB)}) | ${yesNo(r.sidecarRss.idleKiB < 80 * 1024)} |`
      : `| sidecar idle RSS < 80 MiB | gateway ${mib(r.rssIdleKiB)} (sidecar not measured) | ${yesNo(r.rssIdleKiB === undefined ? undefined : r.rssIdleKiB < 80 * 1024)} |`,
  );
  out.push('');

  const modes = r.targets.map((t) => t.mode);
  out.push('## Throughput at saturation (requests/s)', '');
  out.push('Median of the repetitions, [lowest–highest] in brackets.', '');
  out.push(
    `| scenario | ${modes.join(' | ')} | errors |`,
    `| --- | ${modes.map(() => '---').join(' | ')} | --- |`,
  );
  for (const h of hs) {
    const cells = modes.map((mode) => {
      const x = find(r.saturate, mode, h.scenario);
      const runs = r.saturate.find((y) => y.target === mode && y.result.scenario === h.scenario)?.runs ?? [];
      const spread =
        runs.length > 1 ? ` [${Math.round(Math.min(...runs))}–${Math.round(Math.max(...runs))}]` : '';
      return x === undefined ? 'n/a' : `${Math.round(x.rps)}${spread}`;
    });
    const errs = modes
      .map((mode) => find(r.saturate, mode, h.scenario)?.errors ?? 0)
      .reduce((a, b) => a + b, 0);
    out.push(`| ${scenarioNames[h.scenario]} | ${cells.join(' | ')} | ${errs} |`);
  }
  out.push('');
  out.push('## CPU per request at saturation (µs, scheduler run time)', '');
  out.push(
    'Less sensitive to other load on the machine than throughput: what each request costs the proxy process (nginx: master + worker) and the upstream.',
    '',
  );
  const proxies = modes.filter((mode) => mode !== 'direct');
  out.push(
    `| scenario | upstream (direct) | ${proxies.map((p) => `${p} proxy`).join(' | ')} | warden/nginx proxy CPU |`,
  );
  out.push(`| --- | --- | ${proxies.map(() => '---').join(' | ')} | --- |`);
  for (const h of hs) {
    const cpuOf = (mode: Mode) =>
      r.saturate.find((x) => x.target === mode && x.result.scenario === h.scenario)?.cpu;
    const n = cpuOf('nginx')?.proxyUs;
    const w = cpuOf('warden')?.proxyUs;
    out.push(
      `| ${scenarioNames[h.scenario]} | ${cpuOf('direct')?.upstreamUs ?? 'n/a'} | ${proxies.map((p) => cpuOf(p)?.proxyUs ?? 'n/a').join(' | ')} | ${n !== undefined && w !== undefined && n > 0 ? `${f(w / n, 1)}×` : 'n/a'} |`,
    );
  }
  out.push('');
  out.push('## Latency at a fixed moderate rate (ms, p50 / p99)', '');
  out.push(
    'All paths in one open loop (request i to path i mod the number of paths): the rate is per path.',
    '',
  );
  out.push(
    `| scenario | rate | ${modes.join(' | ')} | errors |`,
    `| --- | --- | ${modes.map(() => '---').join(' | ')} | --- |`,
  );
  for (const h of hs) {
    const anyRate = r.rate.find((x) => x.result.scenario === h.scenario)?.result.targetRate;
    const cells = modes.map((mode) => {
      const x = find(r.rate, mode, h.scenario);
      return x === undefined ? 'n/a' : `${f(x.latencyMs.p50)} / ${f(x.latencyMs.p99)}`;
    });
    const errs = modes.map((mode) => find(r.rate, mode, h.scenario)?.errors ?? 0).reduce((a, b) => a + b, 0);
    out.push(
      `| ${scenarioNames[h.scenario]} | ${anyRate === undefined ? 'n/a' : Number(anyRate.toFixed(1))}/s | ${cells.join(' | ')} | ${errs} |`,
    );
  }
  out.push('');
  const ratedCpu = (mode: Mode, scenario: Scenario) =>
    r.rate.find((x) => x.target === mode && x.result.scenario === scenario)?.proxyUs;
  if (r.rate.some((x) => x.proxyUs !== undefined)) {
    out.push('## CPU per request at the fixed rate (µs, scheduler run time)', '');
    out.push(
      "Each proxy's time on CPU per request during the latency runs above, against the same at saturation: at a moderate rate every request finds the process asleep and its caches cold, so it costs several times more than in a busy loop. This cost, not the busy-loop one, is the one to hold against the added latency. Exact (`/proc/<pid>/task/*/schedstat`), where tick-sampled `/proc/<pid>/stat` times are biased for short bursts.",
      '',
    );
    out.push(
      `| scenario | ${proxies.map((p) => `${p}: fixed rate / saturated`).join(' | ')} | warden/nginx at the fixed rate |`,
      `| --- | ${proxies.map(() => '---').join(' | ')} | --- |`,
    );
    for (const h of hs) {
      const cells = proxies.map((p) => {
        const at = ratedCpu(p, h.scenario);
        const sat = r.saturate.find((x) => x.target === p && x.result.scenario === h.scenario)?.cpu?.proxyUs;
        return `${at ?? 'n/a'} / ${sat ?? 'n/a'}`;
      });
      const n = ratedCpu('nginx', h.scenario);
      const w = ratedCpu('warden', h.scenario);
      out.push(
        `| ${scenarioNames[h.scenario]} | ${cells.join(' | ')} | ${n !== undefined && w !== undefined && n > 0 ? `${f(w / n, 1)}×` : 'n/a'} |`,
      );
    }
    out.push('');
  }

  if (r.warden !== undefined) {
    out.push('## mcp-warden gateway', '');
    out.push('| | |', '| --- | --- |');
    out.push(`| configuration | ${r.warden.describe} |`);
    out.push(`| policy rules | ${r.warden.policyRules} |`);
    out.push(`| masking detectors | ${r.warden.detectors.join(', ')} |`);
    if (r.warden.recordingFiles !== undefined)
      out.push(`| recordings written | ${r.warden.recordingFiles} files |`);
    out.push(`| RSS idle (after start-up) | ${mib(r.rssIdleKiB)} |`);
    if (r.sidecarRss !== undefined) {
      const sc = r.sidecarRss;
      const split =
        sc.idleAnonKiB !== undefined
          ? ` (anonymous ${mib(sc.idleAnonKiB)}, file-backed ${mib(sc.idleFileKiB)})`
          : '';
      out.push(
        `| injected sidecar RSS idle / after first calls (bench/idle-rss.ts, real kube-apiserver, median of 3) | ${mib(sc.idleKiB)}${split} / ${mib(sc.warmKiB)} |`,
      );
      if (sc.peakKiB !== undefined) {
        out.push(
          `| injected sidecar RSS peak under load / settled after it (${sc.loadSec ?? '?'} s each of saturating small and 64 KiB calls) | ${mib(sc.peakKiB)} / ${mib(sc.afterKiB)} |`,
        );
      }
    }
    out.push(`| RSS peak under load | ${mib(r.rssLoadPeakKiB)} |`);
    out.push(`| RSS idle after the load | ${mib(r.rssAfterKiB)} |`);
    out.push('');
  }

  out.push('## Masker micro-benchmark (createMasker, every detector, typical JSON, one core)', '');
  const mask = r.mask as MaskBenchResult | undefined;
  if (mask?.docs !== undefined) {
    out.push('| document | size | MB/s | values masked |', '| --- | --- | --- | --- |');
    for (const d of mask.docs)
      out.push(`| ${d.name} | ${(d.bytes / 1024).toFixed(1)} KiB | ${f(d.mbPerSec, 1)} | ${d.hits} |`);
    out.push('', `Detectors: ${(mask.detectors ?? []).join(', ')}.`, '');
  } else {
    out.push(mask?.error ?? 'not run', '');
  }

  out.push('## Admission webhook (pod creation through the real kube-apiserver)', '');
  const wh = r.webhook as WebhookBenchResult | undefined;
  if (wh?.with !== undefined && wh.without !== undefined) {
    out.push('| | p50 ms | p99 ms | pods |', '| --- | --- | --- | --- |');
    out.push(`| without the webhook | ${f(wh.without.p50)} | ${f(wh.without.p99)} | ${wh.without.n} |`);
    out.push(
      `| with mcp-warden's webhook (injection) | ${f(wh.with.p50)} | ${f(wh.with.p99)} | ${wh.with.n} |`,
    );
    out.push(`| added | ${f(wh.with.p50 - wh.without.p50)} | ${f(wh.with.p99 - wh.without.p99)} | |`, '');
  } else {
    out.push(wh?.pending ?? 'pending: not measured in this run', '');
  }

  if (r.ablation !== undefined && r.ablation.length > 0) {
    out.push('## What each part of the enforcement costs (gateway CPU µs per request at saturation)', '');
    const scen = [...new Set(r.ablation.map((a) => a.scenario))];
    out.push(
      `| gateway configuration | ${scen.map((s) => scenarioNames[s]).join(' | ')} | RSS idle / peak |`,
      `| --- | ${scen.map(() => '---').join(' | ')} | --- |`,
    );
    for (const v of [...new Set(r.ablation.map((a) => a.variant))]) {
      const cells = scen.map((s) => {
        const a = r.ablation?.find((x) => x.variant === v && x.scenario === s);
        return a === undefined
          ? 'n/a'
          : `${a.proxyUs} µs (${Math.round(a.rps)} req/s${a.errors > 0 ? `, ${a.errors} errors` : ''})`;
      });
      const last = r.ablation?.filter((x) => x.variant === v).at(-1);
      out.push(`| ${v} | ${cells.join(' | ')} | ${mib(last?.idleKiB)} / ${mib(last?.peakKiB)} |`);
    }
    out.push('');
  }

  if (r.profile !== undefined) {
    out.push('## Gateway CPU profile (node --cpu-prof, whole run, self time)', '');
    out.push(
      `Total ${f(r.profile.totalMs / 1000, 1)} s sampled; idle ${f(r.profile.idlePct, 1)}%, GC ${f(r.profile.gcPct, 1)}%.`,
      '',
    );
    out.push('| self % | function | where |', '| --- | --- | --- |');
    for (const fr of r.profile.top) out.push(`| ${f(fr.selfPct, 1)} | \`${fr.name}\` | ${fr.location} |`);
    out.push('', 'Inclusive time of the pipeline functions (with everything they call):', '');
    out.push('| incl. % | function | where |', '| --- | --- | --- |');
    for (const fr of r.profile.inclusive)
      out.push(`| ${f(fr.selfPct, 1)} | \`${fr.name}\` | ${fr.location} |`);
    out.push('', '| self % | package / folder |', '| --- | --- |');
    for (const p of r.profile.byPackage) out.push(`| ${f(p.selfPct, 1)} | ${p.name} |`);
    out.push('');
  }

  const errs = [...r.saturate, ...r.rate].filter((x) => x.result.errors > 0);
  if (errs.length > 0 || r.notes.length > 0) {
    out.push('## Notes', '');
    for (const n of r.notes) out.push(`- ${n}`);
    for (const e of errs)
      out.push(
        `- ${e.target} ${e.result.scenario} ${e.result.mode}: ${e.result.errors} errors, e.g. ${e.result.errorSamples[0] ?? ''}`,
      );
    out.push('');
  }
  return out.join('\n');
}
