#!/usr/bin/env bash
# Installs qemu-aarch64-static (Debian's qemu-user-static) when missing: the image suite runs the
# linux/arm64 image's node under user-mode emulation.
set -euo pipefail
if command -v qemu-aarch64-static >/dev/null 2>&1; then exit 0; fi
echo "qemu-aarch64-static not found; installing the Debian package qemu-user-static" >&2
if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends qemu-user-static >/dev/null
command -v qemu-aarch64-static >/dev/null
