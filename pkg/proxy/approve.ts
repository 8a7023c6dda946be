import type { IncomingMessage, ServerResponse } from 'node:http';
import { canonicalJson, sessionDigest } from '../approval/digest.js';
import { codePoints, hiddenArguments } from '../approval/masked.js';
import type { ApprovalOutcome, HeldCallInput, RateLimitRefusal } from '../approval/types.js';
import type { Identity } from '../identity/types.js';
import type { MaskScope } from '../mask/types.js';
import { errorResponse, idKey, type JsonRpcRequest, type JsonRpcResponse, RpcCodes } from '../mcp/jsonrpc.js';
import { serializeSseComment, serializeSseEvent } from '../mcp/sse.js';
import type { Decision, PolicyEngine } from '../policy/decision.js';
import type { MaskedArguments } from '../policy/schema.js';
import type { SessionRecorder } from '../record/types.js';
import type { ProxyCore } from './core.js';
import { applyRateLimits, rateLimitedResponse, requestInfo } from './decide.js';
import { heldScope } from './held-calls.js';
import { header } from './http.js';
import type { InboundResult } from './inbound.js';
import { record } from './outbound.js';
import { type RequestInfo, rememberPending, type Session } from './session.js';

/**
 * The approval stage: requests the policy decided `approve` (and the data path can hold) wait
 * here for a reviewer's verdict, through the approval broker (pkg/approval).
 *
 * - `hold` (a POST carrying just that request): the client's request stays open. When it accepts
 *   SSE, the answer becomes an event stream at once: a comment every 15 s keeps proxies from
 *   timing it out, and `notifications/progress` tells a client that sent a `progressToken` which
 *   approval it waits for. Approved: the call is forwarded and its answer relayed in the same
 *   stream. Denied, expired: a JSON-RPC error (`-31409`, `-31408`). The client cancelling the
 *   request (`notifications/cancelled`) or deleting its session cancels the approval; its
 *   connection closing does not: the approval stays open for the client's repeat of the call,
 *   which waits on it again, and a `notifications/cancelled` naming the request, or the session's
 *   `DELETE`, that comes later still cancels it (held-calls.ts).
 * - `ticket`, and `hold` where the request cannot be held alone (a batch, legacy HTTP+SSE): the
 *   client gets `-31403` naming the approval at once; the same call repeated after approval runs
 *   once.
 */

/** A request waiting for an approval decision (decideRequest's answer for `approve`). */
export class HeldRequest {
  #count: ((decision: Decision) => void) | undefined;

  /**
   * `count`: counts the call in the metrics, when decideRequest left that for later (a rule with
   * rate limits: whether a limit refuses the call is known only when its approval is asked for).
   * `prepared`: its arguments, already masked by decideRequest (`approval.maskedArguments: deny`
   * checks them), in the scope the approval masks them in.
   */
  constructor(
    readonly msg: JsonRpcRequest,
    readonly decision: Decision,
    count?: (decision: Decision) => void,
    readonly prepared?: HeldArguments,
  ) {
    this.#count = count;
  }

  /**
   * Count the call in the metrics if that was left for later, once: as `refusal` (a rate limit
   * refused its approval request), else as the `approve` it was decided.
   */
  counted(refusal?: Decision): void {
    const count = this.#count;
    this.#count = undefined;
    count?.(refusal ?? this.decision);
  }
}

export interface ApprovalContext {
  engine: PolicyEngine;
  identity: Identity;
  session: Session | undefined;
  recorder: SessionRecorder | undefined;
  pending: Map<string, RequestInfo>;
}

/** How often a held request's stream gets a `:waiting for approval` comment (proxies time out idle streams). */
export const KEEPALIVE_MS = 15_000;

function asObject(v: unknown): Record<string, unknown> | undefined {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
    ? (v as Record<string, unknown>)
    : undefined;
}

/** A held request's arguments: as received, as reviewers see them, and what the masking hid. */
export interface HeldArguments {
  tool: string | undefined;
  /** The policy's `args`: what the verdict is bound to (digested, never stored). */
  args: unknown;
  /** The same after the policy's masking. */
  masked: unknown;
  /** What the masking hid (`spec.maskedArguments`); undefined when it hid nothing. */
  hidden: MaskedArguments | undefined;
}

