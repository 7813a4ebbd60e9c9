"""Exceptions: one class per gpuml_status, all subclasses of gpuml.Error.

Each class also derives from the built-in exception a Python caller would
expect (ShapeError is a ValueError, DtypeError a TypeError, IOError an
OSError, ...), so generic handlers keep working. The message is the C
library's gpuml_last_error() text: it names the C function and the argument.
Errors detected in Python before any C call (a float array given as indices,
a wrong rank) use the same classes with a message naming the Python function.
"""
from __future__ import annotations

import builtins


class Error(Exception):
    """A gpuml failure. ``status`` is the C status code, ``status_name`` its
    constant name (``"GPUML_ERR_SHAPE"``), ``function`` the C function that
    failed (or None for a check made in Python)."""

    status = -1
    status_name = "GPUML_ERR_UNKNOWN"

    def __init__(self, message: str, function: str | None = None):
        super().__init__(message)
        self.message = message
        self.function = function

    def __str__(self):
        return self.message


def _make(name, status, status_name, *bases, doc=""):
    cls = type(name, (Error,) + bases, {"status": status, "status_name": status_name, "__doc__": doc,
                                       "__module__": "gpuml", "__str__": Error.__str__})
    return cls


InvalidArgumentError = _make("InvalidArgumentError", 1, "GPUML_ERR_INVALID_ARGUMENT", ValueError,
                             doc="A bad argument value (NULL, out of range, bad option).")
ShapeError = _make("ShapeError", 2, "GPUML_ERR_SHAPE", ValueError, doc="Shapes do not fit the contract.")
DtypeError = _make("DtypeError", 3, "GPUML_ERR_DTYPE", TypeError, doc="A dtype the function does not accept.")
DeviceMismatchError = _make("DeviceMismatchError", 4, "GPUML_ERR_DEVICE_MISMATCH", ValueError,
                            doc="Tensors on different devices, or not on the context's device.")
OutOfMemoryError = _make("OutOfMemoryError", 5, "GPUML_ERR_OUT_OF_MEMORY", MemoryError)
NoDeviceError = _make("NoDeviceError", 6, "GPUML_ERR_NO_DEVICE", RuntimeError,
                      doc="No usable GPU, or gpuml built without CUDA.")
UnsupportedError = _make("UnsupportedError", 7, "GPUML_ERR_UNSUPPORTED", NotImplementedError,
                         doc="A valid request this build cannot perform.")
CudaError = _make("CudaError", 8, "GPUML_ERR_CUDA", RuntimeError)
CublasError = _make("CublasError", 9, "GPUML_ERR_CUBLAS", RuntimeError)
CudnnError = _make("CudnnError", 10, "GPUML_ERR_CUDNN", RuntimeError)
NcclError = _make("NcclError", 11, "GPUML_ERR_NCCL", RuntimeError)
MpiError = _make("MpiError", 12, "GPUML_ERR_MPI", RuntimeError)
Hdf5Error = _make("Hdf5Error", 13, "GPUML_ERR_HDF5", OSError)
IOError = _make("IOError", 14, "GPUML_ERR_IO", OSError, doc="A file system error.")
FormatError = _make("FormatError", 15, "GPUML_ERR_FORMAT", ValueError,
                    doc="A malformed file, config or data.")
NotFoundError = _make("NotFoundError", 16, "GPUML_ERR_NOT_FOUND", LookupError,
                      doc="A named entity (layer, dataset, field) is absent.")
StateError = _make("StateError", 17, "GPUML_ERR_STATE", RuntimeError,
                   doc="The call is not valid in the object's state.")
QueueFullError = _make("QueueFullError", 18, "GPUML_ERR_QUEUE_FULL", RuntimeError)
TimeoutError = _make("TimeoutError", 19, "GPUML_ERR_TIMEOUT", builtins.TimeoutError)
CancelledError = _make("CancelledError", 20, "GPUML_ERR_CANCELLED", RuntimeError)
InternalError = _make("InternalError", 21, "GPUML_ERR_INTERNAL", RuntimeError,
                      doc="A gpuml bug: please report it.")

BY_STATUS = {c.status: c for c in (InvalidArgumentError, ShapeError, DtypeError, DeviceMismatchError,
                                   OutOfMemoryError, NoDeviceError, UnsupportedError, CudaError, CublasError,
                                   CudnnError, NcclError, MpiError, Hdf5Error, IOError, FormatError,
                                   NotFoundError, StateError, QueueFullError, TimeoutError, CancelledError,
                                   InternalError)}

__all__ = ["Error"] + [c.__name__ for c in BY_STATUS.values()]


def error_for_status(status: int, message: str, function: str | None = None) -> Error:
    cls = BY_STATUS.get(status)
    if cls is None:
        err = Error(f"{message} (unknown status {status})", function)
        err.status = status
        return err
    return cls(message or f"{cls.status_name} (no message)", function)


def raise_for_status(status: int, message: str, function: str | None = None):
    raise error_for_status(status, message, function)
