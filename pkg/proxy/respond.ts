import type { ServerResponse } from 'node:http';
import { errorMessage, isWardenError } from '../errors.js';
import { isJsonObject, parseJson } from '../json.js';
import { idKey, type JsonRpcId, type JsonRpcResponse, RpcCodes } from '../mcp/jsonrpc.js';
import type { ProxyCore } from './core.js';
import { sendJson, sendJsonText, sendRpcError } from './http.js';
import {
  lostResponse,
  type OutboundContext,
  processServerMessage,
  processServerMessageJson,
} from './outbound.js';
import { relaySse } from './relay.js';
import type { ResumePoint } from './released.js';
import {
  discardUpstreamBody,
  FORWARD_RESPONSE_HEADERS,
  readUpstreamBody,
  type UpstreamResponse,
} from './upstream.js';

/**
 * The respond stage: turn the upstream's HTTP answer into the client's. `202` passes, JSON is
 * processed whole (and sent as the upstream's bytes when nothing changed), SSE is relayed event
 * by event, upstream failures become JSON-RPC errors with 502 / 504.
 */

export function copyResponseHeaders(up: UpstreamResponse, res: ServerResponse): void {
  // Already streaming (a call held for approval opened the answer as SSE): headers are gone.
  if (res.headersSent) return;
  for (const name of FORWARD_RESPONSE_HEADERS) {
    const v = up.headers[name];
    if (typeof v === 'string') res.setHeader(name, v);
  }
}

export function isSse(up: UpstreamResponse): boolean {
  const ct = up.headers['content-type'];
  return typeof ct === 'string' && ct.toLowerCase().startsWith('text/event-stream');
}

export function isJson(up: UpstreamResponse): boolean {
  const ct = up.headers['content-type'];
  return typeof ct === 'string' && ct.toLowerCase().startsWith('application/json');
}

/** Send the upstream's answer to the client: 202 passes, JSON is processed whole, SSE streamed. */
export async function deliver(
  core: ProxyCore,
  ctx: OutboundContext,
  up: UpstreamResponse,
  res: ServerResponse,
  refused: JsonRpcResponse[],
  requestIds: JsonRpcId[],
  batch: boolean,
): Promise<void> {
  // One request: what the server sends on its stream besides the answer belongs to that call.
  const call = !batch && requestIds.length === 1 ? ctx.pending.get(idKey(requestIds[0]!)) : undefined;
  if (call !== undefined) ctx.call = call;
  if (up.status >= 200 && up.status < 300 && isSse(up)) {
    if (!res.headersSent) {
      copyResponseHeaders(up, res);
      res.statusCode = 200;
      res.setHeader('content-type', 'text/event-stream');
      res.setHeader('cache-control', 'no-cache');
      res.setHeader('x-accel-buffering', 'no');
    }
    await relaySse(core, ctx, up, res, { prelude: refused, ownIds: requestIds, headerDelayMs: 2 });
    return;
  }
  if (
    up.status === 202 ||
    up.status === 204 ||
    (up.status >= 200 && up.status < 300 && requestIds.length === 0)
  ) {
    // Nobody reads this body: the client gets its answer now, the body is drained (bounded) meanwhile.
    void discardUpstreamBody(up.body, core.upstream.bodyTimeoutMs);
    if (refused.length > 0) {
      copyResponseHeaders(up, res);
      sendJson(res, 200, batch ? refused : refused[0]);
    } else if (res.headersSent) {
      res.end();
    } else {
      copyResponseHeaders(up, res);
      res.statusCode = 202;
      res.removeHeader('content-type');
      res.end();
    }
    return;
  }
  const id = batch ? null : (requestIds[0] ?? null);
  let raw: Buffer;
  try {
    raw = await readUpstreamBody(up.body, core.maxUpstreamBody, core.upstream.bodyTimeoutMs);
  } catch (err) {
    for (const rid of requestIds) ctx.pending.delete(idKey(rid));
    upstreamFailed(core, res, err, id);
    return;
  }
  if (up.status < 200 || up.status >= 300) {
    // Upstream refused (400 bad session, 404 expired session, 405, 5xx): pass its answer on,
    // but only as JSON we understand.
    copyResponseHeaders(up, res);
    const answer = errorAnswer(core, ctx, up.status, raw.toString('utf8'), id);
    for (const rid of requestIds) ctx.pending.delete(idKey(rid));
    sendJson(res, answer.status, answer.body);
    return;
  }
  if (!isJson(up)) {
    for (const id of requestIds) ctx.pending.delete(idKey(id));
    sendRpcError(
      res,
      502,
      batch ? null : (requestIds[0] ?? null),
      RpcCodes.upstreamError,
      `Upstream error: unexpected content type "${String(up.headers['content-type'])}"`,
      { code: 'ERR_UPSTREAM' },
    );
    return;
  }
  let value: unknown;
  try {
    // Lossless: a number a double cannot carry reaches the client as the upstream wrote it.
    value = parseJson(new TextDecoder('utf-8', { fatal: true }).decode(raw));
  } catch {
    for (const id of requestIds) ctx.pending.delete(idKey(id));
    sendRpcError(
      res,
      502,
      batch ? null : (requestIds[0] ?? null),
      RpcCodes.upstreamError,
      'Upstream error: the upstream answered with invalid JSON',
      { code: 'ERR_UPSTREAM' },
    );
    return;
  }
  // Each message serialized once (the recorder seals the same text); the array joined from them.
  const out: string[] = [];
  const values = Array.isArray(value) ? value : [value];
  for (const v of values) {
    const m = processServerMessageJson(core, ctx, v);
    if (m) out.push(m.json);
  }
  for (const id of requestIds) {
    const key = idKey(id);
    if (ctx.pending.has(key)) {
      ctx.pending.delete(key);
      out.push(JSON.stringify(lostResponse(id, 'the upstream did not answer this request')));
    }
  }
  for (const r of refused) out.push(JSON.stringify(r));
  copyResponseHeaders(up, res);
  // Always re-serialized, never the upstream's bytes: with duplicate keys the client's parser could
  // see a value the masker and the list filter never saw (`"content":[secret],"content":[ok]`).
  sendJsonText(res, 200, batch || out.length !== 1 ? `[${out.join(',')}]` : out[0]!);
}

