import type { Identity } from '../identity/types.js';
import type { CallContext, Direction } from './decision.js';

function asObject(v: unknown): Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : {};
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
