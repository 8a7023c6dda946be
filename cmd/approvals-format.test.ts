import {
  type ApprovalResource,
  expiresOf,
  formatShow,
  formatTable,
  humanDuration,
  maskedRefusal,
  notDecidable,
  printable,
  shortDigest,
  sortOldestFirst,
} from './approvals-format.js';

const NOW = new Date('2026-11-30T12:00:00Z');
const at = (secondsFromNow: number): string => new Date(NOW.getTime() + secondsFromNow * 1000).toISOString();
const DIGEST = `sha256:${'0123456789abcdef'.repeat(4)}`;
/** What masking hid in a held call (spec.maskedArguments). */
const MASKED = {
  count: 2,
  length: 1788,
  entries: [
    { path: '$.note', detector: 'private-key', length: 1766 },
    { path: "$['x-owner']", detector: 'email', length: 22 },
  ],
};

function approval(
  name: string,
  overrides: Partial<ApprovalResource['spec']> = {},
  extra = {},
): ApprovalResource {
  return {
    apiVersion: 'mcpwarden.io/v1alpha1',
    kind: 'MCPApproval',
    metadata: { name, namespace: 'agents', creationTimestamp: at(-300), resourceVersion: '7' },
    spec: {
      policy: 'agents/github-tools',
      rule: 'deletes-need-approval',
      pod: 'github-mcp-0',
      server: 'StatefulSet/github-mcp',
      session: 's-1',
      requester: { principal: 'tenant-1/oid-1' },
      method: 'tools/call',
      tool: 'delete_repo',
      arguments: { repo: 'acme/site', owner: '[masked:email]' },
      argumentsDigest: DIGEST,
      expiresAt: at(120),
      mode: 'hold',
      approvers: [{ group: 'mcp-reviewers' }, { user: 'alice' }],
      ...overrides,
    },
    ...extra,
  };
}

describe('humanDuration (kubectl style)', () => {
  test.each([
    [0, '0s'],
    [-1500, '0s'],
    [-5000, '<invalid>'],
    [45_000, '45s'],
    [119_000, '119s'],
    [120_000, '2m'],
    [330_000, '5m30s'],
    [45 * 60_000, '45m'],
    [3 * 3600_000 + 5 * 60_000, '3h5m'],
    [30 * 3600_000, '30h'],
    [3 * 86_400_000 + 5 * 3600_000, '3d5h'],
    [20 * 86_400_000, '20d'],
    [3 * 365 * 86_400_000, '3y'],
  ])('%d ms → %s', (ms, text) => {
    expect(humanDuration(ms)).toBe(text);
  });
});

describe('list table', () => {
  test('columns, kubectl spacing, AGE and EXPIRES against a fixed clock, oldest first', () => {
    const items = sortOldestFirst([
      approval(
        'newer',
        { requester: { principal: 'tenant-1/oid-2', user: 'bob@example.com' }, maskedArguments: MASKED },
        {
          metadata: { name: 'newer', namespace: 'agents', creationTimestamp: at(-30) },
        },
      ),
      approval('older', { expiresAt: at(-5) }),
      approval(
        'settled',
        {},
        {
          metadata: { name: 'settled', namespace: 'agents', creationTimestamp: at(-90_000) },
          status: { phase: 'Executed' },
        },
      ),
    ]);
    expect(formatTable(items, { now: NOW })).toBe(
      [
        'NAME      PHASE      POLICY                RULE                    REQUESTER         CALL                     MASKED           AGE   EXPIRES',
        'settled   Executed   agents/github-tools   deletes-need-approval   tenant-1/oid-1    tools/call delete_repo   -                25h   -',
        'older     Pending    agents/github-tools   deletes-need-approval   tenant-1/oid-1    tools/call delete_repo   -                5m    expired',
        'newer     Pending    agents/github-tools   deletes-need-approval   bob@example.com   tools/call delete_repo   2 (1788 chars)   30s   in 2m',
        '',
      ].join('\n'),
    );
  });

  test('wide adds POD, the short DIGEST, DECIDED-BY and REASON; -A adds NAMESPACE first', () => {
    const decided = approval('d', {
      decision: { verdict: 'Denied', reason: 'not on\na Friday', decidedBy: 'rita' },
    });
    const table = formatTable([decided, approval('p', { tool: undefined, method: 'prompts/get' })], {
      now: NOW,
      wide: true,
      allNamespaces: true,
    });
    const [header, first, second] = table.split('\n');
    expect(header!.split(/ {3,}/)).toEqual([
      'NAMESPACE',
      'NAME',
      'PHASE',
      'POLICY',
      'RULE',
      'REQUESTER',
      'CALL',
      'MASKED',
      'AGE',
      'EXPIRES',
      'POD',
      'DIGEST',
      'DECIDED-BY',
      'REASON',
    ]);
    expect(first!.split(/ {3,}/)).toEqual([
      'agents',
      'd',
      'Pending',
      'agents/github-tools',
      'deletes-need-approval',
      'tenant-1/oid-1',
      'tools/call delete_repo',
      '-',
      '5m',
      '-',
      'github-mcp-0',
      'sha256:0123456789ab',
      'rita',
      'not on a Friday',
    ]);
    expect(second!.split(/ {3,}/).slice(6)).toEqual([
      'prompts/get',
      '-',
      '5m',
      'in 2m',
      'github-mcp-0',
      'sha256:0123456789ab',
      '<none>',
      '<none>',
    ]);
  });

  test('terminal escapes in client-controlled fields are shown escaped, never emitted', () => {
    const table = formatTable([approval('x', { tool: 'rm\u001b[2K\u001b[1Aok\u202e' })], { now: NOW });
    expect(table).not.toMatch(/[\u001b\u202e]/);
    expect(table).toContain('rm\\u001b[2K\\u001b[1Aok\\u202e');
    expect(printable('plain')).toBe('plain');
  });
});

