import {
  constants,
  createPrivateKey,
  generateKeyPairSync,
  privateEncrypt,
  randomBytes,
  X509Certificate,
} from 'node:crypto';
import forge from 'node-forge';
import { WardenError } from '../pkg/errors.js';

/**
 * Certificate material for the webhook, made with node-forge.
 *
 * Key type: RSA 2048. node-forge 1.x signs X.509 certificates with RSA only (its `pki` has no
 * ECDSA; ed25519 exists for raw signatures but not for certificates), so ECDSA P-256 is not an
 * option without another library. Keys come from Node's native `generateKeyPairSync` (fast), and
 * node-forge builds and signs the certificates.
 *
 * @example
 * const ca = createCA({ commonName: 'mcp-warden-webhook-ca', lifetimeMs: 365 * 864e5 });
 * const leaf = issueServingCert(ca, { dnsNames: ['mcp-warden.mcp-warden.svc'], lifetimeMs: 90 * 864e5 });
 */
export interface KeyPairPem {
  certPem: string;
  keyPem: string;
}

export interface CertInfo {
  notBefore: Date;
  notAfter: Date;
  subject: string;
  issuer: string;
  serial: string;
  fingerprint256: string;
  dnsNames: string[];
  ipAddresses: string[];
  isCA: boolean;
}

/** Backdate notBefore a little for clock skew between the webhook and the API servers. */
function backdateMs(lifetimeMs: number): number {
  return Math.min(60_000, Math.floor(lifetimeMs / 10));
}

function newKeys(): { publicKey: forge.pki.PublicKey; keyPem: string } {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', {
    modulusLength: 2048,
    publicExponent: 0x10001,
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
    publicKeyEncoding: { type: 'spki', format: 'pem' },
  });
  return { publicKey: forge.pki.publicKeyFromPem(publicKey), keyPem: privateKey };
}

/** DER prefix of a PKCS#1 v1.5 DigestInfo for SHA-256 (RFC 8017 §9.2 note 1). */
const SHA256_DIGEST_INFO = Buffer.from('3031300d060960864801650304020105000420', 'hex');

/**
 * Signs with Node's native RSA (node-forge builds the certificate, but its pure-JS big-integer
 * signing is slow on a busy machine): PKCS#1 v1.5 over the SHA-256 digest forge computed.
 */
function nativeSigner(keyPem: string): forge.pki.rsa.PrivateKey {
  const key = createPrivateKey(keyPem);
  const signer = {
    sign(md: forge.md.MessageDigest): string {
      const digest = Buffer.from(md.digest().getBytes(), 'binary');
      const signature = privateEncrypt(
        { key, padding: constants.RSA_PKCS1_PADDING },
        Buffer.concat([SHA256_DIGEST_INFO, digest]),
      );
      return signature.toString('binary');
    },
  };
  return signer as unknown as forge.pki.rsa.PrivateKey;
}

function serialNumber(): string {
  // Positive 128-bit serial (leading nibble kept below 8 so DER does not read it as negative).
  const bytes = randomBytes(16);
  bytes[0] = bytes[0]! & 0x7f;
  return bytes.toString('hex');
}

function validity(cert: forge.pki.Certificate, now: Date, lifetimeMs: number): void {
  cert.validity.notBefore = new Date(now.getTime() - backdateMs(lifetimeMs));
  cert.validity.notAfter = new Date(now.getTime() + lifetimeMs);
}

/** A self-signed CA (basicConstraints CA, keyCertSign). */
export function createCA(options: { commonName: string; lifetimeMs: number; now?: Date }): KeyPairPem {
  const now = options.now ?? new Date();
  const keys = newKeys();
  const cert = forge.pki.createCertificate();
  cert.publicKey = keys.publicKey;
  cert.serialNumber = serialNumber();
  validity(cert, now, options.lifetimeMs);
  // A unique CN per CA keeps old and new CAs apart in the bundle and in logs.
  const attrs = [{ name: 'commonName', value: `${options.commonName}-${Math.floor(now.getTime() / 1000)}` }];
  cert.setSubject(attrs);
  cert.setIssuer(attrs);
  cert.setExtensions([
    { name: 'basicConstraints', cA: true, critical: true },
    { name: 'keyUsage', keyCertSign: true, cRLSign: true, digitalSignature: true, critical: true },
    { name: 'subjectKeyIdentifier' },
  ]);
  cert.sign(nativeSigner(keys.keyPem), forge.md.sha256.create());
  return { certPem: pemOf(cert), keyPem: keys.keyPem };
}

