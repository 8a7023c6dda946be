import type { JsonRpcResponse } from '../mcp/jsonrpc.js';

/** One held server request the proxy answered the server for itself (denied, expired, refused...). */
export interface SettledRequest {
  /** sha256 of the request's params without `_meta` (argumentsDigest): the same request, not just the same id. */
  digest: string;
  /** The approval that decided it, when one was asked for. */
  approval: string | undefined;
  /** The hold's outcome (`denied`, `expired`, `cancelled`, `unavailable`, ...). */
  outcome: string;
  /** What the server was answered; undefined when it is owed nothing (it cancelled the request). */
  answer: JsonRpcResponse | undefined;
  /** Whether the answer reached the server: on its way, accepted, or not delivered. */
  state: 'sending' | 'sent' | 'failed';
}

/**
 * The server→client requests of one session that were held for approval and answered by the proxy
 * (hold-server.ts), by request id key, so that the same request replayed by the upstream (a client
 * resuming the stream it came on with `Last-Event-ID`) gets its recorded outcome again instead of
 * a second approval. Request ids are unique within an MCP session; the params digest makes sure a
 * replay is the same request. Bounded: the oldest are forgotten first.
 *
 * @example
 * const entry = session.settled.add(idKey(msg.id), { digest, approval, outcome, answer, state: 'sending' });
 * session.settled.get(idKey(replayed.id), digestOf(replayed)); // the entry: not held again
 */
export class SettledServerRequests {
  /** Settled requests kept per session (oldest forgotten first). */
  static readonly MAX = 256;
  readonly #byKey = new Map<string, SettledRequest>();

  /** Remember a settled request; returns the entry kept (its `state` is updated in place). */
  add(requestKey: string, entry: SettledRequest): SettledRequest {
    this.#byKey.delete(requestKey);
    if (this.#byKey.size >= SettledServerRequests.MAX) {
      const oldest = this.#byKey.keys().next().value;
      if (oldest !== undefined) this.#byKey.delete(oldest);
    }
    this.#byKey.set(requestKey, entry);
    return entry;
  }

  /** The settled request with this id key and params digest, if any (another digest: another request). */
  get(requestKey: string, digest: string): SettledRequest | undefined {
    const entry = this.#byKey.get(requestKey);
    return entry?.digest === digest ? entry : undefined;
  }

  get size(): number {
    return this.#byKey.size;
  }
}
