/* CPU driver for kernels/edgeconv.h (the GEMMs go through gpuml_cpu_gemm). */
#include "../edgeconv.h"
#include "../kernels.h"
#include "parallel.h"

typedef struct ec_args {
    const float *pn, *bias, *gout;
    const int32_t *idx;
    const int64_t *rowptr, *col;
    int64_t n, kk, C;
    int first;
    float *out;
} ec_args;

GPUML_KRANGE(combine_range, ec_args)
{
    for (int64_t i = begin; i < end; i++)
        for (int64_t t = 0; t < a->kk - a->first; t++)
            for (int64_t c = 0; c < a->C; c++)
                gpuml_k_edge_combine_elem(a->pn, a->bias, a->idx, a->n, a->kk, a->first, a->C, i, t, c, a->out);
}

GPUML_KRANGE(grad_node_range, ec_args)
{
    for (int64_t v = begin; v < end; v++)
        gpuml_k_edge_grad_node_row(a->gout, a->idx, a->rowptr, a->col, a->n, a->kk, a->first, a->C, v, a->out);
}

gpuml_status gpuml_cpu_edge_wcat(const gpuml_kctx *k, const float *w, int64_t C, int64_t F, float *wcat)
{
    (void)k; /* 2C x F: small */
    for (int64_t r = 0; r < 2 * C; r++)
        for (int64_t f = 0; f < F; f++)
            gpuml_k_edge_wcat_elem(w, C, F, r, f, wcat);
    return GPUML_OK;
}

gpuml_status gpuml_cpu_edge_combine(const gpuml_kctx *k, const float *pn, const float *bias, const int32_t *idx,
                                    int64_t n, int64_t kk, int first, int64_t C, float *out)
{
    ec_args a = {0};
    a.pn = pn, a.bias = bias, a.idx = idx, a.n = n, a.kk = kk, a.first = first, a.C = C, a.out = out;
    gpuml_kfor(k, n, n * (kk - first) * C, 0, combine_range, &a);
    return GPUML_OK;
}

gpuml_status gpuml_cpu_edge_grad_node(const gpuml_kctx *k, const float *gout, const int32_t *idx,
                                      const int64_t *rowptr, const int64_t *col, int64_t n, int64_t kk, int first,
                                      int64_t C, float *gpn)
{
    ec_args a = {0};
    a.gout = gout, a.idx = idx, a.rowptr = rowptr, a.col = col, a.n = n, a.kk = kk, a.first = first, a.C = C;
    a.out = gpn;
    gpuml_kfor(k, n, n * kk * C, 0, grad_node_range, &a);
    return GPUML_OK;
}

gpuml_status gpuml_cpu_edge_grad_w(const gpuml_kctx *k, const float *gwcat, int64_t C, int64_t F, int accumulate,
                                   float *gw)
{
    (void)k;
    for (int64_t c = 0; c < C; c++)
        for (int64_t f = 0; f < 2 * F; f++)
            gpuml_k_edge_grad_w_elem(gwcat, C, F, c, f, accumulate, gw);
    return GPUML_OK;
}
