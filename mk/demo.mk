# The mesh end to end: install weft, the Bookinfo demo and the e2e suite (included by the
# top-level Makefile; DEV_CLUSTER_* come from mk/kube.mk).
WEFT_DEMO := target/debug/weft-demo

.PHONY: install demo e2e

install: ## Install weft (crds/, then manifests/) into the cluster of $KUBECONFIG, else .weft/kubeconfig
	$(CARGO) build -q -p weft-e2e --bin weft-demo
	$(WEFT_DEMO) install

demo: kube-bins deps ## Build, start (or reuse) the dev cluster, install weft, run the Bookinfo demo
	@echo "==> building weft (cargo build --workspace --bins)"
	$(CARGO) build -q --workspace --bins
	@if $(DEV_CLUSTER_BIN) --dir $(DEV_CLUSTER_DIR) status | grep -q '^running'; then \
		echo "==> reusing the running dev cluster ($(DEV_CLUSTER_DIR)/kubeconfig)"; \
	else echo "==> starting the dev cluster"; \
		$(DEV_CLUSTER_BIN) --dir $(DEV_CLUSTER_DIR) start --bind-address $(DEV_CLUSTER_BIND); fi
	$(WEFT_DEMO) --kubeconfig $(DEV_CLUSTER_DIR)/kubeconfig run

e2e: kube-bins deps no-dev-cluster ## The mesh end-to-end tests on a real control plane (needs root)
	$(CARGO) build -q --workspace --bins
	$(CARGO) test -p weft-e2e --test mesh --test mesh_resilience -- --test-threads=1
