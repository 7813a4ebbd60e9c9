"""gpuml tensors in Python: numpy and DLPack interchange without copies.

Input conversion rule (every function of the package applies it through
:func:`as_tensor`):

* A C-contiguous, aligned, native-byte-order array of the dtype the function
  expects is used in place: gpuml_tensor_wrap over its memory, no copy.
  numpy arrays are wrapped directly; objects with ``__dlpack__`` (torch,
  cupy, jax arrays, gpuml Tensors) are imported through DLPack.
* Where float32 is expected, any other real floating or integer array
  (float64, float16, int32, ...), a non-contiguous view, an unaligned array
  or big-endian data is converted once into a new float32 C-contiguous
  array for that call.
* Where integers are expected (row_splits int64, kNN indices int32, labels,
  truth ids), any integer array is accepted and converted if its type
  differs; values that do not fit the target type raise InvalidArgumentError.
* Booleans where numbers are expected, floats where integers are expected,
  complex numbers, strings and objects raise DtypeError. A wrong rank raises
  ShapeError. Nothing is ever reinterpreted.
* On a CUDA context, host data is copied to the device; device data (torch
  or cupy CUDA tensors through DLPack) is used in place.

Outputs on the CPU are numpy arrays allocated by Python and wrapped as the C
function's output tensor, so the C code writes straight into them. Tensors
that the C library owns (model parameters, loader batches) are exposed as
numpy views of the C memory whose ``base`` keeps the owner alive.
"""
from __future__ import annotations

import ctypes
from ctypes import c_int64, c_void_p

import numpy as np

from ._context import CPU, CUDA, Context, device_str, resolve
from ._errors import DtypeError, InvalidArgumentError, ShapeError, StateError
from ._lib import DELETER, MAX_DIMS, Device, lib

F32, F16, BF16, F64, I32, I64, U8, BOOL = range(8)
_NP = {F32: np.dtype(np.float32), F16: np.dtype(np.float16), BF16: np.dtype(np.uint16), F64: np.dtype(np.float64),
       I32: np.dtype(np.int32), I64: np.dtype(np.int64), U8: np.dtype(np.uint8), BOOL: np.dtype(np.bool_)}
_NAMES = {F32: "float32", F16: "float16", BF16: "bfloat16", F64: "float64", I32: "int32", I64: "int64",
          U8: "uint8", BOOL: "bool"}
_FROM_NAME = {v: k for k, v in _NAMES.items()}


def dtype_code(dtype) -> int:
    """numpy dtype / name ('float32', 'bfloat16', ...) -> gpuml_dtype."""
    if isinstance(dtype, str) and dtype in _FROM_NAME:
        return _FROM_NAME[dtype]
    d = np.dtype(dtype)
    for code, nd in _NP.items():
        if code != BF16 and nd == d:
            return code
    raise DtypeError(f"dtype {d} has no gpuml equivalent (float32, float16, bfloat16, float64, int32, int64, "
                     "uint8, bool)")


def _shape_arg(shape):
    shape = tuple(int(s) for s in shape)
    if len(shape) > MAX_DIMS:
        raise ShapeError(f"{len(shape)} dimensions: gpuml tensors have at most {MAX_DIMS}")
    return shape, (c_int64 * max(len(shape), 1))(*shape)


class _View:
    """Carrier of ``__array_interface__`` for numpy views of C memory; numpy
    keeps it as the array's base, and it keeps ``keep`` alive."""

    __slots__ = ("__array_interface__", "keep")

    def __init__(self, ptr, shape, dtype, keep, readonly=False):
        self.__array_interface__ = {"data": (ptr, readonly), "shape": tuple(shape), "typestr": dtype.str,
                                    "version": 3}
        self.keep = keep


def view_memory(ptr: int, shape, dtype, keep, readonly=False) -> np.ndarray:
    """A numpy array over host memory at ptr (not copied), keeping keep alive."""
    dtype = np.dtype(dtype)
    if not ptr or int(np.prod(shape, dtype=np.int64)) == 0:
        return np.empty(shape, dtype)
    return np.asarray(_View(ptr, shape, dtype, keep, readonly))