/**
 * The arguments of a request held for approval, masked as reviewers see them. A server→client
 * request is masked in `scope`, the scope the relay masks it in (the call whose stream carried it,
 * or every scoped rule).
 */
export function heldArguments(
  core: ProxyCore,
  engine: PolicyEngine,
  msg: JsonRpcRequest,
  scope?: MaskScope,
): HeldArguments {
  const params = asObject(msg.params) ?? {};
  const named = msg.method === 'tools/call' || msg.method === 'prompts/get';
  const tool = named && typeof params['name'] === 'string' ? params['name'] : undefined;
  // The policy's `args`: a tool's or prompt's arguments, else the params (a resource's uri, ...)
  // without `_meta`, which changes per request (a progress token) and is not part of the call.
  const { _meta: _perRequest, ...rest } = params;
  const args: unknown = named ? (params['arguments'] ?? {}) : rest;
  const masker = core.maskerFor(engine);
  if (!masker) return { tool, args, masked: args, hidden: undefined };
  const message = { ...msg, params: named ? { ...params, arguments: args } : rest };
  const where = scope ?? { method: msg.method, ...(tool !== undefined ? { tool } : {}) };
  const payload = (m: unknown): unknown => {
    const p = (m as { params?: Record<string, unknown> }).params;
    return named ? p?.['arguments'] : p;
  };
  const masked = payload(masker.maskMessage(message, where).value);
  if (masked === args) return { tool, args, masked, hidden: undefined };
  const marking = core.markedMaskerFor(engine);
  const marked = marking ? payload(marking.masker.maskMessage(message, where).value) : masked;
  let hidden = hiddenArguments(args, masked, marked, marking?.marker.pattern ?? /(?!)/g);
  if (hidden === undefined && canonicalJson(masked) !== canonicalJson(args)) {
    // Changed, yet the marked copy shows nothing (a masker that ignores replacements): all of it.
    const length = codePoints(canonicalJson(args));
    hidden = { count: 1, length, entries: [{ path: '$', detector: 'unknown', length }] };
  }
  return { tool, args, masked, hidden };
}

/** What reviewers see and what the verdict is bound to, built from a held request. */
export function heldCallInput(
  core: ProxyCore,
  ctx: ApprovalContext,
  held: HeldRequest,
  from?: { direction: 'server-to-client'; scope: MaskScope },
): HeldCallInput {
  const { msg, decision } = held;
  const { tool, args, masked, hidden } = held.prepared ?? heldArguments(core, ctx.engine, msg, from?.scope);
  const identity = ctx.identity;
  return {
    policy: decision.policy,
    rule: decision.rule ?? '',
    settings: decision.approval ?? { approvers: [], timeout: '5m', mode: 'ticket' },
    principal: identity.principal,
    user: identity.user,
    appId: identity.appId,
    session: ctx.session ? sessionDigest(ctx.session.id) : undefined,
    method: msg.method,
    tool,
    ...(from ? { direction: from.direction } : {}),
    arguments: args,
    maskedArguments: masked,
    ...(hidden !== undefined ? { hidden } : {}),
    ...(decision.limits !== undefined ? { admit: () => admitApproval(core, identity.principal, held) } : {}),
  };
}

/**
 * The rate limits of a call held for approval count when its approval is asked for (a limit on an
 * approve rule limits approval requests; a repeat that finds its approval costs nothing). The call
 * is counted in the metrics now, once: refused by a limit (`rate-limited`, reason `rate-limit`),
 * else held (`approve`, reason `approval-required`).
 */
function admitApproval(core: ProxyCore, principal: string, held: HeldRequest): RateLimitRefusal | undefined {
  const limited = applyRateLimits(core, principal, held.decision);
  const refused = limited.rateLimited;
  if (refused === undefined || refused.audit) {
    held.counted();
    return undefined;
  }
  held.counted(limited);
  return {
    policy: limited.policy,
    rule: limited.rule ?? '',
    reason: limited.reason,
    retryAfterMs: refused.retryAfterMs,
  };
}

