/* CUDA launchers for kernels/rows.h. Scatter-add builds its CSR on the
 * device with a stable radix sort of (target, source) pairs, so the lists
 * equal the CPU's without atomics, and sums without float atomics. */
#include <climits>

#include <cub/device/device_radix_sort.cuh>

#include "../kernels.h"
#include "../rows.h"
#include "../../libgpuml/core/align.h"
#include "launch.cuh"

static __global__ void gather_kernel(const char *x, int64_t n, const void *idx, int is64, char *out, int64_t m,
                                     int64_t row_bytes)
{
    GPUML_GRID_STRIDE(i, m) gpuml_k_gather_row(x, n, idx, is64, out, row_bytes, i);
}

static __global__ void csr_key_kernel(const void *idx, int is64, int64_t m, int64_t ntargets, uint32_t *keys,
                                      int64_t *vals)
{
    GPUML_GRID_STRIDE(i, m)
    {
        keys[i] = gpuml_k_csr_key(idx, is64, ntargets, i);
        vals[i] = i;
    }
}

/* Only the sorted positions of valid indices go to col: entries past
 * rowptr[ntargets] stay unwritten, as gpuml_index_csr promises. */
static __global__ void csr_col_kernel(const uint32_t *sorted_keys, const int64_t *sorted_vals, int64_t m,
                                      int64_t ntargets, int64_t *col)
{
    GPUML_GRID_STRIDE(p, m)
    if ((int64_t)sorted_keys[p] < ntargets)
        col[p] = sorted_vals[p];
}

static __global__ void csr_rowptr_kernel(const uint32_t *sorted_keys, int64_t m, int64_t ntargets, int64_t *rowptr)
{
    GPUML_GRID_STRIDE(t, ntargets + 1) rowptr[t] = gpuml_k_lower_bound_u32(sorted_keys, m, t);
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
    GPUML_CUDA_ENTER(k, "gather_rows");
    GPUML_CUDA_LAUNCH(gather_kernel, gpuml_cuda_grid(m), GPUML_CUDA_BLOCK, 0, gpuml_cuda_stream(k))((const char *)x, n, idx, is64,
                                                                                    (char *)out, m, row_bytes);
    return gpuml_cuda_check(k, "gather_rows");
}

/* CUB counts items in int: larger index arrays are refused, not truncated. */
static bool csr_fits(int64_t m, int64_t ntargets) { return m <= INT_MAX && ntargets < INT_MAX; }

static int csr_key_bits(int64_t ntargets)
{
    int bits = 1;
    while (bits < 32 && (1ll << bits) <= ntargets)
        bits++;
    return bits;
}

/* ws: keys [m] u32, sorted keys [m] u32, sources [m] i64, sorted sources
 * [m] i64, then CUB's scratch. */
static size_t csr_carve(void *ws, int64_t m, uint32_t **keys, uint32_t **keys2, int64_t **vals, int64_t **vals2,
                        void **tmp)
{
    size_t kb = gpuml_align_up((size_t)m * sizeof(uint32_t)), vb = gpuml_align_up((size_t)m * sizeof(int64_t));
    char *p = (char *)ws;
    *keys = (uint32_t *)p;
    *keys2 = (uint32_t *)(p + kb);
    *vals = (int64_t *)(p + 2 * kb);
    *vals2 = (int64_t *)(p + 2 * kb + vb);
    *tmp = p + 2 * kb + 2 * vb;
    return 2 * kb + 2 * vb;
}

extern "C" size_t gpuml_cuda_csr_workspace(int64_t m, int64_t ntargets)
{
    if (!csr_fits(m, ntargets) || m == 0)
        return 0;
    size_t cub_bytes = 0;
    if (cub::DeviceRadixSort::SortPairs(nullptr, cub_bytes, (uint32_t *)nullptr, (uint32_t *)nullptr,
                                        (int64_t *)nullptr, (int64_t *)nullptr, (int)m, 0, csr_key_bits(ntargets),
                                        (cudaStream_t)0) != cudaSuccess)
        cub_bytes = 0; /* the build asks again and reports the error */
    uint32_t *k1, *k2;
    int64_t *v1, *v2;
    void *tmp;
    return csr_carve(nullptr, m, &k1, &k2, &v1, &v2, &tmp) + cub_bytes;
}

extern "C" gpuml_status gpuml_cuda_csr_build(const gpuml_kctx *k, const void *idx, int is64, int64_t m,
                                             int64_t ntargets, int64_t *rowptr, int64_t *col, void *ws)
{
    static const char fn[] = "index_csr";
    if (!csr_fits(m, ntargets))
        return gpuml_k_fail(k, GPUML_ERR_UNSUPPORTED, fn,
                            "indices, targets: the CUDA CSR build (CUB radix sort) takes at most 2^31 - 1 of each",
                            NULL, NULL, 2, m, ntargets);
    GPUML_CUDA_ENTER(k, fn);
    cudaStream_t s = gpuml_cuda_stream(k);
    uint32_t *keys = nullptr, *sorted = nullptr;
    if (m > 0) {
        int64_t *vals, *sorted_vals;
        void *tmp;
        size_t carved = csr_carve(ws, m, &keys, &sorted, &vals, &sorted_vals, &tmp);
        size_t cub_bytes = gpuml_cuda_csr_workspace(m, ntargets) - carved;
        int bits = csr_key_bits(ntargets);
        GPUML_CUDA_LAUNCH(csr_key_kernel, gpuml_cuda_grid(m), GPUML_CUDA_BLOCK, 0, s)(idx, is64, m, ntargets, keys, vals);
        gpuml_status st = gpuml_cuda_check(k, fn);
        if (st != GPUML_OK)
            return st;
        /* stable: equal targets keep ascending sources */
        GPUML_CUDA_TRY(k, fn, "cub::DeviceRadixSort::SortPairs",
                       cub::DeviceRadixSort::SortPairs(tmp, cub_bytes, keys, sorted, vals, sorted_vals, (int)m, 0,
                                                       bits, s));
        GPUML_CUDA_LAUNCH(csr_col_kernel, gpuml_cuda_grid(m), GPUML_CUDA_BLOCK, 0, s)(sorted, sorted_vals, m, ntargets,
                                                                                    col);
    }
    GPUML_CUDA_LAUNCH(csr_rowptr_kernel, gpuml_cuda_grid(ntargets + 1), GPUML_CUDA_BLOCK, 0, s)(sorted, m, ntargets,
                                                                                                rowptr);
    return gpuml_cuda_check(k, fn);
}

extern "C" gpuml_status gpuml_cuda_concat(const gpuml_kctx *k, gpuml_k_pieces p, int64_t rows, void *wide,
                                          int64_t wide_row_bytes, int split)
{
    if (rows == 0 || p.n == 0)
        return GPUML_OK;
    GPUML_CUDA_ENTER(k, "concat");
    GPUML_CUDA_LAUNCH(concat_kernel, gpuml_cuda_grid(rows * p.n), GPUML_CUDA_BLOCK, 0, gpuml_cuda_stream(k))(p, rows, (char *)wide,
                                                                                             wide_row_bytes, split);
    return gpuml_cuda_check(k, "concat");
}
