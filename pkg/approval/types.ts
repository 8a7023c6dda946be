import type { ApprovalSettings } from '../policy/decision.js';
import type { ApprovalPhase, MaskedArguments, MCPApprovalSpec } from '../policy/schema.js';

/**
 * The approval broker's view of one `MCPApproval`: the held call (spec, immutable once created),
 * the reviewer's decision (spec.decision, admitted and stamped by the webhook) and the phase the
 * data path wrote (status.phase). The broker trusts the decision, never the phase: anyone who may
 * write the status could set a phase, only an approver can set a decision.
 */
export interface StoredApproval {
  name: string;
  /** Opaque version, for "only if unchanged" phase writes (claims of a ticket grant). */
  resourceVersion: string;
  spec: MCPApprovalSpec;
  phase: ApprovalPhase | undefined;
  /** When the phase last changed (ISO 8601), as written with it. */
  phaseTime: string | undefined;
  /**
   * The pod (a gateway: its host name) holding a `hold` approval's call open, as the data path
   * wrote it (status.holder). Undefined until written: the creating pod (`spec.pod`) holds it.
   */
  holder: string | undefined;
  /** When the object was created (ISO 8601, metadata.creationTimestamp), when known. */
  created: string | undefined;
  /** The principal that created the object, stamped by the admission webhook (`mcpwarden.io/created-by`). */
  createdBy: string | undefined;
  labels: Readonly<Record<string, string>>;
}

export interface ApprovalChange {
  approval: StoredApproval;
  deleted: boolean;
}

/**
 * Where approvals live: `MCPApproval` objects through the API server (pkg/kube/approval-store.ts)
 * or memory (tests, a gateway without a cluster). Reads come from a view the store keeps current
 * (a watch); writes go to the backing store and come back through `subscribe`.
 */
export interface ApprovalStore {
  /** Create an approval for a held call (the store assigns the name). */
  create(spec: MCPApprovalSpec, labels: Record<string, string>): Promise<StoredApproval>;
  /**
   * Write status.phase. With `ifResourceVersion`, only if the object is still at that version:
   * resolves false when it changed first (someone else claimed it), so a grant runs once. A write
   * that succeeded is in the view (`get`) once it resolves, unless a newer version already is: the
   * view never goes back to a version older than one this store wrote or saw.
   */
  setPhase(
    name: string,
    phase: ApprovalPhase,
    message: string,
    ifResourceVersion?: string,
    options?: PhaseWriteOptions,
  ): Promise<boolean>;
  /**
   * Name the holder of a held call (status.holder), only if the object is still at
   * `ifResourceVersion` (false when it changed first: someone else took it over, or a verdict or
   * phase came). The phase is written unchanged (`phase`, what the caller read; it is required in
   * a status). Message and transition time stay as they are. In the view once it resolves, as
   * for setPhase.
   */
  setHolder(name: string, holder: string, phase: ApprovalPhase, ifResourceVersion: string): Promise<boolean>;
  get(name: string): StoredApproval | undefined;
  list(): Iterable<StoredApproval>;
  /** Called for every change seen after it subscribed. Returns the unsubscribe function. */
  subscribe(listener: (change: ApprovalChange) => void): () => void;
  /** True while the view is current. When false the broker holds nothing and grants nothing. */
  ready(): boolean;
  /** Resolves once the view holds every existing approval (the first sync). */
  synced(): Promise<void>;
  close(): Promise<void>;
}

/** What a phase write may carry besides the phase and its message. */
export interface PhaseWriteOptions {
  /** status.holder: the pod holding the call open (hold mode). */
  holder?: string;
  /** status.lastTransitionTime (ISO 8601), when the phase changed earlier than now (default: now). */
  transitionTime?: string;
}

/** A call the policy holds for a human decision, as the data path hands it to the broker. */
export interface HeldCallInput {
  policy: string;
  rule: string;
  settings: ApprovalSettings;
  principal: string;
  user: string | undefined;
  appId: string | undefined;
  /** Digest of the MCP session id (never the id itself), when there is a session. */
  session: string | undefined;
  method: string;
  tool: string | undefined;
  /**
   * `server-to-client` for a request the MCP server sent to the client (`sampling/createMessage`,
   * ...), held before it reaches the client; absent for a client's call.
   */
  direction?: 'server-to-client';
  /** The call's arguments as received (digested, never stored). */
  arguments: unknown;
  /** The same arguments after the policy's masking: what reviewers see. */
  maskedArguments: unknown;
  /**
   * What the masking hid from reviewers (`spec.maskedArguments`: paths, detectors, lengths; never
   * the values). Absent when it hid nothing. Approving such an approval needs an acknowledgement.
   */
  hidden?: MaskedArguments;
  /**
   * Asked just before a new approval is created (never for a repeat that finds one): the rule's
   * rate limits count approval requests. A refusal ends the call with a `rate-limited` outcome.
   */
  admit?: () => RateLimitRefusal | undefined;
}

/** Why a new approval was not asked for: a rate limit of the rule (or another applicable one). */
export interface RateLimitRefusal {
  policy: string;
  rule: string;
  reason: string;
  retryAfterMs: number;
}

export type ApprovalOutcome =
  /** A reviewer approved (hold), or an approved ticket was claimed now: run the call once. */
  | { kind: 'approved'; name: string; decidedBy: string; reason: string | undefined }
  | { kind: 'denied'; name: string; decidedBy: string | undefined; reason: string | undefined }
  | { kind: 'expired'; name: string }
  /**
   * The client cancelled the request (hold) or the approval was deleted; or (`takenOverBy`) the
   * same call was repeated and its repeat now waits on the approval (through that pod); or
   * (`leftOpen`) the client's connection closed without a cancellation, and the approval stays
   * open for its repeat. In the last two cases this request ends, the approval goes on.
   */
  | { kind: 'cancelled'; name: string; reason: string; takenOverBy?: string; leftOpen?: boolean }
  /** Ticket mode: waiting for a verdict; the client repeats the call once it is approved. */
  | { kind: 'pending'; name: string; expiresAt: string }
  /** No approval could be requested (store down, arguments too large): the call is refused. */
  | { kind: 'unavailable'; reason: string }
  /** A new approval would exceed a rate limit: the call is refused (-31429), nothing is created. */
  | ({ kind: 'rate-limited' } & RateLimitRefusal);
