import { type Static, type TSchema, Type } from '@sinclair/typebox';
import { DurationPattern } from './duration.js';

/**
 * The ONE source of truth for the `MCPPolicy` and `MCPApproval` resources (`mcpwarden.io/v1alpha1`).
 *
 * - TypeScript types: `Static<typeof ...>` below.
 * - The ajv validator (`./validate.ts`) compiles these schemas as they are; the CEL rules in
 *   `x-kubernetes-validations` are evaluated by ajv too (through cel-js), so a rule the API server
 *   checks is checked in files and in the webhook in exactly the same way.
 * - The CRD manifests in `crds/` are generated from them by `cmd/gen-crds.ts` (`./crd.ts` strips
 *   what structural schemas forbid); a unit test fails when the committed YAML drifts.
 *
 * Every field carries a `description`: it is what `kubectl explain mcppolicy.spec.rules` prints.
 */

export const Group = 'mcpwarden.io';
export const Version = 'v1alpha1';
export const ApiVersion = `${Group}/${Version}`;

/** A CEL rule the API server (and our ajv keyword) checks on the object it is attached to. */
export interface CelRule {
  rule: string;
  message: string;
  /** Relative JSON path of the field the error is reported on, e.g. `.approval`. */
  fieldPath?: string;
  reason?: 'FieldValueInvalid' | 'FieldValueForbidden' | 'FieldValueRequired' | 'FieldValueDuplicate';
}

type Opts = Record<string, unknown> & { description: string };

/** A closed object: ajv refuses unknown fields (the API server prunes them / kubectl refuses them). */
function Obj<P extends Record<string, TSchema>>(props: P, opts: Opts & { celRules?: CelRule[] }) {
  const { celRules, ...rest } = opts;
  return Type.Object(props, {
    additionalProperties: false,
    ...rest,
    ...(celRules === undefined ? {} : { 'x-kubernetes-validations': celRules }),
  });
}

function Str(description: string, opts: Record<string, unknown> = {}) {
  return Type.String({ maxLength: 253, ...opts, description });
}

function StrEnum<const T extends readonly string[]>(values: T, opts: Opts) {
  return Type.Unsafe<T[number]>({ type: 'string', enum: [...values], ...opts });
}

function Count(description: string) {
  return Type.Integer({ minimum: 0, format: 'int64', description });
}

function StringMap(description: string) {
  return Type.Unsafe<Record<string, string>>({
    type: 'object',
    additionalProperties: { type: 'string', maxLength: 63 },
    maxProperties: 64,
    description,
  });
}

function Time(description: string) {
  return Type.String({ format: 'date-time', maxLength: 64, description });
}

/** Durations like `90s`, `5m`, `1h30m` (Go / Kubernetes style; units ms, s, m, h). */
export { DurationPattern };

// ---------------------------------------------------------------------------------------------
// Building blocks

export const LabelSelectorRequirementSchema = Obj(
  {
    key: Str('The label key the selector applies to.', { minLength: 1, maxLength: 317 }),
    operator: StrEnum(['In', 'NotIn', 'Exists', 'DoesNotExist'] as const, {
      description: 'How the key relates to the values: In, NotIn, Exists or DoesNotExist.',
    }),
    values: Type.Optional(
      Type.Array(Str('A label value.', { maxLength: 63 }), {
        maxItems: 64,
        description: 'Values for In and NotIn (non-empty); must be empty for Exists and DoesNotExist.',
      }),
    ),
  },
  {
    description: 'A label selector requirement: a key, an operator and (for In/NotIn) values.',
    celRules: [
      {
        rule: "self.operator == 'In' || self.operator == 'NotIn' ? has(self.values) && size(self.values) > 0 : !has(self.values) || size(self.values) == 0",
        message: 'values must be non-empty for In and NotIn, and empty for Exists and DoesNotExist',
        fieldPath: '.values',
      },
    ],
  },
);

export const LabelSelectorSchema = Obj(
  {
    matchLabels: Type.Optional(
      StringMap('Labels the pod must carry with exactly these values (ANDed with matchExpressions).'),
    ),
    matchExpressions: Type.Optional(
      Type.Array(LabelSelectorRequirementSchema, {
        maxItems: 32,
        description: 'Label selector requirements, all of which must hold.',
      }),
    ),
  },
  {
    description:
      'Selects the injected MCP pods (in this namespace) the policy applies to. An empty selector ({}) selects every injected pod in the namespace.',
  },
);

export const SubjectKinds = ['group', 'role', 'user', 'app', 'serviceAccount', 'any'] as const;
export type SubjectKind = (typeof SubjectKinds)[number];

