# h2spec, the HTTP/2 conformance suite the proxy's tests run against the sidecar
# (included by the top-level Makefile; part of `make test`). Built from its Go module
# (wrapper module e2e/h2spec, which pins the same version) into the cache.
H2SPEC_VERSION ?= v2.2.1
WEFT_CACHE ?= $(HOME)/.cache/weft
export H2SPEC_VERSION

.PHONY: h2spec

h2spec: ## Build h2spec from its Go module into ~/.cache/weft/h2spec/<version> (cached)
	@H2SPEC_VERSION=$(H2SPEC_VERSION) WEFT_CACHE=$(WEFT_CACHE) e2e/h2spec/build.sh
