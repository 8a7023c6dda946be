import type { IncomingHttpHeaders } from 'node:http';
import { Pool } from 'undici';
import { WardenError } from '../errors.js';

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

export interface UpstreamResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: AsyncIterable<Buffer> & { destroy(err?: Error): unknown; text(): Promise<string> };
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
 * The upstream MCP server, reached through one keep-alive undici Pool. Every call has a header
 * timeout; SSE bodies have no body timeout (they are long-lived by design).
 */
export class Upstream {
  readonly url: URL;
  readonly #pool: Pool;
  readonly #headersTimeout: number;

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
    // Long-lived SSE streams each hold a connection: the cap must exceed the expected open streams.
    this.#pool = new Pool(this.url.origin, {
      connections: options.connections ?? 4096,
      keepAliveTimeout: 30_000,
      pipelining: 1,
    });
  }

  /** Same origin as the upstream (legacy `endpoint` URLs must not point elsewhere). */
  sameOrigin(u: URL): boolean {
    return u.origin === this.url.origin;
  }

  async request(
    method: 'GET' | 'POST' | 'DELETE',
    path: string,
    headers: Record<string, string>,
    body: string | Buffer | undefined,
    signal?: AbortSignal,
  ): Promise<UpstreamResponse> {
    try {
      const r = await this.#pool.request({
        path,
        method,
        headers,
        body: body ?? null,
        signal: signal ?? null,
        headersTimeout: this.#headersTimeout,
        bodyTimeout: 0,
      });
      return { status: r.statusCode, headers: r.headers as IncomingHttpHeaders, body: r.body };
    } catch (err) {
      throw upstreamError(err);
    }
  }

  close(): Promise<void> {
    return this.#pool.close().catch(() => undefined);
  }

  destroy(): Promise<void> {
    return this.#pool.destroy().catch(() => undefined);
  }
}

export function upstreamError(err: unknown): WardenError {
  if (err instanceof WardenError) return err;
  const e = err as { code?: string; message?: string; name?: string };
  const timeout = e.code === 'UND_ERR_HEADERS_TIMEOUT' || e.name === 'TimeoutError';
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

/** Read a whole (JSON) upstream body with a size limit. */
export async function readUpstreamBody(body: UpstreamResponse['body'], limit: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    size += chunk.length;
    if (size > limit) {
      body.destroy();
      throw new WardenError('ERR_UPSTREAM', `Upstream response larger than ${limit} bytes`);
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks, size);
}
