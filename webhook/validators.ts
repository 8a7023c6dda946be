import { describeMasked } from '../pkg/approval/masked.js';
import { DOMAIN } from './constants.js';
import { escapePointer, type PatchOperation } from './jsonpatch.js';
import { type AdmissionRequest, allow, deny, type UserInfo, type Verdict } from './review.js';

/**
 * Admission of the mcp-warden custom resources.
 *
 * - `MCPPolicy`: the full schema check of `validatePolicy` (pkg/policy), one cause per field.
 * - `MCPApproval`: a decision (`spec.decision`) is admitted only from a user among the approvers,
 *   never from the requester, never from the MCP pod's service account (named by the approval, and
 *   the principal that created the object, stamped at CREATE). The mutating step stamps
 *   `decidedBy` from the admission userInfo; the validating step refuses any decision
 *   whose `decidedBy` is not the caller, so it cannot be forged even if the mutating step is skipped.
 *   Approving an approval whose arguments masking changed (`spec.maskedArguments`) needs
 *   `spec.decision.acknowledgeMaskedArguments: true`, from any client.
 *   Once set, the decision and the rest of the spec are immutable.
 */

export interface ValidationIssue {
  path: string;
  message: string;
}

export type PolicyValidator = (doc: unknown) => ValidationIssue[];

/** Annotation the mutating step stamps on CREATE: the principal that created the approval. */
export const CREATED_BY_ANNOTATION = `${DOMAIN}/created-by`;

const MAX_CAUSES = 20;

export function admitPolicy(req: AdmissionRequest, validate: PolicyValidator): Verdict {
  if (req.operation !== 'CREATE' && req.operation !== 'UPDATE') return allow();
  let issues: ValidationIssue[];
  try {
    issues = validate(req.object);
  } catch (err) {
    return deny(
      500,
      `MCPPolicy validation failed internally: ${err instanceof Error ? err.message : String(err)}`,
    );
  }
  if (issues.length === 0) return allow();
  const name = objectName(req.object) ?? req.name ?? '';
  const shown = issues.slice(0, MAX_CAUSES);
  const more = issues.length > shown.length ? ` (and ${issues.length - shown.length} more)` : '';
  const message = `MCPPolicy ${name} is invalid: ${shown.map((i) => `${i.path}: ${i.message}`).join('; ')}${more}`;
  return deny(
    422,
    message,
    shown.map((i) => ({ field: i.path, message: i.message })),
  );
}

function objectName(obj: unknown): string | undefined {
  const n = (obj as { metadata?: { name?: unknown } } | undefined)?.metadata?.name;
  return typeof n === 'string' ? n : undefined;
}

type Obj = Record<string, unknown>;

/** Structural equality of JSON values (key order ignored). */
function canonical(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(canonical);
  if (typeof v === 'object' && v !== null) {
    return Object.fromEntries(
      Object.keys(v)
        .sort()
        .map((k) => [k, canonical((v as Obj)[k])]),
    );
  }
  return v;
}

function sameJson(a: unknown, b: unknown): boolean {
  return JSON.stringify(canonical(a)) === JSON.stringify(canonical(b));
}

function asObj(v: unknown): Obj | undefined {
  return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Obj) : undefined;
}

function str(v: unknown): string | undefined {
  return typeof v === 'string' && v !== '' ? v : undefined;
}

export interface Decision {
  verdict?: unknown;
  reason?: unknown;
  decidedBy?: unknown;
  acknowledgeMaskedArguments?: unknown;
}

function decisionOf(obj: unknown): Decision | undefined {
  return asObj(asObj(asObj(obj)?.['spec'])?.['decision']) as Decision | undefined;
}

function specWithoutDecision(obj: unknown): Obj {
  const { decision: _ignored, ...rest } = asObj(asObj(obj)?.['spec']) ?? {};
  return rest;
}

function annotationsOf(obj: unknown): Record<string, string> {
  return (
    (asObj(asObj(asObj(obj)?.['metadata'])?.['annotations']) as Record<string, string> | undefined) ?? {}
  );
}

const saPrefix = 'system:serviceaccount:';

/** The Kubernetes usernames of the MCP pod's service account named by the approval spec. */
function podServiceAccounts(spec: Obj, namespace: string): string[] {
  const pod = asObj(spec['pod']);
  const candidates = [
    pod?.['serviceAccount'],
    pod?.['serviceAccountName'],
    spec['podServiceAccount'],
    spec['serviceAccount'],
  ];
  const out: string[] = [];
  for (const c of candidates) {
    const s = str(c);
    if (s === undefined) continue;
    if (s.startsWith(saPrefix)) out.push(s);
    else if (s.includes('/')) out.push(`${saPrefix}${s.replace('/', ':')}`);
    else out.push(`${saPrefix}${namespace}:${s}`);
  }
  return out;
}

