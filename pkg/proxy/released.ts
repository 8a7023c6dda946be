import { serializeSseEvent } from '../mcp/sse.js';

/**
 * Server→client requests a reviewer released (hold-server.ts), kept per session as events of the
 * client stream they were written on, so that a client resuming that stream (`Last-Event-ID`)
 * gets them again, like every other event of the stream.
 *
 * The upstream replays its own events; these ones it never sent. Each gets an event id made from
 * its place in the stream: the upstream id of the event written just before it, and a sequence
 * number (`<upstream id>~w<n>`, carrying the caller's prefix like every relayed id). On resume
 * from an upstream id the releases that followed it are written first, and each event the
 * upstream replays is followed by the releases that followed it; a resume from a release's own id
 * is forwarded to the upstream as the upstream id it follows.
 *
 * Replayed once at most, and never once the client answered it: the event ids the replay keys on
 * are the upstream's, and an upstream repeating one (on a live stream, or before ending a stream
 * the client then resumes) must not get a request a reviewer approved once delivered again and
 * again. Its text is dropped then; its id (for a resume naming it) and origin stay.
 *
 * @example
 * const id = released.add(stream.position, { event, requestKey }, json); // before writing the event
 * out += released.replayAfter(lastEventId, 0, idPrefix);         // on a resumed stream
 */
export class ReleasedEvents {
  /** Releases per session kept for replay (oldest forgotten first). */
  static readonly MAX = 256;
  #seq = 0;
  /** By own id (without the caller's prefix), in the order written. */
  readonly #byId = new Map<string, Release>();
  /** By the upstream event id each follows. */
  readonly #byAfter = new Map<string, Release[]>();
  /** The released requests as `<upstream id of the event that carried it>\0<request id key>`. */
  readonly #origins = new Set<string>();

  /**
   * Register a release written after the upstream event `after` (the stream's position); `origin`
   * is where the request came from (see isReleased). Returns its event id (without the caller's
   * prefix).
   */
  add(
    after: string,
    origin: { event: string | undefined; requestKey: string } | undefined,
    data: string,
  ): string {
    const seq = ++this.#seq;
    const id = `${after}~w${seq}`;
    const from = origin?.event === undefined ? undefined : `${origin.event}\0${origin.requestKey}`;
    const release: Release = { id, after, seq, origin: from, requestKey: origin?.requestKey, data };
    if (this.#byId.size >= ReleasedEvents.MAX) {
      const oldest = this.#byId.values().next().value;
      if (oldest !== undefined) this.delete(oldest.id);
    }
    this.#byId.set(id, release);
    const list = this.#byAfter.get(after);
    if (list === undefined) this.#byAfter.set(after, [release]);
    else list.push(release);
    if (from !== undefined) this.#origins.add(from);
    return id;
  }

  /** Forget a release (it could not be written after all). */
  delete(id: string): void {
    const release = this.#byId.get(id);
    if (release === undefined) return;
    this.#byId.delete(id);
    if (release.origin !== undefined) this.#origins.delete(release.origin);
    const list = this.#byAfter.get(release.after);
    if (list === undefined) return;
    const rest = list.filter((r) => r !== release);
    if (rest.length === 0) this.#byAfter.delete(release.after);
    else this.#byAfter.set(release.after, rest);
  }

  /** Where a release id sits: the upstream id it follows and its sequence number. */
  position(id: string): { after: string; seq: number } | undefined {
    const release = this.#byId.get(id);
    return release === undefined ? undefined : { after: release.after, seq: release.seq };
  }

  /**
   * True when the upstream event `event` carried the request `requestKey` (its id key) that was
   * already released: the upstream replays it to a client that resumed.
   */
  isReleased(event: string, requestKey: string): boolean {
    return this.#origins.has(`${event}\0${requestKey}`);
  }

  /**
   * The SSE text of the releases that followed upstream event `after` (past `afterSeq`), in order;
   * each is replayed once at most (see above).
   */
  replayAfter(after: string, afterSeq: number, idPrefix: string): string {
    const list = this.#byAfter.get(after);
    if (list === undefined) return '';
    let out = '';
    for (const r of list) {
      if (r.seq <= afterSeq || r.data === undefined) continue;
      out += serializeSseEvent({ id: idPrefix + r.id, event: 'message', data: r.data });
      r.data = undefined;
    }
    return out;
  }

  /** The client answered the request `requestKey` (its id key): it has it, and it is not replayed. */
  answered(requestKey: string): void {
    for (const r of this.#byId.values()) if (r.requestKey === requestKey) r.data = undefined;
  }
}

interface Release {
  id: string;
  after: string;
  seq: number;
  origin: string | undefined;
  requestKey: string | undefined;
  /** Undefined once replayed or answered: not replayed (again). */
  data: string | undefined;
}

/** Where a resumed stream starts: releases after this upstream id (and sequence) come first. */
export interface ResumePoint {
  after: string;
  seq: number;
}
