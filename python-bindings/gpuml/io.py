"""Ragged event datasets and the data loader (gpuml/io.h).

A dataset file (HDF5, readable with h5py) holds ``/row_splits`` int64 [B+1],
per-row fields ``/<name>`` [N, ...] and per-event fields ``/event/<name>``
[B, ...]. :func:`write_dataset` writes one with the C writer,
:class:`Dataset` reads it, and :class:`Loader` hands out shuffled batches
of whole events prepared by the C loader's background thread.
"""
from __future__ import annotations

import ctypes
import os
from ctypes import POINTER, c_char_p, c_int64, c_void_p
from typing import NamedTuple

import numpy as np

from ._context import Context, resolve
from ._errors import InvalidArgumentError, ShapeError, StateError
from ._lib import FieldInfo, LoaderConfig, LoaderPosition, Strings, c_int_arg, lib
from ._tensor import _NAMES, Tensor, borrowed, dtype_code


class Field(NamedTuple):
    name: str
    per_event: bool
    dtype: str
    shape: tuple  # of one row (per-row field) or one event (per-event field)


def _strings(s: Strings) -> list[str]:
    try:
        return [s.items[i].decode() for i in range(s.count)]
    finally:
        lib.gpuml_strings_free(ctypes.byref(s))


def verify_file(path) -> bool:
    """Check the whole-file checksum gpuml writes into its files (model
    files, checkpoints, datasets), without HDF5. True: it matches; False:
    the file carries none (h5py, other tools, older gpuml). Raises
    FormatError when it does not match (the file is corrupted)."""
    verified = ctypes.c_int(0)
    lib.gpuml_file_verify(os.fsencode(path), ctypes.byref(verified))
    return bool(verified.value)


def write_dataset(path, row_splits, fields: dict, columns: dict | None = None) -> None:
    """Write a ragged dataset file with the C writer (atomic: the file
    appears under ``path`` when complete).

    row_splits: [B+1] int64 (starting at 0). fields: name -> array; a name
    starting with ``"event/"`` is per event ([B, ...]), any other per row
    ([N, ...], N = row_splits[-1]). Arrays keep their dtype (float32,
    float64, int32, int64, uint8, bool, float16). columns: optional name ->
    list of column names of the field's last axis.
    """
    fn = "gpuml.write_dataset"
    rs = np.ascontiguousarray(row_splits, dtype=np.int64)
    if rs.ndim != 1 or rs.size < 1 or rs[0] != 0 or np.any(np.diff(rs) < 0):
        raise InvalidArgumentError(f"{fn}: row_splits must be [B+1] int64, starting at 0, never decreasing")
    nb, n = rs.size - 1, int(rs[-1])
    arrays, per_event = [], []
    for name, a in fields.items():
        a = np.ascontiguousarray(a)
        dtype_code(a.dtype)
        ev = name.startswith("event/")
        if a.ndim < 1 or a.shape[0] != (nb if ev else n):
            raise ShapeError(f"{fn}: field {name!r} is {list(a.shape)}, expected {nb if ev else n} "
                             f"{'events' if ev else 'rows'} first")
        arrays.append((name, a))
        per_event.append(ev)
    w = c_void_p()
    lib.gpuml_dataset_writer_create(os.fsencode(path), ctypes.byref(w))
    try:
        for name, a in arrays:
            shape = (c_int64 * max(a.ndim - 1, 1))(*a.shape[1:])
            cols = (columns or {}).get(name)
            ccols = (c_char_p * len(cols))(*[c.encode() for c in cols]) if cols else None
            lib.gpuml_dataset_writer_add_field(w, name.encode(), dtype_code(a.dtype), a.ndim - 1, shape, ccols,
                                               len(cols) if cols else 0)
        ptrs = (c_void_p * max(len(arrays), 1))()
        for b in range(nb):
            lo, hi = int(rs[b]), int(rs[b + 1])
            for i, (_, a) in enumerate(arrays):
                row = b if per_event[i] else lo
                ptrs[i] = a.ctypes.data + row * (a.strides[0] if a.shape[0] else 0)
            lib.gpuml_dataset_writer_append(w, hi - lo, ptrs)
    except BaseException:
        lib.gpuml_dataset_writer_abort(w)
        raise
    lib.gpuml_dataset_writer_commit(w)


