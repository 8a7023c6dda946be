import type { IncomingMessage, ServerResponse } from 'node:http';
import { isWardenError } from '../errors.js';
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

function quote(s: string): string {
  return s.replace(/[\\"]/g, (c) => `\\${c}`);
}

export function wwwAuthenticate(metadataUrl: string, error?: { error: string; description: string }): string {
  let v = `Bearer resource_metadata="${quote(metadataUrl)}"`;
  if (error)
    v += `, error="${error.error}", error_description="${quote(error.description.replace(/[^\x20-\x7e]/g, ' '))}"`;
  return v;
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
    const missing = raw === undefined;
    fail(
      core,
      req,
      res,
      missing ? 'ERR_AUTH_MISSING' : 'ERR_AUTH_INVALID',
      missing
        ? 'Authentication required: send "Authorization: Bearer <token>"'
        : 'Malformed Authorization header: expected "Bearer <token>"',
    );
    return undefined;
  }
  try {
    return await core.options.authenticator.authenticate(match[1]!, engine.trustedIssuers());
  } catch (err) {
    const code = isWardenError(err) ? err.code : 'ERR_AUTH_INVALID';
    const message = isWardenError(err) ? err.message : 'Token verification failed';
    fail(core, req, res, code, message);
    return undefined;
  }
}

function fail(
  core: ProxyCore,
  req: IncomingMessage,
  res: ServerResponse,
  code: string,
  message: string,
): void {
  const reason = code.startsWith('ERR_AUTH_') ? code.slice(9).toLowerCase() : 'invalid';
  core.metrics.authFailures.inc({ reason });
  core.logger.info({ event: 'auth-failed', reason, path: req.url?.split('?')[0] }, 'authentication failed');
  const status = code === 'ERR_AUTH_FORBIDDEN' ? 403 : code === 'ERR_AUTH_ISSUER_UNAVAILABLE' ? 503 : 401;
  const meta = resourceMetadataUrl(core, req);
  const header =
    code === 'ERR_AUTH_MISSING'
      ? wwwAuthenticate(meta)
      : wwwAuthenticate(meta, {
          error: status === 403 ? 'insufficient_scope' : 'invalid_token',
          description: message,
        });
  sendRpcError(res, status, null, RpcCodes.unauthorized, message, { code }, { 'www-authenticate': header });
}
