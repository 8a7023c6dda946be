import { argumentsDigest } from '../approval/digest.js';
import type { ApprovalOutcome } from '../approval/types.js';
import { errorMessage } from '../errors.js';
import { isJsonObject, isRawNumber } from '../json.js';
import type { MaskScope } from '../mask/types.js';
import { idKey, type JsonRpcRequest } from '../mcp/jsonrpc.js';
import { serializeSseComment, serializeSseEvent } from '../mcp/sse.js';
import { type HeldRequest, heldCallInput, KEEPALIVE_MS, outcomeResponse, recordOutcome } from './approve.js';
import type { ClientStream } from './client-stream.js';
import type { ProxyCore } from './core.js';
import { type OutboundContext, releasedServerRequest } from './outbound.js';
import { ReleasedEvents } from './released.js';
import type { ServerHold } from './session.js';
import { type SettledRequest, SettledServerRequests } from './settled.js';

/**
 * The approval stage for server→client requests (`sampling/createMessage`, `elicitation/create`,
 * `roots/list`, ...) that a rule decides `approve`: the MCP server asks the client's model or user
 * for something, and a reviewer must agree first.
 *
 * - The request is not delivered; an `MCPApproval` is asked for (`spec.direction:
 *   server-to-client`, the requester being the client whose session carries the request). The
 *   stream it came on goes on relaying everything else (progress, logs, the final answer): the
 *   hold runs beside it, and only adds a `:waiting for approval <name>` comment every 15 s.
 * - Approved: delivered on the stream it came on if that is still open, else on an open GET stream
 *   of the session; with neither, the hold ends Cancelled before the approval is used, and the
 *   upstream gets an error for its request. Delivered as an event of that stream, with an event id
 *   (when the stream has one to follow): a client that resumes the stream gets it again, once.
 * - Denied (`-31409`), expired (`-31408`), cancelled or unavailable (`-31403`): the upstream gets
 *   that JSON-RPC error as the answer to its request, as for a refused server request.
 * - The server cancelling its request (`notifications/cancelled`), the session ending, or (without
 *   a session) the stream closing ends the hold (Cancelled).
 * - `ticket` rules hold too: the server cannot repeat its request once it is approved.
 * - The same request replayed by the upstream after the proxy answered it (a client resuming the
 *   stream it came on with `Last-Event-ID`): not held again, no new approval. The server already
 *   has its answer, and a second response to one request id is a protocol error (JSON-RPC: one
 *   response per request; the SDKs report an unknown id), so the replay is dropped; only when the
 *   first answer did not reach the server is it sent again, the same (see replaySettled).
 */

