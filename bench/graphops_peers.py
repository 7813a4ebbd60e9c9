#!/usr/bin/env python3
"""Time PyTorch / PyTorch Geometric on the op-level workloads of
bench/bench_graphops.c, on the same data, and check gpuml's results.

    build/bench/bench_graphops --dump /tmp/gd      # writes inputs + gpuml outputs
    python3 bench/graphops_peers.py /tmp/gd [--reps 10] [--threads 2]

Peers (torch.set_num_threads(T), CPU):
  gravnet  : what PyG's GravNetConv.message / .aggregate compute, written out
             (GravNetConv itself refuses to construct without pyg-lib, whose
             wheels are not on PyPI): the [E, P] messages h_j * exp(-10 dist2)
             then torch_geometric.utils.scatter mean and max, concatenated;
             forward + backward to h and dist2.
  edgeconv : PyG EdgeConv(Linear(2F, C), aggr='mean') on the 16 neighbours
             without self; forward + backward to x, W, b.
  batchnorm: torch.nn.BatchNorm1d on the valid [E, C] edge rows (training).
Each workload runs in a fresh process. Peak memory: the process's maximum
resident set (ru_maxrss) during one forward + backward, minus the resident
set just before it (inputs included in neither). Needs torch and
torch_geometric (pip); torch_scatter / torch_cluster are not used.
"""
import argparse
import multiprocessing as mp
import os
import resource
import sys
import time

import numpy as np

GN = dict(n=20000, P=22, k=40)
EC = dict(n=6400, F=64, C=64, k=17)


def rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def load(d, name, dtype, shape):
    return np.fromfile(os.path.join(d, name), dtype=dtype).reshape(shape)


def gravnet(d, reps, check):
    import torch
    from torch_geometric.utils import scatter
    n, P, k = GN["n"], GN["P"], GN["k"]
    h0 = torch.from_numpy(load(d, "gn_h.f32", np.float32, (n, P)))
    idx = torch.from_numpy(load(d, "gn_idx.i32", np.int32, (n, k))).long()
    d20 = torch.from_numpy(load(d, "gn_d2.f32", np.float32, (n, k)))
    gout = torch.from_numpy(load(d, "gn_gout.f32", np.float32, (n, 2 * P)))
    valid = idx >= 0
    tgt = torch.arange(n).unsqueeze(1).expand(n, k)[valid]
    edge_index = torch.stack([idx[valid], tgt])  # source j -> target i
    src, dst = edge_index

    def step():
        h = h0.clone().requires_grad_(True)
        d2 = d20.clone().requires_grad_(True)
        w = torch.exp(-10.0 * d2[valid])
        msg = h[src] * w.unsqueeze(1)  # GravNetConv.message: x_j * edge_weight
        out = torch.cat([scatter(msg, dst, dim=0, dim_size=n, reduce="mean"),
                         scatter(msg, dst, dim=0, dim_size=n, reduce="max")], dim=-1)
        out.backward(gout)
        return out, h.grad, d2.grad

    return run(step, reps, check, d, [("gn_out.f32", (n, 2 * P)), ("gn_gh.f32", (n, P)), ("gn_gd2.f32", (n, k))])


def edgeconv(d, reps, check):
    import torch
    from torch_geometric.nn import EdgeConv
    n, F, C, k = EC["n"], EC["F"], EC["C"], EC["k"]
    x0 = torch.from_numpy(load(d, "ec_x.f32", np.float32, (n, F)))
    idx = torch.from_numpy(load(d, "ec_idx.i32", np.int32, (n, k))).long()[:, 1:]  # ParticleNet: self excluded
    w = torch.from_numpy(load(d, "ec_w.f32", np.float32, (C, 2 * F)))
    b = torch.from_numpy(load(d, "ec_b.f32", np.float32, (C,)))
    gagg = torch.from_numpy(load(d, "ec_gagg.f32", np.float32, (n, C)))
    valid = idx >= 0
    tgt = torch.arange(n).unsqueeze(1).expand_as(idx)[valid]
    edge_index = torch.stack([idx[valid], tgt])
    lin = torch.nn.Linear(2 * F, C)
    conv = EdgeConv(lin, aggr="mean")  # resets lin's parameters: copy after
    with torch.no_grad():
        lin.weight.copy_(w)
        lin.bias.copy_(b)

    def step():
        lin.zero_grad(set_to_none=True)
        x = x0.clone().requires_grad_(True)
        out = conv(x, edge_index)
        out.backward(gagg)
        return out, x.grad, lin.weight.grad, lin.bias.grad

    return run(step, reps, check, d, [("ec_agg.f32", (n, C)), ("ec_gx.f32", (n, F)), ("ec_gw.f32", (C, 2 * F)),
                                      ("ec_gb.f32", (C,))])


def batchnorm(d, reps, check):
    import torch
    n, C, k = EC["n"], EC["C"], EC["k"]
    idx = load(d, "ec_idx.i32", np.int32, (n, k))[:, 1:]
    rows = int((idx >= 0).sum())
    gen = torch.Generator().manual_seed(0)
    x0 = torch.randn(rows, C, generator=gen)
    gy = torch.randn(rows, C, generator=gen)
    bn = torch.nn.BatchNorm1d(C)

    def step():
        bn.zero_grad(set_to_none=True)
        x = x0.clone().requires_grad_(True)
        y = bn(x)
        y.backward(gy)
        return (y,)

    return run(step, reps, False, d, [])


def run(step, reps, check, d, refs):
    import torch
    import gc
    gc.collect()
    base = rss_bytes()
    res = step()  # first call: peak memory
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base
    errs = []
    if check:
        for (name, shape), got in zip(refs, res):
            ref = load(d, name, np.float32, shape)
            g = got.detach().numpy()
            errs.append((name, float(np.max(np.abs(g - ref))), float(np.max(np.abs(ref)))))
    del res
    best = 1e30
    for _ in range(reps):
        t0 = time.perf_counter()
        step()
        best = min(best, time.perf_counter() - t0)
    return best, peak, errs


def child(q, name, d, reps, threads):
    try:
        import torch
        torch.set_num_threads(threads)
        f = {"gravnet": gravnet, "edgeconv": edgeconv, "batchnorm": batchnorm}[name]
        q.put(f(d, reps, True))
    except BaseException as e:  # the parent must not wait forever
        q.put(e)
        raise


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dump_dir")
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    import torch
    import torch_geometric
    print(f"torch {torch.__version__}, torch_geometric {torch_geometric.__version__}, CPU, "
          f"{a.threads} threads, best of {a.reps}")
    ctx = mp.get_context("spawn")
    labels = {
        "gravnet": "PyG GravNetConv aggregation N=20000 P=22 k=40",
        "edgeconv": "PyG EdgeConv(Linear(128, 64), mean) N=6400 k=16",
        "batchnorm": "torch BatchNorm1d (training) on the valid edge rows, C=64",
    }
    for name in ("gravnet", "edgeconv", "batchnorm"):
        q = ctx.Queue()
        p = ctx.Process(target=child, args=(q, name, a.dump_dir, a.reps, a.threads))
        p.start()
        r = q.get()
        p.join()
        if isinstance(r, BaseException):
            print(f"{labels[name]}: failed: {r!r}")
            continue
        best, peak, errs = r
        print(f"{labels[name]}: forward+backward {1e3 * best:.2f} ms, peak {peak / 2**20:.2f} MiB")
        for fname, err, scale in errs:
            print(f"    gpuml {fname}: max |gpuml - torch| = {err:.3g} (max |torch| = {scale:.3g})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
