#!/usr/bin/env bash
# Validates isolation.mode = "mps" on a real NVIDIA GPU (docs/isolation.md, "Still to do"):
#   1. two containers, started through the shim and runc with memory caps X and Y, each fail to
#      allocate past their own cap (and reach most of it);
#   2. a process that raises its own CUDA_MPS_* before CUDA starts is still held at its cap;
#   3. a client of one class that faults does not take down a client of another class.
# Every check asserts: the script exits 1 on any failure, and 2 where it cannot run (no GPU, a
# tool missing), saying which. It never skips a check silently.
#
# Needs, on the GPU host, as root: nvidia-smi, nvidia-cuda-mps-control, runc, python3 with
# torch (or cupy), and the built binaries (make release: target/dist/gpu-share-runtime and
# gpu-share, or pass BIN_DIR=...). The containers' root filesystem is the host's own, read-only,
# with fresh tmpfs at /run and /tmp, so the host's python, CUDA libraries and driver are used
# as they are; the shim adds the device nodes and the MPS pipe directory.
#
#   sudo scripts/validate-mps-gpu.sh            # X = 1GiB, Y = 2GiB on GPU 0
#   sudo GPU=1 X=2GiB Y=4GiB scripts/validate-mps-gpu.sh
set -euo pipefail

HERE=$(cd "$(dirname "$0")/.." && pwd)
BIN_DIR=${BIN_DIR:-$HERE/target/dist}
GPU=${GPU:-0}
X=${X:-1GiB}
Y=${Y:-2GiB}
WORK=${WORK:-/run/gpu-share-validate}

cannot() { echo "validate-mps-gpu: cannot run: $*" >&2; exit 2; }
fail() { echo "validate-mps-gpu: FAIL: $*" >&2; FAILED=1; }
ok() { echo "validate-mps-gpu: ok: $*"; }
FAILED=0

command -v nvidia-smi >/dev/null || cannot "no nvidia-smi: run this on a host with an NVIDIA GPU"
nvidia-smi -L >/dev/null || cannot "nvidia-smi -L failed: the driver does not answer"
for tool in nvidia-cuda-mps-control runc python3; do
  command -v "$tool" >/dev/null || cannot "$tool is not on PATH"
done
[ "$(id -u)" = 0 ] || cannot "run as root (runc, MPS daemons)"
for b in gpu-share-runtime gpu-share; do
  [ -x "$BIN_DIR/$b" ] || cannot "$BIN_DIR/$b missing (make release, or BIN_DIR=...)"
done
if python3 -c 'import torch; assert torch.cuda.is_available()' 2>/dev/null; then
  LIB=torch
elif python3 -c 'import cupy' 2>/dev/null; then
  LIB=cupy
else
  cannot "python3 has neither torch (with CUDA) nor cupy"
fi
mib() { python3 -c "import sys; u={'MiB':1,'GiB':1024}; s=sys.argv[1]; print(int(s[:-3])*u[s[-3:]])" "$1"; }
XM=$(mib "$X"); YM=$(mib "$Y")

rm -rf "$WORK"; mkdir -p "$WORK/probe"
cat >"$WORK/config.toml" <<EOF
[sharing]
placement = "pack"
[state]
dir = "$WORK/state"
[log]
path = "$WORK/runtime.log"
level = "debug"
[isolation]
mode = "mps"
dir = "$WORK/mps"
memory = "$X"
max_memory = "64GiB"
EOF
export GPU_SHARE_CONFIG=$WORK/config.toml
cleanup() {
  for id in $(ls "$WORK/runc" 2>/dev/null); do runc --root "$WORK/runc" delete --force "$id" >/dev/null 2>&1 || true; done
  "$BIN_DIR/gpu-share" mps stop >/dev/null 2>&1 || true
}
trap cleanup EXIT

# Writes NVML's totals to the state dir and starts the default class ($X) on every GPU.
"$BIN_DIR/gpu-share" mps start || { fail "gpu-share mps start"; exit 1; }

# The probe each container runs: allocate 64 MiB blocks until CUDA refuses, print how far it got.
cat >"$WORK/probe/alloc.py" <<'EOF'
import os, sys
for kv in sys.argv[1:]:                       # a tenant raising its own caps, before CUDA starts
    k, v = kv.split("=", 1); os.environ[k] = v
lib = os.environ["PROBE_LIB"]
blocks, step = [], 64 << 20
try:
    if lib == "torch":
        import torch
        while True:
            blocks.append(torch.empty(step, dtype=torch.uint8, device="cuda"))
    else:
        import cupy
        while True:
            blocks.append(cupy.empty(step, dtype=cupy.uint8))
except Exception as e:                        # the out-of-memory at the cap
    print(f"reached_mib={len(blocks) * 64} error={type(e).__name__}: {str(e).splitlines()[0]}")
EOF
# A client that computes for a while and says it is alive; and one that faults.
cat >"$WORK/probe/alive.py" <<'EOF'
import os, time
lib = os.environ["PROBE_LIB"]
if lib == "torch":
    import torch
    a = torch.ones(1 << 20, device="cuda")
    for i in range(20):
        a = a * 1.0001; torch.cuda.synchronize(); print(f"tick {i}", flush=True); time.sleep(1)
