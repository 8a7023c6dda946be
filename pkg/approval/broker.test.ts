import { createLogger } from '../log.js';
import { createMetrics } from '../metrics/catalogue.js';
import type { ApprovalPhase } from '../policy/schema.js';
import { ApprovalBroker } from './broker.js';
import { argumentsDigest, canonicalJson } from './digest.js';
import { MemoryApprovalStore } from './memory-store.js';
import type {
  ApprovalChange,
  ApprovalOutcome,
  ApprovalStore,
  HeldCallInput,
  StoredApproval,
} from './types.js';

const CREATOR = 'system:serviceaccount:agents:github-mcp';

function call(over: Partial<HeldCallInput> = {}): HeldCallInput {
  return {
    policy: 'agents/repo-tools',
    rule: 'needs-approval',
    settings: { approvers: [{ group: 'reviewers' }], timeout: '1m', mode: 'ticket' },
    principal: 'tenant/user-1',
    user: 'user1@example.com',
    appId: undefined,
    session: undefined,
    method: 'tools/call',
    tool: 'delete_repo',
    arguments: { name: 'widgets' },
    maskedArguments: { name: 'widgets' },
    ...over,
  };
}

function broker(
  store: MemoryApprovalStore,
  over: { pod?: string; server?: string; now?: () => number } = {},
): ApprovalBroker {
  return new ApprovalBroker({
    store,
    pod: over.pod ?? 'pod-a',
    ...(over.server !== undefined ? { server: over.server } : {}),
    metrics: createMetrics({ defaultMetrics: false }),
    logger: createLogger('broker-test'),
    trustedCreator: CREATOR,
    ...(over.now ? { now: over.now } : {}),
  });
}

const nameOf = (o: ApprovalOutcome): string => (o as { name: string }).name;

/**
 * One replica's view of a shared store, whose watch can fall behind: while paused, changes queue
 * up instead of reaching the view and its subscribers (what a slow watch of the API server does).
 * Writes go straight to the shared store, as API requests do.
 */
