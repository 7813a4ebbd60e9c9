#!/usr/bin/env python3
"""Check the layering of libgpuml/ and kernels/ (libgpuml/README.md, "Layers").

Builds a dependency graph of the library's source files from two kinds of
edges, read from the sources themselves (no build needed):
  - include: `#include "x"` resolved against the including file's folder,
    libgpuml/, kernels/ and include/;
  - call:    file A uses a function that file B defines without `static`
             (a call, or its address taken), A != B.
Then it fails (exit 1) on
  1. a cycle among files (a strongly connected set of two or more files),
  2. a cycle among folders,
  3. a folder using a folder of a higher layer (LAYERS below).
Headers count as files: a header's own static inline bodies call like .c
files do. A function defined in two files (a CUDA file and its stub) is an
edge to both.

usage: tools/check_layers.py [--root DIR] [--graph] [--self-test]
  --graph      also print the folder edges, with one example each
  --self-test  apply each of MUTATIONS to a copy of the tree and require
               the check to fail on it (run by meson test too)
"""
import argparse
import os
import re
import sys

# Lowest first. A folder may use folders of its own layer or below, never
# above; folders of one layer must not form a cycle either.
LAYERS = [
    ["core"],
    ["kernels"],
    ["ops", "io"],
    ["graph", "autograd"],
    ["nn", "optim"],
    ["train", "infer", "dist"],
]

# Known upward edges, each with the reason it is still there. Keep this short.
ALLOWED = {}

# Known file cycles, each with the reason it is still there: a cycle that
# is exactly one of these is reported but does not fail; one that grows does.
KNOWN_CYCLES = {}

SRC_EXT = (".c", ".h", ".cu", ".cuh")


