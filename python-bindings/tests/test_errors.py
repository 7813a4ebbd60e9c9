"""C errors as Python exceptions, and the GIL during long C calls."""
import ctypes
import threading
import time

import numpy as np
import pytest

import gpuml
from gpuml import _errors
from gpuml._lib import KnnParams, lib


def test_every_status_has_a_class_named_like_the_c_constant():
    for status in range(1, 22):
        cls = _errors.BY_STATUS[status]
        assert issubclass(cls, gpuml.Error)
        assert cls.status_name == lib.gpuml_status_string(status).decode()
        assert getattr(gpuml, cls.__name__) is cls and cls.__name__ in gpuml.__all__


def test_c_message_and_status_reach_python(tmp_path):
    with pytest.raises(gpuml.IOError) as e:
        gpuml.Model.load(tmp_path / "missing.h5")
    assert isinstance(e.value, OSError)
    assert "missing.h5" in str(e.value) and e.value.function == "gpuml_model_load"
    # the message is the one the C library recorded for this thread
    assert str(e.value) == lib.gpuml_last_error().decode()
    bad = {"inputs": [{"name": "x", "features": 3}],
           "nodes": [{"name": "d1", "op": "linear", "inputs": ["x"], "out": 0}], "outputs": ["d1"]}
    with pytest.raises(gpuml.Error) as e:
        gpuml.Model.from_config(bad)
    assert "node 'd1'" in str(e.value) and "'out'" in str(e.value)
    with pytest.raises(gpuml.FormatError):
        gpuml.Model.from_config("{not json")
    # no GPU at all, or fewer than 98 (the emulated build has 2): no such device
    with pytest.raises(gpuml.NoDeviceError) as e:
        gpuml.Context("cuda:97")
    assert ("97" in str(e.value)) == (gpuml.cuda_device_count() > 0)  # names the index where devices exist


def test_bad_inputs_never_crash(rng):
    x = rng.normal(size=(10, 3)).astype(np.float32)
    cases = [
        lambda: gpuml.knn(x, 3, row_splits=[0, 5]),            # does not end at N
        lambda: gpuml.knn(x, 3, row_splits=[0, 7, 5, 10]),     # decreasing
        lambda: gpuml.knn(x, 3, row_splits=[[0, 10]]),          # wrong rank
        lambda: gpuml.knn(np.zeros((4, 0), np.float32), 2),    # D = 0
        lambda: gpuml.gravnet_aggregate(x, np.zeros((10, 2), np.int32), np.zeros((9, 2), np.float32)),
        lambda: gpuml.gravnet_aggregate(x, np.zeros((10, 2), np.float32), np.zeros((10, 2), np.float32)),
        lambda: gpuml.linear(x, np.zeros((2, 4), np.float32)),
        lambda: gpuml.segment_reduce(x, [0, 11]),
        lambda: gpuml.object_condensation(x[:, 0], x, np.zeros(9, np.int32)),
        lambda: gpuml.edge_first_linear(x, np.zeros((10, 2), np.int32), np.zeros((4, 5), np.float32)),
    ]
    for f in cases:
        with pytest.raises((gpuml.Error, TypeError, ValueError)):
            f()


def _longest_stall(call):
    """Longest time a second Python thread made no progress while `call`
    ran on this thread, and the call's duration. A call that holds the GIL
    stalls the other thread for its whole duration; one that releases it
    does not (beyond the OS's scheduling on a busy machine)."""
    st = {"last": time.perf_counter(), "gap": 0.0}
    stop = threading.Event()

    def spin():
        while not stop.is_set():
            now = time.perf_counter()
            if now - st["last"] > st["gap"]:
                st["gap"] = now - st["last"]
            st["last"] = now

    th = threading.Thread(target=spin)
    th.start()
    try:
        time.sleep(0.05)
        st["gap"] = 0.0
        t0 = time.perf_counter()
        call()
        dt = time.perf_counter() - t0
        time.sleep(0.05)  # let the spinner record a stall that ends with the call
        gap = st["gap"]
    finally:
        stop.set()
        th.join()
    return gap, dt


def test_gil_is_released_during_long_c_calls(rng):
    ctx = gpuml.Context(num_threads=1)
    x = rng.normal(size=(6000, 32)).astype(np.float32)  # brute force, ~0.1-0.5 s
    rs = gpuml.as_tensor(np.array([0, len(x)], np.int64), "int64")
    tx = gpuml.as_tensor(x)
    k = 16
    ti, td = gpuml.Tensor.empty((len(x), k), "int32", ctx), gpuml.Tensor.empty((len(x), k), ctx=ctx)
    p = KnnParams()
    lib.gpuml_knn_params_init_defaults(ctypes.byref(p))
    p.k, p.algo = k, 1  # brute force: O(N^2 D), a long call
    args = (ctx.handle, tx.handle, rs.handle, ctypes.byref(p), ti.handle, td.handle, None, None)

    # The same call through ctypes.PyDLL, which keeps the GIL: the other
    # thread stalls for the whole call. This shows the measurement works.
    held = ctypes.PyDLL(lib.path).gpuml_knn_ex
    held.argtypes = lib.gpuml_knn_ex.argtypes
    gap, dt = _longest_stall(lambda: held(*args))
    assert dt > 0.05, "the call is too short to tell"
    assert gap > 0.6 * dt, (gap, dt)

    gap, dt = _longest_stall(lambda: lib.gpuml_knn_ex(*args))
    assert gap < 0.4 * dt, (gap, dt)
    gap, dt = _longest_stall(lambda: gpuml.knn(x, k, algo="brute", ctx=ctx))
    assert gap < 0.4 * dt, (gap, dt)


def test_errors_are_per_thread(rng):
    """Each thread sees its own C message (gpuml_last_error is per thread)."""
    x = rng.normal(size=(10, 3)).astype(np.float32)
    msgs = {}

    def worker(n):
        try:
            gpuml.knn(x, 3, row_splits=[0, n])
        except gpuml.Error as e:
            msgs[n] = str(e)

    ts = [threading.Thread(target=worker, args=(n,)) for n in (4, 6, 8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    for n in (4, 6, 8):
        assert f"ends at {n}" in msgs[n]
