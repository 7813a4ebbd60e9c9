/*
 * gpuml/autograd.h - reverse-mode automatic differentiation.
 *
 * A tape records the ops run through it while gradients are enabled; every
 * value it produces is a gpuml_var (a tensor plus, after backward, its
 * gradient). All intermediates - values, gradients, saved state - live in
 * the tape's arena and are released in O(1) by gpuml_tape_reset, so a
 * training loop allocates nothing once warm.
 *
 *     gpuml_tape *tape;
 *     gpuml_tape_create(ctx, &tape);
 *     for (step = 0; step < n; step++) {
 *         gpuml_var *x, *h, *loss;
 *         gpuml_var_input(tape, batch_x, 0, &x);       // no gradient wanted
 *         gpuml_ad_linear(tape, x, w, b, &h);          // w, b: parameter vars
 *         gpuml_ad_unary(tape, GPUML_UNARY_RELU, 0, h, &h);
 *         gpuml_ad_mse(tape, h, target, &loss);
 *         gpuml_backward(tape, loss);                  // w, b grads += d loss
 *         ... optimizer step ...
 *         gpuml_tape_reset(tape);                      // all step memory back
 *     }
 *
 * Ownership: vars made by a tape belong to it and are invalid after
 * gpuml_tape_reset; parameter vars (gpuml_param_create, or a model's) are
 * persistent and may be used on any tape of the same context. Tensors given
 * to gpuml_var_input are not copied and must outlive the step.
 *
 * Gradients: gpuml_backward seeds d loss / d loss = 1 (loss must have one
 * element) or a caller-given seed, walks the tape in reverse, and ADDS into
 * parameter gradients (zero them between steps; gradient accumulation over
 * micro-batches is simply several backward calls). Gradients of non-parameter
 * vars are overwritten per backward.
 *
 * Threading: a tape is used by one thread at a time, like its context.
 */
#ifndef GPUML_AUTOGRAD_H
#define GPUML_AUTOGRAD_H

#include "gpuml/context.h"
#include "gpuml/graph.h"
#include "gpuml/knn.h"
#include "gpuml/ops.h"
#include "gpuml/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct gpuml_tape gpuml_tape;
typedef struct gpuml_var gpuml_var;

/* ---- tape -------------------------------------------------------------- */
GPUML_API gpuml_status gpuml_tape_create(gpuml_ctx *ctx, gpuml_tape **out);
GPUML_API void gpuml_tape_destroy(gpuml_tape *tape);
/* Forget every node and var of the step; keep the arena's memory. */
GPUML_API void gpuml_tape_reset(gpuml_tape *tape);
/* Off: ops compute values only (inference); nothing is recorded. Default on. */
GPUML_API void gpuml_tape_set_grad_enabled(gpuml_tape *tape, int enabled);
GPUML_API int gpuml_tape_grad_enabled(const gpuml_tape *tape);
/* Training mode for layers that differ (batch norm statistics, dropout).
 * Default on. */
GPUML_API void gpuml_tape_set_training(gpuml_tape *tape, int training);
GPUML_API int gpuml_tape_training(const gpuml_tape *tape);
GPUML_API gpuml_ctx *gpuml_tape_ctx(const gpuml_tape *tape);
/* Number of nodes recorded since the last reset. */
GPUML_API int gpuml_tape_num_nodes(const gpuml_tape *tape);
/* Bytes of arena memory in use since the last reset / held in total. */
GPUML_API size_t gpuml_tape_arena_used(const gpuml_tape *tape);
GPUML_API size_t gpuml_tape_arena_capacity(const gpuml_tape *tape);

/* A new tensor in the tape's arena (valid until reset): for temporaries of
 * custom code running alongside the tape. */
GPUML_API gpuml_status gpuml_tape_tensor(gpuml_tape *tape, gpuml_dtype dtype, int ndim, const int64_t *shape,
                                         gpuml_tensor **out);

