import type { IncomingMessage, ServerResponse } from 'node:http';
import { errorMessage, isWardenError } from '../errors.js';
import type { Identity } from '../identity/types.js';
import type { Masker, MaskScope } from '../mask/types.js';
import { decodeUtf8, readBody } from '../mcp/body.js';
import {
  errorResponse,
  idKey,
  type JsonRpcId,
  type JsonRpcNotification,
  type JsonRpcRequest,
  type JsonRpcResponse,
  type ParsedItem,
  parseJsonRpc,
  parseJsonText,
  RpcCodes,
} from '../mcp/jsonrpc.js';
import {
  decodeMcpHeaderValue,
  envelopeVersion,
  isStatelessVersion,
  MCP_NAME_SOURCE,
} from '../mcp/version.js';
import type { PolicyEngine } from '../policy/decision.js';
import type { SessionRecorder } from '../record/types.js';
import { cancelHeld, HeldRequest } from './approve.js';
import type { ProxyCore } from './core.js';
import { decideRequest, maskScopeOf, requestInfo } from './decide.js';
import { header, sendRpcError } from './http.js';
import { record } from './outbound.js';
import { type RequestInfo, rememberPending, type Session } from './session.js';

/**
 * The parse and decide stages for a client POST: read the body under the size limit, strict
 * UTF-8, JSON, JSON-RPC validation, `Mcp-Method`/`Mcp-Name` header agreement, then one policy
 * decision per request. Produces what to forward and what the proxy answers itself.
 */
export interface InboundResult {
  batch: boolean;
  /** Messages to forward (requests allowed, notifications, responses). */
  forward: ParsedItem['message'][];
  /** Answers for refused requests. */
  refused: JsonRpcResponse[];
  /** Ids of forwarded requests. */
  requestIds: JsonRpcId[];
  /** Forwarded messages include at least one request. */
  hasRequest: boolean;
  initialize: boolean;
  raw: Buffer;
  firstMethod: string;
  /** The refusal of a notification the rules denied (dropped; JSON-RPC gives it no answer). */
  deniedNotification?: JsonRpcResponse;
  /** Requests decided `approve`: neither forwarded nor refused yet (the approval stage's). */
  held: HeldRequest[];
}

/** Read and validate the body. Answers the client and returns undefined when it is bad. */
export async function readMessages(
  core: ProxyCore,
  req: IncomingMessage,
  res: ServerResponse,
  allowBatch: boolean,
): Promise<{ raw: Buffer; batch: boolean; items: ParsedItem[] } | undefined> {
  const ct = header(req.headers['content-type']);
  if (ct === undefined || !/^application\/json\s*(;|$)/i.test(ct)) {
    sendRpcError(
      res,
      415,
      null,
      RpcCodes.invalidRequest,
      'Unsupported Media Type: Content-Type must be application/json',
      {
        code: 'ERR_BAD_REQUEST',
      },
    );
    req.resume();
    return undefined;
  }
  let raw: Buffer;
  let text: string;
  try {
    raw = await readBody(req, core.maxBody);
    text = decodeUtf8(raw);
  } catch (err) {
    if (isWardenError(err, 'ERR_BODY_TOO_LARGE')) {
      sendRpcError(res, 413, null, RpcCodes.invalidRequest, err.message, {
        code: err.code,
        limit: core.maxBody,
      });
    } else if (isWardenError(err, 'ERR_BAD_UTF8')) {
      sendRpcError(res, 400, null, RpcCodes.parseError, err.message, { code: err.code });
    } else {
      const message = isWardenError(err) ? err.message : 'Could not read the request body';
      sendRpcError(res, 400, null, RpcCodes.invalidRequest, message, { code: 'ERR_BAD_REQUEST' });
    }
    return undefined;
  }
  const json = parseJsonText(text);
  if (!json.ok) {
    sendRpcError(res, 400, null, RpcCodes.parseError, json.message, { code: 'ERR_BAD_JSON' });
    return undefined;
  }
  const parsed = parseJsonRpc(json.value, { allowBatch });
  if (!parsed.ok) {
    sendRpcError(res, 400, parsed.id, parsed.code, parsed.message, { code: 'ERR_BAD_REQUEST' });
    return undefined;
  }
  return { raw, batch: parsed.batch, items: parsed.items };
}

