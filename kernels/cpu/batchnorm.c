/* CPU driver for kernels/batchnorm.h. */
#include "../batchnorm.h"
#include "../kernels.h"

/* Row helpers with SIMD clones (kernels/common.h). */
GPUML_CPU_SIMD_CLONES
static void partial_chunk(int kind, const float *x, const float *gy, const uint8_t *mask, int64_t R, int64_t C,
                          const double *mean_d, const float *mean_f, const float *invstd_f, const float *gamma,
                          const float *beta, int relu, int64_t gk, int64_t ch, double *p0, double *p1, double *p2)
{
    gpuml_k_bn_partial_rows(kind, x, gy, mask, R, C, mean_d, mean_f, invstd_f, gamma, beta, relu, gk, ch, p0, p1, p2);
}

GPUML_CPU_SIMD_CLONES
static void normalize_row(const float *x, const uint8_t *mask, int64_t C, const float *mean_f, const float *invstd_f,
                          const float *gamma, const float *beta, int relu, int64_t r, float *y)
{
    gpuml_k_bn_normalize_row(x, mask, C, mean_f, invstd_f, gamma, beta, relu, r, y);
}

GPUML_CPU_SIMD_CLONES
static void grad_x_row(const float *x, const float *gy, const uint8_t *mask, int64_t C, int training,
                       const float *mean_f, const float *invstd_f, const float *gamma, const float *beta, int relu,
                       int64_t gk, const float *coef, int64_t r, float *gx)
{
    gpuml_k_bn_grad_x_row(x, gy, mask, C, training, mean_f, invstd_f, gamma, beta, relu, gk, coef, r, gx);
}

GPUML_CPU_SIMD_CLONES
static void aggregate_row(const float *x, const uint8_t *mask, int64_t ke, int64_t C, const float *mean_f,
                          const float *invstd_f, const float *gamma, const float *beta, int relu, int op, int64_t i,
                          float *out)
{
    gpuml_k_bn_aggregate_row(x, mask, ke, C, mean_f, invstd_f, gamma, beta, relu, op, i, out);
}

gpuml_status gpuml_cpu_bn_partial(const gpuml_kctx *k, int kind, const float *x, const float *gy, const uint8_t *mask,
                                  int64_t R, int64_t C, const double *mean_d, const float *mean_f,
                                  const float *invstd_f, const float *gamma, const float *beta, int relu, int64_t gk,
                                  double *p0, double *p1, double *p2)
{
    int nt = k->nthreads;
    int64_t nch = gpuml_k_bn_chunks(R);
    /* One chunk of rows per iteration, walked row by row so that the channel
     * loop is contiguous and vectorises. */
#pragma omp parallel for num_threads(nt) schedule(static) if (R * C > GPUML_PAR_GRAIN)
    for (int64_t ch = 0; ch < nch; ch++)
        partial_chunk(kind, x, gy, mask, R, C, mean_d, mean_f, invstd_f, gamma, beta, relu, gk, ch, p0, p1, p2);
    return GPUML_OK;
}

gpuml_status gpuml_cpu_bn_mean(const gpuml_kctx *k, const double *p0, const double *p2, int64_t nch, int64_t C,
                               double *mean_d, double *cnt_d)
{
    (void)k;
    for (int64_t c = 0; c < C; c++)
        gpuml_k_bn_mean(p0, p2, nch, C, c, mean_d, cnt_d);
    return GPUML_OK;
}

gpuml_status gpuml_cpu_bn_var(const gpuml_kctx *k, const double *p0, int64_t nch, int64_t C, const double *mean_d,
                              const double *cnt_d, float eps, float momentum, float *rm, float *rv, float *mean_f,
                              float *invstd_f)
{
    (void)k;
    for (int64_t c = 0; c < C; c++)
        gpuml_k_bn_var(p0, nch, C, c, mean_d, cnt_d, eps, momentum, rm, rv, mean_f, invstd_f);
    return GPUML_OK;
}

gpuml_status gpuml_cpu_bn_running(const gpuml_kctx *k, const float *rm, const float *rv, float eps, int64_t C,
                                  float *mean_f, float *invstd_f)
{
    (void)k;
    for (int64_t c = 0; c < C; c++)
        gpuml_k_bn_running(rm, rv, eps, c, mean_f, invstd_f);
    return GPUML_OK;
}

gpuml_status gpuml_cpu_bn_normalize(const gpuml_kctx *k, const float *x, const uint8_t *mask, int64_t R, int64_t C,
                                    const float *mean_f, const float *invstd_f, const float *gamma, const float *beta,
                                    int relu, float *y)
{
    int nt = k->nthreads;
#pragma omp parallel for num_threads(nt) schedule(static) if (R * C > GPUML_PAR_GRAIN)
    for (int64_t r = 0; r < R; r++)
        normalize_row(x, mask, C, mean_f, invstd_f, gamma, beta, relu, r, y);
    return GPUML_OK;
}

gpuml_status gpuml_cpu_bn_grad_stats(const gpuml_kctx *k, const double *p0, const double *p1, const double *p2,
                                     int64_t nch, int64_t C, int training, int accumulate, float *ggamma, float *gbeta,
                                     float *coef)
{
    (void)k;
    for (int64_t c = 0; c < C; c++)
        gpuml_k_bn_grad_stats(p0, p1, p2, nch, C, c, training, accumulate, ggamma, gbeta, coef);
    return GPUML_OK;
}

gpuml_status gpuml_cpu_bn_grad_x(const gpuml_kctx *k, const float *x, const float *gy, const uint8_t *mask, int64_t R,
                                 int64_t C, int training, const float *mean_f, const float *invstd_f,
                                 const float *gamma, const float *beta, int relu, int64_t gk, const float *coef,
                                 float *gx)
{
    int nt = k->nthreads;
#pragma omp parallel for num_threads(nt) schedule(static) if (R * C > GPUML_PAR_GRAIN)
    for (int64_t r = 0; r < R; r++)
        grad_x_row(x, gy, mask, C, training, mean_f, invstd_f, gamma, beta, relu, gk, coef, r, gx);
    return GPUML_OK;
}

gpuml_status gpuml_cpu_bn_aggregate(const gpuml_kctx *k, const float *x, const uint8_t *mask, int64_t n, int64_t ke,
                                    int64_t C, const float *mean_f, const float *invstd_f, const float *gamma,
                                    const float *beta, int relu, int op, float *out)
{
    int nt = k->nthreads;
#pragma omp parallel for num_threads(nt) schedule(static) if (n * ke * C > GPUML_PAR_GRAIN)
    for (int64_t i = 0; i < n; i++)
        aggregate_row(x, mask, ke, C, mean_f, invstd_f, gamma, beta, relu, op, i, out);
    return GPUML_OK;
}

gpuml_status gpuml_cpu_bn_aggregate_grad(const gpuml_kctx *k, const float *gout, const uint8_t *mask, int64_t n,
                                         int64_t ke, int64_t C, int op, float *gnode)
{
    int nt = k->nthreads;
#pragma omp parallel for num_threads(nt) schedule(static) if (n * C > GPUML_PAR_GRAIN)
    for (int64_t i = 0; i < n; i++)
        for (int64_t c = 0; c < C; c++)
            gpuml_k_bn_aggregate_grad(gout, mask, ke, C, op, i, c, gnode);
    return GPUML_OK;
}