export const SubjectSchema = Obj(
  {
    group: Type.Optional(
      Str('Entra group object id (or group name, as the token carries it) the caller must be a member of.', {
        minLength: 1,
      }),
    ),
    role: Type.Optional(
      Str('App role the caller holds (the token `roles` claim), e.g. MCP.Read.', { minLength: 1 }),
    ),
    user: Type.Optional(
      Str(
        'A user: the principal (`<tenant-id>/<object-id>`), the object id (`oid`), or the user name (upn / preferred_username, compared case-insensitively).',
        { minLength: 1 },
      ),
    ),
    app: Type.Optional(
      Str(
        'The client application id (`azp` / `appid`) the call comes through, for user-delegated and app-only tokens alike (add `when: identity.appOnly` to require app-only).',
        { minLength: 1 },
      ),
    ),
    serviceAccount: Type.Optional(
      Str('A Kubernetes service account: `namespace/name` or `system:serviceaccount:namespace:name`.', {
        minLength: 3,
        pattern:
          '^(system:serviceaccount:[a-z0-9]([-a-z0-9]*[a-z0-9])?:[a-z0-9]([-a-z0-9.]*[a-z0-9])?|[a-z0-9]([-a-z0-9]*[a-z0-9])?/[a-z0-9]([-a-z0-9.]*[a-z0-9])?)$',
      }),
    ),
    any: Type.Optional(
      Type.Unsafe<true>({
        type: 'boolean',
        enum: [true],
        description:
          'Every authenticated caller (any identity a trusted issuer vouched for). Only `true` is allowed.',
      }),
    ),
  },
  {
    description:
      'Who a rule applies to: exactly one of group, role, user, app, serviceAccount, or any: true. A rule applies when any of its subjects matches the caller.',
    celRules: [
      {
        rule: '[has(self.group), has(self.role), has(self.user), has(self.app), has(self.serviceAccount), has(self.any)].filter(x, x).size() == 1',
        message: 'a subject names exactly one of group, role, user, app, serviceAccount or any',
      },
    ],
  },
);

export const ToolAnnotationsSchema = Obj(
  {
    readOnlyHint: Type.Optional(Type.Boolean({ description: 'The tool does not modify its environment.' })),
    destructiveHint: Type.Optional(
      Type.Boolean({
        description: 'The tool may perform destructive updates (MCP default: true unless read-only).',
      }),
    ),
    idempotentHint: Type.Optional(
      Type.Boolean({ description: 'Repeated calls with the same arguments have no additional effect.' }),
    ),
    openWorldHint: Type.Optional(
      Type.Boolean({
        description: 'The tool interacts with an open world of external entities (MCP default: true).',
      }),
    ),
  },
  {
    description:
      'Tool annotations the upstream declared in its tools/list that the tool must carry, e.g. {readOnlyHint: true}. When the annotations of a tool are unknown, the rule does not match; absent hints take the MCP defaults (readOnlyHint false, destructiveHint true unless read-only, idempotentHint false, openWorldHint true).',
  },
);

export const MatchSchema = Obj(
  {
    methods: Type.Optional(
      Type.Array(
        Str('A JSON-RPC method or a glob (e.g. tools/call, resources/*).', { minLength: 1, maxLength: 128 }),
        {
          minItems: 1,
          maxItems: 32,
          description:
            'JSON-RPC methods the rule covers (globs allowed). Default: tools/call when `tools` is set, resources/read|subscribe|unsubscribe when `resources` is set, prompts/get when `prompts` is set; every decided method when none of them is set. initialize, ping and notifications are never decided; list methods are filtered instead.',
        },
      ),
    ),
    tools: Type.Optional(
      Type.Array(
        Str('A tool name glob: `*` any characters, `?` one character, `\\` escapes.', {
          minLength: 1,
          maxLength: 256,
        }),
        {
          minItems: 1,
          maxItems: 128,
          description:
            'Tool name globs (tools/call). A call without a tool name does not match a rule that lists tools.',
        },
      ),
    ),
    resources: Type.Optional(
      Type.Array(
        Str('A resource URI glob: `*` does not cross `/`, `**` does, `?` is one character other than `/`.', {
          minLength: 1,
          maxLength: 1024,
        }),
        {
          minItems: 1,
          maxItems: 128,
          description: 'Resource URI globs (resources/read, resources/subscribe, resources/unsubscribe).',
        },
      ),
    ),
    prompts: Type.Optional(
      Type.Array(
        Str('A prompt name glob: `*` any characters, `?` one character.', { minLength: 1, maxLength: 256 }),
        {
          minItems: 1,
          maxItems: 128,
          description: 'Prompt name globs (prompts/get).',
        },
      ),
    ),
    toolAnnotations: Type.Optional(ToolAnnotationsSchema),
    when: Type.Optional(
      Type.String({
        minLength: 1,
        maxLength: 4096,
        description:
          'A CEL expression that must evaluate to true. Variables: method, tool, resource, prompt (strings, empty when absent), args (the call arguments), identity {principal, user, groups, roles, scopes, appId, appOnly, tenantId, claims}. string.matches() uses RE2 syntax. When evaluation fails (e.g. a missing argument), allow rules do not match, deny and approve rules do (fail closed).',
      }),
    ),
  },
  {
    description:
      'What calls the rule covers. Every condition given must hold; an empty match covers every decided method.',
  },
);

