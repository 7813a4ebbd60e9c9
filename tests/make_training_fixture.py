#!/usr/bin/env python3
"""Build tests/data/training_step.h5: one training step of a small GravNet
model (object condensation loss) and of ParticleNet-Lite (cross-entropy) in
PyTorch + PyTorch Geometric, from the same JSON configs gpuml builds its
models from, so tests/test_training_parity.c can require the same loss,
every parameter gradient, the batch-norm statistics and the parameters
after one AdamW step.

Run by hand (needs torch, torch_geometric, h5py from PyPI):
    python3 tests/make_training_fixture.py

The configs are interpreted by a small PyTorch translation of gpuml's ops
(linear, batchnorm, elu/relu/sigmoid, concat, global_pool, broadcast,
gravnet = PyG's GravNetConv, particlenet_block = ParticleNet's EdgeConv
block on the ragged batch). Dropout is left out: its masks cannot agree.
"""
import json
import os
import sys

import h5py
import numpy as np
import torch
from torch import nn

import torch_geometric
import torch_geometric.typing
from torch_geometric.nn import GravNetConv
from torch_geometric.utils import scatter

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_pyg_fixture import knn_exact, patch_knn  # noqa: E402

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")


class ParticleNetBlock(nn.Module):
    """ParticleNet's EdgeConv block (Qu and Gouskos 2020) on a ragged batch:
    k nearest neighbours (self excluded), edge features [x_i, x_j - x_i],
    per layer Linear (no bias) + BatchNorm over the edges + ReLU, mean over
    the neighbours, shortcut (Linear + BatchNorm when the widths differ),
    ReLU."""

    def __init__(self, in_feat, k, widths):
        super().__init__()
        self.k = k
        dims = [2 * in_feat] + list(widths)
        self.mlp = nn.ModuleList(nn.Linear(dims[i], dims[i + 1], bias=False) for i in range(len(widths)))
        self.bn = nn.ModuleList(nn.BatchNorm1d(w) for w in widths)
        self.sc = nn.Linear(in_feat, widths[-1], bias=False) if in_feat != widths[-1] else None
        self.sc_bn = nn.BatchNorm1d(widths[-1]) if self.sc is not None else None

    def forward(self, pts, x, batch):
        ei = knn_exact(pts, pts, self.k + 1, batch, batch)   # row 0: i, row 1: j
        keep = ei[0] != ei[1]                                  # self excluded
        i, j = ei[0][keep], ei[1][keep]
        e = torch.cat([x[i], x[j] - x[i]], dim=1)
        for lin, bn in zip(self.mlp, self.bn):
            e = torch.relu(bn(lin(e)))
        fts = scatter(e, i, dim=0, dim_size=x.size(0), reduce="mean")
        sc = self.sc_bn(self.sc(x)) if self.sc is not None else x
        return torch.relu(sc + fts)


