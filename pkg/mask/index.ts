/**
 * The masking stage: built-in detectors, RE2 user patterns, JSON paths, tool/resource scoping,
 * template or keyed-hash replacements. See docs/masking.md.
 */

export { detectorNames, isSensitiveKey } from './detectors.js';
export { parseJsonPath } from './jsonpath.js';
export { createMasker, type MaskerOptions } from './masker.js';
export { compilePattern, type PatternEngine, re2Problem, v8LinearFallbackActive } from './patterns.js';
export type { Masker, MaskHit, MaskResult, MaskScope } from './types.js';
