#!/usr/bin/env python3
"""Training throughput of gpuml's drivers (examples/train_gravnet,
examples/train_particlenet) against PyTorch + PyTorch Geometric doing the
same training: the same model (the same JSON config, interpreted by
tests/make_training_fixture.py's ConfigModel), the same initial weights (the
file the driver writes with --init-out), the same HDF5 events in the same
batches (the loader's epoch plan, rebuilt here: see loader_plan), the same
loss, optimizer and learning-rate schedule as the driver (AdamW, lr,
weight decay 0.01, cosine with total/20 warm-up steps, GravNet: clipping at
global norm 1), 2 threads. events/s = events of steps W+1 .. W+N / the wall
time of those steps, batch assembly included on both sides (gpuml: the
loader's prefetch thread; here: numpy gathers on the main thread). See
bench/README-train.md.

The peer alone, on a dataset and an init file the driver wrote:
    python3 bench/train_peers.py peer gravnet --data hgcal.h5 --init init.h5 --warmup 3 --steps 20

Both, interleaved (gpuml, peer, gpuml, peer ... so that load from elsewhere
hits both alike), with a correctness check first and the ratios printed:
    python3 bench/train_peers.py compare --build build --rounds 3 --warmup 3 --steps 20

kNN: pyg-lib has no wheel for this torch, so an exact kNN is registered as
pyg::knn (what PyG's GravNetConv calls) and used by the ParticleNet block
too: per call the fastest of torch_cluster.knn (when installed; it has no
wheel either), torch.cdist + topk padded per batch ([B, P_max, P_max]
distances, masked; no Python loop over events) and torch.cdist + topk event
by event.
"""
import argparse
import json
import math
import os
import subprocess
import sys
import time

import h5py
import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests"))

MODELS = {
    # driver, config, loader fields, driver defaults the bench relies on
    "gravnet": {"driver": "train_gravnet", "config": "examples/configs/gravnet_oc.json", "lr": 1e-3,
                "clip": 1.0, "max_events": 16, "max_rows": 4000},
    "particlenet": {"driver": "train_particlenet", "config": "examples/configs/particlenet_lite.json", "lr": 3e-3,
                    "clip": 0.0, "max_events": 64, "max_rows": 65536},  # the loader's default max_rows
}
WEIGHT_DECAY = 0.01  # gpuml_optim_config_init_defaults

# ---- the loader's epoch plan (libgpuml/io/plan.c), one rank -------------
M64 = (1 << 64) - 1


def _mix64(z):
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def loader_plan(rs, seed, epoch, max_rows, max_events):
    """Lists of event ids, one per batch, exactly as gpuml_loader (shuffle on,
    world size 1) hands them out in `epoch`: splitmix64 Fisher-Yates seeded by
    (seed, epoch), batches cut in that order at max_rows rows / max_events
    events without splitting an event, events ascending within a batch."""
    n = len(rs) - 1
    perm = list(range(n))
    s = _mix64(seed ^ 0x5EED5EED5EED5EED) ^ _mix64((epoch + 0x0E90C4) & M64)
    for i in range(n - 1, 0, -1):
        m = i + 1
        threshold = ((1 << 64) - m) % m
        while True:
            s = (s + 0x9E3779B97F4A7C15) & M64
            r = _mix64(s)
            if r >= threshold:
                break
        j = r % m
        perm[i], perm[j] = perm[j], perm[i]
    batches, cur, rows = [], [], 0
    for e in perm:
        nr = int(rs[e + 1] - rs[e])
        if cur and (rows + nr > max_rows or len(cur) == max_events):
            batches.append(sorted(cur))
            cur, rows = [], 0
        cur.append(e)
        rows += nr
    if cur:
        batches.append(sorted(cur))
    return batches


def cosine_lr(base, step, warmup, total):
    """gpuml's GPUML_SCHED_COSINE (libgpuml/optim/optim.c scheduled_lr), min_lr 0."""
    if step < warmup:
        return base * (step + 1) / warmup
    if step >= total:
        return 0.0
    span = total - warmup
    t = (step - warmup) / span if span > 0 else 1.0
    return base * 0.5 * (1.0 + math.cos(math.pi * t))


