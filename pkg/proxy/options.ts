import type { EventEmitter } from 'node:events';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { ApprovalBroker } from '../approval/broker.js';
import type { Authenticator } from '../identity/types.js';
import type { Logger } from '../log.js';
import type { Masker } from '../mask/types.js';
import type { Metrics } from '../metrics/catalogue.js';
import type { PolicyEngine, PolicySource } from '../policy/decision.js';
import type { Recorder } from '../record/types.js';

export interface ProxyOptions {
  /** Full URL of the upstream MCP endpoint, e.g. `http://127.0.0.1:3000/mcp`. */
  upstream: string;
  /** Path the proxy serves streamable HTTP (and 2026-07-28) on. Default `/mcp`. */
  mcpPath?: string;
  /**
   * Legacy HTTP+SSE (2024-11-05) paths served by the proxy. The upstream's SSE endpoint is the
   * same `sse` path on the upstream's origin unless `upstreamSse` says otherwise. Default
   * `{sse: '/sse', message: '/message'}`; `false` disables the legacy transport.
   */
  legacySsePaths?: { sse: string; message: string } | false;
  /** Full URL of the upstream's legacy SSE endpoint (default: upstream origin + `legacySsePaths.sse`). */
  upstreamSse?: string;
  policySource: PolicySource;
  /** Verifies tokens; give it the same `metrics` (it counts verification failures itself). */
  authenticator: Authenticator;
  metrics: Metrics;
  recorder?: Recorder;
  /**
   * Holds calls a policy decides `approve` for a reviewer's verdict (`MCPApproval`). Without it,
   * such calls are refused (`-31403`, approval unavailable): fail closed.
   */
  approvals?: ApprovalBroker;
  podName: string;
  namespace?: string;
  /** Largest request body accepted (default 4 MiB); larger ones get 413. */
  maxBodyBytes?: number;
  /** Largest JSON (non-SSE) upstream response accepted (default 32 MiB), and largest SSE event. */
  maxUpstreamBodyBytes?: number;
  /** Base URL clients use to reach the proxy (for RFC 9728 metadata). Default: `http://<Host header>`. */
  publicUrl?: string;
  logger?: Logger;
  /** DNS-rebinding protection: accepted `Host` header values (`host` or `host:port`). */
  allowedHosts?: string[];
  /**
   * `Origin` header values accepted besides the proxy's own (exact, e.g. `http://localhost:6274`),
   * with CORS: their preflights are answered and the MCP headers exposed, so a browser page of
   * such an origin can call the proxy. Requests without `Origin` pass; others are refused with 403.
   */
  allowedOrigins?: string[];
  /** Time to wait for upstream response headers (default 5 min: a JSON-mode server sends its headers only when a tool finishes). */
  upstreamTimeoutMs?: number;
  /**
   * Time a client has to send a whole request, headers and body (default 60 s; headers alone at
   * most 30 s): a client that sends more slowly is answered 408 and disconnected (no slowloris).
   * Responses, SSE streams included, are not bounded by it.
   */
  requestTimeoutMs?: number;
  /** Client connections accepted at once; more are refused. Default: half the open-file limit. */
  maxConnections?: number;
  /** Sessions idle longer than this are forgotten (default 30 min). */
  sessionIdleMs?: number;
  /** Sessions one principal may hold (default 100); the least recently used is forgotten beyond. */
  maxSessionsPerPrincipal?: number;
  /** Sessions the proxy holds in all (default 10 000). */
  maxSessions?: number;
  /**
   * Builds the masker for an engine's masking rules (cached per engine). Defaults to
   * `createMasker` from pkg/mask.
   */
  maskerFactory?: (rules: Array<{ policy: string; rule: unknown }>) => Masker;
}

export type PolicyEngineRef = PolicyEngine;

export interface WardenProxy {
  handler: (req: IncomingMessage, res: ServerResponse) => void;
  listen(host: string, port: number): Promise<{ host: string; port: number; url: string }>;
  close(): Promise<void>;
  /**
   * 'decision' {decision, method, tool?, principal, session?, direction}, 'mask' {hits, method},
   * 'session-open' {session, principal}, 'session-close' {session, principal},
   * 'recording' RecordingSummary, 'upstream-error' {message}.
   */
  events: EventEmitter;
}
