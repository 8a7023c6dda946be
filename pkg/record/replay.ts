import type { RecordingLine } from './format.js';
import { readLines } from './read.js';
import { verifyRecording } from './verify.js';

const maxPayloadChars = 400;

function clip(text: string, max = maxPayloadChars): string {
  const flat = text.replace(/\s+/g, ' ');
  return flat.length > max ? `${flat.slice(0, max)}… (${flat.length} chars)` : flat;
}

function time(ts: unknown): string {
  return typeof ts === 'string' && ts.length >= 23 ? ts.slice(11, 23) : '            ';
}

function obj(v: unknown): Record<string, unknown> | undefined {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
    ? (v as Record<string, unknown>)
    : undefined;
}

/** What came back, in a few words: text blocks, structured content, or the error. */
function describeResult(message: Record<string, unknown>): string {
  const error = obj(message['error']);
  if (error !== undefined) return `error ${String(error['code'])}: ${clip(String(error['message'] ?? ''))}`;
  if (!('result' in message)) return '(payload not recorded)';
  const result = obj(message['result']);
  if (result === undefined) return clip(JSON.stringify(message['result'] ?? null));
  const parts: string[] = [];
  if (result['isError'] === true) parts.push('(tool error)');
  const content = result['content'];
  if (Array.isArray(content)) {
    for (const item of content) {
      const c = obj(item);
      if (c?.['type'] === 'text') parts.push(`text: ${clip(String(c['text']))}`);
      else if (c !== undefined) parts.push(`[${String(c['type'])}]`);
    }
  }
  if (result['structuredContent'] !== undefined)
    parts.push(`structured: ${clip(JSON.stringify(result['structuredContent']))}`);
  const contents = result['contents'];
  if (Array.isArray(contents)) {
    for (const item of contents) {
      const c = obj(item);
      if (c !== undefined)
        parts.push(
          `${String(c['uri'] ?? 'resource')}: ${typeof c['text'] === 'string' ? clip(c['text']) : '[binary]'}`,
        );
    }
  }
  const messages = result['messages'];
  if (Array.isArray(messages))
    parts.push(`${messages.length} prompt message(s): ${clip(JSON.stringify(messages))}`);
  const tools = result['tools'];
  if (Array.isArray(tools))
    parts.push(`${tools.length} tool(s): ${tools.map((t) => String(obj(t)?.['name'])).join(', ')}`);
  return parts.length > 0 ? parts.join(' | ') : clip(JSON.stringify(result));
}

function describeRequest(line: RecordingLine, message: Record<string, unknown> | undefined): string {
  const method = String(line['method']);
  const params = obj(message?.['params']);
  if (method === 'tools/call') {
    const args = params?.['arguments'];
    return `tools/call ${String(line['tool'] ?? params?.['name'])}${args === undefined ? '' : ` ${clip(JSON.stringify(args))}`}`;
  }
  if (method === 'resources/read') return `resources/read ${String(line['resource'] ?? params?.['uri'])}`;
  if (method === 'prompts/get') return `prompts/get ${String(line['prompt'] ?? params?.['name'])}`;
  return params === undefined || Object.keys(params).length === 0
    ? method
    : `${method} ${clip(JSON.stringify(params), 200)}`;
}

