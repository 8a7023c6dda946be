/**
 * MCP protocol versions the data path understands, and how to tell which one a request speaks.
 */
export const ProtocolVersions = {
  legacySse: '2024-11-05',
  batches: '2025-03-26',
  v2025_06_18: '2025-06-18',
  v2025_11_25: '2025-11-25',
  stateless: '2026-07-28',
} as const;
export type ProtocolVersion = (typeof ProtocolVersions)[keyof typeof ProtocolVersions];

export const KNOWN_VERSIONS: ReadonlySet<string> = new Set(Object.values(ProtocolVersions));

/** `_meta` key carrying the protocol version of a 2026-07-28 (stateless) request. */
export const PROTOCOL_VERSION_META_KEY = 'io.modelcontextprotocol/protocolVersion';

/** The first version of the stateless (per-request envelope) era. */
export const FIRST_STATELESS_VERSION = '2026-07-28';

/** Versions compare as dates (YYYY-MM-DD), so string order is time order. */
export function isStatelessVersion(v: string | undefined): boolean {
  return v !== undefined && /^\d{4}-\d{2}-\d{2}$/.test(v) && v >= FIRST_STATELESS_VERSION;
}

/** JSON-RPC batches were allowed up to and including 2025-03-26. */
export function allowsBatches(v: string | undefined): boolean {
  // Spec: without an MCP-Protocol-Version header and no other way to know, assume 2025-03-26.
  return v === undefined || v <= ProtocolVersions.batches;
}

/** The version claimed in a request's `_meta` envelope (2026-07-28+), if any. */
export function envelopeVersion(message: { params?: unknown }): string | undefined {
  const params = message.params;
  if (typeof params !== 'object' || params === null || Array.isArray(params)) return undefined;
  const meta = (params as Record<string, unknown>)['_meta'];
  if (typeof meta !== 'object' || meta === null) return undefined;
  const v = (meta as Record<string, unknown>)[PROTOCOL_VERSION_META_KEY];
  return typeof v === 'string' ? v : undefined;
}

/** Which body field `Mcp-Name` mirrors, per method (2026-07-28, SEP-2243). */
export const MCP_NAME_SOURCE: Readonly<Record<string, string>> = {
  'tools/call': 'name',
  'prompts/get': 'name',
  'resources/read': 'uri',
  'tasks/get': 'taskId',
  'tasks/update': 'taskId',
  'tasks/cancel': 'taskId',
};

const B64_PREFIX = '=?base64?';
const B64_SUFFIX = '?=';

/** Decode an `Mcp-Name` / `Mcp-Param-*` header value (plain, or `=?base64?…?=` for UTF-8). */
export function decodeMcpHeaderValue(v: string): string | undefined {
  if (v.startsWith(B64_PREFIX) && v.endsWith(B64_SUFFIX)) {
    const inner = v.slice(B64_PREFIX.length, v.length - B64_SUFFIX.length);
    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(inner)) return undefined;
    try {
      return new TextDecoder('utf-8', { fatal: true }).decode(Buffer.from(inner, 'base64'));
    } catch {
      return undefined;
    }
  }
  return v;
}
