"""Tensor and graph ops: thin wrappers over gpuml/ops.h, knn.h and graph.h.

Every function takes numpy arrays (or torch / cupy tensors through DLPack,
or gpuml Tensors), converts them by the rule of :func:`gpuml.as_tensor`
(float32 and int64/int32 C-contiguous inputs are used in place), and
returns numpy arrays on the CPU (gpuml Tensors on a CUDA context, which
export through DLPack). ``ctx=None`` runs on the calling thread's CPU
context. Errors raise :class:`gpuml.Error` subclasses with the C message.
"""
from __future__ import annotations

import ctypes
from ctypes import c_int, c_int64
from typing import NamedTuple

import numpy as np

from ._context import Context, resolve
from ._errors import InvalidArgumentError, ShapeError
from ._lib import BatchNormParams, KnnParams, OcParams, c_int_arg, lib, need
from ._tensor import as_tensor, new_output, row_splits_for

KNN_MAX_K = 1024  # GPUML_KNN_MAX_K in gpuml/knn.h (tests/test_abi.py checks)
_KNN_ALGOS = {"auto": 0, "brute": 1, "grid": 2}
_KNN_DISTANCES = {"exact": 0, "expanded": 1}
_REDUCE = {"sum": 0, "mean": 1, "max": 2, "min": 3}
_UNARY = ["neg", "abs", "exp", "log", "sqrt", "rsqrt", "relu", "leaky_relu", "elu", "gelu", "tanh", "sigmoid",
          "softplus", "nan_to_zero"]
_BINARY = ["add", "sub", "mul", "div", "maximum", "minimum"]


def _h(t):
    return None if t is None else t.handle


def _int(v, arg, func, ctype=c_int):
    return c_int_arg(v, arg, func, ctype)


def _choice(v, table, arg, func):
    if v not in table:
        raise InvalidArgumentError(f"{func}: argument '{arg}' = {v!r}, expected one of {', '.join(map(repr, table))}")
    return table[v]


def _f32(x, ctx, arg, func, ndim=None):
    return as_tensor(x, "float32", ctx=ctx, ndim=ndim, arg=arg, func=func)


# ---- kNN ---------------------------------------------------------------------
def knn(coords, k: int, row_splits=None, max_radius: float | None = None, *, algo: str = "auto",
        distance: str = "exact", ctx: Context | None = None):
    """Exact k nearest neighbours of every point within its event.

    Parameters
    ----------
    coords : [N, D] float32 (other real dtypes are converted), 1 <= D <= 1024.
    k : neighbours per point, the point itself included, 1 <= k <= 1024.
    row_splits : [B+1] int64, event b owning rows row_splits[b] ..
        row_splits[b+1]-1 (starts at 0, never decreases, ends at N);
        None: all N points are one event.
    max_radius : neighbours farther than this are dropped (None or <= 0: no
        limit); compared as dist2 <= max_radius**2 in float32.
    algo : "auto" (default; per event by size, k and D), "brute" or "grid".
        All give identical results.
    distance : "exact" (default) or "expanded": weaver ParticleNet's
        float32 (|x_j|^2 - 2 x_i.x_j) + |x_i|^2 with its top-k semantics
        (brute force; see gpuml/knn.h, GPUML_KNN_DIST_EXPANDED).

    Returns
    -------
    idx : [N, k] int32 global row indices. Slot 0 is the point itself; slots
        1..k-1 are the other points of its event sorted by (dist2, row).
    dist2 : [N, k] float32 squared Euclidean distances, summed in float32 in
        dimension order (dist2[:, 0] == 0).

    Padding: where an event has fewer than k points, or fewer than k within
    max_radius, the remaining slots are idx = -1, dist2 = +inf. A point with
    a NaN or infinite coordinate has only itself as neighbour and is nobody's
    neighbour. Neighbours never cross events.
    """
    fn = "gpuml.knn"
    need("gpuml_knn_ex")
    ctx = resolve(ctx)
    k = _int(k, "k", fn)
    if not 1 <= k <= KNN_MAX_K:
        raise InvalidArgumentError(f"{fn}: argument 'k' = {k} is out of range 1 .. {KNN_MAX_K}")
    x = _f32(coords, ctx, "coords", fn, ndim=2)
    n = x.shape[0]
    rs = row_splits_for(row_splits, n, ctx, fn)
    p = KnnParams()
    lib.gpuml_knn_params_init_defaults(ctypes.byref(p))
    p.k = k
    p.max_radius = 0.0 if max_radius is None else float(max_radius)
    p.algo = _choice(algo, _KNN_ALGOS, "algo", fn)
    p.distance = _choice(distance, _KNN_DISTANCES, "distance", fn)
    ti, idx = new_output(ctx, (n, k), "int32")
    td, dist2 = new_output(ctx, (n, k), "float32")
    lib.gpuml_knn_ex(ctx.handle, x.handle, rs.handle, ctypes.byref(p), ti.handle, td.handle, None, None)
    return idx, dist2


