import { EventEmitter } from 'node:events';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { PolicyObject } from './policy-source.js';
import { createStatusReporter, podFieldManager } from './status-reporter.js';
import { listenLoopback, loopbackClient, stopLoopback } from './testing/loopback.js';

/**
 * What the reporter sends, checked on the wire (a recording API server on loopback): server-side
 * apply with the per-pod manager, the shared manager only when conditions change, throttling,
 * 404 and 422 handling. The e2e suite proves the same writes on a real API server.
 */
interface Patch {
  path: string;
  fieldManager: string | null;
  force: string | null;
  contentType: string | undefined;
  body: { status: Record<string, unknown> };
  at: number;
}

let server: Server;
let base: string;
const patches: Patch[] = [];
let respond: (p: Patch) => number = () => 200;
let onPatch: () => void = () => undefined;

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

beforeEach(async () => {
  patches.length = 0;
  respond = () => 200;
  server = createServer((req, res) => {
    void readBody(req).then((text) => {
      const url = new URL(req.url ?? '/', 'http://x');
      const p: Patch = {
        path: url.pathname,
        fieldManager: url.searchParams.get('fieldManager'),
        force: url.searchParams.get('force'),
        contentType: req.headers['content-type'],
        body: JSON.parse(text) as Patch['body'],
        at: Date.now(),
      };
      patches.push(p);
      const status = respond(p);
      res
        .writeHead(status, { 'content-type': 'application/json' })
        .end(status === 200 ? text : `{"code":${status},"message":"refused"}`);
      onPatch();
    });
  });
  base = await listenLoopback(server);
});

afterEach(async () => {
  stopLoopback(server);
});

function client() {
  return loopbackClient(base);
}

function waitPatches(n: number): Promise<void> {
  return new Promise((resolve) => {
    const check = (): void => {
      if (patches.length >= n) resolve();
    };
    onPatch = check;
    check();
  });
}

const policy = (name: string, generation: number, status?: Record<string, unknown>): PolicyObject => ({
  metadata: { name, namespace: 'agents', generation },
  spec: { podSelector: {}, mode: 'enforce' },
  ...(status ? { status } : {}),
});

