/**
 * Who is calling. Built from a verified token by `pkg/identity`; consumed by the policy engine
 * (subjects, CEL `identity`) and the recorder (principal). Never holds the raw token.
 */
export interface Identity {
  /** Stable principal id: `<tid>/<oid>` for Entra, `system:serviceaccount:<ns>:<name>` for
   * Kubernetes service accounts, `<iss>#<sub>` otherwise. Sessions are bound to it. */
  principal: string;
  issuer: string;
  subject: string;
  tenantId?: string;
  objectId?: string;
  /** upn / preferred_username / unique_name / email, when the token has one. */
  user?: string;
  /** azp (v2) or appid (v1): the client application. */
  appId?: string;
  /** App-only token (`idtyp=app`, or no `scp` and no user claims). */
  appOnly: boolean;
  groups: string[];
  roles: string[];
  scopes: string[];
  wids: string[];
  serviceAccount?: { namespace: string; name: string; uid?: string };
  /**
   * A service-account token of the cluster's own issuer: accepted through a trusted entry marked
   * `clusterIssuer` (a policy's `kubernetes` entry without `issuer`, which the sidecar points at
   * the issuer its API server advertises). Such entries match it whatever that issuer's URL is.
   */
  clusterIssuer?: boolean;
  /** Verified audience the token was accepted for. */
  audience: string;
  /** Token expiry (seconds since epoch). */
  expiresAt: number;
  /** The verified claims, for CEL `identity.claims`. Tokens never appear here. */
  claims: Readonly<Record<string, unknown>>;
}

/** One trusted issuer from `MCPPolicy.spec.identity.issuers[]`, resolved. */
export interface TrustedIssuer {
  /** Exact `iss` value expected (for Kubernetes: the API server's issuer). */
  issuer: string;
  audiences: string[];
  jwksUri?: string;
  discoveryUrl?: string;
  /** For multi-tenant Entra templates (`{tenantid}` in issuer): tenants accepted. */
  allowedTenants?: string[];
  groupsOverage?: 'graph' | 'deny';
  /** This entry is the Kubernetes service-account issuer. */
  kubernetes?: boolean;
  /**
   * This `kubernetes` entry stands for the cluster's own service-account issuer (a policy entry
   * without `issuer`): `issuer` is a placeholder until the sidecar replaces it with the one its API
   * server advertises. Identities accepted through it carry `clusterIssuer: true`, which is how the
   * policy engine knows they belong to those policies whatever the advertised URL is.
   */
  clusterIssuer?: boolean;
  /** Verification keys given inline instead of fetched (e.g. the API server's `/openid/v1/jwks`,
   * read by the Kubernetes adapter with its own credentials). Takes precedence over `jwksUri`. */
  jwks?: { keys: Array<Record<string, unknown>> };
}

/**
 * Resolves the groups of a principal whose token overflowed its `groups` claim (Entra groups
 * overage), e.g. through Microsoft Graph `getMemberObjects`. Throws WardenError on failure.
 */
export interface GraphResolver {
  memberObjects(subject: { tenantId: string; objectId: string; appOnly: boolean }): Promise<string[]>;
}

/** Verifies bearer tokens. Implementations cache discovery documents and JWKS. */
export interface Authenticator {
  /**
   * Verify `token` against `trusted` and return the caller's identity.
   * Throws `WardenError` with an `ERR_AUTH_*` code on any failure (fail closed).
   */
  /**
   * `trusted` must not change once passed (engines hand out frozen lists): verified tokens are
   * remembered per list object. The identity is frozen, and the same object for a remembered token.
   */
  authenticate(token: string, trusted: readonly TrustedIssuer[]): Promise<Identity>;
  /**
   * Until when (epoch ms) the token `identity` came from is accepted: its `exp` plus the clock
   * skew tolerated. A stream opened with it must not outlive it.
   */
  acceptedUntil(identity: Identity): number;
}
