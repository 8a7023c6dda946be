/**
 * Summarises V8 `.cpuprofile` files (from `node --cpu-prof`): self time per function and per
 * package/folder, idle and GC shares. Usable on its own:
 *   node dist/bench/profile.js DIR_OR_FILE [TOP]
 */
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { ProfileFrame, ProfileSummary } from './report.js';

interface CpuProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
  children?: number[];
}

interface CpuProfile {
  nodes: CpuProfileNode[];
  startTime: number;
  endTime: number;
  samples?: number[];
  timeDeltas?: number[];
}

function where(url: string, line: number): string {
  if (url === '') return '(native)';
  const short = url
    .replace(/^file:\/\//, '')
    .replace(/^.*\/node_modules\//, 'node_modules/')
    .replace(/^.*\/dist\//, '');
  return `${short}:${line + 1}`;
}

function packageOf(url: string): string {
  if (url === '') return '(native / V8)';
  const nm = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (nm !== null) return nm[1] as string;
  if (url.startsWith('node:')) return url.split('/')[0] as string;
  const ours = /\/dist\/((?:pkg|cmd)\/[^/]+)/.exec(url);
  if (ours !== null) return ours[1] as string;
  return url;
}

export async function summariseProfiles(path: string, top = 25): Promise<ProfileSummary> {
  const files = (await stat(path)).isDirectory()
    ? (await readdir(path)).filter((f) => f.endsWith('.cpuprofile')).map((f) => join(path, f))
    : [path];
  const self = new Map<string, { name: string; location: string; us: number }>();
  const pkgs = new Map<string, number>();
  // Inclusive time of our own functions (pkg/, cmd/): what each pipeline stage costs with callees.
  const inclusive = new Map<string, { name: string; location: string; us: number }>();
  let total = 0;
  let idle = 0;
  let gc = 0;
  for (const file of files) {
    const prof = JSON.parse(await readFile(file, 'utf8')) as CpuProfile;
    const byId = new Map(prof.nodes.map((n) => [n.id, n]));
    const parent = new Map<number, number>();
    for (const n of prof.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
    const samples = prof.samples ?? [];
    const deltas = prof.timeDeltas ?? [];
    for (let i = 0; i < samples.length; i++) {
      const n = byId.get(samples[i] as number);
      const dt = Math.max(0, deltas[i] ?? 0);
      if (n === undefined) continue;
      total += dt;
      const fn = n.callFrame.functionName || '(anonymous)';
      if (fn === '(idle)') {
        idle += dt;
        continue;
      }
      if (fn === '(garbage collector)') gc += dt;
      const key = `${fn}@${n.callFrame.url}:${n.callFrame.lineNumber}`;
      const e = self.get(key) ?? {
        name: fn,
        location: where(n.callFrame.url, n.callFrame.lineNumber),
        us: 0,
      };
      e.us += dt;
      self.set(key, e);
      const p = packageOf(n.callFrame.url);
      pkgs.set(p, (pkgs.get(p) ?? 0) + dt);
      const seen = new Set<string>();
      for (let id: number | undefined = n.id; id !== undefined; id = parent.get(id)) {
        const f = byId.get(id);
        if (f === undefined || !/\/dist\/(pkg|cmd)\//.test(f.callFrame.url)) continue;
        const k = `${f.callFrame.functionName || '(anonymous)'}@${f.callFrame.url}:${f.callFrame.lineNumber}`;
        if (seen.has(k)) continue;
        seen.add(k);
        const e = inclusive.get(k) ?? {
          name: f.callFrame.functionName || '(anonymous)',
          location: where(f.callFrame.url, f.callFrame.lineNumber),
          us: 0,
        };
        e.us += dt;
        inclusive.set(k, e);
      }
    }
  }
  const busy = Math.max(1, total - idle);
  const frames: ProfileFrame[] = [...self.values()]
    .sort((a, b) => b.us - a.us)
    .slice(0, top)
    .map((e) => ({ name: e.name, location: e.location, selfMs: e.us / 1000, selfPct: (100 * e.us) / busy }));
  return {
    totalMs: total / 1000,
    idlePct: (100 * idle) / Math.max(1, total),
    gcPct: (100 * gc) / busy,
    top: frames,
    inclusive: [...inclusive.values()]
      .sort((a, b) => b.us - a.us)
      .slice(0, top)
      .map((e) => ({
        name: e.name,
        location: e.location,
        selfMs: e.us / 1000,
        selfPct: (100 * e.us) / busy,
      })),
    byPackage: [...pkgs.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, 15)
      .map(([name, us]) => ({ name, selfPct: (100 * us) / busy })),
  };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const [path, n] = process.argv.slice(2);
  if (path === undefined) {
    process.stderr.write('usage: node dist/bench/profile.js DIR_OR_FILE [TOP]\n');
    process.exitCode = 2;
  } else {
    summariseProfiles(path, Number(n ?? 25)).then(
      (s) => {
        process.stdout.write(
          `busy share of samples: ${(100 - s.idlePct).toFixed(1)}%, GC ${s.gcPct.toFixed(1)}% of busy\n`,
        );
        for (const f of s.top)
          process.stdout.write(`${f.selfPct.toFixed(1).padStart(5)}%  ${f.name}  ${f.location}\n`);
        process.stdout.write('\ninclusive (our code):\n');
        for (const f of s.inclusive)
          process.stdout.write(`${f.selfPct.toFixed(1).padStart(5)}%  ${f.name}  ${f.location}\n`);
        process.stdout.write('\nby package:\n');
        for (const p of s.byPackage)
          process.stdout.write(`${p.selfPct.toFixed(1).padStart(5)}%  ${p.name}\n`);
      },
      (err: unknown) => {
        process.stderr.write(`profile: ${err instanceof Error ? err.message : String(err)}\n`);
        process.exitCode = 1;
      },
    );
  }
}