describe('createStatusReporter', () => {
  test('writes the pod entry by server-side apply under the per-pod manager, conditions under the shared one', async () => {
    const objects = [policy('github-tools', 3)];
    const reporter = createStatusReporter({
      client: client(),
      namespace: 'agents',
      podName: 'mcp-0',
      policies: () => objects,
      intervalMs: 50,
    });
    const events = new EventEmitter();
    reporter.attach(events);
    events.emit('decision', {
      decision: {
        action: 'allow',
        enforced: 'allow',
        policy: 'agents/github-tools',
        rule: 'r',
        reason: '',
        mode: 'enforce',
      },
    });
    events.emit('decision', {
      decision: {
        action: 'deny',
        enforced: 'allow',
        policy: 'agents/github-tools',
        rule: 'd',
        reason: '',
        mode: 'audit',
      },
    });
    events.emit('decision', {
      decision: {
        action: 'approve',
        enforced: 'approve',
        policy: 'agents/github-tools',
        rule: 'a',
        reason: '',
        mode: 'enforce',
      },
    });
    events.emit('mask', {
      hits: [
        { policy: 'agents/github-tools', detector: 'email' },
        { policy: 'agents/github-tools', detector: 'jwt' },
      ],
    });
    events.emit('session-open', { session: 's1', principal: 'p' });
    events.emit('session-open', { session: 's2', principal: 'p' });
    events.emit('session-close', { session: 's1', principal: 'p' });
    await waitPatches(2);
    const [own, shared] = patches;
    expect(own?.path).toBe('/apis/mcpwarden.io/v1alpha1/namespaces/agents/mcppolicies/github-tools/status');
    expect(own?.contentType).toBe('application/apply-patch+yaml');
    expect(own?.fieldManager).toBe('mcp-warden-sidecar.mcp-0');
    expect(own?.force).toBeNull();
    expect(own?.body).toMatchObject({
      apiVersion: 'mcpwarden.io/v1alpha1',
      kind: 'MCPPolicy',
      metadata: { name: 'github-tools', namespace: 'agents' },
    });
    expect(own?.body.status).toEqual({
      pods: [
        {
          name: 'mcp-0',
          generation: 3,
          lastReportTime: expect.any(String),
          allowed: 1,
          denied: 1, // audit mode: counted as decided, not as enforced
          approvalsRequested: 1,
          masked: 2,
          sessions: 1,
        },
      ],
    });
    expect(shared?.fieldManager).toBe('mcp-warden-sidecar');
    expect(shared?.force).toBe('true');
    expect(shared?.body.status).toEqual({
      observedGeneration: 3,
      conditions: [
        expect.objectContaining({ type: 'Accepted', status: 'True', observedGeneration: 3 }),
        expect.objectContaining({ type: 'Enforced', status: 'True', observedGeneration: 3 }),
      ],
    });
    await reporter.close();
  });

  test('throttles: a burst of events becomes one write per interval; identical conditions are not rewritten', async () => {
    const objects = [policy('p', 1)];
    const reporter = createStatusReporter({
      client: client(),
      namespace: 'agents',
      podName: 'mcp-0',
      policies: () => objects,
      intervalMs: 300,
    });
    const started = Date.now();
    for (let i = 0; i < 50; i++)
      reporter.recordDecision({
        action: 'allow',
        enforced: 'allow',
        policy: 'agents/p',
        reason: '',
        mode: 'enforce',
      });
    await waitPatches(2); // the first write: own + shared
    for (let i = 0; i < 50; i++)
      reporter.recordDecision({
        action: 'allow',
        enforced: 'allow',
        policy: 'agents/p',
        reason: '',
        mode: 'enforce',
      });
    await waitPatches(3);
    const own = patches.filter((p) => p.fieldManager === 'mcp-warden-sidecar.mcp-0');
    expect(own).toHaveLength(2);
    expect((own[1] as Patch).at - (own[0] as Patch).at).toBeGreaterThanOrEqual(280);
    expect(((own[1] as Patch).body.status['pods'] as Array<{ allowed: number }>)[0]?.allowed).toBe(100);
    // Conditions already written with the same values: not written again.
    expect(patches.filter((p) => p.fieldManager === 'mcp-warden-sidecar')).toHaveLength(1);
    expect(Date.now() - started).toBeLessThan(5000);
    await reporter.close();
  });

  test('big fleets stretch the throttle: pods × perPodIntervalMs between two writes of one pod', async () => {
    const pods = Array.from({ length: 8 }, (_, i) => ({ name: `other-${i}` }));
    const objects = [policy('p', 1, { pods })];
    const reporter = createStatusReporter({
      client: client(),
      namespace: 'agents',
      podName: 'mcp-0',
      policies: () => objects,
      intervalMs: 10,
      perPodIntervalMs: 50,
    });
    reporter.recordDecision({
      action: 'allow',
      enforced: 'allow',
      policy: 'agents/p',
      reason: '',
      mode: 'enforce',
    });
    await waitPatches(2);
    reporter.recordDecision({
      action: 'allow',
      enforced: 'allow',
      policy: 'agents/p',
      reason: '',
      mode: 'enforce',
    });
    await waitPatches(3);
    const own = patches.filter((p) => p.fieldManager === 'mcp-warden-sidecar.mcp-0');
    // 8 pods × 50 ms = 400 ms, not the 10 ms base interval.
    expect((own[1] as Patch).at - (own[0] as Patch).at).toBeGreaterThanOrEqual(380);
    await reporter.close();
  });

  test('the default deny counts for every selected policy; recordings go to the pod share of recent', async () => {
    const others = Array.from({ length: 3 }, (_, i) => ({ name: `other-${i}` }));
    const objects = [policy('a', 1, { pods: others }), policy('b', 1)];
    const reporter = createStatusReporter({
      client: client(),
      namespace: 'agents',
      podName: 'mcp-0',
      policies: () => objects,
      intervalMs: 10,
    });
    reporter.recordDecision({
      action: 'deny',
      enforced: 'deny',
      policy: '',
      reason: 'no rule applies',
      mode: 'enforce',
    });
    for (let i = 0; i < 8; i++) {
      reporter.recordRecording({
        session: `s${i}`,
        principal: 'p',
        pod: 'mcp-0',
        startTime: 't',
        endTime: 't',
        messages: 1,
        denied: 0,
        location: 'l',
        sha256: 'h',
      });
    }
    await reporter.flush();
    const own = (name: string): Record<string, unknown> => {
      const found = patches
        .filter((p) => p.fieldManager === 'mcp-warden-sidecar.mcp-0' && p.path.endsWith(`/${name}/status`))
        .at(-1);
      if (found === undefined) throw new Error(`no write for ${name}`);
      return found.body.status;
    };
    expect((own('a')['pods'] as Array<{ denied: number }>)[0]?.denied).toBe(1);
    expect((own('b')['pods'] as Array<{ denied: number }>)[0]?.denied).toBe(1);
    // 4 pods on policy a → 5 recordings each; alone on policy b → its 8.
    const recentOf = (name: string) =>
      (own(name)['recordings'] as { recent: Array<{ session: string }> }).recent;
    expect(recentOf('a').map((r) => r.session)).toEqual(['s3', 's4', 's5', 's6', 's7']);
    expect(recentOf('b')).toHaveLength(8);
    await reporter.close();
  });

  test('a refused recordings list (422) still lands the counts; a deleted policy (404) is not retried', async () => {
    const objects = [policy('p', 1), policy('gone', 1)];
    respond = (p) =>
      p.path.includes('/gone/') ? 404 : p.body.status['recordings'] !== undefined ? 422 : 200;
    const errors: Error[] = [];
    const reporter = createStatusReporter({
      client: client(),
      namespace: 'agents',
      podName: 'mcp-0',
      policies: () => objects,
      intervalMs: 10,
      onError: (e) => errors.push(e),
    });
    reporter.recordRecording({
      session: 's',
      principal: 'p',
      pod: 'mcp-0',
      startTime: 't',
      endTime: 't',
      messages: 1,
      denied: 0,
      location: 'l',
      sha256: 'h',
    });
    await reporter.flush();
    const p = patches.filter((x) => x.path.includes('/p/') && x.fieldManager === 'mcp-warden-sidecar.mcp-0');
    expect(p.map((x) => x.body.status['recordings'] !== undefined)).toEqual([true, false]);
    expect(patches.filter((x) => x.path.includes('/gone/'))).toHaveLength(1);
    expect(errors).toEqual([]);
    await reporter.close();
  });

  test('field managers stay within 128 characters for long pod names', () => {
    expect(podFieldManager('short')).toBe('mcp-warden-sidecar.short');
    const long = podFieldManager('x'.repeat(253));
    expect(long.length).toBeLessThanOrEqual(128);
    expect(podFieldManager('x'.repeat(252) + 'y')).not.toBe(long);
  });
});
