import { createHash } from 'node:crypto';
import { WardenError } from '../pkg/errors.js';
import { DOMAIN } from './constants.js';
import { type HttpMethod, type KubeApi, type ObjectMeta, paths, statusOf } from './kube.js';
import {
  certInfo,
  createCA,
  isSignedBy,
  issueServingCert,
  type KeyPairPem,
  keyMatches,
  splitPemBundle,
} from './tls.js';

/**
 * Self-managed serving TLS: one CA and one serving certificate in a Secret shared by the replicas.
 *
 * Rotation (run by the leader only, `reconcile` on a timer):
 * 1. CA past `rotateAt` (2/3) of its lifetime → a new CA goes *first* into the trust bundle, the old
 *    one stays (overlap) until it expires. The serving certificate is not touched yet.
 * 2. The bundle is patched into `caBundle` of both webhook configurations; the Secret records which
 *    bundle was published and when (`mcpwarden.io/ca-bundle-published`).
 * 3. The serving certificate is reissued from the newest CA only once that bundle has been published
 *    for `propagationMs` (API servers read webhook configurations from a cache), or at once when
 *    the CA did not change (routine rotation at 2/3 of the serving lifetime, or a new DNS name).
 * At every moment the certificate the replicas serve chains to a CA the API server trusts.
 */
export interface RotationOptions {
  dnsNames: string[];
  caCommonName: string;
  caLifetimeMs: number;
  servingLifetimeMs: number;
  /** Fraction of the lifetime after which a certificate is replaced (default 2/3). */
  rotateAt: number;
  /** Time the API servers get to pick up a new caBundle before the serving cert switches CA. */
  propagationMs: number;
}

export const defaultRotation: Omit<RotationOptions, 'dnsNames'> = {
  caCommonName: 'mcp-warden-webhook-ca',
  caLifetimeMs: 365 * 24 * 3600_000,
  servingLifetimeMs: 90 * 24 * 3600_000,
  rotateAt: 2 / 3,
  propagationMs: 60_000,
};

export interface CertState {
  /** Trusted CA certificates, newest (the signing CA) first. */
  bundle: string[];
  caKeyPem: string;
  servingCertPem: string;
  servingKeyPem: string;
  published?: { hash: string; at: number };
}

export type CertAction = 'created' | 'ca-rotated' | 'ca-pruned' | 'serving-rotated' | 'serving-waiting';

export const PUBLISHED_ANNOTATION = `${DOMAIN}/ca-bundle-published`;

export function bundlePem(state: Pick<CertState, 'bundle'>): string {
  return state.bundle.join('');
}

export function bundleHash(state: Pick<CertState, 'bundle'>): string {
  return createHash('sha256').update(bundlePem(state)).digest('hex').slice(0, 32);
}

function rotationPoint(pem: string, fraction: number): number {
  const { notBefore, notAfter } = certInfo(pem);
  return notBefore.getTime() + fraction * (notAfter.getTime() - notBefore.getTime());
}

function sameNames(pem: string, wanted: string[]): boolean {
  const info = certInfo(pem);
  const have = new Set([...info.dnsNames, ...info.ipAddresses]);
  return wanted.length === have.size && wanted.every((n) => have.has(n));
}

/** Is the stored state usable at all (parseable, keys match, signing CA valid)? */
function usable(state: CertState | undefined, now: number): state is CertState {
  if (state === undefined || state.bundle.length === 0) return false;
  try {
    const ca = state.bundle[0]!;
    if (!keyMatches(ca, state.caKeyPem) || certInfo(ca).notAfter.getTime() <= now) return false;
    if (!keyMatches(state.servingCertPem, state.servingKeyPem)) return false;
    certInfo(state.servingCertPem);
    return true;
  } catch {
    return false;
  }
}

/**
 * Pure rotation step: what the Secret should hold at `now`. `actions` is empty when nothing
 * changed. Certificates are generated here, so the result is not deterministic, but the decisions are.
 */
