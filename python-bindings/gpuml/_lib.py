"""Loading libgpuml and declaring its C functions for ctypes.

The library is found, in this order:

1. ``$GPUML_LIBRARY``: a path to ``libgpuml.so`` (or a directory holding it),
   for development against a build tree (``meson test`` sets it);
2. the copy bundled in the installed package (``gpuml/_native/libgpuml.so``);
3. an in-tree build next to these sources (``<repo>/build/libgpuml``), so a
   source checkout works without installing;
4. the system's ``libgpuml`` (``ctypes.util.find_library``).

Every C call goes through ctypes.CDLL, which releases the GIL for the
duration of the call: other Python threads run while gpuml computes.
Functions that return a ``gpuml_status`` are given an ``errcheck`` that turns
a failure into a :class:`gpuml.Error` carrying ``gpuml_last_error()``; it runs
on the calling thread right after the call, where the C library keeps the
message (the message is per thread).

Functions that this build of the library lacks (an older library, or a part
that is not merged yet) are left out of the namespace; :func:`need` raises
:class:`gpuml.UnsupportedError` naming them.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import math
import numbers
import operator
import os
from ctypes import (CFUNCTYPE, POINTER, Structure, c_char_p, c_double, c_float, c_int, c_int64, c_long,
                    c_size_t, c_uint64, c_void_p)
from pathlib import Path

from ._errors import UnsupportedError, raise_for_status

MAX_DIMS = 8

# ---- integers into C ----------------------------------------------------------
# ctypes converts a Python int to a C integer by truncation, silently:
# max_batch_events=2**32 + 8 would reach C as 8. Every integer the package
# passes to C goes through c_int_arg (directly, or as a struct field through
# CStruct below), which raises OverflowError naming the argument instead.
_INT_RANGES = {ctype: ((0, 2 ** (8 * ctypes.sizeof(ctype)) - 1) if ctype(-1).value > 0 else
                       (-2 ** (8 * ctypes.sizeof(ctype) - 1), 2 ** (8 * ctypes.sizeof(ctype) - 1) - 1))
               for ctype in (ctypes.c_int8, ctypes.c_uint8, ctypes.c_int16, ctypes.c_uint16, ctypes.c_int32,
                             ctypes.c_uint32, ctypes.c_int64, ctypes.c_uint64, c_int, c_long, c_size_t)}


def c_int_arg(value, arg: str, func: str, ctype=c_int) -> int:
    """value as a Python int that fits the C type ctype.

    TypeError (naming arg) when value is not an integer (a float is never
    truncated); OverflowError (naming arg, the value and the range) when it
    does not fit. numpy integers and bools are integers.
    """
    try:
        v = operator.index(value)
    except TypeError:
        raise TypeError(f"{func}: argument '{arg}' must be an integer, got {type(value).__name__}") from None
    lo, hi = _INT_RANGES[ctype]
    if not lo <= v <= hi:
        name = f"{'u' if lo == 0 else ''}int{8 * ctypes.sizeof(ctype)}"
        raise OverflowError(f"{func}: argument '{arg}' = {v} does not fit the C type ({name}: [{lo}, {hi}])")
    return v


_STRUCT_INT_FIELDS: dict = {}


def seconds_arg(value, arg: str, func: str, *, none_ok: bool = True, inf_ok: bool = True):
    """A timeout in seconds, checked: None (when none_ok), or a real number
    >= 0 that is not NaN (inf only when inf_ok). Returns a float or None.
    TypeError / InvalidArgumentError (a ValueError) name the argument."""
    from ._errors import InvalidArgumentError
    if value is None:
        if none_ok:
            return None
        raise TypeError(f"{func}: argument '{arg}' must be a number of seconds, got None")
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{func}: argument '{arg}' must be a number of seconds, got {type(value).__name__}")
    v = float(value)
    if math.isnan(v) or v < 0 or (math.isinf(v) and not inf_ok):
        raise InvalidArgumentError(f"{func}: argument '{arg}' = {v!r}: a timeout is a number of seconds >= 0"
                                   + ("" if inf_ok else ", finite") + (" or None" if none_ok else ""))
    return v


class CStruct(Structure):
    """A C struct whose integer fields are range-checked on assignment (the
    field name is the argument named in the error)."""

    def __setattr__(self, name, value):
        ctype = self._int_fields().get(name)
        if ctype is not None:
            value = c_int_arg(value, name, self._c_name(), ctype)
        super().__setattr__(name, value)

    @classmethod
    def _int_fields(cls):
        f = _STRUCT_INT_FIELDS.get(cls)
        if f is None:
            f = _STRUCT_INT_FIELDS[cls] = {n: t for n, t, *_ in cls._fields_ if t in _INT_RANGES}
        return f

    @classmethod
    def _c_name(cls):
        return next((k for k, v in STRUCTS.items() if v is cls), cls.__name__)


# ---- structs (layouts mirror include/gpuml/*.h; tests/test_abi.py checks) ----


class Device(CStruct):
    _fields_ = [("type", c_int), ("index", c_int)]


LOG_FN = CFUNCTYPE(None, c_void_p, c_int, c_char_p)
DELETER = CFUNCTYPE(None, c_void_p, c_void_p)


class CtxConfig(CStruct):
    _fields_ = [("device", Device), ("stream", c_void_p), ("num_threads", c_int), ("executor", c_void_p),
                ("seed", c_uint64),
                ("log_fn", LOG_FN), ("log_user", c_void_p), ("log_level", c_int),
                ("require_checksum", c_int), ("mem_cap_bytes", c_size_t)]


class OcParams(CStruct):
    _fields_ = [("q_min", c_float), ("s_b", c_float), ("max_objects", c_int64)]


class OcClusterParams(CStruct):
    _fields_ = [("t_beta", c_float), ("t_d", c_float), ("energy_column", c_int)]


CLUSTER_EVAL_MAX_BINS = 16  # GPUML_CLUSTER_EVAL_MAX_BINS in gpuml/cluster.h


class ClusterEvalConfig(CStruct):
    _fields_ = [("min_energy", c_double), ("match_fraction", c_double), ("split_fraction", c_double),
                ("num_bins", c_int), ("bin_edges", c_double * (CLUSTER_EVAL_MAX_BINS + 1))]


class ClusterEvalBin(CStruct):
    _fields_ = [("lo", c_double), ("hi", c_double), ("showers", c_int64), ("found", c_int64),
                ("efficiency", c_double), ("response_mean", c_double), ("resolution", c_double)]


class ClusterEvalResult(CStruct):
    _fields_ = [("events", c_int64), ("showers", c_int64), ("found", c_int64), ("merged", c_int64),
                ("split", c_int64), ("clusters", c_int64), ("fakes", c_int64), ("noise_hits", c_int64),
                ("noise_rejected", c_int64), ("efficiency", c_double), ("merge_rate", c_double),
                ("split_rate", c_double), ("fake_rate", c_double), ("noise_rejection", c_double),
                ("response_mean", c_double), ("resolution", c_double), ("num_bins", c_int),
                ("bins", ClusterEvalBin * CLUSTER_EVAL_MAX_BINS)]


class ClueParams(CStruct):
    _fields_ = [("dc", c_float), ("rho_c", c_float), ("seed_delta", c_float), ("outlier_delta", c_float)]


class KnnParams(CStruct):
    _fields_ = [("k", c_int), ("max_radius", c_float), ("algo", c_int), ("distance", c_int)]


class BatchNormParams(CStruct):
    _fields_ = [("momentum", c_float), ("eps", c_float), ("training", c_int), ("use_cudnn", c_int)]


class OptimConfig(CStruct):
    _fields_ = [("kind", c_int), ("lr", c_float), ("weight_decay", c_float), ("momentum", c_float),
                ("dampening", c_float), ("nesterov", c_int), ("beta1", c_float), ("beta2", c_float),
                ("eps", c_float), ("clip_norm", c_float), ("schedule", c_int), ("warmup_steps", c_int64),
                ("total_steps", c_int64), ("min_lr", c_float), ("step_size", c_int64), ("gamma", c_float)]


TRAIN_MAX_INPUTS = 8


class TrainerConfig(CStruct):
    _fields_ = [("loss", c_int), ("num_inputs", c_int), ("input_fields", c_int * TRAIN_MAX_INPUTS),
                ("target_field", c_int), ("output", c_int), ("beta_output", c_int), ("coords_output", c_int),
                ("oc", OcParams), ("class_weights", c_void_p), ("optim", OptimConfig), ("accumulate", c_int)]


class StepStats(CStruct):
    _fields_ = [("loss", c_float), ("components", c_float * 3), ("events", c_int64), ("rows", c_int64),
                ("correct", c_int64), ("lr", c_float), ("stepped", c_int)]


class LoaderConfig(CStruct):
    _fields_ = [("path", c_char_p), ("fields", POINTER(c_char_p)), ("num_fields", c_int),
                ("max_rows", c_int64), ("max_events", c_int64), ("seed", c_uint64), ("shuffle", c_int),
                ("rank", c_int), ("world_size", c_int), ("prefetch", c_int), ("in_memory", c_int),
                ("in_memory_limit", c_size_t)]


class LoaderPosition(CStruct):
    _fields_ = [("epoch", c_int64), ("batch", c_int64), ("fingerprint", c_uint64)]


class TrainState(CStruct):
    _fields_ = [("step", c_int64), ("epoch", c_int64), ("rng_seed", c_uint64), ("rng_counter", c_uint64),
                ("loader", LoaderPosition)]


class FieldInfo(CStruct):
    _fields_ = [("name", c_char_p), ("per_event", c_int), ("dtype", c_int), ("ndim", c_int),
                ("shape", c_int64 * MAX_DIMS)]


class Strings(CStruct):
    _fields_ = [("count", c_size_t), ("items", POINTER(c_char_p))]


class AllocStats(CStruct):
    _fields_ = [("bytes_in_use", c_size_t), ("bytes_peak", c_size_t), ("bytes_cached", c_size_t),
                ("bytes_reserved", c_size_t), ("num_allocs", c_uint64), ("num_cache_hits", c_uint64),
                ("num_system_allocs", c_uint64), ("bytes_cap", c_size_t)]


class EngineClusters(CStruct):
    _fields_ = [("enabled", c_int), ("beta_output", c_int), ("coords_output", c_int), ("energy_input", c_int),
                ("energy_column", c_int), ("t_beta", c_float), ("t_d", c_float)]


class EngineConfig(CStruct):
    _fields_ = [("device", Device), ("devices", POINTER(c_int)), ("n_devices", c_int),
                ("num_instances", c_int), ("max_batch_events", c_int),
                ("max_batch_rows", c_int64), ("max_queue_delay_us", c_int64), ("queue_capacity", c_int),
                ("queue_rows", c_int64), ("completion_threads", c_int), ("cpu_threads", c_int),
                ("executor", c_void_p), ("max_direct_lanes", c_int), ("on_destroy", c_int), ("warmup", c_int),
                ("log_fn", LOG_FN), ("log_user", c_void_p), ("log_level", c_int), ("clusters", EngineClusters),
                ("require_checksum", c_int), ("mem_cap_bytes", c_size_t)]


class EngineRequest(CStruct):
    _fields_ = [("rows", c_int64), ("inputs", POINTER(c_void_p)), ("outputs", POINTER(c_void_p)),
                ("inputs_on", c_int), ("outputs_on", c_int), ("borrow_inputs", c_int), ("priority", c_int),
                ("deadline_us", c_int64)]


class EngineTiming(CStruct):
    _fields_ = [("count", c_uint64), ("mean_us", c_double), ("p50_us", c_double), ("p90_us", c_double),
                ("p99_us", c_double), ("max_us", c_double)]


class EngineStats(CStruct):
    _fields_ = [("submitted", c_uint64), ("rejected", c_uint64), ("completed", c_uint64), ("failed", c_uint64),
                ("timed_out", c_uint64), ("cancelled", c_uint64), ("direct", c_uint64), ("batches", c_uint64),
                ("failed_batches", c_uint64), ("batch_events", c_uint64), ("batch_rows", c_uint64),
                ("queued", c_int64), ("in_flight", c_int64), ("queue_time", EngineTiming),
                ("compute_time", EngineTiming), ("latency", EngineTiming)]


class EngineInstanceStats(CStruct):
    _fields_ = [("device", Device), ("batches", c_uint64), ("failed_batches", c_uint64),
                ("batch_events", c_uint64), ("batch_rows", c_uint64), ("in_flight_batches", c_int)]


DONE_FN = CFUNCTYPE(None, c_void_p, c_int)


class CommConfig(CStruct):
    _fields_ = [("backend", c_int), ("mpi_comm", c_void_p), ("timeout_s", c_double), ("deterministic", c_int),
                ("validate", c_int), ("rank", c_int), ("size", c_int), ("local_rank", c_int), ("device", c_int),
                ("bootstrap", c_int), ("bootstrap_path", c_char_p), ("bootstrap_env", c_char_p),
                ("bootstrap_tag", c_char_p), ("log_fn", LOG_FN), ("log_user", c_void_p), ("log_level", c_int)]


class DdpConfig(CStruct):
    _fields_ = [("first_bucket_bytes", c_int64), ("bucket_bytes", c_int64), ("broadcast_buffers", c_int)]

STRUCTS = {"gpuml_device": Device, "gpuml_ctx_config": CtxConfig, "gpuml_oc_params": OcParams,
           "gpuml_knn_params": KnnParams, "gpuml_batch_norm_params": BatchNormParams,
           "gpuml_oc_cluster_params": OcClusterParams, "gpuml_cluster_eval_config": ClusterEvalConfig,
           "gpuml_cluster_eval_bin": ClusterEvalBin, "gpuml_cluster_eval_result": ClusterEvalResult,
           "gpuml_clue_params": ClueParams, "gpuml_engine_clusters": EngineClusters,
           "gpuml_optim_config": OptimConfig, "gpuml_loader_config": LoaderConfig,
           "gpuml_loader_position": LoaderPosition, "gpuml_train_state": TrainState,
           "gpuml_field_info": FieldInfo, "gpuml_strings": Strings, "gpuml_alloc_stats": AllocStats,
           "gpuml_trainer_config": TrainerConfig, "gpuml_step_stats": StepStats,
           "gpuml_engine_config": EngineConfig, "gpuml_engine_request": EngineRequest,
           "gpuml_engine_timing": EngineTiming, "gpuml_engine_stats": EngineStats,
           "gpuml_engine_instance_stats": EngineInstanceStats,
           "gpuml_comm_config": CommConfig, "gpuml_ddp_config": DdpConfig}

# ---- function table ---------------------------------------------------------
# name: (restype, argtypes). ST marks a gpuml_status return (checked).
ST = "status"
P = c_void_p          # opaque handles, tensors, vars
PP = POINTER(c_void_p)
I64P = POINTER(c_int64)
I = c_int
F = c_float

_PROTOS = {
    # status / context
    "gpuml_version": (c_char_p, []),
    "gpuml_status_string": (c_char_p, [I]),
    "gpuml_last_error": (c_char_p, []),
    "gpuml_clear_error": (None, []),
    "gpuml_has_feature": (I, [c_char_p]),
    "gpuml_cuda_device_count": (I, []),
    "gpuml_ctx_config_init_defaults": (None, [POINTER(CtxConfig)]),
    "gpuml_ctx_create": (ST, [POINTER(CtxConfig), PP]),
    "gpuml_ctx_destroy": (None, [P]),
    "gpuml_ctx_synchronize": (ST, [P]),
    "gpuml_ctx_device": (Device, [P]),
    "gpuml_ctx_stream": (P, [P]),
    "gpuml_ctx_num_threads": (I, [P]),
    "gpuml_ctx_set_num_threads": (ST, [P, I]),
    "gpuml_ctx_set_seed": (None, [P, c_uint64]),
    "gpuml_ctx_get_rng_state": (None, [P, POINTER(c_uint64), POINTER(c_uint64)]),
    "gpuml_ctx_set_rng_state": (None, [P, c_uint64, c_uint64]),
    "gpuml_ctx_alloc_stats": (None, [P, I, POINTER(AllocStats)]),
    "gpuml_ctx_release_cached": (None, [P]),
    "gpuml_ctx_set_mem_cap": (ST, [P, c_size_t]),
    "gpuml_ctx_mem_cap": (c_size_t, [P]),
    "gpuml_ctx_fail_allocation_after": (None, [P, c_long]),  # gpuml/testing.h: tests only, unstable
    # tensors
    "gpuml_dtype_size": (c_size_t, [I]),
    "gpuml_tensor_create": (ST, [P, I, I, I64P, PP]),
    "gpuml_tensor_zeros": (ST, [P, I, I, I64P, PP]),
    "gpuml_tensor_wrap": (ST, [P, Device, I, I, I64P, DELETER, P, PP]),
    "gpuml_tensor_destroy": (None, [P]),
    "gpuml_tensor_dtype": (I, [P]),
    "gpuml_tensor_ndim": (I, [P]),
    "gpuml_tensor_shape": (I64P, [P]),
    "gpuml_tensor_numel": (c_int64, [P]),
    "gpuml_tensor_nbytes": (c_size_t, [P]),
    "gpuml_tensor_device": (Device, [P]),
    "gpuml_tensor_data": (P, [P]),
    "gpuml_tensor_reshape": (ST, [P, I, I64P, PP]),
    "gpuml_tensor_slice_rows": (ST, [P, c_int64, c_int64, PP]),
    "gpuml_tensor_copy_from_host": (ST, [P, P, P, c_size_t]),
    "gpuml_tensor_copy_to_host": (ST, [P, P, P, c_size_t]),
    "gpuml_tensor_copy": (ST, [P, P, P]),
    "gpuml_tensor_describe": (c_char_p, [P, c_char_p, c_size_t]),
    # ops
    "gpuml_unary": (ST, [P, I, F, P, P]),
    "gpuml_binary": (ST, [P, I, P, P, P]),
    "gpuml_scale": (ST, [P, F, P, P]),
    "gpuml_fill": (ST, [P, P, c_double]),
    "gpuml_cast": (ST, [P, P, P]),
    "gpuml_reduce": (ST, [P, I, P, I, P, P]),
    "gpuml_softmax": (ST, [P, P, P]),
    "gpuml_log_softmax": (ST, [P, P, P]),
    "gpuml_matmul": (ST, [P, P, I, P, I, P]),
    "gpuml_linear": (ST, [P, P, P, P, P]),
    "gpuml_gather_rows": (ST, [P, P, P, P]),
    "gpuml_scatter_add_rows": (ST, [P, P, P, P]),
    "gpuml_index_csr": (ST, [P, P, P, P]),
    "gpuml_segment_reduce": (ST, [P, I, P, P, P, P]),
    "gpuml_segment_ids": (ST, [P, P, P]),
    "gpuml_concat": (ST, [P, I, PP, P]),
    "gpuml_layernorm": (ST, [P, P, P, P, F, P, P, P]),
    "gpuml_bce_logits": (ST, [P, P, P, P, P]),
    "gpuml_cross_entropy": (ST, [P, P, P, P, P]),
    "gpuml_oc_params_init_defaults": (None, [POINTER(OcParams)]),
    "gpuml_object_condensation": (ST, [P, P, P, P, P, POINTER(OcParams), P, P, P, P]),
    "gpuml_object_condensation_backward": (ST, [P, P, P, P, P, POINTER(OcParams), P, P, P, P, P]),
    "gpuml_rand_uniform": (ST, [P, P, F, F]),
    "gpuml_rand_normal": (ST, [P, P, F, F]),
    # knn (gpuml/knn.h)
    "gpuml_knn_params_init_defaults": (None, [POINTER(KnnParams)]),
    "gpuml_knn_ex": (ST, [P, P, P, POINTER(KnnParams), P, P, P, P]),
    "gpuml_knn_backward": (ST, [P, P, P, P, P, P, P]),
    # clustering (gpuml/cluster.h)
    "gpuml_oc_cluster_params_init_defaults": (None, [POINTER(OcClusterParams)]),
    "gpuml_oc_cluster": (ST, [P, P, P, P, P, POINTER(OcClusterParams), P, P, P, P]),
    "gpuml_cluster_eval_config_init_defaults": (None, [POINTER(ClusterEvalConfig)]),
    "gpuml_cluster_eval_create": (ST, [POINTER(ClusterEvalConfig), PP]),
    "gpuml_cluster_eval_destroy": (None, [P]),
    "gpuml_cluster_eval_add": (ST, [P, c_int64, c_void_p, c_void_p, c_void_p]),
    "gpuml_cluster_eval_get": (ST, [P, POINTER(ClusterEvalResult)]),
    "gpuml_clue_params_init_defaults": (None, [POINTER(ClueParams)]),
    "gpuml_clue_cluster": (ST, [c_int64, I, c_void_p, c_void_p, POINTER(ClueParams), c_void_p, POINTER(c_int)]),
    # graph ops (gpuml/graph.h)
    "gpuml_gravnet_aggregate": (ST, [P, P, P, P, F, I, P, P]),
    "gpuml_gravnet_aggregate_backward": (ST, [P, P, P, P, F, I, P, P, P, P, P, P]),
    "gpuml_edge_first_linear": (ST, [P, P, P, I, P, P, P]),
    "gpuml_neighbour_aggregate": (ST, [P, I, P, P, I, P, P]),
    "gpuml_edge_mask": (ST, [P, P, I, P]),
    "gpuml_batch_norm_params_init_defaults": (None, [POINTER(BatchNormParams)]),
    "gpuml_batch_norm": (ST, [P, POINTER(BatchNormParams), P, P, P, P, P, P, P, P, P]),
    # autograd
    "gpuml_tape_create": (ST, [P, PP]),
    "gpuml_tape_destroy": (None, [P]),
    "gpuml_tape_reset": (None, [P]),
    "gpuml_tape_set_grad_enabled": (None, [P, I]),
    "gpuml_tape_set_training": (None, [P, I]),
    "gpuml_var_value": (P, [P]),
    # models
    "gpuml_model_create": (ST, [P, c_char_p, PP]),
    "gpuml_model_destroy": (None, [P]),
    "gpuml_model_config": (c_char_p, [P]),
    "gpuml_model_init_params": (ST, [P, c_uint64]),
    "gpuml_model_num_inputs": (I, [P]),
    "gpuml_model_num_outputs": (I, [P]),
    "gpuml_model_input_info": (ST, [P, I, POINTER(c_char_p), I64P]),
    "gpuml_model_output_info": (ST, [P, I, POINTER(c_char_p), I64P, POINTER(I)]),
    "gpuml_model_num_params": (I, [P]),
    "gpuml_model_param_count": (c_int64, [P]),
    "gpuml_model_param": (ST, [P, I, POINTER(c_char_p), PP, PP, PP]),
    "gpuml_model_param_slab": (P, [P]),
    "gpuml_model_grad_slab": (P, [P]),
    "gpuml_model_zero_grad": (ST, [P]),
    "gpuml_model_num_buffers": (I, [P]),
    "gpuml_model_buffer": (ST, [P, I, POINTER(c_char_p), PP]),
    "gpuml_model_summary": (c_size_t, [P, c_char_p, c_size_t]),
    "gpuml_model_save": (ST, [P, c_char_p]),
    "gpuml_model_load": (ST, [P, c_char_p, PP]),
    "gpuml_model_load_weights": (ST, [P, c_char_p]),
    "gpuml_model_forward": (ST, [P, P, PP, P, PP]),
    # optimizers, checkpoints
    "gpuml_optim_config_init_defaults": (None, [POINTER(OptimConfig)]),
    "gpuml_optim_lr": (F, [P]),
    "gpuml_optim_num_steps": (c_int64, [P]),
    "gpuml_trainer_config_init_defaults": (None, [POINTER(TrainerConfig)]),
    "gpuml_trainer_create": (ST, [P, POINTER(TrainerConfig), PP]),
    "gpuml_trainer_destroy": (None, [P]),
    "gpuml_trainer_optim": (P, [P]),
    "gpuml_trainer_step": (ST, [P, PP, P, P, POINTER(StepStats)]),
    "gpuml_trainer_step_batch": (ST, [P, P, POINTER(StepStats)]),
    "gpuml_trainer_evaluate_batch": (ST, [P, P, POINTER(StepStats)]),
    "gpuml_checkpoint_save": (ST, [c_char_p, P, P, POINTER(TrainState)]),
    "gpuml_checkpoint_load": (ST, [c_char_p, P, P, POINTER(TrainState)]),
    # inference engine (gpuml/infer.h)
    "gpuml_engine_config_init_defaults": (None, [POINTER(EngineConfig)]),
    "gpuml_engine_create": (ST, [c_char_p, POINTER(EngineConfig), PP]),
    "gpuml_engine_create_from_model": (ST, [P, POINTER(EngineConfig), PP]),
    "gpuml_engine_shutdown": (ST, [P, I]),
    "gpuml_engine_destroy": (None, [P]),
    "gpuml_engine_request_init": (None, [POINTER(EngineRequest)]),
    "gpuml_engine_clock_us": (c_int64, []),
    "gpuml_engine_submit": (ST, [P, POINTER(EngineRequest), DONE_FN, P]),
    "gpuml_engine_run": (ST, [P, POINTER(EngineRequest)]),
    "gpuml_engine_run_direct": (ST, [P, POINTER(EngineRequest), P]),
    "gpuml_engine_model": (P, [P]),
    "gpuml_engine_get_config": (ST, [P, POINTER(EngineConfig)]),
    "gpuml_engine_get_stats": (ST, [P, POINTER(EngineStats)]),
    "gpuml_engine_get_instance_stats": (ST, [P, I, POINTER(EngineInstanceStats)]),
    "gpuml_engine_mem_usage": (ST, [P, POINTER(c_size_t), POINTER(c_size_t)]),
    "gpuml_engine_batch_histogram": (ST, [P, POINTER(c_uint64), I]),
    "gpuml_engine_reset_stats": (None, [P]),
    "gpuml_engine_last_error": (c_char_p, [P, c_char_p, c_size_t]),
    "gpuml_engine_fail_batch_after": (None, [P, c_long]),  # gpuml/testing.h: tests only, unstable
    # communicators, data parallel (gpuml/dist.h, ddp.h)
    "gpuml_comm_config_init_defaults": (None, [POINTER(CommConfig)]),
    "gpuml_comm_create": (ST, [POINTER(CommConfig), PP]),
    "gpuml_comm_destroy": (None, [P]),
    "gpuml_comm_rank": (I, [P]),
    "gpuml_comm_size": (I, [P]),
    "gpuml_comm_local_rank": (I, [P]),
    "gpuml_comm_local_size": (I, [P]),
    "gpuml_comm_get_backend": (I, [P]),
    "gpuml_comm_device": (Device, [P]),
    "gpuml_comm_status": (I, [P]),
    "gpuml_comm_set_timeout": (ST, [P, c_double]),
    "gpuml_comm_abort": (None, [P]),
    "gpuml_comm_shard_rows": (None, [c_int64, I, I, I64P, I64P]),
    "gpuml_comm_allreduce": (ST, [P, P, I, P, P]),
    "gpuml_comm_broadcast": (ST, [P, P, P, I]),
    "gpuml_comm_allgather": (ST, [P, P, P, P]),
    "gpuml_comm_barrier": (ST, [P]),
    "gpuml_ddp_config_init_defaults": (None, [POINTER(DdpConfig)]),
    "gpuml_ddp_create": (ST, [P, P, POINTER(DdpConfig), PP]),
    "gpuml_ddp_destroy": (None, [P]),
    "gpuml_ddp_num_buckets": (I, [P]),
    "gpuml_trainer_set_ddp": (None, [P, P]),
    # io
    "gpuml_strings_free": (None, [POINTER(Strings)]),
    "gpuml_file_verify": (ST, [c_char_p, POINTER(c_int)]),
    "gpuml_dataset_open": (ST, [c_char_p, PP]),
    "gpuml_dataset_close": (None, [P]),
    "gpuml_dataset_num_events": (c_int64, [P]),
    "gpuml_dataset_num_rows": (c_int64, [P]),
    "gpuml_dataset_num_fields": (I, [P]),
    "gpuml_dataset_field": (ST, [P, I, POINTER(FieldInfo)]),
    "gpuml_dataset_columns": (ST, [P, c_char_p, POINTER(Strings)]),
    "gpuml_dataset_read": (ST, [P, P, c_int64, c_int64, I, POINTER(c_char_p), PP, PP]),
    "gpuml_dataset_writer_create": (ST, [c_char_p, PP]),
    "gpuml_dataset_writer_add_field": (ST, [P, c_char_p, I, I, I64P, POINTER(c_char_p), I]),
    "gpuml_dataset_writer_append": (ST, [P, c_int64, PP]),
    "gpuml_dataset_writer_commit": (ST, [P]),
    "gpuml_dataset_writer_abort": (None, [P]),
    "gpuml_loader_config_init_defaults": (None, [POINTER(LoaderConfig)]),
    "gpuml_loader_create": (ST, [P, POINTER(LoaderConfig), PP]),
    "gpuml_loader_destroy": (None, [P]),
    "gpuml_loader_next": (ST, [P, PP]),
    "gpuml_loader_num_batches": (ST, [P, c_int64, I64P]),
    "gpuml_loader_get_position": (ST, [P, POINTER(LoaderPosition)]),
    "gpuml_loader_set_position": (ST, [P, POINTER(LoaderPosition)]),
    "gpuml_batch_num_events": (c_int64, [P]),
    "gpuml_batch_num_rows": (c_int64, [P]),
    "gpuml_batch_epoch": (c_int64, [P]),
    "gpuml_batch_index": (c_int64, [P]),
    "gpuml_batch_row_splits": (P, [P]),
    "gpuml_batch_field": (P, [P, I]),
    "gpuml_batch_event_ids": (I64P, [P]),
    "gpuml_batch_destroy": (None, [P]),
}


# Functions whose gpuml_status result is a value to read, not success or
# failure of the call: declared as int, without the raising errcheck.
STATUS_VALUES = {"gpuml_comm_status"}


class _Lib:
    """The loaded library: C functions as attributes (only those it exports)."""

    def __init__(self, path: str):
        self.path = path
        self.dll = ctypes.CDLL(path)
        self.missing = []
        for name, (res, args) in _PROTOS.items():
            self.declare(name, res, args)

    def declare(self, name, res, args):
        try:
            fn = getattr(self.dll, name)
        except AttributeError:
            self.missing.append(name)
            return
        fn.argtypes = args
        if res == ST:
            fn.restype = c_int
            fn.errcheck = _check
        else:
            fn.restype = res
        ints = tuple((i, t) for i, t in enumerate(args) if t in _INT_RANGES)
        setattr(self, name, _int_checked(fn, name, ints) if ints else fn)


def _int_checked(fn, name, ints):
    """fn, with its integer arguments range-checked before ctypes truncates
    them: the backstop behind the named checks at the package's call sites
    (which say which Python argument it was)."""
    def call(*a):
        for i, t in ints:
            v = a[i]
            if hasattr(v, "__index__") and not isinstance(v, bool):
                c_int_arg(v, f"#{i + 1} ({t.__name__})", name, t)
        return fn(*a)
    call.__name__ = name
    call.__wrapped__ = fn
    return call


def _check(status, fn, args):
    if status != 0:
        raise_for_status(status, lib.gpuml_last_error().decode("utf-8", "replace"), fn.__name__)
    return status


def need(*names: str) -> None:
    """Raise UnsupportedError unless the loaded library exports every name."""
    absent = [n for n in names if not hasattr(lib, n)]
    if absent:
        raise UnsupportedError(f"{', '.join(absent)} not in {lib.path} (library too old, or the part is "
                               "not built yet)")


def _candidates():
    env = os.environ.get("GPUML_LIBRARY")
    if env:
        p = Path(env)
        if p.is_dir():
            hits = sorted(p.glob("libgpuml.so*")) + sorted(p.glob("libgpuml/libgpuml.so*"))
            if not hits:
                raise OSError(f"GPUML_LIBRARY={env} is a directory without libgpuml.so")
            return [str(hits[0])], True
        return [env], True
    here = Path(__file__).resolve().parent
    out = [str(here / "_native" / "libgpuml.so")]
    out.append(str(here.parent.parent / "build" / "libgpuml" / "libgpuml.so"))
    found = ctypes.util.find_library("gpuml")
    if found:
        out.append(found)
    return out, False


def _load() -> _Lib:
    paths, explicit = _candidates()
    errors = []
    for p in paths:
        if explicit or os.path.exists(p) or "/" not in p:
            try:
                return _Lib(p)
            except OSError as e:
                errors.append(f"{p}: {e}")
                if explicit:
                    break
        else:
            errors.append(f"{p}: not found")
    raise ImportError("gpuml: cannot load libgpuml (set GPUML_LIBRARY to a built libgpuml.so, or "
                      "pip install the package, which builds and bundles it):\n  " + "\n  ".join(errors))


lib = _load()
