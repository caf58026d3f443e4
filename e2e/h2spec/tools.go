//go:build tools

// Package tools pins h2spec, the HTTP/2 conformance suite the proxy's tests run
// against the sidecar (proxy/tests/h2_conformance.rs), so `go mod tidy` keeps it in
// go.mod/go.sum. There is no weft Go code here.
package tools

import (
	_ "github.com/summerwind/h2spec/cmd/h2spec"
)