# ---- exact kNN, padded per batch ---------------------------------------
def padded_knn(x, y, k, ptr_x, ptr_y):
    """[2, E]: for each y row, its k nearest x rows of the same event (itself
    included when x is y), as pyg-lib's knn; rows ascending, neighbours by
    distance. Events are padded to the largest one; padding is masked."""
    nb = ptr_y.numel() - 1
    ny, nx = ptr_y[1:] - ptr_y[:-1], ptr_x[1:] - ptr_x[:-1]
    py, px = int(ny.max()), int(nx.max())
    by = torch.repeat_interleave(torch.arange(nb), ny)
    bx = torch.repeat_interleave(torch.arange(nb), nx)
    ly = torch.arange(y.size(0)) - ptr_y[by]
    lx = torch.arange(x.size(0)) - ptr_x[bx]
    Y = y.new_zeros(nb, py, y.size(1))
    X = x.new_zeros(nb, px, x.size(1))
    Y[by, ly] = y
    X[bx, lx] = x
    d = torch.cdist(Y, X, compute_mode="donot_use_mm_for_euclid_dist")  # exact, like gpuml's
    d.masked_fill_((torch.arange(px)[None, :] >= nx[:, None])[:, None, :], float("inf"))
    kk = min(k, px)
    dist, idx = torch.topk(d, kk, dim=2, largest=False, sorted=True)
    dist, idx = dist[by, ly], idx[by, ly] + ptr_x[by][:, None]  # [Ny, kk]
    keep = torch.isfinite(dist).reshape(-1)
    rows = torch.arange(y.size(0)).repeat_interleave(kk)
    return torch.stack([rows[keep], idx.reshape(-1)[keep]])


def per_event_knn(x, y, k, ptr_x, ptr_y):
    """The same result event by event: exact torch.cdist + topk per event.
    Faster than padding for a few large events of uneven sizes (GravNet)."""
    rows, cols = [], []
    for e in range(ptr_y.numel() - 1):
        xs, xe, ys, ye = int(ptr_x[e]), int(ptr_x[e + 1]), int(ptr_y[e]), int(ptr_y[e + 1])
        if ye == ys or xe == xs:
            continue
        kk = min(k, xe - xs)
        d = torch.cdist(y[ys:ye], x[xs:xe], compute_mode="donot_use_mm_for_euclid_dist")
        idx = torch.topk(d, kk, dim=1, largest=False, sorted=True).indices + xs
        rows.append(torch.arange(ys, ye).repeat_interleave(kk))
        cols.append(idx.reshape(-1))
    return torch.stack([torch.cat(rows), torch.cat(cols)])


try:  # PyG's own kNN op (no wheel for this torch: built from source where present)
    import torch_cluster
except ImportError:
    torch_cluster = None


def cluster_knn(x, y, k, ptr_x, ptr_y):
    """torch_cluster.knn (a kd-tree per event), same [2, E] layout."""
    bx = torch.repeat_interleave(torch.arange(ptr_x.numel() - 1), ptr_x[1:] - ptr_x[:-1])
    by = torch.repeat_interleave(torch.arange(ptr_y.numel() - 1), ptr_y[1:] - ptr_y[:-1])
    return torch_cluster.knn(x, y, k, bx, by, num_workers=1)


def best_knn(x, y, k, ptr_x, ptr_y):
    """Whichever was fastest on these batches (README-train.md): torch_cluster
    in low dimension, else padded for many small events, else per event."""
    if torch_cluster is not None and x.size(1) <= 4:
        return cluster_knn(x, y, k, ptr_x, ptr_y)
    if ptr_y.numel() - 1 >= 32:
        return padded_knn(x, y, k, ptr_x, ptr_y)
    return per_event_knn(x, y, k, ptr_x, ptr_y)


KNN = {"best": best_knn, "padded": padded_knn, "per-event": per_event_knn, "torch_cluster": cluster_knn}
knn_impl = best_knn  # set from --knn


