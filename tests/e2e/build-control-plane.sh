#!/usr/bin/env bash
# Builds a real kube-apiserver, kubectl and etcd from Go modules (envtest-style) for the
# end-to-end tests, pinned by tests/e2e/control-plane/go.mod.
#
# Usage:  dir=$(tests/e2e/build-control-plane.sh | tail -n1)
#
# The LAST line of stdout is always the absolute directory holding the three binaries
# (kube-apiserver, etcd, kubectl). Progress goes to stderr.
#
# Environment:
#   KUBEBUILDER_ASSETS   if it names a directory holding all three binaries, nothing is built
#                        and that directory is printed.
#   GKE_WI_E2E_BIN_DIR   output/cache directory (default:
#                        ${XDG_CACHE_HOME:-$HOME/.cache}/gke-wi-injector/k8s-<version>).
#
# A cold build needs only the Go toolchain and the Go module proxy; later runs reuse the
# binaries when `kube-apiserver --version` reports the pinned version.
set -euo pipefail

log() { printf 'build-control-plane: %s\n' "$*" >&2; }

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
mod_dir="${here}/control-plane"

# 1. Pre-built assets (e.g. from setup-envtest) win.
if [[ -n "${KUBEBUILDER_ASSETS:-}" ]]; then
  if [[ -x "${KUBEBUILDER_ASSETS}/kube-apiserver" && -x "${KUBEBUILDER_ASSETS}/etcd" \
        && -x "${KUBEBUILDER_ASSETS}/kubectl" ]]; then
    dir="$(cd "${KUBEBUILDER_ASSETS}" && pwd)"
    log "using KUBEBUILDER_ASSETS=${dir}"
    printf '%s\n' "${dir}"
    exit 0
  fi
  log "KUBEBUILDER_ASSETS=${KUBEBUILDER_ASSETS} lacks kube-apiserver/etcd/kubectl; building instead"
fi

# 2. The Kubernetes version pinned in go.mod (require k8s.io/kubernetes vX.Y.Z).
k8s_version="$(awk '$1 == "k8s.io/kubernetes" && $2 ~ /^v[0-9]/ { print $2; exit }' "${mod_dir}/go.mod")"
if [[ ! "${k8s_version}" =~ ^v([0-9]+)\.([0-9]+)\.([0-9]+)$ ]]; then
  log "cannot read the k8s.io/kubernetes version from ${mod_dir}/go.mod (got '${k8s_version}')"
  exit 1
fi
major="${BASH_REMATCH[1]}"
minor="${BASH_REMATCH[2]}"

out_dir="${GKE_WI_E2E_BIN_DIR:-${XDG_CACHE_HOME:-${HOME}/.cache}/gke-wi-injector/k8s-${k8s_version}}"
mkdir -p "${out_dir}"
out_dir="$(cd "${out_dir}" && pwd)"

is_fresh() {
  [[ -x "${out_dir}/kube-apiserver" && -x "${out_dir}/etcd" && -x "${out_dir}/kubectl" ]] || return 1
  local v
  v="$("${out_dir}/kube-apiserver" --version 2>/dev/null || true)"
  [[ "${v}" == "Kubernetes ${k8s_version}" ]]
}

if is_fresh; then
  log "binaries for ${k8s_version} already in ${out_dir}"
  printf '%s\n' "${out_dir}"
  exit 0
fi

# Serialise concurrent builds into the same directory (parallel test binaries).
if command -v flock >/dev/null 2>&1; then
  exec 9>"${out_dir}/.build.lock"
  log "waiting for the build lock ${out_dir}/.build.lock"
  flock 9
  if is_fresh; then
    log "binaries for ${k8s_version} were built meanwhile in ${out_dir}"
    printf '%s\n' "${out_dir}"
    exit 0
  fi
fi

if ! command -v go >/dev/null 2>&1; then
  log "the Go toolchain (go) is required to build the control plane"
  exit 1
fi

cd "${mod_dir}"
export GOTOOLCHAIN=local CGO_ENABLED=0

build_date="$(go list -m -f '{{with .Time}}{{.UTC.Format "2006-01-02T15:04:05Z"}}{{end}}' k8s.io/kubernetes 2>/dev/null || true)"
build_date="${build_date:-1970-01-01T00:00:00Z}"

version_ldflags=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  version_ldflags+=" -X ${pkg}.gitVersion=${k8s_version}"
  version_ldflags+=" -X ${pkg}.gitMajor=${major}"
  version_ldflags+=" -X ${pkg}.gitMinor=${minor}"
  version_ldflags+=" -X ${pkg}.gitTreeState=clean"
  version_ldflags+=" -X ${pkg}.buildDate=${build_date}"
done
ldflags="-s -w${version_ldflags}"

# Build into a scratch directory, then move into place, so that an interrupted build
# never leaves a set of binaries that looks complete.
tmp_dir="$(mktemp -d "${out_dir}/.build.XXXXXX")"
trap 'rm -rf "${tmp_dir}"' EXIT

start=$(date +%s)
build() { # build <output name> <package>
  log "go build $2 -> ${out_dir}/$1"
  go build -p 2 -trimpath -ldflags "${ldflags}" -o "${tmp_dir}/$1" "$2" >&2
}
build kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver
build kubectl k8s.io/kubernetes/cmd/kubectl
build etcd go.etcd.io/etcd/server/v3
for b in kube-apiserver kubectl etcd; do
  mv -f "${tmp_dir}/${b}" "${out_dir}/${b}"
done
log "built ${k8s_version} control plane in $(( $(date +%s) - start ))s"

if ! is_fresh; then
  log "built binaries do not report ${k8s_version}: $("${out_dir}/kube-apiserver" --version 2>&1 || true)"
  exit 1
fi
printf '%s\n' "${out_dir}"
