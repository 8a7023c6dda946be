import { isIssuerOfTenant, isTemplate } from '../identity/issuers.js';
import type { Identity, TrustedIssuer } from '../identity/types.js';
import { type CelProgram, celArgs, compileWhen } from './cel.js';
import {
  type Action,
  type ApprovalSettings,
  type CallContext,
  type Decision,
  Directions,
  type ListMethod,
  type PolicyEngine,
  type RateLimit,
} from './decision.js';
import { parseDuration } from './duration.js';
import { compileGlobs } from './glob.js';
import { DefaultMethods, methodClass, methodTarget, type TargetKind } from './methods.js';
import type { MaskingRule, PolicyDocument, PolicyRule, ToolAnnotations } from './schema.js';
import { compileSubjects, type IdentityView, identityView, type SubjectMatcher } from './subjects.js';

/**
 * The compiled policy engine: `decide` runs on every message, so everything that can be computed
 * ahead (globs, CEL programs, subject sets, the decisions a rule produces) is computed here.
 *
 * Semantics (independent of rule and policy order):
 * - A rule applies when one of its subjects matches the caller and its match holds.
 * - Among applicable rules any deny wins, then approve, then allow; none → deny (default deny).
 * - Several policies combine the same way (their rules are pooled).
 * - `enforced` is the decision of the enforce-mode policies alone (allow when only audit policies
 *   select the pod). `action` is the decision of all policies together. When `action` is stricter
 *   than `enforced`, the decision names the audit policy and rule that would have blocked the call
 *   (`mode: 'audit'`); otherwise it names the enforcing rule (`mode: 'enforce'`).
 * - Ties between rules of the same action are broken by policy name, then rule name.
 */

const rankOf: Record<Action, number> = { allow: 1, approve: 2, deny: 3 };

/** Why a rule did (not) apply, for `explain`. */
export const MatchOutcome = {
  matched: 0,
  subjects: 1,
  method: 2,
  target: 3,
  annotations: 4,
  whenFalse: 5,
  whenError: 6,
  /** The caller's token is not from one of the issuer entries of the rule's policy. */
  issuer: 7,
} as const;
type Outcome = (typeof MatchOutcome)[keyof typeof MatchOutcome];

interface CompiledRule {
  readonly policy: string;
  readonly audit: boolean;
  readonly name: string;
  readonly action: Action;
  readonly rank: number;
  /** Position in (policy, rule name) order: the tie-breaker. */
  ord: number;
  readonly subjects: SubjectMatcher;
  /** The callers the rule's policy trusts (its own issuers); undefined when it names none. */
  readonly issuers: ((identity: Identity) => boolean) | undefined;
  readonly methods: ((m: string) => boolean) | undefined;
  readonly tools: ((s: string) => boolean) | undefined;
  readonly resources: ((s: string) => boolean) | undefined;
  readonly prompts: ((s: string) => boolean) | undefined;
  readonly hasTargets: boolean;
  readonly annotations: ReadonlyArray<readonly [keyof ToolAnnotations, boolean]> | undefined;
  readonly when: CelProgram | undefined;
  /** `when` refers to `args`, so it cannot be known when filtering a list. */
  readonly whenUsesArgs: boolean;
  readonly reason: string;
  readonly approval: ApprovalSettings | undefined;
  readonly limit: RateLimit | undefined;
  /** The decision this rule produces when it decides alone (precomputed: no allocation per call). */
  decision: Decision;
}

export interface ExplainedRule {
  policy: string;
  mode: 'enforce' | 'audit';
  rule: string;
  action: Action;
  matched: boolean;
  /** Why the rule applied or not. */
  detail: string;
}

export interface Explanation {
  decision: Decision;
  /** How the method is handled: decided, filtered (list methods) or always allowed (protocol). */
  methodClass: 'protocol' | 'list' | 'decided';
  rules: ExplainedRule[];
}

/** A PolicyEngine that can also explain itself (`mcp-warden policy test --explain`). */
export interface CompiledPolicyEngine extends PolicyEngine {
  explain(ctx: CallContext): Explanation;
  maskingRules(): Array<{ policy: string; rule: MaskingRule }>;
  recording(): { enabled: boolean; payloads: 'masked' | 'none'; sinks: Array<'volume' | 'stdout'> };
}

const freeze = Object.freeze;

