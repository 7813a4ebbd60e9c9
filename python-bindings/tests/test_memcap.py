"""Memory caps from Python (include/gpuml/context.h "memory caps",
include/gpuml/infer.h "Memory cap"): a context's cap counts cached blocks,
gives the cache back before refusing, and raises OutOfMemoryError naming
the cap; an engine's cap covers all its contexts."""
import numpy as np
import pytest

import gpuml
from gpuml import Tensor

KIB = 1024


def test_context_cap_counts_the_cache_and_names_itself():
    ctx = gpuml.Context(num_threads=1, mem_cap=1024 * KIB)
    assert ctx.mem_cap == 1024 * KIB
    assert ctx.alloc_stats()["bytes_cap"] == 1024 * KIB
    ts = [Tensor.empty((64 * 1024,), ctx=ctx) for _ in range(4)]  # 4 x 256 KiB: exactly the cap
    s = ctx.alloc_stats()
    assert s["bytes_reserved"] == s["bytes_in_use"] == 1024 * KIB
    with pytest.raises(gpuml.OutOfMemoryError, match=r"cap of 1048576 bytes.*request of 4 bytes"):
        Tensor.empty((1,), ctx=ctx)
    del ts[2:]  # 512 KiB cached, still counted
    assert ctx.alloc_stats()["bytes_cached"] == 512 * KIB
    big = Tensor.empty((128 * 1024,), ctx=ctx)  # 512 KiB of another size: the cache goes first
    s = ctx.alloc_stats()
    assert s["bytes_cached"] == 0 and s["bytes_reserved"] == 1024 * KIB
    with pytest.raises(gpuml.StateError):
        ctx.mem_cap = 256 * KIB  # below what is in use: unchanged
    assert ctx.mem_cap == 1024 * KIB
    ctx.mem_cap = None
    assert ctx.mem_cap is None
    Tensor.empty((64 * 1024,), ctx=ctx)
    del big, ts


def test_engine_cap():
    cfg = {"inputs": [{"name": "x", "features": 4}],
           "nodes": [{"name": "d", "op": "linear", "inputs": ["x"], "out": 8}], "outputs": ["d"]}
    model = gpuml.Model.from_config(cfg, seed=1)
    with gpuml.Engine(model, num_instances=2, max_batch_rows=256) as free:
        held = free.mem_usage()["held"]
        assert free.mem_usage()["cap"] == 0
    with pytest.raises(gpuml.OutOfMemoryError, match="engine cap"):
        gpuml.Engine(model, num_instances=2, max_batch_rows=256, mem_cap=held // 4)
    with gpuml.Engine(model, num_instances=2, max_batch_rows=256, mem_cap=4 * held) as eng:
        x = np.ones((10, 4), np.float32)
        assert eng.run([x]).shape == (10, 8)
        u = eng.mem_usage()
        assert u["cap"] == 4 * held and 0 < u["held"] <= 4 * held
