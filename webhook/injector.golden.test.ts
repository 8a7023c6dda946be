import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { V1Pod } from '@kubernetes/client-node';
import { parse } from 'yaml';
import { isWardenError } from '../pkg/errors.js';
import { type InjectContext, type InjectorConfig, type InjectResult, injectPod } from './injector.js';
import { applyPatch } from './jsonpatch.js';
import { verifyInjected } from './verify.js';

/**
 * Golden files: test/fixtures/golden/<case>/pod.yaml (input) and patch.json (the exact expected
 * JSONPatch), warnings.txt (the admission warnings, one a line; absent: none), or refusal.txt
 * instead of patch.json for a pod the webhook refuses (the message). A stale golden fails;
 * `UPDATE_GOLDEN=1` rewrites them from the code, and the diff is what a reviewer reads.
 */
const root = join(import.meta.dirname, '..', 'test', 'fixtures', 'golden');
const update = process.env['UPDATE_GOLDEN'] === '1';

const config: InjectorConfig = {
  image: 'ghcr.io/mcp-warden/mcp-warden:0.1.0',
  version: '0.1.0',
  nativeSidecars: true,
  resources: { cpuRequest: '50m', memoryRequest: '64Mi', memoryLimit: '256Mi' },
  webhookNamespace: 'mcp-warden',
};

/** Per case: the request context and the outcome the case exists to show. */
const cases: Record<
  string,
  { ctx?: Partial<InjectContext>; expect: InjectResult['kind'] | 'refuse'; reason?: string }
> = {
  'plain-pod': { expect: 'inject' },
  'named-port': { expect: 'inject' },
  'unnamed-single-port': { expect: 'inject' },
  'several-containers': { expect: 'inject' },
  'existing-init-containers': { expect: 'inject' },
  'already-injected': { expect: 'noop' },
  'host-network': { expect: 'skip', reason: 'host_network_enabled' },
  overrides: {
    ctx: {
      config: { ...config, allowedImages: ['ghcr.io/mcp-warden/mcp-warden', 'registry.internal/mcp-warden'] },
    },
    expect: 'inject',
  },
  'old-apiserver': { ctx: { config: { ...config, nativeSidecars: false } }, expect: 'inject' },
  'excluded-namespace': {
    ctx: { namespace: 'sandbox', namespaceLabels: { 'mcpwarden.io/injection': 'disabled' } },
    expect: 'skip',
    reason: 'namespace_excluded',
  },
  'kube-system': { ctx: { namespace: 'kube-system' }, expect: 'skip', reason: 'namespace_excluded' },
  'not-labelled': { expect: 'skip', reason: 'not_labelled' },
  'no-mcp-port': { expect: 'skip', reason: 'no_mcp_port' },
  'sidecar-exists': { expect: 'skip', reason: 'sidecar_already_exists' },
  'webhook-pod': { ctx: { namespace: 'mcp-warden' }, expect: 'skip', reason: 'webhook_pod' },
  'probes-on-mcp-port': { expect: 'inject' },
  'duplicate-mcp-port': { expect: 'inject' },
  'upstream-port-beside-mcp': { expect: 'inject' },
  'host-port': { expect: 'refuse' },
  'forged-sidecar': { expect: 'refuse' },
  'sidecar-image-not-allowed': { expect: 'refuse' },
  'sidecar-volume-mount': { expect: 'refuse' },
  'recordings-volume-shared': { expect: 'inject' },
  'native-sidecar-server': { expect: 'inject' },
  'native-sidecar-server-only-port': {
    ctx: { config: { ...config, nativeSidecars: false } },
    expect: 'inject',
  },
  'init-container-mcp-port': { expect: 'inject' },
  'reinjected-kubeconfig': { expect: 'refuse' },
  'reinjected-decoy-upstream': { expect: 'refuse' },
};

function contextFor(name: string): InjectContext {
  return { namespace: 'agents', namespaceLabels: {}, config, ...cases[name]?.ctx };
}

const dirs = readdirSync(root, { withFileTypes: true })
  .filter((d) => d.isDirectory())
  .map((d) => d.name)
  .sort();

test('every golden case has an entry in the table and every entry a folder', () => {
  expect(dirs).toEqual(Object.keys(cases).sort());
});

