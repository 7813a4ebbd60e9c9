/*
 * gpuml/ops.h - tensor operations and their backward functions.
 *
 * Every op takes a context, reads its inputs and writes caller-allocated
 * outputs of the documented shape; all tensors must live on the context's
 * device. Arithmetic ops work on f32 unless stated otherwise. Work is
 * enqueued on the context's stream; on the CPU it runs on the context's
 * OpenMP threads with results independent of the thread count.
 *
 *     // y = relu(x W^T + b)
 *     gpuml_linear(ctx, x, w, b, y);       // x [N, in], w [out, in], b [out]
 *     gpuml_relu(ctx, y, y);               // in place is allowed for unary ops
 *
 * Backward functions compute input gradients from the output gradient; they
 * overwrite their outputs unless an `accumulate` flag says otherwise. A NULL
 * gradient output means "not needed" and is skipped.
 *
 * On error nothing is written and the status names the problem
 * (SHAPE, DTYPE, DEVICE_MISMATCH, INVALID_ARGUMENT, OUT_OF_MEMORY, ...).
 */
#ifndef GPUML_OPS_H
#define GPUML_OPS_H

#include "gpuml/context.h"
#include "gpuml/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- element-wise unary ----------------------------------------------- */
typedef enum gpuml_unary_op {
    GPUML_UNARY_NEG = 0,
    GPUML_UNARY_ABS,
    GPUML_UNARY_EXP,
    GPUML_UNARY_LOG,
    GPUML_UNARY_SQRT,
    GPUML_UNARY_RSQRT,
    GPUML_UNARY_RELU,
    GPUML_UNARY_LEAKY_RELU, /* x >= 0 ? x : alpha*x (default alpha 0.01)      */
    GPUML_UNARY_ELU,        /* x > 0 ? x : alpha*(exp(x)-1) (default 1)       */
    GPUML_UNARY_GELU,       /* exact: x*Phi(x), Phi the normal cdf (erf form) */
    GPUML_UNARY_TANH,
    GPUML_UNARY_SIGMOID,
    GPUML_UNARY_SOFTPLUS,   /* log(1+exp(x)), linear above x > 20 as PyTorch  */
    GPUML_UNARY_NAN_TO_ZERO, /* NaN -> 0, else x (weaver's preprocessing)     */
    GPUML_UNARY_COUNT_
} gpuml_unary_op;

GPUML_API const char *gpuml_unary_op_name(gpuml_unary_op op);

/* y = f(x) for every element; x, y f32 of equal shape; y may be x. alpha is
 * used by LEAKY_RELU and ELU only. */
GPUML_API gpuml_status gpuml_unary(gpuml_ctx *ctx, gpuml_unary_op op, float alpha,
                                   const gpuml_tensor *x, gpuml_tensor *y);
/* gx = gy * f'(x). x is the forward input (all four tensors the same shape);
 * gx may alias gy. Derivative conventions at kinks follow PyTorch
 * (relu'(0) = 0, abs'(0) = 0). */
GPUML_API gpuml_status gpuml_unary_backward(gpuml_ctx *ctx, gpuml_unary_op op, float alpha,
                                            const gpuml_tensor *x, const gpuml_tensor *gy,
                                            gpuml_tensor *gx);