/**
 * 2026-07-28 (SEP-2243): `Mcp-Method` / `Mcp-Name` / `MCP-Protocol-Version` must agree with the
 * body, or a hop that routes on headers could be fooled. Returns why they do not, or undefined.
 * The codes are the ones a 2026-07-28 server answers with: `-32602` for a modern request without
 * its `_meta` envelope, `-32020` (HeaderMismatch) for headers that disagree with the body.
 */
export function headerMismatch(
  req: IncomingMessage,
  items: ParsedItem[],
): { code: number; message: string } | undefined {
  const mismatch = headerMismatchReason(req, items);
  if (mismatch === undefined) return undefined;
  return typeof mismatch === 'string' ? { code: RpcCodes.headerMismatch, message: mismatch } : mismatch;
}

function headerMismatchReason(
  req: IncomingMessage,
  items: ParsedItem[],
): string | { code: number; message: string } | undefined {
  const hMethod = header(req.headers['mcp-method']);
  const hName = header(req.headers['mcp-name']);
  const hVersion = header(req.headers['mcp-protocol-version']);
  if (items.length !== 1) {
    if (hMethod !== undefined || hName !== undefined)
      return 'Mcp-Method/Mcp-Name headers are not allowed on a batch';
    return undefined;
  }
  const item = items[0]!;
  if (item.kind === 'response') {
    if (hMethod !== undefined || hName !== undefined)
      return 'Mcp-Method/Mcp-Name headers are not allowed on a response';
    return undefined;
  }
  const msg = item.message as JsonRpcRequest;
  const env = item.kind === 'request' ? envelopeVersion(msg) : undefined;
  const modern = isStatelessVersion(env) || isStatelessVersion(hVersion);
  if (modern && item.kind === 'request') {
    if (env === undefined)
      return {
        code: RpcCodes.invalidParams,
        message: `request is missing the _meta protocol version envelope required by ${hVersion}`,
      };
    if (hVersion !== env)
      return `MCP-Protocol-Version header (${hVersion ?? 'absent'}) does not match the body's _meta version (${env})`;
    if (hMethod === undefined) return 'Mcp-Method header is required by protocol version ' + env;
  }
  if (hMethod !== undefined && hMethod !== msg.method) {
    return `Mcp-Method header "${hMethod.slice(0, 64)}" does not match the body's method "${msg.method.slice(0, 64)}"`;
  }
  const field = MCP_NAME_SOURCE[msg.method];
  const params = msg.params as Record<string, unknown> | undefined;
  const bodyName = field !== undefined && params && !Array.isArray(params) ? params[field] : undefined;
  if (hName !== undefined) {
    const decoded = decodeMcpHeaderValue(hName);
    if (decoded === undefined) return 'Mcp-Name header is not a valid value';
    if (typeof bodyName !== 'string' || decoded !== bodyName)
      return `Mcp-Name header does not match the body's ${field ?? 'name'}`;
  } else if (modern && item.kind === 'request' && typeof bodyName === 'string') {
    return `Mcp-Name header is required for ${msg.method}`;
  }
  return undefined;
}

export interface DecideContext {
  engine: PolicyEngine;
  identity: Identity;
  session: Session | undefined;
  recorder: SessionRecorder | undefined;
  pending: Map<string, RequestInfo>;
}

