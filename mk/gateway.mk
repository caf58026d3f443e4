# Gateway API (GAMMA, docs/gamma.md): the upstream standard-channel CRDs, taken from the
# published Go module sigs.k8s.io/gateway-api (its config/crd/standard/), cached outside the
# clone. weft installs them next to its own CRDs unless a newer bundle is already installed.
WEFT_CACHE ?= $(HOME)/.cache/weft
GATEWAY_API_VERSION ?= v1.6.3
export GATEWAY_API_VERSION
export WEFT_GATEWAY_API_CRDS ?= $(WEFT_CACHE)/gateway-api/$(GATEWAY_API_VERSION)/standard-install.yaml

.PHONY: gateway-api-crds
gateway-api-crds: $(WEFT_GATEWAY_API_CRDS) ## Gateway API standard CRDs from the Go module (cached)

$(WEFT_GATEWAY_API_CRDS):
	@command -v go >/dev/null || { echo "gateway-api-crds: go is required" >&2; exit 1; }
	@set -euo pipefail; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	dir=$$(cd "$$tmp" && GOFLAGS=-mod=mod go mod download -json sigs.k8s.io/gateway-api@$(GATEWAY_API_VERSION) | \
	  sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$$/\1/p'); \
	[ -d "$$dir/config/crd/standard" ] || { echo "gateway-api-crds: no config/crd/standard in $$dir" >&2; exit 1; }; \
	mkdir -p "$(@D)"; \
	for f in "$$dir"/config/crd/standard/*.yaml; do printf -- '---\n'; cat "$$f"; done > "$@.tmp"; \
	mv "$@.tmp" "$@"; echo "gateway-api-crds: $@ ($$(grep -c '^kind: CustomResourceDefinition' "$@") CRDs)"
