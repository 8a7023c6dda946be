/**
 * Where mcp-warden may fetch keys, discovery documents and Graph data from: `https://` anywhere,
 * `http://` only on a loopback host (127.0.0.0/8, ::1, localhost) and only when allowed. Anything
 * else is refused before a single byte leaves the process.
 */

const ipv4Loopback = /^127\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

/** True for `localhost`, 127.0.0.0/8 and `::1` (as `URL.hostname` spells them). */
export function isLoopbackHost(hostname: string): boolean {
  const host = hostname.toLowerCase();
  if (host === 'localhost' || host === '[::1]' || host === '::1') return true;
  const m = ipv4Loopback.exec(host);
  return m?.slice(1).every((octet) => Number(octet) <= 255) ?? false;
}

/**
 * Check that `raw` is a URL mcp-warden may fetch. Returns the parsed URL, or a sentence saying
 * what is wrong and what to do (the caller picks the error code).
 *
 * @example
 * const checked = checkFetchUrl('http://10.0.0.1/jwks', true); // { problem: 'http:// is only allowed ...' }
 */
export function checkFetchUrl(
  raw: string,
  allowInsecureLoopback: boolean,
): { url: URL } | { problem: string } {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return { problem: `"${clip(raw)}" is not an absolute URL` };
  }
  if (url.username !== '' || url.password !== '')
    return { problem: `${url.origin}: URLs with credentials are refused` };
  if (url.protocol === 'https:') return { url };
  if (url.protocol === 'http:') {
    if (!isLoopbackHost(url.hostname)) {
      return {
        problem: `${url.origin}: http:// is only allowed on loopback (127.0.0.0/8, ::1, localhost); use https://`,
      };
    }
    if (!allowInsecureLoopback)
      return { problem: `${url.origin}: http:// is disabled (allowInsecureLoopback is false); use https://` };
    return { url };
  }
  return { problem: `${url.origin}: unsupported scheme ${url.protocol} (use https://)` };
}

/** Shorten and de-control a value taken from a token or config before it goes into a message. */
export function clip(value: unknown, max = 200): string {
  const text = typeof value === 'string' ? value : (JSON.stringify(value) ?? String(value));
  const clean = text.replace(/[\u0000-\u001f\u007f]/g, '?');
  return clean.length > max ? `${clean.slice(0, max)}…` : clean;
}
