/**
 * The load generator: its own process (the orchestrator pins it to a different core than the
 * servers), undici connection pool, loopback only, bounded in time and in request count.
 *
 * Opens `--sessions` MCP sessions (initialize + notifications/initialized), then either
 * - `--mode saturate`: `--connections` closed-loop workers, each sending its next request as soon
 *   as the previous one completed, for `--duration` seconds (after `--warmup` seconds unrecorded);
 * - `--mode rate`: an open loop at `--rate` requests/s (at most 256 in flight), for `--duration`;
 * - `--mode paired`: the same open loop over two or more `--target`s, request i going to target
 *   i mod K, so every path is measured in the same seconds (one result per target, in order).
 * Every response is read to its end and checked (status, JSON-RPC result present, size, number of
 * SSE events), so a proxy that answers errors fast never looks fast: failures count as errors.
 *
 * Prints one JSON line: { scenario, mode, requests, errors, seconds, rps, bytesPerSec, latencyMs }
 * (paired: an array of them).
 * Usage: node dist/bench/load.js --url URL --scenario small|large|list|sse [--mode saturate|rate]
 *   [--connections 16] [--rate 100] [--duration 10] [--warmup 2] [--header 'name: value']...
 *   [--mode paired --target '{"url":"...","headers":["name: value"]}' --target ...]
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
  mode: 'saturate' | 'rate' | 'paired';
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

function parseOptions(argv: string[]): { options: Options; targets: Options[] } {
  const { values } = parseArgs({
    args: argv,
    options: {
      url: { type: 'string' },
      target: { type: 'string', multiple: true, default: [] },
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
  const targetSpecs = (values.target ?? []).map((t) => {
    try {
      return JSON.parse(t) as { url: string; headers?: string[] };
    } catch {
      return fail('--target must be JSON: {"url": "...", "headers": ["name: value"]}');
    }
  });
  if (values.mode === 'paired') {
    if (targetSpecs.length < 2) fail('--mode paired needs two or more --target');
  } else if (values.url === undefined) fail('--url is required');
  const url = loopback(values.url ?? (targetSpecs[0]?.url as string));
  const scenario = values.scenario as Scenario;
  if (!Scenarios.includes(scenario)) fail(`--scenario must be one of ${Scenarios.join(', ')}`);
  if (values.mode !== 'saturate' && values.mode !== 'rate' && values.mode !== 'paired')
    fail('--mode must be saturate, rate or paired');
  const num = (name: string, v: string | undefined, min: number, max: number): number => {
    const n = Number(v);
    if (!Number.isFinite(n) || n < min || n > max) fail(`--${name} must be a number in [${min}, ${max}]`);
    return n;
  };
  const connections = num('connections', values.connections, 1, 512);
  const headers = headerMap(values.header ?? []);
  const options: Options = {
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
  const targets = targetSpecs.map((t) => ({
    ...options,
    url: loopback(t.url),
    headers: headerMap(t.headers ?? []),
  }));
  return { options, targets };
}

function loopback(raw: string): URL {
  const url = new URL(raw);
  if (!['127.0.0.1', 'localhost', '[::1]'].includes(url.hostname))
    fail(`refusing non-loopback target ${url.hostname}`);
  return url;
}

function headerMap(list: string[]): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const h of list) {
    const i = h.indexOf(':');
    if (i <= 0) fail(`--header must be "name: value", got ${JSON.stringify(h.slice(0, 20))}`);
    headers[h.slice(0, i).trim().toLowerCase()] = h.slice(i + 1).trim();
  }
  return headers;
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

/** One target's share of a run: its client, sessions and measurements. */
interface Lane {
  o: Options;
  client: Client;
  sessions: string[];
  latencies: Float64Array;
  recorded: number;
  completed: number;
  errors: number;
  bytes: number;
  errorSamples: string[];
}

async function openLane(o: Options): Promise<Lane> {
  const client = new Client(o);
  const sessions: string[] = [];
  for (let i = 0; i < o.sessions; i++) sessions.push(await client.openSession());
  return {
    o,
    client,
    sessions,
    latencies: new Float64Array(o.maxRequests),
    recorded: 0,
    completed: 0,
    errors: 0,
    bytes: 0,
    errorSamples: [],
  };
}

