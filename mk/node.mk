# The test node (included by the top-level Makefile): the upstream programs it runs besides
# Kubernetes itself — pause, CoreDNS, crictl — built from the pinned modules into the
# cache, and the pause/CoreDNS images packed from them with weft-image (no Docker daemon).
# Versions are pinned here and in e2e/node-tools/*/go.mod (a unit test checks they agree).
PAUSE_VERSION ?= 3.10.1
COREDNS_VERSION ?= v1.12.1
CRICTL_VERSION ?= v1.34.0
WEFT_CACHE ?= $(HOME)/.cache/weft
WEFT_NODE_TOOLS_DIR ?= $(WEFT_CACHE)/node-tools/pause-$(PAUSE_VERSION)-coredns-$(COREDNS_VERSION)-crictl-$(CRICTL_VERSION)
export PAUSE_VERSION COREDNS_VERSION CRICTL_VERSION WEFT_NODE_TOOLS_DIR
WEFT_IMAGE_TOOL := target/debug/weft-image

.PHONY: node-tools

node-tools: deps ## Build pause, CoreDNS and crictl from upstream sources (cached) and pack the pause and CoreDNS images
	@KUBE_VERSION=$(KUBE_VERSION) e2e/node-tools/build.sh
	@if [ -f $(WEFT_NODE_TOOLS_DIR)/pause.tar ] && [ -f $(WEFT_NODE_TOOLS_DIR)/coredns.tar ]; then \
	  echo "node-tools: images cached in $(WEFT_NODE_TOOLS_DIR)"; else \
	  $(CARGO) build -q -p weft-image && \
	  $(WEFT_IMAGE_TOOL) pack --ref localhost/weft-node/pause:$(PAUSE_VERSION) \
	    --add $(WEFT_NODE_TOOLS_DIR)/pause=/pause:0755 --entrypoint /pause --user 65535:65535 \
	    --label org.opencontainers.image.source=k8s.io/kubernetes@$(KUBE_VERSION)/build/pause \
	    --out $(WEFT_NODE_TOOLS_DIR)/pause.tar.tmp && \
	  mv $(WEFT_NODE_TOOLS_DIR)/pause.tar.tmp $(WEFT_NODE_TOOLS_DIR)/pause.tar && \
	  $(WEFT_IMAGE_TOOL) pack --ref localhost/weft-node/coredns:$(COREDNS_VERSION) \
	    --add $(WEFT_NODE_TOOLS_DIR)/coredns=/coredns:0755 --entrypoint /coredns --user 65532:65532 \
	    --label org.opencontainers.image.source=github.com/coredns/coredns@$(COREDNS_VERSION) \
	    --out $(WEFT_NODE_TOOLS_DIR)/coredns.tar.tmp && \
	  mv $(WEFT_NODE_TOOLS_DIR)/coredns.tar.tmp $(WEFT_NODE_TOOLS_DIR)/coredns.tar && \
	  echo "node-tools: packed pause and CoreDNS images into $(WEFT_NODE_TOOLS_DIR)"; fi
