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
    if (n == 0)
        return GPUML_OK;
    GPUML_CUDA_ENTER(k, "rand");
    GPUML_CUDA_LAUNCH(rand_kernel, gpuml_cuda_grid(n), GPUML_CUDA_BLOCK, 0, gpuml_cuda_stream(k))(normal, seed, base, n, p0, p1, y);
    return gpuml_cuda_check(k, "rand");
}

static __global__ void dropout_kernel(uint64_t seed, uint64_t base, int64_t n, float p, const float *x, float *y)
{
    GPUML_GRID_STRIDE(i, n) y[i] = gpuml_k_dropout(seed, base, i, p, x[i]);
}

extern "C" gpuml_status gpuml_cuda_dropout(const gpuml_kctx *k, uint64_t seed, uint64_t base, int64_t n, float p,
                                           const float *x, float *y)
{
    if (n == 0)
        return GPUML_OK;
    GPUML_CUDA_ENTER(k, "dropout");
    GPUML_CUDA_LAUNCH(dropout_kernel, gpuml_cuda_grid(n), GPUML_CUDA_BLOCK, 0, gpuml_cuda_stream(k))(seed, base, n, p, x, y);
    return gpuml_cuda_check(k, "dropout");
}
