//go:build tools

// Package tools pins the upstream Gateway API conformance suite
// (sigs.k8s.io/gateway-api/conformance v1.6.3, with sigs.k8s.io/gateway-api v1.6.3) so
// `go mod tidy` keeps it in go.mod/go.sum; build.sh compiles its test binary with
// `go test -c sigs.k8s.io/gateway-api/conformance`. There is no weft Go code here.
package tools

import (
	_ "sigs.k8s.io/gateway-api/conformance"
	_ "sigs.k8s.io/gateway-api/pkg/features"
)
