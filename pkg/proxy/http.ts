import type { ServerResponse } from 'node:http';
import { errorResponse, type JsonRpcId } from '../mcp/jsonrpc.js';
import { serializeSseEvent } from '../mcp/sse.js';

/** Send a JSON body with an explicit length (no chunking for small answers). */
export function sendJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers?: Record<string, string>,
): void {
  sendJsonText(res, status, JSON.stringify(body), headers);
}

/** `sendJson` for a body already serialized. */
export function sendJsonText(
  res: ServerResponse,
  status: number,
  text: string,
  headers?: Record<string, string>,
): void {
  if (res.headersSent) {
    // The answer is already an event stream (a call held for approval): the message is its last event.
    const ct = res.getHeader('content-type');
    if (typeof ct === 'string' && ct.startsWith('text/event-stream') && !res.writableEnded) {
      res.end(serializeSseEvent({ event: 'message', data: text }));
    } else res.end();
    return;
  }
  res.statusCode = status;
  res.setHeader('content-type', 'application/json');
  res.setHeader('content-length', Buffer.byteLength(text));
  if (headers) for (const k in headers) res.setHeader(k, headers[k]!);
  res.end(text);
}

/** Send a JSON-RPC error as the whole HTTP answer. */
export function sendRpcError(
  res: ServerResponse,
  status: number,
  id: JsonRpcId | null,
  code: number,
  message: string,
  data?: unknown,
  headers?: Record<string, string>,
): void {
  sendJson(res, status, errorResponse(id, code, message, data), headers);
}

/** Header value as a single string (first of repeated headers). */
export function header(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}
