import {
  closeSync,
  existsSync,
  fstatSync,
  ftruncateSync,
  mkdirSync,
  openSync,
  readdirSync,
  readSync,
  statSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import { type FileHandle, open as openFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join, resolve } from 'node:path';
import { errorMessage, WardenError } from '../errors.js';
import { isRawNumber } from '../json.js';
import { createLogger, type Logger } from '../log.js';
import type { Metrics } from '../metrics/catalogue.js';
import { FORMAT, FORMAT_VERSION, GENESIS, sealLine, sealOpenBytes, sha256Hex, TERMINAL } from './format.js';
import type {
  OpenOptions,
  RecordEvent,
  Recorder,
  RecordingHeader,
  RecordingSummary,
  SessionRecorder,
} from './types.js';

export interface RecorderOptions {
  /** Directory sink: one file per session. */
  directory?: string;
  /** Stdout sink: `true` for process.stdout, or any writable stream. */
  stdout?: boolean | NodeJS.WritableStream;
  metrics?: Metrics;
  /** Buffered lines reach the file at least this often. Default 1000 ms. */
  flushIntervalMs?: number;
  /** Directory retention: total size and file age (closed recordings only). */
  retention?: { maxBytes?: number; maxAgeMs?: number };
  /**
   * At start, unclosed recordings written by another host (pod) are left alone unless untouched
   * for this long (their writer is gone). Default 1 hour. Our own host's are always recovered.
   */
  orphanAfterMs?: number;
  /** Lines queued beyond this many bytes per session are dropped (and counted). Default 8 MiB. */
  maxPendingBytes?: number;
  logger?: Logger;
}

export interface FileRecorder extends Recorder {
  open(header: RecordingHeader, options?: OpenOptions): SessionRecorder;
  /** Orphaned files closed with a `truncated` trailer when this recorder started. */
  readonly recovered: readonly string[];
  /** Write every buffered line now. */
  flush(): Promise<void>;
}

/**
 * The key under which stateless (2026-07-28) traffic is recorded: one recording per principal and
 * UTC hour, used as the header's `session`.
 *
 * @example
 * statelessRecordingKey('tid/oid', new Date('2026-11-30T04:41:00Z')); // 'stateless:tid/oid:2026-11-30T04'
 */
export function statelessRecordingKey(principal: string, at?: Date): string {
  return `stateless:${principal}:${at === undefined ? currentHour() : at.toISOString().slice(0, 13)}`;
}

let hourNumber = -1;
let hourText = '';
/** The current UTC hour as `YYYY-MM-DDTHH` (asked per relayed stateless message: formatted once an hour). */
function currentHour(): string {
  const hour = Math.floor(Date.now() / 3_600_000);
  if (hour !== hourNumber) {
    hourNumber = hour;
    hourText = new Date(hour * 3_600_000).toISOString().slice(0, 13);
  }
  return hourText;
}

function fileNameFor(session: string, start: Date): string {
  const stamp = start
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d+Z$/, 'Z');
  const safe = session.replace(/[^A-Za-z0-9._-]+/g, '_').slice(0, 64);
  return `${stamp}-${safe}-${sha256Hex(session).slice(0, 8)}.jsonl`;
}

/** What a message is (kind, method, target, id), written into `into` in that order. */
function messageFacts(message: unknown, into: Record<string, unknown>): Record<string, unknown> {
  if (Array.isArray(message)) {
    into['kind'] = 'batch';
    into['size'] = message.length;
    return into;
  }
  if (typeof message !== 'object' || message === null) {
    into['kind'] = 'unknown';
    return into;
  }
  const m = message as Record<string, unknown>;
  if (typeof m['method'] === 'string') {
    into['kind'] = 'id' in m ? 'request' : 'notification';
    into['method'] = m['method'];
    const params = m['params'];
    if (typeof params === 'object' && params !== null) {
      const name = (params as Record<string, unknown>)['name'];
      const uri = (params as Record<string, unknown>)['uri'];
      if (m['method'] === 'tools/call' && typeof name === 'string') into['tool'] = name;
      if (m['method'] === 'prompts/get' && typeof name === 'string') into['prompt'] = name;
      if (typeof uri === 'string') into['resource'] = uri;
    }
  } else {
    into['kind'] = 'error' in m ? 'error' : 'response';
  }
  if ('id' in m) into['id'] = m['id'];
  return into;
}

