import { isWardenError } from '../errors.js';
import { parseJson } from '../json.js';
import { compilePolicies } from './compile.js';
import type { Action, CallContext, Decision } from './decision.js';
import type { PolicyDocument, PolicyRule } from './schema.js';
import { identity, policy, toolCall } from './testing.js';

const alice = identity({ groups: ['readers'] });
const bob = identity({
  principal: 'tenant-1/user-2',
  objectId: 'user-2',
  user: 'bob@example.com',
  groups: ['operators'],
});
const nobody = identity({
  principal: 'tenant-1/user-3',
  objectId: 'user-3',
  user: 'eve@example.com',
  groups: [],
});

function rule(name: string, action: Action, extra: Partial<PolicyRule> = {}): PolicyRule {
  return {
    name,
    subjects: [{ any: true }],
    action,
    ...(action === 'approve'
      ? { approval: { approvers: [{ group: 'reviewers' }], timeout: '2m', mode: 'hold' } }
      : {}),
    ...extra,
  };
}

describe('decision table within one policy', () => {
  const cases: Array<{ rules: Action[]; want: Action }> = [
    { rules: [], want: 'deny' },
    { rules: ['allow'], want: 'allow' },
    { rules: ['approve'], want: 'approve' },
    { rules: ['deny'], want: 'deny' },
    { rules: ['allow', 'approve'], want: 'approve' },
    { rules: ['allow', 'deny'], want: 'deny' },
    { rules: ['approve', 'deny'], want: 'deny' },
    { rules: ['allow', 'approve', 'deny'], want: 'deny' },
    { rules: ['allow', 'allow'], want: 'allow' },
  ];
  test.each(cases)('applicable rules $rules decide $want', ({ rules, want }) => {
    const doc = policy(
      'p',
      rules.map((a, i) => rule(`r${i}-${a}`, a, { match: { tools: ['t'] } })),
    );
    const d = compilePolicies([doc]).decide(toolCall('t', alice));
    expect(d.action).toBe(want);
    expect(d.enforced).toBe(want);
    if (rules.length === 0) {
      expect(d.rule).toBeUndefined();
      expect(d.policy).toBe('');
      expect(d.reason).toMatch(/no rule allows tools\/call of tool "t".*default deny/);
    } else {
      expect(d.rule).toMatch(new RegExp(`-${want}$`));
      expect(d.policy).toBe('p');
    }
  });

  test('rules that do not apply are ignored: a deny for another tool does not block', () => {
    const doc = policy('p', [
      rule('allow-t', 'allow', { match: { tools: ['t'] } }),
      rule('deny-u', 'deny', { match: { tools: ['u'] } }),
    ]);
    const engine = compilePolicies([doc]);
    expect(engine.decide(toolCall('t', alice)).action).toBe('allow');
    expect(engine.decide(toolCall('u', alice)).rule).toBe('deny-u');
    expect(engine.decide(toolCall('v', alice)).rule).toBeUndefined();
  });

  test('deny reasons: the rule reason, or a default naming rule and policy', () => {
    const doc = policy('p', [
      rule('with-reason', 'deny', { match: { tools: ['a'] }, reason: 'not today' }),
      rule('without', 'deny', { match: { tools: ['b'] } }),
      rule('needs-ok', 'approve', { match: { tools: ['c'] } }),
    ]);
    const engine = compilePolicies([doc]);
    expect(engine.decide(toolCall('a', alice)).reason).toBe('not today');
    expect(engine.decide(toolCall('b', alice)).reason).toBe('denied by rule "without" of policy "p"');
    const approve = engine.decide(toolCall('c', alice));
    expect(approve.reason).toBe('approval required');
    expect(approve.approval).toEqual({
      approvers: [{ group: 'reviewers' }],
      timeout: '2m',
      mode: 'hold',
      maskedArguments: 'review',
    });
  });

  test('approval defaults: timeout 5m, mode hold, masked arguments reviewed', () => {
    const doc = policy('p', [
      {
        name: 'a',
        subjects: [{ any: true }],
        action: 'approve',
        approval: { approvers: [{ user: 'rita' }] },
      },
    ]);
    expect(compilePolicies([doc]).decide(toolCall('x', alice)).approval).toEqual({
      approvers: [{ user: 'rita' }],
      timeout: '5m',
      mode: 'hold',
      maskedArguments: 'review',
    });
  });

  test('approval.maskedArguments: deny reaches the decision of the rule that holds the call', () => {
    const doc = policy('p', [
      {
        name: 'a',
        subjects: [{ any: true }],
        action: 'approve',
        approval: { approvers: [{ user: 'rita' }], maskedArguments: 'deny' },
      },
    ]);
    expect(compilePolicies([doc]).decide(toolCall('x', alice)).approval?.maskedArguments).toBe('deny');
  });

  test.each([
    { review: 'a-review', deny: 'b-deny' },
    { review: 'b-review', deny: 'a-deny' },
  ])(
    'approval.maskedArguments: the strictest applicable approve rule wins ($review, $deny)',
    ({ review, deny }) => {
      const approve = (name: string, maskedArguments: 'review' | 'deny', extra: Partial<PolicyRule> = {}) =>
        rule(name, 'approve', {
          approval: { approvers: [{ user: name }], maskedArguments },
          match: { tools: ['t'] },
          ...extra,
        });
      const engine = compilePolicies([
        policy(review, [approve('r', 'review')]),
        policy(deny, [approve('d', 'deny')]),
      ]);
      const d = engine.decide(toolCall('t', alice));
      expect(d.enforced).toBe('approve');
      // The deciding rule (first by policy name) still holds the call; only the strictness combines.
      const first = [review, deny].sort()[0];
      expect(d.policy).toBe(first);
      expect(d.approval?.approvers).toEqual([{ user: first === review ? 'r' : 'd' }]);
      expect(d.approval?.maskedArguments).toBe('deny');
      if (first === review) expect(d.approval?.maskedArgumentsDeniedBy).toEqual({ policy: deny, rule: 'd' });
      else expect(d.approval?.maskedArgumentsDeniedBy).toBeUndefined();
      // The same object for every such call.
      expect(engine.decide(toolCall('t', alice))).toBe(d);

      // Only an applicable, enforce-mode approve rule makes it strict.
      const notHere = compilePolicies([
        policy(review, [approve('r', 'review')]),
        policy(deny, [approve('d', 'deny', { match: { tools: ['u'] } })]),
      ]);
      expect(notHere.decide(toolCall('t', alice)).approval?.maskedArguments).toBe('review');
      const audit: PolicyDocument = { ...policy(deny, [approve('d', 'deny')]) };
      audit.spec = { ...audit.spec, mode: 'audit' };
      const audited = compilePolicies([policy(review, [approve('r', 'review')]), audit]);
      expect(audited.decide(toolCall('t', alice)).approval?.maskedArguments).toBe('review');
      // A `when` that fails to evaluate counts as applying (fail closed).
      const failing = compilePolicies([
        policy(review, [approve('r', 'review')]),
        policy(deny, [approve('d', 'deny', { match: { tools: ['t'], when: 'args.flag' } })]),
      ]);
      expect(failing.decide(toolCall('t', alice, { flag: 'yes' })).approval?.maskedArguments).toBe('deny');
      expect(failing.decide(toolCall('t', alice, { flag: false })).approval?.maskedArguments).toBe('review');
    },
  );

  test('no policy at all denies every decided call', () => {
    const d = compilePolicies([]).decide(toolCall('t', alice));
    expect(d.enforced).toBe('deny');
    expect(d.reason).toMatch(/no MCPPolicy applies/);
  });
});

