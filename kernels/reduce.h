/* kernels/reduce.h - reductions along one axis of x viewed as
 * [outer, len, inner], and softmax / log-softmax over contiguous rows.
 * Op numbers are gpuml_reduce_op (gpuml/ops.h). */
#ifndef GPUML_KERNELS_REDUCE_H
#define GPUML_KERNELS_REDUCE_H

#include "binary.h" /* gpuml_k_sumto */
#include "common.h"
#include "gpuml/ops.h"

/* Fixed-order reductions along one axis.
 *
 * x is viewed as [outer, len, inner] with element strides (ostride,
 * rstride, 1). The order of every sum is fixed by the shape alone: the
 * reduced axis is cut into chunks of GPUML_K_RCHUNK terms, each chunk is
 * summed in index order in double, and the chunk sums [outer, nch, inner]
 * are reduced the same way, level after level, until one chunk remains.
 * No thread ever sums more than GPUML_K_RCHUNK terms, and neither the
 * thread count, the block size nor the backend changes the bits: the CPU
 * driver and the CUDA launcher run the same levels over the same bodies.
 * MAX/MIN keep (value, first index) per chunk and merge chunks in order,
 * which gives exactly the sequential answer: the first NaN wins for good,
 * otherwise the first extreme. */
#define GPUML_K_RCHUNK 128

/* Internal ops beside gpuml_reduce_op: sum of squares (gradient norm),
 * layer norm's gamma gradient, sum_r gy[r, i] * (x[r, i] - mean[r]) rstd[r],
 * and the broadcast gradient's sum over several axes (sumto: outer = output
 * elements, len = elements summed into each, inner 1). */
enum { GPUML_K_RSUMSQ = 64, GPUML_K_RLN_GAMMA = 65, GPUML_K_RSUMTO = 66 };

typedef struct gpuml_k_rview {
    int64_t outer, len, inner; /* reduce x[o, 0..len-1, i]           */
    int64_t ostride, rstride;  /* element strides of o and of the axis */
} gpuml_k_rview;

/* One reduction, passed by value to the drivers. */
typedef struct gpuml_k_rjob {
    int op;                                 /* gpuml_reduce_op or one of the internal ops above      */
    gpuml_k_rview v;
    const float *xf;                        /* the source in f32, or                                  */
    const double *xd;                       /* in f64 (sums only)                                     */
    const float *ln_x, *ln_mean, *ln_rstd;  /* GPUML_K_RLN_GAMMA: xf is gy, outer 1, x strided as gy  */
    float *out;                             /* [outer * inner] result, or NULL when out_d is set      */
    int64_t *arg;                           /* MAX/MIN: index along the axis; SUM/MEAN: -1; may be NULL */
    double *out_d;                          /* sums: the f64 result instead of out                    */
    int accumulate;                         /* out += result                                          */
    void *ws;                               /* gpuml_k_reduce_ws_bytes(v) bytes (NULL when 0)         */
    gpuml_k_sumto st;                       /* GPUML_K_RSUMTO: the kept and summed axes of xf         */
} gpuml_k_rjob;

/* Partials of one level: sums in d, or MAX/MIN values in f and indices in i. */
typedef struct gpuml_k_rpart {
    double *d;
    float *f;
    int64_t *i;
} gpuml_k_rpart;

GPUML_HD static inline int64_t gpuml_k_rchunks(int64_t len)
{
    return len <= GPUML_K_RCHUNK ? 1 : (len + GPUML_K_RCHUNK - 1) / GPUML_K_RCHUNK;
}

/* Level l writes its partials into buffer l % 2 (level 2 reuses buffer 0,
 * which is at least as large as anything after it). 16 bytes a slot. */
static inline int64_t gpuml_k_rbuf_slots(gpuml_k_rview v, int which)
{
    int64_t n1 = gpuml_k_rchunks(v.len), n2 = gpuml_k_rchunks(n1);
    if (n1 <= 1 || (which == 1 && n2 <= 1))
        return 0;
    return v.outer * (which == 0 ? n1 : n2) * v.inner;
}

static inline size_t gpuml_k_reduce_ws_bytes(gpuml_k_rview v)
{
    size_t a = (size_t)gpuml_k_rbuf_slots(v, 0) * 16, b = (size_t)gpuml_k_rbuf_slots(v, 1) * 16;
    return (a + 255) / 256 * 256 + (b + 255) / 256 * 256;
}

static inline gpuml_k_rpart gpuml_k_rpart_of(const gpuml_k_rjob *j, int which)
{
    int64_t cap = gpuml_k_rbuf_slots(j->v, which);
    size_t off0 = ((size_t)gpuml_k_rbuf_slots(j->v, 0) * 16 + 255) / 256 * 256;
    char *base = (char *)j->ws + (which ? off0 : 0);
    gpuml_k_rpart p = {(double *)base, (float *)base, (int64_t *)(base + (size_t)cap * 8)};
    return p;
}

/* Chunk ch of output (o, i) at one level. Level 0 reads the job's source;
 * later levels read the previous level's partials src, laid out
 * [outer, len, inner]. Sums in index order in double; MAX/MIN as the
 * sequential scan (later levels carry the first index of each chunk). */