export const ApproverSchema = Obj(
  {
    user: Type.Optional(Str('A Kubernetes user name allowed to decide.', { minLength: 1 })),
    group: Type.Optional(Str('A Kubernetes group whose members may decide.', { minLength: 1 })),
    serviceAccount: Type.Optional(
      Str(
        'A Kubernetes service account allowed to decide: `namespace/name` or `system:serviceaccount:ns:name`.',
        {
          minLength: 3,
        },
      ),
    ),
  },
  {
    description:
      'A reviewer allowed to approve or deny a held call (checked by the webhook against the Kubernetes user that sets the decision): exactly one of user, group, serviceAccount.',
    celRules: [
      {
        rule: '[has(self.user), has(self.group), has(self.serviceAccount)].filter(x, x).size() == 1',
        message: 'an approver names exactly one of user, group or serviceAccount',
      },
    ],
  },
);

export const ApprovalModes = ['hold', 'ticket'] as const;
/** `approval.maskedArguments`: ask a reviewer (who is told what was masked), or refuse the call. */
export const MaskedArgumentsPolicies = ['review', 'deny'] as const;
/** Entries `spec.maskedArguments.entries` lists at most (`count` counts them all). */
export const MaxMaskedArgumentEntries = 32;

export const ApprovalSchema = Obj(
  {
    approvers: Type.Array(ApproverSchema, {
      minItems: 1,
      maxItems: 32,
      description: 'Who may approve or deny. The requester and the MCP pod service account never can.',
    }),
    timeout: Type.Optional(
      Type.String({
        pattern: DurationPattern,
        maxLength: 32,
        default: '5m',
        description: 'How long a held call waits for a verdict (e.g. 90s, 5m, 1h; at most 168h). Default 5m.',
      }),
    ),
    mode: Type.Optional(
      StrEnum(ApprovalModes, {
        default: 'hold',
        description:
          'hold: keep the client request open until the verdict or the timeout. ticket: answer at once with the approval name; the same caller repeating the same call after approval runs it once.',
      }),
    ),
    maskedArguments: Type.Optional(
      StrEnum(MaskedArgumentsPolicies, {
        default: 'review',
        description:
          "What to do with a held call whose arguments the policy's masking changes (reviewers cannot see what a mask hides). review: ask for an approval that lists what was masked (path, detector, length); approving it needs spec.decision.acknowledgeMaskedArguments: true. deny: refuse the call at once (-31403), no approval is created.",
      }),
    ),
  },
  { description: 'Approval settings, required when (and only when) action is approve.' },
);

export const RateLimitKeys = ['principal', 'all'] as const;

export const RateLimitSchema = Obj(
  {
    requests: Type.Integer({
      minimum: 1,
      maximum: 1_000_000,
      description:
        'How many calls the rule lets through per period (a token bucket of this size, refilled evenly).',
    }),
    per: Type.String({
      pattern: DurationPattern,
      maxLength: 32,
      description: 'The period, e.g. 1s, 1m, 1h (at least 1s, at most 24h).',
    }),
    by: Type.Optional(
      StrEnum(RateLimitKeys, {
        default: 'principal',
        description:
          'principal: one bucket per caller. all: one bucket shared by every caller the rule covers. Counted per sidecar or gateway process.',
      }),
    ),
  },
  {
    description:
      'Limit the calls this rule covers; a call over the limit is refused with -31429 (data.retryAfterSeconds), whatever else allows it.',
  },
);

export const RuleSchema = Obj(
  {
    name: Type.String({
      minLength: 1,
      maxLength: 63,
      pattern: '^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$',
      description: 'Rule name, unique within the policy; appears in decisions, metrics and recordings.',
    }),
    subjects: Type.Array(SubjectSchema, {
      minItems: 1,
      maxItems: 64,
      description: 'Who the rule applies to (any of them). Use [{any: true}] for every authenticated caller.',
    }),
    match: Type.Optional(MatchSchema),
    action: StrEnum(['allow', 'deny', 'approve'] as const, {
      description:
        'What to do with a call the rule covers. Rule order does not matter: any deny wins, then approve, then allow; a call no rule covers is denied.',
    }),
    reason: Type.Optional(
      Type.String({ maxLength: 1024, description: 'Human-readable reason, shown to the client on deny.' }),
    ),
    approval: Type.Optional(ApprovalSchema),
    rateLimit: Type.Optional(RateLimitSchema),
  },
  {
    description: 'One access rule: subjects, the calls it covers, and the action.',
    celRules: [
      {
        rule: "self.action == 'approve' ? has(self.approval) : !has(self.approval)",
        message: 'approval is required when action is approve, and allowed only then',
        fieldPath: '.approval',
      },
      {
        rule: "self.action != 'deny' || !has(self.rateLimit)",
        message: 'rateLimit limits the calls a rule lets through: allowed on allow and approve rules only',
        fieldPath: '.rateLimit',
      },
    ],
  },
);

