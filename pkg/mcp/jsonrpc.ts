import { integerValue, isJsonObject, isRawNumber, numberText, parseJson, type RawNumber } from '../json.js';

/**
 * JSON-RPC 2.0 message classification and validation, strict: every message that reaches the
 * upstream went through `classifyMessage`. Anything that is not a well-formed request,
 * notification or response is refused with `-32600` before it can be forwarded.
 *
 * Messages are parsed losslessly (`parseJsonText`, pkg/json.ts): a number a double cannot carry
 * exactly is a `RawNumber` (an object to `typeof`), anywhere but in a valid id.
 *
 * @example
 * const json = parseJsonText(text);
 * const parsed = json.ok ? parseJsonRpc(json.value, { allowBatch: false }) : undefined;
 */
/** A request id: a string, or an integer a double holds exactly (|id| ≤ 2^53 - 1). */
export type JsonRpcId = string | number;

export interface JsonRpcRequest {
  jsonrpc: '2.0';
  id: JsonRpcId;
  method: string;
  params?: Record<string, unknown> | unknown[];
}

export interface JsonRpcNotification {
  jsonrpc: '2.0';
  method: string;
  params?: Record<string, unknown> | unknown[];
}

export interface JsonRpcErrorObject {
  code: number;
  message: string;
  data?: unknown;
}

export interface JsonRpcResponse {
  jsonrpc: '2.0';
  id: JsonRpcId | null;
  result?: unknown;
  error?: JsonRpcErrorObject;
}

export type JsonRpcMessage = JsonRpcRequest | JsonRpcNotification | JsonRpcResponse;

export const MessageKinds = {
  request: 'request',
  notification: 'notification',
  response: 'response',
} as const;
export type MessageKind = (typeof MessageKinds)[keyof typeof MessageKinds];

/** Standard JSON-RPC and mcp-warden error codes seen by clients (see docs/errors.md). */
export const RpcCodes = {
  parseError: -32700,
  invalidRequest: -32600,
  methodNotFound: -32601,
  invalidParams: -32602,
  internalError: -32603,
  /** 2026-07-28 (SEP-2243): `Mcp-Method` / `Mcp-Name` / `MCP-Protocol-Version` disagree with the body. */
  headerMismatch: -32020,
  /** The upstream MCP server could not be reached or answered with garbage. */
  upstreamError: -32002,
  unauthorized: -31401,
  denied: -31403,
  approvalExpired: -31408,
  approvalDenied: -31409,
  rateLimited: -31429,
  /** No valid policy is loaded (fail closed). */
  policyUnavailable: -31503,
} as const;

export type ClassifyResult =
  | { ok: true; kind: MessageKind; message: JsonRpcMessage }
  | { ok: false; id: JsonRpcId | null; reason: string };

const isPlainObject = isJsonObject;

function validId(id: unknown): id is JsonRpcId {
  // JSON-RPC allows null ids on responses only; MCP forbids null request ids. Numbers must be
  // finite integers (fractional ids are "SHOULD NOT" in JSON-RPC, and invite key confusion) that
  // a double holds exactly: a peer parsing with doubles (every JavaScript SDK) would answer
  // 9007199254740993 as 9007199254740992, an answer nobody could match to its request.
  return (typeof id === 'string' && id.length <= 256) || (typeof id === 'number' && Number.isSafeInteger(id));
}

/** Why an id is invalid: a clear word for an integer beyond what a double holds exactly. */
function idReason(id: unknown, allowed: string): string {
  const integer = typeof id === 'number' || isRawNumber(id) ? integerValue(id, 400) : undefined;
  if (integer === undefined) return `"id" must be ${allowed}`;
  const text = typeof id === 'number' ? String(id) : numberText(id as never);
  return `"id" ${text.slice(0, 64)} is an integer beyond ±(2^53 - 1), which JSON-RPC peers parsing numbers as doubles cannot tell from its neighbours: use a smaller integer or a string`;
}

