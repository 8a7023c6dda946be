/**
 * `mcp-warden policy lint PATH...` and
 * `mcp-warden policy test PATH --identity claims.json --call call.json [--tools tools.json] [--explain] [--json]`.
 *
 * Exit codes — lint: 0 valid, 1 invalid (every issue printed as `file: field: message`).
 * test: 0 allow, 3 deny, 4 approve (the *enforced* outcome: an audit-mode deny exits 0), 1 when
 * the policy or an input file is invalid, 2 for usage errors.
 */
import { readFile } from 'node:fs/promises';
import type { JWTPayload } from 'jose';
import { errorMessage, isWardenError } from '../pkg/errors.js';
import { toIdentity } from '../pkg/identity/claims.js';
import type { Identity } from '../pkg/identity/types.js';
import { parseJson } from '../pkg/json.js';
import { callContextFromRequest, subscriptionTargets, withCompletionTarget } from '../pkg/policy/call.js';
import { compilePolicies } from '../pkg/policy/compile.js';
import type { Action, Decision, Direction } from '../pkg/policy/decision.js';
import type { Explanation } from '../pkg/policy/engine.js';
import { type FileIssue, readPolicyPath } from '../pkg/policy/loader.js';

const usage = `Usage:
  mcp-warden policy lint PATH...
      Validate policy files or directories. Exit 0 when valid, 1 listing every issue.
  mcp-warden policy test PATH --identity CLAIMS.json --call CALL.json [options]
      Decide one call. CLAIMS.json: the token claims (as an Entra or Kubernetes token carries
      them); CALL.json: a JSON-RPC request. Exit 0 allow, 3 deny, 4 approve (enforced outcome).
      --tools FILE       a tools/list result (or array of tools): annotations for tools/call, and
                         the list to filter when CALL.json is a list request
      --labels k=v,...   only policies whose podSelector selects these pod labels
      --direction D      client-to-server (default) or server-to-client
      --cluster-issuer URL
                         the cluster's service-account issuer (kubectl get --raw
                         /.well-known/openid-configuration): a service-account token from it
                         matches kubernetes entries without issuer, as in the sidecar
      --explain          show every rule considered and why it applied or not
      --json             print the result as JSON
`;

export const ExitCodes: Record<Action, number> = { allow: 0, deny: 3, approve: 4 };

function out(text: string): void {
  process.stdout.write(`${text}\n`);
}
function err(text: string): void {
  process.stderr.write(`${text}\n`);
}

function printIssues(e: unknown, fallbackFile: string): void {
  const issues = isWardenError(e) ? (e.details?.['issues'] as FileIssue[] | undefined) : undefined;
  if (issues === undefined) {
    err(`${fallbackFile}: ${errorMessage(e)}`);
    return;
  }
  for (const i of issues) err(`${i.file}: ${i.path || '(document)'}: ${i.message}`);
}

async function lint(paths: string[]): Promise<number> {
  if (paths.length === 0) {
    err(usage);
    return 2;
  }
  let failed = false;
  for (const path of paths) {
    try {
      const { docs } = await readPolicyPath(path);
      out(
        `${path}: ${docs.length} ${docs.length === 1 ? 'policy' : 'policies'} valid (${docs.map((d) => d.metadata.name).join(', ')})`,
      );
    } catch (e) {
      failed = true;
      printIssues(e, path);
    }
  }
  return failed ? 1 : 0;
}

