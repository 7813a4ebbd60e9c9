"""Training from Python through the C training loop (gpuml/train.h).

A :class:`Trainer` owns a C ``gpuml_trainer``: each :meth:`Trainer.step`
is one ``gpuml_trainer_step`` (forward on a tape, loss, backward, fused
optimizer update over the parameter slab, gradient accumulation), exactly
what a C++ training driver runs. Python hands over the batch (inputs
wrapped without a copy) and reads the step's statistics back.
:meth:`Trainer.fit` feeds batches from the C data loader
(:class:`gpuml.Loader`) and shows a progress bar.
"""
from __future__ import annotations

import contextlib
import ctypes
import math
import os
import sys
import time
from ctypes import c_void_p
from typing import NamedTuple

import numpy as np

from ._errors import InvalidArgumentError
from ._lib import TRAIN_MAX_INPUTS, OptimConfig, StepStats, TrainerConfig, TrainState, lib
from ._tensor import as_tensor
from .io import Batch, Dataset, Loader
from .model import Model

_KINDS = {"sgd": 0, "adam": 1, "adamw": 2}
_SCHEDULES = {"constant": 0, "step": 1, "cosine": 2}
LOSSES = {"object_condensation": 0, "cross_entropy": 1, "bce": 2, "mse": 3}
_LOSS_OPTIONS = {"q_min", "s_b", "max_objects", "class_weights"}


def optim_config(config=None, **kw) -> OptimConfig:
    """A gpuml_optim_config from a kind name ("adamw", "adam", "sgd") or a
    dict of its fields (kind, lr, weight_decay, momentum, dampening,
    nesterov, beta1, beta2, eps, clip_norm, schedule ("constant", "step",
    "cosine"), warmup_steps, total_steps, min_lr, step_size, gamma), plus
    keyword overrides. Unset fields keep the C defaults (AdamW, lr 1e-3,
    weight decay 0.01: PyTorch's)."""
    if isinstance(config, str):
        config = {"kind": config}
    opts = dict(config or {}, **kw)
    c = OptimConfig()
    lib.gpuml_optim_config_init_defaults(ctypes.byref(c))
    fields = {f for f, _ in OptimConfig._fields_}
    for k, v in opts.items():
        if k in ("kind", "schedule"):
            table = _KINDS if k == "kind" else _SCHEDULES
            if v not in table:
                raise InvalidArgumentError(f"optimizer {k} {v!r} is unknown (known: {', '.join(table)})")
            v = table[v]
        elif k not in fields:
            raise InvalidArgumentError(f"optimizer option {k!r} is unknown (known: {', '.join(sorted(fields))})")
        setattr(c, k, v)
    return c


class StepResult(NamedTuple):
    """Statistics of one step (gpuml_step_stats)."""
    loss: float
    components: tuple  # object condensation: (L_V, L_beta, L_noise)
    events: int
    rows: int
    correct: int       # cross-entropy: events / rows classified correctly
    lr: float          # learning rate used (0 when the optimizer did not step)
    stepped: bool      # the optimizer stepped after this batch


def _result(s: StepStats) -> StepResult:
    return StepResult(float(s.loss), tuple(float(c) for c in s.components), s.events, s.rows, s.correct,
                      float(s.lr), bool(s.stepped))


class _Progress:
    """tqdm when installed, else a one-line text bar on stderr."""

    def __init__(self, total, desc, enabled):
        self.bar, self.enabled = None, enabled
        self.total, self.desc, self.n, self.t0 = total, desc, 0, time.monotonic()
        if enabled:
            try:
                from tqdm.auto import tqdm
                self.bar = tqdm(total=total, desc=desc, leave=True)
            except ImportError:
                pass

    def update(self, loss):
        self.n += 1
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{loss:.4g}", refresh=False)
            self.bar.update(1)
        elif self.enabled:
            done = int(30 * self.n / max(self.total, 1))
            rate = self.n / max(time.monotonic() - self.t0, 1e-9)
            sys.stderr.write(f"\r{self.desc} [{'#' * done}{'.' * (30 - done)}] {self.n}/{self.total} "
                             f"loss {loss:.4g} {rate:.1f} batch/s")
            sys.stderr.flush()

    def close(self):
        if self.bar is not None:
            self.bar.close()
        elif self.enabled:
            sys.stderr.write("\n")