def _ptr(b):
    return torch.cat([torch.zeros(1, dtype=torch.long), torch.cumsum(torch.bincount(b), 0)])


def knn_batch(x, y, k, bx, by):  # the ParticleNet block's call (batch vectors)
    return knn_impl(x, y, k, _ptr(bx), _ptr(by))


def register_knn():
    import torch_geometric.typing
    if torch_geometric.typing.WITH_KNN:
        return "pyg-lib"
    lib = torch.library.Library("pyg", "DEF")
    lib.define("knn(Tensor x, Tensor y, Tensor? ptr_x, Tensor? ptr_y, int k, bool cosine, int num_workers) -> Tensor")
    lib.impl("knn", lambda x, y, px, py, k, c, w: knn_impl(x.detach(), y.detach(), k, px, py), "CPU")
    torch_geometric.typing.WITH_KNN = True
    register_knn.lib = lib
    return "exact kNN registered as pyg::knn (pyg-lib missing)"


# ---- object condensation, vectorised over the batch ---------------------
def oc_loss(beta, coords, truth, batch, nevents, q_min=0.1, s_b=1.0):
    """gpuml's object condensation (kernels/condensation.h) with no Python
    loop: every vertex against the condensation points of its own event's
    objects, as an [N, K_max] table (K_max = most objects in an event of
    the batch). Condensation point: the member with the largest beta, the
    first on ties. Returns the loss and (L_V, L_beta, L_noise)."""
    n = beta.size(0)
    b = beta[:, 0]
    q = torch.atanh(b / 1.002) ** 2 + q_min
    t = truth.long()
    kmax = int(t.max()) + 1 if n else 0
    obj = batch * kmax + t  # global object id of a member, junk for noise
    member = t >= 0
    with torch.no_grad():
        nobj = nevents * kmax
        bmax = torch.full((nobj,), -1.0, dtype=b.dtype).scatter_reduce(0, obj[member], b[member], "amax")
        is_max = member & (b == bmax[obj.clamp(min=0)])
        rows = torch.arange(n)
        alpha = torch.full((nobj,), n, dtype=torch.long).scatter_reduce(0, obj[is_max], rows[is_max], "amin")
        present = alpha < n
        alpha = torch.where(present, alpha, 0)
        slots = batch[:, None] * kmax + torch.arange(kmax)[None, :]  # [N, K]
        a = alpha[slots]
        valid = present[slots]
        attract = t[:, None] == torch.arange(kmax)[None, :]
        repel = valid & ~attract
    d2 = ((coords[:, None, :] - coords[a]) ** 2).sum(-1)
    qa = q[a]
    pos = repel & (d2 > 0)  # sqrt's gradient at 0 is infinite: gpuml's is 0 there
    dist = torch.where(pos, torch.sqrt(torch.where(pos, d2, torch.ones_like(d2))), torch.zeros_like(d2))
    hinge = torch.relu(1 - dist)
    v = torch.where(attract & valid, qa * d2, torch.where(repel, qa * hinge, torch.zeros_like(d2)))
    vert = q * v.sum(1)
    ones = torch.ones(n, dtype=b.dtype)
    n_e = torch.zeros(nevents, dtype=b.dtype).index_add_(0, batch, ones)
    lv = torch.zeros(nevents, dtype=b.dtype).index_add_(0, batch, vert) / n_e.clamp(min=1)
    pa = present.reshape(nevents, kmax)
    k_e = pa.sum(1).to(b.dtype)
    lb = ((1 - b[alpha]) * present).reshape(nevents, kmax).sum(1) / k_e.clamp(min=1)
    noise = (~member).to(b.dtype)
    nb_e = torch.zeros(nevents, dtype=b.dtype).index_add_(0, batch, noise)
    ln = s_b * torch.zeros(nevents, dtype=b.dtype).index_add_(0, batch, b * noise) / nb_e.clamp(min=1)
    nonempty = (n_e > 0).to(b.dtype)
    ne = nonempty.sum()
    comps = torch.stack([(lv * nonempty).sum(), (lb * nonempty).sum(), (ln * nonempty).sum()]) / ne
    return comps.sum(), comps


