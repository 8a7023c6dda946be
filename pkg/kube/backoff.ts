/**
 * Wait `ms` before the next attempt of a watch or request loop, or less when `signal` aborts (the
 * loop is closing). Never rejects.
 */
export function pause(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise<void>((resolve) => {
    if (signal.aborted) {
      resolve();
      return;
    }
    const done = (): void => {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const t = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
  });
}

/** Half to all of `delay`, at random: replicas that failed together do not retry together. */
export function jittered(delay: number): number {
  return delay / 2 + Math.random() * (delay / 2);
}
