/**
 * The one error family of mcp-warden. Every error a user can see carries a stable `code`
 * (tests assert on it) and says what was wrong and what to do.
 *
 * @example
 * throw new WardenError('ERR_POLICY_INVALID', 'spec.rules[0].action: must be allow, deny or approve');
 */
export const ErrorCodes = {
  generic: 'ERR_WARDEN',
  policyInvalid: 'ERR_POLICY_INVALID',
  policyUnavailable: 'ERR_POLICY_UNAVAILABLE',
  authMissing: 'ERR_AUTH_MISSING',
  authInvalid: 'ERR_AUTH_INVALID',
  authExpired: 'ERR_AUTH_EXPIRED',
  authIssuer: 'ERR_AUTH_ISSUER',
  authAudience: 'ERR_AUTH_AUDIENCE',
  authAlgorithm: 'ERR_AUTH_ALGORITHM',
  authKeyUnknown: 'ERR_AUTH_KEY_UNKNOWN',
  authIssuerUnavailable: 'ERR_AUTH_ISSUER_UNAVAILABLE',
  authForbidden: 'ERR_AUTH_FORBIDDEN',
  badRequest: 'ERR_BAD_REQUEST',
  bodyTooLarge: 'ERR_BODY_TOO_LARGE',
  badUtf8: 'ERR_BAD_UTF8',
  badJson: 'ERR_BAD_JSON',
  badSse: 'ERR_BAD_SSE',
  upstream: 'ERR_UPSTREAM',
  sessionUnknown: 'ERR_SESSION_UNKNOWN',
  sessionHijack: 'ERR_SESSION_PRINCIPAL',
  config: 'ERR_CONFIG',
  recording: 'ERR_RECORDING',
  kube: 'ERR_KUBE',
  /** The API server serves an older MCPApproval CRD: it drops fields the approval needs. */
  crdOutdated: 'ERR_CRD_OUTDATED',
} as const;

export type ErrorCode = (typeof ErrorCodes)[keyof typeof ErrorCodes];

export class WardenError extends Error {
  override name = 'WardenError';
  readonly code: ErrorCode;
  /** Extra machine-readable facts (never secrets). */
  readonly details: Record<string, unknown> | undefined;

  constructor(
    code: ErrorCode,
    message: string,
    options?: { cause?: unknown; details?: Record<string, unknown> },
  ) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.details = options?.details;
  }
}

export function isWardenError(err: unknown, code?: ErrorCode): err is WardenError {
  return err instanceof WardenError && (code === undefined || err.code === code);
}

/** Message of any thrown value, for logs (never includes stack or payloads). */
export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
