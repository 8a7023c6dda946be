/**
 * Identity: who is calling. Bearer JWT verification (jose) against trusted issuers, Entra ID and
 * Kubernetes claims, groups overage through Microsoft Graph, RFC 9728 protected-resource metadata.
 */
export {
  type AuthenticatorOptions,
  acceptedAlgorithms,
  createAuthenticator,
  failureReason,
} from './authenticator.js';
export { isLoopbackHost } from './lib/url.js';
export type { Authenticator, GraphResolver, Identity, TrustedIssuer } from './types.js';