describe('subjects', () => {
  const doc = policy('p', [
    rule('g', 'allow', { subjects: [{ group: 'readers' }], match: { tools: ['g'] } }),
    rule('r', 'allow', { subjects: [{ role: 'MCP.Read' }], match: { tools: ['r'] } }),
    rule('u-principal', 'allow', { subjects: [{ user: 'tenant-1/user-2' }], match: { tools: ['u1'] } }),
    rule('u-oid', 'allow', { subjects: [{ user: 'user-2' }], match: { tools: ['u2'] } }),
    rule('u-name', 'allow', { subjects: [{ user: 'BOB@example.com' }], match: { tools: ['u3'] } }),
    rule('app', 'allow', { subjects: [{ app: 'app-9' }], match: { tools: ['app'] } }),
    rule('sa', 'allow', { subjects: [{ serviceAccount: 'agents/runner' }], match: { tools: ['sa'] } }),
    rule('sa-long', 'allow', {
      subjects: [{ serviceAccount: 'system:serviceaccount:agents:runner' }],
      match: { tools: ['sa2'] },
    }),
    rule('several', 'allow', {
      subjects: [{ group: 'nope' }, { role: 'MCP.Write' }],
      match: { tools: ['several'] },
    }),
  ]);
  const engine = compilePolicies([doc]);
  const allowed = (tool: string, who = alice) => engine.decide(toolCall(tool, who)).action === 'allow';

  test('group, role', () => {
    expect(allowed('g')).toBe(true);
    expect(allowed('g', bob)).toBe(false);
    expect(allowed('r', identity({ roles: ['MCP.Read'] }))).toBe(true);
    expect(allowed('r', identity({ roles: ['MCP.Read.All'] }))).toBe(false);
  });

  test('user: principal, object id, or case-insensitive user name', () => {
    expect(allowed('u1', bob)).toBe(true);
    expect(allowed('u2', bob)).toBe(true);
    expect(allowed('u3', bob)).toBe(true);
    expect(allowed('u1', alice)).toBe(false);
    expect(allowed('u3', identity({ user: undefined }))).toBe(false);
  });

  test('app: the client application id', () => {
    expect(allowed('app', identity({ appId: 'app-9' }))).toBe(true);
    expect(allowed('app', identity({ appId: 'app-1' }))).toBe(false);
    expect(allowed('app', identity({ appId: undefined }))).toBe(false);
  });

  test('serviceAccount: both spellings, from the identity or its principal', () => {
    const sa = identity({
      principal: 'system:serviceaccount:agents:runner',
      serviceAccount: { namespace: 'agents', name: 'runner' },
    });
    const saPrincipalOnly = identity({ principal: 'system:serviceaccount:agents:runner' });
    const other = identity({
      principal: 'system:serviceaccount:agents:other',
      serviceAccount: { namespace: 'agents', name: 'other' },
    });
    expect(allowed('sa', sa)).toBe(true);
    expect(allowed('sa2', sa)).toBe(true);
    expect(allowed('sa', saPrincipalOnly)).toBe(true);
    expect(allowed('sa', other)).toBe(false);
    // An Entra principal shaped like ns/name is not a service account.
    expect(allowed('sa', identity({ principal: 'agents/runner' }))).toBe(false);
  });

  test('any of several subjects', () => {
    expect(allowed('several', identity({ roles: ['MCP.Write'] }))).toBe(true);
    expect(allowed('several', nobody)).toBe(false);
  });
});

describe('match: methods, targets and defaults', () => {
  const engine = compilePolicies([
    policy('p', [
      rule('tools', 'allow', { match: { tools: ['get_*'] } }),
      rule('res', 'allow', { match: { resources: ['file:///docs/**'] } }),
      rule('prompts', 'allow', { match: { prompts: ['summar?'] } }),
      rule('sampling', 'allow', { match: { methods: ['sampling/createMessage'] } }),
      rule('explicit', 'allow', { match: { methods: ['resources/read'], tools: ['*'] } }),
    ]),
  ]);
  const ctx = (method: string, extra: Partial<CallContext> = {}): CallContext => ({
    method,
    args: {},
    identity: alice,
    direction: 'client-to-server',
    ...extra,
  });

  test('tools default to tools/call, resources to read/subscribe/unsubscribe, prompts to prompts/get', () => {
    expect(engine.decide(ctx('tools/call', { tool: 'get_weather' })).rule).toBe('tools');
    expect(engine.decide(ctx('tools/call', { tool: 'set_weather' })).action).toBe('deny');
    for (const m of ['resources/read', 'resources/subscribe', 'resources/unsubscribe']) {
      expect(engine.decide(ctx(m, { resource: 'file:///docs/a/b.md' })).rule).toBe('res');
    }
    expect(engine.decide(ctx('resources/read', { resource: 'file:///etc/passwd' })).action).toBe('deny');
    expect(engine.decide(ctx('prompts/get', { prompt: 'summary' })).rule).toBe('prompts');
    expect(engine.decide(ctx('prompts/get', { prompt: 'summaries' })).action).toBe('deny');
  });

  test('a rule naming targets never matches a call without one (completion, sampling, a tools/call without name)', () => {
    expect(engine.decide(ctx('completion/complete')).action).toBe('deny');
    expect(engine.decide(ctx('tools/call')).action).toBe('deny');
    // explicit methods + tools: resources/read carries no tool, so `explicit` does not apply
    expect(engine.decide(ctx('resources/read', { resource: 'file:///x' })).action).toBe('deny');
  });

  test('methods without targets match by method, in both directions', () => {
    expect(engine.decide(ctx('sampling/createMessage', { direction: 'server-to-client' })).rule).toBe(
      'sampling',
    );
    expect(engine.decide(ctx('elicitation/create', { direction: 'server-to-client' })).action).toBe('deny');
  });

  test('an empty match covers every decided method', () => {
    const all = compilePolicies([policy('p', [rule('everything', 'allow')])]);
    for (const m of [
      'tools/call',
      'completion/complete',
      'logging/setLevel',
      'sampling/createMessage',
      'x/future',
    ]) {
      expect(all.decide(ctx(m, { tool: 'z' })).rule).toBe('everything');
    }
  });

  test('protocol methods are always allowed and list methods are allowed (then filtered), even with no rule', () => {
    const none = compilePolicies([policy('p', [rule('deny-all', 'deny')])]);
    for (const m of [
      'initialize',
      'ping',
      'server/discover',
      'subscriptions/listen',
      'notifications/initialized',
      'notifications/cancelled',
      'notifications/progress',
    ]) {
      const d = none.decide(ctx(m));
      expect(d.enforced).toBe('allow');
      expect(d.reason).toMatch(/protocol/);
    }
    for (const m of ['tools/list', 'resources/list', 'resources/templates/list', 'prompts/list']) {
      expect(none.decide(ctx(m)).reason).toMatch(/filtered/);
    }
    for (const m of ['tasks/get', 'tasks/result', 'completion/complete', 'logging/setLevel']) {
      expect(none.decide(ctx(m)).enforced).toBe('deny');
    }
  });

  test('method globs', () => {
    const g = compilePolicies([
      policy('p', [rule('res-any', 'allow', { match: { methods: ['resources/*'] } })]),
    ]);
    expect(g.decide(ctx('resources/read', { resource: 'x' })).action).toBe('allow');
    expect(g.decide(ctx('tools/call', { tool: 'x' })).action).toBe('deny');
  });
});

