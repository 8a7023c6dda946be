#!/usr/bin/env bash
# MCP conformance, direct vs through mcp-warden (issue 6). `make conformance` (after `make build`).
#
#   1. starts our own conformance upstreams on loopback: test/conformance/server.ts (2025
#      revisions, SDK v1, sessions) and test/conformance/server-2026.ts (2026-07-28, SDK v2);
#   2. runs the pinned @modelcontextprotocol/conformance server suite against it directly, per
#      spec version (0.1.16 for 2025-06-18 and 2025-11-25; 0.2.0-alpha.12, installed as
#      mcp-conformance-2026, for every revision it has server scenarios for, 2026-07-28 against
#      test/conformance/server-2026.ts);
#   3. starts the dev issuer, `mcp-warden gateway` (the built CLI) with test/conformance/policy.yaml,
#      masking that matches nothing and recording on, and a forwarder that adds a bearer token
#      (the suite's client sends none); runs the same suite through the forwarder;
#   4. prints both summaries side by side, per spec version and scenario; every check whose
#      status differs counts as a failure;
#   5. probes each gateway directly (no token) to prove it refuses a rebound Host / foreign Origin
#      itself; runs `mcp-warden recordings verify` on the gateways' recordings and checks they
#      hold every scenario's calls and no masked payload.
# Writes `.cache/results/conformance.txt` = `P F` (checks passed / failed, both runs) and exits
# non-zero on any failure or difference. Everything listens on 127.0.0.1; every process started
# here is stopped on exit; each step is bounded in time.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export PATH="$ROOT/node_modules/.bin:$PATH"

CONFORMANCE_PIN=0.1.16               # suite for the 2025 revisions
CONFORMANCE_2026_PIN=0.2.0-alpha.12  # the only release with 2026-07-28 (and 2025-03-26) server scenarios
# Runs, each `VERSION` (suite 0.1.16) or `VERSION@alpha` (suite 0.2.0-alpha.12). The alpha also
# runs 2025-06-18/2025-11-25: it has more checks per scenario than 0.1.16, so more to compare.
RUNS=(2025-06-18 2025-11-25 2025-03-26@alpha 2025-06-18@alpha 2025-11-25@alpha 2026-07-28@alpha)
SUITE_TIMEOUT=${CONFORMANCE_SUITE_TIMEOUT:-300}   # seconds per suite run
READY_TIMEOUT=${CONFORMANCE_READY_TIMEOUT:-30}    # seconds for a process to start listening
# The gateway's DNS-rebinding protection (set CONFORMANCE_ALLOWED_HOSTS= to see the run fail).
ALLOWED_HOSTS=${CONFORMANCE_ALLOWED_HOSTS-localhost,127.0.0.1,[::1]}
AUDIENCE=api://mcp-warden-conformance
GROUP=c0a1f0e5-0000-4000-8000-00000000c0f0        # the test identity's group (object id)
CLI=(node "$ROOT/dist/cmd/mcp-warden.js")
SUITE_2025=(node "$ROOT/node_modules/@modelcontextprotocol/conformance/dist/index.js")
SUITE_2026=(node "$ROOT/node_modules/mcp-conformance-2026/dist/index.js")

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
check_pin() {
  local dir=$1 want=$2 got
  got=$(node -p 'require(process.argv[1]).version' "$ROOT/node_modules/$dir/package.json" 2>/dev/null || echo none)
  [ "$got" = "$want" ] && return 0
  log "node_modules/$dir: $want is pinned, found $got; run 'make install'"
  return 1
}
check_pin @modelcontextprotocol/conformance "$CONFORMANCE_PIN" || exit 1
check_pin mcp-conformance-2026 "$CONFORMANCE_2026_PIN" || exit 1
"${SUITE_2025[@]}" list --server >"$WORK/scenarios-2025.txt" || { log "cannot list the suite's scenarios"; exit 1; }
"${SUITE_2026[@]}" list --server >"$WORK/scenarios-2026.txt" || { log "cannot list the suite's scenarios"; exit 1; }

# run_suite NAME URL RUN: one full server-suite run (pending scenarios included); RUN is a label
# from RUNS (0.1.16 has no server scenarios for 2025-03-26 and 2026-07-28: those are @alpha).
run_suite() {
  local name=$1 url=$2 run=$3 suite version=${3%@*}
  if [ "$run" != "$version" ]; then suite=("${SUITE_2026[@]}"); else suite=("${SUITE_2025[@]}"); fi
  log "suite $run -> $name ($url)"
  (cd "$WORK" && timeout "$SUITE_TIMEOUT" "${suite[@]}" server --url "$url" --suite all \
    --spec-version "$version" -o "$WORK/runs/$name-$run") >"$WORK/logs/suite-$name-$run.log" 2>&1
  local rc=$?
  [ "$rc" -eq 124 ] && log "suite $run via $name timed out after ${SUITE_TIMEOUT}s"
  grep -E '^Total:' "$WORK/logs/suite-$name-$run.log" | sed "s/^/  $name $run: /"
  return 0
}

