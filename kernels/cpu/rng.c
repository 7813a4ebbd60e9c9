/* CPU driver for kernels/rng.h. */
#include "../kernels.h"
#include "../rng.h"

gpuml_status gpuml_cpu_rand(const gpuml_kctx *k, int normal, uint64_t seed, uint64_t base, int64_t n, float p0,
                            float p1, float *y)
{
    int nt = k->nthreads;
#pragma omp parallel for num_threads(nt) schedule(static) if (n > GPUML_PAR_GRAIN / 8)
    for (int64_t i = 0; i < n; i++)
        y[i] = normal ? gpuml_k_rand_normal(seed, base, i, p0, p1) : gpuml_k_rand_uniform(seed, base, i, p0, p1);
    return GPUML_OK;
}

gpuml_status gpuml_cpu_dropout(const gpuml_kctx *k, uint64_t seed, uint64_t base, int64_t n, float p, const float *x,
                               float *y)
{
    int nt = k->nthreads;
#pragma omp parallel for num_threads(nt) schedule(static) if (n > GPUML_PAR_GRAIN / 8)
    for (int64_t i = 0; i < n; i++)
        y[i] = x[i] * gpuml_k_dropout_scale(seed, base, i, p);
    return GPUML_OK;
}