describe('toolAnnotations', () => {
  const engine = compilePolicies([
    policy('p', [
      rule('ro', 'allow', { match: { tools: ['*'], toolAnnotations: { readOnlyHint: true } } }),
      rule('no-destructive', 'deny', { match: { tools: ['*'], toolAnnotations: { destructiveHint: true } } }),
    ]),
  ]);
  const d = (ann?: Record<string, unknown>) => engine.decide(toolCall('t', alice, {}, ann));

  test('a required annotation must be declared', () => {
    expect(d({ readOnlyHint: true }).rule).toBe('ro');
    expect(d({ readOnlyHint: false, destructiveHint: false }).action).toBe('deny');
    expect(d({ readOnlyHint: 'true' }).action).toBe('deny'); // not the boolean true
  });

  test('unknown annotations (tool never listed) match no annotation rule', () => {
    const x = d(undefined);
    expect(x.action).toBe('deny');
    expect(x.rule).toBeUndefined(); // default deny: the destructive rule did not match either
  });

  test('absent hints take the MCP defaults: destructive unless read-only', () => {
    expect(d({}).rule).toBe('no-destructive');
    expect(d({ title: 'x' }).rule).toBe('no-destructive');
    expect(d({ readOnlyHint: true, destructiveHint: true }).rule).toBe('no-destructive');
  });

  test('annotation rules never match non-tool calls', () => {
    const r = engine.decide({
      method: 'prompts/get',
      prompt: 'p',
      args: {},
      identity: alice,
      direction: 'client-to-server',
      toolAnnotations: { readOnlyHint: true },
    });
    expect(r.rule).toBeUndefined();
  });
});

describe('CEL when', () => {
  const engine = compilePolicies([
    policy('p', [
      rule('run', 'allow', { subjects: [{ group: 'operators' }], match: { tools: ['run_query'] } }),
      rule('no-drop', 'deny', {
        match: { tools: ['run_query'], when: 'args.query.matches("(?i)\\\\bdrop\\\\s+table\\\\b")' },
        reason: 'no DROP TABLE',
      }),
      rule('small', 'allow', {
        match: { tools: ['limit'], when: 'args.n <= 10 && "readers" in identity.groups' },
      }),
      rule('level', 'approve', { match: { tools: ['app'], when: 'identity.claims.level > 3' } }),
      rule('claims', 'allow', {
        match: {
          tools: ['claims'],
          when: 'identity.claims.tid == identity.tenantId && method == "tools/call" && tool == "claims"',
        },
      }),
    ]),
  ]);

  test('argument conditions with RE2 syntax ((?i) works)', () => {
    expect(engine.decide(toolCall('run_query', bob, { query: 'select * from t' })).action).toBe('allow');
    const d = engine.decide(toolCall('run_query', bob, { query: 'x; DROP   Table users' }));
    expect(d).toMatchObject({ action: 'deny', rule: 'no-drop', reason: 'no DROP TABLE' });
    expect(engine.decide(toolCall('run_query', bob, { query: 'dropped tables' })).action).toBe('allow');
  });

  test('a deny rule whose when errors applies (fail closed)', () => {
    expect(engine.decide(toolCall('run_query', bob, {})).rule).toBe('no-drop');
    expect(engine.decide(toolCall('run_query', bob, { query: 42 })).rule).toBe('no-drop');
  });

  test('an allow rule whose when errors does not apply', () => {
    expect(engine.decide(toolCall('limit', alice, { n: 5 })).action).toBe('allow');
    expect(engine.decide(toolCall('limit', alice, { n: 50 })).action).toBe('deny');
    const missing = engine.decide(toolCall('limit', alice, {}));
    expect(missing.action).toBe('deny');
    expect(missing.rule).toBeUndefined();
    expect(engine.decide(toolCall('limit', alice, { n: 'five' })).action).toBe('deny');
  });

  test('an approve rule whose when errors applies too (it only restricts)', () => {
    expect(engine.decide(toolCall('app', identity({ claims: { level: 5 } }))).action).toBe('approve');
    expect(engine.decide(toolCall('app', identity({ claims: { level: 1 } }))).action).toBe('deny');
    expect(engine.decide(toolCall('app', identity({ claims: {} }))).rule).toBe('level');
  });

  test('a when that is not a bool at run time is an error: deny applies, allow does not', () => {
    const e = compilePolicies([
      policy('p', [
        rule('flag-deny', 'deny', { match: { tools: ['d'], when: 'args.flag' } }),
        rule('flag-allow', 'allow', { match: { tools: ['a'], when: 'args.flag' } }),
      ]),
    ]);
    expect(e.decide(toolCall('d', alice, { flag: 'yes' })).rule).toBe('flag-deny');
    expect(e.decide(toolCall('d', alice, { flag: false })).rule).toBeUndefined();
    expect(e.decide(toolCall('a', alice, { flag: 'yes' })).action).toBe('deny');
    expect(e.decide(toolCall('a', alice, { flag: true })).action).toBe('allow');
  });

  test('identity and call variables', () => {
    expect(engine.decide(toolCall('claims', alice)).action).toBe('allow');
    expect(engine.decide(toolCall('claims', identity({ claims: { tid: 'other' } }))).action).toBe('deny');
    // Identities from pkg/identity carry frozen claims.
    expect(
      engine.decide(
        toolCall(
          'claims',
          identity({ claims: Object.freeze({ tid: 'tenant-1', nested: Object.freeze({ a: 1 }) }) }),
        ),
      ).action,
    ).toBe('allow');
  });

  test('pathological input stays fast (RE2 is linear)', () => {
    const e = compilePolicies([
      policy('p', [
        rule('re', 'deny', { match: { tools: ['x'], when: 'args.s.matches("(a+)+$")' } }),
        rule('ok', 'allow', { match: { tools: ['x'] } }),
      ]),
    ]);
    const start = performance.now();
    const d = e.decide(toolCall('x', alice, { s: `${'a'.repeat(50_000)}!` }));
    expect(performance.now() - start).toBeLessThan(1000);
    expect(d.action).toBe('allow');
  });
});

