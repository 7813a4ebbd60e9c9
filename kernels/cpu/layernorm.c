/* CPU driver for kernels/layernorm.h. */
#include "../kernels.h"
#include "../layernorm.h"
#include "parallel.h"

typedef struct ln_args {
    const float *x, *gamma, *beta, *gy, *mean_in, *rstd_in;
    float eps;
    int64_t rows, c;
    float *y, *mean, *rstd, *gx;
} ln_args;

GPUML_KRANGE(ln_range, ln_args)
{
    for (int64_t r = begin; r < end; r++)
        gpuml_k_layernorm_row(a->x + r * a->c, a->gamma, a->beta, a->eps, a->c, a->y + r * a->c, a->mean + r,
                              a->rstd + r);
}

GPUML_KRANGE(ln_grad_range, ln_args)
{
    for (int64_t r = begin; r < end; r++)
        gpuml_k_layernorm_row_grad(a->x + r * a->c, a->gamma, a->gy + r * a->c, a->mean_in[r], a->rstd_in[r], a->c,
                                   a->gx + r * a->c);
}

gpuml_status gpuml_cpu_layernorm(const gpuml_kctx *k, const float *x, const float *gamma, const float *beta, float eps,
                                 int64_t rows, int64_t c, float *y, float *mean, float *rstd)
{
    ln_args a = {0};
    a.x = x, a.gamma = gamma, a.beta = beta, a.eps = eps, a.rows = rows, a.c = c, a.y = y, a.mean = mean, a.rstd = rstd;
    gpuml_kfor(k, rows, rows * c, 0, ln_range, &a);
    return GPUML_OK;
}

gpuml_status gpuml_cpu_layernorm_grad(const gpuml_kctx *k, const float *x, const float *gamma, const float *gy,
                                      const float *mean, const float *rstd, int64_t rows, int64_t c, float *gx)
{
    ln_args a = {0};
    a.x = x, a.gamma = gamma, a.gy = gy, a.mean_in = mean, a.rstd_in = rstd, a.rows = rows, a.c = c, a.gx = gx;
    gpuml_kfor(k, rows, rows * c, 0, ln_grad_range, &a);
    return GPUML_OK;
}
