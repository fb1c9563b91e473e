//go:build tools

// Package tools records the command built by tests/e2e/build-istio.sh so that `go mod tidy`
// keeps all of its dependencies in go.mod and go.sum.
package tools

import (
	_ "istio.io/istio/pilot/cmd/pilot-discovery"
)