const PROTOCOL_ALLOW: Decision = freeze({
  action: 'allow',
  enforced: 'allow',
  policy: '',
  reason: 'protocol method: always allowed',
  mode: 'enforce',
});
const LIST_ALLOW: Decision = freeze({
  action: 'allow',
  enforced: 'allow',
  policy: '',
  reason: 'list method: allowed, the result is filtered to what the caller may use',
  mode: 'enforce',
});

/** MCP defaults for absent hints (2025-06-18 schema), given the hints that are present. */
function annotationValue(ann: Record<string, unknown>, key: keyof ToolAnnotations): unknown {
  const v = ann[key];
  if (v !== undefined) return v;
  switch (key) {
    case 'readOnlyHint':
      return false;
    case 'destructiveHint':
      return ann['readOnlyHint'] !== true;
    case 'idempotentHint':
      return false;
    case 'openWorldHint':
      return true;
    default:
      return undefined;
  }
}

function policyKey(doc: PolicyDocument): string {
  return doc.metadata.namespace ? `${doc.metadata.namespace}/${doc.metadata.name}` : doc.metadata.name;
}

function defaultReason(rule: PolicyRule, policy: string): string {
  switch (rule.action) {
    case 'deny':
      return `denied by rule "${rule.name}" of policy "${policy}"`;
    case 'approve':
      return 'approval required';
    default:
      return `allowed by rule "${rule.name}" of policy "${policy}"`;
  }
}

function compileRule(
  rule: PolicyRule,
  policy: string,
  audit: boolean,
  issuers?: (identity: Identity) => boolean,
): CompiledRule {
  const match = rule.match ?? {};
  let when: CelProgram | undefined;
  if (match.when !== undefined) {
    const compiled = compileWhen(match.when);
    if (compiled.program === undefined) throw new Error(`rule ${rule.name}: ${compiled.issues.join('; ')}`);
    when = compiled.program;
  }
  const approval: ApprovalSettings | undefined =
    rule.approval === undefined
      ? undefined
      : freeze({
          approvers: rule.approval.approvers.map((a) => freeze({ ...a }) as Record<string, string>),
          timeout: rule.approval.timeout ?? '5m',
          mode: rule.approval.mode ?? 'hold',
          maskedArguments: rule.approval.maskedArguments ?? 'review',
        });
  const reason = rule.reason ?? defaultReason(rule, policy);
  const limit: RateLimit | undefined =
    rule.rateLimit === undefined
      ? undefined
      : freeze({
          policy,
          rule: rule.name,
          requests: rule.rateLimit.requests,
          perMs: parseDuration(rule.rateLimit.per) ?? 60_000,
          per: rule.rateLimit.per,
          by: rule.rateLimit.by ?? 'principal',
          audit,
        });
  const annotations =
    match.toolAnnotations === undefined
      ? undefined
      : (Object.entries(match.toolAnnotations).filter(([, v]) => typeof v === 'boolean') as Array<
          [keyof ToolAnnotations, boolean]
        >);
  const compiled: CompiledRule = {
    policy,
    audit,
    name: rule.name,
    action: rule.action,
    rank: rankOf[rule.action],
    ord: 0,
    subjects: compileSubjects(rule.subjects),
    issuers,
    methods: match.methods === undefined ? undefined : compileGlobs(match.methods, 'flat'),
    tools: match.tools === undefined ? undefined : compileGlobs(match.tools, 'flat'),
    resources: match.resources === undefined ? undefined : compileGlobs(match.resources, 'path'),
    prompts: match.prompts === undefined ? undefined : compileGlobs(match.prompts, 'flat'),
    hasTargets: match.tools !== undefined || match.resources !== undefined || match.prompts !== undefined,
    annotations,
    when,
    whenUsesArgs: when?.variables.has('args') === true,
    reason,
    approval,
    limit,
    decision: PROTOCOL_ALLOW,
  };
  const base = { action: rule.action, policy, rule: rule.name, reason, ...(approval ? { approval } : {}) };
  compiled.decision = freeze(
    audit
      ? { ...base, enforced: 'allow' as const, mode: 'audit' as const }
      : { ...base, enforced: rule.action, mode: 'enforce' as const },
  );
  return compiled;
}

