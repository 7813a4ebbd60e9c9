"""The asynchronous inference engine (gpuml/infer.h) from Python.

One request is one event. :meth:`Engine.submit` hands it to the C engine
and returns a :class:`concurrent.futures.Future` at once; the engine batches
the waiting events, runs one forward pass and completes each future from
its completion thread. ``await engine.infer(...)`` is the asyncio form.

    with gpuml.Engine("model.h5", max_batch_events=32, max_queue_delay_us=500) as engine:
        futures = [engine.submit(hits) for hits in events]      # numpy [rows, F] each
        scores = [f.result() for f in futures]

    async def handle(hits):
        return await engine.infer(hits)
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import ctypes
import itertools
import operator
import os
import threading
from ctypes import c_size_t, c_uint64, c_void_p

import numpy as np

from ._context import parse_device
from ._errors import InvalidArgumentError, ShapeError, StateError, error_for_status
from ._lib import DONE_FN, EngineConfig, EngineInstanceStats, EngineRequest, EngineStats, lib, need, seconds_arg
from ._tensor import as_tensor
from .model import Model, input_infos, output_infos

_CANCEL, _DRAIN = 0, 1
_ALL_DEVICES = -1  # GPUML_ENGINE_ALL_DEVICES

# Requests in flight: id -> (future, arrays and ctypes objects to keep alive).
# The done callback finds its request here; it holds no reference to the
# Engine, so an engine is never freed from its own completion thread by it.
_pending: dict[int, tuple] = {}
_ids = itertools.count(1)
_tls = threading.local()


def _on_done(user, status):
    rec = _pending.pop(user, None)
    if rec is None:
        return
    fut, outputs = rec[0], rec[1]
    _tls.in_done = True
    try:
        if status == 0:
            fut.set_result(outputs[0] if len(outputs) == 1 else tuple(outputs))
        else:
            msg = lib.gpuml_last_error().decode("utf-8", "replace")  # this thread's: the request's error
            fut.set_exception(error_for_status(status, msg, "gpuml_engine_submit"))
    finally:
        _tls.in_done = False


_done_fn = DONE_FN(_on_done)


def _timing(t) -> dict:
    return {f: getattr(t, f) for f, _ in t._fields_}


class Clusters:
    """One event's showers from an engine with ``clusters=...``: ``ids``
    [rows] int32 (-1 noise), ``count``, and per cluster ``cp`` [count] int32
    (row of its condensation point in the event) and ``energy`` [count]
    float32 (gpuml_engine_clusters in gpuml/infer.h)."""

    def __init__(self, rows):
        self._bufs = [np.empty((rows, 1), np.float32) for _ in range(3)] + [np.empty((1, 1), np.float32)]

    def _pointers(self):
        return [b.ctypes.data for b in self._bufs]

    @property
    def count(self) -> int:
        return int(self._bufs[3][0, 0])

    @property
    def ids(self) -> np.ndarray:
        return self._bufs[0][:, 0].astype(np.int32)

    @property
    def cp(self) -> np.ndarray:
        return self._bufs[1][:self.count, 0].astype(np.int32)

    @property
    def energy(self) -> np.ndarray:
        return self._bufs[2][:self.count, 0].copy()

    def __repr__(self):
        return f"Clusters(count={self.count}, rows={len(self._bufs[0])})"


class Engine:
    """An inference engine running one model for many threads at once.

    Parameters
    ----------
    model : a model file (HDF5 from ``Model.save`` / gpuml_model_save, or a
        JSON config) or a :class:`gpuml.Model` (its current weights are
        copied; it may change or go away afterwards).
    device : "cpu" (default) or "cuda[:i]".
    devices : CUDA only: spread the instances over several GPUs, instance i
        on devices[i % len(devices)] - a list of ordinals, or "all" for
        every visible GPU (gpuml_engine_config.devices / n_devices; one
        instance per device unless num_instances says more). The engine's
        resolved list is ``engine.devices``; ``engine.instance_stats()``
        shows how the work was spread.
    num_instances, max_batch_events, max_batch_rows, max_queue_delay_us,
    queue_capacity, queue_rows, completion_threads, cpu_threads,
    max_direct_lanes, warmup : the fields of gpuml_engine_config (None:
        the C default; see include/gpuml/infer.h).
    mem_cap : cap in bytes on the memory of all the engine's contexts
        together, cached blocks included (cfg.mem_cap_bytes); None: none.
        ``mem_usage()`` reports what it counts.
    clusters : for an object condensation model, True or a dict of
        gpuml_engine_clusters fields (beta_output, coords_output,
        energy_input, energy_column, t_beta, t_d): every result is then a
        :class:`Clusters` (showers from gpuml_oc_cluster on the engine's
        device) instead of the raw outputs.
    require_checksum : refuse (FormatError) a model file without gpuml's
        whole-file checksum, as gpuml_engine_config.require_checksum (default
        False: such files load with a warning).

    Results are bitwise those of running each event alone on the CPU. Every
    method may be called from any thread. ``close()`` (or leaving a ``with``
    block) finishes the waiting requests and stops the engine.
    """

    def __init__(self, model, *, device="cpu", num_instances=None, max_batch_events=None, max_batch_rows=None,
                 max_queue_delay_us=None, queue_capacity=None, queue_rows=None, completion_threads=None,
                 cpu_threads=None, max_direct_lanes=None, warmup=None, clusters=None, require_checksum=False,
                 devices=None, mem_cap=None):
        need("gpuml_engine_create", "gpuml_engine_submit")
        cfg = EngineConfig()
        lib.gpuml_engine_config_init_defaults(ctypes.byref(cfg))
        cfg.device = parse_device(device)
        dev_list = None  # kept alive through the create call (the C side copies it)
        if isinstance(devices, str):
            if devices != "all":
                raise InvalidArgumentError(f"gpuml.Engine: devices={devices!r}: a list of CUDA ordinals or 'all'")
            cfg.n_devices = _ALL_DEVICES
        elif devices is not None:
            ords = [operator.index(d) for d in devices]
            if not ords:
                raise InvalidArgumentError("gpuml.Engine: devices is empty (None: device's GPU only)")
            dev_list = (ctypes.c_int * len(ords))(*ords)
            cfg.devices = ctypes.cast(dev_list, ctypes.POINTER(ctypes.c_int))
            cfg.n_devices = len(ords)
        cfg.on_destroy = _DRAIN
        cfg.require_checksum = 1 if require_checksum else 0
        opts = dict(num_instances=num_instances, max_batch_events=max_batch_events, max_batch_rows=max_batch_rows,
                    max_queue_delay_us=max_queue_delay_us, queue_capacity=queue_capacity, queue_rows=queue_rows,
                    completion_threads=completion_threads, cpu_threads=cpu_threads,
                    max_direct_lanes=max_direct_lanes, warmup=warmup, mem_cap_bytes=mem_cap)
        for k, v in opts.items():
            if v is not None:
                setattr(cfg, k, v)  # range-checked: OverflowError naming k (CStruct)
        self.clusters = bool(clusters)
        if clusters:  # object condensation post-processing (gpuml_engine_clusters)
            c = {} if clusters is True else dict(clusters)
            unknown = set(c) - {"beta_output", "coords_output", "energy_input", "energy_column", "t_beta", "t_d"}
            if unknown:
                raise InvalidArgumentError(f"gpuml.Engine: unknown clusters keys {sorted(unknown)}")
            cfg.clusters.enabled = 1
            for k, v in c.items():
                setattr(cfg.clusters, k, float(v) if k.startswith("t_") else v)
        h = c_void_p()
        if isinstance(model, Model):
            with model.lock:
                model.ctx.synchronize()
                lib.gpuml_engine_create_from_model(model.handle, ctypes.byref(cfg), ctypes.byref(h))
        else:
            lib.gpuml_engine_create(os.fsencode(model), ctypes.byref(cfg), ctypes.byref(h))
        self._h = h.value
        self.config = {f: getattr(cfg, f) for f, _ in EngineConfig._fields_
                       if f not in ("log_fn", "log_user", "clusters", "devices")}
        got = EngineConfig()  # the resolved device list (ALL_DEVICES expanded)
        lib.gpuml_engine_get_config(self._h, ctypes.byref(got))
        self.devices = [got.devices[i] for i in range(got.n_devices)] if got.n_devices > 0 else None
        self.config["n_devices"] = got.n_devices
        self.config["devices"] = self.devices
        self.num_instances = got.num_instances
        m = lib.gpuml_engine_model(self._h)
        self.inputs = input_infos(m)
        self.outputs = output_infos(m)

    @property
    def handle(self) -> int:
        if not self._h:
            raise StateError("gpuml.Engine: the engine is closed")
        return self._h

    # ---- requests -------------------------------------------------------------
    def _request(self, inputs, priority, timeout, borrow, func):
        """(request, output arrays, objects to keep alive) for one event."""
        self.handle  # StateError after close(), before any work
        timeout = seconds_arg(timeout, "timeout", func)
        if isinstance(inputs, dict):
            missing = [i.name for i in self.inputs if i.name not in inputs]
            if missing:
                raise InvalidArgumentError(f"{func}: inputs lack {', '.join(missing)}")
            inputs = [inputs[i.name] for i in self.inputs]
        elif len(self.inputs) == 1 and not isinstance(inputs, (list, tuple)):
            inputs = [inputs]
        if len(inputs) != len(self.inputs):
            raise InvalidArgumentError(f"{func}: the model has {len(self.inputs)} inputs, got {len(inputs)}")
        ts = [as_tensor(x, "float32", ndim=2, arg=info.name, func=func) for x, info in zip(inputs, self.inputs)]
        rows = ts[0].shape[0]
        # The C request carries bare pointers: every shape is checked here.
        for t, info in zip(ts, self.inputs):
            if t.shape != (rows, info.features):
                raise ShapeError(f"{func}: input '{info.name}' is {list(t.shape)}, expected [{rows}, "
                                 f"{info.features}] (one event: the same rows for every input)")
        cin = (c_void_p * len(ts))(*[t.data_ptr for t in ts])
        if self.clusters:  # the model's own outputs are not wanted (NULL): the clusters only
            cl = Clusters(rows)
            outs = [cl]
            cout = (c_void_p * (len(self.outputs) + 4))(*([None] * len(self.outputs) + cl._pointers()))
        else:
            outs = [np.empty((1 if o.per_event else rows, o.features), np.float32) for o in self.outputs]
            cout = (c_void_p * len(outs))(*[o.ctypes.data for o in outs])
        req = EngineRequest()
        lib.gpuml_engine_request_init(ctypes.byref(req))
        req.rows = rows
        req.inputs = ctypes.cast(cin, ctypes.POINTER(c_void_p))
        req.outputs = ctypes.cast(cout, ctypes.POINTER(c_void_p))
        req.borrow_inputs = int(bool(borrow))
        try:
            req.priority = priority  # range-checked (CStruct)
        except OverflowError as e:
            raise OverflowError(f"{func}: {e}") from None
        if timeout is not None and timeout * 1e6 < 2 ** 62:  # later than that (inf): no deadline
            req.deadline_us = lib.gpuml_engine_clock_us() + max(int(timeout * 1e6), 1)
        return req, outs, (ts, cin, cout, req)

    def submit(self, inputs, *, priority: int = 0, timeout: float | None = None,
               borrow: bool = False) -> concurrent.futures.Future:
        """Queue one event; returns a Future of its outputs at once.

        inputs: [rows, F_i] per model input (one array, a list in input
        order, or a dict by name; converted by the package's rule). The
        result is one numpy array per output ([rows, C] per row, [1, C] per
        event): a single array for a one-output model, else a tuple.
        priority: higher is batched first. timeout: seconds after which the
        event is not worth computing (the future then fails with
        gpuml.TimeoutError). borrow: do not copy the inputs (they must stay
        unchanged until the future is done).

        Raises gpuml.QueueFullError at once when the engine is saturated
        (back-pressure: retry later), StateError after close(). A failed
        batch fails its futures with the C error (message included).
        """
        req, outs, keep = self._request(inputs, priority, timeout, borrow, "gpuml.Engine.submit")
        fut = concurrent.futures.Future()
        fut.set_running_or_notify_cancel()  # a submitted request cannot be withdrawn
        rid = next(_ids)
        _pending[rid] = (fut, outs, keep)
        try:
            lib.gpuml_engine_submit(self.handle, ctypes.byref(req), _done_fn, rid)
        except BaseException:
            _pending.pop(rid, None)
            raise
        return fut

    async def infer(self, inputs, *, priority: int = 0, timeout: float | None = None, retry_full: bool = True):
        """``await engine.infer(hits)``: submit and await the outputs without
        blocking the event loop. With retry_full, a saturated engine is
        retried after short sleeps instead of raising QueueFullError."""
        from ._errors import QueueFullError
        delay = 0.0005
        while True:
            try:
                fut = self.submit(inputs, priority=priority, timeout=timeout)
                break
            except QueueFullError:
                if not retry_full:
                    raise
                await asyncio.sleep(delay)
                delay = min(2 * delay, 0.05)
        return await asyncio.wrap_future(fut)

    def run(self, inputs, *, priority: int = 0, timeout: float | None = None, direct: bool = False):
        """Run one event and wait for it (gpuml_engine_run; the GIL is
        released while waiting). direct=True runs it on this thread without
        the queue and batching (gpuml_engine_run_direct)."""
        func = "gpuml.Engine.run"
        req, outs, keep = self._request(inputs, priority, timeout, False, func)
        if direct:
            lib.gpuml_engine_run_direct(self.handle, ctypes.byref(req), None)
        else:
            lib.gpuml_engine_run(self.handle, ctypes.byref(req))
        return outs[0] if len(outs) == 1 else tuple(outs)

    # ---- statistics ------------------------------------------------------------
    def stats(self) -> dict:
        """Counters and timings (queue time, compute time, latency in us)."""
        s = EngineStats()
        lib.gpuml_engine_get_stats(self.handle, ctypes.byref(s))
        d = {f: getattr(s, f) for f, _ in EngineStats._fields_}
        for k in ("queue_time", "compute_time", "latency"):
            d[k] = _timing(d[k])
        d["mean_batch_events"] = s.batch_events / s.batches if s.batches else 0.0
        return d

    def instance_stats(self) -> list[dict]:
        """Per instance: its device ("cuda:i" or "cpu") and its batches,
        failed_batches, batch_events, batch_rows and in_flight_batches
        (gpuml_engine_get_instance_stats): how the work was balanced."""
        out = []
        for i in range(self.num_instances):
            s = EngineInstanceStats()
            lib.gpuml_engine_get_instance_stats(self.handle, i, ctypes.byref(s))
            d = {f: getattr(s, f) for f, _ in EngineInstanceStats._fields_ if f != "device"}
            d["device"] = f"cuda:{s.device.index}" if s.device.type == 1 else "cpu"
            out.append(d)
        return out

    def mem_usage(self) -> dict:
        """What the memory cap counts: ``held`` (bytes the engine's contexts
        hold, in use and cached) and ``cap`` (0: none)."""
        held, cap = c_size_t(), c_size_t()
        lib.gpuml_engine_mem_usage(self.handle, ctypes.byref(held), ctypes.byref(cap))
        return {"held": held.value, "cap": cap.value}

    def batch_histogram(self, n: int = 65) -> np.ndarray:
        """counts[k] = batches of k events (the last bin: n - 1 or more)."""
        counts = (c_uint64 * n)()
        lib.gpuml_engine_batch_histogram(self.handle, counts, n)
        return np.array(counts[:], dtype=np.uint64)

    def reset_stats(self) -> None:
        lib.gpuml_engine_reset_stats(self.handle)

    def last_error(self) -> str:
        """The message of the engine's last failed batch ("" if none)."""
        buf = ctypes.create_string_buffer(1024)
        return lib.gpuml_engine_last_error(self.handle, buf, 1024).decode("utf-8", "replace")

    # ---- lifetime ------------------------------------------------------------------
    def close(self, drain: bool = True) -> None:
        """Stop accepting requests, finish (drain) or cancel the waiting
        ones, wait for every future to be done, and free the engine."""
        h, self._h = getattr(self, "_h", None), None
        if not h or lib is None:
            return
        if getattr(_tls, "in_done", False):
            # never from the engine's own completion thread: hand it over
            threading.Thread(target=_destroy, args=(h, drain), daemon=True).start()
            return
        _destroy(h, drain)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        self.close()

    def __repr__(self):
        ins = ", ".join(f"{i.name}[{i.features}]" for i in self.inputs)
        return f"gpuml.Engine({ins}; {'open' if self._h else 'closed'})"


def _destroy(h, drain):
    try:
        lib.gpuml_engine_shutdown(h, _DRAIN if drain else _CANCEL)
    finally:
        lib.gpuml_engine_destroy(h)
