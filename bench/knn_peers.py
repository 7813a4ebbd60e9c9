#!/usr/bin/env python3
"""Peers of gpuml_knn on the data bench_knn wrote (same points, same threads).

    build/bench/bench_knn --out /tmp/knnbench --threads 2
    python3 bench/knn_peers.py /tmp/knnbench --threads 2

For every configuration in DIR/gpuml.csv it times each installed peer
(index build + query of every point, best of --repeat runs; events of a
batch one after the other unless the peer batches natively), checks the
peer's neighbour lists against gpuml's (recall = shared neighbours / k,
and how often the point itself is not in slot 0), and prints a markdown
table with the ratios peer / gpuml of the best wall time and of the least
process CPU time of a run (all threads: the work done, which a machine
shared with other jobs distorts less than the wall time).

Peers: scipy cKDTree (workers=T), scikit-learn KDTree via
NearestNeighbors(algorithm='kd_tree', n_jobs=T), FAISS IndexFlatL2 (OpenMP
threads T; brute force, skipped above --faiss-max-n points per event), and
torch_cluster.knn (num_workers=T). A peer that does not import is reported
as missing.
"""
import argparse
import csv
import os
import sys
import time

ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
ap.add_argument("dir")
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--repeat", type=int, default=3)
ap.add_argument("--only", default=None, help="substring of the configuration names to run")
ap.add_argument("--peers", default="ckdtree,sklearn,faiss,torch_cluster")
ap.add_argument("--faiss-max-n", type=int, default=50000)
args = ap.parse_args()

T = args.threads
os.environ["OMP_NUM_THREADS"] = str(T)  # before faiss / torch load their OpenMP
os.environ["MKL_NUM_THREADS"] = str(T)
os.environ["OPENBLAS_NUM_THREADS"] = str(T)

import numpy as np  # noqa: E402

peers = {}


def _ckdtree():
    from scipy.spatial import cKDTree

    def run(x, splits, k):
        out = np.empty((len(x), k), np.int64)
        for s, e in zip(splits[:-1], splits[1:]):
            if e > s:
                _, j = cKDTree(x[s:e]).query(x[s:e], k=k, workers=T)
                out[s:e] = j + s
        return out

    import scipy
    return "scipy %s cKDTree" % scipy.__version__, run


def _sklearn():
    from sklearn.neighbors import NearestNeighbors
    import sklearn

    def run(x, splits, k):
        out = np.empty((len(x), k), np.int64)
        for s, e in zip(splits[:-1], splits[1:]):
            if e > s:
                nn = NearestNeighbors(n_neighbors=k, algorithm="kd_tree", n_jobs=T).fit(x[s:e])
                out[s:e] = nn.kneighbors(x[s:e], return_distance=False) + s
        return out

    return "scikit-learn %s KDTree" % sklearn.__version__, run


def _faiss():
    import faiss
    faiss.omp_set_num_threads(T)

    def run(x, splits, k):
        if np.max(np.diff(splits)) > args.faiss_max_n:
            return None
        out = np.empty((len(x), k), np.int64)
        for s, e in zip(splits[:-1], splits[1:]):
            if e > s:
                index = faiss.IndexFlatL2(x.shape[1])
                index.add(np.ascontiguousarray(x[s:e]))
                _, j = index.search(np.ascontiguousarray(x[s:e]), k)
                out[s:e] = j + s
        return out

    return "faiss %s IndexFlatL2" % faiss.__version__, run


def _torch_cluster():
    import torch
    import torch_cluster
    torch.set_num_threads(T)

    def run(x, splits, k):
        xt = torch.from_numpy(x)
        counts = torch.from_numpy(np.diff(splits))
        batch = torch.repeat_interleave(torch.arange(len(counts)), counts)
        edge = torch_cluster.knn(xt, xt, k, batch, batch, num_workers=T)
        row, col = edge[0].numpy(), edge[1].numpy()
        order = np.argsort(row, kind="stable")
        if len(row) != len(x) * k:
            return None
        return col[order].reshape(len(x), k).astype(np.int64)

    return "torch_cluster %s knn" % torch_cluster.__version__, run


for key, make in [("ckdtree", _ckdtree), ("sklearn", _sklearn), ("faiss", _faiss), ("torch_cluster", _torch_cluster)]:
    if key not in args.peers.split(","):
        continue
    try:
        peers[key] = make()
    except Exception as exc:  # report, do not fail: the table says which peer is missing
        print("peer %s unavailable: %s" % (key, exc), file=sys.stderr)
        peers[key] = None


def recall(ours, theirs, k):
    """Mean fraction of gpuml's neighbours the peer also lists, per row."""
    total = 0
    for a in range(0, len(ours), 20000):
        o = ours[a:a + 20000, :, None]
        t = theirs[a:a + 20000, None, :]
        total += int(((o == t) & (o >= 0)).any(axis=2).sum())
    return total / (len(ours) * k)


rows = list(csv.DictReader(open(os.path.join(args.dir, "gpuml.csv"))))
names = [p[0] for p in peers.values() if p]
print("peers: " + ", ".join(names) + "; missing: " + ", ".join(k for k, p in peers.items() if not p))
print()
header = "| config | N | events | D | k | gpuml [s] | cpu [s] |"
for key, p in peers.items():
    if p:
        header += " %s [s] | ratio | cpu ratio | recall |" % key
print(header)
print("|" + "---|" * (header.count("|") - 1))
for r in rows:
    name = r["name"]
    if args.only and args.only not in name:
        continue
    n, d, k = int(r["n"]), int(r["d"]), int(r["k"])
    base = name.rsplit("_k", 1)[0]
    x = np.load(os.path.join(args.dir, base + ".x.npy"))
    splits = np.load(os.path.join(args.dir, base + ".splits.npy"))
    ours = np.load(os.path.join(args.dir, name + ".idx.npy")).astype(np.int64)
    ours_t, ours_c = float(r["best_s"]), float(r["cpu_s"])
    line = "| %s | %d | %s | %d | %d | %.3f | %.3f |" % (name, n, r["events"], d, k, ours_t, ours_c)
    for key, p in peers.items():
        if not p:
            continue
        best, best_c, res = float("inf"), float("inf"), None
        for _ in range(args.repeat):
            t0, c0 = time.perf_counter(), time.process_time()
            res = p[1](x, splits, k)
            t, c = time.perf_counter() - t0, time.process_time() - c0
            if res is None:
                break
            best, best_c = min(best, t), min(best_c, c)
        if res is None:
            line += " - | - | - | - |"
            continue
        rec = recall(ours, res, k)
        not_self = float(np.mean(res[:, 0] != np.arange(n)))
        line += " %.3f | %.1fx | %.1fx | %.5f%s |" % (best, best / ours_t, best_c / ours_c, rec,
                                                     " (self not 1st: %.2g%%)" % (100 * not_self) if not_self else "")
    print(line)
    sys.stdout.flush()
