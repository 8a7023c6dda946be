/**
 * Which JSON-RPC methods the policy engine decides.
 *
 * - `protocol`: always allowed, never decided — the protocol cannot work without them
 *   (`initialize`, `ping`, `server/discover` and `subscriptions/listen` of 2026-07-28, and every
 *   notification: `notifications/initialized`, `notifications/cancelled`, `notifications/progress`,
 *   ...). They carry no capability. The proxy's LIFECYCLE_METHODS list the same methods.
 * - `list`: always allowed, but the result is filtered per caller (`tools/list`,
 *   `resources/list`, `resources/templates/list`, `prompts/list`): an item stays when the matching
 *   call (tools/call, resources/read, prompts/get) would be allowed or need approval.
 * - `decided`: everything else, in both directions (`tools/call`, `resources/read`,
 *   `resources/subscribe`, `prompts/get`, `completion/complete`, `logging/setLevel`, and the
 *   server-to-client requests `sampling/createMessage`, `elicitation/create`, `roots/list`, plus any
 *   method a future protocol version adds): denied unless a rule allows it.
 */
import type { ListMethod } from './decision.js';

export type MethodClass = 'protocol' | 'list' | 'decided';

/** Besides every `notifications/*`. `server/discover` and `subscriptions/listen` are 2026-07-28. */
export const ProtocolMethods: readonly string[] = [
  'initialize',
  'ping',
  'server/discover',
  'subscriptions/listen',
];
const protocolSet = new Set(ProtocolMethods);
export const ListMethods: readonly ListMethod[] = [
  'tools/list',
  'resources/list',
  'resources/templates/list',
  'prompts/list',
];

const listSet = new Set<string>(ListMethods);

export function methodClass(method: string): MethodClass {
  if (protocolSet.has(method) || method.startsWith('notifications/')) return 'protocol';
  if (listSet.has(method)) return 'list';
  return 'decided';
}

/** The kind of target a method carries, which the rule's tools / resources / prompts globs constrain. */
export type TargetKind = 'tool' | 'resource' | 'prompt' | undefined;

export function methodTarget(method: string): TargetKind {
  switch (method) {
    case 'tools/call':
      return 'tool';
    case 'resources/read':
    case 'resources/subscribe':
    case 'resources/unsubscribe':
      return 'resource';
    case 'prompts/get':
      return 'prompt';
    default:
      return undefined;
  }
}

/** Default `match.methods` for a rule that names tools / resources / prompts but no methods. */
export const DefaultMethods = {
  tool: ['tools/call'],
  resource: ['resources/read', 'resources/subscribe', 'resources/unsubscribe'],
  prompt: ['prompts/get'],
} as const;
