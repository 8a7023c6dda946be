import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { Writable } from 'node:stream';
import { ApprovalBroker } from '../approval/broker.js';
import type { HeldCallInput } from '../approval/types.js';
import { ErrorCodes, isWardenError } from '../errors.js';
import { createLogger } from '../log.js';
import { createMetrics } from '../metrics/catalogue.js';
import type { MCPApprovalSpec } from '../policy/schema.js';
import { createKubeApprovalStore } from './approval-store.js';
import { listenLoopback, loopbackClient, stopLoopback } from './testing/loopback.js';

/**
 * The approval store against a scripted API server on a real loopback socket, serving the
 * MCPApproval CRD of an older release: its structural schema has no `spec.maskedArguments` (nor
 * `spec.decision.acknowledgeMaskedArguments`), and the API server prunes unknown fields silently.
 */
const APPROVALS = '/apis/mcpwarden.io/v1alpha1/namespaces/agents/mcpapprovals';

let server: Server;
let base: string;
/** The API server prunes spec.maskedArguments (an older CRD). */
let prunes: boolean;
let created: number;
const patches: Array<{ path: string; body: { status?: Record<string, unknown> } }> = [];
const watches: ServerResponse[] = [];

function read(req: IncomingMessage): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}')));
    req.on('error', reject);
  });
}

beforeEach(async () => {
  prunes = true;
  created = 0;
  patches.length = 0;
  server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    const json = (status: number, body: unknown): void => {
      res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
    };
    if (req.method === 'GET' && url.pathname === APPROVALS && url.searchParams.get('watch') === '1') {
      // No approvals yet: the end of the initial events, then an open watch.
      res.writeHead(200, { 'content-type': 'application/json' });
      res.write(
        `${JSON.stringify({
          type: 'BOOKMARK',
          object: {
            kind: 'MCPApproval',
            metadata: { resourceVersion: '1', annotations: { 'k8s.io/initial-events-end': 'true' } },
          },
        })}\n`,
      );
      watches.push(res);
      return;
    }
    void read(req).then((body) => {
      if (req.method === 'POST' && url.pathname === APPROVALS) {
        const spec = { ...(body['spec'] as Record<string, unknown>) };
        if (prunes) delete spec['maskedArguments'];
        const meta = body['metadata'] as { generateName: string; labels: Record<string, string> };
        json(201, {
          ...body,
          metadata: {
            ...meta,
            name: `${meta.generateName}${++created}`,
            resourceVersion: String(10 + created),
          },
          spec,
        });
        return;
      }
      if (req.method === 'PATCH' && url.pathname.startsWith(`${APPROVALS}/`)) {
        patches.push({ path: url.pathname, body: body as { status?: Record<string, unknown> } });
        const name = url.pathname.slice(APPROVALS.length + 1).replace(/\/status$/, '');
        json(200, {
          apiVersion: 'mcpwarden.io/v1alpha1',
          kind: 'MCPApproval',
          metadata: { name, namespace: 'agents', resourceVersion: String(100 + patches.length) },
          spec: { policy: 'agents/repo-tools', rule: 'needs-approval', pod: 'github-mcp-0' },
          status: body['status'],
        });
        return;
      }
      json(404, { kind: 'Status', code: 404, message: 'unscripted' });
    });
  });
  base = await listenLoopback(server);
});

afterEach(async () => {
  for (const r of watches.splice(0)) r.destroy();
  stopLoopback(server);
});

function client() {
  return loopbackClient(base);
}

/** A logger whose lines the test reads. */
function capture() {
  const lines: Array<Record<string, unknown>> = [];
  const logger = createLogger(
    'test',
    new Writable({
      write(chunk: Buffer, _enc, done) {
        for (const line of chunk.toString('utf8').split('\n'))
          if (line !== '') lines.push(JSON.parse(line) as Record<string, unknown>);
        done();
      },
    }),
  );
  logger.level = 'info';
  return { logger, lines };
}

const hidden = {
  count: 1,
  length: 1766,
  entries: [{ path: '$.note', detector: 'private-key', length: 1766 }],
};

