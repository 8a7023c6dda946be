import v8 from 'node:v8';

/**
 * Start-up without V8's optimizing compiler (TurboFan), for the long-running commands.
 *
 * Start-up code runs once: resolving a hundred modules, validating and compiling the policies,
 * decoding re2js's case-folding tables for a `(?i)` pattern. A few of its loops still run long
 * enough for V8 to optimize them, and TurboFan's first compilation alone makes ~5.5 MiB of the
 * `node` binary (the compiler's own code) resident in every idle sidecar, for code that never runs
 * again. So the commands that serve (gateway, sidecar, webhook) turn TurboFan off until they are
 * ready, then back on: traffic gets the optimizing compiler as before (Maglev, the mid tier, stays
 * on throughout). The flag is read whenever V8 decides to optimize, so turning it back on takes
 * effect at once (`pkg/startup.test.ts` checks both directions in a child process). If a Node
 * version ever ignored the change, the cost would be start-up code left unoptimized (or, at
 * worst, a process on Maglev only: measured within noise of TurboFan on this data path).
 */
let held = false;
let timer: NodeJS.Timeout | undefined;

/** Turn TurboFan off until `releaseOptimizingCompiler()` (or `maxMs`, whichever comes first). */
export function holdOptimizingCompiler(maxMs = 60_000): void {
  if (held) return;
  try {
    v8.setFlagsFromString('--no-turbofan');
  } catch {
    return;
  }
  held = true;
  timer = setTimeout(releaseOptimizingCompiler, maxMs);
  timer.unref();
}

/** Start-up is over: TurboFan back on. A no-op when it was not held. */
export function releaseOptimizingCompiler(): void {
  if (!held) return;
  held = false;
  if (timer !== undefined) clearTimeout(timer);
  timer = undefined;
  v8.setFlagsFromString('--turbofan');
}

export function optimizingCompilerHeld(): boolean {
  return held;
}
