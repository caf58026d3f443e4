//go:build tools

// Package tools pins upstream CoreDNS v1.12.2 (the image the Gateway API v1.6.3 conformance
// base manifests name) so `go mod tidy` keeps it in go.mod/go.sum. No weft Go code here.
package tools

import (
	_ "github.com/coredns/coredns"
)
