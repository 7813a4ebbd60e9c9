/* kernels/edgeconv.h - EdgeConv's first linear layer without the edge
 * features: W [x_i, x_j - x_i] + b = (W1 - W2) x_i + b + W2 x_j.
 *
 * The weight is rearranged once into wcat [2C, F] = [W1 - W2; W2], one GEMM
 * gives the per-node products pn [n, 2C] = x wcat^T, and every edge output
 * is the sum of two rows of pn. The backward reverses the same steps: per
 * node gradients gpn [n, 2C] (the x_i half summed over the node's own
 * edges, the x_j half gathered over the reverse adjacency), then GEMMs for
 * x and wcat, then wcat's gradient is folded back into W's layout.
 *
 * Edge tensors are [n, ke, C] with ke = k - first: edge slot t is idx slot
 * t + first. */
#ifndef GPUML_KERNELS_EDGECONV_H
#define GPUML_KERNELS_EDGECONV_H

#include "common.h"
#include "graph_common.h"

/* wcat[r, f] for r in [0, 2C): W1 - W2 above, W2 below. W is [C, 2F]. */
GPUML_HD static inline void gpuml_k_edge_wcat_elem(const float *GPUML_RESTRICT w, int64_t C, int64_t F, int64_t r,
                                                   int64_t f, float *GPUML_RESTRICT wcat)
{
    if (r < C)
        wcat[r * F + f] = w[r * 2 * F + f] - w[r * 2 * F + F + f];
    else
        wcat[r * F + f] = w[(r - C) * 2 * F + F + f];
}

/* out[i, t, c] = (pn[i, c] + b[c]) + pn[j, C + c], or 0 on padding. */
GPUML_HD static inline void gpuml_k_edge_combine_elem(const float *GPUML_RESTRICT pn, const float *GPUML_RESTRICT bias,
                                                      const int32_t *GPUML_RESTRICT idx, int64_t n, int64_t k, int first,
                                                      int64_t C, int64_t i, int64_t t, int64_t c,
                                                      float *GPUML_RESTRICT out)
{
    int64_t e = i * k + t + first, ke = k - first;
    float v = 0.0f;
    if (gpuml_k_edge_valid(idx, n, k, first, e)) {
        float a = pn[i * 2 * C + c];
        if (bias)
            a = a + bias[c];
        v = a + pn[(int64_t)idx[e] * 2 * C + C + c];
    }
    out[(i * ke + t) * C + c] = v;
}

/* Node element (v, c): gpn[v, c] = sum of gout over v's own valid edges
 * (slot order), gpn[v, C + c] = sum of gout over the edges into v (CSR
 * order). Both in double. */
GPUML_HD static inline void gpuml_k_edge_grad_node(const float *GPUML_RESTRICT gout, const int32_t *GPUML_RESTRICT idx,
                                                   const int64_t *GPUML_RESTRICT rowptr,
                                                   const int64_t *GPUML_RESTRICT col, int64_t n, int64_t k, int first,
                                                   int64_t C, int64_t v, int64_t c, float *GPUML_RESTRICT gpn)
{
    int64_t ke = k - first, m = n * k;
    double own = 0.0, in = 0.0;
    for (int64_t t = 0; t < ke; t++)
        if (gpuml_k_edge_valid(idx, n, k, first, v * k + t + first))
            own += (double)gout[(v * ke + t) * C + c];
    int64_t b, end;
    gpuml_k_csr_range(rowptr, v, m, &b, &end);
    for (int64_t q = b; q < end; q++) {
        int64_t e = col[q];
        if (e < 0 || e >= m || (int64_t)idx[e] != v || !gpuml_k_edge_valid(idx, n, k, first, e))
            continue;
        int64_t i = e / k, s = e - i * k;
        in += (double)gout[(i * ke + s - first) * C + c];
    }
    gpn[v * 2 * C + c] = (float)own;
    gpn[v * 2 * C + C + c] = (float)in;
}

/* Node v, all channels: gpuml_k_edge_grad_node for c in [0, C), walking
 * rows (each channel sums the same terms in the same order: bitwise the
 * per-channel function's result). */
GPUML_HD static inline void gpuml_k_edge_grad_node_row(const float *GPUML_RESTRICT gout,
                                                       const int32_t *GPUML_RESTRICT idx,
                                                       const int64_t *GPUML_RESTRICT rowptr,
                                                       const int64_t *GPUML_RESTRICT col, int64_t n, int64_t k,
                                                       int first, int64_t C, int64_t v, float *GPUML_RESTRICT gpn)
{
    enum { B = 32 };
    int64_t ke = k - first, m = n * k;
    int64_t b, end;
    gpuml_k_csr_range(rowptr, v, m, &b, &end);
    for (int64_t c0 = 0; c0 < C; c0 += B) {
        int64_t nc = gpuml_k_min64(C - c0, B);
        double own[B], in[B];
        for (int64_t c = 0; c < nc; c++)
            own[c] = in[c] = 0.0;
        for (int64_t t = 0; t < ke; t++) {
            if (!gpuml_k_edge_valid(idx, n, k, first, v * k + t + first))
                continue;
            const float *row = gout + (v * ke + t) * C + c0;
            for (int64_t c = 0; c < nc; c++)
                own[c] += (double)row[c];
        }
        for (int64_t q = b; q < end; q++) {
            int64_t e = col[q];
            if (e < 0 || e >= m || (int64_t)idx[e] != v || !gpuml_k_edge_valid(idx, n, k, first, e))
                continue;
            int64_t i = e / k, s = e - i * k;
            const float *row = gout + (i * ke + s - first) * C + c0;
            for (int64_t c = 0; c < nc; c++)
                in[c] += (double)row[c];
        }
        for (int64_t c = 0; c < nc; c++) {
            gpn[v * 2 * C + c0 + c] = (float)own[c];
            gpn[v * 2 * C + C + c0 + c] = (float)in[c];
        }
    }
}

/* gw[c, f] for f in [0, 2F) from gwcat [2C, F]: W1 gets the (W1 - W2) row,
 * W2 gets its own row minus it. */
GPUML_HD static inline void gpuml_k_edge_grad_w_elem(const float *GPUML_RESTRICT gwcat, int64_t C, int64_t F,
                                                     int64_t c, int64_t f, int accumulate, float *GPUML_RESTRICT gw)
{
    float g = f < F ? gwcat[c * F + f] : gwcat[(C + c) * F + (f - F)] - gwcat[c * F + (f - F)];
    float *o = gw + c * 2 * F + f;
    *o = accumulate ? *o + g : g;
}

#endif
