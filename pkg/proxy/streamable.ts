import type { IncomingMessage, ServerResponse } from 'node:http';
import { errorMessage } from '../errors.js';
import type { Identity } from '../identity/types.js';
import {
  idKey,
  type JsonRpcId,
  type JsonRpcRequest,
  type JsonRpcResponse,
  RpcCodes,
} from '../mcp/jsonrpc.js';
import { allowsBatches, isStatelessVersion } from '../mcp/version.js';
import type { PolicyEngine } from '../policy/decision.js';
import type { SessionRecorder } from '../record/types.js';
import { ensureToolAnnotations } from './annotations.js';
import { holdable, holdRequest, resolveTickets } from './approve.js';
import { ClientStream } from './client-stream.js';
import { methodLabel, type ProxyCore } from './core.js';
import { heldScope } from './held-calls.js';
import { header, sendJson, sendRpcError } from './http.js';
import { decideAll, headerMismatch, maskedForRecording, readMessages, refuse } from './inbound.js';
import { type OutboundContext, record } from './outbound.js';
import { paramHeaderMismatch } from './params.js';
import type { ResumePoint } from './released.js';
import { copyResponseHeaders, deliver, deliverStream, isJson, upstreamFailed } from './respond.js';
import type { RequestInfo, Session } from './session.js';
import {
  DISCARD_LIMIT,
  discardUpstreamBody,
  readUpstreamBody,
  UpstreamCancel,
  type UpstreamResponse,
  upstreamHeaders,
} from './upstream.js';

/**
 * Streamable HTTP (2025-03-26, 2025-06-18, 2025-11-25) and the stateless 2026-07-28 transport:
 * POST (JSON or SSE answers), GET (server stream, `Last-Event-ID` resumption), DELETE.
 */

/** Look up the session a request names; answers 404 (and returns false) when it is unknown or
 * belongs to another principal — the two are indistinguishable on purpose. */
export function resolveSession(
  core: ProxyCore,
  req: IncomingMessage,
  res: ServerResponse,
  identity: Identity,
): { ok: true; session: Session | undefined } | { ok: false } {
  const sid = header(req.headers['mcp-session-id']);
  if (sid === undefined) return { ok: true, session: undefined };
  const session = core.sessions.get(sid);
  if (session?.transport !== 'streamable-http' || session.principal !== identity.principal) {
    if (session && session.principal !== identity.principal) {
      core.logger.warn(
        { event: 'session-principal-mismatch', session: sid },
        'session presented by another principal',
      );
    }
    sendRpcError(res, 404, null, -32001, 'Session not found: start a new session with initialize', {
      code: 'ERR_SESSION_UNKNOWN',
    });
    return { ok: false };
  }
  session.lastSeen = Date.now();
  session.identity = identity;
  return { ok: true, session };
}

/**
 * `Last-Event-ID` must carry the caller's event id prefix (added by the relay): strip it for the
 * upstream. Returns false (and drops the header) for an id that was relayed to someone else.
 */
export function untagLastEventId(
  core: ProxyCore,
  identity: Identity,
  headers: Record<string, string>,
): boolean {
  const id = headers['last-event-id'];
  if (id === undefined) return true;
  const prefix = core.eventIdPrefix(identity.principal);
  if (!id.startsWith(prefix)) {
    delete headers['last-event-id'];
    return false;
  }
  headers['last-event-id'] = id.slice(prefix.length);
  return true;
}

/**
 * Where a resumed stream starts. A `Last-Event-ID` (untagged) naming an event the proxy wrote
 * itself (an approved server request, released.ts) is not the upstream's: the upstream is asked to
 * resume from the event it followed. Undefined when the request resumes nothing.
 */
export function resumePoint(
  session: Session | undefined,
  headers: Record<string, string>,
): ResumePoint | undefined {
  const id = headers['last-event-id'];
  if (id === undefined) return undefined;
  const own = session?.released?.position(id);
  if (own === undefined) return { after: id, seq: 0 };
  headers['last-event-id'] = own.after;
  return own;
}

function upstreamPath(core: ProxyCore): string {
  return core.upstream.url.pathname + core.upstream.url.search;
}