let isoMs = -1;
let isoText = '';
/** `new Date().toISOString()`, computed once per millisecond (busy streams record many lines per ms). */
function isoNow(): string {
  const ms = Date.now();
  if (ms !== isoMs) {
    isoMs = ms;
    isoText = new Date(ms).toISOString();
  }
  return isoText;
}

class SessionWriter implements SessionRecorder {
  private seq = 0;
  private lastHash = GENESIS;
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private writing: Promise<void> | undefined;
  /** Bytes a failed write left behind: written first on the next flush. */
  private unwritten: Buffer | undefined;
  private handle: Promise<FileHandle | undefined> | undefined;
  private closed = false;
  private dropped = 0;
  private readonly inflight = new Map<string | number, { method: string; tool: unknown }>();
  private readonly counts = { messages: 0, decisions: 0, denied: 0, masked: 0, dropped: 0 };
  /** The session id as a JSON string, for every line. */
  private readonly sessionJson: string;
  readonly startTime: Date;

  constructor(
    private readonly owner: RecorderImpl,
    private readonly header: RecordingHeader,
    readonly path: string | undefined,
    private readonly stream: NodeJS.WritableStream | undefined,
    private readonly payloads: 'masked' | 'none',
  ) {
    this.startTime = new Date();
    this.sessionJson = JSON.stringify(header.session);
    if (path !== undefined) {
      this.handle = openFile(path, 'a').catch((err: unknown) => {
        owner.error(`cannot open recording file: ${errorMessage(err)}`);
        return undefined;
      });
    }
    this.append({
      type: 'header',
      format: FORMAT,
      v: FORMAT_VERSION,
      principal: header.principal,
      pod: header.pod,
      host: hostname(),
      namespace: header.namespace,
      transport: header.transport,
      protocolVersion: header.protocolVersion,
      policies: header.policies,
      startTime: this.startTime.toISOString(),
    });
  }

  get pendingCount(): number {
    return this.pending.length;
  }

  /**
   * Seal and queue one line: `{"seq","prev","ts","session", ...fields, "message"}`. The four fixed
   * members are written as text (fields never carry them); `message` is the payload already
   * serialized, appended last.
   */
  private append(fields: Record<string, unknown>, message?: string): void {
    // Serialize first: a payload that cannot be serialized must not leave a gap in the chain.
    const rest = JSON.stringify(fields);
    let open = `{"seq":${this.seq + 1},"prev":"${this.lastHash}","ts":"${isoNow()}","session":${this.sessionJson}`;
    if (rest.length > 2) open += `,${rest.slice(1, -1)}`;
    if (message !== undefined) open += ',"message":';
    const { bytes, hash } = sealOpenBytes(open, message);
    this.seq++;
    this.lastHash = hash;
    if (this.stream !== undefined) {
      try {
        this.stream.write(bytes);
      } catch (err) {
        this.owner.error(`cannot write recording to stdout: ${errorMessage(err)}`);
      }
    }
    if (this.path !== undefined) {
      this.pending.push(bytes);
      this.pendingBytes += bytes.length;
      if (this.pendingBytes >= 256 * 1024) void this.flush();
    }
  }

