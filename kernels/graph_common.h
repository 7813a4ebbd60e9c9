/* kernels/graph_common.h - the kNN graph helpers every graph kernel shares:
 * which slots of idx [n, k] are edges, and a target's range of a reverse
 * adjacency (rowptr/col of gpuml_index_csr). */
#ifndef GPUML_KERNELS_GRAPH_COMMON_H
#define GPUML_KERNELS_GRAPH_COMMON_H

#include "common.h"

/* Slot e = i * k + s of idx [n, k] is an edge when s >= first (first = 1
 * leaves out the point itself) and its index is a row, 0 <= idx < n. */
GPUML_HD static inline bool gpuml_k_edge_valid(const int32_t *GPUML_RESTRICT idx, int64_t n, int64_t k, int first,
                                               int64_t e)
{
    int64_t s = e % k;
    int32_t j = idx[e];
    return s >= first && j >= 0 && (int64_t)j < n;
}

/* CSR entries of target t, clamped into [0, m] so that a bad CSR stays in
 * bounds. */
GPUML_HD static inline void gpuml_k_csr_range(const int64_t *GPUML_RESTRICT rowptr, int64_t t, int64_t m,
                                              int64_t *begin, int64_t *end)
{
    int64_t b = gpuml_k_min64(gpuml_k_max64(rowptr[t], 0), m);
    *begin = b;
    *end = gpuml_k_min64(gpuml_k_max64(rowptr[t + 1], b), m);
}

#endif
