import { createLogger } from '../log.js';
import { createMetrics, type Metrics } from '../metrics/catalogue.js';
import { type ApprovalPhase, FinalApprovalPhases } from '../policy/schema.js';
import { ApprovalBroker } from './broker.js';
import { argumentsDigest, canonicalJson } from './digest.js';
import { MemoryApprovalStore } from './memory-store.js';
import type {
  ApprovalChange,
  ApprovalOutcome,
  ApprovalStore,
  HeldCallInput,
  PhaseWriteOptions,
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
 * Writes go straight to the shared store, as API requests do; a write that succeeded is in the view
 * at once, and the view never goes back to an older version (as pkg/kube/approval-store.ts keeps it).
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
    const known = this.#items.get(c.approval.name);
    if (c.deleted) this.#items.delete(c.approval.name);
    else if (known !== undefined && Number(known.resourceVersion) >= Number(c.approval.resourceVersion))
      return;
    else this.#items.set(c.approval.name, c.approval);
    for (const l of this.#listeners) l(c);
  }
  /** A write's answer: the version it made. */
  #written(name: string, ok: boolean): boolean {
    const now = this.shared.get(name);
    if (ok && now !== undefined) this.#apply({ approval: now, deleted: false });
    return ok;
  }
  async create(spec: StoredApproval['spec'], labels: Record<string, string>): Promise<StoredApproval> {
    const a = await this.shared.create(spec, labels);
    this.#items.set(a.name, a);
    return a;
  }
  setPhase(
    name: string,
    phase: ApprovalPhase,
    message: string,
    ifVersion?: string,
    options?: PhaseWriteOptions,
  ): Promise<boolean> {
    return this.shared
      .setPhase(name, phase, message, ifVersion, options)
      .then((ok) => this.#written(name, ok));
  }
  setHolder(name: string, holder: string, phase: ApprovalPhase, ifVersion: string): Promise<boolean> {
    return this.shared.setHolder(name, holder, phase, ifVersion).then((ok) => this.#written(name, ok));
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

  it('records what masking hid; approved without acknowledging it, the call does not run (the webhook was bypassed or old)', async () => {
    const store = new MemoryApprovalStore({ creator: CREATOR });
    const a = broker(store);
    const hidden = {
      count: 1,
      length: 1766,
      entries: [{ path: '$.note', detector: 'private-key', length: 1766 }],
    };
    const masked = { arguments: { note: 'PEM' }, maskedArguments: { note: '[masked:private-key]' }, hidden };
    const first = await a.ticket(call(masked));
    expect(store.get(nameOf(first))?.spec.maskedArguments).toEqual(hidden);
    store.decide(nameOf(first), 'Approved', 'rita');
    expect(await a.ticket(call(masked))).toMatchObject({ kind: 'pending', name: nameOf(first) });
    expect(store.get(nameOf(first))?.phase).toBe('Pending');
    // Acknowledged: the same verdict runs it once.
    const second = await a.ticket(call({ ...masked, arguments: { note: 'PEM 2' } }));
    store.decide(nameOf(second), 'Approved', 'rita', undefined, { acknowledgeMaskedArguments: true });
    expect(await a.ticket(call({ ...masked, arguments: { note: 'PEM 2' } }))).toMatchObject({
      kind: 'approved',
      name: nameOf(second),
    });
    // Nothing masked: no record, and a plain verdict is enough.
    const plain = await a.ticket(call({ arguments: { name: 'other' }, maskedArguments: { name: 'other' } }));
    expect(store.get(nameOf(plain))?.spec.maskedArguments).toBeUndefined();
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
    // A caller who cancels its call on a running process cancels its approval.
    const left = hold(store, after, { name: 'z' });
    const leftName = await created(left);
    left.cancel('the client cancelled the request');
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
    // Nor does a pod of another MCP server (under the same service account).
    const elsewhere = hold(store, broker(store, { pod: 'prod-0', server: 'Deployment/prod-mcp' }));
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

describe('replicas of one MCP server: a hold outlives its pod, and nothing stays open', () => {
  const SERVER = 'Deployment/github-mcp';
  const holdSettings = (timeout = '1m'): HeldCallInput['settings'] => ({
    approvers: [{ user: 'r' }],
    timeout,
    mode: 'hold',
  });
  const replica = (
    store: ApprovalStore,
    pod: string,
    over: { server?: string; sweepIntervalMs?: number; sweepGraceMs?: number } = {},
  ): ApprovalBroker =>
    new ApprovalBroker({
      store,
      pod,
      server: over.server ?? SERVER,
      metrics: createMetrics({ defaultMetrics: false }),
      logger: createLogger('broker-test'),
      trustedCreator: CREATOR,
      ...(over.sweepIntervalMs !== undefined ? { sweepIntervalMs: over.sweepIntervalMs } : {}),
      ...(over.sweepGraceMs !== undefined ? { sweepGraceMs: over.sweepGraceMs } : {}),
    });
  /** A client's call held through `b` (its connection: `cancel`). */
  const holdVia = (b: ApprovalBroker, over: Partial<HeldCallInput> = {}) => {
    let name = '';
    const cancel: Array<(reason: string, leaveOpen?: boolean) => void> = [];
    const outcome = b.hold(call({ settings: holdSettings(), arguments: { name: 'x' }, ...over }), {
      onCancel: (l) => cancel.push(l),
      onCreated: (n) => {
        name = n;
      },
    });
    return {
      outcome,
      async created(): Promise<string> {
        for (let i = 0; i < 200 && name === ''; i++) await new Promise((r) => setTimeout(r, 5));
        return name;
      },
      /** The client cancelled the call (notifications/cancelled). */
      cancel: (why: string) => {
        for (const l of cancel) l(why);
      },
      /** The client's connection closed without a cancellation. */
      drop: () => {
        for (const l of cancel) l('the client closed the connection without cancelling the request', true);
      },
    };
  };
  const until = async (what: string, probe: () => boolean, ms = 3000): Promise<void> => {
    for (const end = Date.now() + ms; !probe(); ) {
      if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 5));
    }
  };
  const ofServer = (store: MemoryApprovalStore, server = SERVER) =>
    [...store.list()].filter((a) => a.spec.server === server);

  it('a repeat through another replica waits on the first approval: the first hold ends taken over, the call runs once through the repeat', async () => {
    const store = new MemoryApprovalStore({ creator: CREATOR });
    const a = replica(store, 'github-mcp-5d7f-a');
    const b = replica(store, 'github-mcp-5d7f-b');
    const first = holdVia(a);
    const name = await first.created();
    await new Promise((r) => setTimeout(r, 0));
    expect(store.get(name)).toMatchObject({ phase: 'Pending', holder: 'github-mcp-5d7f-a' });
    // The client gave up on its connection to pod a (half-open: pod a does not know) and repeats
    // the call; the load balancer sends it to pod b.
    const repeat = holdVia(b);
    expect(await repeat.created()).toBe(name);
    expect(ofServer(store)).toHaveLength(1);
    expect(store.get(name)).toMatchObject({ phase: 'Pending', holder: 'github-mcp-5d7f-b' });
    expect(await first.outcome).toEqual({
      kind: 'cancelled',
      name,
      reason: 'the same call was repeated through github-mcp-5d7f-b, which now waits on the approval',
      takenOverBy: 'github-mcp-5d7f-b',
    });
    expect(store.get(name)?.phase).toBe('Pending'); // the old holder wrote nothing
    store.decide(name, 'Approved', 'rita');
    expect(await repeat.outcome).toMatchObject({ kind: 'approved', name, decidedBy: 'rita' });
    expect(store.get(name)).toMatchObject({ phase: 'Executed', holder: 'github-mcp-5d7f-b' });
    await a.close();
    await b.close();
  });

  it('rollout: the pod holding the call stops; the repeat through a new pod takes the approval over and runs it once', async () => {
    const store = new MemoryApprovalStore({ creator: CREATOR });
    const old = replica(store, 'github-mcp-5d7f-a');
    const first = holdVia(old);
    const name = await first.created();
    await old.close(); // SIGTERM: the broker stops before the connections drop
    first.cancel('the client closed the request');
    expect(await first.outcome).toMatchObject({ kind: 'cancelled', name });
    expect(store.get(name)?.phase).toBe('Pending');
    // The new ReplicaSet's pod (another name, the same Deployment).
    const next = replica(store, 'github-mcp-8c2e-x');
    await next.start();
    const repeat = holdVia(next);
    expect(await repeat.created()).toBe(name);
    store.decide(name, 'Approved', 'rita');
    expect(await repeat.outcome).toMatchObject({ kind: 'approved', name });
    expect(store.get(name)).toMatchObject({ phase: 'Executed', holder: 'github-mcp-8c2e-x' });
    // Used: the next repeat asks anew.
    const again = holdVia(next);
    expect(await again.created()).not.toBe(name);
    again.cancel('test over');
    await again.outcome;
    await next.close();
  });

  it('only the same principal and call on the same server take a hold over; a denied one is not taken over', async () => {
    const store = new MemoryApprovalStore({ creator: CREATOR });
    const a = replica(store, 'pod-a');
    const b = replica(store, 'pod-b');
    const prod = replica(store, 'prod-0', { server: 'Deployment/prod-mcp' });
    const first = holdVia(a);
    const name = await first.created();
    for (const [via, over] of [
      [b, { principal: 'tenant/user-2' }],
      [b, { arguments: { name: 'other' } }],
      [b, { tool: 'archive_repo' }],
      [prod, {}],
    ] as const) {
      const h = holdVia(via, over);
      expect([over, (await h.created()) === name]).toEqual([over, false]);
      h.cancel('test over');
      await h.outcome;
    }
    expect(store.get(name)?.holder).toBe('pod-a');
    store.decide(name, 'Denied', 'rita', 'no');
    expect(await first.outcome).toMatchObject({ kind: 'denied', name });
    const repeat = holdVia(b);
    expect(await repeat.created()).not.toBe(name);
    repeat.cancel('test over');
    await repeat.outcome;
    for (const x of [a, b, prod]) await x.close();
  });

  it('a repeat through the same pod while the first hold still waits (a half-open connection) takes it over too', async () => {
    const store = new MemoryApprovalStore({ creator: CREATOR });
    const a = replica(store, 'pod-a');
    const first = holdVia(a);
    const name = await first.created();
    const repeat = holdVia(a);
    expect(await repeat.created()).toBe(name);
    expect(await first.outcome).toMatchObject({ kind: 'cancelled', name, takenOverBy: 'pod-a' });
    store.decide(name, 'Approved', 'rita');
    expect(await repeat.outcome).toMatchObject({ kind: 'approved', name });
    expect(ofServer(store)).toHaveLength(1);
    await a.close();
  });

  it('the old holder losing its client after a takeover it has not seen yet writes nothing: the repeat keeps the approval', async () => {
    const shared = new MemoryApprovalStore({ creator: CREATOR });
    const viewA = new LaggingView(shared);
    const a = replica(viewA, 'pod-a');
    const b = replica(shared, 'pod-b');
    const first = holdVia(a);
    const name = await first.created();
    await new Promise((r) => setTimeout(r, 0));
    viewA.pause(); // pod a's watch falls behind: it will not see the takeover for a while
    const repeat = holdVia(b);
    expect(await repeat.created()).toBe(name);
    // Pod a finally notices its client is gone: its Cancelled write is made on the version it read
    // (itself the holder), fails, and once its view caught up it leaves the approval alone.
    first.cancel('the client closed the request');
    setTimeout(() => viewA.resume(), 50);
    expect(await first.outcome).toMatchObject({ kind: 'cancelled', name });
    expect(shared.get(name)).toMatchObject({ phase: 'Pending', holder: 'pod-b' });
    shared.decide(name, 'Approved', 'rita');
    expect(await repeat.outcome).toMatchObject({ kind: 'approved', name });
    expect(shared.get(name)?.phase).toBe('Executed');
    await a.close();
    await b.close();
  });

  it('a holder whose client cancels before any repeat cancels the approval; the later repeat asks anew', async () => {
    const store = new MemoryApprovalStore({ creator: CREATOR });
    const a = replica(store, 'pod-a');
    const b = replica(store, 'pod-b');
    const first = holdVia(a);
    const name = await first.created();
    first.cancel('the client cancelled the request');
    await first.outcome;
    expect(store.get(name)?.phase).toBe('Cancelled');
    const repeat = holdVia(b);
    expect(await repeat.created()).not.toBe(name);
    repeat.cancel('test over');
    await repeat.outcome;
    await a.close();
    await b.close();
  });

  it("a holder whose client's connection closes leaves the approval open: the repeat through another replica takes it over and runs it once", async () => {
    const store = new MemoryApprovalStore({ creator: CREATOR });
    const a = replica(store, 'pod-a');
    const b = replica(store, 'pod-b');
    const first = holdVia(a);
    const name = await first.created();
    first.drop();
    expect(await first.outcome).toMatchObject({ kind: 'cancelled', name, leftOpen: true });
    await new Promise((r) => setTimeout(r, 10));
    expect(store.get(name)).toMatchObject({ phase: 'Pending', holder: 'pod-a' });
    const count = ofServer(store).length;
    const repeat = holdVia(b);
    expect(await repeat.created()).toBe(name);
    expect(ofServer(store)).toHaveLength(count);
    await until('the takeover', () => store.get(name)?.holder === 'pod-b');
    store.decide(name, 'Approved', 'rita');
    expect(await repeat.outcome).toMatchObject({ kind: 'approved', name });
    expect(store.get(name)?.phase).toBe('Executed');
    await a.close();
    await b.close();
  });

  it('an approval left open by a dropped connection is looked after by its holder: its verdict written at once, its expiry on time', async () => {
    const store = new MemoryApprovalStore({ creator: CREATOR });
    // No sweeper runs (the replica is not started): what happens here is the holder's own doing.
    const a = replica(store, 'pod-a');
    const approved = holdVia(a);
    const name = await approved.created();
    approved.drop();
    await approved.outcome;
    store.decide(name, 'Approved', 'rita');
    await until('phase Approved', () => store.get(name)?.phase === 'Approved');
    // The repeat runs it at once, once; the next one asks anew.
    const repeat = holdVia(a);
    expect(await repeat.outcome).toMatchObject({ kind: 'approved', name, decidedBy: 'rita' });
    expect(store.get(name)?.phase).toBe('Executed');
    const next = holdVia(a);
    expect(await next.created()).not.toBe(name);
    next.cancel('test over');
    await next.outcome;
    // Denied while nobody waits: Denied.
    const denied = holdVia(a, { arguments: { name: 'denied' } });
    const deniedName = await denied.created();
    denied.drop();
    await denied.outcome;
    store.decide(deniedName, 'Denied', 'rita');
    await until('phase Denied', () => store.get(deniedName)?.phase === 'Denied');
    // Nobody decides nor repeats: Expired at expiresAt, written by the holder.
    const stale = holdVia(a, { settings: holdSettings('200ms'), arguments: { name: 'stale' } });
    const staleName = await stale.created();
    stale.drop();
    await stale.outcome;
    expect(store.get(staleName)?.phase).toBe('Pending');
    await until('phase Expired', () => store.get(staleName)?.phase === 'Expired');
    expect(Date.parse(store.get(staleName)!.phaseTime!)).toBeGreaterThanOrEqual(
      Date.parse(store.get(staleName)!.spec.expiresAt),
    );
    await a.close();
  });

  it('a verdict that arrives while a dropped hold is ending is written all the same', async () => {
    const store = new MemoryApprovalStore({ creator: CREATOR });
    const a = replica(store, 'pod-a');
    const h = holdVia(a);
    const name = await h.created();
    // The connection closes, and the verdict lands before the broker is done with the hold.
    h.drop();
    store.decide(name, 'Approved', 'rita');
    expect(await h.outcome).toMatchObject({ kind: 'cancelled', leftOpen: true });
    await until('phase Approved', () => store.get(name)?.phase === 'Approved');
    await a.close();
  });

  it('the pending gauge and the outcome counts stay true for dropped holds: past their deadline, after a restart, approved while nobody waits', async () => {
    const store = new MemoryApprovalStore({ creator: CREATOR });
    let clock = Date.now();
    const counted = (m: Metrics) => ({
      pending: async () => (await m.approvalsPending.get()).values.reduce((n, v) => n + v.value, 0),
      outcome: async (o: string) =>
        (await m.approvals.get()).values
          .filter((v) => v.labels['outcome'] === o)
          .reduce((n, v) => n + v.value, 0),
    });
    const make = (pod: string) => {
      const metrics = createMetrics({ defaultMetrics: false });
      const b = new ApprovalBroker({
        store,
        pod,
        server: SERVER,
        metrics,
        logger: createLogger('broker-test'),
        trustedCreator: CREATOR,
        now: () => clock,
      });
      return { b, m: counted(metrics) };
    };
    const a = make('pod-a');
    // The connection drop is handled after the deadline (a busy event loop): Expired, nothing left pending.
    const late = holdVia(a.b, { arguments: { name: 'late' } });
    const lateName = await late.created();
    clock = Date.parse(store.get(lateName)!.spec.expiresAt) + 1;
    late.drop();
    await late.outcome;
    await until('phase Expired', () => store.get(lateName)?.phase === 'Expired');
    expect(await a.m.pending()).toBe(0);
    expect(await a.m.outcome('expired')).toBe(1);
    // Approved while nobody waits, then run by the repeat: approved once, executed once.
    clock = Date.now();
    const h = holdVia(a.b);
    const name = await h.created();
    h.drop();
    await h.outcome;
    store.decide(name, 'Approved', 'rita');
    await until('phase Approved', () => store.get(name)?.phase === 'Approved');
    expect(await holdVia(a.b).outcome).toMatchObject({ kind: 'approved', name });
    expect(await a.m.outcome('approved')).toBe(1);
    expect(await a.m.outcome('executed')).toBe(1);
    expect(await a.m.outcome('requested')).toBe(2);
    expect(await a.m.pending()).toBe(0);
    await a.b.close();
    // A restart of the same pod after its left-open hold's deadline: Expired, nothing left pending.
    const before = make('pod-r');
    const cut = holdVia(before.b, { arguments: { name: 'cut' } });
    const cutName = await cut.created();
    await before.b.close();
    cut.drop();
    await cut.outcome;
    clock = Date.parse(store.get(cutName)!.spec.expiresAt) + 1000;
    const after = make('pod-r');
    await after.b.start();
    await until('phase Expired', () => store.get(cutName)?.phase === 'Expired');
    expect(await after.m.pending()).toBe(0);
    await after.b.close();
  });

  describe('cancelOpen: the caller cancels an approval its dropped connection left open', () => {
    let clock = Date.now();
    const make = (store: ApprovalStore, pod = 'pod-a') => {
      const metrics = createMetrics({ defaultMetrics: false });
      const b = new ApprovalBroker({
        store,
        pod,
        server: SERVER,
        metrics,
        logger: createLogger('broker-test'),
        trustedCreator: CREATOR,
        now: () => clock,
      });
      return {
        b,
        pending: async () => (await metrics.approvalsPending.get()).values.reduce((n, v) => n + v.value, 0),
        outcome: async (o: string) =>
          (await metrics.approvals.get()).values
            .filter((v) => v.labels['outcome'] === o)
            .reduce((n, v) => n + v.value, 0),
      };
    };
    /** A hold through `b` whose connection closed: its approval's name, left open. */
    const dropped = async (b: ApprovalBroker, over: Partial<HeldCallInput> = {}): Promise<string> => {
      const h = holdVia(b, over);
      const name = await h.created();
      h.drop();
      expect(await h.outcome).toMatchObject({ kind: 'cancelled', name, leftOpen: true });
      return name;
    };
    beforeEach(() => {
      clock = Date.now();
    });

    it('a pending approval becomes Cancelled, once: untracked, counted cancelled once, its watch ended', async () => {
      const store = new MemoryApprovalStore({ creator: CREATOR });
      const a = make(store);
      const name = await dropped(a.b);
      expect(await a.pending()).toBe(1);
      let ended = 0;
      const open = a.b.watchOpen(name, () => ended++);
      expect(open).toBeDefined();
      expect(await open!.cancel('the client cancelled the request')).toBe(true);
      expect(store.get(name)?.phase).toBe('Cancelled');
      expect(ended).toBe(1);
      expect(await a.pending()).toBe(0);
      expect(await a.outcome('cancelled')).toBe(1);
      // Again, or a verdict after it: nothing more is written or counted.
      expect(await a.b.cancelOpen(name, 'again')).toBe(false);
      expect(await open!.cancel('again')).toBe(false);
      store.decide(name, 'Approved', 'rita');
      expect(store.get(name)?.phase).toBe('Cancelled');
      expect(await a.outcome('cancelled')).toBe(1);
      expect(await a.outcome('approved')).toBe(0);
      expect(await a.pending()).toBe(0);
      // The repeat asks anew.
      const repeat = holdVia(a.b);
      expect(await repeat.created()).not.toBe(name);
      repeat.cancel('test over');
      await repeat.outcome;
      await a.b.close();
    });

    it('a denial stands: a cancel that comes while its phase is being written changes nothing', async () => {
      /** Denied phases take an API round trip to land (the version is checked then). */
      class SlowDenied extends MemoryApprovalStore {
        override async setPhase(
          name: string,
          phase: ApprovalPhase,
          message: string,
          ifVersion?: string,
          options?: PhaseWriteOptions,
        ): Promise<boolean> {
          if (phase === 'Denied') await new Promise((r) => setTimeout(r, 50));
          return super.setPhase(name, phase, message, ifVersion, options);
        }
      }
      const store = new SlowDenied({ creator: CREATOR });
      const a = make(store);
      const name = await dropped(a.b);
      const open = a.b.watchOpen(name, () => undefined);
      store.decide(name, 'Denied', 'rita', 'no');
      expect(await open!.cancel('the client ended the session')).toBe(false);
      await until('phase Denied', () => store.get(name)?.phase === 'Denied');
      expect(await a.outcome('denied')).toBe(1);
      expect(await a.outcome('cancelled')).toBe(0);
      expect(await a.pending()).toBe(0);
      await a.b.close();
    });

    it('an approved, unused approval becomes Cancelled too: its repeat no longer runs it', async () => {
      const store = new MemoryApprovalStore({ creator: CREATOR });
      const a = make(store);
      const name = await dropped(a.b);
      store.decide(name, 'Approved', 'rita');
      await until('phase Approved', () => store.get(name)?.phase === 'Approved');
      expect(await a.b.cancelOpen(name, 'the client ended the session')).toBe(true);
      expect(store.get(name)?.phase).toBe('Cancelled');
      expect(await a.outcome('cancelled')).toBe(1);
      expect(await a.pending()).toBe(0);
      const repeat = holdVia(a.b);
      expect(await repeat.created()).not.toBe(name);
      repeat.cancel('test over');
      expect(await repeat.outcome).toMatchObject({ kind: 'cancelled' });
      await a.b.close();
    });

    it('an executed approval is never rewound: nothing is written or counted', async () => {
      const store = new MemoryApprovalStore({ creator: CREATOR });
      const a = make(store);
      const name = await dropped(a.b);
      let ended = 0;
      const open = a.b.watchOpen(name, () => ended++);
      store.decide(name, 'Approved', 'rita');
      expect(await holdVia(a.b).outcome).toMatchObject({ kind: 'approved', name });
      expect(store.get(name)?.phase).toBe('Executed');
      expect(ended).toBe(1);
      const version = store.get(name)?.resourceVersion;
      expect(await open!.cancel('late')).toBe(false);
      expect(await a.b.cancelOpen(name, 'late')).toBe(false);
      expect(store.get(name)).toMatchObject({ phase: 'Executed', resourceVersion: version });
      expect(await a.outcome('cancelled')).toBe(0);
      expect(await a.outcome('executed')).toBe(1);
      expect(await a.pending()).toBe(0);
      await a.b.close();
    });

    it('taken over elsewhere: the old holder cancels nothing; the repeat keeps the approval and runs it', async () => {
      const store = new MemoryApprovalStore({ creator: CREATOR });
      const a = make(store, 'pod-a');
      const b = make(store, 'pod-b');
      const name = await dropped(a.b);
      let ended = 0;
      const open = a.b.watchOpen(name, () => ended++);
      const repeat = holdVia(b.b);
      expect(await repeat.created()).toBe(name);
      await until('the takeover', () => store.get(name)?.holder === 'pod-b');
      expect(ended).toBe(1);
      expect(await open!.cancel('late')).toBe(false);
      expect(await a.b.cancelOpen(name, 'late')).toBe(false);
      expect(store.get(name)).toMatchObject({ phase: 'Pending', holder: 'pod-b' });
      expect(await a.outcome('cancelled')).toBe(0);
      expect(await a.pending()).toBe(0);
      store.decide(name, 'Approved', 'rita');
      expect(await repeat.outcome).toMatchObject({ kind: 'approved', name });
      expect(store.get(name)?.phase).toBe('Executed');
      await a.b.close();
      await b.b.close();
    });

    it('taken over here by a repeat (another request id): the old handle cancels nothing, even once the repeat left it open too', async () => {
      const store = new MemoryApprovalStore({ creator: CREATOR });
      const a = make(store);
      const name = await dropped(a.b);
      let ended = 0;
      const old = a.b.watchOpen(name, () => ended++);
      const repeat = holdVia(a.b);
      expect(await repeat.created()).toBe(name);
      expect(ended).toBe(1);
      // While the repeat waits on it, nothing but the repeat's own cancellation ends it.
      expect(await old!.cancel('late')).toBe(false);
      expect(await a.b.cancelOpen(name, 'late')).toBe(false);
      expect(store.get(name)?.phase).toBe('Pending');
      // The repeat's connection closes too: the new watch is the repeat's; the old one stays dead.
      repeat.drop();
      expect(await repeat.outcome).toMatchObject({ kind: 'cancelled', leftOpen: true });
      const mine = a.b.watchOpen(name, () => undefined);
      expect(await old!.cancel('late')).toBe(false);
      expect(store.get(name)?.phase).toBe('Pending');
      expect(await mine!.cancel('the client cancelled the request')).toBe(true);
      expect(store.get(name)?.phase).toBe('Cancelled');
      expect(await a.outcome('cancelled')).toBe(1);
      expect(await a.pending()).toBe(0);
      await a.b.close();
    });

    it('past its usable time, or final, an approval is not watched', async () => {
      const store = new MemoryApprovalStore({ creator: CREATOR });
      const a = make(store);
      const name = await dropped(a.b);
      store.decide(name, 'Approved', 'rita');
      await until('phase Approved', () => store.get(name)?.phase === 'Approved');
      // One timeout (1m) past expiresAt, an approved approval can no longer be used.
      clock = Date.parse(store.get(name)!.spec.expiresAt) + 2 * 60_000;
      let ended = 0;
      expect(a.b.watchOpen(name, () => ended++)).toBeUndefined();
      expect(ended).toBe(1);
      const denied = await dropped(a.b, { arguments: { name: 'denied' } });
      store.decide(denied, 'Denied', 'rita');
      await until('phase Denied', () => store.get(denied)?.phase === 'Denied');
      expect(a.b.watchOpen(denied, () => undefined)).toBeUndefined();
      expect(await a.b.cancelOpen(denied, 'late')).toBe(false);
      expect(store.get(denied)?.phase).toBe('Denied');
      await a.b.close();
    });
  });

  it('two replicas taking over at once: one holds the approval, the other hold ends taken over; the call runs once', async () => {
    const store = new MemoryApprovalStore({ creator: CREATOR });
    const old = replica(store, 'pod-a');
    const first = holdVia(old);
    const name = await first.created();
    await old.close();
    first.cancel('the client closed the request');
    await first.outcome;
    const b = replica(store, 'pod-b');
    const c = replica(store, 'pod-c');
    const viaB = holdVia(b);
    const viaC = holdVia(c);
    expect([await viaB.created(), await viaC.created()]).toEqual([name, name]);
    const ended = await Promise.race([viaB.outcome, viaC.outcome]);
    expect(ended).toMatchObject({
      kind: 'cancelled',
      name,
      takenOverBy: expect.stringMatching(/^pod-[bc]$/),
    });
    const holder = (ended as { takenOverBy: string }).takenOverBy;
    expect(store.get(name)?.holder).toBe(holder);
    store.decide(name, 'Approved', 'rita');
    const outcomes = await Promise.all([viaB.outcome, viaC.outcome]);
    expect(outcomes.map((o) => o.kind).sort()).toEqual(['approved', 'cancelled']);
    expect(store.get(name)).toMatchObject({ phase: 'Executed', holder });
    expect(ofServer(store)).toHaveLength(1);
    await b.close();
    await c.close();
  });

  it('a replica whose view lags cannot take over an approval that changed: it looks again, and asks anew once the call ran', async () => {
    const shared = new MemoryApprovalStore({ creator: CREATOR });
    const viewB = new LaggingView(shared);
    const a = replica(shared, 'pod-a');
    const b = replica(viewB, 'pod-b');
    const first = holdVia(a);
    const name = await first.created();
    await new Promise((r) => setTimeout(r, 0));
    viewB.pause();
    shared.decide(name, 'Approved', 'rita');
    expect(await first.outcome).toMatchObject({ kind: 'approved', name });
    expect(shared.get(name)?.phase).toBe('Executed');
    // Pod b still sees it Pending: its takeover write, made on that version, fails.
    const repeat = holdVia(b);
    setTimeout(() => viewB.resume(), 50);
    const second = await repeat.created();
    expect(second).not.toBe(name);
    expect(shared.get(name)).toMatchObject({ phase: 'Executed', holder: 'pod-a' });
    repeat.cancel('test over');
    await repeat.outcome;
    await a.close();
    await b.close();
  });

  it('an approval taken over since the verdict is not run by its old holder: the repeat runs it', async () => {
    const shared = new MemoryApprovalStore({ creator: CREATOR });
    const viewA = new LaggingView(shared);
    const a = replica(viewA, 'pod-a');
    const b = replica(shared, 'pod-b');
    const first = holdVia(a);
    const name = await first.created();
    await new Promise((r) => setTimeout(r, 0));
    viewA.pause();
    shared.decide(name, 'Approved', 'rita');
    // The repeat takes the approved hold over and runs it before pod a's watch delivers anything.
    const repeat = holdVia(b);
    expect(await repeat.outcome).toMatchObject({ kind: 'approved', name });
    // Pod a now sees the verdict (and then the takeover): it does not try to run the call.
    viewA.resume();
    expect(await first.outcome).toMatchObject({ kind: 'cancelled', name, takenOverBy: 'pod-b' });
    expect(shared.get(name)).toMatchObject({ phase: 'Executed', holder: 'pod-b' });
    await a.close();
    await b.close();
  });

  it("a restarted pod keeps the holds it took over (their verdict's phase, their expiry); the pod they came from does not", async () => {
    const store = new MemoryApprovalStore({ creator: CREATOR });
    const a = replica(store, 'pod-a');
    const b = replica(store, 'pod-b');
    const first = holdVia(a);
    const name = await first.created();
    const repeat = holdVia(b);
    expect(await repeat.created()).toBe(name);
    await first.outcome;
    await b.close(); // pod b's sidecar restarts while the call is held
    repeat.cancel('the client closed the request');
    await repeat.outcome;
    const bAgain = replica(store, 'pod-b');
    await bAgain.start();
    store.decide(name, 'Approved', 'rita');
    await until('phase Approved', () => store.get(name)?.phase === 'Approved', 1000);
    await a.close();
    await bAgain.close();
  });

  it('any replica of the server writes the final phase of approvals whose holder is gone, past their deadline; never another server’s', async () => {
    const store = new MemoryApprovalStore({ creator: CREATOR });
    const gone = replica(store, 'github-mcp-5d7f-a');
    const elsewhere = replica(store, 'prod-0', { server: 'Deployment/prod-mcp' });
    const short = (timeout: string) => ({ settings: holdSettings(timeout) });
    const pending = holdVia(gone, { ...short('150ms'), arguments: { n: 'pending' } });
    const approved = holdVia(gone, { ...short('150ms'), arguments: { n: 'approved' } });
    const denied = holdVia(gone, { ...short('150ms'), arguments: { n: 'denied' } });
    const other = holdVia(elsewhere, { ...short('150ms'), arguments: { n: 'other' } });
    const ticket = await gone.ticket(
      call({ settings: { approvers: [{ user: 'r' }], timeout: '150ms', mode: 'ticket' } }),
    );
    const names = {
      pending: await pending.created(),
      approved: await approved.created(),
      denied: await denied.created(),
      other: await other.created(),
      ticket: nameOf(ticket),
    };
    // Both pods go away with their calls held (a rollout; the other server scaled to zero).
    await gone.close();
    await elsewhere.close();
    for (const h of [pending, approved, denied, other]) h.cancel('the client closed the request');
    await Promise.all([pending.outcome, approved.outcome, denied.outcome, other.outcome]);
    store.decide(names.approved, 'Approved', 'rita');
    store.decide(names.denied, 'Denied', 'rita', 'no');
    const t0 = Date.now();
    const next = replica(store, 'github-mcp-8c2e-x', { sweepIntervalMs: 10, sweepGraceMs: 100 });
    await next.start();
    const phase = (n: string) => store.get(n)?.phase;
    // A verdict nobody wrote is written once its holder had the grace to do it.
    await until('phase Denied', () => phase(names.denied) === 'Denied');
    await until('phase Approved', () => phase(names.approved) === 'Approved');
    expect(Date.now() - t0).toBeGreaterThanOrEqual(100);
    await until(
      'phase Expired',
      () => phase(names.pending) === 'Expired' && phase(names.ticket) === 'Expired',
    );
    // Its time is its deadline, not the moment the sweep came by.
    expect(store.get(names.pending)?.phaseTime).toBe(store.get(names.pending)?.spec.expiresAt);
    // Approved and never used: expired one timeout (its own, 150 ms) past expiresAt.
    await until('approved and unused Expired', () => phase(names.approved) === 'Expired');
    const a = store.get(names.approved)!;
    expect(Date.parse(a.phaseTime!)).toBeGreaterThanOrEqual(Date.parse(a.spec.expiresAt) + 150);
    // Another server's approval is none of its business.
    await new Promise((r) => setTimeout(r, 50));
    expect(phase(names.other)).toBe('Pending');
    await next.close();
  });

  it('a live holder on another replica writes its own phases: the others leave it the grace and do not race it', async () => {
    const shared = new MemoryApprovalStore({ creator: CREATOR });
    const writes: string[] = [];
    class Counting extends LaggingView {
      override setPhase(name: string, phase: ApprovalPhase, message: string, ifVersion?: string) {
        writes.push(`${name} ${phase}`);
        return super.setPhase(name, phase, message, ifVersion);
      }
    }
    // Pod a's writes take a while to reach the API server: without the grace pod b would come first.
    class Slow extends LaggingView {
      override async setPhase(name: string, phase: ApprovalPhase, message: string, ifVersion?: string) {
        await new Promise((r) => setTimeout(r, 40));
        return super.setPhase(name, phase, message, ifVersion);
      }
    }
    const a = replica(new Slow(shared), 'pod-a');
    const watcher = replica(new Counting(shared), 'pod-b', { sweepIntervalMs: 5, sweepGraceMs: 5000 });
    await watcher.start();
    const expiring = holdVia(a, { settings: holdSettings('100ms'), arguments: { n: 1 } });
    const deciding = holdVia(a, { arguments: { n: 2 } });
    const name = await deciding.created();
    expect(await expiring.outcome).toMatchObject({ kind: 'expired' });
    shared.decide(name, 'Denied', 'rita');
    expect(await deciding.outcome).toMatchObject({ kind: 'denied' });
    await new Promise((r) => setTimeout(r, 50));
    expect(writes).toEqual([]);
    expect(shared.get(name)?.phase).toBe('Denied');
    await a.close();
    await watcher.close();
  });
});

describe('adversarial: replicas racing takeovers, verdicts, claims and sweeps', () => {
  const SERVER = 'Deployment/github-mcp';
  const settings = (timeout: string): HeldCallInput['settings'] => ({
    approvers: [{ user: 'r' }],
    timeout,
    mode: 'hold',
  });
  /** A small seeded PRNG (mulberry32): a failing seed can be replayed. */
  const rng = (seed: number) => () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const pendingGauge = async (m: ReturnType<typeof createMetrics>): Promise<number> =>
    (await m.approvalsPending.get()).values.reduce((n, v) => n + v.value, 0);

  /** Pod a holds a call and goes away (its hold left open, as a rollout leaves it). */
  const abandoned = async (store: MemoryApprovalStore, timeout: string, args: unknown) => {
    const gone = new ApprovalBroker({
      store,
      pod: 'pod-gone',
      server: SERVER,
      metrics: createMetrics({ defaultMetrics: false }),
      logger: createLogger('broker-test'),
      trustedCreator: CREATOR,
    });
    let name = '';
    const cancels: Array<(why: string) => void> = [];
    const outcome = gone.hold(call({ settings: settings(timeout), arguments: args }), {
      onCancel: (l) => cancels.push(l),
      onCreated: (n) => {
        name = n;
      },
    });
    while (name === '') await new Promise((r) => setTimeout(r, 2));
    await new Promise((r) => setTimeout(r, 0));
    await gone.close();
    for (const l of cancels) l('the client closed the request');
    await outcome;
    return name;
  };
  const sweeper = (store: ApprovalStore, pod: string, graceMs = 20) =>
    new ApprovalBroker({
      store,
      pod,
      server: SERVER,
      metrics: createMetrics({ defaultMetrics: false }),
      logger: createLogger('broker-test'),
      trustedCreator: CREATOR,
      sweepIntervalMs: 5,
      sweepGraceMs: graceMs,
    });

  it('a phase alone never runs a call: a forged Approved phase, or an unstamped decision, is not a verdict; the sweeper expires both', async () => {
    const store = new MemoryApprovalStore({ creator: CREATOR });
    const forged = await abandoned(store, '150ms', { n: 'forged-phase' });
    const unstamped = await abandoned(store, '150ms', { n: 'unstamped' });
    // Whoever may write the status (the creator's service account) writes Approved; a decision
    // that did not pass the webhook has no decidedBy.
    expect(await store.setPhase(forged, 'Approved', 'forged')).toBe(true);
    store.decide(unstamped, 'Approved', '');
    const b = sweeper(store, 'pod-b');
    await b.start();
    // The repeats wait on their approvals (nothing to run yet) and expire with them.
    const repeat = (n: string) =>
      b.hold(call({ settings: settings('150ms'), arguments: { n } }), { onCancel: () => undefined });
    const outcomes = await Promise.all([repeat('forged-phase'), repeat('unstamped')]);
    expect(outcomes.map((o) => [o.kind, nameOf(o)])).toEqual([
      ['expired', forged],
      ['expired', unstamped],
    ]);
    for (const n of [forged, unstamped]) expect(store.get(n)?.phase).toBe('Expired');
    await b.close();
  });

  it('the sweeper never writes Approved or Denied for an unstamped decision, and writes one phase per abandoned approval however many replicas sweep', async () => {
    const shared = new MemoryApprovalStore({ creator: CREATOR });
    const names: string[] = [];
    for (let i = 0; i < 45; i++) names.push(await abandoned(shared, '100ms', { i }));
    const unstamped = names[0]!;
    shared.decide(unstamped, 'Denied', '');
    const writes: string[] = [];
    class Counting extends LaggingView {
      override setPhase(
        name: string,
        phase: ApprovalPhase,
        message: string,
        ifVersion?: string,
        o?: PhaseWriteOptions,
      ) {
        writes.push(`${name} ${phase}`);
        return super.setPhase(name, phase, message, ifVersion, o);
      }
    }
    const replicas = ['pod-b', 'pod-c', 'pod-d'].map((pod) => sweeper(new Counting(shared), pod, 0));
    await new Promise((r) => setTimeout(r, 120));
    for (const r of replicas) await r.start();
    const end = Date.now() + 5000;
    while (names.some((n) => shared.get(n)?.phase !== 'Expired') && Date.now() < end)
      await new Promise((r) => setTimeout(r, 10));
    for (const n of names) expect([n, shared.get(n)?.phase]).toEqual([n, 'Expired']);
    expect(writes.filter((w) => w.endsWith(' Denied') || w.endsWith(' Approved'))).toEqual([]);
    // Conditional writes: the replicas race, but each retry first looks at the view again.
    expect(writes.length).toBeLessThanOrEqual(names.length * 3);
    for (const r of replicas) await r.close();
  });

  it('whatever the interleaving, an approval runs its call at most once, only after a stamped approval, and nothing stays pending in the metrics', async () => {
    for (let seed = 1; seed <= 8; seed++) {
      const random = rng(seed);
      const shared = new MemoryApprovalStore({ creator: CREATOR });
      const pods = ['pod-a', 'pod-b', 'pod-c'].map((pod) => {
        const view = new LaggingView(shared);
        const metrics = createMetrics({ defaultMetrics: false });
        const b = new ApprovalBroker({
          store: view,
          pod,
          server: SERVER,
          metrics,
          logger: createLogger('broker-test'),
          trustedCreator: CREATOR,
          sweepIntervalMs: 7,
          sweepGraceMs: 15,
        });
        return { pod, view, metrics, b };
      });
      for (const p of pods) await p.b.start();
      const holds: Array<{ via: string; outcome: ApprovalOutcome | undefined; cancel: () => void }> = [];
      const done: Promise<void>[] = [];
      const pick = <T>(xs: T[]): T => xs[Math.floor(random() * xs.length)]!;
      for (let step = 0; step < 40; step++) {
        const r = random();
        if (r < 0.35) {
          const p = pick(pods);
          const cancels: Array<(why: string) => void> = [];
          const h = { via: p.pod, outcome: undefined as ApprovalOutcome | undefined, cancel: () => {} };
          h.cancel = () => {
            for (const l of cancels) l('the client closed the request');
          };
          done.push(
            p.b
              .hold(call({ settings: settings('250ms'), arguments: { name: 'x' } }), {
                onCancel: (l) => cancels.push(l),
              })
              .then((o) => {
                h.outcome = o;
              }),
          );
          holds.push(h);
        } else if (r < 0.45 && holds.length > 0) {
          pick(holds).cancel();
        } else if (r < 0.6) {
          pick(pods).view.pause();
        } else if (r < 0.75) {
          pick(pods).view.resume();
        } else if (r < 0.85) {
          const open = [...shared.list()].filter((a) => a.spec.decision === undefined);
          if (open.length > 0) shared.decide(pick(open).name, random() < 0.8 ? 'Approved' : 'Denied', 'rita');
        }
        await new Promise((res) => setTimeout(res, Math.floor(random() * 25)));
      }
      for (const p of pods) p.view.resume();
      await Promise.all(done);
      // Let the sweepers finish what they write.
      await new Promise((res) => setTimeout(res, 200));
      for (const p of pods) p.view.resume();
      const ran = new Map<string, number>();
      for (const h of holds) {
        if (h.outcome?.kind !== 'approved') continue;
        ran.set(h.outcome.name, (ran.get(h.outcome.name) ?? 0) + 1);
        const a = shared.get(h.outcome.name)!;
        // Run only on a stamped approval, by the pod that holds it, and recorded as used.
        expect([seed, a.spec.decision]).toEqual([
          seed,
          expect.objectContaining({ verdict: 'Approved', decidedBy: 'rita' }),
        ]);
        expect([seed, a.phase, a.holder ?? a.spec.pod]).toEqual([seed, 'Executed', h.via]);
      }
      for (const [name, n] of ran) expect([seed, name, n]).toEqual([seed, name, 1]);
      for (const a of shared.list()) {
        // Every Executed approval ran exactly one hold's call; nothing denied ran.
        if (a.phase === 'Executed') expect([seed, a.name, ran.get(a.name)]).toEqual([seed, a.name, 1]);
        if (a.spec.decision?.verdict === 'Denied') expect([seed, a.phase]).not.toEqual([seed, 'Executed']);
        // Nothing is left open: every approval reached a final phase (or, approved, is still usable).
        if (a.spec.decision?.verdict !== 'Approved')
          expect([seed, a.name, FinalApprovalPhases.has(a.phase ?? '')]).toEqual([seed, a.name, true]);
      }
      for (const p of pods) expect([seed, p.pod, await pendingGauge(p.metrics)]).toEqual([seed, p.pod, 0]);
      for (const p of pods) await p.b.close();
    }
  }, 60_000);
});
