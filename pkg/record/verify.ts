import { GENESIS, type RecordingLine, sealValid, sha256Hex, TERMINAL } from './format.js';
import { readLines } from './read.js';

export interface VerifyResult {
  file: string;
  ok: boolean;
  /** Lines read. */
  lines: number;
  /** `closed`: ended normally; `truncated`: closed by recovery after a crash; `invalid`: see `error`. */
  status: 'closed' | 'truncated' | 'invalid';
  session?: string;
  principal?: string;
  /** SHA-256 of the last line (compare with the `sha256` in MCPPolicy status for a full anchor). */
  sha256?: string;
  /** The first bad line (1-based) and why. */
  error?: { line: number; reason: string };
}

/**
 * Check a recording's hash chain. Detects any edited byte (the line's own seal, then the next
 * line's `prev`), deleted, inserted or reordered lines (`seq` and `prev`), and a tail cut off
 * without a closing line; names the first bad line.
 *
 * @example
 * const r = await verifyRecording('rec.jsonl');
 * if (!r.ok) console.error(`${r.file}:${r.error.line}: ${r.error.reason}`);
 */
export async function verifyRecording(path: string): Promise<VerifyResult> {
  const result: VerifyResult = { file: path, ok: false, lines: 0, status: 'invalid' };
  const fail = (line: number, reason: string): VerifyResult => ({
    ...result,
    ok: false,
    status: 'invalid',
    error: { line, reason },
  });
  let prevText: string | undefined;
  let terminal: string | undefined;
  let n = 0;
  try {
    for await (const raw of readLines(path)) {
      n++;
      result.lines = n;
      if (terminal !== undefined)
        return fail(
          n,
          `data after the ${terminal} line ${n - 1}: lines were appended after the recording was closed`,
        );
      if (!raw.terminated) return fail(n, 'incomplete line (no newline): the file was cut mid-line');
      // The recorder writes UTF-8 only; hashes are checked over the decoded text, which is the
      // bytes' exact image only when they are valid UTF-8 (else a changed byte reads as U+FFFD).
      if (!raw.utf8) return fail(n, 'not valid UTF-8: a byte of the line was changed or corrupted');
      let line: RecordingLine;
      try {
        line = JSON.parse(raw.text) as RecordingLine;
      } catch {
        return fail(n, 'not valid JSON: the line was edited or corrupted');
      }
      if (typeof line !== 'object' || line === null)
        return fail(n, 'not a recording line (not a JSON object)');
      if (!sealValid(raw.text))
        return fail(n, "content does not match the line's own hash: the line was edited");
      if (line.seq !== n) {
        const why =
          typeof line.seq !== 'number'
            ? 'has no sequence number'
            : line.seq > n
              ? `has sequence number ${line.seq}, expected ${n}: ${line.seq - n === 1 ? 'a line was' : 'lines were'} deleted before it, or lines were reordered`
              : `has sequence number ${line.seq}, expected ${n}: a line was inserted or duplicated before it, or lines were reordered`;
        return fail(n, why);
      }
      const expected = prevText === undefined ? GENESIS : sha256Hex(prevText);
      if (line.prev !== expected) {
        return fail(
          n,
          `prev hash does not match ${n === 1 ? 'the genesis value' : `line ${n - 1}`}: lines were deleted, inserted or reordered`,
        );
      }
      if (n === 1) {
        if (line.type !== 'header') return fail(1, 'the first line is not a header');
        result.session = typeof line.session === 'string' ? line.session : undefined;
        result.principal = typeof line['principal'] === 'string' ? (line['principal'] as string) : undefined;
      } else {
        if (line.type === 'header') return fail(n, 'a second header: recordings were concatenated');
        if (line.session !== result.session) return fail(n, 'belongs to another session than the header');
      }
      if (TERMINAL.has(line.type)) terminal = line.type;
      prevText = raw.text;
    }
  } catch (err) {
    return fail(n + 1, `cannot read: ${err instanceof Error ? err.message : String(err)}`);
  }
  if (n === 0) return fail(1, 'empty file: no header');
  if (terminal === undefined) {
    return fail(
      n + 1,
      `the recording ends at line ${n} without a closing line: the tail was truncated (or the recording is still open)`,
    );
  }
  return {
    ...result,
    ok: true,
    status: terminal === 'close' ? 'closed' : 'truncated',
    sha256: sha256Hex(prevText!),
  };
}