GPUML_HD static inline void gpuml_k_reduce_chunk(const gpuml_k_rjob *j, int level, gpuml_k_rpart src, int64_t len,
                                                 int64_t o, int64_t ch, int64_t i, double *sum, float *best,
                                                 int64_t *besti)
{
    int64_t inner = j->v.inner, b = ch * GPUML_K_RCHUNK, e = gpuml_k_min64(b + GPUML_K_RCHUNK, len);
    int op = j->op;
    if (op == GPUML_REDUCE_MAX || op == GPUML_REDUCE_MIN) {
        bool is_max = op == GPUML_REDUCE_MAX;
        const float *p;
        const int64_t *pi = NULL;
        int64_t rs;
        if (level == 0) {
            p = j->xf + o * j->v.ostride + i;
            rs = j->v.rstride;
        } else {
            p = src.f + o * len * inner + i;
            pi = src.i + o * len * inner + i;
            rs = inner;
        }
        float bv = is_max ? -INFINITY : INFINITY;
        int64_t bi = -1;
        for (int64_t r = b; r < e; r++) {
            float val = p[r * rs];
            int64_t li = pi ? pi[r * rs] : r;
            if (val != val) { /* NaN: the first one wins for good */
                bv = val;
                bi = li;
                break;
            }
            if (bi < 0 || (is_max ? val > bv : val < bv)) {
                bv = val;
                bi = li;
            }
        }
        *best = bv;
        *besti = bi;
        return;
    }
    double acc = 0.0;
    if (level > 0) {
        const double *p = src.d + o * len * inner + i;
        for (int64_t r = b; r < e; r++)
            acc += p[r * inner];
    } else if (j->xd) {
        const double *p = j->xd + o * j->v.ostride + i;
        for (int64_t r = b; r < e; r++)
            acc += p[r * j->v.rstride];
    } else {
        const float *p = j->xf + o * j->v.ostride + i;
        int64_t rs = j->v.rstride;
        if (op == GPUML_K_RSUMSQ) {
            for (int64_t r = b; r < e; r++)
                acc += (double)p[r * rs] * (double)p[r * rs];
        } else if (op == GPUML_K_RSUMTO) {
            const float *q = j->xf + gpuml_k_sumto_base(&j->st, o);
            for (int64_t r = b; r < e; r++)
                acc += (double)q[gpuml_k_sumto_off(&j->st, r)];
        } else if (op == GPUML_K_RLN_GAMMA) {
            const float *x = j->ln_x + o * j->v.ostride + i;
            for (int64_t r = b; r < e; r++) {
                float xh = (x[r * rs] - j->ln_mean[r]) * j->ln_rstd[r];
                acc += (double)p[r * rs] * (double)xh;
            }
        } else {
            for (int64_t r = b; r < e; r++)
                acc += (double)p[r * rs];
        }
    }
    *sum = acc;
}

/* Element e of a level whose outputs have nch chunks each: partial e into
 * dst, or, when nch == 1, the final result of output e. */
GPUML_HD static inline void gpuml_k_reduce_level_elem(const gpuml_k_rjob *j, int level, gpuml_k_rpart src,
                                                      gpuml_k_rpart dst, int64_t len, int64_t nch, int64_t e)
{
    int64_t inner = j->v.inner, i = e % inner, t = e / inner, ch = t % nch, o = t / nch;
    double s = 0.0;
    float bv = 0.0f;
    int64_t bi = -1;
    bool ext = j->op == GPUML_REDUCE_MAX || j->op == GPUML_REDUCE_MIN;
    gpuml_k_reduce_chunk(j, level, src, len, o, ch, i, &s, &bv, &bi);
    if (nch > 1) {
        if (ext) {
            dst.f[e] = bv;
            dst.i[e] = bi;
        } else {
            dst.d[e] = s;
        }
        return;
    }
    if (ext) {
        j->out[e] = bv;
        if (j->arg)
            j->arg[e] = bi;
        return;
    }
    if (j->out_d) {
        j->out_d[e] = s;
        return;
    }
    float r = j->op == GPUML_REDUCE_MEAN ? (j->v.len > 0 ? (float)(s / (double)j->v.len) : NAN) : (float)s;
    j->out[e] = j->accumulate ? j->out[e] + r : r;
    if (j->arg)
        j->arg[e] = -1;
}

/* Softmax of one row of n elements, max-subtracted. take_log != 0: log-softmax. */
/* Element e of an axis reduction's input gradient: the input is viewed as
 * [outer, len, inner] and gout as [outer, inner]; arg holds the arg-max /
 * arg-min along the axis (MAX and MIN only). */
GPUML_HD static inline float gpuml_k_reduce_grad_elem(int op, const float *GPUML_RESTRICT gout, const int64_t *arg,
                                                      int64_t len, int64_t inner, int64_t e)
{
    int64_t i = e % inner, l = (e / inner) % len, o = e / (inner * len);
    int64_t j = o * inner + i;
    float g = gout[j];
    switch (op) {
    case GPUML_REDUCE_SUM: return g;
    case GPUML_REDUCE_MEAN: return g / (float)len;
    default: return arg[j] == l ? g : 0.0f;
    }
}

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