/** `lossless`: parsed as the proxy parses messages (pkg/json.ts), for a call. */
async function readJson(path: string, what: string, lossless = false): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    throw new Error(`cannot read ${what} ${path}: ${errorMessage(e)}`);
  }
  try {
    return lossless ? parseJson(text) : (JSON.parse(text) as unknown);
  } catch (e) {
    throw new Error(`${what} ${path} is not JSON: ${errorMessage(e)}`);
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * An identity from token claims, exactly as the authenticator would build it after verification.
 * `clusterIssuer`: the cluster's own service-account issuer, which the sidecar discovers; a
 * service-account token from it is marked as the authenticator marks it.
 */
export function identityFromClaims(claims: Record<string, unknown>, clusterIssuer?: string): Identity {
  const aud = claims['aud'];
  const audience =
    typeof aud === 'string' ? aud : Array.isArray(aud) && typeof aud[0] === 'string' ? aud[0] : '';
  const issuer = typeof claims['iss'] === 'string' ? claims['iss'] : '';
  const kubernetes = isObject(claims['kubernetes.io']);
  const identity = toIdentity({ claims: claims as JWTPayload, issuer, audience, kubernetes });
  if (kubernetes && clusterIssuer !== undefined && issuer === clusterIssuer) identity.clusterIssuer = true;
  return identity;
}

function toolsFrom(value: unknown): Record<string, unknown>[] {
  const list = isObject(value) && Array.isArray(value['tools']) ? value['tools'] : value;
  if (!Array.isArray(list))
    throw new Error('--tools must be a tools/list result ({tools: [...]}) or an array of tools');
  return list.filter(isObject);
}

function parseLabels(text: string): Record<string, string> {
  const labels: Record<string, string> = {};
  for (const pair of text.split(',').filter((p) => p !== '')) {
    const i = pair.indexOf('=');
    if (i <= 0) throw new Error(`--labels: "${pair}" is not key=value`);
    labels[pair.slice(0, i)] = pair.slice(i + 1);
  }
  return labels;
}

function formatDecision(d: Decision): string[] {
  const lines = [
    `decision: ${d.action}${d.enforced !== d.action ? ` (enforced: ${d.enforced})` : ''}`,
    `mode:     ${d.mode}`,
    `policy:   ${d.policy || '(none)'}`,
    `rule:     ${d.rule ?? (d.action === 'deny' ? '(none: default deny)' : '(none)')}`,
    `reason:   ${d.reason}`,
  ];
  if (d.approval !== undefined) {
    lines.push(
      `approval: ${d.approval.mode}, timeout ${d.approval.timeout}, approvers ${d.approval.approvers
        .map((a) =>
          Object.entries(a)
            .map(([k, v]) => `${k}=${v}`)
            .join(''),
        )
        .join(', ')}`,
    );
  }
  for (const l of d.limits ?? []) {
    const who = l.by === 'all' ? 'for all callers together' : 'per caller';
    lines.push(
      `limit:    ${l.policy}/${l.rule}: ${l.requests} calls per ${l.per} ${who}${l.audit ? ' (audit)' : ''} (counted by the proxy, not here)`,
    );
  }
  return lines;
}

function formatExplanation(x: Explanation): string[] {
  if (x.methodClass === 'protocol')
    return ['', 'method is part of the protocol: always allowed, no rule is consulted'];
  if (x.methodClass === 'list')
    return ['', 'list method: allowed, and the result is filtered per item (pass --tools to see it)'];
  const lines = ['', 'rules considered:'];
  if (x.rules.length === 0) lines.push('  (no rules)');
  const width = Math.max(0, ...x.rules.map((r) => `${r.policy}/${r.rule}`.length));
  for (const r of x.rules) {
    lines.push(
      `  ${r.matched ? 'APPLIES' : 'skipped'}  ${`${r.policy}/${r.rule}`.padEnd(width)}  ${r.action.padEnd(7)} ${r.mode.padEnd(7)}  ${r.detail}`,
    );
  }
  return lines;
}

interface TestArgs {
  path: string;
  identity: string;
  call: string;
  tools?: string;
  labels?: string;
  clusterIssuer?: string;
  direction: Direction;
  explain: boolean;
  json: boolean;
}

function parseTestArgs(argv: string[]): TestArgs | string {
  const a: Partial<TestArgs> = { direction: 'client-to-server', explain: false, json: false };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const value = (): string | undefined => argv[++i];
    switch (arg) {
      case '--identity':
        a.identity = value();
        break;
      case '--call':
        a.call = value();
        break;
      case '--tools':
        a.tools = value();
        break;
      case '--labels':
        a.labels = value();
        break;
      case '--cluster-issuer': {
        const v = value();
        if (v === undefined || v === '') return '--cluster-issuer needs the issuer URL';
        a.clusterIssuer = v;
        break;
      }
      case '--direction': {
        const d = value();
        if (d !== 'client-to-server' && d !== 'server-to-client')
          return '--direction must be client-to-server or server-to-client';
        a.direction = d;
        break;
      }
      case '--explain':
        a.explain = true;
        break;
      case '--json':
        a.json = true;
        break;
      default:
        if (arg.startsWith('-')) return `unknown option ${arg}`;
        if (a.path !== undefined) return `unexpected argument ${arg}`;
        a.path = arg;
    }
  }
  if (a.path === undefined) return 'missing PATH';
  if (a.identity === undefined) return 'missing --identity CLAIMS.json';
  if (a.call === undefined) return 'missing --call CALL.json';
  return a as TestArgs;
}

