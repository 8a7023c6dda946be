import type { Identity } from '../identity/types.js';
import { isJsonObject } from '../json.js';
import type { CallContext, Decision, Direction } from './decision.js';

function asObject(v: unknown): Record<string, unknown> {
  return isJsonObject(v) ? v : {};
}

/**
 * The policy's view of one JSON-RPC request (what `mcp-warden policy test` decides; the proxy
 * builds the same shape): `tools/call` → tool + `params.arguments`; `prompts/get` → prompt +
 * `params.arguments`; `resources/read|subscribe|unsubscribe` → resource (`params.uri`) + params;
 * anything else → params.
 */
export function callContextFromRequest(
  request: { method: string; params?: unknown },
  identity: Identity,
  options: { direction?: Direction; toolAnnotations?: Record<string, unknown> } = {},
): CallContext {
  const params = asObject(request.params);
  const ctx: CallContext = {
    method: request.method,
    args: params,
    identity,
    direction: options.direction ?? 'client-to-server',
  };
  switch (request.method) {
    case 'tools/call':
      if (typeof params['name'] === 'string') ctx.tool = params['name'];
      ctx.args = asObject(params['arguments']);
      if (options.toolAnnotations !== undefined) ctx.toolAnnotations = options.toolAnnotations;
      break;
    case 'prompts/get':
      if (typeof params['name'] === 'string') ctx.prompt = params['name'];
      ctx.args = asObject(params['arguments']);
      break;
    case 'resources/read':
    case 'resources/subscribe':
    case 'resources/unsubscribe':
      if (typeof params['uri'] === 'string') ctx.resource = params['uri'];
      break;
    default:
      break;
  }
  return ctx;
}

/**
 * The call a `completion/complete` completes the arguments of: `prompts/get` of a `ref/prompt`,
 * `resources/read` of a `ref/resource` (its URI template read as a URI, as list filtering does).
 * Undefined for any other request, or a ref that names neither.
 */
export function completionTarget(request: {
  method: string;
  params?: unknown;
}): { method: string; params: Record<string, unknown>; what: string } | undefined {
  if (request.method !== 'completion/complete') return undefined;
  const ref = asObject(asObject(request.params)['ref']);
  if (ref['type'] === 'ref/prompt' && typeof ref['name'] === 'string') {
    return { method: 'prompts/get', params: { name: ref['name'] }, what: `prompt ${ref['name']}` };
  }
  if (ref['type'] === 'ref/resource' && typeof ref['uri'] === 'string') {
    return { method: 'resources/read', params: { uri: ref['uri'] }, what: `resource ${ref['uri']}` };
  }
  return undefined;
}

/**
 * The decision for a request, given the engine's decision on the request itself: completing a
 * prompt's or resource template's arguments reveals what the server would offer for it, so a
 * `completion/complete` is refused when the caller could not get that prompt or read that
 * resource (nor have it held for approval), whatever the rules say of the method.
 */
export function withCompletionTarget(
  engine: { decide(ctx: CallContext): Decision },
  decision: Decision,
  request: { method: string; params?: unknown },
  identity: Identity,
  direction: Direction,
): Decision {
  const target = completionTarget(request);
  if (target === undefined || decision.enforced === 'deny') return decision;
  const targetDecision = engine.decide(callContextFromRequest(target, identity, { direction }));
  if (targetDecision.enforced !== 'deny') return decision;
  return { ...targetDecision, reason: `completing ${target.what}: ${targetDecision.reason}` };
}

/**
 * The resources a 2026-07-28 `subscriptions/listen` subscribes to
 * (`params.notifications.resourceSubscriptions`, which replaces `resources/subscribe`): each is
 * decided as a `resources/subscribe` of that URI. Undefined when the request subscribes to none;
 * `'invalid'` when the list is not an array of strings (the policy could not read it).
 */
export function subscriptionTargets(request: {
  method: string;
  params?: unknown;
}): string[] | 'invalid' | undefined {
  if (request.method !== 'subscriptions/listen') return undefined;
  const notifications = asObject(request.params)['notifications'];
  if (notifications === undefined) return undefined;
  if (!isJsonObject(notifications)) return 'invalid';
  const uris = notifications['resourceSubscriptions'];
  if (uris === undefined) return undefined;
  if (!Array.isArray(uris) || uris.some((u) => typeof u !== 'string')) return 'invalid';
  return uris as string[];
}
