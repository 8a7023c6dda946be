import { describeMasked } from '../approval/masked.js';
import type { Identity } from '../identity/types.js';
import { isJsonObject } from '../json.js';
import type { MaskScope } from '../mask/types.js';
import {
  errorResponse,
  type JsonRpcNotification,
  type JsonRpcRequest,
  type JsonRpcResponse,
  RpcCodes,
} from '../mcp/jsonrpc.js';
import {
  callContextFromRequest,
  completionTarget,
  subscriptionTargets,
  withCompletionTarget,
} from '../policy/call.js';
import type { CallContext, Decision, Direction, ListMethod, PolicyEngine } from '../policy/decision.js';
import type { SessionRecorder } from '../record/types.js';
import { type HeldArguments, HeldRequest, heldArguments } from './approve.js';
import { LIFECYCLE_METHODS, LIST_METHODS, methodLabel, type ProxyCore } from './core.js';
import type { RequestInfo, Session } from './session.js';

/**
 * The decide stage: build the policy's view of one call (CallContext), ask the engine, and report
 * the decision (metrics, events, recording). Lifecycle methods (initialize, ping, discovery) are
 * not subject to rules; list methods are allowed and their results filtered instead.
 */

function asObject(v: unknown): Record<string, unknown> {
  return isJsonObject(v) ? v : {};
}

/** What the proxy remembers about a request (method, tool / resource name, list kind). */
export function requestInfo(msg: JsonRpcRequest | JsonRpcNotification): RequestInfo {
  const method = msg.method;
  const params = asObject(msg.params);
  const info: RequestInfo = { method };
  if (method === 'tools/call' && typeof params['name'] === 'string') info.tool = params['name'];
  else if (method === 'prompts/get' && typeof params['name'] === 'string') info.tool = params['name'];
  else if (
    (method === 'resources/read' || method === 'resources/subscribe') &&
    typeof params['uri'] === 'string'
  ) {
    info.resource = params['uri'];
    const canonical = canonicalUri(info.resource);
    if (canonical !== undefined && canonical !== info.resource) info.canonicalResource = canonical;
  } else if (method.startsWith('tasks/') && typeof params['taskId'] === 'string') {
    info.taskId = params['taskId'];
  }
  if (LIST_METHODS.has(method)) info.list = method as ListMethod;
  return info;
}

/** The masking scope of a call: the method masked, and the tool or resource (both forms) the call names. */
export function maskScopeOf(method: string, call: RequestInfo): MaskScope {
  const scope: MaskScope = { method };
  if (call.tool !== undefined) scope.tool = call.tool;
  if (call.resource !== undefined) scope.resource = call.resource;
  if (call.canonicalResource !== undefined) scope.canonicalResource = call.canonicalResource;
  return scope;
}

export function callContext(
  msg: JsonRpcRequest,
  identity: Identity,
  direction: Direction,
  toolAnnotations: Record<string, unknown> | undefined,
): CallContext {
  // One definition of the policy's view of a request, shared with `mcp-warden policy test`.
  return callContextFromRequest(
    msg,
    identity,
    toolAnnotations ? { direction, toolAnnotations } : { direction },
  );
}

/** True when a client→server request is decided by rules (not lifecycle, not a list). */
export function isDecided(method: string, direction: Direction): boolean {
  if (method === 'ping') return false;
  if (direction === 'server-to-client') return true;
  return !LIFECYCLE_METHODS.has(method) && !LIST_METHODS.has(method);
}

/** The target each targeted method must carry as a string. */
const TARGET_FIELDS: ReadonlyMap<string, string> = new Map([
  ['tools/call', 'name'],
  ['prompts/get', 'name'],
  ['resources/read', 'uri'],
  ['resources/subscribe', 'uri'],
  ['resources/unsubscribe', 'uri'],
]);

/** A `completion/complete` whose `ref` names no prompt or resource the policy can decide. */
function undecidableCompletion(msg: JsonRpcRequest): boolean {
  if (Array.isArray(msg.params)) return true;
  return Object.hasOwn(asObject(msg.params), 'ref') && completionTarget(msg) === undefined;
}

/** Positional params, or a target field present with a value that is not a string. */
function hasUndecidableTarget(params: unknown, field: string): boolean {
  if (Array.isArray(params)) return true;
  if (typeof params !== 'object' || params === null || !Object.hasOwn(params, field)) return false;
  return typeof (params as Record<string, unknown>)[field] !== 'string';
}

