/**
 * The load generator: its own process (the orchestrator pins it to a different core than the
 * servers), undici connection pool, loopback only, bounded in time and in request count.
 *
 * Opens `--sessions` MCP sessions (initialize + notifications/initialized), then either
 * - `--mode saturate`: `--connections` closed-loop workers, each sending its next request as soon
 *   as the previous one completed, for `--duration` seconds (after `--warmup` seconds unrecorded);
 * - `--mode rate`: an open loop at `--rate` requests/s (at most 256 in flight), for `--duration`.
 * Every response is read to its end and checked (status, JSON-RPC result present, size, number of
 * SSE events), so a proxy that answers errors fast never looks fast: failures count as errors.
 *
 * Prints one JSON line: { scenario, mode, requests, errors, seconds, rps, bytesPerSec, latencyMs }.
 * Usage: node dist/bench/load.js --url URL --scenario small|large|list|sse [--mode saturate|rate]
 *   [--connections 16] [--rate 100] [--duration 10] [--warmup 2] [--header 'name: value']...
 */
import { parseArgs } from 'node:util';
import { Pool } from 'undici';

export const Scenarios = ['small', 'large', 'list', 'sse'] as const;
export type Scenario = (typeof Scenarios)[number];

export interface LoadResult {
  scenario: Scenario;
  mode: 'saturate' | 'rate';
  connections: number;
  targetRate?: number;
  requests: number;
  /** Every request answered, warm-up included (for CPU-per-request figures). */
  completed: number;
  errors: number;
  errorSamples: string[];
  dropped: number;
  seconds: number;
  rps: number;
  bytesPerSec: number;
  latencyMs: { p50: number; p90: number; p99: number; max: number; mean: number };
}

interface Options {
  url: URL;
  scenario: Scenario;
  mode: 'saturate' | 'rate';
  connections: number;
  sessions: number;
  rate: number;
  durationSec: number;
  warmupSec: number;
  maxRequests: number;
  events: number;
  headers: Record<string, string>;
}

const PROTOCOL = '2025-06-18';

function fail(message: string): never {
  process.stderr.write(`load: ${message}\n`);
  process.exit(2);
}

function parseOptions(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    options: {
      url: { type: 'string' },
      scenario: { type: 'string', default: 'small' },
      mode: { type: 'string', default: 'saturate' },
      connections: { type: 'string', default: '16' },
      sessions: { type: 'string' },
      rate: { type: 'string', default: '100' },
      duration: { type: 'string', default: '10' },
      warmup: { type: 'string', default: '2' },
      'max-requests': { type: 'string', default: '2000000' },
      events: { type: 'string', default: '200' },
      header: { type: 'string', multiple: true, default: [] },
    },
  });
  if (values.url === undefined) fail('--url is required');
  const url = new URL(values.url);
  if (!['127.0.0.1', 'localhost', '[::1]'].includes(url.hostname))
    fail(`refusing non-loopback target ${url.hostname}`);
  const scenario = values.scenario as Scenario;
  if (!Scenarios.includes(scenario)) fail(`--scenario must be one of ${Scenarios.join(', ')}`);
  if (values.mode !== 'saturate' && values.mode !== 'rate') fail('--mode must be saturate or rate');
  const num = (name: string, v: string | undefined, min: number, max: number): number => {
    const n = Number(v);
    if (!Number.isFinite(n) || n < min || n > max) fail(`--${name} must be a number in [${min}, ${max}]`);
    return n;
  };
  const connections = num('connections', values.connections, 1, 512);
  const headers: Record<string, string> = {};
  for (const h of values.header ?? []) {
    const i = h.indexOf(':');
    if (i <= 0) fail(`--header must be "name: value", got ${JSON.stringify(h.slice(0, 20))}`);
    headers[h.slice(0, i).trim().toLowerCase()] = h.slice(i + 1).trim();
  }
  return {
    url,
    scenario,
    mode: values.mode,
    connections,
    sessions: num('sessions', values.sessions ?? String(Math.min(connections, 16)), 1, 512),
    rate: num('rate', values.rate, 1, 100_000),
    durationSec: num('duration', values.duration, 0.5, 600),
    warmupSec: num('warmup', values.warmup, 0, 60),
    maxRequests: num('max-requests', values['max-requests'], 1, 10_000_000),
    events: num('events', values.events, 1, 100_000),
    headers,
  };
}