class Trainer:
    """Trains a :class:`gpuml.Model` with the C training loop.

    Parameters
    ----------
    model : the model (its context runs everything).
    optimizer : kind name or dict for :func:`optim_config`; further keyword
        arguments (``lr=1e-3``, ``clip_norm=1.0``, ...) override fields.
    loss : "object_condensation" (model outputs ``beta_output`` = beta
        [N, 1] in [0, 1], e.g. a sigmoid node, and ``coords_output`` = the
        clustering space [N, D]; target: truth ids [N] int32, -1 for noise),
        "cross_entropy" (logits [B, C] or [N, C]; target: integer labels),
        "bce" (logits; target float in [0, 1]) or "mse" (target float). For
        bce and mse a target with the output's number of elements is
        reshaped to it (e.g. [B] labels for a [B, 1] output).
    output : the model output the cross-entropy / bce / mse loss reads.
    loss_options : object condensation ``q_min`` (0.1), ``s_b`` (1.0),
        ``max_objects`` (an upper bound on truth ids per event; required for
        step(), found by scanning the dataset in fit() when absent);
        cross-entropy ``class_weights`` [C].
    accumulate : batches per optimizer step (gradient accumulation).
    comm : a :class:`gpuml.Communicator` for data-parallel training: rank
        0's weights are broadcast now, every step's gradients are averaged
        over the ranks (gpuml_ddp, overlapping the backward pass), and
        ``fit`` gives each rank its shard of the events. ``ddp_options``:
        bucket_bytes, first_bucket_bytes, broadcast_buffers.
    """

    def __init__(self, model: Model, optimizer="adamw", loss: str = "cross_entropy", *, output: int = 0,
                 beta_output: int = 0, coords_output: int = 1, loss_options: dict | None = None,
                 accumulate: int = 1, comm=None, ddp_options: dict | None = None, **optim):
        if loss not in LOSSES:
            raise InvalidArgumentError(f"loss {loss!r} is unknown (known: {', '.join(LOSSES)})")
        opts = dict(loss_options or {})
        unknown = set(opts) - _LOSS_OPTIONS
        if unknown:
            raise InvalidArgumentError(f"loss option(s) {', '.join(sorted(unknown))} unknown "
                                       f"(known: {', '.join(sorted(_LOSS_OPTIONS))})")
        n_in = len(model.inputs)
        if n_in > TRAIN_MAX_INPUTS:
            raise InvalidArgumentError(f"the C trainer takes at most {TRAIN_MAX_INPUTS} model inputs, got {n_in}")
        self.model, self.ctx, self.loss_name = model, model.ctx, loss
        cfg = TrainerConfig()
        lib.gpuml_trainer_config_init_defaults(ctypes.byref(cfg))
        cfg.loss = LOSSES[loss]
        cfg.num_inputs = n_in
        for i in range(n_in):
            cfg.input_fields[i] = i  # batches carry the model inputs, then the target
        cfg.target_field = n_in
        cfg.output, cfg.beta_output, cfg.coords_output = int(output), int(beta_output), int(coords_output)
        cfg.oc.q_min = opts.get("q_min", cfg.oc.q_min)
        cfg.oc.s_b = opts.get("s_b", cfg.oc.s_b)
        cfg.oc.max_objects = int(opts.get("max_objects") or 0)
        self._class_weights = None
        if opts.get("class_weights") is not None:
            self._class_weights = as_tensor(opts["class_weights"], "float32", ctx=self.ctx, ndim=1,
                                            arg="class_weights", func="gpuml.Trainer")
            cfg.class_weights = self._class_weights.handle  # the C trainer keeps it by reference
        cfg.optim = optim_config(optimizer, **optim)
        cfg.accumulate = int(accumulate)
        self._cfg = cfg
        self._tr = None
        self.comm = comm
        self.ddp = None
        if comm is not None:
            from .dist import DataParallel
            self.ddp = DataParallel(comm, model, **(ddp_options or {}))
        self._keep = None
        self.epoch = 0
        self.history: list[float] = []
        self.last: StepResult | None = None
        if loss != "object_condensation" or cfg.oc.max_objects > 0:
            self._create()
        else:
            out = model.outputs
            for i in (beta_output, coords_output):  # check what can be checked before max_objects is known
                if not 0 <= i < len(out):
                    raise InvalidArgumentError(f"gpuml.Trainer: output {i} is not in [0, {len(out)})")

    def _create(self):
        h = c_void_p()
        with self.model.lock:
            lib.gpuml_trainer_create(self.model.handle, ctypes.byref(self._cfg), ctypes.byref(h))
        self._tr = h.value
        if self.ddp is not None:
            lib.gpuml_trainer_set_ddp(self._tr, self.ddp.handle)

    def _locked(self):
        """The communicator's lock when training in parallel (steps run its collectives)."""
        return contextlib.ExitStack() if self.comm is None else self.comm.lock

    @property
    def handle(self) -> int:
        if self._tr is None:
            raise InvalidArgumentError("object condensation needs loss_options['max_objects'] (an upper bound on "
                                       "the truth ids of an event) before the first step()")
        return self._tr

    # ---- properties ------------------------------------------------------
    @property
    def lr(self) -> float:
        """Learning rate of the next optimizer step (after the schedule)."""
        return lib.gpuml_optim_lr(lib.gpuml_trainer_optim(self.handle))

    @property
    def num_steps(self) -> int:
        """Optimizer steps taken."""
        return lib.gpuml_optim_num_steps(lib.gpuml_trainer_optim(self.handle))

    # ---- one step ----------------------------------------------------------
    def _tensors(self, batch, inputs, target, row_splits):
        func = "gpuml.Trainer.step"
        if isinstance(batch, Batch):
            n_in = len(self.model.inputs)
            inputs = [batch.field_tensor(i) for i in range(n_in)]
            row_splits, target = batch.row_splits_tensor, batch.field_tensor(n_in)
        elif isinstance(batch, dict):
            inputs, target, row_splits = batch.get("inputs"), batch.get("target"), batch.get("row_splits")
        elif isinstance(batch, (tuple, list)):
            inputs, target, *rest = batch
            row_splits = rest[0] if rest else None
        elif batch is not None:
            raise TypeError(f"{func}: batch must be a gpuml.Batch, a dict or a tuple (inputs, target[, row_splits]),"
                            f" not {type(batch).__name__}")
        if inputs is None or target is None:
            raise InvalidArgumentError(f"{func}: a step needs inputs and a target")
        ts, rs = self.model.input_tensors(inputs, row_splits, func)
        if self.loss_name == "object_condensation":
            tt = as_tensor(target, "int32", ctx=self.ctx, ndim=1, arg="target", func=func)
        elif self.loss_name == "cross_entropy":
            dt = "int32" if str(getattr(target, "dtype", "")) in ("int32", "torch.int32") else "int64"
            tt = as_tensor(target, dt, ctx=self.ctx, ndim=1, arg="target", func=func)
        else:
            tt = as_tensor(target, "float32", ctx=self.ctx, arg="target", func=func)
            f = self.model.outputs[self._cfg.output].features
            if tt.size % f == 0 and tt.shape != (tt.size // f, f):
                tt = tt.reshape(tt.size // f, f)
        return ts, rs, tt

    def step(self, batch=None, *, inputs=None, target=None, row_splits=None) -> float:
        """One training step (gpuml_trainer_step); returns the batch's loss
        (before the update). ``self.last`` holds the step's statistics.

        batch: a :class:`gpuml.Batch` whose fields are the model inputs then
        the target (as :meth:`fit`'s loader makes them), a dict with keys
        ``inputs``, ``target``, ``row_splits``, or a tuple (inputs, target[,
        row_splits]); or give the three as keywords. inputs as in
        ``Model.__call__``; row_splits None means one event. Targets are
        converted by the package's rule (e.g. int64 truth ids to int32).
        """
        ts, rs, tt = self._tensors(batch, inputs, target, row_splits)
        arr = (c_void_p * len(ts))(*[t.handle for t in ts])
        s = StepStats()
        with self.model.lock, self._locked():
            lib.gpuml_trainer_step(self.handle, arr, rs.handle, tt.handle, ctypes.byref(s))
        self._keep = (ts, rs, tt)  # the tape refers to them until the next step
        self.last = _result(s)
        return self.last.loss

    def evaluate(self, data, *, max_rows: int = 65536, max_events: int = 32) -> StepResult:
        """Loss without training (inference mode: batch-norm running
        statistics, no dropout; gpuml_trainer_evaluate_batch).

        data: a :class:`gpuml.Batch` (fields: model inputs, then the
        target), or a dataset path, evaluated batch by batch in file order
        with ``fit``'s field names; then the result holds the event-weighted
        mean loss and components and the summed counts.
        """
        if isinstance(data, Batch):
            s = StepStats()
            with self.model.lock:
                lib.gpuml_trainer_evaluate_batch(self.handle, data.handle, ctypes.byref(s))
            return _result(s)
        fields = getattr(self, "_fields", None)
        if fields is None:
            raise InvalidArgumentError("Trainer.evaluate(path) uses the field names of a previous fit(); "
                                       "pass gpuml.Batch objects otherwise")
        loader = Loader(data, fields, max_rows=max_rows, max_events=max_events, shuffle=False, prefetch=0,
                        ctx=self.ctx)
        loss, comp, ev, rows, correct = 0.0, np.zeros(3), 0, 0, 0
        for b in loader:
            r = self.evaluate(b)
            loss += r.loss * r.events
            comp += np.array(r.components) * r.events
            ev, rows, correct = ev + r.events, rows + r.rows, correct + r.correct
        d = max(ev, 1)
        return StepResult(loss / d, tuple(comp / d), ev, rows, correct, 0.0, False)

    # ---- loops ---------------------------------------------------------------
    def fit(self, dataset, *, inputs=("features",), target: str = "truth", epochs: int = 1,
            max_rows: int = 65536, max_events: int = 32, seed: int = 0, shuffle: bool = True,
            progress: bool = True, callback=None) -> list[float]:
        """Train for ``epochs`` epochs on a dataset file with the C loader.

        inputs: dataset field names feeding the model inputs (in order);
        target: the field the loss compares with. The loader shuffles per
        epoch with ``seed`` and prefetches on a background thread; with a
        communicator each rank reads its own shard (equal batch counts). Shows a
        progress bar (tqdm if installed, else a text one) unless
        ``progress=False``. callback(epoch, batch_index, StepResult) runs
        after each step; returning False stops. Returns the mean loss of
        each epoch (also appended to ``self.history``).
        """
        inputs = [inputs] if isinstance(inputs, str) else list(inputs)
        if len(inputs) != len(self.model.inputs):
            raise InvalidArgumentError(f"Trainer.fit: the model has {len(self.model.inputs)} inputs, "
                                       f"got fields {inputs}")
        self._fields = inputs + [target]
        if self._tr is None:  # object condensation without max_objects: find it in the data
            self._cfg.oc.max_objects = max_truth_id(dataset, target) + 1
            self._create()
        rank, world = (self.comm.rank, self.comm.size) if self.comm is not None else (0, 1)
        loader = Loader(dataset, self._fields, max_rows=max_rows, max_events=max_events, seed=seed,
                        shuffle=shuffle, rank=rank, world_size=world, ctx=self.ctx)
        means = []
        for _ in range(epochs):
            bar = _Progress(loader.num_batches(), f"epoch {self.epoch + 1}", progress)
            total, n, stop = 0.0, 0, False
            try:
                for b in loader:
                    loss = self.step(b)
                    total, n = total + loss, n + 1
                    bar.update(loss)
                    if callback is not None and callback(self.epoch, b.index, self.last) is False:
                        stop = True
                        break
            finally:
                bar.close()
            means.append(total / n if n else math.nan)
            self.history.append(means[-1])
            self.epoch += 1
            if stop:
                break
        return means

    # ---- checkpoints -----------------------------------------------------------
    def save_checkpoint(self, path) -> None:
        """Model, optimizer state, step, epoch and the RNG state (atomic)."""
        ts = TrainState()
        ts.step, ts.epoch = self.num_steps, self.epoch
        ts.rng_seed, ts.rng_counter = self.ctx.rng_state()
        with self.model.lock:
            lib.gpuml_checkpoint_save(os.fsencode(path), self.model.handle, lib.gpuml_trainer_optim(self.handle),
                                      ctypes.byref(ts))

    def load_checkpoint(self, path) -> None:
        """Restore what save_checkpoint stored (same model config)."""
        ts = TrainState()
        with self.model.lock:
            lib.gpuml_checkpoint_load(os.fsencode(path), self.model.handle, lib.gpuml_trainer_optim(self.handle),
                                      ctypes.byref(ts))
        self.epoch = ts.epoch
        self.ctx.set_rng_state(ts.rng_seed, ts.rng_counter)

    def __del__(self):
        tr, self._tr = getattr(self, "_tr", None), None
        if tr and lib is not None:
            lib.gpuml_trainer_destroy(tr)


def max_truth_id(dataset, field: str, chunk: int = 4096) -> int:
    """The largest value of an integer per-row field (read in chunks)."""
    ds = Dataset(dataset)
    best = -1
    for first in range(0, ds.num_events, chunk):
        _, f = ds.read(first, min(chunk, ds.num_events - first), [field])
        if f[field].size:
            best = max(best, int(f[field].max()))
    return best


def fit(model: Model, dataset, *, optimizer="adamw", loss: str = "cross_entropy", loss_options=None, output=0,
        **kw) -> Trainer:
    """Train ``model`` on a dataset file: ``Trainer(model, optimizer, loss)
    .fit(dataset, **kw)``; returns the trainer (its ``history`` holds the
    epoch losses). Keywords of Trainer (lr, beta_output, accumulate, ...)
    and of Trainer.fit (inputs, target, epochs, ...) may be mixed."""
    fit_keys = {"inputs", "target", "epochs", "max_rows", "max_events", "seed", "shuffle", "progress", "callback"}
    tr = Trainer(model, optimizer, loss, output=output, loss_options=loss_options,
                 **{k: v for k, v in kw.items() if k not in fit_keys})
    tr.fit(dataset, **{k: v for k, v in kw.items() if k in fit_keys})
    return tr
