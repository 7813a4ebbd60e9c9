"""Communicators for data-parallel training (gpuml/dist.h, gpuml/ddp.h).

Launch one Python process per rank (``mpirun -np 4 python train.py`` or
``srun``); each creates a :class:`Communicator` and passes it to its
:class:`gpuml.Trainer`, which then averages the gradients over the ranks
while the backward pass runs (gpuml_ddp) and shards the data in ``fit``:

    comm = gpuml.Communicator("mpi")                  # "nccl" for GPUs, "self" for one rank
    model = gpuml.Model.from_config(cfg, seed=1)      # rank 0's weights are broadcast
    trainer = gpuml.Trainer(model, "adamw", loss="object_condensation", comm=comm)
    trainer.fit("train.h5", target="truth", epochs=10)   # each rank reads its own shard
    if comm.rank == 0:
        model.save("model.h5")

The collectives also work on numpy arrays directly (``comm.allreduce(x)``).
No collective waits forever: a stalled or dead peer gives gpuml.TimeoutError
(or the MPI error) on every rank.
"""
from __future__ import annotations

import ctypes
import threading
from ctypes import c_int64, c_void_p

import numpy as np

from ._context import Context, default_context, device_str
from ._errors import InvalidArgumentError
from ._lib import CommConfig, DdpConfig, c_int_arg, lib, need, seconds_arg
from ._tensor import Tensor, as_tensor

_BACKENDS = {"self": 0, "mpi": 1, "nccl": 2}
_OPS = {"sum": 0, "avg": 1, "max": 2, "min": 3}


