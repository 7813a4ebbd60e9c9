/* kernels/layernorm.h - layer normalisation over the last axis of [R, C]:
 * y = (x - mean) * rstd * gamma + beta, one row per call, sums in double. */
#ifndef GPUML_KERNELS_LAYERNORM_H
#define GPUML_KERNELS_LAYERNORM_H

#include "common.h"

/* Forward of row r; saves mean and rstd (1/sqrt(var + eps), biased var). */
GPUML_HD static inline void gpuml_k_layernorm_row(const float *GPUML_RESTRICT x, const float *gamma, const float *beta,
                                                  float eps, int64_t c, float *GPUML_RESTRICT y, float *mean_out,
                                                  float *rstd_out)
{
    double s = 0.0;
    for (int64_t j = 0; j < c; j++)
        s += (double)x[j];
    double mean = c > 0 ? s / (double)c : 0.0;
    double v = 0.0;
    for (int64_t j = 0; j < c; j++) {
        double d = (double)x[j] - mean;
        v += d * d;
    }
    float rstd = (float)(1.0 / sqrt((c > 0 ? v / (double)c : 0.0) + (double)eps));
    float m = (float)mean;
    for (int64_t j = 0; j < c; j++) {
        float xh = (x[j] - m) * rstd;
        y[j] = gamma ? fmaf(xh, gamma[j], beta ? beta[j] : 0.0f) : (beta ? xh + beta[j] : xh);
    }
    *mean_out = m;
    *rstd_out = rstd;
}

/* dx of row r: with xhat = (x - mean) rstd and dxhat = gy * gamma,
 * dx = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)). */
GPUML_HD static inline void gpuml_k_layernorm_row_grad(const float *GPUML_RESTRICT x, const float *gamma,
                                                       const float *GPUML_RESTRICT gy, float mean, float rstd,
                                                       int64_t c, float *GPUML_RESTRICT gx)
{
    double s1 = 0.0, s2 = 0.0;
    for (int64_t j = 0; j < c; j++) {
        float xh = (x[j] - mean) * rstd;
        float d = gamma ? gy[j] * gamma[j] : gy[j];
        s1 += (double)d;
        s2 += (double)d * (double)xh;
    }
    float m1 = c > 0 ? (float)(s1 / (double)c) : 0.0f, m2 = c > 0 ? (float)(s2 / (double)c) : 0.0f;
    for (int64_t j = 0; j < c; j++) {
        float xh = (x[j] - mean) * rstd;
        float d = gamma ? gy[j] * gamma[j] : gy[j];
        gx[j] = rstd * (d - m1 - xh * m2);
    }
}

/* The parameter gradients, ggamma = sum_r gy * xhat and gbeta = sum_r gy,
 * are column sums over all rows: fixed-order reductions (kernels/reduce.h,
 * GPUML_K_RLN_GAMMA and SUM), not a loop here. */

#endif