/** The JSON-RPC answer for a held request that is not run (see docs/errors.md). */
export function outcomeResponse(held: HeldRequest, outcome: ApprovalOutcome): JsonRpcResponse {
  const { msg, decision } = held;
  const base: Record<string, unknown> = { policy: decision.policy };
  if (decision.rule !== undefined) base['rule'] = decision.rule;
  switch (outcome.kind) {
    case 'denied':
      return errorResponse(
        msg.id,
        RpcCodes.approvalDenied,
        `Approval denied by a reviewer (approval ${outcome.name})${outcome.reason ? `: ${outcome.reason}` : ''}`,
        {
          ...base,
          reason: outcome.reason ?? 'denied by a reviewer',
          approval: { name: outcome.name, status: 'Denied' },
        },
      );
    case 'expired':
      return errorResponse(
        msg.id,
        RpcCodes.approvalExpired,
        `Approval expired: no reviewer decided in time (approval ${outcome.name}); repeat the call to ask again`,
        { ...base, reason: 'approval expired', approval: { name: outcome.name, status: 'Expired' } },
      );
    case 'cancelled':
      if (outcome.takenOverBy !== undefined)
        // The call goes on through its repeat (which holds the approval now): this request ends.
        return errorResponse(
          msg.id,
          RpcCodes.denied,
          `Held call taken over: ${outcome.reason} (approval ${outcome.name}); this request ends without running the call`,
          {
            ...base,
            reason: outcome.reason,
            approval: { name: outcome.name, status: 'TakenOver', holder: outcome.takenOverBy },
          },
        );
      return errorResponse(
        msg.id,
        RpcCodes.denied,
        `Approval cancelled: ${outcome.reason} (approval ${outcome.name})`,
        {
          ...base,
          reason: outcome.reason,
          approval: { name: outcome.name, status: 'Cancelled' },
        },
      );
    case 'pending':
      return errorResponse(
        msg.id,
        RpcCodes.denied,
        `Approval required: approval ${outcome.name} is pending; repeat this call once a reviewer approved it (before ${outcome.expiresAt})`,
        {
          ...base,
          reason: 'approval required',
          approval: { name: outcome.name, status: 'Pending', mode: 'ticket', expiresAt: outcome.expiresAt },
        },
      );
    case 'unavailable':
      return errorResponse(
        msg.id,
        RpcCodes.denied,
        `Forbidden by policy (policy ${decision.policy}${decision.rule ? `, rule ${decision.rule}` : ''}): approval required, but ${outcome.reason}`,
        { ...base, reason: 'approval required', approval: { status: 'unavailable', detail: outcome.reason } },
      );
    case 'rate-limited':
      return rateLimitedResponse(msg.id, {
        action: 'deny',
        enforced: 'deny',
        policy: outcome.policy,
        rule: outcome.rule,
        reason: outcome.reason,
        mode: 'enforce',
        rateLimited: { retryAfterMs: outcome.retryAfterMs, audit: false },
      });
    case 'approved':
      throw new Error('an approved call has no refusal');
  }
}

/** The recording's `approval` line for a held request's outcome. */
export function recordOutcome(
  ctx: Pick<ApprovalContext, 'recorder'>,
  held: HeldRequest,
  outcome: ApprovalOutcome,
): void {
  // Not counted yet: its limits were never checked (a repeat that found its approval, an
  // approval that could not be asked for). Counted as held.
  held.counted();
  ctx.recorder?.record({
    type: 'approval',
    method: held.msg.method,
    ...(held.msg.method === 'tools/call' && typeof asObject(held.msg.params)?.['name'] === 'string'
      ? { tool: asObject(held.msg.params)!['name'] as string }
      : {}),
    policy: held.decision.policy,
    ...(held.decision.rule !== undefined ? { rule: held.decision.rule } : {}),
    outcome: outcome.kind,
    ...('name' in outcome ? { approval: outcome.name } : {}),
    ...('decidedBy' in outcome && outcome.decidedBy !== undefined ? { decidedBy: outcome.decidedBy } : {}),
    requestId: held.msg.id,
  });
}

/**
 * `notifications/cancelled` for a request held for approval: the hold ends (Cancelled); for one
 * whose connection already closed, the approval it left open is cancelled (see keepCancellable).
 */
