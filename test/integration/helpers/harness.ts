import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { SSEClientTransport } from '@modelcontextprotocol/sdk/client/sse.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import {
  CreateMessageRequestSchema,
  ElicitRequestSchema,
  ListRootsRequestSchema,
} from '@modelcontextprotocol/sdk/types.js';
import { type DevIssuer, startDevIssuer } from '../../../pkg/identity/dev-issuer.js';
import { createAuthenticator } from '../../../pkg/identity/index.js';
import type { TrustedIssuer } from '../../../pkg/identity/types.js';
import { createMetrics, type Metrics } from '../../../pkg/metrics/catalogue.js';
import type { PolicyEngine, PolicySource } from '../../../pkg/policy/decision.js';
import { createProxy } from '../../../pkg/proxy/index.js';
import type { ProxyOptions, WardenProxy } from '../../../pkg/proxy/options.js';
import { startUpstream, type Upstream } from './upstream-v1.js';

export const AUDIENCE = 'api://test-mcp';

export interface Harness {
  issuer: DevIssuer;
  upstream: Upstream;
  proxy: WardenProxy;
  metrics: Metrics;
  url: string;
  mcpUrl: string;
  trusted: TrustedIssuer[];
  token(o?: { oid?: string; groups?: string[] }): Promise<string>;
  close(): Promise<void>;
}

/** Dev issuer + real upstream + proxy, all on loopback. */
export async function startHarness(
  makeSource: (trusted: TrustedIssuer[]) => PolicySource,
  extra: Partial<ProxyOptions> = {},
  upstreamOptions: { jsonResponse?: boolean } = {},
): Promise<Harness> {
  const issuer = await startDevIssuer();
  const upstream = await startUpstream(upstreamOptions);
  const trusted: TrustedIssuer[] = [{ issuer: issuer.v2Issuer, audiences: [AUDIENCE] }];
  const metrics = createMetrics({ defaultMetrics: false });
  const proxy = createProxy({
    upstream: upstream.mcpUrl,
    policySource: makeSource(trusted),
    // Wired as the gateway does: the authenticator counts its own failures.
    authenticator: createAuthenticator({ allowInsecureLoopback: true, metrics }),
    metrics,
    podName: 'test',
    ...extra,
  });
  const { url } = await proxy.listen('127.0.0.1', 0);
  return {
    issuer,
    upstream,
    proxy,
    metrics,
    url,
    mcpUrl: `${url}/mcp`,
    trusted,
    token: (o = {}) =>
      issuer.issueToken({ audience: AUDIENCE, oid: o.oid ?? 'user-1', groups: o.groups ?? ['readers'] }),
    async close() {
      await proxy.close();
      await upstream.close();
      await issuer.close();
    },
  };
}

/**
 * A session opened by hand over streamable HTTP (`initialize`, then `notifications/initialized`):
 * the headers to send with it (token, session id, protocol version).
 */
export async function openRawSession(
  mcpUrl: string,
  token: string,
  version: string,
): Promise<Record<string, string>> {
  const headers: Record<string, string> = {
    'content-type': 'application/json',
    accept: 'application/json, text/event-stream',
    authorization: `Bearer ${token}`,
  };
  const init = await fetch(mcpUrl, {
    method: 'POST',
    headers,
    body: JSON.stringify({
      jsonrpc: '2.0',
      id: 0,
      method: 'initialize',
      params: { protocolVersion: version, capabilities: {}, clientInfo: { name: 'raw', version: '1' } },
    }),
  });
  const initText = await init.text();
  const sid = init.headers.get('mcp-session-id');
  if (init.status !== 200 || sid === null)
    throw new Error(`initialize: HTTP ${init.status} ${initText.slice(0, 200)}`);
  const withSession = { ...headers, 'mcp-session-id': sid, 'mcp-protocol-version': version };
  const ack = await fetch(mcpUrl, {
    method: 'POST',
    headers: withSession,
    body: JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' }),
  });
  const ackText = await ack.text();
  if (ack.status !== 202)
    throw new Error(`notifications/initialized: HTTP ${ack.status} ${ackText.slice(0, 200)}`);
  return withSession;
}

/** A fetch that makes the SDK v1 client ask for `version` in initialize (to pin older versions). */
function pinVersion(version: string | undefined): typeof fetch {
  return async (input, init) => {
    if (
      version &&
      init?.method === 'POST' &&
      typeof init.body === 'string' &&
      init.body.includes('"initialize"')
    ) {
      const body = JSON.parse(init.body) as { method?: string; params?: Record<string, unknown> };
      if (body.method === 'initialize' && body.params) body.params['protocolVersion'] = version;
      init = { ...init, body: JSON.stringify(body) };
    }
    return fetch(input, init);
  };
}

export interface ClientOptions {
  version?: string;
}

/** How many sampling requests reached any test client. */
export const samplingCalls = { count: 0 };
/** How many elicitation and roots requests reached any test client. */
export const elicitCalls = { count: 0 };
export const rootsCalls = { count: 0 };

/** A real SDK v1 client over streamable HTTP through the proxy. */
export async function connectStreamable(
  mcpUrl: string,
  token: string,
  o: ClientOptions = {},
): Promise<Client> {
  const client = new Client(
    { name: 'test-client', version: '1.0.0' },
    { capabilities: { sampling: {}, elicitation: {}, roots: {} } },
  );
  installSampling(client);
  const transport = new StreamableHTTPClientTransport(new URL(mcpUrl), {
    requestInit: { headers: { authorization: `Bearer ${token}`, cookie: 'sid=should-not-leak' } },
    fetch: pinVersion(o.version),
  });
  await client.connect(transport);
  return client;
}

/** A real SDK v1 client over legacy HTTP+SSE (2024-11-05) through the proxy. */
export async function connectLegacy(baseUrl: string, token: string, o: ClientOptions = {}): Promise<Client> {
  const client = new Client(
    { name: 'legacy-client', version: '1.0.0' },
    { capabilities: { sampling: {}, elicitation: {}, roots: {} } },
  );
  installSampling(client);
  const headers = { authorization: `Bearer ${token}` };
  const transport = new SSEClientTransport(new URL(`${baseUrl}/sse`), {
    requestInit: { headers },
    eventSourceInit: {
      fetch: (url, init) =>
        fetch(url, { ...init, headers: { ...(init?.headers as Record<string, string>), ...headers } }),
    },
    fetch: pinVersion(o.version ?? '2024-11-05'),
  });
  await client.connect(transport);
  return client;
}

function installSampling(client: Client): void {
  client.setRequestHandler(CreateMessageRequestSchema, async () => {
    samplingCalls.count++;
    return { role: 'assistant', content: { type: 'text', text: 'hi' }, model: 'm' };
  });
  client.setRequestHandler(ElicitRequestSchema, async () => {
    elicitCalls.count++;
    return { action: 'accept', content: { name: 'Ada' } };
  });
  client.setRequestHandler(ListRootsRequestSchema, async () => {
    rootsCalls.count++;
    return { roots: [{ uri: 'file:///work', name: 'work' }] };
  });
}

export type { PolicyEngine };
