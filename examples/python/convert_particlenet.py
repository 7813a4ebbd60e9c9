"""Bring your trained model: train a small weaver ParticleNet in PyTorch,
convert it with gpuml.convert, serve it from the gpuml engine (C, loading
the model file with gpuml_model_load), and compare with PyTorch.

    python examples/python/convert_particlenet.py [--steps 20] [--out particlenet.h5]

Needs torch and weaver-core (tools/setup.sh installs them for the tests).
What weaver's training leaves behind is recreated here: the checkpoint
(*_state.pt, a state_dict), the network (as a JSON spec; a weaver network
file with get_model works the same way) and preprocess.json. The converted
model takes RAW per-particle inputs: the standardisation of preprocess.json
is part of it. The same conversion from the shell:

    python -m gpuml.convert weaver --state particlenet_state.pt \\
        --network particlenet.json --preprocess preprocess.json -o particlenet.h5
"""
import argparse
import json
import os
import time

import torch  # before gpuml: both load libnccl.so.2 (see gpuml.convert)
import numpy as np

import gpuml
import gpuml.convert as gc
from weaver.nn.model.ParticleNet import ParticleNet

ap = argparse.ArgumentParser()
ap.add_argument("--steps", type=int, default=20)
ap.add_argument("--out", default="particlenet.h5")
ap.add_argument("--events", type=int, default=200, help="test jets served through the engine")
args = ap.parse_args()
workdir = os.path.dirname(os.path.abspath(args.out))

FEATURES = ["log_pt", "log_e", "deta", "dphi", "charge"]
P = 32  # weaver's padding length (var_length)
rng = np.random.default_rng(0)


def make_jets(n):
    """Toy jets: class 1 is narrower and harder than class 0. Raw units."""
    jets, labels = [], rng.integers(0, 2, n)
    for y in labels:
        m = int(rng.integers(3, P + 1))
        width = 0.15 if y else 0.3
        deta, dphi = rng.normal(0, width, m), rng.normal(0, width, m)
        log_pt = rng.normal(2.5 + 0.5 * y, 1.0, m)
        f = np.stack([log_pt, log_pt + np.abs(deta), deta, dphi, rng.choice([-1.0, 0.0, 1.0], m)], 1)
        jets.append((np.stack([deta, dphi], 1).astype(np.float32), f.astype(np.float32)))
    return jets, labels


train, train_y = make_jets(2000)

# weaver-style automatic standardisation: median and 1 / (half the 16-84% range), clipped to [-5, 5]
allf = np.concatenate([f for _, f in train])
infos = {}
for c, v in enumerate(FEATURES):
    lo, med, hi = np.percentile(allf[:, c], [16, 50, 84])
    infos[v] = {"median": float(med), "norm_factor": float(1 / max((hi - lo) / 2, 1e-2)), "replace_inf_value": 0,
                "lower_bound": -5.0, "upper_bound": 5.0, "pad": 0}
plain = {"median": 0, "norm_factor": 1, "replace_inf_value": 0, "lower_bound": -1e32, "upper_bound": 1e32, "pad": 0}
preprocess = {
    "output_names": ["label_bkg", "label_sig"],
    "input_names": ["pf_points", "pf_features", "pf_mask"],
    "pf_points": {"var_names": ["deta", "dphi"], "var_infos": {"deta": plain, "dphi": plain}, "var_length": P},
    "pf_features": {"var_names": FEATURES, "var_infos": infos, "var_length": P},
    "pf_mask": {"var_names": ["mask"], "var_infos": {"mask": plain}, "var_length": P},
}


def standardise(f):
    out = np.empty_like(f)
    for c, v in enumerate(FEATURES):
        i = infos[v]
        out[:, c] = np.clip((f[:, c] - np.float32(i["median"])) * np.float32(i["norm_factor"]),
                            np.float32(i["lower_bound"]), np.float32(i["upper_bound"]))
    return out


def padded(jets):
    """weaver's layout: [B, C, P] arrays and the mask, standardised."""
    B = len(jets)
    pts, fts, mask = (np.zeros((B, 2, P), np.float32), np.zeros((B, len(FEATURES), P), np.float32),
                      np.zeros((B, 1, P), np.float32))
    for b, (p, f) in enumerate(jets):
        n = len(p)
        pts[b, :, :n], fts[b, :, :n], mask[b, 0, :n] = p.T, standardise(f).T, 1
    return torch.tensor(pts), torch.tensor(fts), torch.tensor(mask)


# ---- train in PyTorch (weaver's network, weaver's padded layout) -------------------------
spec = {"model": "ParticleNet", "kwargs": {"input_dims": len(FEATURES), "num_classes": 2,
                                            "conv_params": [[7, [16, 16, 16]], [7, [32, 32, 32]]],
                                            "fc_params": [[64, 0.1]], "use_fusion": True}}
torch.manual_seed(0)
net = ParticleNet(**spec["kwargs"])
opt = torch.optim.Adam(net.parameters(), lr=3e-3)
net.train()
t0 = time.perf_counter()
for step in range(args.steps):
    idx = rng.choice(len(train), 64, replace=False)
    pts, fts, mask = padded([train[i] for i in idx])
    loss = torch.nn.functional.cross_entropy(net(pts, fts, mask), torch.tensor(train_y[idx]))
    opt.zero_grad()
    loss.backward()
    opt.step()
print(f"trained {args.steps} steps in {time.perf_counter() - t0:.1f} s, last loss {loss.item():.3f}")

# what weaver leaves behind
state = os.path.join(workdir, "particlenet_state.pt")
torch.save(net.state_dict(), state)
with open(os.path.join(workdir, "particlenet.json"), "w") as f:
    json.dump(spec, f)
with open(os.path.join(workdir, "preprocess.json"), "w") as f:
    json.dump(preprocess, f, indent=1)

# ---- convert -------------------------------------------------------------------------------
model = gc.from_weaver(state, os.path.join(workdir, "particlenet.json"), os.path.join(workdir, "preprocess.json"))
model.save(args.out)
print(f"converted: {model}")
print(f"wrote {args.out}")

# ---- serve through the engine (C: gpuml_model_load + batched inference) and compare ------------
test, test_y = make_jets(args.events)
net.eval()
with torch.no_grad():
    ref = net(*padded(test)).numpy()
with gpuml.Engine(args.out, max_batch_events=32, max_batch_rows=4096, warmup=0) as engine:
    futures = [engine.submit([p, f]) for p, f in test]  # raw inputs: the model standardises
    out = np.concatenate([fut.result() for fut in futures])
diff = np.abs(out - ref).max()
acc = float((out.argmax(1) == test_y).mean())
print(f"{len(test)} jets of 3..{P} particles through the engine: accuracy {acc:.2f}, "
      f"largest |gpuml - PyTorch| on the logits {diff:.2e}")
if diff > 1e-4:
    raise SystemExit("gpuml and PyTorch disagree")
