"""DLPack import and export (https://dmlc.github.io/dlpack/latest/).

Both the legacy capsule (``"dltensor"``, DLManagedTensor) and the versioned
one of DLPack 1.x (``"dltensor_versioned"``) are produced and consumed.

Import wraps the producer's memory with gpuml_tensor_wrap; the wrap's
deleter calls the producer's DLPack deleter when the last gpuml handle on
that memory is gone (which may be on a C thread: ctypes takes the GIL for
the callback). Only C-contiguous (compact row-major) tensors on the CPU or a
CUDA device can be wrapped; anything else raises BufferError.

Export builds the DLManagedTensor in ctypes memory kept in a table until the
consumer calls its deleter; a capsule that is never consumed calls it from
its destructor.
"""
from __future__ import annotations

import ctypes
from ctypes import CFUNCTYPE, POINTER, Structure, c_char_p, c_int, c_int32, c_int64, c_uint8, c_uint16, c_uint32
from ctypes import c_uint64, c_void_p, py_object

from ._context import CPU, CUDA
from ._errors import DtypeError
from ._lib import DELETER, Device, lib
from ._tensor import BF16, BOOL, F16, F32, F64, I32, I64, U8, Tensor, _shape_arg

kDLCPU, kDLCUDA, kDLCUDAHost = 1, 2, 3
kDLInt, kDLUInt, kDLFloat, kDLBfloat, kDLBool = 0, 1, 2, 4, 6
FLAG_READ_ONLY = 1

_TO_DL = {F32: (kDLFloat, 32), F16: (kDLFloat, 16), BF16: (kDLBfloat, 16), F64: (kDLFloat, 64),
          I32: (kDLInt, 32), I64: (kDLInt, 64), U8: (kDLUInt, 8), BOOL: (kDLBool, 8)}
_FROM_DL = {v: k for k, v in _TO_DL.items()}


class DLDevice(Structure):
    _fields_ = [("device_type", c_int32), ("device_id", c_int32)]


class DLDataType(Structure):
    _fields_ = [("code", c_uint8), ("bits", c_uint8), ("lanes", c_uint16)]


class DLTensor(Structure):
    _fields_ = [("data", c_void_p), ("device", DLDevice), ("ndim", c_int32), ("dtype", DLDataType),
                ("shape", POINTER(c_int64)), ("strides", POINTER(c_int64)), ("byte_offset", c_uint64)]


DL_DELETER = CFUNCTYPE(None, c_void_p)


class DLManagedTensor(Structure):
    _fields_ = [("dl_tensor", DLTensor), ("manager_ctx", c_void_p), ("deleter", DL_DELETER)]


class DLPackVersion(Structure):
    _fields_ = [("major", c_uint32), ("minor", c_uint32)]


class DLManagedTensorVersioned(Structure):
    _fields_ = [("version", DLPackVersion), ("manager_ctx", c_void_p), ("deleter", DL_DELETER),
                ("flags", c_uint64), ("dl_tensor", DLTensor)]


_NAME = b"dltensor"
_NAME_V = b"dltensor_versioned"
_USED = b"used_dltensor"
_USED_V = b"used_dltensor_versioned"

_api = ctypes.pythonapi
_api.PyCapsule_New.restype = py_object
_api.PyCapsule_New.argtypes = [c_void_p, c_char_p, c_void_p]
_api.PyCapsule_GetPointer.restype = c_void_p
_api.PyCapsule_GetPointer.argtypes = [py_object, c_char_p]
_api.PyCapsule_GetName.restype = c_char_p
_api.PyCapsule_GetName.argtypes = [py_object]
_api.PyCapsule_SetName.restype = c_int
_api.PyCapsule_SetName.argtypes = [py_object, c_char_p]
_api.PyCapsule_IsValid.restype = c_int
_api.PyCapsule_IsValid.argtypes = [py_object, c_char_p]
# The destructor receives a borrowed PyObject *, so it gets its own
# prototypes taking a raw pointer (a py_object argument would take a new
# reference to an object being destroyed).
_raw_is_valid = ctypes.PYFUNCTYPE(c_int, c_void_p, c_char_p)(("PyCapsule_IsValid", _api))
_raw_get_pointer = ctypes.PYFUNCTYPE(c_void_p, c_void_p, c_char_p)(("PyCapsule_GetPointer", _api))

# ---- export -------------------------------------------------------------------
_exported: dict[int, tuple] = {}  # address of the managed struct -> what it keeps alive


def _release(addr):
    _exported.pop(addr, None)


_deleter_fn = DL_DELETER(_release)


def _capsule_destructor(capsule):
    # An unconsumed capsule still carries its original name: free the tensor.
    for name in (_NAME, _NAME_V):
        if _raw_is_valid(capsule, name):
            _release(_raw_get_pointer(capsule, name))
            return


_destructor_fn = CFUNCTYPE(None, c_void_p)(_capsule_destructor)
_destructor_ptr = ctypes.cast(_destructor_fn, c_void_p).value


