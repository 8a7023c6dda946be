import { errorMessage } from '../errors.js';
import { isJsonObject } from '../json.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics/catalogue.js';
import { parseDuration } from '../policy/duration.js';
import { FinalApprovalPhases, type MCPApprovalSpec } from '../policy/schema.js';
import { argumentsDigest } from './digest.js';
import type {
  ApprovalChange,
  ApprovalOutcome,
  ApprovalStore,
  HeldCallInput,
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
  now?: () => number;
}

/** The data path's side of one hold. */
export interface HoldHooks {
  /** Registers what cancels the hold (the client went away or cancelled the request), and why. */
  onCancel(listener: (reason: string) => void): void;
  /** Called once the approval exists (the client can be told its name). */
  onCreated?(name: string, expiresAt: string): void;
  /**
   * Asked once a reviewer approved, before the approval is claimed (Executed): a reason returned
   * means the call can no longer be run (a held server request has no stream left to reach its
   * client on), and the hold ends Cancelled with that reason instead of using the approval.
   */
  canRun?(): string | undefined;
}

const DEFAULT_TIMEOUT_MS = 5 * 60_000;
/** setTimeout's longest delay; later deadlines are reached in steps. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** A verdict the webhook admitted: Approved or Denied, stamped with who decided. */
function decisionOf(
  a: StoredApproval,
): { verdict: 'Approved' | 'Denied'; decidedBy: string; reason?: string } | undefined {
  const d = a.spec.decision;
  if (d === undefined || (d.verdict !== 'Approved' && d.verdict !== 'Denied')) return undefined;
  // No decidedBy: the decision did not pass through the webhook (not installed, or bypassed).
  if (typeof d.decidedBy !== 'string' || d.decidedBy === '') return undefined;
  return { verdict: d.verdict, decidedBy: d.decidedBy, ...(d.reason ? { reason: d.reason } : {}) };
}

/**
 * The approval broker: turns an `approve` decision into an `MCPApproval` and the reviewer's verdict
 * back into "run it" or an error, for both modes of the contract:
 *
 * - `hold`: create the approval, keep the caller waiting until a verdict, the timeout or the
 *   caller leaving; write the phase (Executed, Denied, Expired, Cancelled). A hold outlives the
 *   process holding it: the caller's repeat of the same call on this pod waits on it again.
 * - `ticket`: answer at once with the approval's name; when the same principal repeats the same
 *   call (same policy, rule, method, tool and arguments digest) after approval, it runs once.
 *
 * Either way an approved call runs once: its phase moves to Executed with an "only if unchanged"
 * write before it runs, so two replicas, or a process and its successor, cannot both run it.
 *
 * Fail closed: when the store is not current or cannot create, the call is refused.
 */
export class ApprovalBroker {
  readonly #o: BrokerOptions;
  readonly #now: () => number;
  readonly #waiters = new Map<string, (change: ApprovalChange) => void>();
  /** Expiry timers of this pod's pending ticket approvals. */
  readonly #expiry = new Map<string, NodeJS.Timeout>();
  readonly #unsubscribe: () => void;
  #warnedUnstamped = false;
  #warnedUnstampedCreator = false;
  #closed = false;
  /** Approvals this process created before its restart sweep ran (the sweep leaves them alone). */
  #createdBeforeSweep: Set<string> | undefined = new Set();

  constructor(options: BrokerOptions) {
    this.#o = options;
    this.#now = options.now ?? Date.now;
    this.#unsubscribe = options.store.subscribe((change) => this.#onChange(change));
  }

