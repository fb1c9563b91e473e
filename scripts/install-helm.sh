#!/usr/bin/env bash
# Installs a pinned Helm v3 from its Go module, for the chart tests and CI.
#
# Usage:  helm=$(scripts/install-helm.sh | tail -n1)
#
# The LAST line of stdout is always the absolute path of the helm binary. Progress goes to
# stderr. Idempotent: a binary built from the pinned module version is reused.
#
# Environment:
#   HELM_VERSION        version to install (default below; tests assume Helm 3).
#   GKE_WI_TOOLS_DIR    cache directory (default:
#                       ${XDG_CACHE_HOME:-$HOME/.cache}/gke-wi-injector/helm-<version>).
#
# Needs only the Go toolchain and the Go module proxy.
set -euo pipefail

log() { printf 'install-helm: %s\n' "$*" >&2; }

version="${HELM_VERSION:-v3.22.0}"
if [[ ! "${version}" =~ ^v3\.[0-9]+\.[0-9]+$ ]]; then
  log "HELM_VERSION must look like v3.X.Y (got '${version}')"
  exit 1
fi

out_dir="${GKE_WI_TOOLS_DIR:-${XDG_CACHE_HOME:-${HOME}/.cache}/gke-wi-injector/helm-${version}}"
mkdir -p "${out_dir}"
out_dir="$(cd "${out_dir}" && pwd)"
bin="${out_dir}/helm"

# A `go install` build has no version stamped into `helm version` (it prints its default), so ask
# Go which module version the binary was built from.
is_fresh() {
  [[ -x "${bin}" ]] || return 1
  command -v go >/dev/null 2>&1 \
    && go version -m "${bin}" 2>/dev/null | grep -qE "^[[:space:]]+mod[[:space:]]+helm\.sh/helm/v3[[:space:]]+${version//./\\.}([[:space:]]|$)"
}

if is_fresh; then
  log "reusing ${bin} (${version})"
  printf '%s\n' "${bin}"
  exit 0
fi

if ! command -v go >/dev/null 2>&1; then
  log "the Go toolchain is needed to build helm ${version}; install Go or set HELM to a Helm 3 binary"
  exit 1
fi

log "building helm.sh/helm/v3/cmd/helm@${version} into ${out_dir}"
start=$(date +%s)
# Module mode outside any go.mod; CGO off gives a static binary that runs anywhere.
(cd "${out_dir}" && GOBIN="${out_dir}" CGO_ENABLED=0 GO111MODULE=on \
  go install "helm.sh/helm/v3/cmd/helm@${version}") >&2
log "built in $(( $(date +%s) - start ))s"

if ! is_fresh; then
  log "${bin} was not built from helm.sh/helm/v3 ${version}: $(go version -m "${bin}" 2>&1 | head -n3 || true)"
  exit 1
fi
printf '%s\n' "${bin}"
