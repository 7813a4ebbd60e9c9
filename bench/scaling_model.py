#!/usr/bin/env python3
"""Cost model of gpuml's data-parallel training (docs/scaling.md): predicted
step time and efficiency of the GravNet driver on N GPUs, from stated inputs.

    python3 bench/scaling_model.py [--params 24512] [--t-compute-ms 5.0]
                                   [--backward-frac 0.6] [--check-cpu T1 TN]

Step time on N ranks with a fixed per-rank batch (weak scaling):

    T(N) = T_compute + T_exposed(N)
    T_allreduce(S, N) = steps(N) * alpha + S * 2 (N - 1) / N / busbw
    T_exposed = T_allreduce of the last bucket + max(0, sum over the other
                buckets of T_allreduce - the backward time left after each
                started)  (buckets start in reverse layer order from the
                gradient hook; see include/gpuml/ddp.h)

S is the gradient slab in bytes (f32). With the default buckets (1 MiB
first, then 25 MiB) a model of under 1 MiB of gradients is one bucket,
which can only start when backward has finished: nothing overlaps, the
whole all-reduce is exposed. Everything here is an assumption unless it
says "measured".
"""
import argparse

# Interconnects: (name, ranks, per-hop latency alpha in s, hops as a
# function of N, all-reduce bus bandwidth in B/s).
LINKS = [
    # NVLink inside one H100 node: ~370 GB/s all-reduce busbw (issue 8's
    # figure, nccl-tests on NVLink 4 / NVSwitch); small-message latency of
    # NCCL's ring / tree on NVLink ~ 5 us per step (assumption).
    ("4 x H100, NVLink", 4, 5e-6, lambda n: 2 * (n - 1), 370e9),
    ("8 x H100, NVLink", 8, 5e-6, lambda n: 2 * (n - 1), 370e9),
    # Two nodes, 4 GPUs each, one 200 Gb/s InfiniBand NIC per GPU: the
    # inter-node ring runs at ~ 22 GB/s busbw (HDR NIC line rate 25 GB/s,
    # ~90 % achievable; assumption), latency ~ 10 us per inter-node step,
    # and NCCL's tree gives ~ 2 log2(N) latency steps for small messages.
    ("2 nodes x 4 H100, IB HDR", 8, 10e-6, lambda n: 2 * max(1, (n - 1).bit_length()), 22e9),
]


def allreduce_s(nbytes, n, alpha, hops, busbw):
    if n == 1:
        return 0.0
    return hops(n) * alpha + nbytes * 2 * (n - 1) / n / busbw


def exposed_s(buckets, n, alpha, hops, busbw, t_backward):
    """Buckets in the order they start (reverse layer order); bucket i
    starts when a fraction start[i] of backward is done."""
    t = 0.0  # when the link is free
    last_start = 0.0
    for nbytes, start_frac in buckets:
        start = start_frac * t_backward
        t = max(t, start) + allreduce_s(nbytes, n, alpha, hops, busbw)
        last_start = start
    return max(0.0, t - t_backward) if buckets else 0.0


def buckets_of(slab_bytes, first=1 << 20, rest=25 << 20):
    """Bucket sizes and the fraction of backward done when each is final
    (gradients assumed to finish uniformly along backward)."""
    out, done = [], 0
    size = first
    while done < slab_bytes:
        b = min(size, slab_bytes - done)
        done += b
        out.append((b, done / slab_bytes))
        size = rest
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--params", type=int, default=24512,
                    help="gradient slab in floats (measured: the GravNet driver's model, 'slab 24512 floats')")
    ap.add_argument("--t-compute-ms", type=float, default=5.0,
                    help="forward+backward+optimizer per step on one GPU (NOT measured: no GPU here)")
    ap.add_argument("--backward-frac", type=float, default=0.6, help="share of the step that is backward")
    ap.add_argument("--check-cpu", nargs=3, type=float, metavar=("EPS1", "EPSN", "RANKS"),
                    help="measured events/s at 1 and N ranks on this machine, to compare with the model")
    a = ap.parse_args()
    S = a.params * 4
    bk = buckets_of(S)
    tc = a.t_compute_ms * 1e-3
    tb = a.backward_frac * tc
    print(f"gradient slab {S / 1024:.1f} KiB in {len(bk)} bucket(s); compute {a.t_compute_ms:.2f} ms/step "
          f"(backward {tb * 1e3:.2f} ms)")
    print(f"{'interconnect':28s} {'N':>3s} {'all-reduce us':>14s} {'exposed us':>11s} {'step ms':>8s} "
          f"{'efficiency':>10s} {'speed-up':>8s}")
    for name, n, alpha, hops, busbw in LINKS:
        ar = sum(allreduce_s(b, n, alpha, hops, busbw) for b, _ in bk)
        ex = exposed_s(bk, n, alpha, hops, busbw, tb)
        step = tc + ex
        eff = tc / step
        print(f"{name:28s} {n:3d} {ar * 1e6:14.1f} {ex * 1e6:11.1f} {step * 1e3:8.3f} {eff:10.3f} "
              f"{n * eff:8.2f}")
    if a.check_cpu:
        e1, en, r = a.check_cpu
        print(f"this machine: measured {en / e1:.2f}x events/s at {int(r)} ranks vs 1 (same 2 cores in total)")


if __name__ == "__main__":
    main()