/** Classify one JSON value as a request, notification or response, or say why it is invalid. */
export function classifyMessage(value: unknown): ClassifyResult {
  if (!isPlainObject(value))
    return { ok: false, id: null, reason: 'a JSON-RPC message must be a JSON object' };
  const rawId = value['id'];
  const echoId = validId(rawId) ? rawId : null;
  if (value['jsonrpc'] !== '2.0') return { ok: false, id: echoId, reason: '"jsonrpc" must be exactly "2.0"' };
  const hasMethod = 'method' in value;
  const hasId = 'id' in value;
  if (hasMethod) {
    const method = value['method'];
    if (typeof method !== 'string' || method.length === 0 || method.length > 256) {
      return {
        ok: false,
        id: echoId,
        reason: '"method" must be a non-empty string (at most 256 characters)',
      };
    }
    if ('result' in value || 'error' in value) {
      return { ok: false, id: echoId, reason: 'a request must not carry "result" or "error"' };
    }
    const params = value['params'];
    if (params !== undefined && !isPlainObject(params) && !Array.isArray(params)) {
      return { ok: false, id: echoId, reason: '"params" must be an object or an array when present' };
    }
    if (!hasId)
      return { ok: true, kind: MessageKinds.notification, message: value as unknown as JsonRpcNotification };
    if (!validId(rawId)) {
      return { ok: false, id: null, reason: idReason(rawId, 'a string or an integer (null is not allowed)') };
    }
    return { ok: true, kind: MessageKinds.request, message: value as unknown as JsonRpcRequest };
  }
  if (!hasId)
    return {
      ok: false,
      id: null,
      reason: 'a message needs "method" (request/notification) or "id" (response)',
    };
  if (rawId !== null && !validId(rawId))
    return { ok: false, id: null, reason: idReason(rawId, 'a string, an integer or null') };
  const hasResult = 'result' in value;
  const hasError = 'error' in value;
  if (hasResult === hasError) {
    return { ok: false, id: echoId, reason: 'a response must carry exactly one of "result" and "error"' };
  }
  if (hasError) {
    const err = value['error'];
    if (!isPlainObject(err) || !Number.isInteger(err['code']) || typeof err['message'] !== 'string') {
      return {
        ok: false,
        id: echoId,
        reason: '"error" must be an object with an integer "code" and a string "message"',
      };
    }
  }
  return { ok: true, kind: MessageKinds.response, message: value as unknown as JsonRpcResponse };
}

export interface ParsedItem {
  kind: MessageKind;
  message: JsonRpcMessage;
}

export type ParseResult =
  | { ok: true; batch: boolean; items: ParsedItem[] }
  | { ok: false; code: number; id: JsonRpcId | null; message: string };

/**
 * Validate a parsed JSON body: one message, or (when `allowBatch`) a non-empty array of them.
 * Any invalid element refuses the whole body, so nothing half-valid is forwarded.
 */
export function parseJsonRpc(
  value: unknown,
  options: { allowBatch: boolean; maxBatch?: number },
): ParseResult {
  if (Array.isArray(value)) {
    if (!options.allowBatch) {
      return {
        ok: false,
        code: RpcCodes.invalidRequest,
        id: null,
        message:
          'Invalid Request: JSON-RPC batches are only allowed with protocol version 2025-03-26 (or older)',
      };
    }
    if (value.length === 0)
      return { ok: false, code: RpcCodes.invalidRequest, id: null, message: 'Invalid Request: empty batch' };
    const max = options.maxBatch ?? 1000;
    if (value.length > max) {
      return {
        ok: false,
        code: RpcCodes.invalidRequest,
        id: null,
        message: `Invalid Request: batch larger than ${max}`,
      };
    }
    const items: ParsedItem[] = new Array(value.length);
    // Request ids must be unique within a batch: answers are matched to requests by id.
    const ids = new Set<string>();
    for (let i = 0; i < value.length; i++) {
      const r = classifyMessage(value[i]);
      if (!r.ok) {
        return {
          ok: false,
          code: RpcCodes.invalidRequest,
          id: r.id,
          message: `Invalid Request: batch element ${i}: ${r.reason}`,
        };
      }
      if (r.kind === MessageKinds.request) {
        const key = idKey((r.message as JsonRpcRequest).id);
        if (ids.has(key)) {
          return {
            ok: false,
            code: RpcCodes.invalidRequest,
            id: null,
            message: `Invalid Request: batch element ${i}: duplicate request id ${JSON.stringify((r.message as JsonRpcRequest).id)}`,
          };
        }
        ids.add(key);
      }
      items[i] = { kind: r.kind, message: r.message };
    }
    return { ok: true, batch: true, items };
  }
  const r = classifyMessage(value);
  if (!r.ok)
    return { ok: false, code: RpcCodes.invalidRequest, id: r.id, message: `Invalid Request: ${r.reason}` };
  return { ok: true, batch: false, items: [{ kind: r.kind, message: r.message }] };
}

/**
 * Parse JSON text losslessly (pkg/json.ts: a number a double cannot carry exactly stays a
 * `RawNumber`, so re-serializing loses no digit); or a -32700 description.
 */
export function parseJsonText(text: string): { ok: true; value: unknown } | { ok: false; message: string } {
  try {
    return { ok: true, value: parseJson(text) };
  } catch (err) {
    if (err instanceof RangeError)
      return { ok: false, message: 'Parse error: the body is nested too deeply; send flatter JSON' };
    const detail = err instanceof SyntaxError ? err.message : 'unparseable';
    return { ok: false, message: `Parse error: the body is not valid JSON (${detail})` };
  }
}

export function errorResponse(
  id: JsonRpcId | null,
  code: number,
  message: string,
  data?: unknown,
): JsonRpcResponse {
  const error: JsonRpcErrorObject = data === undefined ? { code, message } : { code, message, data };
  return { jsonrpc: '2.0', id, error };
}

/**
 * Map key for a request id (string and number ids never collide). A `RawNumber` (a `requestId`
 * naming an integer beyond 2^53, which no valid id is) gets its exact value's key: it matches
 * no request.
 */
export function idKey(id: JsonRpcId | RawNumber | null): string {
  if (typeof id === 'number') return `n:${id}`;
  if (typeof id === 'object' && id !== null) return `n:${numberText(id)}`;
  return `s:${id}`;
}
