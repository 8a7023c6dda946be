/**
 * CPU time (user + system, ms) this process spent since `start`: the linear-time tests measure
 * work done, not wall time, so a machine shared with other jobs does not make them flaky.
 *
 * @example
 * const t = cpuStart(); work(); expect(cpuMs(t)).toBeLessThan(LINEAR_BUDGET_MS);
 */
export function cpuStart(): NodeJS.CpuUsage {
  return process.cpuUsage();
}

export function cpuMs(start: NodeJS.CpuUsage): number {
  const d = process.cpuUsage(start);
  return (d.user + d.system) / 1000;
}

/**
 * The CPU budget of a linear-time test on its hostile input (about 100 KB, or a few MB where the
 * input is sized for it): far above what a linear scan takes (under 100 ms alone, 300 ms seen under
 * a full parallel test run, GC threads included), far below what backtracking or rescanning takes
 * (seconds to hours). It guards the shape of the work, not its speed: speed is measured in bench/.
 */
export const LINEAR_BUDGET_MS = 1000;
