import { PassThrough } from 'node:stream';
import type { HttpMethod, KubeClient, KubeRequestOptions } from '../pkg/kube/client.js';
import { KubeApiError } from '../pkg/kube/client.js';
import { type Connection, parseApprovalsArgs, run } from './approvals.js';
import type { ApprovalResource } from './approvals-format.js';

/**
 * Argument parsing, and `run` against a fake KubeClient (an in-memory API server that stamps
 * decidedBy like the webhook): which requests are made, what is printed, exit codes. The real
 * API server, webhook and kubectl plugin are exercised in test/e2e/approvals-cli.test.ts.
 */
const NOW = new Date('2026-11-30T12:00:00Z');
const at = (s: number): string => new Date(NOW.getTime() + s * 1000).toISOString();
const BASE = '/apis/mcpwarden.io/v1alpha1';

function approval(name: string, namespace = 'agents', spec: Partial<ApprovalResource['spec']> = {}) {
  return {
    apiVersion: 'mcpwarden.io/v1alpha1' as const,
    kind: 'MCPApproval' as const,
    metadata: { name, namespace, creationTimestamp: at(-60), resourceVersion: '1' },
    spec: {
      policy: `${namespace}/github-tools`,
      rule: 'deletes-need-approval',
      pod: 'github-mcp-0',
      requester: { principal: 'tenant-1/oid-1' },
      method: 'tools/call',
      tool: 'delete_repo',
      argumentsDigest: `sha256:${'ab'.repeat(32)}`,
      expiresAt: at(300),
      approvers: [{ group: 'mcp-reviewers' }],
      ...spec,
    },
  } satisfies ApprovalResource as ApprovalResource;
}

interface Call {
  method: HttpMethod;
  path: string;
  options: KubeRequestOptions | undefined;
}

/** An in-memory API server for MCPApprovals; `onPatch` may throw to play the webhook or RBAC. */
function fakeApi(objects: ApprovalResource[], onPatch?: (obj: ApprovalResource, n: number) => void) {
  const calls: Call[] = [];
  let patches = 0;
  const find = (path: string) =>
    objects.find(
      (o) => path === `${BASE}/namespaces/${o.metadata.namespace}/mcpapprovals/${o.metadata.name}`,
    );
  const client: KubeClient = {
    server: 'https://api.test:6443',
    async request<T>(method: HttpMethod, path: string, options?: KubeRequestOptions): Promise<T> {
      calls.push({ method, path, options });
      if (method === 'GET' && path === `${BASE}/mcpapprovals`) return { items: objects } as T;
      const ns = /^\/apis\/mcpwarden\.io\/v1alpha1\/namespaces\/([^/]+)\/mcpapprovals$/.exec(path)?.[1];
      if (method === 'GET' && ns !== undefined) {
        return { items: objects.filter((o) => o.metadata.namespace === ns) } as T;
      }
      const obj = find(path);
      if (obj === undefined) {
        const name = path.split('/').pop();
        throw new KubeApiError(404, `${method} ${path}: 404 mcpapprovals.mcpwarden.io "${name}" not found`, {
          reason: 'NotFound',
        });
      }
      if (method === 'GET') return structuredClone(obj) as T;
      if (method === 'PATCH') {
        onPatch?.(obj, ++patches);
        const body = options?.body as {
          metadata: { resourceVersion: string };
          spec: {
            decision: {
              verdict: 'Approved' | 'Denied';
              reason?: string;
              acknowledgeMaskedArguments?: boolean;
            };
          };
        };
        if (body.metadata.resourceVersion !== obj.metadata.resourceVersion) {
          throw new KubeApiError(409, `PATCH ${path}: 409 the object has been modified`, {
            reason: 'Conflict',
          });
        }
        obj.spec.decision = { ...body.spec.decision, decidedBy: 'rita' };
        obj.metadata.resourceVersion = String(Number(obj.metadata.resourceVersion) + 1);
        return structuredClone(obj) as T;
      }
      throw new Error(`unexpected ${method} ${path}`);
    },
    watch: async () => undefined,
  };
  return { client, calls, patches: () => calls.filter((c) => c.method === 'PATCH') };
}

