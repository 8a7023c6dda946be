/**
 * A client's event stream as the relay writing it lends it to other stages: text can be added to
 * it later (a server request a reviewer released, a keepalive comment while it waits), between
 * the events the relay writes, for as long as the relay streams.
 *
 * @example
 * const stream = new ClientStream();          // given to the relay in its OutboundContext
 * stream.write(serializeSseComment('hello')); // false once the relay finished
 */
export class ClientStream {
  #write: ((text: string) => boolean) | undefined;
  #ended = false;
  /**
   * The upstream id (without the caller's prefix) of the last event with an id written on it: where
   * text added now sits in the stream, for a client that resumes it (released.ts).
   */
  position: string | undefined;
  readonly #closeListeners = new Set<() => void>();

  /** The relay attaches its writer when it starts streaming (once). */
  attach(write: (text: string) => boolean): void {
    if (!this.#ended) this.#write = write;
  }

  /** The relay finished (either side closed): nothing more can be written. */
  detach(): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#write = undefined;
    for (const l of [...this.#closeListeners]) l();
    this.#closeListeners.clear();
  }

  /** True while a relay streams on it. */
  get open(): boolean {
    return this.#write !== undefined;
  }

  /** Add SSE text (whole events or comments). False when the stream is not open. */
  write(text: string): boolean {
    return this.#write?.(text) ?? false;
  }

  /** Called once when the relay finishes. Returns the unsubscribe. */
  onClose(listener: () => void): () => void {
    if (this.#ended) return () => undefined;
    this.#closeListeners.add(listener);
    return () => this.#closeListeners.delete(listener);
  }
}
