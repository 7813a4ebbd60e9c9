/* CUDA launcher for kernels/layernorm.h: a thread per row (forward, dx).
 * The parameter gradients are column reductions (reduce.cu). */
#include "../kernels.h"
#include "../layernorm.h"
#include "launch.cuh"

static __global__ void layernorm_kernel(const float *x, const float *gamma, const float *beta, float eps, int64_t rows,
                                        int64_t c, float *y, float *mean, float *rstd)
{
    GPUML_GRID_STRIDE(r, rows) gpuml_k_layernorm_row(x + r * c, gamma, beta, eps, c, y + r * c, mean + r, rstd + r);
}

static __global__ void layernorm_dx_kernel(const float *x, const float *gamma, const float *gy, const float *mean,
                                           const float *rstd, int64_t rows, int64_t c, float *gx)
{
    GPUML_GRID_STRIDE(r, rows) gpuml_k_layernorm_row_grad(x + r * c, gamma, gy + r * c, mean[r], rstd[r], c, gx + r * c);
}

extern "C" gpuml_status gpuml_cuda_layernorm(const gpuml_kctx *k, const float *x, const float *gamma,
                                             const float *beta, float eps, int64_t rows, int64_t c, float *y,
                                             float *mean, float *rstd)
{
    GPUML_CUDA_RUN(k, "layernorm", layernorm_kernel, rows, x, gamma, beta, eps, rows, c, y, mean, rstd);
}

extern "C" gpuml_status gpuml_cuda_layernorm_grad(const gpuml_kctx *k, const float *x, const float *gamma,
                                                  const float *gy, const float *mean, const float *rstd, int64_t rows,
                                                  int64_t c, float *gx)
{
    GPUML_CUDA_RUN(k, "layernorm_grad", layernorm_dx_kernel, rows, x, gamma, gy, mean, rstd, rows, c, gx);
}