# ---- the peer's training run ---------------------------------------------
class Events:
    """A gpuml event dataset in memory (h5py); batch() gathers events."""

    def __init__(self, path, row_fields, event_fields):
        with h5py.File(path, "r") as f:
            self.rs = f["row_splits"][()].astype(np.int64)
            self.rows = {k: f[k][()] for k in row_fields}
            self.ev = {k: f[k][()] for k in event_fields}

    def batch(self, events):
        ev = np.asarray(events, dtype=np.int64)
        sizes = self.rs[ev + 1] - self.rs[ev]
        idx = np.concatenate([np.arange(self.rs[e], self.rs[e + 1]) for e in ev])
        rows = {k: torch.from_numpy(v[idx]) for k, v in self.rows.items()}
        evf = {k: torch.from_numpy(v[ev]) for k, v in self.ev.items()}
        batch = torch.repeat_interleave(torch.arange(len(ev)), torch.from_numpy(sizes))
        return rows, evf, batch, len(ev), int(sizes.sum())


def load_init(model, path):
    """The initial weights from a gpuml model file, read through gpuml's own
    reader (the Python bindings: every file layout, checksum verified)."""
    sys.path.insert(0, os.path.join(ROOT, "python-bindings"))
    import gpuml
    g = gpuml.Model.load(path)
    stored = {**g.parameters(), **g.buffers()}
    names = model.gpuml_names()
    with torch.no_grad():
        for full, p in list(model.named_parameters()) + list(model.named_buffers()):
            if full not in names:
                continue
            p.copy_(torch.from_numpy(np.array(stored[names[full]], dtype=np.float32)))


def run_peer(a):
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)  # dropout masks (they cannot match gpuml's anyway)
    global knn_impl
    if a.knn == "torch_cluster" and torch_cluster is None:
        sys.exit("--knn torch_cluster: torch_cluster is not installed")
    knn_impl = KNN[a.knn]
    source = register_knn() + ", " + a.knn + (", torch_cluster " + torch_cluster.__version__ if torch_cluster else "")
    import make_training_fixture as fx
    fx.knn_exact = knn_batch
    m = MODELS[a.model]
    cfg = json.load(open(a.config or os.path.join(ROOT, m["config"])))
    model = fx.ConfigModel(cfg)
    load_init(model, a.init)
    model.train()
    if a.model == "gravnet":
        data = Events(a.data, ["features", "truth_id"], [])
    else:
        data = Events(a.data, ["points", "features"], ["event/label"])
    total = a.warmup + a.steps
    warmup_lr = total // 20
    lr = a.lr if a.lr is not None else m["lr"]
    max_events = a.max_events or m["max_events"]
    max_rows = a.max_rows or m["max_rows"]
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=WEIGHT_DECAY, fused=a.fused_adamw or None)
    params = [p for p in model.parameters()]
    plan, epoch = [], 0
    log = []
    t_start, t_origin = None, time.perf_counter()
    for step in range(total):
        if step == a.warmup:
            t_start = time.perf_counter()
        if not plan:  # the next epoch's batches
            plan = loader_plan(data.rs, a.seed, epoch, max_rows, max_events)
            epoch += 1
        rows, evf, batch, nev, nrows = data.batch(plan.pop(0))
        opt.zero_grad(set_to_none=True)
        if a.model == "gravnet":
            beta, coords = model({"hits": rows["features"]}, batch, nev)
            loss, _ = oc_loss(beta, coords, rows["truth_id"], batch, nev)
        else:
            (logits,) = model({"points": rows["points"], "features": rows["features"]}, batch, nev)
            loss = torch.nn.functional.cross_entropy(logits, evf["event/label"].long())
        loss.backward()
        if m["clip"] > 0:
            torch.nn.utils.clip_grad_norm_(params, m["clip"])
        for g in opt.param_groups:
            g["lr"] = cosine_lr(lr, step, warmup_lr, total)
        opt.step()
        log.append({"step": step + 1, "loss": loss.item(), "events": nev, "rows": nrows,
                    "time_s": time.perf_counter() - t_origin})  # as the driver's metrics: since before step 1
    wall = time.perf_counter() - t_start
    events = sum(r["events"] for r in log[a.warmup:])
    print(json.dumps({"impl": "pytorch+pyg", "model": a.model, "events_per_s": events / wall, "time_s": wall,
                      "events": events, "warmup": a.warmup, "steps": a.steps, "threads": a.threads, "knn": source,
                      "torch": torch.__version__, "log": log}))