describe('EXPIRES', () => {
  test('in Xm while pending, expired after expiresAt or in phase Expired, - once decided', () => {
    expect(expiresOf(approval('a', { expiresAt: at(600) }), NOW)).toBe('in 10m');
    expect(expiresOf(approval('a', { expiresAt: at(0) }), NOW)).toBe('expired');
    expect(expiresOf(approval('a', {}, { status: { phase: 'Expired' } }), NOW)).toBe('expired');
    expect(expiresOf(approval('a', { decision: { verdict: 'Approved' } }), NOW)).toBe('-');
    expect(expiresOf(approval('a', {}, { status: { phase: 'Approved' } }), NOW)).toBe('-');
  });
});

describe('show', () => {
  test('prints every field of the held call, the arguments as indented JSON and the full digest', () => {
    const text = formatShow(
      approval('hold-1', {
        requester: { principal: 'tenant-1/oid-1', user: 'alice@example.com', appId: 'app-9' },
      }),
      NOW,
    );
    expect(text).toBe(
      [
        'Name:       hold-1',
        'Namespace:  agents',
        'Phase:      Pending',
        'Policy:     agents/github-tools',
        'Rule:       deletes-need-approval',
        'Pod:        github-mcp-0',
        'Server:     StatefulSet/github-mcp',
        'Session:    s-1',
        'Requester:  tenant-1/oid-1 (user alice@example.com, app app-9)',
        'Method:     tools/call',
        'Tool:       delete_repo',
        'Arguments:  (as masked by the policy)',
        '  {',
        '    "repo": "acme/site",',
        '    "owner": "[masked:email]"',
        '  }',
        `Digest:     ${DIGEST}`,
        'Mode:       hold',
        'Created:    2026-11-30T11:55:00.000Z (5m ago)',
        'Expires:    2026-11-30T12:02:00.000Z (in 2m)',
        'Approvers:  group mcp-reviewers, user alice',
        'Decision:   none yet',
        '',
      ].join('\n'),
    );
  });

  test('what masking hid is listed under the arguments: path, detector, characters; never without it', () => {
    const text = formatShow(approval('m-1', { maskedArguments: { ...MASKED, count: 3 } }), NOW);
    expect(text).toContain(
      [
        '  }',
        'Masked:     3 values (1788 characters) hidden from you: approving needs --acknowledge-masked',
        '  PATH           DETECTOR      HIDDEN',
        '  $.note         private-key   1766 characters',
        "  $['x-owner']   email         22 characters",
        '  … and 1 more, not listed',
        `Digest:     ${DIGEST}`,
      ].join('\n'),
    );
    expect(formatShow(approval('plain'), NOW)).not.toContain('Masked:');
    const acknowledged = approval('m-2', {
      maskedArguments: MASKED,
      decision: { verdict: 'Approved', decidedBy: 'rita', acknowledgeMaskedArguments: true },
    });
    expect(formatShow(acknowledged, NOW)).toContain(
      'Decision:   Approved by rita, masked arguments acknowledged\n',
    );
  });

  test('a hold another pod took over names its holder (Holder line, only then)', () => {
    const moved = approval('moved-1', {}, { status: { phase: 'Pending', holder: 'github-mcp-1' } });
    expect(formatShow(moved, NOW)).toContain('Pod:        github-mcp-0\nHolder:     github-mcp-1\nServer:');
    const own = approval('own-1', {}, { status: { phase: 'Pending', holder: 'github-mcp-0' } });
    expect(formatShow(own, NOW)).not.toContain('Holder:');
  });

  test('a request the MCP server sent to the client says so (Direction line, CALL column)', () => {
    const a = approval('srv-1', {
      method: 'sampling/createMessage',
      tool: undefined,
      direction: 'server-to-client',
      arguments: { messages: [{ role: 'user', content: { type: 'text', text: 'hi' } }], maxTokens: 10 },
    });
    const text = formatShow(a, NOW);
    expect(text).toContain(
      "Method:     sampling/createMessage\nTool:       <none>\nDirection:  server-to-client (the MCP server asks the requester's client)\n",
    );
    expect(formatShow(approval('c'), NOW)).not.toContain('Direction:');
    expect(formatTable([a], { now: NOW })).toContain('sampling/createMessage (server-to-client)');
  });

  test('a decided approval shows the verdict, who decided and why; the status message with the phase', () => {
    const text = formatShow(
      approval(
        'hold-2',
        { decision: { verdict: 'Denied', reason: 'no', decidedBy: 'rita' } },
        {
          status: { phase: 'Denied', message: 'the client was answered -31409' },
        },
      ),
      NOW,
    );
    expect(text).toContain('Decision:   Denied by rita ("no")\n');
    expect(text).toContain('Phase:      Denied (the client was answered -31409)\n');
    expect(text).toContain('Expires:    2026-11-30T12:02:00.000Z\n');
  });
});

