import { errorMessage } from '../errors.js';
import type { Identity } from '../identity/types.js';
import { isJsonObject } from '../json.js';
import type { MaskResult, MaskScope } from '../mask/types.js';
import {
  classifyMessage,
  errorResponse,
  idKey,
  type JsonRpcId,
  type JsonRpcMessage,
  type JsonRpcRequest,
  type JsonRpcResponse,
  RpcCodes,
} from '../mcp/jsonrpc.js';
import type { ListMethod, PolicyEngine } from '../policy/decision.js';
import { statelessRecordingKey } from '../record/recorder.js';
import type { SessionRecorder } from '../record/types.js';
import { HeldRequest } from './approve.js';
import type { ClientStream } from './client-stream.js';
import type { ProxyCore } from './core.js';
import { decideRequest, maskScopeOf } from './decide.js';
import { cancelServerHold, holdServerRequest, replaySettled } from './hold-server.js';
import { type RequestInfo, rememberPending, type ServerHold, type Session } from './session.js';

/**
 * The server → client stages for one message: match a response to its request, learn tool
 * annotations and filter list results, decide server-initiated requests, mask, record.
 */
export interface OutboundContext {
  engine: PolicyEngine;
  identity: Identity;
  session: Session | undefined;
  recorder: SessionRecorder | undefined;
  /** Requests forwarded by this exchange or session, by id key. */
  pending: Map<string, RequestInfo>;
  /**
   * The call whose answer this stream carries (a POST of one request): the messages the server
   * sends on it without an id of their own (progress, logs, server requests) belong to that call
   * and are masked in its scope. Absent on a session's own stream (GET, legacy SSE) and for a
   * batch: those messages are masked with every scoped rule.
   */
  call?: RequestInfo;
  /**
   * Answer a blocked server→client request upstream (so the server does not hang). Resolves true
   * when the upstream accepted the answer; never rejects.
   */
  answerUpstream: (response: JsonRpcResponse) => Promise<boolean>;
  /**
   * The client's event stream these messages are relayed on, when they are: a server request held
   * for approval is delivered on it once approved (hold-server.ts).
   */
  stream?: ClientStream;
  /** Server requests held for approval on an exchange without a session, by id key. */
  serverHolds?: Map<string, ServerHold>;
  /** The upstream id of the SSE event whose messages are being processed (set by the relay). */
  eventId?: string;
}

const LIST_FIELDS: Record<ListMethod, string> = {
  'tools/list': 'tools',
  'resources/list': 'resources',
  'resources/templates/list': 'resourceTemplates',
  'prompts/list': 'prompts',
};

function asObject(v: unknown): Record<string, unknown> | undefined {
  return isJsonObject(v) ? v : undefined;
}

/** The list kinds a result carries (an array under a list method's field), whatever was asked. */
function listsIn(result: Record<string, unknown>): ListMethod[] {
  const out: ListMethod[] = [];
  for (const list in LIST_FIELDS)
    if (Array.isArray(result[LIST_FIELDS[list as ListMethod]])) out.push(list as ListMethod);
  return out;
}

/**
 * The masking scope of a message: the call it belongs to (tool, resource and its canonical form;
 * a task's result belongs to the call that created the task). A message the proxy cannot tie to
 * its call is masked with every scoped rule (fail closed).
 */
function scopeOf(ctx: OutboundContext, info: RequestInfo | undefined, method: string): MaskScope {
  let call = info;
  if (call?.taskId !== undefined) call = ctx.session?.taskCalls?.get(call.taskId);
  return call === undefined ? { method, unknown: true } : maskScopeOf(method, call);
}

/** A message to deliver, with its serialization (what the client receives and the recording holds). */
export interface Outbound {
  message: JsonRpcMessage;
  json: string;
}

/**
 * Process one message from the upstream. Returns the message to deliver to the client (maybe a
 * new object), or undefined when it must not be delivered.
 */
export function processServerMessage(
  core: ProxyCore,
  ctx: OutboundContext,
  value: unknown,
): JsonRpcMessage | undefined {
  return processServerMessageJson(core, ctx, value)?.message;
}

/**
 * `processServerMessage`, plus the message serialized once: the relay sends that text and the
 * recorder seals the same text, so a large result is not serialized twice. Re-serialized even
 * when unchanged: the upstream's text could hold duplicate keys, and the client's parser must see
 * what the masker and the list filter saw.
 */
