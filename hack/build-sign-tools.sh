#!/usr/bin/env bash
# Builds the tools that push and sign the container image (hack/sign-image.sh) and that the e2e
# suite verifies it with, from source through the Go module proxy only (no prebuilt downloads):
#
#   cosign  github.com/sigstore/cosign/v3/cmd/cosign (Sigstore): signs the index and every
#           platform image, attests the SBOMs, verifies both
#   crane   github.com/google/go-containerregistry/cmd/crane: pushes the OCI layout; its
#           `crane registry serve` is the throwaway registry of the signing e2e test
#
# Binaries land in .cache/bin (git-ignored) next to a version stamp; a binary whose stamp matches is
# not rebuilt, so reruns are instant. GOPATH and GOCACHE are the ones hack/build-k8s-tools.sh and
# hack/build-image.sh use, so shared dependencies are compiled once. cosign takes a few minutes
# the first time (3.7 minutes on two cores with -p=1 and the modules already downloaded); crane
# seconds.
#
# Override versions with COSIGN_VERSION, CRANE_VERSION; choose tools with the arguments (default:
# both), e.g. `bash hack/build-sign-tools.sh cosign`.
set -euo pipefail

# cosign v3.1.3 is the newest release, and its go.mod ("go 1.26.0") builds with the machine's Go
# 1.26. crane matches the go-containerregistry that hack/image builds with.
COSIGN_VERSION="${COSIGN_VERSION:-v3.1.3}"
CRANE_VERSION="${CRANE_VERSION:-v0.22.1}"

TOOL=build-sign-tools
# shellcheck source=hack/go-tools-env.sh
source "$(dirname "${BASH_SOURCE[0]}")/go-tools-env.sh"
require_go "cosign ${COSIGN_VERSION}"

# One build at a time: concurrent runs (make sign while the e2e suite starts) share the staging dir.
exec 9>"${CACHE}/sign-tools.lock"
flock 9

# install NAME VERSION PACKAGE LDFLAGS VERSION_COMMAND...: `go install PACKAGE@VERSION` into
# .cache/bin/NAME unless its stamp says VERSION; checks that the binary reports VERSION.
install() {
  local name="$1" version="$2" pkg="$3" ldflags="$4"
  shift 4
  if [[ -x "${BIN}/${name}" && "$(cat "${BIN}/.${name}.version" 2>/dev/null)" == "${version}" ]]; then
    log "${name} ${version} is cached"
    return
  fi
  local stage="${CACHE}/sign-tools-${name}" start=$SECONDS
  rm -rf "${stage}"
  log "building ${name} ${version} ..."
  GOBIN="${stage}" go install -trimpath -ldflags "${ldflags}" "${pkg}@${version}" || die "building ${name} ${version} failed"
  local reported
  reported="$("${stage}/${name}" "$@" 2>&1 || true)"
  [[ "${reported}" == *"${version}"* ]] || die "${name} reports '${reported}', expected ${version}"
  mv -f "${stage}/${name}" "${BIN}/${name}"
  rm -rf "${stage}"
  printf '%s' "${version}" >"${BIN}/.${name}.version"
  log "built ${name} ${version} in $((SECONDS - start))s"
}

tools=("$@")
[[ ${#tools[@]} -gt 0 ]] || tools=(cosign crane)
for tool in "${tools[@]}"; do
  case "${tool}" in
  cosign)
    install cosign "${COSIGN_VERSION}" github.com/sigstore/cosign/v3/cmd/cosign \
      "-s -w -X sigs.k8s.io/release-utils/version.gitVersion=${COSIGN_VERSION} -X sigs.k8s.io/release-utils/version.gitTreeState=clean" \
      version
    ;;
  crane)
    install crane "${CRANE_VERSION}" github.com/google/go-containerregistry/cmd/crane \
      "-s -w -X github.com/google/go-containerregistry/cmd/crane/cmd.Version=${CRANE_VERSION}" \
      version
    ;;
  *) die "unknown tool '${tool}' (known: cosign crane)" ;;
  esac
done
