# OCI images of weft (docs/images.md), built without a container daemon (included by the
# top-level Makefile; the variables default here too so this file also works on its own).
WEFT_CACHE ?= $(HOME)/.cache/weft
CARGO ?= cargo
# skopeo: make push and the archive tests; containerd + runc: the tests import and run
# each image in a throwaway containerd.
IMAGES_APT_PACKAGES := skopeo containerd runc
REGISTRY_VERSION := $(shell awk '$$1 == "require" && $$2 == "github.com/distribution/distribution/v3" {print $$3}' tools/registry/go.mod 2>/dev/null)
# The image tests read these (tools/weft-image/tests/support).
export WEFT_CACHE
export WEFT_REGISTRY_BIN ?= $(WEFT_CACHE)/registry/$(REGISTRY_VERSION)/registry
REGISTRY ?=
TAG ?=
PUSH_FLAGS ?=

.PHONY: images images-deps push

images-deps: ## Install skopeo, containerd, runc (apt) and build a local registry (Go module, cached) (idempotent)
	@missing=""; for p in $(IMAGES_APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "images-deps: installing$$missing"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	else echo "images-deps: skopeo, containerd and runc present"; fi
	@WEFT_CACHE=$(WEFT_CACHE) tools/images/registry.sh

images: images-deps ## Build the weft/{controller,proxy,demo-app} OCI archives (cached by source hash; target/images/)
	@CARGO=$(CARGO) WEFT_CACHE=$(WEFT_CACHE) tools/images/build.sh

push: images ## Push the images with skopeo: make push REGISTRY=host[:port] [TAG=…] [PUSH_FLAGS=--dest-tls-verify=false]
	@REGISTRY="$(REGISTRY)" TAG="$(TAG)" PUSH_FLAGS="$(PUSH_FLAGS)" tools/images/push.sh