/** A function that POSTs the proxy's answer to a blocked server→client request upstream. */
/**
 * POSTs the proxy's answer to a blocked server→client request upstream (so the server does not
 * hang). One function per session (cached), none allocated per request.
 */
function answererFor(
  core: ProxyCore,
  session: Session | undefined,
): (response: JsonRpcResponse) => Promise<boolean> {
  if (session) {
    if (!session.answerUpstream) {
      session.answerUpstream = (response) =>
        answerUpstream(core, session.id, session.protocolVersion, response);
    }
    return session.answerUpstream;
  }
  return core.answerWithoutSession;
}

export function answerUpstream(
  core: ProxyCore,
  sessionId: string | undefined,
  version: string | undefined,
  response: JsonRpcResponse,
): Promise<boolean> {
  const headers: Record<string, string> = {
    'content-type': 'application/json',
    accept: 'application/json, text/event-stream',
  };
  if (sessionId) headers['mcp-session-id'] = sessionId;
  if (version) headers['mcp-protocol-version'] = version;
  return core.upstream
    .request('POST', upstreamPath(core), headers, JSON.stringify(response))
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

function observe(core: ProxyCore, method: string, started: bigint, upstreamNs: bigint): void {
  const total = process.hrtime.bigint() - started;
  core.metrics.requestDuration.observe({ method: methodLabel(method) }, Number(total) / 1e9);
  const own = total - upstreamNs;
  core.metrics.overhead.observe(Number(own > 0n ? own : 0n) / 1e9);
}

export async function handlePost(
  core: ProxyCore,
  req: IncomingMessage,
  res: ServerResponse,
  identity: Identity,
  engine: PolicyEngine,
  started: bigint,
): Promise<void> {
  const s = resolveSession(core, req, res, identity);
  if (!s.ok) {
    req.resume();
    return;
  }
  let session = s.session;
  const hVersion = header(req.headers['mcp-protocol-version']);
  if (session && hVersion !== undefined) session.protocolVersion = hVersion;
  const version = hVersion ?? session?.protocolVersion;
  const got = await readMessages(core, req, res, allowsBatches(version) && !isStatelessVersion(version));
  if (!got) return;
  const mismatch = headerMismatch(req, got.items);
  if (mismatch) {
    const only = got.items.length === 1 ? (got.items[0]!.message as { id?: JsonRpcId }) : undefined;
    refuse(res, 400, only?.id ?? null, `Bad Request: ${mismatch.message}`, mismatch.code);
    return;
  }
  await ensureToolAnnotations(core, session, got.items, req.headers, version);
  if (got.items.length === 1 && got.items[0]!.kind === 'request') {
    const req1 = got.items[0]!.message as JsonRpcRequest;
    const bad = paramHeaderMismatch(core, req, req1);
    if (bad) {
      refuse(res, 400, req1.id, `Bad Request: ${bad}`, RpcCodes.headerMismatch);
      return;
    }
  } else {
    // Notifications, responses and batches carry no arguments to check the headers against; they
    // would reach the upstream (and any hop routing on them) unchecked.
    for (const name in req.headers) {
      if (name.startsWith('mcp-param-')) {
        refuse(
          res,
          400,
          null,
          'Bad Request: Mcp-Param-* headers are only allowed on a single tools/call request',
          RpcCodes.headerMismatch,
        );
        return;
      }
    }
  }
  // Exchanges without a session are recorded per principal and UTC hour.
  let recorder: SessionRecorder | undefined = session?.recorder;
  if (!session && !got.items.some((i) => (i.message as { method?: string }).method === 'initialize')) {
    recorder = core.statelessRecorder(engine, identity, version);
  }
  const pending: Map<string, RequestInfo> = session ? session.pending : new Map();
  const decided = decideAll(
    core,
    { engine, identity, session, recorder, pending },
    got.batch,
    got.items,
    got.raw,
  );
  // Time spent waiting for a reviewer is not the proxy's: durations count from after it.
  let begun = started;
  if (decided.held.length > 0) {
    const approvalCtx = { engine, identity, session, recorder, pending };
    if (holdable(decided)) {
      const held = await holdRequest(core, approvalCtx, req, res, decided);
      begun += held.heldNs;
      if (held.next === 'answered') {
        observe(core, decided.firstMethod, begun, 0n);
        return;
      }
    } else {
      await resolveTickets(core, approvalCtx, decided);
    }
  }
  if (decided.forward.length === 0) {
    // Everything was refused: the upstream never hears of it.
    if (decided.refused.length === 0) {
      // Only denied notifications: no JSON-RPC answer, an HTTP error status (MCP transport rule).
      sendJson(res, 403, decided.deniedNotification);
      observe(core, decided.firstMethod, begun, 0n);
      return;
    }
    sendJson(res, 200, decided.batch ? decided.refused : decided.refused[0]);
    observe(core, decided.firstMethod, begun, 0n);
    return;
  }
  const headers = upstreamHeaders(req.headers);
  if (untagLastEventId(core, identity, headers)) resumePoint(session, headers);
  if (headers['accept'] === undefined) headers['accept'] = 'application/json, text/event-stream';
  // Always the re-serialized messages, never the client's bytes: the upstream must parse exactly
  // what was decided (no duplicate-key or BOM parser differentials).
  let body: string;
  try {
    body = JSON.stringify(decided.batch ? decided.forward : decided.forward[0]);
  } catch {
    // Nesting deeper than the serializer's stack (JSON.parse takes it, JSON.stringify does not).
    for (const id of decided.requestIds) pending.delete(idKey(id));
    refuse(
      res,
      400,
      decided.batch ? null : (decided.requestIds[0] ?? null),
      'Bad Request: the message is nested too deeply',
    );
    return;
  }
  headers['content-type'] = 'application/json';
  const abort = new UpstreamCancel();
  const onClientClose = (): void => {
    if (!res.writableFinished) abort.cancel();
  };
  res.on('close', onClientClose);
  const sentAt = process.hrtime.bigint();
  let up: UpstreamResponse;
  try {
    up = await core.upstream.request('POST', upstreamPath(core), headers, body, abort);
  } catch (err) {
    res.off('close', onClientClose);
    for (const id of decided.requestIds) pending.delete(idKey(id));
    upstreamFailed(core, res, err, decided.batch ? null : (decided.requestIds[0] ?? null));
    return;
  }
  const upstreamNs = process.hrtime.bigint() - sentAt;
  // A new session: bind the upstream's session id to the principal that initialized it.
  const newSid = up.headers['mcp-session-id'];
  if (decided.initialize && typeof newSid === 'string' && up.status >= 200 && up.status < 300) {
    const existing = core.sessions.get(newSid);
    if (existing && existing.principal !== identity.principal) {
      // Never hand one principal's session to another, even if the upstream reuses an id.
      up.body.destroy();
      res.off('close', onClientClose);
      sendRpcError(
        res,
        502,
        null,
        RpcCodes.upstreamError,
        'Upstream error: the upstream reused a session id',
        {
          code: 'ERR_UPSTREAM',
        },
      );
      return;
    }
    if (!existing) {
      session = core.createSession(newSid, identity, engine, 'streamable-http', version);
      for (const [k, v] of pending) session.pending.set(k, v);
      recorder = session.recorder;
      if (recorder) {
        // The exchange that opened the session is its first recorded one (masked, as always).
        const masker = core.maskerFor(engine);
        for (const item of got.items) {
          record(
            { recorder, engine },
            'client-to-server',
            masker ? maskedForRecording(core, masker, item.message) : item.message,
          );
        }
      }
    }
  }
  const outCtx: OutboundContext = {
    engine,
    identity,
    session,
    recorder,
    pending: session ? session.pending : pending,
    answerUpstream: answererFor(core, session),
    stream: new ClientStream(),
  };
  try {
    await deliver(core, outCtx, up, res, decided.refused, decided.requestIds, decided.batch);
  } finally {
    res.off('close', onClientClose);
    observe(core, decided.firstMethod, begun, upstreamNs);
  }
  if (up.status === 404 && session) void core.closeSession(session, 'ended');
}

export async function handleGet(
  core: ProxyCore,
  req: IncomingMessage,
  res: ServerResponse,
  identity: Identity,
  engine: PolicyEngine,
  started: bigint,
): Promise<void> {
  const s = resolveSession(core, req, res, identity);
  if (!s.ok) return;
  const session = s.session;
  const headers = upstreamHeaders(req.headers);
  headers['accept'] = 'text/event-stream';
  if (!untagLastEventId(core, identity, headers)) {
    sendRpcError(
      res,
      400,
      null,
      RpcCodes.invalidRequest,
      'Bad Request: Last-Event-ID names an event this caller was never sent',
      {
        code: 'ERR_BAD_REQUEST',
      },
    );
    return;
  }
  const resume = resumePoint(session, headers);
  const abort = new AbortController();
  const onClientClose = (): void => abort.abort();
  res.on('close', onClientClose);
  let up: UpstreamResponse;
  try {
    up = await core.upstream.request('GET', upstreamPath(core), headers, undefined, abort.signal);
  } catch (err) {
    res.off('close', onClientClose);
    if (!abort.signal.aborted) upstreamFailed(core, res, err, null);
    return;
  }
  res.off('close', onClientClose);
  const version = header(req.headers['mcp-protocol-version']);
  if (session && version !== undefined) session.protocolVersion = version;
  const stream = new ClientStream();
  const ctx: OutboundContext = {
    engine,
    identity,
    session,
    recorder: session?.recorder,
    pending: session ? session.pending : new Map(),
    answerUpstream: answererFor(core, session),
    stream,
  };
  if (session) {
    session.openStreams = (session.openStreams ?? 0) + 1;
    // Where approved server requests go when the stream they came on has closed.
    session.serverStreams ??= new Set();
    session.serverStreams.add(stream);
  }
  try {
    // The server stream has no end of its own: it ends when the caller's token does, and the
    // client reconnects with a fresh one (resuming with Last-Event-ID where the upstream can).
    await deliverStream(core, ctx, up, res, core.options.authenticator.acceptedUntil(identity), resume);
  } finally {
    if (session) {
      session.openStreams = (session.openStreams ?? 1) - 1;
      session.serverStreams?.delete(stream);
      session.lastSeen = Date.now();
    }
  }
  observe(core, 'GET', started, 0n);
}

export async function handleDelete(
  core: ProxyCore,
  req: IncomingMessage,
  res: ServerResponse,
  identity: Identity,
  started: bigint,
): Promise<void> {
  const s = resolveSession(core, req, res, identity);
  if (!s.ok) return;
  if (!s.session) {
    sendRpcError(
      res,
      400,
      null,
      RpcCodes.invalidRequest,
      'Bad Request: DELETE needs an Mcp-Session-Id header',
      {
        code: 'ERR_BAD_REQUEST',
      },
    );
    return;
  }
  const session = s.session;
  let up: UpstreamResponse;
  try {
    up = await core.upstream.request('DELETE', upstreamPath(core), upstreamHeaders(req.headers), undefined);
  } catch (err) {
    upstreamFailed(core, res, err, null);
    return;
  }
  // Only a JSON body is passed on (bounded); any other body is drained in the background.
  let text = '';
  if (isJson(up)) {
    try {
      text = (await readUpstreamBody(up.body, DISCARD_LIMIT, core.upstream.bodyTimeoutMs)).toString('utf8');
    } catch (err) {
      if (up.status >= 200 && up.status < 300) await sessionDeleted(core, session);
      upstreamFailed(core, res, err, null);
      return;
    }
  } else {
    void discardUpstreamBody(up.body, core.upstream.bodyTimeoutMs);
  }
  if (up.status >= 200 && up.status < 300) await sessionDeleted(core, session);
  res.statusCode = up.status;
  copyResponseHeaders(up, res);
  if (text.length > 0 && isJson(up)) res.end(text);
  else res.end();
  observe(core, 'DELETE', started, 0n);
}

/**
 * The client ended its session (`DELETE`): it is done with it, so what its requests hold or left
 * open for approval is cancelled (Cancelled), unlike a session that expires idle (a crashed
 * client's repeat still finds its approvals open).
 */
async function sessionDeleted(core: ProxyCore, session: Session): Promise<void> {
  core.heldCalls.end(heldScope({ session, identity: session.identity }), 'the client ended the session');
  await core.closeSession(session, 'ended');
}
