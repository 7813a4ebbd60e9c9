/* kernels/neighbour.h - reductions of an edge tensor [n, ke, C] over the
 * valid edges of each node (ke = k - first; edge slot t is idx slot
 * t + first), and the edge validity mask. Op numbers are gpuml_reduce_op. */
#ifndef GPUML_KERNELS_NEIGHBOUR_H
#define GPUML_KERNELS_NEIGHBOUR_H

#include "common.h"
#include "gpuml/ops.h"
#include "gravnet.h" /* gpuml_k_edge_valid */

/* out[i, c] and, for MAX, am[i, c]. Sum in double in slot order; MAX: NaN
 * wins, else the first largest. No valid edge: 0 (am -1). */
GPUML_HD static inline void gpuml_k_neighbour_reduce(int op, const float *GPUML_RESTRICT edges,
                                                     const int32_t *GPUML_RESTRICT idx, int64_t n, int64_t k, int first,
                                                     int64_t C, int64_t i, int64_t c, float *GPUML_RESTRICT out,
                                                     int32_t *GPUML_RESTRICT am)
{
    int64_t ke = k - first;
    double sum = 0.0;
    float best = 0.0f;
    int32_t bt = -1, cnt = 0;
    for (int64_t t = 0; t < ke; t++) {
        if (!gpuml_k_edge_valid(idx, n, k, first, i * k + t + first))
            continue;
        float v = edges[(i * ke + t) * C + c];
        cnt++;
        sum += (double)v;
        if (bt < 0 || (best == best && (v > best || v != v))) {
            best = v;
            bt = (int32_t)t;
        }
    }
    float r;
    if (op == GPUML_REDUCE_MAX)
        r = cnt ? best : 0.0f;
    else if (op == GPUML_REDUCE_MEAN)
        r = cnt ? (float)(sum / (double)cnt) : 0.0f;
    else
        r = (float)sum;
    out[i * C + c] = r;
    if (am)
        am[i * C + c] = bt;
}

/* gedges[i, :, c] from gout[i, c]: written for every edge slot t. */
GPUML_HD static inline void gpuml_k_neighbour_grad(int op, const float *GPUML_RESTRICT gout,
                                                   const int32_t *GPUML_RESTRICT am, const int32_t *GPUML_RESTRICT idx,
                                                   int64_t n, int64_t k, int first, int64_t C, int64_t i, int64_t c,
                                                   float *GPUML_RESTRICT gedges)
{
    int64_t ke = k - first;
    int32_t cnt = 0;
    for (int64_t t = 0; t < ke; t++)
        cnt += gpuml_k_edge_valid(idx, n, k, first, i * k + t + first) ? 1 : 0;
    float g = gout[i * C + c];
    float gm = cnt ? g / (float)cnt : 0.0f;
    int32_t a = op == GPUML_REDUCE_MAX ? am[i * C + c] : -1;
    for (int64_t t = 0; t < ke; t++) {
        float v = 0.0f;
        if (gpuml_k_edge_valid(idx, n, k, first, i * k + t + first))
            v = op == GPUML_REDUCE_MAX ? (a == (int32_t)t ? g : 0.0f) : op == GPUML_REDUCE_MEAN ? gm : g;
        gedges[(i * ke + t) * C + c] = v;
    }
}

GPUML_HD static inline void gpuml_k_edge_mask_elem(const int32_t *GPUML_RESTRICT idx, int64_t n, int64_t k, int first,
                                                   int64_t i, int64_t t, uint8_t *GPUML_RESTRICT mask)
{
    mask[i * (k - first) + t] = gpuml_k_edge_valid(idx, n, k, first, i * k + t + first) ? 1 : 0;
}

#endif