  /** Responses name the tool of the request they answer (for replay and export filters). */
  private correlate(facts: Record<string, unknown>): void {
    const raw = facts['id'];
    // A number a double cannot carry is kept as its digits (pkg/json.ts): keyed by them, unlike a string.
    const id = isRawNumber(raw) ? `\0${raw.rawJSON}` : raw;
    if (typeof id !== 'string' && typeof id !== 'number') return;
    if (facts['kind'] === 'request' && typeof facts['method'] === 'string') {
      if (this.inflight.size >= 4096) this.inflight.clear();
      this.inflight.set(id, { method: facts['method'], tool: facts['tool'] });
    } else if (facts['kind'] === 'response' || facts['kind'] === 'error') {
      const req = this.inflight.get(id);
      if (req === undefined) return;
      this.inflight.delete(id);
      facts['method'] = req.method;
      if (req.tool !== undefined) facts['tool'] = req.tool;
    }
  }

  record(event: RecordEvent): void {
    if (this.closed) return;
    try {
      if (this.path !== undefined && this.pendingBytes > this.owner.maxPendingBytes) {
        // The disk is not keeping up: drop rather than grow without bound; the gap is recorded.
        this.dropped++;
        this.counts.dropped++;
        this.owner.error('recording buffer full: event dropped');
        return;
      }
      if (this.dropped > 0) {
        this.append({ type: 'dropped', count: this.dropped });
        this.dropped = 0;
      }
      switch (event.type) {
        case 'message': {
          this.counts.messages++;
          const line = messageFacts(event.message, { type: 'message', direction: event.direction });
          this.correlate(line);
          if (this.payloads === 'none') this.append(line);
          else if (event.json !== undefined) this.append(line, event.json);
          else this.append(line, JSON.stringify(event.message));
          break;
        }
        case 'decision':
          this.counts.decisions++;
          if (event.enforced === 'deny') this.counts.denied++;
          this.append(event);
          break;
        case 'mask': {
          for (const n of Object.values(event.detectors)) this.counts.masked += n;
          this.append(event);
          break;
        }
        case 'approval':
          this.append(event);
          break;
        default:
          this.owner.error(`unknown recording event type`);
      }
    } catch (err) {
      // A payload JSON cannot serialize (cycle, BigInt, nesting deeper than the serializer's
      // stack): never throw into the data path, but never lose it silently either: the gap is
      // recorded as a `dropped` line before the next event (or the close), as for a full buffer.
      this.dropped++;
      this.counts.dropped++;
      this.owner.error(`cannot record event: ${errorMessage(err)}`);
    }
  }

  flush(): Promise<void> {
    if (this.writing !== undefined) {
      return this.writing.then(() =>
        this.pending.length > 0 || this.unwritten !== undefined ? this.flush() : undefined,
      );
    }
    if ((this.pending.length === 0 && this.unwritten === undefined) || this.handle === undefined)
      return Promise.resolve();
    const fresh = this.pending.length === 1 ? this.pending[0]! : Buffer.concat(this.pending);
    const lines = this.pending.length;
    let buf = this.unwritten === undefined ? fresh : Buffer.concat([this.unwritten, fresh]);
    this.pending = [];
    this.pendingBytes = 0;
    this.unwritten = undefined;
    const handle = this.handle;
    this.writing = (async () => {
      const fh = await handle;
      if (fh === undefined) {
        this.owner.error(`recording lost ${lines} line(s): file not open`, lines);
        return;
      }
      try {
        // A short write (a full disk) leaves the rest for the next flush, so lines stay whole and in order.
        while (buf.length > 0) {
          const { bytesWritten } = await fh.write(buf);
          buf = buf.subarray(bytesWritten);
        }
      } catch (err) {
        this.unwritten = Buffer.from(buf);
        this.pendingBytes += buf.length;
        this.owner.error(`cannot write recording (will retry): ${errorMessage(err)}`);
      }
    })().finally(() => {
      this.writing = undefined;
    });
    return this.writing;
  }

