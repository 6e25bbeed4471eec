#!/usr/bin/env bash
# The rustc flags `make release` links gpu-share-runtime with (docs/benchmarks.md says why):
# - static (no dynamic loader at every container start), with packed relative relocations;
# - its hot functions in the order they run (scripts/runtime-symbol-order.txt, written by
#   `make symbol-order`), where the linker is rust-lld (rustc's default on x86_64 Linux from
#   1.90): GNU ld does not take a symbol order, and without it the binary is only slower.
set -euo pipefail
cd "$(dirname "$0")/.."
args="-C target-feature=+crt-static -C link-arg=-Wl,-z,pack-relative-relocs"
version=$(${RUSTC:-rustc} -vV)
release=$(sed -n 's/^release: \([0-9]*\)\.\([0-9]*\).*/\1 \2/p' <<<"$version")
host=$(sed -n 's/^host: //p' <<<"$version")
read -r major minor <<<"$release"
if [[ $host == x86_64-unknown-linux-gnu ]] && ((major > 1 || minor >= 90)) \
  && [[ -s scripts/runtime-symbol-order.txt ]]; then
  args+=" -C link-arg=-Wl,--symbol-ordering-file=$PWD/scripts/runtime-symbol-order.txt"
  args+=" -C link-arg=-Wl,--no-warn-symbol-ordering"
fi
echo "$args"
