"""The inference engine from Python: futures, asyncio, batching that gives
the single-event results bitwise, back-pressure, deadlines, failures."""
import asyncio
import json
import threading

import numpy as np
import pytest

import gpuml
from gpuml._lib import lib

CFG = {
    "inputs": [{"name": "hits", "features": 5}, {"name": "aux", "features": 2}],
    "nodes": [
        {"name": "cat", "op": "concat", "inputs": ["hits", "aux"]},
        {"name": "d1", "op": "linear", "inputs": ["cat"], "out": 16},
        {"name": "a1", "op": "elu", "inputs": ["d1"]},
        {"name": "pool", "op": "global_pool", "inputs": ["a1"], "reduce": "max"},
        {"name": "cls", "op": "linear", "inputs": ["pool"], "out": 3},
        {"name": "node", "op": "linear", "inputs": ["a1"], "out": 2},
    ],
    "outputs": ["node", "cls"],
}


@pytest.fixture
def model():
    return gpuml.Model.from_config(CFG, seed=3)


def make_events(rng, n):
    out = []
    for _ in range(n):
        rows = int(rng.integers(1, 40))
        out.append((rng.normal(size=(rows, 5)).astype(np.float32), rng.normal(size=(rows, 2)).astype(np.float32)))
    return out


def test_futures_from_many_threads_match_single_event_inference(model, rng):
    events = make_events(rng, 120)
    alone = [model(list(ev)) for ev in events]
    results = [None] * len(events)
    with gpuml.Engine(model, max_batch_events=16, max_queue_delay_us=2000) as eng:
        assert [i.name for i in eng.inputs] == ["hits", "aux"]

        def worker(lo):
            futs = [(i, eng.submit(list(events[i]))) for i in range(lo, len(events), 4)]
            for i, f in futs:
                results[i] = f.result(timeout=60)

        ts = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        st = eng.stats()
    for (node, cls), (ref_node, ref_cls) in zip(results, alone):
        assert node.shape == ref_node.shape and cls.shape == (1, 3)
        assert node.tobytes() == ref_node.tobytes() and cls.tobytes() == ref_cls.tobytes()  # bitwise
    assert st["submitted"] == st["completed"] == 120 and st["batches"] < 120  # events were batched
    assert st["latency"]["count"] == 120


def test_asyncio(model, rng):
    events = make_events(rng, 30)

    async def main(eng):
        return await asyncio.gather(*[eng.infer({"hits": h, "aux": a}) for h, a in events])

    with gpuml.Engine(model, max_queue_delay_us=1000) as eng:
        outs = asyncio.run(main(eng))
    for (node, cls), ev in zip(outs, events):
        ref_node, ref_cls = model(list(ev))
        np.testing.assert_array_equal(node, ref_node)
        np.testing.assert_array_equal(cls, ref_cls)


def test_engine_from_files_run_and_direct(model, rng, tmp_path):
    (h, a), = make_events(rng, 1)
    ref = model([h, a])
    model.save(tmp_path / "m.h5")
    (tmp_path / "m.json").write_text(json.dumps(CFG))
    with gpuml.Engine(tmp_path / "m.h5") as eng:
        for direct in (False, True):
            out = eng.run([h, a], direct=direct)
            assert out[0].tobytes() == ref[0].tobytes() and out[1].tobytes() == ref[1].tobytes()
    with gpuml.Engine(str(tmp_path / "m.json")) as eng:  # a config: default initialisation
        out = eng.run([h, a])
        np.testing.assert_array_equal(out[1], gpuml.Model.from_config(CFG)([h, a])[1])
    with pytest.raises(gpuml.IOError):
        gpuml.Engine(tmp_path / "missing.h5")


def test_bad_requests_are_rejected_before_c(model):
    with gpuml.Engine(model) as eng:
        with pytest.raises(gpuml.ShapeError, match="'aux'"):
            eng.submit([np.zeros((4, 5)), np.zeros((3, 2))])
        with pytest.raises(gpuml.ShapeError, match="'hits'"):
            eng.submit([np.zeros((4, 6)), np.zeros((4, 2))])
        with pytest.raises(gpuml.InvalidArgumentError, match="2 inputs"):
            eng.submit(np.zeros((4, 5)))
        with pytest.raises(gpuml.DtypeError):
            eng.submit([np.zeros((4, 5), bool), np.zeros((4, 2))])
    with pytest.raises(gpuml.StateError, match="closed"):  # as the docstring says
        eng.submit([np.zeros((4, 5)), np.zeros((4, 2))])


