# The upstream Gateway API conformance suite, profiles MESH-HTTP + MESH-GRPC and
# GATEWAY-HTTP, against weft on the real test node (docs/conformance.md; included by the top-level Makefile).
# The suite binary and the echo image it runs are built from their published Go modules
# (wrapper modules e2e/conformance/{suite,echo}) into the cache, keyed by version.
WEFT_CACHE ?= $(HOME)/.cache/weft
CARGO ?= cargo
# mk/gateway.mk pins the same version (this file is included before it).
GATEWAY_API_VERSION ?= v1.6.3
# istio.io/istio publishes no tagged module versions: this is the pseudo-version the Go
# module proxy serves (the commit of 2026-08-27), pinned in e2e/conformance/echo/go.mod.
ISTIO_ECHO_VERSION ?= v0.0.0-20260827124520-eed52ebb66ad
# The image reference the suite's mesh manifests name (imagePullPolicy IfNotPresent): the
# image is built here from Istio's echo sources and imported into the node's containerd.
ECHO_IMAGE_REF ?= registry.k8s.io/gateway-api/echo-advanced:v1.5.1
# The gateway profiles' images, by the references the suite's manifests name: the Gateway
# API's echo-basic (built from the suite's module, one archive per tag) and CoreDNS.
ECHO_BASIC_REFS ?= registry.k8s.io/gateway-api/echo-basic:v1.5.1 registry.k8s.io/gateway-api/echo-basic:v1.6.0-dev.2 registry.k8s.io/gateway-api/echo-basic:v1.6.0-dev.3
CONFORMANCE_COREDNS_VERSION ?= v1.12.2
WEFT_VERSION := $(shell awk -F'"' '/^\[workspace.package\]/ {p=1} p && $$1 ~ /^version *= */ {print $$2; exit}' Cargo.toml)
CONFORMANCE_REPORT_DIR ?= docs/conformance
# Where cargo puts binaries (CARGO_TARGET_DIR if set).
CONFORMANCE_BIN_DIR := $(or $(CARGO_TARGET_DIR),target)/debug
# Extra flags for weft-conformance, e.g. CONFORMANCE_ARGS="--run-test MeshBasic" or "--strict".
CONFORMANCE_ARGS ?=
CONFORMANCE_ENV := GATEWAY_API_VERSION=$(GATEWAY_API_VERSION) ISTIO_ECHO_VERSION=$(ISTIO_ECHO_VERSION) \
  ECHO_IMAGE_REF=$(ECHO_IMAGE_REF) ECHO_BASIC_REFS="$(ECHO_BASIC_REFS)" \
  CONFORMANCE_COREDNS_VERSION=$(CONFORMANCE_COREDNS_VERSION) WEFT_CACHE=$(WEFT_CACHE)
# The cache entry; e2e/tests/gamma_conformance.rs and weft-conformance read it.
ifeq ($(origin WEFT_CONFORMANCE_DIR),undefined)
WEFT_CONFORMANCE_DIR := $(shell $(CONFORMANCE_ENV) e2e/conformance/build.sh --print-dir)
endif
export WEFT_CONFORMANCE_DIR

.PHONY: conformance-tools conformance

conformance-tools: ## Build the Gateway API conformance suite binary and the echo image from Go modules (cached)
	@$(CARGO) build -q -p weft-image
	@$(CONFORMANCE_ENV) WEFT_IMAGE_TOOL=$(CONFORMANCE_BIN_DIR)/weft-image e2e/conformance/build.sh

conformance: kube-bins deps node-tools gateway-api-crds images conformance-tools no-dev-cluster ## Run the Gateway API conformance suite (MESH-HTTP + MESH-GRPC, GATEWAY-HTTP) against weft on the real node; reports in docs/conformance/
	$(CARGO) build -q -p weft-e2e --bin weft-conformance
	$(CONFORMANCE_BIN_DIR)/weft-conformance --report-dir $(CONFORMANCE_REPORT_DIR) --log-dir target/conformance $(CONFORMANCE_ARGS)

.PHONY: print-conformance-dir
print-conformance-dir: ## Print the conformance tools' cache entry (WEFT_CONFORMANCE_DIR)
	@echo $(WEFT_CONFORMANCE_DIR)
