import {
  describePattern,
  imageAllowed,
  isImagePattern,
  parseImageReference,
  repositoryOf,
} from './images.js';

const digest = `sha256:${'0123456789abcdef'.repeat(4)}`;

test('references are normalized as the container runtime resolves them', () => {
  expect(parseImageReference('alpine')).toEqual({ repository: 'docker.io/library/alpine' });
  expect(parseImageReference('alpine/socat:1.8')).toEqual({
    repository: 'docker.io/alpine/socat',
    tag: '1.8',
  });
  expect(parseImageReference('index.docker.io/alpine')).toEqual({ repository: 'docker.io/library/alpine' });
  expect(parseImageReference('localhost/warden:dev')).toEqual({ repository: 'localhost/warden', tag: 'dev' });
  expect(parseImageReference('localhost:5000/a/b')).toEqual({ repository: 'localhost:5000/a/b' });
  expect(parseImageReference(`ghcr.io/mcp-warden/mcp-warden:0.1.0@${digest}`)).toEqual({
    repository: 'ghcr.io/mcp-warden/mcp-warden',
    tag: '0.1.0',
    digest,
  });
  expect(parseImageReference(`[::1]:5000/w@${digest.toUpperCase().replace('SHA256', 'sha256')}`)).toEqual({
    repository: '[::1]:5000/w',
    digest,
  });
});

test('what is not a reference is undefined', () => {
  for (const bad of [
    '',
    'a b',
    'upper/Case',
    'a'.repeat(600),
    'ghcr.io/x/',
    'ghcr.io//x',
    'x:',
    'x@sha256:short',
    'x@',
    'ghcr.io/x/*',
    '*',
    'https://ghcr.io/x',
  ]) {
    expect([bad, parseImageReference(bad)]).toEqual([bad, undefined]);
    expect(isImagePattern(bad)).toBe(false);
  }
});

test('a repository pattern allows any tag or digest of exactly that repository', () => {
  const allow = (image: string) =>
    imageAllowed(parseImageReference(image)!, ['registry.example.com/mirror/mcp-warden']);
  expect(allow('registry.example.com/mirror/mcp-warden')).toBe(true);
  expect(allow('registry.example.com/mirror/mcp-warden:1.2')).toBe(true);
  expect(allow(`registry.example.com/mirror/mcp-warden@${digest}`)).toBe(true);
  expect(allow(`registry.example.com/mirror/mcp-warden:1.2@${digest}`)).toBe(true);
  expect(allow('registry.example.com/mirror/mcp-warden-dev:1.2')).toBe(false);
  expect(allow('registry.example.com/mirror/mcp-warden/sub:1.2')).toBe(false);
  expect(allow('registry.example.com/mirror:1.2')).toBe(false);
  expect(allow('registry.example.com:443/mirror/mcp-warden:1.2')).toBe(false);
  expect(allow('other.example.com/mirror/mcp-warden:1.2')).toBe(false);
});

test('a reference pattern allows exactly that reference; Docker Hub short names match their long form', () => {
  const patterns = [
    'ghcr.io/mcp-warden/mcp-warden:0.1.0',
    `ghcr.io/mcp-warden/mcp-warden@${digest}`,
    'warden',
  ];
  const allow = (image: string) => imageAllowed(parseImageReference(image)!, patterns);
  expect(allow('ghcr.io/mcp-warden/mcp-warden:0.1.0')).toBe(true);
  expect(allow(`ghcr.io/mcp-warden/mcp-warden@${digest}`)).toBe(true);
  expect(allow('ghcr.io/mcp-warden/mcp-warden:0.1.1')).toBe(false);
  expect(allow(`ghcr.io/mcp-warden/mcp-warden:0.1.0@${digest}`)).toBe(false);
  expect(allow('ghcr.io/mcp-warden/mcp-warden')).toBe(false);
  expect(allow('docker.io/library/warden:7')).toBe(true);
  expect(allow('library/warden')).toBe(true);
  expect(allow('someone/warden:7')).toBe(false);
  // Patterns that are not references match nothing.
  expect(imageAllowed(parseImageReference('x:1')!, ['*', 'x*'])).toBe(false);
});

test('messages and the default allowlist', () => {
  expect(describePattern('ghcr.io/mcp-warden/mcp-warden')).toBe(
    'ghcr.io/mcp-warden/mcp-warden (any tag or digest)',
  );
  expect(describePattern('ghcr.io/mcp-warden/mcp-warden:0.1.0')).toBe('ghcr.io/mcp-warden/mcp-warden:0.1.0');
  expect(repositoryOf(`ghcr.io/mcp-warden/mcp-warden@${digest}`)).toBe('ghcr.io/mcp-warden/mcp-warden');
  expect(repositoryOf('img:1')).toBe('docker.io/library/img');
  expect(repositoryOf('not an image')).toBeUndefined();
});