/* Called when a parameter's gradient is final during gpuml_backward
 * (after the last node using it has been processed, in reverse order), and
 * at the end of backward for parameters the step did not use - so every
 * parameter is reported exactly once per backward. `group` is the value
 * given to gpuml_param_set_group (a model uses its layer index). */
typedef void (*gpuml_grad_hook)(void *user, gpuml_var *param, int group);
GPUML_API void gpuml_tape_set_grad_hook(gpuml_tape *tape, gpuml_grad_hook hook, void *user);
/* The full parameter set of this step (a model declares its own), so that
 * parameters the step did not use are still reported to the hook. The
 * array must stay valid until the next reset. */
GPUML_API void gpuml_tape_track_params(gpuml_tape *tape, gpuml_var *const *params, int n);

/* ---- vars -------------------------------------------------------------- */
/* Wrap a caller tensor as a leaf var (no copy). requires_grad != 0: its
 * gradient is computed and readable with gpuml_var_grad after backward. */
GPUML_API gpuml_status gpuml_var_input(gpuml_tape *tape, const gpuml_tensor *value, int requires_grad,
                                       gpuml_var **out);
/* The value (owned by the var; do not destroy). */
GPUML_API gpuml_tensor *gpuml_var_value(const gpuml_var *v);
/* The gradient after backward, NULL if none flowed to v. */
GPUML_API gpuml_tensor *gpuml_var_grad(const gpuml_var *v);
GPUML_API int gpuml_var_requires_grad(const gpuml_var *v);

/* A persistent parameter var over caller storage: value and grad are
 * tensors the caller (or a model's slabs) owns and keeps alive. */
GPUML_API gpuml_status gpuml_param_create(gpuml_tensor *value, gpuml_tensor *grad, gpuml_var **out);
GPUML_API void gpuml_param_destroy(gpuml_var *param);
GPUML_API void gpuml_param_set_group(gpuml_var *param, int group);
GPUML_API int gpuml_param_group(const gpuml_var *param);

/* ---- backward ---------------------------------------------------------- */
/* d loss / d everything on the tape. seed: gradient of `loss` (same shape),
 * or NULL for ones (loss must then have exactly one element). */
GPUML_API gpuml_status gpuml_backward(gpuml_tape *tape, gpuml_var *loss, const gpuml_tensor *seed);

/* ---- differentiable ops (shapes as in gpuml/ops.h) -------------------- */
GPUML_API gpuml_status gpuml_ad_unary(gpuml_tape *t, gpuml_unary_op op, float alpha, gpuml_var *x, gpuml_var **y);
GPUML_API gpuml_status gpuml_ad_binary(gpuml_tape *t, gpuml_binary_op op, gpuml_var *a, gpuml_var *b,
                                       gpuml_var **out);
GPUML_API gpuml_status gpuml_ad_scale(gpuml_tape *t, float alpha, gpuml_var *x, gpuml_var **y);
/* y = x + alpha (scalar). */
GPUML_API gpuml_status gpuml_ad_add_scalar(gpuml_tape *t, gpuml_var *x, float alpha, gpuml_var **y);
GPUML_API gpuml_status gpuml_ad_reduce(gpuml_tape *t, gpuml_reduce_op op, gpuml_var *x, int axis, int keepdim,
                                       gpuml_var **y);
/* Sum / mean of all elements: a one-element [1] var. */
GPUML_API gpuml_status gpuml_ad_sum_all(gpuml_tape *t, gpuml_var *x, gpuml_var **y);
GPUML_API gpuml_status gpuml_ad_mean_all(gpuml_tape *t, gpuml_var *x, gpuml_var **y);
GPUML_API gpuml_status gpuml_ad_softmax(gpuml_tape *t, gpuml_var *x, int take_log, gpuml_var **y);
GPUML_API gpuml_status gpuml_ad_matmul(gpuml_tape *t, gpuml_var *a, int trans_a, gpuml_var *b, int trans_b,
                                       gpuml_var **c);
