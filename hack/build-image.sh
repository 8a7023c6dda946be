#!/usr/bin/env bash
# Builds the mcp-warden container image (webhook and sidecar are the same image) for linux/amd64
# and linux/arm64 without a container engine, from the npm registry and Debian's packages:
#
#   layer 1  Debian's libc6, libgcc-s1 and libstdc++6 shared libraries for the platform (what the
#            node binary links: its NEEDED entries and program interpreter are checked against
#            the layer), their copyright files and dpkg status entries (so image scanners such as
#            Trivy, Grype and Syft see the packages and their versions), /etc/passwd and
#            /etc/group with the `nonroot` user 65532, /tmp, /home/nonroot. No shell, no package
#            manager. The .deb files come from the machine's apt sources through a private apt
#            state in .cache/apt-<arch> (signatures checked by apt; the system's apt state is not
#            touched, root is not needed).
#   layer 2  /usr/local/bin/node: the Node.js binary of the npm package node-linux-<x64|arm64> at
#            the version of the pinned dev dependency `node`, its sha512 checked against
#            hack/image/node-dist.json, and its licence.
#   layer 3  /app, the same for every platform: the compiled JavaScript (tsc, no source maps or
#            declarations), package.json, LICENSE, and the production dependencies (`npm ci
#            --omit=dev --ignore-scripts`; the build fails if one carries a native addon).
#
# Entrypoint `node /app/dist/cmd/mcp-warden.js`, user 65532:65532; the chart's webhook and the
# injected sidecar pass only `args`. hack/image (go-containerregistry) writes the layers and the
# image: an OCI image layout holding the multi-platform index in out/image/oci, and one `docker
# save` archive per platform, out/image/mcp-warden-<tag>-linux-<arch>.tar. Every timestamp is
# SOURCE_DATE_EPOCH (default: the last commit's time), so the same inputs give the same digests.
# Syft (built at a pinned version) scans each platform's image into an SPDX SBOM, written as
# out/image/sbom-linux-<arch>.spdx.json and attached inside the index as a BuildKit-style SBOM
# attestation (see hack/image/main.go); creation time and namespace are made reproducible too.
#
# Load or push it with any of:
#   crane push out/image/oci registry.example/mcp-warden:0.1.0        (both platforms)
#   skopeo copy --all oci:out/image/oci docker://registry.example/mcp-warden:0.1.0
#   docker load -i out/image/mcp-warden-0.1.0-linux-amd64.tar          (one platform)
#   podman load -i out/image/mcp-warden-0.1.0-linux-arm64.tar
#
# Environment: IMAGE_REPOSITORY (default ghcr.io/mcp-warden/mcp-warden), IMAGE_TAG (default the
# package version), IMAGE_PLATFORMS (default "amd64 arm64"), SOURCE_DATE_EPOCH, IMAGE_OUT
# (default out/image).
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

for tool in apt-get dpkg-deb readelf go; do
  command -v "${tool}" >/dev/null 2>&1 || die "${tool} not found: the image is built from Debian's packages (apt-get, dpkg-deb), readelf (binutils) checks the node binaries, Go builds hack/image"
done
[[ -x node_modules/.bin/node ]] || die "node_modules is missing: run npm ci first"

read -r -a PLATFORMS <<<"${IMAGE_PLATFORMS:-amd64 arm64}"
VERSION="$(node -p 'require("./package.json").version')"
REPOSITORY="${IMAGE_REPOSITORY:-ghcr.io/mcp-warden/mcp-warden}"
TAG="${IMAGE_TAG:-${VERSION}}"
EPOCH="${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}"
REVISION="$(git rev-parse HEAD 2>/dev/null || echo unknown)"
NODE_VERSION="$(node -p 'require("./node_modules/node/package.json").version')"
DEB_PACKAGES=(libc6 libgcc-s1 libstdc++6)

# Per platform: npm's name for it, Debian's multiarch triplet.
npm_arch() { case "$1" in amd64) echo x64 ;; arm64) echo arm64 ;; *) die "unsupported platform $1" ;; esac; }
triplet() { case "$1" in amd64) echo x86_64-linux-gnu ;; arm64) echo aarch64-linux-gnu ;; esac; }

