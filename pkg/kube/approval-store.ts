import { canonicalJson } from '../approval/digest.js';
import type { ApprovalChange, ApprovalStore, StoredApproval } from '../approval/types.js';
import { ErrorCodes, errorMessage, WardenError } from '../errors.js';
import type { Logger } from '../log.js';
import type { ApprovalPhase, MCPApprovalSpec } from '../policy/schema.js';
import { jittered, pause } from './backoff.js';
import { KubeApiError, type KubeClient, type KubeObject, type WatchEvent } from './client.js';
import { approvalPath, approvalsPath, MCPAPPROVAL_API } from './resources.js';

/** Annotation the admission webhook stamps on CREATE (webhook/validators.ts CREATED_BY_ANNOTATION). */
const CREATED_BY = 'mcpwarden.io/created-by';
/** The bookmark that ends a watch's initial events (`sendInitialEvents=true`). */
const INITIAL_EVENTS_END = 'k8s.io/initial-events-end';

export interface KubeApprovalStoreOptions {
  client: KubeClient;
  namespace: string;
  logger?: Logger;
  /** Server-side watch timeout; the watch then resumes from the last resourceVersion. Default 240 s. */
  watchTimeoutSec?: number;
  /** Backoff after a failed watch: first and longest delay (ms). Defaults 500 and 30 000. */
  initialBackoffMs?: number;
  maxBackoffMs?: number;
}

interface ApprovalObject extends KubeObject {
  spec?: MCPApprovalSpec;
  status?: { phase?: ApprovalPhase; lastTransitionTime?: string; holder?: string };
}

function toStored(obj: ApprovalObject): StoredApproval | undefined {
  const m = obj.metadata as
    | (KubeObject['metadata'] & { annotations?: Record<string, string>; creationTimestamp?: string })
    | undefined;
  if (typeof m?.name !== 'string' || obj.spec === undefined) return undefined;
  // The masked arguments are for reviewers (up to 256 KiB each); the broker matches calls by
  // their digest. Not keeping them bounds what a namespace full of approvals costs the sidecar.
  const { arguments: _forReviewers, ...spec } = obj.spec;
  return {
    name: m.name,
    resourceVersion: m.resourceVersion ?? '',
    spec: spec as MCPApprovalSpec,
    phase: obj.status?.phase,
    phaseTime: obj.status?.lastTransitionTime,
    holder: obj.status?.holder,
    created: m.creationTimestamp,
    createdBy: m.annotations?.[CREATED_BY],
    labels: m.labels ?? {},
  };
}

/** A DNS-subdomain prefix for approval names from the pod name (a gateway's host name may be anything). */
function namePrefix(pod: string): string {
  const cleaned = pod
    .toLowerCase()
    .replace(/[^a-z0-9.-]+/g, '-')
    .replace(/^[^a-z0-9]+/, '')
    .slice(0, 40)
    .replace(/[^a-z0-9]+$/, '');
  return cleaned === '' ? 'mcp-warden' : cleaned;
}

/**
 * The Kubernetes user this client acts as (SelfSubjectReview): the creator the admission webhook
 * stamps on the approvals it creates.
 */
export async function currentUser(client: KubeClient): Promise<string> {
  const review = await client.request<{ status?: { userInfo?: { username?: string } } }>(
    'POST',
    '/apis/authentication.k8s.io/v1/selfsubjectreviews',
    { body: { apiVersion: 'authentication.k8s.io/v1', kind: 'SelfSubjectReview' } },
  );
  const name = review?.status?.userInfo?.username;
  if (typeof name !== 'string' || name === '') {
    throw new KubeApiError(500, 'SelfSubjectReview: the API server did not name the user');
  }
  return name;
}

/**
 * `MCPApproval` objects of one namespace, through the API server. The sidecar's permissions are
 * create/get/watch on `mcpapprovals` and patch on `mcpapprovals/status` (no list): the view is one
 * watch started with `sendInitialEvents` (the existing objects, then a bookmark marking their end),
 * resumed from its last resourceVersion, restarted from scratch after 410 Gone or a failure.
 * While the watch is down the store is not `ready()`: the broker holds and grants nothing.
 */
