/**
 * The narrow Kubernetes seam the webhook talks through. `createKubeClient` (pkg/kube/client.ts)
 * satisfies it; so can anything that speaks JSON to an API server. Errors carry the HTTP `status`
 * (0 when there was no answer).
 */
import { allApprovalsPath, approvalPath } from '../pkg/kube/resources.js';

export type HttpMethod = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';

export interface KubeApi {
  request<T = unknown>(
    method: HttpMethod,
    path: string,
    options?: {
      query?: Record<string, string | number | boolean | undefined>;
      body?: unknown;
      contentType?: string;
      timeoutMs?: number;
      signal?: AbortSignal;
    },
  ): Promise<T>;
}

/** HTTP status of an error thrown by a KubeApi (0 when unknown). */
export function statusOf(err: unknown): number {
  const s = (err as { status?: unknown } | null)?.status;
  return typeof s === 'number' ? s : 0;
}

export interface ObjectMeta {
  name?: string;
  namespace?: string;
  resourceVersion?: string;
  annotations?: Record<string, string>;
  labels?: Record<string, string>;
  creationTimestamp?: string;
}

export const paths = {
  secret: (ns: string, name: string) => `/api/v1/namespaces/${enc(ns)}/secrets/${enc(name)}`,
  secrets: (ns: string) => `/api/v1/namespaces/${enc(ns)}/secrets`,
  namespace: (ns: string) => `/api/v1/namespaces/${enc(ns)}`,
  events: (ns: string) => `/api/v1/namespaces/${enc(ns)}/events`,
  pods: (ns: string) => `/api/v1/namespaces/${enc(ns)}/pods`,
  lease: (ns: string, name: string) =>
    `/apis/coordination.k8s.io/v1/namespaces/${enc(ns)}/leases/${enc(name)}`,
  leases: (ns: string) => `/apis/coordination.k8s.io/v1/namespaces/${enc(ns)}/leases`,
  mutatingConfig: (name: string) =>
    `/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/${enc(name)}`,
  validatingConfig: (name: string) =>
    `/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/${enc(name)}`,
  allPolicies: () => '/apis/mcpwarden.io/v1alpha1/mcppolicies',
  allApprovals: allApprovalsPath,
  approval: approvalPath,
  policyStatus: (ns: string, name: string) =>
    `/apis/mcpwarden.io/v1alpha1/namespaces/${enc(ns)}/mcppolicies/${enc(name)}/status`,
  version: () => '/version',
};

function enc(s: string): string {
  return encodeURIComponent(s);
}
