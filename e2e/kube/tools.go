//go:build tools

// Package tools pins the upstream Kubernetes commands weft's tests run (the
// control plane, kubectl, and the node's kubelet and kube-proxy), so `go mod
// tidy` keeps them in go.mod/go.sum. There is no weft Go code here.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
