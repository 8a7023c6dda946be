import type { Agent as HttpAgent, IncomingHttpHeaders, IncomingMessage } from 'node:http';
import { createRequire } from 'node:module';
import type { Readable } from 'node:stream';
import { WardenError } from '../errors.js';
import { request as httpRequest, Agent as PlainAgent } from '../node-http.js';

/** Request headers copied from the client to the upstream. Everything else (Authorization,
 * Cookie, Host, proxies' hop-by-hop headers, ...) is dropped: the caller's token never leaves. */
const FORWARD_REQUEST_HEADERS = [
  'accept',
  'content-type',
  'mcp-session-id',
  'mcp-protocol-version',
  'last-event-id',
  'mcp-method',
  'mcp-name',
  'user-agent',
] as const;

/** Response headers copied from the upstream to the client. */
export const FORWARD_RESPONSE_HEADERS = [
  'content-type',
  'mcp-session-id',
  'mcp-protocol-version',
  'cache-control',
  'retry-after',
] as const;

export interface UpstreamBody extends AsyncIterable<Buffer> {
  /** The body as a stream (for relays that read it by events, with pause/resume). */
  readonly stream: Readable;
  destroy(err?: Error): unknown;
}

/** How much of a body nobody reads is drained (to keep its connection) before it is destroyed. */
export const DISCARD_LIMIT = 64 * 1024;

export interface UpstreamResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: UpstreamBody;
}

/** Build the upstream request headers from the client's (allowlist; `Mcp-Param-*` kept). */
export function upstreamHeaders(incoming: IncomingHttpHeaders): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of FORWARD_REQUEST_HEADERS) {
    const v = incoming[name];
    if (typeof v === 'string') out[name] = v;
  }
  for (const name in incoming) {
    if (name.startsWith('mcp-param-')) {
      const v = incoming[name];
      if (typeof v === 'string') out[name] = v;
    }
  }
  return out;
}

/**
 * Cancels one upstream request (the client went away): what an AbortController does for
 * `request`, without AbortSignal's listener machinery on the hot path (attaching a signal to a
 * node:http request was ~3 % of the gateway's CPU per small call).
 */
export class UpstreamCancel {
  #req: { destroy(err?: Error): unknown } | undefined;
  #cancelled = false;

  get cancelled(): boolean {
    return this.#cancelled;
  }

  cancel(): void {
    if (this.#cancelled) return;
    this.#cancelled = true;
    this.#req?.destroy(cancelledError());
    this.#req = undefined;
  }

  /** @internal the request to destroy on cancel (undefined once it has its response). */
  attach(req: { destroy(err?: Error): unknown } | undefined): void {
    this.#req = req;
  }
}

function cancelledError(): Error {
  const err = new Error('The operation was aborted');
  err.name = 'AbortError';
  (err as Error & { code: string }).code = 'ABORT_ERR';
  return err;
}

/**
 * The upstream MCP server, reached through one keep-alive connection pool (node:http's Agent:
 * measured cheaper per request than undici's stream API on this data path, and it adds no
 * package to the process's memory). Every call has a header timeout; a body read whole
 * (readUpstreamBody, discardUpstreamBody) gets `bodyTimeoutMs` of the same length; SSE streams are
 * long-lived by design and have none.
 */
export class Upstream {
  readonly url: URL;
  /** Deadline for reading a whole (non-SSE) body once its headers arrived (= the header timeout). */
  readonly bodyTimeoutMs: number;
  readonly #agent: HttpAgent;
  readonly #request: typeof httpRequest;
  readonly #headersTimeout: number;
  readonly #host: string;
  readonly #port: number;

  constructor(url: string, options: { headersTimeoutMs?: number; connections?: number } = {}) {
    try {
      this.url = new URL(url);
    } catch (err) {
      throw new WardenError('ERR_CONFIG', `Invalid upstream URL "${url}"`, { cause: err });
    }
    if (this.url.protocol !== 'http:' && this.url.protocol !== 'https:') {
      throw new WardenError('ERR_CONFIG', `Upstream URL must be http(s): "${url}"`);
    }
    this.#headersTimeout = options.headersTimeoutMs ?? 30_000;
    this.bodyTimeoutMs = this.#headersTimeout;
    const https = this.url.protocol === 'https:';
    // Long-lived SSE streams each hold a connection: the cap must exceed the expected open streams.
    // noDelay: a request is one write, but nothing may ever wait on Nagle + delayed ACK (40 ms).
    const agentOptions = {
      keepAlive: true,
      noDelay: true,
      maxSockets: options.connections ?? 4096,
      maxFreeSockets: 256,
    };
    if (https) {
      // Loaded only for an https upstream (a sidecar's upstream is plain http on localhost).
      const tls = createRequire(import.meta.url)('node:https') as typeof import('node:https');
      this.#agent = new tls.Agent(agentOptions);
      this.#request = tls.request as typeof httpRequest;
    } else {
      this.#agent = new PlainAgent(agentOptions);
      this.#request = httpRequest;
    }
    // URL keeps IPv6 literals in brackets; the socket layer wants the bare address.
    this.#host = this.url.hostname.replace(/^\[(.*)\]$/, '$1');
    this.#port = this.url.port === '' ? (https ? 443 : 80) : Number(this.url.port);
  }

