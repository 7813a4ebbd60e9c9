/* kernels/segment.h - per-event reductions of a ragged batch [N, C] with
 * row_splits [B+1]. One output element (b, c) per call. */
#ifndef GPUML_KERNELS_SEGMENT_H
#define GPUML_KERNELS_SEGMENT_H

#include "common.h"
#include "gpuml/ops.h"

/* Ragged fixed-order segment reductions: out[b, c] = op over the rows
 * [begin_b, end_b) of event b of x[:, c].
 *
 * As in kernels/reduce.h, no thread reduces more than GPUML_K_SCHUNK
 * values and the order of every sum is fixed by the event alone: the event's
 * rows are cut in chunks of GPUML_K_SCHUNK counted from its first row, each
 * chunk is summed in row order in double (MAX: value and first row, the
 * first NaN winning), and the chunk partials are reduced the same way, level
 * after level, until one value per event is left. An event of at most
 * GPUML_K_SCHUNK rows is therefore the plain sequential sum, and an event's
 * result does not depend on the other events of the batch (the engine's
 * batch invariance). The CPU driver and the CUDA launcher run the same
 * levels over these bodies: the same bits on both.
 *
 * Partials need no scan of the event sizes: at level l the chunks of event
 * b go to slots base_l(b) .. base_l(b) + nch - 1 with
 *     base_l(b) = floor(p_b / GPUML_K_SCHUNK) + b,
 * p_b being where the event's values start in level l's source (its first
 * row for level 0, base_{l-1}(b) after). base is strictly increasing in b
 * and leaves room for every chunk, so a slot finds its event by binary
 * search, and slots stay below gpuml_k_seg_slots(). The last level
 * (levels - 1) has at most GPUML_K_SCHUNK values per event and writes out. */
#define GPUML_K_SCHUNK 128
#define GPUML_K_SEG_MAXLEVELS 8 /* 128^8 rows: more than int64 counts */

typedef struct gpuml_k_seg {
    int op;
    const float *x;
    int64_t nrows, ncols;
    const int64_t *row_splits;
    int64_t batch;
    float *out;
    int64_t *arg; /* MAX: row of the maximum, -1 for an empty event; may be NULL */
    int levels;   /* gpuml_k_seg_levels(nrows)                              */
    void *ws;     /* gpuml_k_seg_ws_bytes(nrows, ncols, batch) bytes         */
    double *out_d; /* SUM: the sums in double here instead of out (NULL: out) */
    const int64_t *col; /* position r reads row col[r] of x (a CSR's sources; NULL: row r) */
    int accumulate;     /* out += result (scatter-add)                                    */
    int check;          /* CUDA: flag row_splits that do not end at nrows (segment ops)    */
} gpuml_k_seg;

/* One level's partials: sums in d, MAX values in f and rows in i, [slot, c]. */
typedef struct gpuml_k_segpart {
    double *d;
    float *f;
    int64_t *i;
} gpuml_k_segpart;

GPUML_HD static inline int64_t gpuml_k_seg_chunks(int64_t len)
{
    return len <= GPUML_K_SCHUNK ? 1 : (len + GPUML_K_SCHUNK - 1) / GPUML_K_SCHUNK;
}

/* Levels for events of up to nrows rows (1: one pass, no partials). */
static inline int gpuml_k_seg_levels(int64_t nrows)
{
    int l = 1;
    for (int64_t len = nrows; len > GPUML_K_SCHUNK; len = gpuml_k_seg_chunks(len))
        l++;
    return l;
}

/* Slots of the partials written by level l (< levels - 1). */
static inline int64_t gpuml_k_seg_slots(int64_t nrows, int64_t batch, int l)
{
    int64_t s = nrows;
    for (int i = 0; i <= l; i++)
        s = s / GPUML_K_SCHUNK + batch + 2;
    return s;
}

/* Level l < levels - 1 writes buffer l % 2 (level l + 1 reads it while
 * writing the other), so each buffer holds the most slots of any level of
 * its parity: with more events than rows a later level can need more
 * slots than level 0. */
