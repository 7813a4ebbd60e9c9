"""From object condensation outputs to showers (gpuml/cluster.h).

    ids, cp, energy, count = gpuml.oc_cluster(beta, coords, row_splits, energy=e, t_beta=0.1, t_d=0.5)
    ev = gpuml.ClusterEval(min_energy=1.0)
    for each event: ev.add(truth_id, hit_energy, cluster_id)
    ev.result()["efficiency"], ev.result()["bins"][0]["resolution"]
    ids, count = gpuml.clue_cluster(xyz, energy)   # dc 5, rho_c 0.2, seed_delta 10, outlier_delta 20

The definitions (matching by shared energy, efficiency, fake / merge /
split rates, response and resolution, noise rejection) are those of the C
header; the metrics and CLUE run on host arrays.
"""
from __future__ import annotations

import ctypes

import numpy as np

from ._context import Context, resolve
from ._errors import InvalidArgumentError
from ._lib import ClueParams, ClusterEvalConfig, ClusterEvalResult, OcClusterParams, lib, need
from ._tensor import as_tensor, new_output, row_splits_for


def oc_cluster(beta, coords, row_splits=None, energy=None, t_beta: float = 0.1, t_d: float = 0.5, *,
               ctx: Context | None = None):
    """Object condensation inference (HGCalML's BuildCondensates) per event.

    beta [N] or [N, 1] float32, coords [N, D] float32, row_splits [B+1]
    int64 (None: one event), energy [N] float32 or None. Candidates are hits
    with beta > t_beta; taken by decreasing beta (ties: lower row), each
    becomes a condensation point unless one lies within t_d; every hit joins
    the first condensation point within t_d, else is noise (-1).

    Returns (cluster_id [N] int32, cluster_cp [N] int32, cluster_energy [N]
    float32, cluster_count [B] int32): cluster c of event e has its
    condensation point at row row_splits[e] + cluster_cp[row_splits[e] + c]
    (cluster_cp counts from the event's first row) and its energy
    at cluster_energy[row_splits[e] + c], for c < cluster_count[e]; ids are
    per event, numbered in the row order of the condensation points.
    """
    fn = "gpuml.oc_cluster"
    need("gpuml_oc_cluster")
    ctx = resolve(ctx)
    x = as_tensor(coords, "float32", ctx=ctx, ndim=2, arg="coords", func=fn)
    n = x.shape[0]
    b = as_tensor(beta, "float32", ctx=ctx, arg="beta", func=fn)
    e = None if energy is None else as_tensor(energy, "float32", ctx=ctx, arg="energy", func=fn)
    rs = row_splits_for(row_splits, n, ctx, fn)
    nev = rs.shape[0] - 1
    p = OcClusterParams()
    lib.gpuml_oc_cluster_params_init_defaults(ctypes.byref(p))
    p.t_beta, p.t_d = float(t_beta), float(t_d)
    tid, ids = new_output(ctx, (n,), "int32")
    tcp, cp = new_output(ctx, (n,), "int32")
    te, ce = new_output(ctx, (n,), "float32")
    tc, cnt = new_output(ctx, (max(nev, 0),), "int32")
    lib.gpuml_oc_cluster(ctx.handle, b.handle, x.handle, rs.handle, None if e is None else e.handle,
                         ctypes.byref(p), tid.handle, tcp.handle, te.handle, tc.handle)
    return ids, cp, ce, cnt


def _host(a, dtype, name, n=None):
    arr = np.ascontiguousarray(np.asarray(a), dtype=dtype)
    if arr.ndim != 1 or (n is not None and arr.shape[0] != n):
        raise InvalidArgumentError(f"gpuml.ClusterEval.add: '{name}' must be 1-D with {n} elements, "
                                   f"got shape {arr.shape}")
    return arr


