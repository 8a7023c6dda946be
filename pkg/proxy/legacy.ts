import type { IncomingMessage, ServerResponse } from 'node:http';
import { errorMessage } from '../errors.js';
import type { Identity } from '../identity/types.js';
import { idKey, type JsonRpcResponse } from '../mcp/jsonrpc.js';
import { serializeSseEvent } from '../mcp/sse.js';
import type { PolicyEngine } from '../policy/decision.js';
import { ensureToolAnnotations } from './annotations.js';
import { resolveTickets } from './approve.js';
import { ClientStream } from './client-stream.js';
import { methodLabel, type ProxyCore } from './core.js';
import { sendRpcError } from './http.js';
import { decideAll, readMessages } from './inbound.js';
import type { OutboundContext } from './outbound.js';
import { relaySse } from './relay.js';
import { upstreamFailed } from './respond.js';
import type { Session } from './session.js';
import { untagLastEventId } from './streamable.js';
import { discardUpstreamBody, type UpstreamResponse, upstreamHeaders } from './upstream.js';

/**
 * Legacy HTTP+SSE (2024-11-05): `GET /sse` opens the server stream, whose first `endpoint` event
 * names where to POST. The proxy rewrites that event to its own `/message?sessionId=<id>` (an id
 * it mints and binds to the caller), and answers refused requests on the client's stream.
 */
export async function handleLegacySse(
  core: ProxyCore,
  req: IncomingMessage,
  res: ServerResponse,
  identity: Identity,
  engine: PolicyEngine,
): Promise<void> {
  const abort = new AbortController();
  const onClientClose = (): void => abort.abort();
  res.on('close', onClientClose);
  let up: UpstreamResponse;
  try {
    const headers = upstreamHeaders(req.headers);
    headers['accept'] = 'text/event-stream';
    untagLastEventId(core, identity, headers);
    up = await core.upstream.request('GET', core.upstreamSsePath!, headers, undefined, abort.signal);
  } catch (err) {
    res.off('close', onClientClose);
    if (!abort.signal.aborted) upstreamFailed(core, res, err, null);
    return;
  }
  res.off('close', onClientClose);
  const ct = up.headers['content-type'];
  if (up.status !== 200 || typeof ct !== 'string' || !ct.startsWith('text/event-stream')) {
    void discardUpstreamBody(up.body, core.upstream.bodyTimeoutMs);
    sendRpcError(
      res,
      up.status === 200 ? 502 : up.status,
      null,
      -32002,
      `Upstream error: the legacy SSE endpoint answered HTTP ${up.status}`,
      {
        code: 'ERR_UPSTREAM',
      },
    );
    return;
  }
  const session = core.createSession(core.newId(), identity, engine, 'legacy-sse', '2024-11-05');
  session.clientSse = res;
  const messagePath = `${basePath(core)}${core.legacy!.message}?sessionId=${encodeURIComponent(session.id)}`;
  const sseUrl = new URL(core.upstreamSsePath!, core.upstream.url);
  const ctx: OutboundContext = {
    engine,
    identity,
    session,
    recorder: session.recorder,
    pending: session.pending,
    answerUpstream: (response) => postUpstream(core, session, response),
    // The session's one stream: approved server requests are delivered on it.
    stream: new ClientStream(),
  };
  res.statusCode = 200;
  res.setHeader('content-type', 'text/event-stream');
  res.setHeader('cache-control', 'no-cache');
  res.setHeader('x-accel-buffering', 'no');
  res.flushHeaders();
  await relaySse(core, ctx, up, res, {
    // The stream is this transport's whole session: it ends, and the session with it, when the
    // caller's token stops being accepted. The client starts a new session with a fresh token.
    endAt: core.options.authenticator.acceptedUntil(identity),
    onEndpoint: (data) => {
      let target: URL;
      try {
        target = new URL(data.trim(), sseUrl);
      } catch {
        core.logger.warn({ event: 'legacy-bad-endpoint' }, 'upstream endpoint event is not a URL');
        return undefined;
      }
      if (!core.upstream.sameOrigin(target)) {
        core.logger.warn(
          { event: 'legacy-foreign-endpoint' },
          'upstream endpoint event points at another origin; ignored',
        );
        return undefined;
      }
      session.upstreamMessagePath = target.pathname + target.search;
      return messagePath;
    },
  });
  await core.closeSession(session, 'ended');
}

function basePath(core: ProxyCore): string {
  if (!core.publicUrl) return '';
  try {
    return new URL(core.publicUrl).pathname.replace(/\/+$/, '');
  } catch {
    return '';
  }
}