class ConfigModel(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        feats = {i["name"]: i["features"] for i in cfg["inputs"]}
        self.layers = nn.ModuleDict()
        for n in cfg["nodes"]:
            op, ins = n["op"], n["inputs"]
            f0 = feats[ins[0]]
            if op == "linear":
                self.layers[n["name"]] = nn.Linear(f0, n["out"], bias=n.get("bias", True))
                feats[n["name"]] = n["out"]
            elif op == "batchnorm":
                self.layers[n["name"]] = nn.BatchNorm1d(f0, momentum=n.get("momentum", 0.1), eps=n.get("eps", 1e-5))
                feats[n["name"]] = f0
            elif op == "gravnet":
                self.layers[n["name"]] = GravNetConv(f0, n["out"], n["space"], n["prop"], n["k"])
                feats[n["name"]] = n["out"]
            elif op == "particlenet_block":
                self.layers[n["name"]] = ParticleNetBlock(feats[ins[1]], n["k"], n["widths"])
                feats[n["name"]] = n["widths"][-1]
            elif op == "concat":
                feats[n["name"]] = sum(feats[i] for i in ins)
            elif op in ("elu", "relu", "sigmoid", "global_pool", "broadcast", "dropout"):
                feats[n["name"]] = f0
            else:
                raise ValueError(f"op {op} not supported by the fixture")

    def forward(self, inputs, batch, nevents):
        vals = dict(inputs)
        for n in self.cfg["nodes"]:
            op, name = n["op"], n["name"]
            x = [vals[i] for i in n["inputs"]]
            if op in ("linear", "batchnorm"):
                y = self.layers[name](x[0])
            elif op == "gravnet":
                y = self.layers[name](x[0], batch)
            elif op == "particlenet_block":
                y = self.layers[name](x[0], x[1], batch)
            elif op == "elu":
                y = torch.nn.functional.elu(x[0], n.get("alpha", 1.0))
            elif op == "relu":
                y = torch.relu(x[0])
            elif op == "sigmoid":
                y = torch.sigmoid(x[0])
            elif op == "dropout":  # masks never agree with gpuml's: the fixture leaves dropout out
                y = torch.nn.functional.dropout(x[0], n.get("p", 0.5), self.training)
            elif op == "concat":
                y = torch.cat(x, dim=1)
            elif op == "global_pool":
                y = scatter(x[0], batch, dim=0, dim_size=nevents, reduce=n.get("reduce", "mean"))
            elif op == "broadcast":
                y = x[0][batch]
            vals[name] = y
        return [vals[o] for o in self.cfg["outputs"]]

    def gpuml_names(self):
        """PyTorch parameter / buffer name -> gpuml's "layer.param"."""
        out = {}
        for full, _ in list(self.named_parameters()) + list(self.named_buffers()):
            if full.endswith("num_batches_tracked"):
                continue
            layer, rest = full.split(".", 2)[1], full.split(".", 2)[2]
            mod = self.layers[layer]
            if isinstance(mod, ParticleNetBlock):
                parts = rest.split(".")
                if parts[0] == "mlp":
                    rest = f"mlp{parts[1]}.{parts[2]}"
                elif parts[0] == "bn":
                    rest = f"bn{parts[1]}.{parts[2]}"
            out[full] = f"{layer}.{rest}"
        return out


def oc_loss(beta, coords, truth, splits, q_min=0.1, s_b=1.0):
    """Object condensation exactly as gpuml defines it (kernels/condensation.h)."""
    per_event, comps = [], []
    for e in range(len(splits) - 1):
        s, t = int(splits[e]), int(splits[e + 1])
        if t == s:
            continue
        b, x, tid = beta[s:t, 0], coords[s:t], truth[s:t]
        q = torch.atanh(b / 1.002) ** 2 + q_min
        lv = torch.zeros((), dtype=b.dtype)
        lb = torch.zeros((), dtype=b.dtype)
        objs = sorted(set(int(v) for v in tid.tolist() if v >= 0))
        for k in objs:
            members = tid == k
            idx = torch.nonzero(members)[:, 0]
            a = idx[torch.argmax(b[idx])]          # first maximum
            qa = q[a]
            d2 = ((x - x[a]) ** 2).sum(1)
            v = torch.zeros_like(d2)
            v = v + torch.where(members, qa * d2, torch.zeros_like(d2))
            other = ~members                        # never the point a itself: sqrt is safe
            v = v.index_put((torch.nonzero(other)[:, 0],), qa * torch.relu(1 - torch.sqrt(d2[other])), accumulate=True)
            lv = lv + (q * v).sum()
            lb = lb + (1 - b[a])
        lv = lv / (t - s)
        lb = lb / len(objs) if objs else lb
        noise = tid < 0
        ln = s_b * b[noise].mean() if bool(noise.any()) else torch.zeros((), dtype=b.dtype)
        per_event.append(lv + lb + ln)
        comps.append(torch.stack([lv, lb, ln]))
    return torch.stack(per_event).mean(), torch.stack(comps).mean(0)


def run(f, group, cfg, inputs, splits, target, loss_kind, lr=1e-3, wd=0.01):
    torch.manual_seed(7)
    model = ConfigModel(cfg)
    model.train()
    names = model.gpuml_names()
    g = f.create_group(group)
    g.attrs["config"] = json.dumps(cfg)
    g.attrs["lr"], g.attrs["weight_decay"] = lr, wd
    g.create_dataset("row_splits", data=splits)
    for k, v in inputs.items():
        g.create_dataset(f"inputs/{k}", data=v.numpy())
    g.create_dataset("target", data=target.numpy())
    for full, t in list(model.named_parameters()) + list(model.named_buffers()):
        if full in names:
            g.create_dataset(f"init/{names[full]}", data=t.detach().numpy())
    batch = torch.repeat_interleave(torch.arange(len(splits) - 1), torch.tensor(np.diff(splits)))
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=wd)
    opt.zero_grad()
    outs = model({k: v for k, v in inputs.items()}, batch, len(splits) - 1)
    if loss_kind == "oc":
        loss, comps = oc_loss(outs[0], outs[1], target, splits)
        g.create_dataset("components", data=comps.detach().numpy())
    else:
        loss = nn.functional.cross_entropy(outs[0], target.long())
    loss.backward()
    g.create_dataset("loss", data=np.array([loss.item()], dtype=np.float32))
    for full, p in model.named_parameters():
        g.create_dataset(f"grad/{names[full]}", data=p.grad.numpy())
    opt.step()
    for full, t in list(model.named_parameters()) + list(model.named_buffers()):
        if full in names:
            g.create_dataset(f"after/{names[full]}", data=t.detach().numpy())


