/**
 * The masking stage's interface, as the proxy pipeline calls it. `pkg/mask` implements it.
 */
export interface MaskScope {
  /** The method whose result / params are being masked (`tools/call`, `resources/read`, ...). */
  method: string;
  tool?: string;
  resource?: string;
  /**
   * The resource's canonical form (dot segments resolved, unreserved escapes decoded), when it
   * differs: an alias of a resource a rule names is masked like the resource.
   */
  canonicalResource?: string;
  /**
   * The message cannot be tied to the call it belongs to (an answer whose request was forgotten, a
   * message on a session's own stream): every rule scoped to tools or resources applies.
   */
  unknown?: boolean;
  /** Session id, for keyed-hash replacements that must be stable within a session. */
  session?: string;
}

export interface MaskHit {
  policy: string;
  /** Detector name, user pattern name, or `field` for a JSON-path rule. */
  detector: string;
}

export interface MaskResult<T> {
  value: T;
  hits: MaskHit[];
}

export interface Masker {
  /** True when no rule could ever match: the pipeline then skips the stage entirely. */
  readonly empty: boolean;
  /**
   * Mask one JSON-RPC message travelling server → client (a response's `result`, a notification's
   * or a server request's `params`). Returns a new object when anything changed.
   */
  maskMessage<T>(message: T, scope: MaskScope): MaskResult<T>;
}
