/*
 * gpuml/model.h - models built from a JSON description.
 *
 * A model is a DAG of named nodes. Each node has an op (a layer type), the
 * names of its inputs (model inputs or earlier nodes) and its attributes.
 * The same JSON builds the model in C, in Python and in the inference
 * engine, and is stored inside model files.
 *
 *     {
 *       "inputs":  [{"name": "hits", "features": 5}],
 *       "nodes": [
 *         {"name": "norm", "op": "layernorm", "inputs": ["hits"]},
 *         {"name": "d1",   "op": "linear",    "inputs": ["norm"], "out": 64},
 *         {"name": "a1",   "op": "elu",       "inputs": ["d1"]},
 *         {"name": "pool", "op": "global_pool", "inputs": ["a1"], "reduce": "mean"},
 *         {"name": "cls",  "op": "linear",    "inputs": ["pool"], "out": 2}
 *       ],
 *       "outputs": ["cls"]
 *     }
 *
 * Every value is per row ([N, C], rows = hits/particles of a ragged batch)
 * or per event ([B, C]); model inputs are per row, and the batch's
 * row_splits are given to every forward. Ops (attributes, defaults):
 *   linear        out, bias=true                      x W^T + b (PyTorch layout)
 *   layernorm     eps=1e-5, affine=true
 *   dropout       p
 *   relu, gelu, tanh, sigmoid, softplus, elu (alpha=1), leaky_relu (alpha=0.01)
 *   concat        (2+ inputs of the same kind)         along features
 *   add           (2+ inputs of one shape)             element-wise sum
 *   mul           (2 inputs; the second [.., C] or [.., 1]) element-wise product
 *   global_pool   reduce="mean"|"max"|"sum"            per row -> per event
 *   broadcast     (1 per-event input)                  per event -> per row
 *   softmax       log=false                            over the features
 *   standardize   (buffers center, scale, lower, upper, [F] each)
 *                 min(max((x - center) * scale, lower), upper) per column:
 *                 weaver's preprocess.json as a model op (gpuml.convert);
 *                 nan_to_zero=false: NaN results become 0 (weaver's
 *                 nan_to_num after the clipping)
 *   truncate      length                               every event keeps its
 *                 first `length` rows (weaver's var_length); later nodes on
 *                 its output run on the kept rows. All truncate nodes of a
 *                 model share one length; values from before and after one
 *                 cannot be mixed; per-row model outputs cannot follow one.
 *                 On CUDA it reads row_splits back (one synchronisation)
 * Graph layers (semantics in gpuml/graph.h):
 *   batchnorm     momentum=0.1, eps=1e-5               over rows; running stats
 *   gravnet       out, space, prop, k, alpha=10, exclude_self=false,
 *                 concat_input=false                   PyG GravNetConv
 *   edgeconv / dynamic_edgeconv   k, widths, aggr="max"|"mean",
 *                 exclude_self=false, batchnorm=true   PyG EdgeConv /
 *                 DynamicEdgeConv (edgeconv: inputs [coords, features])
 *                 knn_distance="exact"|"expanded" (also particlenet_block):
 *                 "expanded" ranks neighbours by weaver's float32
 *                 |a|^2 - 2a.b + |b|^2 (GPUML_KNN_DIST_EXPANDED, gpuml/knn.h)
 *   particlenet_block  (inputs [coords, features]) k, widths,
 *                 pad_neighbours=false                 ParticleNet's EdgeConv
 *                 block; pad_neighbours reproduces weaver's padded layout
 *                 for jets of at most k particles (inference only; see
 *                 libgpuml/nn/layers_graph.c and docs/convert.md) Unknown ops, missing or unknown attributes, unknown inputs,
 * cycles and feature mismatches are reported at build time with the node
 * and field named: "node 'd1': attribute 'out' must be a positive integer".
 *
 * Parameters live in one contiguous slab (and their gradients in another),
 * so the optimizer is one fused update and all-reduce works on slab
 * buckets. Non-trained state (batch-norm running statistics) lives in a
 * buffer slab.
 *
 * Threading: a model may be used by one thread at a time for training; for
 * inference several threads may run forwards concurrently on their own
 * contexts and tapes as long as nobody writes the parameters.
 */
#ifndef GPUML_MODEL_H
#define GPUML_MODEL_H

#include "gpuml/autograd.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct gpuml_model gpuml_model;

/* Build from a JSON string / file. The model's tensors live on ctx's
 * device; parameters are initialised with gpuml_model_init_params(seed 0). */
GPUML_API gpuml_status gpuml_model_create(gpuml_ctx *ctx, const char *json, gpuml_model **out);
GPUML_API gpuml_status gpuml_model_create_from_file(gpuml_ctx *ctx, const char *path, gpuml_model **out);
GPUML_API void gpuml_model_destroy(gpuml_model *m);

/* The context the model was created on (its tensors live on its device). */
GPUML_API gpuml_ctx *gpuml_model_ctx(const gpuml_model *m);

