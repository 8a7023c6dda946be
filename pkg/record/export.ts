import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { parseJson } from '../json.js';
import { compileGlob } from '../policy/glob.js';
import type { RecordingLine } from './format.js';
import { readLines } from './read.js';
import { type VerifyResult, verifyRecording } from './verify.js';

export interface ExportFilter {
  /** Only events at or after this time. */
  since?: Date;
  /** Principal (exact, or a glob with `*`). */
  principal?: string;
  /** Tool name glob: only events about a matching tool (calls, their results and decisions). */
  tool?: string;
}

/** One event, flattened for a SIEM: the session's who/where plus the line's facts. */
export interface ExportRecord {
  time: string;
  recording: string;
  line: number;
  session: string;
  principal: string;
  pod: string;
  namespace?: string;
  type: string;
  /**
   * The recording's hash chain as checked before export: `closed` or `truncated` (recovered after a
   * crash) when it verifies; `invalid` when it does not (edited, reordered or cut by hand).
   */
  integrity: 'closed' | 'truncated' | 'invalid';
  [key: string]: unknown;
}

async function recordingFiles(dir: string): Promise<string[]> {
  const st = await stat(dir);
  if (st.isFile()) return [dir];
  const names = (await readdir(dir)).filter((n) => n.endsWith('.jsonl')).sort();
  return names.map((n) => join(dir, n));
}

/**
 * Stream the events of every recording in `dir` (or one file) as flat records, filtered.
 *
 * @example
 * for await (const r of exportRecordings('/recordings', { since: new Date(Date.now() - 3600e3), tool: 'delete_*' })) {
 *   process.stdout.write(`${JSON.stringify(r)}\n`);
 * }
 */
export async function* exportRecordings(
  dir: string,
  filter: ExportFilter = {},
  onVerified?: (result: VerifyResult) => void,
): AsyncGenerator<ExportRecord> {
  const principalGlob = filter.principal === undefined ? undefined : compileGlob(filter.principal, 'flat');
  const toolGlob = filter.tool === undefined ? undefined : compileGlob(filter.tool, 'flat');
  const since = filter.since?.getTime();
  for (const file of await recordingFiles(dir)) {
    // Checked first: a SIEM must be able to tell a tampered recording's events from genuine ones.
    const verified = await verifyRecording(file);
    onVerified?.(verified);
    const integrity = verified.ok ? verified.status : 'invalid';
    let header: RecordingLine | undefined;
    for await (const raw of readLines(file)) {
      let line: RecordingLine;
      try {
        // Lossless (pkg/json.ts): a recorded 64-bit id is exported with every digit.
        line = parseJson(raw.text) as RecordingLine;
      } catch {
        continue;
      }
      if (line.type === 'header') {
        header = line;
        if (principalGlob !== undefined && !principalGlob.test(String(line['principal']))) break;
        continue;
      }
      if (header === undefined) break;
      if (since !== undefined && (typeof line.ts !== 'string' || Date.parse(line.ts) < since)) continue;
      if (toolGlob !== undefined && (typeof line['tool'] !== 'string' || !toolGlob.test(line['tool'])))
        continue;
      const { seq, prev, sha, ts, session, type, ...facts } = line;
      void prev;
      void sha;
      yield {
        time: String(ts),
        recording: file,
        line: seq,
        session: String(session),
        principal: String(header['principal']),
        pod: String(header['pod']),
        ...(header['namespace'] === undefined ? {} : { namespace: String(header['namespace']) }),
        type,
        ...facts,
        integrity,
      };
    }
  }
}
