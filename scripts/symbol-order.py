#!/usr/bin/env python3
"""Writes the order in which gpu-share-runtime's hot functions are linked (`make symbol-order`).

A create runs a few hundred functions scattered over 1.7 MB of `.text`. Each 64 KiB window of
code first touched costs a page fault that maps 16 pages, and every page mapped is unmapped
again when the process execs runc. Linked in the order they run, the functions of the three
paths (pass-through, legacy create, CDI create; spread placement too) sit in a few windows.

Runs the unstripped runtime under callgrind (valgrind) on a fake 4-GPU host under /dev/shm
(mknod'd nodes: run as root), records every function each path executes before it execs, and
writes their symbols, first run first, one per line. Symbols the linker does not find (renamed
functions) are skipped by it: a stale list costs speed, never correctness.

usage: symbol-order.py RUNTIME OUTPUT
"""
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile

GPUS = 4
DRIVER = "570.172.08"
LIBS = ["libcuda", "libnvidia-ml", "libnvidia-ptxjitcompiler", "libnvidia-nvvm",
        "libnvidia-opencl", "libnvidia-allocator", "libnvidia-cfg", "libnvidia-gpucomp",
        "libnvcuvid", "libnvidia-encode", "libnvidia-opticalflow", "libnvidia-fbc",
        "libnvidia-eglcore", "libnvidia-glcore", "libnvidia-glsi", "libnvidia-tls",
        "libEGL_nvidia", "libGLESv2_nvidia", "libGLX_nvidia", "libnvoptix"]


def host(base, name):
    """A fake host: device nodes, the driver's /proc entries and an nvidia-ctk-like CDI spec."""
    root = f"{base}/{name}-host"
    os.makedirs(f"{root}/dev")
    nodes = [(f"nvidia{i}", 195, i) for i in range(GPUS)] + [
        ("nvidiactl", 195, 255), ("nvidia-modeset", 195, 254),
        ("nvidia-uvm", 510, 0), ("nvidia-uvm-tools", 510, 1)]
    for node, major, minor in nodes:
        os.mknod(f"{root}/dev/{node}", 0o666 | stat.S_IFCHR, os.makedev(major, minor))
    for i in range(GPUS):
        bus = f"0000:00:{0x1b + i:02x}.0"
        d = f"{root}/proc/driver/nvidia/gpus/{bus}"
        os.makedirs(d)
        with open(f"{d}/information", "w") as f:
            f.write(f"Model: \t\t Tesla T4\nGPU UUID: \t {uuid(i)}\nBus Location: \t {bus}\n"
                    f"Device Minor: \t {i}\nGPU Excluded:\t No\n")
    return root


def uuid(i):
    return f"GPU-{i:08x}-0000-4000-8000-{i:012x}"


def cdi_spec(root):
    node = lambda p, ind: f"{ind}- path: {p}\n{ind}  hostPath: {root}{p}\n"
    y = "---\ncdiVersion: 0.5.0\nkind: nvidia.com/gpu\ndevices:\n"
    for m in range(GPUS):
        for name in (str(m), uuid(m)):
            y += f'- name: "{name}"\n  containerEdits:\n    deviceNodes:\n' + node(f"/dev/nvidia{m}", "    ")
    y += "containerEdits:\n  env:\n  - NVIDIA_VISIBLE_DEVICES=void\n  deviceNodes:\n"
    for c in ("nvidiactl", "nvidia-modeset", "nvidia-uvm", "nvidia-uvm-tools"):
        y += node(f"/dev/{c}", "  ")
    hook = f"{root}/usr/bin/nvidia-cdi-hook"
    os.makedirs(f"{root}/usr/bin")
    with open(hook, "w") as f:
        f.write("#!/bin/sh\n")
    os.chmod(hook, 0o755)
    y += "  hooks:\n"
    for args in (["nvidia-cdi-hook", "create-symlinks", "--link", "libcuda.so.1::/usr/lib64/libcuda.so"],
                 ["nvidia-cdi-hook", "update-ldcache", "--folder", "/usr/lib64"]):
        y += f"  - hookName: createContainer\n    path: {hook}\n    args:\n"
        y += "".join(f"    - {a}\n" for a in args)
    y += "  mounts:\n"
    os.makedirs(f"{root}/usr/lib64")
    for lib in LIBS:
        path = f"/usr/lib64/{lib}.so.{DRIVER}"
        with open(root + path, "w") as f:
            f.write("x\n")
        y += (f"  - hostPath: {root}{path}\n    containerPath: {path}\n    options:\n"
              "    - ro\n    - nosuid\n    - nodev\n    - rbind\n    - rprivate\n")
    os.makedirs(f"{root}/var/run/cdi")
    with open(f"{root}/var/run/cdi/nvidia.yaml", "w") as f:
        f.write(y)


def config(base, name, root, extra):
    path = f"{base}/{name}.toml"
    with open(path, "w") as f:
        f.write(f'[devices]\nroot = "{root}"\n{extra}[log]\npath = "{base}/{name}.log"\n'
                f'[state]\ndir = "{base}/{name}-state"\n')
    return path


