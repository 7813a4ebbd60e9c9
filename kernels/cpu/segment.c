/* CPU driver for kernels/segment.h. row_splits were validated by the op. */
#include "../kernels.h"
#include "../segment.h"

gpuml_status gpuml_cpu_segment_reduce(const gpuml_kctx *k, int op, const float *x, int64_t nrows, int64_t ncols,
                                      const int64_t *row_splits, int64_t batch, float *out, int64_t *arg)
{
    int nt = k->nthreads;
    int64_t work = nrows * ncols + batch;
#pragma omp parallel for num_threads(nt) schedule(static) if (work > GPUML_PAR_GRAIN)
    for (int64_t b = 0; b < batch; b++) {
        int64_t begin, end;
        int bad = 0;
        gpuml_k_segment(row_splits, b, nrows, &begin, &end, &bad);
        for (int64_t c = 0; c < ncols; c++)
            gpuml_k_segment_reduce_one(op, x, ncols, begin, end, c, out + b * ncols + c,
                                       arg ? arg + b * ncols + c : NULL);
    }
    return GPUML_OK;
}

gpuml_status gpuml_cpu_segment_grad(const gpuml_kctx *k, int op, const float *gout, const int64_t *arg,
                                    const int64_t *row_splits, int64_t batch, int64_t nrows, int64_t ncols, float *gx)
{
    int nt = k->nthreads;
    int64_t work = nrows * ncols + batch;
#pragma omp parallel for num_threads(nt) schedule(static) if (work > GPUML_PAR_GRAIN)
    for (int64_t b = 0; b < batch; b++) {
        int64_t begin, end;
        int bad = 0;
        gpuml_k_segment(row_splits, b, nrows, &begin, &end, &bad);
        for (int64_t r = begin; r < end; r++)
            for (int64_t c = 0; c < ncols; c++)
                gx[r * ncols + c] = gpuml_k_segment_grad_one(op, gout, arg, ncols, b, begin, end, r, c);
    }
    return GPUML_OK;
}

gpuml_status gpuml_cpu_segment_ids(const gpuml_kctx *k, const int64_t *row_splits, int64_t batch, int64_t nrows,
                                   int32_t *ids)
{
    int nt = k->nthreads;
#pragma omp parallel for num_threads(nt) schedule(static) if (nrows > GPUML_PAR_GRAIN)
    for (int64_t r = 0; r < nrows; r++)
        ids[r] = (int32_t)gpuml_k_event_of_row(row_splits, batch, r);
    return GPUML_OK;
}
