#!/usr/bin/env bash
# MCP conformance, direct vs through mcp-warden (issue 6). `make conformance` (after `make build`).
#
#   1. starts our own conformance upstream (test/conformance/server.ts) on loopback;
#   2. runs the pinned @modelcontextprotocol/conformance server suite against it directly, per
#      spec version;
#   3. starts the dev issuer, `mcp-warden gateway` (the built CLI) with test/conformance/policy.yaml,
#      masking that matches nothing and recording on, and a forwarder that adds a bearer token
#      (the suite's client sends none); runs the same suite through the forwarder;
#   4. prints both summaries side by side, per spec version and scenario; every check whose
#      status differs counts as a failure;
#   5. runs `mcp-warden recordings verify` on the gateway's recordings and checks they hold every
#      scenario's calls.
# Writes `.cache/results/conformance.txt` = `P F` (checks passed / failed, both runs) and exits
# non-zero on any failure or difference. Everything listens on 127.0.0.1; every process started
# here is stopped on exit; each step is bounded in time.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export PATH="$ROOT/node_modules/.bin:$PATH"

CONFORMANCE_PIN=0.1.16
SPEC_VERSIONS=(2025-06-18 2025-11-25)
SUITE_TIMEOUT=${CONFORMANCE_SUITE_TIMEOUT:-300}   # seconds per suite run
READY_TIMEOUT=${CONFORMANCE_READY_TIMEOUT:-30}    # seconds for a process to start listening
AUDIENCE=api://mcp-warden-conformance
GROUP=c0a1f0e5-0000-4000-8000-00000000c0f0        # the test identity's group (object id)
CLI=(node "$ROOT/dist/cmd/mcp-warden.js")
SUITE=(node "$ROOT/node_modules/@modelcontextprotocol/conformance/dist/index.js")

RESULTS=$ROOT/.cache/results
WORK=$ROOT/.cache/conformance
OUT=$RESULTS/conformance.txt
mkdir -p "$RESULTS"
rm -rf "$WORK" "$OUT"
mkdir -p "$WORK/runs" "$WORK/logs" "$WORK/recordings"
chmod 700 "$WORK"

log() { printf 'conformance: %s\n' "$*"; }

# Fail closed: until the report writes the real counts, the result is "one failure".
echo "0 1" >"$OUT"