def knn_backward(coords, idx, grad_dist2, *, ctx: Context | None = None):
    """Gradient of the coordinates from the gradient of kNN's dist2.

    coords [N, D] float32 and idx [N, k] int32 from the forward pass,
    grad_dist2 [N, k] float32; returns grad_coords [N, D] float32
    (deterministic; self and -1 slots contribute nothing).
    """
    fn = "gpuml.knn_backward"
    need("gpuml_knn_backward")
    ctx = resolve(ctx)
    x = _f32(coords, ctx, "coords", fn, ndim=2)
    ti = as_tensor(idx, "int32", ctx=ctx, ndim=2, arg="idx", func=fn)
    g = _f32(grad_dist2, ctx, "grad_dist2", fn, ndim=2)
    to, out = new_output(ctx, x.shape, "float32")
    lib.gpuml_knn_backward(ctx.handle, x.handle, ti.handle, g.handle, None, None, to.handle)
    return out


# ---- graph ops (gpuml/graph.h) ---------------------------------------------------
def gravnet_aggregate(h, idx, dist2, alpha: float = 10.0, exclude_self: bool = False, *,
                      return_argmax: bool = False, ctx: Context | None = None):
    """GravNet's fused neighbour aggregation (PyTorch Geometric GravNetConv).

    h [N, P] float32 features, idx [N, k] int32 and dist2 [N, k] float32 as
    returned by :func:`knn`. With w_ij = exp(-alpha * dist2_ij), returns
    out [N, 2P] float32 = [mean_j w_ij h_j, max_j w_ij h_j] over the valid
    neighbours j of row i (idx >= 0; slot 0, the point itself, is skipped
    when exclude_self). A row without valid neighbours gives 0. The max
    propagates NaN. With return_argmax, also argmax [N, P] int32: the slot
    of each maximum (lowest on ties, -1 for none).
    """
    fn = "gpuml.gravnet_aggregate"
    need("gpuml_gravnet_aggregate")
    ctx = resolve(ctx)
    th = _f32(h, ctx, "h", fn, ndim=2)
    ti = as_tensor(idx, "int32", ctx=ctx, ndim=2, arg="idx", func=fn)
    td = _f32(dist2, ctx, "dist2", fn, ndim=2)
    n, p = th.shape
    to, out = new_output(ctx, (n, 2 * p), "float32")
    ta, am = new_output(ctx, (n, p), "int32") if return_argmax else (None, None)
    lib.gpuml_gravnet_aggregate(ctx.handle, th.handle, ti.handle, td.handle, float(alpha), int(bool(exclude_self)),
                                to.handle, _h(ta))
    return (out, am) if return_argmax else out


def edge_first_linear(x, idx, w, b=None, exclude_self: bool = False, *, ctx: Context | None = None):
    """EdgeConv's first edge layer: W [x_i, x_j - x_i] + b for every edge.

    x [N, F] float32, idx [N, k] int32 (from :func:`knn`), w [C, 2F] float32
    (torch.nn.Linear(2F, C) layout), b [C] or None. Returns [N, k_e, C]
    float32 with k_e = k - 1 when exclude_self (slot t is idx slot t + 1),
    else k; padding edges (idx -1) give 0.
    """
    fn = "gpuml.edge_first_linear"
    need("gpuml_edge_first_linear")
    ctx = resolve(ctx)
    tx = _f32(x, ctx, "x", fn, ndim=2)
    ti = as_tensor(idx, "int32", ctx=ctx, ndim=2, arg="idx", func=fn)
    tw = _f32(w, ctx, "w", fn, ndim=2)
    tb = None if b is None else _f32(b, ctx, "b", fn, ndim=1)
    ke = ti.shape[1] - (1 if exclude_self else 0)
    to, out = new_output(ctx, (tx.shape[0], max(ke, 0), tw.shape[0]), "float32")
    lib.gpuml_edge_first_linear(ctx.handle, tx.handle, ti.handle, int(bool(exclude_self)), tw.handle, _h(tb),
                                to.handle)
    return out


