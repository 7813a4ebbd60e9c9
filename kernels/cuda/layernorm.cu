/* CUDA launcher for kernels/layernorm.h: a thread per row (forward, dx) and
 * per column (parameter gradients). */
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

static __global__ void layernorm_dparam_kernel(const float *x, const float *gy, const float *mean, const float *rstd,
                                               int64_t rows, int64_t c, float *ggamma, float *gbeta, int accumulate)
{
    GPUML_GRID_STRIDE(j, c)
    {
        float gg, gb;
        gpuml_k_layernorm_param_grad(x, gy, mean, rstd, rows, c, j, &gg, &gb);
        if (ggamma)
            ggamma[j] = accumulate ? ggamma[j] + gg : gg;
        if (gbeta)
            gbeta[j] = accumulate ? gbeta[j] + gb : gb;
    }
}

extern "C" gpuml_status gpuml_cuda_layernorm(const gpuml_kctx *k, const float *x, const float *gamma,
                                             const float *beta, float eps, int64_t rows, int64_t c, float *y,
                                             float *mean, float *rstd)
{
    if (rows == 0)
        return GPUML_OK;
    gpuml_cuda_scope scope(k->device);
    GPUML_CUDA_LAUNCH(layernorm_kernel, gpuml_cuda_grid(rows), GPUML_CUDA_BLOCK, 0, gpuml_cuda_stream(k))(x, gamma, beta, eps, rows,
                                                                                          c, y, mean, rstd);
    return gpuml_cuda_check("layernorm");
}

extern "C" gpuml_status gpuml_cuda_layernorm_grad(const gpuml_kctx *k, const float *x, const float *gamma,
                                                  const float *gy, const float *mean, const float *rstd, int64_t rows,
                                                  int64_t c, float *gx, float *ggamma, float *gbeta, int accumulate)
{
    gpuml_cuda_scope scope(k->device);
    cudaStream_t s = gpuml_cuda_stream(k);
    if (gx && rows > 0)
        GPUML_CUDA_LAUNCH(layernorm_dx_kernel, gpuml_cuda_grid(rows), GPUML_CUDA_BLOCK, 0, s)(x, gamma, gy, mean, rstd, rows, c, gx);
    if ((ggamma || gbeta) && c > 0)
        GPUML_CUDA_LAUNCH(layernorm_dparam_kernel, gpuml_cuda_grid(c), GPUML_CUDA_BLOCK, 0, s)(x, gy, mean, rstd, rows, c, ggamma,
                                                                               gbeta, accumulate);
    return gpuml_cuda_check("layernorm_grad");
}