/** A serving certificate for `dnsNames` (and IP SANs for literal addresses) signed by `ca`. */
export function issueServingCert(
  ca: KeyPairPem,
  options: { dnsNames: string[]; lifetimeMs: number; now?: Date },
): KeyPairPem {
  if (options.dnsNames.length === 0)
    throw new WardenError('ERR_CONFIG', 'a serving certificate needs at least one name');
  const now = options.now ?? new Date();
  const caCert = forge.pki.certificateFromPem(ca.certPem);
  // Never outlive the issuing CA: a leaf past its CA's expiry would fail verification anyway.
  const lifetimeMs = Math.min(options.lifetimeMs, caCert.validity.notAfter.getTime() - now.getTime());
  if (lifetimeMs <= 0) throw new WardenError('ERR_CONFIG', 'the issuing CA has expired');
  const keys = newKeys();
  const cert = forge.pki.createCertificate();
  cert.publicKey = keys.publicKey;
  cert.serialNumber = serialNumber();
  validity(cert, now, lifetimeMs);
  cert.setSubject([{ name: 'commonName', value: options.dnsNames[0]! }]);
  cert.setIssuer(caCert.subject.attributes);
  const altNames = options.dnsNames.map((n) =>
    /^[0-9.]+$|:/.test(n) ? { type: 7, ip: n } : { type: 2, value: n },
  );
  cert.setExtensions([
    { name: 'basicConstraints', cA: false },
    { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
    { name: 'extKeyUsage', serverAuth: true },
    { name: 'subjectAltName', altNames },
    { name: 'subjectKeyIdentifier' },
    { name: 'authorityKeyIdentifier', keyIdentifier: caCert.generateSubjectKeyIdentifier().getBytes() },
  ]);
  cert.sign(nativeSigner(ca.keyPem), forge.md.sha256.create());
  return { certPem: pemOf(cert), keyPem: keys.keyPem };
}

/**
 * forge writes PEM with CRLF line ends; Node and {@link splitPemBundle} use LF. One form keeps the
 * stored bundle byte-stable across a read and a rewrite of the Secret (no spurious republish).
 */
function pemOf(cert: forge.pki.Certificate): string {
  return forge.pki.certificateToPem(cert).replace(/\r\n/g, '\n');
}

/** Splits a PEM bundle into its certificates (in order). */
export function splitPemBundle(bundle: string): string[] {
  return (
    bundle.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g)?.map((p) => `${p}\n`) ?? []
  );
}

/** Facts of one PEM certificate (Node's X509Certificate); throws ERR_CONFIG on garbage. */
export function certInfo(pem: string): CertInfo {
  let x: X509Certificate;
  try {
    x = new X509Certificate(pem);
  } catch (err) {
    throw new WardenError('ERR_CONFIG', 'not a PEM certificate', { cause: err });
  }
  const san = x.subjectAltName ?? '';
  const parts = san === '' ? [] : san.split(/,\s*/);
  return {
    notBefore: new Date(x.validFrom),
    notAfter: new Date(x.validTo),
    subject: x.subject,
    issuer: x.issuer,
    serial: x.serialNumber,
    fingerprint256: x.fingerprint256,
    dnsNames: parts.filter((p) => p.startsWith('DNS:')).map((p) => p.slice(4)),
    ipAddresses: parts.filter((p) => p.startsWith('IP Address:')).map((p) => p.slice(11)),
    isCA: x.ca,
  };
}

/** True when `leafPem` is signed by `caPem`. */
export function isSignedBy(leafPem: string, caPem: string): boolean {
  try {
    const leaf = new X509Certificate(leafPem);
    const ca = new X509Certificate(caPem);
    return leaf.checkIssued(ca) && leaf.verify(ca.publicKey);
  } catch {
    return false;
  }
}

/** True when `keyPem` is the private key of `certPem`. */
export function keyMatches(certPem: string, keyPem: string): boolean {
  try {
    return new X509Certificate(certPem).checkPrivateKey(createPrivateKey(keyPem));
  } catch {
    return false;
  }
}