function spec(over: Partial<MCPApprovalSpec> = {}): MCPApprovalSpec {
  return {
    policy: 'agents/repo-tools',
    rule: 'needs-approval',
    pod: 'github-mcp-0',
    requester: { principal: 'tenant/user-1' },
    method: 'tools/call',
    tool: 'delete_repo',
    arguments: { note: '[masked:private-key]' },
    argumentsDigest: `sha256:${'0'.repeat(64)}`,
    expiresAt: new Date(Date.now() + 60_000).toISOString(),
    mode: 'ticket',
    approvers: [{ group: 'reviewers' }],
    ...over,
  };
}

describe('an API server serving an outdated MCPApproval CRD', () => {
  test('create: a dropped spec.maskedArguments ends the approval and fails, saying to apply the CRDs', async () => {
    const { logger, lines } = capture();
    const store = createKubeApprovalStore({ client: client(), namespace: 'agents', logger });
    try {
      const err = await store.create(spec({ maskedArguments: hidden }), {}).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(isWardenError(err, ErrorCodes.crdOutdated)).toBe(true);
      expect((err as Error).message).toMatch(
        /^approval github-mcp-0-1: the MCPApproval CRD is outdated: the API server dropped spec\.maskedArguments.*apply the current CRDs/,
      );
      // Ended for good (the sidecar may write phases, not delete): no verdict can run it.
      expect(patches).toEqual([
        {
          path: `${APPROVALS}/github-mcp-0-1/status`,
          body: {
            status: expect.objectContaining({
              phase: 'Cancelled',
              message: expect.stringMatching(/apply the current CRDs/),
            }),
          },
        },
      ]);
      expect(store.get('github-mcp-0-1')?.phase).toBe('Cancelled');
      expect(lines).toContainEqual(
        expect.objectContaining({
          level: 'error',
          event: 'approval-crd-outdated',
          approval: 'github-mcp-0-1',
          msg: expect.stringMatching(/apply the current CRDs: helm upgrade .* or kubectl apply -f crds\//),
        }),
      );
    } finally {
      await store.close();
    }
  });

  test('create: nothing masked, or the field kept (the current CRD), creates as usual', async () => {
    const store = createKubeApprovalStore({ client: client(), namespace: 'agents' });
    try {
      await expect(store.create(spec(), {})).resolves.toMatchObject({ name: 'github-mcp-0-1' });
      prunes = false;
      await expect(store.create(spec({ maskedArguments: hidden }), {})).resolves.toMatchObject({
        name: 'github-mcp-0-2',
        spec: { maskedArguments: hidden },
      });
      expect(patches).toEqual([]);
    } finally {
      await store.close();
    }
  });

  test('through the broker: the call is refused as unavailable and the log says to apply the CRDs', async () => {
    const { logger, lines } = capture();
    const store = createKubeApprovalStore({ client: client(), namespace: 'agents', logger });
    await store.synced();
    const broker = new ApprovalBroker({
      store,
      pod: 'github-mcp-0',
      metrics: createMetrics({ defaultMetrics: false }),
      logger,
      trustedCreator: 'system:serviceaccount:agents:github-mcp',
    });
    const call: HeldCallInput = {
      policy: 'agents/repo-tools',
      rule: 'needs-approval',
      settings: { approvers: [{ group: 'reviewers' }], timeout: '1m', mode: 'ticket' },
      principal: 'tenant/user-1',
      user: undefined,
      appId: undefined,
      session: undefined,
      method: 'tools/call',
      tool: 'delete_repo',
      arguments: { note: 'pre -----BEGIN PRIVATE KEY-----…' },
      maskedArguments: { note: 'pre [masked:private-key]' },
      hidden,
    };
    try {
      expect(await broker.ticket(call)).toMatchObject({ kind: 'unavailable' });
      expect(lines).toContainEqual(expect.objectContaining({ event: 'approval-crd-outdated' }));
      expect(lines).toContainEqual(
        expect.objectContaining({
          event: 'approval-create-failed',
          err: expect.stringMatching(/MCPApproval CRD is outdated.*apply the current CRDs/),
        }),
      );
      expect(lines.some((l) => l['event'] === 'approval-requested')).toBe(false);
    } finally {
      await broker.close();
      await store.close();
    }
  });
});
