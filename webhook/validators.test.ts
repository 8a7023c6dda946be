import { applyPatch } from './jsonpatch.js';
import type { AdmissionRequest, UserInfo } from './review.js';
import { admitPolicy, CREATED_BY_ANNOTATION, mutateApproval, validateApproval } from './validators.js';

const podSa = 'system:serviceaccount:agents:github-mcp';

function approval(decision?: Record<string, unknown>, extra: Record<string, unknown> = {}) {
  return {
    apiVersion: 'mcpwarden.io/v1alpha1',
    kind: 'MCPApproval',
    metadata: { name: 'a1', namespace: 'agents', annotations: { [CREATED_BY_ANNOTATION]: podSa } },
    spec: {
      policy: 'github-tools',
      rule: 'deletes-need-approval',
      pod: { name: 'github-mcp-0', serviceAccount: 'github-mcp' },
      requester: { principal: 'tenant-1/oid-requester', oid: 'oid-requester' },
      method: 'tools/call',
      tool: 'delete_repo',
      argumentsDigest: 'abc',
      approvers: [
        { group: 'mcp-reviewers' },
        { user: 'carol' },
        { serviceAccount: 'ops/approver-bot' },
        { serviceAccount: 'system:serviceaccount:ops:other-bot' },
      ],
      ...extra,
      ...(decision === undefined ? {} : { decision }),
    },
  };
}

function update(
  user: UserInfo,
  decision: Record<string, unknown> | undefined,
  old = approval(),
): AdmissionRequest {
  return {
    uid: 'u1',
    operation: 'UPDATE',
    namespace: 'agents',
    userInfo: user,
    oldObject: old,
    object: approval(decision),
  };
}

/** Runs the mutating then the validating step, as the API server does. */
function admit(req: AdmissionRequest) {
  const mutated = mutateApproval(req);
  const object = applyPatch(req.object, mutated.patch ?? []);
  return { verdict: validateApproval({ ...req, object }), object: object as ReturnType<typeof approval> };
}

const rita: UserInfo = { username: 'rita', groups: ['mcp-reviewers', 'system:authenticated'] };

test('a reviewer in an approver group decides; decidedBy is stamped from userInfo', () => {
  const { verdict, object } = admit(update(rita, { verdict: 'Approved', reason: 'ok' }));
  expect(verdict.allowed).toBe(true);
  expect(object.spec.decision).toEqual({
    verdict: 'Approved',
    reason: 'ok',
    decidedBy: 'rita',
  });
});

test('a forged decidedBy is overwritten by the mutating step, and refused if the mutation is skipped', () => {
  const req = update(rita, { verdict: 'Approved', decidedBy: 'carol' });
  expect(admit(req).object.spec.decision?.['decidedBy']).toBe('rita');
  const unmutated = validateApproval(req);
  expect(unmutated.allowed).toBe(false);
  expect(unmutated.message).toMatch(/decidedBy/);
});

test('approving an approval with masked arguments needs acknowledgeMaskedArguments: true; denying does not', () => {
  const masked = {
    maskedArguments: {
      count: 2,
      length: 1788,
      entries: [
        { path: '$.note', detector: 'private-key', length: 1766 },
        { path: '$.owner', detector: 'email', length: 22 },
      ],
    },
  };
  const req = (decision: Record<string, unknown>): AdmissionRequest => ({
    uid: 'u1',
    operation: 'UPDATE',
    namespace: 'agents',
    userInfo: rita,
    oldObject: approval(undefined, masked),
    object: approval(decision, masked),
  });
  const refused = admit(req({ verdict: 'Approved', reason: 'ok' })).verdict;
  expect(refused.allowed).toBe(false);
  expect(refused.code).toBe(403);
  expect(refused.message).toBe(
    "spec.decision refused: masking hid part of the held call's arguments from reviewers: private-key at $.note (1766 characters), email at $.owner (22 characters); approve only knowing that, with spec.decision.acknowledgeMaskedArguments: true (mcp-warden approvals approve NAME --acknowledge-masked), or deny it",
  );
  expect(admit(req({ verdict: 'Approved', acknowledgeMaskedArguments: false })).verdict.allowed).toBe(false);
  const ok = admit(req({ verdict: 'Approved', acknowledgeMaskedArguments: true }));
  expect(ok.verdict.allowed).toBe(true);
  expect(ok.object.spec.decision).toEqual({
    verdict: 'Approved',
    acknowledgeMaskedArguments: true,
    decidedBy: 'rita',
  });
  expect(admit(req({ verdict: 'Denied' })).verdict.allowed).toBe(true);
  // Who may decide is checked first: a non-approver learns nothing about the masks.
  const mallory = admit({ ...req({ verdict: 'Approved' }), userInfo: { username: 'mallory' } }).verdict;
  expect(mallory.message).toMatch(/not among the approvers/);
});

