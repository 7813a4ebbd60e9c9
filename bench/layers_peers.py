#!/usr/bin/env python3
"""PyTorch + PyTorch Geometric peers of bench_layers, on the data and weights
bench_layers wrote: one GravNetConv (PyG's) and one ParticleNet EdgeConv block
(written with PyG's scatter, as in tests/make_training_fixture.py), forward +
backward, 2 threads; best of --reps; memory: the peak resident set during
the steps (VmHWM, restarted just before them) above the resident set just
before them, in a fresh process per layer - as bench_layers measures gpuml.
The kNN (pyg-lib has no wheel for this torch) is registered as pyg::knn and
is bench/train_peers.py's choice: torch_cluster.knn where it is installed
(PyG's own kNN package; `FORCE_ONLY_CPU=1 pip install --no-build-isolation
torch_cluster` builds it), else an exact cdist + topk. The script prints
which one ran.

    build/bench/bench_layers --out /tmp/layers_data.h5
    python3 bench/layers_peers.py /tmp/layers_data.h5

or both in one run, interleaved (gpuml, peer, gpuml, peer ... so that load
from elsewhere on the machine hits both alike), with the ratios printed:

    python3 bench/layers_peers.py /tmp/layers_data --gpuml build/bench/bench_layers --rounds 3

(data files /tmp/layers_data.gravnet and .particlenet, one process per layer
and side)
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time

import h5py
import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))
sys.path.insert(0, HERE)
import train_peers  # noqa: E402  (its kNN choice: torch_cluster where installed, else exact cdist + topk)


def register_knn():
    import torch_geometric.typing
    if torch_geometric.typing.WITH_KNN:
        return "pyg-lib"
    lib = torch.library.Library("pyg", "DEF")
    lib.define("knn(Tensor x, Tensor y, Tensor? ptr_x, Tensor? ptr_y, int k, bool cosine, int num_workers) -> Tensor")
    lib.impl("knn", lambda x, y, px, py, k, c, w: train_peers.best_knn(x.detach(), y.detach(), k, px, py), "CPU")
    torch_geometric.typing.WITH_KNN = True
    register_knn.lib = lib
    return "torch_cluster" if train_peers.torch_cluster is not None else "exact cdist + topk"


def status_kb(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise RuntimeError(key + " not in /proc/self/status")


def run_one(path, layer, reps):
    torch.set_num_threads(2)
    source = register_knn()
    import make_training_fixture as fx
    fx.knn_exact = _knn_batch  # the ParticleNet block's kNN, dense too
    f = h5py.File(path, "r")
    g = f[layer]
    cfg = json.loads(g.attrs["config"])
    model = fx.ConfigModel(cfg)
    names = model.gpuml_names()
    with torch.no_grad():
        for full, p in model.named_parameters():
            p.copy_(torch.from_numpy(g["weights"][names[full]][()]))
    model.train()
    splits = g["row_splits"][()]
    batch = torch.repeat_interleave(torch.arange(len(splits) - 1), torch.from_numpy(np.diff(splits)))
    ins = [torch.from_numpy(g[f"input{i}"][()]) for i in range(len(cfg["inputs"]))]
    inputs = {cfg["inputs"][i]["name"]: ins[i] for i in range(len(ins))}
    seed = torch.from_numpy(g["seed"][()])
    with open("/proc/self/clear_refs", "w") as cr:  # restart VmHWM (Linux >= 4.0)
        cr.write("5")
    rss0 = status_kb("VmRSS")
    best = 1e30
    for _ in range(reps):
        model.zero_grad()
        t0 = time.perf_counter()
        out = model(inputs, batch, len(splits) - 1)[0]
        out.backward(seed)
        best = min(best, time.perf_counter() - t0)
    rss1 = status_kb("VmHWM")
    print(json.dumps({"impl": "pytorch+pyg", "layer": layer, "ms": 1e3 * best, "rss_mib": (rss1 - rss0) / 1024.0,
                      "knn": source, "torch": torch.__version__}))


def _knn_batch(x, y, k, bx, by):
    ptr = lambda b: torch.cat([torch.zeros(1, dtype=torch.long), torch.cumsum(torch.bincount(b), 0)])
    return train_peers.best_knn(x, y, k, ptr(bx), ptr(by))


def results(cmd):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    res = {}
    for line in out.splitlines():
        if line.startswith("RESULT "):
            r = json.loads(line[7:])
            res[r["layer"]] = r
        elif line.startswith("{"):
            r = json.loads(line)
            res[r["layer"]] = r
    return res


def compare(a):
    """Alternate gpuml and the peer --rounds times; best time and the
    largest memory of each side, then peer / gpuml. Both sides inherit
    OMP_WAIT_POLICY (default passive here: both use libgomp, and on a shared
    machine spinning waits distort both)."""
    os.environ.setdefault("OMP_WAIT_POLICY", "passive")
    best = {}
    for rnd in range(a.rounds):
        runs = []
        for layer in ("gravnet", "particlenet"):
            runs.append(("gpuml", [a.gpuml, "--out", a.data + "." + layer, "--reps", str(a.reps), "--layer", layer]))
            runs.append(("peer", [sys.executable, __file__, a.data + "." + layer, "--reps", str(a.reps),
                                  "--one", layer]))
        for who, cmd in runs:
            for layer, r in results(cmd).items():
                b = best.setdefault((who, layer), {"ms": float("inf"), "rss_mib": 0.0})
                b["ms"] = min(b["ms"], r["ms"])
                b["rss_mib"] = max(b["rss_mib"], r["rss_mib"])
        print(f"round {rnd + 1}/{a.rounds} done", file=sys.stderr)
    print(f"{'layer':12s} {'gpuml ms':>9s} {'PyG ms':>9s} {'speed-up':>9s} "
          f"{'gpuml MiB':>10s} {'PyG MiB':>9s} {'mem ratio':>9s}")
    for layer in ("gravnet", "particlenet"):
        g, p = best[("gpuml", layer)], best[("peer", layer)]
        print(f"{layer:12s} {g['ms']:9.1f} {p['ms']:9.1f} {p['ms'] / g['ms']:8.2f}x "
              f"{g['rss_mib']:10.1f} {p['rss_mib']:9.1f} {g['rss_mib'] / p['rss_mib']:9.2f}")
        print("RATIO " + json.dumps({"layer": layer, "speedup": p["ms"] / g["ms"],
                                     "memory_ratio": g["rss_mib"] / p["rss_mib"]}))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("data")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--one")
    ap.add_argument("--gpuml", help="bench_layers binary: run it too, interleaved, and print ratios")
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    if a.one:
        return run_one(a.data, a.one, a.reps)
    if a.gpuml:
        return compare(a)
    for layer in ("gravnet", "particlenet"):  # a fresh process each: clean peak RSS
        subprocess.run([sys.executable, __file__, a.data, "--reps", str(a.reps), "--one", layer], check=True)


if __name__ == "__main__":
    main()
