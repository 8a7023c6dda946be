import { WardenError } from '../errors.js';
import { type CompiledPolicyEngine, createEngine } from './engine.js';
import type { PolicyDocument } from './schema.js';
import { selects } from './selector.js';
import { type ValidationIssue, validatePolicy } from './validate.js';

export interface CompileOptions {
  /** The pod's labels: only documents whose `spec.podSelector` selects them apply. Omitted: all apply. */
  podLabels?: Readonly<Record<string, string>>;
}

/** `policy: path: message` lines for an error message. */
export function formatIssues(issues: ReadonlyArray<ValidationIssue & { source?: string }>): string {
  return issues
    .map((i) => `${i.source ? `${i.source}: ` : ''}${i.path || '(document)'}: ${i.message}`)
    .join('\n');
}

/**
 * Compile policy documents into an engine. Every document is validated first: an invalid one
 * throws `WardenError` `ERR_POLICY_INVALID` naming the policy, the field and the reason.
 *
 * @example
 * const engine = compilePolicies(await loadPolicyPath('examples/policy.yaml'), { podLabels: { app: 'demo' } });
 * engine.decide({ method: 'tools/call', tool: 'get_weather', args: {}, identity, direction: 'client-to-server' });
 */
export function compilePolicies(
  docs: readonly PolicyDocument[],
  options: CompileOptions = {},
): CompiledPolicyEngine {
  const issues: Array<ValidationIssue & { source: string }> = [];
  docs.forEach((doc, i) => {
    const name = typeof doc?.metadata?.name === 'string' ? doc.metadata.name : `document ${i + 1}`;
    for (const issue of validatePolicy(doc)) issues.push({ ...issue, source: `policy ${name}` });
  });
  if (issues.length > 0) {
    throw new WardenError('ERR_POLICY_INVALID', `invalid MCPPolicy:\n${formatIssues(issues)}`, {
      details: { issues },
    });
  }
  const labels = options.podLabels;
  const selected = labels === undefined ? [...docs] : docs.filter((d) => selects(d.spec.podSelector, labels));
  return createEngine(selected);
}
