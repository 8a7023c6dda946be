import type { TrustedIssuer } from './types.js';

/**
 * Matching a token's `iss` to the trusted issuers, and where each issuer's discovery document
 * lives. Entra multi-tenant entries use the `{tenantid}` template; Entra v1 issuers
 * (`https://sts.windows.net/{tid}/`) are discovered at `login.microsoftonline.com`.
 */

/** A trusted issuer made concrete for one token. */
export interface ResolvedIssuer {
  /** The exact issuer (template filled in). */
  issuer: string;
  /** Every trusted entry for this issuer (several policies may trust the same one). */
  entries: TrustedIssuer[];
  /** Tenant taken from a `{tenantid}` template. */
  tenantId?: string;
}

const placeholder = /\{tenantid\}/gi;

export function isTemplate(issuer: string): boolean {
  return /\{tenantid\}/i.test(issuer);
}

/** Entra tenant ids are GUIDs; some tenants are also addressed by a verified domain name. */
const tenantSegment = '([0-9A-Za-z][0-9A-Za-z.-]{0,127})';

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/**
 * Find the trusted entries for `iss`. Returns `{ problem }` when the issuer matches a template but
 * the tenant is not allowed, and `undefined` when nothing matches.
 */
export function resolveIssuer(
  iss: string,
  tid: unknown,
  trusted: readonly TrustedIssuer[],
): ResolvedIssuer | { problem: string } | undefined {
  const exact = trusted.filter((t) => !isTemplate(t.issuer) && t.issuer === iss);
  if (exact.length > 0) {
    const allowed = exact.filter(
      (t) =>
        t.allowedTenants === undefined ||
        t.allowedTenants.length === 0 ||
        t.allowedTenants.includes(String(tid)),
    );
    if (allowed.length === 0) {
      return {
        problem: `tenant ${typeof tid === 'string' ? tid : '(none)'} is not in allowedTenants of issuer ${iss}`,
      };
    }
    return { issuer: iss, entries: allowed, ...(typeof tid === 'string' ? { tenantId: tid } : {}) };
  }
  let problem: string | undefined;
  const entries: TrustedIssuer[] = [];
  let tenantId: string | undefined;
  for (const t of trusted) {
    if (!isTemplate(t.issuer)) continue;
    const pattern = new RegExp(
      `^${escapeRegExp(t.issuer).replace(/\\\{tenantid\\\}/gi, tenantSegment)}$`,
      'i',
    );
    const m = pattern.exec(iss);
    if (m === null) continue;
    const tenant = m[1]!;
    // The tenant in the issuer must be the token's own tenant, or a token from tenant A could
    // claim the issuer string of tenant B.
    if (tenant !== tid) {
      problem = `issuer ${iss} names tenant ${tenant} but the token's tid is ${typeof tid === 'string' ? tid : '(none)'}`;
      continue;
    }
    if (t.allowedTenants === undefined || !t.allowedTenants.includes(tenant)) {
      problem = `tenant ${tenant} is not in allowedTenants of the multi-tenant issuer ${t.issuer}; add it to allowedTenants to trust it`;
      continue;
    }
    entries.push(t);
    tenantId = tenant;
  }
  if (entries.length > 0) return { issuer: iss, entries, ...(tenantId === undefined ? {} : { tenantId }) };
  return problem === undefined ? undefined : { problem };
}

/**
 * True when `issuer` is `template` with every `{tenantid}` filled with `tenantId`: the literal
 * parts compared case-insensitively (as `resolveIssuer` matches templates), the tenant exactly.
 * The policy engine uses it to tell which policy's template entry a verified token belongs to.
 *
 * @example
 * isIssuerOfTenant('https://login.microsoftonline.com/{tenantid}/v2.0',
 *   'https://login.microsoftonline.com/t-a/v2.0', 't-a'); // true
 */
export function isIssuerOfTenant(template: string, issuer: string, tenantId: string): boolean {
  if (tenantId === '') return false;
  const parts = template.split(placeholder);
  let at = 0;
  for (let i = 0; i < parts.length; i++) {
    const part = parts[i]!;
    if (issuer.slice(at, at + part.length).toLowerCase() !== part.toLowerCase()) return false;
    at += part.length;
    if (i === parts.length - 1) break;
    if (!issuer.startsWith(tenantId, at)) return false;
    at += tenantId.length;
  }
  return at === issuer.length;
}

/** Fill `{tenantid}` in a URL template. */
export function fillTenant(template: string, tenantId: string | undefined): string {
  return tenantId === undefined ? template : template.replace(placeholder, tenantId);
}

const entraV1 = /^https:\/\/sts\.windows\.net\/([^/]+)\/$/i;

/**
 * The discovery URL for an issuer: explicit `discoveryUrl`, else Entra v1 →
 * `https://login.microsoftonline.com/<tid>/.well-known/openid-configuration`, else
 * `<issuer>/.well-known/openid-configuration`.
 */
export function discoveryUrlFor(entry: TrustedIssuer, issuer: string, tenantId?: string): string {
  if (entry.discoveryUrl !== undefined) return fillTenant(entry.discoveryUrl, tenantId);
  const v1 = entraV1.exec(issuer);
  if (v1 !== null) return `https://login.microsoftonline.com/${v1[1]}/.well-known/openid-configuration`;
  return `${issuer.replace(/\/+$/, '')}/.well-known/openid-configuration`;
}

/** Audiences of Microsoft Graph: tokens for Graph are never accepted by a resource. */
export const graphAudiences: ReadonlySet<string> = new Set([
  'https://graph.microsoft.com',
  'https://graph.microsoft.com/',
  '00000003-0000-0000-c000-000000000000',
  'https://graph.windows.net',
  'https://graph.windows.net/',
  '00000002-0000-0000-c000-000000000000',
]);