  async close(reason: 'ended' | 'expired' | 'shutdown' = 'ended'): Promise<RecordingSummary | undefined> {
    if (this.closed) return undefined;
    try {
      if (this.dropped > 0) this.append({ type: 'dropped', count: this.dropped });
      const endTime = new Date();
      this.append({
        type: 'close',
        reason,
        endTime: endTime.toISOString(),
        counts: { ...this.counts, lines: this.seq + 1 },
      });
      this.closed = true;
      await this.flush();
      if (this.unwritten !== undefined) await this.flush();
      if (this.unwritten !== undefined) {
        this.owner.error('recording closed with unwritten lines: the file is incomplete');
        this.unwritten = undefined;
      }
      const fh = await this.handle;
      // The closing line reaches the disk, not only the page cache (a node crash loses nothing closed).
      await fh
        ?.datasync()
        .catch((err: unknown) => this.owner.error(`cannot sync recording: ${errorMessage(err)}`));
      await fh?.close();
      this.owner.sessionClosed(this);
      return {
        session: this.header.session,
        principal: this.header.principal,
        pod: this.header.pod,
        startTime: this.startTime.toISOString(),
        endTime: endTime.toISOString(),
        messages: this.counts.messages,
        denied: this.counts.denied,
        location: this.path ?? 'stdout',
        sha256: this.lastHash,
      };
    } catch (err) {
      this.closed = true;
      this.owner.sessionClosed(this);
      this.owner.error(`cannot close recording: ${errorMessage(err)}`);
      return undefined;
    }
  }
}

/**
 * Files open for writing by any recorder of this process (absolute paths): recovery and retention
 * of another recorder on the same directory never touch them.
 */
const liveFiles = new Set<string>();

class RecorderImpl implements FileRecorder {
  readonly recovered: string[] = [];
  readonly maxPendingBytes: number;
  private readonly sessions = new Set<SessionWriter>();
  private readonly timer: NodeJS.Timeout;
  private readonly stream: NodeJS.WritableStream | undefined;
  private readonly logger: Logger;
  private lastRetention = 0;
  private closed = false;

  constructor(private readonly options: RecorderOptions) {
    this.logger = options.logger ?? createLogger('record');
    this.maxPendingBytes = options.maxPendingBytes ?? 8 * 1024 * 1024;
    this.stream =
      options.stdout === true ? process.stdout : options.stdout === false ? undefined : options.stdout;
    if (options.directory !== undefined) {
      try {
        mkdirSync(options.directory, { recursive: true });
      } catch (err) {
        throw new WardenError(
          'ERR_CONFIG',
          `recordings directory ${options.directory}: ${errorMessage(err)}`,
          { cause: err },
        );
      }
      this.recoverOrphans(options.directory);
      this.applyRetention();
    }
    const interval = options.flushIntervalMs ?? 1000;
    this.timer = setInterval(() => {
      void this.flush();
      if (Date.now() - this.lastRetention > 60_000) this.applyRetention();
    }, interval);
    this.timer.unref();
  }

  error(message: string, count = 1): void {
    this.options.metrics?.recordingErrors.inc(count);
    this.logger.warn({ event: 'recording-error' }, message);
  }

  open(header: RecordingHeader, options: OpenOptions = {}): SessionRecorder {
    const sinks = options.sinks;
    const dir = this.options.directory;
    let toFile = dir !== undefined && (sinks === undefined || sinks.includes('volume'));
    let toStream = this.stream !== undefined && (sinks === undefined || sinks.includes('stdout'));
    if (!toFile && !toStream) {
      // The policy asked for a sink this process has not configured: use the one it has.
      toFile = dir !== undefined;
      toStream = !toFile;
    }
    let path: string | undefined;
    if (toFile && dir !== undefined) {
      const base = fileNameFor(header.session, new Date());
      path = join(dir, base);
      for (let n = 2; existsSync(path) || this.isOpen(path); n++)
        path = join(dir, base.replace(/\.jsonl$/, `-${n}.jsonl`));
    }
    const writer = new SessionWriter(
      this,
      header,
      path,
      toStream ? this.stream : undefined,
      options.payloads ?? 'masked',
    );
    this.sessions.add(writer);
    if (path !== undefined) liveFiles.add(resolve(path));
    return writer;
  }