# --- the image builder (hack/image, go-containerregistry) ---------------------------------------
export GOPATH="${CACHE}/gopath" GOCACHE="${CACHE}/go-build" GOFLAGS="-mod=mod -buildvcs=false" CGO_ENABLED=0 GOTOOLCHAIN=local
export GOMODCACHE="${GOPATH}/pkg/mod"
mkdir -p "${BIN}"
tool_hash="$(cat hack/image/main.go hack/image/go.mod hack/image/go.sum | sha256sum | cut -c1-16)"
if [[ ! -x "${BIN}/imagebuild" || "$(cat "${BIN}/.imagebuild.version" 2>/dev/null)" != "${tool_hash}" ]]; then
  log "building hack/image ..."
  (cd hack/image && go build -trimpath -ldflags '-s -w' -o "${BIN}/imagebuild.tmp" .) || die "building hack/image failed"
  mv -f "${BIN}/imagebuild.tmp" "${BIN}/imagebuild"
  printf '%s' "${tool_hash}" >"${BIN}/.imagebuild.version"
fi
# Syft writes each platform's SBOM (SPDX); built from the Go module proxy at a pinned version.
SYFT_VERSION=v1.57.1
if [[ ! -x "${BIN}/syft" || "$(cat "${BIN}/.syft.version" 2>/dev/null)" != "${SYFT_VERSION}" ]]; then
  log "building syft ${SYFT_VERSION} (first time only, a few minutes) ..."
  GOBIN="${STAGE}-syft" go install -trimpath \
    -ldflags "-s -w -X main.version=${SYFT_VERSION#v}" "github.com/anchore/syft/cmd/syft@${SYFT_VERSION}" ||
    die "building syft failed"
  mv -f "${STAGE}-syft/syft" "${BIN}/syft"
  rm -rf "${STAGE}-syft"
  printf '%s' "${SYFT_VERSION}" >"${BIN}/.syft.version"
fi

rm -rf "${STAGE}"
mkdir -p "${STAGE}/work"

# --- Debian packages through a private apt state -------------------------------------------------
# fetch_deb ARCH DIR PACKAGE: downloads PACKAGE for ARCH into DIR (kept between builds and reused
# while apt's checksum still matches); prints the file's path.
fetch_deb() {
  local arch="$1" dir="$2" pkg="$3" state="${CACHE}/apt-$1"
  mkdir -p "${state}/lists/partial" "${state}/cache/archives/partial" "${dir}"
  local opts=(-o "Dir::State::Lists=${state}/lists" -o "Dir::Cache=${state}/cache" -o "Dir::State::Status=/dev/null"
    -o "APT::Architecture=${arch}" -o "APT::Architectures::=${arch}" -o "Debug::NoLocking=1" -qq)
  # Package lists younger than a day are reused.
  if [[ -z "$(find "${state}/lists" -maxdepth 1 -name '*_Packages*' -mmin -1440 2>/dev/null | head -1)" ]]; then
    apt-get "${opts[@]}" update >/dev/null || die "apt-get update for ${arch} failed"
  fi
  local line url file sum
  line="$(apt-get "${opts[@]}" --print-uris download "${pkg}:${arch}")" || die "apt cannot find ${pkg}:${arch}"
  read -r url file _ sum <<<"${line}"
  file="${file//\'/}"
  sum="${sum#SHA256:}"
  if [[ ! -f "${dir}/${file}" ]] || [[ "$(sha256sum "${dir}/${file}" | cut -d' ' -f1)" != "${sum}" ]]; then
    rm -f "${dir}/${pkg}"_*.deb
    (cd "${dir}" && apt-get "${opts[@]}" download "${pkg}:${arch}" 2>/dev/null) || die "downloading ${pkg}:${arch} failed"
    [[ "$(sha256sum "${dir}/${file}" | cut -d' ' -f1)" == "${sum}" ]] || die "${file}: checksum differs from apt's"
  fi
  echo "${dir}/${file}"
}

