/* CUDA launchers for kernels/segment.h. row_splits stay on the device: the
 * kernels clamp them and raise the context's device error on bad values. */
#include <cub/device/device_scan.cuh>

#include "../kernels.h"
#include "../segment.h"
#include "launch.cuh"

/* ---- monotone row_splits on the device (launch.cuh) --------------------- */
static __global__ void splits_clamp_kernel(const int64_t *rs, int64_t nev, int64_t n, int64_t *out)
{
    GPUML_GRID_STRIDE(b, nev + 1) out[b] = gpuml_k_min64(gpuml_k_max64(rs[b], 0), n);
}

/* After the max-scan: the ends forced to 0 and n, the rest is monotone. */
static __global__ void splits_check_kernel(const int64_t *rs, int64_t nev, int64_t n, int64_t *out, int *dev_error)
{
    GPUML_GRID_STRIDE(b, nev + 1)
    {
        int64_t v = b == 0 ? 0 : b == nev ? n : out[b];
        if (v != rs[b])
            *dev_error = GPUML_DEVERR_ROW_SPLITS;
        out[b] = v;
    }
}

size_t gpuml_cuda_monotone_splits_scratch(int64_t nev)
{
    size_t c = 0;
    if (nev >= INT32_MAX || cub::DeviceScan::InclusiveScan(nullptr, c, (int64_t *)nullptr, (int64_t *)nullptr,
                                                          gpuml_cuda_max64_op(), (int)(nev + 1),
                                                          (cudaStream_t)0) != cudaSuccess)
        return 0; /* the real call in gpuml_cuda_monotone_splits reports it */
    return c;
}

gpuml_status gpuml_cuda_monotone_splits(const gpuml_kctx *k, const int64_t *rs, int64_t nev, int64_t n, int64_t *out,
                                        void *tmp, size_t tmp_bytes, const char *op)
{
    cudaStream_t s = gpuml_cuda_stream(k);
    GPUML_CUDA_LAUNCH(splits_clamp_kernel, gpuml_cuda_grid(nev + 1), GPUML_CUDA_BLOCK, 0, s)(rs, nev, n, out);
    GPUML_CUDA_TRY(k, op, "cub::DeviceScan::InclusiveScan",
                   cub::DeviceScan::InclusiveScan(tmp, tmp_bytes, out, out, gpuml_cuda_max64_op(), (int)(nev + 1), s));
    GPUML_CUDA_LAUNCH(splits_check_kernel, gpuml_cuda_grid(nev + 1), GPUML_CUDA_BLOCK, 0, s)(rs, nev, n, out,
                                                                                             k->dev_error);
    return gpuml_cuda_check(k, op);
}

/* One level of the ragged fixed-order reduction (kernels/segment.h): a
 * thread per (slot, column), each reducing one chunk of at most
 * GPUML_K_SCHUNK values. */
static __global__ void segment_level_kernel(gpuml_k_seg j, int level, gpuml_k_segpart src, gpuml_k_segpart dst,
                                            int64_t n)
{
    GPUML_GRID_STRIDE(e, n) gpuml_k_seg_level_elem(&j, level, src, dst, e);
}

/* The last level: a thread per (event, column); also checks row_splits. */
static __global__ void segment_reduce_kernel(gpuml_k_seg j, gpuml_k_segpart src, int *dev_error)
{
    GPUML_GRID_STRIDE(e, j.batch * j.ncols)
    {
        int64_t b = e / j.ncols, begin, end;
        int bad = 0;
        gpuml_k_segment(j.row_splits, b, j.nrows, &begin, &end, &bad);
        if (j.check && (bad || (b == j.batch - 1 && j.row_splits[j.batch] != j.nrows)))
            *dev_error = GPUML_DEVERR_ROW_SPLITS;
        gpuml_k_seg_final_elem(&j, src, e);
    }
}

static __global__ void segment_grad_kernel(int op, const float *gout, const int64_t *arg, const int64_t *row_splits,
                                           int64_t batch, int64_t nrows, int64_t ncols, float *gx)
{
    GPUML_GRID_STRIDE(e, nrows * ncols)
    {
        int64_t r = e / ncols, c = e - r * ncols;
        int64_t b = gpuml_k_event_of_row(row_splits, batch, r), begin, end;
        int bad = 0;
        gpuml_k_segment(row_splits, b, nrows, &begin, &end, &bad);
        gx[e] = gpuml_k_segment_grad_one(op, gout, arg, ncols, b, begin, end, r, c);
    }
}

extern "C" gpuml_status gpuml_cuda_segment_reduce(const gpuml_kctx *k, gpuml_k_seg j)
{
    if (j.batch * j.ncols == 0)
        return GPUML_OK;
    GPUML_CUDA_ENTER(k, "segment_reduce");
    cudaStream_t s = gpuml_cuda_stream(k);
    gpuml_k_segpart src = {nullptr, nullptr, nullptr};
    for (int l = 0; l < j.levels - 1; l++) {
        int64_t n = gpuml_k_seg_slots(j.nrows, j.batch, l) * j.ncols;
        gpuml_k_segpart dst = gpuml_k_seg_part(&j, l & 1);
        GPUML_CUDA_LAUNCH(segment_level_kernel, gpuml_cuda_grid(n), GPUML_CUDA_BLOCK, 0, s)(j, l, src, dst, n);
        src = dst;
    }
    GPUML_CUDA_LAUNCH(segment_reduce_kernel, gpuml_cuda_grid(j.batch * j.ncols), GPUML_CUDA_BLOCK, 0, s)(
        j, src, k->dev_error);
    return gpuml_cuda_check(k, "segment_reduce");
}

extern "C" gpuml_status gpuml_cuda_segment_grad(const gpuml_kctx *k, int op, const float *gout, const int64_t *arg,
                                                const int64_t *row_splits, int64_t batch, int64_t nrows, int64_t ncols,
                                                float *gx)
{
    GPUML_CUDA_RUN(k, "segment_grad", segment_grad_kernel, nrows * ncols, op, gout, arg, row_splits, batch, nrows,
                   ncols, gx);
}

static __global__ void segment_ids_kernel(const int64_t *row_splits, int64_t batch, int64_t nrows, int32_t *ids)
{
    GPUML_GRID_STRIDE(r, nrows) ids[r] = (int32_t)gpuml_k_event_of_row(row_splits, batch, r);
}

extern "C" gpuml_status gpuml_cuda_segment_ids(const gpuml_kctx *k, const int64_t *row_splits, int64_t batch,
                                               int64_t nrows, int32_t *ids)
{
    GPUML_CUDA_RUN(k, "segment_ids", segment_ids_kernel, nrows, row_splits, batch, nrows, ids);
}
