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

/* The ragged reduction of kernels/segment.h by gpuml_k_seg_direct_block:
 * the CUDA levels' bits, no partials in memory (j.ws unused); an item is
 * one event and one block of GPUML_K_SEG_CBLOCK columns. */
typedef struct seg_direct_args {
    const gpuml_k_seg *j;
    int64_t nblk;
} seg_direct_args;

GPUML_KRANGE(direct_range, seg_direct_args)
{
    int64_t ncols = a->j->ncols;
    for (int64_t e = begin; e < end; e++) {
        int64_t b = e / a->nblk, c0 = (e - b * a->nblk) * GPUML_K_SEG_CBLOCK;
        gpuml_k_seg_direct_block(a->j, b, c0, gpuml_k_min64(GPUML_K_SEG_CBLOCK, ncols - c0));
    }
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
    int64_t nblk = (j.ncols + GPUML_K_SEG_CBLOCK - 1) / GPUML_K_SEG_CBLOCK;
    seg_direct_args a = {&j, nblk};
    int64_t n = j.batch * nblk;
    gpuml_kfor(k, n, j.nrows * j.ncols + j.batch * j.ncols, 0, direct_range, &a);
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
