/* CPU driver for kernels/batchnorm.h. */
#include "../batchnorm.h"
#include "../kernels.h"
#include "parallel.h"

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

/* The arguments of every loop below. */
typedef struct bn_args {
    int kind, relu, training, op;
    const float *x, *gy, *mean_f, *invstd_f, *gamma, *beta, *coef, *gout;
    const uint8_t *mask;
    int64_t R, C, gk, ke;
    const double *mean_d;
    double *p0, *p1, *p2;
    float *out;
} bn_args;

GPUML_KRANGE(partial_range, bn_args)
{
    for (int64_t ch = begin; ch < end; ch++)
        partial_chunk(a->kind, a->x, a->gy, a->mask, a->R, a->C, a->mean_d, a->mean_f, a->invstd_f, a->gamma, a->beta,
                      a->relu, a->gk, ch, a->p0, a->p1, a->p2);
}

GPUML_KRANGE(normalize_range, bn_args)
{
    for (int64_t r = begin; r < end; r++)
        normalize_row(a->x, a->mask, a->C, a->mean_f, a->invstd_f, a->gamma, a->beta, a->relu, r, a->out);
}

GPUML_KRANGE(grad_x_range, bn_args)
{
    for (int64_t r = begin; r < end; r++)
        grad_x_row(a->x, a->gy, a->mask, a->C, a->training, a->mean_f, a->invstd_f, a->gamma, a->beta, a->relu, a->gk,
                   a->coef, r, a->out);
}

GPUML_KRANGE(aggregate_range, bn_args)
{
    for (int64_t i = begin; i < end; i++)
        aggregate_row(a->x, a->mask, a->ke, a->C, a->mean_f, a->invstd_f, a->gamma, a->beta, a->relu, a->op, i, a->out);
}

GPUML_KRANGE(aggregate_grad_range, bn_args)
{
    for (int64_t i = begin; i < end; i++)
        for (int64_t c = 0; c < a->C; c++)
            gpuml_k_bn_aggregate_grad(a->gout, a->mask, a->ke, a->C, a->op, i, c, a->out);
}

gpuml_status gpuml_cpu_bn_partial(const gpuml_kctx *k, int kind, const float *x, const float *gy, const uint8_t *mask,
                                  int64_t R, int64_t C, const double *mean_d, const float *mean_f,
                                  const float *invstd_f, const float *gamma, const float *beta, int relu, int64_t gk,
                                  double *p0, double *p1, double *p2)
{
    int64_t nch = gpuml_k_bn_chunks(R);
    /* One chunk of rows per iteration, walked row by row so that the channel
     * loop is contiguous and vectorises. */
    bn_args a = {0};
    a.kind = kind, a.x = x, a.gy = gy, a.mask = mask, a.R = R, a.C = C, a.mean_d = mean_d, a.mean_f = mean_f;
    a.invstd_f = invstd_f, a.gamma = gamma, a.beta = beta, a.relu = relu, a.gk = gk, a.p0 = p0, a.p1 = p1, a.p2 = p2;
    gpuml_kfor(k, nch, R * C, 0, partial_range, &a);
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
    bn_args a = {0};
    a.x = x, a.mask = mask, a.C = C, a.mean_f = mean_f, a.invstd_f = invstd_f, a.gamma = gamma, a.beta = beta;
    a.relu = relu, a.out = y;
    gpuml_kfor(k, R, R * C, 0, normalize_range, &a);
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
    bn_args a = {0};
    a.x = x, a.gy = gy, a.mask = mask, a.C = C, a.training = training, a.mean_f = mean_f, a.invstd_f = invstd_f;
    a.gamma = gamma, a.beta = beta, a.relu = relu, a.gk = gk, a.coef = coef, a.out = gx;
    gpuml_kfor(k, R, R * C, 0, grad_x_range, &a);
    return GPUML_OK;
}

gpuml_status gpuml_cpu_bn_aggregate(const gpuml_kctx *k, const float *x, const uint8_t *mask, int64_t n, int64_t ke,
                                    int64_t C, const float *mean_f, const float *invstd_f, const float *gamma,
                                    const float *beta, int relu, int op, float *out)
{
    bn_args a = {0};
    a.x = x, a.mask = mask, a.ke = ke, a.C = C, a.mean_f = mean_f, a.invstd_f = invstd_f, a.gamma = gamma;
    a.beta = beta, a.relu = relu, a.op = op, a.out = out;
    gpuml_kfor(k, n, n * ke * C, 0, aggregate_range, &a);
    return GPUML_OK;
}

gpuml_status gpuml_cpu_bn_aggregate_grad(const gpuml_kctx *k, const float *gout, const uint8_t *mask, int64_t n,
                                         int64_t ke, int64_t C, int op, float *gnode)
{
    bn_args a = {0};
    a.gout = gout, a.mask = mask, a.ke = ke, a.C = C, a.op = op, a.out = gnode;
    gpuml_kfor(k, n, n * C, 0, aggregate_grad_range, &a);
    return GPUML_OK;
}
