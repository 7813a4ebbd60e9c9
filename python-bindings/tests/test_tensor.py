"""Tensors: the input conversion rule, zero-copy wrapping, numpy views and
DLPack round trips with numpy and torch."""
import numpy as np
import pytest

import gpuml


def test_float32_contiguous_is_wrapped_not_copied():
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    t = gpuml.as_tensor(x)
    assert t.data_ptr == x.ctypes.data
    assert t.shape == (3, 4) and t.dtype == np.float32 and t.device == "cpu"
    v = t.numpy()
    assert np.shares_memory(v, x)
    x[0, 0] = 42  # the tensor sees the caller's memory
    assert v[0, 0] == 42


def test_conversion_rule_copies_other_dtypes_and_layouts():
    x64 = np.arange(6, dtype=np.float64).reshape(2, 3)
    t = gpuml.as_tensor(x64)
    assert t.dtype == np.float32 and not np.shares_memory(t.numpy(), x64)
    np.testing.assert_array_equal(t.numpy(), x64.astype(np.float32))
    base = np.arange(24, dtype=np.float32).reshape(4, 6)
    strided = base[:, ::2]
    t = gpuml.as_tensor(strided)
    assert not np.shares_memory(t.numpy(), base)
    np.testing.assert_array_equal(t.numpy(), strided)
    big_endian = np.arange(4, dtype=">f4")
    np.testing.assert_array_equal(gpuml.as_tensor(big_endian).numpy(), [0, 1, 2, 3])
    ints = gpuml.as_tensor([[1, 2], [3, 4]])
    assert ints.dtype == np.float32
    # int64 given as int64 is wrapped; int32 where int64 is wanted is converted
    rs = np.array([0, 2, 5], np.int64)
    assert gpuml.as_tensor(rs, "int64").data_ptr == rs.ctypes.data
    assert gpuml.as_tensor(rs.astype(np.int32), "int64").dtype == np.int64


def test_conversion_rule_rejections():
    with pytest.raises(gpuml.DtypeError, match="must hold integers"):
        gpuml.as_tensor(np.array([0.0, 1.5]), "int64", arg="row_splits")
    with pytest.raises(gpuml.DtypeError, match="real numbers"):
        gpuml.as_tensor(np.array([True, False]))
    with pytest.raises(gpuml.DtypeError):
        gpuml.as_tensor(np.array([1 + 2j]))
    with pytest.raises(gpuml.DtypeError):
        gpuml.as_tensor(np.array(["a"]))
    with pytest.raises(gpuml.InvalidArgumentError, match="do not fit"):
        gpuml.as_tensor(np.array([2**40]), "int32")
    with pytest.raises(gpuml.ShapeError, match="2 dimensions"):
        gpuml.as_tensor(np.zeros(3, np.float32), ndim=2)
    with pytest.raises(gpuml.ShapeError):
        gpuml.as_tensor(np.zeros((1,) * 9, np.float32))
    # the Python classes are also the built-in ones
    assert issubclass(gpuml.DtypeError, TypeError) and issubclass(gpuml.ShapeError, ValueError)


def test_empty_and_scalar():
    t = gpuml.as_tensor(np.zeros((0, 3), np.float32))
    assert t.shape == (0, 3) and t.numpy().shape == (0, 3)
    s = gpuml.as_tensor(np.float32(2.5))
    assert s.shape == () and float(s.numpy()) == 2.5


def test_tensor_empty_zeros_and_views():
    t = gpuml.Tensor.zeros((2, 3), "int32")
    a = np.asarray(t)
    assert a.dtype == np.int32 and a.shape == (2, 3) and not a.any()
    a[1, 2] = 7
    r = t.reshape(3, 2)
    assert r.numpy()[2, 1] == 7 and r.data_ptr == t.data_ptr
    del t  # views keep the storage alive
    assert a[1, 2] == 7 and r.numpy()[2, 1] == 7
    with pytest.raises(gpuml.ShapeError):
        gpuml.Tensor.empty((2, 3)).reshape(4, 2)
    assert "[2, 3] f32 cpu" in repr(gpuml.Tensor.empty((2, 3)))


