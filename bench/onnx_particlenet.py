#!/usr/bin/env python3
"""ParticleNet(-Lite) exported from PyTorch to ONNX and run in ONNX Runtime,
against gpuml's inference engine on the same jets and the same weights
(issue 7's comparison; bench/README-onnx.md has the commands and numbers).

The PyTorch model is the usual dense export form of ParticleNet (as in
weaver's ParticleNet): jets padded to [B, P, F] with a mask [B, P]; the kNN
is a dense pairwise distance matrix |a|^2 - 2 a.b + |b|^2 with torch.topk
(self and padded particles pushed out of reach); neighbour features by one
Gather; the edge MLP as matrix products on [B, P, k, 2C]; batch norms in
inference mode, folded into the preceding linear layer (what any inference
export does; --no-fold keeps them separate; --factorised computes the
first edge layer per particle as gpuml does). It interprets gpuml's JSON
config (batchnorm, particlenet_block, global_pool, linear, relu, elu,
dropout, concat) and loads the weights of a gpuml model file (through the
Python bindings, so any file layout; docs/file_formats.md).

    pip install onnx onnxruntime            # torch, h5py, numpy as for tests/
    python3 bench/onnx_particlenet.py export model.h5 model.onnx
    python3 bench/onnx_particlenet.py check model.h5 model.onnx jets.h5 gpuml_logits.f32
    python3 bench/onnx_particlenet.py bench model.onnx jets.h5 --mode perjet --intra 1
    python3 bench/onnx_particlenet.py compare model.h5 model.onnx jets.h5 --gpuml build/bench/bench_engine

`compare` alternates gpuml's engine and every ONNX Runtime variant, one
process at a time, --rounds times, and prints the best of each.
"""
import argparse
import json
import os
import subprocess
import sys
import threading
import time

import h5py
import numpy as np

BIG = 1e30  # distance given to self and to padding: never among the k nearest


# ---- the dense model -----------------------------------------------------------------------------
def load_gpuml(path):
    """config dict, {"layer.param": array} of a gpuml model file, read through
    gpuml's own reader (the Python bindings over the library just built:
    every file layout, checksum verified) rather than by HDF5 paths."""
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "python-bindings"))
    import gpuml
    m = gpuml.Model.load(path)
    tensors = {k: np.array(v, dtype=np.float32) for k, v in {**m.parameters(), **m.buffers()}.items()}
    return m.config, tensors


