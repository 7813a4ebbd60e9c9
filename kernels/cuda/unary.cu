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
    GPUML_CUDA_RUN(k, "unary", unary_kernel, n, op, alpha, n, x, y);
}

extern "C" gpuml_status gpuml_cuda_unary_grad(const gpuml_kctx *k, int op, float alpha, int64_t n, const float *x,
                                              const float *gy, float *gx)
{
    GPUML_CUDA_RUN(k, "unary_grad", unary_grad_kernel, n, op, alpha, n, x, gy, gx);
}
