import { type ErrorCode, errorMessage, WardenError } from '../../errors.js';
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

/**
 * Fetch a JSON document with a timeout, no redirects and a size limit. Any failure (URL not
 * allowed, network error, timeout, non-2xx, not JSON) throws a WardenError: the caller fails closed.
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
  let res: Response;
  try {
    res = await fetch(url, {
      method: options.init?.method ?? 'GET',
      headers: { accept: 'application/json', ...options.init?.headers },
      ...(options.init?.body === undefined ? {} : { body: options.init.body }),
      redirect: 'error',
      signal: AbortSignal.timeout(options.timeoutMs),
    });
  } catch (err) {
    throw new WardenError(
      code,
      `could not fetch the ${options.what} from ${where}: ${reason(err, options.timeoutMs)}; check that it is reachable`,
      { cause: err },
    );
  }
  const maxBytes = options.maxBytes ?? defaultMaxBytes;
  let text: string;
  try {
    const length = Number(res.headers.get('content-length') ?? '0');
    if (length > maxBytes) throw new Error(`response of ${length} bytes is over the ${maxBytes}-byte limit`);
    text = await res.text();
    if (text.length > maxBytes) throw new Error(`response is over the ${maxBytes}-byte limit`);
  } catch (err) {
    throw new WardenError(
      code,
      `could not read the ${options.what} from ${where}: ${reason(err, options.timeoutMs)}`,
      { cause: err },
    );
  }
  if (!res.ok) {
    throw new WardenError(
      code,
      `the ${options.what} at ${where} answered HTTP ${res.status}; check the URL and the service's health`,
      {
        details: { status: res.status, body: text.slice(0, 300) },
      },
    );
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw new WardenError(code, `the ${options.what} at ${where} is not valid JSON`, { cause: err });
  }
}

function reason(err: unknown, timeoutMs: number): string {
  // Errors may come from another realm (undici, DOMException): test the shape, not instanceof.
  const name = (err as { name?: unknown } | null)?.name;
  if (name === 'TimeoutError' || name === 'AbortError') return `no answer within ${timeoutMs} ms`;
  const cause = (err as { cause?: { message?: unknown } } | null)?.cause?.message;
  return `${errorMessage(err)}${typeof cause === 'string' ? `: ${cause}` : ''}`;
}
