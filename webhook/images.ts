/**
 * Which images a pod may ask for as its sidecar (annotation `mcpwarden.io/sidecar-image`). The
 * webhook's `--allowed-sidecar-images` is a list of patterns, each one of:
 *
 * | pattern | matches |
 * | --- | --- |
 * | a repository, no tag, no digest: `registry.example.com/mirror/mcp-warden` | that repository with any tag and/or digest (`…:1.2`, `…@sha256:…`, `…:1.2@sha256:…`, and no tag = `latest`), nothing else: not `…/mcp-warden-dev`, not `…/mcp-warden/x` |
 * | a reference with a tag and/or digest: `ghcr.io/mcp-warden/mcp-warden:0.1.0` | exactly that reference (a digest appended to it is another reference: list it too) |
 *
 * There are no wildcards: a pattern over a whole registry or organisation would let anyone who
 * can push there give pods a sidecar that enforces nothing. References are compared as the
 * container runtime resolves them (Docker Hub short names normalized: `mcp-warden` is
 * `docker.io/library/mcp-warden`, `index.docker.io` is `docker.io`). Pure.
 *
 * @example
 * const ref = parseImageReference('ghcr.io/mcp-warden/mcp-warden:0.2.0');
 * imageAllowed(ref!, ['ghcr.io/mcp-warden/mcp-warden']); // true
 * imageAllowed(parseImageReference('alpine/socat')!, ['ghcr.io/mcp-warden/mcp-warden']); // false
 */

/** An image reference, normalized. */
export interface ImageReference {
  /** `<registry>/<path>`, e.g. `docker.io/library/alpine`, `ghcr.io/mcp-warden/mcp-warden`. */
  repository: string;
  tag?: string;
  digest?: string;
}

// The grammar of github.com/distribution/reference (what the kubelet and containerd parse).
const pathComponent = '[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*';
const domainComponent = '(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])';
const domain = `(?:${domainComponent}(?:\\.${domainComponent})*|\\[[0-9a-fA-F:]+\\])(?::[0-9]+)?`;
const tag = '[\\w][\\w.-]{0,127}';
const digest = '[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}';
const referenceRe = new RegExp(
  `^(?:(${domain})/)?(${pathComponent}(?:/${pathComponent})*)(?::(${tag}))?(?:@(${digest}))?$`,
);

/** Longest reference accepted: a 255-character name, a 128-character tag, a sha512 digest. */
const MAX_REFERENCE = 520;

/** Parses and normalizes an image reference; undefined when it is not one. */
export function parseImageReference(text: string): ImageReference | undefined {
  if (text.length > MAX_REFERENCE) return undefined;
  const m = referenceRe.exec(text);
  if (m === null) return undefined;
  let [, host, path] = m as unknown as [string, string | undefined, string];
  // As Docker decides: the first component is a registry only if it looks like a host name.
  if (host !== undefined && !/[.:[A-Z]/.test(host) && host !== 'localhost') {
    path = `${host}/${path}`;
    host = undefined;
  }
  if (host === undefined || host === 'index.docker.io') host = 'docker.io';
  if (host === 'docker.io' && !path.includes('/')) path = `library/${path}`;
  return {
    repository: `${host}/${path}`,
    ...(m[3] === undefined ? {} : { tag: m[3] }),
    ...(m[4] === undefined ? {} : { digest: m[4].toLowerCase() }),
  };
}

/** The reference written back out, normalized (`alpine` → `docker.io/library/alpine`). */
export function formatImageReference(ref: ImageReference): string {
  return `${ref.repository}${ref.tag === undefined ? '' : `:${ref.tag}`}${ref.digest === undefined ? '' : `@${ref.digest}`}`;
}

/** True when `pattern` is an allowlist pattern (a repository or a reference). */
export function isImagePattern(pattern: string): boolean {
  return parseImageReference(pattern) !== undefined;
}

/** What one pattern allows, for messages: `repo (any tag or digest)` or the exact reference. */
export function describePattern(pattern: string): string {
  const p = parseImageReference(pattern);
  if (p === undefined) return pattern;
  return p.tag === undefined && p.digest === undefined ? `${pattern} (any tag or digest)` : pattern;
}

/** True when `image` matches one of `patterns` (patterns that do not parse match nothing). */
export function imageAllowed(image: ImageReference, patterns: readonly string[]): boolean {
  return patterns.some((text) => {
    const p = parseImageReference(text);
    if (p === undefined || p.repository !== image.repository) return false;
    if (p.tag === undefined && p.digest === undefined) return true;
    return p.tag === image.tag && p.digest === image.digest;
  });
}

/** The repository of `image` (the default allowlist: any tag or digest of the default image). */
export function repositoryOf(image: string): string | undefined {
  return parseImageReference(image)?.repository;
}
