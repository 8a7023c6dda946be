import { isJsonObject, isRawNumber, parseJson } from '../json.js';
import type { RecordingLine } from './format.js';
import { readLines } from './read.js';
import { verifyRecording } from './verify.js';

const maxPayloadChars = 400;

function clip(text: string, max = maxPayloadChars): string {
  const flat = text.replace(/\s+/g, ' ');
  return flat.length > max ? `${flat.slice(0, max)}… (${flat.length} chars)` : flat;
}

/** A recorded value as text: a number a double cannot carry (kept lossless) as its exact digits. */
function str(v: unknown): string {
  return isRawNumber(v) ? v.rawJSON : String(v);
}

function time(ts: unknown): string {
  return typeof ts === 'string' && ts.length >= 23 ? ts.slice(11, 23) : '            ';
}

function obj(v: unknown): Record<string, unknown> | undefined {
  return isJsonObject(v) ? v : undefined;
}

/** What came back, in a few words: text blocks, structured content, or the error. */
function describeResult(message: Record<string, unknown>): string {
  const error = obj(message['error']);
  if (error !== undefined) return `error ${str(error['code'])}: ${clip(str(error['message'] ?? ''))}`;
  if (!('result' in message)) return '(payload not recorded)';
  const result = obj(message['result']);
  if (result === undefined) return clip(JSON.stringify(message['result'] ?? null));
  const parts: string[] = [];
  if (result['isError'] === true) parts.push('(tool error)');
  const content = result['content'];
  if (Array.isArray(content)) {
    for (const item of content) {
      const c = obj(item);
      if (c?.['type'] === 'text') parts.push(`text: ${clip(str(c['text']))}`);
      else if (c !== undefined) parts.push(`[${str(c['type'])}]`);
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
          `${str(c['uri'] ?? 'resource')}: ${typeof c['text'] === 'string' ? clip(c['text']) : '[binary]'}`,
        );
    }
  }
  const messages = result['messages'];
  if (Array.isArray(messages))
    parts.push(`${messages.length} prompt message(s): ${clip(JSON.stringify(messages))}`);
  const tools = result['tools'];
  if (Array.isArray(tools))
    parts.push(`${tools.length} tool(s): ${tools.map((t) => str(obj(t)?.['name'])).join(', ')}`);
  return parts.length > 0 ? parts.join(' | ') : clip(JSON.stringify(result));
}

function describeRequest(line: RecordingLine, message: Record<string, unknown> | undefined): string {
  const method = str(line['method']);
  const params = obj(message?.['params']);
  if (method === 'tools/call') {
    const args = params?.['arguments'];
    return `tools/call ${str(line['tool'] ?? params?.['name'])}${args === undefined ? '' : ` ${clip(JSON.stringify(args))}`}`;
  }
  if (method === 'resources/read') return `resources/read ${str(line['resource'] ?? params?.['uri'])}`;
  if (method === 'prompts/get') return `prompts/get ${str(line['prompt'] ?? params?.['name'])}`;
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
      const id = line['id'] === undefined ? '' : ` #${str(line['id'])}`;
      const kind = line['kind'];
      if (kind === 'request') return `${t}  ${arrow} ${who} calls ${describeRequest(line, message)}${id}`;
      if (kind === 'notification') return `${t}  ${arrow} ${who} notifies ${describeRequest(line, message)}`;
      if (kind === 'response' || kind === 'error') {
        const what =
          line['tool'] === undefined
            ? str(line['method'] ?? 'request')
            : `${str(line['method'])} ${str(line['tool'])}`;
        return `${t}  ${arrow} ${who} answers${id} (${what}): ${message === undefined ? '(payload not recorded)' : describeResult(message)}`;
      }
      return `${t}  ${arrow} ${who} sends ${str(kind)}`;
    }
    case 'decision': {
      const mark = line['enforced'] === 'deny' ? '✗' : line['enforced'] === 'approve' ? '⏸' : '✓';
      const audit =
        line['decision'] !== line['enforced'] ? ` (decided ${str(line['decision'])}, audit mode)` : '';
      const tool = line['tool'] === undefined ? '' : ` ${str(line['tool'])}`;
      const by =
        line['policy'] === ''
          ? 'no applicable rule'
          : `${str(line['policy'])}${line['rule'] === undefined ? '' : `/${str(line['rule'])}`}`;
      return `${t}  ${mark} ${str(line['enforced']).toUpperCase()} ${str(line['method'])}${tool} by ${by}${audit}: ${str(line['reason'])}`;
    }
    case 'mask': {
      const d = obj(line['detectors']) ?? {};
      return `${t}  ⚑ masked in ${str(line['method'])}: ${Object.entries(d)
        .map(([k, v]) => `${k}×${str(v)}`)
        .join(', ')}`;
    }
    case 'approval': {
      const outcome = str(line['outcome']);
      const mark = outcome === 'approved' ? '✓' : outcome === 'pending' ? '⏸' : '✗';
      const tool = line['tool'] === undefined ? '' : ` ${str(line['tool'])}`;
      const name = line['approval'] === undefined ? '' : ` ${str(line['approval'])}`;
      const by = line['decidedBy'] === undefined ? '' : ` by ${str(line['decidedBy'])}`;
      return `${t}  ${mark} approval${name} for ${str(line['method'])}${tool}: ${outcome}${by}`;
    }
    case 'dropped':
      return `${t}  ! ${str(line['count'])} event(s) not recorded (the disk did not keep up)`;
    case 'close': {
      const c = obj(line['counts']) ?? {};
      return `${t}  ■ session ${str(line['reason'])}: ${str(c['messages'])} messages, ${str(c['decisions'])} decisions, ${str(c['denied'])} denied, ${str(c['masked'])} values masked`;
    }
    case 'truncated':
      return `${t}  ■ recording truncated: ${str(line['reason'])}`;
    default:
      return `${t}  ? ${str(line.type)}`;
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
      // Lossless: an id or argument of 20 digits is shown as recorded, not rounded to a double.
      line = parseJson(raw.text) as RecordingLine;
    } catch {
      out.push(`              ? unreadable line`);
      continue;
    }
    if (line.type === 'header') {
      const policies = Array.isArray(line['policies'])
        ? (line['policies'] as Array<{ name?: unknown; generation?: unknown }>)
            .map((p) => `${str(p.name)}@${str(p.generation)}`)
            .join(', ')
        : '';
      out.push(`Session ${str(line.session)}`);
      out.push(`  principal ${str(line['principal'])}`);
      out.push(
        `  pod ${str(line['pod'])}${line['namespace'] === undefined ? '' : ` (namespace ${str(line['namespace'])})`}, transport ${str(line['transport'])}${line['protocolVersion'] === undefined ? '' : `, protocol ${str(line['protocolVersion'])}`}`,
      );
      out.push(`  policies ${policies === '' ? '(none)' : policies}`);
      out.push(`  started ${str(line['startTime'])}`);
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
