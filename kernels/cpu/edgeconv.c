/* CPU driver for kernels/edgeconv.h (the GEMMs go through gpuml_cpu_gemm). */
#include "../edgeconv.h"
#include "../kernels.h"

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
    int nt = k->nthreads;
    int64_t ke = kk - first;
#pragma omp parallel for num_threads(nt) schedule(static) if (n * ke * C > GPUML_PAR_GRAIN)
    for (int64_t i = 0; i < n; i++)
        for (int64_t t = 0; t < ke; t++)
            for (int64_t c = 0; c < C; c++)
                gpuml_k_edge_combine_elem(pn, bias, idx, n, kk, first, C, i, t, c, out);
    return GPUML_OK;
}

gpuml_status gpuml_cpu_edge_grad_node(const gpuml_kctx *k, const float *gout, const int32_t *idx,
                                      const int64_t *rowptr, const int64_t *col, int64_t n, int64_t kk, int first,
                                      int64_t C, float *gpn)
{
    int nt = k->nthreads;
#pragma omp parallel for num_threads(nt) schedule(static) if (n * kk * C > GPUML_PAR_GRAIN)
    for (int64_t v = 0; v < n; v++)
        gpuml_k_edge_grad_node_row(gout, idx, rowptr, col, n, kk, first, C, v, gpn);
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
