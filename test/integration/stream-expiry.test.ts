import { decodeJwt } from 'jose';
import { createAuthenticator } from '../../pkg/identity/index.js';
import { SseParser } from '../../pkg/mcp/sse.js';
import { createMetrics } from '../../pkg/metrics/catalogue.js';
import { AUDIENCE, type Harness, openRawSession, startHarness } from './helpers/harness.js';
import { testEngine, testSource } from './helpers/test-policy.js';

/**
 * A server stream (GET) ends when the token that opened it is no longer accepted: its `exp` plus
 * the authenticator's clock tolerance (0 here). The client reconnects with a fresh token. A legacy
 * `/sse` stream ends the same way, and its session with it.
 */
let h: Harness;

beforeAll(async () => {
  h = await startHarness(
    (t) =>
      testSource(
        testEngine({ name: 'expiry', issuers: t, rules: [{ name: 'all', tools: ['*'], action: 'allow' }] }),
      ),
    {
      authenticator: createAuthenticator({
        allowInsecureLoopback: true,
        clockToleranceSec: 0,
        metrics: createMetrics({ defaultMetrics: false }),
      }),
    },
  );
});
afterAll(async () => {
  await h?.close();
});

/** A token of `oid` that expires in 2 s, and when (epoch ms). */
async function shortToken(oid: string): Promise<{ token: string; endAt: number }> {
  const token = await h.issuer.issueToken({ audience: AUDIENCE, oid, groups: ['readers'], expiresInSec: 2 });
  return { token, endAt: (decodeJwt(token).exp as number) * 1000 };
}

/** Reads an SSE response to its end (or 10 s): its comments, events and when it ended. */
async function readToEnd(
  res: Response,
): Promise<{ comments: string[]; events: Array<{ event: string; data: string }>; endedAt: number }> {
  const reader = res.body!.getReader();
  const parser = new SseParser();
  const comments: string[] = [];
  const events: Array<{ event: string; data: string }> = [];
  const deadline = setTimeout(() => void reader.cancel(), 10_000);
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    for (const item of parser.push(new TextDecoder().decode(value))) {
      if (item.type === 'comment') comments.push(item.text);
      else events.push({ event: item.event ?? 'message', data: item.data ?? '' });
    }
  }
  clearTimeout(deadline);
  return { comments, events, endedAt: Date.now() };
}

/** The stream ends not before `endAt` and not long after, saying why; what it carried. */
async function endsAtExpiry(res: Response, endAt: number): ReturnType<typeof readToEnd> {
  const read = await readToEnd(res);
  expect(read.endedAt).toBeGreaterThanOrEqual(endAt);
  expect(read.endedAt - endAt).toBeLessThan(5_000);
  expect(read.comments.some((c) => c.includes('access token expired'))).toBe(true);
  return read;
}

function openStream(headers: Record<string, string>, token: string): Promise<Response> {
  return fetch(h.mcpUrl, {
    method: 'GET',
    headers: { ...headers, accept: 'text/event-stream', authorization: `Bearer ${token}` },
  });
}

test('a server stream ends when the token that opened it expires, and a fresh token opens a new one', async () => {
  const long = await h.issuer.issueToken({ audience: AUDIENCE, oid: 'user-1', groups: ['readers'] });
  const headers = await openRawSession(h.mcpUrl, long, '2025-06-18');
  const { token: short, endAt } = await shortToken('user-1');

  const res = await openStream(headers, short);
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toBe('text/event-stream');
  await endsAtExpiry(res, endAt);

  // The expired token itself is refused now; a fresh one opens the stream again on the same session.
  const refused = await openStream(headers, short);
  expect(refused.status).toBe(401);
  await refused.text();
  const again = await openStream(headers, long);
  expect(again.status).toBe(200);
  await again.body!.cancel();
}, 20_000);

test('a stream opened with a token valid for an hour stays open', async () => {
  const long = await h.issuer.issueToken({ audience: AUDIENCE, oid: 'user-2', groups: ['readers'] });
  const headers = await openRawSession(h.mcpUrl, long, '2025-06-18');
  const res = await openStream(headers, long);
  expect(res.status).toBe(200);
  const reader = res.body!.getReader();
  // Whatever the upstream sends first (nothing, or a priming event), the stream does not end.
  let ended = false;
  const reading = (async () => {
    for (;;) {
      const { done } = await reader.read();
      if (done) {
        ended = true;
        return;
      }
    }
  })();
  await new Promise((resolve) => setTimeout(resolve, 2_500));
  expect(ended).toBe(false);
  await reader.cancel();
  await reading;
});

test('a legacy /sse stream ends when its token expires, and its session with it', async () => {
  const { token: short, endAt } = await shortToken('user-3');
  const res = await fetch(`${h.url}/sse`, { headers: { authorization: `Bearer ${short}` } });
  expect(res.status).toBe(200);
  const { events } = await endsAtExpiry(res, endAt);
  const endpoint = events.find((e) => e.event === 'endpoint')?.data;
  expect(endpoint).toMatch(/^\/message\?sessionId=/);

  // The session is gone: a message to it, even with a valid token of the same caller, is refused.
  const fresh = await h.issuer.issueToken({ audience: AUDIENCE, oid: 'user-3', groups: ['readers'] });
  const posted = await fetch(`${h.url}${endpoint}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${fresh}` },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list' }),
  });
  expect(posted.status).toBe(404);
  await posted.text();
}, 20_000);
