/* CPU driver for kernels/loss.h. */
#include "../kernels.h"
#include "../loss.h"
#include "../rows.h"

gpuml_status gpuml_cpu_bce_logits(const gpuml_kctx *k, int64_t n, int64_t c, const float *x, const float *y,
                                  const float *pos_weight, float *out)
{
    int nt = k->nthreads;
#pragma omp parallel for num_threads(nt) schedule(static) if (n * c > GPUML_PAR_GRAIN)
    for (int64_t e = 0; e < n * c; e++)
        out[e] = gpuml_k_bce_logits(x[e], y[e], pos_weight ? pos_weight[e % c] : 1.0f);
    return GPUML_OK;
}

gpuml_status gpuml_cpu_bce_logits_grad(const gpuml_kctx *k, int64_t n, int64_t c, const float *x, const float *y,
                                       const float *pos_weight, const float *gout, float *gx)
{
    int nt = k->nthreads;
#pragma omp parallel for num_threads(nt) schedule(static) if (n * c > GPUML_PAR_GRAIN)
    for (int64_t e = 0; e < n * c; e++)
        gx[e] = gout[e] * gpuml_k_bce_logits_grad(x[e], y[e], pos_weight ? pos_weight[e % c] : 1.0f);
    return GPUML_OK;
}

gpuml_status gpuml_cpu_cross_entropy(const gpuml_kctx *k, const float *x, int64_t rows, int64_t c, const void *labels,
                                     int is64, float *nll, float *lse)
{
    int nt = k->nthreads;
#pragma omp parallel for num_threads(nt) schedule(static) if (rows * c > GPUML_PAR_GRAIN)
    for (int64_t r = 0; r < rows; r++)
        nll[r] = gpuml_k_ce_row(x + r * c, c, gpuml_k_index_at(labels, is64, r), lse + r);
    return GPUML_OK;
}

gpuml_status gpuml_cpu_cross_entropy_grad(const gpuml_kctx *k, const float *x, int64_t rows, int64_t c,
                                          const void *labels, int is64, const float *lse, const float *gnll, float *gx)
{
    int nt = k->nthreads;
#pragma omp parallel for num_threads(nt) schedule(static) if (rows * c > GPUML_PAR_GRAIN)
    for (int64_t r = 0; r < rows; r++)
        gpuml_k_ce_row_grad(x + r * c, c, gpuml_k_index_at(labels, is64, r), lse[r], gnll[r], gx + r * c);
    return GPUML_OK;
}