  /** Same origin as the upstream (legacy `endpoint` URLs must not point elsewhere). */
  sameOrigin(u: URL): boolean {
    return u.origin === this.url.origin;
  }

  request(
    method: 'GET' | 'POST' | 'DELETE',
    path: string,
    headers: Record<string, string>,
    body: string | Buffer | undefined,
    signal?: AbortSignal | UpstreamCancel,
  ): Promise<UpstreamResponse> {
    const cancel = signal instanceof UpstreamCancel ? signal : undefined;
    const abortSignal = signal instanceof UpstreamCancel ? undefined : signal;
    return new Promise<UpstreamResponse>((resolve, reject) => {
      if (abortSignal?.aborted) {
        reject(upstreamError(abortSignal.reason));
        return;
      }
      if (cancel?.cancelled) {
        reject(upstreamError(cancelledError()));
        return;
      }
      const outHeaders: Record<string, string | number> = { ...headers, host: this.url.host };
      if (body !== undefined) outHeaders['content-length'] = Buffer.byteLength(body);
      let settled = false;
      const req = this.#request(
        {
          agent: this.#agent,
          host: this.#host,
          port: this.#port,
          method,
          path,
          headers: outHeaders,
          ...(abortSignal ? { signal: abortSignal } : {}),
        },
        (res) => {
          settled = true;
          clearTimeout(timer);
          // Answered: a later cancel is the caller's to handle (it destroys the body it reads).
          cancel?.attach(undefined);
          resolve({ status: res.statusCode ?? 502, headers: res.headers, body: upstreamBody(res) });
        },
      );
      const timer = setTimeout(() => {
        req.destroy(
          new WardenError('ERR_UPSTREAM', 'Upstream MCP server timed out', { details: { timeout: true } }),
        );
      }, this.#headersTimeout);
      req.on('error', (err) => {
        clearTimeout(timer);
        if (!settled) {
          settled = true;
          reject(upstreamError(err));
        }
      });
      cancel?.attach(req);
      req.end(body);
    });
  }

  /** Close every upstream connection (at shutdown, after the sessions were closed). */
  destroy(): Promise<void> {
    this.#agent.destroy();
    return Promise.resolve();
  }
}

function upstreamBody(res: IncomingMessage): UpstreamBody {
  return {
    stream: res,
    [Symbol.asyncIterator]: () => res[Symbol.asyncIterator]() as AsyncIterator<Buffer>,
    destroy: (err?: Error) => res.destroy(err),
  };
}

export function upstreamError(err: unknown): WardenError {
  if (err instanceof WardenError) return err;
  const e = err as { code?: string; message?: string; name?: string; cause?: { name?: string } };
  // An AbortSignal.timeout() passed by the caller aborts the request with its TimeoutError as cause.
  const timeout = e.name === 'TimeoutError' || e.cause?.name === 'TimeoutError';
  const reason = timeout
    ? 'timed out'
    : e.code === 'ECONNREFUSED'
      ? 'refused the connection'
      : (e.code ?? e.message ?? 'failed');
  return new WardenError('ERR_UPSTREAM', `Upstream MCP server ${reason}`, {
    cause: err,
    details: { timeout },
  });
}

/**
 * Read a whole (JSON) upstream body, bounded in size and in time: past `limit` bytes or
 * `timeoutMs` the body's connection is destroyed and an ERR_UPSTREAM error thrown (with
 * `details.timeout` for the deadline, which the client sees as a 504).
 *
 * @example
 * const raw = await readUpstreamBody(up.body, core.maxUpstreamBody, core.upstream.bodyTimeoutMs);
 */
export async function readUpstreamBody(
  body: UpstreamResponse['body'],
  limit: number,
  timeoutMs?: number,
): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  let timedOut = false;
  const timer =
    timeoutMs === undefined
      ? undefined
      : setTimeout(() => {
          timedOut = true;
          body.destroy(bodyTimeoutError(timeoutMs));
        }, timeoutMs);
  try {
    for await (const chunk of body) {
      size += chunk.length;
      if (size > limit) {
        body.destroy();
        throw new WardenError('ERR_UPSTREAM', `Upstream response larger than ${limit} bytes`, {
          details: { limit },
        });
      }
      chunks.push(chunk);
    }
  } catch (err) {
    throw timedOut ? bodyTimeoutError(timeoutMs!) : upstreamError(err);
  } finally {
    clearTimeout(timer);
  }
  // A destroyed stream may end its iteration without an error: never return a cut body.
  if (timedOut) throw bodyTimeoutError(timeoutMs!);
  return Buffer.concat(chunks, size);
}

/**
 * Consume a body nobody needs (the answer to a notification, a DELETE, a fire-and-forget POST):
 * up to DISCARD_LIMIT bytes within `timeoutMs`, so a well-behaved connection returns to the pool;
 * past either bound the connection is destroyed. Never rejects.
 */
export function discardUpstreamBody(body: UpstreamResponse['body'], timeoutMs: number): Promise<void> {
  return readUpstreamBody(body, DISCARD_LIMIT, timeoutMs).then(
    () => undefined,
    () => undefined,
  );
}

function bodyTimeoutError(timeoutMs: number): WardenError {
  return new WardenError(
    'ERR_UPSTREAM',
    `Upstream MCP server timed out sending its response body (${timeoutMs} ms)`,
    {
      details: { timeout: true },
    },
  );
}
