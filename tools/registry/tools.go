//go:build tools

// Package tools pins the upstream CNCF Distribution registry that `make push` is
// tested against (tools/images/registry.sh builds it). There is no weft Go code here.
package tools

import (
	_ "github.com/distribution/distribution/v3/cmd/registry"
)
