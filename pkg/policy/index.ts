/**
 * The policy stage: the MCPPolicy schema (single source), validation, compilation, decisions,
 * list filtering and explanations, and the file-backed policy source of the gateway.
 */

export { callContextFromRequest } from './call.js';
export { compileRe2, re2Error } from './cel.js';
export { type CompileOptions, compilePolicies, formatIssues } from './compile.js';
export type {
  Action,
  ApprovalSettings,
  CallContext,
  Decision,
  Direction,
  ListMethod,
  PolicyEngine,
  PolicySource,
} from './decision.js';
export { Actions, Directions } from './decision.js';
export { durationError, parseDuration } from './duration.js';
export {
  type CompiledPolicyEngine,
  type ExplainedRule,
  type Explanation,
  KubernetesDefaultIssuer,
} from './engine.js';
export { compileGlob, type Glob, type GlobMode, globError } from './glob.js';
export {
  createFilePolicySource,
  type FilePolicySource,
  type FilePolicySourceOptions,
  loadPolicyPath,
  parsePolicyText,
} from './loader.js';
export {
  DefaultMethods,
  ListMethods,
  type MethodClass,
  methodClass,
  methodTarget,
  ProtocolMethods,
} from './methods.js';
export * from './schema.js';
export { selects } from './selector.js';
export { jsonPathError, type ValidationIssue, validateApproval, validatePolicy } from './validate.js';
