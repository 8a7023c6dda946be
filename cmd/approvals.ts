/**
 * `mcp-warden approvals list|show|approve|deny`: the reviewer's side of held calls (`MCPApproval`
 * objects the sidecar creates). Also a kubectl plugin: `kubectl mcp-warden approvals ...`
 * (bin/kubectl-mcp_warden), with `approve` and `deny` as top-level shorthands.
 *
 * A decision is a JSON merge patch of `spec.decision: {verdict, reason}`; the mcp-warden webhook
 * admits it only from an approver (never the requester, never the MCP pod) and stamps `decidedBy`.
 *
 * Exit codes: 0 success; 1 the API server refused or failed, the approval is not found or can no
 * longer be decided (already decided, not Pending, expired), no credentials; 2 usage errors.
 */
import { parseArgs } from 'node:util';
import { ErrorCodes, errorMessage, isWardenError } from '../pkg/errors.js';
import { createKubeClient, KubeApiError, type KubeClient, loadKubeConfig } from '../pkg/kube/client.js';
import { currentNamespace, kubectlConfigPaths } from '../pkg/kube/kubectl-config.js';
import { allApprovalsPath, approvalPath, approvalsPath, GROUP, VERSION } from '../pkg/kube/resources.js';
import { type ApprovalPhase, ApprovalPhases } from '../pkg/policy/schema.js';
import {
  type ApprovalResource,
  decisionText,
  formatShow,
  formatTable,
  maskedRefusal,
  notDecidable,
  phaseOf,
  sortOldestFirst,
} from './approvals-format.js';

const common = `      -n, --namespace NS   the approval's namespace (default: the kubeconfig context's, else default)
      --kubeconfig PATH    default: KUBECONFIG, else ~/.kube/config, else the in-cluster account`;

export const usages = {
  list: `  mcp-warden approvals list [-n NS | -A] [--phase PHASE] [-o table|wide|json]
      Held calls, oldest first: NAME PHASE POLICY RULE REQUESTER CALL MASKED AGE EXPIRES
      (-o wide adds POD DIGEST DECIDED-BY REASON; -o json prints a List of the objects).
      -A, --all-namespaces every namespace
      --phase PHASE        only Pending, Approved, Denied, Expired, Executed or Cancelled
${common}
`,
  show: `  mcp-warden approvals show NAME [-n NS] [-o json]
      The whole held call: policy, rule, pod, session, requester, method, tool, the (masked)
      arguments and what masking hid in them, their digest, expiry, approvers, decision and phase.
${common}
`,
  approve: `  mcp-warden approvals approve NAME [-n NS] [--reason TEXT] [--acknowledge-masked]
      Let the held call run. Refused when it is already decided, no longer Pending or expired;
      the webhook refuses anyone not among its approvers, and its requester.
      --reason TEXT        why (shown to the requester; at most 1024 characters)
      --acknowledge-masked approve although masking hid part of the arguments from you
                           (see MASKED in list, Masked: in show); refused without it
${common}
`,
  deny: `  mcp-warden approvals deny NAME [-n NS] [--reason TEXT]
      Refuse the held call (the client gets JSON-RPC error -31409 with the reason).
      --reason TEXT        why (shown to the requester; at most 1024 characters)
${common}
`,
} as const;

type Subcommand = keyof typeof usages;

export const usage = `Usage:
${Object.values(usages).join('')}
As a kubectl plugin: kubectl mcp-warden approvals ..., kubectl mcp-warden approve|deny NAME.
Exit codes: 0 done, 1 refused or failed, 2 usage error.
`;

export interface Io {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
}

export interface ApprovalsArgs {
  sub: Subcommand;
  name?: string;
  namespace?: string;
  allNamespaces: boolean;
  kubeconfig?: string;
  phase?: ApprovalPhase;
  output: 'table' | 'wide' | 'json';
  reason?: string;
  acknowledgeMasked: boolean;
}