def dense_model(cfg, tensors, fold_bn=True, factorised=False):
    """The dense ParticleNet as a torch module (torch is imported here: timing needs only onnxruntime).
    factorised: the first edge layer as gpuml computes it, W [x_i, x_j - x_i] = (W1 - W2) x_i + W2 x_j,
    two per-particle products and a gather instead of a product per edge (not the usual export)."""
    import torch
    from torch import nn

    class DenseParticleNet(nn.Module):
        def __init__(self, cfg, tensors, fold_bn=True, factorised=False):
            super().__init__()
            self.cfg, self.fold, self.factorised = cfg, fold_bn, factorised
            self.w = {}
            self.record = None  # a list: gets (sorted neighbour indices, kth-gap) per block (check only)
            self.has_sc = {}
            self._n = 0

            def t(name):
                return torch.from_numpy(tensors[name].copy())

            def bn(prefix, eps):
                scale = t(prefix + "weight") / torch.sqrt(t(prefix + "running_var") + eps)
                return scale, t(prefix + "bias") - t(prefix + "running_mean") * scale

            for n in cfg["nodes"]:
                name, op, eps = n["name"], n["op"], n.get("eps", 1e-5)
                if op == "batchnorm":
                    self._reg(name, bn(name + ".", eps))
                elif op == "linear":
                    b = t(name + ".bias") if name + ".bias" in tensors else None
                    self._reg(name, (t(name + ".weight").t().contiguous(), b))
                elif op == "particlenet_block":
                    layers = []
                    for i in range(len(n["widths"])):
                        w = t(f"{name}.mlp{i}.weight").t().contiguous()
                        s, b = bn(f"{name}.bn{i}.", eps)
                        layers.append((w * s, b, None, None) if fold_bn else (w, None, s, b))
                    self.has_sc[name] = f"{name}.sc.weight" in tensors
                    if self.has_sc[name]:
                        w = t(f"{name}.sc.weight").t().contiguous()
                        s, b = bn(f"{name}.sc_bn.", eps)
                        layers.append((w * s, b, None, None) if fold_bn else (w, None, s, b))
                    self._reg(name, [x for layer in layers for x in layer])
                elif op not in ("relu", "elu", "dropout", "global_pool", "concat"):
                    raise ValueError(f"op {op} is not in the dense ParticleNet")

        def _reg(self, node, tensors):
            names = []
            for x in tensors:
                if x is None:
                    names.append(None)
                    continue
                nm = f"p{self._n}"
                self._n += 1
                self.register_buffer(nm, x)
                names.append(nm)
            self.w[node] = names

        def _get(self, node):
            return [None if nm is None else getattr(self, nm) for nm in self.w[node]]

        @staticmethod
        def _affine(x, w, b, s, c):
            y = torch.matmul(x, w)
            if b is not None:
                y = y + b
            if s is not None:
                y = y * s + c
            return y

        @staticmethod
        def _affine_post(y, b, s, c):
            if b is not None:
                y = y + b
            if s is not None:
                y = y * s + c
            return y

        def _block(self, node, coords, x, mask, k):
            ps = self._get(node)
            B, P, C = x.shape[0], x.shape[1], x.shape[2]
            sq = (coords * coords).sum(-1)
            d = sq.unsqueeze(2) - 2.0 * torch.matmul(coords, coords.transpose(1, 2)) + sq.unsqueeze(1)
            ar = torch.arange(P)
            eye = (ar.unsqueeze(1) == ar.unsqueeze(0)).unsqueeze(0)
            d = torch.where(eye, torch.full_like(d, BIG), d + (1.0 - mask).unsqueeze(1) * BIG)
            idx = torch.topk(d, k, dim=2, largest=False, sorted=False).indices       # [B, P, k]
            if self.record is not None:  # margin of the k-th neighbour: (d_(k+1) - d_k) / d_(k+1)
                dk = torch.topk(d, k + 1, dim=2, largest=False).values
                gap = ((dk[..., k] - dk[..., k - 1]) / dk[..., k]).min()
                self.record.append((torch.sort(idx, dim=2).values, float(gap)))
            flat = (idx + (torch.arange(B) * P).view(-1, 1, 1)).reshape(-1)
            nl = len(ps) // 4 - self.has_sc[node]  # 4 tensors per layer: w, b, s, c (b or s, c None)
            if self.factorised:
                w, b, s, c = ps[0:4]
                own = torch.matmul(x, w[:C] - w[C:])
                other = torch.matmul(x, w[C:])
                C1 = other.shape[2]
                e = own.unsqueeze(2) + other.reshape(-1, C1)[flat].reshape(B, P, k, C1)
                e = torch.relu(self._affine_post(e, b, s, c))
                first = 1
            else:
                xj = x.reshape(-1, C)[flat].reshape(B, P, k, C)
                xi = x.unsqueeze(2).expand(-1, -1, k, -1)
                e = torch.cat([xi, xj - xi], dim=3)
                first = 0
            for i in range(first, nl):
                e = torch.relu(self._affine(e, *ps[4 * i:4 * i + 4]))
            fts = e.mean(dim=2)
            sc = self._affine(x, *ps[4 * nl:4 * nl + 4]) if self.has_sc[node] else x
            return torch.relu(sc + fts)

        def forward(self, points, features, mask):
            """points [B, P, 2], features [B, P, 7], mask [B, P] (1: particle, 0: padding) -> per output [B, F]."""
            vals = {"points": points, "features": features}
            for n in self.cfg["nodes"]:
                op, name = n["op"], n["name"]
                x = [vals[i] for i in n["inputs"]]
                if op == "batchnorm":
                    s, c = self._get(name)
                    y = x[0] * s + c
                elif op == "linear":
                    w, b = self._get(name)
                    y = self._affine(x[0], w, b, None, None)
                elif op == "particlenet_block":
                    y = self._block(name, x[0], x[1], mask, n["k"])
                elif op == "relu":
                    y = torch.relu(x[0])
                elif op == "elu":
                    y = torch.nn.functional.elu(x[0], n.get("alpha", 1.0))
                elif op == "dropout":
                    y = x[0]
                elif op == "concat":
                    y = torch.cat(x, dim=-1)
                elif op == "global_pool":
                    m = mask.unsqueeze(2)
                    if n.get("reduce", "mean") == "mean":
                        y = (x[0] * m).sum(1) / m.sum(1)
                    elif n["reduce"] == "max":
                        y = (x[0] - (1.0 - m) * BIG).max(1).values
                    else:
                        raise ValueError("global_pool " + n["reduce"])
                vals[name] = y
            outs = [vals[o] for o in self.cfg["outputs"]]
            return outs[0] if len(outs) == 1 else tuple(outs)

    return DenseParticleNet(cfg, tensors, fold_bn, factorised)