export function processServerMessageJson(
  core: ProxyCore,
  ctx: OutboundContext,
  value: unknown,
): Outbound | undefined {
  const c = classifyMessage(value);
  if (!c.ok) {
    core.logger.warn(
      { event: 'upstream-invalid-message', reason: c.reason },
      'dropped an invalid message from the upstream',
    );
    return undefined;
  }
  let msg = c.message;
  let scope: MaskScope;
  // Long-lived streams see policy changes: each message is decided by the engine current now.
  // With no valid policy at all, server requests are refused and lists come back empty.
  const current = core.engine();
  if (current !== undefined && current !== ctx.engine) ctx.engine = current;
  const engineLost = current === undefined;
  if (c.kind === 'response') {
    const res = msg as JsonRpcResponse;
    const waiter = typeof res.id === 'string' ? ctx.session?.internalWaiters?.get(res.id) : undefined;
    if (waiter) {
      // The answer to the proxy's own request: consumed here, never delivered to the client.
      waiter(asObject(res.result));
      return undefined;
    }
    const key = idKey(res.id);
    const info = ctx.pending.get(key);
    if (info) ctx.pending.delete(key);
    const result = asObject(res.result);
    if (result && result['resultType'] === 'input_required' && res.id !== null) {
      const refused = decideInputRequests(core, ctx, res.id, result, engineLost);
      if (refused) return deliverable(core, ctx, refused);
    }
    // Every list a result carries is filtered, whatever its request asked: an answer shaped unlike
    // its request (an upstream's mistake, or an id the proxy lost track of) never passes a list
    // unfiltered. Annotations are learnt only from what is really a tools/list answer (or one the
    // proxy lost track of), never from a list-shaped result of another request.
    if (result) {
      let filtered = result;
      for (const list of listsIn(result))
        filtered = filterList(core, ctx, list, filtered, engineLost, !info || info.list === list);
      if (filtered !== result) msg = { ...res, result: filtered };
      const task = asObject(result['task']);
      if (info?.method === 'tools/call' && ctx.session && typeof task?.['taskId'] === 'string') {
        ctx.session.taskCalls ??= new Map();
        rememberPending(ctx.session.taskCalls, task['taskId'], info);
      }
    }
    scope = scopeOf(ctx, info, info?.method ?? 'unknown');
  } else if (c.kind === 'request') {
    const req = msg as JsonRpcRequest;
    if (ctx.eventId !== undefined && ctx.session?.released?.isReleased(ctx.eventId, idKey(req.id))) {
      // The upstream replays (a client resumed) a request a reviewer already released: the client
      // gets it once, as the event the proxy wrote for it (released.ts), never held a second time.
      return undefined;
    }
    // Replayed after its hold ended with an answer to the server (denied, expired, ...): the
    // server has its outcome; not held, nor decided, again.
    if (replaySettled(core, ctx, req)) return undefined;
    scope = scopeOf(ctx, ctx.call, req.method);
    const input = {
      engine: ctx.engine,
      identity: ctx.identity,
      session: ctx.session,
      recorder: ctx.recorder,
      maskScope: scope,
    };
    const denied = engineLost
      ? errorResponse(req.id, RpcCodes.policyUnavailable, 'no valid policy is loaded; refused (fail closed)')
      : decideRequest(core, input, req, 'server-to-client', true);
    if (denied instanceof HeldRequest) {
      // Waits for a reviewer without holding up the stream: delivered later, or answered upstream.
      recordMasked(core, ctx, req, scope);
      holdServerRequest(core, ctx, denied, scope);
      return undefined;
    }
    if (denied) {
      recordMasked(core, ctx, req, scope);
      void ctx.answerUpstream(denied);
      return undefined;
    }
  } else {
    const method = (msg as { method: string }).method;
    scope = scopeOf(ctx, ctx.call, method);
    if (method === 'notifications/cancelled' && cancelServerHold(ctx, (msg as { params?: unknown }).params)) {
      // The server gave up on a request still held for approval: the client never saw it.
      recordMasked(core, ctx, msg, scope);
      return undefined;
    }
    if (!method.startsWith('notifications/')) {
      // A server request without an id (`sampling/createMessage` as a notification) is decided
      // like the request it names; refused, it is dropped (a notification gets no answer).
      const as = { ...(msg as object), id: null } as unknown as JsonRpcRequest;
      const input = {
        engine: ctx.engine,
        identity: ctx.identity,
        session: ctx.session,
        recorder: ctx.recorder,
      };
      if (engineLost || decideRequest(core, input, as, 'server-to-client')) {
        recordMasked(core, ctx, msg, scope);
        return undefined;
      }
    }
    if (method === 'notifications/tools/list_changed') {
      // Annotations may have changed: list again before the next unknown tool is called.
      if (ctx.session) {
        ctx.session.annotationsFetched = false;
        ctx.session.toolAnnotations.clear();
      } else core.annotationsFetchedAt = 0;
    }
  }
  // Keyed-hash replacements are stable within a session; stateless traffic (no session) is scoped
  // like its recording, per principal and hour, so principals never share hash tokens.
  scope.session = ctx.session ? ctx.session.id : statelessRecordingKey(ctx.identity.principal);
  const masker = core.maskerFor(ctx.engine);
  if (masker) {
    let r: MaskResult<JsonRpcMessage>;
    try {
      r = masker.maskMessage(msg, scope);
    } catch (err) {
      // Never deliver what could not be masked (fail closed): a response becomes an error.
      core.logger.error(
        { event: 'mask-failed', method: scope.method, err: errorMessage(err) },
        'masking failed',
      );
      if (c.kind !== 'response') return undefined;
      msg = errorResponse(
        (msg as JsonRpcResponse).id,
        RpcCodes.internalError,
        'Internal error: the result could not be masked',
        {
          code: 'ERR_WARDEN',
        },
      );
      return deliverable(core, ctx, msg);
    }
    if (r.hits.length > 0) {
      msg = r.value;
      countHits(core, ctx, scope.method, r.hits);
    }
  }
  return deliverable(core, ctx, msg);
}

