/* kernels/gravnet.h - GravNet's fused neighbour aggregation: [mean, max] of
 * w_ij h_j, w_ij = exp(-alpha d2_ij), over the valid slots of a kNN graph
 * idx [n, k] (slot s of row i valid when s >= first and 0 <= idx < n).
 *
 * The messages [n, k, P] are never stored: the weights [n, k] are computed
 * once (gpuml_k_gravnet_weights_row), then every output element (i, p)
 * walks its row's slots. The backward gathers the gradient of h_j over the
 * reverse adjacency (rowptr/col of gpuml_index_csr): one writer per element,
 * in CSR order, no atomics. */
#ifndef GPUML_KERNELS_GRAVNET_H
#define GPUML_KERNELS_GRAVNET_H

#include "common.h"
#include "graph_common.h"

/* w[i, s] (0 on padding) and cnt[i] = number of valid slots. */
GPUML_HD static inline void gpuml_k_gravnet_weights_row(const int32_t *GPUML_RESTRICT idx,
                                                        const float *GPUML_RESTRICT d2, int64_t n, int64_t k,
                                                        int first, float alpha, int64_t i, float *GPUML_RESTRICT w,
                                                        int32_t *GPUML_RESTRICT cnt)
{
    int32_t c = 0;
    for (int64_t e = i * k; e < (i + 1) * k; e++) {
        bool v = gpuml_k_edge_valid(idx, n, k, first, e);
        w[e] = v ? expf(-(alpha * d2[e])) : 0.0f;
        c += v ? 1 : 0;
    }
    cnt[i] = c;
}

/* Output element (i, p): out[i, p] = mean, out[i, P + p] = max (NaN wins,
 * else the first largest), am[i, p] = its slot or -1. Mean summed in
 * double, in slot order. */
GPUML_HD static inline void gpuml_k_gravnet_fwd_elem(const float *GPUML_RESTRICT h, const int32_t *GPUML_RESTRICT idx,
                                                     const float *GPUML_RESTRICT w, int64_t n, int64_t k, int64_t P,
                                                     int first, int64_t i, int64_t p, float *GPUML_RESTRICT out,
                                                     int32_t *GPUML_RESTRICT am)
{
    double sum = 0.0;
    float best = 0.0f;
    int32_t bs = -1, cnt = 0;
    for (int64_t s = first; s < k; s++) {
        int64_t e = i * k + s;
        int32_t j = idx[e];
        if (j < 0 || (int64_t)j >= n)
            continue;
        float m = w[e] * h[(int64_t)j * P + p];
        sum += (double)m;
        cnt++;
        if (bs < 0 || (best == best && (m > best || m != m))) {
            best = m;
            bs = (int32_t)s;
        }
    }
    out[i * 2 * P + p] = cnt ? (float)(sum / (double)cnt) : 0.0f;
    out[i * 2 * P + P + p] = cnt ? best : 0.0f;
    if (am)
        am[i * P + p] = bs;
}

/* Columns of a tile processed together (CPU drivers): the same arithmetic,
 * in the same order per element, as the element bodies, so both give the
 * same bits; the inner loops over the tile vectorise. */
#define GPUML_K_GN_TILE 32

/* gpuml_k_gravnet_fwd_elem for columns p0 .. p0 + np - 1 (np <= tile). */
GPUML_HD static inline void gpuml_k_gravnet_fwd_tile(const float *GPUML_RESTRICT h, const int32_t *GPUML_RESTRICT idx,
                                                     const float *GPUML_RESTRICT w, int64_t n, int64_t k, int64_t P,
                                                     int first, int64_t i, int64_t p0, int64_t np,
                                                     float *GPUML_RESTRICT out, int32_t *GPUML_RESTRICT am)
{
    double sum[GPUML_K_GN_TILE];
    float best[GPUML_K_GN_TILE];
    int32_t bs[GPUML_K_GN_TILE], cnt = 0;
    for (int64_t q = 0; q < np; q++) {
        sum[q] = 0.0;
        best[q] = 0.0f;
        bs[q] = -1;
    }
    for (int64_t s = first; s < k; s++) {
        int64_t e = i * k + s;
        int32_t j = idx[e];
        if (j < 0 || (int64_t)j >= n)
            continue;
        cnt++;
        float ws = w[e];
        const float *hj = h + (int64_t)j * P + p0;
        for (int64_t q = 0; q < np; q++) {
            float m = ws * hj[q];
            sum[q] += (double)m;
            if (bs[q] < 0 || (best[q] == best[q] && (m > best[q] || m != m))) {
                best[q] = m;
                bs[q] = (int32_t)s;
            }
        }
    }
    for (int64_t q = 0; q < np; q++) {
        out[i * 2 * P + p0 + q] = cnt ? (float)(sum[q] / (double)cnt) : 0.0f;
        out[i * 2 * P + P + p0 + q] = cnt ? best[q] : 0.0f;
        if (am)
            am[i * P + p0 + q] = bs[q];
    }
}

