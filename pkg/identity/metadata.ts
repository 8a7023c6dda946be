import { isWardenError } from '../errors.js';
import { fillTenant, isTemplate } from './issuers.js';
import type { TrustedIssuer } from './types.js';

/**
 * OAuth 2.0 Protected Resource Metadata (RFC 9728) and the `WWW-Authenticate` challenge that
 * points MCP clients at it (the MCP authorization spec's discovery path).
 */

/** The RFC 9728 document served at `/.well-known/oauth-protected-resource[<path>]`. */
export interface ProtectedResourceMetadata {
  resource: string;
  authorization_servers: string[];
  bearer_methods_supported: string[];
  scopes_supported?: string[];
}

const entraV1 = /^https:\/\/sts\.windows\.net\/([^/]+)\/$/i;
const entraLike =
  /^https:\/\/login\.microsoftonline\.(com|us)\/[^/]+\/v2\.0$|\/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\/(v2\.0)?$/i;

/**
 * Metadata for `resource` (the public URL of the MCP endpoint) from the trusted issuers.
 * Kubernetes issuers are left out (they are not OAuth authorization servers); Entra v1 issuers
 * are advertised as their v2 authority, which can issue v1 tokens too; `{tenantid}` templates are
 * expanded for each allowed tenant. For Entra issuers `scopes_supported` lists `<audience>/.default`.
 *
 * @example
 * protectedResourceMetadata('https://mcp.example.com/mcp', [{ issuer: 'https://login.microsoftonline.com/t/v2.0', audiences: ['api://github-mcp'] }]);
 * // { resource: 'https://mcp.example.com/mcp', authorization_servers: ['https://login.microsoftonline.com/t/v2.0'],
 * //   bearer_methods_supported: ['header'], scopes_supported: ['api://github-mcp/.default'] }
 */
export function protectedResourceMetadata(
  resource: string,
  issuers: readonly TrustedIssuer[],
): ProtectedResourceMetadata {
  const servers = new Set<string>();
  const scopes = new Set<string>();
  for (const entry of issuers) {
    if (entry.kubernetes === true) continue;
    const concrete = isTemplate(entry.issuer)
      ? (entry.allowedTenants ?? []).map((t) => fillTenant(entry.issuer, t))
      : [entry.issuer];
    for (const issuer of concrete) {
      const v1 = entraV1.exec(issuer);
      const server = v1 === null ? issuer : `https://login.microsoftonline.com/${v1[1]}/v2.0`;
      servers.add(server);
      if (v1 !== null || entraLike.test(server))
        for (const aud of entry.audiences) scopes.add(`${aud.replace(/\/+$/, '')}/.default`);
    }
  }
  return {
    resource,
    authorization_servers: [...servers],
    bearer_methods_supported: ['header'],
    ...(scopes.size > 0 ? { scopes_supported: [...scopes] } : {}),
  };
}

/** RFC 6750 §3: error_description uses %x20-21 / %x23-5B / %x5D-7E only. */
function headerText(text: string, max = 300): string {
  const clean = text.replace(/["\\]/g, "'").replace(/[^\x20-\x7e]/g, ' ');
  return clean.length > max ? `${clean.slice(0, max - 3)}...` : clean;
}

/**
 * The `WWW-Authenticate` value of a 401/403: `Bearer resource_metadata="…"`, plus `error` and
 * `error_description` when a token was presented and refused.
 *
 * @example
 * wwwAuthenticateHeader('https://mcp.example.com/.well-known/oauth-protected-resource/mcp', { error: 'invalid_token', description: 'the token expired' });
 * // 'Bearer resource_metadata="https://…/mcp", error="invalid_token", error_description="the token expired"'
 */
export function wwwAuthenticateHeader(
  resourceMetadataUrl: string,
  error?: { error: string; description: string },
): string {
  let value = `Bearer resource_metadata="${headerText(resourceMetadataUrl, 2000)}"`;
  if (error !== undefined) {
    const code = /^[A-Za-z0-9_.-]+$/.test(error.error) ? error.error : 'invalid_token';
    value += `, error="${code}", error_description="${headerText(error.description)}"`;
  }
  return value;
}

/** HTTP status and RFC 6750 error for an authentication failure. */
export interface AuthChallenge {
  status: 401 | 403 | 503;
  /** Absent for a missing token (RFC 6750 §3.1: no error code when no credentials were sent). */
  error?: 'invalid_token' | 'insufficient_scope' | 'temporarily_unavailable';
  description: string;
}

/**
 * Map a failure from `Authenticator.authenticate` to the answer: 401 for token problems,
 * 403 (insufficient_scope) for ERR_AUTH_FORBIDDEN, 503 when an issuer or Graph is unreachable.
 */
export function authChallenge(err: unknown): AuthChallenge {
  if (!isWardenError(err))
    return { status: 401, error: 'invalid_token', description: 'the token could not be verified' };
  switch (err.code) {
    case 'ERR_AUTH_MISSING':
      return { status: 401, description: err.message };
    case 'ERR_AUTH_FORBIDDEN':
      return { status: 403, error: 'insufficient_scope', description: err.message };
    case 'ERR_AUTH_ISSUER_UNAVAILABLE':
      return { status: 503, error: 'temporarily_unavailable', description: err.message };
    default:
      return { status: 401, error: 'invalid_token', description: err.message };
  }
}
