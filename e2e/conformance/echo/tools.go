//go:build tools

// Package tools pins Istio's echo test app (server and client), the program behind the
// image registry.k8s.io/gateway-api/echo-advanced that the Gateway API mesh conformance
// tests run, so `go mod tidy` keeps it in go.mod/go.sum. istio.io/istio publishes no
// tagged module versions; the pin is the pseudo-version the Go module proxy serves.
// There is no weft Go code here.
package tools

import (
	_ "istio.io/istio/pkg/test/echo/cmd/client"
	_ "istio.io/istio/pkg/test/echo/cmd/server"
)
