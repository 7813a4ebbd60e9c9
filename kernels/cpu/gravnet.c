/* CPU driver for kernels/gravnet.h. */
#include "../gravnet.h"
#include "../kernels.h"

gpuml_status gpuml_cpu_gravnet_weights(const gpuml_kctx *k, const int32_t *idx, const float *d2, int64_t n,
                                       int64_t kk, int first, float alpha, float *w, int32_t *cnt)
{
    int nt = k->nthreads;
#pragma omp parallel for num_threads(nt) schedule(static) if (n * kk > GPUML_PAR_GRAIN)
    for (int64_t i = 0; i < n; i++)
        gpuml_k_gravnet_weights_row(idx, d2, n, kk, first, alpha, i, w, cnt);
    return GPUML_OK;
}

gpuml_status gpuml_cpu_gravnet_fwd(const gpuml_kctx *k, const float *h, const int32_t *idx, const float *w,
                                   int64_t n, int64_t kk, int64_t P, int first, float *out, int32_t *am)
{
    int nt = k->nthreads;
#pragma omp parallel for num_threads(nt) schedule(static) if (n * kk * P > GPUML_PAR_GRAIN)
    for (int64_t i = 0; i < n; i++)
        for (int64_t p0 = 0; p0 < P; p0 += GPUML_K_GN_TILE)
            gpuml_k_gravnet_fwd_tile(h, idx, w, n, kk, P, first, i, p0, gpuml_k_min64(GPUML_K_GN_TILE, P - p0), out, am);
    return GPUML_OK;
}

gpuml_status gpuml_cpu_gravnet_grad_mean(const gpuml_kctx *k, const float *gout, const int32_t *cnt, int64_t n,
                                         int64_t P, float *gm)
{
    int nt = k->nthreads;
#pragma omp parallel for num_threads(nt) schedule(static) if (n * P > GPUML_PAR_GRAIN)
    for (int64_t i = 0; i < n; i++)
        for (int64_t p = 0; p < P; p++)
            gpuml_k_gravnet_grad_mean(gout, cnt, P, i, p, gm);
    return GPUML_OK;
}

gpuml_status gpuml_cpu_gravnet_grad_d2(const gpuml_kctx *k, const float *h, const int32_t *idx, const float *w,
                                       const float *gm, const int32_t *am, const float *gout, int64_t n,
                                       int64_t kk, int64_t P, int first, float alpha, float *gd2)
{
    int nt = k->nthreads;
    int64_t m = n * kk;
#pragma omp parallel for num_threads(nt) schedule(static) if (m * P > GPUML_PAR_GRAIN)
    for (int64_t e = 0; e < m; e++)
        gpuml_k_gravnet_grad_d2(h, idx, w, gm, am, gout, n, kk, P, first, alpha, e, gd2);
    return GPUML_OK;
}

gpuml_status gpuml_cpu_gravnet_grad_h(const gpuml_kctx *k, const int32_t *idx, const float *w, const float *gm,
                                      const int32_t *am, const float *gout, const int64_t *rowptr, const int64_t *col,
                                      int64_t n, int64_t kk, int64_t P, int first, float *gh)
{
    int nt = k->nthreads;
#pragma omp parallel for num_threads(nt) schedule(static) if (n * kk * P > GPUML_PAR_GRAIN)
    for (int64_t j = 0; j < n; j++)
        for (int64_t p0 = 0; p0 < P; p0 += GPUML_K_GN_TILE)
            gpuml_k_gravnet_grad_h(idx, w, gm, am, gout, rowptr, col, n, kk, P, first, j, p0,
                                   gpuml_k_min64(GPUML_K_GN_TILE, P - p0), gh);
    return GPUML_OK;
}