# ---- gpuml and the peer, interleaved -------------------------------------
def bench_env(a):
    """2 threads on both sides; OMP_WAIT_POLICY as asked (both link libgomp)."""
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads))
    if a.omp_wait_policy != "inherit":
        env["OMP_WAIT_POLICY"] = a.omp_wait_policy
    return env


def cpu_idle(seconds=1.0):
    """Fraction of the machine's CPU time idle over `seconds` (/proc/stat)."""
    def snap():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        return v[3] + v[4], sum(v)  # idle + iowait, total
    i0, t0 = snap()
    time.sleep(seconds)
    i1, t1 = snap()
    return (i1 - i0) / max(t1 - t0, 1)


def wait_idle(a):
    """--wait-idle S: before a timed run, wait up to S seconds for a second
    in which the machine is >= 90% idle (others' builds and tests share it)."""
    if a.wait_idle <= 0:
        return True
    end = time.time() + a.wait_idle
    while time.time() < end:
        if cpu_idle() >= 0.9:
            return True
        time.sleep(1.0)
    return False


def sh(cmd, env=None):
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if r.returncode != 0:
        sys.exit(f"failed ({r.returncode}): {' '.join(cmd)}\n{r.stderr[-3000:]}")
    return r.stdout


def make_data(a):
    os.makedirs(a.workdir, exist_ok=True)
    gen = os.path.join(a.build, "examples", "gen_dataset")
    files = {"gravnet": os.path.join(a.workdir, "hgcal.h5"), "particlenet": os.path.join(a.workdir, "jets.h5")}
    if not os.path.exists(files["gravnet"]):
        sh([gen, "hgcal", "--events", str(a.hgcal_events), "--seed", "1", "--min-hits", "100", "--max-hits", "600",
            "--out", files["gravnet"]])
    if not os.path.exists(files["particlenet"]):
        sh([gen, "jets", "--events", str(a.jets_events), "--seed", "1", "--min-particles", "30",
            "--max-particles", "50", "--out", files["particlenet"]])
    return files


def run_gpuml(a, model, data, warmup, steps, config=None, tag="run"):
    """The driver for warmup + steps steps; its metrics give events/s of
    the last `steps` steps and every step's loss and batch size."""
    m = MODELS[model]
    w = a.workdir
    init = os.path.join(w, f"{model}_{tag}_init.h5")
    metrics = os.path.join(w, f"{model}_{tag}_metrics.jsonl")
    cmd = [os.path.join(a.build, "examples", m["driver"]), "--data", data, "--config",
           config or os.path.join(ROOT, m["config"]), "--max-steps", str(warmup + steps), "--threads", str(a.threads),
           "--max-events", str(m["max_events"]), "--seed", "1", "--ckpt-every", "0",
           "--ckpt", os.path.join(w, f"{model}_ckpt.h5"), "--out", os.path.join(w, f"{model}_final.h5"),
           "--metrics", metrics, "--init-out", init]
    if model == "gravnet":
        cmd += ["--max-rows", str(m["max_rows"])]
    env = bench_env(a)
    sh(cmd, env)
    log = [json.loads(line) for line in open(metrics) if line.startswith('{"step"')]
    t0 = log[warmup - 1]["time_s"] if warmup > 0 else 0.0
    wall = log[-1]["time_s"] - t0
    events = sum(r["events"] for r in log[warmup:])
    return {"events_per_s": events / wall, "time_s": wall, "events": events, "log": log, "init": init,
            "cmd": " ".join(cmd)}