/** The request body of one scenario (fresh id each time). */
function requestBody(scenario: Scenario, id: number): string {
  const args = { owner: 'acme', repo: 'widgets', param_0: 'main', page: 1 };
  switch (scenario) {
    case 'small':
      return JSON.stringify({
        jsonrpc: '2.0',
        id,
        method: 'tools/call',
        params: { name: 'get_issue', arguments: args },
      });
    case 'large':
      return JSON.stringify({
        jsonrpc: '2.0',
        id,
        method: 'tools/call',
        params: { name: 'list_issue', arguments: args },
      });
    case 'list':
      return JSON.stringify({ jsonrpc: '2.0', id, method: 'tools/list', params: {} });
    case 'sse':
      return JSON.stringify({
        jsonrpc: '2.0',
        id,
        method: 'tools/call',
        params: { name: 'list_workflow_run', arguments: args, _meta: { progressToken: `p${id}` } },
      });
  }
}

function count(haystack: string, needle: string): number {
  let n = 0;
  for (let i = haystack.indexOf(needle); i !== -1; i = haystack.indexOf(needle, i + needle.length)) n++;
  return n;
}

/** Checks one response body; returns an error description or undefined. */
function check(scenario: Scenario, status: number, body: string, events: number): string | undefined {
  if (status !== 200) return `HTTP ${status}: ${body.slice(0, 160)}`;
  if (!body.includes('"result"')) return `no JSON-RPC result: ${body.slice(0, 160)}`;
  if (scenario === 'large' && body.length < 60_000) return `large result only ${body.length} bytes`;
  if (scenario === 'list' && !body.includes('"tools"')) return 'tools/list without tools';
  if (scenario === 'sse') {
    const n = count(body, 'notifications/progress');
    if (n !== events) return `expected ${events} progress events, got ${n}`;
  }
  return undefined;
}

class Client {
  readonly pool: Pool;
  private nextId = 1;
  constructor(private readonly o: Options) {
    this.pool = new Pool(o.url.origin, {
      connections: o.connections,
      pipelining: 1,
      keepAliveTimeout: 60_000,
    });
  }

  private headers(session?: string): Record<string, string> {
    const h: Record<string, string> = {
      'content-type': 'application/json',
      accept: 'application/json, text/event-stream',
      'mcp-protocol-version': PROTOCOL,
      ...this.o.headers,
    };
    if (session !== undefined) h['mcp-session-id'] = session;
    return h;
  }

  async post(
    body: string,
    session?: string,
  ): Promise<{ status: number; text: string; headers: Record<string, unknown> }> {
    const res = await this.pool.request({
      path: this.o.url.pathname,
      method: 'POST',
      headers: this.headers(session),
      body,
    });
    const text = await res.body.text();
    return { status: res.statusCode, text, headers: res.headers };
  }

  async openSession(): Promise<string> {
    const init = JSON.stringify({
      jsonrpc: '2.0',
      id: 0,
      method: 'initialize',
      params: {
        protocolVersion: PROTOCOL,
        capabilities: {},
        clientInfo: { name: 'bench-load', version: '1.0.0' },
      },
    });
    const r = await this.post(init);
    const sid = r.headers['mcp-session-id'];
    if (r.status !== 200 || typeof sid !== 'string')
      fail(`initialize failed: HTTP ${r.status} ${r.text.slice(0, 300)}`);
    const ack = await this.post(JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' }), sid);
    if (ack.status !== 202 && ack.status !== 200)
      fail(`notifications/initialized failed: HTTP ${ack.status} ${ack.text.slice(0, 300)}`);
    return sid;
  }

  async closeSession(sid: string): Promise<void> {
    const res = await this.pool.request({
      path: this.o.url.pathname,
      method: 'DELETE',
      headers: this.headers(sid),
    });
    await res.body.dump();
  }

  id(): number {
    return this.nextId++;
  }
}

function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i] as number;
}

