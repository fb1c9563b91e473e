#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs what it needs, then format, lint, every
# test target (unit, golden, property, CLI, server, manifests, Helm chart, alerting rules and
# end-to-end against a real kube-apiserver), and the static release build of the image's binary.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n==> %s\n' "$*" >&2; }

need_apt=()
command -v file >/dev/null || need_apt+=(file)
command -v openssl >/dev/null || need_apt+=(openssl)
command -v curl >/dev/null || need_apt+=(curl)
command -v script >/dev/null || need_apt+=(bsdutils)   # a terminal for doctor's progress line test
command -v cc >/dev/null || need_apt+=(build-essential)
if [ ${#need_apt[@]} -gt 0 ]; then
  log "installing ${need_apt[*]}"
  if [ "$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq "${need_apt[@]}"; else sudo apt-get update -qq && sudo apt-get install -y -qq "${need_apt[@]}"; fi
fi
command -v cargo >/dev/null || { echo "error: cargo not found: install Rust (rustup) first" >&2; exit 1; }
command -v go >/dev/null || { echo "error: go not found: the end-to-end tests build kube-apiserver from Go modules (or set KUBEBUILDER_ASSETS)" >&2; [ -n "${KUBEBUILDER_ASSETS:-}" ] || exit 1; }

log "cargo fmt --check"
cargo fmt --all -- --check

log "cargo clippy"
cargo clippy --all-targets -- -D warnings

if [ -x scripts/install-kustomize.sh ] && [ -z "${KUSTOMIZE:-}" ]; then
  log "kustomize"
  KUSTOMIZE="$(scripts/install-kustomize.sh | tail -n1)"
  export KUSTOMIZE
fi
if [ -x scripts/install-helm.sh ] && [ -z "${HELM:-}" ]; then
  log "helm"
  HELM="$(scripts/install-helm.sh | tail -n1)"
  export HELM
fi
if [ -x scripts/install-promtool.sh ] && [ -z "${PROMTOOL:-}" ]; then
  log "promtool"
  PROMTOOL="$(scripts/install-promtool.sh | tail -n1)"
  export PROMTOOL
fi
if [ -x tests/e2e/build-control-plane.sh ]; then
  log "kube-apiserver, etcd and kubectl for the end-to-end tests"
  GKE_WI_E2E_BIN_DIR="$(tests/e2e/build-control-plane.sh | tail -n1)"
  export GKE_WI_E2E_BIN_DIR
fi

if [ -x tests/e2e/build-istio.sh ] && [ -z "${GKE_WI_ISTIO_DIR:-}" ]; then
  log "Istio's pilot-discovery (istiod) and charts for the Istio end-to-end test"
  GKE_WI_ISTIO_DIR="$(tests/e2e/build-istio.sh | tail -n1)"
  export GKE_WI_ISTIO_DIR
fi

log "cargo test"
cargo test --all-targets --no-fail-fast

if [ -x scripts/build-static.sh ]; then
  # Built from a copy of the image's build context (the files .dockerignore lets through), so a
  # file the Dockerfile's build needs but the context leaves out fails here.
  log "static release binary, from the image's build context"
  ctx="$(mktemp -d)"
  trap 'rm -rf "${ctx}"' EXIT
  grep '^!' .dockerignore | cut -c2- | while read -r path; do
    cp -r --parents "${path%/}" "${ctx}/"
  done
  CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}/static" "${ctx}/scripts/build-static.sh"
fi
log "all checks passed"
