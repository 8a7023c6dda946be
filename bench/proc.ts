/**
 * Process plumbing for the bench orchestrator: spawn pinned children, wait for their readiness
 * line or port, sample RSS from /proc, stop them by pid. Every child the orchestrator starts is
 * tracked and stopped on exit, so an interrupted bench leaves nothing running.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { readdir, readFile } from 'node:fs/promises';
import { createServer } from 'node:net';

const children = new Set<ChildProcess>();

/** Whether `taskset` works here (it may be missing, or pinning may be refused in a container). */
export const canPin: boolean = spawnSync('taskset', ['-c', '0', 'true']).status === 0;

export interface Started {
  child: ChildProcess;
  pid: number;
  stdout: () => string;
  stderr: () => string;
}

/** Spawns `cmd args` pinned to `cpus` (e.g. "0") when pinning works. */
export function start(
  cmd: string,
  args: string[],
  options: { cpus?: string; env?: NodeJS.ProcessEnv } = {},
): Started {
  const pinned = options.cpus !== undefined && canPin;
  const child = pinned
    ? spawn('taskset', ['-c', options.cpus as string, cmd, ...args], {
        env: options.env ?? process.env,
        stdio: ['ignore', 'pipe', 'pipe'],
      })
    : spawn(cmd, args, { env: options.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout?.setEncoding('utf8').on('data', (d: string) => {
    out += d;
  });
  child.stderr?.setEncoding('utf8').on('data', (d: string) => {
    if (err.length < 1_000_000) err += d;
  });
  children.add(child);
  child.once('exit', () => children.delete(child));
  if (child.pid === undefined) throw new Error(`could not start ${cmd}`);
  // taskset execs the command in place, so the pid is the command's own pid.
  return { child, pid: child.pid, stdout: () => out, stderr: () => err };
}

/** Resolves with the first stdout line of a child (its readiness report), or rejects on exit/timeout. */
export async function firstLine(s: Started, timeoutMs = 20_000): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const i = s.stdout().indexOf('\n');
    if (i !== -1) return s.stdout().slice(0, i);
    if (s.child.exitCode !== null)
      throw new Error(`process exited (${s.child.exitCode}): ${s.stderr().slice(-2000)}`);
    await Promise.race([
      once(s.child.stdout as NodeJS.ReadableStream, 'data'),
      once(s.child, 'exit'),
      delay(250),
    ]);
  }
  throw new Error(`no readiness line within ${timeoutMs} ms: ${s.stderr().slice(-2000)}`);
}

/** Waits until `url` answers (2xx when `requireOk`, else any status below 500) or the child exits. */
export async function waitHttp(
  url: string,
  s: Started | undefined,
  timeoutMs = 20_000,
  requireOk = false,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  while (Date.now() < deadline) {
    if (s !== undefined && s.child.exitCode !== null)
      throw new Error(`process exited (${s.child.exitCode}): ${s.stderr().slice(-2000)}`);
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(2000) });
      await res.arrayBuffer();
      if (requireOk ? res.ok : res.status < 500) return;
      last = `HTTP ${res.status}`;
    } catch (err) {
      last = err instanceof Error ? err.message : String(err);
    }
    await delay(100);
  }
  throw new Error(`${url} not ready within ${timeoutMs} ms (${last}) ${s?.stderr().slice(-2000) ?? ''}`);
}

export function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** A free loopback port (bound then released; a tiny race that is fine for a bench). */
export async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const addr = srv.address();
  await new Promise<void>((resolve) => srv.close(() => resolve()));
  if (addr === null || typeof addr === 'string') throw new Error('no port');
  return addr.port;
}

/** VmRSS and VmHWM of a process in KiB, from /proc/<pid>/status; undefined when unavailable. */
export async function rssKiB(pid: number): Promise<{ rss: number; hwm: number } | undefined> {
  try {
    const text = await readFile(`/proc/${pid}/status`, 'utf8');
    const rss = /VmRSS:\s+(\d+)/.exec(text)?.[1];
    const hwm = /VmHWM:\s+(\d+)/.exec(text)?.[1];
    if (rss === undefined || hwm === undefined) return undefined;
    return { rss: Number(rss), hwm: Number(hwm) };
  } catch {
    return undefined;
  }
}

async function childPids(pid: number): Promise<number[]> {
  try {
    const text = await readFile(`/proc/${pid}/task/${pid}/children`, 'utf8');
    return text.split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

/**
 * Time on CPU (µs) of a process's threads and its running children's, from the scheduler's own
 * accounting (`/proc/<pid>/task/<tid>/schedstat`, nanoseconds). Unlike the tick-sampled times of
 * `/proc/<pid>/stat`, it is exact for short bursts of work, as a request at a
 * moderate rate is: a process woken for a few hundred µs at a time is charged by ticks with a
 * strong bias. Threads that exited are not counted (the servers measured keep theirs). The "CPU
 * per request" rows of the reports come from it.
 */
export async function runTimeUs(pid: number): Promise<number> {
  let total = 0;
  for (const p of [pid, ...(await childPids(pid))]) {
    let tasks: string[];
    try {
      tasks = await readdir(`/proc/${p}/task`);
    } catch {
      continue; // the process is gone
    }
    for (const t of tasks) {
      try {
        total += Number((await readFile(`/proc/${p}/task/${t}/schedstat`, 'utf8')).split(' ')[0]) / 1000;
      } catch {
        // the thread exited meanwhile
      }
    }
  }
  return total;
}

/** Samples RSS every `everyMs` until stopped; returns the peak seen. */
export function sampleRss(pid: number, everyMs = 200): { stop: () => Promise<number> } {
  let peak = 0;
  let running = true;
  const loop = (async () => {
    while (running) {
      const r = await rssKiB(pid);
      if (r !== undefined) peak = Math.max(peak, r.rss);
      await delay(everyMs);
    }
  })();
  return {
    stop: async () => {
      running = false;
      await loop;
      return peak;
    },
  };
}

/** Stops a child with SIGTERM (SIGKILL after `graceMs`) and waits for it to exit. */
export async function stop(s: Started | undefined, graceMs = 5000): Promise<void> {
  if (s === undefined || s.child.exitCode !== null || s.child.signalCode !== null) return;
  const exited = once(s.child, 'exit');
  s.child.kill('SIGTERM');
  const timer = setTimeout(() => s.child.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(timer);
}

/** Stops every child still running (on exit or interrupt). */
export function stopAllSync(): void {
  for (const c of children) c.kill('SIGKILL');
}

/** Runs a command to completion and returns its stdout (for the pinned load generator). */
export async function run(cmd: string, args: string[], cpus?: string, timeoutMs = 300_000): Promise<string> {
  const s = start(cmd, args, cpus === undefined ? {} : { cpus });
  const timer = setTimeout(() => s.child.kill('SIGKILL'), timeoutMs);
  const [code] = (await once(s.child, 'exit')) as [number | null];
  clearTimeout(timer);
  if (code !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${code}: ${s.stderr().slice(-2000)}`);
  return s.stdout();
}
