/**
 * What `mcp-warden approvals` prints: the table of `list` (kubectl's column layout and duration
 * style), the readable form of `show`, and the checks that say whether an approval can still be
 * decided. Pure functions of the objects and a clock, so the output is tested with a fixed `now`.
 */
import { describeMasked } from '../pkg/approval/masked.js';
import type { ApprovalPhase, MCPApproval, MCPApprovalSpec } from '../pkg/policy/schema.js';

/** An MCPApproval as the API server returns it (metadata carries more than the schema declares). */
export type ApprovalResource = Omit<MCPApproval, 'metadata'> & {
  metadata: MCPApproval['metadata'] & {
    creationTimestamp?: string;
    resourceVersion?: string;
    annotations?: Record<string, string>;
  };
};

export type Decision = NonNullable<MCPApprovalSpec['decision']>;

/**
 * Control characters (ANSI escapes, carriage returns) and bidirectional overrides, shown escaped:
 * tool names and arguments come from MCP clients, and a reviewer's terminal must show what is
 * there, not what an escape sequence paints over it.
 */
const UNPRINTABLE = /[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/g;

export function printable(value: string): string {
  return value.replace(UNPRINTABLE, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** kubectl's `duration.HumanDuration` (apimachinery): `45s`, `5m30s`, `45m`, `3h5m`, `30h`, `3d5h`, `20d`, `2y`. */
export function humanDuration(ms: number): string {
  const seconds = Math.trunc(ms / 1000);
  if (seconds < -1) return '<invalid>';
  if (seconds < 0) return '0s';
  if (seconds < 120) return `${seconds}s`;
  const minutes = Math.trunc(seconds / 60);
  if (minutes < 10) return seconds % 60 === 0 ? `${minutes}m` : `${minutes}m${seconds % 60}s`;
  if (minutes < 180) return `${minutes}m`;
  const hours = Math.trunc(minutes / 60);
  if (hours < 8) return minutes % 60 === 0 ? `${hours}h` : `${hours}h${minutes % 60}m`;
  if (hours < 48) return `${hours}h`;
  const days = Math.trunc(hours / 24);
  if (hours < 24 * 8) return hours % 24 === 0 ? `${days}d` : `${days}d${hours % 24}h`;
  if (days < 365 * 2) return `${days}d`;
  const years = Math.trunc(days / 365);
  if (days < 365 * 8) return days % 365 === 0 ? `${years}y` : `${years}y${days % 365}d`;
  return `${years}y`;
}

function time(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const t = Date.parse(value);
  return Number.isNaN(t) ? undefined : t;
}

/** `status.phase`; an approval the sidecar has not reported on yet is Pending. */
export function phaseOf(a: ApprovalResource): ApprovalPhase {
  return a.status?.phase ?? 'Pending';
}

export function ageOf(a: ApprovalResource, now: Date): string {
  const created = time(a.metadata.creationTimestamp);
  return created === undefined ? '<unknown>' : humanDuration(now.getTime() - created);
}

/**
 * How long a reviewer has left: `in 2m`, or `expired` once `spec.expiresAt` has passed. `-` when
 * the question is settled (a decision was made, or the phase moved on from Pending).
 */
export function expiresOf(a: ApprovalResource, now: Date): string {
  const phase = phaseOf(a);
  if (phase === 'Expired') return 'expired';
  if (phase !== 'Pending' || a.spec.decision !== undefined) return '-';
  const at = time(a.spec.expiresAt);
  if (at === undefined) return '<invalid>';
  return at <= now.getTime() ? 'expired' : `in ${humanDuration(at - now.getTime())}`;
}

export function requesterOf(spec: MCPApprovalSpec): string {
  return spec.requester.user || spec.requester.principal;
}

/** `tools/call delete_repo`; a request the MCP server sent to the client is marked as such. */
export function callOf(spec: MCPApprovalSpec): string {
  const call = spec.tool ? `${spec.method} ${spec.tool}` : spec.method;
  return spec.direction === 'server-to-client' ? `${call} (server-to-client)` : call;
}

/**
 * The MASKED column: how many values masking hid from reviewers, and how many characters
 * (`2 (1788 chars)`); `-` when nothing was masked.
 */
export function maskedOf(spec: MCPApprovalSpec): string {
  const m = spec.maskedArguments;
  if (m === undefined || m.count === 0) return '-';
  return `${m.count} (${m.length} char${m.length === 1 ? '' : 's'})`;
}

/** `sha256:` and the first 12 hex digits: enough to tell two calls apart at a glance. */
export function shortDigest(digest: string): string {
  return digest.replace(/^(sha256:[0-9a-f]{12})[0-9a-f]*$/, '$1');
}

/** `Approved by rita ("looks fine")`. */
export function decisionText(d: Decision): string {
  const by = d.decidedBy ? ` by ${d.decidedBy}` : '';
  const reason = d.reason ? ` (${JSON.stringify(d.reason)})` : '';
  const acknowledged = d.acknowledgeMaskedArguments === true ? ', masked arguments acknowledged' : '';
  return printable(`${d.verdict}${by}${reason}${acknowledged}`);
}

/** Oldest first (creation time, then namespace and name). */
export function sortOldestFirst(items: ApprovalResource[]): ApprovalResource[] {
  const key = (a: ApprovalResource): number => time(a.metadata.creationTimestamp) ?? 0;
  return [...items].sort(
    (a, b) =>
      key(a) - key(b) ||
      (a.metadata.namespace ?? '').localeCompare(b.metadata.namespace ?? '') ||
      a.metadata.name.localeCompare(b.metadata.name),
  );
}

export interface TableOptions {
  now: Date;
  wide?: boolean;
  /** Adds the NAMESPACE column first (as `kubectl get -A`). */
  allNamespaces?: boolean;
}

/** Columns separated by three spaces, empty cells `<none>`, as kubectl prints them. */
export function formatTable(items: ApprovalResource[], options: TableOptions): string {
  const { now, wide = false, allNamespaces = false } = options;
  const header = [
    ...(allNamespaces ? ['NAMESPACE'] : []),
    'NAME',
    'PHASE',
    'POLICY',
    'RULE',
    'REQUESTER',
    'CALL',
    'MASKED',
    'AGE',
    'EXPIRES',
    ...(wide ? ['POD', 'DIGEST', 'DECIDED-BY', 'REASON'] : []),
  ];
  const rows = items.map((a) => {
    const s = a.spec;
    return [
      ...(allNamespaces ? [a.metadata.namespace ?? ''] : []),
      a.metadata.name,
      phaseOf(a),
      s.policy,
      s.rule,
      requesterOf(s),
      callOf(s),
      maskedOf(s),
      ageOf(a, now),
      expiresOf(a, now),
      ...(wide
        ? [s.pod, shortDigest(s.argumentsDigest), s.decision?.decidedBy ?? '', s.decision?.reason ?? '']
        : []),
    ].map((cell) => (cell === '' ? '<none>' : printable(cell.replace(/\s+/g, ' '))));
  });
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  return [header, ...rows]
    .map((r) =>
      r
        .map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i]! + 3)))
        .join('')
        .trimEnd(),
    )
    .join('\n')
    .concat('\n');
}

