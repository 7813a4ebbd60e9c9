/* kernels/rows.h - row movement: gather, deterministic scatter-add, concat.
 *
 * Scatter-add never uses atomics on floats: the (target, source) pairs are
 * first grouped into a CSR (rowptr over targets, sources listed in
 * ascending order within each target), then every target row sums its
 * sources in that order. Same order on every backend and thread count. */
#ifndef GPUML_KERNELS_ROWS_H
#define GPUML_KERNELS_ROWS_H

#include "common.h"

GPUML_HD static inline int64_t gpuml_k_index_at(const void *idx, int is64, int64_t i)
{
    return is64 ? ((const int64_t *)idx)[i] : (int64_t)((const int32_t *)idx)[i];
}

/* One row of gather: out[i] = x[idx[i]] or zeros, row_bytes bytes. Word-wise
 * when the row is a multiple of 4 bytes (rows are then 4-aligned). */
GPUML_HD static inline void gpuml_k_gather_row(const char *GPUML_RESTRICT x, int64_t n, const void *idx, int is64,
                                               char *GPUML_RESTRICT out, int64_t row_bytes, int64_t i)
{
    int64_t j = gpuml_k_index_at(idx, is64, i);
    char *o = out + i * row_bytes;
    if (row_bytes % 4 == 0) {
        uint32_t *o4 = (uint32_t *)o;
        int64_t w = row_bytes / 4;
        if (j < 0 || j >= n) {
            for (int64_t c = 0; c < w; c++)
                o4[c] = 0;
        } else {
            const uint32_t *s4 = (const uint32_t *)(x + j * row_bytes);
            for (int64_t c = 0; c < w; c++)
                o4[c] = s4[c];
        }
        return;
    }
    for (int64_t c = 0; c < row_bytes; c++)
        o[c] = (j < 0 || j >= n) ? 0 : x[j * row_bytes + c];
}

/* CSR of targets: rowptr [ntargets + 1], and the sources of target t in
 * ascending order at col[rowptr[t] .. rowptr[t+1]-1]. The CPU driver is a
 * sequential counting sort. CUDA sorts (key, source) pairs with a stable
 * radix sort, key = target or ntargets for an index out of range (those
 * sort last and are not part of any list), then rowptr[t] is the first
 * position whose key is >= t. No atomics: the same lists every run. */
GPUML_HD static inline uint32_t gpuml_k_csr_key(const void *idx, int is64, int64_t ntargets, int64_t i)
{
    int64_t t = gpuml_k_index_at(idx, is64, i);
    return (uint32_t)(t >= 0 && t < ntargets ? t : ntargets);
}

/* First position p in the ascending keys[0..m) with keys[p] >= t (m if none). */
GPUML_HD static inline int64_t gpuml_k_lower_bound_u32(const uint32_t *GPUML_RESTRICT keys, int64_t m, int64_t t)
{
    int64_t lo = 0, hi = m;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        if ((int64_t)keys[mid] < t)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Up to this many pieces per concat / split pass (passed by value to CUDA). */
#define GPUML_K_MAX_PIECES 32

typedef struct gpuml_k_pieces {
    int n;
    char *ptr[GPUML_K_MAX_PIECES];        /* each piece's data             */
    int64_t width[GPUML_K_MAX_PIECES];    /* bytes per row of each piece   */
    int64_t offset[GPUML_K_MAX_PIECES];   /* byte offset in the wide row   */
} gpuml_k_pieces;

/* Concat along the last axis, element-wise in bytes: piece k of row r goes
 * to out[r, offset_k .. offset_k + width_k). */
GPUML_HD static inline void gpuml_k_copy_bytes(char *GPUML_RESTRICT dst, const char *GPUML_RESTRICT src, int64_t n)
{
    if (((uintptr_t)dst | (uintptr_t)src | (uintptr_t)n) % 4 == 0) {
        uint32_t *d4 = (uint32_t *)dst;
        const uint32_t *s4 = (const uint32_t *)src;
        for (int64_t i = 0; i < n / 4; i++)
            d4[i] = s4[i];
        return;
    }
    for (int64_t i = 0; i < n; i++)
        dst[i] = src[i];
}

#endif