def export(t: Tensor, max_version=None, dl_device=None, copy=None):
    """A DLPack capsule over the tensor's memory (``Tensor.__dlpack__``)."""
    if copy:
        raise BufferError("gpuml tensors export their memory; copy=True is not supported")
    if dl_device is not None and tuple(dl_device) != t.__dlpack_device__():
        raise BufferError(f"cannot export a {t.device} tensor to DLPack device {tuple(dl_device)}")
    if t.is_cuda and t._ctx is not None:
        t._ctx.synchronize()  # consumers read on their own streams
    versioned = max_version is not None and tuple(max_version)[0] >= 1
    shape, cshape = _shape_arg(t.shape)
    ndim = len(shape)
    strides = (c_int64 * max(ndim, 1))()
    acc = 1
    for i in reversed(range(ndim)):
        strides[i] = acc
        acc *= shape[i]
    m = DLManagedTensorVersioned() if versioned else DLManagedTensor()
    dl = m.dl_tensor
    dl.data = t.data_ptr or None
    kind, idx = t.__dlpack_device__()
    dl.device = DLDevice(kind, idx)
    dl.ndim = ndim
    code, bits = _TO_DL[t.dtype_code]
    dl.dtype = DLDataType(code, bits, 1)
    dl.shape = ctypes.cast(cshape, POINTER(c_int64))
    dl.strides = ctypes.cast(strides, POINTER(c_int64))
    dl.byte_offset = 0
    m.deleter = _deleter_fn
    if versioned:
        m.version = DLPackVersion(1, 0)
        m.flags = FLAG_READ_ONLY if t.readonly else 0
    addr = ctypes.addressof(m)
    _exported[addr] = (m, cshape, strides, t)
    try:
        return _api.PyCapsule_New(addr, _NAME_V if versioned else _NAME, _destructor_ptr)
    except BaseException:
        _release(addr)
        raise


# ---- import -------------------------------------------------------------------
def _free_managed(data, user):
    m = DLManagedTensor.from_address(user)
    if m.deleter:
        m.deleter(user)


def _free_managed_v(data, user):
    m = DLManagedTensorVersioned.from_address(user)
    if m.deleter:
        m.deleter(user)


_free_fn = DELETER(_free_managed)
_free_fn_v = DELETER(_free_managed_v)


def _capsule_of(obj):
    if type(obj).__name__ == "PyCapsule":
        return obj
    if not hasattr(obj, "__dlpack__"):
        raise TypeError(f"{type(obj).__name__} supports neither __dlpack__ nor is it a DLPack capsule")
    try:
        return obj.__dlpack__(max_version=(1, 0))
    except TypeError:  # a producer older than DLPack 1.0
        return obj.__dlpack__()


def from_dlpack(obj) -> Tensor:
    """Wrap a DLPack-exporting array (torch, cupy, numpy, ...) or a DLPack
    capsule as a gpuml Tensor without copying.

    The array must be C-contiguous (compact row-major strides) on the CPU
    or a CUDA device, with a dtype gpuml has (float32/16/64, bfloat16,
    int32/64, uint8, bool); otherwise BufferError (layout, device) or
    DtypeError. The producer's memory stays alive until the Tensor and every
    C object using it are gone. A read-only export (DLPack 1.x flag) gives a
    Tensor with ``readonly`` set, which gpuml never uses as an output.
    """
    capsule = _capsule_of(obj)
    name = _api.PyCapsule_GetName(capsule)
    if name not in (_NAME, _NAME_V):
        raise BufferError(f"DLPack capsule named {name!r} (already consumed?)")
    versioned = name == _NAME_V
    addr = _api.PyCapsule_GetPointer(capsule, name)
    m = (DLManagedTensorVersioned if versioned else DLManagedTensor).from_address(addr)
    if versioned and m.version.major > 1:
        raise BufferError(f"DLPack version {m.version.major}.{m.version.minor} is newer than 1.x")
    dl = m.dl_tensor
    dt = (dl.dtype.code, dl.dtype.bits)
    if dl.dtype.lanes != 1 or dt not in _FROM_DL:
        raise DtypeError(f"DLPack dtype (code {dl.dtype.code}, {dl.dtype.bits} bits, {dl.dtype.lanes} lanes) has no "
                         "gpuml equivalent")
    if dl.device.device_type not in (kDLCPU, kDLCUDA, kDLCUDAHost):
        raise BufferError(f"DLPack device type {dl.device.device_type} is neither CPU nor CUDA")
    ndim = dl.ndim
    shape = [dl.shape[i] for i in range(ndim)]
    if dl.strides:
        acc = 1
        for i in reversed(range(ndim)):
            if shape[i] != 1 and dl.strides[i] != acc:
                raise BufferError(f"DLPack tensor of shape {shape} with strides "
                                  f"{[dl.strides[j] for j in range(ndim)]} is not C-contiguous")
            acc *= shape[i]
    readonly = bool(versioned and (m.flags & FLAG_READ_ONLY))
    cuda = dl.device.device_type == kDLCUDA
    dev = Device(CUDA if cuda else CPU, dl.device.device_id if cuda else 0)
    data = (dl.data or 0) + dl.byte_offset
    _, cshape = _shape_arg(shape)
    h = c_void_p()
    # Mark the capsule consumed first: from here on the deleter is ours to call.
    _api.PyCapsule_SetName(capsule, _USED_V if versioned else _USED)
    try:
        lib.gpuml_tensor_wrap(data or None, dev, _FROM_DL[dt], ndim, cshape, _free_fn_v if versioned else _free_fn,
                              addr, ctypes.byref(h))
    except BaseException:
        (_free_managed_v if versioned else _free_managed)(None, addr)
        raise
    return Tensor(h.value, readonly=readonly)
