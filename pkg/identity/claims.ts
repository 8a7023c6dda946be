import type { JWTPayload } from 'jose';
import { WardenError } from '../errors.js';
import { clip } from './lib/url.js';
import type { Identity } from './types.js';

/**
 * From verified claims to an `Identity`: Entra ID (v1 and v2), Kubernetes service accounts, and
 * any other OIDC issuer (`<iss>#<sub>`).
 */

function strings(value: unknown): string[] {
  return Array.isArray(value) ? value.filter((v): v is string => typeof v === 'string') : [];
}

function str(value: unknown): string | undefined {
  return typeof value === 'string' && value !== '' ? value : undefined;
}

/** Entra tokens carry `tid` and `oid`; the dev issuer mints them too, so shape decides, not host. */
export function isEntraToken(claims: JWTPayload): boolean {
  return str(claims['tid']) !== undefined && str(claims['oid']) !== undefined;
}

/** The issuer URL has the tenant id as a path segment (every Entra issuer form does). */
function namesTenant(issuer: string, tid: string): boolean {
  try {
    return new URL(issuer).pathname.split('/').includes(tid);
  } catch {
    return false;
  }
}

/** True when the token says its `groups` claim overflowed (`_claim_names.groups` or v1 `hasgroups`). */
export function hasGroupsOverage(claims: JWTPayload): boolean {
  const names = claims['_claim_names'];
  if (typeof names === 'object' && names !== null && 'groups' in names) return true;
  return claims['hasgroups'] === true || claims['hasgroups'] === 'true';
}

export interface ToIdentityInput {
  claims: JWTPayload;
  issuer: string;
  audience: string;
  kubernetes: boolean;
}

export function toIdentity({ claims, issuer, audience, kubernetes }: ToIdentityInput): Identity {
  const exp = typeof claims.exp === 'number' ? claims.exp : 0;
  const sub = str(claims.sub) ?? '';
  const base = {
    issuer,
    subject: sub,
    audience,
    expiresAt: exp,
    groups: [] as string[],
    roles: [] as string[],
    scopes: [] as string[],
    wids: [] as string[],
    claims: Object.freeze({ ...claims }),
  };
  if (kubernetes) return { ...base, ...kubernetesFields(claims, sub), appOnly: true };
  if (isEntraToken(claims)) {
    const tid = str(claims['tid'])!;
    const oid = str(claims['oid'])!;
    const scopes = (str(claims['scp']) ?? '').split(' ').filter((s) => s !== '');
    const appOnly = claims['idtyp'] === 'app' || str(claims['scp']) === undefined;
    const user =
      str(claims['upn']) ??
      str(claims['preferred_username']) ??
      str(claims['unique_name']) ??
      str(claims['email']);
    const appId = str(claims['azp']) ?? str(claims['appid']);
    return {
      ...base,
      // `<tid>/<oid>` is globally unique only when the issuer is that tenant's: another trusted
      // issuer could mint any tid/oid pair and take over that user's sessions. Otherwise the
      // principal is namespaced by the issuer, like any OIDC subject.
      principal: namesTenant(issuer, tid) ? `${tid}/${oid}` : `${issuer}#${tid}/${oid}`,
      tenantId: tid,
      objectId: oid,
      ...(user === undefined || appOnly ? {} : { user }),
      ...(appId === undefined ? {} : { appId }),
      appOnly,
      groups: strings(claims['groups']),
      roles: strings(claims['roles']),
      scopes,
      wids: strings(claims['wids']),
    };
  }
  if (sub === '')
    throw new WardenError(
      'ERR_AUTH_INVALID',
      `the token from ${issuer} has no "sub" claim; it cannot name a principal`,
    );
  const user = str(claims['preferred_username']) ?? str(claims['email']);
  const scope = str(claims['scope']) ?? str(claims['scp']);
  return {
    ...base,
    principal: `${issuer}#${sub}`,
    ...(user === undefined ? {} : { user }),
    ...(str(claims['azp']) === undefined ? {} : { appId: str(claims['azp'])! }),
    appOnly: user === undefined && scope === undefined,
    groups: strings(claims['groups']),
    roles: strings(claims['roles']),
    scopes: (scope ?? '').split(' ').filter((s) => s !== ''),
  };
}

/** `system:serviceaccount:<ns>:<name>` from the `kubernetes.io` claim, checked against `sub`. */
function kubernetesFields(claims: JWTPayload, sub: string): Pick<Identity, 'principal' | 'serviceAccount'> {
  const k8s = claims['kubernetes.io'];
  const ns =
    typeof k8s === 'object' && k8s !== null ? str((k8s as Record<string, unknown>)['namespace']) : undefined;
  const sa =
    typeof k8s === 'object' && k8s !== null ? (k8s as Record<string, unknown>)['serviceaccount'] : undefined;
  const name =
    typeof sa === 'object' && sa !== null ? str((sa as Record<string, unknown>)['name']) : undefined;
  const uid = typeof sa === 'object' && sa !== null ? str((sa as Record<string, unknown>)['uid']) : undefined;
  if (ns === undefined || name === undefined) {
    throw new WardenError(
      'ERR_AUTH_INVALID',
      'the Kubernetes token has no "kubernetes.io" namespace/serviceaccount claim; use a projected service-account token',
    );
  }
  const principal = `system:serviceaccount:${ns}:${name}`;
  if (sub !== principal) {
    throw new WardenError(
      'ERR_AUTH_INVALID',
      `the Kubernetes token's sub ${clip(sub)} does not match its kubernetes.io claim (${principal})`,
    );
  }
  return { principal, serviceAccount: { namespace: ns, name, ...(uid === undefined ? {} : { uid }) } };
}