def test_back_pressure_deadlines_and_failures(model, rng):
    events = make_events(rng, 12)
    # The batcher waits up to 2 s for a full batch (64 events), so the first
    # 4 requests stay queued while the loop submits the rest: the queue is
    # full however slow this process is (ASan) - a batch of 4 would be
    # dispatched at once and could complete between two submits.
    with gpuml.Engine(model, queue_capacity=4, max_batch_events=64, max_queue_delay_us=2000000) as eng:
        futs, full = [], 0
        for h, a in events:
            try:
                futs.append(eng.submit([h, a]))
            except gpuml.QueueFullError as e:
                full += 1
                assert "gpuml_engine_submit" in str(e)
        assert full > 0 and len(futs) >= 4
        for f in futs:
            f.result(timeout=60)
        assert eng.stats()["rejected"] == full
    with gpuml.Engine(model, max_queue_delay_us=300000, max_batch_events=64) as eng:
        f = eng.submit(list(events[0]), timeout=1e-6)
        with pytest.raises(gpuml.TimeoutError):
            f.result(timeout=60)
    with gpuml.Engine(model, max_queue_delay_us=0) as eng:
        lib.gpuml_engine_fail_batch_after(eng.handle, 1)
        f = eng.submit(list(events[0]))
        with pytest.raises(gpuml.OutOfMemoryError, match="injected"):
            f.result(timeout=60)
        assert "injected" in eng.last_error()
        np.testing.assert_array_equal(eng.submit(list(events[1])).result(timeout=60)[1], model(list(events[1]))[1])


def test_close_drains_pending_requests(model, rng):
    events = make_events(rng, 20)
    eng = gpuml.Engine(model, max_queue_delay_us=100000, max_batch_events=64)
    futs = [eng.submit(list(ev)) for ev in events]
    eng.close()
    assert all(f.done() and f.exception() is None for f in futs)
    eng.close()  # twice is fine


def test_engine_over_several_devices(model, rng):
    """devices=[...] / "all": instances on several GPUs (two or more, e.g. the
    emulated CUDA build's), each event bitwise equal to direct inference on
    the first listed device (one event per batch), the work spread over
    every device. Bad lists are refused before anything is created."""
    n = gpuml.cuda_device_count()
    bad = r"cfg->devices\[1\] = 99" if n else r"cfg->devices\[0\] = 0"  # the first entry not visible
    with pytest.raises(gpuml.InvalidArgumentError, match=bad + " is not a visible CUDA device"):
        gpuml.Engine(model, device="cuda", devices=[0, 99])
    with pytest.raises(gpuml.InvalidArgumentError, match="a device list needs cfg->device.type CUDA"):
        gpuml.Engine(model, devices="all")
    if n < 2:
        pytest.skip("needs two CUDA devices (the emulated CUDA build has them)")
    with pytest.raises(gpuml.InvalidArgumentError, match=r"cfg->devices\[1\] = 1 repeats cfg->devices\[0\]"):
        gpuml.Engine(model, device="cuda", devices=[1, 1])
    events = make_events(rng, 40)
    with gpuml.Engine(model, device="cuda:1", max_batch_events=1) as one:
        want = [one.run(ev, direct=True) for ev in events]
    with gpuml.Engine(model, device="cuda", devices=[1, 0], max_batch_events=1) as eng:
        assert eng.devices == [1, 0] and eng.num_instances == 2
        futs = [eng.submit(ev) for ev in events]
        for f, w in zip(futs, want):
            got = f.result(timeout=120)
            for g, x in zip(got, w):
                assert np.array_equal(g, x)
        per = eng.instance_stats()
        assert [p["device"] for p in per] == ["cuda:1", "cuda:0"]
        assert sum(p["batch_events"] for p in per) == len(events)
        assert all(p["batches"] > 0 for p in per)
    with gpuml.Engine(model, device="cuda", devices="all") as eng:
        assert eng.devices == list(range(gpuml.cuda_device_count()))