class Tensor:
    """A handle to a gpuml tensor (``gpuml_tensor *``).

    Made by the package (outputs on a CUDA context, :func:`as_tensor`,
    :func:`from_dlpack`) or borrowed from a C object (a model parameter, a
    batch field), in which case it keeps that object alive and does not free
    the handle. ``numpy()`` / ``np.asarray(t)`` give a view of a CPU tensor's
    memory (no copy); ``__dlpack__`` exports it to torch, cupy or numpy.
    """

    __slots__ = ("_h", "_owned", "_keep", "_ctx", "readonly", "__weakref__")

    def __init__(self, handle: int, *, owned: bool = True, keep=None, ctx: Context | None = None,
                 readonly: bool = False):
        self._h = handle
        self._owned = owned
        self._keep = keep
        self._ctx = ctx
        self.readonly = readonly

    # ---- construction --------------------------------------------------
    @classmethod
    def empty(cls, shape, dtype="float32", ctx: Context | None = None, *, zero: bool = False) -> "Tensor":
        """An uninitialised (zero=True: zeroed) tensor from the context's allocator."""
        ctx = resolve(ctx)
        shape, cshape = _shape_arg(shape)
        h = c_void_p()
        create = lib.gpuml_tensor_zeros if zero else lib.gpuml_tensor_create
        create(ctx.handle, dtype_code(dtype), len(shape), cshape, ctypes.byref(h))
        return cls(h.value, ctx=ctx)

    @classmethod
    def zeros(cls, shape, dtype="float32", ctx: Context | None = None) -> "Tensor":
        return cls.empty(shape, dtype, ctx, zero=True)

    @classmethod
    def wrap_numpy(cls, arr: np.ndarray) -> "Tensor":
        """Wrap a C-contiguous aligned numpy array without copying."""
        if not (arr.flags.c_contiguous and arr.flags.aligned and arr.dtype.isnative):
            raise InvalidArgumentError("wrap_numpy needs a C-contiguous, aligned, native-endian array")
        shape, cshape = _shape_arg(arr.shape)
        h = c_void_p()
        ptr = arr.ctypes.data if arr.size else None
        lib.gpuml_tensor_wrap(ptr, Device(CPU, 0), dtype_code(arr.dtype), len(shape), cshape, DELETER(),
                              None, ctypes.byref(h))
        return cls(h.value, keep=arr, readonly=not arr.flags.writeable)

    # ---- properties ------------------------------------------------------
    @property
    def handle(self) -> int:
        if not self._h:
            raise StateError("gpuml.Tensor: the tensor is closed")
        return self._h

    @property
    def dtype_code(self) -> int:
        return lib.gpuml_tensor_dtype(self.handle)

    @property
    def dtype(self) -> np.dtype:
        """numpy dtype (bfloat16 tensors show as uint16: numpy has no bfloat16)."""
        return _NP[self.dtype_code]

    @property
    def dtype_name(self) -> str:
        return _NAMES[self.dtype_code]

    @property
    def shape(self) -> tuple:
        n = lib.gpuml_tensor_ndim(self.handle)
        s = lib.gpuml_tensor_shape(self.handle)
        return tuple(s[i] for i in range(n))

    @property
    def ndim(self) -> int:
        return lib.gpuml_tensor_ndim(self.handle)

    @property
    def size(self) -> int:
        return lib.gpuml_tensor_numel(self.handle)

    @property
    def nbytes(self) -> int:
        return lib.gpuml_tensor_nbytes(self.handle)

    @property
    def device(self) -> str:
        return device_str(lib.gpuml_tensor_device(self.handle))

    @property
    def is_cuda(self) -> bool:
        return lib.gpuml_tensor_device(self.handle).type == CUDA

    @property
    def data_ptr(self) -> int:
        return lib.gpuml_tensor_data(self.handle) or 0

    # ---- conversion ------------------------------------------------------
    def numpy(self, copy: bool = False) -> np.ndarray:
        """The tensor as a numpy array: a view of its memory for a CPU tensor
        (the array keeps the tensor alive), a host copy for a CUDA one."""
        if self.is_cuda:
            out = np.empty(self.shape, self.dtype)
            if out.nbytes:
                ctx = self._ctx if self._ctx is not None and self._ctx.is_cuda else None
                if ctx is None:
                    raise InvalidArgumentError("this CUDA tensor has no known context to copy it with; "
                                               "use DLPack (torch.from_dlpack) instead")
                lib.gpuml_tensor_copy_to_host(ctx.handle, self.handle, out.ctypes.data, out.nbytes)
            return out
        arr = view_memory(self.data_ptr, self.shape, self.dtype, self, self.readonly)
        return arr.copy() if copy else arr

    def __array__(self, dtype=None, copy=None):
        arr = self.numpy(copy=bool(copy))
        return arr if dtype is None else arr.astype(dtype, copy=bool(copy))

    def reshape(self, *shape) -> "Tensor":
        """A view with another shape (one entry may be -1)."""
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = shape[0]
        shape, cshape = _shape_arg(shape)
        h = c_void_p()
        lib.gpuml_tensor_reshape(self.handle, len(shape), cshape, ctypes.byref(h))
        return Tensor(h.value, keep=self, ctx=self._ctx, readonly=self.readonly)

    def __dlpack__(self, *, stream=None, max_version=None, dl_device=None, copy=None):
        from ._dlpack import export
        return export(self, max_version=max_version, dl_device=dl_device, copy=copy)

    def __dlpack_device__(self):
        d = lib.gpuml_tensor_device(self.handle)
        return (2, d.index) if d.type == CUDA else (1, 0)

    def __len__(self):
        s = self.shape
        if not s:
            raise TypeError("len() of a 0-d tensor")
        return s[0]

    def __repr__(self):
        if not self._h:
            return "gpuml.Tensor(<closed>)"
        buf = ctypes.create_string_buffer(96)
        return f"gpuml.Tensor({lib.gpuml_tensor_describe(self._h, buf, 96).decode()})"

    def __del__(self):
        h, self._h = getattr(self, "_h", None), None
        if h and getattr(self, "_owned", False) and lib is not None:
            lib.gpuml_tensor_destroy(h)
        self._keep = None


