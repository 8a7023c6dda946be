import type { IncomingMessage } from 'node:http';
import { request as httpsRequest, type RequestOptions } from 'node:https';
import { ErrorCodes, errorMessage, WardenError } from '../errors.js';
import { request as httpRequest } from '../node-http.js';
import {
  inClusterCredentials,
  type KubeCredentials,
  kubeconfigEnvPaths,
  kubeconfigFileCredentials,
} from './kubeconfig.js';

export type { KubeCredentials } from './kubeconfig.js';

/**
 * The one Kubernetes client of the data path: a thin JSON-over-HTTPS client on top of resolved
 * credentials (kubeconfig, in-cluster service-account token with rotation, client certificates:
 * pkg/kube/kubeconfig.ts; a `KubeConfig` of `@kubernetes/client-node` works too). Thin on purpose: server-side apply, streaming watches and
 * precise status codes are easier to get right here than through the generated API classes.
 *
 * @example
 * const client = createKubeClient(loadKubeConfig());
 * const list = await client.request<{ items: unknown[] }>('GET', '/apis/mcpwarden.io/v1alpha1/namespaces/a/mcppolicies');
 */
export interface KubeClient {
  /** Base URL of the API server. */
  readonly server: string;
  request<T = unknown>(method: HttpMethod, path: string, options?: KubeRequestOptions): Promise<T>;
  /**
   * Open a watch (`?watch=1` is added) and call `onEvent` per event line. Resolves when the server
   * closes the stream (normal after `timeoutSeconds`), rejects on connect errors and non-2xx.
   */
  watch(path: string, options: WatchOptions, onEvent: (event: WatchEvent) => void): Promise<void>;
}

export interface WatchOptions {
  query?: Record<string, string | number | boolean | undefined>;
  signal?: AbortSignal;
  /** Called once the API server accepted the watch (HTTP 200), before the first event. */
  onOpen?: () => void;
}

export type HttpMethod = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';

export interface KubeRequestOptions {
  query?: Record<string, string | number | boolean | undefined>;
  body?: unknown;
  /** Default `application/json`; `application/apply-patch+yaml` for server-side apply (JSON is valid YAML). */
  contentType?: string;
  /** Per-request timeout (default 10 s). */
  timeoutMs?: number;
  /** Default `application/json`. */
  accept?: string;
  signal?: AbortSignal;
}

export interface WatchEvent {
  type: 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR';
  object: KubeObject;
}

export interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata?: {
    name?: string;
    namespace?: string;
    resourceVersion?: string;
    generation?: number;
    uid?: string;
    labels?: Record<string, string>;
  };
  [key: string]: unknown;
}

/** An API-server answer that was not 2xx (or could not be had). `status` 0 = no HTTP answer. */
export class KubeApiError extends WardenError {
  override name = 'KubeApiError';
  readonly status: number;
  readonly reason: string | undefined;

  constructor(status: number, message: string, options?: { reason?: string; cause?: unknown }) {
    super(ErrorCodes.kube, message, { cause: options?.cause, details: { status, reason: options?.reason } });
    this.status = status;
    this.reason = options?.reason;
  }
}

/**
 * Resolve credentials: an explicit kubeconfig path (or paths, merged), else `KUBECONFIG` (a list
 * separated by `:`; missing files are skipped, the rest merged, as kubectl does), else the
 * in-cluster service account (`KUBERNETES_SERVICE_HOST`). Throws ERR_CONFIG when none is available.
 */
export function loadKubeConfig(
  options: {
    kubeconfig?: string | readonly string[];
    env?: NodeJS.ProcessEnv;
    /** Testing seam: prefix of `/var/run/secrets/kubernetes.io/serviceaccount/*` for the in-cluster config. */
    pathPrefix?: string;
  } = {},
): KubeCredentials {
  const env = options.env ?? process.env;
  let kc: KubeCredentials;
  const paths = options.kubeconfig ?? kubeconfigEnvPaths(env);
  try {
    if (paths.length > 0) {
      kc = kubeconfigFileCredentials(paths);
    } else if (env['KUBERNETES_SERVICE_HOST']) {
      kc = inClusterCredentials(options.pathPrefix ?? '', env);
    } else {
      throw new Error(
        'neither KUBECONFIG nor the in-cluster service account (KUBERNETES_SERVICE_HOST) is available',
      );
    }
  } catch (err) {
    throw new WardenError(ErrorCodes.config, `cannot load Kubernetes credentials: ${errorMessage(err)}`, {
      cause: err,
    });
  }
  if (kc.getCurrentCluster() === null) {
    throw new WardenError(
      ErrorCodes.config,
      'the Kubernetes config has no current cluster: set current-context',
    );
  }
  return kc;
}

function buildPath(path: string, query: KubeRequestOptions['query']): string {
  if (query === undefined) return path;
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) if (v !== undefined) params.set(k, String(v));
  const qs = params.toString();
  return qs === '' ? path : `${path}${path.includes('?') ? '&' : '?'}${qs}`;
}