static inline int64_t gpuml_k_seg_cap(int64_t nrows, int64_t batch, int levels, int which)
{
    int64_t cap = 0;
    for (int l = which; l < levels - 1; l += 2)
        cap = gpuml_k_max64(cap, gpuml_k_seg_slots(nrows, batch, l));
    return cap;
}

static inline size_t gpuml_k_seg_buf_bytes(int64_t nrows, int64_t ncols, int64_t batch, int levels, int which)
{
    return ((size_t)gpuml_k_seg_cap(nrows, batch, levels, which) * (size_t)ncols * 16 + 255) / 256 * 256;
}

static inline size_t gpuml_k_seg_ws_bytes(int64_t nrows, int64_t ncols, int64_t batch)
{
    int lv = gpuml_k_seg_levels(nrows);
    return gpuml_k_seg_buf_bytes(nrows, ncols, batch, lv, 0) + gpuml_k_seg_buf_bytes(nrows, ncols, batch, lv, 1);
}

static inline gpuml_k_segpart gpuml_k_seg_part(const gpuml_k_seg *j, int which)
{
    size_t off = which ? gpuml_k_seg_buf_bytes(j->nrows, j->ncols, j->batch, j->levels, 0) : 0;
    size_t cap = (size_t)gpuml_k_seg_cap(j->nrows, j->batch, j->levels, which) * (size_t)j->ncols;
    char *base = (char *)j->ws + off;
    gpuml_k_segpart p = {(double *)base, (float *)base, (int64_t *)(base + cap * 8)};
    return p;
}

/* Where event b's values lie in level l's source: rows for l = 0, slots of
 * level l - 1's partials after. */
GPUML_HD static inline void gpuml_k_seg_src(const gpuml_k_seg *j, int64_t b, int l, int64_t *pb, int64_t *pe)
{
    int bad = 0;
    gpuml_k_segment(j->row_splits, b, j->nrows, pb, pe, &bad);
    for (int i = 0; i < l; i++) {
        int64_t n = gpuml_k_seg_chunks(*pe - *pb);
        *pb = *pb / GPUML_K_SCHUNK + b;
        *pe = *pb + n;
    }
}

/* The event whose level-l partials hold slot s (the last b with base_l(b) <= s). */
GPUML_HD static inline int64_t gpuml_k_seg_event_of_slot(const gpuml_k_seg *j, int l, int64_t s)
{
    int64_t lo = 0, hi = j->batch;
    while (hi - lo > 1) {
        int64_t mid = (lo + hi) / 2, pb, pe;
        gpuml_k_seg_src(j, mid, l + 1, &pb, &pe);
        if (pb <= s)
            lo = mid;
        else
            hi = mid;
    }
    return lo;
}

/* op over source values [b, e) of column c at level l (at most
 * GPUML_K_SCHUNK of them). */
GPUML_HD static inline void gpuml_k_seg_scan(const gpuml_k_seg *j, int l, gpuml_k_segpart src, int64_t b, int64_t e,
                                             int64_t c, double *sum, float *best, int64_t *besti)
{
    int64_t nc = j->ncols;
    if (j->op == GPUML_REDUCE_MAX) {
        float bv = -INFINITY;
        int64_t bi = -1;
        for (int64_t r = b; r < e; r++) {
            float v = l == 0 ? j->x[(j->col ? j->col[r] : r) * nc + c] : src.f[r * nc + c];
            int64_t ri = l == 0 ? r : src.i[r * nc + c];
            if (v != v) { /* the first NaN wins for good */
                bv = v;
                bi = ri;
                break;
            }
            if (bi < 0 || v > bv) {
                bv = v;
                bi = ri;
            }
        }
        *best = bv;
        *besti = bi;
        return;
    }
    double acc = 0.0;
    if (l == 0 && j->col)
        for (int64_t r = b; r < e; r++)
            acc += (double)j->x[j->col[r] * nc + c];
    else if (l == 0)
        for (int64_t r = b; r < e; r++)
            acc += (double)j->x[r * nc + c];
    else
        for (int64_t r = b; r < e; r++)
            acc += src.d[r * nc + c];
    *sum = acc;
}

