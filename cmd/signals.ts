/**
 * Shared by the long-running commands (gateway, sidecar, webhook, dev issuer): resolve with the
 * name of the first SIGTERM or SIGINT, then stop listening for both, so a second signal gets
 * Node's default behaviour (exit at once) while a graceful shutdown is under way.
 *
 * @example
 * const signal = await waitForStopSignal();
 * logger.info({ signal }, 'stopping');
 */
export function waitForStopSignal(): Promise<'SIGTERM' | 'SIGINT'> {
  return new Promise((resolve) => {
    const on = (s: 'SIGTERM' | 'SIGINT'): void => {
      process.off('SIGTERM', onTerm);
      process.off('SIGINT', onInt);
      resolve(s);
    };
    const onTerm = (): void => on('SIGTERM');
    const onInt = (): void => on('SIGINT');
    process.once('SIGTERM', onTerm);
    process.once('SIGINT', onInt);
  });
}
