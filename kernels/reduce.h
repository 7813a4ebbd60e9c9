/* kernels/reduce.h - reductions along one axis of x viewed as
 * [outer, len, inner], and softmax / log-softmax over contiguous rows.
 * Op numbers are gpuml_reduce_op (gpuml/ops.h). */
#ifndef GPUML_KERNELS_REDUCE_H
#define GPUML_KERNELS_REDUCE_H

#include "common.h"
#include "gpuml/ops.h"

/* Output element (o, i): reduce x[o, 0..len-1, i]. Sums in double, in
 * index order. MAX/MIN: NaN wins; the first extreme index is kept. */
GPUML_HD static inline void gpuml_k_reduce_one(int op, const float *GPUML_RESTRICT x, int64_t len, int64_t inner,
                                               float *out, int64_t *arg)
{
    if (op == GPUML_REDUCE_SUM || op == GPUML_REDUCE_MEAN) {
        double acc = 0.0;
        for (int64_t l = 0; l < len; l++)
            acc += (double)x[l * inner];
        *out = op == GPUML_REDUCE_SUM ? (float)acc : (len > 0 ? (float)(acc / (double)len) : NAN);
        if (arg)
            *arg = -1;
        return;
    }
    bool is_max = op == GPUML_REDUCE_MAX;
    float best = is_max ? -INFINITY : INFINITY;
    int64_t besti = -1;
    for (int64_t l = 0; l < len; l++) {
        float v = x[l * inner];
        if (v != v) { /* NaN: the first one wins for good */
            best = v;
            besti = l;
            break;
        }
        if (besti < 0 || (is_max ? v > best : v < best)) {
            best = v;
            besti = l;
        }
    }
    *out = best;
    if (arg)
        *arg = besti;
}

/* Softmax of one row of n elements, max-subtracted. take_log != 0: log-softmax. */
GPUML_HD static inline void gpuml_k_softmax_row(const float *x, float *y, int64_t n, int take_log)
{
    float m = -INFINITY;
    for (int64_t j = 0; j < n; j++)
        m = (x[j] > m || x[j] != x[j]) ? x[j] : m;
    if (m == -INFINITY) /* all -inf: uniform result would be 0/0; keep NaN */
        m = 0.0f;
    double sum = 0.0;
    for (int64_t j = 0; j < n; j++)
        sum += (double)expf(x[j] - m);
    if (take_log) {
        float lse = (float)log((double)sum);
        for (int64_t j = 0; j < n; j++)
            y[j] = x[j] - m - lse;
    } else {
        float inv = (float)(1.0 / sum);
        for (int64_t j = 0; j < n; j++)
            y[j] = expf(x[j] - m) * inv;
    }
}

/* Backward of one row given the forward output y. */
GPUML_HD static inline void gpuml_k_softmax_row_grad(const float *GPUML_RESTRICT y, const float *gy,
                                                     float *gx, int64_t n, int take_log)
{
    double dot = 0.0;
    if (take_log) {
        for (int64_t j = 0; j < n; j++)
            dot += (double)gy[j];
        float s = (float)dot;
        for (int64_t j = 0; j < n; j++)
            gx[j] = gy[j] - expf(y[j]) * s;
    } else {
        for (int64_t j = 0; j < n; j++)
            dot += (double)gy[j] * (double)y[j];
        float s = (float)dot;
        for (int64_t j = 0; j < n; j++)
            gx[j] = y[j] * (gy[j] - s);
    }
}

#endif