/* bias may be NULL. */
GPUML_API gpuml_status gpuml_ad_linear(gpuml_tape *t, gpuml_var *x, gpuml_var *w, gpuml_var *bias, gpuml_var **y);
GPUML_API gpuml_status gpuml_ad_gather_rows(gpuml_tape *t, gpuml_var *x, const gpuml_tensor *idx, gpuml_var **y);
/* Per-event pooling over row_splits: [N, C] -> [B, C]; op SUM, MEAN or MAX. */
GPUML_API gpuml_status gpuml_ad_segment_reduce(gpuml_tape *t, gpuml_reduce_op op, gpuml_var *x,
                                               const gpuml_tensor *row_splits, gpuml_var **y);
GPUML_API gpuml_status gpuml_ad_concat(gpuml_tape *t, int n, gpuml_var *const *xs, gpuml_var **y);
/* Split the last axis into n pieces of the given widths. */
GPUML_API gpuml_status gpuml_ad_split(gpuml_tape *t, gpuml_var *x, int n, const int64_t *widths, gpuml_var **ys);
/* A view with another shape (same numel); gradients flow through. */
GPUML_API gpuml_status gpuml_ad_reshape(gpuml_tape *t, gpuml_var *x, int ndim, const int64_t *shape, gpuml_var **y);
/* Layer normalisation over the last axis with optional affine gamma/beta [C]. */
GPUML_API gpuml_status gpuml_ad_layernorm(gpuml_tape *t, gpuml_var *x, gpuml_var *gamma, gpuml_var *beta, float eps,
                                          gpuml_var **y);
/* Inverted dropout: zero with probability p, scale the rest by 1/(1-p), in
 * training mode only (identity otherwise). The mask comes from the
 * context's counter-based generator, so a run is reproducible. */
GPUML_API gpuml_status gpuml_ad_dropout(gpuml_tape *t, gpuml_var *x, float p, gpuml_var **y);

/* ---- losses (mean over rows unless stated) ---------------------------- */
/* mean((pred - target)^2) over all elements: a [1] var. */
GPUML_API gpuml_status gpuml_ad_mse(gpuml_tape *t, gpuml_var *pred, gpuml_var *target, gpuml_var **loss);
/* mean of the numerically stable binary cross-entropy of logits vs targets
 * in [0, 1] (same shape). pos_weight may be NULL ([C], weights positives). */
GPUML_API gpuml_status gpuml_ad_bce_logits(gpuml_tape *t, gpuml_var *logits, gpuml_var *target,
                                           const gpuml_tensor *pos_weight, gpuml_var **loss);
/* Cross-entropy of logits [N, C] against class labels [N] (i32 or i64; a
 * label outside [0, C) is ignored, e.g. -1), optional class weights [C]:
 * sum_i w[y_i] * nll_i / sum_i w[y_i], as PyTorch. */
GPUML_API gpuml_status gpuml_ad_cross_entropy(gpuml_tape *t, gpuml_var *logits, const gpuml_tensor *labels,
                                              const gpuml_tensor *class_weights, gpuml_var **loss);

/* ---- graph ops (gpuml/knn.h, gpuml/graph.h) --------------------------- */
/* A kNN graph built on a tape: idx [N, k] i32 and, when gradients are
 * recorded, its reverse adjacency (rowptr [N+1], col [N*k] i64), shared by
 * every op on the graph. Lives in the tape's arena. */
typedef struct gpuml_ad_graph {
    gpuml_tensor *idx;
    gpuml_tensor *rowptr, *col; /* NULL when nothing is recorded */
    const gpuml_tensor *row_splits;
} gpuml_ad_graph;

/* kNN of coords [N, D] within the events of row_splits; dist2 [N, k] is
 * differentiable with respect to coords. */
GPUML_API gpuml_status gpuml_ad_knn(gpuml_tape *t, gpuml_var *coords, const gpuml_tensor *row_splits, int k,
                                    float max_radius, gpuml_ad_graph **graph, gpuml_var **dist2);
/* gpuml_ad_knn with all of gpuml_knn_params (the distance among them; p
 * must not be NULL). */
