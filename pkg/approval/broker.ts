import { errorMessage } from '../errors.js';
import { isJsonObject } from '../json.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics/catalogue.js';
import { MaxDurationMs, parseDuration } from '../policy/duration.js';
import { FinalApprovalPhases, type MCPApprovalSpec } from '../policy/schema.js';
import { argumentsDigest } from './digest.js';
import type {
  ApprovalChange,
  ApprovalOutcome,
  ApprovalStore,
  HeldCallInput,
  PhaseWriteOptions,
  StoredApproval,
} from './types.js';

export interface BrokerOptions {
  store: ApprovalStore;
  /** The pod (or gateway) holding calls: `spec.pod` of the approvals it creates. */
  pod: string;
  /**
   * The MCP server this data path fronts (`spec.server`): a sidecar's workload, a gateway's
   * upstream URL. An approval asked on one server never runs its call on another, even when both
   * run under one service account or Kubernetes user.
   */
  server?: string;
  metrics: Metrics;
  logger: Logger;
  /**
   * The user the admission webhook stamps as creator of this data path's approvals
   * (`system:serviceaccount:<ns>:<sa>`). Ticket grants are honoured only from approvals it created:
   * an approval someone else created (or created past the webhook) grants nothing.
   */
  trustedCreator?: string;
  /** Largest masked-arguments JSON put in an approval (default 256 KiB): reviewers must see the whole call. */
  maxArgumentsBytes?: number;
  /**
   * How often, once started, the open approvals of this server that no hold of this process waits
   * on are looked at (default 5 s): past their deadline they get their final phase (see
   * {@link ApprovalBroker.start}).
   */
  sweepIntervalMs?: number;
  /**
   * How long a deadline or a verdict is left to the approval's own holder before another replica
   * writes the phase (default 10 s): a live holder writes it first, and the replicas do not race.
   */
  sweepGraceMs?: number;
  now?: () => number;
}

/** The data path's side of one hold. */
export interface HoldHooks {
  /**
   * Registers what ends the hold from the caller's side, and why. `leaveOpen` false (the default):
   * the caller cancelled (`notifications/cancelled`), and the approval becomes Cancelled. True: the
   * caller's connection closed without a cancellation (a network blip, a load balancer's idle cut,
   * a crash): this hold ends, but the approval stays open for the caller's repeat of the call, and
   * this pod looks after it as an unheld approval (its expiry, its verdict's phase) meanwhile.
   */
  onCancel(listener: (reason: string, leaveOpen?: boolean) => void): void;
  /** Called once the approval exists (the client can be told its name). */
  onCreated?(name: string, expiresAt: string): void;
  /**
   * Asked once a reviewer approved, before the approval is claimed (Executed): a reason returned
   * means the call can no longer be run (a held server request has no stream left to reach its
   * client on), and the hold ends Cancelled with that reason instead of using the approval.
   */
  canRun?(): string | undefined;
}

/**
 * An approval left open by a dropped connection that the data path may still cancel for its
 * caller (see {@link ApprovalBroker.watchOpen}): a `notifications/cancelled` that came late, the
 * session deleted.
 */
export interface OpenApproval {
  /**
   * Cancel it ({@link ApprovalBroker.cancelOpen}) while this handle is still the approval's (no
   * repeat took it over since); resolves true when it was cancelled.
   */
  cancel(reason: string): Promise<boolean>;
  /** Stop watching it: its `onEnd` is not called, and the approval goes on as before. */
  forget(): void;
}

const DEFAULT_TIMEOUT_MS = 5 * 60_000;
/** setTimeout's longest delay; later deadlines are reached in steps. */
const MAX_TIMER_MS = 2 ** 31 - 1;
const DEFAULT_SWEEP_INTERVAL_MS = 5_000;
const DEFAULT_SWEEP_GRACE_MS = 10_000;
/** Phase writes one sweep makes at most (a namespace full of abandoned approvals is done in steps). */
const SWEEP_WRITES = 20;

/** Who holds a hold approval's call open: the holder the status names, else the pod that created it. */
function holderOf(a: StoredApproval): string {
  return a.holder ?? a.spec.pod;
}

/**
 * The rule's timeout an approval was asked with (expiresAt minus its creation; creationTimestamp
 * has whole seconds, so never less than the real one), or the longest one when unknown.
 */
function ownTimeoutMs(a: StoredApproval): number {
  const t = Date.parse(a.spec.expiresAt) - Date.parse(a.created ?? '');
  return Number.isFinite(t) && t > 0 ? Math.min(t, MaxDurationMs) : MaxDurationMs;
}

/** One hold of this process waiting on an approval. */
interface Waiter {
  onChange(change: ApprovalChange): void;
  /** A repeat of the same call took the approval over (through `by`): this hold ends. */
  takeOver(by: string): void;
}

/** How a phase write went: made, no longer applying (someone else's change won), or failed. */
type WriteResult = 'written' | 'moot' | 'failed';

/** An approval whose arguments masking changed, approved without `acknowledgeMaskedArguments`. */
function unacknowledgedMasks(a: StoredApproval): boolean {
  return (a.spec.maskedArguments?.count ?? 0) > 0 && a.spec.decision?.acknowledgeMaskedArguments !== true;
}

/** A verdict the webhook admitted: Approved or Denied, stamped with who decided. */
function decisionOf(
  a: StoredApproval,
): { verdict: 'Approved' | 'Denied'; decidedBy: string; reason?: string } | undefined {
  const d = a.spec.decision;
  if (d === undefined || (d.verdict !== 'Approved' && d.verdict !== 'Denied')) return undefined;
  // No decidedBy: the decision did not pass through the webhook (not installed, or bypassed).
  if (typeof d.decidedBy !== 'string' || d.decidedBy === '') return undefined;
  // Approving what masking hid needs the reviewer to say so; the webhook refuses it otherwise,
  // and an approval that got past it (an older webhook) approves nothing.
  if (d.verdict === 'Approved' && unacknowledgedMasks(a)) return undefined;
  return { verdict: d.verdict, decidedBy: d.decidedBy, ...(d.reason ? { reason: d.reason } : {}) };
}

