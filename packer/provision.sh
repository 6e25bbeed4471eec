#!/usr/bin/env bash
# Installs gpu-share on an ECS GPU-optimized AMI and makes gpu-share-runtime dockerd's default
# runtime (and the runtime named nvidia, which the ECS agent asks for).
#
# SRC:  where Packer uploaded gpu-share-runtime, gpu-share and config.toml (default /tmp/gpu-share)
# ROOT: a directory standing for / (default /); the tests run this very script against a temp
#       root laid out like the AMI. With ROOT set, nothing outside it is touched: docker is not
#       restarted and the final health check is left to the caller.
set -euo pipefail

SRC=${SRC:-/tmp/gpu-share}
ROOT=${ROOT:-/}
ROOT=${ROOT%/}
BIN=$ROOT/usr/local/bin

install -D -m 0755 "$SRC/gpu-share-runtime" "$BIN/gpu-share-runtime"
install -D -m 0755 "$SRC/gpu-share" "$BIN/gpu-share"
install -D -m 0644 "$SRC/config.toml" "$ROOT/etc/gpu-share/config.toml"

# Each setting is changed where the AMI already sets it (docker-runtimes.d, OPTIONS in
# /etc/sysconfig/docker, or daemon.json), never in two places. Where daemon.json names nvidia's
# path, it becomes the link /usr/local/libexec/gpu-share/nvidia -> gpu-share-runtime, so that
# the runtime is run with argv[0] .../nvidia for the ECS agent's GPU tasks.
"$BIN/gpu-share" configure docker \
  --config "$ROOT/etc/docker/daemon.json" \
  --sysconfig "$ROOT/etc/sysconfig/docker" \
  --runtimes-dir "$ROOT/etc/docker-runtimes.d" \
  --record "$ROOT/etc/gpu-share/docker-configure.json" \
  --channel-dir "$ROOT/usr/local/libexec/gpu-share" \
  --runtime-path "$BIN/gpu-share-runtime"

# systemd units the product ships: the metrics agent.
shopt -s nullglob
for unit in "$SRC"/systemd/*.service; do
  install -D -m 0644 "$unit" "$ROOT/etc/systemd/system/$(basename "$unit")"
  systemctl --root="${ROOT:-/}" enable "$(basename "$unit")"
done

if [[ -z $ROOT ]]; then
  systemctl restart docker
  # A broken AMI fails the build here: doctor exits non-zero on any FAIL.
  "$BIN/gpu-share" doctor
fi
echo "gpu-share installed under ${ROOT:-/}"