export const IssuerSchema = Obj(
  {
    issuer: Type.Optional(
      Type.String({
        minLength: 1,
        maxLength: 512,
        description:
          'The exact `iss` value, e.g. https://login.microsoftonline.com/<tenant-id>/v2.0 (v2) or https://sts.windows.net/<tenant-id>/ (v1). `{tenantid}` makes a multi-tenant template (needs allowedTenants). http:// only on loopback.',
      }),
    ),
    audiences: Type.Optional(
      Type.Array(Str('An accepted `aud` value.', { minLength: 1, maxLength: 512 }), {
        minItems: 1,
        maxItems: 16,
        description: 'Accepted audiences, e.g. api://github-mcp or the application (client) id.',
      }),
    ),
    jwksUri: Type.Optional(
      Type.String({ minLength: 1, maxLength: 1024, description: 'JWKS URL; skips discovery when set.' }),
    ),
    discoveryUrl: Type.Optional(
      Type.String({
        minLength: 1,
        maxLength: 1024,
        description:
          'OpenID discovery document URL when it is not <issuer>/.well-known/openid-configuration (Entra v1 issuers are discovered at login.microsoftonline.com).',
      }),
    ),
    allowedTenants: Type.Optional(
      Type.Array(Str('A tenant id.', { minLength: 1, maxLength: 64 }), {
        minItems: 1,
        maxItems: 64,
        description: 'Tenants accepted by a multi-tenant issuer template.',
      }),
    ),
    groupsOverage: Type.Optional(
      StrEnum(['graph', 'deny'] as const, {
        description:
          'Tokens whose groups overflowed (_claim_names): graph resolves them through Microsoft Graph, deny refuses the token. Default deny.',
      }),
    ),
    kubernetes: Type.Optional(
      Obj(
        {
          audiences: Type.Array(Str('An accepted `aud` value.', { minLength: 1, maxLength: 512 }), {
            minItems: 1,
            maxItems: 16,
            description: 'Accepted audiences of projected service-account tokens.',
          }),
          issuer: Type.Optional(
            Type.String({
              minLength: 1,
              maxLength: 512,
              description:
                "The API server's service-account issuer; default: discovered from the API server.",
            }),
          ),
        },
        { description: 'Trust Kubernetes service-account tokens of this cluster (for in-cluster agents).' },
      ),
    ),
  },
  {
    description:
      'A trusted token issuer: either an OIDC issuer (issuer + audiences) or `kubernetes: {audiences}` for service-account tokens.',
    celRules: [
      {
        rule: 'has(self.kubernetes) ? !has(self.issuer) && !has(self.audiences) && !has(self.jwksUri) && !has(self.discoveryUrl) && !has(self.allowedTenants) && !has(self.groupsOverage) : has(self.issuer) && has(self.audiences)',
        message: 'an issuer entry is either {issuer, audiences, ...} or {kubernetes: {audiences}}, not both',
      },
      {
        rule: "!has(self.issuer) || !self.issuer.contains('{tenantid}') || has(self.allowedTenants)",
        message: 'an issuer template with {tenantid} needs allowedTenants',
        fieldPath: '.allowedTenants',
      },
    ],
  },
);

export const IdentitySchema = Obj(
  {
    issuers: Type.Array(IssuerSchema, {
      minItems: 1,
      maxItems: 16,
      description: 'Issuers whose bearer tokens are accepted (union across the policies selecting a pod).',
    }),
  },
  { description: 'Who may open a connection: the trusted token issuers.' },
);

export const Detectors = [
  'email',
  'phone',
  'credit-card',
  'iban',
  'us-ssn',
  'jwt',
  'private-key',
  'aws-access-key',
  'azure-storage-key',
  'azure-sas-token',
  'github-token',
  'slack-token',
  'api-key',
  'password-assignment',
] as const;
export type Detector = (typeof Detectors)[number];

export const MaskPatternSchema = Obj(
  {
    name: Type.String({
      minLength: 1,
      maxLength: 63,
      pattern: '^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$',
      description: 'Pattern name: used in the replacement ({name}) and in metrics.',
    }),
    regex: Type.String({
      minLength: 1,
      maxLength: 1024,
      description: 'RE2 syntax (linear time): no backreferences, no lookarounds.',
    }),
  },
  { description: 'A user-defined pattern to mask.' },
);