/**
 * Which callers a policy's rules may apply to: those one of the policy's *own* issuer entries
 * accepts, with everything that entry constrains. Issuers are the union across policies (that is
 * what authentication checks), but rules are not: a rule of the policy trusting tenant A (say
 * `subjects: [{any: true}]`) must not apply to the users of tenant B that another policy allows,
 * nor must B's tokens match A's group ids or user names. Per entry:
 *
 * - exact `issuer`: `iss` equals it, an `aud` is one of its audiences, and with `allowedTenants`
 *   the token's tenant is one of them;
 * - `{tenantid}` template: the token's tenant is in the entry's `allowedTenants` and `iss` is the
 *   template filled with that tenant, an `aud` is one of its audiences;
 * - `kubernetes`: a service-account token whose `iss` is the entry's issuer (`issuer`, or without
 *   it the cluster's own: the placeholder, or whatever the sidecar discovered, which the
 *   authenticator marks `clusterIssuer`), an `aud` is one of its audiences.
 *
 * Undefined (no restriction) for a policy that names no issuers. The answer is remembered per
 * identity object: the authenticator hands out one frozen identity per token.
 */
function issuerMatcher(doc: PolicyDocument): ((identity: Identity) => boolean) | undefined {
  const entries = doc.spec.identity?.issuers ?? [];
  if (entries.length === 0) return undefined;
  const accepts = entries.map(entryMatcher);
  const seen = new WeakMap<Identity, boolean>();
  return (identity) => {
    let ok = seen.get(identity);
    if (ok === undefined) {
      // The token's audiences (a token may carry several); the authenticator checked one is trusted.
      const aud = identity.claims['aud'];
      const auds = Array.isArray(aud) ? aud : [aud ?? identity.audience];
      ok = accepts.some((accept) => accept(identity, auds));
      seen.set(identity, ok);
    }
    return ok;
  };
}

type IssuerEntry = NonNullable<PolicyDocument['spec']['identity']>['issuers'][number];

/** One issuer entry as a predicate over a verified identity and its token's audiences. */
function entryMatcher(e: IssuerEntry): (identity: Identity, auds: readonly unknown[]) => boolean {
  const audiences = new Set(e.kubernetes?.audiences ?? e.audiences ?? []);
  const forAudience = (auds: readonly unknown[]): boolean =>
    auds.some((a) => typeof a === 'string' && audiences.has(a));
  if (e.kubernetes !== undefined) {
    const issuer = e.kubernetes.issuer ?? KubernetesDefaultIssuer;
    // The sidecar replaces the placeholder (named or implied) with the discovered issuer.
    const ownCluster = issuer === KubernetesDefaultIssuer;
    return (identity, auds) =>
      identity.serviceAccount !== undefined &&
      (identity.issuer === issuer || (ownCluster && identity.clusterIssuer === true)) &&
      forAudience(auds);
  }
  const issuer = e.issuer ?? '';
  const tenants =
    e.allowedTenants === undefined || e.allowedTenants.length === 0 ? undefined : new Set(e.allowedTenants);
  if (isTemplate(issuer)) {
    if (tenants === undefined) return () => false; // refused by validation; never a wildcard
    return (identity, auds) => {
      const tid = tenantOf(identity);
      return (
        identity.serviceAccount === undefined &&
        tid !== undefined &&
        tenants.has(tid) &&
        isIssuerOfTenant(issuer, identity.issuer, tid) &&
        forAudience(auds)
      );
    };
  }
  return (identity, auds) => {
    if (identity.serviceAccount !== undefined || identity.issuer !== issuer || !forAudience(auds))
      return false;
    if (tenants === undefined) return true;
    const tid = tenantOf(identity);
    return tid !== undefined && tenants.has(tid);
  };
}

/** The tenant the authenticator checked: the token's `tid` claim (Entra identities copy it). */
function tenantOf(identity: Identity): string | undefined {
  const tid = identity.claims['tid'];
  return typeof tid === 'string' && tid !== '' ? tid : identity.tenantId;
}

/** How `when` is treated: evaluated, or (list filtering) unknown because it reads the arguments. */
const WhenMode = { evaluate: 0, listing: 1 } as const;
type WhenModeT = (typeof WhenMode)[keyof typeof WhenMode];

interface Scratch {
  activation: Record<string, unknown> | undefined;
  error: string | undefined;
}

