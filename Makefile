# mcp-warden — every target installs what it needs on a fresh machine.
# Node 24 comes from the pinned npm package `node` (node_modules/.bin/node), put first on PATH.
SHELL := /bin/bash
export PATH := $(CURDIR)/node_modules/.bin:$(CURDIR)/.cache/bin:$(PATH)
STAMP := node_modules/.install-stamp

.PHONY: all install build test test-unit test-integration test-e2e demo lint format conformance bench k8s-tools prometheus qemu chromium clean crds image sign sign-tools

all: build

$(STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund
	@touch $(STAMP)

install: $(STAMP)

build: install
	tsc -p tsconfig.build.json
	@chmod +x dist/cmd/mcp-warden.js

crds: build
	node dist/cmd/gen-crds.js

lint: install
	biome check .
	tsc -p tsconfig.json --noEmit

format: install
	biome format --write .

# Real kube-apiserver, kubectl, etcd and helm, built from the Go module proxy, cached in .cache/bin.
k8s-tools:
	bash hack/build-k8s-tools.sh

# Prometheus and promtool from Debian's packages (the monitoring suite's real Prometheus).
prometheus:
	bash hack/ensure-prometheus.sh

# Chromium from Debian's packages (the browser suite: the MCP SDK client in a real page, CORS).
chromium:
	bash hack/ensure-chromium.sh

# qemu-aarch64-static from Debian's packages (the image suite runs the arm64 image's node under it).
qemu:
	bash hack/ensure-qemu.sh

# cosign and crane, built from the Go module proxy, cached in .cache/bin (make sign; the image
# signing e2e test).
sign-tools:
	bash hack/build-sign-tools.sh

test: build k8s-tools prometheus qemu chromium sign-tools
	bash hack/run-tests.sh

test-unit: build
	npm run -s test:unit

test-integration: build prometheus chromium
	npm run -s test:integration

test-e2e: build k8s-tools qemu sign-tools
	npm run -s test:e2e

# The container image (webhook and sidecar; linux/amd64 and linux/arm64), without a container
# engine: out/image/oci (OCI layout, multi-platform index: crane push / skopeo copy --all) and
# out/image/mcp-warden-<version>-linux-<arch>.tar (docker load).
image: install
	bash hack/build-image.sh

# Pushes out/image/oci to IMAGE_REF and signs it with cosign (COSIGN_KEY, COSIGN_PASSWORD): the
# index and every platform image, plus each platform's SBOM as a signed attestation. See
# docs/image.md (signing; keyless signing in the release pipeline).
#   make sign IMAGE_REF=registry.example/mcp-warden:0.1.0 COSIGN_KEY=cosign.key
sign: install
	bash hack/sign-image.sh "$(IMAGE_REF)"

demo: build
	node dist/examples/demo.js

conformance: build
	bash hack/conformance.sh

bench: build
	bash bench/run.sh

clean:
	rm -rf dist coverage out