export const MaskingRuleSchema = Obj(
  {
    name: Type.String({
      minLength: 1,
      maxLength: 63,
      pattern: '^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$',
      description: 'Masking rule name, unique within the policy.',
    }),
    detectors: Type.Optional(
      Type.Array(StrEnum(Detectors, { description: 'A built-in detector.' }), {
        maxItems: Detectors.length,
        description: `Built-in detectors: ${Detectors.join(', ')}.`,
      }),
    ),
    patterns: Type.Optional(
      Type.Array(MaskPatternSchema, { maxItems: 32, description: 'User-defined RE2 patterns.' }),
    ),
    fields: Type.Optional(
      Type.Array(
        Type.String({
          minLength: 1,
          maxLength: 512,
          description:
            'A JSON path such as $.structuredContent.customer.ssn, $.items[*].email or $..password.',
        }),
        { maxItems: 64, description: 'JSON paths (into the result / params) whose values are masked whole.' },
      ),
    ),
    tools: Type.Optional(
      Type.Array(Str('A tool name glob.', { minLength: 1, maxLength: 256 }), {
        maxItems: 64,
        description: 'Only mask results of these tools (globs). Default: every tool.',
      }),
    ),
    resources: Type.Optional(
      Type.Array(Str('A resource URI glob.', { minLength: 1, maxLength: 1024 }), {
        maxItems: 64,
        description: 'Only mask these resources (URI globs). Default: every resource.',
      }),
    ),
    replacement: Type.Optional(
      Type.String({
        maxLength: 256,
        description:
          'Replacement text; {name} is the detector, pattern or rule name, {hash} the keyed hash (only with hash: true). Default [masked:{name}] ([masked:{name}:{hash}] with hash: true).',
      }),
    ),
    hash: Type.Optional(
      Type.Boolean({
        description:
          'Replace with a keyed hash (stable within a deployment) so equal values stay correlatable.',
      }),
    ),
  },
  {
    description:
      'What to mask in results and server messages before they reach the client, logs or recordings.',
    celRules: [
      {
        rule: '(has(self.detectors) && size(self.detectors) > 0) || (has(self.patterns) && size(self.patterns) > 0) || (has(self.fields) && size(self.fields) > 0)',
        message: 'a masking rule needs at least one of detectors, patterns or fields',
      },
    ],
  },
);

export const RecordingSchema = Obj(
  {
    enabled: Type.Optional(
      Type.Boolean({ default: false, description: 'Record every session (hash-chained JSON Lines).' }),
    ),
    payloads: Type.Optional(
      StrEnum(['masked', 'none'] as const, {
        default: 'masked',
        description:
          'masked: record message payloads after masking; none: record methods and decisions only.',
      }),
    ),
    sink: Type.Optional(
      StrEnum(['volume', 'stdout'] as const, {
        default: 'volume',
        description:
          'volume: one file per session on the recordings volume; stdout: JSON Lines for log pipelines.',
      }),
    ),
  },
  { description: 'Session recording settings (union across policies: enabled if any policy enables it).' },
);

export const PolicySpecSchema = Obj(
  {
    podSelector: LabelSelectorSchema,
    mode: Type.Optional(
      StrEnum(['enforce', 'audit'] as const, {
        default: 'enforce',
        description:
          'enforce: decisions are enforced. audit: decide and report, but let calls through (decisions of enforce policies selecting the same pod are still enforced).',
      }),
    ),
    identity: Type.Optional(IdentitySchema),
    rules: Type.Array(RuleSchema, {
      maxItems: 256,
      'x-kubernetes-list-type': 'map',
      'x-kubernetes-list-map-keys': ['name'],
      description:
        'Access rules. Order does not matter: among the rules that apply, any deny wins, then approve, then allow; no applicable rule means deny.',
    }),
    masking: Type.Optional(
      Type.Array(MaskingRuleSchema, {
        maxItems: 64,
        'x-kubernetes-list-type': 'map',
        'x-kubernetes-list-map-keys': ['name'],
        description: 'Masking rules (union across the policies selecting a pod).',
      }),
    ),
    recording: Type.Optional(RecordingSchema),
  },
  { description: 'MCPPolicySpec: which pods, which callers, what they may do.' },
);

// ---------------------------------------------------------------------------------------------
// Status (written by sidecars and the webhook; part of the CRD, never of a policy file)

export const ConditionSchema = Obj(
  {
    type: Str('Condition type: Accepted, Enforced.', { minLength: 1, maxLength: 316 }),
    status: StrEnum(['True', 'False', 'Unknown'] as const, { description: 'True, False or Unknown.' }),
    observedGeneration: Type.Optional(Count('The generation the condition was set for.')),
    lastTransitionTime: Time('When the condition last changed.'),
    reason: Str('Machine-readable reason (CamelCase).', { minLength: 1, maxLength: 1024 }),
    message: Type.String({ maxLength: 32768, description: 'Human-readable details.' }),
  },
  { description: 'A standard Kubernetes condition.' },
);

const Conditions = Type.Array(ConditionSchema, {
  maxItems: 16,
  'x-kubernetes-list-type': 'map',
  'x-kubernetes-list-map-keys': ['type'],
  description: 'Conditions: Accepted (the policy compiled), Enforced (at least one sidecar applies it).',
});