async function cli(argv: string[], client: KubeClient, defaultNamespace = 'agents') {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  let out = '';
  let err = '';
  stdout.on('data', (c: Buffer) => {
    out += c.toString();
  });
  stderr.on('data', (c: Buffer) => {
    err += c.toString();
  });
  const connection: Connection = { client, defaultNamespace };
  const code = await run(argv, { stdout, stderr }, { now: () => NOW, connect: () => connection });
  return { code, out, err };
}

describe('parseApprovalsArgs', () => {
  const args = (argv: string[]) => {
    const r = parseApprovalsArgs(argv);
    if (!r.ok) throw new Error(r.help ? 'help' : r.message);
    return r.args;
  };
  const error = (argv: string[]) => {
    const r = parseApprovalsArgs(argv);
    return r.ok || r.help ? undefined : r.message;
  };

  test('list: defaults, short and long flags, case-insensitive phase', () => {
    expect(args(['list'])).toEqual({
      sub: 'list',
      allNamespaces: false,
      output: 'table',
      acknowledgeMasked: false,
    });
    expect(args(['list', '-A', '--phase', 'pending', '-o', 'wide', '--kubeconfig', '/k'])).toEqual({
      sub: 'list',
      allNamespaces: true,
      output: 'wide',
      phase: 'Pending',
      kubeconfig: '/k',
      acknowledgeMasked: false,
    });
    expect(args(['list', '--namespace=agents', '-o', 'json']).namespace).toBe('agents');
  });

  test('approve/deny/show take exactly one NAME; reason only for decisions', () => {
    expect(args(['approve', 'hold-1', '-n', 'agents', '--reason', 'ok'])).toEqual({
      sub: 'approve',
      name: 'hold-1',
      namespace: 'agents',
      allNamespaces: false,
      output: 'table',
      reason: 'ok',
      acknowledgeMasked: false,
    });
    expect(args(['approve', 'hold-1', '--acknowledge-masked']).acknowledgeMasked).toBe(true);
    expect(error(['deny', 'x', '--acknowledge-masked'])).toBe(
      '--acknowledge-masked is not an option of deny',
    );
    expect(error(['show', 'x', '--acknowledge-masked'])).toBe(
      '--acknowledge-masked is not an option of show',
    );
    expect(args(['show', 'hold-1', '-o', 'json']).output).toBe('json');
    expect(error(['approve'])).toBe("approve needs the approval's NAME");
    expect(error(['deny', 'a', 'b'])).toBe('unexpected argument "b"');
    expect(error(['list', 'hold-1'])).toBe('list takes no NAME (got "hold-1")');
    expect(error(['list', '--reason', 'x'])).toBe('--reason is not an option of list');
    expect(error(['approve', 'x', '-A'])).toBe('--all-namespaces is not an option of approve');
    expect(error(['deny', 'x', '-o', 'json'])).toBe('--output is not an option of deny');
    expect(error(['approve', 'x', '--reason', 'r'.repeat(1025)])).toBe(
      '--reason is 1025 characters long: at most 1024',
    );
  });

  test('bad values and combinations are usage errors', () => {
    expect(error([])).toBe('a subcommand is required: list, show, approve or deny');
    expect(error(['remove', 'x'])).toBe('unknown subcommand "remove"');
    expect(error(['list', '--phase', 'Done'])).toBe(
      '--phase Done: expected one of Pending, Approved, Denied, Expired, Executed, Cancelled',
    );
    expect(error(['list', '-o', 'yaml'])).toBe('-o yaml: expected table or wide or json');
    expect(error(['show', 'x', '-o', 'wide'])).toBe('-o wide: expected table or json');
    expect(error(['list', '-A', '-n', 'agents'])).toBe(
      'give either --namespace or --all-namespaces, not both',
    );
    expect(error(['list', '--context', 'x'])).toMatch(/Unknown option '--context'/);
  });

  test('--help shows the usage of the subcommand', () => {
    const r = parseApprovalsArgs(['deny', '--help']);
    expect(r).toMatchObject({ ok: false, help: true });
    expect(!r.ok && r.text).toMatch(/^Usage:\n {2}mcp-warden approvals deny NAME/);
    expect(!r.ok && r.text).not.toContain('approvals list');
  });
});