/* The model's JSON (normalised, with defaults filled in); owned by m. */
GPUML_API const char *gpuml_model_config(const gpuml_model *m);

/* PyTorch's default initialisation (Linear: U(-1/sqrt(in), 1/sqrt(in)) for
 * weight and bias; norms: gamma 1, beta 0), from the counter-based
 * generator with this seed: the same numbers on every device. */
GPUML_API gpuml_status gpuml_model_init_params(gpuml_model *m, uint64_t seed);

GPUML_API int gpuml_model_num_inputs(const gpuml_model *m);
GPUML_API int gpuml_model_num_outputs(const gpuml_model *m);
/* Name and feature count of input / output i (kind: 0 per row, 1 per event). */
GPUML_API gpuml_status gpuml_model_input_info(const gpuml_model *m, int i, const char **name, int64_t *features);
GPUML_API gpuml_status gpuml_model_output_info(const gpuml_model *m, int i, const char **name, int64_t *features,
                                               int *per_event);

/* ---- parameters and buffers ------------------------------------------- */
GPUML_API int gpuml_model_num_params(const gpuml_model *m);       /* tensors */
GPUML_API int64_t gpuml_model_param_count(const gpuml_model *m);  /* scalars */
/* Parameter i: name "layer.param" (e.g. "d1.weight"), value and gradient
 * views into the slabs (owned by m), and its var for use on a tape. */
GPUML_API gpuml_status gpuml_model_param(const gpuml_model *m, int i, const char **name, gpuml_tensor **value,
                                         gpuml_tensor **grad, gpuml_var **var);
GPUML_API gpuml_status gpuml_model_find_param(const gpuml_model *m, const char *name, gpuml_tensor **value,
                                              gpuml_tensor **grad);
/* Layer index of parameter i (the group reported to gradient hooks). */
GPUML_API int gpuml_model_param_layer(const gpuml_model *m, int i);
/* The slabs: all parameters / all gradients, [param_count] f32 each. */
GPUML_API gpuml_tensor *gpuml_model_param_slab(const gpuml_model *m);
GPUML_API gpuml_tensor *gpuml_model_grad_slab(const gpuml_model *m);
/* Offset of parameter i in the slabs (elements). */
GPUML_API int64_t gpuml_model_param_offset(const gpuml_model *m, int i);
GPUML_API gpuml_status gpuml_model_zero_grad(gpuml_model *m);

GPUML_API int gpuml_model_num_buffers(const gpuml_model *m);
GPUML_API gpuml_status gpuml_model_buffer(const gpuml_model *m, int i, const char **name, gpuml_tensor **value);
GPUML_API gpuml_tensor *gpuml_model_buffer_slab(const gpuml_model *m); /* NULL when there are none */

/* Table of layers: name, op, output shape ([N, C] / [B, C]), parameter
 * count; written into buf (NUL-terminated, truncated to size). Returns the
 * length the full text needs. */
GPUML_API size_t gpuml_model_summary(const gpuml_model *m, char *buf, size_t size);

/* ---- model files (HDF5, DESIGN.md section 7; docs/file_formats.md) --------
 * Root attributes format = "gpuml-model", format_version (2), gpuml_version,
 * config (the normalised JSON); the parameters as one slab with an index at
 * /weights/{values,index,names}, buffers likewise at /buffers, with
 * Fletcher32 checksums; a whole-file checksum in the HDF5 user block.
 * Written to a temporary name and renamed: a crash never leaves a
 * half-written file. Readable with h5py. Readers verify the whole-file
 * checksum before HDF5 parses the file (a mismatch is FORMAT naming the
 * file); a file without one (format_version 1 files, other tools) is read
 * with a WARN log, or refused when the context's require_checksum is set.
 * format_version 1 (one dataset per tensor) is still read. */
GPUML_API gpuml_status gpuml_model_save(const gpuml_model *m, const char *path);
/* Build the model stored in `path` on ctx's device and read its weights.
 * Every field is validated (format, version, config, each tensor's dtype and
 * shape; missing or extra weights are errors). */
GPUML_API gpuml_status gpuml_model_load(gpuml_ctx *ctx, const char *path, gpuml_model **out);
/* Read the weights and buffers of `path` into an existing model built from
 * the same config (the configs must be equal). */
GPUML_API gpuml_status gpuml_model_load_weights(gpuml_model *m, const char *path);

/* ---- forward ------------------------------------------------------------
 * inputs[i] is model input i ([N, F_i] f32 on the model's device),
 * row_splits the batch's [B+1] i64. outputs receives num_outputs vars of
 * the tape (valid until its reset). Gradients flow to the parameters when
 * the tape records; the tape's training flag selects batch-norm and dropout
 * behaviour. */
GPUML_API gpuml_status gpuml_model_forward(gpuml_model *m, gpuml_tape *tape, const gpuml_tensor *const *inputs,
                                           const gpuml_tensor *row_splits, gpuml_var **outputs);

#ifdef __cplusplus
}
#endif
#endif