describe('maskedRefusal', () => {
  test('names what masking hid and how to approve anyway; nothing when nothing was masked', () => {
    expect(maskedRefusal(approval('m', { maskedArguments: MASKED }))).toBe(
      `mcpapproval "m": masking hid part of the held call's arguments from you: private-key at $.note (1766 characters), email at $['x-owner'] (22 characters); approve it knowing you have not seen that text with --acknowledge-masked, or deny it`,
    );
    expect(maskedRefusal(approval('plain'))).toBeUndefined();
  });
});

describe('notDecidable', () => {
  test('a pending, unexpired approval without a decision can be decided', () => {
    expect(notDecidable(approval('ok'), NOW)).toBeUndefined();
  });

  test('refuses an already decided approval, naming the verdict and who decided', () => {
    expect(
      notDecidable(
        approval('d', { decision: { verdict: 'Approved', decidedBy: 'rita', reason: 'fine' } }),
        NOW,
      ),
    ).toBe('mcpapproval "d" is already decided: Approved by rita ("fine"); a decision cannot be changed');
  });

  test('refuses once the phase is no longer Pending', () => {
    expect(notDecidable(approval('c', {}, { status: { phase: 'Cancelled' } }), NOW)).toBe(
      'mcpapproval "c" is Cancelled: only a Pending approval can be decided',
    );
  });

  test('refuses when expiresAt has passed, even before the sidecar marked it Expired', () => {
    expect(notDecidable(approval('e', { expiresAt: at(-90) }), NOW)).toBe(
      `mcpapproval "e" expired at ${at(-90)} (90s ago): the held call no longer waits for a decision`,
    );
    expect(notDecidable(approval('e', { expiresAt: at(1) }), NOW)).toBeUndefined();
  });
});

test('shortDigest keeps sha256: and 12 hex digits', () => {
  expect(shortDigest(DIGEST)).toBe('sha256:0123456789ab');
  expect(shortDigest('odd')).toBe('odd');
});