def borrowed(handle: int, owner, ctx: Context | None = None) -> Tensor:
    """A Tensor over a handle the C library owns (kept alive by owner)."""
    return Tensor(handle, owned=False, keep=owner, ctx=ctx)


# ---- input conversion ------------------------------------------------------
_INT_KINDS = "iu"
_NUM_KINDS = "fiu"


def _convert_numpy(arr: np.ndarray, code: int, arg: str, func: str) -> np.ndarray:
    want = _NP[code]
    kind = arr.dtype.kind
    if code in (I32, I64):
        if kind not in _INT_KINDS:
            raise DtypeError(f"{func}: argument '{arg}' must hold integers ({want}), got {arr.dtype}")
        if arr.dtype != want and arr.size:
            info = np.iinfo(want)
            lo, hi = arr.min(), arr.max()
            if lo < info.min or hi > info.max:
                raise InvalidArgumentError(f"{func}: argument '{arg}' has values in [{lo}, {hi}], which do not "
                                           f"fit {want}")
    elif code in (F32, F64, F16):
        if kind not in _NUM_KINDS:
            raise DtypeError(f"{func}: argument '{arg}' must hold real numbers ({want}), got {arr.dtype}")
    elif arr.dtype != want:
        if not (code in (U8, BOOL) and kind in "bu" and arr.dtype.itemsize == 1):
            raise DtypeError(f"{func}: argument '{arg}' must be {want}, got {arr.dtype}")
        return arr.view(want) if arr.flags.c_contiguous else np.ascontiguousarray(arr).view(want)
    if arr.dtype == want and arr.flags.c_contiguous and arr.flags.aligned and arr.dtype.isnative:
        return arr
    out = np.ascontiguousarray(arr, dtype=want)
    # ascontiguousarray keeps a contiguous array of the right dtype as it is,
    # also when its data is not aligned (a view at an odd byte offset):
    # that one is copied into fresh, aligned memory.
    return out if out.flags.aligned else out.copy()


