"""Training through the C step: losses fall, fit() with the C loader,
checkpoints resume bit-exactly."""
import numpy as np
import pytest

import gpuml

CLS_CFG = {
    "inputs": [{"name": "features", "features": 3}],
    "nodes": [
        {"name": "d1", "op": "linear", "inputs": ["features"], "out": 16},
        {"name": "a1", "op": "elu", "inputs": ["d1"]},
        {"name": "pool", "op": "global_pool", "inputs": ["a1"], "reduce": "mean"},
        {"name": "cls", "op": "linear", "inputs": ["pool"], "out": 2},
    ],
    "outputs": ["cls"],
}


def events(rng, n_events, lo=3, hi=12):
    """Events whose hits are shifted by +-1 according to the event label."""
    sizes = rng.integers(lo, hi, size=n_events)
    rs = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    label = rng.integers(0, 2, size=n_events)
    x = rng.normal(size=(int(rs[-1]), 3)) + (2 * np.repeat(label, sizes) - 1)[:, None]
    return x.astype(np.float32), rs, label


def test_cross_entropy_steps_reduce_the_loss(rng):
    m = gpuml.Model.from_config(CLS_CFG, seed=1)
    tr = gpuml.Trainer(m, {"kind": "adam", "lr": 1e-2}, loss="cross_entropy")
    losses = []
    for _ in range(60):
        x, rs, label = events(rng, 8)
        losses.append(tr.step({"inputs": x, "target": label, "row_splits": rs}))
    assert np.mean(losses[-10:]) < 0.5 * np.mean(losses[:10])
    assert tr.num_steps == 60 and tr.lr == pytest.approx(1e-2)
    assert tr.last.events == 8 and tr.last.stepped and tr.last.correct >= 6


def test_gradient_accumulation(rng):
    m = gpuml.Model.from_config(CLS_CFG, seed=1)
    tr = gpuml.Trainer(m, "adam", accumulate=3)
    stepped = []
    for _ in range(6):
        x, rs, label = events(rng, 4)
        tr.step(inputs=x, target=label, row_splits=rs)
        stepped.append(tr.last.stepped)
    assert stepped == [False, False, True] * 2 and tr.num_steps == 2


@pytest.mark.parametrize("loss", ["bce", "mse"])
def test_bce_and_mse(rng, loss):
    cfg = dict(CLS_CFG, nodes=CLS_CFG["nodes"][:-1] + [{"name": "cls", "op": "linear", "inputs": ["pool"],
                                                        "out": 1}])
    m = gpuml.Model.from_config(cfg, seed=2)
    tr = gpuml.Trainer(m, "adamw", loss=loss, lr=2e-2, weight_decay=0.0)
    losses = []
    for _ in range(60):
        x, rs, label = events(rng, 8)
        losses.append(tr.step(inputs=x, target=label.astype(np.float32), row_splits=rs))  # [B] for a [B, 1] output
    assert np.mean(losses[-10:]) < 0.6 * np.mean(losses[:10])


def test_object_condensation_training(rng):
    """Two clusters of hits per event plus noise; the model learns beta and
    a clustering space from the hit positions."""
    cfg = {"inputs": [{"name": "hits", "features": 2}],
           "nodes": [{"name": "d1", "op": "linear", "inputs": ["hits"], "out": 32},
                     {"name": "a1", "op": "elu", "inputs": ["d1"]},
                     {"name": "d2", "op": "linear", "inputs": ["a1"], "out": 32},
                     {"name": "a2", "op": "elu", "inputs": ["d2"]},
                     {"name": "b", "op": "linear", "inputs": ["a2"], "out": 1},
                     {"name": "beta", "op": "sigmoid", "inputs": ["b"]},
                     {"name": "coords", "op": "linear", "inputs": ["a2"], "out": 2}],
           "outputs": ["beta", "coords"]}
    m = gpuml.Model.from_config(cfg, seed=5)
    with pytest.raises(gpuml.InvalidArgumentError, match="max_objects"):
        gpuml.Trainer(m, "adam", loss="object_condensation").step(inputs=np.zeros((3, 2)), target=[0, 0, -1])
    tr = gpuml.Trainer(m, "adam", loss="object_condensation", lr=3e-3,
                       loss_options={"q_min": 0.5, "max_objects": 2})

    def batch():
        xs, ts, rs = [], [], [0]
        for _ in range(4):
            centres = rng.uniform(-3, 3, size=(2, 2))
            t = np.repeat([0, 1, -1], [10, 10, 4]).astype(np.int32)
            x = np.where(t[:, None] >= 0, centres[np.maximum(t, 0)], 0) + rng.normal(scale=0.3, size=(24, 2))
            xs.append(x.astype(np.float32))
            ts.append(t)
            rs.append(rs[-1] + 24)
        return np.concatenate(xs), np.concatenate(ts), np.array(rs)

    losses = []
    for _ in range(80):
        x, t, rs = batch()
        losses.append(tr.step(inputs=x, target=t, row_splits=rs))
    assert np.mean(losses[-10:]) < 0.7 * np.mean(losses[:10])
    lv, lb, ln = tr.last.components
    assert lv >= 0 and 0 <= lb <= 1 and ln >= 0 and tr.last.loss == pytest.approx(lv + lb + ln, rel=1e-5)
    with pytest.raises(gpuml.DtypeError):
        tr.step(inputs=x, target=t.astype(np.float32), row_splits=rs)
    with pytest.raises(gpuml.InvalidArgumentError, match="max_objects"):
        tr.step(inputs=x, target=np.where(t == 1, 2, t), row_splits=rs)  # the C message names the bound


