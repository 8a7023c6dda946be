import type { ServerResponse } from 'node:http';
import { isWardenError } from '../errors.js';
import { parseJson } from '../json.js';
import { idKey, type JsonRpcId, type JsonRpcResponse } from '../mcp/jsonrpc.js';
import { type SseEvent, SseParser, serializeSseComment, serializeSseEvent } from '../mcp/sse.js';
import type { ProxyCore } from './core.js';
import { lostResponse, type OutboundContext, processServerMessageJson } from './outbound.js';
import type { ResumePoint } from './released.js';
import type { UpstreamResponse } from './upstream.js';

export interface RelayOptions {
  /** Messages to send first (answers to requests the proxy itself refused). */
  prelude?: JsonRpcResponse[];
  /** Requests of this exchange: answered with an error if the stream breaks before their response. */
  ownIds?: readonly JsonRpcId[];
  /** Legacy SSE: rewrite the `endpoint` event's data (return undefined to end the stream). */
  onEndpoint?: (data: string) => string | undefined;
  /** Send the response headers only with the first event, or after this many ms without one. */
  headerDelayMs?: number;
  /**
   * End the stream at this time (epoch ms): the caller's token is no longer accepted then. The
   * client gets what was relayed so far and the end of the stream; the upstream is let go.
   */
  endAt?: number;
  /** Called once when the relay finishes (either side closed, or `endAt`). */
  onDone?: (outcome: RelayOutcome) => void;
  /**
   * A stream the client resumed (`Last-Event-ID`): the approved server requests the proxy wrote
   * after this point come first, then the upstream's replay (released.ts).
   */
  resume?: ResumePoint;
}

export type RelayOutcome = 'ended' | 'truncated' | 'client-closed' | 'expired';

/** setTimeout's longest delay (~24.8 days); a later `endAt` is reached in steps. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * Stream an upstream SSE body to the client event by event, never buffering the whole stream:
 * each event is parsed, its message(s) processed by the outbound stages, and re-serialized with
 * its `id:`, `event:` and `retry:` intact; comments (keepalives) pass through. A stream cut in the
 * middle of an event is detected, and requests of this exchange still unanswered get an error,
 * so the client never waits forever.
 *
 * What one socket read of the upstream produced is written to the client in one write, at the
 * end of the event loop's I/O phase (`setImmediate`): a response whose last event and end arrive
 * together (the usual case for a `tools/call`) leaves in a single write, headers and end
 * included, instead of three. Backpressure: the upstream is paused while the client's socket is
 * full.
 */