describe('approvals list', () => {
  test('a table of the namespace, oldest first; the default namespace comes from the connection', async () => {
    const newer = approval('newer', 'agents');
    newer.metadata.creationTimestamp = at(-10);
    const api = fakeApi([newer, approval('older'), approval('elsewhere', 'tools')]);
    const r = await cli(['list'], api.client);
    expect(r.code).toBe(0);
    expect(api.calls.map((c) => `${c.method} ${c.path}`)).toEqual([
      `GET ${BASE}/namespaces/agents/mcpapprovals`,
    ]);
    const lines = r.out.trimEnd().split('\n');
    expect(lines.map((l) => l.split(/ {3,}/)[0])).toEqual(['NAME', 'older', 'newer']);
    expect(lines[1]).toMatch(/ {3}60s {3}in 5m$/);
  });

  test('-A lists every namespace with a NAMESPACE column; --phase filters on status.phase', async () => {
    const done = approval('done', 'tools');
    done.status = { phase: 'Executed' };
    const api = fakeApi([approval('a'), done]);
    const all = await cli(['list', '-A'], api.client);
    expect(api.calls[0]?.path).toBe(`${BASE}/mcpapprovals`);
    expect(all.out.split('\n')[0]).toMatch(/^NAMESPACE {3}NAME {3}/);
    const executed = await cli(['list', '-A', '--phase', 'Executed'], api.client);
    expect(executed.out.trimEnd().split('\n').slice(1)).toHaveLength(1);
    expect(executed.out.split('\n')[1]?.split(/ {3,}/).slice(0, 3)).toEqual(['tools', 'done', 'Executed']);
  });

  test('-o json is a kubectl-style List of the objects; nothing found is said on stderr', async () => {
    const api = fakeApi([approval('a')]);
    const r = await cli(['list', '-o', 'json'], api.client);
    expect(JSON.parse(r.out)).toMatchObject({
      apiVersion: 'v1',
      kind: 'List',
      items: [{ metadata: { name: 'a' } }],
    });
    const none = await cli(['list', '-n', 'empty', '--phase', 'Denied'], api.client);
    expect(none).toEqual({ code: 0, out: '', err: 'No Denied approvals found in namespace empty.\n' });
  });
});

