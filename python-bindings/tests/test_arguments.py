"""Arguments on their way to C (issue 16's Python findings): unaligned
arrays are copied, integers are range-checked instead of truncated by
ctypes, a closed engine raises the documented StateError, and timeouts are
validated."""
import math

import numpy as np
import pytest

import gpuml
from gpuml._lib import c_int_arg, lib

ENGINE_CFG = {
    "inputs": [{"name": "hits", "features": 3}],
    "nodes": [{"name": "d", "op": "linear", "inputs": ["hits"], "out": 2}],
    "outputs": ["d"],
}


def unaligned(a):
    """a copy of a whose data starts one byte past an aligned address."""
    buf = np.zeros(a.nbytes + 1, np.uint8)
    u = buf[1:].view(a.dtype).reshape(a.shape)
    u[...] = a
    assert not u.flags.aligned and u.flags.c_contiguous
    return u


@pytest.fixture
def model():
    return gpuml.Model.from_config(ENGINE_CFG, seed=1)


# ---- unaligned arrays -------------------------------------------------------
def test_unaligned_arrays_are_copied_not_rejected(rng):
    coords = rng.normal(size=(50, 3)).astype(np.float32)
    rs = np.array([0, 20, 50], np.int64)
    idx, d2 = gpuml.knn(coords, k=4, row_splits=rs)
    uidx, ud2 = gpuml.knn(unaligned(coords), k=4, row_splits=unaligned(rs))
    np.testing.assert_array_equal(idx, uidx)
    np.testing.assert_array_equal(d2, ud2)


def test_unaligned_tensor_is_a_copy_with_the_same_values(rng):
    x = rng.normal(size=(7, 5)).astype(np.float32)
    u = unaligned(x)
    t = gpuml.as_tensor(u)
    np.testing.assert_array_equal(t.numpy(), x)
    assert t.data_ptr != u.ctypes.data  # converted once, as the docs say
    a = gpuml.as_tensor(x)
    assert a.data_ptr == x.ctypes.data  # an aligned array is still used in place


def test_unaligned_engine_input(model, rng):
    hits = rng.normal(size=(9, 3)).astype(np.float32)
    with gpuml.Engine(model) as eng:
        np.testing.assert_array_equal(eng.run(unaligned(hits)), eng.run(hits))


# ---- integers into C ---------------------------------------------------------
def test_engine_config_integer_overflow_names_the_argument(model):
    with pytest.raises(OverflowError, match="'max_batch_events' = 4294967304"):
        gpuml.Engine(model, max_batch_events=2**32 + 8)
    with pytest.raises(OverflowError, match="'queue_rows'"):
        gpuml.Engine(model, queue_rows=2**63)
    with pytest.raises(TypeError, match="'num_instances'"):
        gpuml.Engine(model, num_instances=1.5)  # never truncated to 1


def test_priority_overflow_names_the_argument(model, rng):
    hits = rng.normal(size=(4, 3)).astype(np.float32)
    with gpuml.Engine(model) as eng:
        with pytest.raises(OverflowError, match="gpuml.Engine.submit.*'priority' = 1099511627776"):
            eng.submit(hits, priority=2**40)
        with pytest.raises(OverflowError, match="'priority'"):
            eng.run(hits, priority=-2**31 - 1)
        eng.run(hits, priority=2**31 - 1)  # the edge of int32 is fine
        assert eng.stats()["completed"] == 1


@pytest.mark.parametrize("call, arg", [
    (lambda: gpuml.Context(num_threads=2**32 + 1), "num_threads"),
    (lambda: gpuml.Context(seed=-1), "seed"),
    (lambda: gpuml.Context(seed=2**64), "seed"),
    (lambda: gpuml.knn(np.zeros((4, 2), np.float32), k=2**32 + 2), "k"),
    (lambda: gpuml.Model.from_config(ENGINE_CFG, seed=1).init_params(2**64 + 1), "seed"),
])
def test_integer_arguments_are_range_checked(call, arg):
    with pytest.raises(OverflowError, match=f"'{arg}'"):
        call()


def test_dataset_and_loader_integers(tmp_path):
    path = str(tmp_path / "d.h5")
    gpuml.write_dataset(path, [0, 2, 5], {"x": np.zeros((5, 2), np.float32)})
    ds = gpuml.Dataset(path)
    with pytest.raises(OverflowError, match="'first'"):
        ds.read(2**64, 1)
    with pytest.raises(OverflowError, match="'max_events'"):
        gpuml.Loader(path, ["x"], max_events=2**63)
    with pytest.raises(OverflowError, match="'seed'"):
        gpuml.Loader(path, ["x"], seed=-5)


