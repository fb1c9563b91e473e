#!/usr/bin/env bash
# Installs a pinned kustomize v5 from its Go module, for the manifest tests and CI.
#
# Usage:  kustomize=$(scripts/install-kustomize.sh | tail -n1)
#
# The LAST line of stdout is always the absolute path of the kustomize binary. Progress goes to
# stderr. Idempotent: a binary that already reports the pinned version is reused.
#
# Environment:
#   KUSTOMIZE_VERSION   version to install (default below; tests assume v5 semantics).
#   GKE_WI_TOOLS_DIR    cache directory (default:
#                       ${XDG_CACHE_HOME:-$HOME/.cache}/gke-wi-injector/kustomize-<version>).
#
# Needs only the Go toolchain and the Go module proxy.
set -euo pipefail

log() { printf 'install-kustomize: %s\n' "$*" >&2; }

version="${KUSTOMIZE_VERSION:-v5.8.1}"
if [[ ! "${version}" =~ ^v5\.[0-9]+\.[0-9]+$ ]]; then
  log "KUSTOMIZE_VERSION must look like v5.X.Y (got '${version}')"
  exit 1
fi

out_dir="${GKE_WI_TOOLS_DIR:-${XDG_CACHE_HOME:-${HOME}/.cache}/gke-wi-injector/kustomize-${version}}"
mkdir -p "${out_dir}"
out_dir="$(cd "${out_dir}" && pwd)"
bin="${out_dir}/kustomize"

# `kustomize version` prints e.g. "v5.8.1"; builds of older releases print "(devel)", so also ask
# Go which module version the binary was built from.
is_fresh() {
  [[ -x "${bin}" ]] || return 1
  "${bin}" version 2>/dev/null | grep -qF -- "${version}" && return 0
  command -v go >/dev/null 2>&1 \
    && go version -m "${bin}" 2>/dev/null | grep -qE "sigs\.k8s\.io/kustomize/kustomize/v5[[:space:]]+${version//./\\.}([[:space:]]|$)"
}

if is_fresh; then
  log "reusing ${bin} (${version})"
  printf '%s\n' "${bin}"
  exit 0
fi

if ! command -v go >/dev/null 2>&1; then
  log "the Go toolchain is needed to build kustomize ${version}; install Go or set KUSTOMIZE to a kustomize v5 binary"
  exit 1
fi

log "building sigs.k8s.io/kustomize/kustomize/v5@${version} into ${out_dir}"
start=$(date +%s)
# Module mode outside any go.mod; CGO off gives a static binary that runs anywhere.
(cd "${out_dir}" && GOBIN="${out_dir}" CGO_ENABLED=0 GO111MODULE=on \
  go install "sigs.k8s.io/kustomize/kustomize/v5@${version}") >&2
log "built in $(( $(date +%s) - start ))s"

if ! is_fresh; then
  log "${bin} does not report ${version} after the build: $("${bin}" version 2>&1 || true)"
  exit 1
fi
printf '%s\n' "${bin}"