test('users and service accounts named as approvers may decide; others may not', () => {
  expect(admit(update({ username: 'carol' }, { verdict: 'Denied' })).verdict.allowed).toBe(true);
  expect(
    admit(update({ username: 'system:serviceaccount:ops:approver-bot' }, { verdict: 'Denied' })).verdict
      .allowed,
  ).toBe(true);
  const other = admit(
    update({ username: 'system:serviceaccount:ops:other-bot' }, { verdict: 'Denied' }),
  ).verdict;
  expect(other.allowed).toBe(true);
  const mallory = admit(update({ username: 'mallory', groups: ['devs'] }, { verdict: 'Approved' })).verdict;
  expect(mallory.allowed).toBe(false);
  expect(mallory.message).toMatch(/not among the approvers/);
});

test('the requester cannot approve their own call, even as an approver', () => {
  for (const username of ['oid-requester', 'oidc:oid-requester', 'https://issuer.example/#oid-requester']) {
    const r = admit(update({ username, groups: ['mcp-reviewers'] }, { verdict: 'Approved' })).verdict;
    expect(r.allowed).toBe(false);
    expect(r.message).toMatch(/requester/);
  }
});

test("the MCP pod's service account cannot decide, even if listed as an approver", () => {
  const old = approval(undefined, { approvers: [{ serviceAccount: 'github-mcp' }] });
  const req: AdmissionRequest = { ...update({ username: podSa }, { verdict: 'Approved' }, old) };
  req.object = approval({ verdict: 'Approved' }, { approvers: [{ serviceAccount: 'github-mcp' }] });
  const r = admit(req).verdict;
  expect(r.allowed).toBe(false);
  expect(r.message).toMatch(/service account/);
});

test('the creator of the approval cannot decide it', () => {
  const old = approval(undefined, { pod: { name: 'p' } });
  old.metadata.annotations[CREATED_BY_ANNOTATION] = 'system:serviceaccount:agents:other';
  const req = update(
    { username: 'system:serviceaccount:agents:other', groups: ['mcp-reviewers'] },
    { verdict: 'Approved' },
    old,
  );
  req.object = { ...approval({ verdict: 'Approved' }, { pod: { name: 'p' } }), metadata: old.metadata };
  const r = admit(req).verdict;
  expect(r.allowed).toBe(false);
  expect(r.message).toMatch(/created this approval/);
});

test('a decision is immutable once set, and the rest of the spec never changes', () => {
  const decided = approval({ verdict: 'Approved', decidedBy: 'rita' });
  const flip = update({ username: 'carol' }, { verdict: 'Denied' }, decided);
  const r = admit(flip).verdict;
  expect(r.allowed).toBe(false);
  expect(r.message).toMatch(/immutable/);
  const tamper: AdmissionRequest = {
    ...update(rita, undefined),
    object: approval(undefined, { tool: 'other' }),
  };
  expect(validateApproval(tamper).message).toMatch(/only spec.decision may change/);
  const sameAgain = update({ username: 'carol' }, decided.spec.decision, decided);
  expect(admit(sameAgain).verdict.allowed).toBe(true);
});