def neighbour_aggregate(edges, idx, reduce: str = "max", exclude_self: bool = False, *,
                        return_argmax: bool = False, ctx: Context | None = None):
    """Reduce an edge tensor [N, k_e, C] float32 over the valid edges of each
    row (as laid out by :func:`edge_first_linear`): reduce "sum", "mean" or
    "max" -> [N, C]; a row without valid edges gives 0. With return_argmax
    (max only) also argmax [N, C] int32, the edge slot of each maximum."""
    fn = "gpuml.neighbour_aggregate"
    need("gpuml_neighbour_aggregate")
    ctx = resolve(ctx)
    op = _choice(reduce, {"sum": 0, "mean": 1, "max": 2}, "reduce", fn)
    te = _f32(edges, ctx, "edges", fn, ndim=3)
    ti = as_tensor(idx, "int32", ctx=ctx, ndim=2, arg="idx", func=fn)
    n, _, c = te.shape
    to, out = new_output(ctx, (n, c), "float32")
    ta, am = new_output(ctx, (n, c), "int32") if (return_argmax or op == 2) else (None, None)
    lib.gpuml_neighbour_aggregate(ctx.handle, op, te.handle, ti.handle, int(bool(exclude_self)), to.handle, _h(ta))
    return (out, am) if return_argmax else out


def edge_mask(idx, exclude_self: bool = False, *, ctx: Context | None = None):
    """[N, k_e] bool: True where edge slot t of idx [N, k] int32 is valid."""
    fn = "gpuml.edge_mask"
    need("gpuml_edge_mask")
    ctx = resolve(ctx)
    ti = as_tensor(idx, "int32", ctx=ctx, ndim=2, arg="idx", func=fn)
    ke = ti.shape[1] - (1 if exclude_self else 0)
    to, out = new_output(ctx, (ti.shape[0], max(ke, 0)), "bool")
    lib.gpuml_edge_mask(ctx.handle, ti.handle, int(bool(exclude_self)), to.handle)
    return out


def batch_norm(x, gamma=None, beta=None, running_mean=None, running_var=None, *, mask=None, training: bool = True,
               momentum: float = 0.1, eps: float = 1e-5, ctx: Context | None = None):
    """Batch normalisation of x [..., C] float32 over its rows, per channel.

    gamma, beta [C] or None (1 and 0). running_mean / running_var [C]
    float32: both or neither; updated IN PLACE in training (they must then
    be float32 C-contiguous arrays, which are used without a copy), required
    for inference (training=False). mask: None or R = numel / C booleans;
    rows where it is False are left out of the statistics and give 0.
    Returns y, x's shape.
    """
    fn = "gpuml.batch_norm"
    need("gpuml_batch_norm")
    ctx = resolve(ctx)
    tx = _f32(x, ctx, "x", fn)
    tg = None if gamma is None else _f32(gamma, ctx, "gamma", fn, ndim=1)
    tb = None if beta is None else _f32(beta, ctx, "beta", fn, ndim=1)
    tm = None if mask is None else as_tensor(mask, "bool", ctx=ctx, arg="mask", func=fn)
    stats = []
    for arg, v in (("running_mean", running_mean), ("running_var", running_var)):
        if v is None:
            stats.append(None)
            continue
        t = _f32(v, ctx, arg, fn, ndim=1)
        if training and (t.readonly or (isinstance(v, np.ndarray) and not np.shares_memory(np.asarray(t), v))):
            raise InvalidArgumentError(f"{fn}: argument '{arg}' is updated in place, so it must be a writable "
                                       f"float32 C-contiguous array (got {getattr(v, 'dtype', type(v).__name__)})")
        stats.append(t)
    p = BatchNormParams()
    lib.gpuml_batch_norm_params_init_defaults(ctypes.byref(p))
    p.momentum, p.eps, p.training = float(momentum), float(eps), int(bool(training))
    to, out = new_output(ctx, tx.shape, "float32")
    lib.gpuml_batch_norm(ctx.handle, ctypes.byref(p), tx.handle, _h(tm), _h(tg), _h(tb), _h(stats[0]), _h(stats[1]),
                         to.handle, None, None)
    return out


