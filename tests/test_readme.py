#!/usr/bin/env python3
"""The READMEs as written work (README.md, python-bindings/README.md).

    test_readme.py SOURCE_ROOT BUILD_ROOT

* Every link and every repository path the text names exists in the
  repository, and nothing points outside it (`../`).
* Every ```c block is the program it shows: its lines (stripped; blank
  lines and `/* ... */` elision lines aside) appear in this order in one of
  examples/*.c, which the build compiles; examples/readme_train.c is run
  here on generated events.
* Every ```python block runs, as a script, in a scratch directory that has
  the repository's examples/ (the snippets run from the repository root).
* Every ```sh command: the build's programs are run with the README's
  arguments followed by --help (which parses and checks every argument
  before it, then exits 0); scripts, files and directories it names exist.
  The block marked `readme-test: install` (meson install, pkg-config, cc)
  is run verbatim by tests/pkgconfig_check.sh from tools/test.sh: it
  reconfigures the build directory, which must not happen during
  `meson test`. tools/run_main.sh, tools/test.sh and `pip install` take
  minutes: they are checked to exist here, and run by CI itself.

Python blocks are skipped without numpy and in sanitizer builds.
"""
import glob
import os
import re
import shlex
import subprocess
import sys
import tempfile

src, build = (os.path.realpath(p) for p in sys.argv[1:3])
READMES = ["README.md", "python-bindings/README.md"]
TOP = ("examples/", "tools/", "bench/", "docs/", "include/", "tests/", "python-bindings/", "libgpuml/", "kernels/",
       ".ci/")
failures, skipped = [], []


def blocks(text):
    """(language, first line number, lines, the line before the fence)"""
    out, lines = [], text.split("\n")
    i = 0
    while i < len(lines):
        m = re.match(r"^```(\w*)\s*$", lines[i])
        if m:
            j = i + 1
            while j < len(lines) and not lines[j].startswith("```"):
                j += 1
            before = next((lines[k] for k in range(i - 1, -1, -1) if lines[k].strip()), "")
            out.append((m.group(1), i + 1, lines[i + 1:j], before))
            i = j + 1
        else:
            i += 1
    return out


def brace_expand(p):
    m = re.search(r"\{([^{}]*)\}", p)
    if not m:
        return [p]
    return [q for alt in m.group(1).split(",") for q in brace_expand(p[:m.start()] + alt + p[m.end():])]


def repo_path_ok(path, where):
    """path relative to the repository root (or build/...) exists."""
    path = re.sub(r"<[^<>/]+>", "*", path.rstrip(".,;:)"))  # kernels/<op>.h: a pattern
    if path.startswith("./"):
        path = path[2:]
    if "/build/" in path:  # a build product of a tool (python-bindings/build/meson)
        return
    for p in brace_expand(path):
        base = build if p.startswith("build/") else src
        rel = p[len("build/"):] if p.startswith("build/") else p
        full = os.path.join(base, rel)
        exists = glob.glob(full) if any(c in rel for c in "*?[") else os.path.exists(full)
        if not exists and re.match(r"^(examples|bench)/\w+$", rel):  # a program: its source
            exists = os.path.exists(full + ".c")
        if not exists:
            failures.append(f"{where}: names {p}, which does not exist")


# ---- links and paths --------------------------------------------------------
for readme in READMES:
    text = open(os.path.join(src, readme)).read()
    here = os.path.dirname(readme)
    for n, line in enumerate(text.split("\n"), 1):
        where = f"{readme}:{n}"
        if re.search(r"(^|[\s`(])\.\./", line):
            failures.append(f"{where}: points outside the repository: {line.strip()}")
        for target in re.findall(r"\]\(([^)\s]+)\)", line):
            if re.match(r"^(https?:|mailto:|#)", target):
                continue
            full = os.path.realpath(os.path.join(src, here, target.split("#")[0]))
            if not full.startswith(src + os.sep) or not os.path.exists(full):
                failures.append(f"{where}: link to {target}, which is not a file of the repository")
        for code in re.findall(r"`([^`]+)`", line):
            for tok in code.split():
                if tok.startswith(TOP) or tok.startswith(tuple("./" + t for t in TOP)):
                    repo_path_ok(tok, where)

# ---- C blocks: verbatim lines of a program the build compiles ------------------
programs = sorted(glob.glob(os.path.join(src, "examples", "*.c")))


def significant(lines):
    return [ln.strip() for ln in lines if ln.strip() and not re.match(r"^/\* \.\.\. .* \.\.\. \*/$", ln.strip())]


def subsequence(needle, hay):
    it = iter(hay)
    return all(any(h == x for h in it) for x in needle)


for readme in READMES:
    for lang, n, lines, _ in blocks(open(os.path.join(src, readme)).read()):
        if lang != "c":
            continue
        want = significant(lines)
        if not any(subsequence(want, significant(open(p).read().split("\n"))) for p in programs):
            failures.append(f"{readme}:{n}: this C block is not verbatim (in order) in any examples/*.c: "
                            "change the program and the README together")