describe('across policies and audit mode', () => {
  const allowAll = policy('a-enforce', [rule('allow-all', 'allow')]);
  const denyT = policy('b-enforce', [rule('deny-t', 'deny', { match: { tools: ['t'] } })]);
  const auditDenyT = policy(
    'c-audit',
    [rule('audit-deny-t', 'deny', { match: { tools: ['t'] }, reason: 'would deny' })],
    { mode: 'audit' },
  );
  const auditApproveT = policy('d-audit', [rule('audit-approve-t', 'approve', { match: { tools: ['t'] } })], {
    mode: 'audit',
  });

  test('rules of several policies pool: a deny in one beats an allow in another', () => {
    const d = compilePolicies([allowAll, denyT]).decide(toolCall('t', alice));
    expect(d).toMatchObject({
      action: 'deny',
      enforced: 'deny',
      policy: 'b-enforce',
      rule: 'deny-t',
      mode: 'enforce',
    });
    expect(compilePolicies([allowAll, denyT]).decide(toolCall('u', alice)).action).toBe('allow');
  });

  test('audit deny over an enforced allow: reported, not enforced', () => {
    const d = compilePolicies([allowAll, auditDenyT]).decide(toolCall('t', alice));
    expect(d).toMatchObject({
      action: 'deny',
      enforced: 'allow',
      policy: 'c-audit',
      rule: 'audit-deny-t',
      mode: 'audit',
      reason: 'would deny',
    });
  });

  test('audit policy alone: decide and report, let everything through (even the default deny)', () => {
    const engine = compilePolicies([auditDenyT]);
    expect(engine.decide(toolCall('t', alice))).toMatchObject({
      action: 'deny',
      enforced: 'allow',
      mode: 'audit',
    });
    const other = engine.decide(toolCall('u', alice));
    expect(other).toMatchObject({ action: 'deny', enforced: 'allow', mode: 'audit' });
    expect(other.rule).toBeUndefined();
  });

  test('enforced deny beats an audit deny: the enforcing rule is reported', () => {
    const d = compilePolicies([denyT, auditDenyT]).decide(toolCall('t', alice));
    expect(d).toMatchObject({ action: 'deny', enforced: 'deny', policy: 'b-enforce', mode: 'enforce' });
  });

  test('enforce default deny stays enforced even when only an audit rule matched', () => {
    const d = compilePolicies([denyT, auditDenyT]).decide(toolCall('u', alice));
    expect(d).toMatchObject({ action: 'deny', enforced: 'deny', mode: 'enforce' });
    expect(d.rule).toBeUndefined();
  });

  test('audit approve over enforced allow reports approve, enforces allow', () => {
    const d = compilePolicies([allowAll, auditApproveT]).decide(toolCall('t', alice));
    expect(d).toMatchObject({ action: 'approve', enforced: 'allow', mode: 'audit', rule: 'audit-approve-t' });
  });

  test('audit deny over an enforced approve keeps the enforced approval settings', () => {
    const approveT = policy('e-enforce', [rule('approve-t', 'approve', { match: { tools: ['t'] } })]);
    const d = compilePolicies([approveT, auditDenyT]).decide(toolCall('t', alice));
    expect(d).toMatchObject({ action: 'deny', enforced: 'approve', mode: 'audit', policy: 'c-audit' });
    expect(d.approval).toEqual({
      approvers: [{ group: 'reviewers' }],
      timeout: '2m',
      mode: 'hold',
      maskedArguments: 'review',
    });
  });

  test('podLabels select policies by podSelector', () => {
    const only = policy('only-web', [rule('deny-all', 'deny')], {
      podSelector: { matchLabels: { app: 'web' } },
    });
    expect(
      compilePolicies([allowAll, only], { podLabels: { app: 'web' } }).decide(toolCall('t', alice)).action,
    ).toBe('deny');
    expect(
      compilePolicies([allowAll, only], { podLabels: { app: 'db' } }).decide(toolCall('t', alice)).action,
    ).toBe('allow');
    expect(compilePolicies([allowAll, only], { podLabels: { app: 'db' } }).policies()).toEqual([
      { name: 'a-enforce', generation: 0 },
    ]);
  });

  test('policy names include the namespace when there is one', () => {
    const p = policy('x', [rule('deny', 'deny')], {}, { namespace: 'agents', generation: 7 });
    const engine = compilePolicies([p]);
    expect(engine.decide(toolCall('t', alice)).policy).toBe('agents/x');
    expect(engine.policies()).toEqual([{ name: 'agents/x', generation: 7 }]);
  });
});

/** Deterministic pseudo-random numbers (xorshift) so a failure reproduces. */
function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 0x1_0000_0000;
  };
}

function shuffle<T>(items: readonly T[], rand: () => number): T[] {
  const a = [...items];
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [a[i], a[j]] = [a[j]!, a[i]!];
  }
  return a;
}

