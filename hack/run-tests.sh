#!/usr/bin/env bash
# Runs every test suite (jest unit + integration + e2e, then MCP conformance) and ends with one
# plain line summing them all: `N passed, N failed`. Exits non-zero when anything failed.
set -uo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/node_modules/.bin:$PWD/.cache/bin:$PATH"
mkdir -p .cache/results
# Never read a previous run's results.
rm -f .cache/results/jest.json .cache/results/conformance.txt
passed=0
failed=0
status=0

# Static checks first: the type checker over everything (tests included) and the linter/formatter.
for check in "tsc -p tsconfig.json --noEmit" "biome check ."; do
  if $check; then
    passed=$((passed + 1)); echo "static: '$check' passed"
  else
    failed=$((failed + 1)); status=1; echo "static: '$check' FAILED"
  fi
done

NODE_OPTIONS=--experimental-vm-modules jest --ci --forceExit --json --outputFile=.cache/results/jest.json "$@"
jest_rc=$?
if [ -f .cache/results/jest.json ]; then
  read -r p f < <(node -e '
    const r = JSON.parse(require("fs").readFileSync(".cache/results/jest.json", "utf8"));
    // Suites that failed to load count as failures too.
    const broken = r.testResults.filter((s) => s.status === "failed" && s.assertionResults.length === 0).length;
    console.log(r.numPassedTests, r.numFailedTests + broken);')
  passed=$((passed + p)); failed=$((failed + f))
  echo "jest: $p passed, $f failed"
else
  failed=$((failed + 1))
fi
[ "$jest_rc" -eq 0 ] || status=1

if [ -f hack/conformance.sh ] && [ -z "${SKIP_CONFORMANCE:-}" ]; then
  bash hack/conformance.sh
  c_rc=$?
  if [ -f .cache/results/conformance.txt ]; then
    read -r p f < .cache/results/conformance.txt
    passed=$((passed + p)); failed=$((failed + f))
  else
    failed=$((failed + 1))
  fi
  [ "$c_rc" -eq 0 ] || status=1
fi

[ "$status" -eq 0 ] || [ "$failed" -gt 0 ] || failed=1
echo "$passed passed, $failed failed"
exit "$status"
