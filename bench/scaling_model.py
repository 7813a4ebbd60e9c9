#!/usr/bin/env python3
"""Cost model of gpuml's data-parallel training (docs/scaling.md): step time
and efficiency of the GravNet and ParticleNet drivers on 4 and 8 H100s and
on two nodes, from the per-step counts measured on the emulated CUDA
platform (bench/ddp_step_counts.sh -> counts.json; a copy of the committed
run is bench/ddp_step_counts.json) and from named assumptions.

    python3 bench/scaling_model.py [--counts FILE] [--t-kernel-us 4] [--t-gemm-us 6]
        [--t-copy-us 8] [--t-memset-us 2] [--rows 8000] [--latency-scale 1]

Measured (counts, not times): per rank and step, the kernels gpuml
launches, the cuBLAS GEMMs, copies and memsets; the NCCL operations and
their bytes: the gradient buckets (one all-reduce each) and the per-step
broadcast of the model's buffers.

Assumed (no GPU here; every number below is an input, not a measurement):

    T_compute  = n_kernel * t_kernel + n_gemm * t_gemm + n_copy * t_copy
                 + n_memset * t_memset, each op at least its memory time
                 (rows * 64 floats * 8 B / HBM bandwidth): launch-bound below
                 ~50 000 rows per batch on an H100
    T_allreduce(S, N) = calls * L(N) + S * 2 (N - 1) / N / busbw    (ring)
    T_broadcast(B, N) = L(N) + B / busbw
    T_exposed  = every bucket's all-reduce after backward (the buckets are
                 final only at the end of backward for these models, see
                 counts: one bucket each) + the buffers' broadcast
    efficiency = T_compute / (T_compute + T_exposed)   (weak scaling)

calls = 2 per bucket with the deterministic sum (the drivers' default: one
grouped send/recv, one group of N broadcasts), 1 with NCCL's own all-reduce
(gpuml_comm_config.deterministic = 0); the bytes on the links are the same.
"""
import argparse
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))

# Interconnects: name, ranks, per-call latency L (s), all-reduce bus
# bandwidth (B/s). ASSUMPTIONS: busbw as nccl-tests reports for large
# messages - ~370 GB/s on H100 SXM with NVLink 4 / NVSwitch inside a node;
# two nodes with one 200 Gb/s (HDR) InfiniBand NIC per GPU ~22 GB/s (90 % of
# 25 GB/s), the inter-node hop being the ring's slowest link. L: the time of
# one small NCCL call issued from a stream (kernel launch, protocol
# hand-shakes, the ring's or tree's hops): ~15 us on 4 NVLink GPUs, ~20 us on
# 8, ~30 us across two nodes - orders of magnitude of nccl-tests' small-
# message latencies, not measured here.
LINKS = [
    ("4 x H100, NVLink/NVSwitch", 4, 15e-6, 370e9),
    ("8 x H100, NVLink/NVSwitch", 8, 20e-6, 370e9),
    ("2 nodes x 4 H100, IB HDR", 8, 30e-6, 22e9),
]
HBM_BPS = 3.0e12  # H100 SXM HBM3 ~3.35 TB/s peak; assumed 3 TB/s reachable


def load(path):
    with open(path) as f:
        return json.load(f)


def step_ops(counts, driver):
    """Per-step counts of rank 0 at the largest measured rank count."""
    runs = sorted((int(k.split(".np")[1]), k) for k in counts if k.startswith(driver + ".np"))
    if not runs:
        raise SystemExit(f"no {driver} runs in the counts file")
    np_, key = runs[-1]
    r0 = counts[key][0]
    per = r0["per_step"]
    buckets = [b["bytes"] for b in r0["buckets"]]
    # broadcasts outside the buckets' all-gathers: from rank 0, bytes > 0, not
    # right after a send/recv group (those are the reduced chunks)
    extra, in_gather = [], 0
    for op, nbytes in r0["ops"]:
        if op in ("sendrecv", "allreduce"):
            in_gather = np_ if op == "sendrecv" else 0
        elif op == "broadcast" and in_gather > 0:
            in_gather -= 1
        elif op == "broadcast":
            extra.append(nbytes)
    return key, np_, per, buckets, extra


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--counts", default=os.path.join(HERE, "ddp_step_counts.json"))
    ap.add_argument("--t-kernel-us", type=float, default=4.0, help="ASSUMED time of one small gpuml kernel")
    ap.add_argument("--t-gemm-us", type=float, default=6.0, help="ASSUMED time of one small cuBLAS GEMM")
    ap.add_argument("--t-copy-us", type=float, default=8.0, help="ASSUMED time of one small copy (H2D/D2H/D2D)")
    ap.add_argument("--t-memset-us", type=float, default=2.0, help="ASSUMED time of one memset")
    ap.add_argument("--rows", type=int, default=8000, help="rows (hits, particles) per batch and rank")
    ap.add_argument("--latency-scale", type=float, default=1.0, help="multiply every link latency L")
    ap.add_argument("--deterministic", type=int, default=1, help="1: gpuml's rank-order sum (2 calls/bucket)")
    a = ap.parse_args()
    counts = load(a.counts)
    t_mem = a.rows * 64 * 8 / HBM_BPS  # one op's memory time at 64 features in and out
    for driver in ("gravnet", "particlenet"):
        key, np_, per, buckets, extra = step_ops(counts, driver)
        n_kernel = per.get("kernel", 0) + per.get("cudnn", 0)
        n_gemm = per.get("cublas", 0)
        n_copy = sum(v for k, v in per.items() if k.startswith("memcpy"))
        n_memset = per.get("memset", 0)
        t_c = (n_kernel * max(a.t_kernel_us * 1e-6, t_mem) + n_gemm * max(a.t_gemm_us * 1e-6, t_mem) +
               n_copy * a.t_copy_us * 1e-6 + n_memset * a.t_memset_us * 1e-6)
        print(f"{driver} (counts of {key}, rank 0, per step): {n_kernel:g} kernels, {n_gemm:g} GEMMs, "
              f"{n_copy:g} copies, {n_memset:g} memsets; {len(buckets)} bucket(s) of {buckets} B; "
              f"buffer broadcasts {extra} B")
        print(f"  T_compute = {t_c * 1e3:.2f} ms (assumed op times; memory time per op {t_mem * 1e6:.2f} us "
              f"at {a.rows} rows)")
        print(f"  {'interconnect':28s} {'N':>3s} {'all-reduce us':>14s} {'broadcast us':>12s} {'step ms':>8s} "
              f"{'efficiency':>10s} {'speed-up':>8s}")
        calls = 2 if a.deterministic else 1
        for name, n, lat, busbw in LINKS:
            lat *= a.latency_scale
            ar = sum(calls * lat + s * 2 * (n - 1) / n / busbw for s in buckets)
            bc = sum(lat + b / busbw for b in extra)
            step = t_c + ar + bc
            eff = t_c / step
            print(f"  {name:28s} {n:3d} {ar * 1e6:14.1f} {bc * 1e6:12.1f} {step * 1e3:8.3f} {eff:10.3f} "
                  f"{n * eff:8.2f}")


if __name__ == "__main__":
    main()
