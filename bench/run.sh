#!/usr/bin/env bash
# `make bench` (after `make build`): installs nginx if missing, builds the bench, runs every mode
# and writes bench/results/<date>-<host>.md. Not a test: it never fails on timing.
# Knobs (environment): BENCH_DURATION BENCH_WARMUP BENCH_CONNECTIONS BENCH_SCENARIOS BENCH_MODES
# BENCH_PROFILE=1 BENCH_SKIP=mask,webhook — see bench/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/node_modules/.bin:$PWD/.cache/bin:$PATH"

if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
  echo "bench: nginx not found; installing the Debian package nginx-light" >&2
  if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nginx-light >/dev/null \
    || DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nginx >/dev/null
fi
export PATH="$PATH:/usr/sbin"

# Type errors (e.g. a module another engineer has not finished) must not stop the run: tsc still
# emits, and a part that cannot load is reported as missing in the results.
tsc -p bench/tsconfig.json || echo "bench: type errors above; running what was emitted" >&2
echo "bench: load average before: $(cat /proc/loadavg)" >&2
node dist/bench/main.js
# The results are committed: keep them in the repository's markdown format (biome pads tables).
biome format --write bench/results >/dev/null 2>&1 || true