# upstream_for RUN: the upstream serving that revision (2026-07-28 has its own, on SDK v2).
upstream_for() { if [ "${1%@*}" = 2026-07-28 ]; then echo "$UPSTREAM_2026"; else echo "$UPSTREAM"; fi; }

# --- 1. upstreams -----------------------------------------------------------------------------
node test/conformance/server.ts --port 0 --ready-file "$WORK/upstream.url" >"$WORK/logs/upstream.log" 2>&1 &
pids+=($!)
wait_ready "$WORK/upstream.url" "$!" upstream || exit 1
UPSTREAM=$(cat "$WORK/upstream.url")
node test/conformance/server-2026.ts --port 0 --ready-file "$WORK/upstream-2026.url" \
  >"$WORK/logs/upstream-2026.log" 2>&1 &
pids+=($!)
wait_ready "$WORK/upstream-2026.url" "$!" upstream-2026 || exit 1
UPSTREAM_2026=$(cat "$WORK/upstream-2026.url")
log "upstreams at $UPSTREAM (2025 revisions) and $UPSTREAM_2026 (2026-07-28)"

# --- 2. direct runs ---------------------------------------------------------------------------
for r in "${RUNS[@]}"; do run_suite direct "$(upstream_for "$r")" "$r"; done

# --- 3. through the gateway -------------------------------------------------------------------
gateway_ok=0
recordings_ok=0
own_rebinding=0
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
    # The state file may still be being written: read it until it parses (bounded).
    ISSUER=
    for ((i = 0; i < 50; i++)); do
      ISSUER=$(node -p 'JSON.parse(require("node:fs").readFileSync(process.argv[1], "utf8")).v2Issuer' \
        "$WORK/issuer-state.json" 2>/dev/null) && [ -n "$ISSUER" ] && break
      sleep 0.1
    done
    wait_http "$ISSUER/.well-known/openid-configuration" "$issuer_pid" issuer || gateway_ok=0
  fi
  if [ "$gateway_ok" = 1 ]; then
    (umask 077 && "${CLI[@]}" dev token --issuer-state "$WORK/issuer-state.json" --aud "$AUDIENCE" \
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
  # start_gateway NAME UPSTREAM: `mcp-warden gateway` in front of UPSTREAM, a forwarder in front
  # of it; sets FORWARDER_<NAME> (URL) and GATEWAY_PID_<NAME>. Recordings go to recordings/NAME.
  start_gateway() {
    local name=$1 upstream=$2 gw_port admin_port fw_port origins pid
    gw_port=$(free_port)
    admin_port=$(free_port)
    fw_port=$(free_port)
    # Clients reach the gateway through the forwarder, so their Origin names the forwarder.
    origins="http://127.0.0.1:$fw_port,http://localhost:$fw_port,http://[::1]:$fw_port"
    mkdir -p "$WORK/recordings/$name"
    "${CLI[@]}" gateway --upstream "$upstream" --policy "$WORK/policy.yaml" \
      --listen "127.0.0.1:$gw_port" --admin-listen "127.0.0.1:$admin_port" \
      --recordings "$WORK/recordings/$name" \
      ${ALLOWED_HOSTS:+--allowed-hosts "$ALLOWED_HOSTS" --allowed-origins "$origins"} \
      >"$WORK/logs/gateway-$name.log" 2>&1 &
    pid=$!
    pids+=("$pid")
    printf -v "GATEWAY_PID_$name" '%s' "$pid"
    wait_http "http://127.0.0.1:$admin_port/readyz" "$pid" "gateway-$name" || return 1
    node test/conformance/forwarder.ts --target "http://127.0.0.1:$gw_port" --token-file "$WORK/token" \
      --port "$fw_port" --ready-file "$WORK/forwarder-$name.url" >"$WORK/logs/forwarder-$name.log" 2>&1 &
    pids+=($!)
    wait_ready "$WORK/forwarder-$name.url" "$!" "forwarder-$name" || return 1
    printf -v "FORWARDER_$name" '%s' "$(cat "$WORK/forwarder-$name.url")"
    printf -v "GATEWAY_PORT_$name" '%s' "$gw_port"
    log "gateway $name at http://127.0.0.1:$gw_port -> $upstream (forwarder $(cat "$WORK/forwarder-$name.url"))"
  }
  if [ "$gateway_ok" = 1 ]; then
    # Free ports are picked before the gateway binds them: on a busy machine another process may
    # take one in between, so each gateway gets a second attempt on fresh ports.
    start_gateway v2025 "$UPSTREAM" || start_gateway v2025 "$UPSTREAM" || gateway_ok=0
    [ "$gateway_ok" = 1 ] && { start_gateway v2026 "$UPSTREAM_2026" || start_gateway v2026 "$UPSTREAM_2026" || gateway_ok=0; }
  fi
  if [ "$gateway_ok" = 1 ]; then
    for r in "${RUNS[@]}"; do
      if [ "${r%@*}" = 2026-07-28 ]; then run_suite gateway "$FORWARDER_v2026/mcp" "$r"
      else run_suite gateway "$FORWARDER_v2025/mcp" "$r"; fi
    done
    # DNS rebinding is the gateway's own check, not the upstream's seen through it: straight to
    # the gateway, without a token, a rebound Host and a foreign Origin must each get 403 (these
    # checks run first) while loopback Host and Origin get 401 (authentication), so the 403s
    # cannot have come from upstream.
    own_rebinding=1
    for name in v2025 v2026; do
      port_var="GATEWAY_PORT_$name"
      fw_var="FORWARDER_$name"
      codes=$(node -e '
        const http = require("node:http");
        const [port, forwarder] = [Number(process.argv[1]), new URL(process.argv[2])];
        const probe = (host, origin) => new Promise((resolve) => {
          const req = http.request({ host: "127.0.0.1", port, path: "/mcp", method: "POST",
            headers: { host, origin, "content-type": "application/json", accept: "application/json, text/event-stream" },
            timeout: 5000 }, (res) => { res.resume(); resolve(res.statusCode); });
          req.on("error", () => resolve(0));
          req.end(JSON.stringify({ jsonrpc: "2.0", id: 1, method: "ping" }));
        });
        Promise.all([
          probe("evil.example.com", "http://evil.example.com"),
          probe(forwarder.host, "http://evil.example.com"),
          probe(forwarder.host, forwarder.origin),
        ]).then((c) => console.log(c.join(" ")));
      ' "${!port_var}" "${!fw_var}")
      if [ "$codes" = "403 403 401" ]; then
        log "gateway $name rejects a rebound Host and a foreign Origin itself (403 before authentication; loopback: 401)"
      else
        own_rebinding=0
        log "gateway $name: rebound Host / foreign Origin / loopback without a token answered '$codes', expected '403 403 401'"
      fi
    done
    # Stop the gateways so they close and flush their recordings, then check them.
    stop_pid "$GATEWAY_PID_v2025"
    stop_pid "$GATEWAY_PID_v2026"
    log "recordings verify"
    verified=1
    for name in v2025 v2026; do
      if "${CLI[@]}" recordings verify "$WORK/recordings/$name" >"$WORK/logs/recordings-verify-$name.log" 2>&1; then
        tail -n 2 "$WORK/logs/recordings-verify-$name.log" | sed "s/^/  $name: /"
      else
        verified=0
        log "recordings verify $name failed:"
        tail -n 20 "$WORK/logs/recordings-verify-$name.log"
      fi
    done
    ran=$(cd "$WORK/runs" && ls -d gateway-*/server-* 2>/dev/null | sed -E 's#^gateway-[^/]+/server-##; s#-[0-9]{4}-[0-9]{2}-[0-9]{2}T.*$##' | sort -u | paste -sd, -)
    node test/conformance/recordings-check.ts --dir "$WORK/recordings" --scenarios "$ran" \
      >"$WORK/logs/recordings-check.log" 2>&1 && [ "$verified" = 1 ] && recordings_ok=1
    cat "$WORK/logs/recordings-check.log"
  else
    log "the gateway run could not start (logs in $WORK/logs)"
  fi
fi

# --- 4. report --------------------------------------------------------------------------------
listings=()
for r in "${RUNS[@]}"; do
  if [ "$r" != "${r%@*}" ]; then listings+=(--listing "$r=$WORK/scenarios-2026.txt")
  else listings+=(--listing "$r=$WORK/scenarios-2025.txt"); fi
done
node test/conformance/report.ts --results "$WORK/runs" "${listings[@]}" --out "$OUT"
report_rc=$?
read -r passed failed <"$OUT"
# Two more checks: the recordings (verified and complete), and the gateway's own DNS-rebinding check.
if [ "$recordings_ok" = 1 ]; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
if [ "$own_rebinding" = 1 ]; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
echo "$passed $failed" >"$OUT"
log "recordings: $([ "$recordings_ok" = 1 ] && echo 'verified, every scenario recorded' || echo FAILED)"
log "result: $passed passed, $failed failed (details and logs in .cache/conformance)"
[ "$report_rc" -eq 0 ] && [ "$failed" -eq 0 ]