/** Hold a server→client request the policy decided `approve`; answers the upstream itself when it cannot. */
export function holdServerRequest(
  core: ProxyCore,
  ctx: OutboundContext,
  held: HeldRequest,
  scope: MaskScope,
): void {
  const broker = core.options.approvals;
  const origin = ctx.stream;
  if (broker === undefined) {
    refuse(ctx, held, { kind: 'unavailable', reason: 'approvals are not configured on this data path' });
    return;
  }
  if (deliveryStream(ctx, origin) === undefined) {
    refuse(ctx, held, {
      kind: 'unavailable',
      reason: 'no event stream of the client is open that the request could be delivered on once approved',
    });
    return;
  }
  const holds = holdsOf(ctx);
  const key = idKey(held.msg.id);
  // The upstream event that carried the request: replayed later, it is not held again.
  const originEvent = ctx.eventId;
  // The same request again (the client resumed the stream it came on): the first hold answers it.
  // Counted as decided, as it is without a rate limit on its rule (decide.ts counts it there).
  if (holds.has(key)) {
    held.counted();
    return;
  }
  let cancelled: { reason: string; answer: boolean } | undefined;
  const listeners: Array<(reason: string) => void> = [];
  const hold: ServerHold = {
    cancel(reason, answer) {
      if (cancelled !== undefined) return;
      cancelled = { reason, answer };
      for (const l of listeners) l(reason);
    },
  };
  holds.set(key, hold);
  // Without a session nothing else could carry the request: the hold ends with its stream.
  const offClose =
    ctx.session === undefined
      ? origin?.onClose(() => hold.cancel('the client closed the stream the request came on', true))
      : undefined;
  let keepalive: NodeJS.Timeout | undefined;
  const input = heldCallInput(core, ctx, held, { direction: 'server-to-client', scope });
  input.settings = { ...input.settings, mode: 'hold' };
  const done = (outcome: ApprovalOutcome): void => {
    if (keepalive !== undefined) clearInterval(keepalive);
    holds.delete(key);
    offClose?.();
    finish(core, ctx, held, scope, { stream: origin, event: originEvent }, outcome, cancelled);
  };
  broker
    .hold(input, {
      onCancel: (l) => {
        listeners.push(l);
        if (cancelled !== undefined) l(cancelled.reason);
      },
      onCreated: (name) => {
        const comment = serializeSseComment(
          `waiting for approval ${name} of a ${held.msg.method.slice(0, 64)} request from the server`,
        );
        if (!origin?.write(comment)) return;
        keepalive = setInterval(() => {
          if (!origin.write(comment) && keepalive !== undefined) clearInterval(keepalive);
        }, KEEPALIVE_MS);
        keepalive.unref();
      },
      canRun: () =>
        deliveryStream(ctx, origin) === undefined
          ? 'no event stream of the client is left to deliver the request on'
          : undefined,
    })
    .then(done, (err: unknown) => {
      core.logger.error(
        { event: 'approval-hold-failed', method: held.msg.method, err: errorMessage(err) },
        'holding a server request failed; it is refused',
      );
      done({ kind: 'unavailable', reason: 'the approval could not be requested' });
    });
}

/**
 * `notifications/cancelled` from the server naming a request still held: the hold ends (no answer
 * is owed). Returns true when it named one, so the notification is not passed on.
 */
export function cancelServerHold(ctx: OutboundContext, params: unknown): boolean {
  const requestId =
    typeof params === 'object' && params !== null
      ? (params as Record<string, unknown>)['requestId']
      : undefined;
  if (typeof requestId !== 'string' && typeof requestId !== 'number' && !isRawNumber(requestId)) return false;
  const hold = (ctx.session?.serverHolds ?? ctx.serverHolds)?.get(idKey(requestId));
  if (hold === undefined) return false;
  hold.cancel('the server cancelled its request', false);
  return true;
}

/** Where the holds of this exchange are kept: its session's, or (without one) its own. */
function holdsOf(ctx: OutboundContext): Map<string, ServerHold> {
  const owner = ctx.session ?? ctx;
  let holds = owner.serverHolds;
  if (holds === undefined) {
    holds = new Map();
    owner.serverHolds = holds;
  }
  return holds;
}

/** The stream an approved request goes on: the one it came on, else an open GET stream of the session. */
function deliveryStream(ctx: OutboundContext, origin: ClientStream | undefined): ClientStream | undefined {
  if (ctx.session?.closed) return undefined;
  if (origin?.open) return origin;
  for (const s of ctx.session?.serverStreams ?? []) if (s.open) return s;
  return undefined;
}

function finish(
  core: ProxyCore,
  ctx: OutboundContext,
  held: HeldRequest,
  scope: MaskScope,
  from: { stream: ClientStream | undefined; event: string | undefined },
  outcome: ApprovalOutcome,
  cancelled: { reason: string; answer: boolean } | undefined,
): void {
  recordOutcome(ctx, held, outcome);
  const origin = from.stream;
  if (outcome.kind === 'approved') {
    const stream = deliveryStream(ctx, origin);
    const json = stream === undefined ? undefined : releasedServerRequest(core, ctx, held.msg, scope);
    if (
      stream !== undefined &&
      json !== undefined &&
      deliver(core, ctx, stream, from.event, idKey(held.msg.id), json)
    ) {
      core.logger.info(
        {
          event: 'approval-released',
          approval: outcome.name,
          method: held.msg.method,
          stream: stream === origin ? 'request' : 'session',
        },
        'an approved server request was delivered to the client',
      );
      return;
    }
    // Closed between the claim and now, or not maskable: the server must not wait forever.
    refuse(ctx, held, {
      kind: 'unavailable',
      reason: `approval ${outcome.name} was granted, but the request could not be delivered to the client`,
    });
    return;
  }
  // A request the server cancelled itself expects no answer.
  if (outcome.kind === 'cancelled' && cancelled?.answer === false) {
    settle(ctx, held.msg, outcome, undefined);
    return;
  }
  settle(ctx, held.msg, outcome, outcomeResponse(held, outcome));
}

