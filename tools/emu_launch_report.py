#!/usr/bin/env python3
"""Launch report of the emulated CUDA platform: which kernels do per-thread
work that grows with the problem (serial kernels).

  emu_launch_report.py SMALL_DIR LARGE_DIR [--scale S]

Each DIR holds launches.<pid>.tsv files written by runs with
GPUML_EMU_LAUNCH_LOG=DIR (tests/cudaemu/include/cudaemu.h): one line per
launch - kernel, blocks, threads per block, threads, the largest number of
grid-stride iterations one thread ran, the most CPU time one thread took
(us), the launch's wall time (us). LARGE_DIR is the same workload with S times the
rows (default 4).

Per kernel it prints, for both runs, the launches, the most threads of one
launch, the largest per-thread grid-stride iteration count and the largest
per-thread time, and flags a kernel SERIAL when from the small to the large
run its per-thread iterations grow by more than sqrt(S) (a grid-stride
loop that does not get more threads), and SERIAL? when its per-thread time
grows by more than sqrt(S) and by more than 100 us (a loop inside one
thread that is not a grid-stride loop, e.g. over all rows of a column).
Iterations are exact; CPU times exclude preemption but still vary.
Exit status 1 when a kernel is flagged."""
import glob
import math
import os
import sys


def load(d):
    k = {}
    for f in glob.glob(os.path.join(d, "launches.*.tsv")):
        for line in open(f):
            p = line.rstrip("\n").split("\t")
            if len(p) < 7:
                continue
            name, threads, iters, tmax = p[0], int(p[3]), int(p[4]), float(p[5])
            e = k.setdefault(name, [0, 0, 0, 0.0])
            e[0] += 1
            e[1] = max(e[1], threads)
            e[2] = max(e[2], iters)
            e[3] = max(e[3], tmax)
    return k


def main():
    argv = sys.argv[1:]
    scale = 4.0
    if "--scale" in argv:
        i = argv.index("--scale")
        scale = float(argv[i + 1])
        del argv[i:i + 2]
    if len(argv) != 2:
        raise SystemExit(__doc__)
    small, large = load(argv[0]), load(argv[1])
    lim = math.sqrt(scale)
    flagged = []
    names = sorted(set(small) | set(large))
    print(f"{'kernel':40} {'launches':>11} {'max threads':>17} {'iters/thread':>13} {'max us/thread':>17}  verdict")
    for name in names:
        s = small.get(name, [0, 0, 0, 0.0])
        l = large.get(name, [0, 0, 0, 0.0])
        verdict = "ok"
        if s[0] and l[0]:
            it_growth = l[2] / max(s[2], 1)
            t_growth = l[3] / max(s[3], 1.0)
            if it_growth > lim:
                verdict = f"SERIAL (iterations x{it_growth:.1f})"
            elif t_growth > lim and l[3] - s[3] > 100:
                verdict = f"SERIAL? (time x{t_growth:.1f})"
        else:
            verdict = "only in one run"
        if verdict.startswith("SERIAL"):
            flagged.append(name)
        print(f"{name:40} {s[0]:>5}/{l[0]:<5} {s[1]:>8}/{l[1]:<8} {s[2]:>6}/{l[2]:<6} {s[3]:>8.0f}/{l[3]:<8.0f}  {verdict}")
    print(f"{len(flagged)} of {len(names)} kernels flagged as serial (rows x{scale:g}): {' '.join(flagged)}")
    return 1 if flagged else 0


if __name__ == "__main__":
    sys.exit(main())