/* Named shorthands for gpuml_unary with default alpha. */
GPUML_API gpuml_status gpuml_neg(gpuml_ctx *ctx, const gpuml_tensor *x, gpuml_tensor *y);
GPUML_API gpuml_status gpuml_abs(gpuml_ctx *ctx, const gpuml_tensor *x, gpuml_tensor *y);
GPUML_API gpuml_status gpuml_exp(gpuml_ctx *ctx, const gpuml_tensor *x, gpuml_tensor *y);
GPUML_API gpuml_status gpuml_log(gpuml_ctx *ctx, const gpuml_tensor *x, gpuml_tensor *y);
GPUML_API gpuml_status gpuml_sqrt(gpuml_ctx *ctx, const gpuml_tensor *x, gpuml_tensor *y);
GPUML_API gpuml_status gpuml_rsqrt(gpuml_ctx *ctx, const gpuml_tensor *x, gpuml_tensor *y);
GPUML_API gpuml_status gpuml_relu(gpuml_ctx *ctx, const gpuml_tensor *x, gpuml_tensor *y);
GPUML_API gpuml_status gpuml_leaky_relu(gpuml_ctx *ctx, float alpha, const gpuml_tensor *x, gpuml_tensor *y);
GPUML_API gpuml_status gpuml_elu(gpuml_ctx *ctx, float alpha, const gpuml_tensor *x, gpuml_tensor *y);
GPUML_API gpuml_status gpuml_gelu(gpuml_ctx *ctx, const gpuml_tensor *x, gpuml_tensor *y);
GPUML_API gpuml_status gpuml_tanh(gpuml_ctx *ctx, const gpuml_tensor *x, gpuml_tensor *y);
GPUML_API gpuml_status gpuml_sigmoid(gpuml_ctx *ctx, const gpuml_tensor *x, gpuml_tensor *y);
GPUML_API gpuml_status gpuml_softplus(gpuml_ctx *ctx, const gpuml_tensor *x, gpuml_tensor *y);

/* ---- element-wise binary with broadcasting ----------------------------
 * NumPy broadcasting: shapes are aligned at the last dimension and a
 * dimension of size 1 (or a missing leading one) stretches; out has the
 * broadcast shape. Typical uses: [N, C] op [C] (per column), [N, C] op
 * [N, 1] (per row), [N, C] op [1] (scalar). out may alias a or b when it has
 * that input's shape. */
typedef enum gpuml_binary_op {
    GPUML_BINARY_ADD = 0,
    GPUML_BINARY_SUB,
    GPUML_BINARY_MUL,
    GPUML_BINARY_DIV,
    GPUML_BINARY_MAXIMUM, /* NaN propagates; ties split the gradient in half */
    GPUML_BINARY_MINIMUM,
    GPUML_BINARY_COUNT_
} gpuml_binary_op;

GPUML_API const char *gpuml_binary_op_name(gpuml_binary_op op);

GPUML_API gpuml_status gpuml_binary(gpuml_ctx *ctx, gpuml_binary_op op, const gpuml_tensor *a,
                                    const gpuml_tensor *b, gpuml_tensor *out);
/* ga (shape of a) and gb (shape of b) from gout (shape of out); broadcast
 * dimensions are summed in a fixed order. Either output may be NULL. */
GPUML_API gpuml_status gpuml_binary_backward(gpuml_ctx *ctx, gpuml_binary_op op,
                                             const gpuml_tensor *a, const gpuml_tensor *b,
                                             const gpuml_tensor *gout, gpuml_tensor *ga,
                                             gpuml_tensor *gb);

GPUML_API gpuml_status gpuml_add(gpuml_ctx *ctx, const gpuml_tensor *a, const gpuml_tensor *b, gpuml_tensor *out);
GPUML_API gpuml_status gpuml_sub(gpuml_ctx *ctx, const gpuml_tensor *a, const gpuml_tensor *b, gpuml_tensor *out);
GPUML_API gpuml_status gpuml_mul(gpuml_ctx *ctx, const gpuml_tensor *a, const gpuml_tensor *b, gpuml_tensor *out);
GPUML_API gpuml_status gpuml_div(gpuml_ctx *ctx, const gpuml_tensor *a, const gpuml_tensor *b, gpuml_tensor *out);
GPUML_API gpuml_status gpuml_maximum(gpuml_ctx *ctx, const gpuml_tensor *a, const gpuml_tensor *b, gpuml_tensor *out);
GPUML_API gpuml_status gpuml_minimum(gpuml_ctx *ctx, const gpuml_tensor *a, const gpuml_tensor *b, gpuml_tensor *out);

/* Sum `gin` (any shape broadcastable to it... i.e. the broadcast shape) down
 * to the shape of `out` by adding over stretched dimensions, in a fixed
 * order. The reverse of broadcasting. */
GPUML_API gpuml_status gpuml_sum_to_shape(gpuml_ctx *ctx, const gpuml_tensor *gin, gpuml_tensor *out);