def test_the_helper_and_the_backstop():
    import ctypes
    assert c_int_arg(np.int64(7), "n", "f") == 7
    assert c_int_arg(2**64 - 1, "n", "f", ctypes.c_uint64) == 2**64 - 1
    with pytest.raises(OverflowError, match=r"f: argument 'n' = 2147483648 does not fit .*int32"):
        c_int_arg(2**31, "n", "f")
    with pytest.raises(TypeError, match="'n' must be an integer"):
        c_int_arg(3.0, "n", "f")
    # every declared C function checks its integer arguments too, so a call
    # site that forgot the named check cannot truncate silently
    ctx = gpuml.Context()
    with pytest.raises(OverflowError, match="gpuml_ctx_set_num_threads"):
        lib.gpuml_ctx_set_num_threads(ctx.handle, 2**32 + 2)


# ---- a closed engine ------------------------------------------------------------
def test_closed_engine_raises_state_error(model, rng):
    hits = rng.normal(size=(4, 3)).astype(np.float32)
    eng = gpuml.Engine(model)
    eng.close()
    for call in (lambda: eng.submit(hits), lambda: eng.run(hits), lambda: eng.run(hits, direct=True),
                 eng.stats):
        with pytest.raises(gpuml.StateError, match="closed"):
            call()


# ---- timeouts ----------------------------------------------------------------
@pytest.mark.parametrize("bad", [math.nan, -1.0, -math.inf])
def test_bad_timeouts_name_the_argument(model, rng, bad):
    hits = rng.normal(size=(4, 3)).astype(np.float32)
    with gpuml.Engine(model) as eng:
        with pytest.raises(gpuml.InvalidArgumentError, match="gpuml.Engine.submit: argument 'timeout'"):
            eng.submit(hits, timeout=bad)
        with pytest.raises(ValueError, match="'timeout'"):  # InvalidArgumentError is a ValueError
            eng.run(hits, timeout=bad)


def test_timeout_types_and_infinity(model, rng):
    hits = rng.normal(size=(4, 3)).astype(np.float32)
    with gpuml.Engine(model) as eng:
        with pytest.raises(TypeError, match="'timeout'"):
            eng.submit(hits, timeout="1")
        with pytest.raises(TypeError, match="'timeout'"):
            eng.submit(hits, timeout=True)
        assert eng.submit(hits, timeout=math.inf).result(timeout=60).shape == (4, 2)  # no deadline
        assert eng.submit(hits, timeout=1e300).result(timeout=60).shape == (4, 2)
        assert eng.submit(hits, timeout=np.float32(30)).result(timeout=60).shape == (4, 2)


def test_communicator_timeouts():
    with pytest.raises(gpuml.InvalidArgumentError, match="'timeout'"):
        gpuml.Communicator("self", timeout=math.nan)
    comm = gpuml.Communicator("self", timeout=10)
    with pytest.raises(gpuml.InvalidArgumentError, match="'seconds'"):
        comm.set_timeout(-1)
    with pytest.raises(gpuml.InvalidArgumentError, match="'seconds'"):
        comm.set_timeout(math.inf)  # a finite number of seconds
    comm.set_timeout(5)


# ---- Engine(require_checksum=...) -------------------------------------------------
def test_engine_require_checksum(model, rng, tmp_path):
    """A model file without gpuml's checksum (its first 8 bytes zeroed, as an
    old file) is served with a warning by default and refused with
    require_checksum=True, as gpuml_engine_config.require_checksum."""
    path = tmp_path / "plain.h5"
    model.save(path)
    raw = bytearray(path.read_bytes())
    raw[:8] = bytes(8)
    path.write_bytes(bytes(raw))
    hits = rng.normal(size=(4, 3)).astype(np.float32)
    with gpuml.Engine(str(path)) as eng:
        assert eng.config["require_checksum"] == 0
        eng.run(hits)
    with pytest.raises(gpuml.FormatError, match="require_checksum"):
        gpuml.Engine(str(path), require_checksum=True)
    good = tmp_path / "good.h5"
    model.save(good)
    with gpuml.Engine(str(good), require_checksum=True) as eng:
        assert eng.config["require_checksum"] == 1
        eng.run(hits)


# ---- closed objects ------------------------------------------------------------
def test_closed_objects_raise_state_error(model, rng):
    """Use after the C object is freed (__del__, which runs when collected)
    raises gpuml.StateError, as a closed Engine does, naming the class."""
    ctx = gpuml.Context()
    ctx.__del__()
    with pytest.raises(gpuml.StateError, match="gpuml.Context: the context is closed"):
        ctx.handle
    m = gpuml.Model.from_config(ENGINE_CFG, seed=1)
    m.__del__()
    with pytest.raises(gpuml.StateError, match="gpuml.Model: the model is closed"):
        m(rng.normal(size=(4, 3)).astype(np.float32))
    t = gpuml.Tensor.empty((2, 2))
    t.__del__()
    with pytest.raises(gpuml.StateError, match="gpuml.Tensor: the tensor is closed"):
        t.handle
