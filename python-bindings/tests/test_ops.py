"""Every bound op against a numpy reference."""
import numpy as np
import pytest
from conftest import ragged

import gpuml


# ---- kNN ---------------------------------------------------------------------
def knn_ref(x, rs, k, max_radius=None):
    """The DESIGN.md section 5 contract, in numpy: float32 dist2 summed in
    dimension order, self in slot 0, others by (dist2, row), -1/inf padding,
    non-finite points isolated."""
    n, d = x.shape
    idx = np.full((n, k), -1, np.int32)
    d2 = np.full((n, k), np.inf, np.float32)
    r2 = np.float32(max_radius) * np.float32(max_radius) if max_radius else np.float32(np.inf)
    finite = np.isfinite(x).all(axis=1)
    for b in range(len(rs) - 1):
        lo, hi = rs[b], rs[b + 1]
        for i in range(lo, hi):
            idx[i, 0], d2[i, 0] = i, 0.0
            if not finite[i]:
                continue
            acc = np.zeros(hi - lo, np.float32)
            for c in range(d):
                t = x[lo:hi, c] - x[i, c]
                acc = acc + t * t
            cand = np.arange(lo, hi)
            ok = finite[lo:hi] & (cand != i) & np.isfinite(acc) & (acc <= r2)
            cand, dist = cand[ok], acc[ok]
            order = np.lexsort((cand, dist))[: k - 1]
            idx[i, 1:1 + len(order)] = cand[order]
            d2[i, 1:1 + len(order)] = dist[order]
    return idx, d2


@pytest.mark.parametrize("d,sizes,k", [(3, [50, 1, 0, 120], 8), (2, [300], 16), (7, [5, 40], 4), (1, [30], 30)])
def test_knn_matches_reference(rng, d, sizes, k):
    x, rs = ragged(rng, sizes, d)
    for algo in ("auto", "brute", "grid"):
        idx, d2 = gpuml.knn(x, k, rs, algo=algo)
        assert idx.dtype == np.int32 and d2.dtype == np.float32 and idx.shape == (len(x), k)
        ref_idx, ref_d2 = knn_ref(x, rs, k)
        np.testing.assert_array_equal(idx, ref_idx)
        np.testing.assert_array_equal(d2, ref_d2)


def test_knn_radius_nan_ties_and_default_split(rng):
    x = rng.integers(0, 4, size=(60, 2)).astype(np.float32)  # many exact ties
    x[7] = np.nan
    idx, d2 = gpuml.knn(x, 10, max_radius=1.5)
    ref_idx, ref_d2 = knn_ref(x, [0, 60], 10, max_radius=1.5)
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_array_equal(d2, ref_d2)
    assert (idx[7, 1:] == -1).all() and not (idx[np.arange(60) != 7] == 7).any()


def test_knn_deterministic_across_threads(rng, ctx1):
    x, rs = ragged(rng, [400, 300], 4)
    a = gpuml.knn(x, 12, rs, ctx=ctx1)
    b = gpuml.knn(x, 12, rs, ctx=gpuml.Context(num_threads=2))
    np.testing.assert_array_equal(a[0], b[0])
    assert a[1].tobytes() == b[1].tobytes()


def test_knn_errors_carry_the_c_message(rng):
    x = rng.normal(size=(10, 3)).astype(np.float32)
    with pytest.raises(gpuml.InvalidArgumentError) as e:
        gpuml.knn(x, 4, row_splits=[0, 3, 11])
    assert "gpuml_knn" in str(e.value) and "row_splits" in str(e.value)
    assert e.value.function == "gpuml_knn_ex" and e.value.status == 1
    with pytest.raises(gpuml.InvalidArgumentError, match="'k' = 0"):
        gpuml.knn(x, 0)
    with pytest.raises(TypeError):
        gpuml.knn(x, 2.5)
    with pytest.raises(gpuml.ShapeError):
        gpuml.knn(x[0], 2)
    with pytest.raises(gpuml.InvalidArgumentError, match="algo"):
        gpuml.knn(x, 2, algo="kd")


def test_knn_backward_matches_analytic(rng):
    x, rs = ragged(rng, [20, 15], 3)
    idx, d2 = gpuml.knn(x, 5, rs)
    g = rng.normal(size=d2.shape).astype(np.float32)
    got = gpuml.knn_backward(x, idx, g)
    ref = np.zeros(x.shape, np.float64)
    for i in range(len(x)):
        for s in range(1, 5):
            j = idx[i, s]
            if j >= 0:
                diff = 2.0 * (x[i].astype(np.float64) - x[j])
                ref[i] += g[i, s] * diff
                ref[j] -= g[i, s] * diff
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)