export function relaySse(
  core: ProxyCore,
  ctx: OutboundContext,
  upstream: UpstreamResponse,
  res: ServerResponse,
  options: RelayOptions = {},
): Promise<void> {
  const body = upstream.body.stream;
  const parser = new SseParser({ maxEventBytes: core.maxUpstreamBody });
  const idPrefix = core.eventIdPrefix(ctx.identity.principal);
  const decoder = new TextDecoder('utf-8', { fatal: true });
  // Whether the client could resume this stream (an event id reached it), and how many messages
  // the proxy could not deliver: at a clean end, a request left unanswered is answered with an
  // error when its answer was dropped or the stream cannot be resumed.
  const seen: RelayState = { resumable: false, undelivered: 0 };
  let out = '';
  if (options.prelude && options.prelude.length > 0) {
    for (const m of options.prelude) out += serializeSseEvent({ event: 'message', data: JSON.stringify(m) });
  }
  // Approved server requests the proxy wrote on a stream the client resumes: replayed where they
  // were written (first those after the resume point, then each after the upstream event it followed).
  if (options.resume !== undefined) {
    const released = ctx.session?.released;
    if (released !== undefined)
      out += released.replayAfter(options.resume.after, options.resume.seq, idPrefix);
    if (ctx.stream !== undefined) ctx.stream.position = options.resume.after;
  }
  return new Promise<void>((resolve) => {
    let scheduled: NodeJS.Immediate | undefined;
    let headerTimer: NodeJS.Timeout | undefined;
    let expiryTimer: NodeJS.Timeout | undefined;
    let finished = false;
    let paused = false;
    const flush = (): void => {
      scheduled = undefined;
      if (out.length === 0 || finished || res.writableEnded) return;
      const chunk = out;
      out = '';
      if (!res.write(chunk) && !paused) {
        paused = true;
        body.pause();
      }
    };
    const schedule = (): void => {
      if (scheduled === undefined && out.length > 0) scheduled = setImmediate(flush);
    };
    const onDrain = (): void => {
      if (!paused) return;
      paused = false;
      if (!finished) body.resume();
    };
    const onClose = (): void => {
      if (!res.writableFinished) finish('client-closed');
    };
    const onData = (chunk: Buffer): void => {
      try {
        const items = parser.push(decoder.decode(chunk, { stream: true }));
        for (const item of items) {
          // A comment is a keep-alive: relayed bare, since its text was never masked.
          if (item.type === 'comment') out += ':\n\n';
          else if (item.id) {
            seen.resumable = true;
            ctx.eventId = item.id;
            try {
              out += relayEvent(core, ctx, { ...item, id: idPrefix + item.id }, options, seen);
            } finally {
              ctx.eventId = undefined;
            }
            if (ctx.stream !== undefined) ctx.stream.position = item.id;
            // Only the upstream's replay of a resumed stream: on a live one, an id seen again is
            // the upstream repeating it, never a place the client lost.
            const released = options.resume === undefined ? undefined : ctx.session?.released;
            if (released !== undefined) out += released.replayAfter(item.id, 0, idPrefix);
          } else out += relayEvent(core, ctx, item, options, seen);
        }
      } catch (err) {
        broken(err);
        return;
      }
      schedule();
    };
    const onEnd = (): void => {
      try {
        const tail = decoder.decode();
        if (tail.length > 0) parser.push(tail);
        if (parser.end().truncated) {
          finish('truncated', 'the upstream event stream ended in the middle of an event (truncated)');
          return;
        }
      } catch (err) {
        broken(err);
        return;
      }
      finish('ended');
    };
    const onError = (err: Error): void => broken(err);
    // A body closed without its end (connection lost) is a broken stream, never a silent hang.
    const onBodyClose = (): void => {
      if (!finished) broken(new Error('the upstream connection closed before the stream ended'));
    };
    function broken(err: unknown): void {
      let reason = 'the upstream event stream broke';
      if ((err as { code?: string }).code === 'ERR_ENCODING_INVALID_ENCODED_DATA') {
        reason = 'the upstream event stream is not valid UTF-8';
      }
      if (isWardenError(err)) reason = err.message;
      core.logger.warn(
        { event: 'upstream-sse-broken', err: (err as Error).message },
        'upstream SSE stream broke',
      );
      finish('truncated', reason);
    }
    function finish(outcome: RelayOutcome, reason?: string): void {
      if (finished) return;
      finished = true;
      ctx.stream?.detach();
      if (scheduled !== undefined) clearImmediate(scheduled);
      if (headerTimer !== undefined) clearTimeout(headerTimer);
      if (expiryTimer !== undefined) clearTimeout(expiryTimer);
      body.off('data', onData);
      body.off('end', onEnd);
      body.off('error', onError);
      body.off('close', onBodyClose);
      res.off('close', onClose);
      res.off('drain', onDrain);
      if (outcome === 'client-closed') {
        body.destroy();
        // The answers will not pass here: their ids are free again (an answer that arrives on a
        // resumed stream is masked with every scoped rule, its call no longer known).
        for (const id of options.ownIds ?? []) ctx.pending.delete(idKey(id));
        options.onDone?.('client-closed');
        resolve();
        return;
      }
      if (outcome === 'expired') {
        // Nothing more reaches this caller: the upstream connection is released.
        body.destroy();
        core.logger.info({ event: 'stream-expired' }, "ended a server stream: the caller's token expired");
        // A comment, which clients ignore, says why to whoever reads the stream.
        out += serializeSseComment('the access token expired; reconnect with a fresh token');
      }
      if (outcome === 'ended' && (seen.undelivered > 0 || !seen.resumable)) {
        // Ended cleanly without a valid answer the client could still get by resuming.
        for (const id of options.ownIds ?? []) {
          const key = idKey(id);
          if (!ctx.pending.has(key)) continue;
          ctx.pending.delete(key);
          core.logger.warn(
            { event: 'upstream-sse-unanswered' },
            'the upstream event stream ended without a valid answer',
          );
          out += serializeSseEvent({
            event: 'message',
            data: JSON.stringify(
              lostResponse(id, 'the upstream event stream ended without a valid answer to this request'),
            ),
          });
        }
      }
      if (outcome === 'truncated') {
        // The rest of a broken stream is never read: release the upstream connection.
        body.destroy();
        core.logger.warn({ event: 'upstream-sse-truncated', reason }, 'upstream SSE stream truncated');
        for (const id of options.ownIds ?? []) {
          const key = idKey(id);
          if (!ctx.pending.has(key)) continue;
          ctx.pending.delete(key);
          out += serializeSseEvent({
            event: 'message',
            data: JSON.stringify(lostResponse(id, reason ?? 'the upstream event stream broke')),
          });
        }
      }
      if (!res.writableEnded) {
        if (out.length > 0) res.end(out);
        else res.end();
      }
      out = '';
      options.onDone?.(outcome);
      resolve();
    }
    // Other stages may add to this stream while it is open (a server request released by a reviewer).
    ctx.stream?.attach((text) => {
      if (finished || res.writableEnded) return false;
      out += text;
      schedule();
      return true;
    });
    res.on('close', onClose);
    res.on('drain', onDrain);
    body.on('error', onError);
    body.on('close', onBodyClose);
    body.on('end', onEnd);
    body.on('data', onData);
    if (options.headerDelayMs !== undefined && !res.headersSent) {
      // Headers wait for the first event (one write for both), but not for a slow first event.
      headerTimer = setTimeout(() => {
        headerTimer = undefined;
        if (!finished && !res.headersSent) res.flushHeaders();
      }, options.headerDelayMs);
    }
    if (options.endAt !== undefined) {
      const endAt = options.endAt;
      const arm = (): void => {
        const left = endAt - Date.now();
        if (left <= 0) {
          finish('expired');
          return;
        }
        expiryTimer = setTimeout(arm, Math.min(left, MAX_TIMER_MS));
        expiryTimer.unref();
      };
      arm();
      if (finished) return;
    }
    schedule();
  });
}

interface RelayState {
  resumable: boolean;
  undelivered: number;
}

function relayEvent(
  core: ProxyCore,
  ctx: OutboundContext,
  ev: SseEvent,
  options: RelayOptions,
  seen: RelayState,
): string {
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
    seen.undelivered++;
    return idOnly(ev);
  }
  let value: unknown;
  try {
    // Lossless: a number a double cannot carry reaches the client as the upstream wrote it.
    value = parseJson(ev.data);
  } catch {
    core.logger.warn({ event: 'upstream-sse-bad-json' }, 'dropped an SSE event whose data is not JSON');
    seen.undelivered++;
    return idOnly(ev);
  }
  let data: string | undefined;
  if (Array.isArray(value)) {
    // The array's serialization, from its elements' (what JSON.stringify of the array gives).
    const kept: string[] = [];
    for (const v of value) {
      const m = processServerMessageJson(core, ctx, v);
      if (m) kept.push(m.json);
    }
    data = kept.length > 0 ? `[${kept.join(',')}]` : undefined;
  } else {
    data = processServerMessageJson(core, ctx, value)?.json;
  }
  if (data === undefined) {
    seen.undelivered++;
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
