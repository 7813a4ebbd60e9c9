/* CUDA launchers for kernels/rows.h. Scatter-add builds its CSR on the
 * device (integer atomics only for counting and slot claiming, then each
 * target's list is sorted, so the CSR equals the CPU's) and sums without
 * float atomics. */
#include <cub/device/device_scan.cuh>

#include "../kernels.h"
#include "../rows.h"
#include "launch.cuh"

static __global__ void gather_kernel(const char *x, int64_t n, const void *idx, int is64, char *out, int64_t m,
                                     int64_t row_bytes)
{
    GPUML_GRID_STRIDE(i, m) gpuml_k_gather_row(x, n, idx, is64, out, row_bytes, i);
}

static __global__ void csr_count_kernel(const void *idx, int is64, int64_t m, int64_t ntargets,
                                        unsigned long long *counts)
{
    GPUML_GRID_STRIDE(i, m)
    {
        int64_t t = gpuml_k_index_at(idx, is64, i);
        if (t >= 0 && t < ntargets)
            atomicAdd(&counts[t + 1], 1ull);
    }
}

static __global__ void csr_fill_kernel(const void *idx, int is64, int64_t m, int64_t ntargets,
                                       unsigned long long *cursor, int64_t *col)
{
    GPUML_GRID_STRIDE(i, m)
    {
        int64_t t = gpuml_k_index_at(idx, is64, i);
        if (t >= 0 && t < ntargets)
            col[atomicAdd(&cursor[t], 1ull)] = i;
    }
}

static __global__ void csr_sort_kernel(const int64_t *rowptr, int64_t *col, int64_t ntargets)
{
    GPUML_GRID_STRIDE(t, ntargets) gpuml_k_csr_sort_segment(col, rowptr[t], rowptr[t + 1]);
}

static __global__ void scatter_kernel(const float *src, const int64_t *rowptr, const int64_t *col, float *out,
                                      int64_t ntargets, int64_t ncols)
{
    GPUML_GRID_STRIDE(e, ntargets * ncols) gpuml_k_scatter_add_elem(src, rowptr, col, out, ncols, e / ncols, e % ncols);
}

static __global__ void concat_kernel(gpuml_k_pieces p, int64_t rows, char *wide, int64_t wide_row_bytes, int split)
{
    GPUML_GRID_STRIDE(e, rows * p.n)
    {
        int64_t r = e / p.n;
        int q = (int)(e - r * p.n);
        char *piece = p.ptr[q] + r * p.width[q];
        char *w = wide + r * wide_row_bytes + p.offset[q];
        if (split)
            gpuml_k_copy_bytes(piece, w, p.width[q]);
        else
            gpuml_k_copy_bytes(w, piece, p.width[q]);
    }
}

extern "C" gpuml_status gpuml_cuda_gather_rows(const gpuml_kctx *k, const void *x, int64_t n, const void *idx,
                                               int is64, void *out, int64_t m, int64_t row_bytes)
{
    if (m == 0 || row_bytes == 0)
        return GPUML_OK;
    gpuml_cuda_scope scope(k->device);
    GPUML_CUDA_LAUNCH(gather_kernel, gpuml_cuda_grid(m), GPUML_CUDA_BLOCK, 0, gpuml_cuda_stream(k))((const char *)x, n, idx, is64,
                                                                                    (char *)out, m, row_bytes);
    return gpuml_cuda_check("gather_rows");
}

/* ws: a cursor copy of rowptr (ntargets + 1 entries) and cub's scan scratch. */
extern "C" size_t gpuml_cuda_csr_workspace(int64_t ntargets)
{
    size_t cub_bytes = 0;
    cub::DeviceScan::InclusiveSum(nullptr, cub_bytes, (unsigned long long *)nullptr, (unsigned long long *)nullptr,
                                  (int)(ntargets + 1), (cudaStream_t)0);
    return (size_t)(ntargets + 1) * sizeof(unsigned long long) + cub_bytes + 256;
}

extern "C" gpuml_status gpuml_cuda_csr_build(const gpuml_kctx *k, const void *idx, int is64, int64_t m,
                                             int64_t ntargets, int64_t *rowptr, int64_t *col, void *ws)
{
    gpuml_cuda_scope scope(k->device);
    cudaStream_t s = gpuml_cuda_stream(k);
    unsigned long long *counts = (unsigned long long *)rowptr; /* int64 and u64 share the layout */
    unsigned long long *cursor = (unsigned long long *)ws;
    void *cub_tmp = (void *)((char *)ws + ((size_t)(ntargets + 1) * sizeof *cursor + 255) / 256 * 256);
    size_t cub_bytes = 0;
    cub::DeviceScan::InclusiveSum(nullptr, cub_bytes, counts, counts, (int)(ntargets + 1), s);
    cudaMemsetAsync(counts, 0, (size_t)(ntargets + 1) * sizeof *counts, s);
    if (m > 0)
        GPUML_CUDA_LAUNCH(csr_count_kernel, gpuml_cuda_grid(m), GPUML_CUDA_BLOCK, 0, s)(idx, is64, m, ntargets, counts);
    cub::DeviceScan::InclusiveSum(cub_tmp, cub_bytes, counts, counts, (int)(ntargets + 1), s);
    if (m > 0) {
        cudaMemcpyAsync(cursor, counts, (size_t)(ntargets + 1) * sizeof *counts, cudaMemcpyDeviceToDevice, s);
        GPUML_CUDA_LAUNCH(csr_fill_kernel, gpuml_cuda_grid(m), GPUML_CUDA_BLOCK, 0, s)(idx, is64, m, ntargets, cursor, col);
        GPUML_CUDA_LAUNCH(csr_sort_kernel, gpuml_cuda_grid(ntargets), GPUML_CUDA_BLOCK, 0, s)(rowptr, col, ntargets);
    }
    return gpuml_cuda_check("index_csr");
}

extern "C" gpuml_status gpuml_cuda_scatter_csr(const gpuml_kctx *k, const float *src, const int64_t *rowptr,
                                               const int64_t *col, float *out, int64_t ntargets, int64_t ncols)
{
    if (ntargets * ncols == 0)
        return GPUML_OK;
    gpuml_cuda_scope scope(k->device);
    GPUML_CUDA_LAUNCH(scatter_kernel, gpuml_cuda_grid(ntargets * ncols), GPUML_CUDA_BLOCK, 0, gpuml_cuda_stream(k))(
        src, rowptr, col, out, ntargets, ncols);
    return gpuml_cuda_check("scatter_add_rows");
}

extern "C" gpuml_status gpuml_cuda_concat(const gpuml_kctx *k, gpuml_k_pieces p, int64_t rows, void *wide,
                                          int64_t wide_row_bytes, int split)
{
    if (rows == 0 || p.n == 0)
        return GPUML_OK;
    gpuml_cuda_scope scope(k->device);
    GPUML_CUDA_LAUNCH(concat_kernel, gpuml_cuda_grid(rows * p.n), GPUML_CUDA_BLOCK, 0, gpuml_cuda_stream(k))(p, rows, (char *)wide,
                                                                                             wide_row_bytes, split);
    return gpuml_cuda_check("concat");
}
