/**
 * The mcp-warden version: `mcp-warden --version`, the sidecar image the webhook injects by default,
 * and `mcpwarden.io/status`. It equals package.json's version and the chart's appVersion
 * (version.test.ts); hack/build-image.sh tags the image with the same.
 */
export const VERSION = '0.1.0';
