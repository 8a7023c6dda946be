#!/usr/bin/env bash
# Installs Chromium from Debian's packages when missing: the browser suite runs the MCP SDK client
# in a real browser page against the gateway, so CORS is enforced by a browser, not asserted.
# playwright-core (an npm dev dependency) drives it; no browser is downloaded from elsewhere.
set -euo pipefail
CHROMIUM="${CHROMIUM_PATH:-/usr/bin/chromium}"
if [ -x "$CHROMIUM" ]; then exit 0; fi
echo "chromium not found at $CHROMIUM; installing the Debian package chromium" >&2
if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null
test -x "$CHROMIUM"
