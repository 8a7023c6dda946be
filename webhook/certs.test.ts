import { once } from 'node:events';
import { createServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { connect } from 'node:tls';
import { bundleHash, type CertState, planCerts, type RotationOptions, stateFromSecret } from './certs.js';
import { certInfo, createCA, isSignedBy, issueServingCert, keyMatches, splitPemBundle } from './tls.js';

const minute = 60_000;
const options: RotationOptions = {
  dnsNames: ['mcp-warden.mcp-warden.svc', '127.0.0.1'],
  caCommonName: 'test-ca',
  caLifetimeMs: 90 * minute,
  servingLifetimeMs: 30 * minute,
  rotateAt: 2 / 3,
  propagationMs: minute,
};

/** TLS handshake against a real loopback HTTPS server; resolves with the verification error, if any. */
async function handshake(cert: { certPem: string; keyPem: string }, ca: string, servername?: string) {
  const server = createServer({ cert: cert.certPem, key: cert.keyPem }, (_req, res) => res.end('ok'));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  try {
    return await new Promise<string | undefined>((resolve) => {
      const socket = connect({ host: '127.0.0.1', port, ca, ...(servername ? { servername } : {}) });
      socket.once('secureConnect', () => {
        socket.end();
        resolve(undefined);
      });
      socket.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
    });
  } finally {
    server.close();
  }
}

test('CA and serving certificate: RSA 2048, SANs, and a real TLS handshake verifies against the CA only', async () => {
  const ca = createCA({ commonName: 'test-ca', lifetimeMs: 10 * minute });
  const leaf = issueServingCert(ca, { dnsNames: ['svc.ns.svc', '127.0.0.1'], lifetimeMs: 5 * minute });
  const info = certInfo(leaf.certPem);
  expect(info.dnsNames).toEqual(['svc.ns.svc']);
  expect(info.ipAddresses).toEqual(['127.0.0.1']);
  expect(info.isCA).toBe(false);
  expect(certInfo(ca.certPem).isCA).toBe(true);
  expect(isSignedBy(leaf.certPem, ca.certPem)).toBe(true);
  expect(keyMatches(leaf.certPem, leaf.keyPem)).toBe(true);
  expect(keyMatches(leaf.certPem, ca.keyPem)).toBe(false);
  expect(await handshake(leaf, ca.certPem)).toBeUndefined();
  expect(await handshake(leaf, ca.certPem, 'svc.ns.svc')).toBeUndefined();
  expect(await handshake(leaf, ca.certPem, 'other.ns.svc')).toBe('ERR_TLS_CERT_ALTNAME_INVALID');
  const stranger = createCA({ commonName: 'stranger', lifetimeMs: 10 * minute });
  expect(await handshake(leaf, stranger.certPem)).toBe('UNABLE_TO_VERIFY_LEAF_SIGNATURE');
});

test('a serving certificate never outlives its CA', () => {
  const ca = createCA({ commonName: 'short', lifetimeMs: 5 * minute });
  const leaf = issueServingCert(ca, { dnsNames: ['a'], lifetimeMs: 60 * minute });
  expect(certInfo(leaf.certPem).notAfter.getTime()).toBeLessThanOrEqual(
    certInfo(ca.certPem).notAfter.getTime(),
  );
});

test('rotation plan: create, serving rotation under the same CA, CA rotation with overlap, prune', async () => {
  const t0 = new Date();
  const at = (ms: number) => new Date(t0.getTime() + ms);
  const created = planCerts(undefined, t0, options);
  expect(created.actions).toEqual(['created']);
  let state: CertState = created.state;
  expect(state.bundle).toHaveLength(1);

  expect(planCerts(state, at(minute), options).actions).toEqual([]);

  // Serving cert at 2/3 of its 30 min (+ backdate): reissued at once from the same CA.
  const serving = planCerts(state, at(21 * minute), options);
  expect(serving.actions).toEqual(['serving-rotated']);
  expect(isSignedBy(serving.state.servingCertPem, state.bundle[0]!)).toBe(true);
  expect(serving.state.servingCertPem).not.toBe(state.servingCertPem);
  state = serving.state;
  const again = planCerts(state, at(41.5 * minute), options);
  expect(again.actions).toEqual(['serving-rotated']);
  state = again.state;

  // CA at 2/3 of 90 min: the new CA goes first into the bundle, the serving cert waits.
  const caTime = at(61 * minute);
  const rotated = planCerts(state, caTime, options);
  expect(rotated.actions).toEqual(['ca-rotated', 'serving-waiting']);
  expect(rotated.state.bundle).toHaveLength(2);
  expect(rotated.state.bundle[1]).toBe(state.bundle[0]);
  expect(rotated.state.servingCertPem).toBe(state.servingCertPem);
  // The old serving cert still chains to a CA of the published bundle: no gap.
  expect(rotated.state.bundle.some((ca) => isSignedBy(rotated.state.servingCertPem, ca))).toBe(true);
  state = rotated.state;

  // Not yet published → still waiting, even after the propagation time.
  expect(planCerts(state, at(63 * minute), options).actions).toEqual(['serving-waiting']);
  // Published, but too recently → waiting.
  state.published = { hash: bundleHash(state), at: caTime.getTime() };
  expect(planCerts(state, at(61.5 * minute), options).actions).toEqual(['serving-waiting']);
  // Published for the propagation time → the serving cert moves to the new CA.
  const switched = planCerts(state, at(62.5 * minute), options);
  expect(switched.actions).toEqual(['serving-rotated']);
  expect(isSignedBy(switched.state.servingCertPem, state.bundle[0]!)).toBe(true);
  expect(switched.state.bundle).toHaveLength(2);
  state = switched.state;

  // After the old CA expires it leaves the bundle.
  const pruned = planCerts(state, at(91 * minute), options);
  expect(pruned.actions[0]).toBe('ca-pruned');
  expect(pruned.state.bundle[0]).toBe(state.bundle[0]);
  expect(pruned.state.bundle).not.toContain(state.bundle[1]);
});

test('a changed DNS name reissues the serving certificate; garbage state starts over', () => {
  const { state } = planCerts(undefined, new Date(), options);
  const renamed = planCerts(state, new Date(), { ...options, dnsNames: ['new.ns.svc'] });
  expect(renamed.actions).toEqual(['serving-rotated']);
  expect(certInfo(renamed.state.servingCertPem).dnsNames).toEqual(['new.ns.svc']);
  const garbage = planCerts({ ...state, caKeyPem: 'nope' }, new Date(), options);
  expect(garbage.actions).toEqual(['created']);
});

test('Secret decoding: bundle split, keys, published annotation', () => {
  const { state } = planCerts(undefined, new Date(), options);
  const b64 = (s: string) => Buffer.from(s).toString('base64');
  const decoded = stateFromSecret({
    metadata: { annotations: { 'mcpwarden.io/ca-bundle-published': `${bundleHash(state)}@1700000000000` } },
    data: {
      'ca.crt': b64(state.bundle.join('')),
      'ca.key': b64(state.caKeyPem),
      'tls.crt': b64(state.servingCertPem),
      'tls.key': b64(state.servingKeyPem),
    },
  });
  // Byte-stable: what was written reads back the same, so a rewrite does not change the bundle
  // (once it did: forge's CRLF PEM came back LF-ended, a new caBundle hash for the same CAs).
  expect(decoded?.bundle).toEqual(state.bundle);
  expect(bundleHash(decoded!)).toBe(bundleHash(state));
  expect(decoded?.servingCertPem).toBe(state.servingCertPem);
  expect(splitPemBundle(state.bundle.join(''))).toEqual(state.bundle);
  expect(decoded?.published).toEqual({ hash: bundleHash(state), at: 1700000000000 });
  expect(planCerts(decoded, new Date(), options).actions).toEqual([]);
  expect(stateFromSecret(undefined)).toBeUndefined();
});
