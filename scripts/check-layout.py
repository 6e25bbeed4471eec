#!/usr/bin/env python3
"""The layout rules `make lint` holds the crate to, which neither rustc nor clippy checks:

- no module imports a module that imports it back (directly or round a longer loop);
- no file under src/ is longer than MAX_LINES.

A module is a file under src/. An edge A -> B is any path in A's code (`use crate::..`,
`use super::..`, `use child::..`, `crate::x::y` inline, `child::item` for a declared child)
that reaches module B or an item of B. Cycles are the strongly connected components with more
than one module. Tests (`#[cfg(test)] mod tests` and `tests.rs` files) are left out: a test may
look at whatever it checks. Set MODULE_EDGES=1 to print the graph.
"""
import os
import re
import sys

SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")
MAX_LINES = 400


def module_of(path):
    rel = os.path.relpath(path, SRC)[:-3].split(os.sep)
    if rel[0] == "bin":
        return None
    if rel[-1] in ("mod", "lib"):
        rel = rel[:-1]
    return tuple(rel)


def code_without_tests(text):
    i = text.find("#[cfg(test)]\nmod tests")
    return text if i < 0 else text[:i]


def use_paths(text):
    """Every path a file names, as lists of segments, braces expanded."""
    out = []
    for m in re.finditer(r"\buse\s+([^;]+);", text):
        out.extend(expand(re.sub(r"\s+", "", m.group(1))))
    for m in re.finditer(r"\b(crate(?:::\w+)+)", text):
        out.append(m.group(1).split("::"))
    return out


def expand(tree):
    if "{" not in tree:
        return [tree.split(" as ")[0].split("::")]
    head, _, rest = tree.partition("{")
    inner = rest[: rest.rfind("}")]
    parts, depth, cur = [], 0, ""
    for ch in inner:
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
            continue
        depth += ch == "{"
        depth -= ch == "}"
        cur += ch
    parts.append(cur)
    return [p for part in parts if part for p in expand(head + part)]


def main():
    modules = {}
    for dirpath, _, files in os.walk(SRC):
        for f in files:
            if f.endswith(".rs") and f != "tests.rs":
                m = module_of(os.path.join(dirpath, f))
                if m is not None:
                    modules[m] = os.path.join(dirpath, f)
    edges = {m: set() for m in modules}
    for m, path in modules.items():
        code = code_without_tests(open(path).read())
        children = set(re.findall(r"^\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)\s*;", code, re.M))
        children.discard("tests")
        paths = use_paths(code)
        for child in children:
            if re.search(r"\b" + child + r"::", code):
                paths.append([child])
        for segs in paths:
            if segs[0] == "crate":
                target = list(segs[1:])
            elif segs[0] == "super":
                base = list(m)
                while segs and segs[0] == "super":
                    base = base[:-1]
                    segs = segs[1:]
                target = base + list(segs)
            elif segs[0] == "self":
                target = list(m) + list(segs[1:])
            elif segs[0] in children:
                target = list(m) + list(segs)
            else:
                continue
            while target and tuple(target) not in modules:
                target = target[:-1]
            t = tuple(target)
            if t and t != m:
                edges[m].add(t)
    if os.environ.get("MODULE_EDGES"):
        for k, v in sorted(edges.items()):
            print("::".join(k) or "crate", "->", ", ".join(sorted("::".join(x) for x in v)))
    # Tarjan's strongly connected components.
    index, low, stack, on, sccs, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                sccs.append(comp)

    sys.setrecursionlimit(10000)
    for v in modules:
        if v not in index:
            visit(v)
    for comp in sccs:
        names = sorted("::".join(c) or "crate" for c in comp)
        print("cycle: " + " <-> ".join(names))
    long_files = []
    for dirpath, _, files in os.walk(SRC):
        for f in files:
            path = os.path.join(dirpath, f)
            n = sum(1 for _ in open(path))
            if f.endswith(".rs") and n > MAX_LINES:
                long_files.append(path)
                print(f"too long: {os.path.relpath(path, os.path.join(SRC, '..'))}: {n} lines (at most {MAX_LINES})")
    if sccs or long_files:
        sys.exit(1)
    print(f"layout: no import cycles among {len(modules)} modules, no file over {MAX_LINES} lines")


main()
