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
    if (rows == 0)
        return GPUML_OK;
    GPUML_CUDA_ENTER(k, "layernorm");
    GPUML_CUDA_LAUNCH(layernorm_kernel, gpuml_cuda_grid(rows), GPUML_CUDA_BLOCK, 0, gpuml_cuda_stream(k))(x, gamma, beta, eps, rows,
                                                                                          c, y, mean, rstd);
    return gpuml_cuda_check(k, "layernorm");
}

extern "C" gpuml_status gpuml_cuda_layernorm_grad(const gpuml_kctx *k, const float *x, const float *gamma,
                                                  const float *gy, const float *mean, const float *rstd, int64_t rows,
                                                  int64_t c, float *gx)
{
    if (rows == 0)
        return GPUML_OK;
    GPUML_CUDA_ENTER(k, "layernorm_grad");
    GPUML_CUDA_LAUNCH(layernorm_dx_kernel, gpuml_cuda_grid(rows), GPUML_CUDA_BLOCK, 0, gpuml_cuda_stream(k))(
        x, gamma, gy, mean, rstd, rows, c, gx);
    return gpuml_cuda_check(k, "layernorm_grad");
}
