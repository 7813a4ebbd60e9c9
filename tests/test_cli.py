#!/usr/bin/env python3
"""The command line of every example and benchmark program
(examples/common/cli.h): --help, and the errors a user makes.

    test_cli.py SOURCE_ROOT PROGRAM...

For each program: `--help` exits 0 and lists every option with its default
(or "required"); an unknown option, a missing value, a malformed or
out-of-range number and a bad --device each exit 2 with a message naming the
option. Every examples/*.c and bench/*.c must be among the programs (those
the build left out, e.g. the MPI ones without MPI, are reported as such).
Runs in about a second: every case fails in the parser, before any work.
"""
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

src, programs = sys.argv[1], sys.argv[2:]
by_name = {os.path.basename(p): os.path.abspath(p) for p in programs}
failures = []

# The program that gets every case (the others get one of each kind).
FULL = {"train_gravnet"}
# Programs whose numbers are positional: argv giving one malformed number,
# and the name the message must contain.
POSITIONAL_NUMBERS = {
    "infer_async": (["", "12x"], "EVENTS"),
    "bench_allreduce": (["lots"], "MAX_BYTES"),
    "bench_overlap": (["4096", "nan"], "COMPUTE_MS"),
    "probe_mpi_faults": (["kill", "2"], "FINALIZE"),
}
# Programs with a required option: what to add so that --device is reached.
REQUIRED = {
    "train_gravnet": ["--data", "/nonexistent.h5"],
    "train_particlenet": ["--data", "/nonexistent.h5"],
    "serve_clusters": ["--model", "/nonexistent.h5", "--data", "/nonexistent.h5"],
    "gen_dataset": ["hgcal", "--out", "/nonexistent/x.h5"],
}


def run(prog, args):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    r = subprocess.run([by_name[prog], *args], capture_output=True, text=True, timeout=60, env=env)
    return r.returncode, r.stdout, r.stderr


cases = []  # (prog, args, exit status, strings the output must contain): run in parallel at the end


def check(case):
    prog, args, rc, needles = case
    code, out, err = run(prog, args)
    text = out + err
    if code != rc or any(n not in text for n in needles):
        return f"{prog} {args!r}: exit {code} (want {rc}), output must contain {needles!r}:\n{text}"
    return None


def expect(prog, args, rc, needles):
    if prog not in by_name:
        failures.append(f"{prog}: not among the programs given")
    else:
        cases.append((prog, args, rc, needles))


def options_from_help(text):
    """(name, metavar) of each --option line of the help."""
    return [o for o in re.findall(r"^  --([a-z0-9-]+)(?: (\S+))?\s", text, re.M) if o[0] != "help"]


# Every program of examples/*.c and bench/*.c is tested.
sources = [f[:-2] for d in ("examples", "bench") for f in sorted(os.listdir(os.path.join(src, d))) if f.endswith(".c")]
for name in sources:
    if name not in by_name:
        print(f"test_cli: {name} is not built here (its dependency is missing): not tested")

pool = ThreadPoolExecutor(max_workers=4)
helps = dict(zip(sorted(by_name), pool.map(lambda p: run(p, ["--help"]), sorted(by_name))))
for prog in sorted(by_name):
    code, help_text, err = helps[prog]
    if code != 0 or not help_text.startswith("usage: " + prog):
        failures.append(f"{prog} --help: exit {code}, stdout must start with 'usage: {prog}':\n{help_text}{err}")
    for line in help_text.splitlines():
        if line.startswith("  ") and not line.startswith("  --help") and line.strip():
            if "(default: " not in line and "(required)" not in line:
                failures.append(f"{prog} --help: no default on {line!r}")
    # Each program once per kind of error; the whole battery on FULL (the
    # parser is one shared header, and a CUDA build's programs take ~0.5 s
    # to start: the test stays well inside its timeout on a busy machine).
    full = prog in FULL
    expect(prog, ["--no-such-option"], 2, ["'--no-such-option'"])
    if full:
        expect(prog, ["--help", "--no-such-option"], 0, ["usage: "])  # --help wins, validating what is before it
        expect(prog, ["--no-such-option", "--help"], 2, ["'--no-such-option'"])
        expect(prog, ["--no-such=1"], 2, ["'--no-such'"])
        expect(prog, ["-x"], 2, ["'-x'"])
    opts = options_from_help(help_text)
    numeric = [(n, mv) for n, mv in opts if mv in ("N", "X")]
    for i, (n, mv) in enumerate(numeric):
        if i > 0 and not full:
            break
        expect(prog, [f"--{n}", "abc"], 2, [f"--{n}", "'abc'"])
        if not full or mv in [m for _, m in numeric[:i]]:
            continue
        expect(prog, [f"--{n}", "12abc"], 2, [f"--{n}", "'12abc'"])
        expect(prog, [f"--{n}", ""], 2, [f"--{n}"])
        expect(prog, [f"--{n}", "99999999999999999999999"], 2, [f"--{n}", "out of range"])
        if mv == "X":
            expect(prog, [f"--{n}", "nan"], 2, [f"--{n}", "'nan'"])
            expect(prog, [f"--{n}", "1e999"], 2, [f"--{n}"])
        else:
            expect(prog, [f"--{n}", "1.5"], 2, [f"--{n}", "'1.5'"])
    if numeric:
        expect(prog, [f"--{numeric[0][0]}"], 2, [f"'--{numeric[0][0]}' needs a value"])
    for n, mv in opts[:1]:
        if mv and full:  # a value that is another option: forgotten
            expect(prog, [f"--{n}", "--help"], 2, [f"'--{n}' needs a value"])
    flags = [n for n, mv in opts if not mv]
    for n in flags[:1]:
        expect(prog, [f"--{n}=1"], 2, [f"'--{n}' takes no value"])
    if prog in POSITIONAL_NUMBERS:
        args, name = POSITIONAL_NUMBERS[prog]
        expect(prog, args, 2, [name])
    if not numeric and prog not in POSITIONAL_NUMBERS and opts:
        failures.append(f"{prog}: no numeric option found to test")
    if not any(line.strip().startswith(("KIND", "PATH", "MODEL", "MAX_BYTES", "BYTES", "MODE"))
               for line in help_text.splitlines()):
        expect(prog, ["stray"], 2, ["unexpected argument 'stray'"])
    if "device" in dict(opts):
        base = REQUIRED.get(prog, [])
        for bad in ("gpu", "cuda:", "cuda:x", "cuda:-1", "cuda:99999", "CPU", "cuda0", "")[:None if full else 1]:
            expect(prog, base + ["--device", bad], 2, ["--device", f"'{bad}'"])
        # no machine has 1025 GPUs: a clear error, never a silent CPU run
        expect(prog, base + ["--device", "cuda:1024"], 2, ["--device"])
        expect(prog, base + ["--device", "cuda:1023"], 2, ["--device cuda:1023"])

