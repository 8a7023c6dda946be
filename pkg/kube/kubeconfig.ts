import { existsSync, readFileSync } from 'node:fs';
import type { Agent as HttpAgentType } from 'node:http';
import { Agent as HttpsAgent, type RequestOptions } from 'node:https';
import { createRequire } from 'node:module';
import { isIPv6 } from 'node:net';
import { delimiter, dirname, isAbsolute, join } from 'node:path';
import { Agent as HttpAgent } from '../node-http.js';

/**
 * Kubernetes credentials without `@kubernetes/client-node`: that package (generated API classes,
 * WebSocket, proxy agents, undici) costs a sidecar ~45 MiB of resident memory, and the data path
 * only needs a server URL, TLS material and a bearer token or client certificate. These loaders
 * reproduce what `KubeConfig.loadFromCluster` / `loadFromFile` + `applyToHTTPSOptions` do for those
 * cases (same defaults, same errors); kubeconfigs whose user needs an `exec` plugin or an
 * `auth-provider`, or whose cluster names a `proxy-url`, are handed to `KubeConfig` itself, loaded
 * on first use.
 *
 * @example
 * const creds = inClusterCredentials();
 * const opts: RequestOptions = { headers: {} };
 * await creds.applyToHTTPSOptions(opts); // ca, Authorization, agent
 */
export interface KubeCredentials {
  /** The current context's cluster (`server` without a trailing slash), or null. */
  getCurrentCluster(): { server: string } | null;
  /** Adds TLS material, authentication headers and a reused agent to `opts`. */
  applyToHTTPSOptions(opts: RequestOptions): Promise<void>;
}

const SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';
/** client-go and client-node re-read a token file at most once a minute. */
const TOKEN_REREAD_MS = 60_000;

interface Cluster {
  name: string;
  server: string;
  caFile?: string | undefined;
  caData?: string | undefined;
  skipTLSVerify: boolean;
  tlsServerName?: string | undefined;
  proxyUrl?: string | undefined;
}

interface User {
  name: string;
  token?: string | undefined;
  tokenFile?: string | undefined;
  certFile?: string | undefined;
  certData?: string | undefined;
  keyFile?: string | undefined;
  keyData?: string | undefined;
  username?: string | undefined;
  password?: string | undefined;
  impersonate?: string | undefined;
  /** exec plugin or auth-provider: handled by client-node's own authenticators. */
  delegated: boolean;
}

function fileOrData(file: string | undefined, data: string | undefined): Buffer | undefined {
  if (file) return readFileSync(file);
  if (data) return Buffer.from(data, 'base64');
  return undefined;
}

/** Applies one resolved cluster + user the way `KubeConfig.applyToHTTPSOptions` does. */
function applier(cluster: Cluster, user: User | null): (opts: RequestOptions) => Promise<void> {
  let agent: HttpAgentType | undefined;
  let token: { value: string; readAt: number } | undefined;
  return async (opts) => {
    if (user !== null) {
      if (cluster.skipTLSVerify) opts.rejectUnauthorized = false;
      if (cluster.tlsServerName) opts.servername = cluster.tlsServerName;
      const ca = fileOrData(cluster.caFile, cluster.caData);
      if (ca) opts.ca = ca;
      const cert = fileOrData(user.certFile, user.certData);
      if (cert) opts.cert = cert;
      const key = fileOrData(user.keyFile, user.keyData);
      if (key) opts.key = key;
      opts.headers ??= {};
      const headers = opts.headers as Record<string, string>;
      if (user.impersonate != null) headers['Impersonate-User'] = user.impersonate;
      if (user.tokenFile !== undefined) {
        if (token === undefined || Date.now() - token.readAt > TOKEN_REREAD_MS)
          token = { value: readFileSync(user.tokenFile).toString('utf-8'), readAt: Date.now() };
        if (token.value) headers['Authorization'] = `Bearer ${token.value}`;
      }
      if (user.token) headers['Authorization'] = `Bearer ${user.token}`;
      if (user.username) opts.auth = `${user.username}:${user.password}`;
    }
    if (agent === undefined) {
      // One agent per credentials object, created with the first request's TLS options (as
      // client-node caches its agent per cluster and user).
      const agentOptions = {
        ca: opts.ca,
        cert: opts.cert,
        key: opts.key,
        ...(opts.rejectUnauthorized === undefined ? {} : { rejectUnauthorized: opts.rejectUnauthorized }),
        ...(opts.servername === undefined ? {} : { servername: opts.servername }),
      };
      if (cluster.server.startsWith('http:')) {
        if (!cluster.skipTLSVerify)
          throw new Error('HTTP protocol is not allowed when skipTLSVerify is not set or false');
        // Plain HTTP: the TLS options mean nothing to an http.Agent.
        agent = new HttpAgent();
      } else {
        agent = new HttpsAgent(agentOptions);
      }
    }
    opts.agent = agent;
  };
}

