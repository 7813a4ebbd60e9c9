#!/usr/bin/env python3
"""Launch report of the emulated CUDA platform: does any kernel's work per
CUDA thread grow with the rows (a serial kernel)?

  emu_launch_report.py BASE_DIR EVENTS_DIR SIZE_DIR [--scale S]

Each DIR holds launches.<pid>.tsv files written by runs with
GPUML_EMU_LAUNCH_LOG=DIR (tests/cudaemu/include/cudaemu.h): one line per
launch - kernel, blocks, threads per block, threads, the largest number of
loop iterations one thread ran, the most CPU time one thread took (us),
the launch's wall time (us). The iterations count every for/while
iteration of the thread, in the kernel and in the kernels/<op>.h bodies it
calls (tests/cudaemu/wrap.cpp.in), so a loop inside one thread shows.
cuBLAS, cuDNN, copies and memsets appear as "library:op" lines with zero
threads.

EVENTS_DIR is BASE's workload with S times the events per batch (events of
the same size), SIZE_DIR with S times the rows per event (as many events).
Per kernel it prints, for the three runs, the launches, the most threads
of one launch and the largest per-thread iteration count, with a verdict:

  ok            per-thread iterations grow by at most sqrt(S) (or by fewer
                than 32: a binary search over the events grows by 2 per 4x)
                in both comparisons;
  event-bound   they grow with the rows per event only, and WHY below says
                why that work is bounded by one event and kept per thread;
  SERIAL        they grow with the events per batch, or with the rows per
                event without a reason in WHY.

The exit status is 1 when a kernel is SERIAL. Iteration counts are exact;
the CPU time column of the log is not used (noisy on a shared machine)."""
import glob
import math
import os
import sys

# Kernels whose per-thread work may grow with the size of one event, and
# why that is kept. Nothing here excuses growth with the events per batch.
WHY = {
    "knn.cu:query_kernel":
        "one thread per query point searches its own event only, as the CPU does with the same body "
        "(kernels/knn.h): brute force (d > 8 or fewer than 128 points, e.g. ParticleNet's feature space) "
        "compares it with every point of its event; the box tree otherwise visits the cells near it. The "
        "lists are exact and identical on every backend (DESIGN.md); splitting one query over threads "
        "would need a cross-thread top-k merge for no change in result. Bounded by the largest event, "
        "never by the batch.",
    "knn.cu:event_kernel":
        "a block of 256 threads per event; each thread strides over its event's rows for the finite "
        "count and box (min/max/count: order-free), then a tree reduction in shared memory - the "
        "block-per-segment reduction: per-thread work is the event's rows / 256.",
}


def load(d):
    k = {}
    for f in glob.glob(os.path.join(d, "launches.*.tsv")):
        for line in open(f):
            p = line.rstrip("\n").split("\t")
            if len(p) < 7:
                continue
            name, threads, iters = p[0], int(p[3]), int(p[4])
            e = k.setdefault(name, [0, 0, 0])
            e[0] += 1
            e[1] = max(e[1], threads)
            e[2] = max(e[2], iters)
    return k


def grows(a, b, lim):
    return b[2] > lim * max(a[2], 1) and b[2] - a[2] >= 32


def main():
    argv = sys.argv[1:]
    scale = 4.0
    if "--scale" in argv:
        i = argv.index("--scale")
        scale = float(argv[i + 1])
        del argv[i:i + 2]
    if len(argv) != 3:
        raise SystemExit(__doc__)
    base, events, size = (load(d) for d in argv)
    lim = math.sqrt(scale)
    names = sorted(set(base) | set(events) | set(size))
    serial, bound, notes = [], [], []
    print(f"Rows x{scale:g} two ways: `events` = {scale:g}x the events per batch, `size` = {scale:g}x the rows per "
          "event. Columns: base/events/size.\n")
    print("| kernel | launches | max threads | max iterations per thread | verdict |")
    print("|---|---|---|---|---|")
    for name in names:
        z = [0, 0, 0]
        b, e, s = base.get(name, z), events.get(name, z), size.get(name, z)
        if not (b[0] and e[0] and s[0]):
            verdict = "not in every run"
        elif grows(b, e, lim):
            verdict = f"SERIAL: x{e[2] / max(b[2], 1):.1f} with the events"
        elif grows(b, s, lim):
            if name in WHY:
                verdict = f"event-bound: x{s[2] / max(b[2], 1):.1f} with the event size"
                notes.append(name)
            else:
                verdict = f"SERIAL: x{s[2] / max(b[2], 1):.1f} with the event size"
        else:
            verdict = "ok"
        if verdict.startswith("SERIAL"):
            serial.append(name)
        elif verdict.startswith("event-bound"):
            bound.append(name)
        print(f"| {name} | {b[0]}/{e[0]}/{s[0]} | {b[1]}/{e[1]}/{s[1]} | {b[2]}/{e[2]}/{s[2]} | {verdict} |")
    nk = sum(".cu:" in n for n in names)  # the rest are library calls the emulator logs (cuBLAS, copies)
    print(f"\n{nk} kernels and {len(names) - nk} library calls: {len(serial)} SERIAL"
          f"{': ' + ', '.join(serial) if serial else ''}; {len(bound)} event-bound (why below); the rest ok.")
    if notes:
        print("\nWhy the event-bound kernels keep per-thread work over one event:\n")
        for n in notes:
            print(f"- `{n}`: {WHY[n]}")
    return 1 if serial else 0


if __name__ == "__main__":
    sys.exit(main())
