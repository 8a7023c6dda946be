import type { Identity } from '../identity/types.js';
import type { Subject } from './schema.js';

/**
 * Subjects compiled into set lookups. A rule applies to a caller when any subject matches:
 *
 * - `group`: an entry of `identity.groups` (Entra object ids, or names when the token has them).
 * - `role`: an entry of `identity.roles` (app roles).
 * - `user`: the principal (`<tid>/<oid>`), the object id, or the user name (upn /
 *   preferred_username, compared case-insensitively).
 * - `app`: the client application id (`azp` / `appid`), for delegated and app-only tokens.
 * - `serviceAccount`: `ns/name` or `system:serviceaccount:ns:name` — a Kubernetes service-account
 *   token of that account.
 * - `any: true`: every authenticated caller.
 */
export interface IdentityView {
  /** `ns/name` of a Kubernetes service account, or undefined. */
  serviceAccount: string | undefined;
  userLower: string | undefined;
  /** The `identity` variable of CEL `when` expressions. */
  cel: Record<string, unknown>;
}

const views = new WeakMap<Identity, IdentityView>();

/** Derived facts about an identity, computed once per identity object (sessions reuse it). */
export function identityView(identity: Identity): IdentityView {
  let v = views.get(identity);
  if (v === undefined) {
    const sa = identity.serviceAccount;
    v = {
      serviceAccount: sa === undefined ? saFromPrincipal(identity.principal) : `${sa.namespace}/${sa.name}`,
      userLower: identity.user?.toLowerCase(),
      cel: {
        principal: identity.principal,
        user: identity.user ?? '',
        groups: identity.groups,
        roles: identity.roles,
        scopes: identity.scopes,
        appId: identity.appId ?? '',
        appOnly: identity.appOnly,
        tenantId: identity.tenantId ?? '',
        claims: identity.claims,
      },
    };
    views.set(identity, v);
  }
  return v;
}

/** Only the `system:serviceaccount:` form: an Entra principal `<tid>/<oid>` is never a service account. */
function saFromPrincipal(principal: string): string | undefined {
  return principal.startsWith('system:serviceaccount:') ? normalizeServiceAccount(principal) : undefined;
}

/** `system:serviceaccount:ns:name` or `ns/name` → `ns/name`; undefined for anything else. */
export function normalizeServiceAccount(value: string): string | undefined {
  const prefix = 'system:serviceaccount:';
  if (value.startsWith(prefix)) {
    const rest = value.slice(prefix.length);
    const i = rest.indexOf(':');
    if (i <= 0 || i === rest.length - 1) return undefined;
    return `${rest.slice(0, i)}/${rest.slice(i + 1)}`;
  }
  const i = value.indexOf('/');
  if (i <= 0 || i === value.length - 1 || value.indexOf('/', i + 1) !== -1) return undefined;
  return value;
}

export type SubjectMatcher = (identity: Identity, view: IdentityView) => boolean;

function anyIn(values: readonly string[], set: ReadonlySet<string>): boolean {
  for (let i = 0; i < values.length; i++) if (set.has(values[i]!)) return true;
  return false;
}

export function compileSubjects(subjects: readonly Subject[]): SubjectMatcher {
  const groups = new Set<string>();
  const roles = new Set<string>();
  const userIds = new Set<string>();
  const userNames = new Set<string>();
  const apps = new Set<string>();
  const serviceAccounts = new Set<string>();
  let any = false;
  for (const s of subjects) {
    if (s.any === true) any = true;
    if (s.group !== undefined) groups.add(s.group);
    if (s.role !== undefined) roles.add(s.role);
    if (s.user !== undefined) {
      userIds.add(s.user);
      userNames.add(s.user.toLowerCase());
    }
    if (s.app !== undefined) apps.add(s.app);
    if (s.serviceAccount !== undefined) {
      const sa = normalizeServiceAccount(s.serviceAccount);
      if (sa !== undefined) serviceAccounts.add(sa);
    }
  }
  if (any) return () => true;
  return (identity, view) =>
    (groups.size > 0 && anyIn(identity.groups, groups)) ||
    (roles.size > 0 && anyIn(identity.roles, roles)) ||
    (userIds.size > 0 &&
      (userIds.has(identity.principal) ||
        (identity.objectId !== undefined && userIds.has(identity.objectId)) ||
        (view.userLower !== undefined && userNames.has(view.userLower)))) ||
    (apps.size > 0 && identity.appId !== undefined && apps.has(identity.appId)) ||
    (serviceAccounts.size > 0 &&
      view.serviceAccount !== undefined &&
      serviceAccounts.has(view.serviceAccount));
}
