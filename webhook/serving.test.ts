import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLogger } from '../pkg/log.js';
import { fileCertSource, type ServingCert } from './serving.js';
import { createCA, issueServingCert } from './tls.js';

/** cert-manager mode: the certificate comes from a mounted directory and is reloaded when it changes. */
test('fileCertSource loads tls.crt/tls.key and reports a rotated certificate', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'mcp-warden-certdir-'));
  const ca = createCA({ commonName: 'cm', lifetimeMs: 3600_000 });
  const a = issueServingCert(ca, { dnsNames: ['wh.ns.svc'], lifetimeMs: 600_000 });
  await writeFile(join(dir, 'tls.crt'), a.certPem);
  await writeFile(join(dir, 'tls.key'), a.keyPem);
  await writeFile(join(dir, 'ca.crt'), ca.certPem);
  const changes: ServingCert[] = [];
  const source = fileCertSource(dir, {
    reloadMs: 50,
    logger: createLogger('t'),
    onChange: (c) => changes.push(c),
  });
  try {
    const first = await source.ready();
    expect(first.cert).toBe(a.certPem);
    expect(first.ca).toBe(ca.certPem);
    expect(first.notAfter.getTime()).toBeGreaterThan(Date.now());
    const b = issueServingCert(ca, { dnsNames: ['wh.ns.svc'], lifetimeMs: 600_000 });
    const changed = new Promise<ServingCert>((resolve) => source.on('change', resolve));
    // Half-written update (new key, old certificate): never served; the pair is taken once whole.
    await writeFile(join(dir, 'tls.key'), b.keyPem);
    await source.refresh();
    expect(source.current()?.cert).toBe(a.certPem);
    await writeFile(join(dir, 'tls.crt'), b.certPem);
    const next = await changed;
    expect(next.cert).toBe(b.certPem);
    expect(source.current()?.cert).toBe(b.certPem);
    expect(changes.length).toBeGreaterThanOrEqual(2);
  } finally {
    source.close();
    await rm(dir, { recursive: true, force: true });
  }
});

test('a missing directory keeps ready() waiting instead of crashing', async () => {
  const source = fileCertSource('/nonexistent/mcp-warden', { reloadMs: 20, logger: createLogger('t') });
  const abort = new AbortController();
  const waiting = source.ready(abort.signal);
  abort.abort();
  await expect(waiting).rejects.toThrow(/aborted/);
  expect(source.current()).toBeUndefined();
  source.close();
});