/* Element e = slot * ncols + c of a level l < levels - 1: one chunk of one
 * event into dst (slots no event uses are left alone). */
GPUML_HD static inline void gpuml_k_seg_level_elem(const gpuml_k_seg *j, int l, gpuml_k_segpart src,
                                                   gpuml_k_segpart dst, int64_t e)
{
    int64_t s = e / j->ncols, c = e - s * j->ncols;
    int64_t b = gpuml_k_seg_event_of_slot(j, l, s), pb, pe, db, de;
    gpuml_k_seg_src(j, b, l, &pb, &pe);
    gpuml_k_seg_src(j, b, l + 1, &db, &de);
    int64_t ch = s - db;
    if (ch < 0 || s >= de)
        return;
    int64_t cb = pb + ch * GPUML_K_SCHUNK, ce = gpuml_k_min64(cb + GPUML_K_SCHUNK, pe);
    double sum = 0.0;
    float bv = 0.0f;
    int64_t bi = -1;
    gpuml_k_seg_scan(j, l, src, cb, ce, c, &sum, &bv, &bi);
    if (j->op == GPUML_REDUCE_MAX) {
        dst.f[e] = bv;
        dst.i[e] = bi;
    } else {
        dst.d[e] = sum;
    }
}

/* Element e = b * ncols + c of the last level: the event's result. Sum /
 * mean of an empty event: 0; MAX: 0 and row -1. */
GPUML_HD static inline void gpuml_k_seg_final_elem(const gpuml_k_seg *j, gpuml_k_segpart src, int64_t e)
{
    int64_t b = e / j->ncols, c = e - b * j->ncols, rb, re, pb, pe;
    int l = j->levels - 1;
    gpuml_k_seg_src(j, b, 0, &rb, &re);
    gpuml_k_seg_src(j, b, l, &pb, &pe);
    double sum = 0.0;
    float bv = 0.0f;
    int64_t bi = -1;
    gpuml_k_seg_scan(j, l, src, pb, pe, c, &sum, &bv, &bi);
    if (re <= rb && j->out_d) {
        j->out_d[e] = 0.0;
        return;
    }
    if (re <= rb && j->accumulate)
        return;
    if (re <= rb) {
        j->out[e] = 0.0f;
        if (j->arg)
            j->arg[e] = -1;
        return;
    }
    if (j->op == GPUML_REDUCE_MAX) {
        j->out[e] = bv;
        if (j->arg)
            j->arg[e] = bi;
        return;
    }
    if (j->out_d) {
        j->out_d[e] = sum;
        return;
    }
    if (j->op == GPUML_REDUCE_MEAN)
        sum /= (double)(re - rb);
    j->out[e] = j->accumulate ? j->out[e] + (float)sum : (float)sum;
    if (j->arg)
        j->arg[e] = -1;
}

/* The CPU's way to the same bits as the levels, with no partials in
 * memory: event b's rows walked once in order, for columns [c0, c0 + nc)
 * (nc <= GPUML_K_SEG_CBLOCK) together, so that a row is read contiguously.
 * SUM and MEAN keep one running chunk per level: a level-l chunk takes its
 * children (rows for level 1, closed level-(l-1) chunks above) in order,
 * starting from 0.0, and closes after GPUML_K_SCHUNK of them or at the
 * event's end, passing its value up - exactly the nesting the CUDA levels
 * compute (the first GPUML_K_SCHUNK rows of an event are chunk 0, ...). The
 * top level's chunks add up into the result. MAX needs no nesting: the
 * first NaN, else the first largest, is the same whatever the grouping.
 * Writes out / out_d / arg as gpuml_k_seg_final_elem does. */
#define GPUML_K_SEG_CBLOCK 32

