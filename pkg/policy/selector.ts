import type { LabelSelector } from './schema.js';

/**
 * Kubernetes label selector semantics: matchLabels and every matchExpression must hold; an empty
 * selector selects everything.
 *
 * @example
 * selects({ matchLabels: { app: 'github-mcp' } }, { app: 'github-mcp', tier: 'x' }); // true
 */
export function selects(
  selector: LabelSelector | undefined,
  labels: Readonly<Record<string, string>>,
): boolean {
  if (selector === undefined) return true;
  for (const [key, value] of Object.entries(selector.matchLabels ?? {})) {
    if (!Object.hasOwn(labels, key) || labels[key] !== value) return false;
  }
  for (const req of selector.matchExpressions ?? []) {
    const has = Object.hasOwn(labels, req.key);
    const values = req.values ?? [];
    switch (req.operator) {
      case 'In':
        if (!has || !values.includes(labels[req.key]!)) return false;
        break;
      case 'NotIn':
        if (has && values.includes(labels[req.key]!)) return false;
        break;
      case 'Exists':
        if (!has) return false;
        break;
      case 'DoesNotExist':
        if (has) return false;
        break;
      default:
        // Unknown operator (should have been refused by validation): select nothing, fail closed.
        return false;
    }
  }
  return true;
}
