//go:build tools

// Package tools pins upstream CoreDNS (v1.12.1, the version kubeadm 1.34 deploys) so
// `go mod tidy` keeps it in go.mod/go.sum. There is no weft Go code here.
package tools

import (
	_ "github.com/coredns/coredns"
)