/**
 * The approval broker: turns an `approve` decision into an `MCPApproval` and the reviewer's verdict
 * back into "run it" or an error, for both modes of the contract:
 *
 * - `hold`: create the approval, keep the caller waiting until a verdict, the timeout or the
 *   caller cancelling; write the phase (Executed, Denied, Expired, Cancelled). A hold outlives the
 *   process holding it and the caller's connection: the caller's repeat of the same call, through
 *   any replica of the same server (`spec.server`), takes the approval over (`status.holder`) and
 *   waits on it again; until then its holder looks after it as an approval nobody waits on.
 * - `ticket`: answer at once with the approval's name; when the same principal repeats the same
 *   call (same policy, rule, method, tool and arguments digest) after approval, it runs once.
 *
 * Either way an approved call runs once: its phase moves to Executed with an "only if unchanged"
 * write before it runs, so two replicas, or a process and its successor, cannot both run it; a
 * hold runs it only while this pod is the approval's holder.
 *
 * Nothing stays open forever: once started, every replica writes the final phase of its server's
 * approvals whose deadline passed with nobody left to write it (the pod that held them is gone).
 *
 * Fail closed: when the store is not current or cannot create, the call is refused.
 */
export class ApprovalBroker {
  readonly #o: BrokerOptions;
  readonly #now: () => number;
  readonly #waiters = new Map<string, Waiter>();
  /** Expiry timers of this pod's pending ticket approvals (and of holds it holds with nobody waiting). */
  readonly #expiry = new Map<string, NodeJS.Timeout>();
  readonly #unsubscribe: () => void;
  #warnedUnstamped = false;
  #warnedUnstampedCreator = false;
  #warnedUnacknowledged = false;
  #closed = false;
  /** Approvals this process created before its restart sweep ran (the sweep leaves them alone). */
  #createdBeforeSweep: Set<string> | undefined = new Set();
  #sweepTimer: NodeJS.Timeout | undefined;
  /** When this process first saw a verdict whose phase was not written yet (approval name → ms). */
  readonly #verdictSeen = new Map<string, number>();
  /** Approvals left open by a dropped connection that the data path can still cancel (watchOpen). */
  readonly #leftOpen = new Map<string, { onEnd: () => void; timer: NodeJS.Timeout | undefined }>();

  constructor(options: BrokerOptions) {
    this.#o = options;
    this.#now = options.now ?? Date.now;
    this.#unsubscribe = options.store.subscribe((change) => this.#onChange(change));
  }

