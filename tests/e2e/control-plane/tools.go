//go:build tools

// Package tools records the commands built by tests/e2e/build-control-plane.sh so that
// `go mod tidy` keeps all of their dependencies in go.mod and go.sum.
package tools

import (
	_ "go.etcd.io/etcd/server/v3"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