# Required options and positionals
expect("train_gravnet", ["--epochs", "3"], 2, ["missing option '--data'"])
expect("gen_dataset", ["hgcal"], 2, ["missing option '--out'"])
expect("gen_dataset", ["--out", "x.h5"], 2, ["missing argument KIND"])
expect("gen_dataset", ["muons", "--out", "x.h5"], 2, ["KIND", "'muons'", "hgcal|jets"])
expect("gen_dataset", ["hgcal", "--out", "x.h5", "--min-hits", "50", "--max-hits", "10"], 2, ["--max-hits"])
expect("gen_dataset", ["hgcal", "--out", "x.h5", "--seed", "-1"], 2, ["--seed", "'-1'"])
expect("train_gravnet", ["--data", "x.h5", "--epochs", "0"], 2, ["--epochs", "out of range"])
expect("train_gravnet", ["--data=x.h5", "--lr=-1"], 2, ["--lr", "out of range"])
if "bench_engine" in by_name:
    expect("bench_engine", ["--sizes", "huge"], 2, ["--sizes", "'huge'", "small|large|tiny"])



def outputs():
    """Outputs: a run directory, the default config found from any working
    directory, and nothing left behind by a failed run."""
    import tempfile
    env = dict(os.environ, OMP_NUM_THREADS="1")
    with tempfile.TemporaryDirectory() as d:
        def go(prog, *args):
            r = subprocess.run([by_name[prog], *args], cwd=d, capture_output=True, text=True, timeout=120, env=env)
            return r.returncode, r.stdout + r.stderr
        def files():
            return sorted(os.path.relpath(os.path.join(r, f), d) for r, _, fs in os.walk(d) for f in fs)
        code, text = go("train_gravnet", "--data", "missing.h5")
        if code != 1 or files():
            failures.append(f"train_gravnet --data missing.h5: exit {code}, left {files()} (want 1, nothing):\n{text}")
        code, text = go("gen_dataset", "hgcal", "--events", "6", "--min-hits", "20", "--max-hits", "40",
                        "--out", "no/such/dir/d.h5")
        if code != 1 or files():
            failures.append(f"gen_dataset into a missing directory: exit {code}, left {files()}:\n{text}")
        code, text = go("gen_dataset", "hgcal", "--events", "6", "--min-hits", "20", "--max-hits", "40", "--out", "d.h5")
        if code != 0:
            failures.append(f"gen_dataset: exit {code}:\n{text}")
            return
        code, text = go("train_gravnet", "--data", "d.h5", "--run-dir", "r", "--config", "/nonexistent.json")
        if code != 1 or files() != ["d.h5"]:
            failures.append(f"train_gravnet with a missing config: exit {code}, left {files()}:\n{text}")
        # the default config (examples/configs) from a directory outside the tree
        code, text = go("train_gravnet", "--data", "d.h5", "--max-steps", "2", "--threads", "1", "--run-dir", "r")
        want = ["d.h5", "r/checkpoint.h5", "r/metrics.jsonl", "r/model.h5"]
        if code != 0 or files() != want or os.path.getsize(os.path.join(d, "r/metrics.jsonl")) == 0:
            failures.append(f"train_gravnet into --run-dir r: exit {code}, files {files()} (want {want}):\n{text}")


if {"train_gravnet", "gen_dataset"} <= set(by_name):
    outputs()
failures += [f for f in pool.map(check, cases) if f]
if failures:
    print(f"test_cli: {len(failures)} failures")
    for f in failures:
        print("---", f)
    sys.exit(1)
print(f"test_cli: {len(by_name)} programs, {len(cases)} command lines OK")
