import { createHash } from 'node:crypto';
import { type FSWatcher, watch } from 'node:fs';
import { lstat, readdir, readFile, realpath, stat } from 'node:fs/promises';
import { basename, dirname, extname, join, resolve } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { errorMessage, isWardenError, WardenError } from '../errors.js';
import type { Logger } from '../log.js';
import { createLogger } from '../log.js';
import { compilePolicies } from './compile.js';
import type { PolicyEngine, PolicySource } from './decision.js';
import type { CompiledPolicyEngine } from './engine.js';
import type { PolicyDocument } from './schema.js';
import { type ValidationIssue, validatePolicy } from './validate.js';

/**
 * Policies from files: a YAML file with one or more `MCPPolicy` documents (`---` separated), or a
 * directory of `*.yaml`, `*.yml` and `*.json` files (not recursive; names starting with `.` are
 * skipped, so a mounted ConfigMap directory works).
 */
export interface FileIssue extends ValidationIssue {
  file: string;
}

const policyExtensions = new Set(['.yaml', '.yml', '.json']);
/** Far above any real policy; keeps a wrong path (a log file, a dump) from being parsed. */
export const MaxPolicyFileBytes = 4 * 1024 * 1024;

function invalid(issues: FileIssue[]): WardenError {
  const lines = issues.map((i) => `${i.file}: ${i.path || '(document)'}: ${i.message}`);
  return new WardenError('ERR_POLICY_INVALID', `invalid policy:\n${lines.join('\n')}`, {
    details: { issues },
  });
}

/** Parse YAML text into documents; YAML errors become issues (path names the document). */
export function parsePolicyText(text: string, file: string): { docs: unknown[]; issues: FileIssue[] } {
  const docs: unknown[] = [];
  const issues: FileIssue[] = [];
  const parsed = parseAllDocuments(text, { prettyErrors: true, uniqueKeys: true });
  const list = Array.isArray(parsed) ? parsed : [parsed];
  list.forEach((d, i) => {
    const where = list.length > 1 ? `(document ${i + 1})` : '';
    if (d.errors.length > 0) {
      for (const e of d.errors)
        issues.push({ file, path: where, message: `YAML: ${e.message.split('\n')[0]}` });
      return;
    }
    const value: unknown = d.toJS({ maxAliasCount: 100 });
    if (value === null || value === undefined) return; // empty document (e.g. a trailing ---)
    docs.push(value);
  });
  return { docs, issues };
}

async function policyFiles(path: string): Promise<string[]> {
  let info: Awaited<ReturnType<typeof stat>>;
  try {
    info = await stat(path);
  } catch (err) {
    throw new WardenError('ERR_POLICY_UNAVAILABLE', `cannot read policy path ${path}: ${errorMessage(err)}`, {
      cause: err,
    });
  }
  if (!info.isDirectory()) return [path];
  const names = (await readdir(path))
    .filter((n) => !n.startsWith('.') && policyExtensions.has(extname(n)))
    .sort();
  const files: string[] = [];
  for (const n of names) {
    const full = join(path, n);
    if ((await stat(full).catch(() => undefined))?.isFile()) files.push(full);
  }
  return files;
}

/** The raw policy files under a path and a digest of their names and content. */
interface PolicyFiles {
  files: Array<{ file: string; text: string }>;
  digest: string;
}

/** Read (not parse) the policy files: cheap enough to run on a timer. Throws WardenError. */
async function readPolicyFiles(path: string): Promise<PolicyFiles> {
  const names = await policyFiles(path);
  if (names.length === 0) {
    throw new WardenError('ERR_POLICY_INVALID', `no policy files (*.yaml, *.yml, *.json) in ${path}`);
  }
  const hash = createHash('sha256');
  const files: PolicyFiles['files'] = [];
  for (const file of names) {
    let text: string;
    try {
      const size = (await stat(file)).size;
      if (size > MaxPolicyFileBytes) {
        throw new WardenError(
          'ERR_POLICY_INVALID',
          `policy file ${file} is ${size} bytes: at most ${MaxPolicyFileBytes}`,
        );
      }
      text = await readFile(file, 'utf8');
    } catch (err) {
      if (isWardenError(err)) throw err;
      throw new WardenError(
        'ERR_POLICY_UNAVAILABLE',
        `cannot read policy file ${file}: ${errorMessage(err)}`,
        { cause: err },
      );
    }
    hash.update(file).update('\0').update(text).update('\0');
    files.push({ file, text });
  }
  return { files, digest: hash.digest('hex') };
}

