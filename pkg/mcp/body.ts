import type { IncomingMessage } from 'node:http';
import { WardenError } from '../errors.js';

/** Default request body limit: 4 MiB. */
export const DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024;

/**
 * Read a request body, refusing it as soon as it grows past `limit` (the rest is never
 * buffered). Throws `WardenError` `ERR_BODY_TOO_LARGE` (a declared Content-Length over the limit
 * is refused before reading a byte).
 */
export function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  const declared = req.headers['content-length'];
  if (declared !== undefined && Number(declared) > limit) {
    return Promise.reject(tooLarge(limit));
  }
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    const onData = (chunk: Buffer): void => {
      size += chunk.length;
      if (size > limit) {
        finish(tooLarge(limit));
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = (): void => finish(undefined);
    const onError = (err: Error): void =>
      finish(
        new WardenError('ERR_BAD_REQUEST', `Could not read the request body: ${err.message}`, { cause: err }),
      );
    const onClose = (): void => {
      if (!req.complete)
        finish(new WardenError('ERR_BAD_REQUEST', 'The client closed the connection before the body ended'));
    };
    function finish(err: WardenError | undefined): void {
      if (done) return;
      done = true;
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
      req.off('close', onClose);
      if (err) {
        // Drain (and discard) whatever the client still sends so the 413 can be delivered.
        req.resume();
        reject(err);
      } else resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size));
    }
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
    req.on('close', onClose);
  });
}

function tooLarge(limit: number): WardenError {
  return new WardenError(
    'ERR_BODY_TOO_LARGE',
    `Request body larger than ${limit} bytes; send smaller messages`,
    {
      details: { limit },
    },
  );
}

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: false });

/** Decode strict UTF-8 (a leading BOM is dropped). Throws `ERR_BAD_UTF8` on invalid bytes. */
export function decodeUtf8(bytes: Uint8Array): string {
  try {
    return utf8.decode(bytes);
  } catch (err) {
    throw new WardenError('ERR_BAD_UTF8', 'Parse error: the body is not valid UTF-8', { cause: err });
  }
}

/**
 * Parse a size such as `4MiB`, `512KiB`, `1048576`, `2MB` into bytes. Throws `ERR_CONFIG`.
 */
export function parseSize(text: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(b|kb|kib|mb|mib|gb|gib|k|m|g)?\s*$/i.exec(text);
  if (!m)
    throw new WardenError('ERR_CONFIG', `Invalid size "${text}": use e.g. 4MiB, 512KiB or a byte count`);
  const n = Number(m[1]);
  const unit = (m[2] ?? 'b').toLowerCase();
  const factor: Record<string, number> = {
    b: 1,
    kb: 1000,
    mb: 1000 ** 2,
    gb: 1000 ** 3,
    k: 1024,
    kib: 1024,
    m: 1024 ** 2,
    mib: 1024 ** 2,
    g: 1024 ** 3,
    gib: 1024 ** 3,
  };
  const bytes = Math.floor(n * factor[unit]!);
  if (bytes <= 0) throw new WardenError('ERR_CONFIG', `Invalid size "${text}": must be positive`);
  return bytes;
}