# ---- basic ops ---------------------------------------------------------------
def unary(op: str, x, alpha: float | None = None, *, ctx: Context | None = None):
    """Element-wise op on float32: one of neg, abs, exp, log, sqrt, rsqrt,
    relu, leaky_relu (alpha 0.01), elu (alpha 1), gelu (exact erf form),
    tanh, sigmoid, softplus. Returns an array of x's shape."""
    fn = f"gpuml.{op}"
    ctx = resolve(ctx)
    code = _choice(op, {n: i for i, n in enumerate(_UNARY)}, "op", "gpuml.unary")
    if alpha is None:
        alpha = {"leaky_relu": 0.01, "elu": 1.0}.get(op, 0.0)
    tx = _f32(x, ctx, "x", fn)
    to, out = new_output(ctx, tx.shape, "float32")
    lib.gpuml_unary(ctx.handle, code, float(alpha), tx.handle, to.handle)
    return out


def _unary_fn(name):
    def f(x, *, ctx: Context | None = None):
        return unary(name, x, ctx=ctx)
    f.__name__ = f.__qualname__ = name
    f.__doc__ = f"Element-wise {name} of a float32 array (see gpuml.unary)."
    return f


for _n in ("neg", "abs", "exp", "log", "sqrt", "rsqrt", "relu", "gelu", "tanh", "sigmoid", "softplus"):
    globals()[_n] = _unary_fn(_n)


def leaky_relu(x, alpha: float = 0.01, *, ctx: Context | None = None):
    """x >= 0 ? x : alpha * x, element-wise on float32."""
    return unary("leaky_relu", x, alpha, ctx=ctx)


def elu(x, alpha: float = 1.0, *, ctx: Context | None = None):
    """x > 0 ? x : alpha * (exp(x) - 1), element-wise on float32."""
    return unary("elu", x, alpha, ctx=ctx)


def binary(op: str, a, b, *, ctx: Context | None = None):
    """add, sub, mul, div, maximum or minimum of float32 arrays with numpy
    broadcasting; returns the broadcast shape."""
    fn = f"gpuml.{op}"
    ctx = resolve(ctx)
    code = _choice(op, {n: i for i, n in enumerate(_BINARY)}, "op", "gpuml.binary")
    ta, tb = _f32(a, ctx, "a", fn), _f32(b, ctx, "b", fn)
    try:
        shape = np.broadcast_shapes(ta.shape, tb.shape)
    except ValueError:
        raise ShapeError(f"{fn}: shapes {list(ta.shape)} and {list(tb.shape)} do not broadcast") from None
    to, out = new_output(ctx, shape, "float32")
    lib.gpuml_binary(ctx.handle, code, ta.handle, tb.handle, to.handle)
    return out


def _reduce_out_shape(shape, axis, fn):
    nd = len(shape)
    if not -nd <= axis < nd:
        raise ShapeError(f"{fn}: axis {axis} is out of range for shape {list(shape)}")
    axis %= nd
    return shape[:axis] + shape[axis + 1:]


def reduce(op: str, x, axis: int = -1, *, return_indices: bool = False, ctx: Context | None = None):
    """Sum, mean, max or min of float32 x along one axis (removed). Sums run
    in double in index order. max/min with return_indices also give the
    int64 index of the first extreme value."""
    fn = f"gpuml.{op}"
    ctx = resolve(ctx)
    code = _choice(op, _REDUCE, "op", "gpuml.reduce")
    tx = _f32(x, ctx, "x", fn)
    axis = _int(axis, "axis", fn)
    shape = _reduce_out_shape(tx.shape, axis, fn)
    to, out = new_output(ctx, shape, "float32")
    ta, idx = new_output(ctx, shape, "int64") if return_indices and code >= 2 else (None, None)
    lib.gpuml_reduce(ctx.handle, code, tx.handle, axis, to.handle, _h(ta))
    return (out, idx) if ta is not None else out