/* y = alpha * x (f32, equal shapes; y may be x). */
GPUML_API gpuml_status gpuml_scale(gpuml_ctx *ctx, float alpha, const gpuml_tensor *x, gpuml_tensor *y);
/* y = alpha * x + y (f32, equal shapes). */
GPUML_API gpuml_status gpuml_axpy(gpuml_ctx *ctx, float alpha, const gpuml_tensor *x, gpuml_tensor *y);
/* Set every element of t to value, converted to t's dtype (any dtype). */
GPUML_API gpuml_status gpuml_fill(gpuml_ctx *ctx, gpuml_tensor *t, double value);
/* Convert element-wise between any two dtypes (equal numel). Floats to
 * integers truncate toward zero (NaN -> 0, out of range saturates); to
 * f16/bf16 rounds to nearest even; to bool: x != 0. */
GPUML_API gpuml_status gpuml_cast(gpuml_ctx *ctx, const gpuml_tensor *x, gpuml_tensor *y);

/* ---- reductions along one axis -----------------------------------------
 * out has x's shape with `axis` removed (or kept with size 1: both are
 * accepted). axis < 0 counts from the end. Sums accumulate in double in
 * index order. MAX/MIN propagate NaN; argidx (i64, out's shape, may be
 * NULL) receives the first index of the extreme value. An empty axis gives
 * sum 0, mean NaN, max -inf, min +inf, argidx -1. */
typedef enum gpuml_reduce_op {
    GPUML_REDUCE_SUM = 0,
    GPUML_REDUCE_MEAN,
    GPUML_REDUCE_MAX,
    GPUML_REDUCE_MIN,
    GPUML_REDUCE_COUNT_
} gpuml_reduce_op;

GPUML_API gpuml_status gpuml_reduce(gpuml_ctx *ctx, gpuml_reduce_op op, const gpuml_tensor *x,
                                    int axis, gpuml_tensor *out, gpuml_tensor *argidx);
/* gx (shape of x) from gout (shape of out). MAX/MIN need the forward argidx
 * and route each gradient to that index only. */
GPUML_API gpuml_status gpuml_reduce_backward(gpuml_ctx *ctx, gpuml_reduce_op op, int axis,
                                             const gpuml_tensor *gout, const gpuml_tensor *argidx,
                                             gpuml_tensor *gx);

GPUML_API gpuml_status gpuml_sum(gpuml_ctx *ctx, const gpuml_tensor *x, int axis, gpuml_tensor *out);
GPUML_API gpuml_status gpuml_mean(gpuml_ctx *ctx, const gpuml_tensor *x, int axis, gpuml_tensor *out);
GPUML_API gpuml_status gpuml_max(gpuml_ctx *ctx, const gpuml_tensor *x, int axis, gpuml_tensor *out, gpuml_tensor *argidx);
GPUML_API gpuml_status gpuml_min(gpuml_ctx *ctx, const gpuml_tensor *x, int axis, gpuml_tensor *out, gpuml_tensor *argidx);

/* Softmax / log-softmax over the last axis (max-subtracted). x, y equal
 * shape f32, y may be x. Backward takes the forward OUTPUT y. */
GPUML_API gpuml_status gpuml_softmax(gpuml_ctx *ctx, const gpuml_tensor *x, gpuml_tensor *y);
GPUML_API gpuml_status gpuml_log_softmax(gpuml_ctx *ctx, const gpuml_tensor *x, gpuml_tensor *y);
GPUML_API gpuml_status gpuml_softmax_backward(gpuml_ctx *ctx, const gpuml_tensor *y,
                                              const gpuml_tensor *gy, gpuml_tensor *gx);
GPUML_API gpuml_status gpuml_log_softmax_backward(gpuml_ctx *ctx, const gpuml_tensor *y,
                                                  const gpuml_tensor *gy, gpuml_tensor *gx);