/**
 * A server request a reviewer released: masked in the scope it was decided in and serialized for
 * the client, as any server message is. Not recorded again (it was when it arrived). Undefined
 * when it cannot be masked or serialized: it is then never delivered.
 */
export function releasedServerRequest(
  core: ProxyCore,
  ctx: OutboundContext,
  msg: JsonRpcRequest,
  scope: MaskScope,
): string | undefined {
  let out: JsonRpcMessage = msg;
  const masker = core.maskerFor(ctx.engine);
  if (masker) {
    const keyed = {
      ...scope,
      session: ctx.session ? ctx.session.id : statelessRecordingKey(ctx.identity.principal),
    };
    try {
      const r = masker.maskMessage(out, keyed);
      if (r.hits.length > 0) {
        out = r.value;
        countHits(core, ctx, keyed.method, r.hits);
      }
    } catch (err) {
      core.logger.error(
        { event: 'mask-failed', method: scope.method, err: errorMessage(err) },
        'masking failed',
      );
      return undefined;
    }
  }
  try {
    return JSON.stringify(out);
  } catch {
    return undefined;
  }
}

/** Record a message the client will not receive (a refused server request): masked, as always. */
function recordMasked(core: ProxyCore, ctx: OutboundContext, msg: JsonRpcMessage, scope: MaskScope): void {
  if (!ctx.recorder) return;
  const masker = core.maskerFor(ctx.engine);
  if (!masker) {
    record(ctx, 'server-to-client', msg);
    return;
  }
  try {
    record(ctx, 'server-to-client', masker.maskMessage(msg, scope).value);
  } catch (err) {
    // Unmaskable: the envelope only, never the payload.
    core.logger.error({ event: 'mask-failed', err: errorMessage(err) }, 'masking for the recording failed');
    const m = msg as { id?: unknown; method?: string };
    record(ctx, 'server-to-client', { jsonrpc: '2.0', id: m.id, method: m.method });
  }
}

/** Serialize and record a message the client will receive. */
function deliverable(core: ProxyCore, ctx: OutboundContext, msg: JsonRpcMessage): Outbound | undefined {
  let json: string;
  try {
    json = JSON.stringify(msg);
  } catch {
    // Nested deeper than the serializer's stack (JSON.parse accepts it, JSON.stringify does not).
    core.logger.warn({ event: 'upstream-unserializable' }, 'an upstream message is nested too deeply');
    if (!('id' in msg) || 'method' in msg) return undefined;
    const failed = errorResponse(
      (msg as JsonRpcResponse).id,
      RpcCodes.internalError,
      'Internal error: the result is nested too deeply to be relayed',
      { code: 'ERR_WARDEN' },
    );
    json = JSON.stringify(failed);
    record(ctx, 'server-to-client', failed, json);
    return { message: failed, json };
  }
  record(ctx, 'server-to-client', msg, json);
  return { message: msg, json };
}

/**
 * 2026-07-28 multi-round-trip: a result asking the client for input (`inputRequests`: sampling,
 * elicitation, roots) embeds what were server→client requests before. Each is decided like one;
 * if any is refused, the client's request fails with that refusal instead (the upstream keeps
 * nothing waiting: it only resumes when the client retries with answers).
 */
