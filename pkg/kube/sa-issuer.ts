import { errorMessage } from '../errors.js';
import type { TrustedIssuer } from '../identity/types.js';
import type { Logger } from '../log.js';
import type { ListMethod, PolicyEngine, PolicySource } from '../policy/decision.js';
import type { KubeClient } from './client.js';

/**
 * The cluster's service-account token issuer, read from the API server with the sidecar's own
 * credentials (`/.well-known/openid-configuration`, `/openid/v1/jwks`; every service account may
 * read them through the default `system:service-account-issuer-discovery` binding). Policies that
 * trust `kubernetes: {audiences}` then verify pod tokens against these keys, with no network path
 * of their own to the API server and no extra CA configuration.
 *
 * @example
 * const issuer = createServiceAccountIssuer({ client });
 * const source = withServiceAccountIssuer(kubeSource, issuer, KubernetesDefaultIssuer);
 */
export interface ServiceAccountIssuer {
  /** The advertised `issuer`, once read. */
  issuer(): string | undefined;
  /** The current verification keys, once read. */
  jwks(): { keys: Array<Record<string, unknown>> } | undefined;
  /** Resolves after the first successful read (never rejects). */
  readonly ready: Promise<void>;
  /** Read again now (also done every `refreshMs`). */
  refresh(): Promise<void>;
  /** Called when the issuer or its keys changed. */
  onChange(listener: () => void): () => void;
  close(): void;
}

export function createServiceAccountIssuer(options: {
  client: KubeClient;
  /** Re-read the keys this often (key rotation). Default 60 s; failures retry after 5 s. */
  refreshMs?: number;
  logger?: Logger;
  onError?: (err: Error) => void;
}): ServiceAccountIssuer {
  const { client, logger } = options;
  const refreshMs = options.refreshMs ?? 60_000;
  let issuer: string | undefined;
  let keys: { keys: Array<Record<string, unknown>> } | undefined;
  let timer: NodeJS.Timeout | undefined;
  let closed = false;
  const listeners = new Set<() => void>();
  let markReady: () => void = () => undefined;
  const ready = new Promise<void>((resolve) => {
    markReady = resolve;
  });

  const schedule = (ms: number): void => {
    if (closed) return;
    timer = setTimeout(() => void refresh(), ms);
    timer.unref();
  };

  async function refresh(): Promise<void> {
    if (timer !== undefined) clearTimeout(timer);
    try {
      const doc = await client.request<{ issuer?: unknown; jwks_uri?: unknown }>(
        'GET',
        '/.well-known/openid-configuration',
      );
      if (typeof doc?.issuer !== 'string' || doc.issuer === '')
        throw new Error('the discovery document has no issuer');
      const jwks = await client.request<{ keys?: unknown }>('GET', '/openid/v1/jwks', {
        accept: 'application/jwk-set+json, application/json',
      });
      if (!Array.isArray(jwks?.keys)) throw new Error('the JWKS has no keys');
      const changed = doc.issuer !== issuer || JSON.stringify(jwks.keys) !== JSON.stringify(keys?.keys);
      if (issuer === undefined)
        logger?.info({ issuer: doc.issuer, keys: jwks.keys.length }, 'service-account issuer loaded');
      issuer = doc.issuer;
      keys = { keys: jwks.keys as Array<Record<string, unknown>> };
      markReady();
      if (changed) {
        for (const l of listeners) {
          try {
            l();
          } catch (err) {
            logger?.error({ err: errorMessage(err) }, 'issuer change listener failed');
          }
        }
      }
      schedule(refreshMs);
    } catch (err) {
      logger?.warn(
        { err: errorMessage(err) },
        'cannot read the service-account issuer; Kubernetes tokens are refused until it is',
      );
      options.onError?.(err instanceof Error ? err : new Error(String(err)));
      schedule(Math.min(5000, refreshMs));
    }
  }

  void refresh();
  return {
    issuer: () => issuer,
    jwks: () => keys,
    ready,
    refresh,
    onChange(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    close() {
      closed = true;
      listeners.clear();
      if (timer !== undefined) clearTimeout(timer);
    },
  };
}

/** The engine with its `kubernetes` issuers resolved to the cluster's issuer and keys. */
function resolveEngine(engine: PolicyEngine, sa: ServiceAccountIssuer, defaultIssuer: string): PolicyEngine {
  // One list per (issuer, keys) the cluster currently has: asked on every request.
  let memo: { issuer: string | undefined; jwks: unknown; list: readonly TrustedIssuer[] } | undefined;
  return {
    decide: (ctx) => engine.decide(ctx),
    filterList: (method: ListMethod, items, identity) => engine.filterList(method, items, identity),
    maskingRules: () => engine.maskingRules(),
    recording: () => engine.recording(),
    policies: () => engine.policies(),
    trustedIssuers(): readonly TrustedIssuer[] {
      const issuer = sa.issuer();
      const jwks = sa.jwks();
      if (memo !== undefined && memo.issuer === issuer && memo.jwks === jwks) return memo.list;
      const list = engine.trustedIssuers().map((entry) => {
        if (entry.kubernetes !== true || issuer === undefined) return entry;
        const iss = entry.issuer === defaultIssuer || entry.issuer === '' ? issuer : entry.issuer;
        // Keys are only known for this cluster's own issuer.
        return iss === issuer && jwks !== undefined
          ? { ...entry, issuer: iss, jwks }
          : { ...entry, issuer: iss };
      });
      memo = { issuer, jwks, list: Object.freeze(list) };
      return memo.list;
    },
  };
}

/**
 * Wrap a PolicySource so every engine it hands out trusts this cluster's service-account issuer
 * for `kubernetes:` entries (replacing the placeholder `defaultIssuer`), with inline keys.
 */
export function withServiceAccountIssuer(
  source: PolicySource,
  sa: ServiceAccountIssuer,
  defaultIssuer: string,
): PolicySource {
  // A new wrapper per engine AND issuer state: consumers may cache per engine object.
  let wrapped = new WeakMap<PolicyEngine, PolicyEngine>();
  const wrap = (engine: PolicyEngine | undefined): PolicyEngine | undefined => {
    if (engine === undefined) return undefined;
    let w = wrapped.get(engine);
    if (w === undefined) {
      w = resolveEngine(engine, sa, defaultIssuer);
      wrapped.set(engine, w);
    }
    return w;
  };
  const listeners = new Set<(engine: PolicyEngine | undefined) => void>();
  const emit = (engine: PolicyEngine | undefined): void => {
    for (const l of listeners) l(engine);
  };
  const offSource = source.onChange((engine) => emit(wrap(engine)));
  const offIssuer = sa.onChange(() => {
    wrapped = new WeakMap();
    emit(wrap(source.current()));
  });
  return {
    current: () => wrap(source.current()),
    onChange(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    async close() {
      offSource();
      offIssuer();
      listeners.clear();
      await source.close();
    },
  };
}

/** True when the engine trusts Kubernetes tokens but the cluster's issuer is not known yet. */
export function awaitingServiceAccountIssuer(
  engine: PolicyEngine | undefined,
  sa: ServiceAccountIssuer,
): boolean {
  return (
    engine !== undefined &&
    sa.jwks() === undefined &&
    engine.trustedIssuers().some((i) => i.kubernetes === true)
  );
}
