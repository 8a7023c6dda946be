export { ApprovalBroker, type BrokerOptions, type HoldHooks } from './broker.js';
export { argumentsDigest, canonicalJson, sessionDigest } from './digest.js';
export { describeMasked, hiddenArguments, type MaskMarker, maskMarker } from './masked.js';
export { MemoryApprovalStore } from './memory-store.js';
export type {
  ApprovalChange,
  ApprovalOutcome,
  ApprovalStore,
  HeldCallInput,
  PhaseWriteOptions,
  StoredApproval,
} from './types.js';
