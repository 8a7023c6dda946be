import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { type DevIssuer, startDevIssuer } from '../../../pkg/identity/dev-issuer.js';
import { createAuthenticator } from '../../../pkg/identity/index.js';
import { detectorNames } from '../../../pkg/mask/index.js';
import { createMetrics } from '../../../pkg/metrics/catalogue.js';
import { compilePolicies, type PolicyDocument } from '../../../pkg/policy/index.js';
import { createProxy } from '../../../pkg/proxy/index.js';
import type { WardenProxy } from '../../../pkg/proxy/options.js';
import { createRecorder } from '../../../pkg/record/index.js';
import { testSource } from './test-policy.js';

/**
 * The masking suites' gateway: the data path in front of a real upstream, one policy that trusts
 * a dev issuer, masks with every built-in detector and records every session (masked payloads)
 * to a temporary directory, so a test can compare what a real client received with the recording.
 *
 * @example
 * const setup = await startMaskingProxy({ name: 'recall', upstream: upstream.url, rules: [...] });
 * const token = await setup.token('user-9');
 * // ... connect a client to setup.mcpUrl, read the recording under setup.dir
 * await setup.close();
 */
export interface MaskingProxy {
  issuer: DevIssuer;
  proxy: WardenProxy;
  /** The streamable HTTP endpoint (`…/mcp`). */
  mcpUrl: string;
  /** The recordings' directory. */
  dir: string;
  /** A bearer token of the dev issuer for the policy's audience. */
  token(oid: string): Promise<string>;
  close(): Promise<void>;
}

export async function startMaskingProxy(o: {
  /** The policy's name, the pod's, and the temporary directory's prefix. */
  name: string;
  upstream: string;
  /** The policy's rules; default: allow every call. */
  rules?: unknown[];
}): Promise<MaskingProxy> {
  const audience = `api://${o.name}`;
  const issuer = await startDevIssuer();
  const dir = mkdtempSync(join(tmpdir(), `${o.name}-`));
  const policy = {
    apiVersion: 'mcpwarden.io/v1alpha1',
    kind: 'MCPPolicy',
    metadata: { name: o.name, generation: 1 },
    spec: {
      podSelector: {},
      identity: { issuers: [{ issuer: issuer.v2Issuer, audiences: [audience] }] },
      rules: o.rules ?? [{ name: 'all', subjects: [{ any: true }], match: {}, action: 'allow' }],
      masking: [{ name: 'secrets', detectors: [...detectorNames] }],
      recording: { enabled: true, payloads: 'masked' },
    },
  } as unknown as PolicyDocument;
  const metrics = createMetrics({ defaultMetrics: false });
  const logger = pino({ level: 'silent' });
  const proxy = createProxy({
    upstream: o.upstream,
    policySource: testSource(compilePolicies([policy])),
    authenticator: createAuthenticator({ allowInsecureLoopback: true }),
    metrics,
    recorder: createRecorder({ directory: dir, metrics, logger }),
    podName: o.name,
    logger,
  });
  const mcpUrl = `${(await proxy.listen('127.0.0.1', 0)).url}/mcp`;
  return {
    issuer,
    proxy,
    mcpUrl,
    dir,
    token: (oid) => issuer.issueToken({ audience, oid }),
    async close() {
      await proxy.close();
      await issuer.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A `fetch` for the SDK client's transport that keeps every response body's bytes, as received. */
export function teeFetch(): {
  fetch: (input: string | URL | Request, init?: RequestInit) => Promise<Response>;
  /** Everything received so far, as text. */
  received(): string;
} {
  const bodies: Buffer[] = [];
  return {
    async fetch(input, init) {
      const res = await fetch(input, init);
      if (res.body === null) return res;
      const bytes = Buffer.from(await res.arrayBuffer());
      bodies.push(bytes);
      return new Response(bytes, { status: res.status, statusText: res.statusText, headers: res.headers });
    },
    received: () => Buffer.concat(bodies).toString('utf8'),
  };
}

/** A string as it appears inside a JSON string literal (escaped), and with every non-ASCII character as `\uXXXX`. */
export function jsonForms(s: string): string[] {
  const escaped = JSON.stringify(s).slice(1, -1);
  const ascii = escaped.replace(
    /[\u0080-\uffff]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
  return [s, escaped, ascii];
}