class LaggingView implements ApprovalStore {
  readonly #items = new Map<string, StoredApproval>();
  readonly #listeners = new Set<(change: ApprovalChange) => void>();
  #queue: ApprovalChange[] | undefined;
  constructor(readonly shared: MemoryApprovalStore) {
    for (const a of shared.list()) this.#items.set(a.name, a);
    shared.subscribe((c) => (this.#queue !== undefined ? this.#queue.push(c) : this.#apply(c)));
  }
  pause(): void {
    this.#queue ??= [];
  }
  resume(): void {
    const queued = this.#queue ?? [];
    this.#queue = undefined;
    for (const c of queued) this.#apply(c);
  }
  #apply(c: ApprovalChange): void {
    if (c.deleted) this.#items.delete(c.approval.name);
    else this.#items.set(c.approval.name, c.approval);
    for (const l of this.#listeners) l(c);
  }
  async create(spec: StoredApproval['spec'], labels: Record<string, string>): Promise<StoredApproval> {
    const a = await this.shared.create(spec, labels);
    this.#items.set(a.name, a);
    return a;
  }
  setPhase(name: string, phase: ApprovalPhase, message: string, ifVersion?: string): Promise<boolean> {
    return this.shared.setPhase(name, phase, message, ifVersion);
  }
  get = (name: string): StoredApproval | undefined => this.#items.get(name);
  list = (): Iterable<StoredApproval> => this.#items.values();
  subscribe(listener: (change: ApprovalChange) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }
  ready = (): boolean => true;
  synced = (): Promise<void> => Promise.resolve();
  close = (): Promise<void> => Promise.resolve();
}

describe('argumentsDigest', () => {
  it('does not depend on key order, and tells different values apart', () => {
    expect(argumentsDigest({ b: 1, a: { d: [1, 2], c: 'x' } })).toBe(
      argumentsDigest({ a: { c: 'x', d: [1, 2] }, b: 1 }),
    );
    expect(argumentsDigest({ a: 1 })).not.toBe(argumentsDigest({ a: '1' }));
    expect(argumentsDigest({ a: [1, 2] })).not.toBe(argumentsDigest({ a: [2, 1] }));
    expect(argumentsDigest(undefined)).toBe(argumentsDigest(null));
    expect(argumentsDigest({})).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(canonicalJson({ z: 'é', a: null, m: 1.5e300 })).toBe('{"a":null,"m":1.5e+300,"z":"é"}');
  });
});

describe('ticket mode', () => {
  it('two replicas repeating an approved call: exactly one runs it', async () => {
    const store = new MemoryApprovalStore({ creator: CREATOR });
    const a = broker(store, { pod: 'pod-a' });
    const b = broker(store, { pod: 'pod-b' });
    const first = await a.ticket(call());
    expect(first.kind).toBe('pending');
    store.decide(nameOf(first), 'Approved', 'rita');
    const results = await Promise.all([a.ticket(call()), b.ticket(call())]);
    const kinds = results.map((r) => r.kind).sort();
    expect(kinds).toEqual(['approved', 'pending']);
    expect(store.get(nameOf(first))?.phase).toBe('Executed');
    await a.close();
    await b.close();
  });

  it('an approval asked on one MCP server never runs the call on another under the same service account', async () => {
    const store = new MemoryApprovalStore({ creator: CREATOR });
    const staging = broker(store, { pod: 'staging-0', server: 'Deployment/staging-mcp' });
    const prod = broker(store, { pod: 'prod-0', server: 'Deployment/prod-mcp' });
    const replica = broker(store, { pod: 'staging-1', server: 'Deployment/staging-mcp' });
    const first = await staging.ticket(call());
    expect(store.get(nameOf(first))?.spec.server).toBe('Deployment/staging-mcp');
    store.decide(nameOf(first), 'Approved', 'rita');
    const onProd = await prod.ticket(call());
    expect(onProd.kind).toBe('pending');
    expect(nameOf(onProd)).not.toBe(nameOf(first));
    expect(await replica.ticket(call())).toMatchObject({ kind: 'approved', name: nameOf(first) });
    await staging.close();
    await prod.close();
    await replica.close();
  });

  it('ignores an approved ticket that the data path did not create (created-by is not trusted)', async () => {
    const forged = new MemoryApprovalStore({ creator: 'mallory' });
    const a = broker(forged);
    const first = await a.ticket(call());
    forged.decide(nameOf(first), 'Approved', 'rita');
    const next = await a.ticket(call());
    expect(next.kind).toBe('pending');
    expect(nameOf(next)).not.toBe(nameOf(first));
    await a.close();
  });

  it('a new approval shows phase Pending at once', async () => {
    const store = new MemoryApprovalStore({ creator: CREATOR });
    const a = broker(store);
    const first = await a.ticket(call());
    await new Promise((r) => setTimeout(r, 0));
    expect(store.get(nameOf(first))?.phase).toBe('Pending');
    await a.close();
  });

  it('ignores a decision that did not pass the webhook (no decidedBy)', async () => {
    const store = new MemoryApprovalStore({ creator: CREATOR });
    const a = broker(store);
    const first = await a.ticket(call());
    store.decide(nameOf(first), 'Approved', '');
    const again = await a.ticket(call());
    expect(again.kind).toBe('pending');
    expect(nameOf(again)).toBe(nameOf(first));
    await a.close();
  });

  it('an approval can be used until one timeout past its expiry, not after', async () => {
    let now = Date.parse('2026-01-01T00:00:00Z');
    const store = new MemoryApprovalStore({ creator: CREATOR });
    const a = broker(store, { now: () => now });
    const first = await a.ticket(call());
    store.decide(nameOf(first), 'Approved', 'rita');
    now += 60_000 + 60_000; // expiresAt (1m) + timeout (1m)
    const late = await a.ticket(call());
    expect(late.kind).toBe('pending');
    expect(nameOf(late)).not.toBe(nameOf(first));
    await a.close();
  });

  it('expires an undecided ticket at its expiresAt (phase Expired) and asks again afterwards', async () => {
    const store = new MemoryApprovalStore({ creator: CREATOR });
    const a = broker(store);
    const first = await a.ticket(
      call({ settings: { approvers: [{ user: 'r' }], timeout: '150ms', mode: 'ticket' } }),
    );
    await new Promise((r) => setTimeout(r, 300));
    expect(store.get(nameOf(first))?.phase).toBe('Expired');
    const next = await a.ticket(
      call({ settings: { approvers: [{ user: 'r' }], timeout: '150ms', mode: 'ticket' } }),
    );
    expect(nameOf(next)).not.toBe(nameOf(first));
    await a.close();
  });

  it('a replica whose watch lags never rewinds the phase another replica wrote: an executed ticket cannot run twice', async () => {
    const shared = new MemoryApprovalStore({ creator: CREATOR });
    const viewA = new LaggingView(shared);
    const a = broker(viewA as unknown as MemoryApprovalStore, { pod: 'pod-a' });
    const b = broker(shared, { pod: 'pod-b' });
    const first = await a.ticket(call());
    await new Promise((r) => setTimeout(r, 0));
    viewA.pause();
    shared.decide(nameOf(first), 'Approved', 'rita');
    expect(await b.ticket(call())).toMatchObject({ kind: 'approved', name: nameOf(first) });
    expect(shared.get(nameOf(first))?.phase).toBe('Executed');
    // pod-a now sees the verdict, long after pod-b ran the call.
    viewA.resume();
    await new Promise((r) => setTimeout(r, 20));
    expect(shared.get(nameOf(first))?.phase).toBe('Executed');
    const again = await b.ticket(call());
    expect(again.kind).toBe('pending');
    expect(nameOf(again)).not.toBe(nameOf(first));
    await a.close();
    await b.close();
  });

  it('a ticket expiring on a lagging view does not overwrite the Executed another replica wrote', async () => {
    const shared = new MemoryApprovalStore({ creator: CREATOR });
    const viewA = new LaggingView(shared);
    const a = broker(viewA as unknown as MemoryApprovalStore, { pod: 'pod-a' });
    const b = broker(shared, { pod: 'pod-b' });
    const settings = { approvers: [{ user: 'r' }], timeout: '200ms', mode: 'ticket' as const };
    const first = await a.ticket(call({ settings }));
    await new Promise((r) => setTimeout(r, 0));
    viewA.pause();
    shared.decide(nameOf(first), 'Approved', 'rita');
    expect(await b.ticket(call({ settings }))).toMatchObject({ kind: 'approved' });
    await new Promise((r) => setTimeout(r, 350)); // past expiresAt: pod-a's expiry timer fires
    expect(shared.get(nameOf(first))?.phase).toBe('Executed');
    viewA.resume();
    await a.close();
    await b.close();
  });

  it('writes Approved / Denied on its own tickets when the verdict arrives', async () => {
    const store = new MemoryApprovalStore({ creator: CREATOR });
    const a = broker(store);
    const one = await a.ticket(call({ arguments: { n: 1 } }));
    const two = await a.ticket(call({ arguments: { n: 2 } }));
    store.decide(nameOf(one), 'Approved', 'rita');
    store.decide(nameOf(two), 'Denied', 'rita', 'no');
    await new Promise((r) => setTimeout(r, 10));
    expect(store.get(nameOf(one))?.phase).toBe('Approved');
    expect(store.get(nameOf(two))?.phase).toBe('Denied');
    await a.close();
  });
});

describe('hold mode and restarts', () => {
  const hold = (store: MemoryApprovalStore, b: ApprovalBroker, args: unknown = { name: 'x' }) => {
    let created = '';
    const cancel: Array<(reason: string) => void> = [];
    const outcome = b.hold(
      call({ settings: { approvers: [{ user: 'r' }], timeout: '1m', mode: 'hold' }, arguments: args }),
      {
        onCancel: (l) => cancel.push(l),
        onCreated: (name) => {
          created = name;
        },
      },
    );
    const cancelAll = (why: string): void => {
      for (const l of cancel) l(why);
    };
    return { outcome, name: () => created, cancel: cancelAll, store };
  };

  it('a verdict that arrives while the approval is being created is not lost', async () => {
    const store = new MemoryApprovalStore({ creator: CREATOR });
    // The reviewer is faster than the data path: decide inside the store's own create event.
    const off = store.subscribe(({ approval }) => {
      if (approval.spec.decision === undefined && approval.phase === undefined) {
        off();
        store.decide(approval.name, 'Approved', 'rita');
      }
    });
    const b = broker(store);
    const h = hold(store, b);
    const o = await h.outcome;
    expect(o).toMatchObject({ kind: 'approved', decidedBy: 'rita' });
    expect(store.get(h.name())?.phase).toBe('Executed');
    await b.close();
  });

  it('the restart sweep leaves alone a hold created while the first sync was ending', async () => {
    let synced!: () => void;
    const syncedOnce = new Promise<void>((r) => {
      synced = r;
    });
    class SlowSync extends MemoryApprovalStore {
      override synced(): Promise<void> {
        return syncedOnce;
      }
    }
    const store = new SlowSync({ creator: CREATOR });
    // The first sync ends exactly when the new approval reaches the store, before the broker's
    // own code after the create has run.
    const off = store.subscribe(() => {
      off();
      synced();
    });
    const b = broker(store);
    const started = b.start();
    const h = hold(store, b);
    await started;
    await new Promise((r) => setTimeout(r, 10));
    expect(store.get(h.name())?.phase).toBe('Pending');
    store.decide(h.name(), 'Approved', 'rita');
    expect(await h.outcome).toMatchObject({ kind: 'approved' });
    await b.close();
  });

  it('a verdict on a hold the admission webhook did not stamp counts for nothing: the call waits, then expires', async () => {
    const store = new MemoryApprovalStore({ creator: undefined });
    const b = broker(store);
    let created = '';
    const outcome = b.hold(
      call({ settings: { approvers: [{ user: 'r' }], timeout: '200ms', mode: 'hold' } }),
      {
        onCancel: () => undefined,
        onCreated: (name) => {
          created = name;
        },
      },
    );
    while (created === '') await new Promise((r) => setTimeout(r, 5));
    store.decide(created, 'Approved', 'mallory');
    expect(await outcome).toMatchObject({ kind: 'expired', name: created });
    expect(store.get(created)?.phase).not.toBe('Executed');
    await b.close();
  });

  it('a deleted approval cancels the hold', async () => {
    const store = new MemoryApprovalStore({ creator: CREATOR });
    const b = broker(store);
    const h = hold(store, b);
    await new Promise((r) => setTimeout(r, 10));
    store.delete(h.name());
    expect(await h.outcome).toMatchObject({ kind: 'cancelled', reason: 'the approval was deleted' });
    await b.close();
  });

  it('refuses arguments too large to be reviewed, and fails closed when the store is down', async () => {
    const store = new MemoryApprovalStore({ creator: CREATOR });
    const b = broker(store);
    const big = { blob: 'x'.repeat(300 * 1024) };
    expect(await b.ticket(call({ arguments: big, maskedArguments: big }))).toMatchObject({
      kind: 'unavailable',
    });
    store.setReady(false);
    expect(await b.ticket(call())).toMatchObject({ kind: 'unavailable' });
    expect(await hold(store, b).outcome).toMatchObject({ kind: 'unavailable' });
    expect([...store.list()]).toHaveLength(0);
    await b.close();
  });

  /** The holder process died: its waiters are gone, nothing was written. */
  const restart = async (store: MemoryApprovalStore, before: ApprovalBroker): Promise<ApprovalBroker> => {
    await new Promise((r) => setTimeout(r, 10));
    await before.close();
    const after = broker(store, { pod: 'pod-a' });
    await after.start();
    return after;
  };
  const created = async (h: { name: () => string }): Promise<string> => {
    for (let i = 0; i < 100 && h.name() === ''; i++) await new Promise((r) => setTimeout(r, 5));
    return h.name();
  };

  it('after a restart, a pending hold stays open: the caller repeating the call waits on it, and it runs once', async () => {
    const store = new MemoryApprovalStore({ creator: CREATOR });
    const before = broker(store, { pod: 'pod-a' });
    const lost = hold(store, before);
    const other = hold(store, broker(store, { pod: 'pod-b' }), { name: 'y' });
    const ticket = await before.ticket(call({ arguments: { q: 1 } }));
    const after = await restart(store, before);
    expect(store.get(lost.name())?.phase).toBe('Pending');
    expect(store.get(other.name())?.phase).toBe('Pending');
    expect(store.get(nameOf(ticket))?.phase).toBe('Pending');
    const count = [...store.list()].length;
    // The repeat is told the same approval's name and no new one is asked for.
    const repeat = hold(store, after);
    expect(await created(repeat)).toBe(lost.name());
    expect([...store.list()]).toHaveLength(count);
    store.decide(lost.name(), 'Approved', 'rita');
    expect(await repeat.outcome).toMatchObject({ kind: 'approved', name: lost.name(), decidedBy: 'rita' });
    expect(store.get(lost.name())?.phase).toBe('Executed');
    // Used: the next repeat asks anew.
    const next = hold(store, after);
    expect(await created(next)).not.toBe(lost.name());
    next.cancel('test over');
    expect(await next.outcome).toMatchObject({ kind: 'cancelled' });
    // The restarted broker still writes the verdict of its own ticket.
    store.decide(nameOf(ticket), 'Approved', 'rita');
    await new Promise((r) => setTimeout(r, 10));
    expect(store.get(nameOf(ticket))?.phase).toBe('Approved');
    other.cancel('test over');
    await other.outcome;
    await after.close();
  });

  it('a hold whose connection closes because the process is stopping is left open for the repeat', async () => {
    const store = new MemoryApprovalStore({ creator: CREATOR });
    const before = broker(store, { pod: 'pod-a' });
    const h = hold(store, before);
    const name = await created(h);
    await before.close(); // SIGTERM: the broker stops before the data path drops its connections
    h.cancel('the client closed the request');
    expect(await h.outcome).toMatchObject({ kind: 'cancelled' });
    await new Promise((r) => setTimeout(r, 10));
    expect(store.get(name)?.phase).toBe('Pending');
    const after = broker(store, { pod: 'pod-a' });
    await after.start();
    const repeat = hold(store, after);
    expect(await created(repeat)).toBe(name);
    store.decide(name, 'Approved', 'rita');
    expect(await repeat.outcome).toMatchObject({ kind: 'approved', name });
    // A caller who leaves a running process still cancels its approval.
    const left = hold(store, after, { name: 'z' });
    const leftName = await created(left);
    left.cancel('the client closed the request');
    await left.outcome;
    expect(store.get(leftName)?.phase).toBe('Cancelled');
    await after.close();
  });

  it('a hold approved while its holder was gone runs at once when repeated; only the same principal and call reach it', async () => {
    const store = new MemoryApprovalStore({ creator: CREATOR });
    const before = broker(store, { pod: 'pod-a' });
    const lost = hold(store, before);
    const after = await restart(store, before);
    store.decide(lost.name(), 'Approved', 'rita');
    await new Promise((r) => setTimeout(r, 10));
    // Nobody waits on it: its phase says the requester may repeat the call.
    expect(store.get(lost.name())?.phase).toBe('Approved');
    const settings: HeldCallInput['settings'] = { approvers: [{ user: 'r' }], timeout: '1m', mode: 'hold' };
    for (const over of [
      { principal: 'tenant/user-2' },
      { arguments: { name: 'other' } },
      { tool: 'archive_repo' },
    ]) {
      let name = '';
      const cancel: Array<(r: string) => void> = [];
      const o = after.hold(call({ settings, arguments: { name: 'x' }, ...over }), {
        onCancel: (l) => cancel.push(l),
        onCreated: (n) => {
          name = n;
        },
      });
      for (let i = 0; i < 100 && name === ''; i++) await new Promise((r) => setTimeout(r, 5));
      expect([over, name === lost.name()]).toEqual([over, false]);
      for (const l of cancel) l('test over');
      expect(await o).toMatchObject({ kind: 'cancelled' });
    }
    // Another pod does not take it over either.
    const elsewhere = hold(store, broker(store, { pod: 'pod-b' }));
    expect(await created(elsewhere)).not.toBe(lost.name());
    elsewhere.cancel('test over');
    await elsewhere.outcome;
    const repeat = hold(store, after);
    expect(await repeat.outcome).toMatchObject({ kind: 'approved', name: lost.name() });
    expect(store.get(lost.name())?.phase).toBe('Executed');
    await after.close();
  });

  it('a hold denied while its holder was gone is not taken over (the repeat asks again); one nobody repeats expires', async () => {
    const store = new MemoryApprovalStore({ creator: CREATOR });
    const before = broker(store, { pod: 'pod-a' });
    const denied = hold(store, before);
    const settings: HeldCallInput['settings'] = {
      approvers: [{ user: 'r' }],
      timeout: '200ms',
      mode: 'hold',
    };
    let short = '';
    void before.hold(call({ settings, arguments: { name: 'short' } }), {
      onCancel: () => {},
      onCreated: (n) => {
        short = n;
      },
    });
    const after = await restart(store, before);
    store.decide(denied.name(), 'Denied', 'rita', 'not today');
    await new Promise((r) => setTimeout(r, 10));
    expect(store.get(denied.name())?.phase).toBe('Denied');
    const repeat = hold(store, after);
    expect(await created(repeat)).not.toBe(denied.name());
    repeat.cancel('test over');
    await repeat.outcome;
    await new Promise((r) => setTimeout(r, 400));
    expect(store.get(short)?.phase).toBe('Expired');
    await after.close();
  });

  it('an approved hold runs only once its approval is recorded as Executed; if that write fails it is refused and can be repeated', async () => {
    class FailingClaims extends MemoryApprovalStore {
      failing = true;
      override setPhase(
        name: string,
        phase: ApprovalPhase,
        message: string,
        ifVersion?: string,
      ): Promise<boolean> {
        if (this.failing && phase === 'Executed')
          return Promise.reject(new Error('the API server is unreachable'));
        return super.setPhase(name, phase, message, ifVersion);
      }
    }
    const store = new FailingClaims({ creator: CREATOR });
    const b = broker(store);
    const first = hold(store, b);
    const name = await created(first);
    store.decide(name, 'Approved', 'rita');
    expect(await first.outcome).toMatchObject({
      kind: 'unavailable',
      reason: expect.stringContaining('could not be recorded as used, so the call was not run'),
    });
    expect(store.get(name)?.phase).not.toBe('Executed');
    store.failing = false;
    const again = hold(store, b);
    expect(await again.outcome).toMatchObject({ kind: 'approved', name });
    expect(store.get(name)?.phase).toBe('Executed');
    await b.close();
  }, 10_000);
  it('an approved hold whose call can no longer run (canRun gives a reason) ends Cancelled, never Executed', async () => {
    const store = new MemoryApprovalStore({ creator: CREATOR });
    const b = broker(store);
    let name = '';
    const outcome = b.hold(call({ settings: { approvers: [{ user: 'r' }], timeout: '1m', mode: 'hold' } }), {
      onCancel: () => undefined,
      onCreated: (n) => {
        name = n;
      },
      canRun: () => 'no event stream of the client is open',
    });
    while (name === '') await new Promise((r) => setTimeout(r, 5));
    store.decide(name, 'Approved', 'rita');
    expect(await outcome).toEqual({
      kind: 'cancelled',
      name,
      reason: 'no event stream of the client is open',
    });
    expect(store.get(name)?.phase).toBe('Cancelled');
    await b.close();
  });

  it('a server-to-client hold records its direction and never takes over a client call with the same digest', async () => {
    const store = new MemoryApprovalStore({ creator: CREATOR });
    const before = broker(store, { pod: 'pod-a' });
    const client = hold(store, before);
    const clientName = await created(client);
    await before.close(); // the process stops: its hold stays open for a repeat of the same call
    client.cancel('the client closed the request');
    await client.outcome;
    const after = broker(store, { pod: 'pod-a' });
    await after.start();
    let name = '';
    const server = after.hold(
      call({
        settings: { approvers: [{ user: 'r' }], timeout: '1m', mode: 'hold' },
        arguments: { name: 'x' },
        direction: 'server-to-client',
      }),
      {
        onCancel: () => undefined,
        onCreated: (n) => {
          name = n;
        },
      },
    );
    while (name === '') await new Promise((r) => setTimeout(r, 5));
    expect(name).not.toBe(clientName);
    expect(store.get(name)?.spec.direction).toBe('server-to-client');
    expect(store.get(clientName)?.spec.direction).toBeUndefined();
    store.decide(name, 'Denied', 'rita', 'no');
    expect(await server).toMatchObject({ kind: 'denied', name, reason: 'no' });
    await after.close();
  });
});
