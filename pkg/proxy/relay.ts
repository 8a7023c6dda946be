import { once } from 'node:events';
import type { ServerResponse } from 'node:http';
import { isWardenError } from '../errors.js';
import { idKey, type JsonRpcId, type JsonRpcMessage, type JsonRpcResponse } from '../mcp/jsonrpc.js';
import { type SseEvent, SseParser, serializeSseComment, serializeSseEvent } from '../mcp/sse.js';
import type { ProxyCore } from './core.js';
import { lostResponse, type OutboundContext, processServerMessage } from './outbound.js';
import type { UpstreamResponse } from './upstream.js';

export interface RelayOptions {
  /** Messages to send first (answers to requests the proxy itself refused). */
  prelude?: JsonRpcResponse[];
  /** Requests of this exchange: answered with an error if the stream breaks before their response. */
  ownIds?: readonly JsonRpcId[];
  /** Legacy SSE: rewrite the `endpoint` event's data (return undefined to end the stream). */
  onEndpoint?: (data: string) => string | undefined;
  /** Called once when the relay finishes (either side closed). */
  onDone?: (outcome: 'ended' | 'truncated' | 'client-closed') => void;
}

/**
 * Stream an upstream SSE body to the client event by event, never buffering the whole stream:
 * each event is parsed, its message(s) processed by the outbound stages, and re-serialized with
 * its `id:`, `event:` and `retry:` intact; comments (keepalives) pass through. A stream cut in the
 * middle of an event is detected, and requests of this exchange still unanswered get an error,
 * so the client never waits forever.
 */
export async function relaySse(
  core: ProxyCore,
  ctx: OutboundContext,
  upstream: UpstreamResponse,
  res: ServerResponse,
  options: RelayOptions = {},
): Promise<void> {
  const body = upstream.body;
  let clientClosed = false;
  const onClose = (): void => {
    if (!res.writableFinished) {
      clientClosed = true;
      body.destroy();
    }
  };
  res.on('close', onClose);
  if (options.prelude && options.prelude.length > 0) {
    let out = '';
    for (const m of options.prelude) out += serializeSseEvent({ event: 'message', data: JSON.stringify(m) });
    res.write(out);
  }
  const parser = new SseParser({ maxEventBytes: core.maxUpstreamBody });
  const idPrefix = core.eventIdPrefix(ctx.identity.principal);
  const decoder = new TextDecoder('utf-8', { fatal: true });
  let truncated = false;
  let reason = 'the upstream event stream broke';
  try {
    for await (const chunk of body) {
      const items = parser.push(decoder.decode(chunk, { stream: true }));
      if (items.length === 0) continue;
      let out = '';
      for (const item of items) {
        if (item.type === 'comment') out += serializeSseComment(item.text);
        else out += relayEvent(core, ctx, item.id ? { ...item, id: idPrefix + item.id } : item, options);
      }
      if (out.length > 0 && !res.write(out)) {
        await Promise.race([once(res, 'drain'), once(res, 'close')]);
        if (clientClosed) break;
      }
    }
    if (!clientClosed) {
      const tail = decoder.decode();
      if (tail.length > 0) parser.push(tail);
      truncated = parser.end().truncated;
      if (truncated) reason = 'the upstream event stream ended in the middle of an event (truncated)';
    }
  } catch (err) {
    if (!clientClosed) {
      truncated = true;
      if ((err as { code?: string }).code === 'ERR_ENCODING_INVALID_ENCODED_DATA') {
        reason = 'the upstream event stream is not valid UTF-8';
      }
      if (isWardenError(err)) reason = err.message;
      core.logger.warn(
        { event: 'upstream-sse-broken', err: (err as Error).message },
        'upstream SSE stream broke',
      );
    }
  } finally {
    res.off('close', onClose);
  }
  if (clientClosed) {
    options.onDone?.('client-closed');
    return;
  }
  if (truncated) {
    core.logger.warn({ event: 'upstream-sse-truncated', reason }, 'upstream SSE stream truncated');
    let out = '';
    for (const id of options.ownIds ?? []) {
      const key = idKey(id);
      if (!ctx.pending.has(key)) continue;
      ctx.pending.delete(key);
      out += serializeSseEvent({ event: 'message', data: JSON.stringify(lostResponse(id, reason)) });
    }
    if (out.length > 0 && !res.writableEnded) res.write(out);
  }
  if (!res.writableEnded) res.end();
  options.onDone?.(truncated ? 'truncated' : 'ended');
}

function relayEvent(core: ProxyCore, ctx: OutboundContext, ev: SseEvent, options: RelayOptions): string {
  // No data, or empty data: nothing to decide or mask. An empty `data:` line is meaningful — the
  // SSE priming event (SEP-1699: id + empty data, sent first so the client can resume) — and
  // dropping the line would stop clients from dispatching it.
  if (ev.data === undefined || ev.data === '') return serializeSseEvent(ev);
  const type = ev.event;
  if (type === 'endpoint' && options.onEndpoint) {
    const data = options.onEndpoint(ev.data);
    return data === undefined ? '' : serializeSseEvent({ ...ev, data });
  }
  if (type !== undefined && type !== 'message') {
    // Only MCP message events are understood; anything else could smuggle unmasked data.
    core.logger.warn({ event: 'upstream-sse-unknown-event' }, 'dropped an SSE event of an unknown type');
    return idOnly(ev);
  }
  let value: unknown;
  try {
    value = JSON.parse(ev.data);
  } catch {
    core.logger.warn({ event: 'upstream-sse-bad-json' }, 'dropped an SSE event whose data is not JSON');
    return idOnly(ev);
  }
  let out: JsonRpcMessage | JsonRpcMessage[] | undefined;
  if (Array.isArray(value)) {
    const kept: JsonRpcMessage[] = [];
    for (const v of value) {
      const m = processServerMessage(core, ctx, v);
      if (m) kept.push(m);
    }
    out = kept.length > 0 ? kept : undefined;
  } else {
    out = processServerMessage(core, ctx, value);
  }
  if (out === undefined) return idOnly(ev);
  // Re-serialized even when unchanged: the upstream's text could hold duplicate keys, and the
  // client's parser must see what the masker and the list filter saw.
  let data: string;
  try {
    data = JSON.stringify(out);
  } catch {
    core.logger.warn({ event: 'upstream-sse-unserializable' }, 'dropped an SSE event nested too deeply');
    return idOnly(ev);
  }
  return serializeSseEvent({ ...ev, data });
}

/** Keep the resumption position (id/retry) of an event whose content is not delivered. */
function idOnly(ev: SseEvent): string {
  if (ev.id === undefined && ev.retry === undefined) return '';
  const kept: Omit<SseEvent, 'type'> = {};
  if (ev.id !== undefined) kept.id = ev.id;
  if (ev.retry !== undefined) kept.retry = ev.retry;
  return serializeSseEvent(kept);
}
