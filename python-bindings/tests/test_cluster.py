"""gpuml.oc_cluster against a numpy reference; ClusterEval and clue_cluster
on hand-made events with known answers."""
import numpy as np
import pytest

import gpuml


def oc_cluster_ref(beta, x, rs, energy, t_beta, t_d):
    """The contract of gpuml/cluster.h, sequentially: float32 dist2 in
    dimension order, candidates by (beta desc, row asc)."""
    n = len(beta)
    ids = np.full(n, -1, np.int32)
    cp = np.full(n, -1, np.int32)
    ce = np.zeros(n, np.float64)
    cnt = np.zeros(len(rs) - 1, np.int32)
    td2 = np.float32(t_d) * np.float32(t_d)
    finite = np.isfinite(x).all(axis=1)

    def d2(a, b):
        s = np.float32(0)
        for c in range(x.shape[1]):
            t = np.float32(x[a, c] - x[b, c])
            s = np.float32(s + t * t)
        return s

    for e in range(len(rs) - 1):
        lo, hi = rs[e], rs[e + 1]
        cand = [i for i in range(lo, hi) if beta[i] > np.float32(t_beta) and finite[i]]
        cand.sort(key=lambda i: (-beta[i], i))
        cps = []
        for i in cand:
            if not any(d2(i, j) <= td2 for j in cps):
                cps.append(i)
        rows = sorted(cps)
        cnt[e] = len(rows)
        cp[lo:lo + len(rows)] = np.array(rows, np.int64) - lo
        for i in range(lo, hi):
            if not finite[i]:
                continue
            best = [j for j in cps if d2(i, j) <= td2]  # cps are in priority order
            if best:
                ids[i] = rows.index(best[0])
                ce[lo + ids[i]] += energy[i]
    return ids, cp, ce, cnt


@pytest.mark.parametrize("sizes,d,t_beta,t_d", [([40, 0, 75], 2, 0.3, 0.4), ([120], 3, 0.1, 0.6), ([30, 30], 1, -1.0, 0.05)])
def test_oc_cluster_matches_reference(sizes, d, t_beta, t_d):
    rng = np.random.default_rng(7)
    n = sum(sizes)
    rs = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    beta = rng.uniform(0, 1, n).astype(np.float32)
    beta[::9] = beta[0]  # equal betas
    x = rng.normal(size=(n, d)).astype(np.float32)
    x[5, 0] = np.nan
    energy = rng.uniform(0, 2, n).astype(np.float32)
    ids, cp, ce, cnt = gpuml.oc_cluster(beta, x, rs, energy=energy, t_beta=t_beta, t_d=t_d)
    rids, rcp, rce, rcnt = oc_cluster_ref(beta, x, rs, energy, t_beta, t_d)
    np.testing.assert_array_equal(ids, rids)
    np.testing.assert_array_equal(cp, rcp)
    np.testing.assert_array_equal(cnt, rcnt)
    np.testing.assert_allclose(ce, rce, rtol=1e-6, atol=1e-5)
    assert ids[5] == -1


def test_oc_cluster_errors():
    with pytest.raises(gpuml.InvalidArgumentError, match="t_d"):
        gpuml.oc_cluster(np.ones(3, np.float32), np.zeros((3, 2), np.float32), t_d=0.0)
    with pytest.raises(gpuml.ShapeError):
        gpuml.oc_cluster(np.ones(4, np.float32), np.zeros((3, 2), np.float32))


def test_cluster_eval_known_answers():
    ev = gpuml.ClusterEval(min_energy=1.0, bin_edges=[0, 5, 100])
    ev.add([0, 0, 1, 1, 2, -1, -1, -1], [6, 4, 3, 1, 0.5, 1, 1, 1], [3, 3, 5, 5, -1, 5, 7, -1])
    ev.add([0, 1, 2, 2], [8, 8, 5, 5], [0, 0, 1, 2])
    r = ev.result()
    assert r["showers"] == 5 and r["found"] == 2
    assert r["efficiency"] == pytest.approx(0.4)
    assert r["merge_rate"] == pytest.approx(0.4)
    assert r["split_rate"] == pytest.approx(0.2)
    assert r["fake_rate"] == pytest.approx(1 / 6)
    assert r["noise_rejection"] == pytest.approx(1 / 3)
    assert r["response_mean"] == pytest.approx(1.125)
    assert r["resolution"] == pytest.approx(0.125 / 1.125)
    assert [b["showers"] for b in r["bins"]] == [2, 4]
    assert r["bins"][1]["efficiency"] == pytest.approx(0.25)
    with pytest.raises(gpuml.InvalidArgumentError):
        ev.add([0], [-1.0], [0])


def test_clue_two_blobs_and_an_outlier():
    pts = np.array([[0, 0], [0.5, 0], [0, 0.5], [-0.5, 0], [20, 0], [20.5, 0], [20, 0.5], [19.5, 0], [50, 50]],
                   np.float32)
    w = np.array([2, 1, 1, 1, 2, 1, 1, 1, 0.1], np.float32)
    ids, count = gpuml.clue_cluster(pts, w, dc=1.0, rho_c=1.0, seed_delta=3.0, outlier_delta=6.0)
    assert count == 2
    np.testing.assert_array_equal(ids, [0, 0, 0, 0, 1, 1, 1, 1, -1])


OC_TINY = {"name": "oc-tiny", "inputs": [{"name": "hits", "features": 4}],
           "nodes": [{"name": "bl", "op": "linear", "inputs": ["hits"], "out": 1},
                     {"name": "beta", "op": "sigmoid", "inputs": ["bl"]},
                     {"name": "coords", "op": "linear", "inputs": ["hits"], "out": 2}],
           "outputs": ["beta", "coords"]}


def test_engine_returns_clusters():
    model = gpuml.Model.from_config(OC_TINY, seed=3)
    rng = np.random.default_rng(2)
    opts = dict(energy_input=0, energy_column=3, t_beta=0.3, t_d=0.8)
    with gpuml.Engine(model, clusters=opts, max_batch_rows=4096) as engine:
        events = [rng.uniform(-2, 2, (n, 4)).astype(np.float32) for n in (60, 0, 150)]
        futures = [engine.submit(x) for x in events]
        for x, fut in zip(events, futures):
            got = fut.result()
            beta, coords = model(x)
            ids, cp, ce, cnt = gpuml.oc_cluster(beta, coords, energy=x[:, 3].copy(), t_beta=0.3, t_d=0.8)
            assert got.count == cnt[0]
            np.testing.assert_array_equal(got.ids, ids)
            np.testing.assert_array_equal(got.cp, cp[:cnt[0]])
            np.testing.assert_array_equal(got.energy, ce[:cnt[0]])
            direct = engine.run(x, direct=True)
            np.testing.assert_array_equal(direct.ids, ids)
        assert got.count > 1
    with pytest.raises(gpuml.InvalidArgumentError):
        gpuml.Engine(model, clusters=dict(t_d=-1.0))
    with pytest.raises(gpuml.InvalidArgumentError):
        gpuml.Engine(model, clusters=dict(bogus=1))
