# Sourced by the scripts that build Go tools from the module proxy into .cache/bin
# (hack/build-k8s-tools.sh, hack/build-sign-tools.sh). The caller sets TOOL (its name, for
# messages); this defines ROOT, CACHE, BIN, die and log, checks that Go >= 1.26 is on PATH
# (`require_go WHAT`), and exports one Go environment under .cache, shared by every such build so
# common dependencies compile once.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${ROOT}/.cache"
BIN="${CACHE}/bin"
mkdir -p "${BIN}"

die() {
  echo "${TOOL}: ERROR: $*" >&2
  exit 1
}
log() { echo "${TOOL}: $*" >&2; }

# require_go WHAT: Go >= 1.26 is on PATH, else stop naming WHAT needs it.
require_go() {
  command -v go >/dev/null 2>&1 || die "go is not on PATH (Go >= 1.26 is required)"
  local go_version
  go_version="$(go env GOVERSION)"
  if [[ ! "${go_version}" =~ ^go1\.([0-9]+) ]] || ((BASH_REMATCH[1] < 26)); then
    die "Go >= 1.26 is required to build $1, found ${go_version}"
  fi
}

export GOPATH="${CACHE}/gopath"
export GOCACHE="${CACHE}/go-build"
export GOMODCACHE="${GOPATH}/pkg/mod"
export GOFLAGS="-mod=mod -buildvcs=false"
export CGO_ENABLED=0
export GOTOOLCHAIN=local