def run_peer_proc(a, model, data, init, warmup, steps, config=None):
    cmd = [sys.executable, os.path.abspath(__file__), "peer", model, "--data", data, "--init", init,
           "--warmup", str(warmup), "--steps", str(steps), "--threads", str(a.threads)]
    if config:
        cmd += ["--config", config]
    if a.fused_adamw:
        cmd += ["--fused-adamw"]
    env = bench_env(a)
    out = sh(cmd, env)
    return json.loads([line for line in out.splitlines() if line.startswith("{")][-1])


def same_batches(model, g, p):
    ge = [(r["events"], r["rows"]) for r in g["log"]]
    pe = [(r["events"], r["rows"]) for r in p["log"]]
    if ge != pe:
        sys.exit(f"{model}: the peer's batches differ from the driver's: {ge[:5]} vs {pe[:5]}")


def check(a, files):
    """Both sides from the same weights on the same batches, --check-steps
    steps, dropout removed (its masks cannot agree): the losses side by
    side. Step 1 compares forward + loss; later steps the backward,
    clipping, schedule and AdamW too."""
    print(f"== check: the first {a.check_steps} losses, same initial weights and batches (dropout removed)")
    out = []
    for model in ("gravnet", "particlenet"):
        cfg = json.load(open(os.path.join(ROOT, MODELS[model]["config"])))
        drop = {n["name"]: n["inputs"][0] for n in cfg["nodes"] if n["op"] == "dropout"}
        cfg["nodes"] = [n for n in cfg["nodes"] if n["op"] != "dropout"]
        for n in cfg["nodes"]:
            n["inputs"] = [drop.get(i, i) for i in n["inputs"]]
        path = os.path.join(a.workdir, f"{model}_nodropout.json")
        json.dump(cfg, open(path, "w"))
        g = run_gpuml(a, model, files[model], 0, a.check_steps, config=path, tag="check")
        p = run_peer_proc(a, model, files[model], g["init"], 0, a.check_steps, config=path)
        same_batches(model, g, p)
        for s, (gl, pl) in enumerate(zip(g["log"], p["log"])):
            rel = abs(gl["loss"] - pl["loss"]) / max(abs(pl["loss"]), 1e-30)
            print(f"{model:12s} step {s + 1}: loss gpuml {gl['loss']:.7g}  PyTorch+PyG {pl['loss']:.7g}  "
                  f"rel. diff {rel:.1e}")
            out.append({"model": model, "step": s + 1, "gpuml": gl["loss"], "peer": pl["loss"], "rel": rel})
    for r in out:
        print("LOSS " + json.dumps(r))


