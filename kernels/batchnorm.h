/* kernels/batchnorm.h - batch normalisation over the rows of x [R, C].
 *
 * Statistics are reduced in two fixed stages so that they do not depend on
 * the thread count or the grid: per (chunk of GPUML_K_BN_CHUNK rows,
 * channel) partial sums in double, then per channel the partials in chunk
 * order. The variance is two-pass (sum of squares about the double mean).
 * Rows whose mask byte is 0 are padding: not counted, y = 0, gx = 0. */
#ifndef GPUML_KERNELS_BATCHNORM_H
#define GPUML_KERNELS_BATCHNORM_H

#include "common.h"

#define GPUML_K_BN_CHUNK 256

/* Partial kinds. */
#define GPUML_K_BN_SUM 0  /* p0 = sum x, p2 = rows                        */
#define GPUML_K_BN_SQ 1   /* p0 = sum (x - mean_d)^2                        */
#define GPUML_K_BN_GRAD 2 /* p0 = sum gy, p1 = sum gy xhat, p2 = rows       */

GPUML_HD static inline int64_t gpuml_k_bn_chunks(int64_t rows)
{
    return (rows + GPUML_K_BN_CHUNK - 1) / GPUML_K_BN_CHUNK;
}

GPUML_HD static inline float gpuml_k_bn_xhat(const float *GPUML_RESTRICT x, const float *GPUML_RESTRICT mean,
                                             const float *GPUML_RESTRICT invstd, int64_t c, int64_t e)
{
    return (x[e] - mean[c]) * invstd[c];
}

/* The affine output before the activation: xhat gamma + beta. */
GPUML_HD static inline float gpuml_k_bn_affine(float xhat, const float *GPUML_RESTRICT gamma,
                                               const float *GPUML_RESTRICT beta, int64_t c)
{
    float v = xhat;
    if (gamma)
        v = v * gamma[c];
    if (beta)
        v = v + beta[c];
    return v;
}

/* The fused activation (relu != 0: ReLU, NaN passed through as
 * kernels/unary.h does) and its gradient, from the recomputed affine
 * output v. */
GPUML_HD static inline float gpuml_k_bn_act(float v, int relu)
{
    float r = v > 0.0f ? v : 0.0f;
    return relu && v == v ? r : v;
}

GPUML_HD static inline float gpuml_k_bn_act_grad(float v, float g, int relu)
{
    float r = v > 0.0f ? g : 0.0f;
    return !relu ? g : (v == v ? r : v);
}

/* The gradient reaching the affine output at element e (row-major, channel
 * c): gy gated by the activation. */
GPUML_HD static inline float gpuml_k_bn_gy(const float *GPUML_RESTRICT x, const float *GPUML_RESTRICT gy,
                                           const float *GPUML_RESTRICT mean_f, const float *GPUML_RESTRICT invstd_f,
                                           const float *GPUML_RESTRICT gamma, const float *GPUML_RESTRICT beta,
                                           int relu, int64_t c, int64_t e, float *xhat)
{
    float xh = gpuml_k_bn_xhat(x, mean_f, invstd_f, c, e);
    *xhat = xh;
    return gpuml_k_bn_act_grad(gpuml_k_bn_affine(xh, gamma, beta, c), gy[e], relu);
}

/* Partial sums of chunk ch, channel c, into p0/p1/p2[ch * C + c]. For the
 * GRAD kind gamma / beta / relu describe the forward's fused activation. */
GPUML_HD static inline void gpuml_k_bn_partial(int kind, const float *GPUML_RESTRICT x, const float *GPUML_RESTRICT gy,
                                               const uint8_t *GPUML_RESTRICT mask, int64_t R, int64_t C,
                                               const double *GPUML_RESTRICT mean_d, const float *GPUML_RESTRICT mean_f,
                                               const float *GPUML_RESTRICT invstd_f, const float *GPUML_RESTRICT gamma,
                                               const float *GPUML_RESTRICT beta, int relu, int64_t ch, int64_t c,
                                               double *GPUML_RESTRICT p0, double *GPUML_RESTRICT p1,
                                               double *GPUML_RESTRICT p2)
{
    int64_t r0 = ch * GPUML_K_BN_CHUNK, r1 = gpuml_k_min64(r0 + GPUML_K_BN_CHUNK, R);
    double a = 0.0, b = 0.0, n = 0.0;
    for (int64_t r = r0; r < r1; r++) {
        if (mask && !mask[r])
            continue;
        int64_t e = r * C + c;
        n += 1.0;
        if (kind == GPUML_K_BN_SUM) {
            a += (double)x[e];
        } else if (kind == GPUML_K_BN_SQ) {
            double d = (double)x[e] - mean_d[c];
            a += d * d;
        } else {
            float xh, g = gpuml_k_bn_gy(x, gy, mean_f, invstd_f, gamma, beta, relu, c, e, &xh);
            a += (double)g;
            b += (double)(g * xh);
        }
    }
    int64_t o = ch * C + c;
    p0[o] = a;
    if (kind == GPUML_K_BN_GRAD)
        p1[o] = b;
    if (kind != GPUML_K_BN_SQ)
        p2[o] = n;
}

