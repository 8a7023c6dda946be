import { readFile } from 'node:fs/promises';
import { errorMessage, WardenError } from '../errors.js';
import { fetchJson } from './lib/fetch.js';

/**
 * The sidecar's own Entra credential by workload identity federation: the projected
 * service-account token (AZURE_FEDERATED_TOKEN_FILE) is the `client_assertion` of a
 * client-credentials request to `<authority>/<tenant>/oauth2/v2.0/token`. No secret is stored.
 */
export interface TokenCredential {
  /** An access token for `scope` (e.g. `https://graph.microsoft.com/.default`), in `tenantId` when given. */
  getToken(scope: string, tenantId?: string): Promise<string>;
}

export interface WorkloadIdentityOptions {
  clientId: string;
  tenantId: string;
  /** Path of the projected token; re-read on every token request (the kubelet rotates it). */
  tokenFile: string;
  /** Default `https://login.microsoftonline.com/`. */
  authorityHost?: string;
  fetchTimeoutMs?: number;
  /** Allow an `http://` authority on loopback (the dev issuer). Default false. */
  allowInsecureLoopback?: boolean;
  /** Renew this long before expiry (default 5 min). */
  refreshSkewMs?: number;
}

const assertionType = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';

/**
 * @example
 * const cred = createWorkloadIdentityCredential({ clientId, tenantId, tokenFile: '/var/run/secrets/azure/tokens/azure-identity-token' });
 * const token = await cred.getToken('https://graph.microsoft.com/.default');
 */
export function createWorkloadIdentityCredential(options: WorkloadIdentityOptions): TokenCredential {
  for (const key of ['clientId', 'tenantId', 'tokenFile'] as const) {
    if (typeof options[key] !== 'string' || options[key] === '') {
      throw new WardenError(
        'ERR_CONFIG',
        `workload identity: ${key} is required (AZURE_CLIENT_ID, AZURE_TENANT_ID, AZURE_FEDERATED_TOKEN_FILE)`,
      );
    }
  }
  const authority = (options.authorityHost ?? 'https://login.microsoftonline.com/').replace(/\/+$/, '');
  const skew = options.refreshSkewMs ?? 5 * 60_000;
  const cache = new Map<string, { token: string; expiresAt: number }>();
  const inflight = new Map<string, Promise<string>>();

  async function fetchToken(scope: string, tenantId: string): Promise<string> {
    let assertion: string;
    try {
      assertion = (await readFile(options.tokenFile, 'utf8')).trim();
    } catch (err) {
      throw new WardenError(
        'ERR_AUTH_ISSUER_UNAVAILABLE',
        `workload identity: cannot read the federated token file ${options.tokenFile}: ${errorMessage(err)}`,
      );
    }
    if (assertion === '')
      throw new WardenError(
        'ERR_AUTH_ISSUER_UNAVAILABLE',
        `workload identity: the federated token file ${options.tokenFile} is empty`,
      );
    const body = new URLSearchParams({
      grant_type: 'client_credentials',
      client_id: options.clientId,
      scope,
      client_assertion_type: assertionType,
      client_assertion: assertion,
    }).toString();
    const doc = await fetchJson(`${authority}/${encodeURIComponent(tenantId)}/oauth2/v2.0/token`, {
      what: 'workload identity token',
      timeoutMs: options.fetchTimeoutMs ?? 5000,
      allowInsecureLoopback: options.allowInsecureLoopback ?? false,
      init: { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body },
      maxBytes: 64 * 1024,
    });
    const { access_token: token, expires_in: expiresIn } = (doc ?? {}) as {
      access_token?: unknown;
      expires_in?: unknown;
    };
    if (typeof token !== 'string' || token === '')
      throw new WardenError(
        'ERR_AUTH_ISSUER_UNAVAILABLE',
        'workload identity: the token response has no access_token',
      );
    const seconds = typeof expiresIn === 'number' ? expiresIn : Number(expiresIn ?? 300);
    cache.set(`${tenantId} ${scope}`, {
      token,
      expiresAt: Date.now() + (Number.isFinite(seconds) ? seconds : 300) * 1000,
    });
    return token;
  }

  return {
    async getToken(scope, tenantId = options.tenantId) {
      const key = `${tenantId} ${scope}`;
      const cached = cache.get(key);
      if (cached !== undefined && cached.expiresAt - skew > Date.now()) return cached.token;
      const pending = inflight.get(key);
      if (pending !== undefined) return pending;
      const promise = fetchToken(scope, tenantId).finally(() => inflight.delete(key));
      inflight.set(key, promise);
      return promise;
    },
  };
}
