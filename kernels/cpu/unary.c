/* CPU driver for kernels/unary.h. One loop per op, so that the op is a
 * constant inside the loop: the body's switch folds away and the compiler
 * can vectorise (a switch per element costs several times the arithmetic of
 * relu). */
#include "../kernels.h"
#include "../unary.h"

#define UNARY_CASE(OP)                                                                  \
    case OP:                                                                            \
        _Pragma("omp parallel for num_threads(nt) schedule(static) if (n > GPUML_PAR_GRAIN)") \
        for (int64_t i = 0; i < n; i++)                                                 \
            y[i] = gpuml_k_unary(OP, x[i], alpha);                                      \
        break;

#define UNARY_GRAD_CASE(OP)                                                             \
    case OP:                                                                            \
        _Pragma("omp parallel for num_threads(nt) schedule(static) if (n > GPUML_PAR_GRAIN)") \
        for (int64_t i = 0; i < n; i++)                                                 \
            gx[i] = gpuml_k_unary_grad(OP, x[i], alpha, gy[i]);                         \
        break;

#define ALL_UNARY(M)                                                                    \
    M(GPUML_UNARY_NEG) M(GPUML_UNARY_ABS) M(GPUML_UNARY_EXP) M(GPUML_UNARY_LOG)         \
    M(GPUML_UNARY_SQRT) M(GPUML_UNARY_RSQRT) M(GPUML_UNARY_RELU) M(GPUML_UNARY_LEAKY_RELU) \
    M(GPUML_UNARY_ELU) M(GPUML_UNARY_GELU) M(GPUML_UNARY_TANH) M(GPUML_UNARY_SIGMOID)   \
    M(GPUML_UNARY_SOFTPLUS)

gpuml_status gpuml_cpu_unary(const gpuml_kctx *k, int op, float alpha, int64_t n, const float *x, float *y)
{
    int nt = k->nthreads;
    switch (op) {
        ALL_UNARY(UNARY_CASE)
    default: return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, "unary", "op %d", op);
    }
    return GPUML_OK;
}

gpuml_status gpuml_cpu_unary_grad(const gpuml_kctx *k, int op, float alpha, int64_t n, const float *x,
                                  const float *gy, float *gx)
{
    int nt = k->nthreads;
    switch (op) {
        ALL_UNARY(UNARY_GRAD_CASE)
    default: return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, "unary_grad", "op %d", op);
    }
    return GPUML_OK;
}
