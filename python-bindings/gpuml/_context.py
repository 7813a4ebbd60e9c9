"""Execution contexts (gpuml/context.h).

A C context is used by one thread at a time, so the Python functions that
take ``ctx=None`` use a CPU context private to the calling thread, created on
first use (:func:`default_context`). Pass an explicit :class:`Context` to run
on a GPU, to fix the thread count or to seed the random generator.
"""
from __future__ import annotations

import ctypes
import threading

from ctypes import c_uint64

from ._errors import StateError
from ._lib import AllocStats, CtxConfig, Device, c_int_arg, lib

CPU, CUDA = 0, 1


def parse_device(device) -> Device:
    """'cpu', 'cuda', 'cuda:1', ('cuda', 1) or a Device -> Device."""
    if isinstance(device, Device):
        return device
    if isinstance(device, tuple):
        kind, index = device
    else:
        kind, _, idx = str(device).partition(":")
        index = int(idx) if idx else 0
    kind = str(kind).lower()
    if kind not in ("cpu", "cuda"):
        raise ValueError(f"device {device!r}: expected 'cpu', 'cuda' or 'cuda:<index>'")
    return Device(CUDA if kind == "cuda" else CPU, index if kind == "cuda" else 0)


def device_str(dev: Device) -> str:
    return "cpu" if dev.type == CPU else f"cuda:{dev.index}"


class Context:
    """A gpuml execution context: one device, its stream, allocator, random
    generator and CPU thread count.

    Parameters
    ----------
    device: ``"cpu"`` (default), ``"cuda"`` or ``"cuda:<index>"``.
    num_threads: CPU threads for ops; None: OMP_NUM_THREADS / all cores.
    seed: seed of the counter-based random generator (dropout, init).
    require_checksum: refuse (FormatError) model files and checkpoints that
        carry no gpuml whole-file checksum; by default they are read with a
        warning. A checksum that does not match is a FormatError either way.
    mem_cap: cap in bytes on the context's device memory (host memory on the
        CPU), cached blocks included; None: no cap. An allocation past it
        releases the cache, then raises OutOfMemoryError naming the cap
        (include/gpuml/context.h, "memory caps"). Also the ``mem_cap``
        property.

    A context must be used by one thread at a time (the C contract). Tensors
    and models made on it keep working after the Context object is gone:
    the C allocator lives until its last tensor is freed.
    """

    def __init__(self, device="cpu", num_threads: int | None = None, seed: int = 0, require_checksum: bool = False,
                 mem_cap: int | None = None):
        cfg = CtxConfig()
        lib.gpuml_ctx_config_init_defaults(ctypes.byref(cfg))
        cfg.device = parse_device(device)
        cfg.num_threads = c_int_arg(num_threads or 0, "num_threads", "gpuml.Context")
        cfg.seed = c_int_arg(seed, "seed", "gpuml.Context", c_uint64)
        cfg.require_checksum = 1 if require_checksum else 0
        cfg.mem_cap_bytes = c_int_arg(mem_cap or 0, "mem_cap", "gpuml.Context", ctypes.c_size_t)
        h = ctypes.c_void_p()
        lib.gpuml_ctx_create(ctypes.byref(cfg), ctypes.byref(h))
        self._h = h.value
        self.device = device_str(cfg.device)

    @property
    def handle(self) -> int:
        if not self._h:
            raise StateError("gpuml.Context: the context is closed")
        return self._h

    @property
    def is_cuda(self) -> bool:
        return self.device != "cpu"

    @property
    def num_threads(self) -> int:
        return lib.gpuml_ctx_num_threads(self.handle)

    @num_threads.setter
    def num_threads(self, n: int):
        lib.gpuml_ctx_set_num_threads(self.handle, c_int_arg(n, "num_threads", "gpuml.Context.num_threads"))

    def set_seed(self, seed: int) -> None:
        """Reseed the random generator (also resets its counter)."""
        lib.gpuml_ctx_set_seed(self.handle, c_int_arg(seed, "seed", "gpuml.Context.set_seed", c_uint64))

    def rng_state(self) -> tuple[int, int]:
        seed, counter = ctypes.c_uint64(), ctypes.c_uint64()
        lib.gpuml_ctx_get_rng_state(self.handle, ctypes.byref(seed), ctypes.byref(counter))
        return seed.value, counter.value

    def set_rng_state(self, seed: int, counter: int) -> None:
        f = "gpuml.Context.set_rng_state"
        lib.gpuml_ctx_set_rng_state(self.handle, c_int_arg(seed, "seed", f, c_uint64),
                                    c_int_arg(counter, "counter", f, c_uint64))

    def synchronize(self) -> None:
        """Wait for the context's stream and report asynchronous errors."""
        lib.gpuml_ctx_synchronize(self.handle)

    def alloc_stats(self, pinned: bool = False) -> dict:
        s = AllocStats()
        lib.gpuml_ctx_alloc_stats(self.handle, int(pinned), ctypes.byref(s))
        return {name: getattr(s, name) for name, _ in AllocStats._fields_}

    def release_cached(self) -> None:
        lib.gpuml_ctx_release_cached(self.handle)

    @property
    def mem_cap(self) -> int | None:
        """The cap on the context's memory in bytes (None: no cap); bytes in
        use and cached are in ``alloc_stats()``."""
        return lib.gpuml_ctx_mem_cap(self.handle) or None

    @mem_cap.setter
    def mem_cap(self, nbytes: int | None):
        lib.gpuml_ctx_set_mem_cap(self.handle,
                                  c_int_arg(nbytes or 0, "mem_cap", "gpuml.Context.mem_cap", ctypes.c_size_t))

    def __del__(self):
        # Only when collected: anything made on the context (models, tapes,
        # loaders) holds a reference to this object, so it is never freed
        # under them.
        h, self._h = getattr(self, "_h", None), None
        if h and lib is not None:
            lib.gpuml_ctx_destroy(h)

    def __repr__(self):
        return f"gpuml.Context({self.device!r}, num_threads={self.num_threads if self._h else '?'})"


_tls = threading.local()


def default_context() -> Context:
    """The calling thread's CPU context (created on first use)."""
    ctx = getattr(_tls, "ctx", None)
    if ctx is None:
        ctx = _tls.ctx = Context("cpu")
    return ctx


def resolve(ctx: Context | None) -> Context:
    return default_context() if ctx is None else ctx
