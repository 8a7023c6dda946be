import { errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import type { PolicyEngine, PolicySource } from '../policy/decision.js';
import { jittered, pause } from './backoff.js';
import { KubeApiError, type KubeClient, type KubeObject, type WatchEvent } from './client.js';
import { MCPPOLICY_API, policiesPath } from './resources.js';
import { type LabelSelector, selectorMatches } from './selector.js';

/** An `MCPPolicy` as the API server returns it (spec validated by the webhook and the CRD schema). */
export interface PolicyObject extends KubeObject {
  metadata: {
    name: string;
    namespace?: string;
    resourceVersion?: string;
    generation?: number;
    uid?: string;
    labels?: Record<string, string>;
  };
  spec?: { podSelector?: LabelSelector | null; mode?: string; [key: string]: unknown };
  status?: Record<string, unknown>;
}

/** Turns the selected policy objects into an engine (`compilePolicies` of pkg/policy). */
export type PolicyCompiler = (
  docs: PolicyObject[],
  options: { podLabels: Record<string, string> },
) => PolicyEngine;

export interface KubePolicySourceOptions {
  client: KubeClient;
  namespace: string;
  /** The pod's labels: a policy applies when its `spec.podSelector` selects them (empty selects all). */
  podLabels: Record<string, string>;
  compile: PolicyCompiler;
  /**
   * How long the source keeps serving the last engine while the API server is unreachable; after
   * that `current()` is undefined (fail closed) until a relist succeeds. Default 30 s.
   */
  gracePeriodMs?: number;
  /** Reconnect backoff: doubles from `initialMs` up to `maxMs` (defaults 250 ms, 10 s), with jitter. */
  backoff?: { initialMs?: number; maxMs?: number };
  /** Server-side watch timeout; the watch is then resumed from the last resourceVersion. Default 240 s. */
  watchTimeoutSec?: number;
  logger?: Logger;
  /** Called with every list/watch/compile failure (for tests and metrics). */
  onError?: (err: Error) => void;
}

/** The cluster PolicySource, plus what the status reporter needs to know. */
export interface KubePolicySource extends PolicySource {
  /** The policy objects currently selecting this pod (latest seen, including status). */
  selected(): PolicyObject[];
  /**
   * Why the current selection did not compile (the last good engine stays in force): for `policy`
   * when given (undefined when the failure names other policies only), else the whole message.
   */
  compileError(policy?: string): string | undefined;
  /** Resolves after the first successful list (whatever it contained); rejects never. */
  readonly synced: Promise<void>;
  /** The pod was relabelled (downward-API labels file changed): reselect and recompile. */
  setPodLabels(labels: Record<string, string>): void;
  /** Listeners for any change of the selected objects, including status-only changes. */
  onObjects(listener: (objects: PolicyObject[]) => void): () => void;
}

/** Issues of an ERR_POLICY_INVALID error, grouped by the policy they name. */
function attribute(err: unknown, selected: PolicyObject[]): Map<string, string[]> {
  const byPolicy = new Map<string, string[]>();
  const issues = (err as { details?: { issues?: unknown } })?.details?.issues;
  if (!Array.isArray(issues)) return byPolicy;
  const names = new Set(selected.map((o) => o.metadata.name));
  for (const issue of issues as Array<{ source?: unknown; path?: unknown; message?: unknown }>) {
    const name = typeof issue?.source === 'string' ? issue.source.replace(/^policy /, '') : '';
    if (!names.has(name)) return new Map(); // cannot attribute: treat as a failure of the whole set
    const list = byPolicy.get(name) ?? [];
    list.push(`${String(issue.path ?? '')}: ${String(issue.message ?? '')}`);
    byPolicy.set(name, list);
  }
  return byPolicy;
}

function isGone(err: unknown): boolean {
  return err instanceof KubeApiError && err.status === 410;
}

/**
 * Lists and watches the `MCPPolicy` objects of one namespace and keeps a compiled engine of those
 * that select the pod. Relists on 410 Gone and after any error, reconnects with capped backoff,
 * and fails closed: `current()` is undefined until the first successful load, and again once the
 * API server has been unreachable for longer than the grace period.
 *
 * @example
 * const source = createKubePolicySource({ client, namespace: 'agents', podLabels: { app: 'x' }, compile: compilePolicies });
 * await source.synced;
 * source.current()?.decide(ctx);
 */
export function createKubePolicySource(options: KubePolicySourceOptions): KubePolicySource {
  const { client, namespace, compile, logger } = options;
  let podLabels: Record<string, string> = { ...options.podLabels };
  const graceMs = options.gracePeriodMs ?? 30_000;
  const initialBackoff = options.backoff?.initialMs ?? 250;
  const maxBackoff = options.backoff?.maxMs ?? 10_000;
  const watchTimeoutSec = options.watchTimeoutSec ?? 240;
  const path = policiesPath(namespace);

  const objects = new Map<string, PolicyObject>();
  const listeners = new Set<(engine: PolicyEngine | undefined) => void>();
  const objectListeners = new Set<(objects: PolicyObject[]) => void>();
  let engine: PolicyEngine | undefined;
  /** Key of (name, generation) of the selected set the engine was compiled from. */
  let engineKey: string | undefined;
  let lastCompileError: string | undefined;
  /** Compile failures attributed to policies (from ERR_POLICY_INVALID issues `source: policy <name>`). */
  let errorsByPolicy = new Map<string, string[]>();
  let connected = false;
  let lastContact = 0;
  let expired = true;
  let closed = false;
  let graceTimer: NodeJS.Timeout | undefined;
  const abort = new AbortController();
  let markSynced: () => void = () => undefined;
  const synced = new Promise<void>((resolve) => {
    markSynced = resolve;
  });

  const emit = (value: PolicyEngine | undefined): void => {
    for (const l of listeners) {
      try {
        l(value);
      } catch (err) {
        logger?.error({ err: errorMessage(err) }, 'policy change listener failed');
      }
    }
  };

  const selectedNow = (): PolicyObject[] =>
    [...objects.values()]
      .filter((o) => selectorMatches(o.spec?.podSelector ?? undefined, podLabels))
      // Code-unit order, not localeCompare: the same on every node whatever its locale, and it
      // keeps ICU's collation data (~6 MiB of the node binary) out of the sidecar's memory.
      .sort((a, b) => (a.metadata.name < b.metadata.name ? -1 : a.metadata.name > b.metadata.name ? 1 : 0));

  const report = (err: Error): void => {
    options.onError?.(err);
  };

  /** Recompile when the selected set or a selected spec (generation) changed; then tell object listeners. */
  const refresh = (): void => {
    const selected = selectedNow();
    try {
      recompile(selected);
    } finally {
      for (const l of objectListeners) {
        try {
          l(selected);
        } catch (err) {
          logger?.error({ err: errorMessage(err) }, 'policy object listener failed');
        }
      }
    }
  };

  const recompile = (selected: PolicyObject[]): void => {
    const key = selected
      .map((o) => `${o.metadata.uid ?? ''}/${o.metadata.name}@${o.metadata.generation ?? 0}`)
      .join(',');
    if (key === engineKey && engine !== undefined) {
      if (expired) {
        expired = false;
        emit(engine);
      }
      return;
    }
    try {
      const next = compile(selected, { podLabels });
      engine = next;
      engineKey = key;
      lastCompileError = undefined;
      errorsByPolicy = new Map();
      expired = false;
      logger?.info(
        { policies: selected.map((o) => `${o.metadata.name}@${o.metadata.generation ?? 0}`) },
        'policies loaded',
      );
      emit(next);
    } catch (err) {
      // Keep the last good engine: a policy the webhook should have refused must not open the pod.
      lastCompileError = errorMessage(err);
      errorsByPolicy = attribute(err, selected);
      engineKey = key;
      logger?.error({ err: lastCompileError }, 'policy compile failed; keeping the last good policies');
      report(err instanceof Error ? err : new Error(lastCompileError));
      if (expired && engine !== undefined) {
        expired = false;
        emit(engine);
      }
    }
  };

  const contact = (): void => {
    lastContact = Date.now();
  };

  const startGraceTimer = (): void => {
    if (graceTimer !== undefined || closed) return;
    const remaining = Math.max(0, lastContact + graceMs - Date.now());
    graceTimer = setTimeout(() => {
      graceTimer = undefined;
      if (connected || closed) return;
      if (Date.now() - lastContact >= graceMs) {
        if (!expired) {
          expired = true;
          logger?.error(
            { graceMs },
            'API server unreachable beyond the grace period: refusing every call until policies reload',
          );
          emit(undefined);
        }
      } else {
        startGraceTimer();
      }
    }, remaining);
    graceTimer.unref();
  };

  const list = async (): Promise<string> => {
    const res = await client.request<{ metadata?: { resourceVersion?: string }; items?: PolicyObject[] }>(
      'GET',
      path,
      {
        signal: abort.signal,
      },
    );
    objects.clear();
    for (const item of res.items ?? []) {
      if (typeof item?.metadata?.name !== 'string') continue;
      // List items carry no apiVersion/kind; compile wants whole documents.
      objects.set(item.metadata.name, {
        ...item,
        apiVersion: MCPPOLICY_API.apiVersion,
        kind: MCPPOLICY_API.kind,
      });
    }
    contact();
    refresh();
    markSynced();
    return res.metadata?.resourceVersion ?? '';
  };

  const onEvent = (event: WatchEvent, state: { rv: string }): void => {
    contact();
    if (event.type === 'ERROR') {
      const status = event.object as { code?: number; message?: string };
      throw new KubeApiError(status.code ?? 500, `watch ${path}: ${status.message ?? 'error event'}`);
    }
    const obj = event.object as PolicyObject;
    if (obj?.metadata?.resourceVersion) state.rv = obj.metadata.resourceVersion;
    if (event.type === 'BOOKMARK') return;
    const name = obj?.metadata?.name;
    if (typeof name !== 'string') return;
    if (event.type === 'DELETED') objects.delete(name);
    else
      objects.set(name, {
        ...obj,
        apiVersion: obj.apiVersion ?? MCPPOLICY_API.apiVersion,
        kind: obj.kind ?? MCPPOLICY_API.kind,
      });
    refresh();
  };

  const loop = async (): Promise<void> => {
    let delay = initialBackoff;
    let rv: string | undefined;
    while (!closed) {
      try {
        if (rv === undefined) rv = await list();
        const state = { rv };
        // Client-side guard: a silently dead connection ends a little after the server timeout.
        const watchAbort = AbortSignal.any([
          abort.signal,
          AbortSignal.timeout((watchTimeoutSec + 15) * 1000),
        ]);
        await client.watch(
          path,
          {
            query: { resourceVersion: rv, allowWatchBookmarks: true, timeoutSeconds: watchTimeoutSec },
            signal: watchAbort,
            onOpen: () => {
              connected = true;
              contact();
              delay = initialBackoff;
            },
          },
          (event) => onEvent(event, state),
        );
        rv = state.rv;
        connected = false;
        contact();
      } catch (err) {
        // The grace period counts from the moment an open watch broke, not from its last event.
        if (connected) contact();
        connected = false;
        if (closed) return;
        // 410 Gone (inside the stream or on the request) and any other failure: relist.
        rv = undefined;
        const e = err instanceof Error ? err : new Error(String(err));
        if (!isGone(err)) {
          logger?.warn(
            { err: errorMessage(err), retryInMs: delay },
            'policy watch failed; relisting after backoff',
          );
          startGraceTimer();
        } else {
          logger?.info('policy watch expired (410 Gone); relisting');
        }
        report(e);
        if (!isGone(err)) {
          await pause(jittered(delay), abort.signal);
          delay = Math.min(maxBackoff, delay * 2);
        }
      }
    }
  };

  lastContact = Date.now();
  startGraceTimer();
  void loop();

  return {
    current: () => (expired ? undefined : engine),
    onChange(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    onObjects(listener) {
      objectListeners.add(listener);
      return () => objectListeners.delete(listener);
    },
    selected: selectedNow,
    compileError(policy) {
      if (policy === undefined || lastCompileError === undefined) return lastCompileError;
      // Unattributable failures concern every selected policy.
      if (errorsByPolicy.size === 0) return lastCompileError;
      return errorsByPolicy.get(policy)?.join('; ');
    },
    setPodLabels(labels) {
      const same =
        Object.keys(labels).length === Object.keys(podLabels).length &&
        Object.entries(labels).every(([k, v]) => podLabels[k] === v);
      if (same) return;
      podLabels = { ...labels };
      logger?.info({ labels: Object.keys(podLabels).length }, 'pod labels changed; reselecting policies');
      // The compile key covers the selected set; labels can change the engine for the same set too.
      engineKey = undefined;
      if (engine !== undefined || objects.size > 0) refresh();
    },
    synced,
    async close() {
      closed = true;
      abort.abort();
      if (graceTimer !== undefined) clearTimeout(graceTimer);
      listeners.clear();
      objectListeners.clear();
    },
  };
}