/** Every identifier of the requester the approval names (principal, oid, upn, subject, username). */
function requesterIds(spec: Obj): string[] {
  const r = spec['requester'];
  const ids: string[] = [];
  if (typeof r === 'string') ids.push(r);
  const o = asObj(r);
  if (o !== undefined) {
    for (const k of ['principal', 'user', 'oid', 'upn', 'subject', 'sub', 'username', 'name', 'email']) {
      const s = str(o[k]);
      if (s !== undefined) ids.push(s);
    }
  }
  const p = str(spec['requesterPrincipal']) ?? str(spec['principal']);
  if (p !== undefined) ids.push(p);
  return ids.map((s) => s.toLowerCase());
}

/**
 * Does the Kubernetes username denote the requester? Exact match, or the requester id equals the
 * last segment of a prefixed OIDC username (`oidc:<oid>`, `https://issuer#<oid>`, `<tid>/<oid>`).
 * Errs towards "yes": a false match only refuses a decision.
 */
function isRequester(username: string, ids: string[]): boolean {
  const u = username.toLowerCase();
  const tail = u.split(/[:#/]/).pop() ?? u;
  return ids.some((id) => id === u || id === tail || (id.split(/[:#/]/).pop() ?? id) === tail);
}

function subjectMatches(subject: unknown, user: UserInfo, namespace: string): boolean {
  const s = asObj(subject);
  if (s === undefined) return false;
  const username = user.username ?? '';
  const user_ = str(s['user']);
  if (user_ !== undefined && user_ === username) return true;
  const group = str(s['group']);
  if (group !== undefined && (user.groups ?? []).includes(group)) return true;
  const sa = s['serviceAccount'];
  const saObj = asObj(sa);
  const saName = str(sa) ?? str(saObj?.['name']);
  if (saName?.startsWith(saPrefix) === true && username === saName) return true;
  if (saName !== undefined && !saName.startsWith(saPrefix)) {
    const ns = str(saObj?.['namespace']) ?? (saName.includes('/') ? saName.split('/')[0]! : namespace);
    const name = saName.includes('/') ? saName.split('/')[1]! : saName;
    if (username === `${saPrefix}${ns}:${name}`) return true;
  }
  // role/app subjects are token claims of the MCP caller: Kubernetes userInfo has no such thing.
  return false;
}

function approvers(spec: Obj): unknown[] {
  const a = spec['approvers'] ?? asObj(spec['approval'])?.['approvers'];
  return Array.isArray(a) ? a : [];
}

/** May `user` decide this approval? Returns the refusal message, or undefined when allowed. */
export function decisionRefusal(
  obj: unknown,
  user: UserInfo,
  namespace: string,
  podServiceAccount?: string,
): string | undefined {
  const spec = asObj(asObj(obj)?.['spec']) ?? {};
  const username = user.username;
  if (username === undefined || username === '') return 'the request carries no username';
  const podAccounts = podServiceAccounts(spec, namespace);
  if (podServiceAccount !== undefined) podAccounts.push(`${saPrefix}${namespace}:${podServiceAccount}`);
  if (podAccounts.includes(username)) {
    return `${username} is the MCP pod's service account: the pod cannot approve its own calls`;
  }
  const creator = annotationsOf(obj)[CREATED_BY_ANNOTATION];
  if (creator !== undefined && creator === username) {
    return `${username} created this approval (the MCP pod): it cannot decide it`;
  }
  if (isRequester(username, requesterIds(spec))) {
    return `${username} is the requester of the held call: a requester cannot approve their own call`;
  }
  if (!approvers(spec).some((s) => subjectMatches(s, user, namespace))) {
    return `${username} is not among the approvers of this approval (spec.approvers)`;
  }
  return undefined;
}

/** Mutating step: stamp `created-by` on CREATE and `decidedBy` when a decision appears. */
export function mutateApproval(req: AdmissionRequest): Verdict {
  const patch: PatchOperation[] = [];
  const username = req.userInfo?.username ?? '';
  // created-by: the caller on CREATE; on UPDATE the stored value is put back when a client sends
  // the object without it (e.g. a PUT of the body it created), so only a real change is refused.
  const creator =
    req.operation === 'CREATE'
      ? username
      : req.operation === 'UPDATE'
        ? annotationsOf(req.oldObject)[CREATED_BY_ANNOTATION]
        : undefined;
  if (creator !== undefined && annotationsOf(req.object)[CREATED_BY_ANNOTATION] !== creator) {
    const meta = asObj(asObj(req.object)?.['metadata']);
    if (meta?.['annotations'] === undefined) {
      patch.push({ op: 'add', path: '/metadata/annotations', value: { [CREATED_BY_ANNOTATION]: creator } });
    } else {
      patch.push({
        op: 'add',
        path: `/metadata/annotations/${escapePointer(CREATED_BY_ANNOTATION)}`,
        value: creator,
      });
    }
  }
  if (req.operation === 'CREATE' || req.operation === 'UPDATE') {
    const before = req.operation === 'UPDATE' ? decisionOf(req.oldObject) : undefined;
    const after = decisionOf(req.object);
    if (before === undefined && after !== undefined) {
      // decidedBy only: the CRD schema has no decidedAt (the API server would prune it); when the
      // decision was made is recorded in metadata.managedFields.
      patch.push({ op: 'add', path: '/spec/decision/decidedBy', value: username });
    }
  }
  return allow({ patch, ...(patch.length > 0 ? { result: 'patched' } : {}) });
}

/** The pod name an approval names (`spec.pod`: a name, or an object with `name`). */
export function approvalPodName(obj: unknown): string | undefined {
  const pod = asObj(asObj(obj)?.['spec'])?.['pod'];
  return str(pod) ?? str(asObj(pod)?.['name']);
}

/** Is this request setting a decision for the first time (so the pod's service account matters)? */
export function setsDecision(req: AdmissionRequest): boolean {
  return (
    req.operation === 'UPDATE' &&
    decisionOf(req.oldObject) === undefined &&
    decisionOf(req.object) !== undefined
  );
}

/**
 * Validating step: who may set a decision, and immutability once set. `podServiceAccount` is the
 * service account the approval's pod runs as, when the webhook could read the pod.
 */
export function validateApproval(req: AdmissionRequest, podServiceAccount?: string): Verdict {
  if (req.subResource === 'status') {
    // The phase is the data path's record of what it did (Executed, Denied, Expired…): only the
    // data path that created the approval writes it, so one workload cannot end another's calls.
    const creator = annotationsOf(req.oldObject ?? req.object)[CREATED_BY_ANNOTATION];
    const user = req.userInfo?.username;
    if (creator === undefined || user !== creator) {
      return deny(
        403,
        `status: only the data path that created this approval (${creator ?? 'unknown: no created-by stamp'}) may write its phase, not ${user ?? 'an unknown user'}`,
      );
    }
    return allow();
  }
  if (req.operation === 'CREATE') {
    if (decisionOf(req.object) !== undefined) {
      return deny(
        403,
        'spec.decision: an approval is created without a decision; reviewers set it afterwards',
      );
    }
    return allow();
  }
  if (req.operation !== 'UPDATE') return allow();
  const before = decisionOf(req.oldObject);
  const after = decisionOf(req.object);
  if (!sameJson(specWithoutDecision(req.oldObject), specWithoutDecision(req.object))) {
    return deny(403, 'spec: only spec.decision may change after an approval is created');
  }
  const oldCreator = annotationsOf(req.oldObject)[CREATED_BY_ANNOTATION];
  if (oldCreator !== annotationsOf(req.object)[CREATED_BY_ANNOTATION]) {
    return deny(403, `metadata.annotations[${CREATED_BY_ANNOTATION}] is immutable`);
  }
  if (before !== undefined) {
    if (!sameJson(before, after)) return deny(403, 'spec.decision is immutable once set');
    return allow();
  }
  if (after === undefined) return allow();
  const verdict = after.verdict;
  if (verdict !== 'Approved' && verdict !== 'Denied') {
    return deny(422, 'spec.decision.verdict: must be Approved or Denied', [
      { field: 'spec.decision.verdict', message: 'must be Approved or Denied' },
    ]);
  }
  const user = req.userInfo ?? {};
  if (after.decidedBy !== user.username) {
    return deny(
      403,
      `spec.decision.decidedBy: must be the deciding user (${user.username ?? 'unknown'}); it is stamped by mcp-warden`,
    );
  }
  const refusal = decisionRefusal(req.object, user, req.namespace ?? '', podServiceAccount);
  if (refusal !== undefined) return deny(403, `spec.decision refused: ${refusal}`);
  const masked = unacknowledgedMasks(req.object, after);
  if (masked !== undefined) return deny(403, `spec.decision refused: ${masked}`);
  return allow();
}

/**
 * An Approved verdict on an approval whose arguments masking changed needs
 * `acknowledgeMaskedArguments: true`: the reviewer approves text they were not shown. Returns the
 * refusal naming what was hidden, or undefined.
 */
export function unacknowledgedMasks(obj: unknown, decision: Decision): string | undefined {
  if (decision.verdict !== 'Approved' || decision.acknowledgeMaskedArguments === true) return undefined;
  const m = asObj(asObj(asObj(obj)?.['spec'])?.['maskedArguments']);
  const count = typeof m?.['count'] === 'number' ? m['count'] : 0;
  if (count <= 0) return undefined;
  const entries = (Array.isArray(m?.['entries']) ? m['entries'] : []).flatMap((e: unknown) => {
    const o = asObj(e);
    return o !== undefined && typeof o['path'] === 'string' && typeof o['detector'] === 'string'
      ? [
          {
            path: o['path'],
            detector: o['detector'],
            length: typeof o['length'] === 'number' ? o['length'] : 0,
          },
        ]
      : [];
  });
  const what = entries.length > 0 ? describeMasked({ count, length: 0, entries }) : `${count} masked values`;
  return (
    `masking hid part of the held call's arguments from reviewers: ${what}; ` +
    'approve only knowing that, with spec.decision.acknowledgeMaskedArguments: true ' +
    '(mcp-warden approvals approve NAME --acknowledge-masked), or deny it'
  );
}