/** Decide every element on its own; refused requests never reach the upstream. */
export function decideAll(
  core: ProxyCore,
  ctx: DecideContext,
  batch: boolean,
  items: ParsedItem[],
  raw: Buffer,
): InboundResult {
  const forward: ParsedItem['message'][] = [];
  const refused: JsonRpcResponse[] = [];
  const requestIds: JsonRpcId[] = [];
  const held: HeldRequest[] = [];
  let initialize = false;
  let hasRequest = false;
  let deniedNotification: JsonRpcResponse | undefined;
  const masker = ctx.recorder ? core.maskerFor(ctx.engine) : undefined;
  for (const item of items) {
    const msg = item.message;
    if (ctx.recorder) {
      // Recordings hold masked payloads only, in both directions.
      record(ctx, 'client-to-server', masker ? maskedForRecording(core, masker, msg) : msg);
    }
    if (item.kind === 'request') {
      const req = msg as JsonRpcRequest;
      if (ctx.pending.has(idKey(req.id))) {
        // Two requests in flight under one id: their answers could not be told apart, so one
        // would be filtered and masked as the other (a list matched to a call passes unfiltered).
        const dup = duplicateIdResponse(req.id);
        refused.push(dup);
        record(ctx, 'server-to-client', dup);
        continue;
      }
      const denied = decideRequest(core, ctx, req, 'client-to-server', true);
      if (denied instanceof HeldRequest) {
        // In flight while held: its id stays taken until its outcome.
        rememberPending(ctx.pending, idKey(req.id), requestInfo(req));
        held.push(denied);
        continue;
      }
      if (denied) {
        refused.push(denied);
        // The refusal may quote the client's input (a URI, a name): masked like the rest.
        record(ctx, 'server-to-client', masker ? maskedForRecording(core, masker, denied) : denied);
        continue;
      }
      if (req.method === 'initialize') initialize = true;
      hasRequest = true;
      requestIds.push(req.id);
      rememberPending(ctx.pending, idKey(req.id), requestInfo(req));
    } else if (item.kind === 'response') {
      // The client has the server request it answers: an approved one is not replayed any more.
      ctx.session?.released?.answered(idKey((msg as JsonRpcResponse).id));
    } else if (
      item.kind === 'notification' &&
      (msg as JsonRpcNotification).method === 'notifications/cancelled'
    ) {
      cancelHeld(core, ctx, (msg as JsonRpcNotification).params);
    } else if (
      item.kind === 'notification' &&
      !(msg as JsonRpcNotification).method.startsWith('notifications/')
    ) {
      // A request without an id (`tools/call` as a notification) is still a call: a plain
      // JSON-RPC server executes notifications. Only `notifications/*` pass undecided.
      const as = { ...(msg as JsonRpcNotification), id: null } as unknown as JsonRpcRequest;
      const denied = decideRequest(core, ctx, as, 'client-to-server');
      if (denied) {
        deniedNotification = denied;
        // The refusal may quote the client's input (a URI, a name): masked like the rest.
        record(ctx, 'server-to-client', masker ? maskedForRecording(core, masker, denied) : denied);
        continue;
      }
    }
    forward.push(msg);
  }
  const first = items[0]!.message as { method?: string };
  return {
    batch,
    forward,
    refused,
    requestIds,
    hasRequest,
    initialize,
    raw,
    firstMethod: batch ? 'batch' : (first.method ?? 'response'),
    ...(deniedNotification ? { deniedNotification } : {}),
    held,
  };
}

/** The answer to a request whose id is already used by one of the session's requests in flight. */
export function duplicateIdResponse(id: JsonRpcId): JsonRpcResponse {
  return errorResponse(
    id,
    RpcCodes.invalidRequest,
    `Invalid Request: id ${JSON.stringify(id)} is already used by a request of this session that has not been answered`,
    { code: 'ERR_BAD_REQUEST' },
  );
}

/**
 * A client message masked for the recording, in the scope of the call it is (a request's tool or
 * resource); an answer to a server request cannot be tied to a call and gets every scoped rule.
 */
export function maskedForRecording(core: ProxyCore, masker: Masker, msg: ParsedItem['message']): unknown {
  const m = msg as { jsonrpc: string; id?: unknown; method?: string };
  try {
    const scope: MaskScope =
      m.method === undefined
        ? { method: 'response', unknown: true }
        : maskScopeOf(m.method, requestInfo(msg as JsonRpcRequest));
    return masker.maskMessage(msg, scope).value;
  } catch (err) {
    // Unmaskable: record the envelope only, never the payload.
    core.logger.error({ event: 'mask-failed', err: errorMessage(err) }, 'masking for the recording failed');
    return { jsonrpc: m.jsonrpc, id: m.id, method: m.method };
  }
}

export function refuse(
  res: ServerResponse,
  status: number,
  id: JsonRpcId | null,
  message: string,
  code: number = RpcCodes.invalidRequest,
): void {
  sendRpcError(res, status, id, code, message, { code: 'ERR_BAD_REQUEST' });
}

export { errorResponse };
