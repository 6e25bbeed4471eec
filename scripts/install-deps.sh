#!/usr/bin/env bash
# Installs what the demo, the tests and the benchmark run for real: runc, dockerd (docker.io,
# which brings containerd), a static busybox for container root filesystems, a C compiler (the
# fake NVML library), Debian's packer (`packer fmt -check` on the AMI template), from PyPI
# moto's server (a local CloudWatch API), cfn-lint and matplotlib (`make simulate`'s plot), and
# from crates.io cargo-machete (`make lint` fails on unused dependencies).
# Installs only what is missing, so it costs nothing on a machine that has them.
set -euo pipefail

need=()
command -v runc >/dev/null 2>&1 || need+=(runc)
command -v dockerd >/dev/null 2>&1 || need+=(docker.io)
command -v containerd >/dev/null 2>&1 || need+=(containerd)
dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q "install ok installed" || need+=(busybox-static)
command -v cc >/dev/null 2>&1 || need+=(gcc libc6-dev)
command -v tar >/dev/null 2>&1 || need+=(tar)
command -v packer >/dev/null 2>&1 || need+=(packer)

py=()
command -v moto_server >/dev/null 2>&1 || py+=("moto[server]")
command -v cfn-lint >/dev/null 2>&1 || py+=(cfn-lint)
python3 -c "import matplotlib" >/dev/null 2>&1 || py+=(matplotlib)
if ((${#py[@]})); then
  echo "install-deps: installing ${py[*]} from PyPI"
  python3 -m pip install -q --disable-pip-version-check "${py[@]}"
fi

if ! cargo machete --version >/dev/null 2>&1; then
  echo "install-deps: installing cargo-machete from crates.io"
  cargo install --locked --quiet cargo-machete@0.9.2
fi

if ((${#need[@]} == 0)); then
  exit 0
fi
if [[ $(id -u) != 0 ]]; then
  echo "install-deps: missing ${need[*]}; run as root (sudo make ...) to install them" >&2
  exit 1
fi
echo "install-deps: installing ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq "${need[@]}" >/dev/null