/** POST a message to the upstream's per-session message endpoint (fire and forget). */
/** Resolves true when the upstream accepted the answer (a 2xx status). */
function postUpstream(core: ProxyCore, session: Session, response: JsonRpcResponse): Promise<boolean> {
  if (!session.upstreamMessagePath) return Promise.resolve(false);
  return core.upstream
    .request(
      'POST',
      session.upstreamMessagePath,
      { 'content-type': 'application/json' },
      JSON.stringify(response),
    )
    .then(async (r) => {
      await discardUpstreamBody(r.body, core.upstream.bodyTimeoutMs);
      return r.status >= 200 && r.status < 300;
    })
    .catch((err: unknown) => {
      core.logger.warn(
        { event: 'upstream-answer-failed', err: errorMessage(err) },
        'could not answer a blocked server request',
      );
      return false;
    });
}

export async function handleLegacyMessage(
  core: ProxyCore,
  req: IncomingMessage,
  res: ServerResponse,
  identity: Identity,
  engine: PolicyEngine,
  started: bigint,
): Promise<void> {
  const q = (req.url ?? '').indexOf('?');
  const sid = q === -1 ? null : new URLSearchParams((req.url ?? '').slice(q + 1)).get('sessionId');
  const session = sid === null ? undefined : core.sessions.get(sid);
  if (
    session?.transport !== 'legacy-sse' ||
    session.principal !== identity.principal ||
    !session.upstreamMessagePath
  ) {
    req.resume();
    sendRpcError(res, 404, null, -32001, 'Session not found: open the event stream (GET /sse) first', {
      code: 'ERR_SESSION_UNKNOWN',
    });
    return;
  }
  session.identity = identity;
  session.lastSeen = Date.now();
  const got = await readMessages(core, req, res, true);
  if (!got) return;
  await ensureToolAnnotations(core, session, got.items, req.headers, session.protocolVersion);
  const decided = decideAll(
    core,
    { engine, identity, session, recorder: session.recorder, pending: session.pending },
    got.batch,
    got.items,
    got.raw,
  );
  // Nothing is held open here (the POST is answered 202 at once): held calls are tickets.
  if (decided.held.length > 0) {
    await resolveTickets(
      core,
      { engine, identity, session, recorder: session.recorder, pending: session.pending },
      decided,
    );
  }
  if (decided.refused.length > 0 && session.clientSse && !session.clientSse.writableEnded) {
    const data = JSON.stringify(decided.batch && decided.forward.length === 0 ? decided.refused : undefined);
    if (decided.batch && decided.forward.length === 0)
      session.clientSse.write(serializeSseEvent({ event: 'message', data }));
    else
      for (const r of decided.refused)
        session.clientSse.write(serializeSseEvent({ event: 'message', data: JSON.stringify(r) }));
  }
  if (decided.forward.length === 0) {
    res.statusCode = 202;
    res.end('Accepted');
    return;
  }
  // Re-serialized: the upstream parses exactly what was decided (see streamable.ts).
  let body: string;
  try {
    body = JSON.stringify(decided.batch ? decided.forward : decided.forward[0]);
  } catch {
    // Nesting deeper than the serializer's stack (JSON.parse takes it, JSON.stringify does not).
    for (const id of decided.requestIds) session.pending.delete(idKey(id));
    sendRpcError(res, 400, null, -32600, 'Bad Request: the message is nested too deeply', {
      code: 'ERR_BAD_REQUEST',
    });
    return;
  }
  let up: UpstreamResponse;
  try {
    up = await core.upstream.request(
      'POST',
      session.upstreamMessagePath,
      { 'content-type': 'application/json' },
      body,
    );
  } catch (err) {
    upstreamFailed(core, res, err, null);
    return;
  }
  // The answer travels on the event stream: this body is drained (bounded) in the background.
  void discardUpstreamBody(up.body, core.upstream.bodyTimeoutMs);
  res.statusCode = up.status;
  if (up.status >= 400) {
    sendRpcError(res, up.status, null, -32002, `Upstream error: HTTP ${up.status}`, { code: 'ERR_UPSTREAM' });
  } else {
    // Never the upstream's own text: answers travel on the event stream (masked there); a body here
    // would reach the client unmasked.
    res.end('Accepted');
  }
  core.metrics.requestDuration.observe(
    { method: methodLabel(decided.firstMethod) },
    Number(process.hrtime.bigint() - started) / 1e9,
  );
}
