import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { exportRecordings } from './export.js';
import { createRecorder } from './recorder.js';
import { replayRecording } from './replay.js';
import type { RecordEvent } from './types.js';
import { verifyRecording } from './verify.js';

let dir: string;
let path: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'verify-'));
  const recorder = createRecorder({ directory: dir });
  const s = recorder.open({
    session: 'sess-v',
    principal: 'tid/alice',
    pod: 'gw',
    transport: 'streamable-http',
    protocolVersion: '2025-11-25',
    policies: [{ name: 'crm', generation: 2 }],
  });
  s.record({
    type: 'message',
    direction: 'client-to-server',
    message: {
      jsonrpc: '2.0',
      id: 1,
      method: 'tools/call',
      params: { name: 'get_customer', arguments: { id: 42 } },
    },
  });
  s.record({
    type: 'decision',
    method: 'tools/call',
    tool: 'get_customer',
    decision: 'allow',
    enforced: 'allow',
    policy: 'crm',
    rule: 'readers',
    reason: 'readers may read',
    requestId: 1,
  });
  s.record({
    type: 'message',
    direction: 'server-to-client',
    message: {
      jsonrpc: '2.0',
      id: 1,
      result: {
        content: [{ type: 'text', text: 'Ann, [masked:email]' }],
        structuredContent: { name: 'Ann', email: '[masked:email]' },
      },
    },
  });
  s.record({ type: 'mask', method: 'tools/call', detectors: { email: 2 } });
  s.record({
    type: 'message',
    direction: 'client-to-server',
    message: {
      jsonrpc: '2.0',
      id: 2,
      method: 'tools/call',
      params: { name: 'delete_customer', arguments: { id: 42 } },
    },
  });
  s.record({
    type: 'decision',
    method: 'tools/call',
    tool: 'delete_customer',
    decision: 'deny',
    enforced: 'deny',
    policy: 'crm',
    reason: 'no rule allows delete_customer',
    requestId: 2,
  });
  s.record({
    type: 'message',
    direction: 'server-to-client',
    message: { jsonrpc: '2.0', id: 2, error: { code: -31403, message: 'denied' } },
  });
  path = (await s.close())!.location;
  await recorder.close();
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function tampered(name: string, edit: (lines: string[]) => string[]): string {
  const lines = readFileSync(path, 'utf8').split('\n');
  lines.pop(); // the empty string after the final newline
  const out = join(dir, `${name}.jsonl.tampered`);
  writeFileSync(out, `${edit(lines).join('\n')}\n`);
  return out;
}

