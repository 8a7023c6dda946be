#!/usr/bin/env bash
# Pushes the image `make image` built (out/image/oci) to a registry and signs it with Sigstore's
# cosign, with a key:
#
#   1. checks the layout (`imagebuild verify`: every digest recomputed) and that each
#      out/image/sbom-linux-<arch>.spdx.json is the document attested for that platform inside the
#      index, and that COSIGN_KEY opens with COSIGN_PASSWORD, before anything is pushed;
#   2. `crane push` the multi-platform index to REF and checks the registry answers with the
#      index digest that was built;
#   3. `cosign sign --recursive` on the index digest: the index, each platform image and each
#      in-index attestation manifest get a signature;
#   4. `cosign attest --type spdxjson` of each platform's SBOM file on that platform's digest
#      (`--replace`: a rerun replaces the SBOM attestation instead of adding another);
#   5. verifies all of it with the key's public half (`cosign verify`, `cosign verify-attestation`).
#
# Signatures and attestations are stored the way cosign stored them before v3 (tags
# `sha256-<digest>.sig` / `.att` in the image's repository; `--new-bundle-format=false`), which
# cosign v2 and v3, Kyverno and Sigstore's policy-controller verify with a public key. Nothing is
# written to a transparency log (`--tlog-upload=false`): verifiers pass `--insecure-ignore-tlog`
# (docs/image.md says why, and how the keyless release signing in CI differs).
#
#   COSIGN_KEY=cosign.key COSIGN_PASSWORD=… hack/sign-image.sh registry.example/mcp-warden:0.1.0
#
# REF: registry/repository[:tag] (or IMAGE_REF); without a tag, the tag the image was built with.
# COSIGN_KEY: any cosign key reference (a key file from `cosign generate-key-pair`, env://VAR,
# k8s://namespace/secret, awskms://…, gcpkms://…, azurekms://…, hashivault://…); COSIGN_PASSWORD
# opens a key file. Registry credentials: crane's and cosign's (`crane auth login`,
# ~/.docker/config.json, DOCKER_CONFIG). IMAGE_OUT: the build output (default out/image).
# Prints the signed index as REPOSITORY@DIGEST on stdout.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# A key file and IMAGE_OUT given relative to where the script was called from.
[[ -z "${COSIGN_KEY:-}" || "${COSIGN_KEY}" == /* || ! -f "${COSIGN_KEY}" ]] || COSIGN_KEY="${PWD}/${COSIGN_KEY}"
[[ -z "${IMAGE_OUT:-}" || "${IMAGE_OUT}" == /* ]] || IMAGE_OUT="${PWD}/${IMAGE_OUT}"
cd "${ROOT}"
BIN="${ROOT}/.cache/bin"
OUT="${IMAGE_OUT:-${ROOT}/out/image}"
export PATH="${ROOT}/node_modules/.bin:${PATH}"

die() {
  echo "sign-image: ERROR: $*" >&2
  exit 1
}
log() { echo "sign-image: $*" >&2; }

ref="${1:-${IMAGE_REF:-}}"
[[ -n "${ref}" ]] || die "usage: COSIGN_KEY=… COSIGN_PASSWORD=… hack/sign-image.sh REGISTRY/REPOSITORY[:TAG] (make sign IMAGE_REF=…)"
[[ "${ref}" != *@* ]] || die "${ref}: give a repository or a tag, not a digest (the digest is the built index's)"
[[ -n "${COSIGN_KEY:-}" ]] ||
  die "COSIGN_KEY is not set: a cosign key reference (\`cosign generate-key-pair\` writes cosign.key; or env://VAR, k8s://…, a KMS URI). Keyless signing happens in the release pipeline: see docs/image.md"
[[ -f "${OUT}/oci/index.json" ]] || die "no image in ${OUT}/oci: run make image first"
[[ -x "${BIN}/imagebuild" ]] || die "${BIN}/imagebuild is missing: make image builds it"
command -v node >/dev/null 2>&1 || die "node is missing: run npm ci first"

bash "${ROOT}/hack/build-sign-tools.sh" cosign crane
COSIGN="${BIN}/cosign"
CRANE="${BIN}/crane"

tmp="$(mktemp -d)"
trap 'rm -rf "${tmp}"' EXIT

# run STEP CMD...: runs a tool with its output in a log, shown only when it fails (cosign warns on
# stderr about the flags below at every call).
run() {
  local step="$1"
  shift
  "$@" </dev/null >"${tmp}/out" 2>"${tmp}/log" || die "${step} failed: $(cat "${tmp}/log")"
}

# --- what is signed -------------------------------------------------------------------------------
"${BIN}/imagebuild" verify "${OUT}/oci" >"${tmp}/layout.json" || die "${OUT}/oci does not verify"
# One line per platform: ARCH DIGEST SBOM-FILE. Each SBOM file must be the very document the index
# attests for that platform (a stale file from another build is refused).
# shellcheck disable=SC2016 # JavaScript, not shell
OCI="${OUT}/oci" SBOM_DIR="${OUT}" node -e '
const fs = require("node:fs");
const { join } = require("node:path");
const blob = (d) => fs.readFileSync(join(process.env.OCI, "blobs", ...d.split(":")), "utf8");
const fail = (message) => {
  console.error(message);
  process.exit(1);
};
const layout = JSON.parse(fs.readFileSync(0, "utf8"));
const top = JSON.parse(fs.readFileSync(join(process.env.OCI, "index.json"), "utf8"));
const index = JSON.parse(blob(top.manifests[0].digest));
for (const p of layout.platforms) {
  const arch = p.config.architecture;
  const file = join(process.env.SBOM_DIR, `sbom-linux-${arch}.spdx.json`);
  if (!fs.existsSync(file)) fail(`${file} is missing: run make image again`);
  const att = index.manifests.find((m) => m.annotations?.["vnd.docker.reference.digest"] === p.digest);
  if (att === undefined) fail(`the index has no SBOM attestation for ${p.platform}`);
  const statement = JSON.parse(blob(JSON.parse(blob(att.digest)).layers[0].digest));
  if (!require("node:util").isDeepStrictEqual(JSON.parse(fs.readFileSync(file, "utf8")), statement.predicate))
    fail(`${file} is not the SBOM the index attests for ${p.platform} ${p.digest}: run make image again`);
  console.log(`${arch} ${p.digest} ${file}`);
}' <"${tmp}/layout.json" >"${tmp}/platforms" 2>"${tmp}/log" || die "$(cat "${tmp}/log")"
index_digest="$(node -p 'JSON.parse(require("node:fs").readFileSync(0, "utf8")).digest' <"${tmp}/layout.json")"
if [[ "${ref##*/}" != *:* ]]; then
  built_ref="$(node -p 'JSON.parse(require("node:fs").readFileSync(0, "utf8")).ref' <"${tmp}/layout.json")"
  ref="${ref}:${built_ref##*:}"
fi

# The key opens (a wrong COSIGN_PASSWORD stops here, before anything is pushed); its public half
# verifies what was signed at the end.
run "reading the key COSIGN_KEY=${COSIGN_KEY} (is COSIGN_PASSWORD right?)" "${COSIGN}" public-key --key "${COSIGN_KEY}"
cp "${tmp}/out" "${tmp}/key.pub"

# --- push -----------------------------------------------------------------------------------------
log "pushing ${OUT}/oci to ${ref} ..."
run "crane push to ${ref}" "${CRANE}" push "${OUT}/oci" "${ref}"
pushed="$(tail -1 "${tmp}/out")"
[[ "${pushed##*@}" == "${index_digest}" ]] ||
  die "the registry answered ${pushed##*@} for the index, not the built ${index_digest}"
repo="${pushed%@*}"

# --- sign and attest ------------------------------------------------------------------------------
# The pre-v3 storage and no transparency log (see the header); no signing config is fetched.
offline=(--tlog-upload=false --new-bundle-format=false --use-signing-config=false)
log "signing ${repo}@${index_digest} and every manifest in it ..."
run "cosign sign" "${COSIGN}" sign --yes --recursive --key "${COSIGN_KEY}" "${offline[@]}" "${repo}@${index_digest}"
while read -r arch digest sbom; do
  log "attesting the SBOM of linux/${arch} on ${repo}@${digest} ..."
  run "cosign attest (${arch})" "${COSIGN}" attest --yes --replace --key "${COSIGN_KEY}" --type spdxjson \
    --predicate "${sbom}" "${offline[@]}" "${repo}@${digest}"
done <"${tmp}/platforms"

# --- verify with the public key -------------------------------------------------------------------
run "cosign verify (index)" "${COSIGN}" verify --key "${tmp}/key.pub" --insecure-ignore-tlog "${repo}@${index_digest}"
log "signed ${repo}@${index_digest} (index)"
while read -r arch digest _; do
  run "cosign verify (${arch})" "${COSIGN}" verify --key "${tmp}/key.pub" --insecure-ignore-tlog "${repo}@${digest}"
  run "cosign verify-attestation (${arch})" "${COSIGN}" verify-attestation --key "${tmp}/key.pub" \
    --insecure-ignore-tlog --type spdxjson "${repo}@${digest}"
  log "signed ${repo}@${digest} (linux/${arch}) and attested its SBOM"
done <"${tmp}/platforms"
echo "${repo}@${index_digest}"
