"""Training from Python through the C training step.

One :meth:`Trainer.step` is, in C: model forward on a tape, the loss on the
tape, zero the gradient slab, backward, one fused optimizer update over the
parameter slab. Python only hands over the batch (inputs wrapped without a
copy) and reads the loss back. :meth:`Trainer.fit` feeds batches from the C
data loader (:class:`gpuml.Loader`) and shows a progress bar.
"""
from __future__ import annotations

import ctypes
import math
import os
import sys
import time
from ctypes import c_float, c_int64, c_void_p

import numpy as np

from ._errors import InvalidArgumentError
from ._lib import OcParams, OptimConfig, TrainState, lib
from ._tensor import Tensor, as_tensor, new_output
from .io import Batch, Loader
from .model import Model

_KINDS = {"sgd": 0, "adam": 1, "adamw": 2}
_SCHEDULES = {"constant": 0, "step": 1, "cosine": 2}
LOSSES = ("cross_entropy", "bce", "mse", "object_condensation")
_SIGMOID = 11  # GPUML_UNARY_SIGMOID


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
        if k == "kind":
            v = _KINDS[v] if v in _KINDS else _bad(k, v, _KINDS)
        elif k == "schedule":
            v = _SCHEDULES[v] if v in _SCHEDULES else _bad(k, v, _SCHEDULES)
        elif k not in fields:
            raise InvalidArgumentError(f"optimizer option {k!r} is unknown (known: {', '.join(sorted(fields))})")
        setattr(c, k, v)
    return c


def _bad(k, v, table):
    raise InvalidArgumentError(f"optimizer {k} {v!r} is unknown (known: {', '.join(table)})")


