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

/** True when `selector` selects an object with `labels`. Unknown operators select nothing (fail closed). */
export function selectorMatches(
  selector: LabelSelector | undefined | null,
  labels: Readonly<Record<string, string>>,
): boolean {
  if (selector === undefined || selector === null) return true;
  for (const [key, value] of Object.entries(selector.matchLabels ?? {})) {
    if (labels[key] !== value) return false;
  }
  for (const req of selector.matchExpressions ?? []) {
    const has = Object.hasOwn(labels, req.key);
    const values = req.values ?? [];
    switch (req.operator) {
      case 'In':
        if (!has || !values.includes(labels[req.key] as string)) return false;
        break;
      case 'NotIn':
        if (has && values.includes(labels[req.key] as string)) return false;
        break;
      case 'Exists':
        if (!has) return false;
        break;
      case 'DoesNotExist':
        if (has) return false;
        break;
      default:
        return false;
    }
  }
  return true;
}