def compare(a):
    files = make_data(a)
    if a.check_steps > 0:
        check(a, files)
    if a.rounds < 1:
        return
    best = {}
    print(f"== throughput: {a.rounds} rounds, {a.warmup} warm-up + {a.steps} timed steps, {a.threads} threads, "
          f"OMP_WAIT_POLICY {bench_env(a).get('OMP_WAIT_POLICY', '(unset)')}, load average before: "
          f"{os.getloadavg()[0]:.1f}")
    for rnd in range(a.rounds):
        for model in ("gravnet", "particlenet"):
            idle = wait_idle(a)
            g = run_gpuml(a, model, files[model], a.warmup, a.steps)
            idle = wait_idle(a) and idle
            p = run_peer_proc(a, model, files[model], g["init"], a.warmup, a.steps)
            same_batches(model, g, p)
            if not idle:
                print(f"round {rnd + 1}, {model}: the machine was not idle within --wait-idle")
            if rnd == 0:
                print(f"{model}: gpuml: {g['cmd']}")
                print(f"{model}: first-step loss (same weights and batch; ParticleNet with dropout) "
                      f"gpuml {g['log'][0]['loss']:.7g}, PyTorch+PyG {p['log'][0]['loss']:.7g}")
            for who, r in (("gpuml", g), ("peer", p)):
                b = best.setdefault((who, model), {"events_per_s": 0.0, "all": [], "steps": None})
                b["events_per_s"] = max(b["events_per_s"], r["events_per_s"])
                b["all"].append(round(r["events_per_s"], 1))
                b["events"] = r["events"]
                st = step_times(r["log"], a.warmup)
                b["steps"] = st if b["steps"] is None else [min(x, y) for x, y in zip(b["steps"], st)]
        print(f"round {rnd + 1}/{a.rounds} done, load average {os.getloadavg()[0]:.1f}")
    print("events/s = events of the timed steps / their wall time, best round; 'per-step best': each step's "
          "fastest time over the rounds, summed (less sensitive to other load on the machine)")
    print(f"{'model':12s} {'events':>6s} {'gpuml ev/s':>11s} {'PyG ev/s':>9s} {'speed-up':>9s} | per-step best: "
          f"{'gpuml':>7s} {'PyG':>7s} {'speed-up':>8s} | all rounds (gpuml; PyG)")
    for model in ("gravnet", "particlenet"):
        g, p = best[("gpuml", model)], best[("peer", model)]
        ratio = g["events_per_s"] / p["events_per_s"]  # = peer time / gpuml time for the same events
        gs, ps = g["events"] / sum(g["steps"]), p["events"] / sum(p["steps"])
        print(f"{model:12s} {g['events']:6d} {g['events_per_s']:11.1f} {p['events_per_s']:9.1f} {ratio:8.2f}x | "
              f"{'':15s}{gs:7.1f} {ps:7.1f} {gs / ps:7.2f}x | {g['all']}; {p['all']}")
        print("RATIO " + json.dumps({"model": model, "speedup": ratio, "gpuml_events_per_s": g["events_per_s"],
                                     "peer_events_per_s": p["events_per_s"], "speedup_per_step_best": gs / ps,
                                     "threads": a.threads, "warmup": a.warmup, "steps": a.steps,
                                     "rounds": a.rounds, "omp_wait_policy": a.omp_wait_policy}))


def step_times(log, warmup):
    """Wall time of each timed step (steps warmup+1 ..), from the cumulative clocks."""
    t = [0.0] + [r["time_s"] for r in log]
    return [t[i + 1] - t[i] for i in range(warmup, len(log))]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="mode", required=True)
    p = sub.add_parser("peer", help="the PyTorch + PyG training run alone")
    p.add_argument("model", choices=sorted(MODELS))
    p.add_argument("--data", required=True)
    p.add_argument("--init", required=True, help="model file the driver wrote with --init-out")
    p.add_argument("--config")
    p.add_argument("--lr", type=float)
    p.add_argument("--max-events", type=int)
    p.add_argument("--max-rows", type=int)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--knn", choices=sorted(KNN), default="best",
                   help="best: per call, the fastest on these batches (README-train.md)")
    c = sub.add_parser("compare", help="gpuml's drivers and the peer, interleaved")
    c.add_argument("--build", default=os.path.join(ROOT, "build"))
    c.add_argument("--workdir", default="/tmp/train_peers")
    c.add_argument("--rounds", type=int, default=3, help="0: the loss check alone")
    c.add_argument("--check-steps", type=int, default=3, help="0: no loss check")
    c.add_argument("--hgcal-events", type=int, default=300)
    c.add_argument("--jets-events", type=int, default=1536)
    c.add_argument("--wait-idle", type=float, default=0.0,
                   help="wait up to this many seconds for an idle machine before each timed run (0: don't)")
    c.add_argument("--omp-wait-policy", choices=["inherit", "active", "passive"], default="inherit",
                   help="OMP_WAIT_POLICY for both sides; passive: threads sleep instead of spinning at barriers, "
                        "which matters on a machine shared with other work (bench/README-train.md)")
    for q in (p, c):
        q.add_argument("--warmup", type=int, default=3)
        q.add_argument("--steps", type=int, default=20)
        q.add_argument("--threads", type=int, default=2)
        q.add_argument("--fused-adamw", action="store_true",
                       help="torch's fused AdamW (default: torch's default, per tensor on the CPU)")
    a = ap.parse_args()
    return run_peer(a) if a.mode == "peer" else compare(a)


if __name__ == "__main__":
    sys.exit(main())