describe('order independence (property test)', () => {
  const actions: Action[] = ['allow', 'deny', 'approve'];
  const tools = ['a', 'b', 'c'];
  const groups = ['readers', 'operators'];

  function randomRule(rand: () => number, i: number): PolicyRule {
    const action = actions[Math.floor(rand() * 3)]!;
    const subject = rand() < 0.3 ? { any: true as const } : { group: groups[Math.floor(rand() * 2)]! };
    const match: PolicyRule['match'] = rand() < 0.2 ? {} : { tools: [tools[Math.floor(rand() * 3)]!] };
    if (rand() < 0.25) match.when = rand() < 0.5 ? 'args.n > 5' : 'args.missing == 1';
    return rule(`r${i}`, action, { subjects: [subject], match });
  }

  /** The reference: the contract's semantics written as plainly as possible. */
  function reference(docs: PolicyDocument[], ctx: CallContext): { action: Action; enforced: Action } {
    const rank = { allow: 1, approve: 2, deny: 3 } as const;
    const applicable = (d: PolicyDocument) =>
      d.spec.rules.filter((r) => {
        const subj = r.subjects.some(
          (s) => s.any === true || (s.group !== undefined && ctx.identity.groups.includes(s.group)),
        );
        if (!subj) return false;
        if (r.match?.tools && !r.match.tools.includes(ctx.tool!)) return false;
        if (r.match?.when === 'args.n > 5') return (ctx.args['n'] as number) > 5;
        if (r.match?.when === 'args.missing == 1') return r.action !== 'allow'; // evaluation error
        return true;
      });
    const combine = (ds: PolicyDocument[]): Action => {
      const rs = ds.flatMap(applicable);
      if (rs.length === 0) return 'deny';
      return rs.reduce<Action>((best, r) => (rank[r.action] > rank[best] ? r.action : best), 'allow');
    };
    const enforce = docs.filter((d) => d.spec.mode !== 'audit');
    const all = combine(docs);
    const enforced = enforce.length === 0 ? 'allow' : combine(enforce);
    // The reported action is the stricter of the two views (audit never loosens what is enforced).
    return { action: rank[all] > rank[enforced] ? all : enforced, enforced };
  }

  test('300 random policy sets: every permutation of rules and policies decides the same, as the reference says', () => {
    const rand = rng(20261130);
    for (let round = 0; round < 300; round++) {
      const docs: PolicyDocument[] = [];
      const nDocs = 1 + Math.floor(rand() * 3);
      for (let d = 0; d < nDocs; d++) {
        const rules = Array.from({ length: 1 + Math.floor(rand() * 5) }, (_, i) => randomRule(rand, i));
        docs.push(policy(`p${d}`, rules, { mode: rand() < 0.3 ? 'audit' : 'enforce' }));
      }
      const who = rand() < 0.5 ? alice : bob;
      const ctx = toolCall(tools[Math.floor(rand() * 3)]!, who, { n: Math.floor(rand() * 10) });
      const expected = compilePolicies(docs).decide(ctx);
      expect({ action: expected.action, enforced: expected.enforced }).toEqual(reference(docs, ctx));
      for (let p = 0; p < 4; p++) {
        const permuted = shuffle(docs, rand).map((d) => ({
          ...d,
          spec: { ...d.spec, rules: shuffle(d.spec.rules, rand) },
        }));
        const got: Decision = compilePolicies(permuted).decide(ctx);
        expect(got).toEqual(expected);
      }
    }
  });
});

describe('list filtering', () => {
  const engine = compilePolicies([
    policy('p', [
      rule('ro', 'allow', {
        subjects: [{ group: 'readers' }, { group: 'operators' }],
        match: { tools: ['*'], toolAnnotations: { readOnlyHint: true } },
      }),
      rule('ops', 'allow', { subjects: [{ group: 'operators' }], match: { tools: ['run_query'] } }),
      rule('no-drop', 'deny', { match: { tools: ['run_query'], when: 'args.query.contains("drop")' } }),
      rule('no-delete', 'deny', { match: { tools: ['delete_repo'] } }),
      rule('approve-email', 'approve', {
        subjects: [{ group: 'readers' }],
        match: { tools: ['send_email'] },
      }),
      rule('app-only-hidden', 'deny', { match: { tools: ['get_weather'], when: 'identity.appOnly' } }),
      rule('docs', 'allow', { match: { resources: ['file:///docs/*'] } }),
      rule('tpl', 'allow', { match: { resources: ['db://tables/*'] } }),
      rule('prompts', 'allow', { match: { prompts: ['summar*'] } }),
    ]),
  ]);
  const tools = [
    { name: 'get_weather', annotations: { readOnlyHint: true } },
    { name: 'search_docs', annotations: { readOnlyHint: true } },
    { name: 'run_query' },
    { name: 'delete_repo', annotations: { destructiveHint: true } },
    { name: 'send_email' },
    { notAName: true },
    'garbage',
  ];
  const names = (items: unknown[]) =>
    items.map(
      (t) =>
        (t as { name?: string; uri?: string; uriTemplate?: string }).name ??
        (t as { uri?: string }).uri ??
        (t as { uriTemplate?: string }).uriTemplate,
    );

  test('tools: kept when a call could be allowed or approved; argument conditions are unknown at list time', () => {
    expect(names(engine.filterList('tools/list', tools, alice))).toEqual([
      'get_weather',
      'search_docs',
      'send_email',
    ]);
    expect(names(engine.filterList('tools/list', tools, bob))).toEqual([
      'get_weather',
      'search_docs',
      'run_query',
    ]);
    expect(names(engine.filterList('tools/list', tools, nobody))).toEqual([]);
  });

  test('conditions on identity only are evaluated at list time', () => {
    const app = identity({ appOnly: true, groups: ['readers'] });
    expect(names(engine.filterList('tools/list', tools, app))).toEqual(['search_docs', 'send_email']);
  });

  test('the listed annotations are what toolAnnotations rules see', () => {
    const sneaky = [{ name: 'get_weather', annotations: { readOnlyHint: false } }];
    expect(engine.filterList('tools/list', sneaky, alice)).toEqual([]);
  });

  test('resources by URI, templates by uriTemplate, prompts by name; items are returned unchanged', () => {
    const resources = [
      { uri: 'file:///docs/a.md', name: 'a' },
      { uri: 'file:///docs/sub/b.md' },
      { uri: 'file:///etc/passwd' },
    ];
    expect(engine.filterList('resources/list', resources, alice)).toEqual([resources[0]]);
    const templates = [{ uriTemplate: 'db://tables/{table}' }, { uriTemplate: 'db://admin/{x}' }];
    expect(engine.filterList('resources/templates/list', templates, alice)).toEqual([templates[0]]);
    const prompts = [{ name: 'summarize' }, { name: 'delete_all' }];
    expect(engine.filterList('prompts/list', prompts, alice)).toEqual([prompts[0]]);
  });

  test('audit-only policies hide nothing', () => {
    const audit = compilePolicies([policy('a', [rule('deny-all', 'deny')], { mode: 'audit' })]);
    expect(audit.filterList('tools/list', tools.slice(0, 5), alice)).toHaveLength(5);
  });
});

describe('explain', () => {
  test('lists every rule with whether and why it applied', () => {
    const engine = compilePolicies([
      policy('p', [
        rule('ro', 'allow', {
          subjects: [{ group: 'readers' }],
          match: { tools: ['*'], toolAnnotations: { readOnlyHint: true } },
        }),
        rule('ops', 'allow', { subjects: [{ group: 'operators' }], match: { tools: ['run_query'] } }),
        rule('no-drop', 'deny', { match: { tools: ['run_query'], when: 'args.query.contains("drop")' } }),
        rule('sampling', 'allow', { match: { methods: ['sampling/createMessage'] } }),
      ]),
    ]);
    const x = engine.explain(toolCall('run_query', bob, {}));
    expect(x.decision.rule).toBe('no-drop');
    expect(x.methodClass).toBe('decided');
    const byRule = Object.fromEntries(x.rules.map((r) => [r.rule, r]));
    expect(byRule['ro']).toMatchObject({ matched: false, detail: 'no subject matches the caller' });
    expect(byRule['ops']).toMatchObject({ matched: true });
    expect(byRule['no-drop']?.matched).toBe(true);
    expect(byRule['no-drop']?.detail).toMatch(
      /when failed \(.*\): a deny rule applies anyway \(fail closed\)/,
    );
    expect(byRule['sampling']).toMatchObject({
      matched: false,
      detail: 'method tools/call is not in match.methods',
    });
    expect(engine.explain({ ...toolCall('x', bob), method: 'ping' })).toMatchObject({
      methodClass: 'protocol',
      rules: [],
    });
  });
});

