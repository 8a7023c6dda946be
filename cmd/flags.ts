/**
 * Flag values shared by the servers' command lines (gateway and sidecar): parsed, or ERR_CONFIG
 * naming the flag and what is wrong.
 */
import { ErrorCodes, errorMessage, WardenError } from '../pkg/errors.js';
import { durationError, parseDuration } from '../pkg/policy/duration.js';
import { parseOrigins } from '../pkg/proxy/origins.js';

/** A duration (`90s`, `15m`; 1s to 168h) in ms. */
export function durationFlag(value: string, flag: string): number {
  const problem = durationError(value);
  if (problem !== undefined) throw new WardenError(ErrorCodes.config, `${flag}: ${problem}`);
  return parseDuration(value) as number;
}

/** Comma-separated web origins, each exactly as browsers send `Origin`. */
export function originsFlag(value: string, flag: string): string[] {
  try {
    return parseOrigins(value);
  } catch (err) {
    throw new WardenError(ErrorCodes.config, `${flag}: ${errorMessage(err)}`);
  }
}
