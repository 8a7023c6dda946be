import type { IncomingMessage, ServerResponse } from 'node:http';
import { type ErrorCode, isWardenError, WardenError } from '../errors.js';
import { authChallenge, failureReason, wwwAuthenticateHeader } from '../identity/index.js';
import type { Identity } from '../identity/types.js';
import { RpcCodes } from '../mcp/jsonrpc.js';
import type { PolicyEngine } from '../policy/decision.js';
import type { ProxyCore } from './core.js';
import { sendRpcError } from './http.js';

/**
 * The authenticate stage: a bearer token, verified against the issuers the current policies
 * trust. Failures answer 401 (403 for ERR_AUTH_FORBIDDEN, 503 when an issuer cannot be reached)
 * with `WWW-Authenticate: Bearer resource_metadata="…"`; the token itself is never logged.
 */
const BEARER = /^Bearer[ ]+([A-Za-z0-9\-._~+/]+=*)\s*$/i;

export function resourceMetadataUrl(core: ProxyCore, req: IncomingMessage): string {
  return `${baseUrl(core, req)}/.well-known/oauth-protected-resource${core.mcpPath}`;
}

/** The proxy's public base URL (no trailing slash). */
export function baseUrl(core: ProxyCore, req: IncomingMessage): string {
  if (core.publicUrl) return core.publicUrl.replace(/\/+$/, '');
  const host = req.headers.host ?? 'localhost';
  return `http://${host}`;
}

/** Verify the caller; answers the request itself and returns undefined on failure. */
export async function authenticate(
  core: ProxyCore,
  engine: PolicyEngine,
  req: IncomingMessage,
  res: ServerResponse,
): Promise<Identity | undefined> {
  const raw = req.headers.authorization;
  const match = raw === undefined ? null : BEARER.exec(raw);
  if (!match) {
    // Refused before the authenticator sees anything, so counted here.
    const missing = raw === undefined;
    const err = new WardenError(
      missing ? 'ERR_AUTH_MISSING' : 'ERR_AUTH_INVALID',
      missing
        ? 'Authentication required: send "Authorization: Bearer <token>"'
        : 'Malformed Authorization header: expected "Bearer <token>"',
    );
    core.metrics.authFailures.inc({ reason: failureReason(err.code) });
    fail(core, req, res, err);
    return undefined;
  }
  try {
    return await core.options.authenticator.authenticate(match[1]!, engine.trustedIssuers());
  } catch (err) {
    // The authenticator counts its own failures (auth_failures_total{reason}).
    fail(core, req, res, err);
    return undefined;
  }
}

function fail(core: ProxyCore, req: IncomingMessage, res: ServerResponse, err: unknown): void {
  const challenge = authChallenge(err);
  const code = isWardenError(err) ? err.code : 'ERR_AUTH_INVALID';
  core.logger.info(
    { event: 'auth-failed', reason: failureReason(code as ErrorCode), path: req.url?.split('?')[0] },
    'authentication failed',
  );
  const header = wwwAuthenticateHeader(
    resourceMetadataUrl(core, req),
    challenge.error === undefined
      ? undefined
      : { error: challenge.error, description: challenge.description },
  );
  sendRpcError(
    res,
    challenge.status,
    null,
    RpcCodes.unauthorized,
    challenge.description,
    { code },
    { 'www-authenticate': header },
  );
}