# ---- graph ops -------------------------------------------------------------
def graph(rng, sizes=(12, 3, 20), k=5, d=3, p=6):
    x, rs = ragged(rng, list(sizes), d, scale=0.3)
    idx, d2 = gpuml.knn(x, k, rs)
    h = rng.normal(size=(len(x), p)).astype(np.float32)
    return x, rs, idx, d2, h


@pytest.mark.parametrize("exclude_self", [False, True])
def test_gravnet_aggregate_matches_reference(rng, exclude_self):
    x, rs, idx, d2, h = graph(rng)
    out, am = gravnet_out = gpuml.gravnet_aggregate(h, idx, d2, 10.0, exclude_self, return_argmax=True)
    n, p = h.shape
    assert out.shape == (n, 2 * p) and am.shape == (n, p)
    first = 1 if exclude_self else 0
    for i in range(n):
        slots = [s for s in range(first, idx.shape[1]) if idx[i, s] >= 0]
        if not slots:
            assert (out[i] == 0).all() and (am[i] == -1).all()
            continue
        w = np.exp(-10.0 * d2[i, slots].astype(np.float64))
        m = w[:, None] * h[idx[i, slots]]
        np.testing.assert_allclose(out[i, :p], m.mean(0), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(out[i, p:], m.max(0), rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(am[i], np.array(slots)[m.argmax(0)])
    assert gravnet_out is not None


def test_edge_first_linear_and_neighbour_aggregate(rng):
    x, rs, idx, d2, h = graph(rng, k=4, d=5)
    f, c = x.shape[1], 7
    w = rng.normal(size=(c, 2 * f)).astype(np.float32)
    b = rng.normal(size=c).astype(np.float32)
    for ex in (False, True):
        e = gpuml.edge_first_linear(x, idx, w, b, exclude_self=ex)
        ke = idx.shape[1] - ex
        assert e.shape == (len(x), ke, c)
        mask = gpuml.edge_mask(idx, ex)
        assert mask.dtype == np.bool_ and mask.shape == (len(x), ke)
        ref = np.zeros(e.shape)
        for i in range(len(x)):
            for t in range(ke):
                j = idx[i, t + ex]
                assert mask[i, t] == (j >= 0)
                if j >= 0:
                    ref[i, t] = w.astype(np.float64) @ np.concatenate([x[i], x[j] - x[i]]) + b
        np.testing.assert_allclose(e, ref, rtol=1e-4, atol=1e-5)
        for red in ("sum", "mean", "max"):
            out = gpuml.neighbour_aggregate(e, idx, red, exclude_self=ex)
            for i in range(len(x)):
                valid = e[i][mask[i]]
                want = np.zeros(c) if not len(valid) else getattr(valid.astype(np.float64), red)(0)
                np.testing.assert_allclose(out[i], want, rtol=1e-5, atol=1e-5)


def test_batch_norm_training_and_inference(rng):
    x = rng.normal(2.0, 3.0, size=(40, 5)).astype(np.float32)
    gamma = rng.normal(size=5).astype(np.float32)
    beta = rng.normal(size=5).astype(np.float32)
    rm, rv = np.zeros(5, np.float32), np.ones(5, np.float32)
    y = gpuml.batch_norm(x, gamma, beta, rm, rv, training=True)
    mu, var = x.mean(0, dtype=np.float64), x.var(0, dtype=np.float64)
    np.testing.assert_allclose(y, (x - mu) / np.sqrt(var + 1e-5) * gamma + beta, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(rm, 0.1 * mu, rtol=1e-5)  # updated in place
    np.testing.assert_allclose(rv, 0.9 + 0.1 * x.var(0, ddof=1, dtype=np.float64), rtol=1e-5)
    yi = gpuml.batch_norm(x, gamma, beta, rm, rv, training=False)
    np.testing.assert_allclose(yi, (x - rm) / np.sqrt(rv + 1e-5) * gamma + beta, rtol=1e-4, atol=1e-5)
    mask = np.arange(40) % 3 != 0
    ym = gpuml.batch_norm(x, mask=mask)
    assert (ym[~mask] == 0).all()
    xv = x[mask].astype(np.float64)
    np.testing.assert_allclose(ym[mask], (xv - xv.mean(0)) / np.sqrt(xv.var(0) + 1e-5), rtol=1e-4, atol=1e-5)
    with pytest.raises(gpuml.InvalidArgumentError, match="in place"):
        gpuml.batch_norm(x, running_mean=rm.astype(np.float64), running_var=rv, training=True)


# ---- basic ops ---------------------------------------------------------------
def test_unary_binary_reduce_softmax(rng):
    x = rng.normal(size=(6, 7)).astype(np.float32)
    ref = {"neg": -x, "abs": np.abs(x), "exp": np.exp(x), "tanh": np.tanh(x), "relu": np.maximum(x, 0),
           "sigmoid": 1 / (1 + np.exp(-x.astype(np.float64))), "softplus": np.log1p(np.exp(x.astype(np.float64)))}
    for name, want in ref.items():
        np.testing.assert_allclose(getattr(gpuml, name)(x), want, rtol=1e-5, atol=1e-6, err_msg=name)
    np.testing.assert_allclose(gpuml.leaky_relu(x, 0.2), np.where(x >= 0, x, 0.2 * x), rtol=1e-6)
    np.testing.assert_allclose(gpuml.sqrt(np.abs(x)), np.sqrt(np.abs(x)), rtol=1e-6)
    b = rng.normal(size=7).astype(np.float32)
    np.testing.assert_allclose(gpuml.binary("add", x, b), x + b, rtol=1e-6)
    np.testing.assert_allclose(gpuml.binary("mul", x, x[:, :1]), x * x[:, :1], rtol=1e-6)
    with pytest.raises(gpuml.ShapeError):
        gpuml.binary("add", x, np.ones(3, np.float32))
    np.testing.assert_allclose(gpuml.reduce("sum", x, 0), x.sum(0, dtype=np.float64), rtol=1e-6)
    np.testing.assert_allclose(gpuml.reduce("mean", x, -1), x.mean(1, dtype=np.float64), rtol=1e-6)
    mx, am = gpuml.reduce("max", x, 1, return_indices=True)
    np.testing.assert_array_equal(mx, x.max(1))
    np.testing.assert_array_equal(am, x.argmax(1))
    e = np.exp(x - x.max(1, keepdims=True))
    np.testing.assert_allclose(gpuml.softmax(x), e / e.sum(1, keepdims=True), rtol=1e-5)
    np.testing.assert_allclose(gpuml.softmax(x, log=True), np.log(e / e.sum(1, keepdims=True)), rtol=1e-5,
                               atol=1e-6)


def test_linear_matmul_layer_norm(rng):
    x = rng.normal(size=(9, 4)).astype(np.float32)
    w = rng.normal(size=(3, 4)).astype(np.float32)
    b = rng.normal(size=3).astype(np.float32)
    np.testing.assert_allclose(gpuml.linear(x, w, b), x @ w.T + b, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(gpuml.linear(x, w), x @ w.T, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(gpuml.matmul(x, w, trans_b=True), x @ w.T, rtol=1e-5, atol=1e-5)
    a3 = rng.normal(size=(2, 3, 4)).astype(np.float32)
    np.testing.assert_allclose(gpuml.matmul(a3, x, trans_b=True), a3 @ x.T, rtol=1e-5, atol=1e-5)
    with pytest.raises(gpuml.ShapeError):
        gpuml.linear(x, w.T)
    g, bb = np.full(4, 2, np.float32), np.full(4, 0.5, np.float32)
    x64 = x.astype(np.float64)
    want = (x64 - x64.mean(1, keepdims=True)) / np.sqrt(x64.var(1, keepdims=True) + 1e-5) * 2 + 0.5
    np.testing.assert_allclose(gpuml.layer_norm(x, g, bb), want, rtol=1e-4, atol=1e-5)


def test_rows_and_segments(rng):
    x, rs = ragged(rng, [3, 0, 5], 4)
    np.testing.assert_allclose(gpuml.segment_reduce(x, rs, "sum"),
                               [x[0:3].sum(0, dtype=np.float64), np.zeros(4), x[3:8].sum(0, dtype=np.float64)],
                               rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(gpuml.segment_reduce(x, rs, "max"), [x[0:3].max(0), np.zeros(4), x[3:8].max(0)])
    np.testing.assert_array_equal(gpuml.segment_ids(rs), [0, 0, 0, 2, 2, 2, 2, 2])
    idx = np.array([4, -1, 0, 7, 9], np.int64)
    g = gpuml.gather_rows(x, idx)
    np.testing.assert_array_equal(g, np.stack([x[4], np.zeros(4), x[0], x[7], np.zeros(4)]))
    s = gpuml.scatter_add_rows(x[:5], np.array([1, 1, 0, 3, -1], np.int32), 4)
    np.testing.assert_allclose(s, [x[2], x[0] + x[1], np.zeros(4), x[3]], rtol=1e-6)
    rowptr, col = gpuml.index_csr(np.array([[2, 0], [2, -1]], np.int32), 3)
    np.testing.assert_array_equal(rowptr, [0, 1, 1, 3])
    np.testing.assert_array_equal(col[:3], [1, 0, 2])


# ---- losses ------------------------------------------------------------------
def test_bce_and_cross_entropy(rng):
    x = rng.normal(size=(8, 3)).astype(np.float32) * 5
    y = (rng.random((8, 3)) > 0.5).astype(np.float32)
    x64 = x.astype(np.float64)
    ref = np.maximum(x64, 0) - x64 * y + np.log1p(np.exp(-np.abs(x64)))
    np.testing.assert_allclose(gpuml.bce_with_logits(x, y), ref, rtol=1e-5, atol=1e-6)
    labels = np.array([0, 2, 1, 1, 0, 2, -1, 1])
    nll = gpuml.cross_entropy(x, labels)
    lse = np.log(np.exp(x64).sum(1))
    want = np.where(labels >= 0, lse - x64[np.arange(8), np.clip(labels, 0, 2)], 0)
    np.testing.assert_allclose(nll, want, rtol=1e-5, atol=1e-5)


def oc_ref(beta, x, truth, rs, q_min=0.1, s_b=1.0):
    beta, x = beta.astype(np.float64).ravel(), x.astype(np.float64)
    q = np.arctanh(beta / 1.002) ** 2 + q_min
    terms = []
    for b in range(len(rs) - 1):
        lo, hi = rs[b], rs[b + 1]
        if hi == lo:
            continue
        t, bb, xx, qq = truth[lo:hi], beta[lo:hi], x[lo:hi], q[lo:hi]
        objs = sorted(set(t[t >= 0].tolist()))
        alpha = [np.flatnonzero(t == k)[np.argmax(bb[t == k])] for k in objs]
        lv = 0.0
        for k, a in zip(objs, alpha):
            dist = np.sqrt(((xx - xx[a]) ** 2).sum(1))
            lv += (qq * qq[a] * np.where(t == k, dist ** 2, np.maximum(0, 1 - dist))).sum()
        lv /= hi - lo
        lb = np.mean([1 - bb[a] for a in alpha]) if objs else 0.0
        noise = t < 0
        ln = s_b * bb[noise].mean() if noise.any() else 0.0
        terms.append((lv, lb, ln))
    terms = np.array(terms)
    return terms.sum(1).mean(), terms.mean(0)


def test_object_condensation_matches_reference_and_gradient(rng):
    rs = np.array([0, 30, 30, 55], np.int64)
    n = 55
    truth = rng.integers(-1, 4, size=n).astype(np.int32)
    beta = rng.uniform(0.05, 0.95, size=n).astype(np.float32)
    x = rng.normal(size=(n, 2)).astype(np.float32)
    r = gpuml.object_condensation(beta, x, truth, rs, grad=True)
    loss, comp = oc_ref(beta, x, truth, rs)
    assert r.loss == pytest.approx(loss, rel=1e-4)
    np.testing.assert_allclose([r.l_v, r.l_beta, r.l_noise], comp, rtol=1e-4)
    assert r.grad_beta.shape == beta.shape and r.grad_coords.shape == x.shape
    # finite differences of the reference in float64 on a few coordinates
    eps = 1e-4
    for i in (0, 17, 40):
        xp, xm = x.astype(np.float64).copy(), x.astype(np.float64).copy()
        xp[i, 0] += eps
        xm[i, 0] -= eps
        fd = (oc_ref(beta, xp, truth, rs)[0] - oc_ref(beta, xm, truth, rs)[0]) / (2 * eps)
        assert r.grad_coords[i, 0] == pytest.approx(fd, rel=2e-2, abs=1e-4)
    with pytest.raises(gpuml.DtypeError):
        gpuml.object_condensation(beta, x, truth.astype(np.float32), rs)