export interface DecideInput {
  engine: PolicyEngine;
  identity: Identity;
  session: Session | undefined;
  recorder: SessionRecorder | undefined;
  /** Where a server→client request is masked (the relay's scope); a client's call: its own. */
  maskScope?: MaskScope;
}

/**
 * Decide one request. Returns the error response to send instead of forwarding, or undefined
 * when the request may pass (allowed, audit mode, lifecycle or list). With `canHold` (a request
 * that can wait for an answer: a client's request, or a server's request met in a stream), an
 * `approve` decision returns a HeldRequest for the approval stage instead of a refusal.
 */
export function decideRequest(
  core: ProxyCore,
  input: DecideInput,
  msg: JsonRpcRequest,
  direction: Direction,
  canHold: true,
): JsonRpcResponse | HeldRequest | undefined;
export function decideRequest(
  core: ProxyCore,
  input: DecideInput,
  msg: JsonRpcRequest,
  direction: Direction,
): JsonRpcResponse | undefined;
export function decideRequest(
  core: ProxyCore,
  input: DecideInput,
  msg: JsonRpcRequest,
  direction: Direction,
  canHold = false,
): JsonRpcResponse | HeldRequest | undefined {
  if (msg.method === 'subscriptions/listen' && direction === 'client-to-server') {
    return decideSubscriptions(core, input, msg);
  }
  if (!isDecided(msg.method, direction)) return undefined;
  const field = TARGET_FIELDS.get(msg.method);
  if (field !== undefined && hasUndecidableTarget(msg.params, field)) {
    // A target the policy cannot read: rules naming tools/prompts/resources would not match, so a
    // deny-list (allow the method, deny one target) would let `"name": ["delete_repo"]` through to
    // an upstream that coerces it (`tools[name]`). Refused as the upstream should refuse it. An
    // absent target is decided as it is (no rule naming a target matches it) and forwarded only
    // if a method-wide rule allows it: nothing upstream can turn "no name" into a tool.
    return errorResponse(
      msg.id,
      RpcCodes.invalidParams,
      `Invalid params: ${msg.method} needs "${field}" to be a string`,
      { code: 'ERR_BAD_REQUEST' },
    );
  }
  if (msg.method === 'completion/complete' && undecidableCompletion(msg)) {
    // A ref the policy cannot read (another type, a name that is not a string) could complete
    // the arguments of a prompt or resource the caller may not use.
    return errorResponse(
      msg.id,
      RpcCodes.invalidParams,
      'Invalid params: completion/complete needs ref {type: "ref/prompt", name} or {type: "ref/resource", uri}',
      { code: 'ERR_BAD_REQUEST' },
    );
  }
  let annotations: Record<string, unknown> | undefined;
  if (msg.method === 'tools/call') {
    const name = asObject(msg.params)['name'];
    if (typeof name === 'string') {
      annotations = input.session?.toolAnnotations.get(name) ?? core.toolAnnotations.get(name);
    }
  }
  const ctx = callContext(msg, input.identity, direction, annotations);
  let decision: Decision;
  try {
    decision = input.engine.decide(ctx);
    // A resource URI has aliases (`file:///a/../secret`, `file:///%73ecret`, `FILE://localhost/…`)
    // that the upstream resolves to one resource: decide its canonical form too, stricter wins.
    const canonical = ctx.resource === undefined ? undefined : canonicalUri(ctx.resource);
    if (canonical !== undefined && canonical !== ctx.resource) {
      const other = input.engine.decide({ ...ctx, resource: canonical });
      // The limits of both forms count, whichever decides: an alias of a limited URI (`/x/../a`)
      // is the same resource, and must not escape the limit on it.
      const limits = mergeLimits(decision.limits, other.limits);
      if (canonical !== `${ctx.resource}/` && strictness(other) > strictness(decision)) decision = other;
      if (limits !== decision.limits) decision = { ...decision, limits };
    }
    // A completion is also decided by the prompt or resource it completes (pkg/policy/call.ts).
    decision = withCompletionTarget(input.engine, decision, msg, input.identity, direction);
  } catch (err) {
    // An engine failure must never let a call through.
    core.logger.error(
      { event: 'decide-failed', method: msg.method, err: (err as Error).message },
      'policy engine failed',
    );
    decision = {
      action: 'deny',
      enforced: 'deny',
      policy: '',
      reason: 'policy evaluation failed; the call is refused (fail closed)',
      mode: 'enforce',
    };
  }
  // Limits count calls that go on: one forwarded now, here; one held for approval, when its
  // approval is asked for (approve.ts), so a repeat of a pending or approved call costs nothing.
  if (decision.limits !== undefined && decision.enforced === 'allow') {
    const limited = applyRateLimits(core, input.identity.principal, decision);
    report(core, input, msg, ctx.tool ?? ctx.prompt, limited, direction);
    if (limited.rateLimited !== undefined && !limited.rateLimited.audit)
      return rateLimitedResponse(msg.id, limited);
  } else if (canHold && decision.enforced === 'approve' && decision.approval !== undefined) {
    const tool = ctx.tool ?? ctx.prompt;
    const checked =
      decision.approval.maskedArguments === 'deny' ? maskedRefusal(core, input, msg, decision) : undefined;
    if (checked !== undefined && 'refused' in checked) {
      report(core, input, msg, tool, checked.refused, direction);
      return denialResponse(msg.id, checked.refused);
    }
    if (decision.limits === undefined) {
      report(core, input, msg, tool, decision, direction);
      return new HeldRequest(msg, decision, undefined, checked?.prepared);
    }
    // Its limits are checked when its approval is asked for: it is counted in the metrics then
    // (once, as refused by a limit or as held; approve.ts admitApproval), or at its outcome.
    report(core, input, msg, tool, decision, direction, false);
    return new HeldRequest(
      msg,
      decision,
      (counted) => countDecision(core, msg, tool, counted),
      checked?.prepared,
    );
  } else {
    report(core, input, msg, ctx.tool ?? ctx.prompt, decision, direction);
  }
  if (decision.enforced === 'allow') return undefined;
  return denialResponse(msg.id, decision);
}