def as_tensor(x, dtype="float32", *, ctx: Context | None = None, ndim=None, arg: str = "x",
              func: str = "gpuml.as_tensor") -> Tensor:
    """Make a gpuml Tensor of the given dtype from x, without a copy when the
    layout allows (see the module's conversion rule).

    x: numpy array, anything with ``__dlpack__`` (torch, cupy), a gpuml
    Tensor, or a nested sequence. ndim: an int or a tuple of accepted ranks
    (ShapeError otherwise). On a CUDA ctx the result is on the device.
    """
    code = dtype_code(dtype)
    dev_cuda = ctx is not None and ctx.is_cuda
    t = None
    if isinstance(x, Tensor) and x.dtype_code != code:
        if x.is_cuda:
            raise DtypeError(f"{func}: argument '{arg}' is a CUDA tensor of {x.dtype_name}, expected "
                             f"{_NAMES[code]}")
        x = x.numpy()  # converted below by the rule for host arrays
    if isinstance(x, Tensor):
        t = x
    elif not isinstance(x, np.ndarray) and hasattr(x, "__dlpack__"):
        from ._dlpack import from_dlpack
        try:
            t = from_dlpack(x)
        except (BufferError, DtypeError):
            t = None  # strided or another dtype: convert below (host only)
        if t is not None and t.dtype_code != code:
            t = None
        if t is None:
            if hasattr(x, "__dlpack_device__") and x.__dlpack_device__()[0] != 1:
                raise DtypeError(f"{func}: argument '{arg}' is a device array that is not a C-contiguous "
                                 f"{_NAMES[code]} tensor; convert it on its device first")
            x = np.from_dlpack(x)
    if t is None:
        arr = np.asarray(x)
        if arr.dtype == object:
            raise DtypeError(f"{func}: argument '{arg}' is not a numeric array")
        arr = _convert_numpy(arr, code, arg, func)
        t = Tensor.wrap_numpy(arr)
    if ndim is not None:
        ok = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if t.ndim not in ok:
            want = " or ".join(str(n) for n in ok)
            raise ShapeError(f"{func}: argument '{arg}' must have {want} dimensions, got shape {list(t.shape)}")
    if dev_cuda and not t.is_cuda:
        d = Tensor.empty(t.shape, _NAMES[code], ctx)
        if t.nbytes:
            lib.gpuml_tensor_copy(ctx.handle, d.handle, t.handle)
        d._keep = t  # the source must live until the stream has copied it
        t = d
    elif not dev_cuda and t.is_cuda:
        raise DtypeError(f"{func}: argument '{arg}' is on {t.device}; this call runs on the CPU "
                         "(pass a CUDA gpuml.Context)")
    return t


def new_output(ctx: Context, shape, dtype="float32"):
    """(tensor, result): on the CPU a numpy array allocated by Python and its
    wrapping tensor (the C function writes into the array); on CUDA a gpuml
    Tensor from the context's allocator (result is the Tensor itself)."""
    if ctx.is_cuda:
        t = Tensor.empty(shape, dtype, ctx)
        return t, t
    arr = np.empty(tuple(int(s) for s in shape), _NP[dtype_code(dtype)])
    return Tensor.wrap_numpy(arr), arr


def row_splits_for(row_splits, n_rows: int, ctx: Context, func: str) -> Tensor:
    """row_splits as an int64 [B+1] tensor; None: one event of n_rows rows."""
    if row_splits is None:
        row_splits = np.array([0, n_rows], np.int64)
    return as_tensor(row_splits, "int64", ctx=ctx, ndim=1, arg="row_splits", func=func)
