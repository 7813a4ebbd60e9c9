/* CPU driver for kernels/batchnorm.h. */
#include "../batchnorm.h"
#include "../kernels.h"

gpuml_status gpuml_cpu_bn_partial(const gpuml_kctx *k, int kind, const float *x, const float *gy, const uint8_t *mask,
                                  int64_t R, int64_t C, const double *mean_d, const float *mean_f,
                                  const float *invstd_f, const float *gamma, const float *beta, int relu, double *p0,
                                  double *p1, double *p2)
{
    int nt = k->nthreads;
    int64_t nch = gpuml_k_bn_chunks(R);
    /* One chunk of rows per iteration, walked row by row so that the channel
     * loop is contiguous and vectorises. */
#pragma omp parallel for num_threads(nt) schedule(static) if (R * C > GPUML_PAR_GRAIN)
    for (int64_t ch = 0; ch < nch; ch++)
        gpuml_k_bn_partial_rows(kind, x, gy, mask, R, C, mean_d, mean_f, invstd_f, gamma, beta, relu, ch, p0, p1, p2);
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
        gpuml_k_bn_normalize_row(x, mask, C, mean_f, invstd_f, gamma, beta, relu, r, y);
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
                                 const float *gamma, const float *beta, int relu, const float *coef, float *gx)
{
    int nt = k->nthreads;
#pragma omp parallel for num_threads(nt) schedule(static) if (R * C > GPUML_PAR_GRAIN)
    for (int64_t r = 0; r < R; r++)
        gpuml_k_bn_grad_x_row(x, gy, mask, C, training, mean_f, invstd_f, gamma, beta, relu, coef, r, gx);
    return GPUML_OK;
}