/** One transcript line per recording line. */
function render(line: RecordingLine): string | undefined {
  const t = time(line.ts);
  switch (line.type) {
    case 'header':
      return undefined;
    case 'message': {
      const arrow = line['direction'] === 'client-to-server' ? '→' : '←';
      const who = line['direction'] === 'client-to-server' ? 'client' : 'server';
      const message = obj(line['message']);
      const id = line['id'] === undefined ? '' : ` #${String(line['id'])}`;
      const kind = line['kind'];
      if (kind === 'request') return `${t}  ${arrow} ${who} calls ${describeRequest(line, message)}${id}`;
      if (kind === 'notification') return `${t}  ${arrow} ${who} notifies ${describeRequest(line, message)}`;
      if (kind === 'response' || kind === 'error') {
        const what =
          line['tool'] === undefined
            ? String(line['method'] ?? 'request')
            : `${String(line['method'])} ${String(line['tool'])}`;
        return `${t}  ${arrow} ${who} answers${id} (${what}): ${message === undefined ? '(payload not recorded)' : describeResult(message)}`;
      }
      return `${t}  ${arrow} ${who} sends ${String(kind)}`;
    }
    case 'decision': {
      const mark = line['enforced'] === 'deny' ? '✗' : line['enforced'] === 'approve' ? '⏸' : '✓';
      const audit =
        line['decision'] !== line['enforced'] ? ` (decided ${String(line['decision'])}, audit mode)` : '';
      const tool = line['tool'] === undefined ? '' : ` ${String(line['tool'])}`;
      const by =
        line['policy'] === ''
          ? 'no applicable rule'
          : `${String(line['policy'])}${line['rule'] === undefined ? '' : `/${String(line['rule'])}`}`;
      return `${t}  ${mark} ${String(line['enforced']).toUpperCase()} ${String(line['method'])}${tool} by ${by}${audit}: ${String(line['reason'])}`;
    }
    case 'mask': {
      const d = obj(line['detectors']) ?? {};
      return `${t}  ⚑ masked in ${String(line['method'])}: ${Object.entries(d)
        .map(([k, v]) => `${k}×${String(v)}`)
        .join(', ')}`;
    }
    case 'approval': {
      const outcome = String(line['outcome']);
      const mark = outcome === 'approved' ? '✓' : outcome === 'pending' ? '⏸' : '✗';
      const tool = line['tool'] === undefined ? '' : ` ${String(line['tool'])}`;
      const name = line['approval'] === undefined ? '' : ` ${String(line['approval'])}`;
      const by = line['decidedBy'] === undefined ? '' : ` by ${String(line['decidedBy'])}`;
      return `${t}  ${mark} approval${name} for ${String(line['method'])}${tool}: ${outcome}${by}`;
    }
    case 'dropped':
      return `${t}  ! ${String(line['count'])} event(s) not recorded (the disk did not keep up)`;
    case 'close': {
      const c = obj(line['counts']) ?? {};
      return `${t}  ■ session ${String(line['reason'])}: ${String(c['messages'])} messages, ${String(c['decisions'])} decisions, ${String(c['denied'])} denied, ${String(c['masked'])} values masked`;
    }
    case 'truncated':
      return `${t}  ■ recording truncated: ${String(line['reason'])}`;
    default:
      return `${t}  ? ${String(line.type)}`;
  }
}

/**
 * A readable transcript of one recording: who called what, what was decided, what came back.
 * The chain is verified first; a broken chain is reported at the top (the transcript still
 * prints, so an investigator can read what is there).
 *
 * @example
 * process.stdout.write(await replayRecording('rec.jsonl'));
 */
export async function replayRecording(path: string): Promise<string> {
  const check = await verifyRecording(path);
  const out: string[] = [];
  for await (const raw of readLines(path)) {
    let line: RecordingLine;
    try {
      line = JSON.parse(raw.text) as RecordingLine;
    } catch {
      out.push(`              ? unreadable line`);
      continue;
    }
    if (line.type === 'header') {
      const policies = Array.isArray(line['policies'])
        ? (line['policies'] as Array<{ name?: unknown; generation?: unknown }>)
            .map((p) => `${String(p.name)}@${String(p.generation)}`)
            .join(', ')
        : '';
      out.push(`Session ${String(line.session)}`);
      out.push(`  principal ${String(line['principal'])}`);
      out.push(
        `  pod ${String(line['pod'])}${line['namespace'] === undefined ? '' : ` (namespace ${String(line['namespace'])})`}, transport ${String(line['transport'])}${line['protocolVersion'] === undefined ? '' : `, protocol ${String(line['protocolVersion'])}`}`,
      );
      out.push(`  policies ${policies === '' ? '(none)' : policies}`);
      out.push(`  started ${String(line['startTime'])}`);
      out.push('');
      continue;
    }
    const text = render(line);
    if (text !== undefined) out.push(text);
  }
  out.push('');
  out.push(
    check.ok
      ? `Hash chain verified (${check.lines} lines, ${check.status}); last line sha256 ${check.sha256}.`
      : `WARNING: hash chain broken at line ${check.error?.line}: ${check.error?.reason}`,
  );
  return `${out.join('\n')}\n`;
}