class _Progress:
    """tqdm when installed, else a one-line text bar on stderr."""

    def __init__(self, total, desc, enabled):
        self.bar = None
        self.enabled = enabled
        self.total, self.desc, self.n, self.t0, self.post = total, desc, 0, time.monotonic(), ""
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
            frac = self.n / max(self.total, 1)
            done = int(30 * frac)
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
    """Trains a :class:`gpuml.Model` with a gpuml optimizer and loss.

    Parameters
    ----------
    model : the model (its context runs everything).
    optimizer : kind name or dict for :func:`optim_config`; keyword
        arguments ``lr`` etc. may be given in ``optim``.
    loss : "cross_entropy" (targets: integer labels [N] or [B]; option
        ``class_weights`` [C]), "bce" (binary cross-entropy of logits;
        targets float in [0, 1] of the output's shape; option
        ``pos_weight`` [C]), "mse" (targets of the output's shape) or
        "object_condensation" (targets: truth ids [N] int32, -1 noise;
        options ``q_min``, ``s_b``, ``max_objects`` (default: per batch,
        max id + 1), ``beta_logits`` (default True)).
    output : which model output the loss reads (default 0). For object
        condensation the model has either two outputs (beta [N, 1], coords
        [N, D]) or one [N, 1 + D] whose column 0 is beta; with beta_logits
        the loss applies a sigmoid to it (so the model outputs logits).
    """

    def __init__(self, model: Model, optimizer="adamw", loss: str = "cross_entropy", *, output: int = 0,
                 loss_options: dict | None = None, **optim):
        if loss not in LOSSES:
            raise InvalidArgumentError(f"loss {loss!r} is unknown (known: {', '.join(LOSSES)})")
        self.model = model
        self.ctx = model.ctx
        self.loss_name = loss
        self.output = int(output)
        self.loss_options = dict(loss_options or {})
        unknown = set(self.loss_options) - {"class_weights", "pos_weight", "q_min", "s_b", "max_objects",
                                            "beta_logits"}
        if unknown:
            raise InvalidArgumentError(f"loss option(s) {', '.join(sorted(unknown))} unknown")
        self._weights = {k: as_tensor(self.loss_options[k], "float32", ctx=self.ctx, ndim=1, arg=k,
                                      func="gpuml.Trainer") for k in ("class_weights", "pos_weight")
                         if self.loss_options.get(k) is not None}
        self.optim_config = optim_config(optimizer, **optim)
        h = c_void_p()
        with model.lock:
            lib.gpuml_optim_create(self.ctx.handle, ctypes.byref(self.optim_config),
                                   lib.gpuml_model_param_slab(model.handle), lib.gpuml_model_grad_slab(model.handle),
                                   ctypes.byref(h))
            self._opt = h.value
            h = c_void_p()
            lib.gpuml_tape_create(self.ctx.handle, ctypes.byref(h))
            self._tape = h.value
        self._loss_t, self._loss_np = new_output(self.ctx, (1,), "float32")
        self._comp_t, self._comp = new_output(self.ctx, (3,), "float32")
        self.epoch = 0
        self.history: list[float] = []

    # ---- properties ------------------------------------------------------
    @property
    def lr(self) -> float:
        """Learning rate of the next step (after the schedule)."""
        return lib.gpuml_optim_lr(self._opt)

    @property
    def num_steps(self) -> int:
        return lib.gpuml_optim_num_steps(self._opt)

    @property
    def last_components(self) -> tuple[float, float, float] | None:
        """(L_V, L_beta, L_noise) of the last object condensation step."""
        if self.loss_name != "object_condensation":
            return None
        c = np.asarray(self._comp)
        return float(c[0]), float(c[1]), float(c[2])

    # ---- one step ----------------------------------------------------------
    def _unpack(self, batch, inputs, target, row_splits):
        """(input tensors, row_splits tensor, target tensor) for a step."""
        func = "gpuml.Trainer.step"
        if isinstance(batch, Batch):
            n_in = len(self.model.inputs)
            inputs = [batch.field_tensor(i) for i in range(n_in)]
            row_splits, target = batch.row_splits_tensor, batch.field_tensor(n_in)
        elif isinstance(batch, dict):
            inputs, target = batch.get("inputs"), batch.get("target")
            row_splits = batch.get("row_splits")
        elif isinstance(batch, (tuple, list)):
            inputs, target, *rest = batch
            row_splits = rest[0] if rest else None
        elif batch is not None:
            raise TypeError(f"{func}: batch must be a dict, a tuple (inputs, target[, row_splits]) or a "
                            f"gpuml.Batch, not {type(batch).__name__}")
        if inputs is None or target is None:
            raise InvalidArgumentError(f"{func}: a step needs inputs and a target")
        ts, rs = self.model.input_tensors(inputs, row_splits, func)
        if self.loss_name in ("cross_entropy", "object_condensation"):
            dt = "int32" if self.loss_name == "object_condensation" or str(getattr(target, "dtype", "")) in \
                ("int32", "torch.int32") else "int64"
            tt = as_tensor(target, dt, ctx=self.ctx, ndim=1, arg="target", func=func)
        else:
            tt = as_tensor(target, "float32", ctx=self.ctx, arg="target", func=func)
        return ts, rs, tt

    def _loss_var(self, outs, rs, target: Tensor, keep: list):
        tape = self._tape
        loss = c_void_p()
        name = self.loss_name
        if name == "object_condensation":
            return self._oc_loss(outs, rs, target, keep)
        out = outs[self.output]
        if name == "cross_entropy":
            lib.gpuml_ad_cross_entropy(tape, out, target.handle, _opt_handle(self._weights.get("class_weights")),
                                       ctypes.byref(loss))
            return loss.value
        tshape = target.shape
        oshape = borrowed_shape(out)
        if tshape != oshape:
            if int(np.prod(tshape)) != int(np.prod(oshape)):
                raise InvalidArgumentError(f"gpuml.Trainer.step: target {list(tshape)} does not fit output "
                                           f"{list(oshape)}")
            target = target.reshape(oshape)  # e.g. [B] labels for a [B, 1] output
            keep.append(target)
        tv = c_void_p()
        lib.gpuml_var_input(tape, target.handle, 0, ctypes.byref(tv))
        if name == "bce":
            lib.gpuml_ad_bce_logits(tape, out, tv, _opt_handle(self._weights.get("pos_weight")), ctypes.byref(loss))
        else:
            lib.gpuml_ad_mse(tape, out, tv, ctypes.byref(loss))
        return loss.value

    def _oc_loss(self, outs, rs, truth: Tensor, keep):
        tape, o = self._tape, self.loss_options
        if len(outs) >= 2:
            beta, coords = outs[0], outs[1]
        else:
            width = borrowed_shape(outs[0])[-1]
            parts = (c_void_p * 2)()
            lib.gpuml_ad_split(tape, outs[0], 2, (c_int64 * 2)(1, width - 1), parts)
            beta, coords = parts[0], parts[1]
        if o.get("beta_logits", True):
            b = c_void_p()
            lib.gpuml_ad_unary(tape, _SIGMOID, 0.0, beta, ctypes.byref(b))
            beta = b.value
        p = OcParams()
        lib.gpuml_oc_params_init_defaults(ctypes.byref(p))
        p.q_min = o.get("q_min", p.q_min)
        p.s_b = o.get("s_b", p.s_b)
        mo = o.get("max_objects")
        if mo is None:
            t = truth.numpy() if not truth.is_cuda else None
            if t is None:
                raise InvalidArgumentError("object_condensation on CUDA needs loss_options['max_objects']")
            mo = int(t.max()) + 1 if t.size else 1
        p.max_objects = max(int(mo), 1)
        loss = c_void_p()
        lib.gpuml_ad_object_condensation(tape, beta, coords, truth.handle, rs.handle, ctypes.byref(p),
                                         ctypes.byref(loss), self._comp_t.handle)
        return loss.value

    def _run(self, ts, rs, target, train: bool) -> float:
        m, tape = self.model, self._tape
        keep = [ts, rs, target]
        with m.lock:
            lib.gpuml_tape_set_grad_enabled(tape, int(train))
            lib.gpuml_tape_set_training(tape, int(train))
            try:
                outs = m.forward_on_tape(tape, ts, rs)
                loss = self._loss_var(outs, rs, target, keep)
                if train:
                    lib.gpuml_model_zero_grad(m.handle)
                    lib.gpuml_backward(tape, loss, None)
                    lib.gpuml_optim_step(self._opt)
                lib.gpuml_tensor_copy(self.ctx.handle, self._loss_t.handle, lib.gpuml_var_value(loss))
            finally:
                lib.gpuml_tape_reset(tape)
        return float(np.asarray(self._loss_np)[0])

    def step(self, batch=None, *, inputs=None, target=None, row_splits=None) -> float:
        """One training step; returns the loss (before the update).

        batch: a :class:`gpuml.Batch` from a Loader whose fields are the
        model inputs then the target, a dict with keys ``inputs``,
        ``target``, ``row_splits``, or a tuple (inputs, target[,
        row_splits]); or give the three as keywords. inputs as in
        ``Model.__call__``; row_splits None means one event.
        """
        return self._run(*self._unpack(batch, inputs, target, row_splits), train=True)

    def evaluate(self, batch=None, *, inputs=None, target=None, row_splits=None) -> float:
        """The loss on a batch in inference mode, without an update."""
        return self._run(*self._unpack(batch, inputs, target, row_splits), train=False)

    # ---- loops ---------------------------------------------------------------
    def fit(self, dataset, *, inputs=("features",), target: str = "truth", epochs: int = 1,
            max_rows: int = 65536, max_events: int = 32, seed: int = 0, shuffle: bool = True,
            progress: bool = True, callback=None) -> list[float]:
        """Train for ``epochs`` epochs on a dataset file with the C loader.

        inputs: dataset field names feeding the model inputs (in order);
        target: the field the loss compares with. The loader shuffles per
        epoch with ``seed`` and prefetches on a background thread. Shows a
        progress bar (tqdm if installed). callback(epoch, batch_index, loss)
        is called after each step; returning False stops. Returns the mean
        loss of each epoch (also appended to ``self.history``).
        """
        inputs = [inputs] if isinstance(inputs, str) else list(inputs)
        if len(inputs) != len(self.model.inputs):
            raise InvalidArgumentError(f"Trainer.fit: the model has {len(self.model.inputs)} inputs, "
                                       f"got fields {inputs}")
        loader = Loader(dataset, inputs + [target], max_rows=max_rows, max_events=max_events, seed=seed,
                        shuffle=shuffle, ctx=self.ctx)
        means = []
        for e in range(epochs):
            bar = _Progress(loader.num_batches(), f"epoch {self.epoch + 1}", progress)
            total, n, stop = 0.0, 0, False
            try:
                for b in loader:
                    loss = self.step(b)
                    total, n = total + loss, n + 1
                    bar.update(loss)
                    if callback is not None and callback(self.epoch, b.index, loss) is False:
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
        """Model, optimizer state, step and epoch, and the RNG state (atomic)."""
        ts = TrainState()
        ts.step, ts.epoch = self.num_steps, self.epoch
        ts.rng_seed, ts.rng_counter = self.ctx.rng_state()
        with self.model.lock:
            lib.gpuml_checkpoint_save(os.fsencode(path), self.model.handle, self._opt, ctypes.byref(ts))

    def load_checkpoint(self, path) -> None:
        """Restore what save_checkpoint stored (same model config)."""
        ts = TrainState()
        with self.model.lock:
            lib.gpuml_checkpoint_load(os.fsencode(path), self.model.handle, self._opt, ctypes.byref(ts))
        self.epoch = ts.epoch
        self.ctx.set_rng_state(ts.rng_seed, ts.rng_counter)

    def __del__(self):
        tape, self._tape = getattr(self, "_tape", None), None
        opt, self._opt = getattr(self, "_opt", None), None
        if lib is None:
            return
        if tape:
            lib.gpuml_tape_destroy(tape)
        if opt:
            lib.gpuml_optim_destroy(opt)


def _opt_handle(t):
    return None if t is None else t.handle


def borrowed_shape(var) -> tuple:
    h = lib.gpuml_var_value(var)
    n = lib.gpuml_tensor_ndim(h)
    s = lib.gpuml_tensor_shape(h)
    return tuple(s[i] for i in range(n))


def fit(model: Model, dataset, *, optimizer="adamw", loss: str = "cross_entropy", loss_options=None, output=0,
        **kw) -> Trainer:
    """Train ``model`` on a dataset file: ``Trainer(model, optimizer, loss)
    .fit(dataset, **kw)``; returns the trainer (its ``history`` holds the
    epoch losses)."""
    fit_keys = {"inputs", "target", "epochs", "max_rows", "max_events", "seed", "shuffle", "progress", "callback"}
    tr = Trainer(model, optimizer, loss, output=output, loss_options=loss_options,
                 **{k: v for k, v in kw.items() if k not in fit_keys})
    tr.fit(dataset, **{k: v for k, v in kw.items() if k in fit_keys})
    return tr
