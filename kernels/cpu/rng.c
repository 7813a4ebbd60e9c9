/* CPU driver for kernels/rng.h. Element i depends on (seed, base, i) only. */
#include "../kernels.h"
#include "../rng.h"
#include "parallel.h"

typedef struct rng_args {
    int normal;
    uint64_t seed, base;
    float p0, p1;
    const float *x;
    float *y;
} rng_args;

GPUML_KRANGE(rand_range, rng_args)
{
    for (int64_t i = begin; i < end; i++)
        a->y[i] = a->normal ? gpuml_k_rand_normal(a->seed, a->base, i, a->p0, a->p1)
                            : gpuml_k_rand_uniform(a->seed, a->base, i, a->p0, a->p1);
}

GPUML_KRANGE(dropout_range, rng_args)
{
    for (int64_t i = begin; i < end; i++)
        a->y[i] = gpuml_k_dropout(a->seed, a->base, i, a->p0, a->x[i]);
}

/* A Philox draw costs about eight element operations. */
gpuml_status gpuml_cpu_rand(const gpuml_kctx *k, int normal, uint64_t seed, uint64_t base, int64_t n, float p0,
                            float p1, float *y)
{
    rng_args a = {normal, seed, base, p0, p1, NULL, y};
    gpuml_kfor(k, n, 8 * n, 0, rand_range, &a);
    return GPUML_OK;
}

gpuml_status gpuml_cpu_dropout(const gpuml_kctx *k, uint64_t seed, uint64_t base, int64_t n, float p, const float *x,
                               float *y)
{
    rng_args a = {0, seed, base, p, 0.0f, x, y};
    gpuml_kfor(k, n, 8 * n, 0, dropout_range, &a);
    return GPUML_OK;
}