function targetOf(ctx: CallContext, kind: TargetKind): string | undefined {
  return kind === 'tool'
    ? ctx.tool
    : kind === 'resource'
      ? ctx.resource
      : kind === 'prompt'
        ? ctx.prompt
        : undefined;
}

function activationFor(ctx: CallContext, view: IdentityView): Record<string, unknown> {
  let args: unknown;
  return {
    method: ctx.method,
    tool: ctx.tool ?? '',
    resource: ctx.resource ?? '',
    prompt: ctx.prompt ?? '',
    // Built on first use (most conditions never read the arguments): integers beyond 2^53 as
    // exact CEL ints (see celArgs).
    get args(): unknown {
      args ??= celArgs(ctx.args ?? {});
      return args;
    },
    identity: view.cel,
  };
}

function subjectsMatch(r: CompiledRule, identity: Identity, view: IdentityView): boolean {
  return r.subjects(identity, view) && (r.issuers === undefined || r.issuers(identity));
}

/** Match a call against a rule whose subjects are known to match the caller (see subjectsMatch). */
function matchCall(
  r: CompiledRule,
  ctx: CallContext,
  kind: TargetKind,
  view: IdentityView,
  scratch: Scratch,
  whenMode: WhenModeT,
): Outcome {
  if (r.methods !== undefined) {
    if (!r.methods(ctx.method)) return MatchOutcome.method;
  } else if (r.hasTargets) {
    // Default methods: those carrying a target kind the rule names (see DefaultMethods).
    if (kind === undefined) return MatchOutcome.method;
  }
  if (r.hasTargets) {
    const glob =
      kind === 'tool'
        ? r.tools
        : kind === 'resource'
          ? r.resources
          : kind === 'prompt'
            ? r.prompts
            : undefined;
    const target = targetOf(ctx, kind);
    if (glob === undefined || target === undefined || !glob(target)) return MatchOutcome.target;
  }
  if (r.annotations !== undefined) {
    const ann = ctx.toolAnnotations;
    if (kind !== 'tool' || ann === undefined) return MatchOutcome.annotations;
    for (let i = 0; i < r.annotations.length; i++) {
      const [key, want] = r.annotations[i]!;
      if (annotationValue(ann, key) !== want) return MatchOutcome.annotations;
    }
  }
  if (r.when !== undefined) {
    if (whenMode === WhenMode.listing && r.whenUsesArgs) {
      // Arguments are unknown at list time: a tool stays listed if some call could be allowed.
      return r.action === 'deny' ? MatchOutcome.whenFalse : MatchOutcome.matched;
    }
    scratch.activation ??= activationFor(ctx, view);
    let result: unknown;
    try {
      result = r.when.evaluate(scratch.activation);
    } catch (err) {
      scratch.error = (err instanceof Error ? err.message : String(err)).split('\n')[0];
      return MatchOutcome.whenError;
    }
    if (result !== true) {
      if (typeof result !== 'boolean') {
        scratch.error = `when evaluated to ${typeof result}, not a bool`;
        return MatchOutcome.whenError;
      }
      return MatchOutcome.whenFalse;
    }
  }
  return MatchOutcome.matched;
}

/** An error in `when` fails closed: deny and approve rules apply, allow rules do not. */
function applies(r: CompiledRule, outcome: Outcome): boolean {
  return outcome === MatchOutcome.matched || (outcome === MatchOutcome.whenError && r.action !== 'allow');
}

