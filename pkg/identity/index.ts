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
export { createGraphResolver, createGraphResolverFromEnv, type GraphResolverOptions } from './graph.js';
export { discoveryUrlFor, graphAudiences } from './issuers.js';
export { checkFetchUrl, isLoopbackHost } from './lib/url.js';
export {
  type AuthChallenge,
  authChallenge,
  type ProtectedResourceMetadata,
  protectedResourceMetadata,
  wwwAuthenticateHeader,
} from './metadata.js';
export type { Authenticator, GraphResolver, Identity, TrustedIssuer } from './types.js';
export {
  createWorkloadIdentityCredential,
  type TokenCredential,
  type WorkloadIdentityOptions,
} from './workload-identity.js';