def strip(text):
    """Drop comments, string and character literals (keep line structure)."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append("\n" * text.count("\n", i, j))
            i = j
        elif text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif c in "\"'":
            j = i + 1
            while j < n and text[j] != c:
                j += 2 if text[j] == "\\" else 1
            out.append(c + c)
            i = j + 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)
IDENT = re.compile(r"[A-Za-z_]\w*")
KEYWORDS = {"if", "for", "while", "switch", "return", "sizeof", "defined", "_Static_assert", "static_assert",
            "__attribute__", "__declspec", "alignof", "_Alignof", "do", "else", "case"}


def scan(code):
    """Functions of one stripped file: {name: (is_static, identifiers its body uses)},
    plus the identifiers used in file-scope initialisers (tables of functions)."""
    code = re.sub(r"^[ \t]*#(?:[^\n]*\\\n)*[^\n]*", "", code, flags=re.M)  # preprocessor lines
    funcs, init_uses = {}, set()
    depth = 0
    decl_start = 0  # start of the current file-scope declaration
    eq = -1         # its first '=' (an initialiser follows)
    body = None     # (name, is_static, uses) of the function being read
    i, n = 0, len(code)
    while i < n:
        c = code[i]
        if c == "{":
            if depth == 0:
                head = code[decl_start:i]
                m = re.search(r"([A-Za-z_]\w*)\s*\((?:[^()]|\([^()]*\))*\)\s*$", head, re.S)
                if eq < 0 and m and m.group(1) not in KEYWORDS:
                    body = (m.group(1), bool(re.search(r"\bstatic\b", head[: m.start()])), set())
            depth += 1
        elif c == "}":
            depth = max(depth - 1, 0)
            if depth == 0:
                if body:
                    funcs[body[0]] = (body[1], body[2])
                body = None
                decl_start, eq = i + 1, -1
        elif c == ";" and depth == 0:
            decl_start, eq = i + 1, -1
        elif c == "=" and depth == 0 and eq < 0:
            eq = i
        else:
            m = IDENT.match(code, i)
            if m:
                if body:
                    body[2].add(m.group(0))
                elif eq >= 0:
                    init_uses.add(m.group(0))
                i = m.end()
                continue
        i += 1
    return funcs, init_uses


def folder_of(rel):
    parts = rel.split("/")
    return parts[1] if parts[0] == "libgpuml" and len(parts) > 2 else parts[0]


def check(root):
    """(errors, notes, folder edges) of the tree at root."""
    files = []
    for top in ("libgpuml", "kernels"):
        for d, _, names in os.walk(os.path.join(root, top)):
            files += [os.path.relpath(os.path.join(d, f), root) for f in names if f.endswith(SRC_EXT)]
    files.sort()
    known = set(files)

    edges = {}  # (a, b) -> why: folder graph (includes and calls)
    calls = {}  # (a, b) -> why: translation unit a calls a function of unit b

    def add(table, a, b, why):
        if a != b:
            table.setdefault((a, b), why)

    defs_by_name = {}  # non-static function -> the units defining it
    inline_uses = {}   # static function of a header -> what its body uses
    unit_uses = {}
    for f in files:
        with open(os.path.join(root, f), encoding="utf-8", errors="replace") as fh:
            raw = fh.read()
        for inc in INCLUDE.findall(raw):
            for base in (os.path.dirname(f), "libgpuml", "kernels"):
                cand = os.path.normpath(os.path.join(base, inc))
                if cand in known:
                    add(edges, f, cand, "includes")
                    break
        funcs, init_uses = scan(strip(raw))
        header = f.endswith((".h", ".cuh"))
        uses = set(init_uses)
        for name, (is_static, body) in funcs.items():
            if header and is_static:
                inline_uses.setdefault(name, set()).update(body)
            elif not header:
                uses |= body
                if not is_static:
                    defs_by_name.setdefault(name, set()).add(f)
        if not header:
            unit_uses[f] = uses
    for f, uses in unit_uses.items():
        # what the header functions it uses call, transitively
        todo = [w for w in uses if w in inline_uses]
        seen = set(todo)
        while todo:
            for w in inline_uses[todo.pop()]:
                if w in inline_uses and w not in seen:
                    seen.add(w)
                    todo.append(w)
                uses.add(w)
        for w in sorted(uses):
            for g in defs_by_name.get(w, ()):
                add(calls, f, g, "calls " + w)
                add(edges, f, g, "calls " + w)

    errors, notes = [], []
    rank = {}
    for r, layer in enumerate(LAYERS):
        for fo in layer:
            rank[fo] = r
    folders = sorted({folder_of(f) for f in files})
    for fo in folders:
        if fo not in rank:
            errors.append("folder %s has no layer: add it to LAYERS in tools/check_layers.py and to "
                          "libgpuml/README.md" % fo)

    # 3. upward uses
    fedges = {}
    for (a, b), why in sorted(edges.items()):
        fa, fb = folder_of(a), folder_of(b)
        if fa == fb:
            continue
        fedges.setdefault((fa, fb), (a, b, why))
        if fa in rank and fb in rank and rank[fb] > rank[fa] and (a, b) not in ALLOWED:
            errors.append("layer: %s (%s) %s %s (%s, a higher layer)" % (a, fa, why, b, fb))

    # 1, 2. cycles: strongly connected components (Tarjan, iterative)
    def sccs(nodes, adj):
        index, low, on, stack, out = {}, {}, set(), [], []
        counter = [0]
        for s in nodes:
            if s in index:
                continue
            work = [(s, iter(adj.get(s, ())))]
            index[s] = low[s] = counter[0]
            counter[0] += 1
            stack.append(s)
            on.add(s)
            while work:
                v, it = work[-1]
                nxt = next(it, None)
                if nxt is not None:
                    if nxt not in index:
                        index[nxt] = low[nxt] = counter[0]
                        counter[0] += 1
                        stack.append(nxt)
                        on.add(nxt)
                        work.append((nxt, iter(adj.get(nxt, ()))))
                    elif nxt in on:
                        low[v] = min(low[v], index[nxt])
                    continue
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on.discard(w)
                        comp.append(w)
                        if w == v:
                            break
                    if len(comp) > 1:
                        out.append(sorted(comp))
        return out

    # Files: the units' calls (a header's functions count where they are
    # used) and the headers' includes among themselves.
    fgraph = dict(calls)
    for (a, b), why in edges.items():
        if why == "includes" and a.endswith((".h", ".cuh")):
            fgraph[(a, b)] = why
    adj = {}
    for (a, b) in fgraph:
        adj.setdefault(a, []).append(b)
    for comp in sccs(files, adj):
        inside = set(comp)
        lines = ["  %s %s %s" % (a, why, b) for (a, b), why in sorted(fgraph.items()) if a in inside and b in inside]
        if frozenset(comp) in KNOWN_CYCLES:
            notes.append("known cycle among files %s: %s" % (", ".join(comp), KNOWN_CYCLES[frozenset(comp)]))
        else:
            errors.append("cycle among files %s:\n%s" % (", ".join(comp), "\n".join(lines)))
    fadj = {}
    for (fa, fb) in fedges:
        a, b, _ = fedges[(fa, fb)]
        if (a, b) not in ALLOWED:
            fadj.setdefault(fa, []).append(fb)
    for comp in sccs(folders, fadj):
        inside = set(comp)
        lines = ["  %s -> %s (e.g. %s %s %s)" % (fa, fb, *fedges[(fa, fb)][:1], fedges[(fa, fb)][2],
                                                 fedges[(fa, fb)][1])
                 for (fa, fb) in sorted(fedges) if fa in inside and fb in inside]
        errors.append("cycle among folders %s:\n%s" % (", ".join(comp), "\n".join(lines)))

    return errors, notes, fedges, len(files), len(edges), len(folders)


# Mutations --self-test applies one at a time to a copy of the tree; each
# must make the check fail. (file, text appended, what it breaks)
MUTATIONS = [
    ("libgpuml/infer/slots.c", "\nvoid eng_demo_cycle(gpuml_engine *e, eng_batch *b) { (void)eng_take_batch(e, b); }\n",
     "a file cycle: slots.c <-> queue.c"),
    ("libgpuml/core/tensor.c", "\nvoid gpuml_demo_up(void) { gpuml_model_destroy(NULL); }\n",
     "core calling nn: an upward use and a folder cycle"),
    ("libgpuml/ops/unary.c", '\n#include "infer/engine_impl.h"\n',
     "ops including an infer header: an upward include"),
]


def self_test(root):
    import shutil
    import tempfile
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        for top in ("libgpuml", "kernels"):
            shutil.copytree(os.path.join(root, top), os.path.join(tmp, top))
        if check(tmp)[0]:
            print("check_layers --self-test: the unmutated copy already fails")
            return 1
        for path, text, what in MUTATIONS:
            full = os.path.join(tmp, path)
            with open(full, encoding="utf-8") as fh:
                orig = fh.read()
            with open(full, "w", encoding="utf-8") as fh:
                fh.write(orig + text)
            errors = check(tmp)[0]
            with open(full, "w", encoding="utf-8") as fh:
                fh.write(orig)
            print("check_layers --self-test: %s: %s" % (what, "caught (%d problems)" % len(errors) if errors
                                                          else "NOT caught"))
            for e in errors:
                print("    " + e.splitlines()[0])
            ok = ok and bool(errors)
    return 0 if ok else 1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    ap.add_argument("--graph", action="store_true", help="print the folder edges")
    ap.add_argument("--self-test", action="store_true", help="require each of MUTATIONS to fail the check")
    args = ap.parse_args()
    root = os.path.abspath(args.root)
    if args.self_test:
        return self_test(root)
    errors, notes, fedges, nfiles, nedges, nfolders = check(root)
    if args.graph:
        for (fa, fb), (a, b, why) in sorted(fedges.items()):
            print("%-9s -> %-9s e.g. %s %s %s" % (fa, fb, a, why, b))
    for m in notes:
        print("check_layers: note: " + m)
    for e in errors:
        print("check_layers: " + e)
    if errors:
        print("check_layers: FAILED (%d problem%s; layers and rules: libgpuml/README.md)"
              % (len(errors), "" if len(errors) == 1 else "s"))
        return 1
    print("check_layers: %d files, %d edges, %d folders: no cycle, no upward use" % (nfiles, nedges, nfolders))
    return 0


if __name__ == "__main__":
    sys.exit(main())
