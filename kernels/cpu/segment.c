/* CPU driver for kernels/segment.h. row_splits were validated by the op. */
#include "../kernels.h"
#include "../segment.h"
#include "parallel.h"

typedef struct seg_args {
    int op;
    const float *gout;
    int64_t nrows, ncols, batch;
    const int64_t *row_splits, *arg_in;
    float *out;
    int32_t *ids;
} seg_args;

/* One level of the ragged reduction (kernels/segment.h): each element is
 * one chunk of at most GPUML_K_SCHUNK values, independent of the others. */
typedef struct seg_level_args {
    const gpuml_k_seg *j;
    int level;
    gpuml_k_segpart src, dst;
} seg_level_args;

GPUML_KRANGE(level_range, seg_level_args)
{
    for (int64_t e = begin; e < end; e++)
        gpuml_k_seg_level_elem(a->j, a->level, a->src, a->dst, e);
}

GPUML_KRANGE(final_range, seg_level_args)
{
    for (int64_t e = begin; e < end; e++)
        gpuml_k_seg_final_elem(a->j, a->src, e);
}

GPUML_KRANGE(grad_range, seg_args)
{
    int64_t ncols = a->ncols;
    for (int64_t b = begin; b < end; b++) {
        int64_t rb, re;
        int bad = 0;
        gpuml_k_segment(a->row_splits, b, a->nrows, &rb, &re, &bad);
        for (int64_t r = rb; r < re; r++)
            for (int64_t c = 0; c < ncols; c++)
                a->out[r * ncols + c] = gpuml_k_segment_grad_one(a->op, a->gout, a->arg_in, ncols, b, rb, re, r, c);
    }
}

GPUML_KRANGE(ids_range, seg_args)
{
    for (int64_t r = begin; r < end; r++)
        a->ids[r] = (int32_t)gpuml_k_event_of_row(a->row_splits, a->batch, r);
}

gpuml_status gpuml_cpu_segment_reduce(const gpuml_kctx *k, gpuml_k_seg j)
{
    gpuml_k_segpart src = {NULL, NULL, NULL};
    for (int l = 0; l < j.levels - 1; l++) {
        int64_t n = gpuml_k_seg_slots(j.nrows, j.batch, l) * j.ncols;
        seg_level_args a = {&j, l, src, gpuml_k_seg_part(&j, l & 1)};
        gpuml_kfor(k, n, n * GPUML_K_SCHUNK, 0, level_range, &a);
        src = a.dst;
    }
    seg_level_args a = {&j, j.levels - 1, src, src};
    int64_t n = j.batch * j.ncols;
    gpuml_kfor(k, n, n * GPUML_K_SCHUNK, 0, final_range, &a);
    return GPUML_OK;
}

gpuml_status gpuml_cpu_segment_grad(const gpuml_kctx *k, int op, const float *gout, const int64_t *arg,
                                    const int64_t *row_splits, int64_t batch, int64_t nrows, int64_t ncols, float *gx)
{
    seg_args a = {0};
    a.op = op, a.gout = gout, a.arg_in = arg, a.row_splits = row_splits, a.nrows = nrows, a.ncols = ncols, a.out = gx;
    gpuml_kfor(k, batch, nrows * ncols + batch, 0, grad_range, &a);
    return GPUML_OK;
}

gpuml_status gpuml_cpu_segment_ids(const gpuml_kctx *k, const int64_t *row_splits, int64_t batch, int64_t nrows,
                                   int32_t *ids)
{
    seg_args a = {0};
    a.row_splits = row_splits, a.batch = batch, a.ids = ids;
    gpuml_kfor(k, nrows, nrows, 0, ids_range, &a);
    return GPUML_OK;
}