export async function runLoad(o: Options): Promise<LoadResult> {
  const [result] = await runLanes(o, [o]);
  return result as LoadResult;
}

/**
 * Run one open or closed loop over one or more targets. With several targets (`--mode paired`)
 * one open loop at `--rate` sends request i to target i mod K: every path is measured in the same
 * seconds, under the same machine conditions, so their latencies can be subtracted.
 */
async function runLanes(o: Options, targets: Options[]): Promise<LoadResult[]> {
  const lanes: Lane[] = [];
  for (const t of targets) lanes.push(await openLane(t));
  let dropped = 0;
  const start = performance.now();
  const recordFrom = start + o.warmupSec * 1000;
  const deadline = recordFrom + o.durationSec * 1000;

  const one = async (lane: Lane, session: string): Promise<void> => {
    const t0 = performance.now();
    let problem: string | undefined;
    let size = 0;
    try {
      const r = await lane.client.post(requestBody(o.scenario, lane.client.id()), session);
      size = r.text.length;
      problem = check(o.scenario, r.status, r.text, o.events);
    } catch (err) {
      problem = `request failed: ${err instanceof Error ? err.message : String(err)}`;
    }
    const t1 = performance.now();
    lane.completed++;
    if (t0 < recordFrom || t1 > deadline) return;
    if (problem !== undefined) {
      lane.errors++;
      if (lane.errorSamples.length < 5) lane.errorSamples.push(problem);
      return;
    }
    if (lane.recorded < lane.latencies.length) lane.latencies[lane.recorded++] = t1 - t0;
    lane.bytes += size;
  };

  const budgetLeft = () => lanes.every((l) => l.recorded + l.errors < o.maxRequests);

  if (o.mode === 'saturate') {
    const lane = lanes[0] as Lane;
    const worker = async (w: number): Promise<void> => {
      const session = lane.sessions[w % lane.sessions.length] as string;
      while (performance.now() < deadline && budgetLeft()) await one(lane, session);
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
      const lane = lanes[i % lanes.length] as Lane;
      const k = Math.floor(i / lanes.length);
      const p = one(lane, lane.sessions[k % lane.sessions.length] as string).finally(() =>
        inflight.delete(p),
      );
      inflight.add(p);
    }
    await Promise.all(inflight);
  }

  const results: LoadResult[] = [];
  for (const lane of lanes) {
    for (const s of lane.sessions) await lane.client.closeSession(s).catch(() => undefined);
    await lane.client.pool.close();
    const lat = lane.latencies.slice(0, lane.recorded).sort();
    let sum = 0;
    for (const v of lat) sum += v;
    const seconds = o.durationSec;
    const round = (v: number) => Math.round(v * 1000) / 1000;
    results.push({
      scenario: o.scenario,
      mode: o.mode === 'saturate' ? 'saturate' : 'rate',
      connections: o.connections,
      ...(o.mode !== 'saturate' ? { targetRate: o.rate / lanes.length } : {}),
      requests: lane.recorded,
      completed: lane.completed,
      errors: lane.errors,
      errorSamples: lane.errorSamples,
      dropped: Math.round(dropped / lanes.length),
      seconds,
      rps: round(lane.recorded / seconds),
      bytesPerSec: Math.round(lane.bytes / seconds),
      latencyMs: {
        p50: round(percentile(lat, 50)),
        p90: round(percentile(lat, 90)),
        p99: round(percentile(lat, 99)),
        max: round(lat.length > 0 ? (lat[lat.length - 1] as number) : Number.NaN),
        mean: round(lane.recorded > 0 ? sum / lane.recorded : Number.NaN),
      },
    });
  }
  return results;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { options, targets } = parseOptions(process.argv.slice(2));
  (options.mode === 'paired' ? runLanes(options, targets) : runLoad(options)).then(
    (r) => process.stdout.write(`${JSON.stringify(r)}\n`),
    (err: unknown) => fail(err instanceof Error ? (err.stack ?? err.message) : String(err)),
  );
}