function decideInputRequests(
  core: ProxyCore,
  ctx: OutboundContext,
  id: JsonRpcId,
  result: Record<string, unknown>,
  engineLost: boolean,
): JsonRpcResponse | undefined {
  const requests = asObject(result['inputRequests']);
  if (!requests) return undefined;
  if (engineLost)
    return errorResponse(id, RpcCodes.policyUnavailable, 'no valid policy is loaded; refused (fail closed)');
  const input = { engine: ctx.engine, identity: ctx.identity, session: ctx.session, recorder: ctx.recorder };
  for (const key in requests) {
    const r = asObject(requests[key]);
    if (!r || typeof r['method'] !== 'string') continue;
    const params = asObject(r['params']);
    const embedded: JsonRpcRequest = {
      jsonrpc: '2.0',
      id,
      method: r['method'],
      ...(params ? { params } : {}),
    };
    const denied = decideRequest(core, input, embedded, 'server-to-client');
    if (denied) return denied;
  }
  return undefined;
}

function countHits(
  core: ProxyCore,
  ctx: OutboundContext,
  method: string,
  hits: Array<{ policy: string; detector: string }>,
): void {
  const detectors: Record<string, number> = {};
  // One counter increment per (policy, detector), not per value: a large result has dozens.
  const byLabel = new Map<string, { policy: string; detector: string; n: number }>();
  for (const h of hits) {
    const key = `${h.policy}\0${h.detector}`;
    const seen = byLabel.get(key);
    if (seen === undefined) byLabel.set(key, { policy: h.policy, detector: h.detector, n: 1 });
    else seen.n++;
    detectors[h.detector] = (detectors[h.detector] ?? 0) + 1;
  }
  for (const { policy, detector, n } of byLabel.values())
    core.metrics.maskedValues.inc({ policy, detector }, n);
  core.events.emit('mask', { hits, method });
  ctx.recorder?.record({ type: 'mask', method, detectors });
}

function filterList(
  core: ProxyCore,
  ctx: OutboundContext,
  list: ListMethod,
  result: Record<string, unknown>,
  engineLost: boolean,
  learn: boolean,
): Record<string, unknown> {
  const field = LIST_FIELDS[list];
  const items = result[field];
  if (!Array.isArray(items)) return result;
  if (list === 'tools/list' && learn) {
    for (const t of items) {
      const tool = asObject(t);
      if (!tool || typeof tool['name'] !== 'string') continue;
      const ann = asObject(tool['annotations']);
      core.learnTool(tool['name'], ann, tool['inputSchema']);
      if (ctx.session && ann) ctx.session.toolAnnotations.set(tool['name'], ann);
    }
  }
  let kept: unknown[];
  if (engineLost) return { ...result, [field]: [] };
  try {
    kept = ctx.engine.filterList(list, items, ctx.identity);
  } catch (err) {
    core.logger.error(
      { event: 'filter-failed', method: list, err: (err as Error).message },
      'list filtering failed',
    );
    kept = [];
  }
  return { ...result, [field]: kept };
}

/** An engine's recording payload setting (engines are immutable; this is asked per message). */
const payloadsOf = new WeakMap<PolicyEngine, 'masked' | 'none'>();

/**
 * Record a message (payload per the policies' recording settings). `json`, when given, must be
 * `JSON.stringify(message)`: the recorder then seals that text instead of serializing again.
 */
export function record(
  ctx: { recorder: SessionRecorder | undefined; engine: PolicyEngine },
  direction: 'client-to-server' | 'server-to-client',
  message: unknown,
  json?: string,
): void {
  const rec = ctx.recorder;
  if (!rec) return;
  let payloads = payloadsOf.get(ctx.engine);
  if (payloads === undefined) {
    payloads = ctx.engine.recording().payloads;
    payloadsOf.set(ctx.engine, payloads);
  }
  if (payloads === 'none') {
    const m = asObject(message) ?? {};
    const stripped: Record<string, unknown> = { jsonrpc: '2.0' };
    if ('id' in m) stripped['id'] = m['id'];
    if ('method' in m) stripped['method'] = m['method'];
    if ('error' in m) stripped['error'] = m['error'];
    rec.record({ type: 'message', direction, message: stripped });
  } else
    rec.record(
      json === undefined
        ? { type: 'message', direction, message }
        : { type: 'message', direction, message, json },
    );
}

/** The error a client gets for a request whose response the upstream never delivered. */
export function lostResponse(id: JsonRpcId, why: string): JsonRpcResponse {
  return errorResponse(id, RpcCodes.upstreamError, `Upstream error: ${why}`, { code: 'ERR_UPSTREAM' });
}