export async function runLoad(o: Options): Promise<LoadResult> {
  const client = new Client(o);
  const sessions: string[] = [];
  for (let i = 0; i < o.sessions; i++) sessions.push(await client.openSession());

  const latencies = new Float64Array(o.maxRequests);
  let recorded = 0;
  let completed = 0;
  let errors = 0;
  let dropped = 0;
  let bytes = 0;
  const errorSamples: string[] = [];
  const start = performance.now();
  const recordFrom = start + o.warmupSec * 1000;
  const deadline = recordFrom + o.durationSec * 1000;

  const one = async (session: string): Promise<void> => {
    const t0 = performance.now();
    let problem: string | undefined;
    let size = 0;
    try {
      const r = await client.post(requestBody(o.scenario, client.id()), session);
      size = r.text.length;
      problem = check(o.scenario, r.status, r.text, o.events);
    } catch (err) {
      problem = `request failed: ${err instanceof Error ? err.message : String(err)}`;
    }
    const t1 = performance.now();
    completed++;
    if (t0 < recordFrom || t1 > deadline) return;
    if (problem !== undefined) {
      errors++;
      if (errorSamples.length < 5) errorSamples.push(problem);
      return;
    }
    if (recorded < latencies.length) latencies[recorded++] = t1 - t0;
    bytes += size;
  };

  const budgetLeft = () => recorded + errors < o.maxRequests;

  if (o.mode === 'saturate') {
    const worker = async (w: number): Promise<void> => {
      const session = sessions[w % sessions.length] as string;
      while (performance.now() < deadline && budgetLeft()) await one(session);
    };
    await Promise.all(Array.from({ length: o.connections }, (_, w) => worker(w)));
  } else {
    const interval = 1000 / o.rate;
    const inflight = new Set<Promise<void>>();
    for (let i = 0; budgetLeft(); i++) {
      const due = start + i * interval;
      if (due >= deadline) break;
      const wait = due - performance.now();
      if (wait > 1) await new Promise((resolve) => setTimeout(resolve, Math.floor(wait)));
      if (inflight.size >= 256) {
        dropped++;
        continue;
      }
      const p = one(sessions[i % sessions.length] as string).finally(() => inflight.delete(p));
      inflight.add(p);
    }
    await Promise.all(inflight);
  }

  for (const s of sessions) await client.closeSession(s).catch(() => undefined);
  await client.pool.close();

  const lat = latencies.slice(0, recorded).sort();
  let sum = 0;
  for (const v of lat) sum += v;
  const seconds = o.durationSec;
  const round = (v: number) => Math.round(v * 1000) / 1000;
  return {
    scenario: o.scenario,
    mode: o.mode,
    connections: o.connections,
    ...(o.mode === 'rate' ? { targetRate: o.rate } : {}),
    requests: recorded,
    completed,
    errors,
    errorSamples,
    dropped,
    seconds,
    rps: round(recorded / seconds),
    bytesPerSec: Math.round(bytes / seconds),
    latencyMs: {
      p50: round(percentile(lat, 50)),
      p90: round(percentile(lat, 90)),
      p99: round(percentile(lat, 99)),
      max: round(lat.length > 0 ? (lat[lat.length - 1] as number) : Number.NaN),
      mean: round(recorded > 0 ? sum / recorded : Number.NaN),
    },
  };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const options = parseOptions(process.argv.slice(2));
  runLoad(options).then(
    (r) => process.stdout.write(`${JSON.stringify(r)}\n`),
    (err: unknown) => fail(err instanceof Error ? (err.stack ?? err.message) : String(err)),
  );
}
