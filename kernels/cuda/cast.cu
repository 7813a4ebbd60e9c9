/* CUDA launcher for kernels/cast.h. */
#include "../cast.h"
#include "../kernels.h"
#include "launch.cuh"

static __global__ void cast_kernel(int64_t n, const void *x, int xt, void *y, int yt)
{
    GPUML_GRID_STRIDE(i, n) gpuml_k_cast_one(x, xt, y, yt, i);
}

static __global__ void fill_kernel(int64_t n, void *y, int yt, double value)
{
    GPUML_GRID_STRIDE(i, n) gpuml_k_store_f64(y, yt, i, value);
}

extern "C" gpuml_status gpuml_cuda_cast(const gpuml_kctx *k, int64_t n, const void *x, int xt, void *y, int yt)
{
    GPUML_CUDA_RUN(k, "cast", cast_kernel, n, n, x, xt, y, yt);
}

extern "C" gpuml_status gpuml_cuda_fill(const gpuml_kctx *k, int64_t n, void *y, int yt, double value)
{
    GPUML_CUDA_RUN(k, "fill", fill_kernel, n, n, y, yt, value);
}