class ClusterEval:
    """Clustering metrics accumulated event by event (gpuml_cluster_eval_*).

    min_energy: showers counted for efficiency, merge and split rates and
    the overall response; match_fraction (default 0.5), split_fraction
    (default 0.2); bin_edges: ascending edges of the true-energy bins
    (default 1, 5, 10, 20, 50, 100, 250).
    """

    def __init__(self, min_energy: float | None = None, match_fraction: float | None = None,
                 split_fraction: float | None = None, bin_edges=None):
        need("gpuml_cluster_eval_create")
        cfg = ClusterEvalConfig()
        lib.gpuml_cluster_eval_config_init_defaults(ctypes.byref(cfg))
        if min_energy is not None:
            cfg.min_energy = float(min_energy)
        if match_fraction is not None:
            cfg.match_fraction = float(match_fraction)
        if split_fraction is not None:
            cfg.split_fraction = float(split_fraction)
        if bin_edges is not None:
            edges = [float(v) for v in bin_edges]
            if len(edges) > len(cfg.bin_edges) or len(edges) == 1:
                raise InvalidArgumentError(f"gpuml.ClusterEval: bin_edges needs 0 or 2 .. {len(cfg.bin_edges)} "
                                           f"edges, got {len(edges)}")
            cfg.num_bins = max(len(edges) - 1, 0)
            for i, v in enumerate(edges):
                cfg.bin_edges[i] = v
        self._h = ctypes.c_void_p()
        lib.gpuml_cluster_eval_create(ctypes.byref(cfg), ctypes.byref(self._h))

    def add(self, truth_id, energy, cluster_id):
        """One event: truth_id [n] (>= 0 shower, -1 noise), energy [n] (>= 0),
        cluster_id [n] (>= 0 cluster, -1 unclustered)."""
        t = _host(truth_id, np.int32, "truth_id")
        n = t.shape[0]
        e = _host(energy, np.float32, "energy", n)
        k = _host(cluster_id, np.int32, "cluster_id", n)
        lib.gpuml_cluster_eval_add(self._h, n, t.ctypes.data, e.ctypes.data, k.ctypes.data)

    def result(self) -> dict:
        """The metrics so far as a dict (bins: a list of dicts)."""
        r = ClusterEvalResult()
        lib.gpuml_cluster_eval_get(self._h, ctypes.byref(r))
        out = {f: getattr(r, f) for f, _ in ClusterEvalResult._fields_ if f not in ("bins", "num_bins")}
        out["bins"] = [{f: getattr(r.bins[i], f) for f, _ in r.bins[i]._fields_} for i in range(r.num_bins)]
        return out

    def close(self):
        if self._h:
            lib.gpuml_cluster_eval_destroy(self._h)
            self._h = ctypes.c_void_p()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


def clue_cluster(points, weights, dc: float = 5.0, rho_c: float = 0.2, seed_delta: float = 10.0,
                 outlier_delta: float = 20.0):
    """The CLUE baseline (gpuml_clue_cluster) on points [n, D] with weights
    [n] (host). Returns (cluster_id [n] int32, count)."""
    need("gpuml_clue_cluster")
    x = np.ascontiguousarray(np.asarray(points), dtype=np.float32)
    if x.ndim != 2:
        raise InvalidArgumentError(f"gpuml.clue_cluster: 'points' must be [n, D], got shape {x.shape}")
    w = np.ascontiguousarray(np.asarray(weights), dtype=np.float32)
    if w.shape != (x.shape[0],):
        raise InvalidArgumentError(f"gpuml.clue_cluster: 'weights' must be [{x.shape[0]}], got shape {w.shape}")
    p = ClueParams()
    lib.gpuml_clue_params_init_defaults(ctypes.byref(p))
    p.dc, p.rho_c, p.seed_delta, p.outlier_delta = float(dc), float(rho_c), float(seed_delta), float(outlier_delta)
    ids = np.empty(x.shape[0], np.int32)
    cnt = ctypes.c_int(0)
    lib.gpuml_clue_cluster(x.shape[0], x.shape[1], x.ctypes.data, w.ctypes.data, ctypes.byref(p), ids.ctypes.data,
                           ctypes.byref(cnt))
    return ids, cnt.value