/**
 * The answer passed on for an upstream HTTP error: a JSON-RPC error response goes through the
 * outbound stages (masked, recorded) like any answer, with the upstream's status; anything else (a
 * `result`, HTML, a stack trace) could carry unmasked or unfiltered data and is replaced by a plain
 * ERR_UPSTREAM error. That one keeps a 4xx status (404 tells a client to re-initialize, 405 that
 * there is no server stream) and turns anything else (5xx, a redirect) into 502.
 */
function errorAnswer(
  core: ProxyCore,
  ctx: OutboundContext,
  status: number,
  text: string,
  id: JsonRpcId | null,
): { status: number; body: unknown } {
  let body: unknown;
  try {
    body = parseJson(text);
  } catch {
    body = undefined;
  }
  if (isJsonObject(body) && 'error' in body && !('result' in body)) {
    const m = processServerMessage(core, ctx, body);
    if (m) return { status, body: m };
  }
  return {
    status: status >= 400 && status < 500 ? status : 502,
    body: {
      jsonrpc: '2.0',
      id,
      error: {
        code: RpcCodes.upstreamError,
        message: `Upstream error: the upstream answered HTTP ${status}`,
        data: { code: 'ERR_UPSTREAM', status },
      },
    },
  };
}

export function upstreamFailed(
  core: ProxyCore,
  res: ServerResponse,
  err: unknown,
  id: JsonRpcId | null,
): void {
  const message = isWardenError(err) ? err.message : `Upstream MCP server failed: ${errorMessage(err)}`;
  const timeout = isWardenError(err) && err.details?.['timeout'] === true;
  core.logger.warn({ event: 'upstream-failed', err: message }, 'upstream request failed');
  core.events.emit('upstream-error', { message });
  sendRpcError(res, timeout ? 504 : 502, id, RpcCodes.upstreamError, `Upstream error: ${message}`, {
    code: 'ERR_UPSTREAM',
  });
}

/**
 * The answer to a GET: the upstream's server stream, relayed until it ends or until `endAt`
 * (epoch ms, when the caller's token stops being accepted); an error status is passed on.
 */
export async function deliverStream(
  core: ProxyCore,
  ctx: OutboundContext,
  up: UpstreamResponse,
  res: ServerResponse,
  endAt: number,
  resume?: ResumePoint,
): Promise<void> {
  if (up.status === 200 && isSse(up)) {
    copyResponseHeaders(up, res);
    res.statusCode = 200;
    res.setHeader('content-type', 'text/event-stream');
    res.setHeader('cache-control', 'no-cache');
    res.setHeader('x-accel-buffering', 'no');
    res.flushHeaders();
    await relaySse(core, ctx, up, res, resume === undefined ? { endAt } : { endAt, resume });
    return;
  }
  // 405 (no server stream), 400, 404...: pass the status on with a JSON body.
  let text = '';
  try {
    text = (await readUpstreamBody(up.body, 64 * 1024, core.upstream.bodyTimeoutMs)).toString('utf8');
  } catch (err) {
    upstreamFailed(core, res, err, null);
    return;
  }
  const answer = errorAnswer(core, ctx, up.status, text, null);
  const allow = up.headers['allow'];
  const status = up.status >= 200 && up.status < 300 ? 502 : answer.status;
  sendJson(res, status, answer.body, typeof allow === 'string' ? { allow } : undefined);
}
