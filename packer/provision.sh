#!/usr/bin/env bash
# Installs gpu-share on an ECS GPU-optimized AMI and makes gpu-share-runtime dockerd's default
# runtime (and the runtime named nvidia, which the ECS agent asks for).
#
# Then, so that every boot has GPUs a daemon-reload cannot take and a current CDI spec:
# gpu-share-dev-char.service runs `gpu-share doctor --fix` (the /dev/char links), and the NVIDIA
# toolkit's nvidia-cdi-refresh units (toolkit >= 1.18) or our gpu-share-cdi-generate.service
# regenerate /var/run/cdi/nvidia.yaml. See packer/README.md and docs/dev-char.md.
#
# SRC:  where Packer uploaded gpu-share-runtime, gpu-share, config.toml and units/ (default
#       /tmp/gpu-share)
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

# systemd units the product ships: the metrics agent, and the MPS daemons (idle unless
# isolation.mode = "mps").
shopt -s nullglob
for unit in "$SRC"/systemd/*.service; do
  install -D -m 0644 "$unit" "$ROOT/etc/systemd/system/$(basename "$unit")"
  systemctl --root="${ROOT:-/}" enable "$(basename "$unit")"
done

SYSTEMD=$ROOT/etc/systemd/system

# The path of a program on the AMI (under ROOT when set), or nothing.
tool() {
  if [[ -n $ROOT ]]; then
    PATH="$ROOT/usr/local/sbin:$ROOT/usr/local/bin:$ROOT/usr/sbin:$ROOT/usr/bin" command -v "$1" || true
  else
    command -v "$1" || true
  fi
}

# Whether the AMI has the unit file NAME (installed by a package, or ours).
# (The list is read whole first: with pipefail, grep -q quitting early could fail the pipe.)
has_unit() {
  local units
  units=$(systemctl --root="${ROOT:-/}" list-unit-files --no-legend "$1" 2>/dev/null || true)
  grep -q "^$1[[:space:]]" <<<"$units"
}

# A current CDI spec at every boot: the toolkit's own refresh units where it has them (1.18 and
# later: regenerated at boot and when the driver or toolkit changes), else our oneshot unit
# around `nvidia-ctk cdi generate`. /var/run is a tmpfs, so a spec written now is not in the AMI.
CTK=$(tool nvidia-ctk)
CDI_UNIT=
if has_unit nvidia-cdi-refresh.service && has_unit nvidia-cdi-refresh.path; then
  CDI_UNIT=nvidia-cdi-refresh.service
  systemctl --root="${ROOT:-/}" enable nvidia-cdi-refresh.path nvidia-cdi-refresh.service
  # The toolkit orders its unit before nothing; the first task's container must find the spec.
  install -D -m 0644 "$SRC/units/nvidia-cdi-refresh-before-docker.conf" \
    "$SYSTEMD/nvidia-cdi-refresh.service.d/gpu-share.conf"
elif [[ -n $CTK ]]; then
  CDI_UNIT=gpu-share-cdi-generate.service
  sed "s|@NVIDIA_CTK@|${CTK#"$ROOT"}|g" "$SRC/units/gpu-share-cdi-generate.service" \
    >"$SYSTEMD/$CDI_UNIT"
  chmod 0644 "$SYSTEMD/$CDI_UNIT"
  systemctl --root="${ROOT:-/}" enable "$CDI_UNIT"
else
  # Not fatal: the runtime's legacy path (the NVIDIA hook) needs no CDI spec.
  echo "provision.sh: WARNING: no nvidia-ctk on this AMI: no CDI spec is generated at boot;" \
    "containers get GPUs through the NVIDIA hook, and CDI injection finds no spec" >&2
fi

# At bake time, run the CDI unit as boot will: one that writes no spec on this hardware fails
# the build, with this line rather than systemctl's.
if [[ -z $ROOT && -n $CDI_UNIT ]]; then
  systemctl start "$CDI_UNIT" || true
  if ! compgen -G "/var/run/cdi/nvidia*.yaml" >/dev/null && ! compgen -G "/etc/cdi/nvidia*.yaml" >/dev/null; then
    echo "provision.sh: $CDI_UNIT ran but wrote no NVIDIA CDI spec in /var/run/cdi or /etc/cdi:" \
      "see journalctl -u $CDI_UNIT" >&2
    exit 1
  fi
fi

# /dev/char links: made at every boot (/dev is rebuilt at boot) before docker and ECS start,
# and now (after the CDI unit, as at boot): a link --fix cannot make fails the build.
install -D -m 0644 "$SRC/units/gpu-share-dev-char.service" "$SYSTEMD/gpu-share-dev-char.service"
systemctl --root="${ROOT:-/}" enable gpu-share-dev-char.service
"$BIN/gpu-share" doctor --fix \
  --config "$ROOT/etc/gpu-share/config.toml" \
  --daemon-json "$ROOT/etc/docker/daemon.json"

if [[ -z $ROOT ]]; then
  systemctl restart docker
  # A broken AMI fails the build here: doctor exits non-zero on any FAIL.
  "$BIN/gpu-share" doctor
fi
echo "gpu-share installed under ${ROOT:-/}"