async function test(argv: string[]): Promise<number> {
  const parsed = parseTestArgs(argv);
  if (typeof parsed === 'string') {
    err(`mcp-warden policy test: ${parsed}\n\n${usage}`);
    return 2;
  }
  let docs: Awaited<ReturnType<typeof readPolicyPath>>['docs'];
  try {
    docs = (await readPolicyPath(parsed.path)).docs;
  } catch (e) {
    printIssues(e, parsed.path);
    return 1;
  }
  try {
    const claims = await readJson(parsed.identity, 'identity claims');
    if (!isObject(claims))
      throw new Error(`identity claims ${parsed.identity} must be a JSON object of token claims`);
    const identity = identityFromClaims(claims, parsed.clusterIssuer);
    // The policy sees the call as the proxy does: an integer beyond 2^53 exact (pkg/json.ts).
    const call = await readJson(parsed.call, 'call', true);
    if (!isObject(call) || typeof call['method'] !== 'string') {
      throw new Error(`call ${parsed.call} must be a JSON-RPC request with a "method"`);
    }
    const tools = parsed.tools === undefined ? undefined : toolsFrom(await readJson(parsed.tools, 'tools'));
    const engine = compilePolicies(
      docs,
      parsed.labels === undefined ? {} : { podLabels: parseLabels(parsed.labels) },
    );
    const method = call['method'];
    let annotations: Record<string, unknown> | undefined;
    if (method === 'tools/call' && tools !== undefined && isObject(call['params'])) {
      const tool = tools.find((t) => t['name'] === (call['params'] as Record<string, unknown>)['name']);
      annotations = tool === undefined ? undefined : isObject(tool['annotations']) ? tool['annotations'] : {};
    }
    const ctx = callContextFromRequest({ method, params: call['params'] }, identity, {
      direction: parsed.direction,
      ...(annotations === undefined ? {} : { toolAnnotations: annotations }),
    });
    const explanation = engine.explain(ctx);
    // As the data path decides it: a completion also by the prompt or resource it completes.
    let d = withCompletionTarget(
      engine,
      explanation.decision,
      { method, params: call['params'] },
      identity,
      parsed.direction,
    );
    // A 2026-07-28 subscriptions/listen: each resource it subscribes to, as resources/subscribe.
    const subscriptions = subscriptionTargets({ method, params: call['params'] });
    if (subscriptions === 'invalid')
      throw new Error('subscriptions/listen: notifications.resourceSubscriptions is not a list of URIs');
    for (const uri of subscriptions ?? []) {
      const sub = engine.decide(
        callContextFromRequest({ method: 'resources/subscribe', params: { uri } }, identity, {
          direction: parsed.direction,
        }),
      );
      if (sub.enforced !== 'allow') {
        d = { ...sub, reason: `subscribing to ${uri}: ${sub.reason}` };
        break;
      }
    }
    let filtered: string[] | undefined;
    if (method === 'tools/list' && tools !== undefined) {
      filtered = engine
        .filterList('tools/list', tools, identity)
        .map((t) => String((t as Record<string, unknown>)['name']));
    }
    if (parsed.json) {
      out(
        JSON.stringify(
          {
            principal: identity.principal,
            decision: d,
            ...(parsed.explain ? { rules: explanation.rules } : {}),
            ...(filtered ? { listed: filtered } : {}),
          },
          null,
          2,
        ),
      );
    } else {
      out(
        `caller:   ${identity.principal}${identity.user ? ` (${identity.user})` : ''}${identity.appOnly ? ' [app-only]' : ''}`,
      );
      out(
        `call:     ${method}${ctx.tool ? ` ${ctx.tool}` : ctx.resource ? ` ${ctx.resource}` : ctx.prompt ? ` ${ctx.prompt}` : ''}`,
      );
      for (const line of formatDecision(d)) out(line);
      if (filtered !== undefined)
        out(`listed:   ${filtered.length === 0 ? '(nothing)' : filtered.join(', ')}`);
      if (parsed.explain) for (const line of formatExplanation(explanation)) out(line);
    }
    return ExitCodes[d.enforced];
  } catch (e) {
    if (isWardenError(e) && e.code === 'ERR_POLICY_INVALID') printIssues(e, parsed.path);
    else err(`mcp-warden policy test: ${errorMessage(e)}`);
    return 1;
  }
}

export async function run(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  switch (sub) {
    case 'lint':
      return lint(rest);
    case 'test':
      return test(rest);
    case undefined:
    case '--help':
    case '-h':
    case 'help':
      out(usage);
      return sub === undefined ? 2 : 0;
    default:
      err(`mcp-warden policy: unknown subcommand "${sub}"\n\n${usage}`);
      return 2;
  }
}
