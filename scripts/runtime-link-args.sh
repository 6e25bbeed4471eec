#!/usr/bin/env bash
# The rustc flags `make release` links gpu-share-runtime with (docs/benchmarks.md says why).
# usage: runtime-link-args.sh [CARGO]  (the cargo command make uses; its toolchain decides)
# - static: no dynamic loader at every container start;
# - packed relative relocations (RELR), only where the build host's glibc is 2.36 or later: a
#   static binary carries that glibc's start-up code, and an older one does not apply them (the
#   binary would crash at its first instruction that reads a relocated pointer);
# - its hot functions in the order they run (scripts/runtime-symbol-order.txt, written by
#   `make symbol-order`), only where the linker is rust-lld (rustc's default on x86_64 Linux from
#   1.90): GNU ld does not take a symbol order. Without it the binary is only slower.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo=${1:-cargo}
args="-C target-feature=+crt-static"

at_least() { # at_least MAJOR.MINOR WANT_MAJOR WANT_MINOR
  local major=${1%%.*} rest=${1#*.}
  local minor=${rest%%.*}
  ((major > $2 || (major == $2 && minor >= $3)))
}

glibc=$(getconf GNU_LIBC_VERSION 2>/dev/null | awk '{print $2}') || glibc=""
if [[ -n $glibc ]] && at_least "$glibc" 2 36; then
  args+=" -C link-arg=-Wl,-z,pack-relative-relocs"
fi

# shellcheck disable=SC2086 # CARGO may carry a toolchain (`cargo +1.85`)
version=$($cargo -vV)
release=$(sed -n 's/^release: //p' <<<"$version")
host=$(sed -n 's/^host: //p' <<<"$version")
if [[ $host == x86_64-unknown-linux-gnu ]] && at_least "$release" 1 90 \
  && [[ -z ${RUSTFLAGS:-} ]] && [[ -s scripts/runtime-symbol-order.txt ]]; then
  args+=" -C link-arg=-Wl,--symbol-ordering-file=$PWD/scripts/runtime-symbol-order.txt"
  args+=" -C link-arg=-Wl,--no-warn-symbol-ordering"
fi
echo "$args"
