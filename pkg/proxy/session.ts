import type { ServerResponse } from 'node:http';
import type { Identity } from '../identity/types.js';
import type { JsonRpcId, JsonRpcResponse } from '../mcp/jsonrpc.js';
import type { ListMethod } from '../policy/decision.js';
import type { SessionRecorder } from '../record/types.js';
import type { ClientStream } from './client-stream.js';
import type { ReleasedEvents } from './released.js';
import type { SettledServerRequests } from './settled.js';

/** What the proxy remembers about a forwarded request until its response passes back. */
export interface RequestInfo {
  method: string;
  tool?: string;
  resource?: string;
  /** The resource's canonical form, when it differs: scoped masking matches either. */
  canonicalResource?: string;
  /** `tasks/*`: the task it names (its result is masked as the call that created the task). */
  taskId?: string;
  list?: ListMethod;
}

export type TransportKind = 'streamable-http' | 'legacy-sse' | 'stateless-http';

/**
 * One MCP session as the proxy sees it, bound to the principal that opened it. The session id
 * the client holds is the upstream's `Mcp-Session-Id` (streamable HTTP) or an id minted by the
 * proxy (legacy SSE); either way, a request presenting it from another principal is refused
 * before anything reaches the upstream.
 */
export interface Session {
  id: string;
  principal: string;
  identity: Identity;
  transport: TransportKind;
  protocolVersion: string | undefined;
  recorder: SessionRecorder | undefined;
  /** Requests forwarded and not answered yet (for SSE resumption and legacy SSE). */
  pending: Map<string, RequestInfo>;
  /** Tasks this session's calls created, by task id: the call each result belongs to. */
  taskCalls?: Map<string, RequestInfo>;
  /** Tool annotations learnt from this session's `tools/list` results. */
  toolAnnotations: Map<string, Record<string, unknown>>;
  lastSeen: number;
  /** Answers a blocked server→client request upstream (built once per session); true: accepted. */
  answerUpstream?: (response: JsonRpcResponse) => Promise<boolean>;
  /** GET streams open on this session (an open stream keeps the session from idling out). */
  openStreams?: number;
  /** The session's GET streams: where an approved server request goes when its own stream closed. */
  serverStreams?: Set<ClientStream>;
  /** Server→client requests of this session held for approval, by id key (hold-server.ts). */
  serverHolds?: Map<string, ServerHold>;
  /** Approved server→client requests written by the proxy, replayed to a client that resumes. */
  released?: ReleasedEvents;
  /** Held server→client requests the proxy answered the server for (hold-server.ts), by id key. */
  settled?: SettledServerRequests;
  /** Answers to the proxy's own requests (legacy SSE: they arrive on the session's stream). */
  internalWaiters?: Map<string, (result: Record<string, unknown> | undefined) => void>;
  /** The proxy already listed the upstream's tools for this session (annotations). */
  annotationsFetched?: boolean;
  /** Legacy SSE: the upstream's message endpoint (path + query) for this session. */
  upstreamMessagePath?: string;
  /** Legacy SSE: the client's event stream, where answers to its POSTs are written. */
  clientSse?: ServerResponse;
  closed: boolean;
}

/** A server→client request held for approval: what ends it early. */
export interface ServerHold {
  /**
   * End the hold (the approval becomes Cancelled). `answer`: send the upstream an error for its
   * request (false when the server itself cancelled the request: it expects no answer).
   */
  cancel(reason: string, answer: boolean): void;
}

/** Cap on remembered pending requests per session (oldest forgotten first). */
export const MAX_PENDING = 4096;

export function rememberPending(map: Map<string, RequestInfo>, key: string, info: RequestInfo): void {
  if (map.size >= MAX_PENDING) {
    const oldest = map.keys().next().value;
    if (oldest !== undefined) map.delete(oldest);
  }
  map.set(key, info);
}

export type { JsonRpcId };
