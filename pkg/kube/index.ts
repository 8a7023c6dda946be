/**
 * The one Kubernetes adapter of mcp-warden. Nothing else in `pkg/` imports `@kubernetes/client-node`:
 * the data path sees a `PolicySource` and an event-driven status reporter.
 */

export type {
  HttpMethod,
  KubeClient,
  KubeCredentials,
  KubeObject,
  KubeRequestOptions,
  WatchEvent,
  WatchOptions,
} from './client.js';
export { createKubeClient, KubeApiError, loadKubeConfig } from './client.js';
export type {
  KubePolicySource,
  KubePolicySourceOptions,
  PolicyCompiler,
  PolicyObject,
} from './policy-source.js';
export { createKubePolicySource } from './policy-source.js';
export {
  approvalsPath,
  GROUP,
  MCPAPPROVAL_API,
  MCPPOLICY_API,
  policiesPath,
  policyPath,
  VERSION,
} from './resources.js';
export { type LabelSelector, selectorMatches } from './selector.js';
export type { PodCounts, StatusReporter, StatusReporterOptions } from './status-reporter.js';
export { createStatusReporter, podFieldManager } from './status-reporter.js';