export function planCerts(
  current: CertState | undefined,
  now: Date,
  options: RotationOptions,
): { state: CertState; actions: CertAction[] } {
  const t = now.getTime();
  if (!usable(current, t)) {
    const ca = createCA({ commonName: options.caCommonName, lifetimeMs: options.caLifetimeMs, now });
    const serving = issueServingCert(ca, {
      dnsNames: options.dnsNames,
      lifetimeMs: options.servingLifetimeMs,
      now,
    });
    return {
      state: {
        bundle: [ca.certPem],
        caKeyPem: ca.keyPem,
        servingCertPem: serving.certPem,
        servingKeyPem: serving.keyPem,
      },
      actions: ['created'],
    };
  }
  const actions: CertAction[] = [];
  let state: CertState = { ...current, bundle: [...current.bundle] };

  // Old CAs leave the bundle when they expire (they can sign nothing: their keys are gone).
  const kept = state.bundle.filter((pem, i) => i === 0 || certInfo(pem).notAfter.getTime() > t);
  if (kept.length !== state.bundle.length) {
    state.bundle = kept;
    actions.push('ca-pruned');
  }

  if (t >= rotationPoint(state.bundle[0]!, options.rotateAt)) {
    const ca = createCA({ commonName: options.caCommonName, lifetimeMs: options.caLifetimeMs, now });
    state = { ...state, bundle: [ca.certPem, ...state.bundle], caKeyPem: ca.keyPem };
    actions.push('ca-rotated');
  }

  const signer = state.bundle[0]!;
  const servingInfo = certInfo(state.servingCertPem);
  const sameCA = isSignedBy(state.servingCertPem, signer);
  const due =
    !sameCA ||
    t >= rotationPoint(state.servingCertPem, options.rotateAt) ||
    !sameNames(state.servingCertPem, options.dnsNames);
  if (due) {
    const published =
      state.published !== undefined &&
      state.published.hash === bundleHash(state) &&
      t - state.published.at >= options.propagationMs;
    const expired = servingInfo.notAfter.getTime() <= t;
    if (sameCA || published || expired) {
      const ca: KeyPairPem = { certPem: signer, keyPem: state.caKeyPem };
      const serving = issueServingCert(ca, {
        dnsNames: options.dnsNames,
        lifetimeMs: options.servingLifetimeMs,
        now,
      });
      state = { ...state, servingCertPem: serving.certPem, servingKeyPem: serving.keyPem };
      actions.push('serving-rotated');
    } else {
      actions.push('serving-waiting');
    }
  }
  return { state, actions };
}

// ---------------------------------------------------------------------------------------------
// The Secret and the webhook configurations.

interface SecretObject {
  apiVersion?: string;
  kind?: string;
  type?: string;
  metadata?: ObjectMeta;
  data?: Record<string, string>;
}

const b64 = (s: string) => Buffer.from(s, 'utf8').toString('base64');
const unb64 = (s: string | undefined) => (s === undefined ? '' : Buffer.from(s, 'base64').toString('utf8'));

export function stateFromSecret(secret: SecretObject | undefined): CertState | undefined {
  if (secret?.data === undefined) return undefined;
  const bundle = splitPemBundle(unb64(secret.data['ca.crt']));
  const published = secret.metadata?.annotations?.[PUBLISHED_ANNOTATION];
  const m = published === undefined ? null : /^([0-9a-f]+)@(\d+)$/.exec(published);
  return {
    bundle,
    caKeyPem: unb64(secret.data['ca.key']),
    servingCertPem: unb64(secret.data['tls.crt']),
    servingKeyPem: unb64(secret.data['tls.key']),
    ...(m === null ? {} : { published: { hash: m[1]!, at: Number(m[2]) } }),
  };
}

