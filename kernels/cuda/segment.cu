/* CUDA launchers for kernels/segment.h. row_splits stay on the device: the
 * kernels clamp them and raise the context's device error on bad values. */
#include "../kernels.h"
#include "../segment.h"
#include "launch.cuh"

static __global__ void segment_reduce_kernel(int op, const float *x, int64_t nrows, int64_t ncols,
                                             const int64_t *row_splits, int64_t batch, float *out, int64_t *arg,
                                             int *dev_error)
{
    GPUML_GRID_STRIDE(e, batch * ncols)
    {
        int64_t b = e / ncols, c = e - b * ncols, begin, end;
        int bad = 0;
        gpuml_k_segment(row_splits, b, nrows, &begin, &end, &bad);
        if (bad || (b == batch - 1 && row_splits[batch] != nrows))
            *dev_error = GPUML_DEVERR_ROW_SPLITS;
        gpuml_k_segment_reduce_one(op, x, ncols, begin, end, c, out + e, arg ? arg + e : nullptr);
    }
}

/* Event of row r: the last b with row_splits[b] <= r (binary search). */
static __device__ int64_t event_of_row(const int64_t *row_splits, int64_t batch, int64_t r)
{
    int64_t lo = 0, hi = batch; /* answer in [0, batch) */
    while (hi - lo > 1) {
        int64_t mid = (lo + hi) / 2;
        if (row_splits[mid] <= r)
            lo = mid;
        else
            hi = mid;
    }
    return lo;
}

static __global__ void segment_grad_kernel(int op, const float *gout, const int64_t *arg, const int64_t *row_splits,
                                           int64_t batch, int64_t nrows, int64_t ncols, float *gx)
{
    GPUML_GRID_STRIDE(e, nrows * ncols)
    {
        int64_t r = e / ncols, c = e - r * ncols;
        int64_t b = event_of_row(row_splits, batch, r), begin, end;
        int bad = 0;
        gpuml_k_segment(row_splits, b, nrows, &begin, &end, &bad);
        gx[e] = (r >= begin && r < end) ? gpuml_k_segment_grad_one(op, gout, arg, ncols, b, begin, end, r, c) : 0.0f;
    }
}

extern "C" gpuml_status gpuml_cuda_segment_reduce(const gpuml_kctx *k, int op, const float *x, int64_t nrows,
                                                  int64_t ncols, const int64_t *row_splits, int64_t batch, float *out,
                                                  int64_t *arg)
{
    if (batch * ncols == 0)
        return GPUML_OK;
    gpuml_cuda_scope scope(k->device);
    segment_reduce_kernel<<<gpuml_cuda_grid(batch * ncols), GPUML_CUDA_BLOCK, 0, gpuml_cuda_stream(k)>>>(
        op, x, nrows, ncols, row_splits, batch, out, arg, k->dev_error);
    return gpuml_cuda_check("segment_reduce");
}

extern "C" gpuml_status gpuml_cuda_segment_grad(const gpuml_kctx *k, int op, const float *gout, const int64_t *arg,
                                                const int64_t *row_splits, int64_t batch, int64_t nrows, int64_t ncols,
                                                float *gx)
{
    if (nrows * ncols == 0)
        return GPUML_OK;
    gpuml_cuda_scope scope(k->device);
    segment_grad_kernel<<<gpuml_cuda_grid(nrows * ncols), GPUML_CUDA_BLOCK, 0, gpuml_cuda_stream(k)>>>(
        op, gout, arg, row_splits, batch, nrows, ncols, gx);
    return gpuml_cuda_check("segment_grad");
}
