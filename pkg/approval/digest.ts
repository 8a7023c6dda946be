import { createHash } from 'node:crypto';
import { isRawNumber, numberText } from '../json.js';

/**
 * Canonical JSON of a parsed JSON value (RFC 8785 for values that came from JSON.parse): object
 * keys sorted by UTF-16 code units, no whitespace, numbers and strings as ECMAScript serializes
 * them. Two calls with the same arguments in any key order get the same text. A number a double
 * cannot carry (pkg/json.ts `RawNumber`) is written as its exact value in the same layout
 * (`12345678901234567891`): never the text of another number, nor an object.
 */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') {
    // undefined (absent arguments) digests like null: both mean "no arguments".
    return value === undefined ? 'null' : JSON.stringify(value);
  }
  if (isRawNumber(value)) return numberText(value);
  if (Array.isArray(value)) return `[${value.map((v) => canonicalJson(v)).join(',')}]`;
  const obj = value as Record<string, unknown>;
  const keys = Object.keys(obj).sort();
  const parts: string[] = [];
  for (const k of keys) {
    if (obj[k] === undefined) continue;
    parts.push(`${JSON.stringify(k)}:${canonicalJson(obj[k])}`);
  }
  return `{${parts.join(',')}}`;
}

/** `sha256:<hex>` of the canonical arguments: binds a verdict to exactly one call. */
export function argumentsDigest(args: unknown): string {
  return `sha256:${createHash('sha256').update(canonicalJson(args)).digest('hex')}`;
}

/** A short, one-way stand-in for an MCP session id (session ids are bearer-like: never stored). */
export function sessionDigest(sessionId: string): string {
  return createHash('sha256').update(sessionId).digest('hex').slice(0, 16);
}
