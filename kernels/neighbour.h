/* kernels/neighbour.h - reductions of an edge tensor [n, ke, C] over the
 * valid edges of each node (ke = k - first; edge slot t is idx slot
 * t + first), and the edge validity mask. Op numbers are gpuml_reduce_op. */
#ifndef GPUML_KERNELS_NEIGHBOUR_H
#define GPUML_KERNELS_NEIGHBOUR_H

#include "common.h"
#include "gpuml/ops.h"
#include "graph_common.h"

/* out[i, c] and, when am is given, am[i, c]: for MAX the slot of the
 * result, else -1. Sum in double in slot order; MAX: NaN wins, else the
 * first largest. No valid edge: 0 (am -1). */
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
        if (op == GPUML_REDUCE_MAX && (bt < 0 || (best == best && (v > best || v != v)))) {
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

/* Channels per block in the row variants below (accumulators on the stack). */
#define GPUML_K_NB_BLOCK 32

/* Node i, all channels: gpuml_k_neighbour_reduce for c in [0, C), walking
 * the edges row by row (the CPU's memory order, the validity of each slot
 * tested once). Each channel still accumulates its slots in order with the
 * same operations, so the result is bitwise the per-channel function's. */
GPUML_HD static inline void gpuml_k_neighbour_reduce_row(int op, const float *GPUML_RESTRICT edges,
                                                         const int32_t *GPUML_RESTRICT idx, int64_t n, int64_t k,
                                                         int first, int64_t C, int64_t i, float *GPUML_RESTRICT out,
                                                         int32_t *GPUML_RESTRICT am)
{
    int64_t ke = k - first;
    for (int64_t c0 = 0; c0 < C; c0 += GPUML_K_NB_BLOCK) {
        int64_t nc = gpuml_k_min64(C - c0, GPUML_K_NB_BLOCK);
        double sum[GPUML_K_NB_BLOCK];
        float best[GPUML_K_NB_BLOCK];
        int32_t bt[GPUML_K_NB_BLOCK], cnt = 0;
        for (int64_t c = 0; c < nc; c++) {
            sum[c] = 0.0;
            best[c] = 0.0f;
            bt[c] = -1;
        }
        for (int64_t t = 0; t < ke; t++) {
            if (!gpuml_k_edge_valid(idx, n, k, first, i * k + t + first))
                continue;
            const float *row = edges + (i * ke + t) * C + c0;
            cnt++;
            if (op == GPUML_REDUCE_MAX) {
                for (int64_t c = 0; c < nc; c++) {
                    float v = row[c];
                    if (bt[c] < 0 || (best[c] == best[c] && (v > best[c] || v != v))) {
                        best[c] = v;
                        bt[c] = (int32_t)t;
                    }
                }
            } else {
                for (int64_t c = 0; c < nc; c++)
                    sum[c] += (double)row[c];
            }
        }
        for (int64_t c = 0; c < nc; c++) {
            float r;
            if (op == GPUML_REDUCE_MAX)
                r = cnt ? best[c] : 0.0f;
            else if (op == GPUML_REDUCE_MEAN)
                r = cnt ? (float)(sum[c] / (double)cnt) : 0.0f;
            else
                r = (float)sum[c];
            out[i * C + c0 + c] = r;
            if (am)
                am[i * C + c0 + c] = bt[c];
        }
    }
}

/* Node i, all channels: gpuml_k_neighbour_grad for c in [0, C). */
GPUML_HD static inline void gpuml_k_neighbour_grad_row(int op, const float *GPUML_RESTRICT gout,
                                                       const int32_t *GPUML_RESTRICT am,
                                                       const int32_t *GPUML_RESTRICT idx, int64_t n, int64_t k,
                                                       int first, int64_t C, int64_t i, float *GPUML_RESTRICT gedges)
{
    int64_t ke = k - first;
    int32_t cnt = 0;
    for (int64_t t = 0; t < ke; t++)
        cnt += gpuml_k_edge_valid(idx, n, k, first, i * k + t + first) ? 1 : 0;
    const float *g = gout + i * C;
    const int32_t *a = am ? am + i * C : NULL;
    for (int64_t t = 0; t < ke; t++) {
        float *o = gedges + (i * ke + t) * C;
        if (!gpuml_k_edge_valid(idx, n, k, first, i * k + t + first)) {
            for (int64_t c = 0; c < C; c++)
                o[c] = 0.0f;
        } else if (op == GPUML_REDUCE_MAX) {
            for (int64_t c = 0; c < C; c++)
                o[c] = a[c] == (int32_t)t ? g[c] : 0.0f;
        } else if (op == GPUML_REDUCE_MEAN) {
            for (int64_t c = 0; c < C; c++)
                o[c] = cnt ? g[c] / (float)cnt : 0.0f;
        } else {
            for (int64_t c = 0; c < C; c++)
                o[c] = g[c];
        }
    }
}

GPUML_HD static inline void gpuml_k_edge_mask_elem(const int32_t *GPUML_RESTRICT idx, int64_t n, int64_t k, int first,
                                                   int64_t i, int64_t t, uint8_t *GPUML_RESTRICT mask)
{
    mask[i * (k - first) + t] = gpuml_k_edge_valid(idx, n, k, first, i * k + t + first) ? 1 : 0;
}

#endif
