"""Models built from a JSON config (gpuml/model.h): inference, parameters,
model files.

The same JSON builds the model in C, in Python and in the inference engine,
and model files written here are read by C++ (gpuml_model_load) and h5py.
"""
from __future__ import annotations

import ctypes
import json
import os
import threading
from ctypes import c_char_p, c_int, c_int64, c_uint64, c_void_p
from typing import NamedTuple

import numpy as np

from ._context import Context
from ._errors import InvalidArgumentError, ShapeError, StateError
from ._lib import c_int_arg, lib
from ._tensor import Tensor, as_tensor, borrowed, row_splits_for, view_memory


class InputInfo(NamedTuple):
    name: str
    features: int


class OutputInfo(NamedTuple):
    name: str
    features: int
    per_event: bool  # True: one row per event ([B, C]); False: per row ([N, C])


def _config_text(config) -> str:
    if isinstance(config, dict):
        return json.dumps(config)
    if isinstance(config, os.PathLike) or (isinstance(config, str) and not config.lstrip().startswith("{")):
        with open(config, encoding="utf-8") as f:
            return f.read()
    if isinstance(config, str):
        return config
    raise TypeError(f"config must be a JSON string, a dict or a path, not {type(config).__name__}")


def input_infos(model: int) -> list[InputInfo]:
    """Names and feature counts of a C model's inputs."""
    out = []
    for i in range(lib.gpuml_model_num_inputs(model)):
        name, f = c_char_p(), c_int64()
        lib.gpuml_model_input_info(model, i, ctypes.byref(name), ctypes.byref(f))
        out.append(InputInfo(name.value.decode(), f.value))
    return out


def output_infos(model: int) -> list[OutputInfo]:
    """Names, feature counts and kinds of a C model's outputs."""
    out = []
    for i in range(lib.gpuml_model_num_outputs(model)):
        name, f, pe = c_char_p(), c_int64(), c_int()
        lib.gpuml_model_output_info(model, i, ctypes.byref(name), ctypes.byref(f), ctypes.byref(pe))
        out.append(OutputInfo(name.value.decode(), f.value, bool(pe.value)))
    return out


def host_copy(ctx: Context, handle: int):
    """A copy of a tensor that outlives the C object holding it: a numpy
    array for a CPU tensor, a new gpuml Tensor on the device for CUDA."""
    t = borrowed(handle, None, ctx)
    if not t.is_cuda:
        return t.numpy().copy()
    d = Tensor.empty(t.shape, t.dtype_name, ctx)
    lib.gpuml_tensor_copy(ctx.handle, d.handle, handle)
    return d


