#!/usr/bin/env bash
# Installs a pinned promtool (Prometheus's rule checker and rule unit-test runner) from its Go
# module, for the alerting-rule tests and CI.
#
# Usage:  promtool=$(scripts/install-promtool.sh | tail -n1)
#
# The LAST line of stdout is always the absolute path of the promtool binary. Progress goes to
# stderr. Idempotent: a binary built from the pinned module version is reused.
#
# Environment:
#   PROMTOOL_VERSION    Go module version of github.com/prometheus/prometheus (Prometheus 3.X.Y is
#                       module version v0.3XX.Y; default below).
#   GKE_WI_TOOLS_DIR    cache directory (default:
#                       ${XDG_CACHE_HOME:-$HOME/.cache}/gke-wi-injector/promtool-<version>).
#
# Needs only the Go toolchain and the Go module proxy.
set -euo pipefail

log() { printf 'install-promtool: %s\n' "$*" >&2; }

version="${PROMTOOL_VERSION:-v0.316.0}"
if [[ ! "${version}" =~ ^v0\.[0-9]+\.[0-9]+$ ]]; then
  log "PROMTOOL_VERSION must be a module version like v0.316.0 (got '${version}')"
  exit 1
fi

out_dir="${GKE_WI_TOOLS_DIR:-${XDG_CACHE_HOME:-${HOME}/.cache}/gke-wi-injector/promtool-${version}}"
mkdir -p "${out_dir}"
out_dir="$(cd "${out_dir}" && pwd)"
bin="${out_dir}/promtool"

is_fresh() {
  [[ -x "${bin}" ]] || return 1
  command -v go >/dev/null 2>&1 \
    && go version -m "${bin}" 2>/dev/null | grep -qE "^[[:space:]]+mod[[:space:]]+github\.com/prometheus/prometheus[[:space:]]+${version//./\\.}([[:space:]]|$)"
}

if is_fresh; then
  log "reusing ${bin} (${version})"
  printf '%s\n' "${bin}"
  exit 0
fi

if ! command -v go >/dev/null 2>&1; then
  log "the Go toolchain is needed to build promtool ${version}; install Go or set PROMTOOL to a promtool binary"
  exit 1
fi

log "building github.com/prometheus/prometheus/cmd/promtool@${version} into ${out_dir}"
start=$(date +%s)
# Module mode outside any go.mod; CGO off gives a static binary that runs anywhere.
(cd "${out_dir}" && GOBIN="${out_dir}" CGO_ENABLED=0 GO111MODULE=on \
  go install "github.com/prometheus/prometheus/cmd/promtool@${version}") >&2
log "built in $(( $(date +%s) - start ))s"

if ! is_fresh; then
  log "${bin} was not built from github.com/prometheus/prometheus ${version}: $(go version -m "${bin}" 2>&1 | head -n3 || true)"
  exit 1
fi
printf '%s\n' "${bin}"
