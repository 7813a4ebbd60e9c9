#!/usr/bin/env python3
"""Counts of one data-parallel training step from the emulated runs of
bench/ddp_step_counts.sh (docs/scaling.md).

    ddp_step_counts.py OUT_DIR

OUT_DIR holds <driver>.np<N>.s<S>/ for S = 1 and 3: per process (= rank) a
launches.<pid>.tsv (tests/cudaemu/include/cudaemu.h: one line per kernel
launch) and an nccl.<pid>.trace (tests/cudaemu/nccl.cpp: "rank nranks
device op bytes t_enqueue t_start t_end" per operation, bytes as NCCL counts
them: the buffer for collectives, what this rank sends for a grouped
send/recv, the buffer at the root and 0 elsewhere for broadcasts).

One step = (3-step run - 1-step run) / 2, per rank: this removes the set-up
(model creation, the initial broadcast of parameters and buffers). The NCCL
operations of one step are the last ones of the 3-step trace (a rank's
operations run in order on its NCCL stream). With the deterministic sum (the
drivers' default) one bucket's all-reduce is one grouped send/recv (rank q
receives chunk q from everyone: S bytes sent, S (N-1)/N of them to other
ranks) and N broadcasts of the reduced chunks (the all-gather).

Prints a table and writes OUT_DIR/counts.json for bench/scaling_model.py.
"""
import collections
import glob
import json
import os
import re
import sys


def load_run(d):
    """{rank: {"launches": n, "kernels": Counter, "ops": [(op, bytes)]}}"""
    ranks = {}
    for tr in glob.glob(os.path.join(d, "nccl.*.trace")):
        pid = re.search(r"nccl\.(\d+)\.trace$", tr).group(1)
        lines = [l.split() for l in open(tr) if l.strip()]
        if not lines:
            continue
        rank, nranks = int(lines[0][0]), int(lines[0][1])
        kernels = collections.Counter()
        lf = os.path.join(d, f"launches.{pid}.tsv")
        if os.path.exists(lf):
            for l in open(lf):
                p = l.rstrip("\n").split("\t")
                if len(p) >= 7:
                    kernels[p[0]] += 1
        ranks[rank] = {"nranks": nranks, "launches": sum(kernels.values()), "kernels": kernels,
                       "ops": [(p[3], int(p[4])) for p in lines]}
    return ranks


def one_step(r1, r3):
    """Per rank: launches per step, kernel counts per step, one step's NCCL ops."""
    out = {}
    for rank in sorted(r3):
        a, b = r1[rank], r3[rank]
        n_ops = (len(b["ops"]) - len(a["ops"])) / 2
        k = {name: (b["kernels"][name] - a["kernels"].get(name, 0)) / 2 for name in b["kernels"]}
        out[rank] = {"launches": (b["launches"] - a["launches"]) / 2, "kernels": k,
                     "ops": b["ops"][len(b["ops"]) - int(n_ops):] if n_ops == int(n_ops) else None,
                     "setup_launches": a["launches"] - (b["launches"] - a["launches"]) / 2,
                     "setup_ops": a["ops"][:len(a["ops"]) - int(n_ops)]}
    return out


def category(name):
    """gpuml's own kernels, or the library / runtime operation the emulator logged."""
    lib = name.split(":", 1)[0]
    if lib == "cublas":
        return "cublas"
    if lib == "cudnn":
        return "cudnn"
    if name.startswith("runtime:memset"):
        return "memset"
    if name.startswith("runtime:memcpy"):
        return "memcpy_" + name.rsplit("_", 1)[-1]
    return "kernel"


def buckets(ops, n):
    """One step's all-reduces: a 'sendrecv' (deterministic sum) or 'allreduce'
    starts a bucket; its bytes are the bucket's gradient bytes."""
    out = []
    for op, nbytes in ops:
        if op in ("sendrecv", "allreduce"):
            out.append({"bytes": nbytes, "ops": [op]})
        elif out:
            out[-1]["ops"].append(op)
    return out


def main():
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    root = sys.argv[1]
    result = {}
    runs = sorted({re.sub(r"\.s\d+$", "", os.path.basename(p)) for p in glob.glob(os.path.join(root, "*.np*.s*"))})
    print(f"{'run':16} {'rank':>4} {'stream ops/step':>15} {'set-up ops':>10} {'NCCL ops/step':>13} "
          f"{'all-reduces':>11}  gradient bytes per bucket  (op sequence of one step)")
    for run in runs:
        d1, d3 = os.path.join(root, run + ".s1"), os.path.join(root, run + ".s3")
        if not (os.path.isdir(d1) and os.path.isdir(d3)):
            continue
        steps = one_step(load_run(d1), load_run(d3))
        per_rank = []
        for rank, s in steps.items():
            ops = s["ops"] or []
            bk = buckets(ops, len(steps))
            seq = collections.Counter(op for op, _ in ops)
            print(f"{run:16} {rank:>4} {s['launches']:>15g} {s['setup_launches']:>10g} {len(ops):>13} {len(bk):>11}  "
                  f"{[b['bytes'] for b in bk]}  ({', '.join(f'{v} {k}' for k, v in sorted(seq.items()))})")
            cats = collections.Counter()
            for name, v in s["kernels"].items():
                cats[category(name)] += v
            per_rank.append({"rank": rank, "launches_per_step": s["launches"], "setup_launches": s["setup_launches"],
                             "per_step": dict(sorted(cats.items())),
                             "nccl_ops_per_step": len(ops), "ops": ops, "buckets": bk,
                             "setup_ops": s["setup_ops"],
                             "top_kernels": sorted(s["kernels"].items(), key=lambda kv: -kv[1])[:12]})
        result[run] = per_rank
    print("\nstream operations of one step on rank 0, by kind:")
    for run, pr in result.items():
        print(f"  {run:16} " + ", ".join(f"{k} {v:g}" for k, v in pr[0]["per_step"].items()))
    for run, pr in result.items():
        top = pr[0]["top_kernels"]
        print(f"{run}: most frequent per step (rank 0): " + ", ".join(f"{k.split(':')[-1]} {v:g}" for k, v in top[:8]))
    with open(os.path.join(root, "counts.json"), "w") as f:
        json.dump(result, f, indent=1)
    print(f"wrote {os.path.join(root, 'counts.json')}")


if __name__ == "__main__":
    main()
