# The mesh end to end: install weft, the Bookinfo demo and the e2e suite (included by the
# top-level Makefile; DEV_CLUSTER_* come from mk/kube.mk).
WEFT_DEMO := target/debug/weft-demo

.PHONY: install demo e2e

IMAGE_REGISTRY ?=
IMAGE_TAG ?=

install: gateway-api-crds ## Install weft (crds/ and the Gateway API CRDs, then manifests/) into the cluster of $KUBECONFIG, else .weft/kubeconfig [IMAGE_REGISTRY=… IMAGE_TAG=…]
	$(CARGO) build -q -p weft-e2e --bin weft-demo
	IMAGE_REGISTRY="$(IMAGE_REGISTRY)" IMAGE_TAG="$(IMAGE_TAG)" $(WEFT_DEMO) install

demo: kube-bins deps node-tools gateway-api-crds images ## Build the images, start (or reuse) the dev cluster, install weft, run the Bookinfo demo
	@echo "==> building the demo driver (cargo build -p weft-e2e --bins)"
	$(CARGO) build -q -p weft-e2e --bins
	@if $(DEV_CLUSTER_BIN) --dir $(DEV_CLUSTER_DIR) status | grep -q '^running'; then \
		echo "==> reusing the running dev cluster ($(DEV_CLUSTER_DIR)/kubeconfig)"; \
	else echo "==> starting the dev cluster"; \
		$(DEV_CLUSTER_BIN) --dir $(DEV_CLUSTER_DIR) start --bind-address $(DEV_CLUSTER_BIND); fi
	$(WEFT_DEMO) --kubeconfig $(DEV_CLUSTER_DIR)/kubeconfig run

e2e: kube-bins deps node-tools images no-dev-cluster ## The node and mesh end-to-end tests on the real node (needs root)
	$(CARGO) test -p weft-e2e --test node --test node_lifecycle --test mesh --test mesh_resilience --test mesh_traffic --test mesh_gamma --test mesh_gateway -- --test-threads=1