function secretBody(
  name: string,
  namespace: string,
  state: CertState,
  resourceVersion?: string,
): SecretObject {
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    type: 'kubernetes.io/tls',
    metadata: {
      name,
      namespace,
      ...(resourceVersion === undefined ? {} : { resourceVersion }),
      labels: { 'app.kubernetes.io/name': 'mcp-warden', 'app.kubernetes.io/component': 'webhook' },
      ...(state.published === undefined
        ? {}
        : { annotations: { [PUBLISHED_ANNOTATION]: `${state.published.hash}@${state.published.at}` } }),
    },
    data: {
      'ca.crt': b64(bundlePem(state)),
      'ca.key': b64(state.caKeyPem),
      'tls.crt': b64(state.servingCertPem),
      'tls.key': b64(state.servingKeyPem),
    },
  };
}

export interface CertStore {
  namespace: string;
  secretName: string;
  /** Names of the Mutating- and ValidatingWebhookConfiguration whose caBundle we own. */
  webhookConfigName: string;
}

export async function readCertSecret(
  kube: KubeApi,
  store: CertStore,
): Promise<{ state: CertState | undefined; resourceVersion?: string }> {
  try {
    const secret = await kube.request<SecretObject>('GET', paths.secret(store.namespace, store.secretName));
    const rv = secret.metadata?.resourceVersion;
    return { state: stateFromSecret(secret), ...(rv === undefined ? {} : { resourceVersion: rv }) };
  } catch (err) {
    if (statusOf(err) === 404) return { state: undefined };
    throw err;
  }
}

async function writeCertSecret(kube: KubeApi, store: CertStore, state: CertState, resourceVersion?: string) {
  const { namespace, secretName } = store;
  if (resourceVersion === undefined) {
    await kube.request('POST', paths.secrets(namespace), { body: secretBody(secretName, namespace, state) });
  } else {
    await kube.request('PUT', paths.secret(namespace, secretName), {
      body: secretBody(secretName, namespace, state, resourceVersion),
    });
  }
}

interface WebhookConfig {
  metadata?: ObjectMeta;
  webhooks?: Array<{ name: string; clientConfig?: { caBundle?: string } }>;
}

/**
 * Writes `caBundle` into every webhook of both configurations. Returns false when a configuration
 * does not exist (nothing to publish to yet). Conflicts surface as errors; the caller retries.
 */
export async function publishCaBundle(kube: KubeApi, name: string, bundle: string): Promise<boolean> {
  const encoded = b64(bundle);
  let found = 0;
  for (const path of [paths.mutatingConfig(name), paths.validatingConfig(name)]) {
    let config: WebhookConfig;
    try {
      config = await kube.request<WebhookConfig>('GET', path);
    } catch (err) {
      if (statusOf(err) === 404) continue;
      throw err;
    }
    found++;
    const webhooks = config.webhooks ?? [];
    if (webhooks.every((w) => w.clientConfig?.caBundle === encoded)) continue;
    for (const w of webhooks) w.clientConfig = { ...w.clientConfig, caBundle: encoded };
    await kube.request('PUT' satisfies HttpMethod, path, { body: config });
  }
  return found > 0;
}

export interface ReconcileResult {
  state: CertState;
  actions: CertAction[];
  published: boolean;
}

/**
 * One leader pass: plan, write the Secret (optimistic concurrency), publish the bundle, record
 * the publication. Throws on API errors (the caller logs and retries on the next tick).
 */
export async function reconcileCerts(
  kube: KubeApi,
  store: CertStore,
  options: RotationOptions,
  now: () => Date = () => new Date(),
): Promise<ReconcileResult> {
  const read = await readCertSecret(kube, store);
  const { state, actions } = planCerts(read.state, now(), options);
  let rv = read.resourceVersion;
  if (actions.some((a) => a !== 'serving-waiting')) {
    await writeCertSecret(kube, store, state, rv);
    rv = (await readCertSecret(kube, store)).resourceVersion;
  }
  const hash = bundleHash(state);
  const published = await publishCaBundle(kube, store.webhookConfigName, bundlePem(state));
  if (published && state.published?.hash !== hash) {
    state.published = { hash, at: now().getTime() };
    await writeCertSecret(kube, store, state, rv);
  }
  if (!usable(state, now().getTime()))
    throw new WardenError('ERR_CONFIG', 'certificate state is not usable after reconcile');
  return { state, actions, published };
}