describe('approvals approve / deny', () => {
  test('approve: GET, then a conditional merge patch of spec.decision; prints the decision with decidedBy', async () => {
    const api = fakeApi([approval('hold-1')]);
    const r = await cli(['approve', 'hold-1', '--reason', 'looks fine'], api.client);
    expect(r).toEqual({ code: 0, out: 'mcpapproval/hold-1 Approved by rita ("looks fine")\n', err: '' });
    expect(api.patches()).toEqual([
      {
        method: 'PATCH',
        path: `${BASE}/namespaces/agents/mcpapprovals/hold-1`,
        options: {
          contentType: 'application/merge-patch+json',
          body: {
            metadata: { resourceVersion: '1' },
            spec: { decision: { verdict: 'Approved', reason: 'looks fine' } },
          },
        },
      },
    ]);
  });

  test('approving what masking hid: refused without --acknowledge-masked, nothing written; with it the patch says so', async () => {
    const maskedArguments = {
      count: 1,
      length: 1766,
      entries: [{ path: '$.note', detector: 'private-key', length: 1766 }],
    };
    const api = fakeApi([approval('hold-m', 'agents', { maskedArguments })]);
    const refused = await cli(['approve', 'hold-m'], api.client);
    expect(refused.code).toBe(1);
    expect(refused.err).toBe(
      `mcpapproval "hold-m": masking hid part of the held call's arguments from you: private-key at $.note (1766 characters); approve it knowing you have not seen that text with --acknowledge-masked, or deny it\n`,
    );
    expect(api.patches()).toEqual([]);
    const ok = await cli(['approve', 'hold-m', '--acknowledge-masked'], api.client);
    expect(ok).toEqual({
      code: 0,
      out: 'mcpapproval/hold-m Approved by rita, masked arguments acknowledged\n',
      err: '',
    });
    expect(api.patches()[0]?.options?.body).toEqual({
      metadata: { resourceVersion: '1' },
      spec: { decision: { verdict: 'Approved', acknowledgeMaskedArguments: true } },
    });
  });

  test('denying what masking hid needs no acknowledgement', async () => {
    const maskedArguments = { count: 1, length: 8, entries: [{ path: '$.p', detector: 'email', length: 8 }] };
    const api = fakeApi([approval('hold-d', 'agents', { maskedArguments })]);
    expect((await cli(['deny', 'hold-d'], api.client)).code).toBe(0);
    expect(api.patches()[0]?.options?.body).toEqual({
      metadata: { resourceVersion: '1' },
      spec: { decision: { verdict: 'Denied' } },
    });
  });

  test('deny without a reason sends no reason', async () => {
    const api = fakeApi([approval('hold-2')]);
    const r = await cli(['deny', 'hold-2', '-n', 'agents'], api.client);
    expect(r.out).toBe('mcpapproval/hold-2 Denied by rita\n');
    expect(api.patches()[0]?.options?.body).toEqual({
      metadata: { resourceVersion: '1' },
      spec: { decision: { verdict: 'Denied' } },
    });
  });

  test('an already decided approval is refused before any patch', async () => {
    const api = fakeApi([approval('d', 'agents', { decision: { verdict: 'Denied', decidedBy: 'rex' } })]);
    const r = await cli(['approve', 'd'], api.client);
    expect(r).toEqual({
      code: 1,
      out: '',
      err: 'mcpapproval "d" is already decided: Denied by rex; a decision cannot be changed\n',
    });
    expect(api.patches()).toHaveLength(0);
  });

  test('an expired approval (by the clock, status not yet updated) and a non-Pending one are refused', async () => {
    const cancelled = approval('c');
    cancelled.status = { phase: 'Cancelled' };
    const api = fakeApi([approval('e', 'agents', { expiresAt: at(-1) }), cancelled]);
    const expired = await cli(['approve', 'e'], api.client);
    expect(expired.code).toBe(1);
    expect(expired.err).toBe(
      `mcpapproval "e" expired at ${at(-1)} (1s ago): the held call no longer waits for a decision\n`,
    );
    const notPending = await cli(['deny', 'c'], api.client);
    expect(notPending.err).toBe('mcpapproval "c" is Cancelled: only a Pending approval can be decided\n');
    expect(api.patches()).toHaveLength(0);
  });

  test('a change between the check and the patch (409) is re-checked on the new state', async () => {
    const api = fakeApi([approval('race')], (obj, n) => {
      if (n === 1) {
        obj.status = { phase: 'Expired' };
        obj.metadata.resourceVersion = '2';
      }
    });
    const r = await cli(['approve', 'race'], api.client);
    expect(r.err).toBe('mcpapproval "race" is Expired: only a Pending approval can be decided\n');
    expect(r.code).toBe(1);
    expect(api.patches()).toHaveLength(1);

    const benign = fakeApi([approval('b')], (obj, n) => {
      if (n === 1) obj.metadata.resourceVersion = '5'; // e.g. a label added meanwhile
    });
    const ok = await cli(['approve', 'b'], benign.client);
    expect(ok.code).toBe(0);
    expect(
      benign.patches().map((c) => (c.options?.body as { metadata?: unknown } | undefined)?.metadata),
    ).toEqual([{ resourceVersion: '1' }, { resourceVersion: '5' }]);
  });

  test("the webhook's refusal is printed as the API server gave it, on one line, exit 1", async () => {
    const message =
      'admission webhook "validate-approval.mcpwarden.io" denied the request: spec.decision refused: oid-1 is the requester of the held call: a requester cannot approve their own call';
    const api = fakeApi([approval('self')], (_obj, _n) => {
      throw new KubeApiError(403, `PATCH ${BASE}/namespaces/agents/mcpapprovals/self: 403 ${message}`, {
        reason: 'Forbidden',
      });
    });
    const r = await cli(['approve', 'self'], api.client);
    expect(r).toEqual({ code: 1, out: '', err: `Error from server (Forbidden): ${message}\n` });
  });

  test('missing RBAC gets a hint naming the ClusterRole; not found and unreachable are one clear line', async () => {
    const rbac =
      'mcpapprovals.mcpwarden.io "x" is forbidden: User "bob" cannot patch resource "mcpapprovals" in API group "mcpwarden.io" in the namespace "agents"';
    const api = fakeApi([approval('x')], () => {
      throw new KubeApiError(403, `PATCH /p: 403 ${rbac}`, { reason: 'Forbidden' });
    });
    const forbidden = await cli(['deny', 'x'], api.client);
    expect(forbidden.err.split('\n')).toEqual([
      `Error from server (Forbidden): ${rbac}`,
      'A reviewer needs get, list and patch on mcpapprovals.mcpwarden.io (ClusterRole mcp-warden-approver): see docs/approvals-cli.md',
      '',
    ]);
    const missing = await cli(['show', 'nope', '-n', 'tools'], api.client);
    expect(missing).toEqual({ code: 1, out: '', err: 'mcpapproval "nope" not found in namespace "tools"\n' });

    const down: KubeClient = {
      server: 'https://127.0.0.1:1',
      request: () => Promise.reject(new KubeApiError(0, 'GET /apis/x: connect ECONNREFUSED 127.0.0.1:1')),
      watch: async () => undefined,
    };
    const unreachable = await cli(['list'], down);
    expect(unreachable.err).toBe(
      'cannot reach the Kubernetes API server at https://127.0.0.1:1: connect ECONNREFUSED 127.0.0.1:1\n',
    );
    expect(unreachable.err).not.toMatch(/\n\s+at /);
  });
});