pids=()
stop_pid() {
  local pid=$1 i
  kill -TERM "$pid" 2>/dev/null || return 0
  for ((i = 0; i < 50; i++)); do
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null; return 0; }
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
}
cleanup() {
  local pid
  for pid in "${pids[@]}"; do stop_pid "$pid"; done
  pids=()
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# wait_ready FILE PID NAME: the process writes its URL to FILE once it listens.
wait_ready() {
  local file=$1 pid=$2 name=$3 i
  for ((i = 0; i < READY_TIMEOUT * 10; i++)); do
    [ -s "$file" ] && return 0
    kill -0 "$pid" 2>/dev/null || { log "$name exited before it was ready:"; tail -n 20 "$WORK/logs/$name.log"; return 1; }
    sleep 0.1
  done
  log "$name not ready after ${READY_TIMEOUT}s"
  tail -n 20 "$WORK/logs/$name.log"
  return 1
}

# wait_http URL PID NAME: until URL answers 2xx.
wait_http() {
  local url=$1 pid=$2 name=$3 i
  for ((i = 0; i < READY_TIMEOUT * 5; i++)); do
    node -e 'fetch(process.argv[1],{signal:AbortSignal.timeout(1000)}).then(r=>process.exit(r.ok?0:1),()=>process.exit(1))' "$url" && return 0
    kill -0 "$pid" 2>/dev/null || { log "$name exited before it was ready:"; tail -n 20 "$WORK/logs/$name.log"; return 1; }
    sleep 0.1
  done
  log "$name not ready at $url after ${READY_TIMEOUT}s"
  tail -n 20 "$WORK/logs/$name.log"
  return 1
}

free_port() {
  node -e 'const s=require("node:net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'
}

# --- preconditions ---------------------------------------------------------------------------
node_major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$node_major" != 24 ]; then
  log "needs Node 24 from node_modules/.bin (got $(node --version)); run 'make install'"
  exit 1
fi
installed=$(node -p 'require("./node_modules/@modelcontextprotocol/conformance/package.json").version' 2>/dev/null || echo none)
if [ "$installed" != "$CONFORMANCE_PIN" ]; then
  log "@modelcontextprotocol/conformance $CONFORMANCE_PIN is pinned, found $installed; run 'make install'"
  exit 1
fi
"${SUITE[@]}" list --server >"$WORK/scenarios.txt" || { log "cannot list the suite's scenarios"; exit 1; }

# run_suite NAME URL VERSION: one full server-suite run (pending scenarios included).
run_suite() {
  local name=$1 url=$2 version=$3
  log "suite $version -> $name ($url)"
  (cd "$WORK" && timeout "$SUITE_TIMEOUT" "${SUITE[@]}" server --url "$url" --suite all \
    --spec-version "$version" -o "$WORK/runs/$name-$version") >"$WORK/logs/suite-$name-$version.log" 2>&1
  local rc=$?
  [ "$rc" -eq 124 ] && log "suite $version via $name timed out after ${SUITE_TIMEOUT}s"
  grep -E '^Total:' "$WORK/logs/suite-$name-$version.log" | sed "s/^/  $name $version: /"
  return 0
}

# --- 1. upstream ------------------------------------------------------------------------------
node test/conformance/server.ts --port 0 --ready-file "$WORK/upstream.url" >"$WORK/logs/upstream.log" 2>&1 &
pids+=($!)
wait_ready "$WORK/upstream.url" "$!" upstream || exit 1
UPSTREAM=$(cat "$WORK/upstream.url")
log "upstream at $UPSTREAM"

# --- 2. direct runs ---------------------------------------------------------------------------
for v in "${SPEC_VERSIONS[@]}"; do run_suite direct "$UPSTREAM" "$v"; done

# --- 3. through the gateway -------------------------------------------------------------------
gateway_ok=0
recordings_ok=0
if [ ! -f dist/cmd/gateway.js ] || [ ! -f dist/cmd/dev.js ]; then
  log "dist/cmd/gateway.js or dist/cmd/dev.js is missing: no gateway run (run 'make build'; the gateway may not be built yet)"
else
  gateway_ok=1
  # Dev issuer (Entra-shaped OIDC on loopback) and a token for the test identity.
  issuer_port=$(free_port)
  "${CLI[@]}" dev issuer --listen "127.0.0.1:$issuer_port" --state "$WORK/issuer-state.json" \
    >"$WORK/logs/issuer.log" 2>&1 &
  pids+=($!)
  issuer_pid=$!
  wait_ready "$WORK/issuer-state.json" "$issuer_pid" issuer || gateway_ok=0
  if [ "$gateway_ok" = 1 ]; then
    ISSUER=$(node -p 'require(process.argv[1]).v2Issuer' "$WORK/issuer-state.json")
    wait_http "$ISSUER/.well-known/openid-configuration" "$issuer_pid" issuer || gateway_ok=0
  fi
  if [ "$gateway_ok" = 1 ]; then
    (umask 077 && "${CLI[@]}" dev token --state "$WORK/issuer-state.json" --aud "$AUDIENCE" \
      --groups "$GROUP" >"$WORK/token" 2>"$WORK/logs/token.log") || {
      log "dev token failed:"; cat "$WORK/logs/token.log"; gateway_ok=0
    }
  fi
  if [ "$gateway_ok" = 1 ]; then
    ISSUER=$ISSUER AUDIENCE=$AUDIENCE GROUP=$GROUP node -e '
      const fs = require("node:fs");
      const text = fs.readFileSync(process.argv[1], "utf8").replace(/__([A-Z]+)__/g, (_, k) => {
        if (process.env[k] === undefined) throw new Error(`policy template: no value for ${k}`);
        return process.env[k];
      });
      fs.writeFileSync(process.argv[2], text);' test/conformance/policy.yaml "$WORK/policy.yaml" || gateway_ok=0
  fi
  if [ "$gateway_ok" = 1 ]; then
    gw_port=$(free_port)
    admin_port=$(free_port)
    "${CLI[@]}" gateway --upstream "$UPSTREAM" --policy "$WORK/policy.yaml" \
      --listen "127.0.0.1:$gw_port" --admin-listen "127.0.0.1:$admin_port" \
      --recordings "$WORK/recordings" \
      --allowed-hosts "localhost,127.0.0.1,[::1]" \
      >"$WORK/logs/gateway.log" 2>&1 &
    pids+=($!)
    gateway_pid=$!
    wait_http "http://127.0.0.1:$admin_port/readyz" "$gateway_pid" gateway || gateway_ok=0
  fi
  if [ "$gateway_ok" = 1 ]; then
    node test/conformance/forwarder.ts --target "http://127.0.0.1:$gw_port" --token-file "$WORK/token" \
      --ready-file "$WORK/forwarder.url" >"$WORK/logs/forwarder.log" 2>&1 &
    pids+=($!)
    wait_ready "$WORK/forwarder.url" "$!" forwarder || gateway_ok=0
  fi
  if [ "$gateway_ok" = 1 ]; then
    FORWARDER=$(cat "$WORK/forwarder.url")
    log "gateway at http://127.0.0.1:$gw_port (forwarder $FORWARDER)"
    for v in "${SPEC_VERSIONS[@]}"; do run_suite gateway "$FORWARDER/mcp" "$v"; done
    # Stop the gateway so it closes and flushes its recordings, then check them.
    stop_pid "$gateway_pid"
    log "recordings verify"
    if "${CLI[@]}" recordings verify "$WORK/recordings" >"$WORK/logs/recordings-verify.log" 2>&1; then
      tail -n 3 "$WORK/logs/recordings-verify.log" | sed 's/^/  /'
      ran=$(cd "$WORK/runs" && ls -d gateway-*/server-* 2>/dev/null | sed -E 's#^gateway-[^/]+/server-##; s#-[0-9]{4}-[0-9]{2}-[0-9]{2}T.*$##' | sort -u | paste -sd, -)
      node test/conformance/recordings-check.ts --dir "$WORK/recordings" --scenarios "$ran" \
        >"$WORK/logs/recordings-check.log" 2>&1 && recordings_ok=1
      cat "$WORK/logs/recordings-check.log"
    else
      log "recordings verify failed:"
      tail -n 20 "$WORK/logs/recordings-verify.log"
    fi
  else
    log "the gateway run could not start (logs in $WORK/logs)"
  fi
fi

# --- 4. report --------------------------------------------------------------------------------
versions_csv=$(IFS=,; echo "${SPEC_VERSIONS[*]}")
node test/conformance/report.ts --results "$WORK/runs" --versions "$versions_csv" \
  --scenarios "$WORK/scenarios.txt" --out "$OUT"
report_rc=$?
read -r passed failed <"$OUT"
# The recordings count as one more check: verified and complete, or failed.
if [ "$recordings_ok" = 1 ]; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
echo "$passed $failed" >"$OUT"
log "recordings: $([ "$recordings_ok" = 1 ] && echo 'verified, every scenario recorded' || echo FAILED)"
log "result: $passed passed, $failed failed (details and logs in .cache/conformance)"
[ "$report_rc" -eq 0 ] && [ "$failed" -eq 0 ]
