/* CPU driver for kernels/layernorm.h. */
#include "../kernels.h"
#include "../layernorm.h"

gpuml_status gpuml_cpu_layernorm(const gpuml_kctx *k, const float *x, const float *gamma, const float *beta, float eps,
                                 int64_t rows, int64_t c, float *y, float *mean, float *rstd)
{
    int nt = k->nthreads;
#pragma omp parallel for num_threads(nt) schedule(static) if (rows * c > GPUML_PAR_GRAIN)
    for (int64_t r = 0; r < rows; r++)
        gpuml_k_layernorm_row(x + r * c, gamma, beta, eps, c, y + r * c, mean + r, rstd + r);
    return GPUML_OK;
}

gpuml_status gpuml_cpu_layernorm_grad(const gpuml_kctx *k, const float *x, const float *gamma, const float *gy,
                                      const float *mean, const float *rstd, int64_t rows, int64_t c, float *gx)
{
    int nt = k->nthreads;
#pragma omp parallel for num_threads(nt) schedule(static) if (rows * c > GPUML_PAR_GRAIN)
    for (int64_t r = 0; r < rows; r++)
        gpuml_k_layernorm_row_grad(x + r * c, gamma, gy + r * c, mean[r], rstd[r], c, gx + r * c);
    return GPUML_OK;
}
