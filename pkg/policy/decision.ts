import type { Identity, TrustedIssuer } from '../identity/types.js';

/**
 * What the data path asks the policy engine, and what it answers. Shared by the gateway and the
 * sidecar; the engine that implements it lives in this folder.
 */
export const Actions = ['allow', 'deny', 'approve'] as const;
export type Action = (typeof Actions)[number];

export const Directions = { clientToServer: 'client-to-server', serverToClient: 'server-to-client' } as const;
export type Direction = (typeof Directions)[keyof typeof Directions];

export interface CallContext {
  /** JSON-RPC method, e.g. `tools/call`, `resources/read`, `sampling/createMessage`. */
  method: string;
  /** `tools/call`: the tool name. */
  tool?: string;
  /** `resources/read`, `resources/subscribe`: the URI. */
  resource?: string;
  /** `prompts/get`: the prompt name. */
  prompt?: string;
  /** `params.arguments` for tools/prompts, otherwise `params` (never undefined). */
  args: Record<string, unknown>;
  identity: Identity;
  /** Annotations the upstream declared for this tool in its `tools/list`, if known. */
  toolAnnotations?: Record<string, unknown>;
  direction: Direction;
}

export interface ApprovalSettings {
  approvers: Array<Record<string, string>>;
  timeout: string;
  mode: 'hold' | 'ticket';
  /**
   * A call whose arguments the masking changes: `review` asks a reviewer, telling them what was
   * masked (the approval's `spec.maskedArguments`); `deny` refuses it. Absent: `review`.
   */
  maskedArguments?: 'review' | 'deny';
  /**
   * `deny` set by another applicable approve rule than the deciding one (the strictest setting
   * wins): that rule, for the refusal's reason.
   */
  maskedArgumentsDeniedBy?: { policy: string; rule: string };
}

/** A rule's `rateLimit`, as the data path counts it (see pkg/proxy/ratelimit.ts). */
export interface RateLimit {
  /** `namespace/name` or `name` of the rule's policy. */
  policy: string;
  rule: string;
  requests: number;
  perMs: number;
  /** The period as the policy spells it (`1m`), for messages. */
  per: string;
  by: 'principal' | 'all';
  /** The rule's policy is in audit mode: an exceeded limit is reported, not enforced. */
  audit: boolean;
}

export interface Decision {
  /** What the applicable rules decided. */
  action: Action;
  /** What the data path must do: equals `action`, except `allow` when the deciding policy is in audit mode. */
  enforced: Action;
  /** `namespace/name` (cluster) or `name` (files) of the deciding policy; `''` when none applied. */
  policy: string;
  /** The deciding rule; undefined for the default deny. */
  rule?: string;
  /** Human-readable reason, shown to the client on deny. */
  reason: string;
  mode: 'enforce' | 'audit';
  approval?: ApprovalSettings;
  /**
   * The rate limits of every applicable rule that has one, when the call is not denied: the data
   * path refuses the call (-31429) when any of them is exhausted.
   */
  limits?: readonly RateLimit[];
  /**
   * Set by the data path on the decision it reports when a limit is exhausted: it refused the call,
   * or (`audit`) only an audit-mode policy's limit was, and the call went on as decided.
   */
  rateLimited?: { retryAfterMs: number; audit: boolean };
  /**
   * Set by the data path on the decision it reports when an `approve` rule with
   * `approval.maskedArguments: deny` refused the call because masking changed its arguments.
   */
  maskedArguments?: true;
}

export type ListMethod = 'tools/list' | 'resources/list' | 'resources/templates/list' | 'prompts/list';

/** A compiled set of policies (every policy that selects this pod / this gateway). Immutable. */
export interface PolicyEngine {
  decide(ctx: CallContext): Decision;
  /** Keep only the list items the caller may use (each item decided as the matching call would be). */
  filterList(method: ListMethod, items: readonly unknown[], identity: Identity): unknown[];
  /** Issuers trusted by any applicable policy (deduplicated). */
  trustedIssuers(): readonly TrustedIssuer[];
  /**
   * The union of masking rules, each tagged with its policy (`namespace/name` or `name`). The
   * engine of pkg/policy returns `MaskingRule` objects (see `CompiledPolicyEngine`).
   */
  maskingRules(): Array<{ policy: string; rule: unknown }>;
  /**
   * Recording settings (union): enabled if any policy enables it; payloads `masked` if any enabling
   * policy records masked payloads, `none` only if all of them say none; sinks: every sink named.
   */
  recording(): { enabled: boolean; payloads: 'masked' | 'none'; sinks?: Array<'volume' | 'stdout'> };
  /** Names and generations, for recordings and status. */
  policies(): Array<{ name: string; generation: number }>;
}

/**
 * Where the data path gets its current policy from: files (gateway) or the API server (sidecar).
 * `current()` returns undefined while no valid policy has been loaded, or when the source is
 * unavailable past its grace period: the data path then refuses every call (fail closed).
 */
export interface PolicySource {
  current(): PolicyEngine | undefined;
  onChange(listener: (engine: PolicyEngine | undefined) => void): () => void;
  close(): Promise<void>;
}
