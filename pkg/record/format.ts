import { createHash, hash } from 'node:crypto';

/**
 * The recording file format (version 1): JSON Lines, one object per line.
 *
 * - Line 1 is the `header`; then `message`, `decision`, `mask`, `dropped` lines; the last line is
 *   `close` (the session ended) or `truncated` (appended at the next start when the process died
 *   before closing).
 * - Every line carries `seq` (its 1-based line number) and `prev`: the SHA-256 (hex) of the
 *   previous line's bytes without the newline; the header's `prev` is {@link GENESIS}.
 * - Every line ends with `"sha":"<hex>"}`: the SHA-256 of the line up to (not including) that
 *   `,"sha":` suffix, so an edited line is named exactly, even the last one.
 */
export const FORMAT = 'mcp-warden-recording';
export const FORMAT_VERSION = 1;
/** `prev` of the header line: SHA-256 of the empty string. */
export const GENESIS = createHash('sha256').update('').digest('hex');

/** Up to this many characters a line is hashed with one-shot digests (see sealOpenBytes). */
const ONE_SHOT_MAX = 1024;

const SHA_SUFFIX_LEN = ',"sha":"'.length + 64 + '"}'.length;

export function sha256Hex(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

/** Serialize one line object (without `sha`) and seal it with its own hash. No newline. */
export function sealLine(obj: Record<string, unknown>): string {
  const body = JSON.stringify(obj);
  const open = body.slice(0, -1);
  return `${open},"sha":"${sha256Hex(open)}"}`;
}

/**
 * Seal a line given without its closing brace (`{"seq":1,...`), as `open` followed by `rest`
 * (`rest` may be empty), straight to bytes: the sealed line and its newline in one Buffer, and the
 * line's SHA-256 (the next line's `prev`). The text is encoded to UTF-8 once and hashed from those
 * bytes; a recording line never lives on as a JS string (large lines kept as strings until the
 * next flush were copied by every young-generation GC and then promoted). `rest` is the line's
 * large part, the message payload: its two parts are encoded into the Buffer one after the other,
 * never joined into one string first (V8 would flatten `open + rest` into a copy of the payload
 * on the heap before encoding it). Long lines are hashed once: the state after the body is copied
 * and finished with the short seal suffix; short lines use two one-shot digests, which cost less
 * than a hash object and its copy.
 */
export function sealOpenBytes(open: string, rest = ''): { bytes: Buffer; hash: string } {
  if (open.length + rest.length <= ONE_SHOT_MAX) {
    const line = `${open}${rest},"sha":"${hash('sha256', open + rest)}"}`;
    return { bytes: Buffer.from(`${line}\n`), hash: hash('sha256', line) };
  }
  const head = Buffer.byteLength(open);
  const size = head + Buffer.byteLength(rest);
  const bytes = Buffer.allocUnsafe(size + SHA_SUFFIX_LEN + 1);
  bytes.write(open, 0, head, 'utf8');
  bytes.write(rest, head, size - head, 'utf8');
  const bodyHash = createHash('sha256').update(bytes.subarray(0, size));
  const lineHash = bodyHash.copy();
  const tail = `,"sha":"${bodyHash.digest('hex')}"}`;
  bytes.write(tail, size, 'latin1');
  bytes[size + SHA_SUFFIX_LEN] = 10;
  return { bytes, hash: lineHash.update(tail).digest('hex') };
}

/** Check a line's own seal; returns false when any byte before the seal changed. */
export function sealValid(line: string): boolean {
  if (line.length < SHA_SUFFIX_LEN + 2 || !line.endsWith('"}')) return false;
  const cut = line.length - SHA_SUFFIX_LEN;
  if (line.slice(cut, cut + 8) !== ',"sha":"') return false;
  return sha256Hex(line.slice(0, cut)) === line.slice(cut + 8, cut + 8 + 64);
}

export type LineType =
  | 'header'
  | 'message'
  | 'decision'
  | 'mask'
  | 'approval'
  | 'dropped'
  | 'close'
  | 'truncated';

/** A parsed recording line (the fields every type may carry; unknown fields are kept). */
export interface RecordingLine {
  seq: number;
  prev: string;
  type: LineType;
  ts?: string;
  session?: string;
  [key: string]: unknown;
}

export const TERMINAL: ReadonlySet<string> = new Set(['close', 'truncated']);
