#!/usr/bin/env python3
"""The import graph of paytool's top-level modules (`crate::X` in src/, test modules left
out) and its cycles: exit 1 if there is one. Usage: scripts/import-graph.py [src]"""
import os, re, sys
root = sys.argv[1] if len(sys.argv) > 1 else "src"
mods = {}
for dirpath, _, files in os.walk(root):
    for f in files:
        if not f.endswith(".rs"):
            continue
        path = os.path.join(dirpath, f)
        rel = os.path.relpath(path, root)
        top = rel.split(os.sep)[0].removesuffix(".rs")
        if top in ("main", "lib"):
            continue
        text = open(path).read()
        # test modules may reach anywhere
        text = re.split(r"#\[cfg\(test\)\]", text)[0]
        deps = set(re.findall(r"crate::(\w+)", text))
        if top in ("report",) or os.sep in rel:
            # `super::` inside a folder is the same module
            pass
        for d in re.findall(r"use crate::\{([^}]*)\}", text):
            deps |= set(x.strip().split("::")[0] for x in d.split(","))
        deps.discard(top)
        mods.setdefault(top, set()).update(deps)
names = sorted(mods)
for n in names:
    print(f"{n:12} -> {', '.join(sorted(d for d in mods[n] if d in mods))}")
# Tarjan
index, low, stack, on, sccs, i = {}, {}, [], set(), [], [0]
def strong(v):
    index[v] = low[v] = i[0]; i[0] += 1; stack.append(v); on.add(v)
    for w in mods.get(v, ()):
        if w not in mods: continue
        if w not in index:
            strong(w); low[v] = min(low[v], low[w])
        elif w in on:
            low[v] = min(low[v], index[w])
    if low[v] == index[v]:
        comp = []
        while True:
            w = stack.pop(); on.discard(w); comp.append(w)
            if w == v: break
        if len(comp) > 1: sccs.append(sorted(comp))
for v in names:
    if v not in index: strong(v)
print("cycles:", sccs if sccs else "none")
sys.exit(1 if sccs else 0)