class Communicator:
    """A gpuml communicator (collective over the ranks: every rank creates
    it with the same settings).

    backend: "mpi" (CPU tensors; MPI is initialised if the host has not),
    "nccl" (CUDA tensors) or "self" (one rank, any build). timeout: seconds
    after which a collective fails with gpuml.TimeoutError. deterministic:
    float sums in rank order, bitwise reproducible (default). validate:
    ranks cross-check each collective's arguments (default).

    Used by one thread at a time (calls are serialised by a lock).
    """

    def __init__(self, backend: str = "mpi", *, timeout: float = 300.0, deterministic: bool = True,
                 validate: bool = True):
        need("gpuml_comm_create")
        if backend not in _BACKENDS:
            raise InvalidArgumentError(f"backend {backend!r} is unknown (known: {', '.join(_BACKENDS)})")
        cfg = CommConfig()
        lib.gpuml_comm_config_init_defaults(ctypes.byref(cfg))
        cfg.backend = _BACKENDS[backend]
        cfg.timeout_s = seconds_arg(timeout, "timeout", "gpuml.Communicator", none_ok=False, inf_ok=False)
        cfg.deterministic, cfg.validate = int(bool(deterministic)), int(bool(validate))
        h = c_void_p()
        lib.gpuml_comm_create(ctypes.byref(cfg), ctypes.byref(h))
        self._h = h.value
        self.backend = backend
        self.lock = threading.Lock()

    @property
    def handle(self) -> int:
        if not self._h:
            raise InvalidArgumentError("the communicator is closed")
        return self._h

    @property
    def rank(self) -> int:
        return lib.gpuml_comm_rank(self.handle)

    @property
    def size(self) -> int:
        return lib.gpuml_comm_size(self.handle)

    @property
    def local_rank(self) -> int:
        return lib.gpuml_comm_local_rank(self.handle)

    @property
    def device(self) -> str:
        """The device the communicator reduces on (create contexts there)."""
        return device_str(lib.gpuml_comm_device(self.handle))

    @property
    def ok(self) -> bool:
        """False once a collective failed (the communicator is then broken)."""
        return lib.gpuml_comm_status(self.handle) == 0

    def set_timeout(self, seconds: float) -> None:
        lib.gpuml_comm_set_timeout(self.handle, seconds_arg(seconds, "seconds", "gpuml.Communicator.set_timeout",
                                                            none_ok=False, inf_ok=False))

    def shard_rows(self, rows: int) -> tuple[int, int]:
        """(start, count) of the rows this rank owns in a reduce-scatter."""
        start, count = c_int64(), c_int64()
        rows = c_int_arg(rows, "rows", "gpuml.Communicator.shard_rows", c_int64)
        lib.gpuml_comm_shard_rows(rows, self.size, self.rank, ctypes.byref(start), ctypes.byref(count))
        return start.value, count.value

    # ---- collectives on arrays -----------------------------------------------
    def _ctx(self, ctx):
        return ctx or default_context()

    def _array(self, x, func, writable=False):
        """x as a tensor of its own dtype (any gpuml dtype), in place when it
        is a C-contiguous array."""
        arr = x if isinstance(x, (np.ndarray, Tensor)) else np.asarray(x)
        dt = arr.dtype_name if isinstance(arr, Tensor) else arr.dtype
        t = as_tensor(arr, dt, arg="x", func=func)
        if writable and (t.readonly or (isinstance(x, np.ndarray) and t.data_ptr != x.ctypes.data and x.size)):
            raise InvalidArgumentError(f"{func}: the array is written in place, so it must be writable, "
                                       "C-contiguous and of a gpuml dtype")
        return t

    def allreduce(self, x, op: str = "sum", *, inplace: bool = False, ctx: Context | None = None):
        """op ("sum", "avg", "max", "min") over the ranks of x (same shape
        and dtype on every rank); a new array, or x itself with inplace."""
        func = "gpuml.Communicator.allreduce"
        if op not in _OPS:
            raise InvalidArgumentError(f"{func}: op {op!r} is unknown (known: {', '.join(_OPS)})")
        t = self._array(x, func, writable=inplace)
        if inplace:
            out, res = t, x
        else:
            res = np.empty(t.shape, t.dtype)
            out = Tensor.wrap_numpy(res)
        with self.lock:
            lib.gpuml_comm_allreduce(self.handle, self._ctx(ctx).handle, _OPS[op], t.handle, out.handle)
        return res

    def broadcast(self, x, root: int = 0, *, ctx: Context | None = None):
        """x = root's x on every rank, in place (x must be C-contiguous)."""
        t = self._array(x, "gpuml.Communicator.broadcast", writable=True)
        with self.lock:
            lib.gpuml_comm_broadcast(self.handle, self._ctx(ctx).handle, t.handle,
                                     c_int_arg(root, "root", "gpuml.Communicator.broadcast"))
        return x

    def allgather(self, x, *, ctx: Context | None = None) -> np.ndarray:
        """Concatenate every rank's x [M_r, ...] (M_r may differ) in rank order."""
        func = "gpuml.Communicator.allgather"
        t = self._array(x, func)
        if t.ndim < 1:
            raise InvalidArgumentError(f"{func}: x needs a first axis to gather along")
        c = self._ctx(ctx)
        counts = self.allreduce_counts(t.shape[0], c)
        res = np.empty((int(counts),) + t.shape[1:], t.dtype)
        out = Tensor.wrap_numpy(res)  # a named handle: it must outlive the call
        with self.lock:
            lib.gpuml_comm_allgather(self.handle, c.handle, t.handle, out.handle)
        return res

    def allreduce_counts(self, n: int, ctx) -> int:
        tot = np.array([n], np.int64)
        with self.lock:
            t = Tensor.wrap_numpy(tot)
            lib.gpuml_comm_allreduce(self.handle, ctx.handle, _OPS["sum"], t.handle, t.handle)
        return int(tot[0])

    def barrier(self) -> None:
        with self.lock:
            lib.gpuml_comm_barrier(self.handle)

    def abort(self) -> None:
        """Break the communicator on purpose: the other ranks' collectives
        fail at once instead of waiting for this rank."""
        lib.gpuml_comm_abort(self.handle)

    def __del__(self):
        h, self._h = getattr(self, "_h", None), None
        if h and lib is not None:
            lib.gpuml_comm_destroy(h)

    def __repr__(self):
        return f"gpuml.Communicator({self.backend!r}, rank {self.rank} of {self.size})" if self._h else \
            "gpuml.Communicator(<closed>)"


class DataParallel:
    """gpuml_ddp: gradient buckets of a model all-reduced over a
    communicator during backward. Creating it broadcasts rank 0's
    parameters and buffers. Normally made by ``Trainer(..., comm=...)``."""

    def __init__(self, comm: Communicator, model, *, bucket_bytes: int | None = None,
                 first_bucket_bytes: int | None = None, broadcast_buffers: bool = True):
        cfg = DdpConfig()
        lib.gpuml_ddp_config_init_defaults(ctypes.byref(cfg))
        if bucket_bytes is not None:
            cfg.bucket_bytes = bucket_bytes
        if first_bucket_bytes is not None:
            cfg.first_bucket_bytes = first_bucket_bytes
        cfg.broadcast_buffers = int(bool(broadcast_buffers))
        h = c_void_p()
        with comm.lock, model.lock:
            lib.gpuml_ddp_create(comm.handle, model.handle, ctypes.byref(cfg), ctypes.byref(h))
        self._h = h.value
        self.comm, self.model = comm, model  # both outlive the reducer

    @property
    def handle(self) -> int:
        return self._h

    @property
    def num_buckets(self) -> int:
        return lib.gpuml_ddp_num_buckets(self._h)

    def __del__(self):
        h, self._h = getattr(self, "_h", None), None
        if h and lib is not None:
            lib.gpuml_ddp_destroy(h)


__all__ = ["Communicator", "DataParallel"]