  private isOpen(path: string): boolean {
    for (const s of this.sessions) if (s.path === path) return true;
    return false;
  }

  sessionClosed(writer: SessionWriter): void {
    this.sessions.delete(writer);
    if (writer.path !== undefined) liveFiles.delete(resolve(writer.path));
    if (Date.now() - this.lastRetention > 10_000) this.applyRetention();
  }

  async flush(): Promise<void> {
    await Promise.all([...this.sessions].map((s) => s.flush()));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.timer);
    await Promise.all([...this.sessions].map((s) => s.close('shutdown')));
  }

  /** Close files a previous process left open (no `close` line) with a chained `truncated` trailer. */
  private recoverOrphans(dir: string): void {
    let names: string[];
    try {
      names = readdirSync(dir).filter((n) => n.endsWith('.jsonl'));
    } catch (err) {
      this.error(`cannot list recordings directory: ${errorMessage(err)}`);
      return;
    }
    for (const name of names) {
      const path = join(dir, name);
      try {
        if (liveFiles.has(resolve(path))) continue;
        if (!this.mayRecover(path)) continue;
        if (recoverFile(path)) this.recovered.push(path);
      } catch (err) {
        this.error(`cannot recover ${name}: ${errorMessage(err)}`);
      }
    }
  }

  /**
   * A shared volume may hold other pods' live recordings: a file is ours to close when its header
   * names this host (a restarted container of the same pod), or when nobody wrote to it for
   * `orphanAfterMs` (its writer is gone).
   */
  private mayRecover(path: string): boolean {
    const st = statSync(path);
    if (Date.now() - st.mtimeMs > (this.options.orphanAfterMs ?? 3_600_000)) return true;
    return headerHost(path) === hostname();
  }

  /** Delete closed recordings older than maxAgeMs, then the oldest until under maxBytes. */
  applyRetention(): void {
    this.lastRetention = Date.now();
    const dir = this.options.directory;
    const { maxBytes, maxAgeMs } = this.options.retention ?? {};
    if (dir === undefined || (maxBytes === undefined && maxAgeMs === undefined)) return;
    try {
      const all = readdirSync(dir)
        .filter((n) => n.endsWith('.jsonl'))
        .map((n) => join(dir, n))
        .map((p) => ({ p, st: statSync(p) }));
      let total = all.reduce((sum, f) => sum + f.st.size, 0);
      // Only closed recordings go: never one being written, here or by another pod on a shared volume.
      const candidates = all
        .filter((f) => !this.isOpen(f.p) && !liveFiles.has(resolve(f.p)) && isClosedFile(f.p))
        .sort((a, b) => a.st.mtimeMs - b.st.mtimeMs);
      const now = Date.now();
      for (const f of candidates) {
        const old = maxAgeMs !== undefined && now - f.st.mtimeMs > maxAgeMs;
        const over = maxBytes !== undefined && total > maxBytes;
        if (!old && !over) continue;
        unlinkSync(f.p);
        total -= f.st.size;
      }
    } catch (err) {
      this.error(`retention: ${errorMessage(err)}`);
    }
  }
}

/** Whether a recording ends with a `close` or `truncated` line. */
function isClosedFile(path: string): boolean {
  const fd = openSync(path, 'r');
  try {
    const last = lastLineOf(fd);
    if (last === undefined || last.cut > 0) return false;
    const type = (JSON.parse(last.line) as { type?: unknown }).type;
    return typeof type === 'string' && TERMINAL.has(type);
  } catch {
    return false;
  } finally {
    closeSync(fd);
  }
}