/** Writes `text` to `file` (or removes it when undefined) under UPDATE_GOLDEN, then compares. */
function golden(file: string, text: string | undefined): void {
  if (update) {
    if (text === undefined) rmSync(file, { force: true });
    else writeFileSync(file, text);
  }
  expect(existsSync(file) ? readFileSync(file, 'utf8') : undefined).toBe(text);
}

/**
 * `pod` as the API server stores it and `kubectl get -o yaml` returns it: defaults on every
 * container, and the ServiceAccount admission plugin's token volume mounted in every container
 * without a mount at its path (so never in the sidecar, which mounts its own token there).
 */
function asStored(pod: V1Pod): V1Pod {
  const out = structuredClone(pod);
  const spec = out.spec!;
  const all = [...(spec.initContainers ?? []), ...spec.containers];
  for (const c of all) {
    c.terminationMessagePath ??= '/dev/termination-log';
    c.imagePullPolicy ??= 'IfNotPresent';
    for (const probe of [c.startupProbe, c.readinessProbe, c.livenessProbe]) {
      if (probe !== undefined) probe.successThreshold ??= 1;
    }
    const path = '/var/run/secrets/kubernetes.io/serviceaccount';
    if (!(c.volumeMounts ?? []).some((m) => m.mountPath === path)) {
      c.volumeMounts = [
        ...(c.volumeMounts ?? []),
        { name: 'kube-api-access-x1', mountPath: path, readOnly: true },
      ];
    }
  }
  spec.volumes = [...(spec.volumes ?? []), { name: 'kube-api-access-x1', projected: { sources: [] } }];
  return out;
}

function run(pod: V1Pod, name: string): { result?: InjectResult; refusal?: string } {
  try {
    return { result: injectPod(pod, contextFor(name)) };
  } catch (err) {
    if (isWardenError(err, 'ERR_BAD_REQUEST')) return { refusal: err.message };
    throw err;
  }
}

describe.each(dirs)('golden %s', (name) => {
  const dir = join(root, name);
  const pod = parse(readFileSync(join(dir, 'pod.yaml'), 'utf8')) as V1Pod;
  const { result, refusal } = run(pod, name);

  test('patch.json, warnings.txt and refusal.txt match', () => {
    golden(join(dir, 'patch.json'), result && `${JSON.stringify(result.patch, null, 2)}\n`);
    const warnings = result?.kind === 'inject' && result.warnings.length > 0 ? result.warnings : undefined;
    golden(join(dir, 'warnings.txt'), warnings && `${warnings.join('\n')}\n`);
    golden(join(dir, 'refusal.txt'), refusal && `${refusal}\n`);
  });

  test('outcome is the one the case shows', () => {
    const want = cases[name]!;
    expect(result?.kind ?? 'refuse').toBe(want.expect);
    if (result?.kind === 'skip') expect(result.reason).toBe(want.reason);
  });

  test('the patch applies, and the patched pod is left alone the second time (idempotent)', () => {
    if (result === undefined) return;
    const patched = applyPatch(pod, result.patch);
    const again = injectPod(patched, contextFor(name));
    expect(again.patch).toEqual([]);
    const sidecars = [...(patched.spec?.initContainers ?? []), ...(patched.spec?.containers ?? [])].filter(
      (c) => c.name === 'mcp-warden',
    );
    expect(sidecars.length).toBe(
      result.kind === 'inject' || result.kind === 'noop' || name === 'sidecar-exists' ? 1 : 0,
    );
  });

  test('the patched pod, as injected and as stored, verifies as what the webhook injects', () => {
    if (result?.kind !== 'inject') return;
    const patched = applyPatch(pod, result.patch);
    const { config: cfg } = contextFor(name);
    for (const resubmitted of [patched, asStored(patched)]) {
      // Re-verifying gives injection's warnings again, but those about the ports it renamed
      // (nothing is renamed the second time).
      expect(verifyInjected(resubmitted, cfg)).toEqual(
        result.warnings.filter((w) => !/ also declares the MCP port \d+: renamed to /.test(w)),
      );
      expect(injectPod(resubmitted, contextFor(name))).toMatchObject({ kind: 'noop', patch: [] });
    }
  });
});