/**
 * The in-cluster service account, as `KubeConfig.loadFromCluster(pathPrefix)`: the API server from
 * KUBERNETES_SERVICE_HOST/PORT (http only on ports 80, 8080 and 8001), the CA re-read per request
 * (rotation), the token re-read at most once a minute (projected tokens rotate).
 */
export function inClusterCredentials(pathPrefix = '', env: NodeJS.ProcessEnv = process.env): KubeCredentials {
  const host = env['KUBERNETES_SERVICE_HOST'];
  const port = env['KUBERNETES_SERVICE_PORT'];
  const scheme = port === '80' || port === '8080' || port === '8001' ? 'http' : 'https';
  const serverHost = host && isIPv6(host) ? `[${host}]` : host;
  const cluster: Cluster = {
    name: 'inCluster',
    server: `${scheme}://${serverHost}:${port}`,
    caFile: `${pathPrefix}${SERVICE_ACCOUNT_DIR}/ca.crt`,
    skipTLSVerify: false,
  };
  const user: User = {
    name: 'inClusterUser',
    tokenFile: `${pathPrefix}${SERVICE_ACCOUNT_DIR}/token`,
    delegated: false,
  };
  return { getCurrentCluster: () => cluster, applyToHTTPSOptions: applier(cluster, user) };
}

type Entry = Record<string, unknown> & { name?: unknown };

function entries(value: unknown): Entry[] {
  return Array.isArray(value) ? (value as Entry[]) : [];
}

function str(value: unknown): string | undefined {
  return value === undefined || value === null ? undefined : String(value);
}

function absolute(root: string, file: string | undefined): string | undefined {
  return file === undefined || file === '' || isAbsolute(file) ? file : join(root, file);
}

/**
 * The files a `KUBECONFIG` value lists (`:`-separated), as kubectl reads it: those that exist, in
 * order; when none exists, the first, so that loading it reports it; empty when none is listed.
 */
export function kubeconfigEnvPaths(env: NodeJS.ProcessEnv): string[] {
  const listed = (env['KUBECONFIG'] ?? '').split(delimiter).filter((p) => p !== '');
  const existing = listed.filter((p) => existsSync(p));
  return existing.length > 0 ? existing : listed.slice(0, 1);
}

/** The first entry of each name, in order: kubectl's rule for merging kubeconfig files. */
function firstOfEachName<T extends { name: string }>(lists: T[][]): T[] {
  const seen = new Set<string>();
  const out: T[] = [];
  for (const list of lists)
    for (const item of list) {
      if (seen.has(item.name)) continue;
      seen.add(item.name);
      out.push(item);
    }
  return out;
}

/**
 * Kubeconfig files, as `KubeConfig.loadFromFile(path)` for one: the same validation errors for
 * entries without a name, cluster or server, relative file paths resolved against the file's
 * directory, `token-file` read at load. Several files (a `KUBECONFIG` list) merge as kubectl merges
 * them: the first file to name a cluster, user or context wins it, and `current-context` comes
 * from the first file that sets one. Throws on an unreadable or invalid file.
 */
