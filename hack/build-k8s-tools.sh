#!/usr/bin/env bash
# Builds the real Kubernetes control-plane tools the e2e suite runs against, from source, through the
# Go module proxy only (no git clones, no prebuilt downloads):
#
#   kube-apiserver, kubectl  from k8s.io/kubernetes (a wrapper go.mod that requires k8s.io/kubernetes
#                            and replaces every k8s.io/* staging module with its matching v0.Y.Z tag)
#   etcd                     from go.etcd.io/etcd/server/v3 (package main at the module root)
#   helm                     from helm.sh/helm/v3/cmd/helm
#
# Binaries land in .cache/bin (git-ignored) next to a version stamp; a binary whose stamp matches is
# not rebuilt, so reruns are instant. GOPATH and GOCACHE live under .cache so rebuilds are incremental.
# Any failure stops the script with a message naming the tool.
#
# Override versions with KUBE_VERSION, ETCD_VERSION, HELM_VERSION; choose tools with the arguments
# (default: all), e.g. `bash hack/build-k8s-tools.sh kube-apiserver`.
set -euo pipefail

# Kubernetes v1.37.2 is the newest release whose go.mod ("go 1.26.0") the machine's Go 1.26 builds;
# v1.38 is still a pre-release.
KUBE_VERSION="${KUBE_VERSION:-v1.37.2}"
ETCD_VERSION="${ETCD_VERSION:-v3.6.16}"
HELM_VERSION="${HELM_VERSION:-v3.22.0}"

TOOL=build-k8s-tools
# shellcheck source=hack/go-tools-env.sh
source "$(dirname "${BASH_SOURCE[0]}")/go-tools-env.sh"
mkdir -p "${CACHE}/go-wrap"
require_go "Kubernetes ${KUBE_VERSION}"

# stamp_ok NAME VERSION: the binary exists, runs, and was built from VERSION by this script.
stamp_ok() {
  local name="$1" version="$2"
  [[ -x "${BIN}/${name}" && -f "${BIN}/.${name}.version" ]] || return 1
  [[ "$(cat "${BIN}/.${name}.version")" == "${version}" ]]
}

write_stamp() { printf '%s' "$2" >"${BIN}/.${1}.version"; }

# build_timed NAME CMD...: runs the build and logs how long it took.
build_timed() {
  local name="$1"
  shift
  local start=$SECONDS
  log "building ${name} ..."
  "$@" || die "building ${name} failed"
  log "built ${name} in $((SECONDS - start))s"
}

# --- kube-apiserver and kubectl --------------------------------------------------------------------
kube_wrapper() {
  local dir="${CACHE}/go-wrap/kubernetes-${KUBE_VERSION}"
  local minor="${KUBE_VERSION#v1.}"
  minor="${minor%%.*}"
  local staging_tag="v0.${KUBE_VERSION#v1.}"
  if [[ ! -f "${dir}/go.mod" || ! -f "${dir}/.complete" ]]; then
    rm -rf "${dir}"
    mkdir -p "${dir}"
    local upstream_mod
    upstream_mod="$(go mod download -json "k8s.io/kubernetes@${KUBE_VERSION}" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')"
    [[ -f "${upstream_mod}" ]] || die "could not download the go.mod of k8s.io/kubernetes@${KUBE_VERSION}"
    {
      echo "module mcpwarden.local/k8s-tools"
      echo
      echo "go 1.26.0"
      echo
      echo "godebug default=go1.26"
      echo
      echo "require k8s.io/kubernetes ${KUBE_VERSION}"
      echo
      echo "replace ("
      # Every staging module the upstream go.mod replaces with ./staging/src/... AND requires.
      local mod
      for mod in $(sed -n 's|^[[:space:]]*\(k8s.io/[A-Za-z0-9._-]*\) => ./staging/.*|\1|p' "${upstream_mod}"); do
        if grep -qE "^[[:space:]]*${mod//./\\.} v0\.0\.0" "${upstream_mod}"; then
          echo "	${mod} => ${mod} ${staging_tag}"
        fi
      done
      echo ")"
    } >"${dir}/go.mod"
    # A placeholder package so the wrapper module is a valid build root.
    printf 'package tools\n' >"${dir}/tools.go"
    (cd "${dir}" && go mod download k8s.io/kubernetes) || die "resolving k8s.io/kubernetes@${KUBE_VERSION} modules failed"
    touch "${dir}/.complete"
  fi
  echo "${dir}"
}

