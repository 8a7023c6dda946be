import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createAuthenticator } from '../../pkg/identity/index.js';
import { createMetrics } from '../../pkg/metrics/catalogue.js';
import { createProxy } from '../../pkg/proxy/index.js';
import { defaultMaxConnections } from '../../pkg/proxy/proxy.js';
import { testEngine, testSource } from './helpers/test-policy.js';

/**
 * Connections cost a file descriptor each before any token is checked: past the limit new ones
 * are refused, and the proxy serves again once they go.
 */
test('past maxConnections new connections are refused; the proxy serves again once they close', async () => {
  const proxy = createProxy({
    upstream: 'http://127.0.0.1:9/mcp',
    policySource: testSource(testEngine({ name: 'p', issuers: [], rules: [] })),
    authenticator: createAuthenticator({ allowInsecureLoopback: true }),
    metrics: createMetrics({ defaultMetrics: false }),
    podName: 't',
    maxConnections: 3,
  });
  const { url } = await proxy.listen('127.0.0.1', 0);
  const { port } = new URL(url);
  const open = (): Promise<Socket> =>
    new Promise((resolve, reject) => {
      const s = connect(Number(port), '127.0.0.1', () => resolve(s));
      s.on('error', reject);
    });
  const idle = [await open(), await open(), await open()];
  try {
    // The fourth is accepted by the kernel and closed by the server at once.
    const fourth = await open();
    const closed = await new Promise<boolean>((resolve) => {
      fourth.on('close', () => resolve(true));
      setTimeout(() => resolve(false), 2_000);
    });
    expect(closed).toBe(true);
  } finally {
    for (const s of idle) s.destroy();
  }
  // Once they are gone, a request is answered (401: no token).
  let status = 0;
  for (let i = 0; i < 50 && status === 0; i++) {
    status = await fetch(`${url}/mcp`, { method: 'POST', body: '{}' }).then(
      (r) => r.status,
      () => 0,
    );
    if (status === 0) await new Promise((r) => setTimeout(r, 20));
  }
  expect(status).toBe(401);
  await proxy.close();
});

test('the default limit is half the open-file limit, bounded', () => {
  const dir = mkdtempSync(join(tmpdir(), 'limits-'));
  try {
    const at = (soft: string): number => {
      const f = join(dir, `limits-${soft}`);
      writeFileSync(
        f,
        `Limit                     Soft Limit           Hard Limit           Units\nMax open files            ${soft}                 1048576              files\n`,
      );
      return defaultMaxConnections(f);
    };
    expect(at('1024')).toBe(512);
    expect(at('1048576')).toBe(100_000);
    expect(at('unlimited')).toBe(100_000);
    expect(at('20')).toBe(64);
    expect(defaultMaxConnections(join(dir, 'missing'))).toBe(10_000);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
