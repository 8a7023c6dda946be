#!/usr/bin/env bash
# Installs Prometheus (and promtool) from Debian's packages when missing: the monitoring suite
# runs the chart's dashboard queries and alerting rules against a real Prometheus.
set -euo pipefail
if command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; then exit 0; fi
echo "prometheus not found; installing the Debian package prometheus" >&2
if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
$SUDO apt-get update -qq
# The package's service is never started here (no init system); the tests run the binary.
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null
command -v prometheus >/dev/null && command -v promtool >/dev/null
