/**
 * A comma-separated list of web origins, as browsers send them in `Origin`
 * (`https://agents.example.com`, `http://localhost:6274`): each exactly an http(s) origin, lower
 * case, no path and no trailing slash, since the proxy compares them as strings. Throws an Error
 * naming the first entry that is not one.
 */
export function parseOrigins(text: string): string[] {
  const items = text
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
  if (items.length === 0) throw new Error('no origin given');
  for (const item of items) {
    let url: URL;
    try {
      url = new URL(item);
    } catch {
      throw new Error(`"${item}" is not an origin: write scheme://host[:port], e.g. https://app.example.com`);
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:')
      throw new Error(`"${item}" is not an http(s) origin`);
    if (url.origin !== item)
      throw new Error(`"${item}" is not an origin as browsers send it: write ${url.origin}`);
  }
  return items;
}
