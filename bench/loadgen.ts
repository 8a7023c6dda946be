/**
 * Runs the load generator (bench/load.ts) as its own process, pinned to the load generator's CPU,
 * and returns what it measured: the one way the orchestrators (main.ts, ab.ts, idle-rss.ts) drive
 * load, so every figure comes from the same command line.
 */
import { cpus } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { LoadResult, Scenario } from './load.js';
import { run } from './proc.js';
import type { Target } from './target.js';

const distBench = resolve(fileURLToPath(import.meta.url), '..');

/** The load generator's CPU: the second core when there is one (the servers share the first). */
export const LOAD_CPU = cpus().length >= 2 ? '1' : '0';

export interface LoadSettings {
  /** Recorded seconds. */
  duration: number;
  /** Unrecorded seconds first. */
  warmup: number;
  connections: number;
  /** Requests per second of the open loop (rate and paired modes). */
  rate?: number;
  /** MCP sessions to spread the connections over (default: one per connection, up to 16). */
  sessions?: number;
  /** Stop after this many requests. */
  maxRequests?: number;
}

type Endpoint = Pick<Target, 'url' | 'headers'>;

function loadArgs(scenario: Scenario, mode: 'saturate' | 'rate' | 'paired', o: LoadSettings): string[] {
  const args = [
    join(distBench, 'load.js'),
    '--scenario',
    scenario,
    '--mode',
    mode,
    '--duration',
    String(o.duration),
    '--warmup',
    String(o.warmup),
    '--connections',
    String(o.connections),
  ];
  if (o.rate !== undefined) args.push('--rate', String(o.rate));
  if (o.sessions !== undefined) args.push('--sessions', String(o.sessions));
  if (o.maxRequests !== undefined) args.push('--max-requests', String(o.maxRequests));
  return args;
}

/** One closed loop (`saturate`) or open loop (`rate`) against one target. */
export async function loadRun(
  target: Endpoint,
  scenario: Scenario,
  mode: 'saturate' | 'rate',
  o: LoadSettings,
): Promise<LoadResult> {
  const args = [...loadArgs(scenario, mode, o), '--url', target.url];
  for (const h of target.headers) args.push('--header', h);
  return JSON.parse((await run(process.execPath, args, LOAD_CPU)).trim()) as LoadResult;
}

/** The targets in one paired open loop at `o.rate` (bench/load.ts `--mode paired`), in their order. */
export async function loadPaired(
  targets: Endpoint[],
  scenario: Scenario,
  o: LoadSettings & { rate: number },
): Promise<LoadResult[]> {
  if (targets.length === 1) return [await loadRun(targets[0]!, scenario, 'rate', o)];
  const args = loadArgs(scenario, 'paired', o);
  for (const t of targets) args.push('--target', JSON.stringify({ url: t.url, headers: t.headers }));
  return JSON.parse((await run(process.execPath, args, LOAD_CPU)).trim()) as LoadResult[];
}