/**
 * Write the released request on `stream` as an event of that stream: with an event id after the
 * stream's position, kept for a client that resumes (released.ts). A stream the upstream gave no
 * event id yet cannot be resumed: the event goes without one, as the upstream's would.
 */
function deliver(
  core: ProxyCore,
  ctx: OutboundContext,
  stream: ClientStream,
  originEvent: string | undefined,
  requestKey: string,
  json: string,
): boolean {
  const session = ctx.session;
  if (session === undefined || stream.position === undefined) {
    return stream.write(serializeSseEvent({ event: 'message', data: json }));
  }
  session.released ??= new ReleasedEvents();
  const id = session.released.add(stream.position, { event: originEvent, requestKey }, json);
  const prefix = core.eventIdPrefix(ctx.identity.principal);
  if (stream.write(serializeSseEvent({ id: prefix + id, event: 'message', data: json }))) return true;
  session.released.delete(id);
  return false;
}

/** Answer the upstream's request with the refusal (it never reaches the client). */
function refuse(ctx: OutboundContext, held: HeldRequest, outcome: ApprovalOutcome): void {
  recordOutcome(ctx, held, outcome);
  settle(ctx, held.msg, outcome, outcomeResponse(held, outcome));
}

/** A server request's params without `_meta` (what its approval is bound to), digested. */
function requestDigest(msg: JsonRpcRequest): string {
  const { _meta: _perRequest, ...rest } = isJsonObject(msg.params) ? msg.params : {};
  return argumentsDigest(rest);
}

/**
 * Answer the server for a held request that is not delivered (`answer` undefined: it is owed
 * nothing), and remember it in its session: replayed, it gets this outcome again (replaySettled).
 */
function settle(
  ctx: OutboundContext,
  msg: JsonRpcRequest,
  outcome: ApprovalOutcome,
  answer: ReturnType<typeof outcomeResponse> | undefined,
): void {
  const session = ctx.session;
  let entry: SettledRequest | undefined;
  if (session !== undefined) {
    session.settled ??= new SettledServerRequests();
    entry = session.settled.add(idKey(msg.id), {
      digest: requestDigest(msg),
      approval: 'name' in outcome ? outcome.name : undefined,
      outcome: outcome.kind,
      answer,
      state: 'sent',
    });
  }
  if (answer !== undefined) send(ctx, answer, entry);
}

function send(
  ctx: OutboundContext,
  answer: ReturnType<typeof outcomeResponse>,
  entry: SettledRequest | undefined,
): void {
  if (entry !== undefined) entry.state = 'sending';
  void ctx.answerUpstream(answer).then((accepted) => {
    if (entry !== undefined) entry.state = accepted ? 'sent' : 'failed';
  });
}

/**
 * A server request the upstream sends again (it replays the stream's events to a client that
 * resumed) after the proxy answered it for a hold: same session, request id and params. It is not
 * held again nor decided anew: the server already has its outcome, so the replay is dropped; when
 * that answer did not reach the server (the upstream refused it or could not be reached), the
 * same answer is sent again. Returns true when it was such a replay (nothing goes to the client).
 */
export function replaySettled(core: ProxyCore, ctx: OutboundContext, msg: JsonRpcRequest): boolean {
  const entry = ctx.session?.settled?.get(idKey(msg.id), requestDigest(msg));
  if (entry === undefined) return false;
  const again = entry.answer !== undefined && entry.state === 'failed';
  core.logger.info(
    {
      event: 'server-request-replayed',
      method: msg.method.slice(0, 64),
      approval: entry.approval,
      outcome: entry.outcome,
      answer: again ? 'sent-again' : 'dropped',
    },
    'a held server request the server already got its outcome for was replayed; not held again',
  );
  if (again) send(ctx, entry.answer!, entry);
  return true;
}