/* The same partial sums for all C channels of chunk ch, walking the chunk
 * row by row (the CPU's memory order). Each channel still sums its rows in
 * increasing order with the same terms, so the result is bitwise that of
 * gpuml_k_bn_partial per channel. */
GPUML_HD static inline void gpuml_k_bn_partial_rows(int kind, const float *GPUML_RESTRICT x,
                                                    const float *GPUML_RESTRICT gy, const uint8_t *GPUML_RESTRICT mask,
                                                    int64_t R, int64_t C, const double *GPUML_RESTRICT mean_d,
                                                    const float *GPUML_RESTRICT mean_f,
                                                    const float *GPUML_RESTRICT invstd_f,
                                                    const float *GPUML_RESTRICT gamma,
                                                    const float *GPUML_RESTRICT beta, int relu, int64_t ch,
                                                    double *GPUML_RESTRICT p0, double *GPUML_RESTRICT p1,
                                                    double *GPUML_RESTRICT p2)
{
    int64_t r0 = ch * GPUML_K_BN_CHUNK, r1 = gpuml_k_min64(r0 + GPUML_K_BN_CHUNK, R);
    double *a = p0 + ch * C, *b = kind == GPUML_K_BN_GRAD ? p1 + ch * C : NULL, n = 0.0;
    for (int64_t c = 0; c < C; c++)
        a[c] = 0.0;
    if (b)
        for (int64_t c = 0; c < C; c++)
            b[c] = 0.0;
    for (int64_t r = r0; r < r1; r++) {
        if (mask && !mask[r])
            continue;
        n += 1.0;
        const int64_t e0 = r * C;
        if (kind == GPUML_K_BN_SUM) {
            for (int64_t c = 0; c < C; c++)
                a[c] += (double)x[e0 + c];
        } else if (kind == GPUML_K_BN_SQ) {
            for (int64_t c = 0; c < C; c++) {
                double d = (double)x[e0 + c] - mean_d[c];
                a[c] += d * d;
            }
        } else {
            for (int64_t c = 0; c < C; c++) {
                float xh, g = gpuml_k_bn_gy(x, gy, mean_f, invstd_f, gamma, beta, relu, c, e0 + c, &xh);
                a[c] += (double)g;
                b[c] += (double)(g * xh);
            }
        }
    }
    if (kind != GPUML_K_BN_SQ)
        for (int64_t c = 0; c < C; c++)
            p2[ch * C + c] = n;
}

/* Channel c after the SUM partials: mean_d[c], cnt_d[c]. */
GPUML_HD static inline void gpuml_k_bn_mean(const double *GPUML_RESTRICT p0, const double *GPUML_RESTRICT p2,
                                            int64_t nch, int64_t C, int64_t c, double *GPUML_RESTRICT mean_d,
                                            double *GPUML_RESTRICT cnt_d)
{
    double s = 0.0, n = 0.0;
    for (int64_t ch = 0; ch < nch; ch++) {
        s += p0[ch * C + c];
        n += p2[ch * C + c];
    }
    mean_d[c] = n > 0.0 ? s / n : 0.0;
    cnt_d[c] = n;
}

/* Channel c after the SQ partials: the float statistics used to normalise,
 * and the running update (unbiased variance) when at least 2 rows count. */
GPUML_HD static inline void gpuml_k_bn_var(const double *GPUML_RESTRICT p0, int64_t nch, int64_t C, int64_t c,
                                           const double *GPUML_RESTRICT mean_d, const double *GPUML_RESTRICT cnt_d,
                                           float eps, float momentum, float *GPUML_RESTRICT rm,
                                           float *GPUML_RESTRICT rv, float *GPUML_RESTRICT mean_f,
                                           float *GPUML_RESTRICT invstd_f)
{
    double sq = 0.0, n = cnt_d[c];
    for (int64_t ch = 0; ch < nch; ch++)
        sq += p0[ch * C + c];
    double var = n > 0.0 ? sq / n : 0.0;
    mean_f[c] = (float)mean_d[c];
    invstd_f[c] = (float)(1.0 / sqrt(var + (double)eps));
    if (rm && n >= 2.0) {
        double m = (double)momentum;
        rm[c] = (float)((1.0 - m) * (double)rm[c] + m * mean_d[c]);
        rv[c] = (float)((1.0 - m) * (double)rv[c] + m * (var * n / (n - 1.0)));
    }
}

/* Inference statistics of channel c from the running ones. */
GPUML_HD static inline void gpuml_k_bn_running(const float *GPUML_RESTRICT rm, const float *GPUML_RESTRICT rv, float eps,
                                               int64_t c, float *GPUML_RESTRICT mean_f, float *GPUML_RESTRICT invstd_f)
{
    mean_f[c] = rm[c];
    invstd_f[c] = (float)(1.0 / sqrt((double)rv[c] + (double)eps));
}