def export(a):
    import torch
    cfg, tensors = load_gpuml(a.model)
    m = dense_model(cfg, tensors, fold_bn=not a.no_fold, factorised=a.factorised).eval()
    P = 24
    ex = (torch.randn(2, P, 2), torch.randn(2, P, 7), torch.ones(2, P))
    dyn = {"points": {0: "B", 1: "P"}, "features": {0: "B", 1: "P"}, "mask": {0: "B", 1: "P"}}
    outs = cfg["outputs"]
    for o in outs:
        dyn[o] = {0: "B"}
    with torch.no_grad():
        torch.onnx.export(m, ex, a.out, input_names=["points", "features", "mask"], output_names=outs,
                          dynamic_axes=dyn, opset_version=17, dynamo=False)
    import onnx
    onnx.checker.check_model(onnx.load(a.out))
    print(f"wrote {a.out} (batch norms {'kept' if a.no_fold else 'folded'}"
          f"{', first edge layer factorised' if a.factorised else ''})")


# ---- jets ----------------------------------------------------------------------------------------
def load_jets(path, pool):
    with h5py.File(path, "r") as f:
        sp = f["row_splits"][()]
        n = min(pool, len(sp) - 1)
        pts = f["points"][: sp[n]].astype(np.float32)
        fts = f["features"][: sp[n]].astype(np.float32)
    return [(pts[sp[e]:sp[e + 1]], fts[sp[e]:sp[e + 1]]) for e in range(n)]


def pad(jets):
    """[B, P, 2], [B, P, 7], [B, P] for a list of jets, P = the largest."""
    B, P = len(jets), max(len(p) for p, _ in jets)
    pts = np.zeros((B, P, 2), np.float32)
    fts = np.zeros((B, P, 7), np.float32)
    mask = np.zeros((B, P), np.float32)
    for i, (p, f) in enumerate(jets):
        pts[i, :len(p)], fts[i, :len(f)], mask[i, :len(p)] = p, f, 1
    return pts, fts, mask


