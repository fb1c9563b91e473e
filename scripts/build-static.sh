#!/usr/bin/env bash
# Builds the static release binary that the image ships (webhook server and wait init
# container in one), checks that it is static, and smoke-runs it.
#
# Usage:  bin=$(scripts/build-static.sh | tail -n1)
#
# The LAST line of stdout is always the absolute path of the binary. Progress goes to stderr.
# The Dockerfile runs this same script, so CI and the image build the binary the same way.
#
# Two ways to a static x86_64 binary, tried in this order:
#   musl   rustup target x86_64-unknown-linux-musl (+ musl-gcc from apt's musl-tools for
#          ring's C code). Preferred: musl's resolver needs no NSS modules at run time.
#   gnu    x86_64-unknown-linux-gnu with -C target-feature=+crt-static against glibc's static
#          libraries (libc6-dev). Used when the musl target cannot be installed.
#
# Environment:
#   STATIC_LIBC          musl | gnu | auto (default auto: musl, else gnu).
#   CARGO_TARGET_DIR     build directory (default: target/static, apart from the debug tree).
#   BUILD_STATIC_OFFLINE set to 1 to never call rustup or apt-get.
set -euo pipefail

log() { printf 'build-static: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${root}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${root}/target/static}"
want="${STATIC_LIBC:-auto}"
offline="${BUILD_STATIC_OFFLINE:-0}"
[[ "${want}" =~ ^(auto|musl|gnu)$ ]] || die "STATIC_LIBC must be musl, gnu or auto (got '${want}')"

as_root() {
  if [[ "$(id -u)" == 0 ]]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else return 1; fi
}

apt_install() {
  [[ "${offline}" == 1 ]] && return 1
  command -v apt-get >/dev/null || return 1
  log "apt-get install $*"
  as_root apt-get update -qq >&2 || true
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "$@" >&2
}

musl_ready() {
  rustup target list --installed 2>/dev/null | grep -qx x86_64-unknown-linux-musl || {
    [[ "${offline}" == 1 ]] && return 1
    log "rustup target add x86_64-unknown-linux-musl"
    timeout 300 rustup target add x86_64-unknown-linux-musl >&2 || return 1
  }
  command -v musl-gcc >/dev/null || apt_install musl-tools || return 1
  command -v musl-gcc >/dev/null
}

gnu_ready() {
  local missing=()
  for lib in libc.a libm.a libpthread.a libdl.a librt.a libutil.a; do
    [[ -e "/usr/lib/x86_64-linux-gnu/${lib}" ]] || missing+=("${lib}")
  done
  if ((${#missing[@]})); then
    log "glibc static libraries missing: ${missing[*]}"
    apt_install libc6-dev || return 1
  fi
  [[ -e /usr/lib/x86_64-linux-gnu/libc.a ]]
}

libc=""
case "${want}" in
  musl) musl_ready || die "the musl target or musl-gcc is not available (STATIC_LIBC=musl)"; libc=musl ;;
  gnu) gnu_ready || die "glibc's static libraries (libc6-dev) are not available (STATIC_LIBC=gnu)"; libc=gnu ;;
  auto)
    if musl_ready; then libc=musl
    else
      log "musl unavailable; falling back to glibc with +crt-static"
      gnu_ready || die "neither the musl target nor glibc's static libraries (libc6-dev) are available"
      libc=gnu
    fi ;;
esac

start=$(date +%s)
if [[ "${libc}" == musl ]]; then
  target=x86_64-unknown-linux-musl
  log "cargo build --release --target ${target} (musl, static by default) into ${CARGO_TARGET_DIR}"
  CC_x86_64_unknown_linux_musl=musl-gcc \
    cargo build --release --locked --target "${target}" --bin gke-wi-injector >&2
else
  target=x86_64-unknown-linux-gnu
  log "cargo build --release --target ${target} with +crt-static into ${CARGO_TARGET_DIR}"
  # --target keeps RUSTFLAGS away from build scripts and proc macros, which stay dynamic.
  RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
    cargo build --release --locked --target "${target}" --bin gke-wi-injector >&2
fi
log "built in $(( $(date +%s) - start ))s"

bin="${CARGO_TARGET_DIR}/${target}/release/gke-wi-injector"
[[ -x "${bin}" ]] || die "no binary at ${bin}"

# Static means: no program interpreter and no shared libraries. Check with what is there.
if command -v file >/dev/null; then
  desc="$(file -L "${bin}")"
  log "${desc}"
  [[ "${desc}" == *"statically linked"* || "${desc}" == *"static-pie linked"* ]] \
    || die "${bin} is not statically linked: ${desc}"
fi
if command -v ldd >/dev/null; then
  if ldd_out="$(ldd "${bin}" 2>&1)"; then
    [[ "${ldd_out}" == *"statically linked"* ]] || die "${bin} has shared libraries: ${ldd_out}"
  else
    [[ "${ldd_out}" == *"not a dynamic executable"* ]] || die "ldd ${bin}: ${ldd_out}"
  fi
fi
if command -v readelf >/dev/null && readelf -l "${bin}" | grep -q 'INTERP'; then
  die "${bin} asks for a program interpreter (dynamic loader)"
fi

# Smoke: the binary runs with an empty environment and knows both of its jobs.
version="$(env -i "${bin}" --version)" || die "${bin} --version failed"
[[ "${version}" == "gke-wi-injector "* ]] || die "unexpected --version output: ${version}"
# The allocator's build flags (.cargo/config.toml) reached the binary: arena memory is committed
# as it is used, which keeps the server's resident memory small.
options="$(env -i MIMALLOC_VERBOSE=1 "${bin}" --version 2>&1)" || die "${bin} --version failed"
[[ "${options}" == *"option 'arena_eager_commit': 0"* ]] \
  || die "${bin}: mimalloc built without .cargo/config.toml's flags (arena_eager_commit is not 0)"
env -i "${bin}" wait --help | grep -q -- '--metadata-host' || die "${bin} wait --help lacks --metadata-host"
env -i "${bin}" serve --help | grep -q -- '--tls-cert' || die "${bin} serve --help lacks --tls-cert"
log "${version} (${libc}, $(du -h "${bin}" | cut -f1)) ok"
printf '%s\n' "${bin}"