export function cancelHeld(
  core: ProxyCore,
  ctx: { session: Session | undefined; identity: Identity },
  params: unknown,
): void {
  const requestId = asObject(params)?.['requestId'];
  if (typeof requestId !== 'string' && typeof requestId !== 'number') return;
  core.heldCalls.cancel(heldScope(ctx), idKey(requestId), 'the client cancelled the request');
}

/**
 * A hold whose connection closed left its approval open for the client's repeat: the client can
 * still cancel it, by the same session (or principal) and request id, or by deleting the session,
 * until the approval ends or a repeat takes it over (then the repeat's own request id does).
 */
function keepCancellable(
  core: ProxyCore,
  ctx: { session: Session | undefined; identity: Identity },
  id: string,
  name: string,
): void {
  const broker = core.options.approvals;
  if (broker === undefined || ctx.session?.closed === true) return;
  let remove: (() => void) | undefined;
  let ended = false;
  const open = broker.watchOpen(name, () => {
    ended = true;
    remove?.();
  });
  if (open === undefined) return;
  remove = core.heldCalls.add(heldScope(ctx), id, {
    cancel: (reason) => void open.cancel(reason),
    leftOpen: { forget: () => open.forget() },
  });
  if (ended) remove();
}

/** Move an approved request into what is forwarded. */
function release(ctx: ApprovalContext, decided: InboundResult, msg: JsonRpcRequest): void {
  decided.forward.push(msg);
  decided.requestIds.push(msg.id);
  decided.hasRequest = true;
  rememberPending(ctx.pending, idKey(msg.id), requestInfo(msg));
}

/** Can this exchange be held open (the request alone in its POST, `hold` mode)? */
export function holdable(decided: InboundResult): boolean {
  return (
    !decided.batch &&
    decided.held.length === 1 &&
    decided.forward.length === 0 &&
    decided.refused.length === 0 &&
    decided.held[0]!.decision.approval?.mode !== 'ticket'
  );
}

/**
 * Ticket resolution for every held request of an exchange that is not held open: approved
 * tickets are claimed and forwarded, the others answered (pending, denied, unavailable).
 */
export async function resolveTickets(
  core: ProxyCore,
  ctx: ApprovalContext,
  decided: InboundResult,
): Promise<void> {
  const broker = core.options.approvals;
  for (const held of decided.held) {
    // A `hold` rule whose request cannot be held alone is a ticket, and recorded as one.
    const input = heldCallInput(core, ctx, held);
    input.settings = { ...input.settings, mode: 'ticket' };
    const outcome: ApprovalOutcome = broker
      ? await broker.ticket(input)
      : { kind: 'unavailable', reason: 'approvals are not configured on this data path' };
    recordOutcome(ctx, held, outcome);
    if (outcome.kind === 'approved') {
      release(ctx, decided, held.msg);
      continue;
    }
    ctx.pending.delete(idKey(held.msg.id));
    const answer = outcomeResponse(held, outcome);
    decided.refused.push(answer);
    record(ctx, 'server-to-client', answer);
  }
  decided.held = [];
}

/**
 * Hold one request open until its verdict. Returns `continue` when the caller goes on with the
 * exchange (approved: the request is now in `decided.forward`, and the answer may already be an
 * open SSE stream; refused without a stream: the refusal is in `decided.refused`), `answered` when
 * the client got its answer (or left), and the time spent waiting.
 */