class Model:
    """A gpuml model: a DAG of named layers from a JSON config.

    Build with :meth:`from_config` or :meth:`load`; run with
    ``model(inputs, row_splits)``; train with :class:`gpuml.Trainer`.

    Every model has its own :class:`gpuml.Context` unless one is given, and
    a lock: calls on one model from several threads are serialised (the C
    model is used by one thread at a time).
    """

    def __init__(self, handle: int, ctx: Context):
        self._h = handle
        self.ctx = ctx
        self.lock = threading.RLock()
        self._tape = None

    # ---- construction ----------------------------------------------------
    @classmethod
    def from_config(cls, config, *, ctx: Context | None = None, seed: int = 0) -> "Model":
        """Build a model from its JSON config (a string, a dict or a path to
        a .json file); parameters get PyTorch's default init from ``seed``
        (the same numbers on every device)."""
        ctx = ctx or Context()
        h = c_void_p()
        lib.gpuml_model_create(ctx.handle, _config_text(config).encode(), ctypes.byref(h))
        m = cls(h.value, ctx)
        if seed:
            m.init_params(seed)
        return m

    @classmethod
    def load(cls, path, *, ctx: Context | None = None) -> "Model":
        """Load a model file written by :meth:`save` or gpuml_model_save (the
        config and the weights; everything is validated)."""
        ctx = ctx or Context()
        h = c_void_p()
        lib.gpuml_model_load(ctx.handle, os.fsencode(path), ctypes.byref(h))
        return cls(h.value, ctx)

    def save(self, path) -> None:
        """Write an HDF5 model file (config; /weights and /buffers as one
        slab each with an index; a whole-file checksum; atomic). Readable by
        gpuml in C/C++ and by h5py (layout: README, "File formats")."""
        with self.lock:
            lib.gpuml_model_save(self.handle, os.fsencode(path))

    def load_weights(self, path) -> None:
        """Read the weights of a model file made from the same config."""
        with self.lock:
            lib.gpuml_model_load_weights(self.handle, os.fsencode(path))

    def init_params(self, seed: int) -> None:
        """Re-initialise every parameter (PyTorch's defaults) from seed."""
        with self.lock:
            lib.gpuml_model_init_params(self.handle, c_int_arg(seed, "seed", "gpuml.Model.init_params", c_uint64))

    # ---- description -----------------------------------------------------
    @property
    def handle(self) -> int:
        if not self._h:
            raise StateError("gpuml.Model: the model is closed")
        return self._h

    @property
    def config_json(self) -> str:
        """The normalised config (defaults filled in)."""
        return lib.gpuml_model_config(self.handle).decode()

    @property
    def config(self) -> dict:
        return json.loads(self.config_json)

    @property
    def inputs(self) -> list[InputInfo]:
        return input_infos(self.handle)

    @property
    def outputs(self) -> list[OutputInfo]:
        return output_infos(self.handle)

    @property
    def param_count(self) -> int:
        """Number of scalar parameters (the sum of the parameter sizes)."""
        return int(sum(v.size for v in self._named(0).values())) if not self.ctx.is_cuda else self.slab_size

    @property
    def slab_size(self) -> int:
        """Length of the parameter slab (parameters plus alignment padding)."""
        return lib.gpuml_model_param_count(self.handle)

    def summary(self) -> str:
        """Table of layers: name, op, output shape, parameter count."""
        n = lib.gpuml_model_summary(self.handle, None, 0)
        buf = ctypes.create_string_buffer(n + 1)
        lib.gpuml_model_summary(self.handle, buf, n + 1)
        return buf.value.decode()

    def __repr__(self):
        ins = ", ".join(f"{i.name}[{i.features}]" for i in self.inputs)
        outs = ", ".join(f"{o.name}[{o.features}]" for o in self.outputs)
        return f"gpuml.Model({ins} -> {outs}, {self.param_count} parameters, {self.ctx.device})"

    # ---- parameters ------------------------------------------------------
    def _named(self, which: int) -> dict:
        if self.ctx.is_cuda:
            raise InvalidArgumentError("parameters of a CUDA model live on the device: use "
                                       "parameter_tensors() (DLPack) instead of numpy views")
        out = {}
        for i in range(lib.gpuml_model_num_params(self.handle)):
            name, val, grad = c_char_p(), c_void_p(), c_void_p()
            lib.gpuml_model_param(self.handle, i, ctypes.byref(name), ctypes.byref(val), ctypes.byref(grad), None)
            t = borrowed(val.value if which == 0 else grad.value, self, self.ctx)
            out[name.value.decode()] = view_memory(t.data_ptr, t.shape, t.dtype, self)
        return out

    def parameter_tensors(self) -> dict[str, Tensor]:
        """Named parameters as gpuml Tensors over the slab, on the model's
        device (for a CUDA model: ``torch.from_dlpack(t)`` shares them)."""
        out = {}
        for i in range(lib.gpuml_model_num_params(self.handle)):
            name, val = c_char_p(), c_void_p()
            lib.gpuml_model_param(self.handle, i, ctypes.byref(name), ctypes.byref(val), None, None)
            out[name.value.decode()] = borrowed(val.value, self, self.ctx)
        return out

    def parameters(self) -> dict[str, np.ndarray]:
        """Named parameters ("d1.weight" -> [out, in] float32) as numpy views
        into the model's parameter slab: no copies; writing into them changes
        the model (e.g. ``m.parameters()["d1.weight"][:] = torch_w``). The
        views keep the model alive."""
        return self._named(0)

    def gradients(self) -> dict[str, np.ndarray]:
        """Named gradients (views into the gradient slab), filled by training."""
        return self._named(1)

    def parameter_slab(self) -> np.ndarray:
        """All parameters as one [param_count] float32 view (the slab)."""
        return borrowed(lib.gpuml_model_param_slab(self.handle), self, self.ctx).numpy()

    def buffers(self) -> dict[str, np.ndarray]:
        """Non-trained state (batch-norm running statistics) as numpy views."""
        out = {}
        for i in range(lib.gpuml_model_num_buffers(self.handle)):
            name, val = c_char_p(), c_void_p()
            lib.gpuml_model_buffer(self.handle, i, ctypes.byref(name), ctypes.byref(val))
            out[name.value.decode()] = borrowed(val.value, self, self.ctx).numpy()
        return out

    def load_parameters(self, params: dict) -> None:
        """Copy arrays (numpy, torch, ...) into the named parameters; every
        name must exist and every shape match."""
        own = self.parameters()
        for name, v in params.items():
            if name not in own:
                raise InvalidArgumentError(f"Model.load_parameters: no parameter {name!r} "
                                           f"(have {', '.join(own)})")
            v = np.asarray(v, dtype=np.float32)
            if v.shape != own[name].shape:
                raise ShapeError(f"Model.load_parameters: {name!r} is {list(own[name].shape)}, got {list(v.shape)}")
            own[name][...] = v

    def zero_grad(self) -> None:
        lib.gpuml_model_zero_grad(self.handle)

    # ---- forward -----------------------------------------------------------
    def input_tensors(self, inputs, row_splits, func: str):
        """inputs (one array, a sequence in input order, or a dict by input
        name) and row_splits as gpuml tensors on the model's device."""
        infos = self.inputs
        if isinstance(inputs, dict):
            missing = [i.name for i in infos if i.name not in inputs]
            if missing:
                raise InvalidArgumentError(f"{func}: inputs lack {', '.join(missing)}")
            inputs = [inputs[i.name] for i in infos]
        elif len(infos) == 1 and not isinstance(inputs, (list, tuple)):
            inputs = [inputs]
        if len(inputs) != len(infos):
            raise InvalidArgumentError(f"{func}: the model has {len(infos)} inputs "
                                       f"({', '.join(i.name for i in infos)}), got {len(inputs)}")
        ts = [as_tensor(x, "float32", ctx=self.ctx, ndim=2, arg=info.name, func=func)
              for x, info in zip(inputs, infos)]
        rs = row_splits_for(row_splits, ts[0].shape[0], self.ctx, func)
        return ts, rs

    def forward_on_tape(self, tape: int, ts, rs) -> list[int]:
        """Run gpuml_model_forward on a tape; returns the output vars."""
        n_out = lib.gpuml_model_num_outputs(self.handle)
        arr = (c_void_p * len(ts))(*[t.handle for t in ts])
        outs = (c_void_p * n_out)()
        lib.gpuml_model_forward(self.handle, tape, arr, rs.handle, outs)
        return list(outs)

    def __call__(self, inputs, row_splits=None):
        """Inference: outputs of the model for a ragged batch.

        inputs: [N, F] float32 per model input (one array, a list in input
        order, or a dict by input name); row_splits [B+1] int64 (None: one
        event). Returns one array per output ([N, C] per row or [B, C] per
        event): a single array for a one-output model, else a tuple. Dropout
        is off and batch norm uses running statistics. The outputs are
        copied out of the C tape's arena (reused by the next call); the
        inputs are not copied.
        """
        with self.lock:
            ts, rs = self.input_tensors(inputs, row_splits, "gpuml.Model.__call__")
            tape = self._inference_tape()
            try:
                outs = self.forward_on_tape(tape, ts, rs)
                res = tuple(host_copy(self.ctx, lib.gpuml_var_value(v)) for v in outs)
            finally:
                lib.gpuml_tape_reset(tape)
        return res[0] if len(res) == 1 else res

    forward = __call__

    def _inference_tape(self) -> int:
        if self._tape is None:
            h = c_void_p()
            lib.gpuml_tape_create(self.ctx.handle, ctypes.byref(h))
            lib.gpuml_tape_set_grad_enabled(h.value, 0)
            lib.gpuml_tape_set_training(h.value, 0)
            self._tape = h.value
        return self._tape

    def __del__(self):
        # Views from parameters() keep this object alive, so the C model is
        # freed only when nothing can reach its memory any more.
        tape, self._tape = getattr(self, "_tape", None), None
        h, self._h = getattr(self, "_h", None), None
        if lib is None:
            return
        if tape:
            lib.gpuml_tape_destroy(tape)
        if h:
            lib.gpuml_model_destroy(h)