/**
 * `approval.maskedArguments: deny`: a call whose arguments the masking changes is refused rather
 * than held, since a reviewer could not see what the masks hide. Otherwise the arguments it
 * masked, which the hold uses as they are (`prepared`: masked once, not again for the approval).
 */
function maskedRefusal(
  core: ProxyCore,
  input: DecideInput,
  msg: JsonRpcRequest,
  decision: Decision,
): { refused: Decision } | { prepared: HeldArguments } {
  let hidden: HeldArguments['hidden'];
  try {
    const prepared = heldArguments(core, input.engine, msg, input.maskScope);
    if (prepared.hidden === undefined) return { prepared };
    hidden = prepared.hidden;
  } catch (err) {
    core.logger.error(
      { event: 'mask-failed', method: msg.method, err: (err as Error).message },
      'masking a held call failed; it is refused',
    );
    hidden = { count: 1, length: 0, entries: [] };
  }
  const what = hidden.entries.length > 0 ? describeMasked(hidden) : 'the masking failed';
  // The rule that refuses: the deciding one, or another applicable approve rule saying deny.
  const by = decision.approval?.maskedArgumentsDeniedBy;
  const policy = by?.policy ?? decision.policy;
  const rule = by?.rule ?? decision.rule;
  const refused: Decision = {
    action: 'deny',
    enforced: 'deny',
    policy,
    ...(rule !== undefined ? { rule } : {}),
    reason: `the arguments hold values the policy masks (${what}); rule ${rule ?? ''}${by !== undefined ? ` of policy ${policy}` : ''} refuses such calls instead of asking a reviewer who could not see them (approval.maskedArguments: deny)`,
    mode: 'enforce',
    maskedArguments: true,
  };
  return { refused };
}

/**
 * 2026-07-28 `subscriptions/listen` is a protocol method (the client's notification stream), but
 * the resources it subscribes to are decided one by one as `resources/subscribe`: one refused
 * URI refuses the request, so a caller cannot subscribe to what it may not subscribe to.
 */