def softmax(x, *, log: bool = False, ctx: Context | None = None):
    """Softmax (log-softmax with log=True) of float32 x over its last axis."""
    fn = "gpuml.log_softmax" if log else "gpuml.softmax"
    ctx = resolve(ctx)
    tx = _f32(x, ctx, "x", fn)
    to, out = new_output(ctx, tx.shape, "float32")
    (lib.gpuml_log_softmax if log else lib.gpuml_softmax)(ctx.handle, tx.handle, to.handle)
    return out


def matmul(a, b, trans_a: bool = False, trans_b: bool = False, *, ctx: Context | None = None):
    """op(a) @ op(b) for float32 a [M, K] (or batched [B, M, K]) and b [K, N]
    (or [B, K, N]); op transposes the last two axes when its flag is set."""
    fn = "gpuml.matmul"
    ctx = resolve(ctx)
    ta, tb = _f32(a, ctx, "a", fn, ndim=(2, 3)), _f32(b, ctx, "b", fn, ndim=(2, 3))
    m = ta.shape[-1] if trans_a else ta.shape[-2]
    n = tb.shape[-2] if trans_b else tb.shape[-1]
    shape = (ta.shape[0], m, n) if ta.ndim == 3 else (m, n)
    to, out = new_output(ctx, shape, "float32")
    lib.gpuml_matmul(ctx.handle, ta.handle, int(bool(trans_a)), tb.handle, int(bool(trans_b)), to.handle)
    return out


def linear(x, w, b=None, *, ctx: Context | None = None):
    """x @ w.T + b: x [N, in], w [out, in] (torch.nn.Linear layout), b [out]
    or None; float32. Returns [N, out]."""
    fn = "gpuml.linear"
    ctx = resolve(ctx)
    tx, tw = _f32(x, ctx, "x", fn, ndim=2), _f32(w, ctx, "w", fn, ndim=2)
    tb = None if b is None else _f32(b, ctx, "b", fn, ndim=1)
    to, out = new_output(ctx, (tx.shape[0], tw.shape[0]), "float32")
    lib.gpuml_linear(ctx.handle, tx.handle, tw.handle, _h(tb), to.handle)
    return out


def layer_norm(x, gamma=None, beta=None, eps: float = 1e-5, *, ctx: Context | None = None):
    """Layer normalisation of float32 x [..., C] over its last axis, with
    optional gamma, beta [C]."""
    fn = "gpuml.layer_norm"
    ctx = resolve(ctx)
    tx = _f32(x, ctx, "x", fn)
    tg = None if gamma is None else _f32(gamma, ctx, "gamma", fn, ndim=1)
    tb = None if beta is None else _f32(beta, ctx, "beta", fn, ndim=1)
    rows = tx.size // tx.shape[-1] if tx.ndim and tx.shape[-1] else 0
    to, out = new_output(ctx, tx.shape, "float32")
    tm, _ = new_output(ctx, (rows,), "float32")
    tr, _ = new_output(ctx, (rows,), "float32")
    lib.gpuml_layernorm(ctx.handle, tx.handle, _h(tg), _h(tb), float(eps), to.handle, tm.handle, tr.handle)
    return out


def gather_rows(x, idx, *, ctx: Context | None = None):
    """out[i] = x[idx[i]] for x [N, ...] float32 and idx [M] int64 (int32
    kept as is); an index outside [0, N) gives a zero row."""
    fn = "gpuml.gather_rows"
    ctx = resolve(ctx)
    tx = _f32(x, ctx, "x", fn)
    ti = _index(idx, ctx, "idx", fn, ndim=1)
    to, out = new_output(ctx, (ti.shape[0],) + tx.shape[1:], "float32")
    lib.gpuml_gather_rows(ctx.handle, tx.handle, ti.handle, to.handle)
    return out


