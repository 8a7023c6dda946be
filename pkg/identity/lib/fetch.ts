import type { IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { Readable } from 'node:stream';
import { createBrotliDecompress, createGunzip, createInflate } from 'node:zlib';
import { type ErrorCode, errorMessage, WardenError } from '../../errors.js';
import { request as httpRequest } from '../../node-http.js';
import { checkFetchUrl } from './url.js';

/** Options of one outbound JSON fetch. */
export interface FetchJsonOptions {
  /** What is fetched, for messages: "discovery document of https://issuer". */
  what: string;
  timeoutMs: number;
  allowInsecureLoopback: boolean;
  /** Error code for every failure (default ERR_AUTH_ISSUER_UNAVAILABLE). */
  code?: ErrorCode;
  init?: { method?: string; headers?: Record<string, string>; body?: string };
  /** Responses larger than this are refused (default 1 MiB). */
  maxBytes?: number;
}

const defaultMaxBytes = 1024 * 1024;

/** A failure while reading the answer (after its status line), as opposed to reaching the server. */
class ReadError extends Error {}

/**
 * Fetch a JSON document with a timeout, no redirects and a size limit. Any failure (URL not
 * allowed, network error, timeout, redirect, non-2xx, over the size limit, not JSON) throws a
 * WardenError: the caller fails closed.
 *
 * Built on `node:http`/`node:https` rather than the global `fetch`: `fetch` loads Node's bundled
 * undici on first use, ~10 MiB of resident memory in every sidecar for a few small documents an
 * hour. The behaviour is fetch's: gzip/deflate/br answers are decoded, keep-alive connections are
 * reused (the global agents), the timeout covers the whole exchange, redirects are refused.
 *
 * @example
 * const doc = await fetchJson('https://login.microsoftonline.com/t/v2.0/.well-known/openid-configuration',
 *   { what: 'discovery document', timeoutMs: 5000, allowInsecureLoopback: false });
 */
export async function fetchJson(rawUrl: string, options: FetchJsonOptions): Promise<unknown> {
  const code = options.code ?? 'ERR_AUTH_ISSUER_UNAVAILABLE';
  const checked = checkFetchUrl(rawUrl, options.allowInsecureLoopback);
  if ('problem' in checked)
    throw new WardenError(code, `refusing to fetch the ${options.what}: ${checked.problem}`);
  const url = checked.url;
  const where = `${url.origin}${url.pathname}`;
  const maxBytes = options.maxBytes ?? defaultMaxBytes;
  let answer: { status: number; text: string };
  try {
    answer = await exchange(url, options, maxBytes);
  } catch (err) {
    if (err instanceof ReadError)
      throw new WardenError(code, `could not read the ${options.what} from ${where}: ${err.message}`, {
        cause: err,
      });
    throw new WardenError(
      code,
      `could not fetch the ${options.what} from ${where}: ${errorMessage(err)}; check that it is reachable`,
      { cause: err },
    );
  }
  const { status, text } = answer;
  if (status < 200 || status > 299) {
    throw new WardenError(
      code,
      `the ${options.what} at ${where} answered HTTP ${status}; check the URL and the service's health`,
      { details: { status, body: text.slice(0, 300) } },
    );
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw new WardenError(code, `the ${options.what} at ${where} is not valid JSON`, { cause: err });
  }
}

/** One request/response, bounded by `timeoutMs` from start to the last byte. */
function exchange(
  url: URL,
  options: FetchJsonOptions,
  maxBytes: number,
): Promise<{ status: number; text: string }> {
  const body = options.init?.body;
  const headers: Record<string, string> = {
    accept: 'application/json',
    'accept-encoding': 'gzip, deflate, br',
    ...options.init?.headers,
  };
  if (body !== undefined) headers['content-length'] = String(Buffer.byteLength(body));
  return new Promise((resolve, reject) => {
    let settled = false;
    const finish = (err: Error | undefined, value?: { status: number; text: string }): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (err !== undefined) {
        req.destroy();
        reject(err);
      } else resolve(value as { status: number; text: string });
    };
    const req = (url.protocol === 'https:' ? httpsRequest : httpRequest)(
      url,
      { method: options.init?.method ?? 'GET', headers },
      (res) => {
        const status = res.statusCode ?? 0;
        if (status >= 300 && status <= 399 && res.headers.location !== undefined) {
          res.resume();
          finish(new Error(`redirect refused (HTTP ${status})`));
          return;
        }
        const length = Number(res.headers['content-length'] ?? '0');
        if (length > maxBytes) {
          res.resume();
          finish(new ReadError(`response of ${length} bytes is over the ${maxBytes}-byte limit`));
          return;
        }
        readBody(res, maxBytes).then(
          (text) => finish(undefined, { status, text }),
          (err: unknown) => finish(new ReadError(errorMessage(err))),
        );
      },
    );
    const timer = setTimeout(
      () => finish(new Error(`no answer within ${options.timeoutMs} ms`)),
      options.timeoutMs,
    );
    req.once('error', (err) => finish(err));
    req.end(body);
  });
}

/** The decoded body as text, refused once it is over `maxBytes`. */
async function readBody(res: IncomingMessage, maxBytes: number): Promise<string> {
  const encoding = String(res.headers['content-encoding'] ?? '')
    .trim()
    .toLowerCase();
  let stream: Readable = res;
  if (encoding === 'gzip' || encoding === 'x-gzip') stream = res.pipe(createGunzip());
  else if (encoding === 'deflate') stream = res.pipe(createInflate());
  else if (encoding === 'br') stream = res.pipe(createBrotliDecompress());
  if (stream !== res) res.once('error', (err) => stream.destroy(err));
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of stream) {
    size += (chunk as Buffer).length;
    if (size > maxBytes) {
      stream.destroy();
      res.destroy();
      throw new Error(`response is over the ${maxBytes}-byte limit`);
    }
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}