SPEC = ('{"ociVersion":"1.0.2","process":{"terminal":false,"user":{"uid":0,"gid":0},'
        '"args":["sleep","1000"],"env":["PATH=/usr/bin:/bin","HOSTNAME=x"],"cwd":"/",'
        '"capabilities":{"bounding":["CAP_CHOWN","CAP_KILL"]},"noNewPrivileges":true},'
        '"root":{"path":"rootfs"},"hostname":"x","mounts":[{"destination":"/proc","type":"proc",'
        '"source":"proc"},{"destination":"/dev","type":"tmpfs","source":"tmpfs","options":'
        '["nosuid","strictatime","mode=755","size=65536k"]}],"linux":{"resources":{"devices":'
        '[{"allow":false,"access":"rwm"}]},"cgroupsPath":"/docker/x","namespaces":[{"type":"pid"},'
        '{"type":"mount"}],"maskedPaths":["/proc/kcore"],"readonlyPaths":["/proc/sys"]}}')


def functions(runtime, cfg, args, base):
    """The functions `runtime args` runs before it execs, first run first."""
    out = f"{base}/callgrind.out"
    env = dict(os.environ, GPU_SHARE_CONFIG=cfg, GPU_SHARE_RUNC="/bin/true")
    subprocess.run(["valgrind", "--tool=callgrind", "--demangle=no", "--dump-before=execve",
                    f"--callgrind-out-file={out}", runtime, "--root", f"{base}/runc"] + args,
                   env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    names = []
    # `.1` is the dump taken at the exec: the runtime's own run, start to execve.
    with open(f"{out}.1") as f:
        for line in f:
            m = re.match(r"^c?fn=\(\d+\) (.+)$", line.rstrip("\n"))
            if m:
                names.append(re.sub(r"'\d+$", "", m.group(1)))
    for part in os.listdir(base):
        if part.startswith("callgrind.out"):
            os.remove(f"{base}/{part}")
    return [n for n in names if not n.startswith("0x") and " " not in n]


# glibc picks each string function's version for the CPU it runs on (an ifunc), and valgrind's
# CPU is not the host's: `__memcpy_avx_unaligned_erms` under valgrind, `__memmove_evex_...` on a
# g4dn's Cascade Lake. Every vector version of a string function the trace saw is linked after
# the traced functions, so the one the host picks is in the hot code too.
VARIANT = re.compile(r"^__(mem\w*?|str\w*?|rawmemchr|wmem\w*?|wcs\w*?)_((?:avx|evex|sse)\w*?)$")
SAME_CODE = {"memcpy": ["memmove"], "mempcpy": ["memmove"]}


def variants(runtime, order):
    """The other vector versions of the glibc string functions in `order`, not in it."""
    listed = subprocess.run(["nm", "--defined-only", runtime], check=True, capture_output=True,
                            text=True).stdout.split("\n")
    text = [p[2] for p in (line.split() for line in listed) if len(p) == 3 and p[1] in "tT"]
    functions = set()
    for name in order:
        m = VARIANT.match(name)
        if m:
            functions.add(m.group(1))
            functions.update(SAME_CODE.get(m.group(1), []))
    seen = set(order)
    extra = []
    for name in text:
        m = VARIANT.match(name)
        # AVX2, EVEX and AVX-512 only: what every GPU instance's CPU picks (not TSX's `_rtm`).
        wanted = m and not m.group(2).startswith("sse") and not name.endswith("_rtm")
        if wanted and m.group(1) in functions and name not in seen:
            seen.add(name)
            extra.append(name)
    return sorted(extra)


def main():
    runtime, output = sys.argv[1], sys.argv[2]
    if shutil.which("valgrind") is None:
        sys.exit("symbol-order: needs valgrind (apt-get install valgrind)")
    base = tempfile.mkdtemp(prefix="gpu-share-symbol-order.", dir="/dev/shm")
    try:
        legacy_root = host(base, "legacy")
        hook = f"{base}/nvidia-container-runtime-hook"
        with open(hook, "w") as f:
            f.write("#!/bin/sh\n")
        os.chmod(hook, 0o755)
        legacy = config(base, "legacy", legacy_root, "")
        with open(legacy, "a") as f:
            f.write(f'[hook]\npath = "{hook}"\n')
        cdi_root = host(base, "cdi")
        cdi_spec(cdi_root)
        cdi = config(base, "cdi", cdi_root, "")
        spread = config(base, "spread", legacy_root, "")
        with open(spread, "a") as f:
            f.write('[sharing]\nplacement = "spread"\n')
        bundle = f"{base}/bundle"
        os.makedirs(bundle)
        order, seen = [], set()

        def record(cfg, args):
            for name in functions(runtime, cfg, args, base):
                if name not in seen:
                    seen.add(name)
                    order.append(name)

        def create(cfg, cid, traced):
            with open(f"{bundle}/config.json", "w") as f:
                f.write(SPEC)
            args = ["create", "--bundle", bundle, cid]
            if traced:
                return record(cfg, args)
            env = dict(os.environ, GPU_SHARE_CONFIG=cfg, GPU_SHARE_RUNC="/bin/true")
            subprocess.run([runtime, "--root", f"{base}/runc"] + args, env=env, check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        # Pass-through first: it is every command but create. Each create path is traced in
        # its steady state: after a first create has digested the CDI spec and made the state.
        record(legacy, ["state", "x"])
        for i, cfg in enumerate([legacy, cdi, spread]):
            create(cfg, f"warm{i}", False)
            create(cfg, f"c{i}", True)
        order += variants(runtime, order)
        with open(output, "w") as f:
            f.write("".join(n + "\n" for n in order))
        print(f"symbol-order: {len(order)} functions -> {output}")
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