/* The mean's share of the gradient of row i, gm[i, p] = gout[i, p] / cnt_i
 * (0 without neighbours), computed once per element. */
GPUML_HD static inline void gpuml_k_gravnet_grad_mean(const float *GPUML_RESTRICT gout, const int32_t *GPUML_RESTRICT cnt,
                                                      int64_t P, int64_t i, int64_t p, float *GPUML_RESTRICT gm)
{
    int32_t c = cnt[i];
    gm[i * P + p] = c ? gout[i * 2 * P + p] / (float)c : 0.0f;
}

/* dL/dm_isp for a valid slot: the mean's share plus the max's when s is the
 * arg-max. */
GPUML_HD static inline float gpuml_k_gravnet_coef(const float *GPUML_RESTRICT gout, const float *GPUML_RESTRICT gm,
                                                  const int32_t *GPUML_RESTRICT am, int64_t P, int64_t i, int64_t s,
                                                  int64_t p)
{
    float g = gm[i * P + p];
    if (am[i * P + p] == (int32_t)s)
        g = g + gout[i * 2 * P + P + p];
    return g;
}

/* gd2[e] for edge e = (i, s): -alpha w_is sum_p coef_isp h_jp (0 if not valid). */
GPUML_HD static inline void gpuml_k_gravnet_grad_d2(const float *GPUML_RESTRICT h, const int32_t *GPUML_RESTRICT idx,
                                                    const float *GPUML_RESTRICT w, const float *GPUML_RESTRICT gm,
                                                    const int32_t *GPUML_RESTRICT am, const float *GPUML_RESTRICT gout,
                                                    int64_t n, int64_t k, int64_t P, int first, float alpha, int64_t e,
                                                    float *GPUML_RESTRICT gd2)
{
    if (!gpuml_k_edge_valid(idx, n, k, first, e)) {
        gd2[e] = 0.0f;
        return;
    }
    int64_t i = e / k, s = e - i * k, j = idx[e];
    double acc = 0.0;
    for (int64_t p = 0; p < P; p++)
        acc += (double)(gpuml_k_gravnet_coef(gout, gm, am, P, i, s, p) * h[j * P + p]);
    gd2[e] = (float)(acc * (-(double)alpha * (double)w[e]));
}

/* gh[j, p] = sum over the edges (i, s) into j, in CSR order, of
 * w_is coef_isp; columns p0 .. p0 + np - 1 (np <= GPUML_K_GN_TILE; the CUDA
 * launcher calls it with np = 1). */
GPUML_HD static inline void gpuml_k_gravnet_grad_h(const int32_t *GPUML_RESTRICT idx, const float *GPUML_RESTRICT w,
                                                   const float *GPUML_RESTRICT gm, const int32_t *GPUML_RESTRICT am,
                                                   const float *GPUML_RESTRICT gout, const int64_t *GPUML_RESTRICT rowptr,
                                                   const int64_t *GPUML_RESTRICT col, int64_t n, int64_t k, int64_t P,
                                                   int first, int64_t j, int64_t p0, int64_t np,
                                                   float *GPUML_RESTRICT gh)
{
    int64_t m = n * k, b, end;
    gpuml_k_csr_range(rowptr, j, m, &b, &end);
    double acc[GPUML_K_GN_TILE];
    for (int64_t q = 0; q < np; q++)
        acc[q] = 0.0;
    for (int64_t r = b; r < end; r++) {
        int64_t e = col[r];
        if (e < 0 || e >= m || (int64_t)idx[e] != j || !gpuml_k_edge_valid(idx, n, k, first, e))
            continue;
        int64_t i = e / k, s = e - i * k;
        float we = w[e];
        for (int64_t q = 0; q < np; q++)
            acc[q] += (double)(we * gpuml_k_gravnet_coef(gout, gm, am, P, i, s, p0 + q));
    }
    for (int64_t q = 0; q < np; q++)
        gh[j * P + p0 + q] = (float)acc[q];
}

#endif