def test_numpy_view_keeps_tensor_alive():
    t = gpuml.Tensor.empty((1000,))
    v = t.numpy()
    v[:] = 3
    ptr = t.data_ptr
    del t
    import gc
    gc.collect()
    assert v.ctypes.data == ptr and (v == 3).all()


def test_dlpack_numpy_round_trip():
    x = np.arange(10, dtype=np.float32).reshape(2, 5)
    t = gpuml.from_dlpack(x)
    assert t.data_ptr == x.ctypes.data
    back = np.from_dlpack(t)
    assert np.shares_memory(back, x)
    assert t.__dlpack_device__() == (1, 0)
    for dt in (np.float16, np.float64, np.int32, np.int64, np.uint8, np.bool_):
        y = np.ones((3, 2), dt)
        ty = gpuml.from_dlpack(y)
        assert ty.dtype == dt and ty.data_ptr == y.ctypes.data
        assert np.from_dlpack(ty).dtype == dt


def test_dlpack_rejects_strided_and_unknown_dtypes():
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    with pytest.raises(BufferError, match="not C-contiguous"):
        gpuml.from_dlpack(x[:, ::2])
    with pytest.raises(gpuml.DtypeError):
        gpuml.from_dlpack(np.zeros(3, np.complex64))
    with pytest.raises(TypeError):
        gpuml.from_dlpack([1, 2, 3])


def test_dlpack_capsule_unconsumed_and_legacy():
    t = gpuml.as_tensor(np.ones(4, np.float32))
    from gpuml import _dlpack
    n0 = len(_dlpack._exported)
    cap = t.__dlpack__()  # legacy capsule, never consumed
    assert len(_dlpack._exported) == n0 + 1
    del cap
    assert len(_dlpack._exported) == n0
    cap = t.__dlpack__(max_version=(1, 0))
    t2 = gpuml.from_dlpack(cap)  # a capsule is accepted directly
    assert t2.data_ptr == t.data_ptr
    with pytest.raises(BufferError, match="consumed"):
        gpuml.from_dlpack(cap)
    del t2, cap
    assert len(_dlpack._exported) == n0


def test_dlpack_torch_round_trip(torch):
    x = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    t = gpuml.from_dlpack(x)
    assert t.data_ptr == x.data_ptr() and t.shape == (3, 4)
    back = torch.from_dlpack(t)
    assert back.data_ptr() == x.data_ptr()
    back[0, 0] = -1
    assert x[0, 0] == -1
    # gpuml memory exported to torch stays valid after the gpuml handle goes
    g = gpuml.Tensor.zeros((5,), "int64")
    tt = torch.from_dlpack(g)
    del g
    import gc
    gc.collect()
    tt += 3
    assert tt.tolist() == [3] * 5
    for dt in (torch.float16, torch.bfloat16, torch.float64, torch.int32, torch.int64, torch.uint8, torch.bool):
        y = torch.ones(4, dtype=dt)
        ty = gpuml.from_dlpack(y)
        assert ty.data_ptr == y.data_ptr()
        assert torch.from_dlpack(ty).dtype == dt


def test_torch_inputs_to_ops(torch):
    x = torch.randn(50, 3)
    idx, d2 = gpuml.knn(x, 4)
    ref_idx, ref_d2 = gpuml.knn(x.numpy(), 4)
    np.testing.assert_array_equal(idx, ref_idx)
    # non-contiguous torch tensors are converted (copied) by the same rule
    xt = torch.randn(3, 50).t()
    assert not xt.is_contiguous()
    idx2, _ = gpuml.knn(xt, 4)
    np.testing.assert_array_equal(idx2, gpuml.knn(xt.contiguous().numpy(), 4)[0])
    with pytest.raises(gpuml.DtypeError):
        gpuml.knn(x, 4, row_splits=torch.tensor([0.0, 50.0]))