describe('verifyRecording', () => {
  it('passes an untouched recording', async () => {
    const r = await verifyRecording(path);
    expect(r).toMatchObject({
      ok: true,
      status: 'closed',
      lines: 9,
      session: 'sess-v',
      principal: 'tid/alice',
    });
    expect(r.sha256).toMatch(/^[0-9a-f]{64}$/);
  });

  it('names the line where one byte was edited', async () => {
    const file = tampered('edit', (l) => {
      l[3] = l[3]!.replace('Ann, ', 'Bob, ');
      return l;
    });
    expect(await verifyRecording(file)).toMatchObject({
      ok: false,
      error: { line: 4, reason: expect.stringMatching(/edited/) },
    });
  });

  it('names an edited byte that breaks the JSON', async () => {
    const file = tampered('json', (l) => {
      l[5] = l[5]!.replace('{', '[');
      return l;
    });
    expect(await verifyRecording(file)).toMatchObject({
      ok: false,
      error: { line: 6, reason: expect.stringMatching(/not valid JSON/) },
    });
  });

  it('detects an edit of the closing line itself', async () => {
    const file = tampered('close', (l) => {
      l[8] = l[8]!.replace('"denied":1', '"denied":0');
      return l;
    });
    expect(await verifyRecording(file)).toMatchObject({ ok: false, error: { line: 9 } });
  });

  it('names the line after a deleted line', async () => {
    const file = tampered('delete', (l) => l.filter((_, i) => i !== 4));
    expect(await verifyRecording(file)).toMatchObject({
      ok: false,
      error: { line: 5, reason: expect.stringMatching(/deleted/) },
    });
  });

  it('names the first of two swapped lines', async () => {
    const file = tampered('swap', (l) => {
      [l[2], l[3]] = [l[3]!, l[2]!];
      return l;
    });
    expect(await verifyRecording(file)).toMatchObject({
      ok: false,
      error: { line: 3, reason: expect.stringMatching(/reordered/) },
    });
  });

  it('names an inserted (duplicated) line', async () => {
    const file = tampered('insert', (l) => [...l.slice(0, 3), l[2]!, ...l.slice(3)]);
    expect(await verifyRecording(file)).toMatchObject({
      ok: false,
      error: { line: 4, reason: expect.stringMatching(/inserted/) },
    });
  });

  it('reports a tail truncated without a trailer after the last line', async () => {
    const file = tampered('tail', (l) => l.slice(0, 6));
    expect(await verifyRecording(file)).toMatchObject({
      ok: false,
      error: { line: 7, reason: expect.stringMatching(/without a closing line/) },
    });
  });

  it('reports a file cut mid-line', async () => {
    const cut = join(dir, 'cut.jsonl.tampered');
    const text = readFileSync(path, 'utf8');
    writeFileSync(cut, text.slice(0, text.length - 30));
    expect(await verifyRecording(cut)).toMatchObject({
      ok: false,
      error: { line: 9, reason: expect.stringMatching(/cut mid-line/) },
    });
  });

  it('refuses a byte swapped for one that decodes to the same text (invalid UTF-8)', async () => {
    // A recorded U+FFFD (EF BF BD) and a lone 0xFF byte both decode to U+FFFD: hashing the decoded
    // text alone would let the swap verify.
    const own = mkdtempSync(join(dir, 'fffd-'));
    const recorder = createRecorder({ directory: own });
    const s = recorder.open({
      session: 'sess-fffd',
      principal: 'tid/bob',
      pod: 'gw',
      transport: 'streamable-http',
      policies: [],
    });
    s.record({
      type: 'message',
      direction: 'server-to-client',
      message: { jsonrpc: '2.0', id: 1, result: { content: [{ type: 'text', text: 'caf\uFFFD' }] } },
    });
    const original = (await s.close())!.location;
    await recorder.close();
    expect(await verifyRecording(original)).toMatchObject({ ok: true });
    const bytes = readFileSync(original);
    const at = bytes.indexOf(Buffer.from('caf\uFFFD'));
    expect(at).toBeGreaterThan(0);
    const swapped = Buffer.concat([bytes.subarray(0, at + 3), Buffer.from([0xff]), bytes.subarray(at + 6)]);
    const file = join(own, 'fffd.jsonl.tampered');
    writeFileSync(file, swapped);
    expect(swapped.toString('utf8')).toBe(bytes.toString('utf8'));
    expect(await verifyRecording(file)).toMatchObject({
      ok: false,
      error: { line: 2, reason: expect.stringMatching(/not valid UTF-8/) },
    });
  });

  it('reports a missing file and an empty file clearly', async () => {
    expect(await verifyRecording(join(dir, 'missing.jsonl'))).toMatchObject({
      ok: false,
      error: { line: 1, reason: expect.stringMatching(/cannot read/) },
    });
    const empty = join(dir, 'empty.jsonl.tampered');
    writeFileSync(empty, '');
    expect(await verifyRecording(empty)).toMatchObject({
      ok: false,
      error: { line: 1, reason: expect.stringMatching(/empty/) },
    });
  });
});