export const PodStatusSchema = Obj(
  {
    name: Str('Pod name (each sidecar owns its entry; written with server-side apply).', { minLength: 1 }),
    generation: Count('The policy generation this pod enforces.'),
    lastReportTime: Time('When the sidecar last reported.'),
    allowed: Count('Calls allowed since the sidecar started.'),
    denied: Count('Calls denied since the sidecar started.'),
    approvalsRequested: Count('Calls held for approval since the sidecar started.'),
    masked: Count('Values masked since the sidecar started.'),
    sessions: Count('Sessions currently open.'),
  },
  { description: 'What one pod reports about this policy.' },
);

export const ApprovalSummarySchema = Obj(
  {
    name: Str('MCPApproval name.', { minLength: 1 }),
    rule: Type.Optional(Str('The rule that required approval.')),
    tool: Type.Optional(Str('The tool called.')),
    requester: Type.Optional(Str('Requester principal.')),
    phase: Str('Phase of the approval.', { maxLength: 32 }),
    time: Type.Optional(Time('When the approval reached this phase.')),
  },
  { description: 'A recent approval.' },
);

export const RecordingSummarySchema = Obj(
  {
    session: Str('Session id (or a digest of it).', { minLength: 1 }),
    principal: Str('Who the session belonged to.'),
    pod: Str('The pod that recorded it.'),
    startTime: Time('Session start.'),
    endTime: Type.Optional(Time('Session end.')),
    messages: Count('Messages recorded.'),
    denied: Count('Calls denied in the session.'),
    location: Type.String({
      maxLength: 1024,
      description: 'Where the recording is (file path on the volume, or stdout).',
    }),
    sha256: Type.String({ maxLength: 64, description: 'Hash of the last line of the chain.' }),
  },
  { description: 'A recent recording.' },
);

export const PolicyStatusSchema = Obj(
  {
    observedGeneration: Type.Optional(Count('The generation the status describes.')),
    conditions: Type.Optional(Conditions),
    summary: Type.Optional(
      Obj(
        {
          rules: Count('Number of rules.'),
          pods: Count('Pods reporting.'),
          allowed: Count('Calls allowed (all pods).'),
          denied: Count('Calls denied (all pods).'),
          approvalsRequested: Count('Calls held for approval (all pods).'),
          masked: Count('Values masked (all pods).'),
          sessions: Count('Sessions open (all pods).'),
        },
        { description: 'Totals aggregated over pods by the webhook (shown by kubectl get mcpp).' },
      ),
    ),
    pods: Type.Optional(
      Type.Array(PodStatusSchema, {
        maxItems: 500,
        'x-kubernetes-list-type': 'map',
        'x-kubernetes-list-map-keys': ['name'],
        description: 'One entry per pod enforcing the policy (entries of deleted pods are pruned).',
      }),
    ),
    approvals: Type.Optional(
      Obj(
        {
          pending: Type.Optional(Count('Approvals waiting for a verdict.')),
          approved: Type.Optional(Count('Approved.')),
          denied: Type.Optional(Count('Denied.')),
          expired: Type.Optional(Count('Expired.')),
          recent: Type.Optional(
            Type.Array(ApprovalSummarySchema, {
              maxItems: 20,
              'x-kubernetes-list-type': 'map',
              'x-kubernetes-list-map-keys': ['name'],
              description:
                'At most 20 recent approvals (a list-map keyed by name: each writer owns its entries).',
            }),
          ),
        },
        { description: 'Approval counts.' },
      ),
    ),
    recordings: Type.Optional(
      Obj(
        {
          // Optional: sidecars write only their own `recent` entries (a shared total would conflict).
          total: Type.Optional(Count('Recordings written.')),
          recent: Type.Optional(
            Type.Array(RecordingSummarySchema, {
              maxItems: 64,
              // A list-map: each sidecar owns its own entries (server-side apply, per-pod field manager).
              'x-kubernetes-list-type': 'map',
              'x-kubernetes-list-map-keys': ['session'],
              description:
                'About 20 recent recordings: each pod keeps its share (20 / pods, the first 20 pods by name when more).',
            }),
          ),
        },
        { description: 'Recording counts.' },
      ),
    ),
  },
  { description: 'MCPPolicyStatus: what the sidecars and the webhook observed.' },
);

const MetadataSchema = Type.Object(
  {
    name: Type.String({ minLength: 1, maxLength: 253, description: 'Object name.' }),
    namespace: Type.Optional(Type.String({ maxLength: 63, description: 'Namespace.' })),
    generation: Type.Optional(Type.Integer({ description: 'Generation.' })),
  },
  { description: 'Standard object metadata.' },
);

export const MCPPolicySchema = Type.Object(
  {
    apiVersion: Type.Unsafe<typeof ApiVersion>({
      type: 'string',
      enum: [ApiVersion],
      description: `APIVersion: ${ApiVersion}.`,
    }),
    kind: Type.Unsafe<'MCPPolicy'>({ type: 'string', enum: ['MCPPolicy'], description: 'Kind: MCPPolicy.' }),
    metadata: MetadataSchema,
    spec: PolicySpecSchema,
    status: Type.Optional(PolicyStatusSchema),
  },
  {
    description:
      'MCPPolicy: least-privilege rules for the MCP servers of the selected pods (who may connect, which calls they may make, what is masked and recorded).',
  },
);