def session(path, intra, spin=True):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = intra
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if not spin:
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def check(a):
    import torch
    cfg, tensors = load_gpuml(a.model)
    jets = load_jets(a.data, a.pool)
    nout = sum(1 for _ in cfg["outputs"])
    ref = np.fromfile(a.gpuml_dump, dtype=np.float32).reshape(len(jets), -1)
    print(f"{len(jets)} jets, {min(len(p) for p, _ in jets)}-{max(len(p) for p, _ in jets)} particles, "
          f"{nout} output(s), gpuml outputs [{ref.shape[0]}, {ref.shape[1]}]")
    worst = 0.0
    for fold in (False, True):
        m = dense_model(cfg, tensors, fold_bn=fold).eval()
        with torch.no_grad():
            per = np.concatenate([m(*(torch.from_numpy(x) for x in pad([j]))).numpy() for j in jets])
            bat = np.concatenate([m(*(torch.from_numpy(x) for x in pad(jets[s:s + 32]))).numpy()
                                  for s in range(0, len(jets), 32)])
        for what, v in (("per jet", per), ("padded batches of 32", bat)):
            d = np.abs(v - ref).max()
            print(f"  torch dense ({'folded' if fold else 'unfolded'} BN), {what}: max |diff| vs gpuml {d:.3g}")
    # float64 reference; per jet, whether float32 (matrix-product distances) picks other neighbours
    m32 = dense_model(cfg, tensors, fold_bn=False).eval()
    m64 = dense_model(cfg, tensors, fold_bn=False).eval().double()
    f64, f32, flips, gaps = [], [], [], []
    with torch.no_grad():
        for j in jets:
            m32.record, m64.record = [], []
            f64.append(m64(*(torch.from_numpy(x).double() for x in pad([j]))).numpy())
            f32.append(m32(*(torch.from_numpy(x) for x in pad([j]))).numpy())
            flips.append(any(bool((a[0] != b[0]).any()) for a, b in zip(m32.record, m64.record)))
            gaps.append(min(g for _, g in m64.record))
    f64, f32, flips, gaps = np.concatenate(f64), np.concatenate(f32), np.array(flips), np.array(gaps)
    d = np.abs(ref - f64).max(1)
    print(f"  gpuml vs the dense model in float64: max |diff| {d.max():.3g}, median {np.median(d):.3g}")
    d32 = np.abs(f32 - ref).max(1)
    print(f"  torch float32: {flips.sum()} jet(s) with another neighbour set than float64 "
          f"{np.flatnonzero(flips)[:10].tolist()}; max |diff| vs gpuml on the others {d32[~flips].max():.3g}")
    s = session(a.onnx, 1)
    per = np.concatenate([s.run(None, dict(zip(("points", "features", "mask"), pad([j]))))[0] for j in jets])
    bat = np.concatenate([s.run(None, dict(zip(("points", "features", "mask"), pad(jets[i:i + 32]))))[0]
                          for i in range(0, len(jets), 32)])
    for what, v in (("per jet", per), ("padded batches of 32", bat)):
        d = np.abs(v - ref).max(1)
        worst = max(worst, d.max())
        print(f"  onnxruntime, {what}: max |diff| vs gpuml {d.max():.3g}, median {np.median(d):.3g}, "
              f"99th percentile {np.percentile(d, 99):.3g} (max |logit| {np.abs(ref).max():.3g})")
    dj = np.abs(per - ref).max(1)
    bad = np.argwhere(dj > a.tol).ravel()
    print(f"  onnxruntime jets beyond {a.tol:g}: {len(bad)}" + (f" (first: {bad[:10].tolist()})" if len(bad) else ""))
    for e in np.argsort(-dj)[:3]:
        print(f"    jet {e}: |diff| {dj[e]:.3g}; smallest relative margin of a k-th neighbour (float64) {gaps[e]:.2g} "
              f"(median over jets {np.median(gaps):.2g})")
    print("CHECK " + json.dumps({"max_abs_diff": float(worst), "tol": a.tol, "jets": len(jets)}))
    return 0 if worst <= a.tol else 1


# ---- timing --------------------------------------------------------------------------------------
def event_size(k, j):
    """Jets in event k for a mean of j: 1 .. 2j-1 in a fixed scrambled order (as bench_engine --event-jets)."""
    return 1 + (k * 7) % (2 * j - 1)


