/* CPU driver for kernels/rows.h. */
#include "../kernels.h"
#include "../rows.h"
#include "parallel.h"

/* The arguments of every loop below. */
typedef struct rows_args {
    const void *x, *idx;
    int is64;
    int64_t n, row_bytes;
    void *out;
    const gpuml_k_pieces *p;
    int split;
} rows_args;

GPUML_KRANGE(gather_range, rows_args)
{
    for (int64_t i = begin; i < end; i++)
        gpuml_k_gather_row((const char *)a->x, a->n, a->idx, a->is64, (char *)a->out, a->row_bytes, i);
}

GPUML_KRANGE(concat_range, rows_args)
{
    const gpuml_k_pieces *p = a->p;
    for (int64_t r = begin; r < end; r++) {
        char *w = (char *)a->out + r * a->row_bytes;
        for (int q = 0; q < p->n; q++) {
            char *piece = p->ptr[q] + r * p->width[q];
            if (a->split)
                gpuml_k_copy_bytes(piece, w + p->offset[q], p->width[q]);
            else
                gpuml_k_copy_bytes(w + p->offset[q], piece, p->width[q]);
        }
    }
}

gpuml_status gpuml_cpu_gather_rows(const gpuml_kctx *k, const void *x, int64_t n, const void *idx, int is64,
                                   void *out, int64_t m, int64_t row_bytes)
{
    rows_args a = {0};
    a.x = x, a.n = n, a.idx = idx, a.is64 = is64, a.out = out, a.row_bytes = row_bytes;
    gpuml_kfor(k, m, m * row_bytes / 4, 0, gather_range, &a); /* bytes: a quarter of an operation each */
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

gpuml_status gpuml_cpu_concat(const gpuml_kctx *k, gpuml_k_pieces p, int64_t rows, void *wide,
                              int64_t wide_row_bytes, int split)
{
    rows_args a = {0};
    a.p = &p, a.out = wide, a.row_bytes = wide_row_bytes, a.split = split;
    gpuml_kfor(k, rows, rows * wide_row_bytes / 4, 0, concat_range, &a);
    return GPUML_OK;
}
