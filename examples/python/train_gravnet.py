"""Train a small GravNet model with the object condensation loss, from
Python, on a generated dataset; save it and run it again from the file.

    python examples/python/train_gravnet.py [--events 256] [--epochs 6] [--out gravnet.h5]

Each event holds 2-4 "showers" (hits around a centre, with an energy-like
feature) plus noise hits. The model file is the same one a C++ program loads
with gpuml_model_load.
"""
import argparse
import os
import tempfile

import numpy as np

import gpuml

ap = argparse.ArgumentParser()
ap.add_argument("--events", type=int, default=256)
ap.add_argument("--epochs", type=int, default=6)
ap.add_argument("--out", default="gravnet.h5")
args = ap.parse_args()

# ---- a generated dataset: features [x, y, e], truth id per hit (-1 noise) ----
rng = np.random.default_rng(0)
feats, truth, sizes = [], [], []
for _ in range(args.events):
    n_obj = rng.integers(2, 5)
    centres = rng.uniform(-5, 5, size=(n_obj, 2))
    t = np.concatenate([np.repeat(np.arange(n_obj), rng.integers(8, 20, size=n_obj)), -np.ones(6, int)])
    xy = np.where(t[:, None] >= 0, centres[np.maximum(t, 0)], 0) + rng.normal(scale=0.5, size=(len(t), 2))
    xy[t < 0] = rng.uniform(-6, 6, size=((t < 0).sum(), 2))
    e = np.where(t >= 0, rng.exponential(1.0, len(t)), 0.1 * rng.random(len(t)))
    feats.append(np.column_stack([xy, e]))
    truth.append(t)
    sizes.append(len(t))
data = os.path.join(tempfile.mkdtemp(), "showers.h5")
gpuml.write_dataset(data, np.cumsum([0] + sizes), {"features": np.concatenate(feats).astype(np.float32),
                                                   "truth": np.concatenate(truth).astype(np.int32)},
                    columns={"features": ["x", "y", "e"]})

# ---- model: two GravNet blocks, then beta in [0, 1] and a 2-D clustering space ----
config = {
    "inputs": [{"name": "features", "features": 3}],
    "nodes": [
        {"name": "gn1", "op": "gravnet", "inputs": ["features"], "out": 32, "space": 4, "prop": 16, "k": 12},
        {"name": "a1", "op": "elu", "inputs": ["gn1"]},
        {"name": "gn2", "op": "gravnet", "inputs": ["a1"], "out": 32, "space": 4, "prop": 16, "k": 12},
        {"name": "a2", "op": "elu", "inputs": ["gn2"]},
        {"name": "b", "op": "linear", "inputs": ["a2"], "out": 1},
        {"name": "beta", "op": "sigmoid", "inputs": ["b"]},
        {"name": "coords", "op": "linear", "inputs": ["a2"], "out": 2},
    ],
    "outputs": ["beta", "coords"],
}
model = gpuml.Model.from_config(config, seed=1)
print(model.summary())

trainer = gpuml.Trainer(model, {"kind": "adamw", "lr": 3e-3, "clip_norm": 1.0}, loss="object_condensation",
                        loss_options={"q_min": 0.5})
losses = trainer.fit(data, inputs=["features"], target="truth", epochs=args.epochs, max_events=32, seed=1)
print("epoch losses:", " ".join(f"{v:.3f}" for v in losses))
model.save(args.out)

# ---- inference with the saved model: condensation points have high beta ----
reloaded = gpuml.Model.load(args.out)
rs, f = gpuml.Dataset(data).read(0, min(64, args.events))
beta, coords = reloaded(f["features"], rs)
beta, t = beta[:, 0], f["truth"]
print(f"mean beta: object hits {beta[t >= 0].mean():.3f}, noise hits {beta[t < 0].mean():.3f}")
print("saved", args.out)