function decideSubscriptions(
  core: ProxyCore,
  input: DecideInput,
  msg: JsonRpcRequest,
): JsonRpcResponse | undefined {
  const uris = subscriptionTargets(msg);
  if (uris === undefined) return undefined;
  if (uris === 'invalid') {
    return errorResponse(
      msg.id,
      RpcCodes.invalidParams,
      'Invalid params: subscriptions/listen needs notifications.resourceSubscriptions to be a list of URIs',
      { code: 'ERR_BAD_REQUEST' },
    );
  }
  for (const uri of uris) {
    const subscribe: JsonRpcRequest = {
      jsonrpc: '2.0',
      id: msg.id,
      method: 'resources/subscribe',
      params: { uri },
    };
    const refused = decideRequest(core, input, subscribe, 'client-to-server');
    if (refused?.error) {
      // Say which subscription was refused: the request carries many.
      const data = { ...(refused.error.data as Record<string, unknown> | undefined), resource: uri };
      return {
        ...refused,
        error: { ...refused.error, message: `${refused.error.message} (subscribing to ${uri})`, data },
      };
    }
    if (refused) return refused;
  }
  return undefined;
}

const RANK = { allow: 0, approve: 1, deny: 2 } as const;

function strictness(d: Decision): number {
  return RANK[d.enforced] * 3 + RANK[d.action];
}

const UNRESERVED = /%(2[dDeE]|3[0-9]|[46][1-9a-fA-F]|[57][0-9aA]|5[fF]|7[eE])/g;

/**
 * The WHATWG form of a URI (dot segments resolved, scheme and host lower-cased, `localhost`
 * dropped from `file:`), with percent-encoded unreserved characters decoded (RFC 3986 §6.2.2.2),
 * until stable. Undefined when it does not parse as a URL.
 */
export function canonicalUri(uri: string): string | undefined {
  let current = uri;
  for (let i = 0; i < 4; i++) {
    let next: string;
    try {
      next = new URL(current.replace(UNRESERVED, (m) => String.fromCharCode(Number.parseInt(m.slice(1), 16))))
        .href;
    } catch {
      return undefined;
    }
    if (next === current) return next;
    current = next;
  }
  return current;
}

/** The limits of two decisions of one call, each (policy, rule) once; `a` itself when `b` adds none. */
function mergeLimits(a: Decision['limits'], b: Decision['limits']): Decision['limits'] {
  if (b === undefined || b.length === 0) return a;
  if (a === undefined || a.length === 0) return b;
  const extra = b.filter((l) => !a.some((m) => m.policy === l.policy && m.rule === l.rule));
  return extra.length === 0 ? a : [...a, ...extra];
}

/**
 * Count a call that is not denied against its rules' rate limits. Returns the decision to report:
 * the same one when every limit had room; a refusal (`rateLimited`, enforced `deny`) when an
 * enforced limit is exhausted; with only an audit-mode limit exhausted, the original outcome
 * reported as `audit-rate-limited` (the call goes on as decided).
 */
export function applyRateLimits(core: ProxyCore, principal: string, decision: Decision): Decision {
  const taken = core.rateLimiter.take(decision.limits!, principal);
  const over = taken.ok ? taken.audit : taken.limit;
  if (over === undefined) return decision;
  const retryAfterMs = taken.ok ? 0 : taken.retryAfterMs;
  const per = over.by === 'all' ? 'for all callers together' : 'per caller';
  const reason =
    `rate limit of ${over.requests} calls per ${over.per} ${per} (rule ${over.rule}) exceeded` +
    (taken.ok ? '' : `; retry in ${Math.max(1, Math.ceil(retryAfterMs / 1000))}s`);
  return {
    action: 'deny',
    enforced: taken.ok ? decision.enforced : 'deny',
    policy: over.policy,
    rule: over.rule,
    reason,
    mode: taken.ok ? 'audit' : 'enforce',
    rateLimited: { retryAfterMs, audit: taken.ok },
  };
}

/** The JSON-RPC error a call over a rate limit gets (`-31429`, data adds `retryAfterSeconds`). */
export function rateLimitedResponse(id: JsonRpcRequest['id'], decision: Decision): JsonRpcResponse {
  const retryAfterSeconds = Math.max(1, Math.ceil((decision.rateLimited?.retryAfterMs ?? 0) / 1000));
  return errorResponse(
    id,
    RpcCodes.rateLimited,
    `Rate limited (policy ${decision.policy}, rule ${decision.rule}): ${decision.reason}`,
    { policy: decision.policy, rule: decision.rule, reason: decision.reason, retryAfterSeconds },
  );
}

