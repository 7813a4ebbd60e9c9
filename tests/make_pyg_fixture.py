#!/usr/bin/env python3
"""Build tests/data/pyg_layers.h5: PyTorch Geometric's GravNetConv, EdgeConv and
DynamicEdgeConv with fixed random weights on one ragged batch, forward and
backward, for tests/test_graph_layers.c to compare gpuml against.

Run by hand (needs torch, torch_geometric, h5py from PyPI):
    python3 tests/make_pyg_fixture.py

PyG's GravNetConv and DynamicEdgeConv call the operator torch.ops.pyg.knn
from pyg-lib, which has no wheel for every torch. When it is missing, an
exact brute-force implementation with pyg-lib's semantics (same event only,
the k nearest including the point itself, [2, E] with row 0 indexing y) is
registered under that very name, so PyG's own layer code runs unchanged.
Ties do not occur on this random data.
"""
import os
import sys

import h5py
import numpy as np
import torch
from torch import nn

import torch_geometric
import torch_geometric.typing
from torch_geometric.nn import DynamicEdgeConv, EdgeConv, GravNetConv


def knn_exact(x, y, k, batch_x=None, batch_y=None):
    """torch_cluster.knn(x, y, k): for each y[i] the k nearest x[j] of its event.
    Returns [2, E]: row 0 = index into y, row 1 = index into x."""
    if batch_x is None:
        batch_x = torch.zeros(x.size(0), dtype=torch.long)
    if batch_y is None:
        batch_y = torch.zeros(y.size(0), dtype=torch.long)
    rows, cols = [], []
    d2 = ((y[:, None, :].double() - x[None, :, :].double()) ** 2).sum(-1)
    same = batch_y[:, None] == batch_x[None, :]
    d2 = torch.where(same, d2, torch.full_like(d2, float("inf")))
    for i in range(y.size(0)):
        n = int(same[i].sum())
        kk = min(k, n)
        order = torch.argsort(d2[i], stable=True)[:kk]
        rows.append(torch.full((kk,), i, dtype=torch.long))
        cols.append(order)
    return torch.stack([torch.cat(rows), torch.cat(cols)])


def ptr_to_batch(ptr, n):
    if ptr is None:
        return torch.zeros(n, dtype=torch.long)
    return torch.repeat_interleave(torch.arange(ptr.numel() - 1), ptr[1:] - ptr[:-1])


_lib = None


def patch_knn():
    global _lib
    if torch_geometric.typing.WITH_KNN:
        return "pyg-lib"
    _lib = torch.library.Library("pyg", "DEF")
    _lib.define("knn(Tensor x, Tensor y, Tensor? ptr_x, Tensor? ptr_y, int k, bool cosine, int num_workers) -> Tensor")

    def knn_op(x, y, ptr_x, ptr_y, k, cosine, num_workers):
        assert not cosine
        return knn_exact(x.detach(), y.detach(), k, ptr_to_batch(ptr_x, x.size(0)), ptr_to_batch(ptr_y, y.size(0)))

    _lib.impl("knn", knn_op, "CPU")
    torch_geometric.typing.WITH_KNN = True
    return "exact brute force registered as pyg::knn (pyg-lib missing)"


def write(f, group, tensors):
    for name, t in tensors.items():
        arr = t.detach().cpu().numpy() if torch.is_tensor(t) else np.asarray(t)
        f.create_dataset(f"{group}/{name}", data=arr)


def main():
    torch.manual_seed(1234)
    np.random.seed(1234)
    source = patch_knn()
    sizes = [7, 12, 3, 20]
    n = sum(sizes)
    splits = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    batch = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
    f_in = 6
    out_path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "pyg_layers.h5")
    with h5py.File(out_path, "w") as f:
        f.attrs["torch"] = str(torch.__version__)
        f.attrs["torch_geometric"] = str(torch_geometric.__version__)
        f.attrs["knn"] = source
        f.attrs["script"] = "tests/make_pyg_fixture.py"
        f.create_dataset("row_splits", data=splits)

        # ---- GravNetConv ------------------------------------------------------
        conv = GravNetConv(f_in, 8, space_dimensions=3, propagate_dimensions=5, k=6)
        x = torch.randn(n, f_in, requires_grad=True)
        out = conv(x, batch)
        r = torch.randn_like(out)
        (out * r).sum().backward()
        write(f, "gravnet", {"x": x, "out": out, "seed": r, "grad/x": x.grad})
        for name, p in conv.named_parameters():
            write(f, "gravnet", {f"weights/{name}": p, f"grad/{name}": p.grad})

        # ---- EdgeConv on a kNN graph of fixed coordinates ----------------------
        pts = torch.randn(n, 2)
        x = torch.randn(n, f_in, requires_grad=True)
        mlp = nn.Sequential(nn.Linear(2 * f_in, 16, bias=False), nn.BatchNorm1d(16), nn.ReLU(),
                            nn.Linear(16, 12, bias=False), nn.BatchNorm1d(12), nn.ReLU())
        conv = EdgeConv(mlp, aggr="max")
        edge_index = knn_exact(pts, pts, 5, batch, batch).flip([0])
        out = conv(x, edge_index)
        r = torch.randn_like(out)
        (out * r).sum().backward()
        write(f, "edgeconv", {"points": pts, "x": x, "out": out, "seed": r, "grad/x": x.grad})
        names = {"nn.0.weight": "mlp0.weight", "nn.1.weight": "bn0.weight", "nn.1.bias": "bn0.bias",
                 "nn.3.weight": "mlp1.weight", "nn.4.weight": "bn1.weight", "nn.4.bias": "bn1.bias"}
        for name, p in conv.named_parameters():
            write(f, "edgeconv", {f"weights/{names[name]}": p, f"grad/{names[name]}": p.grad})
        write(f, "edgeconv", {"buffers/bn0.running_mean": mlp[1].running_mean,
                              "buffers/bn0.running_var": mlp[1].running_var,
                              "buffers/bn1.running_mean": mlp[4].running_mean,
                              "buffers/bn1.running_var": mlp[4].running_var})

        # ---- DynamicEdgeConv (graph from the input features) --------------------
        x = torch.randn(n, f_in, requires_grad=True)
        mlp = nn.Sequential(nn.Linear(2 * f_in, 10, bias=False), nn.BatchNorm1d(10), nn.ReLU())
        conv = DynamicEdgeConv(mlp, k=4, aggr="mean")
        out = conv(x, batch)
        r = torch.randn_like(out)
        (out * r).sum().backward()
        write(f, "dynamic", {"x": x, "out": out, "seed": r, "grad/x": x.grad})
        names = {"nn.0.weight": "mlp0.weight", "nn.1.weight": "bn0.weight", "nn.1.bias": "bn0.bias"}
        for name, p in conv.named_parameters():
            write(f, "dynamic", {f"weights/{names[name]}": p, f"grad/{names[name]}": p.grad})
        write(f, "dynamic", {"buffers/bn0.running_mean": mlp[1].running_mean,
                             "buffers/bn0.running_var": mlp[1].running_var})
    print(f"wrote {out_path} (knn: {source})")


if __name__ == "__main__":
    sys.exit(main())
