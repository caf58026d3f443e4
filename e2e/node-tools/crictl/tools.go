//go:build tools

// Package tools pins upstream crictl (cri-tools v1.34.0, matching Kubernetes 1.34) so
// `go mod tidy` keeps it in go.mod/go.sum. There is no weft Go code here.
package tools

import (
	_ "sigs.k8s.io/cri-tools/cmd/crictl"
)
