import { isWardenError } from '../pkg/errors.js';
import { allowedSidecarImages } from '../webhook/injector.js';
import { parseWebhookArgs, servingNames } from './webhook.js';

function configError(argv: string[], env: NodeJS.ProcessEnv = { POD_NAMESPACE: 'mcp-warden' }): string {
  try {
    parseWebhookArgs(argv, env);
  } catch (err) {
    if (isWardenError(err, 'ERR_CONFIG')) return err.message.split('\n')[0] ?? '';
    throw err;
  }
  throw new Error('expected ERR_CONFIG');
}

test('defaults: ports, names, resources, native sidecars auto, namespace from the environment', () => {
  const c = parseWebhookArgs([], { POD_NAMESPACE: 'mcp-warden', POD_NAME: 'wh-0' });
  expect(c.listen).toEqual({ host: '0.0.0.0', port: 8443 });
  expect(c.adminListen).toEqual({ host: '0.0.0.0', port: 9090 });
  expect(c.namespace).toBe('mcp-warden');
  expect(c.identity).toBe('wh-0');
  expect(c.secretName).toBe('mcp-warden-webhook-tls');
  expect(c.webhookConfigName).toBe('mcp-warden');
  expect(c.nativeSidecars).toBe('auto');
  expect(c.certDir).toBeUndefined();
  expect(c.injector.resources).toEqual({ cpuRequest: '50m', memoryRequest: '96Mi', memoryLimit: '256Mi' });
  expect(c.injector.webhookNamespace).toBe('mcp-warden');
  expect(c.rotation.rotateAt).toBeCloseTo(2 / 3);
});

test('flags override, durations parse, none clears a limit', () => {
  const c = parseWebhookArgs(
    [
      '--listen=127.0.0.1:9443',
      '--namespace',
      'sys',
      '--native-sidecars',
      'false',
      '--cert-dir',
      '/tls',
      '--ca-lifetime',
      '36s',
      '--sidecar-memory-limit',
      'none',
      '--sidecar-cpu-limit',
      '500m',
      '--cert-names',
      '127.0.0.1, localhost',
    ],
    {},
  );
  expect(c.listen).toEqual({ host: '127.0.0.1', port: 9443 });
  expect(c.nativeSidecars).toBe(false);
  expect(c.certDir).toBe('/tls');
  expect(c.rotation.caLifetimeMs).toBe(36_000);
  expect(c.injector.resources).toEqual({ cpuRequest: '50m', memoryRequest: '96Mi', cpuLimit: '500m' });
  expect(servingNames({ ...c, serviceName: 'wh' })).toEqual([
    'wh.sys.svc',
    'wh.sys.svc.cluster.local',
    'wh.sys',
    'wh',
    '127.0.0.1',
    'localhost',
  ]);
});

test('bad input gets a clear ERR_CONFIG naming the flag', () => {
  expect(configError([], {})).toMatch(/--namespace/);
  expect(configError(['--listen', 'nope'])).toMatch(/--listen: "nope" is not host:port/);
  expect(configError(['--native-sidecars', 'maybe'])).toMatch(/--native-sidecars/);
  expect(configError(['--ca-lifetime', 'forever'])).toMatch(/--ca-lifetime: "forever" is not a duration/);
  expect(configError(['--sidecar-cpu-request', 'lots'])).toMatch(/--sidecar-cpu-request/);
  expect(configError(['--sidecar-pull-policy', 'Sometimes'])).toMatch(/--sidecar-pull-policy/);
  expect(configError(['--bogus'])).toMatch(/bogus/);
});

test('--allowed-sidecar-images: absent leaves the default (the sidecar image repository), given is parsed', () => {
  const env = { POD_NAMESPACE: 'mcp-warden' };
  const plain = parseWebhookArgs(['--sidecar-image', 'registry.example.com/mcp-warden:0.1.0'], env);
  expect(plain.injector.allowedImages).toBeUndefined();
  expect(allowedSidecarImages({ ...plain.injector, nativeSidecars: true })).toEqual([
    'registry.example.com/mcp-warden',
  ]);
  const listed = parseWebhookArgs(
    [
      '--allowed-sidecar-images',
      ' registry.example.com/mirror/mcp-warden, ghcr.io/mcp-warden/mcp-warden:0.1.0 ',
    ],
    env,
  );
  expect(listed.injector.allowedImages).toEqual([
    'registry.example.com/mirror/mcp-warden',
    'ghcr.io/mcp-warden/mcp-warden:0.1.0',
  ]);
  // Empty: only the sidecar image itself.
  expect(parseWebhookArgs(['--allowed-sidecar-images='], env).injector.allowedImages).toEqual([]);
});

test('a wildcard or malformed allowed image, or a malformed sidecar image, is a clear ERR_CONFIG', () => {
  expect(configError(['--allowed-sidecar-images', 'ghcr.io/mcp-warden/*'])).toMatch(
    /--allowed-sidecar-images: "ghcr.io\/mcp-warden\/\*" is neither a repository .* wildcards are not supported/,
  );
  expect(configError(['--allowed-sidecar-images', 'ok/image,bad image'])).toMatch(/"bad image"/);
  expect(configError(['--sidecar-image', 'not an image'])).toMatch(
    /--sidecar-image: "not an image" is not an image reference/,
  );
});