function describeOutcome(r: CompiledRule, outcome: Outcome, ctx: CallContext, scratch: Scratch): string {
  switch (outcome) {
    case MatchOutcome.matched:
      return r.when === undefined ? 'subjects and match apply' : 'subjects and match apply; when is true';
    case MatchOutcome.subjects:
      return 'no subject matches the caller';
    case MatchOutcome.issuer:
      return `the caller is not from one of the issuers of policy ${r.policy} (its issuer, tenant, audience or cluster is not one that policy names)`;
    case MatchOutcome.method:
      return r.methods === undefined
        ? `${ctx.method} carries no ${[r.tools && 'tool', r.resources && 'resource', r.prompts && 'prompt'].filter(Boolean).join('/')} (default methods: ${[
            ...(r.tools ? DefaultMethods.tool : []),
            ...(r.resources ? DefaultMethods.resource : []),
            ...(r.prompts ? DefaultMethods.prompt : []),
          ].join(', ')})`
        : `method ${ctx.method} is not in match.methods`;
    case MatchOutcome.target: {
      const kind = methodTarget(ctx.method);
      const target = targetOf(ctx, kind);
      return kind === undefined
        ? `${ctx.method} has no tool, resource or prompt to match`
        : `${kind} ${JSON.stringify(target ?? '')} does not match match.${kind}s`;
    }
    case MatchOutcome.annotations:
      return ctx.toolAnnotations === undefined
        ? 'tool annotations are unknown (the tool was not in a tools/list), so toolAnnotations cannot match'
        : 'tool annotations differ from match.toolAnnotations';
    case MatchOutcome.whenFalse:
      return 'when is false';
    default:
      return r.action === 'allow'
        ? `when failed (${scratch.error}): an allow rule does not apply`
        : `when failed (${scratch.error}): a ${r.action} rule applies anyway (fail closed)`;
  }
}

/** An enforce-mode approve rule that refuses calls whose arguments masking changes. */
function isMaskedDeny(r: CompiledRule): boolean {
  return !r.audit && r.action === 'approve' && r.approval?.maskedArguments === 'deny';
}

class Engine implements CompiledPolicyEngine {
  /** Rules sorted by (rank desc, ord asc): the first applicable one decides. */
  readonly #rules: CompiledRule[];
  /** Rules in declaration order, for explain. */
  readonly #declared: CompiledRule[];
  readonly #hasEnforce: boolean;
  /** Some rule carries a `rateLimit` (most engines: none, and deciding skips the limits pass). */
  readonly #hasLimits: boolean;
  readonly #docs: PolicyDocument[];
  readonly #keys: string[];
  readonly #auditDecisions = new Map<string, Decision>();
  readonly #scratch: Scratch = { activation: undefined, error: undefined };
  readonly #byIdentity = new WeakMap<Identity, CompiledRule[]>();
  /** Per identity: its rules that carry a `rateLimit` (usually none). */
  readonly #limitedByIdentity = new WeakMap<Identity, CompiledRule[]>();
  /** Some enforce-mode approve rule says `approval.maskedArguments: deny` (most engines: none). */
  readonly #hasMaskedDeny: boolean;
  /** Per identity: its enforce-mode approve rules with `approval.maskedArguments: deny`. */
  readonly #maskedDenyByIdentity = new WeakMap<Identity, CompiledRule[]>();
  /** A decision made strict by another rule's `maskedArguments: deny` (no allocation per call). */
  readonly #maskedDenyDecisions = new WeakMap<Decision, Map<CompiledRule, Decision>>();

  constructor(docs: PolicyDocument[]) {
    this.#docs = docs;
    this.#keys = docs.map(policyKey);
    this.#declared = [];
    docs.forEach((doc, i) => {
      const audit = doc.spec.mode === 'audit';
      const issuers = issuerMatcher(doc);
      for (const rule of doc.spec.rules)
        this.#declared.push(compileRule(rule, this.#keys[i]!, audit, issuers));
    });
    const byName = [...this.#declared].sort((a, b) =>
      a.policy === b.policy ? (a.name < b.name ? -1 : a.name > b.name ? 1 : 0) : a.policy < b.policy ? -1 : 1,
    );
    byName.forEach((r, i) => {
      r.ord = i;
    });
    this.#rules = byName.sort((a, b) => b.rank - a.rank || a.ord - b.ord);
    this.#hasEnforce = docs.some((d) => d.spec.mode !== 'audit');
    this.#hasLimits = this.#declared.some((r) => r.limit !== undefined);
    this.#hasMaskedDeny = this.#declared.some(isMaskedDeny);
  }

  decide(ctx: CallContext): Decision {
    const cls = methodClass(ctx.method);
    if (cls === 'protocol') return PROTOCOL_ALLOW;
    if (cls === 'list') return LIST_ALLOW;
    return this.#decide(ctx, WhenMode.evaluate);
  }

