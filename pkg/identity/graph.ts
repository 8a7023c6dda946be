import { WardenError } from '../errors.js';
import { TtlCache } from './lib/cache.js';
import { fetchJson } from './lib/fetch.js';
import type { GraphResolver } from './types.js';
import { createWorkloadIdentityCredential, type TokenCredential } from './workload-identity.js';

/**
 * Entra groups overage: when a user is in too many groups for the token, the groups come from
 * Microsoft Graph `getMemberObjects` (transitive groups and directory roles), asked with the
 * sidecar's own credential. Results are cached per principal; any failure fails closed.
 */
export interface GraphResolverOptions {
  credential: TokenCredential;
  /** Default `https://graph.microsoft.com`. */
  graphBaseUrl?: string;
  /** Scope of the Graph token (default `https://graph.microsoft.com/.default`). */
  scope?: string;
  /** Cache lifetime per principal (default 5 min). */
  cacheTtlMs?: number;
  fetchTimeoutMs?: number;
  /** Allow an `http://` Graph URL on loopback (tests, dev). Default false. */
  allowInsecureLoopback?: boolean;
  maxEntries?: number;
}

const maxPages = 20;

/**
 * @example
 * const graph = createGraphResolver({ credential: createWorkloadIdentityCredential({ ... }) });
 * const auth = createAuthenticator({ graph });
 */
export function createGraphResolver(options: GraphResolverOptions): GraphResolver {
  const base = (options.graphBaseUrl ?? 'https://graph.microsoft.com').replace(/\/+$/, '');
  const scope = options.scope ?? 'https://graph.microsoft.com/.default';
  const timeoutMs = options.fetchTimeoutMs ?? 5000;
  const cache = new TtlCache<string[]>({
    ttlMs: options.cacheTtlMs ?? 5 * 60_000,
    failureBackoffMs: 1000,
    maxEntries: options.maxEntries ?? 10_000,
  });

  async function load(tenantId: string, objectId: string, appOnly: boolean): Promise<string[]> {
    const token = await options.credential.getToken(scope, tenantId);
    const kind = appOnly ? 'servicePrincipals' : 'users';
    let url: string | undefined = `${base}/v1.0/${kind}/${encodeURIComponent(objectId)}/getMemberObjects`;
    const ids: string[] = [];
    for (let page = 0; url !== undefined; page++) {
      if (page >= maxPages)
        throw new WardenError(
          'ERR_AUTH_ISSUER_UNAVAILABLE',
          `Microsoft Graph returned more than ${maxPages} pages of groups`,
        );
      if (!url.startsWith(`${base}/`))
        throw new WardenError(
          'ERR_AUTH_ISSUER_UNAVAILABLE',
          'Microsoft Graph pointed to another host for the next page',
        );
      const doc = (await fetchJson(url, {
        what: `Microsoft Graph getMemberObjects of ${kind}/${objectId}`,
        timeoutMs,
        allowInsecureLoopback: options.allowInsecureLoopback ?? false,
        init: {
          method: 'POST',
          headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
          body: JSON.stringify({ securityEnabledOnly: false }),
        },
        maxBytes: 4 * 1024 * 1024,
      })) as { value?: unknown; '@odata.nextLink'?: unknown } | null;
      if (!Array.isArray(doc?.value) || !doc.value.every((v) => typeof v === 'string')) {
        throw new WardenError(
          'ERR_AUTH_ISSUER_UNAVAILABLE',
          'Microsoft Graph getMemberObjects answered without a "value" list of ids',
        );
      }
      ids.push(...(doc.value as string[]));
      const next = doc['@odata.nextLink'];
      url = typeof next === 'string' ? next : undefined;
    }
    return ids;
  }

  return {
    async memberObjects({ tenantId, objectId, appOnly }) {
      const entry = await cache.get(`${tenantId}/${objectId}/${appOnly ? 'sp' : 'user'}`, () =>
        load(tenantId, objectId, appOnly),
      );
      return [...entry.value];
    },
  };
}

/**
 * The Graph resolver of a pod with Azure workload identity, from the environment the webhook
 * (azure-workload-identity) injects: AZURE_CLIENT_ID, AZURE_TENANT_ID, AZURE_FEDERATED_TOKEN_FILE,
 * AZURE_AUTHORITY_HOST; MCP_WARDEN_GRAPH_URL overrides the Graph base URL. Undefined when not set.
 */
export function createGraphResolverFromEnv(
  env: NodeJS.ProcessEnv = process.env,
  options: Omit<GraphResolverOptions, 'credential'> = {},
): GraphResolver | undefined {
  const clientId = env['AZURE_CLIENT_ID'];
  const tenantId = env['AZURE_TENANT_ID'];
  const tokenFile = env['AZURE_FEDERATED_TOKEN_FILE'];
  if (!clientId || !tenantId || !tokenFile) return undefined;
  const authorityHost = env['AZURE_AUTHORITY_HOST'];
  const graphBaseUrl = options.graphBaseUrl ?? env['MCP_WARDEN_GRAPH_URL'];
  const credential = createWorkloadIdentityCredential({
    clientId,
    tenantId,
    tokenFile,
    ...(authorityHost ? { authorityHost } : {}),
    ...(options.fetchTimeoutMs === undefined ? {} : { fetchTimeoutMs: options.fetchTimeoutMs }),
    ...(options.allowInsecureLoopback === undefined
      ? {}
      : { allowInsecureLoopback: options.allowInsecureLoopback }),
  });
  return createGraphResolver({ ...options, ...(graphBaseUrl ? { graphBaseUrl } : {}), credential });
}
