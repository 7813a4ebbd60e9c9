/* kernels/segment.h - per-event reductions of a ragged batch [N, C] with
 * row_splits [B+1]. One output element (b, c) per call. */
#ifndef GPUML_KERNELS_SEGMENT_H
#define GPUML_KERNELS_SEGMENT_H

#include "common.h"
#include "gpuml/ops.h"

/* Sum / mean accumulate in double in row order; max keeps the first maximum
 * (NaN wins). An empty event gives 0 and argidx -1. */
GPUML_HD static inline void gpuml_k_segment_reduce_one(int op, const float *GPUML_RESTRICT x, int64_t ncols,
                                                       int64_t begin, int64_t end, int64_t c, float *out,
                                                       int64_t *arg)
{
    if (end <= begin) {
        *out = 0.0f;
        if (arg)
            *arg = -1;
        return;
    }
    if (op == GPUML_REDUCE_MAX) {
        float best = x[begin * ncols + c];
        int64_t besti = begin;
        for (int64_t r = begin + 1; r < end && best == best; r++) {
            float v = x[r * ncols + c];
            if (v > best || v != v) {
                best = v;
                besti = r;
            }
        }
        *out = best;
        if (arg)
            *arg = besti;
        return;
    }
    double acc = 0.0;
    for (int64_t r = begin; r < end; r++)
        acc += (double)x[r * ncols + c];
    if (op == GPUML_REDUCE_MEAN)
        acc /= (double)(end - begin);
    *out = (float)acc;
    if (arg)
        *arg = -1;
}

/* Gradient for row r (in event b = [begin, end)), column c. */
GPUML_HD static inline float gpuml_k_segment_grad_one(int op, const float *GPUML_RESTRICT gout, const int64_t *arg,
                                                      int64_t ncols, int64_t b, int64_t begin, int64_t end, int64_t r,
                                                      int64_t c)
{
    float g = gout[b * ncols + c];
    switch (op) {
    case GPUML_REDUCE_SUM: return g;
    case GPUML_REDUCE_MEAN: return g / (float)(end - begin);
    case GPUML_REDUCE_MAX: return arg[b * ncols + c] == r ? g : 0.0f;
    default: return NAN;
    }
}

/* Event of row r: the last b in [0, batch) with row_splits[b] <= r (binary
 * search; empty events are skipped over). */
GPUML_HD static inline int64_t gpuml_k_event_of_row(const int64_t *GPUML_RESTRICT row_splits, int64_t batch, int64_t r)
{
    int64_t lo = 0, hi = batch;
    while (hi - lo > 1) {
        int64_t mid = (lo + hi) / 2;
        if (row_splits[mid] <= r)
            lo = mid;
        else
            hi = mid;
    }
    return lo;
}

#endif
