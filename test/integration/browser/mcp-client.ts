/**
 * The page script of the browser test (bundled by esbuild for the browser): the official MCP SDK
 * client over streamable HTTP, as a web MCP client (e.g. the MCP Inspector) runs it, with a bearer
 * token. Exposed as `window.runMcp`; returns what the page saw, or the error it got.
 */
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';

export interface PageResult {
  ok: boolean;
  error?: string;
  sessionId?: string;
  tools?: string[];
  called?: string;
  denied?: { code: number; message: string };
  terminated?: boolean;
}

async function runMcp(url: string, token: string): Promise<PageResult> {
  const transport = new StreamableHTTPClientTransport(new URL(url), {
    requestInit: { headers: { authorization: `Bearer ${token}` } },
  });
  const client = new Client({ name: 'browser-page', version: '1.0.0' });
  try {
    await client.connect(transport);
    // The session id is an exposed response header: unreadable to the page without CORS exposing it.
    const sessionId = transport.sessionId;
    const tools = (await client.listTools()).tools.map((t) => t.name);
    const result = await client.callTool({ name: 'get_weather', arguments: { city: 'Bern' } });
    const called = (result.content as Array<{ text?: string }>)[0]?.text;
    let denied: PageResult['denied'];
    try {
      await client.callTool({ name: 'delete_repo', arguments: { name: 'x' } });
    } catch (err) {
      const e = err as { code: number; message: string };
      denied = { code: e.code, message: e.message };
    }
    // DELETE with Mcp-Session-Id: a non-simple method and header, preflighted.
    await transport.terminateSession();
    return {
      ok: true,
      ...(sessionId === undefined ? {} : { sessionId }),
      tools,
      ...(called === undefined ? {} : { called }),
      ...(denied === undefined ? {} : { denied }),
      terminated: transport.sessionId === undefined,
    };
  } catch (err) {
    return { ok: false, error: err instanceof Error ? `${err.name}: ${err.message}` : String(err) };
  } finally {
    await client.close().catch(() => undefined);
  }
}

/** A bare POST with the given token: what the page can read of the answer. */
async function probe(
  url: string,
  token: string,
): Promise<{ status: number; wwwAuthenticate: string | null }> {
  const res = await fetch(url, {
    method: 'POST',
    headers: {
      authorization: `Bearer ${token}`,
      'content-type': 'application/json',
      accept: 'application/json, text/event-stream',
    },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'ping' }),
  });
  await res.text();
  return { status: res.status, wwwAuthenticate: res.headers.get('www-authenticate') };
}

Object.assign(globalThis, { runMcp, probe });