describe('replayRecording', () => {
  it('tells who called what, what was decided and what came back', async () => {
    const text = await replayRecording(path);
    expect(text).toContain('Session sess-v');
    expect(text).toContain('principal tid/alice');
    expect(text).toContain('policies crm@2');
    expect(text).toMatch(/→ client calls tools\/call get_customer \{"id":42\} #1/);
    expect(text).toMatch(/✓ ALLOW tools\/call get_customer by crm\/readers: readers may read/);
    expect(text).toMatch(/← server answers #1 \(tools\/call get_customer\): text: Ann, \[masked:email\]/);
    expect(text).toMatch(/⚑ masked in tools\/call: email×2/);
    expect(text).toMatch(/✗ DENY tools\/call delete_customer by crm: no rule allows delete_customer/);
    expect(text).toMatch(/← server answers #2 \(tools\/call delete_customer\): error -31403: denied/);
    expect(text).toMatch(/■ session ended: 4 messages, 2 decisions, 1 denied, 2 values masked/);
    expect(text).toContain('Hash chain verified (9 lines, closed)');
  });
});

/** A recording of one session with these events (closed); returns its file. */
async function recordSession(session: string, events: RecordEvent[]): Promise<string> {
  const recorder = createRecorder({ directory: dir });
  const s = recorder.open({ session, principal: 'p', pod: 'gw', transport: 'streamable-http', policies: [] });
  for (const e of events) s.record(e);
  const file = (await s.close())!.location;
  await recorder.close();
  return file;
}

describe('replayRecording of numbers a double cannot carry', () => {
  it('shows them as recorded, not rounded', async () => {
    const raw = (JSON as unknown as { rawJSON(text: string): unknown }).rawJSON;
    const id = '12345678901234567890';
    const file = await recordSession('big', [
      {
        type: 'message',
        direction: 'client-to-server',
        message: {
          jsonrpc: '2.0',
          id: raw(id),
          method: 'tools/call',
          params: { name: 'get_order', arguments: { id: raw(id) } },
        },
      },
      {
        type: 'message',
        direction: 'server-to-client',
        message: {
          jsonrpc: '2.0',
          id: raw(id),
          result: { content: [], structuredContent: { total: raw('0.1234567890123456789') } },
        },
      },
    ]);
    try {
      const text = await replayRecording(file);
      expect(text).toContain(`→ client calls tools/call get_order {"id":${id}} #${id}`);
      expect(text).toContain(
        `← server answers #${id} (tools/call get_order): structured: {"total":0.1234567890123456789}`,
      );
      expect(text).not.toContain('12345678901234567000');
    } finally {
      rmSync(file, { force: true });
    }
  });
});

describe('replayRecording without payloads', () => {
  it('says the payload was not recorded', async () => {
    const file = await recordSession('bare', [
      {
        type: 'message',
        direction: 'client-to-server',
        message: { jsonrpc: '2.0', id: 1, method: 'tools/call' },
      },
      { type: 'message', direction: 'server-to-client', message: { jsonrpc: '2.0', id: 1 } },
    ]);
    try {
      expect(await replayRecording(file)).toMatch(
        /← server answers #1 \(tools\/call\): \(payload not recorded\)/,
      );
    } finally {
      rmSync(file);
    }
  });
});

describe('exportRecordings', () => {
  it('exports flat records filtered by tool, principal and time', async () => {
    const all = [];
    for await (const r of exportRecordings(dir)) all.push(r);
    expect(all).toHaveLength(8);
    expect(all[0]).toMatchObject({
      session: 'sess-v',
      principal: 'tid/alice',
      pod: 'gw',
      type: 'message',
      method: 'tools/call',
      tool: 'get_customer',
      line: 2,
    });
    const deletes = [];
    for await (const r of exportRecordings(dir, { tool: 'delete_*' })) deletes.push(r);
    expect(deletes.map((r) => r.type)).toEqual(['message', 'decision', 'message']);
    const others = [];
    for await (const r of exportRecordings(dir, { principal: 'tid/bob' })) others.push(r);
    expect(others).toHaveLength(0);
    const future = [];
    for await (const r of exportRecordings(dir, { since: new Date(Date.now() + 60_000) })) future.push(r);
    expect(future).toHaveLength(0);
  });
});

describe('replayRecording with approvals', () => {
  it('prints each approval outcome, and the chain still verifies', async () => {
    const base = { method: 'tools/call', tool: 'delete_repo', policy: 'agents/repo', rule: 'needs-approval' };
    const file = await recordSession('held', [
      { type: 'approval', ...base, outcome: 'approved', approval: 'gw-1', decidedBy: 'rita', requestId: 1 },
      { type: 'approval', ...base, outcome: 'pending', approval: 'gw-2', requestId: 2 },
      { type: 'approval', ...base, outcome: 'denied', approval: 'gw-3', decidedBy: 'rex', requestId: 3 },
    ]);
    try {
      const text = await replayRecording(file);
      expect(text).toMatch(/✓ approval gw-1 for tools\/call delete_repo: approved by rita/);
      expect(text).toMatch(/⏸ approval gw-2 for tools\/call delete_repo: pending/);
      expect(text).toMatch(/✗ approval gw-3 for tools\/call delete_repo: denied by rex/);
      expect(await verifyRecording(file)).toMatchObject({ ok: true });
    } finally {
      rmSync(file);
    }
  });
});
