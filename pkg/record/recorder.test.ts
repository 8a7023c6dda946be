import {
  copyFileSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { createMetrics } from '../metrics/catalogue.js';
import { GENESIS, sealLine, sha256Hex } from './format.js';
import { createRecorder, statelessRecordingKey } from './recorder.js';
import type { RecordingHeader } from './types.js';
import { verifyRecording } from './verify.js';

const header = (session: string): RecordingHeader => ({
  session,
  principal: 'tid-1/oid-1',
  pod: 'gw-0',
  namespace: 'agents',
  transport: 'streamable-http',
  protocolVersion: '2025-11-25',
  policies: [{ name: 'pii', generation: 3 }],
});

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'rec-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

function lines(path: string): Array<Record<string, unknown>> {
  return readFileSync(path, 'utf8')
    .trimEnd()
    .split('\n')
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

describe('createRecorder', () => {
  it('writes a chained header, events and a closing line, and summarises them', async () => {
    const recorder = createRecorder({ directory: dir });
    const s = recorder.open(header('sess-1'));
    s.record({
      type: 'message',
      direction: 'client-to-server',
      message: {
        jsonrpc: '2.0',
        id: 1,
        method: 'tools/call',
        params: { name: 'get_customer', arguments: { id: 7 } },
      },
    });
    s.record({
      type: 'decision',
      method: 'tools/call',
      tool: 'get_customer',
      decision: 'allow',
      enforced: 'allow',
      policy: 'pii',
      rule: 'readers',
      reason: 'ok',
      requestId: 1,
    });
    s.record({
      type: 'message',
      direction: 'server-to-client',
      message: { jsonrpc: '2.0', id: 1, result: { content: [{ type: 'text', text: '[masked:email]' }] } },
    });
    s.record({ type: 'mask', method: 'tools/call', detectors: { email: 1 } });
    s.record({
      type: 'decision',
      method: 'tools/call',
      tool: 'drop_db',
      decision: 'deny',
      enforced: 'deny',
      policy: 'pii',
      reason: 'no rule',
      requestId: 2,
    });
    const summary = await s.close();
    expect(summary).toBeDefined();
    const path = summary!.location;
    expect(path.startsWith(dir)).toBe(true);
    const text = readFileSync(path, 'utf8');
    const raw = text.trimEnd().split('\n');
    const parsed = lines(path);
    expect(parsed.map((l) => l['type'])).toEqual([
      'header',
      'message',
      'decision',
      'message',
      'mask',
      'decision',
      'close',
    ]);
    expect(parsed[0]).toMatchObject({
      seq: 1,
      prev: GENESIS,
      format: 'mcp-warden-recording',
      v: 1,
      session: 'sess-1',
      principal: 'tid-1/oid-1',
      pod: 'gw-0',
      namespace: 'agents',
      transport: 'streamable-http',
      protocolVersion: '2025-11-25',
      policies: [{ name: 'pii', generation: 3 }],
    });
    for (let i = 1; i < raw.length; i++) {
      expect(parsed[i]!['prev']).toBe(sha256Hex(raw[i - 1]!));
      expect(parsed[i]!['seq']).toBe(i + 1);
    }
    // The response names the tool of the request it answers.
    expect(parsed[3]).toMatchObject({ kind: 'response', method: 'tools/call', tool: 'get_customer', id: 1 });
    expect(parsed[6]).toMatchObject({
      type: 'close',
      reason: 'ended',
      counts: { messages: 2, decisions: 2, denied: 1, masked: 1 },
    });
    expect(summary).toMatchObject({
      session: 'sess-1',
      principal: 'tid-1/oid-1',
      pod: 'gw-0',
      messages: 2,
      denied: 1,
      sha256: sha256Hex(raw[6]!),
    });
    expect((await verifyRecording(path)).ok).toBe(true);
    await recorder.close();
  });

  it('drops payloads with payloads: none but keeps method, id and direction', async () => {
    const recorder = createRecorder({ directory: dir });
    const s = recorder.open(header('sess-none'), { payloads: 'none' });
    s.record({
      type: 'message',
      direction: 'client-to-server',
      message: { jsonrpc: '2.0', id: 'a', method: 'resources/read', params: { uri: 'file:///x' } },
    });
    const summary = await s.close();
    const parsed = lines(summary!.location);
    expect(parsed[1]).toMatchObject({
      type: 'message',
      kind: 'request',
      method: 'resources/read',
      id: 'a',
      resource: 'file:///x',
    });
    expect(parsed[1]).not.toHaveProperty('message');
    await recorder.close();
  });

  it('seals a payload given already serialized exactly as it would serialize it, and it verifies', async () => {
    const recorder = createRecorder({ directory: dir });
    const message = {
      jsonrpc: '2.0',
      id: 7,
      result: { content: [{ type: 'text', text: 'a "q" \u2028 é'.repeat(200) }] },
    };
    const a = recorder.open(header('sess-json-a'));
    const b = recorder.open(header('sess-json-b'));
    a.record({ type: 'message', direction: 'server-to-client', message });
    b.record({ type: 'message', direction: 'server-to-client', message, json: JSON.stringify(message) });
    const [sa, sb] = await Promise.all([a.close(), b.close()]);
    const la = lines(sa!.location)[1]!;
    const lb = lines(sb!.location)[1]!;
    for (const l of [la, lb]) {
      delete l['ts'];
      delete l['session'];
      delete l['prev'];
      delete l['sha'];
    }
    expect(lb).toEqual(la);
    expect(lb['message']).toEqual(message);
    // Every line is plain JSON: the fixed members first, the seal last, nothing written twice.
    for (const raw of readFileSync(sb!.location, 'utf8').trimEnd().split('\n')) {
      const parsed = JSON.parse(raw) as Record<string, unknown>;
      expect(Object.keys(parsed).slice(0, 4)).toEqual(['seq', 'prev', 'ts', 'session']);
      expect(Object.keys(parsed).at(-1)).toBe('sha');
      expect(raw).toBe(JSON.stringify(parsed));
    }
    expect(lb).toMatchObject({ kind: 'response', id: 7 });
    expect((await verifyRecording(sb!.location)).ok).toBe(true);
    await recorder.close();
  });

  it('flushes buffered lines within the flush interval, before close', async () => {
    const recorder = createRecorder({ directory: dir, flushIntervalMs: 50 });
    const s = recorder.open(header('sess-flush'));
    s.record({
      type: 'message',
      direction: 'client-to-server',
      message: { jsonrpc: '2.0', id: 1, method: 'ping' },
    });
    await recorder.flush();
    const [file] = readdirSync(dir);
    expect(lines(join(dir, file!)).map((l) => l['type'])).toEqual(['header', 'message']);
    await recorder.close();
    expect(lines(join(dir, file!)).at(-1)).toMatchObject({ type: 'close', reason: 'shutdown' });
  });

  it('writes the same chained lines to a stdout stream', async () => {
    const chunks: string[] = [];
    const stream = new Writable({
      write(chunk, _enc, cb) {
        chunks.push(String(chunk));
        cb();
      },
    });
    const recorder = createRecorder({ stdout: stream });
    const s = recorder.open(header('sess-out'));
    s.record({ type: 'mask', method: 'tools/call', detectors: { jwt: 2 } });
    const summary = await s.close();
    expect(summary!.location).toBe('stdout');
    const out = chunks.join('').trimEnd().split('\n');
    expect(out.map((l) => (JSON.parse(l) as { type: string }).type)).toEqual(['header', 'mask', 'close']);
    expect(summary!.sha256).toBe(sha256Hex(out[2]!));
    await recorder.close();
  });

  it('never throws into the data path: unserializable payloads count as errors, and the gap is recorded', async () => {
    const metrics = createMetrics({ defaultMetrics: false });
    const recorder = createRecorder({ directory: dir, metrics });
    const s = recorder.open(header('sess-err'));
    const cyclic: Record<string, unknown> = {};
    cyclic['self'] = cyclic;
    expect(() => s.record({ type: 'message', direction: 'server-to-client', message: cyclic })).not.toThrow();
    expect(() =>
      s.record({ type: 'message', direction: 'server-to-client', message: { big: 10n } }),
    ).not.toThrow();
    const summary = await s.close();
    expect((await metrics.recordingErrors.get()).values[0]!.value).toBe(2);
    expect((await verifyRecording(summary!.location)).ok).toBe(true);
    // Not lost silently: the recording says two events are missing.
    const parsed = readFileSync(summary!.location, 'utf8')
      .trimEnd()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    const gaps = parsed.filter((l) => l['type'] === 'dropped').map((l) => l['count'] as number);
    expect(gaps.reduce((a, b) => a + b, 0)).toBe(2);
    await recorder.close();
  });

  it('never throws when the directory vanishes: the loss is counted', async () => {
    const metrics = createMetrics({ defaultMetrics: false });
    const gone = mkdtempSync(join(tmpdir(), 'gone-'));
    const recorder = createRecorder({ directory: gone, metrics });
    rmSync(gone, { recursive: true, force: true });
    const s = recorder.open(header('lost'));
    expect(() => s.record({ type: 'mask', method: 'tools/call', detectors: { email: 1 } })).not.toThrow();
    await expect(s.close()).resolves.toMatchObject({ session: 'lost' });
    expect((await metrics.recordingErrors.get()).values[0]!.value).toBeGreaterThan(0);
    await recorder.close();
  });

  it('refuses a configuration without any sink', () => {
    expect(() => createRecorder({})).toThrow(expect.objectContaining({ code: 'ERR_CONFIG' }));
  });

  it('keys stateless traffic per principal and UTC hour', () => {
    expect(statelessRecordingKey('tid/oid', new Date('2026-11-30T04:41:09.123Z'))).toBe(
      'stateless:tid/oid:2026-11-30T04',
    );
    expect(statelessRecordingKey('tid/oid', new Date('2026-11-30T05:00:00Z'))).not.toBe(
      statelessRecordingKey('tid/oid', new Date('2026-11-30T04:59:59Z')),
    );
  });
});

describe('orphan recovery', () => {
  /**
   * The state a crash leaves: a session's flushed lines and no closing line. The writing recorder
   * is still alive in this process (and guards its files), so the bytes are copied to the
   * directory the "restarted" recorder scans.
   */
  async function crashedCopy(session: string): Promise<{ path: string; stop: () => Promise<void> }> {
    const live = mkdtempSync(join(tmpdir(), 'live-'));
    const first = createRecorder({ directory: live, flushIntervalMs: 10_000 });
    const s = first.open(header(session));
    s.record({
      type: 'message',
      direction: 'client-to-server',
      message: { jsonrpc: '2.0', id: 1, method: 'tools/list' },
    });
    await first.flush();
    const [file] = readdirSync(live);
    const path = join(dir, file!);
    copyFileSync(join(live, file!), path);
    return {
      path,
      stop: async () => {
        await first.close();
        rmSync(live, { recursive: true, force: true });
      },
    };
  }

  it('closes a file left without a closing line with a chained truncated trailer', async () => {
    const { path, stop } = await crashedCopy('crashed');
    const before = await verifyRecording(path);
    expect(before.ok).toBe(false);
    expect(before.error!.line).toBe(3);

    const second = createRecorder({ directory: dir });
    expect(second.recovered).toEqual([path]);
    const parsed = lines(path);
    expect(parsed.at(-1)).toMatchObject({ type: 'truncated', seq: 3, session: 'crashed', droppedBytes: 0 });
    const after = await verifyRecording(path);
    expect(after).toMatchObject({ ok: true, status: 'truncated', lines: 3 });
    // A third start leaves it alone.
    const third = createRecorder({ directory: dir });
    expect(third.recovered).toEqual([]);
    await Promise.all([second.close(), third.close(), stop()]);
  });

  it('cuts a half-written last line before appending the trailer', async () => {
    const { path, stop } = await crashedCopy('half');
    writeFileSync(path, '{"seq":3,"prev":"abc', { flag: 'a' });
    const second = createRecorder({ directory: dir });
    expect(second.recovered).toEqual([path]);
    expect(lines(path).at(-1)).toMatchObject({ type: 'truncated', seq: 3, droppedBytes: 20 });
    expect((await verifyRecording(path)).ok).toBe(true);
    await Promise.all([second.close(), stop()]);
  });

  it("leaves another pod's fresh unclosed recording alone on a shared volume, and closes it once stale", async () => {
    const headerLine = sealLine({
      seq: 1,
      prev: GENESIS,
      ts: new Date().toISOString(),
      session: 'theirs',
      type: 'header',
      host: 'other-pod-7',
    });
    const event = sealLine({
      seq: 2,
      prev: sha256Hex(headerLine),
      ts: new Date().toISOString(),
      session: 'theirs',
      type: 'mask',
      method: 'x',
      detectors: {},
    });
    const path = join(dir, 'theirs.jsonl');
    writeFileSync(path, `${headerLine}\n${event}\n`);
    expect(createRecorder({ directory: dir }).recovered).toEqual([]);
    expect((await verifyRecording(path)).ok).toBe(false);
    const old = Date.now() / 1000 - 7200;
    utimesSync(path, old, old);
    expect(createRecorder({ directory: dir }).recovered).toEqual([path]);
    expect(await verifyRecording(path)).toMatchObject({ ok: true, status: 'truncated' });
  });

  it('does not recover a file a live recorder of this process is writing', async () => {
    const first = createRecorder({ directory: dir, flushIntervalMs: 10_000 });
    const s = first.open(header('alive'));
    await first.flush();
    expect(createRecorder({ directory: dir }).recovered).toEqual([]);
    expect((await verifyRecording((await s.close())!.location)).ok).toBe(true);
    await first.close();
  });
});

describe('sinks, limits and retention', () => {
  function collector(): { stream: Writable; lines: () => string[] } {
    const chunks: string[] = [];
    const stream = new Writable({
      write(chunk, _enc, cb) {
        chunks.push(String(chunk));
        cb();
      },
    });
    return {
      stream,
      lines: () =>
        chunks
          .join('')
          .split('\n')
          .filter((l) => l !== ''),
    };
  }

  it('writes to the sink each session asks for', async () => {
    const out = collector();
    const recorder = createRecorder({ directory: dir, stdout: out.stream });
    const onlyStdout = await recorder.open(header('to-stdout'), { sinks: ['stdout'] }).close();
    expect(onlyStdout!.location).toBe('stdout');
    expect(readdirSync(dir)).toEqual([]);
    expect(out.lines()).toHaveLength(2);
    const onlyVolume = await recorder.open(header('to-volume'), { sinks: ['volume'] }).close();
    expect(onlyVolume!.location.startsWith(dir)).toBe(true);
    expect(out.lines()).toHaveLength(2);
    const both = await recorder.open(header('to-both')).close();
    expect(out.lines()).toHaveLength(4);
    expect(readFileSync(both!.location, 'utf8').trimEnd().split('\n')).toEqual(out.lines().slice(2));
    await recorder.close();
  });

  it('drops events beyond the pending-bytes bound, records the gap, and still verifies', async () => {
    const metrics = createMetrics({ defaultMetrics: false });
    const recorder = createRecorder({
      directory: dir,
      metrics,
      flushIntervalMs: 60_000,
      maxPendingBytes: 2_000,
    });
    const s = recorder.open(header('slow-disk'));
    for (let i = 0; i < 40; i++) {
      s.record({
        type: 'message',
        direction: 'server-to-client',
        message: { jsonrpc: '2.0', method: 'notifications/message', params: { data: 'x'.repeat(100) } },
      });
    }
    const summary = await s.close();
    const parsed = lines(summary!.location);
    const dropped = parsed.find((l) => l['type'] === 'dropped');
    expect(dropped).toBeDefined();
    const written = parsed.filter((l) => l['type'] === 'message').length;
    expect(written + (dropped!['count'] as number)).toBe(40);
    expect(written).toBeLessThan(40);
    expect((await metrics.recordingErrors.get()).values[0]!.value).toBe(dropped!['count']);
    expect((await verifyRecording(summary!.location)).ok).toBe(true);
    await recorder.close();
  });

  it('is idempotent on close and ignores events after it', async () => {
    const recorder = createRecorder({ directory: dir });
    const s = recorder.open(header('twice'));
    const first = await s.close();
    expect(first).toBeDefined();
    expect(await s.close()).toBeUndefined();
    s.record({ type: 'mask', method: 'x', detectors: { email: 1 } });
    await recorder.close();
    expect(lines(first!.location)).toHaveLength(2);
  });

  it('deletes closed recordings past maxAgeMs, then the oldest past maxBytes', async () => {
    const seed = createRecorder({ directory: dir });
    const paths: string[] = [];
    for (const name of ['old', 'mid', 'new']) {
      const s = seed.open(header(name));
      s.record({ type: 'message', direction: 'client-to-server', message: { pad: 'p'.repeat(500) } });
      paths.push((await s.close())!.location);
    }
    await seed.close();
    const now = Date.now() / 1000;
    utimesSync(paths[0]!, now - 7200, now - 7200);
    utimesSync(paths[1]!, now - 60, now - 60);
    const size = statSync(paths[2]!).size;
    const byAge = createRecorder({ directory: dir, retention: { maxAgeMs: 3_600_000 } });
    expect(readdirSync(dir).sort()).toEqual(
      [paths[1]!, paths[2]!].map((p) => p.slice(dir.length + 1)).sort(),
    );
    await byAge.close();
    const bySize = createRecorder({ directory: dir, retention: { maxBytes: size + 10 } });
    expect(readdirSync(dir)).toEqual([paths[2]!.slice(dir.length + 1)]);
    await bySize.close();
  });

  it('never deletes an unclosed recording (another pod may be writing it)', async () => {
    const headerLine = sealLine({
      seq: 1,
      prev: GENESIS,
      ts: new Date().toISOString(),
      session: 'open',
      type: 'header',
      host: 'other-pod',
    });
    const path = join(dir, 'open.jsonl');
    writeFileSync(path, `${headerLine}\n`);
    const old = Date.now() / 1000 - 600;
    utimesSync(path, old, old);
    const recorder = createRecorder({ directory: dir, retention: { maxAgeMs: 60_000, maxBytes: 1 } });
    expect(readdirSync(dir)).toEqual(['open.jsonl']);
    await recorder.close();
  });

  it('never recovers or deletes a file another recorder of this process is writing', async () => {
    const first = createRecorder({ directory: dir, flushIntervalMs: 60_000 });
    const s = first.open(header('live'));
    s.record({
      type: 'message',
      direction: 'client-to-server',
      message: { jsonrpc: '2.0', id: 1, method: 'ping' },
    });
    await first.flush();
    const second = createRecorder({ directory: dir, retention: { maxBytes: 1 } });
    expect(second.recovered).toEqual([]);
    expect(readdirSync(dir)).toHaveLength(1);
    const summary = await s.close();
    expect((await verifyRecording(summary!.location)).ok).toBe(true);
    await Promise.all([first.close(), second.close()]);
  });
});