/** Parse and validate files read by readPolicyFiles. Throws WardenError `ERR_POLICY_INVALID`. */
function parsePolicyFiles(path: string, files: PolicyFiles['files']): PolicyDocument[] {
  const issues: FileIssue[] = [];
  const docs: PolicyDocument[] = [];
  const seen = new Map<string, string>();
  for (const { file, text } of files) {
    const parsed = parsePolicyText(text, file);
    issues.push(...parsed.issues);
    parsed.docs.forEach((doc, i) => {
      const prefix = parsed.docs.length > 1 ? `(document ${i + 1}) ` : '';
      const found = validatePolicy(doc);
      for (const issue of found)
        issues.push({ file, path: `${prefix}${issue.path}`.trim(), message: issue.message });
      if (found.length > 0) return;
      const policy = doc as PolicyDocument;
      const key = `${policy.metadata.namespace ?? ''}/${policy.metadata.name}`;
      const other = seen.get(key);
      if (other !== undefined) {
        issues.push({
          file,
          path: `${prefix}metadata.name`,
          message: `policy "${policy.metadata.name}" is also defined in ${other}`,
        });
        return;
      }
      seen.set(key, file);
      docs.push(policy);
    });
  }
  if (issues.length > 0) throw invalid(issues);
  if (docs.length === 0) throw new WardenError('ERR_POLICY_INVALID', `no MCPPolicy documents in ${path}`);
  return docs;
}

/** Read, parse and validate; returns documents and a digest of the content. Throws WardenError. */
export async function readPolicyPath(path: string): Promise<{ docs: PolicyDocument[]; digest: string }> {
  const { files, digest } = await readPolicyFiles(path);
  return { docs: parsePolicyFiles(path, files), digest };
}

/**
 * Load every MCPPolicy in a file or directory. Throws `WardenError` `ERR_POLICY_INVALID` listing
 * `file: field: reason` for every problem (or `ERR_POLICY_UNAVAILABLE` when the path cannot be read).
 *
 * @example
 * const docs = await loadPolicyPath('examples/policy.yaml');
 */
export async function loadPolicyPath(path: string): Promise<PolicyDocument[]> {
  return (await readPolicyPath(path)).docs;
}

export interface FilePolicySourceOptions {
  logger?: Logger;
  /** Called with the error when a changed policy is rejected (the last good one stays). */
  onError?: (err: Error) => void;
  /** Quiet period after the last file event before reloading (default 100 ms). */
  debounceMs?: number;
  /**
   * Re-read the path this often even without a file event (default 10 000 ms; 0 turns it off):
   * re-resolves symlinks, re-arms the watch if the path now leads elsewhere, and applies the
   * policy if the content digest changed. Bounds what a missed file event can cost.
   */
  pollIntervalMs?: number;
  /** Testing seam: `false` places no fs watch, so only the poll sees changes (default true). */
  watch?: boolean;
  /** Only policies selecting these labels apply (default: all). */
  podLabels?: Readonly<Record<string, string>>;
}

/** The file-backed source: after a successful start there is always an engine. */
export interface FilePolicySource extends PolicySource {
  current(): CompiledPolicyEngine;
  /** Reload now (also what the watcher does). Resolves true when a new engine was applied. */
  reload(): Promise<boolean>;
}

/** What made a reload run; a poll repeats no failure it already reported. */
const Trigger = { watch: 'watch', poll: 'poll', manual: 'manual' } as const;
type Trigger = (typeof Trigger)[keyof typeof Trigger];

/**
 * Directories to watch, each with the entry names that matter in it (`all`: any), and whether an
 * event there means the path itself may now lead elsewhere (so the watches must be re-armed).
 */
type WatchPlan = Map<string, { names: Set<string> | 'all'; moves: boolean }>;

const Missing = '(missing)';

/** Where the path leads now: a change of `identity` means the watches point at the wrong place. */
async function locate(
  target: string,
  dir: string,
  isDir: boolean,
): Promise<{ identity: string; real: string }> {
  const realDir = await realpath(dir).catch(() => undefined);
  const info = realDir === undefined ? undefined : await stat(realDir).catch(() => undefined);
  const realFile = isDir ? undefined : await realpath(target).catch(() => undefined);
  const real = (isDir ? realDir : realFile) ?? Missing;
  return { identity: JSON.stringify([realDir, info?.dev, info?.ino, realFile]), real };
}

