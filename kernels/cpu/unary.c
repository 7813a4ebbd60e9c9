/* CPU driver for kernels/unary.h. One range function per op, so that the op
 * is a constant inside the loop: the body's switch folds away and the
 * compiler can vectorise (a switch per element costs several times the
 * arithmetic of relu). */
#include "../kernels.h"
#include "../registry.h"
#include "../unary.h"
#include "parallel.h"

typedef struct unary_args {
    float alpha;
    const float *x, *gy;
    float *y;
} unary_args;

#define UNARY_RANGES(OP)                                                                \
    GPUML_KRANGE(fwd_##OP, unary_args)                                                  \
    {                                                                                   \
        for (int64_t i = begin; i < end; i++)                                           \
            a->y[i] = gpuml_k_unary(OP, a->x[i], a->alpha);                             \
    }                                                                                   \
    GPUML_KRANGE(grad_##OP, unary_args)                                                 \
    {                                                                                   \
        for (int64_t i = begin; i < end; i++)                                           \
            a->y[i] = gpuml_k_unary_grad(OP, a->x[i], a->alpha, a->gy[i]);              \
    }

/* Every gpuml_unary_op, from the op registry (kernels/ops.def): an op added
 * there gets its range functions and its case here. */
#define UNARY_OP_(M, E, n, d) M(GPUML_UNARY_##E)
#define ALL_UNARY(M) GPUML_UNARY_OPS(UNARY_OP_, M)

ALL_UNARY(UNARY_RANGES)

#define UNARY_CASE(OP) case OP: fn = grad ? grad_##OP : fwd_##OP; break;

static gpuml_status run(const gpuml_kctx *k, int op, int grad, unary_args *a, int64_t n, const char *name)
{
    gpuml_range_fn fn = NULL;
    switch (op) {
        ALL_UNARY(UNARY_CASE)
    default: return gpuml_k_fail(k, GPUML_ERR_INVALID_ARGUMENT, name, "unknown unary op", NULL, NULL, 1, op, 0);
    }
    gpuml_kfor(k, n, n, 0, fn, a);
    return GPUML_OK;
}

gpuml_status gpuml_cpu_unary(const gpuml_kctx *k, int op, float alpha, int64_t n, const float *x, float *y)
{
    unary_args a = {alpha, x, NULL, y};
    return run(k, op, 0, &a, n, "unary");
}

gpuml_status gpuml_cpu_unary_grad(const gpuml_kctx *k, int op, float alpha, int64_t n, const float *x,
                                  const float *gy, float *gx)
{
    unary_args a = {alpha, x, gy, gx};
    return run(k, op, 1, &a, n, "unary_grad");
}