/* ---- matrix products (CBLAS on the CPU, cuBLAS on CUDA) ---------------
 * c = alpha * op(a) op(b) + beta * c, op = transpose when the flag is set.
 * 2-D: a [M, K] ([K, M] if trans_a), b [K, N] ([N, K] if trans_b), c [M, N].
 * Batched: a [B, M, K], c [B, M, N], and b [B, K, N] or a shared 2-D b.
 * With beta == 0, c's prior contents are ignored (NaN does not leak). */
GPUML_API gpuml_status gpuml_matmul(gpuml_ctx *ctx, const gpuml_tensor *a, int trans_a,
                                    const gpuml_tensor *b, int trans_b, gpuml_tensor *c);
GPUML_API gpuml_status gpuml_matmul_ex(gpuml_ctx *ctx, float alpha, const gpuml_tensor *a,
                                       int trans_a, const gpuml_tensor *b, int trans_b, float beta,
                                       gpuml_tensor *c);
/* Gradients of c = op(a) op(b): ga (a's shape), gb (b's shape; for a shared
 * 2-D b summed over the batch). accumulate != 0 adds into ga/gb. */
GPUML_API gpuml_status gpuml_matmul_backward(gpuml_ctx *ctx, const gpuml_tensor *a, int trans_a,
                                             const gpuml_tensor *b, int trans_b,
                                             const gpuml_tensor *gc, gpuml_tensor *ga,
                                             gpuml_tensor *gb, int accumulate);

/* y = x W^T + bias: x [N, in], w [out, in] (PyTorch layout), bias [out] or
 * NULL, y [N, out]. */
GPUML_API gpuml_status gpuml_linear(gpuml_ctx *ctx, const gpuml_tensor *x, const gpuml_tensor *w,
                                    const gpuml_tensor *bias, gpuml_tensor *y);
/* gx [N, in] (overwritten), gw [out, in] and gbias [out] (added to when
 * accumulate != 0, else overwritten). Any output may be NULL. */
GPUML_API gpuml_status gpuml_linear_backward(gpuml_ctx *ctx, const gpuml_tensor *x,
                                             const gpuml_tensor *w, const gpuml_tensor *gy,
                                             gpuml_tensor *gx, gpuml_tensor *gw,
                                             gpuml_tensor *gbias, int accumulate);

/* ---- rows: gather, scatter, segments, concat ---------------------------
 * Row tensors are [N, ...] (any trailing shape; one "row" is everything
 * after axis 0). Index tensors are i32 or i64. */

/* out[i] = x[idx[i]]; an index outside [0, N) gives a zero row (so -1 can
 * mark padding). x [N, ...], idx [M], out [M, ...]. */
GPUML_API gpuml_status gpuml_gather_rows(gpuml_ctx *ctx, const gpuml_tensor *x,
                                         const gpuml_tensor *idx, gpuml_tensor *out);
/* out[idx[i]] += src[i] for every i, summed per target row in ascending i
 * (deterministic, no atomics). Indices outside [0, N) are skipped.
 * src [M, ...], idx [M], out [N, ...]. Backward of gather_rows. */
GPUML_API gpuml_status gpuml_scatter_add_rows(gpuml_ctx *ctx, const gpuml_tensor *src,
                                              const gpuml_tensor *idx, gpuml_tensor *out);

/* CSR of an index array, the reverse adjacency of a graph: for every target
 * t in [0, T), col[rowptr[t] .. rowptr[t+1]-1] lists the flat positions i
 * of idx with idx[i] == t, in ascending order; indices outside [0, T) (such
 * as -1 padding) are skipped. Deterministic on every backend (the CUDA
 * build sorts (target, position) pairs with a stable radix sort; no atomics). idx: any shape, i32 or i64, M elements;
 * rowptr [T+1] i64; col [M] i64 (entries past rowptr[T] are not written).
 * Used by backward passes to gather contributions without atomics: for a
 * kNN graph idx [N, k], position i = m*k + slot is the edge (m -> idx[i]). */
GPUML_API gpuml_status gpuml_index_csr(gpuml_ctx *ctx, const gpuml_tensor *idx, gpuml_tensor *rowptr,
                                       gpuml_tensor *col);

