/* CUDA launcher for kernels/rng.h. */
#include "../kernels.h"
#include "../rng.h"
#include "launch.cuh"

static __global__ void rand_kernel(int normal, uint64_t seed, uint64_t base, int64_t n, float p0, float p1, float *y)
{
    GPUML_GRID_STRIDE(i, n)
    y[i] = normal ? gpuml_k_rand_normal(seed, base, i, p0, p1) : gpuml_k_rand_uniform(seed, base, i, p0, p1);
}

extern "C" gpuml_status gpuml_cuda_rand(const gpuml_kctx *k, int normal, uint64_t seed, uint64_t base, int64_t n,
                                        float p0, float p1, float *y)
{
    GPUML_CUDA_RUN(k, "rand", rand_kernel, n, normal, seed, base, n, p0, p1, y);
}

static __global__ void dropout_kernel(uint64_t seed, uint64_t base, int64_t n, float p, const float *x, float *y)
{
    GPUML_GRID_STRIDE(i, n) y[i] = gpuml_k_dropout(seed, base, i, p, x[i]);
}

extern "C" gpuml_status gpuml_cuda_dropout(const gpuml_kctx *k, uint64_t seed, uint64_t base, int64_t n, float p,
                                           const float *x, float *y)
{
    GPUML_CUDA_RUN(k, "dropout", dropout_kernel, n, seed, base, n, p, x, y);
}