def scatter_add_rows(src, idx, num_rows: int, *, ctx: Context | None = None):
    """out [num_rows, ...] = 0, then out[idx[i]] += src[i] in ascending i
    (deterministic); indices outside [0, num_rows) are skipped."""
    fn = "gpuml.scatter_add_rows"
    ctx = resolve(ctx)
    ts = _f32(src, ctx, "src", fn)
    ti = _index(idx, ctx, "idx", fn, ndim=1)
    to, out = new_output(ctx, (_int(num_rows, "num_rows", fn, c_int64),) + ts.shape[1:], "float32")
    lib.gpuml_fill(ctx.handle, to.handle, 0.0)
    lib.gpuml_scatter_add_rows(ctx.handle, ts.handle, ti.handle, to.handle)
    return out


def index_csr(idx, num_targets: int, *, ctx: Context | None = None):
    """Reverse adjacency of an index array (any shape, int32 / int64, M
    elements): (rowptr [T+1] int64, col [M] int64) with col[rowptr[t] ..
    rowptr[t+1]-1] the ascending flat positions i where idx.flat[i] == t.
    Entries past rowptr[T] are zero (indices outside [0, T) are skipped)."""
    fn = "gpuml.index_csr"
    ctx = resolve(ctx)
    ti = _index(idx, ctx, "idx", fn)
    t = _int(num_targets, "num_targets", fn)
    trp, rowptr = new_output(ctx, (t + 1,), "int64")
    tcol, col = new_output(ctx, (ti.size,), "int64")
    lib.gpuml_fill(ctx.handle, tcol.handle, 0.0)
    lib.gpuml_index_csr(ctx.handle, ti.handle, trp.handle, tcol.handle)
    return rowptr, col


def _index(idx, ctx, arg, fn, ndim=None):
    """Index arrays: int32 ones are used as they are, anything else as int64."""
    dt = "int32" if str(getattr(idx, "dtype", "")) in ("int32", "torch.int32") else "int64"
    return as_tensor(idx, dt, ctx=ctx, ndim=ndim, arg=arg, func=fn)


def segment_reduce(x, row_splits, reduce: str = "mean", *, ctx: Context | None = None):
    """Per-event reduction of a ragged batch: x [N, C] float32, row_splits
    [B+1] int64 -> [B, C]; reduce "sum", "mean" or "max" (an empty event
    gives 0)."""
    fn = "gpuml.segment_reduce"
    ctx = resolve(ctx)
    code = _choice(reduce, {"sum": 0, "mean": 1, "max": 2}, "reduce", fn)
    tx = _f32(x, ctx, "x", fn, ndim=2)
    rs = row_splits_for(row_splits, tx.shape[0], ctx, fn)
    to, out = new_output(ctx, (rs.shape[0] - 1, tx.shape[1]), "float32")
    ta = new_output(ctx, (rs.shape[0] - 1, tx.shape[1]), "int64")[0] if code == 2 else None
    lib.gpuml_segment_reduce(ctx.handle, code, tx.handle, rs.handle, to.handle, _h(ta))
    return out


def segment_ids(row_splits, *, ctx: Context | None = None):
    """Event index [N] int32 of every row of a ragged batch."""
    fn = "gpuml.segment_ids"
    ctx = resolve(ctx)
    rs = as_tensor(row_splits, "int64", ctx=ctx, ndim=1, arg="row_splits", func=fn)
    n = int(rs.numpy()[-1]) if rs.size else 0  # host copy of one value on CUDA
    to, out = new_output(ctx, (n,), "int32")
    lib.gpuml_segment_ids(ctx.handle, rs.handle, to.handle)
    return out


# ---- losses ------------------------------------------------------------------
def bce_with_logits(x, y, pos_weight=None, *, ctx: Context | None = None):
    """Element-wise binary cross-entropy of logits x against targets y
    (float32, same shape [..., C]), stable for large |x|; pos_weight [C] as
    torch's BCEWithLogitsLoss. Not reduced."""
    fn = "gpuml.bce_with_logits"
    ctx = resolve(ctx)
    tx, ty = _f32(x, ctx, "x", fn), _f32(y, ctx, "y", fn)
    tp = None if pos_weight is None else _f32(pos_weight, ctx, "pos_weight", fn, ndim=1)
    to, out = new_output(ctx, tx.shape, "float32")
    lib.gpuml_bce_logits(ctx.handle, tx.handle, ty.handle, _h(tp), to.handle)
    return out