/* Per-event reduction of a ragged batch: x [N, C] f32, row_splits [B+1]
 * i64 (event b owns rows row_splits[b] .. row_splits[b+1]-1), out [B, C].
 * MAX fills argidx [B, C] i64 (global row of the first maximum, -1 for an
 * empty event); an empty event gives 0 for every op. MIN is not offered. */
GPUML_API gpuml_status gpuml_segment_reduce(gpuml_ctx *ctx, gpuml_reduce_op op,
                                            const gpuml_tensor *x, const gpuml_tensor *row_splits,
                                            gpuml_tensor *out, gpuml_tensor *argidx);
/* gx [N, C] from gout [B, C]. */
GPUML_API gpuml_status gpuml_segment_reduce_backward(gpuml_ctx *ctx, gpuml_reduce_op op,
                                                     const gpuml_tensor *row_splits,
                                                     const gpuml_tensor *gout,
                                                     const gpuml_tensor *argidx, gpuml_tensor *gx);

/* Event index of every row: ids [N] i32 with ids[r] = b for
 * row_splits[b] <= r < row_splits[b+1]. Gathering a per-event [B, C] tensor
 * with ids broadcasts it back to the rows. */
GPUML_API gpuml_status gpuml_segment_ids(gpuml_ctx *ctx, const gpuml_tensor *row_splits, gpuml_tensor *ids);

/* Concatenate n tensors along the last axis: xs[i] [..., C_i] (same leading
 * shape, same dtype) into out [..., sum C_i]. split is the inverse and the
 * backward of concat (and vice versa). */
GPUML_API gpuml_status gpuml_concat(gpuml_ctx *ctx, int n, const gpuml_tensor *const *xs,
                                    gpuml_tensor *out);
GPUML_API gpuml_status gpuml_split(gpuml_ctx *ctx, const gpuml_tensor *x, int n,
                                   gpuml_tensor *const *outs);

/* ---- normalisation, dropout -------------------------------------------- */
/* y = a * x + b element-wise (f32, equal shapes; y may be x). */
GPUML_API gpuml_status gpuml_affine(gpuml_ctx *ctx, float a, const gpuml_tensor *x, float b, gpuml_tensor *y);

/* Layer norm over the last axis: x, y [..., C]; gamma, beta [C] or NULL;
 * mean, rstd [rows] f32 (rows = numel / C) saved for the backward. */
GPUML_API gpuml_status gpuml_layernorm(gpuml_ctx *ctx, const gpuml_tensor *x, const gpuml_tensor *gamma,
                                       const gpuml_tensor *beta, float eps, gpuml_tensor *y, gpuml_tensor *mean,
                                       gpuml_tensor *rstd);
/* gx (overwritten), ggamma / gbeta [C] (added to when accumulate != 0);
 * any may be NULL. */
GPUML_API gpuml_status gpuml_layernorm_backward(gpuml_ctx *ctx, const gpuml_tensor *x, const gpuml_tensor *gamma,
                                                const gpuml_tensor *gy, const gpuml_tensor *mean,
                                                const gpuml_tensor *rstd, gpuml_tensor *gx, gpuml_tensor *ggamma,
                                                gpuml_tensor *gbeta, int accumulate);

/* Inverted dropout with probability p in [0, 1): the mask comes from the
 * context's generator; *counter receives the generator position used, which
 * the backward needs (with the same seed) to regenerate the mask. */
GPUML_API gpuml_status gpuml_dropout(gpuml_ctx *ctx, float p, const gpuml_tensor *x, gpuml_tensor *y,
                                     uint64_t *counter);
GPUML_API gpuml_status gpuml_dropout_backward(gpuml_ctx *ctx, float p, uint64_t seed, uint64_t counter,
                                              const gpuml_tensor *gy, gpuml_tensor *gx);

/* ---- loss terms (per element / per row; reduce them as you need) ------ */
/* out = binary cross-entropy of logits x against targets y (equal shapes
 * [..., C]), stable for large |x|; pos_weight [C] or NULL (PyTorch's
 * BCEWithLogitsLoss pos_weight). Backward: gx = gout * d out / d x. */