kube_ldflags() {
  local minor="${KUBE_VERSION#v1.}"
  minor="${minor%%.*}"
  # The build date is the release's commit time from the proxy, so rebuilds are reproducible.
  local date
  date="$(go mod download -json "k8s.io/kubernetes@${KUBE_VERSION}" | sed -n 's/^[[:space:]]*"Time": "\(.*\)",*$/\1/p' | head -1)"
  date="${date:-1970-01-01T00:00:00Z}"
  date="${date%%.*}"
  date="${date%Z}Z"
  local flags="-s -w"
  local pkg
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    flags+=" -X ${pkg}.gitVersion=${KUBE_VERSION}"
    flags+=" -X ${pkg}.gitMajor=1"
    flags+=" -X ${pkg}.gitMinor=${minor}"
    flags+=" -X ${pkg}.gitCommit=0000000000000000000000000000000000000000"
    flags+=" -X ${pkg}.gitTreeState=clean"
    flags+=" -X ${pkg}.buildDate=${date}"
  done
  echo "${flags}"
}

build_kube() {
  local name="$1"
  if stamp_ok "${name}" "${KUBE_VERSION}"; then
    log "${name} ${KUBE_VERSION} is cached"
    return
  fi
  local dir ldflags
  dir="$(kube_wrapper)"
  ldflags="$(kube_ldflags)"
  build_timed "${name} ${KUBE_VERSION}" \
    bash -c "cd '${dir}' && go build -trimpath -ldflags '${ldflags}' -o '${BIN}/${name}.tmp' 'k8s.io/kubernetes/cmd/${name}'"
  mv -f "${BIN}/${name}.tmp" "${BIN}/${name}"
  local reported
  if [[ "${name}" == "kubectl" ]]; then
    reported="$("${BIN}/${name}" version --client 2>&1 || true)"
  else
    reported="$("${BIN}/${name}" --version 2>&1 || true)"
  fi
  [[ "${reported}" == *"${KUBE_VERSION}"* ]] || die "${name} reports '${reported}', expected ${KUBE_VERSION}"
  write_stamp "${name}" "${KUBE_VERSION}"
}

# --- etcd ------------------------------------------------------------------------------------------
build_etcd() {
  if stamp_ok etcd "${ETCD_VERSION}"; then
    log "etcd ${ETCD_VERSION} is cached"
    return
  fi
  local dir="${CACHE}/go-wrap/etcd-${ETCD_VERSION}"
  mkdir -p "${dir}"
  cat >"${dir}/go.mod" <<EOF
module mcpwarden.local/etcd-tools

go 1.26.0

require go.etcd.io/etcd/server/v3 ${ETCD_VERSION}
EOF
  printf 'package tools\n' >"${dir}/tools.go"
  # etcd's own build stamps version.GitSHA; the version itself is a constant of go.etcd.io/etcd/api/v3.
  build_timed "etcd ${ETCD_VERSION}" \
    bash -c "cd '${dir}' && go build -trimpath -ldflags '-s -w -X go.etcd.io/etcd/api/v3/version.GitSHA=release' -o '${BIN}/etcd.tmp' go.etcd.io/etcd/server/v3"
  mv -f "${BIN}/etcd.tmp" "${BIN}/etcd"
  local reported
  reported="$("${BIN}/etcd" --version 2>&1 || true)"
  [[ "${reported}" == *"${ETCD_VERSION#v}"* ]] || die "etcd reports '${reported}', expected ${ETCD_VERSION}"
  write_stamp etcd "${ETCD_VERSION}"
}

# --- helm ------------------------------------------------------------------------------------------
build_helm() {
  if stamp_ok helm "${HELM_VERSION}"; then
    log "helm ${HELM_VERSION} is cached"
    return
  fi
  local dir="${CACHE}/go-wrap/helm-${HELM_VERSION}"
  mkdir -p "${dir}"
  cat >"${dir}/go.mod" <<EOF
module mcpwarden.local/helm-tools

go 1.26.0

require helm.sh/helm/v3 ${HELM_VERSION}
EOF
  printf 'package tools\n' >"${dir}/tools.go"
  local ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=${HELM_VERSION} -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
  build_timed "helm ${HELM_VERSION}" \
    bash -c "cd '${dir}' && go build -trimpath -ldflags '${ldflags}' -o '${BIN}/helm.tmp' helm.sh/helm/v3/cmd/helm"
  mv -f "${BIN}/helm.tmp" "${BIN}/helm"
  local reported
  reported="$("${BIN}/helm" version --short 2>&1 || true)"
  [[ "${reported}" == *"${HELM_VERSION}"* ]] || die "helm reports '${reported}', expected ${HELM_VERSION}"
  write_stamp helm "${HELM_VERSION}"
}

tools=("$@")
[[ ${#tools[@]} -gt 0 ]] || tools=(etcd kube-apiserver kubectl helm)
for tool in "${tools[@]}"; do
  case "${tool}" in
  kube-apiserver | kubectl) build_kube "${tool}" ;;
  etcd) build_etcd ;;
  helm) build_helm ;;
  *) die "unknown tool '${tool}' (known: etcd kube-apiserver kubectl helm)" ;;
  esac
done
log "tools ready in ${BIN}: $(cd "${BIN}" && ls -1 | tr '\n' ' ')"