// ---------------------------------------------------------------------------------------------
// MCPApproval

const immutable: CelRule[] = [{ rule: 'self == oldSelf', message: 'is immutable' }];

export const ApprovalPhases = ['Pending', 'Approved', 'Denied', 'Expired', 'Executed', 'Cancelled'] as const;
/** Phases after which nothing more happens to a held call (Approved still waits to be used). */
export const FinalApprovalPhases: ReadonlySet<string> = new Set([
  'Denied',
  'Expired',
  'Executed',
  'Cancelled',
]);

export const ApprovalSpecSchema = Obj(
  {
    policy: Str('The policy that required approval (namespace/name).', {
      minLength: 1,
      'x-kubernetes-validations': immutable,
    }),
    rule: Str('The rule that required approval.', { minLength: 1, 'x-kubernetes-validations': immutable }),
    pod: Str('The pod holding the call.', { minLength: 1, 'x-kubernetes-validations': immutable }),
    server: Type.Optional(
      Str(
        "The MCP server the call was made to: a sidecar's workload (e.g. Deployment/github-mcp), a gateway's upstream URL. The verdict runs the call on that server only.",
        { minLength: 1, maxLength: 1024, 'x-kubernetes-validations': immutable },
      ),
    ),
    session: Type.Optional(
      Str('MCP session id (or a digest of it).', { 'x-kubernetes-validations': immutable }),
    ),
    requester: Obj(
      {
        principal: Str('Principal id (`<tenant-id>/<object-id>` for Entra).', { minLength: 1 }),
        user: Type.Optional(Str('User name, when the token had one.')),
        appId: Type.Optional(Str('Client application id.')),
      },
      { description: 'Who made the call. Never allowed to decide it.', celRules: immutable },
    ),
    method: Str('JSON-RPC method, e.g. tools/call.', {
      minLength: 1,
      maxLength: 128,
      'x-kubernetes-validations': immutable,
    }),
    tool: Type.Optional(
      Str('Tool name (tools/call).', { maxLength: 256, 'x-kubernetes-validations': immutable }),
    ),
    direction: Type.Optional(
      StrEnum(['client-to-server', 'server-to-client'] as const, {
        'x-kubernetes-validations': immutable,
        description:
          'Which way the held request travels. client-to-server (also when absent): a call the client made to the MCP server. server-to-client: a request the MCP server sent to the client (sampling/createMessage, elicitation/create, roots/list); requester is then the client whose session carries it, and approving delivers the request to that client.',
      }),
    ),
    arguments: Type.Optional(
      Type.Unsafe<Record<string, unknown>>({
        type: 'object',
        'x-kubernetes-preserve-unknown-fields': true,
        description:
          'The call arguments, masked by the policy masking rules (immutable: enforced by the webhook, since the API server cannot bound the cost of comparing free-form objects).',
      }),
    ),
    maskedArguments: Type.Optional(
      Obj(
        {
          count: Count(
            'How many values masking replaced in the arguments (all of them, also those past entries).',
          ),
          length: Count('Characters (Unicode code points) masking hid in the arguments, in total.'),
          entries: Type.Array(
            Obj(
              {
                path: Type.String({
                  maxLength: 512,
                  description:
                    "JSON path into the arguments, as spec.arguments shows them (a masked key appears masked), e.g. $.body or $.items[0]['x-token'].",
                }),
                detector: Str(
                  'What masked it: the detector, pattern or masking rule name (field for a number or boolean a JSON path replaced), comma-separated when findings touch or cannot be told apart; structure when the view reviewers see lost or changed part of the shape of the arguments (the whole part is counted).',
                  { maxLength: 256 },
                ),
                length: Count('Characters (Unicode code points) the mask hides.'),
              },
              {
                description: 'One masked value: where, by what, and how much text it hides. Never the value.',
              },
            ),
            {
              maxItems: MaxMaskedArgumentEntries,
              description: `The masked values in document order, at most ${MaxMaskedArgumentEntries}.`,
            },
          ),
        },
        {
          description:
            'What the policy masking hid from reviewers in spec.arguments (absent: nothing). Approving such a call needs spec.decision.acknowledgeMaskedArguments: true.',
          celRules: immutable,
        },
      ),
    ),
    argumentsDigest: Type.String({
      pattern: '^sha256:[0-9a-f]{64}$',
      maxLength: 71,
      'x-kubernetes-validations': immutable,
      description:
        'sha256 of the unmasked canonical arguments (`sha256:<hex>`): binds the verdict to exactly this call.',
    }),
    expiresAt: Time('When the held call expires if no verdict arrives.'),
    mode: Type.Optional(
      StrEnum(ApprovalModes, { description: 'hold or ticket.', 'x-kubernetes-validations': immutable }),
    ),
    approvers: Type.Array(ApproverSchema, {
      minItems: 1,
      maxItems: 32,
      'x-kubernetes-validations': immutable,
      description: 'Who may decide (copied from the rule).',
    }),
    decision: Type.Optional(
      Obj(
        {
          verdict: StrEnum(['Approved', 'Denied'] as const, { description: 'Approved or Denied.' }),
          reason: Type.Optional(
            Type.String({ maxLength: 1024, description: 'Why (shown to the requester).' }),
          ),
          decidedBy: Type.Optional(
            Str(
              'Kubernetes user who decided; stamped by the webhook from the admission userInfo (not forgeable).',
            ),
          ),
          acknowledgeMaskedArguments: Type.Optional(
            Type.Boolean({
              description:
                'true: the reviewer approves knowing that spec.maskedArguments lists values they could not see. Required (by the webhook and the data path) to approve an approval with masked arguments.',
            }),
          ),
        },
        {
          description:
            'The reviewer verdict. Set once (kubectl mcp-warden approve|deny); cannot be changed afterwards.',
          celRules: [{ rule: 'self == oldSelf', message: 'a decision cannot be changed once made' }],
        },
      ),
    ),
  },
  {
    description: 'MCPApprovalSpec: the held call (immutable) and the reviewer decision.',
    celRules: [
      { rule: '!has(oldSelf.decision) || has(self.decision)', message: 'a decision cannot be removed' },
    ],
  },
);