GPUML_API gpuml_status gpuml_bce_logits(gpuml_ctx *ctx, const gpuml_tensor *x, const gpuml_tensor *y,
                                        const gpuml_tensor *pos_weight, gpuml_tensor *out);
GPUML_API gpuml_status gpuml_bce_logits_backward(gpuml_ctx *ctx, const gpuml_tensor *x, const gpuml_tensor *y,
                                                 const gpuml_tensor *pos_weight, const gpuml_tensor *gout,
                                                 gpuml_tensor *gx);
/* nll [N] = logsumexp(logits[i]) - logits[i, label_i] for logits [N, C],
 * labels [N] i32/i64 (a label outside [0, C) gives 0); lse [N] saved for
 * the backward: gx[i] = gnll[i] * (softmax(logits[i]) - onehot(label_i)). */
GPUML_API gpuml_status gpuml_cross_entropy(gpuml_ctx *ctx, const gpuml_tensor *logits, const gpuml_tensor *labels,
                                           gpuml_tensor *nll, gpuml_tensor *lse);
GPUML_API gpuml_status gpuml_cross_entropy_backward(gpuml_ctx *ctx, const gpuml_tensor *logits,
                                                    const gpuml_tensor *labels, const gpuml_tensor *lse,
                                                    const gpuml_tensor *gnll, gpuml_tensor *gx);

/* ---- object condensation (Kieseler 2020, arXiv:2002.03605) ------------
 * beta [N] (or [N, 1]) f32 in [0, 1] (a sigmoid output), coords [N, D] f32
 * learned cluster space, truth [N] i32 object index within the event (-1
 * for noise, else < max_objects), row_splits [B+1] i64. The loss [1] is the
 * mean over non-empty events of L_V (attraction to the own object's
 * condensation point, repulsion within distance 1 from the others, weighted
 * by the charges q = atanh^2(beta / 1.002) + q_min) + L_beta (mean over
 * objects of 1 - beta of the condensation point) + L_noise (s_B times the
 * mean beta of noise). components [3] (may be NULL) receives those three
 * means; alpha [B, max_objects] i64 (condensation point rows, -1 for absent
 * objects) and stats [B, 6] f32 are outputs the backward needs. The
 * condensation point of an object is its member with the largest beta, the
 * first on ties. See kernels/condensation.h for the formulas. */
typedef struct gpuml_oc_params {
    float q_min;         /* default 0.1 */
    float s_b;           /* noise suppression weight, default 1 */
    int64_t max_objects; /* objects per event (truth ids < this); required */
} gpuml_oc_params;
GPUML_API void gpuml_oc_params_init_defaults(gpuml_oc_params *p);
GPUML_API gpuml_status gpuml_object_condensation(gpuml_ctx *ctx, const gpuml_tensor *beta, const gpuml_tensor *coords,
                                                 const gpuml_tensor *truth, const gpuml_tensor *row_splits,
                                                 const gpuml_oc_params *params, gpuml_tensor *loss,
                                                 gpuml_tensor *components, gpuml_tensor *alpha, gpuml_tensor *stats);
/* gloss [1] is the upstream gradient; gbeta (beta's shape) and gcoords
 * [N, D] are overwritten (either may be NULL). */
GPUML_API gpuml_status gpuml_object_condensation_backward(gpuml_ctx *ctx, const gpuml_tensor *beta,
                                                          const gpuml_tensor *coords, const gpuml_tensor *truth,
                                                          const gpuml_tensor *row_splits,
                                                          const gpuml_oc_params *params, const gpuml_tensor *alpha,
                                                          const gpuml_tensor *stats, const gpuml_tensor *gloss,
                                                          gpuml_tensor *gbeta, gpuml_tensor *gcoords);

/* ---- random ------------------------------------------------------------
 * Fill an f32 tensor from the context's counter-based generator (same
 * numbers on every backend and thread count). */
GPUML_API gpuml_status gpuml_rand_uniform(gpuml_ctx *ctx, gpuml_tensor *t, float lo, float hi);
GPUML_API gpuml_status gpuml_rand_normal(gpuml_ctx *ctx, gpuml_tensor *t, float mean, float std);

#ifdef __cplusplus
}
#endif
#endif