/** The JSON-RPC error a blocked call gets (`-31403`, data names policy, rule and reason). */
export function denialResponse(id: JsonRpcRequest['id'], decision: Decision): JsonRpcResponse {
  const approval = decision.enforced === 'approve';
  const reason = approval ? 'approval required' : decision.reason;
  const data: Record<string, unknown> = { policy: decision.policy, reason };
  if (decision.rule !== undefined) data['rule'] = decision.rule;
  if (approval) {
    data['approval'] = {
      status: 'unavailable',
      detail:
        'this call cannot be held for approval (a notification, or a request inside a 2026-07-28 input_required result)',
    };
  }
  const where = decision.policy
    ? ` (policy ${decision.policy}${decision.rule ? `, rule ${decision.rule}` : ''})`
    : '';
  return errorResponse(id, RpcCodes.denied, `Forbidden by policy${where}: ${reason}`, data);
}

/** A reason as recorded: a default deny quotes the call's target (a URI, a name), masked like it. */
function recordedReason(core: ProxyCore, engine: PolicyEngine, msg: JsonRpcRequest, reason: string): string {
  const masker = core.maskerFor(engine);
  if (!masker) return reason;
  try {
    return masker.maskMessage({ reason }, maskScopeOf(msg.method, requestInfo(msg))).value.reason;
  } catch {
    return 'the reason could not be masked';
  }
}

/** True when a decision is an audit-mode one (reported, never enforced). */
function isAudit(decision: Decision): boolean {
  const limited = decision.rateLimited;
  return limited !== undefined ? limited.audit : decision.action !== decision.enforced;
}

/** Count a decided call in `requests_total` and, when it is blocked, `blocked_total` (once per call). */
function countDecision(
  core: ProxyCore,
  msg: JsonRpcRequest,
  tool: string | undefined,
  decision: Decision,
): void {
  const m = core.metrics;
  const limited = decision.rateLimited;
  const audit = isAudit(decision);
  const label =
    limited !== undefined
      ? audit
        ? 'audit-rate-limited'
        : 'rate-limited'
      : audit
        ? `audit-${decision.action}`
        : decision.enforced;
  m.requests.inc({ policy: decision.policy, method: methodLabel(msg.method), decision: label });
  if (decision.enforced !== 'allow' && !(limited !== undefined && audit)) {
    m.blocked.inc({
      policy: decision.policy,
      rule: decision.rule ?? 'default-deny',
      tool: core.toolLabel(tool),
      reason:
        limited !== undefined
          ? 'rate-limit'
          : decision.maskedArguments === true
            ? 'masked-arguments'
            : decision.enforced === 'approve'
              ? 'approval-required'
              : decision.rule
                ? 'rule'
                : 'no-rule',
    });
  }
}

/** Report a decision: metrics (unless `count` is false: counted later), event, recording, log. */
function report(
  core: ProxyCore,
  input: DecideInput,
  msg: JsonRpcRequest,
  tool: string | undefined,
  decision: Decision,
  direction: Direction,
  count = true,
): void {
  if (count) countDecision(core, msg, tool, decision);
  const audit = isAudit(decision);
  const event: Record<string, unknown> = {
    decision,
    method: msg.method,
    principal: input.identity.principal,
    direction,
  };
  if (tool !== undefined) event['tool'] = tool;
  if (input.session) event['session'] = input.session.id;
  core.events.emit('decision', event);
  input.recorder?.record({
    type: 'decision',
    method: msg.method,
    ...(tool !== undefined ? { tool } : {}),
    decision: decision.action,
    enforced: decision.enforced,
    policy: decision.policy,
    ...(decision.rule !== undefined ? { rule: decision.rule } : {}),
    reason: recordedReason(core, input.engine, msg, decision.reason),
    ...(decision.rateLimited !== undefined ? { rateLimited: true } : {}),
    requestId: msg.id,
  });
  if (decision.enforced !== 'allow' || audit) {
    core.logger.info(
      {
        event: 'decision',
        method: msg.method,
        tool: core.toolLabel(tool),
        action: decision.action,
        enforced: decision.enforced,
        policy: decision.policy,
        rule: decision.rule,
        ...(decision.rateLimited !== undefined ? { rateLimited: true } : {}),
        direction,
        session: input.session?.id,
      },
      audit ? 'audit: would have blocked' : 'blocked',
    );
  }
}