export function kubeconfigFileCredentials(paths: string | readonly string[]): KubeCredentials {
  const files = typeof paths === 'string' ? [paths] : [...paths];
  if (files.length === 0) throw new Error('no kubeconfig file given');
  // yaml (CommonJS) only for kubeconfig files: an in-cluster sidecar never parses YAML.
  const { parse } = createRequire(import.meta.url)('yaml') as typeof import('yaml');
  const parsed = files.map((path) => {
    const root = dirname(path);
    const doc = (parse(readFileSync(path).toString('utf-8')) ?? {}) as Record<string, unknown>;
    // Errors name the file when there are several.
    const where = files.length > 1 ? `${path}: ` : '';
    const clusters: Cluster[] = entries(doc['clusters']).map((elt, i) => {
      if (!elt.name) throw new Error(`${where}clusters[${i}].name is missing`);
      const c = elt['cluster'] as Record<string, unknown> | undefined;
      if (!c) throw new Error(`${where}clusters[${i}].cluster is missing`);
      if (!c['server']) throw new Error(`${where}clusters[${i}].cluster.server is missing`);
      return {
        name: String(elt.name),
        server: String(c['server']).replace(/\/$/, ''),
        caFile: absolute(root, str(c['certificate-authority'])),
        caData: str(c['certificate-authority-data']),
        skipTLSVerify: c['insecure-skip-tls-verify'] === true,
        tlsServerName: str(c['tls-server-name']),
        proxyUrl: str(c['proxy-url']),
      };
    });
    const users: User[] = entries(doc['users']).map((elt, i) => {
      if (!elt.name) throw new Error(`${where}users[${i}].name is missing`);
      const u = (elt['user'] ?? {}) as Record<string, unknown>;
      const tokenFile = str(u['token-file']);
      return {
        name: String(elt.name),
        // client-node reads `token-file` once, at load.
        token: str(u['token']) || (tokenFile ? readFileSync(tokenFile).toString() : undefined),
        certFile: absolute(root, str(u['client-certificate'])),
        certData: str(u['client-certificate-data']),
        keyFile: absolute(root, str(u['client-key'])),
        keyData: str(u['client-key-data']),
        username: str(u['username']),
        password: str(u['password']),
        impersonate: str(u['as']),
        delegated: Boolean(u['exec']) || Boolean(u['auth-provider']),
      };
    });
    const contexts = entries(doc['contexts']).map((elt, i) => {
      if (!elt.name) throw new Error(`${where}contexts[${i}].name is missing`);
      const c = elt['context'] as Record<string, unknown> | undefined;
      if (!c) throw new Error(`${where}contexts[${i}].context is missing`);
      if (!c['cluster']) throw new Error(`${where}contexts[${i}].context.cluster is missing`);
      return { name: String(elt.name), cluster: String(c['cluster']), user: str(c['user']) || undefined };
    });
    const currentContext = str(doc['current-context']) || undefined;
    return { clusters, users, contexts, currentContext };
  });
  const clusters = firstOfEachName(parsed.map((p) => p.clusters));
  const users = firstOfEachName(parsed.map((p) => p.users));
  const contexts = firstOfEachName(parsed.map((p) => p.contexts));
  const currentContext = parsed.find((p) => p.currentContext !== undefined)?.currentContext;
  const current = contexts.find((c) => c.name === currentContext);
  const cluster = current === undefined ? null : (clusters.find((c) => c.name === current.cluster) ?? null);
  const user = current === undefined ? null : (users.find((u) => u.name === current.user) ?? null);
  if (cluster === null) return { getCurrentCluster: () => null, applyToHTTPSOptions: async () => undefined };
  if (user?.delegated || cluster.proxyUrl) {
    // Exec plugins, auth providers and proxies: client-node's own code, loaded only for these.
    let delegate: Promise<KubeCredentials> | undefined;
    return {
      getCurrentCluster: () => cluster,
      applyToHTTPSOptions: async (opts) => {
        delegate ??= import('@kubernetes/client-node').then(({ KubeConfig }) => {
          const kc = new KubeConfig();
          if (files.length === 1) {
            kc.loadFromFile(files[0] as string);
            return kc;
          }
          // client-node's own merge refuses duplicate names and keeps the last current context:
          // merge its per-file loads (relative paths already resolved) the way kubectl does.
          const loaded = files.map((f) => {
            const one = new KubeConfig();
            one.loadFromFile(f);
            return one;
          });
          kc.loadFromOptions({
            clusters: firstOfEachName(loaded.map((k) => k.clusters)),
            users: firstOfEachName(loaded.map((k) => k.users)),
            contexts: firstOfEachName(loaded.map((k) => k.contexts)),
            currentContext: loaded.find((k) => k.currentContext !== '')?.currentContext ?? '',
          });
          return kc;
        });
        await (await delegate).applyToHTTPSOptions(opts);
      },
    };
  }
  return { getCurrentCluster: () => cluster, applyToHTTPSOptions: applier(cluster, user) };
}
