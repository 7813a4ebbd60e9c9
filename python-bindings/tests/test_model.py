"""Models: configs, inference against numpy, zero-copy parameters, files."""
import json

import numpy as np
import pytest
from conftest import ragged

import gpuml

CFG = {
    "inputs": [{"name": "hits", "features": 4}, {"name": "aux", "features": 2}],
    "nodes": [
        {"name": "cat", "op": "concat", "inputs": ["hits", "aux"]},
        {"name": "norm", "op": "layernorm", "inputs": ["cat"]},
        {"name": "d1", "op": "linear", "inputs": ["norm"], "out": 8},
        {"name": "a1", "op": "tanh", "inputs": ["d1"]},
        {"name": "pool", "op": "global_pool", "inputs": ["a1"], "reduce": "max"},
        {"name": "cls", "op": "linear", "inputs": ["pool"], "out": 3},
        {"name": "node", "op": "linear", "inputs": ["a1"], "out": 2},
    ],
    "outputs": ["cls", "node"],
}


def reference(p, hits, aux, rs):
    x = np.concatenate([hits, aux], 1).astype(np.float64)
    x = (x - x.mean(1, keepdims=True)) / np.sqrt(x.var(1, keepdims=True) + 1e-5)
    x = x * p["norm.weight"] + p["norm.bias"]
    a = np.tanh(x @ p["d1.weight"].T + p["d1.bias"])
    pool = np.stack([a[rs[b]:rs[b + 1]].max(0) if rs[b + 1] > rs[b] else np.zeros(a.shape[1])
                     for b in range(len(rs) - 1)])
    return pool @ p["cls.weight"].T + p["cls.bias"], a @ p["node.weight"].T + p["node.bias"]