export function createKubeApprovalStore(options: KubeApprovalStoreOptions): ApprovalStore {
  const { client, namespace, logger } = options;
  const path = approvalsPath(namespace);
  const watchTimeoutSec = options.watchTimeoutSec ?? 240;
  const initialBackoff = options.initialBackoffMs ?? 500;
  const maxBackoff = options.maxBackoffMs ?? 30_000;
  const items = new Map<string, StoredApproval>();
  const listeners = new Set<(change: ApprovalChange) => void>();
  const abort = new AbortController();
  let closed = false;
  let open = false;
  let resolveSynced!: () => void;
  const syncedOnce = new Promise<void>((r) => {
    resolveSynced = r;
  });
  let isSynced = false;

  const emit = (approval: StoredApproval, deleted: boolean): void => {
    for (const l of [...listeners]) {
      try {
        l({ approval, deleted });
      } catch (err) {
        logger?.error(
          { event: 'approval-listener-failed', err: errorMessage(err) },
          'approval listener failed',
        );
      }
    }
  };

  /** Keep the newer of two versions (a write's answer can race its own watch event). */
  const put = (a: StoredApproval): boolean => {
    const old = items.get(a.name);
    if (old !== undefined && Number(old.resourceVersion) > Number(a.resourceVersion)) return false;
    items.set(a.name, a);
    return true;
  };

  const loop = async (): Promise<void> => {
    let delay = initialBackoff;
    let rv: string | undefined;
    while (!closed) {
      // A fresh start (first, after 410 or a failure): the initial events rebuild the view.
      const fresh = rv === undefined;
      const seen = new Set<string>();
      let initialDone = !fresh;
      const state = { rv: rv ?? '' };
      try {
        const signal = AbortSignal.any([abort.signal, AbortSignal.timeout((watchTimeoutSec + 15) * 1000)]);
        await client.watch(
          path,
          {
            query: fresh
              ? {
                  sendInitialEvents: true,
                  resourceVersionMatch: 'NotOlderThan',
                  allowWatchBookmarks: true,
                  timeoutSeconds: watchTimeoutSec,
                }
              : { resourceVersion: rv, allowWatchBookmarks: true, timeoutSeconds: watchTimeoutSec },
            signal,
            onOpen: () => {
              delay = initialBackoff;
            },
          },
          (event: WatchEvent) => {
            if (event.type === 'ERROR') {
              const status = event.object as { code?: number; message?: string };
              throw new KubeApiError(status.code ?? 500, `watch ${path}: ${status.message ?? 'error event'}`);
            }
            const obj = event.object as ApprovalObject;
            if (obj?.metadata?.resourceVersion) state.rv = obj.metadata.resourceVersion;
            if (event.type === 'BOOKMARK') {
              const annotations = (obj.metadata as { annotations?: Record<string, string> } | undefined)
                ?.annotations;
              if (!initialDone && annotations?.[INITIAL_EVENTS_END] === 'true') {
                initialDone = true;
                // Objects deleted while the watch was down are gone from the new view.
                for (const [name, a] of [...items]) {
                  if (!seen.has(name)) {
                    items.delete(name);
                    emit(a, true);
                  }
                }
                open = true;
                if (!isSynced) {
                  isSynced = true;
                  resolveSynced();
                }
              }
              return;
            }
            const a = toStored(obj);
            if (a === undefined) return;
            seen.add(a.name);
            if (event.type === 'DELETED') {
              items.delete(a.name);
              emit(a, true);
            } else if (put(a)) emit(a, false);
          },
        );
        rv = initialDone ? state.rv : undefined;
      } catch (err) {
        open = false;
        if (closed) return;
        rv = undefined;
        const gone = err instanceof KubeApiError && err.status === 410;
        if (gone) {
          logger?.info({ event: 'approval-watch-gone' }, 'approval watch expired (410 Gone); restarting it');
          continue;
        }
        logger?.warn(
          { event: 'approval-watch-failed', err: errorMessage(err), retryInMs: delay },
          'approval watch failed; holds and grants are refused until it is back',
        );
        await pause(jittered(delay), abort.signal);
        delay = Math.min(maxBackoff, delay * 2);
      }
    }
  };
  void loop();

  /** A merge patch of the status subresource; false when `ifResourceVersion` no longer matches. */
  const patchStatus = async (
    name: string,
    status: Record<string, unknown>,
    ifResourceVersion: string | undefined,
  ): Promise<boolean> => {
    const body: Record<string, unknown> = { status };
    // In a merge patch, metadata.resourceVersion is a precondition: 409 when the object moved on.
    if (ifResourceVersion !== undefined) body['metadata'] = { resourceVersion: ifResourceVersion };
    try {
      const obj = await client.request<ApprovalObject>('PATCH', approvalPath(namespace, name, 'status'), {
        body,
        contentType: 'application/merge-patch+json',
      });
      const a = toStored(obj);
      if (a !== undefined && put(a)) emit(a, false);
      return true;
    } catch (err) {
      if (ifResourceVersion !== undefined && err instanceof KubeApiError && err.status === 409) return false;
      throw err;
    }
  };

  /**
   * The API server dropped `spec.maskedArguments` from a created approval: it serves an MCPApproval
   * CRD older than this sidecar (not upgraded: crds.enabled=false, or a release installed by a chart with
   * a `crds/` directory, which helm never upgrades), whose schema
   * prunes the fields it does not know, `spec.decision.acknowledgeMaskedArguments` too. Nothing
   * would then tell reviewers what masking hid, nor require them to acknowledge it: the approval is
   * ended at once (Cancelled: the sidecar may write phases, not delete) and the call refused.
   */
  const refuseOutdated = async (a: StoredApproval): Promise<never> => {
    const message =
      'the MCPApproval CRD is outdated: the API server dropped spec.maskedArguments, so reviewers would not be told what masking hid in the arguments; apply the current CRDs: helm upgrade to the chart of this release (it upgrades them unless crds.enabled=false), or kubectl apply -f crds/ of this release (see docs/approvals.md, "The MCPApproval object")';
    logger?.error({ event: 'approval-crd-outdated', approval: a.name }, message);
    try {
      await patchStatus(
        a.name,
        { phase: 'Cancelled', message: message.slice(0, 1024), lastTransitionTime: new Date().toISOString() },
        undefined,
      );
    } catch (err) {
      logger?.warn(
        { event: 'approval-status-failed', approval: a.name, phase: 'Cancelled', err: errorMessage(err) },
        'could not write an approval phase',
      );
    }
    throw new WardenError(ErrorCodes.crdOutdated, `approval ${a.name}: ${message}`, {
      details: { approval: a.name },
    });
  };

  return {
    async create(spec, labels) {
      const obj = await client.request<ApprovalObject>('POST', path, {
        body: {
          apiVersion: MCPAPPROVAL_API.apiVersion,
          kind: MCPAPPROVAL_API.kind,
          metadata: { generateName: `${namePrefix(spec.pod)}-`, namespace, labels },
          spec,
        },
      });
      const a = toStored(obj);
      if (a === undefined) throw new KubeApiError(500, `create ${path}: the API server answered no object`);
      put(a);
      if (
        spec.maskedArguments !== undefined &&
        canonicalJson(obj.spec?.maskedArguments) !== canonicalJson(spec.maskedArguments)
      ) {
        await refuseOutdated(a);
      }
      return items.get(a.name) ?? a;
    },
    setPhase(name, phase, message, ifResourceVersion, options = {}) {
      return patchStatus(
        name,
        {
          phase,
          message: message.slice(0, 1024),
          lastTransitionTime: options.transitionTime ?? new Date().toISOString(),
          ...(options.holder !== undefined ? { holder: options.holder } : {}),
        },
        ifResourceVersion,
      );
    },
    setHolder(name, holder, phase, ifResourceVersion) {
      return patchStatus(name, { phase, holder }, ifResourceVersion);
    },
    get: (name) => items.get(name),
    list: () => items.values(),
    subscribe(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    ready: () => open && !closed,
    synced: () => syncedOnce,
    async close() {
      closed = true;
      open = false;
      abort.abort();
      listeners.clear();
    },
  };
}
