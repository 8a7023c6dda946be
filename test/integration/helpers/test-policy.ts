import type { TrustedIssuer } from '../../../pkg/identity/types.js';
import type {
  ApprovalSettings,
  CallContext,
  Decision,
  ListMethod,
  PolicyEngine,
  PolicySource,
} from '../../../pkg/policy/decision.js';

/**
 * A small in-test PolicyEngine (deny > approve > allow > default deny), used by the proxy's
 * pipeline tests so they exercise the proxy alone; the integration suites use the real engine
 * from pkg/policy where it matters.
 */
export interface TestRule {
  name: string;
  groups?: string[];
  methods?: string[];
  /** Exact names or `prefix*` globs. */
  tools?: string[];
  toolAnnotations?: Record<string, unknown>;
  when?: (ctx: CallContext) => boolean;
  action: 'allow' | 'deny' | 'approve';
  reason?: string;
  /** For `approve`: how the call is held. */
  approval?: ApprovalSettings;
}

export interface TestPolicy {
  name: string;
  mode?: 'enforce' | 'audit';
  issuers: TrustedIssuer[];
  rules: TestRule[];
  recording?: boolean;
  masking?: Array<{ policy: string; rule: unknown }>;
}

function glob(pattern: string, value: string): boolean {
  return pattern.endsWith('*') ? value.startsWith(pattern.slice(0, -1)) : pattern === value;
}

function applies(rule: TestRule, ctx: CallContext): boolean {
  if (rule.groups && !rule.groups.some((g) => ctx.identity.groups.includes(g))) return false;
  if (rule.methods && !rule.methods.includes(ctx.method)) return false;
  if (rule.tools) {
    const name = ctx.tool ?? ctx.prompt ?? ctx.resource;
    if (name === undefined || !rule.tools.some((p) => glob(p, name))) return false;
  }
  if (rule.toolAnnotations) {
    const ann = ctx.toolAnnotations;
    if (!ann) return false;
    for (const [k, v] of Object.entries(rule.toolAnnotations)) if (ann[k] !== v) return false;
  }
  if (rule.when && !rule.when(ctx)) return false;
  return true;
}

export function testEngine(p: TestPolicy): PolicyEngine {
  const mode = p.mode ?? 'enforce';
  const engine: PolicyEngine = {
    decide(ctx: CallContext): Decision {
      let best: TestRule | undefined;
      const rank = { deny: 3, approve: 2, allow: 1 } as const;
      for (const r of p.rules) if (applies(r, ctx) && (!best || rank[r.action] > rank[best.action])) best = r;
      if (!best) {
        return {
          action: 'deny',
          enforced: mode === 'audit' ? 'allow' : 'deny',
          policy: '',
          reason: 'no rule allows this call',
          mode,
        };
      }
      return {
        action: best.action,
        enforced: mode === 'audit' ? 'allow' : best.action,
        policy: p.name,
        rule: best.name,
        reason: best.reason ?? `rule ${best.name}`,
        mode,
        ...(best.approval ? { approval: best.approval } : {}),
      };
    },
    filterList(method: ListMethod, items: readonly unknown[], identity) {
      return items.filter((item) => {
        const o = item as Record<string, unknown>;
        const base = { args: {}, identity, direction: 'client-to-server' as const };
        let ctx: CallContext;
        if (method === 'tools/list') {
          ctx = { ...base, method: 'tools/call', tool: String(o['name']) };
          if (o['annotations']) ctx.toolAnnotations = o['annotations'] as Record<string, unknown>;
        } else if (method === 'prompts/list')
          ctx = { ...base, method: 'prompts/get', prompt: String(o['name']) };
        else ctx = { ...base, method: 'resources/read', resource: String(o['uri'] ?? o['uriTemplate']) };
        const d = engine.decide(ctx);
        return d.action === 'allow' || mode === 'audit';
      });
    },
    trustedIssuers: () => p.issuers,
    maskingRules: () => p.masking ?? [],
    recording: () => ({ enabled: p.recording ?? false, payloads: 'masked' }),
    policies: () => [{ name: p.name, generation: 1 }],
  };
  return engine;
}

/** A PolicySource whose engine the test swaps at will. */
export function testSource(
  initial: PolicyEngine | undefined,
): PolicySource & { set(e: PolicyEngine | undefined): void } {
  let current = initial;
  const listeners = new Set<(e: PolicyEngine | undefined) => void>();
  return {
    current: () => current,
    onChange(l) {
      listeners.add(l);
      return () => listeners.delete(l);
    },
    async close() {},
    set(e) {
      current = e;
      for (const l of listeners) l(e);
    },
  };
}
