"""gpuml: graph neural networks for particle physics, from Python.

Thin ctypes bindings over the gpuml C library (include/gpuml/*.h): the same
library, model configs, model files and datasets as the C/C++ side.

    import numpy as np, gpuml
    x = np.random.rand(1000, 3).astype(np.float32)
    idx, dist2 = gpuml.knn(x, k=16, row_splits=[0, 400, 1000])

    model = gpuml.Model.from_config(config_json, seed=1)
    trainer = gpuml.Trainer(model, {"kind": "adamw", "lr": 1e-3}, loss="cross_entropy")
    trainer.fit("train.h5", inputs=["features"], target="event/label", epochs=5)
    model.save("model.h5")                 # gpuml_model_load() reads it in C++
    logits = model(features, row_splits)

    with gpuml.Engine("model.h5", max_batch_events=32) as engine:   # async, batched
        future = engine.submit(hits)       # or: await engine.infer(hits)

Data: numpy arrays in and out; float32 / int64 C-contiguous inputs are used
without copies, other dtypes and layouts are converted by a documented rule
(see :func:`as_tensor`); torch and cupy tensors pass through DLPack
(:func:`from_dlpack`, ``Tensor.__dlpack__``). Errors raise :class:`Error`
subclasses carrying the C library's message. C calls release the GIL.

The library is loaded from $GPUML_LIBRARY if set, else the copy bundled at
install time (see gpuml._lib).
"""
from __future__ import annotations

from ._context import Context, default_context
from ._dlpack import from_dlpack
from ._errors import (CancelledError, CublasError, CudaError, CudnnError, DeviceMismatchError, DtypeError, Error,
                      FormatError, Hdf5Error, InternalError, InvalidArgumentError, IOError, MpiError, NcclError,
                      NoDeviceError, NotFoundError, OutOfMemoryError, QueueFullError, ShapeError, StateError,
                      TimeoutError, UnsupportedError)
from ._lib import lib as _clib
from ._tensor import Tensor, as_tensor
from .cluster import ClusterEval, clue_cluster, oc_cluster
from .dist import Communicator, DataParallel
from .engine import Clusters, Engine
from .io import Batch, Dataset, Field, Loader, verify_file, write_dataset
from .model import InputInfo, Model, OutputInfo
from .ops import (OCLoss, abs, batch_norm, bce_with_logits, binary, cross_entropy, edge_first_linear, edge_mask, elu,
                  exp, gather_rows, gelu, gravnet_aggregate, index_csr, knn, knn_backward, layer_norm, leaky_relu,
                  linear, log, matmul, neg, neighbour_aggregate, object_condensation, reduce, relu, rsqrt,
                  scatter_add_rows, segment_ids, segment_reduce, sigmoid, softmax, softplus, sqrt, tanh, unary)
from .train import StepResult, Trainer, fit, optim_config

__version__ = "0.1.0"

__all__ = [
    "Batch", "ClusterEval", "Clusters", "Communicator", "Context", "DataParallel", "Dataset", "Engine", "Field", "InputInfo", "Loader", "Model", "OCLoss", "OutputInfo",
    "StepResult", "Tensor", "Trainer", "abs", "as_tensor", "batch_norm", "bce_with_logits", "binary",
    "clue_cluster", "cross_entropy", "cuda_device_count", "default_context", "edge_first_linear", "edge_mask", "elu", "exp", "fit",
    "from_dlpack", "gather_rows", "gelu", "gravnet_aggregate", "has_feature", "index_csr", "knn", "knn_backward",
    "layer_norm", "leaky_relu", "library_path", "linear", "log", "matmul", "neg", "neighbour_aggregate",
    "object_condensation", "oc_cluster", "optim_config", "reduce", "relu", "rsqrt", "scatter_add_rows", "segment_ids",
    "segment_reduce", "sigmoid", "softmax", "softplus", "sqrt", "tanh", "unary", "verify_file", "version",
    "write_dataset",
    # errors
    "Error", "CancelledError", "CublasError", "CudaError", "CudnnError", "DeviceMismatchError", "DtypeError",
    "FormatError", "Hdf5Error", "InternalError", "InvalidArgumentError", "IOError", "MpiError", "NcclError",
    "NoDeviceError", "NotFoundError", "OutOfMemoryError", "QueueFullError", "ShapeError", "StateError",
    "TimeoutError", "UnsupportedError",
]


def version() -> str:
    """Version of the C library actually loaded."""
    return _clib.gpuml_version().decode()


def library_path() -> str:
    """Path of the loaded libgpuml."""
    return _clib.path


def has_feature(name: str) -> bool:
    """Whether the loaded library was built with a feature: "cuda", "cudnn",
    "nccl", "mpi", "openmp", "blas"."""
    return bool(_clib.gpuml_has_feature(name.encode()))


def cuda_device_count() -> int:
    """Usable CUDA devices (0 without a GPU or a CUDA build)."""
    return _clib.gpuml_cuda_device_count()