GPUML_API gpuml_status gpuml_ad_knn_ex(gpuml_tape *t, gpuml_var *coords, const gpuml_tensor *row_splits,
                                       const gpuml_knn_params *p, gpuml_ad_graph **graph, gpuml_var **dist2);
/* [N, 2P] = [mean, max] of exp(-alpha dist2) h_j over the graph. */
GPUML_API gpuml_status gpuml_ad_gravnet_aggregate(gpuml_tape *t, gpuml_var *h, const gpuml_ad_graph *g,
                                                  gpuml_var *dist2, float alpha, int exclude_self, gpuml_var **out);
/* EdgeConv's first layer on every edge: [N, k_e, C]. bias may be NULL. */
GPUML_API gpuml_status gpuml_ad_edge_first_linear(gpuml_tape *t, gpuml_var *x, const gpuml_ad_graph *g,
                                                  int exclude_self, gpuml_var *w, gpuml_var *bias, gpuml_var **out);
/* Max or mean of edges [N, k_e, C] over each node's valid slots: [N, C]. */
GPUML_API gpuml_status gpuml_ad_neighbour_aggregate(gpuml_tape *t, gpuml_reduce_op op, gpuml_var *edges,
                                                    const gpuml_ad_graph *g, int exclude_self, gpuml_var **out);
/* Batch norm over the rows of x [..., C] (training / inference from the
 * tape's training flag); mask (may be NULL) excludes padding rows;
 * running_mean / running_var [C] are updated in training. gamma / beta may
 * be NULL. */
GPUML_API gpuml_status gpuml_ad_batch_norm(gpuml_tape *t, gpuml_var *x, const gpuml_tensor *mask, gpuml_var *gamma,
                                           gpuml_var *beta, gpuml_tensor *running_mean, gpuml_tensor *running_var,
                                           float momentum, float eps, gpuml_var **y);
/* relu(batch_norm(x)) in one op: the same statistics and running update;
 * the backward recomputes the ReLU gate from x, so the tape keeps x and y
 * but no intermediate. */
GPUML_API gpuml_status gpuml_ad_batch_norm_relu(gpuml_tape *t, gpuml_var *x, const gpuml_tensor *mask,
                                                gpuml_var *gamma, gpuml_var *beta, gpuml_tensor *running_mean,
                                                gpuml_tensor *running_var, float momentum, float eps, gpuml_var **y);
/* EdgeConv's last step in one op: out [n, C] = op (SUM or MEAN) over each
 * node's valid edge slots of relu(batch_norm(x)), x [n, k_e, C] edges, mask
 * [n, k_e] (gpuml_edge_mask; padding slots are out of the statistics and
 * the aggregation). Equal bit for bit to gpuml_ad_batch_norm_relu followed
 * by gpuml_ad_neighbour_aggregate, without the [n, k_e, C] output or its
 * gradient ever being stored. */
GPUML_API gpuml_status gpuml_ad_batch_norm_relu_aggregate(gpuml_tape *t, gpuml_reduce_op op, gpuml_var *x,
                                                          const gpuml_tensor *mask, gpuml_var *gamma,
                                                          gpuml_var *beta, gpuml_tensor *running_mean,
                                                          gpuml_tensor *running_var, float momentum, float eps,
                                                          gpuml_var **y);

/* Object condensation loss (gpuml/ops.h): beta [N] or [N, 1], coords
 * [N, D] vars; truth [N] i32 and row_splits tensors kept by reference until
 * the step ends. components [3] (may be NULL) receives L_V, L_beta and
 * L_noise for logging. */
GPUML_API gpuml_status gpuml_ad_object_condensation(gpuml_tape *t, gpuml_var *beta, gpuml_var *coords,
                                                    const gpuml_tensor *truth, const gpuml_tensor *row_splits,
                                                    const gpuml_oc_params *params, gpuml_var **loss,
                                                    gpuml_tensor *components);

#ifdef __cplusplus
}
#endif
#endif