/**
 * The watches for a policy path. inotify follows symlinks once, when the watch is placed, and a
 * watch on a directory dies with it; so besides the directory itself (its files) watch, from
 * their parents, the directory and every symlink on its path, and for a symlinked file the
 * directory it really lives in.
 */
async function planWatches(target: string, dir: string, isDir: boolean): Promise<WatchPlan> {
  const plan: WatchPlan = new Map();
  const add = (at: string, name: string | undefined, moves: boolean): void => {
    const entry = plan.get(at) ?? { names: new Set<string>(), moves: false };
    if (name === undefined) entry.names = 'all';
    else if (entry.names !== 'all') entry.names.add(name);
    entry.moves ||= moves;
    plan.set(at, entry);
  };
  add(dir, isDir ? undefined : basename(target), false);
  for (let p = dir; dirname(p) !== p; p = dirname(p)) {
    if (p === dir || (await lstat(p).catch(() => undefined))?.isSymbolicLink())
      add(dirname(p), basename(p), true);
  }
  if (!isDir) {
    const real = await realpath(target).catch(() => undefined);
    const realDir = await realpath(dir).catch(() => undefined);
    if (real !== undefined && dirname(real) !== realDir) add(dirname(real), basename(real), true);
  }
  return plan;
}

/**
 * A PolicySource backed by a file or directory. The first load must succeed (it throws otherwise:
 * refuse to start). Afterwards the path is watched, and re-read every `pollIntervalMs`: a valid
 * change swaps the engine for the next message; an invalid change is logged as an error and the
 * last good engine stays in force, so `current()` never returns undefined. A path that disappears
 * is logged as a warning and the last good engine stays. When the directory or a symlink on the
 * path is replaced (`ln -sfn v2 current`, a ConfigMap `..data` swap, `rm -rf` and re-create), the
 * watch is re-armed on where the path leads now.
 *
 * @example
 * const source = await createFilePolicySource('/etc/mcp-warden/policy', { logger });
 * source.current().decide(call);
 */