function statusMessage(status: number, text: string): { message: string; reason: string | undefined } {
  try {
    const parsed = JSON.parse(text) as { message?: unknown; reason?: unknown };
    return {
      message: typeof parsed.message === 'string' ? parsed.message : text.slice(0, 300),
      reason: typeof parsed.reason === 'string' ? parsed.reason : undefined,
    };
  } catch {
    return { message: text.slice(0, 300) || `HTTP ${status}`, reason: undefined };
  }
}

export function createKubeClient(kc: KubeCredentials): KubeClient {
  const cluster = kc.getCurrentCluster();
  if (cluster === null)
    throw new WardenError(ErrorCodes.config, 'the Kubernetes config has no current cluster');
  const server = cluster.server.replace(/\/+$/, '');
  const base = new URL(server);
  const secure = base.protocol === 'https:';

  async function open(
    method: HttpMethod,
    path: string,
    options: KubeRequestOptions,
    accept: string,
  ): Promise<IncomingMessage> {
    const opts: RequestOptions = {
      method,
      hostname: base.hostname.replace(/^\[|\]$/g, ''),
      port: base.port === '' ? (secure ? 443 : 80) : Number(base.port),
      path: `${base.pathname.replace(/\/+$/, '')}${buildPath(path, options.query)}`,
      headers: {},
    };
    await kc.applyToHTTPSOptions(opts);
    const headers: Record<string, string> = { ...(opts.headers as Record<string, string>), accept };
    let payload: Buffer | undefined;
    if (options.body !== undefined) {
      payload = Buffer.from(typeof options.body === 'string' ? options.body : JSON.stringify(options.body));
      headers['content-type'] = options.contentType ?? 'application/json';
      headers['content-length'] = String(payload.length);
    }
    opts.headers = headers;
    return new Promise<IncomingMessage>((resolve, reject) => {
      const req = (secure ? httpsRequest : httpRequest)(opts, resolve);
      const onAbort = (): void => {
        req.destroy(new KubeApiError(0, `${method} ${path}: aborted`));
      };
      if (options.signal !== undefined) {
        if (options.signal.aborted) onAbort();
        else options.signal.addEventListener('abort', onAbort, { once: true });
        req.once('close', () => options.signal?.removeEventListener('abort', onAbort));
      }
      if (options.timeoutMs !== undefined) {
        req.setTimeout(options.timeoutMs, () =>
          req.destroy(new KubeApiError(0, `${method} ${path}: no answer within ${options.timeoutMs} ms`)),
        );
      }
      req.once('error', (err) =>
        reject(
          err instanceof KubeApiError
            ? err
            : new KubeApiError(0, `${method} ${path}: ${errorMessage(err)}`, { cause: err }),
        ),
      );
      req.end(payload);
    });
  }

  async function readAll(res: IncomingMessage): Promise<string> {
    const chunks: Buffer[] = [];
    for await (const chunk of res) chunks.push(chunk as Buffer);
    return Buffer.concat(chunks).toString('utf8');
  }

  return {
    server,
    async request<T>(method: HttpMethod, path: string, options: KubeRequestOptions = {}): Promise<T> {
      const res = await open(
        method,
        path,
        { timeoutMs: 10_000, ...options },
        options.accept ?? 'application/json',
      );
      const text = await readAll(res);
      const status = res.statusCode ?? 0;
      if (status < 200 || status >= 300) {
        const { message, reason } = statusMessage(status, text);
        throw new KubeApiError(status, `${method} ${path}: ${status} ${message}`, { reason });
      }
      if (text === '') return undefined as T;
      try {
        return JSON.parse(text) as T;
      } catch (err) {
        throw new KubeApiError(status, `${method} ${path}: the API server answered invalid JSON`, {
          cause: err,
        });
      }
    },
    async watch(path, options, onEvent) {
      const { signal, onOpen } = options;
      const res = await open(
        'GET',
        path,
        { query: { ...options.query, watch: 1 }, ...(signal ? { signal } : {}) },
        'application/json',
      );
      const status = res.statusCode ?? 0;
      if (status < 200 || status >= 300) {
        const { message, reason } = statusMessage(status, await readAll(res));
        throw new KubeApiError(status, `watch ${path}: ${status} ${message}`, { reason });
      }
      onOpen?.();
      let buffered = '';
      res.setEncoding('utf8');
      await new Promise<void>((resolve, reject) => {
        res.on('data', (chunk: string) => {
          buffered += chunk;
          let nl = buffered.indexOf('\n');
          while (nl >= 0) {
            const line = buffered.slice(0, nl).trim();
            buffered = buffered.slice(nl + 1);
            if (line !== '') {
              let event: WatchEvent;
              try {
                event = JSON.parse(line) as WatchEvent;
              } catch (err) {
                res.destroy();
                reject(new KubeApiError(status, `watch ${path}: invalid event line`, { cause: err }));
                return;
              }
              try {
                onEvent(event);
              } catch (err) {
                res.destroy();
                reject(err);
                return;
              }
            }
            nl = buffered.indexOf('\n');
          }
        });
        res.once('end', resolve);
        res.once('error', (err) =>
          reject(
            err instanceof KubeApiError
              ? err
              : new KubeApiError(0, `watch ${path}: ${errorMessage(err)}`, { cause: err }),
          ),
        );
        res.once('close', resolve);
      });
    },
  };
}
