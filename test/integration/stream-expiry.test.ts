import { decodeJwt } from 'jose';
import { createAuthenticator } from '../../pkg/identity/index.js';
import { SseParser } from '../../pkg/mcp/sse.js';
import { createMetrics } from '../../pkg/metrics/catalogue.js';
import { AUDIENCE, type Harness, openRawSession, startHarness } from './helpers/harness.js';
import { testEngine, testSource } from './helpers/test-policy.js';

/**
 * A server stream (GET) ends when the token that opened it is no longer accepted: its `exp` plus
 * the authenticator's clock tolerance (0 here). The client reconnects with a fresh token.
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

function openStream(headers: Record<string, string>, token: string): Promise<Response> {
  return fetch(h.mcpUrl, {
    method: 'GET',
    headers: { ...headers, accept: 'text/event-stream', authorization: `Bearer ${token}` },
  });
}

test('a server stream ends when the token that opened it expires, and a fresh token opens a new one', async () => {
  const long = await h.issuer.issueToken({ audience: AUDIENCE, oid: 'user-1', groups: ['readers'] });
  const headers = await openRawSession(h.mcpUrl, long, '2025-06-18');
  const short = await h.issuer.issueToken({
    audience: AUDIENCE,
    oid: 'user-1',
    groups: ['readers'],
    expiresInSec: 2,
  });
  const endAt = (decodeJwt(short).exp as number) * 1000;

  const res = await openStream(headers, short);
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toBe('text/event-stream');
  const reader = res.body!.getReader();
  const parser = new SseParser();
  const comments: string[] = [];
  const deadline = setTimeout(() => void reader.cancel(), 10_000);
  let endedAt = 0;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) {
      endedAt = Date.now();
      break;
    }
    for (const item of parser.push(new TextDecoder().decode(value)))
      if (item.type === 'comment') comments.push(item.text);
  }
  clearTimeout(deadline);
  // Not before the token expired, and not long after.
  expect(endedAt).toBeGreaterThanOrEqual(endAt);
  expect(endedAt - endAt).toBeLessThan(5_000);
  expect(comments.some((c) => c.includes('access token expired'))).toBe(true);

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
