"""kNN graph of a generated point cloud, drawn with matplotlib.

    python examples/python/knn_graph.py [--out knn_graph.png] [--k 6]

Three "events" of 2-D hits (a few showers plus noise) in one ragged batch;
gpuml.knn finds each hit's neighbours within its own event. Edges are drawn
from every hit to its neighbours; padding slots (idx -1) are skipped.
"""
import argparse

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import gpuml  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--out", default="knn_graph.png")
ap.add_argument("--k", type=int, default=6)
args = ap.parse_args()

rng = np.random.default_rng(1)
events = []
for _ in range(3):
    centres = rng.uniform(-4, 4, size=(3, 2))
    showers = [c + rng.normal(scale=0.4, size=(rng.integers(15, 40), 2)) for c in centres]
    events.append(np.concatenate(showers + [rng.uniform(-5, 5, size=(10, 2))]))
coords = np.concatenate(events).astype(np.float32)
row_splits = np.cumsum([0] + [len(e) for e in events])

idx, dist2 = gpuml.knn(coords, args.k, row_splits, max_radius=1.5)
print(f"{len(coords)} hits in {len(events)} events; {(idx[:, 1:] >= 0).sum()} edges, "
      f"{(idx < 0).sum()} padding slots beyond the radius")

fig, axes = plt.subplots(1, len(events), figsize=(5 * len(events), 5))
for b, ax in enumerate(axes):
    lo, hi = row_splits[b], row_splits[b + 1]
    src = np.repeat(np.arange(lo, hi), args.k - 1)
    dst = idx[lo:hi, 1:].ravel()
    ok = dst >= 0
    segs = np.stack([coords[src[ok]], coords[dst[ok]]], axis=1)
    ax.add_collection(matplotlib.collections.LineCollection(segs, lw=0.6, color="tab:blue", alpha=0.6))
    ax.scatter(*coords[lo:hi].T, s=8, color="k", zorder=3)
    ax.set_title(f"event {b}: {hi - lo} hits, k = {args.k}")
    ax.set_aspect("equal")
fig.tight_layout()
fig.savefig(args.out, dpi=120)
print("wrote", args.out)