export const ApprovalStatusSchema = Obj(
  {
    phase: StrEnum(ApprovalPhases, {
      description: 'Pending → Approved | Denied | Expired → Executed | Cancelled.',
    }),
    message: Type.Optional(Type.String({ maxLength: 1024, description: 'Details about the phase.' })),
    lastTransitionTime: Type.Optional(Time('When the phase last changed.')),
    holder: Type.Optional(
      Str(
        'hold mode: the pod (for mcp-warden gateway, its host name) whose data path holds the call open and runs it once approved. The same call repeated through another replica of the same server takes the approval over, and that pod becomes its holder.',
        { minLength: 1 },
      ),
    ),
    observedGeneration: Type.Optional(Count('The generation the status describes.')),
  },
  {
    description: 'MCPApprovalStatus, written by the sidecar.',
    celRules: [
      {
        // Run once: an Executed approval rewound to Approved could be claimed, and run, again.
        rule: `!(oldSelf.phase in [${[...FinalApprovalPhases].map((p) => `'${p}'`).join(', ')}]) || self.phase == oldSelf.phase`,
        message: `a final phase (${[...FinalApprovalPhases].join(', ')}) cannot change`,
      },
    ],
  },
);

export const MCPApprovalSchema = Type.Object(
  {
    apiVersion: Type.Unsafe<typeof ApiVersion>({
      type: 'string',
      enum: [ApiVersion],
      description: `APIVersion: ${ApiVersion}.`,
    }),
    kind: Type.Unsafe<'MCPApproval'>({
      type: 'string',
      enum: ['MCPApproval'],
      description: 'Kind: MCPApproval.',
    }),
    metadata: MetadataSchema,
    spec: ApprovalSpecSchema,
    status: Type.Optional(ApprovalStatusSchema),
  },
  {
    description: 'MCPApproval: one call held for a human decision.',
    'x-kubernetes-validations': [
      { rule: '!has(oldSelf.status) || has(self.status)', message: 'the status cannot be removed' },
    ],
  },
);

// ---------------------------------------------------------------------------------------------
// Types

export type LabelSelector = Static<typeof LabelSelectorSchema>;
export type Subject = Static<typeof SubjectSchema>;
export type Approver = Static<typeof ApproverSchema>;
export type ToolAnnotations = Static<typeof ToolAnnotationsSchema>;
export type RuleMatch = Static<typeof MatchSchema>;
export type PolicyRule = Static<typeof RuleSchema>;
export type IssuerSpec = Static<typeof IssuerSchema>;
export type MaskingRule = Static<typeof MaskingRuleSchema>;
export type MaskPattern = Static<typeof MaskPatternSchema>;
export type RecordingSettings = Static<typeof RecordingSchema>;
export type PolicySpec = Static<typeof PolicySpecSchema>;
export type PolicyStatus = Static<typeof PolicyStatusSchema>;
export type PodStatus = Static<typeof PodStatusSchema>;
export type MCPPolicy = Static<typeof MCPPolicySchema>;
/** A policy as read from a file or the API server. */
export type PolicyDocument = MCPPolicy;
export type MCPApproval = Static<typeof MCPApprovalSchema>;
export type MCPApprovalSpec = Static<typeof ApprovalSpecSchema>;
export type MCPApprovalStatus = Static<typeof ApprovalStatusSchema>;
export type MaskedArguments = NonNullable<MCPApprovalSpec['maskedArguments']>;
export type MaskedArgument = MaskedArguments['entries'][number];
export type ApprovalPhase = (typeof ApprovalPhases)[number];