describe('approvals show', () => {
  test('prints the held call readably, or the object with -o json', async () => {
    const api = fakeApi([approval('hold-1', 'agents', { arguments: { repo: 'acme/site' } })]);
    const r = await cli(['show', 'hold-1'], api.client);
    expect(r.code).toBe(0);
    expect(r.out).toContain(`Digest:     sha256:${'ab'.repeat(32)}\n`);
    expect(r.out).toContain('Arguments:  (as masked by the policy)\n  {\n    "repo": "acme/site"\n  }\n');
    const json = await cli(['show', 'hold-1', '-o', 'json'], api.client);
    expect(JSON.parse(json.out).spec.arguments).toEqual({ repo: 'acme/site' });
  });
});

describe('credentials', () => {
  test('an unreadable kubeconfig is one clear line, exit 1', async () => {
    const stderr = new PassThrough();
    let err = '';
    stderr.on('data', (c: Buffer) => {
      err += c.toString();
    });
    const code = await run(['list', '--kubeconfig', '/nonexistent/kubeconfig'], {
      stdout: new PassThrough(),
      stderr,
    });
    expect(code).toBe(1);
    expect(err).toMatch(
      // (jest's module realm: errors of node:fs are not `instanceof Error` there, hence "Error: ")
      /^cannot load Kubernetes credentials: (Error: )?ENOENT.*\/nonexistent\/kubeconfig.* \(give --kubeconfig PATH, set KUBECONFIG, or create ~\/\.kube\/config\)\n$/,
    );
  });
});
