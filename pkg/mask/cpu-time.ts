/**
 * CPU time (user + system, ms) this process spent since `start`: the linear-time tests measure
 * work done, not wall time, so a machine shared with other jobs does not make them flaky.
 *
 * @example
 * const t = cpuStart(); work(); expect(cpuMs(t)).toBeLessThan(250);
 */
export function cpuStart(): NodeJS.CpuUsage {
  return process.cpuUsage();
}

export function cpuMs(start: NodeJS.CpuUsage): number {
  const d = process.cpuUsage(start);
  return (d.user + d.system) / 1000;
}
