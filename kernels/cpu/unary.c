/* CPU driver for kernels/unary.h. */
#include "../kernels.h"
#include "../unary.h"

gpuml_status gpuml_cpu_unary(const gpuml_kctx *k, int op, float alpha, int64_t n, const float *x, float *y)
{
    int nt = k->nthreads;
#pragma omp parallel for num_threads(nt) schedule(static) if (n > GPUML_PAR_GRAIN)
    for (int64_t i = 0; i < n; i++)
        y[i] = gpuml_k_unary(op, x[i], alpha);
    return GPUML_OK;
}

gpuml_status gpuml_cpu_unary_grad(const gpuml_kctx *k, int op, float alpha, int64_t n, const float *x,
                                  const float *gy, float *gx)
{
    int nt = k->nthreads;
#pragma omp parallel for num_threads(nt) schedule(static) if (n > GPUML_PAR_GRAIN)
    for (int64_t i = 0; i < n; i++)
        gx[i] = gpuml_k_unary_grad(op, x[i], alpha, gy[i]);
    return GPUML_OK;
}