  /**
   * The rules whose subjects (and issuers) match this caller, in decision order: the only ones a
   * call of theirs can meet. Most rules of a shared policy are other teams'; an identity object is
   * reused for every request with the same token (the authenticator's verified cache), so they are
   * skipped once per token instead of once per call and per listed tool.
   */
  #rulesFor(identity: Identity, view: IdentityView): CompiledRule[] {
    let rules = this.#byIdentity.get(identity);
    if (rules === undefined) {
      rules = this.#rules.filter((r) => subjectsMatch(r, identity, view));
      this.#byIdentity.set(identity, rules);
    }
    return rules;
  }

  #decide(ctx: CallContext, whenMode: WhenModeT): Decision {
    let decision = this.#decideRules(ctx, whenMode);
    if (decision.enforced === 'deny') return decision;
    if (
      decision.enforced === 'approve' &&
      this.#hasMaskedDeny &&
      decision.approval?.maskedArguments !== 'deny'
    )
      decision = this.#strictestMasked(ctx, decision, whenMode);
    if (!this.#hasLimits) return decision;
    let limited = this.#limitedByIdentity.get(ctx.identity);
    if (limited === undefined) {
      limited = this.#rulesFor(ctx.identity, identityView(ctx.identity)).filter((r) => r.limit !== undefined);
      this.#limitedByIdentity.set(ctx.identity, limited);
    }
    if (limited.length === 0) return decision;
    // Every applicable rule's limit counts, not only the deciding rule's: a second rule that also
    // allows the call must not be a way around the first one's limit. A `when` that fails to
    // evaluate counts as applying (fail closed).
    const view = identityView(ctx.identity);
    const kind = methodTarget(ctx.method);
    const limits: RateLimit[] = [];
    for (const r of limited) {
      const outcome = matchCall(r, ctx, kind, view, this.#scratch, whenMode);
      if (outcome === MatchOutcome.matched || outcome === MatchOutcome.whenError) limits.push(r.limit!);
    }
    return limits.length === 0 ? decision : freeze({ ...decision, limits: freeze(limits) });
  }

  /**
   * `approval.maskedArguments` of a held call: the strictest of every applicable enforce-mode
   * approve rule, not only the deciding one's (the first by policy and rule name). Like rate limits,
   * a second rule that also asks for approval, with `review`, must not be a way around a rule that
   * refuses calls with masked arguments. A `when` that fails to evaluate counts as applying.
   */
  #strictestMasked(ctx: CallContext, decision: Decision, whenMode: WhenModeT): Decision {
    let strict = this.#maskedDenyByIdentity.get(ctx.identity);
    if (strict === undefined) {
      strict = this.#rulesFor(ctx.identity, identityView(ctx.identity)).filter(isMaskedDeny);
      this.#maskedDenyByIdentity.set(ctx.identity, strict);
    }
    if (strict.length === 0) return decision;
    const view = identityView(ctx.identity);
    const kind = methodTarget(ctx.method);
    for (const r of strict) {
      if (!applies(r, matchCall(r, ctx, kind, view, this.#scratch, whenMode))) continue;
      let byRule = this.#maskedDenyDecisions.get(decision);
      if (byRule === undefined) {
        byRule = new Map();
        this.#maskedDenyDecisions.set(decision, byRule);
      }
      let d = byRule.get(r);
      if (d === undefined) {
        d = freeze({
          ...decision,
          approval: freeze({
            ...decision.approval!,
            maskedArguments: 'deny' as const,
            maskedArgumentsDeniedBy: freeze({ policy: r.policy, rule: r.name }),
          }),
        });
        byRule.set(r, d);
      }
      return d;
    }
    return decision;
  }

  #decideRules(ctx: CallContext, whenMode: WhenModeT): Decision {
    if (this.#docs.length === 0)
      return this.#defaultDeny(ctx, 'no MCPPolicy applies here, so every call is denied');
    const view = identityView(ctx.identity);
    const kind = methodTarget(ctx.method);
    // Reused: deciding is synchronous and never re-entered (CEL functions do not call back).
    const scratch = this.#scratch;
    scratch.activation = undefined;
    scratch.error = undefined;
    const rules = this.#rulesFor(ctx.identity, view);
    let all: CompiledRule | undefined;
    let enf: CompiledRule | undefined;
    for (let i = 0; i < rules.length; i++) {
      const r = rules[i]!;
      if (all !== undefined && r.audit) continue; // only the enforce winner is still missing
      if (!applies(r, matchCall(r, ctx, kind, view, scratch, whenMode))) continue;
      all ??= r;
      if (!r.audit) {
        enf = r;
        break;
      }
      if (!this.#hasEnforce) break;
    }
    if (!this.#hasEnforce) {
      // Only audit policies: report what they decide, let everything through.
      if (all !== undefined) return all.decision;
      const d = this.#defaultDeny(ctx);
      return freeze({ ...d, enforced: 'allow', mode: 'audit' });
    }
    if (enf === undefined) return this.#defaultDeny(ctx);
    if (all === undefined || all === enf || all.rank <= enf.rank) return enf.decision;
    return this.#auditOver(all, enf);
  }

  /** An audit rule stricter than what is enforced: report it, enforce the enforce-mode winner. */
  #auditOver(audit: CompiledRule, enf: CompiledRule): Decision {
    const key = `${audit.ord}:${enf.ord}`;
    let d = this.#auditDecisions.get(key);
    if (d === undefined) {
      const approval = enf.action === 'approve' ? enf.approval : audit.approval;
      d = freeze({
        action: audit.action,
        enforced: enf.action,
        policy: audit.policy,
        rule: audit.name,
        reason: audit.reason,
        mode: 'audit' as const,
        ...(approval ? { approval } : {}),
      });
      this.#auditDecisions.set(key, d);
    }
    return d;
  }

  #defaultDeny(ctx: CallContext, reason?: string): Decision {
    const kind = methodTarget(ctx.method);
    const target = targetOf(ctx, kind);
    const what = target === undefined ? ctx.method : `${ctx.method} of ${kind} ${JSON.stringify(target)}`;
    return freeze({
      action: 'deny',
      enforced: 'deny',
      policy: '',
      reason: reason ?? `no rule allows ${what} for this caller (default deny)`,
      mode: 'enforce',
    });
  }

  filterList(method: ListMethod, items: readonly unknown[], identity: Identity): unknown[] {
    const out: unknown[] = [];
    for (const item of items) {
      if (typeof item !== 'object' || item === null) continue;
      const rec = item as Record<string, unknown>;
      let ctx: CallContext;
      switch (method) {
        case 'tools/list': {
          if (typeof rec['name'] !== 'string') continue;
          const ann = rec['annotations'];
          ctx = {
            method: 'tools/call',
            tool: rec['name'],
            args: {},
            identity,
            toolAnnotations: typeof ann === 'object' && ann !== null ? (ann as Record<string, unknown>) : {},
            direction: Directions.clientToServer,
          };
          break;
        }
        case 'resources/list':
          if (typeof rec['uri'] !== 'string') continue;
          ctx = {
            method: 'resources/read',
            resource: rec['uri'],
            args: {},
            identity,
            direction: Directions.clientToServer,
          };
          break;
        case 'resources/templates/list':
          if (typeof rec['uriTemplate'] !== 'string') continue;
          ctx = {
            method: 'resources/read',
            resource: rec['uriTemplate'],
            args: {},
            identity,
            direction: Directions.clientToServer,
          };
          break;
        case 'prompts/list':
          if (typeof rec['name'] !== 'string') continue;
          ctx = {
            method: 'prompts/get',
            prompt: rec['name'],
            args: {},
            identity,
            direction: Directions.clientToServer,
          };
          break;
        default:
          return [];
      }
      if (this.#decideRules(ctx, WhenMode.listing).enforced !== 'deny') out.push(item);
    }
    return out;
  }

  explain(ctx: CallContext): Explanation {
    const cls = methodClass(ctx.method);
    const decision = this.decide(ctx);
    if (cls !== 'decided') return { decision, methodClass: cls, rules: [] };
    const view = identityView(ctx.identity);
    const kind = methodTarget(ctx.method);
    const rules = this.#declared.map((r) => {
      const scratch: Scratch = { activation: undefined, error: undefined };
      const outcome =
        r.issuers !== undefined && !r.issuers(ctx.identity)
          ? MatchOutcome.issuer
          : !r.subjects(ctx.identity, view)
            ? MatchOutcome.subjects
            : matchCall(r, ctx, kind, view, scratch, WhenMode.evaluate);
      return {
        policy: r.policy,
        mode: r.audit ? ('audit' as const) : ('enforce' as const),
        rule: r.name,
        action: r.action,
        matched: applies(r, outcome),
        detail: describeOutcome(r, outcome, ctx, scratch),
      };
    });
    return { decision, methodClass: cls, rules };
  }

  #trusted: readonly TrustedIssuer[] | undefined;

  /** Computed once per engine (asked on every request) and frozen: every caller shares it. */
  trustedIssuers(): readonly TrustedIssuer[] {
    if (this.#trusted === undefined) {
      const list = this.#collectIssuers();
      for (const entry of list) {
        Object.freeze(entry.audiences);
        if (entry.allowedTenants) Object.freeze(entry.allowedTenants);
        Object.freeze(entry);
      }
      this.#trusted = Object.freeze(list);
    }
    return this.#trusted;
  }

  #collectIssuers(): TrustedIssuer[] {
    const byIssuer = new Map<string, TrustedIssuer>();
    for (const doc of this.#docs) {
      for (const iss of doc.spec.identity?.issuers ?? []) {
        const entry: TrustedIssuer =
          iss.kubernetes !== undefined
            ? {
                issuer: iss.kubernetes.issuer ?? KubernetesDefaultIssuer,
                audiences: [...iss.kubernetes.audiences],
                kubernetes: true,
                // The entry the sidecar points at the cluster's discovered issuer (see issuerMatcher).
                ...((iss.kubernetes.issuer ?? KubernetesDefaultIssuer) === KubernetesDefaultIssuer
                  ? { clusterIssuer: true }
                  : {}),
              }
            : {
                issuer: iss.issuer ?? '',
                audiences: [...(iss.audiences ?? [])],
                ...(iss.jwksUri ? { jwksUri: iss.jwksUri } : {}),
                ...(iss.discoveryUrl ? { discoveryUrl: iss.discoveryUrl } : {}),
                ...(iss.allowedTenants ? { allowedTenants: [...iss.allowedTenants] } : {}),
                groupsOverage: iss.groupsOverage ?? 'deny',
              };
        const prev = byIssuer.get(entry.issuer);
        if (prev === undefined) {
          byIssuer.set(entry.issuer, entry);
          continue;
        }
        prev.audiences = [...new Set([...prev.audiences, ...entry.audiences])];
        // An entry without allowedTenants accepts every tenant, so the union does too (each
        // policy's rules still only apply to the tenants its own entry names: issuerMatcher).
        if (prev.allowedTenants === undefined || entry.allowedTenants === undefined)
          delete prev.allowedTenants;
        else prev.allowedTenants = [...new Set([...prev.allowedTenants, ...entry.allowedTenants])];
        if (entry.groupsOverage === 'deny') prev.groupsOverage = 'deny';
        prev.jwksUri ??= entry.jwksUri;
        prev.discoveryUrl ??= entry.discoveryUrl;
      }
    }
    return [...byIssuer.values()];
  }

  maskingRules(): Array<{ policy: string; rule: MaskingRule }> {
    return this.#docs.flatMap((doc, i) =>
      (doc.spec.masking ?? []).map((rule) => ({ policy: this.#keys[i]!, rule })),
    );
  }

  recording(): { enabled: boolean; payloads: 'masked' | 'none'; sinks: Array<'volume' | 'stdout'> } {
    const enabled = this.#docs.filter((d) => d.spec.recording?.enabled === true);
    if (enabled.length === 0) return { enabled: false, payloads: 'none', sinks: [] };
    const payloads = enabled.some((d) => (d.spec.recording?.payloads ?? 'masked') === 'masked')
      ? 'masked'
      : 'none';
    const sinks = [...new Set(enabled.map((d) => d.spec.recording?.sink ?? 'volume'))].sort();
    return { enabled: true, payloads, sinks };
  }

  policies(): Array<{ name: string; generation: number }> {
    return this.#docs.map((d, i) => ({ name: this.#keys[i]!, generation: d.metadata.generation ?? 0 }));
  }
}

/**
 * The issuer assumed for `kubernetes: {audiences}` entries without `issuer`: the default
 * service-account issuer of kubeadm-style clusters. The sidecar may replace it with the issuer the
 * API server advertises (`/.well-known/openid-configuration`).
 */
export const KubernetesDefaultIssuer = 'https://kubernetes.default.svc.cluster.local';

/** Build the engine from documents that already passed validation. */
export function createEngine(docs: PolicyDocument[]): CompiledPolicyEngine {
  return new Engine(docs);
}
