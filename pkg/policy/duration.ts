/**
 * Durations as Kubernetes and Go write them: one or more `<number><unit>` with units ms, s, m, h
 * (`90s`, `5m`, `1h30m`, `1.5h`).
 *
 * @example
 * parseDuration('1h30m'); // 5_400_000
 */
const part = /([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)/y;
const unitMs: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** The schema pattern of a duration (MCPPolicy approval timeouts). */
export const DurationPattern = '^([0-9]+(\\.[0-9]+)?(ms|s|m|h))+$';

/** Longest duration accepted anywhere in a policy (approval timeouts): 7 days. */
export const MaxDurationMs = 168 * 3_600_000;

/** Milliseconds, or undefined when `text` is not a duration. */
export function parseDuration(text: string): number | undefined {
  if (text.length === 0 || text.length > 64) return undefined;
  let total = 0;
  part.lastIndex = 0;
  while (part.lastIndex < text.length) {
    const m = part.exec(text);
    if (m === null) return undefined;
    total += Number(m[1]) * unitMs[m[2]!]!;
  }
  return total;
}

/** Why `text` is not an acceptable duration (positive, at most `max`), or undefined. */
export function durationError(text: string, maxMs = MaxDurationMs): string | undefined {
  const ms = parseDuration(text);
  if (ms === undefined)
    return `"${text}" is not a duration: use a number and a unit (ms, s, m, h), e.g. 90s, 5m, 1h30m`;
  if (ms < 1000) return `"${text}" is too short: at least 1s`;
  if (ms > maxMs) return `"${text}" is too long: at most ${maxMs / 3_600_000}h`;
  return undefined;
}