else:
    import cupy
    a = cupy.ones(1 << 20)
    for i in range(20):
        a = a * 1.0001; cupy.cuda.Device().synchronize(); print(f"tick {i}", flush=True); time.sleep(1)
print("alive to the end", flush=True)
EOF
cat >"$WORK/probe/fault.py" <<'EOF'
import os
lib = os.environ["PROBE_LIB"]
if lib == "cupy":
    import cupy
    k = cupy.RawKernel(r'extern "C" __global__ void f() { *(volatile int*)0x10 = 1; }', "f")
    k((1,), (1,)); cupy.cuda.Device().synchronize()
else:
    import torch
    a = torch.ones(4, device="cuda")
    # An out-of-bounds device read through an unchecked index kernel: an illegal address.
    idx = torch.tensor([1 << 40], device="cuda")
    torch.ops.aten.index_select(a, 0, idx); torch.cuda.synchronize()
print("did not fault")
EOF

# A bundle over the host's root, read-only, running `python3 SCRIPT ARGS...` with ENV; the
# probes at /mnt (a directory every root has, so runc need make none on the host).
bundle() { # name script env-json args...
  local b=$WORK/bundles/$1 script=$2 env=$3; shift 3
  mkdir -p "$b"; runc spec --bundle "$b"
  python3 - "$b/config.json" "$script" "$env" "$WORK/probe" "$@" <<'EOF'
import json, sys
path, script, env, probe = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), sys.argv[4]
s = json.load(open(path))
s["root"] = {"path": "/", "readonly": True}
s["process"]["terminal"] = False
s["process"]["args"] = ["python3", script] + sys.argv[5:]
s["process"]["env"] += env
s["mounts"] += [{"destination": d, "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev"]}
                for d in ("/run", "/tmp")]
# The probes, where the container sees them (the host's /run is hidden by the tmpfs above).
s["mounts"].append({"destination": "/mnt", "type": "bind", "source": probe, "options": ["rbind", "ro"]})
json.dump(s, open(path, "w"))
EOF
  echo "$b"
}
run() { # id bundle
  "$BIN_DIR/gpu-share-runtime" --root "$WORK/runc" run --bundle "$2" "$1"
}
envj() { python3 -c 'import json,sys; print(json.dumps(sys.argv[1:]))' "PROBE_LIB=$LIB" "NVIDIA_VISIBLE_DEVICES=$GPU" "$@"; }
reached() { sed -n 's/.*reached_mib=\([0-9]*\).*/\1/p' <<<"$1"; }

# 1. Caps X and Y: each stops at its own.
for pair in "capx:$X:$XM" "capy:$Y:$YM"; do
  IFS=: read -r id cap capm <<<"$pair"
  out=$(run "$id" "$(bundle "$id" /mnt/alloc.py "$(envj "GPU_SHARE_MEMORY=$cap")")" 2>&1) || true
  got=$(reached "$out")
  if [ -z "$got" ]; then fail "$id: no out-of-memory seen: $out"
  elif [ "$got" -gt "$capm" ] || [ "$got" -lt $((capm / 2)) ]; then fail "$id: reached $got MiB, cap $capm MiB: $out"
  else ok "$id: held at $got MiB of a $cap cap"; fi
done
[ "$(reached "$out")" -gt "$XM" ] 2>/dev/null && ok "the two classes have different caps" || fail "the $Y container got no more than the $X one"

# 2. A tenant raising its own CUDA_MPS_* is still held at X.
out=$(run raise "$(bundle raise /mnt/alloc.py "$(envj "GPU_SHARE_MEMORY=$X")" \
  "CUDA_MPS_PINNED_DEVICE_MEM_LIMIT=0=65536M" "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE=100")" 2>&1) || true
got=$(reached "$out")
if [ -n "$got" ] && [ "$got" -le "$XM" ]; then ok "raised its own CUDA_MPS_* and was held at $got MiB"
else fail "a tenant raising its own caps reached ${got:-?} MiB (cap $XM): $out"; fi

# 3. A fault in class Y leaves a client of class X running.
run alive "$(bundle alive /mnt/alive.py "$(envj "GPU_SHARE_MEMORY=$X")")" >"$WORK/alive.out" 2>&1 &
ALIVE=$!
sleep 5
fout=$(run fault "$(bundle fault /mnt/fault.py "$(envj "GPU_SHARE_MEMORY=$Y")")" 2>&1) && fail "the fault container exited 0: $fout"
grep -q "did not fault" <<<"$fout" && fail "the fault container did not fault: $fout"
if wait "$ALIVE" && grep -q "alive to the end" "$WORK/alive.out"; then ok "class $X survived a fault in class $Y"
else fail "class $X died with class $Y's fault: $(cat "$WORK/alive.out")"; fi

echo "runtime log: $WORK/runtime.log; daemons' logs: $WORK/mps/*/log/"
[ "$FAILED" = 0 ] && echo "validate-mps-gpu: all checks passed" || exit 1