describe('issuers, masking, recording', () => {
  test('trusted issuers are deduplicated and merged across policies', () => {
    const iss = 'https://login.microsoftonline.com/t/v2.0';
    const engine = compilePolicies([
      policy('a', [], {
        identity: {
          issuers: [
            { issuer: iss, audiences: ['api://x'], groupsOverage: 'graph' },
            { kubernetes: { audiences: ['mcp'] } },
          ],
        },
      }),
      policy('b', [], {
        identity: {
          issuers: [
            { issuer: iss, audiences: ['api://y'], groupsOverage: 'deny', jwksUri: 'https://k/keys' },
          ],
        },
      }),
    ]);
    expect(engine.trustedIssuers()).toEqual([
      { issuer: iss, audiences: ['api://x', 'api://y'], groupsOverage: 'deny', jwksUri: 'https://k/keys' },
      {
        issuer: 'https://kubernetes.default.svc.cluster.local',
        audiences: ['mcp'],
        kubernetes: true,
        clusterIssuer: true,
      },
    ]);
  });

  test('masking rules are the union, tagged with their policy; recording is enabled if any policy enables it', () => {
    const engine = compilePolicies([
      policy('a', [], {
        masking: [{ name: 'pii', detectors: ['email'] }],
        recording: { enabled: true, payloads: 'none' },
      }),
      policy('b', [], {
        masking: [{ name: 'keys', patterns: [{ name: 'ticket', regex: 'TCK-[0-9]{6}' }] }],
        recording: { enabled: true, sink: 'stdout' },
      }),
      policy('c', [], { recording: { enabled: false } }),
    ]);
    expect(engine.maskingRules()).toEqual([
      { policy: 'a', rule: { name: 'pii', detectors: ['email'] } },
      { policy: 'b', rule: { name: 'keys', patterns: [{ name: 'ticket', regex: 'TCK-[0-9]{6}' }] } },
    ]);
    expect(engine.recording()).toEqual({ enabled: true, payloads: 'masked', sinks: ['stdout', 'volume'] });
    expect(compilePolicies([policy('c', [])]).recording()).toEqual({
      enabled: false,
      payloads: 'none',
      sinks: [],
    });
  });
});

describe('compile errors', () => {
  test('an invalid document throws ERR_POLICY_INVALID naming policy, field and reason', () => {
    const bad = policy('broken', [rule('r', 'allow', { match: { when: 'args.x ==' } })]);
    let caught: unknown;
    try {
      compilePolicies([bad]);
    } catch (err) {
      caught = err;
    }
    expect(isWardenError(caught, 'ERR_POLICY_INVALID')).toBe(true);
    expect((caught as Error).message).toMatch(
      /policy broken: spec\.rules\[0\]\.match\.when: CEL does not parse/,
    );
  });
});

describe('hot path', () => {
  test('decisions for the same rule are the same frozen object (no allocation per call)', () => {
    const engine = compilePolicies([policy('p', [rule('ro', 'allow', { match: { tools: ['get_*'] } })])]);
    const a = engine.decide(toolCall('get_a', alice));
    const b = engine.decide(toolCall('get_b', bob));
    expect(a).toBe(b);
    expect(Object.isFrozen(a)).toBe(true);
  });

  test('30k decisions with globs, subjects and a CEL condition average under 100 µs each', () => {
    const engine = compilePolicies([
      policy('p', [
        rule('ro', 'allow', { subjects: [{ group: 'readers' }], match: { tools: ['get_*', 'search_*'] } }),
        rule('no-drop', 'deny', { match: { tools: ['run_query'], when: 'args.query.contains("drop")' } }),
        rule('ops', 'allow', { subjects: [{ group: 'operators' }], match: { tools: ['run_query'] } }),
      ]),
    ]);
    const calls = [
      toolCall('get_weather', alice),
      toolCall('run_query', bob, { query: 'select' }),
      toolCall('delete', alice),
    ];
    const start = performance.now();
    for (let i = 0; i < 30_000; i++) engine.decide(calls[i % 3]!);
    const perCallUs = ((performance.now() - start) * 1000) / 30_000;
    expect(perCallUs).toBeLessThan(100);
  });
});

describe('rules pre-selected per caller', () => {
  test('an identity reused across calls and lists decides exactly as fresh copies of it do', () => {
    const doc = policy('p', [
      rule('readers-read', 'allow', { subjects: [{ group: 'readers' }], match: { tools: ['get_*'] } }),
      rule('ops-all', 'allow', { subjects: [{ group: 'operators' }], match: { tools: ['*'] } }),
      rule('bob-no-delete', 'deny', {
        subjects: [{ user: 'bob@example.com' }],
        match: { tools: ['delete_*'] },
      }),
      rule('anyone-ping', 'allow', { match: { tools: ['ping_*'] } }),
    ]);
    const engine = compilePolicies([doc]);
    const tools = ['get_a', 'delete_b', 'ping_c', 'other'];
    for (let round = 0; round < 3; round++)
      for (const who of [alice, bob, nobody])
        for (const t of tools) {
          const fresh = { ...who, groups: [...who.groups] };
          expect(engine.decide(toolCall(t, who))).toEqual(engine.decide(toolCall(t, fresh)));
        }
    expect(engine.decide(toolCall('get_a', alice)).enforced).toBe('allow');
    expect(engine.decide(toolCall('delete_b', alice)).enforced).toBe('deny');
    expect(engine.decide(toolCall('delete_b', bob)).rule).toBe('bob-no-delete');
    expect(engine.decide(toolCall('other', bob)).rule).toBe('ops-all');
    expect(engine.decide(toolCall('get_a', nobody)).enforced).toBe('deny');
    const listed = (who: typeof alice) =>
      engine.filterList(
        'tools/list',
        tools.map((name) => ({ name })),
        who,
      );
    expect(listed(alice)).toEqual([{ name: 'get_a' }, { name: 'ping_c' }]);
    expect(listed(bob)).toEqual([{ name: 'get_a' }, { name: 'ping_c' }, { name: 'other' }]);
    expect(listed(nobody)).toEqual([{ name: 'ping_c' }]);
  });

  test('trusted issuers are computed once per engine and frozen', () => {
    const doc = policy('p', [rule('r', 'allow')]);
    doc.spec.identity = { issuers: [{ issuer: 'https://issuer.example/v2.0', audiences: ['api://a'] }] };
    const engine = compilePolicies([doc]);
    const list = engine.trustedIssuers();
    expect(engine.trustedIssuers()).toBe(list);
    expect(list).toEqual([
      { issuer: 'https://issuer.example/v2.0', audiences: ['api://a'], groupsOverage: 'deny' },
    ]);
    expect(Object.isFrozen(list) && Object.isFrozen(list[0]) && Object.isFrozen(list[0]!.audiences)).toBe(
      true,
    );
  });
});