# resolve ROOT PATH: PATH with every symlink followed inside ROOT (absolute targets too).
resolve() {
  local root="$1" path="$2" n=0 target
  while [[ -L "${root}${path}" ]]; do
    ((n++ < 16)) || die "symlink loop at ${path}"
    target="$(readlink "${root}${path}")"
    if [[ "${target}" == /* ]]; then path="${target}"; else path="$(dirname "${path}")/${target}"; fi
  done
  echo "${path}"
}

# base_layer ARCH DIR
base_layer() {
  local arch="$1" base="$2" deb pkg x
  mkdir -p "${base}/usr/lib" "${base}/usr/bin" "${base}/usr/sbin"
  # Merged /usr, as Debian 12 itself: /lib, /bin and /sbin are links into /usr (and /lib64 on amd64).
  for d in lib bin sbin; do ln -s "usr/${d}" "${base}/${d}"; done
  if [[ "${arch}" == amd64 ]]; then
    mkdir -p "${base}/usr/lib64"
    ln -s usr/lib64 "${base}/lib64"
  fi
  mkdir -p "${base}/var/lib/dpkg/status.d"
  # DEB_PACKAGES, plus the packages their documentation directories link to (libgcc-s1's and
  # libstdc++6's copyright is gcc-12-base's).
  local queue=("${DEB_PACKAGES[@]}") done_pkgs=" " doc
  while ((${#queue[@]} > 0)); do
    pkg="${queue[0]}"
    queue=("${queue[@]:1}")
    [[ "${done_pkgs}" == *" ${pkg} "* ]] && continue
    done_pkgs+="${pkg} "
    deb="$(fetch_deb "${arch}" "${CACHE}/image-debs/${arch}" "${pkg}")"
    x="${STAGE}/work/deb-${arch}-${pkg}"
    rm -rf "${x}"
    mkdir -p "${x}"
    dpkg-deb -x "${deb}" "${x}"
    if [[ -L "${x}/usr/share/doc/${pkg}" ]]; then
      doc="usr/share/doc/${pkg}"
      queue+=("$(basename "$(readlink "${x}/usr/share/doc/${pkg}")")")
    else
      doc="usr/share/doc/${pkg}/copyright"
      [[ -f "${x}/${doc}" ]] || die "${pkg}:${arch} has no ${doc}"
    fi
    # The shared objects and the dynamic loader only (no gconv modules, no programs), plus the
    # package's copyright file.
    (
      cd "${x}"
      {
        find . \( -type f -o -type l \) | sed 's|^\./||' | grep -E '^(usr/)?lib(64)?/' |
          grep -E '\.so(\.[0-9]+)*$' | grep -v '/gconv/' || true
        echo "${doc}"
      } | sort >"${x}.files"
      tar --no-recursion -cf - -T "${x}.files"
    ) | tar -C "${base}" --keep-directory-symlink -xf -
    {
      dpkg-deb -f "${deb}" | sed -n '1p'
      echo "Status: install ok installed"
      dpkg-deb -f "${deb}" | sed '1d'
    } >"${base}/var/lib/dpkg/status.d/${pkg}"
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
}

# runtime_layer ARCH DIR
runtime_layer() {
  local arch="$1" dir="$2" name expected tgz actual
  name="node-linux-$(npm_arch "${arch}")"
  expected="$(node -e 'const d = require("./hack/image/node-dist.json"); const [v, a] = process.argv.slice(1);
    if (d.version !== v) process.exit(3); process.stdout.write(d.integrity[a] ?? "")' "${NODE_VERSION}" "${arch}")" ||
    die "hack/image/node-dist.json is not for Node.js ${NODE_VERSION} (the dev dependency \`node\`): set its version and each platform's integrity from \`npm view node-linux-<x64|arm64>@${NODE_VERSION} dist.integrity\`"
  [[ -n "${expected}" ]] || die "hack/image/node-dist.json has no integrity for ${arch}"
  tgz="${CACHE}/image-node/${name}-${NODE_VERSION}.tgz"
  if [[ ! -f "${tgz}" ]]; then
    mkdir -p "${CACHE}/image-node"
    (cd "${CACHE}/image-node" && npm pack "${name}@${NODE_VERSION}" --silent >/dev/null) || die "npm pack ${name}@${NODE_VERSION} failed"
  fi
  actual="sha512-$(openssl dgst -sha512 -binary "${tgz}" | base64 -w0)"
  if [[ "${actual}" != "${expected}" ]]; then
    rm -f "${tgz}"
    die "${name}@${NODE_VERSION}: integrity ${actual} is not the pinned ${expected}"
  fi
  mkdir -p "${dir}/usr/local/bin" "${dir}/usr/local/share/doc/node"
  tar -xzf "${tgz}" -C "${STAGE}/work" package/bin/node package/LICENSE
  mv "${STAGE}/work/package/bin/node" "${dir}/usr/local/bin/node"
  mv "${STAGE}/work/package/LICENSE" "${dir}/usr/local/share/doc/node/LICENSE"
  rm -rf "${STAGE}/work/package"
}

# check_links ARCH: every library node needs, and its program interpreter, is in the base layer.
check_links() {
  local arch="$1" node="${STAGE}/runtime-$1/usr/local/bin/node" base="${STAGE}/base-$1" lib interp machine
  machine="$(readelf -h "${node}" | sed -n 's/^ *Machine: *//p')"
  case "${arch}/${machine}" in
    amd64/*X86-64* | arm64/AArch64) ;;
    *) die "the ${arch} node binary is for ${machine}" ;;
  esac
  interp="$(readelf -l "${node}" | sed -n 's/.*Requesting program interpreter: \(.*\)\]/\1/p')"
  [[ -f "${base}$(resolve "${base}" "${interp}")" ]] || die "${arch}: node's interpreter ${interp} is not in the image"
  for lib in $(readelf -d "${node}" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'); do
    [[ -f "${base}$(resolve "${base}" "/usr/lib/$(triplet "${arch}")/${lib}")" ]] ||
      die "${arch}: node needs ${lib}, which the image's packages do not provide"
  done
}

for arch in "${PLATFORMS[@]}"; do
  npm_arch "${arch}" >/dev/null
  log "${arch}: Debian libraries and Node.js ${NODE_VERSION} ..."
  base_layer "${arch}" "${STAGE}/base-${arch}"
  runtime_layer "${arch}" "${STAGE}/runtime-${arch}"
  check_links "${arch}"
done

# --- layer 3: the application ---------------------------------------------------------------------
app="${STAGE}/app/app"
mkdir -p "${app}"
log "compiling ..."
tsc -p tsconfig.build.json --outDir "${app}/dist" --declaration false --declarationMap false --sourceMap false ||
  die "tsc failed"
cp package.json LICENSE "${app}/"
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
native="$(find "${deps}/node_modules" -name '*.node' -type f | head -3)"
[[ -z "${native}" ]] || die "a production dependency carries a native addon, which one /app layer for every platform cannot hold: ${native}"
cp -a "${deps}/node_modules" "${app}/node_modules"
rm -rf "${app}/node_modules/.bin"

# --- the image ------------------------------------------------------------------------------------
mkdir -p "${OUT}"
rm -f "${OUT}"/mcp-warden-*.tar "${OUT}"/sbom-*.spdx.json
SPEC_SYFT="${BIN}/syft" SPEC_TAG="${REPOSITORY}:${TAG}" SPEC_EPOCH="${EPOCH}" SPEC_STAGE="${STAGE}" SPEC_OUT="${OUT}" \
  SPEC_TAGNAME="${TAG}" SPEC_VERSION="${VERSION}" SPEC_REVISION="${REVISION}" \
  SPEC_NODE="${NODE_VERSION}" SPEC_PACKAGES="${DEB_PACKAGES[*]}" SPEC_PLATFORMS="${PLATFORMS[*]}" node -e '
const e = process.env;
const pkg = require("./package.json");
const variants = { arm64: "v8" };
const spec = {
  syft: e.SPEC_SYFT,
  sbomDir: e.SPEC_OUT,
  tag: e.SPEC_TAG,
  epoch: Number(e.SPEC_EPOCH),
  workDir: `${e.SPEC_STAGE}/work`,
  ociDir: `${e.SPEC_OUT}/oci`,
  platforms: e.SPEC_PLATFORMS.split(" ").map((arch) => ({
    os: "linux",
    architecture: arch,
    ...(variants[arch] ? { variant: variants[arch] } : {}),
    tarball: `${e.SPEC_OUT}/mcp-warden-${e.SPEC_TAGNAME}-linux-${arch}.tar`,
    layers: [
      {
        dir: `${e.SPEC_STAGE}/base-${arch}`,
        createdBy: `hack/build-image.sh: Debian ${e.SPEC_PACKAGES} libraries, /etc/passwd (nonroot 65532)`,
        owners: { "home/nonroot": { uid: 65532, gid: 65532 } },
        modes: { tmp: 0o1777, "home/nonroot": 0o700, root: 0o700 },
      },
      { dir: `${e.SPEC_STAGE}/runtime-${arch}`, createdBy: `hack/build-image.sh: Node.js v${e.SPEC_NODE}` },
      { dir: `${e.SPEC_STAGE}/app`, createdBy: `hack/build-image.sh: mcp-warden ${e.SPEC_VERSION}` },
    ],
  })),
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
log "assembling ${REPOSITORY}:${TAG} (${PLATFORMS[*]}) ..."
"${BIN}/imagebuild" build "${STAGE}/work/spec.json" >"${OUT}/image.json" || die "assembling the image failed"
rm -rf "${STAGE}"/work/platform-*
node -e 'const r = require(process.argv[1]);
  console.error(`build-image: ${r.ref} ${r.digest}`);
  for (const p of r.platforms) console.error(`build-image:   ${p.platform} ${p.digest} (${p.layers} layers, ${(p.compressedSize / 1048576).toFixed(1)} MiB compressed)`);
  for (const s of r.sboms) console.error(`build-image:   SBOM of ${s.platform}: ${s.packages} packages, attestation ${s.digest}`);' "${OUT}/image.json"
log "wrote ${OUT}/oci, ${OUT}/mcp-warden-${TAG}-linux-{$(IFS=,; echo "${PLATFORMS[*]}")}.tar and ${OUT}/sbom-linux-{$(IFS=,; echo "${PLATFORMS[*]}")}.spdx.json"
