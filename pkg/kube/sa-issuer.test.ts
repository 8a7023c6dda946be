import { createServer, type Server } from 'node:http';
import type { TrustedIssuer } from '../identity/types.js';
import type { PolicyEngine, PolicySource } from '../policy/decision.js';
import {
  awaitingServiceAccountIssuer,
  createServiceAccountIssuer,
  withServiceAccountIssuer,
} from './sa-issuer.js';
import { listenLoopback, loopbackClient, stopLoopback } from './testing/loopback.js';

/** The API server's discovery + JWKS, served on loopback the way kube-apiserver serves them. */
let server: Server;
let base: string;
let keys: Array<Record<string, unknown>>;
const accepts: string[] = [];

beforeEach(async () => {
  keys = [{ kty: 'RSA', kid: 'k1', n: 'abc', e: 'AQAB' }];
  accepts.length = 0;
  server = createServer((req, res) => {
    accepts.push(`${req.url} ${req.headers.accept}`);
    if (req.url === '/.well-known/openid-configuration') {
      res
        .writeHead(200, { 'content-type': 'application/json' })
        .end(JSON.stringify({ issuer: 'https://issuer.example', jwks_uri: 'https://x/openid/v1/jwks' }));
    } else if (req.url === '/openid/v1/jwks') {
      // kube-apiserver answers 406 unless the client accepts application/jwk-set+json.
      if (!String(req.headers.accept).includes('application/jwk-set+json'))
        res.writeHead(406).end('{"message":"Not Acceptable"}');
      else res.writeHead(200, { 'content-type': 'application/jwk-set+json' }).end(JSON.stringify({ keys }));
    } else res.writeHead(404).end();
  });
  base = await listenLoopback(server);
});

afterEach(() => {
  stopLoopback(server);
});

function client() {
  return loopbackClient(base);
}

const PLACEHOLDER = 'https://kubernetes.default.svc.cluster.local';

function engineWith(issuers: TrustedIssuer[]): PolicyEngine {
  return {
    decide: () => ({ action: 'deny', enforced: 'deny', policy: '', reason: '', mode: 'enforce' }),
    filterList: (_m, items) => [...items],
    trustedIssuers: () => issuers,
    maskingRules: () => [],
    recording: () => ({ enabled: false, payloads: 'masked' }),
    policies: () => [{ name: 'p', generation: 1 }],
  };
}

function staticSource(engine: PolicyEngine | undefined): PolicySource {
  return { current: () => engine, onChange: () => () => undefined, close: async () => undefined };
}

describe('service-account issuer', () => {
  test('kubernetes entries get the cluster issuer and inline keys; others are untouched; changes are announced', async () => {
    const sa = createServiceAccountIssuer({ client: client(), refreshMs: 60_000 });
    const engine = engineWith([
      { issuer: PLACEHOLDER, audiences: ['mcp'], kubernetes: true },
      { issuer: 'https://login.microsoftonline.com/t/v2.0', audiences: ['api://x'] },
      { issuer: 'https://other-cluster.example', audiences: ['mcp'], kubernetes: true },
    ]);
    const source = withServiceAccountIssuer(staticSource(engine), sa, PLACEHOLDER);
    expect(awaitingServiceAccountIssuer(source.current(), sa)).toBe(true);
    const changed = new Promise<PolicyEngine | undefined>((resolve) => source.onChange(resolve));
    await sa.ready;
    const fresh = await changed;
    expect(fresh).toBe(source.current());
    expect(awaitingServiceAccountIssuer(fresh, sa)).toBe(false);
    expect(fresh?.trustedIssuers()).toEqual([
      { issuer: 'https://issuer.example', audiences: ['mcp'], kubernetes: true, jwks: { keys } },
      { issuer: 'https://login.microsoftonline.com/t/v2.0', audiences: ['api://x'] },
      // An explicit other issuer keeps its own discovery: only this cluster's keys are known.
      { issuer: 'https://other-cluster.example', audiences: ['mcp'], kubernetes: true },
    ]);
    expect(accepts).toContain('/openid/v1/jwks application/jwk-set+json, application/json');
    // Key rotation: a refresh with new keys hands out a new engine object with them.
    keys = [{ kty: 'RSA', kid: 'k2', n: 'def', e: 'AQAB' }];
    const rotated = new Promise<PolicyEngine | undefined>((resolve) => source.onChange(resolve));
    await sa.refresh();
    const next = await rotated;
    expect(next).not.toBe(fresh);
    expect(next?.trustedIssuers()[0]?.jwks).toEqual({ keys });
    await source.close();
    sa.close();
  });

  test('an engine without kubernetes issuers never waits for the cluster issuer', () => {
    const sa = createServiceAccountIssuer({ client: client(), refreshMs: 60_000 });
    expect(awaitingServiceAccountIssuer(engineWith([{ issuer: 'https://a', audiences: ['x'] }]), sa)).toBe(
      false,
    );
    expect(awaitingServiceAccountIssuer(undefined, sa)).toBe(false);
    sa.close();
  });
});
