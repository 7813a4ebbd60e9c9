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
    if (n == 0)
        return GPUML_OK;
    GPUML_CUDA_ENTER(k, "cast");
    GPUML_CUDA_LAUNCH(cast_kernel, gpuml_cuda_grid(n), GPUML_CUDA_BLOCK, 0, gpuml_cuda_stream(k))(n, x, xt, y, yt);
    return gpuml_cuda_check(k, "cast");
}

extern "C" gpuml_status gpuml_cuda_fill(const gpuml_kctx *k, int64_t n, void *y, int yt, double value)
{
    if (n == 0)
        return GPUML_OK;
    GPUML_CUDA_ENTER(k, "fill");
    GPUML_CUDA_LAUNCH(fill_kernel, gpuml_cuda_grid(n), GPUML_CUDA_BLOCK, 0, gpuml_cuda_stream(k))(n, y, yt, value);
    return gpuml_cuda_check(k, "fill");
}
