import { existsSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { type Browser, chromium, type Page } from 'playwright-core';
import type { PageResult } from './browser/mcp-client.js';
import { type Harness, startHarness } from './helpers/harness.js';
import { testEngine, testSource } from './helpers/test-policy.js';

/**
 * CORS in a real browser: Debian's Chromium (headless, driven by playwright-core) loads a page
 * from one origin that runs the official MCP SDK client (bundled for the browser) against the
 * gateway on another origin, with a bearer token, as a web MCP client does. The browser enforces
 * what the header-level tests can only assert: preflights, which response headers the page may
 * read (`Mcp-Session-Id`), and that a page of an origin not listed gets nothing.
 */
const CHROMIUM = process.env['CHROMIUM_PATH'] ?? '/usr/bin/chromium';

let h: Harness;
let browser: Browser;
let bundle: string;
const pages: Server[] = [];
let allowedPage: string;
let otherPage: string;

/** Serves the page and its bundled script on 127.0.0.1 (its origin is `http://127.0.0.1:<port>`). */
async function servePage(): Promise<string> {
  const server = createServer((req, res) => {
    if (req.url === '/mcp-client.js') {
      res.writeHead(200, { 'content-type': 'text/javascript' }).end(bundle);
    } else {
      res
        .writeHead(200, { 'content-type': 'text/html' })
        .end('<!doctype html><title>page</title><script src="/mcp-client.js"></script>');
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  pages.push(server);
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) {
    throw new Error(
      `no Chromium at ${CHROMIUM}: run hack/ensure-chromium.sh (make test does), or set CHROMIUM_PATH`,
    );
  }
  const out = await build({
    entryPoints: [fileURLToPath(new URL('./browser/mcp-client.ts', import.meta.url))],
    bundle: true,
    platform: 'browser',
    format: 'iife',
    target: 'es2022',
    write: false,
    logLevel: 'silent',
  });
  bundle = out.outputFiles[0]!.text;
  allowedPage = await servePage();
  otherPage = await servePage();
  h = await startHarness(
    (trusted) =>
      testSource(
        testEngine({
          name: 'p',
          issuers: trusted,
          rules: [
            { name: 'weather', methods: ['tools/call'], tools: ['get_weather'], action: 'allow' },
            {
              name: 'no-delete',
              methods: ['tools/call'],
              tools: ['delete_*'],
              action: 'deny',
              reason: 'no deletes',
            },
          ],
        }),
      ),
    { allowedOrigins: [allowedPage] },
  );
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
}, 60_000);

afterAll(async () => {
  await browser?.close();
  await h?.close();
  for (const s of pages) await new Promise((resolve) => s.close(resolve));
});

async function open(origin: string): Promise<Page> {
  const page = await browser.newPage();
  await page.goto(`${origin}/`);
  await page.waitForFunction(() => 'runMcp' in globalThis);
  return page;
}

function runMcp(page: Page, url: string, token: string): Promise<PageResult> {
  return page.evaluate(
    ([u, t]) =>
      (globalThis as unknown as { runMcp(u: string, t: string): Promise<PageResult> }).runMcp(u!, t!),
    [url, token],
  );
}

test('a page of a listed origin runs the SDK client through the gateway: session, list, call, denial, DELETE', async () => {
  const page = await open(allowedPage);
  try {
    const before = h.upstream.stats.requests;
    const r = await runMcp(page, h.mcpUrl, await h.token());
    expect(r).toMatchObject({ ok: true, called: 'sunny in Bern', terminated: true });
    // The page read Mcp-Session-Id, which only an exposed header allows.
    expect(r.sessionId).toMatch(/^[\x21-\x7e]+$/);
    expect(r.tools).toContain('get_weather');
    expect(r.tools).not.toContain('delete_repo');
    // The policy's denial reached the page as a JSON-RPC error it could read.
    expect(r.denied).toMatchObject({ code: -31403, message: expect.stringContaining('no deletes') });
    expect(h.upstream.stats.requests).toBeGreaterThan(before);
  } finally {
    await page.close();
  }
});

test('a page of any other origin gets nothing: the browser refuses the answer, and nothing reaches the upstream', async () => {
  const page = await open(otherPage);
  try {
    const before = h.upstream.stats.requests;
    const r = await runMcp(page, h.mcpUrl, await h.token());
    expect(r.ok).toBe(false);
    expect(r.error).toMatch(/Failed to fetch|NetworkError|CORS/i);
    expect(h.upstream.stats.requests).toBe(before);
  } finally {
    await page.close();
  }
});

test('a page of a listed origin reads why its token was refused: 401 and the exposed WWW-Authenticate', async () => {
  const page = await open(allowedPage);
  try {
    const token = await h.token();
    const forged = `${token.slice(0, -4)}AAAA`;
    const r = await page.evaluate(
      ([u, t]) =>
        (
          globalThis as unknown as {
            probe(u: string, t: string): Promise<{ status: number; wwwAuthenticate: string | null }>;
          }
        ).probe(u!, t!),
      [h.mcpUrl, forged],
    );
    expect(r.status).toBe(401);
    expect(r.wwwAuthenticate).toMatch(/^Bearer /);
  } finally {
    await page.close();
  }
});