export async function createFilePolicySource(
  path: string,
  options: FilePolicySourceOptions = {},
): Promise<FilePolicySource> {
  const logger = options.logger ?? createLogger('policy');
  const debounceMs = options.debounceMs ?? 100;
  const pollIntervalMs = options.pollIntervalMs ?? 10_000;
  if (!Number.isFinite(pollIntervalMs) || pollIntervalMs < 0) {
    throw new WardenError(
      'ERR_CONFIG',
      `pollIntervalMs must be 0 (off) or a positive number of ms: ${pollIntervalMs}`,
    );
  }
  const target = resolve(path);
  const first = await readPolicyPath(target);
  let engine = compilePolicies(first.docs, { podLabels: options.podLabels });
  let digest = first.digest;
  const listeners = new Set<(engine: PolicyEngine | undefined) => void>();
  logger.info({ path: target, policies: engine.policies() }, 'policies loaded');

  // The mode is fixed at start: a path that disappears is still the file (or directory) it was.
  const isDir = (await stat(target)).isDirectory();
  const watchDir = isDir ? target : dirname(target);
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<boolean> | undefined;
  let pending: Trigger | undefined;
  let closed = false;
  /** The last failure reported (content digest or code and message), until a read succeeds. */
  let failing: string | undefined;
  let watchers: FSWatcher[] = [];
  let armed = await locate(target, watchDir, isDir);
  /** Set when an event or error says the watches may be dead or in the wrong place. */
  let rearm = false;

  async function reloadOnce(trigger: Trigger): Promise<boolean> {
    let key: string | undefined;
    try {
      const read = await readPolicyFiles(target);
      if (read.digest === digest) {
        if (failing !== undefined)
          logger.info({ path: target }, 'policy path valid again; the policy in force is unchanged');
        failing = undefined;
        return false;
      }
      key = read.digest;
      if (trigger === Trigger.poll && key === failing) return false;
      const nextEngine = compilePolicies(parsePolicyFiles(target, read.files), {
        podLabels: options.podLabels,
      });
      engine = nextEngine;
      digest = read.digest;
      failing = undefined;
      logger.info({ path: target, trigger, policies: nextEngine.policies() }, 'policy change applied');
      for (const l of listeners) {
        try {
          l(nextEngine);
        } catch (err) {
          logger.error({ err: errorMessage(err) }, 'policy change listener failed');
        }
      }
      return true;
    } catch (err) {
      const code = isWardenError(err) ? err.code : undefined;
      key ??= `${code}:${errorMessage(err)}`;
      // The poll would otherwise repeat the same complaint every interval.
      if (trigger === Trigger.poll && key === failing) return false;
      failing = key;
      if (isWardenError(err, 'ERR_POLICY_UNAVAILABLE')) {
        logger.warn(
          { event: 'policy-unavailable', path: target, code, err: errorMessage(err) },
          'POLICY PATH GONE OR UNREADABLE: keeping the last good policy',
        );
      } else {
        const issues = isWardenError(err) ? err.details?.['issues'] : undefined;
        logger.error(
          { event: 'policy-rejected', path: target, code, issues, err: errorMessage(err) },
          'POLICY CHANGE REJECTED: keeping the last good policy',
        );
      }
      options.onError?.(err instanceof Error ? err : new Error(String(err)));
      return false;
    }
  }

  function closeWatchers(): void {
    for (const w of watchers) w.close();
    watchers = [];
  }

  /** Place the watches where the path leads now (a directory that is missing is retried later). */
  async function arm(): Promise<void> {
    const plan = await planWatches(target, watchDir, isDir);
    if (closed) return;
    closeWatchers();
    rearm = false;
    for (const [dir, { names, moves }] of plan) {
      let w: FSWatcher;
      try {
        w = watch(dir, { persistent: false }, (_event, name) => {
          const n = name === null ? undefined : String(name);
          // ConfigMap volumes swap `..data` (and `..<timestamp>` directories) next to the files.
          if (n !== undefined && names !== 'all' && !names.has(n) && !n.startsWith('..')) return;
          // The watched directory itself went (inotify names it by its own name) or moved.
          if (moves || n === undefined || n === basename(dir)) rearm = true;
          schedule();
        });
      } catch {
        rearm = true; // not there (yet): a parent's watch or the poll brings us back
        continue;
      }
      w.on('error', (err) => {
        rearm = true;
        logger.error(
          { path: target, dir, err: errorMessage(err) },
          'policy watch failed; keeping the last good policy',
        );
        options.onError?.(err);
      });
      watchers.push(w);
    }
  }

  /** Re-arm when the path now leads elsewhere or an event said a watched directory went. */
  async function rearmIfMoved(): Promise<void> {
    if (options.watch === false) return;
    const now = await locate(target, watchDir, isDir);
    if (!rearm && now.identity === armed.identity) return;
    // A path that went missing is reported by the read (a warning), not here.
    if (now.identity !== armed.identity && now.real !== Missing) {
      logger.info(
        { path: target, from: armed.real, to: now.real },
        'policy path was replaced; watching where it leads now',
      );
    }
    armed = now;
    await arm();
  }

  /** Reload now (serialised: a change during a reload triggers one more). Resolves true if applied. */
  async function reload(trigger: Trigger = Trigger.manual): Promise<boolean> {
    if (running !== undefined) {
      if (pending === undefined || pending === Trigger.poll) pending = trigger;
      return running;
    }
    running = (async () => {
      let applied = false;
      let next: Trigger | undefined = trigger;
      do {
        pending = undefined;
        // Re-arm before reading: a change after the new watch fires it, one before is read now.
        await rearmIfMoved();
        applied = (await reloadOnce(next)) || applied;
        next = pending;
      } while (next !== undefined && !closed);
      return applied;
    })();
    try {
      return await running;
    } finally {
      running = undefined;
    }
  }

  function schedule(): void {
    if (closed) return;
    if (timer !== undefined) clearTimeout(timer);
    timer = setTimeout(() => {
      timer = undefined;
      void reload(Trigger.watch);
    }, debounceMs);
  }

  // Watch directories, not files: editors and ConfigMap updates replace files by rename, which a
  // watch on the file itself would miss.
  if (options.watch !== false) await arm();
  const poller =
    pollIntervalMs > 0 ? setInterval(() => void reload(Trigger.poll), pollIntervalMs).unref() : undefined;

  return {
    current: () => engine,
    onChange(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    reload: () => reload(Trigger.manual),
    async close() {
      closed = true;
      if (timer !== undefined) clearTimeout(timer);
      if (poller !== undefined) clearInterval(poller);
      closeWatchers();
      listeners.clear();
      await running;
      closeWatchers();
    },
  };
}
