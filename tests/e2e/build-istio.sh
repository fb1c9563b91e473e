#!/usr/bin/env bash
# Builds Istio's control plane, pilot-discovery (istiod: the real sidecar injection webhook), from
# its Go module for the Istio end-to-end test, pinned by tests/e2e/istio/go.mod, and copies the
# pieces of the same module's manifests/ the test installs: the istio-discovery Helm chart (the
# `istio` mesh ConfigMap, the `istio-sidecar-injector` ConfigMap with the default injection
# templates and values, the webhook configurations) and Istio's CRDs.
#
# Usage:  dir=$(tests/e2e/build-istio.sh | tail -n1)
#
# The LAST line of stdout is always the absolute directory holding `pilot-discovery`,
# `charts/istio-discovery/` and `crd-all.gen.yaml`. Progress goes to stderr.
#
# Environment:
#   GKE_WI_ISTIO_DIR   output/cache directory (default:
#                      ${XDG_CACHE_HOME:-$HOME/.cache}/gke-wi-injector/istio-<pseudo-version>).
#
# Needs only the Go toolchain and the Go module proxy. Later runs reuse the build when the
# binary records the pinned module version. The Go build runs at the lowest CPU priority.
set -euo pipefail

log() { printf 'build-istio: %s\n' "$*" >&2; }

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
mod_dir="${here}/istio"

version="$(awk '$1 == "require" && $2 == "istio.io/istio" { print $3; exit } $1 == "istio.io/istio" && $2 ~ /^v/ { print $2; exit }' "${mod_dir}/go.mod")"
if [[ ! "${version}" =~ ^v[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$ ]]; then
  log "cannot read the istio.io/istio version from ${mod_dir}/go.mod (got '${version}')"
  exit 1
fi

out_dir="${GKE_WI_ISTIO_DIR:-${XDG_CACHE_HOME:-${HOME}/.cache}/gke-wi-injector/istio-${version}}"
mkdir -p "${out_dir}"
out_dir="$(cd "${out_dir}" && pwd)"

is_fresh() {
  [[ -x "${out_dir}/pilot-discovery" && -f "${out_dir}/crd-all.gen.yaml" \
     && -f "${out_dir}/charts/istio-discovery/Chart.yaml" && -f "${out_dir}/VERSION" ]] || return 1
  command -v go >/dev/null 2>&1 || return 1
  go version -m "${out_dir}/pilot-discovery" 2>/dev/null \
    | grep -qE "^[[:space:]]+(mod|dep)[[:space:]]+istio\.io/istio[[:space:]]+${version//./\\.}([[:space:]]|$)"
}

if is_fresh; then
  log "pilot-discovery ${version} already in ${out_dir}"
  printf '%s\n' "${out_dir}"
  exit 0
fi

exec 9>"${out_dir}/.build.lock"
if command -v flock >/dev/null 2>&1; then
  log "waiting for the build lock ${out_dir}/.build.lock"
  flock 9
  if is_fresh; then
    log "pilot-discovery ${version} was built meanwhile in ${out_dir}"
    printf '%s\n' "${out_dir}"
    exit 0
  fi
fi

if ! command -v go >/dev/null 2>&1; then
  log "the Go toolchain (go) is required to build Istio's pilot-discovery"
  exit 1
fi

cd "${mod_dir}"
export GOTOOLCHAIN=local CGO_ENABLED=0
src="$(go mod download -json "istio.io/istio@${version}" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",*$/\1/p')"
if [[ ! -f "${src}/VERSION" ]]; then
  log "istio.io/istio@${version} has no VERSION file in '${src}'"
  exit 1
fi
line="$(tr -d '[:space:]' <"${src}/VERSION")"

tmp_dir="$(mktemp -d "${out_dir}/.build.XXXXXX")"
trap 'rm -rf "${tmp_dir}"' EXIT

start=$(date +%s)
log "go build istio.io/istio/pilot/cmd/pilot-discovery@${version} (Istio ${line}-dev) -> ${out_dir}"
nice -n 19 go build -p 2 -trimpath \
  -ldflags "-s -w -X istio.io/istio/pkg/version.buildVersion=${line}-dev+${version}" \
  -o "${tmp_dir}/pilot-discovery" istio.io/istio/pilot/cmd/pilot-discovery >&2
mkdir -p "${tmp_dir}/charts"
cp -r "${src}/manifests/charts/istio-control/istio-discovery" "${tmp_dir}/charts/istio-discovery"
cp "${src}/manifests/charts/base/files/crd-all.gen.yaml" "${tmp_dir}/crd-all.gen.yaml"
printf '%s\n' "${line}" >"${tmp_dir}/VERSION"
chmod -R u+w "${tmp_dir}"
rm -rf "${out_dir}/charts"
mv -f "${tmp_dir}/charts" "${out_dir}/charts"
mv -f "${tmp_dir}/crd-all.gen.yaml" "${tmp_dir}/VERSION" "${out_dir}/"
mv -f "${tmp_dir}/pilot-discovery" "${out_dir}/pilot-discovery"
log "built pilot-discovery ${version} in $(( $(date +%s) - start ))s"

if ! is_fresh; then
  log "${out_dir}/pilot-discovery does not record istio.io/istio ${version}"
  exit 1
fi
printf '%s\n' "${out_dir}"
