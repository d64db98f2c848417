#!/usr/bin/env python3
"""The house rules CI holds: no file over 600 lines of non-test code, and no import cycle between
modules (a module's file(s) naming `crate::other` or `super::other` is an edge to that module).

Non-test code lines: lines before a trailing `#[cfg(test)]` module that are neither blank nor
comments. Modules are files (`src/a/b.rs` and `src/a/b/mod.rs` are `a::b`); an edge to a module's
item counts as an edge to that module. Prints the graph's cycles, if any, and the largest files."""
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent / "src"
LIMIT = 600


def module_of(path):
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "mod":
        parts.pop()
    if parts in (["lib"], ["main"]):
        return parts[0]
    return "::".join(parts)


def code_lines(text):
    code = re.split(r"(?m)^#\[cfg\(test\)\]\s*\nmod tests", text)[0]
    n = 0
    for line in code.splitlines():
        s = line.strip()
        if s and not s.startswith("//"):
            n += 1
    return n


def strip_tests_and_comments(text):
    code = re.split(r"(?m)^#\[cfg\(test\)\]\s*\nmod tests", text)[0]
    return "\n".join(l.split("//")[0] if not l.strip().startswith("//") else "" for l in code.splitlines())


def main():
    files = sorted(ROOT.rglob("*.rs"))
    modules = {module_of(f): f for f in files}
    edges = {m: set() for m in modules}
    for m, f in modules.items():
        text = strip_tests_and_comments(f.read_text())
        base = m.split("::")
        for path in re.findall(r"\b(crate|super)((?:::\w+)+)", text):
            head, tail = path
            segs = tail.strip(":").split("::")
            if head == "super":
                # `super` of a mod.rs module is its parent; of a leaf file, its folder's module.
                parent = base[:-1]
                segs = parent + segs
            # the longest prefix that names a module
            for k in range(len(segs), 0, -1):
                cand = "::".join(segs[:k])
                if cand in modules:
                    if cand != m and not m.startswith(cand + "::") and not cand.startswith(m + "::"):
                        edges[m].add(cand)
                    break
    # cycles (Tarjan's strongly connected components)
    index, low, stack, on, sccs = {}, {}, [], set(), []
    counter = [0]

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
                sccs.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in modules:
        if v not in index:
            visit(v)
    failed = False
    for comp in sccs:
        failed = True
        print("import cycle: " + " <-> ".join(comp))
        for a in comp:
            print(f"  {a} -> {', '.join(sorted(e for e in edges[a] if e in comp))}")
    sizes = sorted(((code_lines(f.read_text()), module_of(f), f) for f in files), reverse=True)
    for n, m, f in sizes:
        if n > LIMIT:
            failed = True
            print(f"{f.relative_to(ROOT.parent)}: {n} lines of non-test code (at most {LIMIT})")
    print("largest: " + ", ".join(f"{f.relative_to(ROOT.parent)} {n}" for n, m, f in sizes[:5]))
    if "--graph" in sys.argv:
        for m in sorted(edges):
            print(f"{m} -> {', '.join(sorted(edges[m]))}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
