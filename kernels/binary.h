/* kernels/binary.h - element-wise binary ops with broadcasting, and the
 * reverse of broadcasting (sum over stretched dimensions).
 * Op numbers are gpuml_binary_op (gpuml/ops.h). */
#ifndef GPUML_KERNELS_BINARY_H
#define GPUML_KERNELS_BINARY_H

#include "common.h"
#include "gpuml/ops.h"

#define GPUML_K_BCAST_DIMS 8

/* Output shape after merging adjacent dimensions that broadcast alike, with
 * each input's element stride per output dimension (0 where it stretches).
 * Built on the host by the op layer; passed by value to CUDA kernels. */
typedef struct gpuml_k_bcast {
    int ndim;
    int64_t shape[GPUML_K_BCAST_DIMS];
    int64_t sa[GPUML_K_BCAST_DIMS];
    int64_t sb[GPUML_K_BCAST_DIMS];
} gpuml_k_bcast;

/* Offsets into a and b of output element i. */
GPUML_HD static inline void gpuml_k_bcast_offsets(const gpuml_k_bcast *bc, int64_t i, int64_t *oa, int64_t *ob)
{
    int64_t a = 0, b = 0;
    for (int d = bc->ndim - 1; d >= 0; d--) {
        int64_t q = i / bc->shape[d];
        int64_t r = i - q * bc->shape[d];
        a += r * bc->sa[d];
        b += r * bc->sb[d];
        i = q;
    }
    *oa = a;
    *ob = b;
}

GPUML_HD static inline float gpuml_k_binary(int op, float a, float b)
{
    switch (op) {
    case GPUML_BINARY_ADD: return a + b;
    case GPUML_BINARY_SUB: return a - b;
    case GPUML_BINARY_MUL: return a * b;
    case GPUML_BINARY_DIV: return a / b;
    /* NaN in either input propagates (unlike fmaxf / fminf). */
    case GPUML_BINARY_MAXIMUM: return (a > b || a != a) ? a : b;
    case GPUML_BINARY_MINIMUM: return (a < b || a != a) ? a : b;
    default: return NAN;
    }
}

/* Gradients of out = op(a, b) for upstream g. Ties of maximum / minimum split
 * the gradient in half, as PyTorch does. */
GPUML_HD static inline void gpuml_k_binary_grad(int op, float a, float b, float g, float *ga, float *gb)
{
    switch (op) {
    case GPUML_BINARY_ADD: *ga = g; *gb = g; return;
    case GPUML_BINARY_SUB: *ga = g; *gb = -g; return;
    case GPUML_BINARY_MUL: *ga = g * b; *gb = g * a; return;
    case GPUML_BINARY_DIV: *ga = g / b; *gb = -g * a / (b * b); return;
    case GPUML_BINARY_MAXIMUM:
        if (a == b) { *ga = 0.5f * g; *gb = 0.5f * g; }
        else { *ga = a < b ? 0.0f : g; *gb = b < a ? 0.0f : g; }
        return;
    case GPUML_BINARY_MINIMUM:
        if (a == b) { *ga = 0.5f * g; *gb = 0.5f * g; }
        else { *ga = a > b ? 0.0f : g; *gb = b > a ? 0.0f : g; }
        return;
    default: *ga = NAN; *gb = NAN; return;
    }
}

/* y = alpha x + beta y; beta == 0 ignores y (so NaN or Inf left in y does
 * not leak into the result). */
GPUML_HD static inline float gpuml_k_axpby(float alpha, float x, float beta, float y)
{
    return beta == 0.0f ? alpha * x : fmaf(alpha, x, beta * y);
}

/* y = a x + b with scalars a and b. */
GPUML_HD static inline float gpuml_k_affine(float a, float x, float b) { return fmaf(a, x, b); }

/* Reduction of a broadcast-shaped tensor back to a smaller shape: the output
 * element j sums the inputs over all "reduced" dimensions, in row-major
 * order of those dimensions, accumulating in double. */
typedef struct gpuml_k_sumto {
    int nkeep, nred;
    int64_t keep_shape[GPUML_K_BCAST_DIMS];  /* kept dims, outermost first   */
    int64_t keep_stride[GPUML_K_BCAST_DIMS]; /* their stride in the input    */
    int64_t red_shape[GPUML_K_BCAST_DIMS];
    int64_t red_stride[GPUML_K_BCAST_DIMS];
    int64_t red_count;                       /* product of red_shape         */
} gpuml_k_sumto;

/* Offset of the i-th element, row-major over nd dims of shape, in memory
 * laid out by stride. */
GPUML_HD static inline int64_t gpuml_k_unravel(int nd, const int64_t *shape, const int64_t *stride, int64_t i)
{
    int64_t off = 0;
    for (int d = nd - 1; d >= 0; d--) {
        int64_t q = i / shape[d];
        off += (i - q * shape[d]) * stride[d];
        i = q;
    }
    return off;
}

/* Offset in the input of output element j (its kept coordinates). */
GPUML_HD static inline int64_t gpuml_k_sumto_base(const gpuml_k_sumto *st, int64_t j)
{
    return gpuml_k_unravel(st->nkeep, st->keep_shape, st->keep_stride, j);
}

/* Offset of the r-th reduced element (row-major over the reduced dims).
 * The sum itself is a fixed-order reduction over r (kernels/reduce.h,
 * GPUML_K_RSUMTO). */
GPUML_HD static inline int64_t gpuml_k_sumto_off(const gpuml_k_sumto *st, int64_t r)
{
    return gpuml_k_unravel(st->nred, st->red_shape, st->red_stride, r);
}

#endif
