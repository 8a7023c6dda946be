/**
 * `mcp-warden recordings verify FILE|DIR`, `recordings replay FILE`,
 * `recordings export DIR|FILE [--since ISO|DURATION] [--principal P] [--tool GLOB]`.
 *
 * Exit codes: 0 success; 1 a recording failed verification (each failure printed as
 * `FILE:LINE: reason`) or could not be read; 2 usage errors.
 */
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { errorMessage } from '../pkg/errors.js';
import {
  type ExportFilter,
  exportRecordings,
  replayRecording,
  type VerifyResult,
  verifyRecording,
} from '../pkg/record/index.js';

const usage = `Usage:
  mcp-warden recordings verify FILE|DIR
      Check the hash chain of one recording or of every *.jsonl in DIR. Exit 1 naming the file
      and the first bad line on any edited, deleted, inserted or reordered line, or a tail cut
      off without a closing line.
  mcp-warden recordings replay FILE
      Print a readable transcript: who called what, what was decided, what came back.
  mcp-warden recordings export DIR|FILE [--since ISO|DURATION] [--principal P] [--tool GLOB]
      Print every event as one JSON object per line (for a SIEM). --since takes an ISO time or
      a duration back from now (90s, 30m, 12h, 7d); --principal and --tool take globs (*).
      Each recording is verified first: its events carry "integrity" (closed, truncated or
      invalid); exit 1 naming the first bad line of any recording that does not verify.
`;

export interface Io {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
}

const defaultIo: Io = { stdout: process.stdout, stderr: process.stderr };

/** `90s`, `30m`, `12h`, `7d` back from `now`, or an ISO time. Undefined when neither. */
export function parseSince(value: string, now: Date = new Date()): Date | undefined {
  const d = /^(\d+)(ms|s|m|h|d)$/.exec(value.trim());
  if (d !== null) {
    const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[
      d[2] as 'ms' | 's' | 'm' | 'h' | 'd'
    ];
    return new Date(now.getTime() - Number(d[1]) * unit);
  }
  if (!/^\d{4}-\d{2}-\d{2}/.test(value)) return undefined;
  const t = Date.parse(value);
  return Number.isNaN(t) ? undefined : new Date(t);
}

async function filesOf(target: string): Promise<string[]> {
  const st = await stat(target);
  if (!st.isDirectory()) return [target];
  return (await readdir(target))
    .filter((n) => n.endsWith('.jsonl'))
    .sort()
    .map((n) => join(target, n));
}

async function verify(target: string, io: Io): Promise<number> {
  let files: string[];
  try {
    files = await filesOf(target);
  } catch (err) {
    io.stderr.write(`${target}: cannot read: ${errorMessage(err)}\n`);
    return 1;
  }
  if (files.length === 0) {
    io.stderr.write(`${target}: no recordings (*.jsonl) to verify\n`);
    return 1;
  }
  let failed = 0;
  for (const file of files) {
    const r = await verifyRecording(file);
    if (r.ok) {
      io.stdout.write(
        `OK   ${file} (${r.lines} lines, ${r.status}, session ${r.session}, last line sha256 ${r.sha256})\n`,
      );
    } else {
      failed++;
      io.stdout.write(`FAIL ${file}:${r.error?.line}: ${r.error?.reason}\n`);
    }
  }
  if (files.length > 1) io.stdout.write(`${files.length - failed} of ${files.length} recordings verified\n`);
  return failed > 0 ? 1 : 0;
}

async function replay(file: string, io: Io): Promise<number> {
  try {
    if ((await stat(file)).isDirectory()) {
      io.stderr.write(`${file} is a directory: replay takes one recording file\n`);
      return 2;
    }
    io.stdout.write(await replayRecording(file));
    return 0;
  } catch (err) {
    io.stderr.write(`${file}: cannot replay: ${errorMessage(err)}\n`);
    return 1;
  }
}

async function exportCmd(target: string, filter: ExportFilter, io: Io): Promise<number> {
  let invalid = 0;
  const onVerified = (v: VerifyResult): void => {
    if (v.ok) return;
    invalid++;
    io.stderr.write(
      `${v.file}:${v.error?.line ?? 0}: does not verify (${v.error?.reason ?? 'invalid'}); its events are exported with "integrity":"invalid"\n`,
    );
  };
  try {
    for await (const record of exportRecordings(target, filter, onVerified)) {
      if (!io.stdout.write(`${JSON.stringify(record)}\n`)) {
        await new Promise<void>((resolve) => io.stdout.once('drain', () => resolve()));
      }
    }
    return invalid > 0 ? 1 : 0;
  } catch (err) {
    io.stderr.write(`${target}: cannot export: ${errorMessage(err)}\n`);
    return 1;
  }
}

/** Entry point of `mcp-warden recordings`. */
export async function run(argv: string[], io: Io = defaultIo): Promise<number> {
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        since: { type: 'string' },
        principal: { type: 'string' },
        tool: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (err) {
    io.stderr.write(`${errorMessage(err)}\n\n${usage}`);
    return 2;
  }
  const [sub, target, ...extra] = parsed.positionals;
  if (parsed.values['help'] === true) {
    io.stdout.write(usage);
    return 0;
  }
  if (sub === undefined || target === undefined || extra.length > 0) {
    io.stderr.write(usage);
    return 2;
  }
  const exportOnly = ['since', 'principal', 'tool'].filter((k) => parsed.values[k] !== undefined);
  if (sub !== 'export' && exportOnly.length > 0) {
    io.stderr.write(`--${exportOnly[0]} is an option of \`recordings export\`\n\n${usage}`);
    return 2;
  }
  switch (sub) {
    case 'verify':
      return verify(target, io);
    case 'replay':
      return replay(target, io);
    case 'export': {
      const filter: ExportFilter = {};
      const since = parsed.values['since'];
      if (typeof since === 'string') {
        const at = parseSince(since);
        if (at === undefined) {
          io.stderr.write(
            `--since ${since}: expected an ISO time (2026-11-30T04:00:00Z) or a duration (90s, 30m, 12h, 7d)\n`,
          );
          return 2;
        }
        filter.since = at;
      }
      if (typeof parsed.values['principal'] === 'string') filter.principal = parsed.values['principal'];
      if (typeof parsed.values['tool'] === 'string') filter.tool = parsed.values['tool'];
      return exportCmd(target, filter, io);
    }
    default:
      io.stderr.write(`unknown subcommand "${sub}"\n\n${usage}`);
      return 2;
  }
}
