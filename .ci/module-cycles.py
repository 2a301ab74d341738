#!/usr/bin/env python3
"""Fails when modules under src/ import each other in a cycle.

Each file is a module (`foo.rs`, `foo/mod.rs`). An edge A -> B is any path in A that names B:
`use crate::b::…`, `crate::b::x` inline, `super::…`, `self::…` (grouped `use` lists expanded).
A module's use of its own descendants is not counted as an edge back to it, and test code
(from `#[cfg(test)]` to the end of the file) is left out. Prints every cycle found (strongly
connected components of more than one module) and exits 1; prints a summary and exits 0 if none.
"""
import pathlib
import re
import sys

SRC = pathlib.Path(__file__).resolve().parent.parent / "src"


def module_of(path):
    rel = path.relative_to(SRC).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] in ("mod", "lib", "main"):
        parts = parts[:-1]
    return tuple(parts)


MODULES = {module_of(p): p for p in SRC.rglob("*.rs")}


def expand(tree):
    """Expands a `use` tree like `a::{b, c::{d, e}}` into full paths."""
    tree = tree.strip()
    depth, start, out = 0, None, []
    for i, ch in enumerate(tree):
        if ch == "{":
            if depth == 0:
                start = i
            depth += 1
        elif ch == "}":
            depth -= 1
    if "{" not in tree:
        return [tree.split(" as ")[0].strip()]
    prefix = tree[: tree.index("{")]
    inner = tree[tree.index("{") + 1 : tree.rindex("}")]
    depth, item = 0, ""
    for ch in inner + ",":
        if ch == "," and depth == 0:
            if item.strip():
                out.extend(prefix + p for p in expand(item))
            item = ""
            continue
        depth += ch == "{"
        depth -= ch == "}"
        item += ch
    return out


def resolve(module, path):
    """The module a path names (the longest prefix that is a module), or None."""
    segs = [s for s in path.split("::") if s]
    if not segs:
        return None
    if segs[0] == "crate":
        base, segs = (), segs[1:]
    elif segs[0] in ("super", "self"):
        base = module
        while segs and segs[0] in ("super", "self"):
            if segs[0] == "super":
                base = base[:-1]
            segs = segs[1:]
    else:
        return None
    best = base if base in MODULES else None
    for i in range(1, len(segs) + 1):
        if base + tuple(segs[:i]) in MODULES:
            best = base + tuple(segs[:i])
    return best


def edges(module, path):
    text = path.read_text()
    cut = re.search(r"#\[cfg\(test\)\]\s*mod\s+\w+", text)
    if cut:
        text = text[: cut.start()]
    text = re.sub(r"//[^\n]*", "", text)
    found = set()
    for use in re.findall(r"\buse\s+([^;]+);", text):
        for p in expand(use):
            found.add(resolve(module, p))
    for p in re.findall(r"\b(?:crate|super|self)(?:::\w+)+", text):
        found.add(resolve(module, p))
    return {
        m
        for m in found
        if m is not None and m != module and m[: len(module)] != module
    }


graph = {m: edges(m, p) for m, p in MODULES.items()}

index, low, stack, on_stack, sccs, counter = {}, {}, [], set(), [], [0]


def connect(v):
    index[v] = low[v] = counter[0]
    counter[0] += 1
    stack.append(v)
    on_stack.add(v)
    for w in graph[v]:
        if w not in index:
            connect(w)
            low[v] = min(low[v], low[w])
        elif w in on_stack:
            low[v] = min(low[v], index[w])
    if low[v] == index[v]:
        scc = []
        while True:
            w = stack.pop()
            on_stack.discard(w)
            scc.append(w)
            if w == v:
                break
        if len(scc) > 1:
            sccs.append(scc)


sys.setrecursionlimit(10000)
for v in graph:
    if v not in index:
        connect(v)

name = lambda m: "::".join(m) or "crate"
if sccs:
    for scc in sccs:
        members = set(scc)
        print("import cycle among: " + ", ".join(sorted(name(m) for m in scc)))
        for m in sorted(scc):
            inside = sorted(name(w) for w in graph[m] if w in members)
            print(f"  {name(m)} -> {', '.join(inside)}")
    sys.exit(1)
print(f"no import cycle among the {len(graph)} modules of src/")
