import { once } from 'node:events';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createRemoteJWKSet, jwtVerify } from 'jose';

/**
 * Tests only: a tiny Microsoft Graph on loopback answering `getMemberObjects` for users and
 * service principals. It verifies the bearer token against the dev issuer's JWKS (audience
 * Graph, app role GroupMember.Read.All), as the real Graph would.
 */
export interface FakeGraph {
  url: string;
  /** Object ids returned per principal object id. */
  memberships: Map<string, string[]>;
  /** Requests that reached getMemberObjects (after token checks). */
  calls: Array<{ kind: 'users' | 'servicePrincipals'; objectId: string; securityEnabledOnly: unknown }>;
  /** When set, every request answers this HTTP status. */
  failWith?: number;
  close(): Promise<void>;
}

export async function startFakeGraph(options: { jwksUri: string; issuer: string }): Promise<FakeGraph> {
  const jwks = createRemoteJWKSet(new URL(options.jwksUri));
  const graph: FakeGraph = {
    url: '',
    memberships: new Map(),
    calls: [],
    close: async () => {
      server.closeAllConnections();
      server.close();
      await once(server, 'close');
    },
  };
  const send = (res: ServerResponse, status: number, body: unknown) => {
    res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
  };
  const graphError = (res: ServerResponse, status: number, code: string, message: string) =>
    send(res, status, { error: { code, message } });

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (graph.failWith !== undefined)
      return graphError(res, graph.failWith, 'serviceUnavailable', 'failing on purpose');
    const m = /^\/v1\.0\/(users|servicePrincipals)\/([^/]+)\/getMemberObjects$/.exec(req.url ?? '');
    if (req.method !== 'POST' || m === null)
      return graphError(res, 404, 'Request_ResourceNotFound', 'no such route');
    const auth = /^Bearer (.+)$/.exec(req.headers.authorization ?? '');
    if (auth === null) return graphError(res, 401, 'InvalidAuthenticationToken', 'Access token is empty.');
    try {
      const { payload } = await jwtVerify(auth[1]!, jwks, {
        issuer: options.issuer,
        audience: 'https://graph.microsoft.com',
      });
      if (!Array.isArray(payload['roles']) || !payload['roles'].includes('GroupMember.Read.All')) {
        return graphError(
          res,
          403,
          'Authorization_RequestDenied',
          'Insufficient privileges to complete the operation.',
        );
      }
    } catch {
      return graphError(res, 401, 'InvalidAuthenticationToken', 'Access token validation failure.');
    }
    let body: { securityEnabledOnly?: unknown };
    try {
      const chunks: Buffer[] = [];
      for await (const chunk of req) chunks.push(chunk as Buffer);
      body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { securityEnabledOnly?: unknown };
    } catch {
      return graphError(res, 400, 'BadRequest', 'body is not JSON');
    }
    const objectId = decodeURIComponent(m[2]!);
    graph.calls.push({
      kind: m[1] as 'users' | 'servicePrincipals',
      objectId,
      securityEnabledOnly: body.securityEnabledOnly,
    });
    if (typeof body.securityEnabledOnly !== 'boolean')
      return graphError(res, 400, 'BadRequest', 'securityEnabledOnly is required');
    const groups = graph.memberships.get(objectId);
    if (groups === undefined)
      return graphError(res, 404, 'Request_ResourceNotFound', `Resource '${objectId}' does not exist.`);
    send(res, 200, {
      '@odata.context': 'https://graph.microsoft.com/v1.0/$metadata#Collection(Edm.String)',
      value: groups,
    });
  }

  const server = createServer((req, res) => {
    handle(req, res).catch(() => graphError(res, 500, 'InternalServerError', 'fake graph failed'));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  graph.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return graph;
}
