import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { createRecorder } from '../pkg/record/index.js';
import { parseSince, run } from './recordings.js';

function io(): { io: { stdout: PassThrough; stderr: PassThrough }; out: () => string; err: () => string } {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  const o: Buffer[] = [];
  const e: Buffer[] = [];
  stdout.on('data', (c: Buffer) => o.push(c));
  stderr.on('data', (c: Buffer) => e.push(c));
  return {
    io: { stdout, stderr },
    out: () => Buffer.concat(o).toString(),
    err: () => Buffer.concat(e).toString(),
  };
}

let dir: string;
const files: string[] = [];
beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'reccli-'));
  const recorder = createRecorder({ directory: dir });
  for (const [session, principal, tool] of [
    ['s-a', 'tid/alice', 'get_issue'],
    ['s-b', 'tid/bob', 'delete_repo'],
  ] as const) {
    const s = recorder.open({
      session,
      principal,
      pod: 'gw',
      transport: 'streamable-http',
      policies: [{ name: 'gh', generation: 1 }],
    });
    s.record({
      type: 'message',
      direction: 'client-to-server',
      message: { jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: tool, arguments: {} } },
    });
    s.record({
      type: 'decision',
      method: 'tools/call',
      tool,
      decision: 'allow',
      enforced: 'allow',
      policy: 'gh',
      rule: 'r',
      reason: 'ok',
      requestId: 1,
    });
    files.push((await s.close())!.location);
  }
  await recorder.close();
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('mcp-warden recordings', () => {
  it('verify DIR passes untouched recordings', async () => {
    const t = io();
    expect(await run(['verify', dir], t.io)).toBe(0);
    expect(t.out()).toContain('2 of 2 recordings verified');
    expect(t.out()).toMatch(/^OK {3}.*\(4 lines, closed, session s-a/m);
  });

  it('verify exits 1 naming file and line of a tampered recording', async () => {
    const bad = join(dir, 'zz-tampered.jsonl');
    const lines = readFileSync(files[0]!, 'utf8').split('\n');
    lines[2] = lines[2]!.replace('"allow"', '"deny"');
    writeFileSync(bad, lines.join('\n'));
    try {
      const t = io();
      expect(await run(['verify', bad], t.io)).toBe(1);
      expect(t.out()).toContain(`FAIL ${bad}:3: `);
      const all = io();
      expect(await run(['verify', dir], all.io)).toBe(1);
      expect(all.out()).toContain('2 of 3 recordings verified');
    } finally {
      rmSync(bad);
    }
  });

  it('replay prints the transcript', async () => {
    const t = io();
    expect(await run(['replay', files[1]!], t.io)).toBe(0);
    expect(t.out()).toContain('principal tid/bob');
    expect(t.out()).toContain('calls tools/call delete_repo');
    expect(t.out()).toContain('Hash chain verified');
  });

  it('export filters by principal and tool and prints JSON lines', async () => {
    const t = io();
    expect(await run(['export', dir, '--principal', 'tid/b*', '--since', '1h'], t.io)).toBe(0);
    const records = t
      .out()
      .trimEnd()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(records.map((r) => [r['principal'], r['type'], r['tool']])).toEqual([
      ['tid/bob', 'message', 'delete_repo'],
      ['tid/bob', 'decision', 'delete_repo'],
      ['tid/bob', 'close', undefined],
    ]);
    const byTool = io();
    expect(await run(['export', dir, '--tool', 'get_*'], byTool.io)).toBe(0);
    expect(byTool.out().trimEnd().split('\n')).toHaveLength(2);
  });

  it('export checks each hash chain first: a tampered recording fails the command, its events marked invalid', async () => {
    const tampered = mkdtempSync(join(tmpdir(), 'reccli-tampered-'));
    try {
      const [genuine, edited] = files as [string, string];
      writeFileSync(join(tampered, 'a.jsonl'), readFileSync(genuine));
      // A denial rewritten as an allow, by hand: the seal no longer matches.
      writeFileSync(
        join(tampered, 'b.jsonl'),
        readFileSync(edited, 'utf8').replace('"decision":"allow"', '"decision":"alloW"'),
      );
      const t = io();
      expect(await run(['export', tampered], t.io)).toBe(1);
      expect(t.err()).toMatch(/b\.jsonl:3: does not verify/);
      const records = t
        .out()
        .trimEnd()
        .split('\n')
        .map((l) => JSON.parse(l) as Record<string, unknown>);
      expect(
        new Set(records.filter((r) => r['principal'] === 'tid/alice').map((r) => r['integrity'])),
      ).toEqual(new Set(['closed']));
      expect(new Set(records.filter((r) => r['principal'] === 'tid/bob').map((r) => r['integrity']))).toEqual(
        new Set(['invalid']),
      );
    } finally {
      rmSync(tampered, { recursive: true, force: true });
    }
  });

  it('answers usage errors with exit 2 and a clear message', async () => {
    const t = io();
    expect(await run(['export', dir, '--since', 'yesterday'], t.io)).toBe(2);
    expect(t.err()).toContain('--since yesterday: expected an ISO time');
    expect(await run(['verify'], io().io)).toBe(2);
    expect(await run(['frobnicate', dir], io().io)).toBe(2);
    expect(await run(['verify', dir, '--tool', 'x'], io().io)).toBe(2);
    const missing = io();
    expect(await run(['verify', join(dir, 'nope')], missing.io)).toBe(1);
    expect(missing.err()).toContain('cannot read');
  });

  it('parses --since durations and ISO times', () => {
    const now = new Date('2026-11-30T05:00:00Z');
    expect(parseSince('30m', now)?.toISOString()).toBe('2026-11-30T04:30:00.000Z');
    expect(parseSince('2d', now)?.toISOString()).toBe('2026-11-28T05:00:00.000Z');
    expect(parseSince('2026-11-30T01:02:03Z', now)?.toISOString()).toBe('2026-11-30T01:02:03.000Z');
    expect(parseSince('soon', now)).toBeUndefined();
  });
});
