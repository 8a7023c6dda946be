import type { LabelSelector as PolicyLabelSelector } from '../policy/schema.js';
import { selects } from '../policy/selector.js';

/**
 * Kubernetes label selectors (`metav1.LabelSelector`), evaluated the way the API server does:
 * every `matchLabels` pair and every `matchExpressions` requirement must hold; an empty or absent
 * selector selects everything.
 *
 * @example
 * selectorMatches({ matchLabels: { app: 'github-mcp' } }, { app: 'github-mcp', tier: 'x' }); // true
 */
export interface LabelSelector {
  matchLabels?: Record<string, string>;
  matchExpressions?: Array<{ key: string; operator: string; values?: string[] }>;
}

/**
 * True when `selector` selects an object with `labels`. The one implementation of these semantics
 * is the policy engine's (`pkg/policy/selector.ts`); this adapter only accepts the API server's
 * looser shape (null selectors, any operator string: unknown operators select nothing, fail closed).
 */
export function selectorMatches(
  selector: LabelSelector | undefined | null,
  labels: Readonly<Record<string, string>>,
): boolean {
  return selects((selector ?? undefined) as PolicyLabelSelector | undefined, labels);
}