def test_inference_matches_numpy(rng):
    m = gpuml.Model.from_config(CFG, seed=7)
    assert [i.name for i in m.inputs] == ["hits", "aux"]
    assert m.outputs == [gpuml.OutputInfo("cls", 3, True), gpuml.OutputInfo("node", 2, False)]
    hits, rs = ragged(rng, [5, 9, 1], 4)
    aux = rng.normal(size=(len(hits), 2)).astype(np.float32)
    cls, node = m([hits, aux], rs)
    assert cls.shape == (3, 3) and node.shape == (15, 2)
    want_cls, want_node = reference(m.parameters(), hits, aux, rs)
    np.testing.assert_allclose(cls, want_cls, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(node, want_node, rtol=1e-4, atol=1e-5)
    # inputs by name; outputs are fresh arrays each call
    cls2, _ = m({"aux": aux, "hits": hits}, rs)
    np.testing.assert_array_equal(cls, cls2)
    assert not np.shares_memory(cls, cls2)
    with pytest.raises(gpuml.InvalidArgumentError, match="inputs lack aux"):
        m({"hits": hits}, rs)
    with pytest.raises(gpuml.ShapeError):
        m([hits, aux[:3]], rs)


def test_parameters_are_zero_copy_views(rng):
    m = gpuml.Model.from_config(CFG, seed=1)
    params = m.parameters()
    slab = m.parameter_slab()
    assert set(params) == {"norm.weight", "norm.bias", "d1.weight", "d1.bias", "cls.weight", "cls.bias",
                           "node.weight", "node.bias"}
    assert params["d1.weight"].shape == (8, 6) and params["d1.weight"].dtype == np.float32
    for v in params.values():
        assert np.shares_memory(v, slab)
    assert m.param_count == sum(v.size for v in params.values()) <= m.slab_size == slab.size
    tensors = m.parameter_tensors()
    assert tensors["d1.weight"].data_ptr == params["d1.weight"].ctypes.data
    assert np.shares_memory(np.from_dlpack(tensors["cls.bias"]), params["cls.bias"])
    # writing through a view changes the model
    hits, rs = ragged(rng, [6], 4)
    aux = np.zeros((6, 2), np.float32)
    params["cls.bias"][:] = [100, 200, 300]
    cls, _ = m([hits, aux], rs)
    assert cls[0, 2] > 250
    # views keep the model alive
    w = m.parameters()["cls.bias"]
    del m, params, slab
    import gc
    gc.collect()
    assert (w == [100, 200, 300]).all()


def test_load_parameters_from_torch(torch):
    cfg = {"inputs": [{"name": "x", "features": 5}],
           "nodes": [{"name": "l1", "op": "linear", "inputs": ["x"], "out": 4},
                     {"name": "a", "op": "relu", "inputs": ["l1"]},
                     {"name": "l2", "op": "linear", "inputs": ["a"], "out": 2}],
           "outputs": ["l2"]}
    net = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    m = gpuml.Model.from_config(cfg)
    m.load_parameters({"l1.weight": net[0].weight.detach(), "l1.bias": net[0].bias.detach(),
                       "l2.weight": net[2].weight.detach(), "l2.bias": net[2].bias.detach()})
    x = torch.randn(7, 5)
    np.testing.assert_allclose(m(x), net(x).detach().numpy(), rtol=1e-5, atol=1e-6)
    with pytest.raises(gpuml.ShapeError):
        m.load_parameters({"l1.weight": np.zeros((5, 4))})
    with pytest.raises(gpuml.InvalidArgumentError, match="no parameter"):
        m.load_parameters({"l3.weight": np.zeros((5, 4))})


def test_save_load_round_trip_readable_with_h5py(tmp_path, rng, h5py):
    m = gpuml.Model.from_config(json.dumps(CFG), seed=3)
    path = tmp_path / "model.h5"
    m.save(path)
    with h5py.File(path, "r") as f:  # h5py skips the checksum block at the front
        assert f.attrs["format"] in ("gpuml-model", b"gpuml-model")
        assert int(f.attrs["format_version"]) == 2
        assert json.loads(f.attrs["config"]) == m.config
        # one slab with an index: names, then per tensor offset, rank, shape
        names = f["weights/names"][()].tobytes().decode().split("\n")
        index, values = f["weights/index"][()], f["weights/values"][()]
        assert sorted(names) == sorted(m.parameters())
        for name, row in zip(names, index):
            shape = tuple(int(d) for d in row[2:2 + row[1]])
            np.testing.assert_array_equal(values[row[0]:row[0] + np.prod(shape)].reshape(shape), m.parameters()[name])
    assert gpuml.verify_file(path) is True
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    bad = tmp_path / "bad.h5"
    bad.write_bytes(bytes(raw))
    with pytest.raises(gpuml.FormatError, match="checksum"):
        gpuml.verify_file(bad)
    with pytest.raises(gpuml.FormatError, match="bad.h5"):
        gpuml.Model.load(bad)
    m2 = gpuml.Model.load(path)
    assert m2.config == m.config
    for name, v in m.parameters().items():
        np.testing.assert_array_equal(m2.parameters()[name], v)
    hits, rs = ragged(rng, [4, 4], 4)
    aux = rng.normal(size=(8, 2)).astype(np.float32)
    for a, b in zip(m([hits, aux], rs), m2([hits, aux], rs)):
        np.testing.assert_array_equal(a, b)
    m3 = gpuml.Model.from_config(CFG, seed=99)
    m3.load_weights(path)
    np.testing.assert_array_equal(m3.parameter_slab(), m.parameter_slab())
    other = dict(CFG, nodes=CFG["nodes"][:-1], outputs=["cls"])
    with pytest.raises(gpuml.FormatError):
        gpuml.Model.from_config(other).load_weights(path)


def test_config_from_file_and_summary(tmp_path):
    p = tmp_path / "cfg.json"
    p.write_text(json.dumps(CFG))
    m = gpuml.Model.from_config(p)
    s = m.summary()
    assert "d1" in s and "linear" in s and "total parameters" in s
    assert "hits[4]" in repr(m)
    assert m.config["nodes"][2]["bias"] is True  # normalised: defaults filled in


GRAVNET_CFG = {
    "inputs": [{"name": "hits", "features": 5}],
    "nodes": [
        {"name": "gn", "op": "gravnet", "inputs": ["hits"], "out": 6, "space": 3, "prop": 4, "k": 5},
        {"name": "bn", "op": "batchnorm", "inputs": ["gn"]},
        {"name": "out", "op": "linear", "inputs": ["bn"], "out": 3},
    ],
    "outputs": ["out"],
}


def test_gravnet_model_equals_the_bound_ops(rng, tmp_path):
    """A GravNet layer in a model computes lin_out1(x) + lin_out2(agg), agg
    from gpuml.knn on lin_s(x) and gpuml.gravnet_aggregate of lin_h(x)."""
    m = gpuml.Model.from_config(GRAVNET_CFG, seed=11)
    p = m.parameters()
    bufs = m.buffers()
    assert set(bufs) == {"bn.running_mean", "bn.running_var"}
    x, rs = ragged(rng, [9, 2, 14], 5)
    s = gpuml.linear(x, p["gn.lin_s.weight"], p["gn.lin_s.bias"])
    h = gpuml.linear(x, p["gn.lin_h.weight"], p["gn.lin_h.bias"])
    idx, d2 = gpuml.knn(s, 5, rs)
    agg = gpuml.gravnet_aggregate(h, idx, d2, 10.0)
    gn = x @ p["gn.lin_out1.weight"].T + agg @ p["gn.lin_out2.weight"].T + p["gn.lin_out2.bias"]
    bn = (gn - bufs["bn.running_mean"]) / np.sqrt(bufs["bn.running_var"] + 1e-5) * p["bn.weight"] + p["bn.bias"]
    np.testing.assert_allclose(m(x, rs), bn @ p["out.weight"].T + p["out.bias"], rtol=1e-4, atol=1e-5)
    # training updates the batch-norm buffers (views into the buffer slab)
    tr = gpuml.Trainer(m, "adam", loss="mse")
    tr.step(inputs=x, target=np.zeros((len(x), 3), np.float32), row_splits=rs)
    assert not (bufs["bn.running_mean"] == 0).all()
    m.save(tmp_path / "gn.h5")
    m2 = gpuml.Model.load(tmp_path / "gn.h5")
    np.testing.assert_array_equal(m2.buffers()["bn.running_var"], bufs["bn.running_var"])
    np.testing.assert_array_equal(m2(x, rs), m(x, rs))