/** The `host` of a recording's header line, or undefined when it cannot be read. */
function headerHost(path: string): string | undefined {
  const fd = openSync(path, 'r');
  try {
    const buf = Buffer.alloc(64 * 1024);
    const n = readSync(fd, buf, 0, buf.length, 0);
    const nl = buf.subarray(0, n).indexOf(0x0a);
    if (nl === -1) return undefined;
    const header = JSON.parse(buf.subarray(0, nl).toString('utf8')) as { host?: unknown };
    return typeof header.host === 'string' ? header.host : undefined;
  } catch {
    return undefined;
  } finally {
    closeSync(fd);
  }
}

/** The last complete line of a file, and how many bytes of a partial line follow it. */
function lastLineOf(fd: number): { line: string; cut: number } | undefined {
  const size = fstatSync(fd).size;
  if (size === 0) return undefined;
  let buf = Buffer.alloc(0);
  let pos = size;
  for (;;) {
    // `buf` holds bytes [pos, size).
    const nl = buf.lastIndexOf(0x0a);
    if (nl !== -1) {
      const before = nl > 0 ? buf.lastIndexOf(0x0a, nl - 1) : -1;
      if (before !== -1 || pos === 0)
        return { line: buf.subarray(before + 1, nl).toString('utf8'), cut: buf.length - nl - 1 };
    } else if (pos === 0) {
      return { line: '', cut: size };
    }
    const len = Math.min(64 * 1024, pos);
    pos -= len;
    const part = Buffer.alloc(len);
    readSync(fd, part, 0, len, pos);
    buf = Buffer.concat([part, buf]);
  }
}

/** Append a `truncated` trailer to an unclosed recording; true when the file was changed. */
export function recoverFile(path: string): boolean {
  const fd = openSync(path, 'r+');
  try {
    const last = lastLineOf(fd);
    if (last === undefined) return false;
    const size = fstatSync(fd).size;
    if (last.line === '') {
      // Not even a complete header: nothing to chain to.
      ftruncateSync(fd, 0);
      return true;
    }
    const parsed = JSON.parse(last.line) as { seq?: unknown; type?: unknown; session?: unknown };
    if (typeof parsed.type === 'string' && TERMINAL.has(parsed.type) && last.cut === 0) return false;
    if (typeof parsed.type === 'string' && TERMINAL.has(parsed.type)) {
      ftruncateSync(fd, size - last.cut);
      return true;
    }
    if (last.cut > 0) ftruncateSync(fd, size - last.cut);
    const seq = typeof parsed.seq === 'number' ? parsed.seq + 1 : 0;
    const trailer = sealLine({
      seq,
      prev: sha256Hex(last.line),
      ts: new Date().toISOString(),
      session: parsed.session,
      type: 'truncated',
      reason: 'the recording process ended without closing this session',
      droppedBytes: last.cut,
    });
    writeSync(fd, `${trailer}\n`, size - last.cut);
    return true;
  } finally {
    closeSync(fd);
  }
}

/**
 * The recording stage. Files are written append-only with bounded buffering (flushed at least
 * every `flushIntervalMs`); at start, files a crashed process left unclosed get a `truncated`
 * trailer. Failures never throw into the data path: they count in `recording_errors_total`.
 *
 * @example
 * const recorder = createRecorder({ directory: '/var/lib/mcp-warden/recordings' });
 * const s = recorder.open({ session: 'abc', principal: 'tid/oid', pod: 'gw', transport: 'streamable-http', policies: [] });
 * s.record({ type: 'message', direction: 'client-to-server', message: { jsonrpc: '2.0', id: 1, method: 'tools/list' } });
 * const summary = await s.close(); // { location: '/var/lib/.../20261130T044100Z-abc-....jsonl', sha256: '…', ... }
 */
export function createRecorder(options: RecorderOptions): FileRecorder {
  if (options.directory === undefined && (options.stdout === undefined || options.stdout === false)) {
    throw new WardenError('ERR_CONFIG', 'a recorder needs a directory (--recordings DIR) or stdout');
  }
  return new RecorderImpl(options);
}
