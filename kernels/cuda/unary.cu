/* CUDA launcher for kernels/unary.h. */
#include "../kernels.h"
#include "../unary.h"
#include "launch.cuh"

static __global__ void unary_kernel(int op, float alpha, int64_t n, const float *x, float *y)
{
    GPUML_GRID_STRIDE(i, n) y[i] = gpuml_k_unary(op, x[i], alpha);
}

static __global__ void unary_grad_kernel(int op, float alpha, int64_t n, const float *x, const float *gy, float *gx)
{
    GPUML_GRID_STRIDE(i, n) gx[i] = gpuml_k_unary_grad(op, x[i], alpha, gy[i]);
}

extern "C" gpuml_status gpuml_cuda_unary(const gpuml_kctx *k, int op, float alpha, int64_t n, const float *x, float *y)
{
    if (n == 0)
        return GPUML_OK;
    GPUML_CUDA_ENTER(k, "unary");
    GPUML_CUDA_LAUNCH(unary_kernel, gpuml_cuda_grid(n), GPUML_CUDA_BLOCK, 0, gpuml_cuda_stream(k))(op, alpha, n, x, y);
    return gpuml_cuda_check(k, "unary");
}

extern "C" gpuml_status gpuml_cuda_unary_grad(const gpuml_kctx *k, int op, float alpha, int64_t n, const float *x,
                                              const float *gy, float *gx)
{
    if (n == 0)
        return GPUML_OK;
    GPUML_CUDA_ENTER(k, "unary_grad");
    GPUML_CUDA_LAUNCH(unary_grad_kernel, gpuml_cuda_grid(n), GPUML_CUDA_BLOCK, 0, gpuml_cuda_stream(k))(op, alpha, n, x, gy, gx);
    return gpuml_cuda_check(k, "unary_grad");
}