export async function holdRequest(
  core: ProxyCore,
  ctx: ApprovalContext,
  req: IncomingMessage,
  res: ServerResponse,
  decided: InboundResult,
): Promise<{ next: 'continue' | 'answered'; heldNs: bigint }> {
  const held = decided.held[0]!;
  decided.held = [];
  const broker = core.options.approvals;
  const startedAt = process.hrtime.bigint();
  const stream = /text\/event-stream/i.test(header(req.headers['accept']) ?? '');
  const progressToken = asObject(asObject(held.msg.params)?.['_meta'])?.['progressToken'];
  let keepalive: NodeJS.Timeout | undefined;
  const cancelListeners: Array<(reason: string, leaveOpen: boolean) => void> = [];
  // The client may leave while the approval is still being created, before the broker listens.
  let cancelledWith: { reason: string; leaveOpen: boolean } | undefined;
  // An explicit cancellation (notifications/cancelled, DELETE) after the connection closed, before
  // the hold ended (the approval still being created): the approval left open is cancelled then.
  let cancelAfterClose: string | undefined;
  const cancel = (reason: string, leaveOpen: boolean): void => {
    if (cancelledWith?.leaveOpen === true && !leaveOpen) cancelAfterClose ??= reason;
    cancelledWith ??= { reason, leaveOpen };
    for (const l of cancelListeners) l(reason, leaveOpen);
  };
  // A connection that closes is not a cancellation (a network blip, a load balancer's idle cut, a
  // crashed client): the approval stays open for the client's repeat, which waits on it again.
  const onClose = (): void => {
    if (!res.writableFinished)
      cancel('the client closed the connection without cancelling the request', true);
  };
  res.on('close', onClose);
  // The MCP way to give up on a request: notifications/cancelled naming its id (cancelHeld); or
  // deleting the session.
  const id = idKey(held.msg.id);
  const forgetHeld = core.heldCalls.add(heldScope(ctx), id, {
    cancel: (reason) => cancel(reason, false),
  });
  const opened = (name: string, expiresAt: string): void => {
    if (!stream || res.writableEnded) return;
    res.statusCode = 200;
    res.setHeader('content-type', 'text/event-stream');
    res.setHeader('cache-control', 'no-cache');
    res.setHeader('x-accel-buffering', 'no');
    if (ctx.session) res.setHeader('mcp-session-id', ctx.session.id);
    const totalSec = Math.max(1, Math.round((Date.parse(expiresAt) - Date.now()) / 1000));
    const started = Date.now();
    const tick = (): void => {
      if (res.writableEnded) return;
      let out = serializeSseComment(`waiting for approval ${name}`);
      if (typeof progressToken === 'string' || typeof progressToken === 'number') {
        const progress = Math.min(totalSec, Math.round((Date.now() - started) / 1000));
        out += serializeSseEvent({
          event: 'message',
          data: JSON.stringify({
            jsonrpc: '2.0',
            method: 'notifications/progress',
            params: {
              progressToken,
              progress,
              total: totalSec,
              message: `waiting for approval ${name} (expires ${expiresAt})`,
            },
          }),
        });
      }
      res.write(out);
    };
    tick();
    keepalive = setInterval(tick, KEEPALIVE_MS);
  };
  let outcome: ApprovalOutcome;
  try {
    outcome = broker
      ? await broker.hold(heldCallInput(core, ctx, held), {
          onCancel: (l) => {
            cancelListeners.push(l);
            if (cancelledWith !== undefined) l(cancelledWith.reason, cancelledWith.leaveOpen);
          },
          onCreated: opened,
        })
      : { kind: 'unavailable', reason: 'approvals are not configured on this data path' };
  } finally {
    if (keepalive !== undefined) clearInterval(keepalive);
    res.off('close', onClose);
    // Only this request's entry: a repeat with the same key (the same id, no session) that took
    // the hold over registered its own, and must stay cancellable.
    forgetHeld();
  }
  const heldNs = process.hrtime.bigint() - startedAt;
  if (outcome.kind === 'cancelled' && outcome.leftOpen === true) {
    if (cancelAfterClose !== undefined) void broker?.cancelOpen(outcome.name, cancelAfterClose);
    else keepCancellable(core, ctx, id, outcome.name);
  }
  recordOutcome(ctx, held, outcome);
  if (outcome.kind === 'approved') {
    release(ctx, decided, held.msg);
    return { next: 'continue', heldNs };
  }
  ctx.pending.delete(idKey(held.msg.id));
  if (res.destroyed || res.writableEnded) return { next: 'answered', heldNs };
  const answer = outcomeResponse(held, outcome);
  record(ctx, 'server-to-client', answer);
  decided.refused.push(answer);
  if (!res.headersSent) return { next: 'continue', heldNs }; // answered as JSON by the caller
  res.end(serializeSseEvent({ event: 'message', data: JSON.stringify(answer) }));
  return { next: 'answered', heldNs };
}