  /**
   * After the store's first sync: the pending approvals this pod holds that no caller waits on (its
   * tickets, and the holds the previous process of this pod held: their callers went away with it)
   * get their expiry timers back and, when a verdict comes, their phase. Such a hold stays open for
   * its caller's repeat of the same call, which waits on it (see {@link hold}).
   *
   * From then on, every `sweepIntervalMs`, the open approvals of this server (any pod's, created by
   * this data path's identity) that nobody here waits on get the phase their holder would have
   * written, once it has had `sweepGraceMs` to write it itself: Expired past `expiresAt` without a
   * verdict, or approved and unused one timeout past it; Approved / Denied once a verdict came.
   */
  async start(): Promise<void> {
    await this.#o.store.synced();
    // Calls may already be held (the data path serves before the first sync ends): let every
    // creation that reached the store record itself first.
    await new Promise((r) => setImmediate(r));
    const mine = this.#createdBeforeSweep ?? new Set<string>();
    const snapshot = [...this.#o.store.list()];
    this.#createdBeforeSweep = undefined;
    for (const a of snapshot) {
      if (holderOf(a) !== this.#o.pod || FinalApprovalPhases.has(a.phase ?? '') || mine.has(a.name)) continue;
      if (this.#waiters.has(a.name) || this.#expiry.has(a.name)) continue;
      if (this.#decision(a) !== undefined) continue;
      this.#trackUnheld(a);
    }
    this.#o.logger.info(
      { event: 'approvals-synced', open: this.#expiry.size },
      'approvals synced: open approvals of this pod wait for a verdict or a repeat',
    );
    this.#scheduleSweep();
  }

  /**
   * The process is stopping: from now on, every hold that ends (the data path dropping its
   * connections) is left open (Pending, not Cancelled) for its caller's repeat through the next
   * process of this pod or another replica, which look after it from then on (see {@link start}).
   * Close the broker before the data path drops its connections.
   */
  async close(): Promise<void> {
    this.#closed = true;
    this.#unsubscribe();
    for (const t of this.#expiry.values()) clearTimeout(t);
    this.#expiry.clear();
    for (const name of [...this.#leftOpen.keys()]) this.#endOpen(name);
    if (this.#sweepTimer !== undefined) clearTimeout(this.#sweepTimer);
    this.#sweepTimer = undefined;
  }

  /**
   * Hold mode: resolves with the verdict, the expiry, or a cancellation.
   *
   * When the same principal's earlier hold of this exact call is still open on a replica of this
   * server (its holder went away with a stopped process, or its client's connection is gone or
   * half-open), the call takes that approval over instead of asking again: a write, made only if
   * the approval is unchanged since it was read, names this pod its holder. The previous holder's
   * hold then ends (`cancelled` with `takenOverBy`) without writing anything; if a reviewer approved
   * meanwhile, the call runs at once. A denied approval is not taken over: the repeat asks again.
   *
   * An approved call runs once: it is only run after the approval moved to Executed with a write
   * that succeeds only if nobody changed the approval since it was read, and only while this pod is
   * its holder; when that write fails the call is refused (fail closed) and the approval stays
   * Approved for a repeat.
   */
  async hold(call: HeldCallInput, hooks: HoldHooks): Promise<ApprovalOutcome> {
    if (!this.#o.store.ready()) return unavailable('the approval store is not reachable');
    const digest = argumentsDigest(call.arguments);
    let approval: StoredApproval;
    let expiresAtMs: number;
    const open = await this.#takeOver(call, digest);
    if (open !== undefined && 'kind' in open) return open;
    if (open !== undefined) {
      this.#untrackUnheld(open.name, open.spec.policy);
      this.#o.logger.info(
        {
          event: 'approval-resumed',
          approval: open.name,
          policy: call.policy,
          rule: call.rule,
          tool: call.tool,
        },
        'a repeated call waits on the approval its earlier hold asked for',
      );
      approval = open;
      expiresAtMs = Date.parse(open.spec.expiresAt);
    } else {
      const created = await this.#create(call, digest);
      if ('kind' in created) return created;
      ({ approval, expiresAtMs } = created);
    }
    const policy = call.policy;
    const me = this.#o.pod;
    this.#o.metrics.approvalsPending.inc({ policy });
    hooks.onCreated?.(approval.name, approval.spec.expiresAt);
    try {
      let outcome = await new Promise<ApprovalOutcome>((resolve) => {
        let done = false;
        let timer: NodeJS.Timeout | undefined;
        const settle = (o: ApprovalOutcome): void => {
          if (done) return;
          done = true;
          if (timer !== undefined) clearTimeout(timer);
          if (this.#waiters.get(approval.name) === waiter) this.#waiters.delete(approval.name);
          resolve(o);
        };
        const takenOver = (by: string): void =>
          settle({
            kind: 'cancelled',
            name: approval.name,
            reason: `the same call was repeated through ${by}, which now waits on the approval`,
            takenOverBy: by,
          });
        const check = (a: StoredApproval | undefined, deleted: boolean): void => {
          if (deleted || a === undefined) {
            settle({ kind: 'cancelled', name: approval.name, reason: 'the approval was deleted' });
            return;
          }
          // The view holds this pod's own takeover write (see ApprovalStore.setHolder): another
          // holder is a later repeat's.
          const holder = holderOf(a);
          if (holder !== me) {
            takenOver(holder);
            return;
          }
          // Cancelled for an earlier request of the call (cancelOpen) just as this repeat took it.
          if (a.phase === 'Cancelled') {
            settle({ kind: 'cancelled', name: approval.name, reason: 'the approval was cancelled' });
            return;
          }
          // A verdict counts only on an approval the webhook stamped as this data path's: without
          // the stamp nothing vouches for who decided (as for ticket grants). It waits, then expires.
          if (!this.#stamped(a)) return;
          const d = this.#decision(a);
          if (d === undefined) return;
          settle(
            d.verdict === 'Approved'
              ? { kind: 'approved', name: a.name, decidedBy: d.decidedBy, reason: d.reason }
              : { kind: 'denied', name: a.name, decidedBy: d.decidedBy, reason: d.reason },
          );
        };
        const waiter: Waiter = {
          onChange: (change) => check(change.approval, change.deleted),
          takeOver: takenOver,
        };
        // Another hold of this process on the same approval (the same call twice at once): the
        // later one waits, as for a repeat.
        this.#waiters.get(approval.name)?.takeOver(me);
        this.#waiters.set(approval.name, waiter);
        // A repeat waits on an approval an earlier request left open: that request's late
        // cancellation no longer speaks for the approval (the repeat's own does).
        this.#endOpen(approval.name);
        const arm = (): void => {
          const left = expiresAtMs - this.#now();
          if (left <= 0) {
            settle({ kind: 'expired', name: approval.name });
            return;
          }
          timer = setTimeout(arm, Math.min(left, MAX_TIMER_MS));
        };
        // A verdict may have arrived before the waiter was registered (or, for an open hold taken
        // over, before its expiry: an approval can be used until one timeout past it).
        check(this.#o.store.get(approval.name) ?? approval, false);
        if (!done) arm();
        hooks.onCancel((reason, leaveOpen) =>
          settle({
            kind: 'cancelled',
            name: approval.name,
            reason,
            ...(leaveOpen ? { leftOpen: true } : {}),
          }),
        );
      });
      const gone = outcome.kind === 'approved' ? hooks.canRun?.() : undefined;
      if (gone !== undefined) outcome = { kind: 'cancelled', name: approval.name, reason: gone };
      // A verdict whose phase was written while nobody waited (a dropped connection, a restart) was
      // counted then: this run counts as `executed`, as a ticket's does.
      const verdictRecorded =
        outcome.kind === 'approved' && this.#o.store.get(approval.name)?.phase === 'Approved';
      if (outcome.kind === 'approved') {
        const claim = await this.#claimApproved(approval.name);
        if (claim !== undefined && 'takenOverBy' in claim) {
          outcome = {
            kind: 'cancelled',
            name: approval.name,
            reason: `the same call was repeated through ${claim.takenOverBy}, which now runs it`,
            takenOverBy: claim.takenOverBy,
          };
        } else if (claim !== undefined) {
          this.#count(policy, 'unavailable');
          return unavailable(claim.refused);
        }
      }
      await this.#finishHold(outcome, verdictRecorded);
      return outcome;
    } finally {
      this.#o.metrics.approvalsPending.dec({ policy });
    }
  }

  /**
   * Watch an approval a hold left open when its caller's connection closed (an outcome with
   * `leftOpen`), so that the caller can still cancel it: returns a handle while this pod looks
   * after it (not final, this pod its holder, no hold of this process waiting on it), else
   * undefined. `onEnd` is called once when the handle no longer speaks for the approval: it became
   * final or was deleted, a repeat took it over (here or through another replica), it is past its
   * usable time (one timeout past `expiresAt`), it was watched anew, or the broker closed.
   *
   * @example
   * const open = broker.watchOpen(outcome.name, () => cancellers.delete(key));
   * if (open) cancellers.set(key, () => void open.cancel('the client cancelled the request'));
   */
  watchOpen(name: string, onEnd: () => void): OpenApproval | undefined {
    const a = this.#lookedAfter(name);
    if (this.#closed || a === undefined) return undefined;
    this.#endOpen(name);
    const entry: { onEnd: () => void; timer: NodeJS.Timeout | undefined } = { onEnd, timer: undefined };
    this.#leftOpen.set(name, entry);
    const usableUntil = Date.parse(a.spec.expiresAt) + ownTimeoutMs(a);
    const arm = (): void => {
      if (this.#leftOpen.get(name) !== entry) return;
      const left = usableUntil - this.#now();
      if (!(left > 0)) {
        this.#endOpen(name);
        return;
      }
      entry.timer = setTimeout(arm, Math.min(left, MAX_TIMER_MS));
      entry.timer.unref();
    };
    arm();
    if (this.#leftOpen.get(name) !== entry) return undefined;
    return {
      cancel: async (reason) => (this.#leftOpen.get(name) === entry ? this.cancelOpen(name, reason) : false),
      forget: () => {
        if (this.#leftOpen.get(name) !== entry) return;
        clearTimeout(entry.timer);
        this.#leftOpen.delete(name);
      },
    };
  }

  /**
   * The caller cancels an approval its hold left open (a `notifications/cancelled` that came after
   * the connection closed, the session deleted): `Cancelled` is written on the version read, only
   * while this pod is its holder, no hold of this process waits on it (a repeat cancels through its
   * own request), and it is not final. Executed is never rewound; an approved, unused approval is
   * cancelled too (the caller said it does not want the call run). Resolves true when written: the
   * approval is no longer tracked as pending here, and counts as `cancelled`, once.
   */
  async cancelOpen(name: string, reason: string): Promise<boolean> {
    const a = this.#lookedAfter(name);
    if (a === undefined) return false;
    const me = this.#o.pod;
    const result = await this.#write(
      name,
      'Cancelled',
      reason,
      // A reviewer's denial stands: its phase may be on its way (#onChange), and is not overwritten.
      (now) =>
        holderOf(now) === me &&
        !this.#waiters.has(name) &&
        now.phase !== 'Executed' &&
        this.#decision(now)?.verdict !== 'Denied',
    );
    if (result !== 'written') return false;
    const policy = a.spec.policy;
    this.#untrackUnheld(name, policy);
    this.#endOpen(name);
    this.#count(policy, 'cancelled');
    this.#o.logger.info(
      { event: 'approval-cancelled', approval: name, reason },
      'the caller cancelled the call its approval was left open for',
    );
    return true;
  }

  /** An open approval this pod looks after with nobody here waiting on it. */
  #lookedAfter(name: string): StoredApproval | undefined {
    const a = this.#o.store.get(name);
    if (a === undefined || FinalApprovalPhases.has(a.phase ?? '')) return undefined;
    if (holderOf(a) !== this.#o.pod || this.#waiters.has(name)) return undefined;
    return a;
  }

  /** The left-open watch of `name` ends (its `onEnd` called once). */
  #endOpen(name: string): void {
    const entry = this.#leftOpen.get(name);
    if (entry === undefined) return;
    clearTimeout(entry.timer);
    this.#leftOpen.delete(name);
    entry.onEnd();
  }

  /**
   * Ticket mode: an approved, unused approval of this exact call is claimed (approved: run it);
   * a pending one is named again (no duplicate); otherwise a new approval is created (pending).
   */
  async ticket(call: HeldCallInput): Promise<ApprovalOutcome> {
    if (!this.#o.store.ready()) return unavailable('the approval store is not reachable');
    const digest = argumentsDigest(call.arguments);
    const timeoutMs = timeoutOf(call);
    for (let attempt = 0; attempt < 3; attempt++) {
      const now = this.#now();
      let pending: StoredApproval | undefined;
      let denied: StoredApproval | undefined;
      let grant: StoredApproval | undefined;
      for (const a of this.#o.store.list()) {
        if (!this.#sameCall(a, call, digest, 'ticket')) continue;
        const expiresAt = Date.parse(a.spec.expiresAt);
        const d = this.#decision(a);
        if (d === undefined) {
          if (!FinalApprovalPhases.has(a.phase ?? '') && now < expiresAt) pending = a;
          continue;
        }
        if (d.verdict === 'Denied') {
          if (now < expiresAt) denied = a;
          continue;
        }
        // Approved: usable once, until one timeout past the approval's own expiry.
        if (FinalApprovalPhases.has(a.phase ?? '') || now >= expiresAt + timeoutMs) continue;
        if (this.#o.trustedCreator !== undefined && a.createdBy !== this.#o.trustedCreator) continue;
        grant = a;
        break;
      }
      if (grant !== undefined) {
        const claimed = await this.#claim(
          grant,
          `run once for ${grant.spec.requester.principal} after approval`,
        );
        if (claimed) {
          const d = this.#decision(grant)!;
          this.#count(call.policy, 'executed');
          return { kind: 'approved', name: grant.name, decidedBy: d.decidedBy, reason: d.reason };
        }
        // Someone else ran it first, or it changed (a phase written meanwhile): look again once the
        // store has seen the change.
        await new Promise((r) => setTimeout(r, 100 * (attempt + 1)));
        continue;
      }
      if (denied !== undefined) {
        const d = this.#decision(denied)!;
        return { kind: 'denied', name: denied.name, decidedBy: d.decidedBy, reason: d.reason };
      }
      if (pending !== undefined)
        return { kind: 'pending', name: pending.name, expiresAt: pending.spec.expiresAt };
      const created = await this.#create(call, digest);
      if ('kind' in created) return created;
      this.#trackUnheld(created.approval);
      return { kind: 'pending', name: created.approval.name, expiresAt: created.approval.spec.expiresAt };
    }
    return unavailable('the approval changed while it was being claimed; repeat the call');
  }

  #sameCall(a: StoredApproval, call: HeldCallInput, digest: string, mode: 'hold' | 'ticket'): boolean {
    const s = a.spec;
    return (
      s.mode === mode &&
      s.server === this.#o.server &&
      s.argumentsDigest === digest &&
      s.requester.principal === call.principal &&
      s.policy === call.policy &&
      s.rule === call.rule &&
      s.method === call.method &&
      (s.tool ?? undefined) === call.tool &&
      (s.direction === 'server-to-client') === (call.direction === 'server-to-client')
    );
  }

  /**
   * The open hold of this exact call (same principal, server, policy, rule, method, tool and
   * arguments digest) the repeat should wait on: undecided and not expired, or approved and usable
   * (until one timeout past its expiry), whichever pod holds it. An approved one first (it runs at
   * once), else the one with the most time left, so replicas taking over at once pick the same. A
   * denied one is not taken over: the repeat asks again, as any repeat of a denied hold does. Only
   * approvals this data path created count, as for ticket grants.
   *
   * A server's request to the client cannot outlive the stream it came on: only one of this pod
   * that no hold of this process waits on is resumed, as before replicas could take holds over.
   */
  #openHoldOf(call: HeldCallInput, digest: string): StoredApproval | undefined {
    const now = this.#now();
    let best: { a: StoredApproval; approved: boolean; expiresAt: number } | undefined;
    for (const a of this.#o.store.list()) {
      if (!this.#sameCall(a, call, digest, 'hold') || FinalApprovalPhases.has(a.phase ?? '')) continue;
      if (this.#o.trustedCreator !== undefined && a.createdBy !== this.#o.trustedCreator) continue;
      if (call.direction === 'server-to-client' && (holderOf(a) !== this.#o.pod || this.#waiters.has(a.name)))
        continue;
      const expiresAt = Date.parse(a.spec.expiresAt);
      const d = this.#decision(a);
      const usable =
        d === undefined ? now < expiresAt : d.verdict === 'Approved' && now < expiresAt + timeoutOf(call);
      if (!usable) continue;
      const approved = d !== undefined;
      if (
        best === undefined ||
        (approved !== best.approved
          ? approved
          : expiresAt !== best.expiresAt
            ? expiresAt > best.expiresAt
            : a.name < best.a.name)
      )
        best = { a, approved, expiresAt };
    }
    return best?.a;
  }

  /**
   * The repeat of a held call takes its open approval over: names this pod the holder with a
   * write made only if the approval is unchanged since this view read it. Two replicas taking it
   * over at once: one write wins; the other looks again once its view caught up (and takes it
   * over from the winner: the latest repeat holds it). A hold this pod already holds needs no
   * write; a hold of this process waiting on it ends (the repeat replaces it).
   */
  async #takeOver(
    call: HeldCallInput,
    digest: string,
  ): Promise<StoredApproval | ApprovalOutcome | undefined> {
    const me = this.#o.pod;
    for (let attempt = 1; attempt <= 3; attempt++) {
      const open = this.#openHoldOf(call, digest);
      if (open === undefined) return undefined;
      const from = holderOf(open);
      if (from === me) {
        this.#waiters.get(open.name)?.takeOver(me);
        return open;
      }
      let moved: boolean;
      try {
        moved = await this.#o.store.setHolder(open.name, me, open.phase ?? 'Pending', open.resourceVersion);
      } catch (err) {
        this.#o.logger.error(
          { event: 'approval-takeover-failed', approval: open.name, err: errorMessage(err) },
          'could not take over a held call; it is refused',
        );
        this.#count(call.policy, 'unavailable');
        return unavailable('the approval the call waits on could not be taken over');
      }
      if (moved) {
        this.#waiters.get(open.name)?.takeOver(me);
        this.#o.logger.info(
          { event: 'approval-taken-over', approval: open.name, from, policy: call.policy, rule: call.rule },
          'a repeated call took over the approval another pod held',
        );
        return this.#o.store.get(open.name) ?? open;
      }
      // Changed since this view read it (taken over, decided, used): look again once it caught up.
      await new Promise((r) => setTimeout(r, 100 * attempt));
    }
    return unavailable('the approval changed while it was being taken over; repeat the call');
  }

  /**
   * Run-once for an approved hold: move it to Executed only if nobody changed it since it was read
   * and, in that version, this pod is its holder (retried while the view catches up with a change
   * it has not seen yet: a takeover made since it read it fails the write). Returns undefined when
   * the call may run, `takenOverBy` when a repeat holds it now, or why the call must be refused.
   */
  async #claimApproved(name: string): Promise<undefined | { refused: string } | { takenOverBy: string }> {
    for (let attempt = 1; attempt <= 5; attempt++) {
      const a = this.#o.store.get(name);
      if (a === undefined) return { refused: 'the approval was deleted' };
      // A repeat took it over since the verdict: the call runs there (or ran), not here.
      const holder = holderOf(a);
      if (holder !== this.#o.pod) return { takenOverBy: holder };
      if (a.phase === 'Executed')
        return { refused: `approval ${name} already ran its call for another request` };
      const d = this.#decision(a);
      if (FinalApprovalPhases.has(a.phase ?? '') || d?.verdict !== 'Approved')
        return { refused: `approval ${name} is ${a.phase ?? 'not approved'}` };
      if (await this.#claim(a, `approved by ${d.decidedBy}; the call was forwarded`)) return undefined;
      await new Promise((r) => setTimeout(r, 100 * attempt));
    }
    return {
      refused: `approval ${name} could not be recorded as used, so the call was not run (each approval runs its call once); repeat the call`,
    };
  }

  /** Created by this data path, as the admission webhook stamped it (no trusted creator: any). */
  #stamped(a: StoredApproval): boolean {
    const { trustedCreator } = this.#o;
    if (trustedCreator === undefined || a.createdBy === trustedCreator) return true;
    if (a.spec.decision !== undefined && !this.#warnedUnstampedCreator) {
      this.#warnedUnstampedCreator = true;
      this.#o.logger.warn(
        { event: 'approval-creator-unstamped', approval: a.name },
        'ignored a verdict on an approval the admission webhook did not stamp as created by this data path',
      );
    }
    return false;
  }

  #decision(a: StoredApproval): ReturnType<typeof decisionOf> {
    const d = decisionOf(a);
    const unacknowledged = d === undefined && !!a.spec.decision?.decidedBy && unacknowledgedMasks(a);
    if (unacknowledged && !this.#warnedUnacknowledged) {
      this.#warnedUnacknowledged = true;
      this.#o.logger.warn(
        { event: 'approval-masked-unacknowledged', approval: a.name },
        'ignored an approval of masked arguments without acknowledgeMaskedArguments: is the mcp-warden webhook up to date?',
      );
    }
    if (d === undefined && !unacknowledged && a.spec.decision !== undefined && !this.#warnedUnstamped) {
      this.#warnedUnstamped = true;
      this.#o.logger.warn(
        { event: 'approval-decision-unstamped', approval: a.name },
        'ignored an approval decision without decidedBy: decisions must pass the mcp-warden admission webhook',
      );
    }
    return d;
  }

  async #create(
    call: HeldCallInput,
    digest = argumentsDigest(call.arguments),
  ): Promise<{ approval: StoredApproval; expiresAtMs: number } | ApprovalOutcome> {
    const { store, logger } = this.#o;
    if (!store.ready()) return unavailable('the approval store is not reachable');
    const masked = JSON.stringify(call.maskedArguments ?? {});
    const max = this.#o.maxArgumentsBytes ?? 256 * 1024;
    if (Buffer.byteLength(masked) > max) {
      return unavailable(
        `the arguments are too large to be reviewed (${Buffer.byteLength(masked)} bytes, at most ${max})`,
      );
    }
    const refused = call.admit?.();
    if (refused !== undefined) return { kind: 'rate-limited', ...refused };
    const expiresAtMs = this.#now() + timeoutOf(call);
    const args = call.maskedArguments;
    const spec: MCPApprovalSpec = {
      policy: call.policy,
      rule: call.rule,
      pod: this.#o.pod,
      ...(this.#o.server !== undefined ? { server: this.#o.server } : {}),
      ...(call.session !== undefined ? { session: call.session } : {}),
      requester: {
        principal: call.principal,
        ...(call.user !== undefined ? { user: call.user } : {}),
        ...(call.appId !== undefined ? { appId: call.appId } : {}),
      },
      method: call.method,
      ...(call.tool !== undefined ? { tool: call.tool } : {}),
      ...(call.direction !== undefined ? { direction: call.direction } : {}),
      arguments: isJsonObject(args) ? args : { value: args ?? null },
      ...(call.hidden !== undefined ? { maskedArguments: call.hidden } : {}),
      argumentsDigest: digest,
      expiresAt: new Date(expiresAtMs).toISOString(),
      mode: call.settings.mode,
      approvers: call.settings.approvers,
    };
    let approval: StoredApproval;
    try {
      approval = await store.create(spec, {
        'app.kubernetes.io/managed-by': 'mcp-warden',
        'mcpwarden.io/mode': call.settings.mode,
      });
    } catch (err) {
      logger.error(
        { event: 'approval-create-failed', policy: call.policy, rule: call.rule, err: errorMessage(err) },
        'could not create an approval; the call is refused',
      );
      this.#count(call.policy, 'unavailable');
      return unavailable('the approval could not be requested');
    }
    this.#createdBeforeSweep?.add(approval.name);
    this.#count(call.policy, 'requested');
    // `kubectl get mcpa` shows the phase (and, for a hold, its holder): Pending from the start,
    // unless something (a verdict, an outcome, a takeover) changed the object first, which this
    // write then leaves alone.
    store
      .setPhase(
        approval.name,
        'Pending',
        'waiting for a reviewer',
        approval.resourceVersion,
        call.settings.mode === 'hold' ? { holder: this.#o.pod } : {},
      )
      .catch((err: unknown) =>
        logger.warn(
          {
            event: 'approval-status-failed',
            approval: approval.name,
            phase: 'Pending',
            err: errorMessage(err),
          },
          'could not write an approval phase',
        ),
      );
    logger.info(
      {
        event: 'approval-requested',
        approval: approval.name,
        policy: call.policy,
        rule: call.rule,
        method: call.method,
        tool: call.tool,
        mode: call.settings.mode,
        direction: call.direction ?? 'client-to-server',
      },
      'call held for approval',
    );
    return { approval, expiresAtMs };
  }

  /** Write the phase that ends a hold (the approved call is then run by the caller). */
  async #finishHold(outcome: ApprovalOutcome, verdictRecorded = false): Promise<void> {
    if (outcome.kind === 'pending' || outcome.kind === 'unavailable' || outcome.kind === 'rate-limited')
      return;
    const a = this.#o.store.get(outcome.name);
    const policy = a?.spec.policy ?? '';
    const mine = (now: StoredApproval): boolean => holderOf(now) === this.#o.pod;
    switch (outcome.kind) {
      case 'approved':
        // Executed was written by the claim.
        this.#count(policy, verdictRecorded ? 'executed' : 'approved');
        break;
      case 'denied':
        this.#count(policy, 'denied');
        await this.#write(
          outcome.name,
          'Denied',
          `denied by ${outcome.decidedBy ?? 'a reviewer'}`,
          (now) => this.#decision(now)?.verdict === 'Denied',
        );
        break;
      case 'expired':
        this.#count(policy, 'expired');
        await this.#write(
          outcome.name,
          'Expired',
          'no verdict before expiresAt; the call was refused',
          (now) => this.#decision(now) === undefined,
        );
        break;
      case 'cancelled':
        if (outcome.takenOverBy !== undefined) {
          // The approval goes on with its new holder, which writes what becomes of it.
          this.#o.logger.info(
            { event: 'approval-moved', approval: outcome.name, holder: outcome.takenOverBy },
            'the held call was repeated through another hold, which waits on the approval now',
          );
          break;
        }
        if (this.#closed && a !== undefined) {
          // Cut by this process stopping, not by the caller: its repeat waits on it again.
          this.#o.logger.info(
            { event: 'approval-left-open', approval: outcome.name, reason: 'the data path is stopping' },
            'the data path is stopping; the held call is left open for its repeat',
          );
          break;
        }
        if (outcome.leftOpen === true && a !== undefined) {
          // The caller's connection closed without cancelling: as when this process stops, the
          // approval stays open for its repeat (through any replica); until then this pod looks
          // after it like any approval nobody waits on.
          this.#o.logger.info(
            { event: 'approval-left-open', approval: outcome.name, reason: outcome.reason },
            "the caller's connection closed; the held call is left open for its repeat",
          );
          this.#keepUnheld(outcome.name);
          break;
        }
        if (a === undefined) {
          this.#count(policy, 'cancelled');
          break;
        }
        // Only while this pod still holds it: a repeat that took it over meanwhile (through
        // another replica) wins, and the write, made on the version read, fails and is not retried.
        if ((await this.#write(outcome.name, 'Cancelled', outcome.reason, mine)) !== 'moot')
          this.#count(policy, 'cancelled');
        break;
    }
  }

  /** Run-once: move an approved call's approval to Executed only if nobody changed it since we read it. */
  async #claim(a: StoredApproval, message: string): Promise<boolean> {
    try {
      return await this.#o.store.setPhase(a.name, 'Executed', message, a.resourceVersion);
    } catch (err) {
      this.#o.logger.error(
        { event: 'approval-claim-failed', approval: a.name, err: errorMessage(err) },
        'could not claim an approved call; it is refused',
      );
      return false;
    }
  }

  /**
   * Write a phase onto the version of the approval it was decided from, never blindly: a phase
   * written from a view that lags (this replica's watch behind another's claim or takeover) would
   * otherwise rewind an Executed approval to Approved, and its call could run again, or cancel an
   * approval a repeat holds now. A write that finds the approval changed re-reads it and gives up
   * once the phase no longer applies; a final phase is never overwritten.
   */
  async #write(
    name: string,
    phase: 'Denied' | 'Expired' | 'Cancelled' | 'Approved',
    message: string,
    applies: (a: StoredApproval) => boolean = () => true,
    options: PhaseWriteOptions = {},
  ): Promise<WriteResult> {
    for (let attempt = 1; attempt <= 5; attempt++) {
      const a = this.#o.store.get(name);
      if (a === undefined || FinalApprovalPhases.has(a.phase ?? '') || a.phase === phase || !applies(a))
        return 'moot';
      try {
        if (await this.#o.store.setPhase(name, phase, message, a.resourceVersion, options)) return 'written';
      } catch (err) {
        // The outcome stands (the call was refused or run); only the report is missing.
        this.#o.logger.warn(
          { event: 'approval-status-failed', approval: name, phase, err: errorMessage(err) },
          'could not write an approval phase',
        );
        return 'failed';
      }
      // Changed since this view read it: wait for the view to see the change, then decide again.
      await new Promise((r) => setTimeout(r, 100 * attempt));
    }
    this.#o.logger.warn(
      { event: 'approval-status-failed', approval: name, phase, err: 'it kept changing' },
      'could not write an approval phase',
    );
    return 'failed';
  }

  /**
   * A pending approval this pod holds that no caller waits on (a ticket, or a hold whose holder
   * process is gone): its verdict's phase is written when it comes; it expires on time.
   */
  #trackUnheld(a: StoredApproval): void {
    if (this.#expiry.has(a.name)) return;
    const policy = a.spec.policy;
    const expiresAtMs = Date.parse(a.spec.expiresAt);
    this.#o.metrics.approvalsPending.inc({ policy });
    const arm = (): void => {
      const left = expiresAtMs - this.#now();
      if (left > 0) {
        const t = setTimeout(arm, Math.min(left, MAX_TIMER_MS));
        t.unref();
        this.#expiry.set(a.name, t);
        return;
      }
      // Past expiresAt already when tracking began (a busy event loop, a restart after the
      // deadline): no timer was stored, so the gauge is given back here.
      if (this.#expiry.has(a.name)) this.#untrackUnheld(a.name, policy);
      else this.#o.metrics.approvalsPending.dec({ policy });
      const current = this.#o.store.get(a.name);
      if (
        current !== undefined &&
        this.#decision(current) === undefined &&
        !FinalApprovalPhases.has(current.phase ?? '')
      ) {
        this.#count(policy, 'expired');
        void this.#write(
          a.name,
          'Expired',
          'no verdict before expiresAt',
          (now) => this.#decision(now) === undefined,
        );
      }
    };
    arm();
  }

  /**
   * A hold of this pod that ended with nobody waiting, its approval left open: tracked as unheld
   * (expired at `expiresAt`, its verdict's phase written) unless it is no longer this pod's to look
   * after (final, taken over by a repeat elsewhere, or waited on again by a repeat here).
   */
  #keepUnheld(name: string): void {
    const a = this.#lookedAfter(name);
    if (a === undefined) return;
    this.#trackUnheld(a);
    // A verdict that came while the hold was ending reached no waiter: record it as one nobody waits on.
    this.#onChange({ approval: a, deleted: false });
  }

  #untrackUnheld(name: string, policy: string): void {
    const t = this.#expiry.get(name);
    if (t === undefined) return;
    clearTimeout(t);
    this.#expiry.delete(name);
    this.#o.metrics.approvalsPending.dec({ policy });
  }

  #onChange(change: ApprovalChange): void {
    const name = change.approval.name;
    if (
      this.#leftOpen.has(name) &&
      (change.deleted ||
        FinalApprovalPhases.has(change.approval.phase ?? '') ||
        holderOf(change.approval) !== this.#o.pod)
    )
      this.#endOpen(name);
    const waiter = this.#waiters.get(name);
    if (waiter !== undefined) {
      waiter.onChange(change);
      return;
    }
    const a = change.approval;
    if (!this.#expiry.has(a.name)) return;
    if (change.deleted) {
      this.#untrackUnheld(a.name, a.spec.policy);
      return;
    }
    if (holderOf(a) !== this.#o.pod) {
      // A repeat took it over through another replica, which writes what becomes of it now.
      this.#untrackUnheld(a.name, a.spec.policy);
      return;
    }
    const d = this.#decision(a);
    if (d === undefined) return;
    // A verdict nobody waits on (a ticket, a hold whose holder is gone): record it in the phase;
    // the grant is claimed when the requester repeats the call.
    this.#untrackUnheld(a.name, a.spec.policy);
    if (a.phase === undefined || a.phase === 'Pending') {
      this.#count(a.spec.policy, d.verdict === 'Approved' ? 'approved' : 'denied');
      void this.#write(
        a.name,
        d.verdict,
        d.verdict === 'Approved'
          ? `approved by ${d.decidedBy}; the requester may repeat the call once`
          : `denied by ${d.decidedBy}`,
        (now) => now.phase === undefined || now.phase === 'Pending',
      );
    }
  }

  #scheduleSweep(): void {
    if (this.#closed) return;
    const interval = this.#o.sweepIntervalMs ?? DEFAULT_SWEEP_INTERVAL_MS;
    this.#sweepTimer = setTimeout(() => {
      this.#sweep()
        .catch((err: unknown) =>
          this.#o.logger.warn(
            { event: 'approval-sweep-failed', err: errorMessage(err) },
            'approval sweep failed',
          ),
        )
        .finally(() => this.#scheduleSweep());
    }, interval);
    this.#sweepTimer.unref();
  }

  /**
   * The phases nobody else is left to write, for the open approvals of this server (created by
   * this data path's identity: the only ones it may write, as the webhook enforces) that no hold
   * or timer of this process looks after: their holder went away (a rollout replaced its pod, a
   * replica scaled down) or is late. A deadline or verdict is first left `sweepGraceMs` to the
   * approval's holder when that is another pod. Each write is made on the version it was decided
   * from (a live holder's, or another replica's, write meanwhile wins), at most SWEEP_WRITES a pass.
   *
   * - no verdict, past `expiresAt`: Expired (its time: `expiresAt`);
   * - Denied, the phase not written: Denied;
   * - Approved and unused one timeout past `expiresAt` (the approval's own timeout): Expired;
   *   before that, the phase not written: Approved (a repeat of the call can still use it).
   */
  async #sweep(): Promise<void> {
    const { store } = this.#o;
    if (!store.ready()) return;
    const now = this.#now();
    const grace = this.#o.sweepGraceMs ?? DEFAULT_SWEEP_GRACE_MS;
    const due: Array<{
      a: StoredApproval;
      phase: 'Expired' | 'Denied' | 'Approved';
      message: string;
      applies: (now: StoredApproval) => boolean;
      at?: number;
    }> = [];
    const open = new Set<string>();
    for (const a of store.list()) {
      if (a.spec.server !== this.#o.server || FinalApprovalPhases.has(a.phase ?? '')) continue;
      if (this.#o.trustedCreator !== undefined && a.createdBy !== this.#o.trustedCreator) continue;
      open.add(a.name);
      if (this.#waiters.has(a.name) || this.#expiry.has(a.name)) continue;
      const wait = holderOf(a) === this.#o.pod ? 0 : grace;
      const expiresAt = Date.parse(a.spec.expiresAt);
      const d = this.#decision(a);
      if (d === undefined) {
        if (now >= expiresAt + wait)
          due.push({
            a,
            phase: 'Expired',
            message: `no verdict before expiresAt; nobody held the call any more (written by ${this.#o.pod})`,
            applies: (x) => this.#decision(x) === undefined,
            at: expiresAt,
          });
        continue;
      }
      const seen = this.#verdictSeen.get(a.name) ?? now;
      this.#verdictSeen.set(a.name, seen);
      if (d.verdict === 'Denied') {
        if (now >= seen + wait)
          due.push({
            a,
            phase: 'Denied',
            message: `denied by ${d.decidedBy}`,
            applies: (x) => this.#decision(x)?.verdict === 'Denied',
          });
        continue;
      }
      const usableUntil = expiresAt + ownTimeoutMs(a);
      if (now >= usableUntil + wait)
        due.push({
          a,
          phase: 'Expired',
          message: `approved by ${d.decidedBy}, but the call was not repeated in time to use it`,
          applies: (x) => this.#decision(x)?.verdict === 'Approved',
          at: usableUntil,
        });
      else if ((a.phase === undefined || a.phase === 'Pending') && now >= seen + wait)
        due.push({
          a,
          phase: 'Approved',
          message: `approved by ${d.decidedBy}; the requester may repeat the call once`,
          applies: (x) => x.phase === undefined || x.phase === 'Pending',
        });
    }
    for (const name of [...this.#verdictSeen.keys()]) if (!open.has(name)) this.#verdictSeen.delete(name);
    for (const w of due.slice(0, SWEEP_WRITES)) {
      if (this.#closed || !store.ready()) return;
      const result = await this.#write(
        w.a.name,
        w.phase,
        w.message,
        w.applies,
        w.at !== undefined ? { transitionTime: new Date(w.at).toISOString() } : {},
      );
      if (result !== 'written') continue;
      // Whoever writes a phase nobody waited for counts it (a repeat that runs an Approved one
      // counts `executed`).
      this.#count(w.a.spec.policy, w.phase.toLowerCase());
      this.#o.logger.info(
        { event: 'approval-swept', approval: w.a.name, phase: w.phase, holder: holderOf(w.a) },
        'wrote the phase of an approval its holder did not',
      );
    }
  }

  #count(policy: string, outcome: string): void {
    this.#o.metrics.approvals.inc({ policy, outcome });
  }
}

function timeoutOf(call: HeldCallInput): number {
  return parseDuration(call.settings.timeout) ?? DEFAULT_TIMEOUT_MS;
}

function unavailable(reason: string): ApprovalOutcome {
  return { kind: 'unavailable', reason };
}