  /**
   * After the store's first sync: this pod's pending approvals that no caller waits on, its tickets
   * and the holds the previous process held (their callers went away with it), get their expiry
   * timers back and, when a verdict comes, their phase. Such a hold stays open for its caller's
   * repeat of the same call, which waits on it (see {@link hold}).
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
      if (a.spec.pod !== this.#o.pod || FinalApprovalPhases.has(a.phase ?? '') || mine.has(a.name)) continue;
      if (this.#waiters.has(a.name) || this.#expiry.has(a.name)) continue;
      if (this.#decision(a) !== undefined) continue;
      this.#trackUnheld(a);
    }
    this.#o.logger.info(
      { event: 'approvals-synced', open: this.#expiry.size },
      'approvals synced: open approvals of this pod wait for a verdict or a repeat',
    );
  }

  /**
   * The process is stopping: from now on, a hold that ends because its connection closes is left
   * open (Pending, not Cancelled) for its caller's repeat to the next process of this pod. Close
   * the broker before the data path drops its connections.
   */
  async close(): Promise<void> {
    this.#closed = true;
    this.#unsubscribe();
    for (const t of this.#expiry.values()) clearTimeout(t);
    this.#expiry.clear();
  }

  /**
   * Hold mode: resolves with the verdict, the expiry, or a cancellation. When the same principal's
   * earlier hold of this exact call is still open on this pod with nobody waiting on it (its holder
   * was a previous process of the pod), the call waits on that approval instead of asking again;
   * if a reviewer approved it meanwhile, the call runs at once. An approved call runs once: it is
   * only run after the approval moved to Executed with a write that succeeds only if nobody changed
   * the approval since it was read; when that write fails the call is refused (fail closed) and the
   * approval stays Approved for a repeat.
   */
  async hold(call: HeldCallInput, hooks: HoldHooks): Promise<ApprovalOutcome> {
    if (!this.#o.store.ready()) return unavailable('the approval store is not reachable');
    const digest = argumentsDigest(call.arguments);
    let approval: StoredApproval;
    let expiresAtMs: number;
    const open = this.#openHoldOf(call, digest);
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
          this.#waiters.delete(approval.name);
          resolve(o);
        };
        const check = (a: StoredApproval | undefined, deleted: boolean): void => {
          if (deleted || a === undefined) {
            settle({ kind: 'cancelled', name: approval.name, reason: 'the approval was deleted' });
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
        this.#waiters.set(approval.name, (change) => check(change.approval, change.deleted));
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
        hooks.onCancel((reason) => settle({ kind: 'cancelled', name: approval.name, reason }));
      });
      const gone = outcome.kind === 'approved' ? hooks.canRun?.() : undefined;
      if (gone !== undefined) outcome = { kind: 'cancelled', name: approval.name, reason: gone };
      if (outcome.kind === 'approved') {
        const refused = await this.#claimApproved(outcome.name);
        if (refused !== undefined) {
          this.#count(policy, 'unavailable');
          return unavailable(refused);
        }
      }
      await this.#finishHold(outcome);
      return outcome;
    } finally {
      this.#o.metrics.approvalsPending.dec({ policy });
    }
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
   * An open hold of this exact call on this pod that no caller waits on (its holder went away with
   * a previous process, or its final phase could not be written): undecided and not expired, or
   * approved and usable (until one timeout past its expiry). A denied one is not taken over: the
   * repeat asks again, as any repeat of a denied hold does. Only approvals this data path created
   * count, as for ticket grants.
   */
  #openHoldOf(call: HeldCallInput, digest: string): StoredApproval | undefined {
    const now = this.#now();
    for (const a of this.#o.store.list()) {
      if (a.spec.pod !== this.#o.pod || !this.#sameCall(a, call, digest, 'hold')) continue;
      if (this.#waiters.has(a.name) || FinalApprovalPhases.has(a.phase ?? '')) continue;
      if (this.#o.trustedCreator !== undefined && a.createdBy !== this.#o.trustedCreator) continue;
      const expiresAt = Date.parse(a.spec.expiresAt);
      const d = this.#decision(a);
      if (d === undefined ? now < expiresAt : d.verdict === 'Approved' && now < expiresAt + timeoutOf(call))
        return a;
    }
    return undefined;
  }

  /**
   * Run-once for an approved hold: move it to Executed only if nobody changed it since it was read
   * (retried while the view catches up with a change it has not seen yet). Returns why the call
   * must be refused, or undefined when it may run.
   */
  async #claimApproved(name: string): Promise<string | undefined> {
    for (let attempt = 1; attempt <= 5; attempt++) {
      const a = this.#o.store.get(name);
      if (a === undefined) return 'the approval was deleted';
      if (a.phase === 'Executed') return `approval ${name} already ran its call for another request`;
      const d = this.#decision(a);
      if (FinalApprovalPhases.has(a.phase ?? '') || d?.verdict !== 'Approved')
        return `approval ${name} is ${a.phase ?? 'not approved'}`;
      if (await this.#claim(a, `approved by ${d.decidedBy}; the call was forwarded`)) return undefined;
      await new Promise((r) => setTimeout(r, 100 * attempt));
    }
    return `approval ${name} could not be recorded as used, so the call was not run (each approval runs its call once); repeat the call`;
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
    if (d === undefined && a.spec.decision !== undefined && !this.#warnedUnstamped) {
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
    // `kubectl get mcpa` shows the phase: Pending from the start, unless something (a verdict, an
    // outcome) changed the object first, which this write then leaves alone.
    store
      .setPhase(approval.name, 'Pending', 'waiting for a reviewer', approval.resourceVersion)
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
  async #finishHold(outcome: ApprovalOutcome): Promise<void> {
    if (outcome.kind === 'pending' || outcome.kind === 'unavailable' || outcome.kind === 'rate-limited')
      return;
    const a = this.#o.store.get(outcome.name);
    const policy = a?.spec.policy ?? '';
    switch (outcome.kind) {
      case 'approved':
        // Executed was written by the claim.
        this.#count(policy, 'approved');
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
        if (this.#closed && a !== undefined) {
          // Cut by this process stopping, not by the caller: its repeat waits on it again.
          this.#o.logger.info(
            { event: 'approval-left-open', approval: outcome.name },
            'the data path is stopping; the held call is left open for its repeat',
          );
          break;
        }
        this.#count(policy, 'cancelled');
        if (a !== undefined) await this.#write(outcome.name, 'Cancelled', outcome.reason);
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
   * written from a view that lags (this replica's watch behind another's claim) would otherwise
   * rewind an Executed approval to Approved, and its call could run again. A write that finds the
   * approval changed re-reads it and gives up once the phase no longer applies; a final phase is
   * never overwritten.
   */
  async #write(
    name: string,
    phase: 'Denied' | 'Expired' | 'Cancelled' | 'Approved',
    message: string,
    applies: (a: StoredApproval) => boolean = () => true,
  ): Promise<void> {
    for (let attempt = 1; attempt <= 5; attempt++) {
      const a = this.#o.store.get(name);
      if (a === undefined || FinalApprovalPhases.has(a.phase ?? '') || a.phase === phase || !applies(a))
        return;
      try {
        if (await this.#o.store.setPhase(name, phase, message, a.resourceVersion)) return;
      } catch (err) {
        // The outcome stands (the call was refused or run); only the report is missing.
        this.#o.logger.warn(
          { event: 'approval-status-failed', approval: name, phase, err: errorMessage(err) },
          'could not write an approval phase',
        );
        return;
      }
      // Changed since this view read it: wait for the view to see the change, then decide again.
      await new Promise((r) => setTimeout(r, 100 * attempt));
    }
    this.#o.logger.warn(
      { event: 'approval-status-failed', approval: name, phase, err: 'it kept changing' },
      'could not write an approval phase',
    );
  }

  /**
   * A pending approval of this pod no caller waits on (a ticket, or a hold whose holder is gone):
   * its verdict's phase is written when it comes; it expires on time.
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
      this.#untrackUnheld(a.name, policy);
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

  #untrackUnheld(name: string, policy: string): void {
    const t = this.#expiry.get(name);
    if (t === undefined) return;
    clearTimeout(t);
    this.#expiry.delete(name);
    this.#o.metrics.approvalsPending.dec({ policy });
  }

  #onChange(change: ApprovalChange): void {
    const waiter = this.#waiters.get(change.approval.name);
    if (waiter !== undefined) {
      waiter(change);
      return;
    }
    const a = change.approval;
    if (!this.#expiry.has(a.name)) return;
    if (change.deleted) {
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
