/* CPU driver for kernels/rows.h. */
#include "../kernels.h"
#include "../rows.h"

gpuml_status gpuml_cpu_gather_rows(const gpuml_kctx *k, const void *x, int64_t n, const void *idx, int is64,
                                   void *out, int64_t m, int64_t row_bytes)
{
    int nt = k->nthreads;
#pragma omp parallel for num_threads(nt) schedule(static) if (m * row_bytes > 4 * GPUML_PAR_GRAIN)
    for (int64_t i = 0; i < m; i++)
        gpuml_k_gather_row((const char *)x, n, idx, is64, (char *)out, row_bytes, i);
    return GPUML_OK;
}

gpuml_status gpuml_cpu_csr_build(const gpuml_kctx *k, const void *idx, int is64, int64_t m, int64_t ntargets,
                                 int64_t *rowptr, int64_t *col, void *ws)
{
    (void)k, (void)ws;
    /* A sequential counting sort: positions land in ascending order. */
    for (int64_t t = 0; t <= ntargets; t++)
        rowptr[t] = 0;
    for (int64_t i = 0; i < m; i++) {
        int64_t t = gpuml_k_index_at(idx, is64, i);
        if (t >= 0 && t < ntargets)
            rowptr[t + 1]++;
    }
    for (int64_t t = 0; t < ntargets; t++)
        rowptr[t + 1] += rowptr[t];
    /* rowptr[t] serves as t's fill cursor, then is shifted back. */
    for (int64_t i = 0; i < m; i++) {
        int64_t t = gpuml_k_index_at(idx, is64, i);
        if (t >= 0 && t < ntargets)
            col[rowptr[t]++] = i;
    }
    for (int64_t t = ntargets; t > 0; t--)
        rowptr[t] = rowptr[t - 1];
    rowptr[0] = 0;
    return GPUML_OK;
}

gpuml_status gpuml_cpu_scatter_csr(const gpuml_kctx *k, const float *src, const int64_t *rowptr, const int64_t *col,
                                   float *out, int64_t ntargets, int64_t ncols)
{
    int nt = k->nthreads;
    int64_t work = (rowptr[ntargets] + ntargets) * ncols;
#pragma omp parallel for num_threads(nt) schedule(static) if (work > GPUML_PAR_GRAIN)
    for (int64_t t = 0; t < ntargets; t++)
        for (int64_t c = 0; c < ncols; c++)
            gpuml_k_scatter_add_elem(src, rowptr, col, out, ncols, t, c);
    return GPUML_OK;
}

gpuml_status gpuml_cpu_concat(const gpuml_kctx *k, gpuml_k_pieces p, int64_t rows, void *wide,
                              int64_t wide_row_bytes, int split)
{
    int nt = k->nthreads;
#pragma omp parallel for num_threads(nt) schedule(static) if (rows * wide_row_bytes > 4 * GPUML_PAR_GRAIN)
    for (int64_t r = 0; r < rows; r++) {
        char *w = (char *)wide + r * wide_row_bytes;
        for (int q = 0; q < p.n; q++) {
            char *piece = p.ptr[q] + r * p.width[q];
            if (split)
                gpuml_k_copy_bytes(piece, w + p.offset[q], p.width[q]);
            else
                gpuml_k_copy_bytes(w + p.offset[q], piece, p.width[q]);
        }
    }
    return GPUML_OK;
}