def main():
    source = patch_knn()
    rng = np.random.default_rng(3)
    with h5py.File(os.path.join(DATA, "training_step.h5"), "w") as f:
        f.attrs["torch"] = str(torch.__version__)
        f.attrs["torch_geometric"] = str(torch_geometric.__version__)
        f.attrs["knn"] = source
        f.attrs["script"] = "tests/make_training_fixture.py"

        # GravNet + object condensation on small HGCAL-like events
        cfg = json.load(open(os.path.join(os.path.dirname(DATA), "..", "examples", "configs", "gravnet_oc.json")))
        cfg["nodes"] = [n for n in cfg["nodes"] if not n["name"].startswith("b3")]
        for n in cfg["nodes"]:
            if n["name"] == "all":
                n["inputs"] = ["b1", "b2"]
            if n["op"] == "gravnet":
                n["k"] = 6
        sizes = [30, 18, 25]
        splits = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        hits = torch.tensor(rng.normal(size=(sum(sizes), 5)), dtype=torch.float32)
        truth = torch.tensor(rng.integers(-1, 4, size=sum(sizes)), dtype=torch.int32)
        run(f, "gravnet", cfg, {"hits": hits}, splits, truth, "oc")

        # ParticleNet-Lite (without dropout) + cross-entropy on small jets
        cfg = json.load(open(os.path.join(os.path.dirname(DATA), "..", "examples", "configs", "particlenet_lite.json")))
        cfg["nodes"] = [n for n in cfg["nodes"] if n["op"] != "dropout"]
        for n in cfg["nodes"]:
            if n["name"] == "logits":
                n["inputs"] = ["fc_act"]
        sizes = [12, 20, 9, 15]
        splits = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        pts = torch.tensor(rng.normal(size=(sum(sizes), 2)), dtype=torch.float32)
        fts = torch.tensor(rng.normal(size=(sum(sizes), 7)), dtype=torch.float32)
        labels = torch.tensor([0, 1, 1, 0], dtype=torch.int32)
        run(f, "particlenet", cfg, {"points": pts, "features": fts}, splits, labels, "ce")
    print(f"wrote {os.path.join(DATA, 'training_step.h5')} (knn: {source})")


if __name__ == "__main__":
    sys.exit(main())