test('an approval is created without a decision; the creator is stamped and cannot be changed later', () => {
  const create: AdmissionRequest = {
    uid: 'c',
    operation: 'CREATE',
    namespace: 'agents',
    userInfo: { username: podSa },
    object: { ...approval(), metadata: { name: 'a1' } },
  };
  const { verdict, object } = admit(create);
  expect(verdict.allowed).toBe(true);
  expect(
    (object as { metadata: { annotations: Record<string, string> } }).metadata.annotations[
      CREATED_BY_ANNOTATION
    ],
  ).toBe(podSa);
  const preDecided = admit({ ...create, object: approval({ verdict: 'Approved' }) }).verdict;
  expect(preDecided.allowed).toBe(false);
  const changed = approval();
  changed.metadata.annotations[CREATED_BY_ANNOTATION] = 'someone-else';
  // Refused by the validating step alone; the mutating step puts the stored value back.
  expect(validateApproval({ ...update(rita, undefined), object: changed }).message).toMatch(/immutable/);
  const restored = admit({ ...update(rita, undefined), object: changed });
  expect(restored.verdict.allowed).toBe(true);
  expect((restored.object.metadata.annotations as Record<string, string>)[CREATED_BY_ANNOTATION]).toBe(podSa);
  const dropped = { ...approval(), metadata: { name: 'a1', namespace: 'agents' } };
  const put = admit({ ...update(rita, undefined), object: dropped });
  expect(put.verdict.allowed).toBe(true);
  expect(
    (put.object.metadata as { annotations?: Record<string, string> }).annotations?.[CREATED_BY_ANNOTATION],
  ).toBe(podSa);
});

test('verdict must be Approved or Denied', () => {
  const r = admit(update(rita, { verdict: 'Maybe' })).verdict;
  expect(r.allowed).toBe(false);
  expect(r.causes?.[0]?.field).toBe('spec.decision.verdict');
});

test('MCPPolicy: every issue becomes a field cause and the message names the fields', () => {
  const req: AdmissionRequest = { uid: 'p', operation: 'CREATE', object: { metadata: { name: 'bad' } } };
  const r = admitPolicy(req, () => [
    { path: 'spec.rules[0].when', message: 'CEL does not compile: unexpected token' },
    { path: 'spec.masking[0].patterns[0].regex', message: 'not valid RE2' },
  ]);
  expect(r.allowed).toBe(false);
  expect(r.code).toBe(422);
  expect(r.message).toBe(
    'MCPPolicy bad is invalid: spec.rules[0].when: CEL does not compile: unexpected token; spec.masking[0].patterns[0].regex: not valid RE2',
  );
  expect(r.causes?.map((c) => c.field)).toEqual(['spec.rules[0].when', 'spec.masking[0].patterns[0].regex']);
  expect(admitPolicy(req, () => []).allowed).toBe(true);
  expect(admitPolicy({ ...req, operation: 'DELETE' }, () => [{ path: 'x', message: 'y' }]).allowed).toBe(
    true,
  );
});

test('MCPPolicy: a validator that throws refuses (fail closed)', () => {
  const r = admitPolicy({ uid: 'p', operation: 'UPDATE', object: {} }, () => {
    throw new Error('boom');
  });
  expect(r.allowed).toBe(false);
  expect(r.code).toBe(500);
});

test("only the data path that created an approval writes its status: another pod's service account is refused", () => {
  const status = (username: string, old = approval()): AdmissionRequest => ({
    uid: 'u2',
    operation: 'UPDATE',
    subResource: 'status',
    namespace: 'agents',
    userInfo: { username, groups: ['system:serviceaccounts'] },
    oldObject: old,
    object: { ...old, status: { phase: 'Denied' } },
  });
  expect(validateApproval(status(podSa)).allowed).toBe(true);
  const other = validateApproval(status('system:serviceaccount:agents:other-mcp'));
  expect(other.allowed).toBe(false);
  expect(other.message).toMatch(/only the data path that created this approval/);
  expect(validateApproval(status('rita')).allowed).toBe(false);
  const unstamped = { ...approval(), metadata: { name: 'a1', namespace: 'agents' } };
  expect(validateApproval(status(podSa, unstamped as ReturnType<typeof approval>)).allowed).toBe(false);
});