# ---- the training program of the README, on generated events --------------------
with tempfile.TemporaryDirectory() as d:
    env = dict(os.environ, OMP_NUM_THREADS="2")
    gen = subprocess.run([os.path.join(build, "examples", "gen_dataset"), "hgcal", "--events", "24", "--min-hits",
                          "40", "--max-hits", "120", "--out", os.path.join(d, "t.h5")], capture_output=True, text=True)
    r = subprocess.run([os.path.join(build, "examples", "readme_train"), "--data", "t.h5", "--max-steps", "2",
                        "--out", "m.h5"], cwd=d, capture_output=True, text=True, env=env, timeout=300)
    if gen.returncode or r.returncode or "saved m.h5" not in r.stdout or not os.path.exists(os.path.join(d, "m.h5")):
        failures.append(f"readme_train: exit {r.returncode}:\n{gen.stderr}{r.stdout}{r.stderr}")

# ---- Python blocks: run them ---------------------------------------------------------
try:
    import numpy  # noqa: F401
    have_numpy = True
except ImportError:
    have_numpy = False
for readme in READMES:
    for lang, n, lines, _ in blocks(open(os.path.join(src, readme)).read()):
        if lang != "python":
            continue
        if not have_numpy:
            skipped.append(f"{readme}:{n} (no numpy)")
            continue
        if os.environ.get("GPUML_SANITIZE", "none") not in ("", "none"):
            # an instrumented libgpuml needs its runtime preloaded into Python
            # (python-bindings/tests/run_pytest.py does that); the plain build runs these
            skipped.append(f"{readme}:{n} (sanitizer build)")
            continue
        with tempfile.TemporaryDirectory() as d:
            os.symlink(os.path.join(src, "examples"), os.path.join(d, "examples"))
            env = dict(os.environ, OMP_NUM_THREADS="2",
                       PYTHONPATH=os.path.join(src, "python-bindings") + os.pathsep + os.environ.get("PYTHONPATH", ""))
            env.setdefault("GPUML_LIBRARY", os.path.join(build, "libgpuml"))
            r = subprocess.run([sys.executable, "-c", "\n".join(lines)], cwd=d, env=env, capture_output=True, text=True,
                               timeout=300)
            if r.returncode:
                failures.append(f"{readme}:{n}: the Python block fails (exit {r.returncode}):\n{r.stdout}{r.stderr}")

# ---- shell blocks ------------------------------------------------------------------------
LAUNCHERS = ("mpirun", "srun", "sbatch")


def check_command(words, where):
    while words and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", words[0]):  # VAR=value prefixes
        words = words[1:]
    if not words:
        return
    if words[0] in ("mpirun", "srun"):  # the program is the first word that is a path
        words = next((words[i:] for i, w in enumerate(words) if "/" in w), [])
        if not words:
            failures.append(f"{where}: {words[0]} without a program")
            return
    prog = words[0]
    if prog in ("sbatch", "python3", "python", "bash", "sh") or prog.startswith(("./tools/", "tools/")):
        for w in (words if prog.startswith(("./tools/", "tools/")) else words[1:]):
            if w.startswith(TOP + tuple("./" + t for t in TOP) + ("build/", "./build/")):
                repo_path_ok(w, where)
        if prog.startswith(("./tools/", "tools/")) and not os.access(os.path.join(src, prog), os.X_OK):
            failures.append(f"{where}: {prog} is not an executable script")
        return
    if prog == "pip":
        repo_path_ok(words[-1], where)
        return
    if re.match(r"^(\./)?build/(examples|bench)/\w+$", prog):
        exe = os.path.join(build, prog.split("build/", 1)[1])
        args = [w for w in words[1:]]
        if any("$" in a or "`" in a for a in args):
            failures.append(f"{where}: cannot check arguments with shell expansions: {' '.join(words)}")
            return
        r = subprocess.run([exe, *args, "--help"], capture_output=True, text=True, timeout=60,
                           env=dict(os.environ, OMP_NUM_THREADS="1"))
        if r.returncode != 0:
            failures.append(f"{where}: `{' '.join(words)}` is rejected by the program:\n{r.stderr}")
        return
    failures.append(f"{where}: a command this test does not know how to check: {' '.join(words)}")


for readme in READMES:
    for lang, n, lines, before in blocks(open(os.path.join(src, readme)).read()):
        if lang not in ("sh", "bash", "console"):
            continue
        if "readme-test: install" in before:
            continue  # run verbatim by tests/pkgconfig_check.sh
        text = "\n".join(lines).replace("\\\n", " ")
        for k, line in enumerate(text.split("\n")):
            line = line.split(" #", 1)[0].strip()
            if not line or line.startswith("#"):
                continue
            for cmd in re.split(r"&&|\|\||;|\|", line):
                check_command(shlex.split(cmd), f"{readme}:{n + k + 1}")

if failures:
    print(f"test_readme: {len(failures)} failures")
    for f in failures:
        print("---", f)
    sys.exit(1)
if skipped:
    print("test_readme: skipped", ", ".join(skipped))
print("test_readme: OK")