describe("a policy's rules apply only to callers of its own issuer entries", () => {
  const allowAll = (name: string) =>
    rule(name, 'allow', { subjects: [{ any: true }, { group: 'admins' }], match: { tools: ['get_*'] } });

  describe('{tenantid} templates: only the tenants the entry allows', () => {
    const template = 'https://login.example/{tenantid}/v2.0';
    const engine = compilePolicies([
      policy('team-a', [allowAll('everyone-in-a')], {
        identity: { issuers: [{ issuer: template, audiences: ['api://x'], allowedTenants: ['tenant-a'] }] },
      }),
      policy('partner-b', [rule('b-nothing', 'allow', { match: { tools: ['nothing_here'] } })], {
        identity: { issuers: [{ issuer: template, audiences: ['api://y'], allowedTenants: ['tenant-b'] }] },
      }),
    ]);
    const caller = (tid: string, aud: string, iss = `https://login.example/${tid}/v2.0`) =>
      Object.freeze(
        identity({
          principal: `${tid}/oid-1`,
          issuer: iss,
          tenantId: tid,
          audience: aud,
          groups: ['admins'],
          claims: Object.freeze({ iss, aud, tid, oid: 'oid-1' }),
        }),
      );

    test("tenant-b's token for team-a's audience gets none of team-a's rules (any, group)", () => {
      const b = caller('tenant-b', 'api://x');
      for (let round = 0; round < 2; round++) {
        const d = engine.decide(toolCall('get_weather', b));
        expect(d.enforced).toBe('deny');
        expect(d.rule).toBeUndefined();
      }
      expect(engine.filterList('tools/list', [{ name: 'get_weather' }], b)).toEqual([]);
      // team-a's own tenant still gets them.
      expect(engine.decide(toolCall('get_weather', caller('tenant-a', 'api://x'))).rule).toBe(
        'everyone-in-a',
      );
    });

    test("the issuer must be the template filled with the token's own tenant", () => {
      // tid says tenant-a, but the token comes from tenant-b's issuer.
      const mixed = caller('tenant-a', 'api://x', 'https://login.example/tenant-b/v2.0');
      expect(engine.decide(toolCall('get_weather', mixed)).enforced).toBe('deny');
      const noTid = Object.freeze(
        identity({
          issuer: 'https://login.example/tenant-a/v2.0',
          tenantId: undefined,
          claims: { aud: 'api://x' },
        }),
      );
      expect(engine.decide(toolCall('get_weather', noTid)).enforced).toBe('deny');
    });

    test('explain says the caller is not from one of the policy’s issuers', () => {
      const x = engine.explain(toolCall('get_weather', caller('tenant-b', 'api://x')));
      expect(x.rules.find((r) => r.rule === 'everyone-in-a')).toMatchObject({
        matched: false,
        detail: expect.stringMatching(/not from one of the issuers of policy team-a/),
      });
    });
  });

  test('an exact issuer with allowedTenants: only those tenants, per policy', () => {
    const iss = 'https://issuer.example/';
    const engine = compilePolicies([
      policy('a', [allowAll('a-read')], {
        identity: { issuers: [{ issuer: iss, audiences: ['api://x'], allowedTenants: ['t-a'] }] },
      }),
      policy('b', [], {
        identity: { issuers: [{ issuer: iss, audiences: ['api://x'], allowedTenants: ['t-b'] }] },
      }),
    ]);
    const who = (tid: string) =>
      Object.freeze(identity({ issuer: iss, tenantId: tid, claims: { aud: 'api://x', tid } }));
    expect(engine.decide(toolCall('get_x', who('t-a'))).enforced).toBe('allow');
    expect(engine.decide(toolCall('get_x', who('t-b'))).enforced).toBe('deny');
  });

  test('an exact issuer one policy trusts for every tenant stays open when another policy restricts it', () => {
    const iss = 'https://issuer.example/';
    const engine = compilePolicies([
      policy('open', [], { identity: { issuers: [{ issuer: iss, audiences: ['api://x'] }] } }),
      policy('narrow', [], {
        identity: { issuers: [{ issuer: iss, audiences: ['api://y'], allowedTenants: ['t-b'] }] },
      }),
    ]);
    expect(engine.trustedIssuers()).toEqual([
      { issuer: iss, audiences: ['api://x', 'api://y'], groupsOverage: 'deny' },
    ]);
  });

  describe('kubernetes entries: only service-account tokens of their own cluster', () => {
    const sa = (iss: string, extra: Partial<Parameters<typeof identity>[0]> = {}) =>
      Object.freeze(
        identity({
          principal: 'system:serviceaccount:agents:bot',
          issuer: iss,
          subject: 'system:serviceaccount:agents:bot',
          tenantId: undefined,
          objectId: undefined,
          user: undefined,
          appOnly: true,
          serviceAccount: { namespace: 'agents', name: 'bot' },
          audience: 'mcp',
          claims: Object.freeze({ iss, aud: 'mcp', sub: 'system:serviceaccount:agents:bot' }),
          ...extra,
        }),
      );
    const bot = (name: string) =>
      rule(name, 'allow', { subjects: [{ serviceAccount: 'agents/bot' }], match: { tools: ['get_*'] } });

    test("another trusted cluster's agents/bot does not get this cluster's serviceAccount rule", () => {
      const engine = compilePolicies([
        policy('cluster-a', [bot('bot-a')], {
          identity: { issuers: [{ kubernetes: { issuer: 'https://a.example', audiences: ['mcp'] } }] },
        }),
        policy('cluster-b', [rule('b-nothing', 'allow', { match: { tools: ['nothing_here'] } })], {
          identity: { issuers: [{ kubernetes: { issuer: 'https://b.example', audiences: ['mcp'] } }] },
        }),
      ]);
      expect(engine.decide(toolCall('get_weather', sa('https://a.example'))).rule).toBe('bot-a');
      const fromB = sa('https://b.example');
      expect(engine.decide(toolCall('get_weather', fromB)).enforced).toBe('deny');
      expect(engine.decide(toolCall('get_weather', fromB)).enforced).toBe('deny');
      // A token of the right cluster but for another audience does not either.
      const otherAud = sa('https://a.example', {
        audience: 'other',
        claims: Object.freeze({ iss: 'https://a.example', aud: 'other' }),
      });
      expect(engine.decide(toolCall('get_weather', otherAud)).enforced).toBe('deny');
    });

    test('without issuer: the placeholder issuer, or the cluster issuer the authenticator vouched for', () => {
      const engine = compilePolicies([
        policy('own-cluster', [bot('bot-own')], {
          identity: { issuers: [{ kubernetes: { audiences: ['mcp'] } }] },
        }),
        policy('cluster-b', [], {
          identity: { issuers: [{ kubernetes: { issuer: 'https://b.example', audiences: ['mcp'] } }] },
        }),
      ]);
      expect(engine.trustedIssuers()).toContainEqual({
        issuer: 'https://kubernetes.default.svc.cluster.local',
        audiences: ['mcp'],
        kubernetes: true,
        clusterIssuer: true,
      });
      const placeholder = sa('https://kubernetes.default.svc.cluster.local');
      expect(engine.decide(toolCall('get_weather', placeholder)).rule).toBe('bot-own');
      // The sidecar replaces the placeholder with the issuer its API server advertises; the
      // authenticator marks tokens accepted through that entry.
      const discovered = sa('https://oidc.cluster.example/abc', { clusterIssuer: true });
      expect(engine.decide(toolCall('get_weather', discovered)).rule).toBe('bot-own');
      expect(engine.decide(toolCall('get_weather', sa('https://oidc.cluster.example/abc'))).enforced).toBe(
        'deny',
      );
      expect(engine.decide(toolCall('get_weather', sa('https://b.example'))).enforced).toBe('deny');
    });

    test('a kubernetes entry never vouches for a token that is not a service account’s', () => {
      const iss = 'https://a.example';
      const engine = compilePolicies([
        policy('cluster-a', [allowAll('any-a')], {
          identity: { issuers: [{ kubernetes: { issuer: iss, audiences: ['mcp'] } }] },
        }),
      ]);
      const notSa = Object.freeze(identity({ issuer: iss, audience: 'mcp', claims: { aud: 'mcp' } }));
      expect(engine.decide(toolCall('get_weather', notSa)).enforced).toBe('deny');
    });
  });
});