class Dataset:
    """A dataset file opened for reading; the whole structure is validated
    on open. ``read(first, count)`` returns events as numpy arrays."""

    def __init__(self, path, *, ctx: Context | None = None):
        self.path = os.fspath(path)
        self.ctx = ctx
        h = c_void_p()
        lib.gpuml_dataset_open(os.fsencode(path), ctypes.byref(h))
        self._h = h.value

    @property
    def num_events(self) -> int:
        return lib.gpuml_dataset_num_events(self._h)

    @property
    def num_rows(self) -> int:
        return lib.gpuml_dataset_num_rows(self._h)

    def __len__(self):
        return self.num_events

    @property
    def fields(self) -> dict[str, Field]:
        out = {}
        for i in range(lib.gpuml_dataset_num_fields(self._h)):
            f = FieldInfo()
            lib.gpuml_dataset_field(self._h, i, ctypes.byref(f))
            name = f.name.decode()
            out[name] = Field(name, bool(f.per_event), _NAMES[f.dtype], tuple(f.shape[j] for j in range(f.ndim)))
        return out

    def columns(self, name: str) -> list[str]:
        s = Strings()
        lib.gpuml_dataset_columns(self._h, name.encode(), ctypes.byref(s))
        return _strings(s)

    def read(self, first: int = 0, count: int | None = None, fields=None):
        """Events [first, first + count) -> (row_splits [count+1] int64
        starting at 0, {name: array}). The arrays are the C tensors' memory
        (no copy). fields: names to read (default all)."""
        ctx = resolve(self.ctx)
        names = list(self.fields) if fields is None else list(fields)
        count = self.num_events - first if count is None else count
        cn = (c_char_p * max(len(names), 1))(*[n.encode() for n in names])
        rs = c_void_p()
        outs = (c_void_p * max(len(names), 1))()
        f = "gpuml.Dataset.read"
        first, count = c_int_arg(first, "first", f, c_int64), c_int_arg(count, "count", f, c_int64)
        lib.gpuml_dataset_read(self._h, ctx.handle, first, count, len(names), cn, ctypes.byref(rs), outs)
        rst = Tensor(rs.value, ctx=ctx)
        res = {n: Tensor(outs[i], ctx=ctx) for i, n in enumerate(names)}
        return rst.numpy(), {n: t.numpy() for n, t in res.items()}

    def __del__(self):
        h, self._h = getattr(self, "_h", None), None
        if h and lib is not None:
            lib.gpuml_dataset_close(h)

    def __repr__(self):
        return f"gpuml.Dataset({self.path!r}, {self.num_events} events, {self.num_rows} rows)"


class Batch:
    """A batch of whole events from a :class:`Loader`. ``row_splits`` and
    ``fields`` are numpy views of the C batch's memory (CPU) that keep the
    batch alive; on a CUDA context use ``tensors`` (DLPack)."""

    def __init__(self, handle: int, loader: "Loader"):
        self._h = handle
        self.loader = loader
        self.ctx = loader.ctx
        self.num_events = lib.gpuml_batch_num_events(handle)
        self.num_rows = lib.gpuml_batch_num_rows(handle)
        self.epoch = lib.gpuml_batch_epoch(handle)
        self.index = lib.gpuml_batch_index(handle)

    @property
    def handle(self) -> int:
        if not self._h:
            raise StateError("gpuml.Batch: the batch is closed")
        return self._h

    @property
    def event_ids(self) -> np.ndarray:
        """Indices of the batch's events in the file (a copy)."""
        p = lib.gpuml_batch_event_ids(self.handle)
        return np.ctypeslib.as_array(p, (self.num_events,)).copy() if self.num_events else np.empty(0, np.int64)

    @property
    def row_splits_tensor(self) -> Tensor:
        return borrowed(lib.gpuml_batch_row_splits(self.handle), self, self.ctx)

    def field_tensor(self, i: int) -> Tensor:
        h = lib.gpuml_batch_field(self.handle, c_int_arg(i, "i", "gpuml.Batch.field_tensor"))
        if not h:
            raise IndexError(f"batch field {i} out of range")
        return borrowed(h, self, self.ctx)

    @property
    def tensors(self) -> dict[str, Tensor]:
        return {n: self.field_tensor(i) for i, n in enumerate(self.loader.fields)}

    @property
    def row_splits(self) -> np.ndarray:
        return self.row_splits_tensor.numpy()

    @property
    def fields(self) -> dict[str, np.ndarray]:
        return {n: t.numpy() for n, t in self.tensors.items()}

    def __getitem__(self, name: str) -> np.ndarray:
        return self.field_tensor(self.loader.fields.index(name)).numpy()

    def __del__(self):
        h, self._h = getattr(self, "_h", None), None
        if h and lib is not None:
            lib.gpuml_batch_destroy(h)

    def __repr__(self):
        return f"gpuml.Batch(epoch {self.epoch} #{self.index}: {self.num_events} events, {self.num_rows} rows)"


