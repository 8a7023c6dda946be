/**
 * The client's calls held for approval that it can still cancel, by scope (its session, or its
 * principal without one) and request id: the calls held now, and the approvals their requests left
 * open when the connection closed (the approval waits for the client's repeat; a
 * `notifications/cancelled` naming the request that arrives later, or the session's `DELETE`,
 * still cancels it). A left-open entry goes when its approval ends or a repeat takes it over (the
 * broker's `watchOpen`), when the session ends, or when its scope has MAX_LEFT_OPEN newer ones.
 */

import type { Identity } from '../identity/types.js';
import type { Session } from './session.js';

/** Left-open approvals remembered per session (or principal), newest kept. */
export const MAX_LEFT_OPEN = 64;

/** What cancels one call. */
export interface HeldCall {
  /** Cancel the call (or the approval its request left open), saying why. */
  cancel(reason: string): void;
  /** Set for an approval left open by a dropped connection (HeldCall.cancel writes it Cancelled). */
  leftOpen?: {
    /** Stop looking after it (no cancel): the approval goes on as before. */
    forget(): void;
  };
}

/** Who may cancel a held request: the same session or, without one, the same principal. */
export function heldScope(ctx: { session: Session | undefined; identity: Identity }): string {
  return ctx.session ? `s:${ctx.session.id}` : `p:${ctx.identity.principal}`;
}

export class HeldCalls {
  readonly #scopes = new Map<string, Map<string, HeldCall>>();

  /**
   * Register `call` under scope and id; returns what removes this entry (and only it). An entry
   * already there is replaced (a left-open one forgotten), except that a left-open call never
   * replaces a held one: that is the request the client may cancel by this id now.
   */
  add(scope: string, id: string, call: HeldCall): () => void {
    let calls = this.#scopes.get(scope);
    if (calls === undefined) {
      calls = new Map();
      this.#scopes.set(scope, calls);
    }
    const there = calls.get(id);
    if (there !== undefined && call.leftOpen !== undefined && there.leftOpen === undefined) {
      call.leftOpen.forget();
      return () => undefined;
    }
    calls.delete(id);
    there?.leftOpen?.forget();
    if (call.leftOpen !== undefined) {
      let left = 0;
      for (const c of calls.values()) if (c.leftOpen !== undefined) left++;
      for (const [oldId, c] of calls) {
        if (left < MAX_LEFT_OPEN) break;
        if (c.leftOpen === undefined) continue;
        calls.delete(oldId);
        c.leftOpen.forget();
        left--;
      }
    }
    calls.set(id, call);
    const owner = calls;
    return () => {
      if (owner.get(id) !== call) return;
      owner.delete(id);
      if (owner.size === 0 && this.#scopes.get(scope) === owner) this.#scopes.delete(scope);
    };
  }

  /** The client cancelled request `id` (`notifications/cancelled`): a left-open entry is used up. */
  cancel(scope: string, id: string, reason: string): void {
    const calls = this.#scopes.get(scope);
    const call = calls?.get(id);
    if (call === undefined) return;
    if (call.leftOpen !== undefined) {
      calls!.delete(id);
      if (calls!.size === 0) this.#scopes.delete(scope);
    }
    call.cancel(reason);
  }

  /**
   * The scope's session ended. `cancelWith` (the client ended it: `DELETE`): every call held or
   * left open in it is cancelled with that reason. Without it (the session expired idle, the
   * upstream forgot it, the process stops): the left-open approvals are forgotten, not cancelled
   * (a crashed client's repeat still finds them), and held calls go on until their own end.
   */
  end(scope: string, cancelWith?: string): void {
    const calls = this.#scopes.get(scope);
    if (calls === undefined) return;
    for (const [id, call] of [...calls]) {
      if (call.leftOpen === undefined && cancelWith === undefined) continue;
      calls.delete(id);
      if (cancelWith !== undefined) call.cancel(cancelWith);
      else call.leftOpen?.forget();
    }
    if (calls.size === 0 && this.#scopes.get(scope) === calls) this.#scopes.delete(scope);
  }

  /** How many calls the scope has (held and left open). */
  size(scope: string): number {
    return this.#scopes.get(scope)?.size ?? 0;
  }
}