export type ParseResult =
  | { ok: true; args: ApprovalsArgs }
  | { ok: false; help: true; text: string }
  | { ok: false; help: false; message: string; text: string };

const REASON_MAX = 1024;

function isSubcommand(s: string | undefined): s is Subcommand {
  return s !== undefined && Object.hasOwn(usages, s);
}

const options = {
  namespace: { type: 'string', short: 'n' },
  'all-namespaces': { type: 'boolean', short: 'A' },
  kubeconfig: { type: 'string' },
  phase: { type: 'string' },
  output: { type: 'string', short: 'o' },
  reason: { type: 'string' },
  'acknowledge-masked': { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

/** Arguments of `mcp-warden approvals`, checked per subcommand (what does not apply is an error). */
export function parseApprovalsArgs(argv: string[]): ParseResult {
  const [first] = argv;
  const text = isSubcommand(first) ? `Usage:\n${usages[first]}` : usage;
  const fail = (message: string): ParseResult => ({ ok: false, help: false, message, text });
  let parsed: ReturnType<
    typeof parseArgs<{ args: string[]; options: typeof options; allowPositionals: true }>
  >;
  try {
    parsed = parseArgs({ args: argv, options, allowPositionals: true });
  } catch (err) {
    return fail(errorMessage(err));
  }
  const v = parsed.values;
  const [sub, name, ...extra] = parsed.positionals;
  if (v.help === true) return { ok: false, help: true, text };
  if (sub === undefined) return fail('a subcommand is required: list, show, approve or deny');
  if (!isSubcommand(sub)) return fail(`unknown subcommand "${sub}"`);
  if (sub === 'list' && name !== undefined) return fail(`list takes no NAME (got "${name}")`);
  if (sub !== 'list' && name === undefined) return fail(`${sub} needs the approval's NAME`);
  if (extra.length > 0) return fail(`unexpected argument "${extra[0]}"`);
  const onlyFor: Array<[keyof typeof v, Subcommand[]]> = [
    ['all-namespaces', ['list']],
    ['phase', ['list']],
    ['output', ['list', 'show']],
    ['reason', ['approve', 'deny']],
    ['acknowledge-masked', ['approve']],
  ];
  for (const [key, subs] of onlyFor) {
    if (v[key] !== undefined && !subs.includes(sub)) return fail(`--${key} is not an option of ${sub}`);
  }
  if (v['all-namespaces'] === true && v.namespace !== undefined) {
    return fail('give either --namespace or --all-namespaces, not both');
  }
  const outputs = sub === 'show' ? ['table', 'json'] : ['table', 'wide', 'json'];
  const output = v.output ?? 'table';
  if (!outputs.includes(output)) return fail(`-o ${output}: expected ${outputs.join(' or ')}`);
  let phase: ApprovalPhase | undefined;
  if (v.phase !== undefined) {
    phase = ApprovalPhases.find((p) => p.toLowerCase() === v.phase?.toLowerCase());
    if (phase === undefined) return fail(`--phase ${v.phase}: expected one of ${ApprovalPhases.join(', ')}`);
  }
  if (v.reason !== undefined && v.reason.length > REASON_MAX) {
    return fail(`--reason is ${v.reason.length} characters long: at most ${REASON_MAX}`);
  }
  if (v.namespace === '') return fail('--namespace must not be empty');
  return {
    ok: true,
    args: {
      sub,
      ...(name === undefined ? {} : { name }),
      ...(v.namespace === undefined ? {} : { namespace: v.namespace }),
      allNamespaces: v['all-namespaces'] === true,
      ...(v.kubeconfig === undefined ? {} : { kubeconfig: v.kubeconfig }),
      ...(phase === undefined ? {} : { phase }),
      output: output as ApprovalsArgs['output'],
      ...(v.reason === undefined ? {} : { reason: v.reason }),
      acknowledgeMasked: v['acknowledge-masked'] === true,
    },
  };
}

/** A client and the namespace to use when `-n` is not given. */
export interface Connection {
  client: KubeClient;
  defaultNamespace: string;
}

export interface Deps {
  /** Testing seam: the clock (AGE, EXPIRES, the expiry check). */
  now?: () => Date;
  /** Testing seam: the API connection (default: kubeconfig resolved as kubectl does). */
  connect?: (kubeconfig: string | undefined) => Connection;
}

function connect(kubeconfig: string | undefined): Connection {
  const paths = kubectlConfigPaths({ kubeconfig });
  const client = createKubeClient(loadKubeConfig(paths.length === 0 ? {} : { kubeconfig: paths }));
  return { client, defaultNamespace: currentNamespace(paths) ?? 'default' };
}

/** The API server's own message: KubeApiError prefixes it with `METHOD PATH: STATUS `. */
function apiMessage(err: KubeApiError): string {
  return err.message.replace(/^[A-Z]+ \S+: (\d{3} )?/, '').replace(/\s*\n\s*/g, ' ');
}

/** An approval that cannot be decided (already decided, not Pending, expired): reported as is. */
class Refusal extends Error {}

/** One clear line (two for a missing RBAC right) for every expected failure. */
export function describeError(
  err: unknown,
  target: { name?: string; namespace?: string; server?: string },
): string {
  if (err instanceof Refusal) return err.message;
  if (err instanceof KubeApiError) {
    const message = apiMessage(err);
    if (err.status === 0) {
      return `cannot reach the Kubernetes API server${target.server ? ` at ${target.server}` : ''}: ${message}`;
    }
    if (err.status === 401) {
      return `the API server rejected the credentials (401 Unauthorized): ${message}; check the kubeconfig user or log in again`;
    }
    if (err.status === 404 && target.name !== undefined && message.includes(`"${target.name}" not found`)) {
      return `mcpapproval "${target.name}" not found in namespace "${target.namespace}"`;
    }
    if (err.status === 404) {
      return `the API server does not serve mcpapprovals.${GROUP}/${VERSION} (${message}): install the CRDs (kubectl apply -f crds/)`;
    }
    const line = `Error from server (${err.reason ?? `HTTP ${err.status}`}): ${message}`;
    if (err.status === 403 && !message.includes('admission webhook') && /cannot \w+ resource/.test(message)) {
      return `${line}\nA reviewer needs get, list and patch on mcpapprovals.${GROUP} (ClusterRole mcp-warden-approver): see docs/approvals-cli.md`;
    }
    return line;
  }
  if (isWardenError(err, ErrorCodes.config)) {
    return `${err.message} (give --kubeconfig PATH, set KUBECONFIG, or create ~/.kube/config)`;
  }
  return errorMessage(err);
}

async function getApproval(client: KubeClient, namespace: string, name: string): Promise<ApprovalResource> {
  return client.request<ApprovalResource>('GET', approvalPath(namespace, name));
}

async function list(c: Connection, args: ApprovalsArgs, io: Io, now: Date): Promise<number> {
  const namespace = args.namespace ?? c.defaultNamespace;
  const res = await c.client.request<{ items?: ApprovalResource[] }>(
    'GET',
    args.allNamespaces ? allApprovalsPath() : approvalsPath(namespace),
  );
  const items = sortOldestFirst(
    (res.items ?? []).filter((a) => args.phase === undefined || phaseOf(a) === args.phase),
  );
  if (args.output === 'json') {
    io.stdout.write(`${JSON.stringify({ apiVersion: 'v1', kind: 'List', items }, null, 2)}\n`);
    return 0;
  }
  if (items.length === 0) {
    const where = args.allNamespaces ? 'in any namespace' : `in namespace ${namespace}`;
    io.stderr.write(`No ${args.phase === undefined ? '' : `${args.phase} `}approvals found ${where}.\n`);
    return 0;
  }
  io.stdout.write(
    formatTable(items, { now, wide: args.output === 'wide', allNamespaces: args.allNamespaces }),
  );
  return 0;
}

async function show(
  c: Connection,
  name: string,
  namespace: string,
  args: ApprovalsArgs,
  io: Io,
  now: Date,
): Promise<number> {
  const approval = await getApproval(c.client, namespace, name);
  io.stdout.write(
    args.output === 'json' ? `${JSON.stringify(approval, null, 2)}\n` : formatShow(approval, now),
  );
  return 0;
}

/** Attempts when the object changes between the check and the patch (resourceVersion conflict). */
const DECIDE_ATTEMPTS = 3;

async function decide(
  c: Connection,
  name: string,
  namespace: string,
  verdict: 'Approved' | 'Denied',
  reason: string | undefined,
  acknowledgeMasked: boolean,
  io: Io,
  now: () => Date,
): Promise<number> {
  for (let attempt = 1; ; attempt++) {
    const current = await getApproval(c.client, namespace, name);
    const refusal = notDecidable(current, now());
    if (refusal !== undefined) throw new Refusal(refusal);
    // The webhook refuses it too (for any client); said here before anything is written.
    const masked = verdict === 'Approved' && !acknowledgeMasked ? maskedRefusal(current) : undefined;
    if (masked !== undefined) throw new Refusal(masked);
    try {
      // resourceVersion makes the patch conditional: if the sidecar expired or cancelled the call
      // (or another reviewer decided) after the check above, the API server answers 409 and the
      // check runs again on the new state.
      const updated = await c.client.request<ApprovalResource>('PATCH', approvalPath(namespace, name), {
        contentType: 'application/merge-patch+json',
        body: {
          metadata: { resourceVersion: current.metadata.resourceVersion },
          spec: {
            decision: {
              verdict,
              ...(reason === undefined ? {} : { reason }),
              ...(acknowledgeMasked ? { acknowledgeMaskedArguments: true } : {}),
            },
          },
        },
      });
      const decision = updated.spec.decision;
      if (decision === undefined) throw new Refusal(`mcpapproval "${name}": the API server kept no decision`);
      io.stdout.write(`mcpapproval/${name} ${decisionText(decision)}\n`);
      if (!decision.decidedBy) {
        io.stderr.write(
          'warning: decidedBy was not stamped: is the mcp-warden webhook installed for mcpapprovals?\n',
        );
      }
      return 0;
    } catch (err) {
      if (!(err instanceof KubeApiError && err.status === 409 && attempt < DECIDE_ATTEMPTS)) throw err;
    }
  }
}

/** Entry point of `mcp-warden approvals`. */
export async function run(
  argv: string[],
  io: Io = { stdout: process.stdout, stderr: process.stderr },
  deps: Deps = {},
): Promise<number> {
  const parsed = parseApprovalsArgs(argv);
  if (!parsed.ok) {
    if (parsed.help) {
      io.stdout.write(parsed.text);
      return 0;
    }
    io.stderr.write(`mcp-warden approvals: ${parsed.message}\n\n${parsed.text}`);
    return 2;
  }
  const { args } = parsed;
  const now = deps.now ?? (() => new Date());
  const target: { name?: string; namespace?: string; server?: string } = {};
  try {
    const c = (deps.connect ?? connect)(args.kubeconfig);
    const namespace = args.namespace ?? c.defaultNamespace;
    target.namespace = namespace;
    target.server = c.client.server;
    if (args.sub === 'list') return await list(c, args, io, now());
    const name = args.name!;
    target.name = name;
    if (args.sub === 'show') return await show(c, name, namespace, args, io, now());
    const verdict = args.sub === 'approve' ? 'Approved' : 'Denied';
    return await decide(c, name, namespace, verdict, args.reason, args.acknowledgeMasked, io, now);
  } catch (err) {
    io.stderr.write(`${describeError(err, target)}\n`);
    return 1;
  }
}