static inline void gpuml_k_seg_direct_block(const gpuml_k_seg *j, int64_t b, int64_t c0, int64_t nc)
{
    int64_t rb, re, ncols = j->ncols;
    int bad = 0;
    gpuml_k_segment(j->row_splits, b, j->nrows, &rb, &re, &bad);
    double res[GPUML_K_SEG_CBLOCK];
    float bv[GPUML_K_SEG_CBLOCK];
    int64_t bi[GPUML_K_SEG_CBLOCK];
    for (int64_t c = 0; c < nc; c++)
        res[c] = 0.0, bv[c] = -INFINITY, bi[c] = -1;
    if (j->op == GPUML_REDUCE_MAX) {
        for (int64_t r = rb; r < re; r++) {
            const float *xr = j->x + (j->col ? j->col[r] : r) * ncols + c0;
            for (int64_t c = 0; c < nc; c++) {
                float v = xr[c];
                if (bv[c] != bv[c]) /* the first NaN won for good */
                    continue;
                if (v != v || bi[c] < 0 || v > bv[c])
                    bv[c] = v, bi[c] = r;
            }
        }
    } else {
        int top = j->levels - 1; /* rows go to level 1's chunk, or straight to the result when top == 0 */
        double acc[GPUML_K_SEG_MAXLEVELS + 1][GPUML_K_SEG_CBLOCK];
        int64_t cnt[GPUML_K_SEG_MAXLEVELS + 1];
        for (int l = 1; l <= top; l++) {
            cnt[l] = 0;
            for (int64_t c = 0; c < nc; c++)
                acc[l][c] = 0.0;
        }
        for (int64_t r = rb; r < re; r++) {
            const float *xr = j->x + (j->col ? j->col[r] : r) * ncols + c0;
            double *to = top == 0 ? res : acc[1];
            for (int64_t c = 0; c < nc; c++)
                to[c] += (double)xr[c];
            if (top == 0 || ++cnt[1] < GPUML_K_SCHUNK)
                continue;
            for (int l = 1; l <= top && cnt[l] == GPUML_K_SCHUNK; l++) { /* close full chunks upwards */
                double *up = l == top ? res : acc[l + 1];
                for (int64_t c = 0; c < nc; c++)
                    up[c] += acc[l][c], acc[l][c] = 0.0;
                cnt[l] = 0;
                if (l < top)
                    cnt[l + 1]++;
            }
        }
        for (int l = 1; l <= top; l++) { /* the event's end closes the open chunks, lowest first */
            if (!cnt[l])
                continue;
            double *up = l == top ? res : acc[l + 1];
            for (int64_t c = 0; c < nc; c++)
                up[c] += acc[l][c];
            if (l < top)
                cnt[l + 1]++;
        }
    }
    for (int64_t c = 0; c < nc; c++) {
        int64_t e = b * ncols + c0 + c;
        if (re <= rb) {
            if (j->out_d)
                j->out_d[e] = 0.0;
            else if (!j->accumulate) {
                j->out[e] = 0.0f;
                if (j->arg)
                    j->arg[e] = -1;
            }
        } else if (j->op == GPUML_REDUCE_MAX) {
            j->out[e] = bv[c];
            if (j->arg)
                j->arg[e] = bi[c];
        } else if (j->out_d) {
            j->out_d[e] = res[c];
        } else {
            double sum = j->op == GPUML_REDUCE_MEAN ? res[c] / (double)(re - rb) : res[c];
            j->out[e] = j->accumulate ? j->out[e] + (float)sum : (float)sum;
            if (j->arg)
                j->arg[e] = -1;
        }
    }
}

/* Gradient for row r (in event b = [begin, end)), column c. */
GPUML_HD static inline float gpuml_k_segment_grad_one(int op, const float *GPUML_RESTRICT gout, const int64_t *arg,
                                                      int64_t ncols, int64_t b, int64_t begin, int64_t end, int64_t r,
                                                      int64_t c)
{
    if (r < begin || r >= end)
        return 0.0f; /* a row outside its event's clamped range (bad row_splits) */
    float g = gout[b * ncols + c];
    switch (op) {
    case GPUML_REDUCE_SUM: return g;
    case GPUML_REDUCE_MEAN: return g / (float)(end - begin);
    case GPUML_REDUCE_MAX: return arg[b * ncols + c] == r ? g : 0.0f;
    default: return NAN;
    }
}

#endif