function approverText(a: MCPApprovalSpec['approvers'][number]): string {
  if (a.user) return `user ${a.user}`;
  if (a.group) return `group ${a.group}`;
  return `serviceAccount ${a.serviceAccount ?? '?'}`;
}

/** Everything a reviewer needs to judge one held call, one field per line. */
export function formatShow(a: ApprovalResource, now: Date): string {
  const s = a.spec;
  const created = a.metadata.creationTimestamp;
  const expires = expiresOf(a, now);
  const requester = [
    s.requester.principal,
    ...(s.requester.user ? [`user ${s.requester.user}`] : []),
    ...(s.requester.appId ? [`app ${s.requester.appId}`] : []),
  ];
  const call: Array<[string, string]> = [
    ['Name', a.metadata.name],
    ['Namespace', a.metadata.namespace ?? ''],
    ['Phase', `${phaseOf(a)}${a.status?.message ? ` (${a.status.message})` : ''}`],
    ['Policy', s.policy],
    ['Rule', s.rule],
    ['Pod', s.pod],
    // A repeat of the call through another replica took it over (docs/approvals.md).
    ...(a.status?.holder !== undefined && a.status.holder !== s.pod
      ? ([['Holder', a.status.holder]] as Array<[string, string]>)
      : []),
    ['Server', s.server ?? ''],
    ['Session', s.session ?? ''],
    [
      'Requester',
      requester.length > 1 ? `${requester[0]} (${requester.slice(1).join(', ')})` : requester[0]!,
    ],
    ['Method', s.method],
    ['Tool', s.tool ?? ''],
  ];
  if (s.direction === 'server-to-client')
    call.push(['Direction', "server-to-client (the MCP server asks the requester's client)"]);
  const review: Array<[string, string]> = [
    ['Digest', s.argumentsDigest],
    ['Mode', s.mode ?? ''],
    ['Created', created ? `${created} (${ageOf(a, now)} ago)` : ''],
    ['Expires', `${s.expiresAt}${expires === '-' ? '' : ` (${expires})`}`],
    ['Approvers', s.approvers.map(approverText).join(', ')],
    ['Decision', s.decision ? decisionText(s.decision) : 'none yet'],
  ];
  const width = 'Arguments:'.length + 2;
  const line = ([k, v]: [string, string]): string =>
    `${`${k}:`.padEnd(width)}${printable(v === '' ? '<none>' : v)}`;
  // JSON.stringify escapes control characters itself; bidi overrides are escaped on top.
  const args = s.arguments === undefined ? '<none>' : JSON.stringify(s.arguments, null, 2);
  const lines = [
    ...call.map(line),
    `${'Arguments:'.padEnd(width)}(as masked by the policy)`,
    ...args.split('\n').map((l) => `  ${printable(l)}`),
    ...maskedLines(s, width),
    ...review.map(line),
  ];
  return `${lines.join('\n')}\n`;
}