class Loader:
    """Shuffled batches of whole events from a dataset file, read by the C
    loader's prefetch thread (gpuml_loader).

    fields: names of the fields every batch carries. max_rows / max_events
    bound a batch (an event larger than max_rows is a batch of its own).
    Iterating a loader yields the batches of its next epoch; the epoch plan
    is a pure function of (file, seed, epoch, limits), so runs repeat.
    """

    def __init__(self, path, fields, *, max_rows: int = 65536, max_events: int = 32, seed: int = 0,
                 shuffle: bool = True, prefetch: int = 2, rank: int = 0, world_size: int = 1,
                 in_memory: bool | None = None, ctx: Context | None = None):
        self.ctx = ctx or Context()
        self.fields = [fields] if isinstance(fields, str) else list(fields)
        cfg = LoaderConfig()
        lib.gpuml_loader_config_init_defaults(ctypes.byref(cfg))
        self._path = os.fsencode(path)
        self._names = (c_char_p * max(len(self.fields), 1))(*[f.encode() for f in self.fields])
        cfg.path = self._path
        cfg.fields = ctypes.cast(self._names, POINTER(c_char_p))
        cfg.num_fields = len(self.fields)
        cfg.max_rows, cfg.max_events, cfg.seed = max_rows, max_events, seed  # range-checked (CStruct)
        cfg.shuffle, cfg.prefetch = int(bool(shuffle)), prefetch
        cfg.rank, cfg.world_size = rank, world_size
        cfg.in_memory = -1 if in_memory is None else int(bool(in_memory))
        h = c_void_p()
        lib.gpuml_loader_create(self.ctx.handle, ctypes.byref(cfg), ctypes.byref(h))
        self._h = h.value

    @property
    def handle(self) -> int:
        if not self._h:
            raise StateError("gpuml.Loader: the loader is closed")
        return self._h

    def num_batches(self, epoch: int | None = None) -> int:
        """Batches in an epoch (default: the current one)."""
        n = c_int64()
        lib.gpuml_loader_num_batches(self.handle, self.position[0] if epoch is None else
                                     c_int_arg(epoch, "epoch", "gpuml.Loader.num_batches", c_int64), ctypes.byref(n))
        return n.value

    @property
    def position(self) -> tuple[int, int, int]:
        """(epoch, batch, fingerprint) of the next batch: store it to resume."""
        p = LoaderPosition()
        lib.gpuml_loader_get_position(self.handle, ctypes.byref(p))
        return p.epoch, p.batch, p.fingerprint

    def set_position(self, epoch: int, batch: int, fingerprint: int = 0) -> None:
        lib.gpuml_loader_set_position(self.handle, ctypes.byref(LoaderPosition(epoch, batch, fingerprint)))

    def next(self) -> Batch | None:
        """The next batch, or None at the end of an epoch."""
        h = c_void_p()
        lib.gpuml_loader_next(self.handle, ctypes.byref(h))
        return Batch(h.value, self) if h.value else None

    def __iter__(self):
        while True:
            b = self.next()
            if b is None:
                return
            yield b

    def __del__(self):
        h, self._h = getattr(self, "_h", None), None
        if h and lib is not None:
            lib.gpuml_loader_destroy(h)
