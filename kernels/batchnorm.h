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
#include "gpuml/ops.h" /* gpuml_reduce_op */

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
 * c): gy[ge] gated by the activation. gy is [R, C] (ge = e), or, after a
 * fused aggregation, one row per group of gk rows (ge = (r / gk) C + c). */
GPUML_HD static inline float gpuml_k_bn_gy(const float *GPUML_RESTRICT x, const float *GPUML_RESTRICT gy,
                                           const float *GPUML_RESTRICT mean_f, const float *GPUML_RESTRICT invstd_f,
                                           const float *GPUML_RESTRICT gamma, const float *GPUML_RESTRICT beta,
                                           int relu, int64_t c, int64_t e, int64_t ge, float *xhat)
{
    float xh = gpuml_k_bn_xhat(x, mean_f, invstd_f, c, e);
    *xhat = xh;
    return gpuml_k_bn_act_grad(gpuml_k_bn_affine(xh, gamma, beta, c), gy[ge], relu);
}

/* Partial sums of chunk ch, channel c, into p0/p1/p2[ch * C + c]. For the
 * GRAD kind gamma / beta / relu describe the forward's fused activation. */
GPUML_HD static inline void gpuml_k_bn_partial(int kind, const float *GPUML_RESTRICT x, const float *GPUML_RESTRICT gy,
                                               const uint8_t *GPUML_RESTRICT mask, int64_t R, int64_t C,
                                               const double *GPUML_RESTRICT mean_d, const float *GPUML_RESTRICT mean_f,
                                               const float *GPUML_RESTRICT invstd_f, const float *GPUML_RESTRICT gamma,
                                               const float *GPUML_RESTRICT beta, int relu, int64_t gk, int64_t ch,
                                               int64_t c, double *GPUML_RESTRICT p0, double *GPUML_RESTRICT p1,
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
            float xh, g = gpuml_k_bn_gy(x, gy, mean_f, invstd_f, gamma, beta, relu, c, e, (r / gk) * C + c, &xh);
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
                                                    const float *GPUML_RESTRICT beta, int relu, int64_t gk,
                                                    int64_t ch, double *GPUML_RESTRICT p0,
                                                    double *GPUML_RESTRICT p1, double *GPUML_RESTRICT p2)
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
            const int64_t g0 = (r / gk) * C;
            for (int64_t c = 0; c < C; c++) {
                float xh, g = gpuml_k_bn_gy(x, gy, mean_f, invstd_f, gamma, beta, relu, c, e0 + c, g0 + c, &xh);
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

/* gx of one element from its x and gy values (channel c): gamma invstd
 * (g - mean g - xhat mean(g xhat)) in training, gamma invstd g in
 * inference, with g = gy gated by the fused activation. */
GPUML_HD static inline float gpuml_k_bn_grad_x_val(float xv, float gyv, int64_t c, int64_t C, int training,
                                                   const float *GPUML_RESTRICT mean_f,
                                                   const float *GPUML_RESTRICT invstd_f,
                                                   const float *GPUML_RESTRICT gamma, const float *GPUML_RESTRICT beta,
                                                   int relu, const float *GPUML_RESTRICT coef)
{
    float gi = gamma ? gamma[c] * invstd_f[c] : invstd_f[c];
    float xh = (xv - mean_f[c]) * invstd_f[c];
    float g = gpuml_k_bn_act_grad(gpuml_k_bn_affine(xh, gamma, beta, c), gyv, relu);
    float gt = g - coef[c] - xh * coef[C + c]; /* coef is 0 in inference: */
    return gi * (training ? gt : g);           /* g itself, bit for bit      */
}

/* gx at row r, channel c; gy row gr (r, or r / gk after a fused
 * aggregation); 0 on padding rows. */
GPUML_HD static inline void gpuml_k_bn_grad_x(const float *x, const float *gy, const uint8_t *GPUML_RESTRICT mask,
                                              int64_t C, int training, const float *GPUML_RESTRICT mean_f,
                                              const float *GPUML_RESTRICT invstd_f, const float *GPUML_RESTRICT gamma,
                                              const float *GPUML_RESTRICT beta, int relu, int64_t gr,
                                              const float *GPUML_RESTRICT coef, int64_t r, int64_t c, float *gx)
{
    int64_t e = r * C + c;
    gx[e] = mask && !mask[r] ? 0.0f
                             : gpuml_k_bn_grad_x_val(x[e], gy[gr * C + c], c, C, training, mean_f, invstd_f, gamma,
                                                     beta, relu, coef);
}

/* A whole row r of gx (the CPU's loop; rows of gx do not overlap x's or
 * gy's other rows, so the row pointers are restrict). */
GPUML_HD static inline void gpuml_k_bn_grad_x_row(const float *x, const float *gy, const uint8_t *GPUML_RESTRICT mask,
                                                  int64_t C, int training, const float *GPUML_RESTRICT mean_f,
                                                  const float *GPUML_RESTRICT invstd_f,
                                                  const float *GPUML_RESTRICT gamma, const float *GPUML_RESTRICT beta,
                                                  int relu, int64_t gk, const float *GPUML_RESTRICT coef, int64_t r,
                                                  float *gx)
{
    float *GPUML_RESTRICT o = gx + r * C;
    if (mask && !mask[r]) {
        for (int64_t c = 0; c < C; c++)
            o[c] = 0.0f;
        return;
    }
    const float *xr = x + r * C, *gr = gy + (r / gk) * C;
    if (gamma && relu && training) { /* the common case, spelled out for the vectoriser */
        for (int64_t c = 0; c < C; c++)
            o[c] = gpuml_k_bn_grad_x_val(xr[c], gr[c], c, C, 1, mean_f, invstd_f, gamma, beta, 1, coef);
    } else {
        for (int64_t c = 0; c < C; c++)
            o[c] = gpuml_k_bn_grad_x_val(xr[c], gr[c], c, C, training, mean_f, invstd_f, gamma, beta, relu, coef);
    }
}

/* ---- batch norm, activation and a neighbour aggregation in one ---------
 * x [n, ke, C] as R = n ke rows, grouped by node (ke consecutive rows);
 * the mask tells the valid edges. out[i, c] = sum or mean over node i's
 * valid rows of act(xhat gamma + beta), summed in double in slot order - the
 * value gpuml_k_neighbour_reduce gives on the materialised y, bit for bit.
 * op is GPUML_REDUCE_SUM or GPUML_REDUCE_MEAN. */
GPUML_HD static inline void gpuml_k_bn_aggregate(const float *GPUML_RESTRICT x, const uint8_t *GPUML_RESTRICT mask,
                                                 int64_t ke, int64_t C, const float *GPUML_RESTRICT mean_f,
                                                 const float *GPUML_RESTRICT invstd_f,
                                                 const float *GPUML_RESTRICT gamma, const float *GPUML_RESTRICT beta,
                                                 int relu, int op, int64_t i, int64_t c, float *GPUML_RESTRICT out)
{
    double sum = 0.0;
    int32_t cnt = 0;
    for (int64_t t = 0; t < ke; t++) {
        int64_t r = i * ke + t;
        if (!mask[r])
            continue;
        cnt++;
        sum += (double)gpuml_k_bn_act(
            gpuml_k_bn_affine(gpuml_k_bn_xhat(x, mean_f, invstd_f, c, r * C + c), gamma, beta, c), relu);
    }
    out[i * C + c] = op == GPUML_REDUCE_MEAN ? (cnt ? (float)(sum / (double)cnt) : 0.0f) : (float)sum;
}

/* Node i, all channels (the CPU's loop; blocked accumulators, the same
 * per-channel order). */
GPUML_HD static inline void gpuml_k_bn_aggregate_row(const float *GPUML_RESTRICT x, const uint8_t *GPUML_RESTRICT mask,
                                                     int64_t ke, int64_t C, const float *GPUML_RESTRICT mean_f,
                                                     const float *GPUML_RESTRICT invstd_f,
                                                     const float *GPUML_RESTRICT gamma,
                                                     const float *GPUML_RESTRICT beta, int relu, int op, int64_t i,
                                                     float *GPUML_RESTRICT out)
{
    enum { B = 32 };
    int32_t cnt = 0;
    for (int64_t t = 0; t < ke; t++)
        cnt += mask[i * ke + t] ? 1 : 0;
    for (int64_t c0 = 0; c0 < C; c0 += B) {
        int64_t nc = gpuml_k_min64(C - c0, B);
        double sum[B];
        for (int64_t c = 0; c < nc; c++)
            sum[c] = 0.0;
        for (int64_t t = 0; t < ke; t++) {
            int64_t r = i * ke + t;
            if (!mask[r])
                continue;
            for (int64_t c = 0; c < nc; c++) {
                int64_t cc = c0 + c;
                sum[c] += (double)gpuml_k_bn_act(
                    gpuml_k_bn_affine(gpuml_k_bn_xhat(x, mean_f, invstd_f, cc, r * C + cc), gamma, beta, cc), relu);
            }
        }
        for (int64_t c = 0; c < nc; c++)
            out[i * C + c0 + c] = op == GPUML_REDUCE_MEAN ? (cnt ? (float)(sum[c] / (double)cnt) : 0.0f) : (float)sum[c];
    }
}

/* The gradient each valid row of node i receives from gout[i, c]: gout
 * for SUM, gout / count for MEAN (0 without valid rows) - as
 * gpuml_k_neighbour_grad writes it per edge. */
GPUML_HD static inline void gpuml_k_bn_aggregate_grad(const float *GPUML_RESTRICT gout,
                                                      const uint8_t *GPUML_RESTRICT mask, int64_t ke, int64_t C,
                                                      int op, int64_t i, int64_t c, float *GPUML_RESTRICT gnode)
{
    int32_t cnt = 0;
    for (int64_t t = 0; t < ke; t++)
        cnt += mask[i * ke + t] ? 1 : 0;
    float g = gout[i * C + c];
    gnode[i * C + c] = op == GPUML_REDUCE_MEAN ? (cnt ? g / (float)cnt : 0.0f) : g;
}

#endif
