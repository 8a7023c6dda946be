import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { V1Pod } from '@kubernetes/client-node';
import { parse } from 'yaml';
import { type InjectContext, type InjectorConfig, type InjectResult, injectPod } from './injector.js';
import { applyPatch } from './jsonpatch.js';

/**
 * Golden files: test/fixtures/golden/<case>/pod.yaml (input) and patch.json (the exact expected
 * JSONPatch). A stale golden fails; `UPDATE_GOLDEN=1` rewrites patch.json from the code, and the
 * diff is what a reviewer reads.
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
const cases: Record<string, { ctx?: Partial<InjectContext>; expect: InjectResult['kind']; reason?: string }> =
  {
    'plain-pod': { expect: 'inject' },
    'named-port': { expect: 'inject' },
    'unnamed-single-port': { expect: 'inject' },
    'several-containers': { expect: 'inject' },
    'existing-init-containers': { expect: 'inject' },
    'already-injected': { expect: 'noop' },
    'host-network': { expect: 'skip', reason: 'host_network_enabled' },
    overrides: { expect: 'inject' },
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

describe.each(dirs)('golden %s', (name) => {
  const dir = join(root, name);
  const pod = parse(readFileSync(join(dir, 'pod.yaml'), 'utf8')) as V1Pod;
  const result = injectPod(pod, contextFor(name));

  test('patch matches patch.json', () => {
    const file = join(dir, 'patch.json');
    const actual = `${JSON.stringify(result.patch, null, 2)}\n`;
    if (update) writeFileSync(file, actual);
    const expected = readFileSync(file, 'utf8');
    expect(actual).toBe(expected);
  });

  test('outcome is the one the case shows', () => {
    const want = cases[name]!;
    expect(result.kind).toBe(want.expect);
    if (result.kind === 'skip') expect(result.reason).toBe(want.reason);
  });

  test('the patch applies, and the patched pod is left alone the second time (idempotent)', () => {
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
});