def bench(a):
    jets = load_jets(a.data, a.pool)
    s = session(a.onnx, a.intra, spin=not a.no_spin)
    names = ("points", "features", "mask")
    if a.mode == "perjet":
        feeds = [dict(zip(names, pad([j]))) for j in jets]
        sizes = [1] * len(feeds)
    elif a.mode == "event":
        # CMSSW's batched use: all jets of an event in one call (padded to
        # the event's largest jet), events of event_size() jets, the jets
        # taken from the pool in order, as bench_engine --event-jets does.
        feeds, sizes, i0, k = [], [], 0, 0
        while i0 < a.events:
            nj = min(event_size(k, a.event_jets), a.events - i0)
            feeds.append(dict(zip(names, pad([jets[(i0 + j) % len(jets)] for j in range(nj)]))))
            sizes.append(nj)
            i0, k = i0 + nj, k + 1
    else:
        feeds, sizes = [], []
        for i in range(0, len(jets) - a.batch + 1, a.batch):
            feeds.append(dict(zip(names, pad(jets[i:i + a.batch]))))
            sizes.append(a.batch)
    calls = len(feeds) if a.mode == "event" else -(-a.events // sizes[0])
    for i in range(min(len(feeds), 200)):  # warm-up: ORT allocates per new shape
        s.run(None, feeds[i])
    lat = np.zeros(calls)
    nxt = iter(range(calls))
    lock = threading.Lock()

    def worker():
        while True:
            with lock:
                i = next(nxt, None)
            if i is None:
                return
            t0 = time.perf_counter()
            s.run(None, feeds[i % len(feeds)])
            lat[i] = time.perf_counter() - t0

    th = [threading.Thread(target=worker) for _ in range(a.threads)]
    c0, t0 = time.process_time(), time.perf_counter()
    for t in th:
        t.start()
    for t in th:
        t.join()
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    call_sizes = [sizes[i % len(sizes)] for i in range(calls)]
    jets_done = sum(call_sizes)
    # latency per jet: the call that computed it (every jet of a batch gets the batch's time)
    jet_lat = np.repeat(lat, call_sizes)
    r = {"impl": "onnxruntime", "mode": a.mode, "intra": a.intra, "threads": a.threads,
         "batch": a.event_jets if a.mode == "event" else sizes[0], "spin": not a.no_spin, "rate": jets_done / dt,
         "p50_us": 1e6 * np.percentile(jet_lat, 50), "p99_us": 1e6 * np.percentile(jet_lat, 99),
         "cpu_rate": jets_done / cpu, "jets": jets_done}
    import onnxruntime
    r["ort"] = onnxruntime.__version__
    what = f"events of mean {a.event_jets} jets" if a.mode == "event" else f"batch {sizes[0]}"
    print(f"onnxruntime {a.mode} ({what}), intra {a.intra}, {a.threads} threads: {r['rate']:.1f} jets/s, "
          f"p50 {r['p50_us']:.0f} us, p99 {r['p99_us']:.0f} us, {r['cpu_rate']:.1f} jets/cpu-s")
    print("RESULT " + json.dumps(r))


def result_line(out):
    for line in out.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise RuntimeError("no RESULT line in:\n" + out)


def compare(a):
    """gpuml's engine and ONNX Runtime alternately (one process at a time), --rounds times; best rate of each."""
    eng = [a.gpuml, "--model", a.model, "--data", a.data, "--pool", str(a.pool), "--sync", "0", "--events",
           str(a.events), "--repeats", "1", "--threads", str(a.threads)]
    J = str(a.event_jets)
    # gpuml's engine at its defaults (one single-threaded instance per core,
    # batches of up to 8), fed as a framework feeds it: each thread submits
    # the jets of an event and waits for them (or one jet at a time).
    gpuml = [  # (name, extra options)
        (f"gpuml engine, defaults, events of ~{J} jets", ["--event-jets", J]),
        ("gpuml engine, defaults, one jet at a time per thread", ["--inflight", "1"]),
    ]
    me = [sys.executable, os.path.abspath(__file__), "bench", a.onnx, a.data, "--pool", str(a.pool), "--events",
          str(a.events)]
    t = str(a.threads)
    # ONNX Runtime as CMSSW runs it: intra-op 1 (the framework owns the
    # threads), one session shared by the stream threads; per jet, or all
    # jets of an event in one call.
    ort = [
        (f"ORT per jet, intra 1, {t} thr", ["--mode", "perjet", "--intra", "1", "--threads", t]),
        (f"ORT per event (~{J} jets/call), intra 1, {t} thr",
         ["--mode", "event", "--event-jets", J, "--intra", "1", "--threads", t]),
    ]
    n = max(len(gpuml), len(ort))
    seq = []
    for i in range(n):  # alternate gpuml / ORT so that load from elsewhere hits both alike
        seq.append(("gpuml",) + gpuml[i % len(gpuml)])
        seq.append(("ort",) + ort[i % len(ort)])
    best, best_cpu, ratios = {}, {}, []
    for rnd in range(a.rounds):
        this = {}
        for who, name, extra in seq:
            cmd = (eng if who == "gpuml" else me) + extra
            r = result_line(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
            if who == "gpuml":
                r = {"rate": r["engine_rate"], "p50_us": r["engine_p50_us"], "p99_us": r["engine_p99_us"],
                     "cpu_rate": r["engine_cpu_rate"], "events_per_batch": r["events_per_batch"]}
            print(f"round {rnd + 1}: {name:60s} {r['rate']:8.1f} jets/s", file=sys.stderr, flush=True)
            if r["rate"] > best.get(name, {"rate": 0})["rate"]:
                best[name] = r
            best_cpu[name] = max(best_cpu.get(name, 0.0), r["cpu_rate"])
            this[name] = max(this.get(name, 0.0), r["rate"])
        # this round's ratio: gpuml's first variant against the round's better ORT mode
        ratios.append(this[gpuml[0][0]] / max(this[o[0]] for o in ort))
    print(f"{'best of ' + str(a.rounds) + ' rounds (p50/p99: of the best run)':62s} {'jets/s':>8s} {'p50 ms':>7s} "
          f"{'p99 ms':>7s} {'jets/cpu-s':>10s}")
    for _, name, _ in [("gpuml",) + g for g in gpuml] + [("ort",) + o for o in ort]:
        r = best[name]
        print(f"{name:62s} {r['rate']:8.1f} {r['p50_us'] / 1e3:7.2f} {r['p99_us'] / 1e3:7.2f} {best_cpu[name]:10.1f}")
    bo = max((o[0] for o in ort), key=lambda n: best[n]["rate"])
    bo_cpu = max(best_cpu[o[0]] for o in ort)
    for name, _ in gpuml:
        r = best[name]
        print(f"{name}: x{r['rate'] / best[bo]['rate']:.2f} the better ORT mode ({bo}); p99 {r['p99_us'] / 1e3:.2f} ms "
              f"vs {best[bo]['p99_us'] / 1e3:.2f} ms; x{best_cpu[name] / bo_cpu:.2f} its best jets per CPU-second")
    print(f"per round, {gpuml[0][0]} / the round's better ORT mode: " + " ".join(f"{x:.2f}" for x in ratios) +
          f" (median {float(np.median(ratios)):.2f})")
    print("RESULT " + json.dumps({"best": best, "best_cpu_rate": best_cpu, "round_ratios": ratios}))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("export")
    p.add_argument("model")
    p.add_argument("out")
    p.add_argument("--no-fold", action="store_true", help="keep the batch norms as separate Mul + Add")
    p.add_argument("--factorised", action="store_true", help="first edge layer as gpuml computes it (see dense_model)")
    p = sub.add_parser("check")
    p.add_argument("model")
    p.add_argument("onnx")
    p.add_argument("data")
    p.add_argument("gpuml_dump", help="bench_engine --dump output for the same --pool")
    p.add_argument("--pool", type=int, default=2000)
    p.add_argument("--tol", type=float, default=1e-4)
    p = sub.add_parser("bench")
    p.add_argument("onnx")
    p.add_argument("data")
    p.add_argument("--mode", choices=("perjet", "event", "batched"), default="perjet",
                   help="perjet: one call per jet; event: one call per event of --event-jets jets on average; "
                        "batched: padded batches of --batch")
    p.add_argument("--event-jets", type=int, default=6, help="mean jets per event (--mode event)")
    p.add_argument("--intra", type=int, default=1)
    p.add_argument("--threads", type=int, default=8)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--events", type=int, default=6000)
    p.add_argument("--pool", type=int, default=2000)
    p.add_argument("--no-spin", action="store_true")
    p = sub.add_parser("compare")
    p.add_argument("model")
    p.add_argument("onnx")
    p.add_argument("data")
    p.add_argument("--gpuml", default="build/bench/bench_engine")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--events", type=int, default=6000, help="jets per run")
    p.add_argument("--pool", type=int, default=2000)
    p.add_argument("--threads", type=int, default=8, help="submitting threads")
    p.add_argument("--batch", type=int, default=32, help="jets per padded ONNX Runtime batch")
    p.add_argument("--event-jets", type=int, default=6, help="mean jets per event")
    a = ap.parse_args()
    return {"export": export, "check": check, "bench": bench, "compare": compare}[a.cmd](a) or 0


if __name__ == "__main__":
    sys.exit(main())
