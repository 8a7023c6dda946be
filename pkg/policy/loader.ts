import { createHash } from 'node:crypto';
import { type FSWatcher, watch } from 'node:fs';
import { readdir, readFile, stat } from 'node:fs/promises';
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

/** Read, parse and validate; returns documents and a digest of the content. Throws WardenError. */
export async function readPolicyPath(path: string): Promise<{ docs: PolicyDocument[]; digest: string }> {
  const files = await policyFiles(path);
  if (files.length === 0) {
    throw new WardenError('ERR_POLICY_INVALID', `no policy files (*.yaml, *.yml, *.json) in ${path}`);
  }
  const hash = createHash('sha256');
  const issues: FileIssue[] = [];
  const docs: PolicyDocument[] = [];
  const seen = new Map<string, string>();
  for (const file of files) {
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
  return { docs, digest: hash.digest('hex') };
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
  /** Only policies selecting these labels apply (default: all). */
  podLabels?: Readonly<Record<string, string>>;
}

/** The file-backed source: after a successful start there is always an engine. */
export interface FilePolicySource extends PolicySource {
  current(): CompiledPolicyEngine;
  /** Reload now (also what the watcher does). Resolves true when a new engine was applied. */
  reload(): Promise<boolean>;
}

/**
 * A PolicySource backed by a file or directory. The first load must succeed (it throws otherwise:
 * refuse to start). Afterwards the path is watched: a valid change swaps the engine for the next
 * message; an invalid change is logged as an error and the last good engine stays in force, so
 * `current()` never returns undefined.
 */
export async function createFilePolicySource(
  path: string,
  options: FilePolicySourceOptions = {},
): Promise<FilePolicySource> {
  const logger = options.logger ?? createLogger('policy');
  const debounceMs = options.debounceMs ?? 100;
  const target = resolve(path);
  const first = await readPolicyPath(target);
  let engine = compilePolicies(first.docs, { podLabels: options.podLabels });
  let digest = first.digest;
  const listeners = new Set<(engine: PolicyEngine | undefined) => void>();
  logger.info({ path: target, policies: engine.policies() }, 'policies loaded');

  let timer: NodeJS.Timeout | undefined;
  let running: Promise<boolean> | undefined;
  let again = false;
  let closed = false;

  async function reloadOnce(): Promise<boolean> {
    try {
      const next = await readPolicyPath(target);
      if (next.digest === digest) return false;
      const nextEngine = compilePolicies(next.docs, { podLabels: options.podLabels });
      engine = nextEngine;
      digest = next.digest;
      logger.info({ path: target, policies: nextEngine.policies() }, 'policy change applied');
      for (const l of listeners) {
        try {
          l(nextEngine);
        } catch (err) {
          logger.error({ err: errorMessage(err) }, 'policy change listener failed');
        }
      }
      return true;
    } catch (err) {
      const issues = isWardenError(err) ? err.details?.['issues'] : undefined;
      logger.error(
        { path: target, code: isWardenError(err) ? err.code : undefined, issues, err: errorMessage(err) },
        'POLICY CHANGE REJECTED: keeping the last good policy',
      );
      options.onError?.(err instanceof Error ? err : new Error(String(err)));
      return false;
    }
  }

  /** Reload now (serialised: a change during a reload triggers one more). Resolves true if applied. */
  async function reload(): Promise<boolean> {
    if (running !== undefined) {
      again = true;
      return running;
    }
    running = (async () => {
      let applied = false;
      do {
        again = false;
        applied = (await reloadOnce()) || applied;
      } while (again && !closed);
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
      void reload();
    }, debounceMs);
  }

  // Watch the directory (or the file's directory): editors and ConfigMap updates replace files by
  // rename, which a watch on the file itself would miss.
  const isDir = (await stat(target)).isDirectory();
  const watchDir = isDir ? target : dirname(target);
  const fileName = basename(target);
  const watcher: FSWatcher = watch(watchDir, { persistent: false }, (_event, name) => {
    if (!isDir && name !== null && name !== fileName && !String(name).startsWith('..')) return;
    schedule();
  });
  watcher.on('error', (err) => {
    logger.error(
      { path: target, err: errorMessage(err) },
      'policy watch failed; keeping the last good policy',
    );
    options.onError?.(err);
  });

  return {
    current: () => engine,
    onChange(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    reload,
    async close() {
      closed = true;
      if (timer !== undefined) clearTimeout(timer);
      watcher.close();
      listeners.clear();
      await running;
    },
  };
}