/**
 * What masking hid from the reviewer, one line per masked value: where, by what, how many
 * characters. Nothing when nothing was masked.
 */
function maskedLines(s: MCPApprovalSpec, width: number): string[] {
  const m = s.maskedArguments;
  if (m === undefined || m.count === 0) return [];
  const rows = m.entries.map((e) => [printable(e.path), printable(e.detector), `${e.length} characters`]);
  const w0 = Math.max(4, ...rows.map((r) => r[0]!.length));
  const w1 = Math.max(8, ...rows.map((r) => r[1]!.length));
  const values = `${m.count} value${m.count === 1 ? '' : 's'}`;
  return [
    `${'Masked:'.padEnd(width)}${values} (${m.length} characters) hidden from you: approving needs --acknowledge-masked`,
    `  ${'PATH'.padEnd(w0 + 3)}${'DETECTOR'.padEnd(w1 + 3)}HIDDEN`,
    ...rows.map((r) => `  ${r[0]!.padEnd(w0 + 3)}${r[1]!.padEnd(w1 + 3)}${r[2]}`),
    ...(m.count > m.entries.length ? [`  … and ${m.count - m.entries.length} more, not listed`] : []),
  ];
}

/**
 * Why approving needs `--acknowledge-masked` (masking hid part of the arguments from the reviewer),
 * or undefined when nothing was masked.
 */
export function maskedRefusal(a: ApprovalResource): string | undefined {
  const m = a.spec.maskedArguments;
  if (m === undefined || m.count === 0) return undefined;
  return printable(
    `mcpapproval "${a.metadata.name}": masking hid part of the held call's arguments from you: ${describeMasked(m)}; approve it knowing you have not seen that text with --acknowledge-masked, or deny it`,
  );
}

/**
 * Why this approval can no longer be decided, or undefined when it can: a decision is already
 * there (it is immutable), the phase has moved on from Pending, or `spec.expiresAt` has passed.
 */
export function notDecidable(a: ApprovalResource, now: Date): string | undefined {
  const name = `mcpapproval "${a.metadata.name}"`;
  if (a.spec.decision !== undefined) {
    return `${name} is already decided: ${decisionText(a.spec.decision)}; a decision cannot be changed`;
  }
  const phase = phaseOf(a);
  if (phase !== 'Pending') return `${name} is ${phase}: only a Pending approval can be decided`;
  const at = time(a.spec.expiresAt);
  if (at !== undefined && at <= now.getTime()) {
    return `${name} expired at ${a.spec.expiresAt} (${humanDuration(now.getTime() - at)} ago): the held call no longer waits for a decision`;
  }
  return undefined;
}
