#!/usr/bin/env python3
"""Writes the order in which gpu-share-runtime's hot functions are linked (`make symbol-order`).

A create runs a few hundred functions scattered over 1.7 MB of `.text`. Each 64 KiB window of
code first touched costs a page fault that maps 16 pages, and every page mapped is unmapped
again when the process execs runc. Linked in the order they run, the functions of the three
paths (pass-through, legacy create, CDI create; spread placement too) sit in a few windows.

Runs the unstripped runtime natively under gdb on a fake 4-GPU host under /dev/shm (mknod'd
nodes: run as root), with a one-shot breakpoint on every function, and records each path's
functions up to its `execve`, first run first. Native, not under valgrind: valgrind's CPU picks
other versions of glibc's string functions, and its process has no vDSO, so glibc's start-up
code that sets the vDSO up (a symbol lookup, with `strcmp`) never ran in its trace; the ifunc
resolvers run at start-up were missing too. Symbols the linker does not find (renamed functions)
are skipped by it: a stale list costs speed, never correctness.

usage: symbol-order.py RUNTIME OUTPUT
"""
import os
import re
import shutil
import stat
import struct
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


def config(base, name, root, extra, sharing='default = "all"\n'):
    """A config with the keys an operator's has (the AMI's `[sharing]`, a log level): each key
    read runs its own reader, which would otherwise be left out of the order."""
    path = f"{base}/{name}.toml"
    with open(path, "w") as f:
        f.write(f'[devices]\nroot = "{root}"\n{extra}[sharing]\n{sharing}[log]\n'
                f'path = "{base}/{name}.log"\nlevel = "info"\n[state]\ndir = "{base}/{name}-state"\n')
    return path


# What dockerd writes (with its libnetwork prestart hook), as the tests and the bench edit.
SPEC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures",
                    "docker-config.json")


# Run inside gdb: a one-shot breakpoint on every function, then the names in the order hit,
# until the process execs (static-pie: the first instruction is the entry point, so its address
# gives the load base).
GDB_SCRIPT = r"""
import gdb, os
gdb.execute("set pagination off")
gdb.execute("starti", to_string=True)
base = int(gdb.parse_and_eval("$pc")) - int(os.environ["TRACE_ENTRY"])
names = {}
for line in open(os.environ["TRACE_SYMBOLS"]):
    address, name = line.split()
    names.setdefault(int(address, 16), name)
gdb.execute("catch exec", to_string=True)
for address in names:
    gdb.Breakpoint("*0x%x" % (base + address), internal=True, temporary=True)
first = names.get(int(gdb.parse_and_eval("$pc")) - base)
hit = [first] if first else []
while True:
    try:
        gdb.execute("continue", to_string=True)
        pc = int(gdb.parse_and_eval("$pc")) - base
    except gdb.error:
        break
    if pc not in names:
        break
    hit.append(names[pc])
with open(os.environ["TRACE_OUT"], "w") as f:
    f.write("".join(n + "\n" for n in hit))
gdb.execute("kill", to_string=True)
"""


def text_symbols(runtime):
    """(address, name) of every function in `runtime`, lowest address first."""
    listed = subprocess.run(["nm", "-n", "--defined-only", runtime], check=True,
                            capture_output=True, text=True).stdout.split("\n")
    return [(p[0], p[2]) for p in (line.split() for line in listed)
            if len(p) == 3 and p[1] in "tTwW"]


def functions(runtime, cfg, args, base):
    """The functions `runtime args` runs before it execs, first run first."""
    with open(runtime, "rb") as f:
        entry = struct.unpack_from("<Q", f.read(64), 24)[0]
    symbols, script, out = f"{base}/symbols", f"{base}/trace.py", f"{base}/trace.out"
    with open(symbols, "w") as f:
        f.write("".join(f"{a} {n}\n" for a, n in text_symbols(runtime)))
    with open(script, "w") as f:
        f.write(GDB_SCRIPT)
    env = dict(os.environ, GPU_SHARE_CONFIG=cfg, GPU_SHARE_RUNC="/bin/true",
               TRACE_ENTRY=str(entry), TRACE_SYMBOLS=symbols, TRACE_OUT=out)
    subprocess.run(["gdb", "-q", "-batch", "-nx", "-x", script, "--args", runtime,
                    "--root", f"{base}/runc"] + args,
                   env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with open(out) as f:
        names = f.read().split()
    for part in (symbols, script, out):
        os.remove(part)
    return names


# glibc picks each string function's version for the CPU it runs on (an ifunc), and the CPU
# that traces is not always the one that runs the AMI: `__memmove_avx_unaligned_erms` on one,
# `__memmove_evex_unaligned_erms` on a g4dn's Cascade Lake. Every vector version of a string
# function the trace saw is linked after the traced functions, so the one the host picks is in
# the hot code too.
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
    if shutil.which("gdb") is None:
        sys.exit("symbol-order: needs gdb (apt-get install gdb)")
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
        cdi = config(base, "cdi", cdi_root, 'injection = "cdi"\n')
        spread = config(base, "spread", legacy_root, "",
                        sharing='default = "all"\nplacement = "spread"\n')
        bundle = f"{base}/bundle"
        os.makedirs(bundle)
        order, seen = [], set()

        def record(cfg, args):
            for name in functions(runtime, cfg, args, base):
                if name not in seen:
                    seen.add(name)
                    order.append(name)

        def create(cfg, cid, traced):
            shutil.copyfile(SPEC, f"{bundle}/config.json")
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