def cross_entropy(logits, labels, *, ctx: Context | None = None):
    """Per-row negative log-likelihood [N] float32 of logits [N, C] against
    integer labels [N] (a label outside [0, C) gives 0). Not reduced."""
    fn = "gpuml.cross_entropy"
    ctx = resolve(ctx)
    tx = _f32(logits, ctx, "logits", fn, ndim=2)
    tl = _index(labels, ctx, "labels", fn, ndim=1)
    to, out = new_output(ctx, (tx.shape[0],), "float32")
    tlse, _ = new_output(ctx, (tx.shape[0],), "float32")
    lib.gpuml_cross_entropy(ctx.handle, tx.handle, tl.handle, to.handle, tlse.handle)
    return out


class OCLoss(NamedTuple):
    """Object condensation loss and its three terms (means over events)."""
    loss: float
    l_v: float
    l_beta: float
    l_noise: float
    grad_beta: np.ndarray | None = None
    grad_coords: np.ndarray | None = None


def object_condensation(beta, coords, truth, row_splits=None, *, max_objects: int | None = None, q_min: float = 0.1,
                        s_b: float = 1.0, grad: bool = False, ctx: Context | None = None) -> OCLoss:
    """Object condensation loss (Kieseler 2020, arXiv:2002.03605).

    beta [N] or [N, 1] float32 in [0, 1] (a sigmoid output), coords [N, D]
    float32 (the learned clustering space), truth [N] int32 object index
    within the event (-1: noise), row_splits [B+1] int64 (None: one event).
    max_objects: bound on truth ids (None: max(truth) + 1). q_min and s_b as
    in the paper (defaults 0.1 and 1). Returns OCLoss(loss, l_v, l_beta,
    l_noise); with grad=True also the gradients of loss with respect to beta
    (beta's shape) and coords ([N, D]).
    """
    fn = "gpuml.object_condensation"
    ctx = resolve(ctx)
    tb = _f32(beta, ctx, "beta", fn, ndim=(1, 2))
    tc = _f32(coords, ctx, "coords", fn, ndim=2)
    tt = as_tensor(truth, "int32", ctx=ctx, ndim=1, arg="truth", func=fn)
    rs = row_splits_for(row_splits, tc.shape[0], ctx, fn)
    p = OcParams()
    lib.gpuml_oc_params_init_defaults(ctypes.byref(p))
    if max_objects is None:
        t = np.asarray(truth) if not tt.is_cuda else None
        max_objects = int(t.max()) + 1 if t is not None and t.size else 1
    p.q_min, p.s_b, p.max_objects = float(q_min), float(s_b), max(_int(max_objects, "max_objects", fn, c_int64), 1)
    nb = rs.shape[0] - 1
    tl, loss = new_output(ctx, (1,), "float32")
    tcomp, comp = new_output(ctx, (3,), "float32")
    talpha, _ = new_output(ctx, (max(nb, 0), p.max_objects), "int64")
    tstats, _ = new_output(ctx, (max(nb, 0), 6), "float32")
    args = (ctx.handle, tb.handle, tc.handle, tt.handle, rs.handle, ctypes.byref(p))
    lib.gpuml_object_condensation(*args, tl.handle, tcomp.handle, talpha.handle, tstats.handle)
    gb = gc = None
    if grad:
        tg, g = new_output(ctx, (1,), "float32")
        lib.gpuml_fill(ctx.handle, tg.handle, 1.0)
        tgb, gb = new_output(ctx, tb.shape, "float32")
        tgc, gc = new_output(ctx, tc.shape, "float32")
        lib.gpuml_object_condensation_backward(*args, talpha.handle, tstats.handle, tg.handle, tgb.handle,
                                               tgc.handle)
    loss, comp = np.asarray(loss), np.asarray(comp)
    return OCLoss(float(loss[0]), float(comp[0]), float(comp[1]), float(comp[2]), gb, gc)
