import { createHmac, randomBytes, randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { hostname } from 'node:os';
import { type MaskMarker, maskMarker } from '../approval/masked.js';
import { WardenError } from '../errors.js';
import type { Identity } from '../identity/types.js';
import { createLogger, type Logger } from '../log.js';
import { createMasker } from '../mask/index.js';
import type { Masker } from '../mask/types.js';
import { DEFAULT_MAX_BODY_BYTES } from '../mcp/body.js';
import type { JsonRpcResponse } from '../mcp/jsonrpc.js';
import type { Metrics } from '../metrics/catalogue.js';
import type { PolicyEngine } from '../policy/decision.js';
import type { MaskingRule } from '../policy/schema.js';
import { statelessRecordingKey } from '../record/recorder.js';
import type { SessionRecorder } from '../record/types.js';
import { HeldCalls, heldScope } from './held-calls.js';
import type { ProxyOptions } from './options.js';
import { type ParamHeader, paramDeclarations } from './params.js';
import { RateLimiter } from './ratelimit.js';
import type { Session, TransportKind } from './session.js';
import { discardUpstreamBody, Upstream } from './upstream.js';

/** Methods every MCP peer needs to talk at all: never subject to rules (lists are filtered instead). */
export const LIFECYCLE_METHODS: ReadonlySet<string> = new Set([
  'initialize',
  'ping',
  'server/discover',
  'subscriptions/listen',
]);

export const LIST_METHODS: ReadonlySet<string> = new Set([
  'tools/list',
  'resources/list',
  'resources/templates/list',
  'prompts/list',
]);

/** Method names used as metric labels; anything else is `other`. */
const METHOD_LABELS: ReadonlySet<string> = new Set([
  'initialize',
  'ping',
  'tools/list',
  'tools/call',
  'resources/list',
  'resources/templates/list',
  'resources/read',
  'resources/subscribe',
  'resources/unsubscribe',
  'prompts/list',
  'prompts/get',
  'completion/complete',
  'logging/setLevel',
  'sampling/createMessage',
  'elicitation/create',
  'roots/list',
  'server/discover',
  'subscriptions/listen',
  'tasks/get',
  'tasks/list',
  'tasks/cancel',
  'tasks/result',
  'GET',
  'DELETE',
  'batch',
]);

const MAX_KNOWN_TOOLS = 1000;

export function methodLabel(method: string): string {
  return METHOD_LABELS.has(method) ? method : 'other';
}

/**
 * State shared by the pipeline stages of one proxy: options, the upstream, the session table,
 * metrics, events and per-engine caches. Stages are plain functions over it.
 */
export class ProxyCore {
  readonly options: ProxyOptions;
  readonly upstream: Upstream;
  readonly sessions = new Map<string, Session>();
  readonly events = new EventEmitter();
  readonly logger: Logger;
  readonly metrics: Metrics;
  readonly mcpPath: string;
  readonly legacy: { sse: string; message: string } | undefined;
  readonly upstreamSsePath: string | undefined;
  readonly maxBody: number;
  readonly maxUpstreamBody: number;
  readonly pod: string;
  /** Tool names learnt from upstream tools/list results (bounded metric labels). */
  readonly knownTools = new Set<string>();
  /** `Mcp-Param-*` header declarations per tool (2026-07-28 `x-mcp-header`), from tools/list. */
  readonly toolParamHeaders = new Map<string, ParamHeader[]>();
  /** Latest annotations per tool, across sessions (used before a session listed its tools). */
  readonly toolAnnotations = new Map<string, Record<string, unknown>>();
  /** The policies' `rateLimit` buckets (this process's share of every limit). */
  readonly rateLimiter = new RateLimiter();
  publicUrl: string | undefined;
  /** Answers blocked server→client requests of exchanges without a session. */
  readonly answerWithoutSession: (response: JsonRpcResponse) => Promise<boolean>;
  /**
   * What cancels a request held for approval, or the approval its request left open when the
   * connection closed, by session (or principal) and id (approve.ts heldScope).
   */
  readonly heldCalls = new HeldCalls();
  /** Last time the proxy listed tools itself for stateless traffic (ms). */
  annotationsFetchedAt = 0;
  readonly #maskers = new WeakMap<PolicyEngine, Masker | null>();
  readonly #markedMaskers = new WeakMap<PolicyEngine, { masker: Masker; marker: MaskMarker } | null>();
  /** Stateless (2026-07-28) recordings: one per principal and UTC hour. */
  readonly #stateless = new Map<string, SessionRecorder>();

  /** Keys the per-principal prefix of relayed SSE event ids (see eventIdPrefix). */
  readonly #eventKey = randomBytes(32);

  /**
   * The prefix every SSE event id relayed to `principal` carries. A `Last-Event-ID` must carry the
   * caller's own prefix: the upstream's event store may be shared by all sessions, and replaying
   * another principal's stream from one of its event ids would hand over that principal's data.
   */
  eventIdPrefix(principal: string): string {
    let prefix = this.#eventPrefixes.get(principal);
    if (prefix === undefined) {
      prefix = `${createHmac('sha256', this.#eventKey).update(principal).digest('base64url').slice(0, 16)}.`;
      if (this.#eventPrefixes.size >= 10_000) this.#eventPrefixes.clear();
      this.#eventPrefixes.set(principal, prefix);
    }
    return prefix;
  }

  /** eventIdPrefix results: an HMAC per relayed stream showed in the profile; principals repeat. */
  readonly #eventPrefixes = new Map<string, string>();

  constructor(options: ProxyOptions) {
    this.options = options;
    this.upstream = new Upstream(options.upstream, {
      headersTimeoutMs: options.upstreamTimeoutMs ?? 300_000,
    });
    this.logger = options.logger ?? createLogger('proxy');
    this.metrics = options.metrics;
    this.mcpPath = options.mcpPath ?? '/mcp';
    this.legacy =
      options.legacySsePaths === false
        ? undefined
        : (options.legacySsePaths ?? { sse: '/sse', message: '/message' });
    this.upstreamSsePath = this.legacy
      ? this.#upstreamSsePath(options.upstreamSse, this.legacy.sse)
      : undefined;
    this.maxBody = options.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
    this.maxUpstreamBody = options.maxUpstreamBodyBytes ?? 32 * 1024 * 1024;
    this.pod = options.podName || hostname();
    this.publicUrl = options.publicUrl;
    this.events.on('error', () => undefined);
    this.answerWithoutSession = (response) => {
      const path = this.upstream.url.pathname + this.upstream.url.search;
      return this.upstream
        .request(
          'POST',
          path,
          { 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
          JSON.stringify(response),
        )
        .then(async (r) => {
          await discardUpstreamBody(r.body, this.upstream.bodyTimeoutMs);
          return r.status >= 200 && r.status < 300;
        })
        .catch(() => false);
    };
  }

  #upstreamSsePath(upstreamSse: string | undefined, fallback: string): string {
    if (upstreamSse === undefined) return fallback;
    let u: URL;
    try {
      u = new URL(upstreamSse, this.upstream.url);
    } catch (err) {
      throw new WardenError('ERR_CONFIG', `Invalid upstream SSE URL "${upstreamSse}"`, { cause: err });
    }
    if (!this.upstream.sameOrigin(u)) {
      throw new WardenError(
        'ERR_CONFIG',
        `The upstream SSE URL must be on the upstream's origin (${this.upstream.url.origin})`,
      );
    }
    return u.pathname + u.search;
  }

  engine(): PolicyEngine | undefined {
    return this.options.policySource.current();
  }

  /** The masker for this engine's rules (built once per engine); undefined when nothing to mask. */
  maskerFor(engine: PolicyEngine): Masker | undefined {
    const cached = this.#maskers.get(engine);
    if (cached !== undefined) return cached ?? undefined;
    const rules = engine.maskingRules();
    let masker: Masker | null = null;
    if (rules.length > 0) {
      const factory =
        this.options.maskerFactory ??
        ((r: Array<{ policy: string; rule: unknown }>) =>
          createMasker(r as Array<{ policy: string; rule: MaskingRule }>));
      const m = factory(rules);
      masker = m.empty ? null : m;
    }
    this.#maskers.set(engine, masker);
    return masker ?? undefined;
  }

  /**
   * The same rules with a marker as every replacement (and no hash): what a held call's masking
   * hid, and how much text each mask covers, is read off its output (pkg/approval/masked.ts).
   */
  markedMaskerFor(engine: PolicyEngine): { masker: Masker; marker: MaskMarker } | undefined {
    const cached = this.#markedMaskers.get(engine);
    if (cached !== undefined) return cached ?? undefined;
    let out: { masker: Masker; marker: MaskMarker } | null = null;
    if (this.maskerFor(engine) !== undefined) {
      const marker = maskMarker();
      const rules = engine.maskingRules().map(({ policy, rule }) => ({
        policy,
        rule: { ...(rule as MaskingRule), replacement: marker.replacement, hash: false },
      }));
      const factory =
        this.options.maskerFactory ??
        ((r: Array<{ policy: string; rule: unknown }>) =>
          createMasker(r as Array<{ policy: string; rule: MaskingRule }>));
      out = { masker: factory(rules), marker };
    }
    this.#markedMaskers.set(engine, out);
    return out ?? undefined;
  }

  learnTool(name: string, annotations: Record<string, unknown> | undefined, inputSchema?: unknown): void {
    if (this.knownTools.size < MAX_KNOWN_TOOLS) this.knownTools.add(name);
    if (
      inputSchema !== undefined &&
      (this.toolParamHeaders.size < MAX_KNOWN_TOOLS || this.toolParamHeaders.has(name))
    ) {
      const decls = paramDeclarations(inputSchema);
      if (decls.length > 0) this.toolParamHeaders.set(name, decls);
      else this.toolParamHeaders.delete(name);
    }
    if (annotations) {
      if (this.toolAnnotations.size >= MAX_KNOWN_TOOLS && !this.toolAnnotations.has(name)) return;
      this.toolAnnotations.set(name, annotations);
    }
  }

  toolLabel(tool: string | undefined): string {
    if (tool === undefined || tool === '') return 'none';
    return this.knownTools.has(tool) && tool.length <= 128 ? tool : 'other';
  }

  openRecorder(
    engine: PolicyEngine,
    id: string,
    identity: Identity,
    transport: TransportKind,
    protocolVersion: string | undefined,
  ): SessionRecorder | undefined {
    const recorder = this.options.recorder;
    if (!recorder || !engine.recording().enabled) return undefined;
    try {
      return recorder.open(
        {
          session: id,
          principal: identity.principal,
          pod: this.pod,
          ...(this.options.namespace !== undefined ? { namespace: this.options.namespace } : {}),
          transport,
          ...(protocolVersion !== undefined ? { protocolVersion } : {}),
          policies: engine.policies(),
        },
        recordingSinks(engine),
      );
    } catch (err) {
      this.metrics.recordingErrors.inc();
      this.logger.error(
        { event: 'recording-open-failed', err: (err as Error).message },
        'could not open a recording',
      );
      return undefined;
    }
  }

  createSession(
    id: string,
    identity: Identity,
    engine: PolicyEngine,
    transport: TransportKind,
    protocolVersion: string | undefined,
  ): Session {
    this.#makeRoom(identity.principal);
    const session: Session = {
      id,
      principal: identity.principal,
      identity,
      transport,
      protocolVersion,
      recorder: this.openRecorder(engine, id, identity, transport, protocolVersion),
      pending: new Map(),
      toolAnnotations: new Map(),
      lastSeen: Date.now(),
      closed: false,
    };
    this.sessions.set(id, session);
    this.metrics.sessionsActive.inc();
    this.events.emit('session-open', { session: id, principal: identity.principal });
    this.logger.info(
      { event: 'session-open', session: id, principal: identity.principal, transport },
      'session opened',
    );
    return session;
  }

  /**
   * Bound the session table: a principal holds at most `maxSessionsPerPrincipal` sessions, the
   * proxy at most `maxSessions`; the least recently used one (without an open stream, if any)
   * is forgotten first. Its client gets 404 and re-initializes.
   */
  #makeRoom(principal: string): void {
    const perPrincipal = this.options.maxSessionsPerPrincipal ?? 100;
    const total = this.options.maxSessions ?? 10_000;
    let mine = 0;
    let oldestMine: Session | undefined;
    let oldest: Session | undefined;
    for (const s of this.sessions.values()) {
      const evictable = !s.openStreams && !s.clientSse;
      if (s.principal === principal) {
        mine++;
        if (evictable && (!oldestMine || s.lastSeen < oldestMine.lastSeen)) oldestMine = s;
      }
      if (evictable && (!oldest || s.lastSeen < oldest.lastSeen)) oldest = s;
    }
    const victim = mine >= perPrincipal ? oldestMine : this.sessions.size >= total ? oldest : undefined;
    if (victim) {
      this.logger.warn(
        { event: 'session-evicted', session: victim.id },
        'session table full: least recently used session forgotten',
      );
      void this.closeSession(victim, 'expired');
    }
  }

  closeSession(session: Session, reason: 'ended' | 'expired' | 'shutdown'): Promise<void> {
    if (session.closed) return Promise.resolve();
    session.closed = true;
    this.sessions.delete(session.id);
    this.metrics.sessionsActive.dec();
    this.events.emit('session-close', { session: session.id, principal: session.principal });
    this.logger.info({ event: 'session-close', session: session.id, reason }, 'session closed');
    // Approvals this session's requests left open are no longer cancellable through it (its
    // requests are refused from now on); they stay open for a repeat (DELETE cancelled them first).
    this.heldCalls.end(heldScope({ session, identity: session.identity }));
    // Server requests held for approval can no longer reach this session's client.
    for (const hold of [...(session.serverHolds?.values() ?? [])]) hold.cancel('the session ended', true);
    if (session.clientSse && !session.clientSse.writableEnded) session.clientSse.end();
    return this.closeRecorder(session.recorder, reason);
  }

  async closeRecorder(
    rec: SessionRecorder | undefined,
    reason: 'ended' | 'expired' | 'shutdown',
  ): Promise<void> {
    if (!rec) return;
    try {
      const summary = await rec.close(reason);
      if (summary) this.events.emit('recording', summary);
    } catch (err) {
      this.metrics.recordingErrors.inc();
      this.logger.error(
        { event: 'recording-close-failed', err: (err as Error).message },
        'could not close a recording',
      );
    }
  }

  /**
   * The recording for stateless traffic of this principal in the current UTC hour (the key the
   * recorder documents as `statelessRecordingKey`). Earlier hours are closed by `sweepStateless`.
   */
  statelessRecorder(
    engine: PolicyEngine,
    identity: Identity,
    version: string | undefined,
  ): SessionRecorder | undefined {
    if (!this.options.recorder || !engine.recording().enabled) return undefined;
    const key = statelessRecordingKey(identity.principal);
    let rec = this.#stateless.get(key);
    if (!rec) {
      rec = this.openRecorder(engine, key, identity, 'stateless-http', version);
      if (rec) this.#stateless.set(key, rec);
    }
    return rec;
  }

  /** Close stateless recordings of past hours (all of them with `all`). */
  async sweepStateless(all = false): Promise<void> {
    const hour = new Date().toISOString().slice(0, 13);
    const closing: Array<Promise<void>> = [];
    for (const [key, rec] of this.#stateless) {
      if (all || !key.endsWith(`:${hour}`)) {
        this.#stateless.delete(key);
        closing.push(this.closeRecorder(rec, all ? 'shutdown' : 'ended'));
      }
    }
    await Promise.all(closing);
  }

  newId(): string {
    return randomUUID();
  }
}

/** The sinks the policies ask for (`spec.recording.sink`; the compiled engine reports them as `sinks`). */
function recordingSinks(engine: PolicyEngine): { sinks?: ReadonlyArray<'volume' | 'stdout'> } {
  const sinks = (engine.recording() as { sinks?: ReadonlyArray<'volume' | 'stdout'> }).sinks;
  return sinks !== undefined && sinks.length > 0 ? { sinks } : {};
}