def write_cls_dataset(path, rng, n_events=64):
    x, rs, label = events(rng, n_events)
    gpuml.write_dataset(path, rs, {"features": x, "event/label": label.astype(np.int64)},
                        columns={"features": ["x", "y", "z"]})
    return x, rs, label


def test_fit_with_the_c_loader(tmp_path, rng):
    path = tmp_path / "train.h5"
    write_cls_dataset(path, rng)
    m = gpuml.Model.from_config(CLS_CFG, seed=4)
    seen = []
    tr = gpuml.fit(m, path, optimizer="adam", lr=1e-2, loss="cross_entropy", inputs=["features"],
                   target="event/label", epochs=6, max_events=8, progress=False,
                   callback=lambda e, b, loss: seen.append((e, b)))
    assert len(tr.history) == 6 and tr.history[-1] < 0.5 * tr.history[0]
    assert seen[:2] == [(0, 0), (0, 1)] and len(seen) == 6 * 8
    before = m.parameter_slab().copy()
    ev = tr.evaluate(path)
    assert ev.events == 64 and ev.correct >= 56 and ev.loss < tr.history[0]
    assert (m.parameter_slab() == before).all()  # evaluate does not update
    # callback returning False stops the run
    n = tr.fit(path, inputs="features", target="event/label", epochs=3, progress=False,
               callback=lambda e, b, loss: b < 1)
    assert len(n) == 1 and tr.epoch == 7


def test_progress_bar_without_tqdm(tmp_path, rng, capsys, monkeypatch):
    import builtins
    real_import = builtins.__import__

    def no_tqdm(name, *a, **k):
        if name.startswith("tqdm"):
            raise ImportError(name)
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_tqdm)
    path = tmp_path / "train.h5"
    write_cls_dataset(path, rng, 16)
    tr = gpuml.Trainer(gpuml.Model.from_config(CLS_CFG), "adam")
    tr.fit(path, target="event/label", max_events=4)
    err = capsys.readouterr().err
    assert "epoch 1 [" in err and "4/4" in err and "loss" in err


def test_checkpoint_resume_is_bit_exact(tmp_path, rng):
    data = [events(rng, 6) for _ in range(10)]

    def run(tr, batches):
        return [tr.step(inputs=x, target=lab, row_splits=rs) for x, rs, lab in batches]

    opt = {"kind": "adamw", "lr": 5e-3, "clip_norm": 1.0, "schedule": "cosine", "warmup_steps": 2,
           "total_steps": 10}
    a = gpuml.Trainer(gpuml.Model.from_config(CLS_CFG, seed=8), opt)
    run(a, data[:5])
    a.save_checkpoint(tmp_path / "ckpt.h5")
    la = run(a, data[5:])
    b = gpuml.Trainer(gpuml.Model.from_config(CLS_CFG, seed=99), opt)
    b.load_checkpoint(tmp_path / "ckpt.h5")
    assert b.num_steps == 5
    lb = run(b, data[5:])
    assert la == lb
    assert a.model.parameter_slab().tobytes() == b.model.parameter_slab().tobytes()


def test_trainer_argument_errors():
    m = gpuml.Model.from_config(CLS_CFG)
    with pytest.raises(gpuml.InvalidArgumentError, match="loss 'hinge'"):
        gpuml.Trainer(m, loss="hinge")
    with pytest.raises(gpuml.InvalidArgumentError, match="optimizer kind 'lion'"):
        gpuml.Trainer(m, "lion")
    with pytest.raises(gpuml.InvalidArgumentError, match="'learning_rate'"):
        gpuml.Trainer(m, learning_rate=1.0)
    with pytest.raises(gpuml.InvalidArgumentError):
        gpuml.Trainer(m, "sgd", lr=-1.0)  # the C library validates values
    tr = gpuml.Trainer(m)
    with pytest.raises(gpuml.InvalidArgumentError, match="inputs and a target"):
        tr.step({"inputs": np.zeros((3, 3), np.float32)})
