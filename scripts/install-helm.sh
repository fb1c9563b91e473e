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

# Built like the release binaries (helm's Makefile): the version and the Kubernetes version helm
# assumes without a cluster (`helm template`, `install --dry-run=client`, lint's deprecation
# checks) are stamped in with -ldflags; a plain `go install` would assume Kubernetes v1.20.
is_fresh() {
  [[ -x "${bin}" ]] || return 1
  command -v go >/dev/null 2>&1 || return 1
  local info
  info="$(go version -m "${bin}" 2>/dev/null)" || return 1
  grep -qE "^[[:space:]]+mod[[:space:]]+helm\.sh/helm/v3[[:space:]]+${version//./\\.}([[:space:]]|$)" <<<"${info}" \
    && grep -qF "internal/version.version=${version}" <<<"${info}"
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

start=$(date +%s)
# The Kubernetes version is 1.<minor of the k8s.io/client-go that helm's go.mod requires>, as in
# helm's Makefile.
gomod="$(cd "${out_dir}" && GO111MODULE=on go mod download -json "helm.sh/helm/v3@${version}" \
  | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",*$/\1/p')"
k8s_minor="$(awk '$1 == "k8s.io/client-go" { split($2, v, "."); print v[2] }' "${gomod}")"
if [[ ! "${k8s_minor}" =~ ^[0-9]+$ ]]; then
  log "cannot read the k8s.io/client-go version from ${gomod}"
  exit 1
fi
ldflags="-X helm.sh/helm/v3/internal/version.version=${version}"
for pkg in pkg/lint/rules pkg/chartutil; do
  ldflags+=" -X helm.sh/helm/v3/${pkg}.k8sVersionMajor=1 -X helm.sh/helm/v3/${pkg}.k8sVersionMinor=${k8s_minor}"
done
log "building helm.sh/helm/v3/cmd/helm@${version} (Kubernetes 1.${k8s_minor}) into ${out_dir}"
# Module mode outside any go.mod; CGO off gives a static binary that runs anywhere.
(cd "${out_dir}" && GOBIN="${out_dir}" CGO_ENABLED=0 GO111MODULE=on \
  go install -ldflags "${ldflags}" "helm.sh/helm/v3/cmd/helm@${version}") >&2
log "built in $(( $(date +%s) - start ))s"

if ! is_fresh; then
  log "${bin} was not built from helm.sh/helm/v3 ${version}: $(go version -m "${bin}" 2>&1 | head -n3 || true)"
  exit 1
fi
printf '%s\n' "${bin}"