describe('CEL on integers beyond 2^53 (decided on the exact value the upstream receives)', () => {
  const engine = compilePolicies([
    policy('p', [
      rule('owner', 'allow', { match: { tools: ['get_order'], when: 'args.id == 9007199254740993' } }),
      rule('cap', 'deny', { match: { tools: ['transfer'], when: 'args.amount > 9223372036854775806' } }),
      rule('transfer', 'allow', { match: { tools: ['transfer'] } }),
    ]),
  ]);
  // Arguments as the proxy parses them (pkg/json.ts).
  const args = (json: string) => parseJson(json) as Record<string, unknown>;

  test('an id one past 2^53 is not taken for its neighbour', () => {
    // With JSON.parse, ...993 would be the double 2^53 (...992) and this rule would not match it.
    expect(engine.decide(toolCall('get_order', alice, args('{"id":9007199254740993}'))).action).toBe('allow');
    expect(engine.decide(toolCall('get_order', alice, args('{"id":9007199254740992}'))).action).toBe('deny');
    expect(engine.decide(toolCall('get_order', alice, args('{"id":9007199254740994}'))).action).toBe('deny');
  });

  test('a limit near int64 max is enforced on the exact value', () => {
    expect(engine.decide(toolCall('transfer', alice, args('{"amount":9223372036854775806}'))).action).toBe(
      'allow',
    );
    expect(engine.decide(toolCall('transfer', alice, args('{"amount":9223372036854775807}')))).toMatchObject({
      action: 'deny',
      rule: 'cap',
    });
    // As doubles both are 2^63, and the first would have been denied too.
  });
});

describe('rate limits', () => {
  const limited = (requests: number, extra: Partial<PolicyRule> = {}) =>
    rule(`limit-${requests}`, 'allow', { rateLimit: { requests, per: '1m' }, ...extra });

  test('every applicable rule that has a limit lends it to the decision, not only the deciding one', () => {
    const engine = compilePolicies([
      policy('p', [
        rule('a-allow-all', 'allow'),
        limited(10, { match: { tools: ['search_*'] } }),
        limited(100, { rateLimit: { requests: 100, per: '1h', by: 'all' } }),
      ]),
    ]);
    const d = engine.decide(toolCall('search_code', alice));
    expect(d).toMatchObject({ enforced: 'allow', rule: 'a-allow-all' });
    expect(d.limits).toEqual([
      {
        policy: 'p',
        rule: 'limit-10',
        requests: 10,
        perMs: 60_000,
        per: '1m',
        by: 'principal',
        audit: false,
      },
      { policy: 'p', rule: 'limit-100', requests: 100, perMs: 3_600_000, per: '1h', by: 'all', audit: false },
    ]);
    // A tool the narrower rule does not cover gets the wide limit only.
    expect(engine.decide(toolCall('get_issue', alice)).limits?.map((l) => l.rule)).toEqual(['limit-100']);
  });

  test('a denied call carries no limits (nothing to count); an approval does', () => {
    const engine = compilePolicies([
      policy('p', [limited(5), rule('no-delete', 'deny', { match: { tools: ['delete_*'] } })]),
      policy('q', [rule('review', 'approve', { match: { tools: ['deploy'] } })]),
    ]);
    expect(engine.decide(toolCall('delete_repo', alice)).limits).toBeUndefined();
    expect(engine.decide(toolCall('deploy', alice))).toMatchObject({
      enforced: 'approve',
      limits: [expect.objectContaining({ rule: 'limit-5' })],
    });
  });

  test('a limit applies only to the callers and calls its rule covers; a when that fails counts (fail closed)', () => {
    const engine = compilePolicies([
      policy('p', [
        rule('all', 'allow'),
        limited(1, { subjects: [{ group: 'operators' }] }),
        rule('broken-when', 'allow', {
          rateLimit: { requests: 2, per: '1s' },
          match: { when: 'args.n > 1' },
        }),
      ]),
    ]);
    expect(engine.decide(toolCall('t', alice, { n: 0 })).limits).toBeUndefined();
    expect(engine.decide(toolCall('t', bob, { n: 0 })).limits?.map((l) => l.rule)).toEqual(['limit-1']);
    // `args.n > 1` on a string fails to evaluate: the limit still counts.
    expect(engine.decide(toolCall('t', alice, { n: 'x' })).limits?.map((l) => l.rule)).toEqual([
      'broken-when',
    ]);
  });

  test('an audit-mode policy lends its limit marked audit', () => {
    const engine = compilePolicies([
      policy('p', [rule('all', 'allow')]),
      policy('trial', [limited(3)], { mode: 'audit' }),
    ]);
    expect(engine.decide(toolCall('t', alice)).limits).toEqual([
      expect.objectContaining({ rule: 'limit-3', audit: true }),
    ]);
  });

  test('list filtering is unaffected by limits', () => {
    const engine = compilePolicies([policy('p', [limited(1, { match: { tools: ['a'] } })])]);
    const tools = [
      { name: 'a', inputSchema: { type: 'object' } },
      { name: 'b', inputSchema: { type: 'object' } },
    ];
    expect(engine.filterList('tools/list', tools, alice)).toEqual([tools[0]]);
  });
});