/* y at row r, channel c: act(xhat gamma + beta); 0 on padding rows. */
GPUML_HD static inline void gpuml_k_bn_normalize(const float *x, const uint8_t *GPUML_RESTRICT mask, int64_t C,
                                                 const float *GPUML_RESTRICT mean_f,
                                                 const float *GPUML_RESTRICT invstd_f, const float *GPUML_RESTRICT gamma,
                                                 const float *GPUML_RESTRICT beta, int relu, int64_t r, int64_t c,
                                                 float *y)
{
    int64_t e = r * C + c;
    if (mask && !mask[r]) {
        y[e] = 0.0f;
        return;
    }
    y[e] = gpuml_k_bn_act(gpuml_k_bn_affine(gpuml_k_bn_xhat(x, mean_f, invstd_f, c, e), gamma, beta, c), relu);
}

/* A whole row r of y (the CPU's loop: the row's mask is read once). */
GPUML_HD static inline void gpuml_k_bn_normalize_row(const float *x, const uint8_t *GPUML_RESTRICT mask, int64_t C,
                                                     const float *GPUML_RESTRICT mean_f,
                                                     const float *GPUML_RESTRICT invstd_f,
                                                     const float *GPUML_RESTRICT gamma,
                                                     const float *GPUML_RESTRICT beta, int relu, int64_t r, float *y)
{
    if (mask && !mask[r]) {
        for (int64_t c = 0; c < C; c++)
            y[r * C + c] = 0.0f;
        return;
    }
    for (int64_t c = 0; c < C; c++)
        gpuml_k_bn_normalize(x, NULL, C, mean_f, invstd_f, gamma, beta, relu, r, c, y);
}

/* Channel c after the GRAD partials: ggamma / gbeta (either may be NULL)
 * and the two per-channel terms of gx, coef[c] = mean gy and
 * coef[C + c] = mean gy xhat (0 in inference mode). */
GPUML_HD static inline void gpuml_k_bn_grad_stats(const double *GPUML_RESTRICT p0, const double *GPUML_RESTRICT p1,
                                                  const double *GPUML_RESTRICT p2, int64_t nch, int64_t C, int64_t c,
                                                  int training, int accumulate, float *GPUML_RESTRICT ggamma,
                                                  float *GPUML_RESTRICT gbeta, float *GPUML_RESTRICT coef)
{
    double sg = 0.0, sgx = 0.0, n = 0.0;
    for (int64_t ch = 0; ch < nch; ch++) {
        sg += p0[ch * C + c];
        sgx += p1[ch * C + c];
        n += p2[ch * C + c];
    }
    if (ggamma)
        ggamma[c] = accumulate ? ggamma[c] + (float)sgx : (float)sgx;
    if (gbeta)
        gbeta[c] = accumulate ? gbeta[c] + (float)sg : (float)sg;
    coef[c] = training && n > 0.0 ? (float)(sg / n) : 0.0f;
    coef[C + c] = training && n > 0.0 ? (float)(sgx / n) : 0.0f;
}

/* gx at row r, channel c: gamma invstd (g - mean g - xhat mean(g xhat)) in
 * training, gamma invstd g in inference, with g = gy gated by the fused
 * activation; 0 on padding rows. */
GPUML_HD static inline void gpuml_k_bn_grad_x(const float *x, const float *gy, const uint8_t *GPUML_RESTRICT mask,
                                              int64_t C, int training, const float *GPUML_RESTRICT mean_f,
                                              const float *GPUML_RESTRICT invstd_f, const float *GPUML_RESTRICT gamma,
                                              const float *GPUML_RESTRICT beta, int relu,
                                              const float *GPUML_RESTRICT coef, int64_t r, int64_t c, float *gx)
{
    int64_t e = r * C + c;
    if (mask && !mask[r]) {
        gx[e] = 0.0f;
        return;
    }
    float gi = gamma ? gamma[c] * invstd_f[c] : invstd_f[c];
    float xh, g = gpuml_k_bn_gy(x, gy, mean_f, invstd_f, gamma, beta, relu, c, e, &xh);
    float gt = g - coef[c] - xh * coef[C + c]; /* coef is 0 in inference: */
    gx[e] = gi * (training ? gt : g);          /* g itself, bit for bit      */
}

/* A whole row r of gx (the CPU's loop). */
GPUML_HD static inline void gpuml_k_bn_grad_x_row(const float *x, const float *gy, const uint8_t *GPUML_RESTRICT mask,
                                                  int64_t C, int training, const float *GPUML_RESTRICT mean_f,
                                                  const float *GPUML_RESTRICT invstd_f,
                                                  const float *GPUML_RESTRICT gamma, const float *GPUML_RESTRICT beta,
                                                  int relu, const float *GPUML_RESTRICT coef, int64_t r, float *gx)
{
    if (mask && !mask[r]) {
        for (int64_t c = 0; c < C; c++)
            gx[r * C + c] = 0.0f;
        return;
    }
    for (int64_t c = 0; c < C; c++)
        gpuml_k_bn_grad_x(x, gy, NULL, C, training, mean_f, invstd_f, gamma, beta, relu, coef, r, c, gx);
}

#endif
