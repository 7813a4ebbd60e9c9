/* CPU driver for kernels/gravnet.h. */
#include "../gravnet.h"
#include "../kernels.h"
#include "parallel.h"

/* The arguments of every loop below. */
typedef struct gn_args {
    const int32_t *idx, *cnt_in, *am_in;
    const float *d2, *h, *w_in, *gm_in, *gout;
    const int64_t *rowptr, *col;
    int64_t n, kk, P;
    int first;
    float alpha;
    float *w, *out, *gm, *gd2, *gh;
    int32_t *cnt, *am;
} gn_args;

GPUML_KRANGE(weights_range, gn_args)
{
    for (int64_t i = begin; i < end; i++)
        gpuml_k_gravnet_weights_row(a->idx, a->d2, a->n, a->kk, a->first, a->alpha, i, a->w, a->cnt);
}

GPUML_KRANGE(fwd_range, gn_args)
{
    for (int64_t i = begin; i < end; i++)
        for (int64_t p0 = 0; p0 < a->P; p0 += GPUML_K_GN_TILE)
            gpuml_k_gravnet_fwd_tile(a->h, a->idx, a->w_in, a->n, a->kk, a->P, a->first, i, p0,
                                     gpuml_k_min64(GPUML_K_GN_TILE, a->P - p0), a->out, a->am);
}

GPUML_KRANGE(grad_mean_range, gn_args)
{
    for (int64_t i = begin; i < end; i++)
        for (int64_t p = 0; p < a->P; p++)
            gpuml_k_gravnet_grad_mean(a->gout, a->cnt_in, a->P, i, p, a->gm);
}

GPUML_KRANGE(grad_d2_range, gn_args)
{
    for (int64_t e = begin; e < end; e++)
        gpuml_k_gravnet_grad_d2(a->h, a->idx, a->w_in, a->gm_in, a->am_in, a->gout, a->n, a->kk, a->P, a->first,
                                a->alpha, e, a->gd2);
}

GPUML_KRANGE(grad_h_range, gn_args)
{
    for (int64_t j = begin; j < end; j++)
        for (int64_t p0 = 0; p0 < a->P; p0 += GPUML_K_GN_TILE)
            gpuml_k_gravnet_grad_h(a->idx, a->w_in, a->gm_in, a->am_in, a->gout, a->rowptr, a->col, a->n, a->kk, a->P,
                                   a->first, j, p0, gpuml_k_min64(GPUML_K_GN_TILE, a->P - p0), a->gh);
}

gpuml_status gpuml_cpu_gravnet_weights(const gpuml_kctx *k, const int32_t *idx, const float *d2, int64_t n,
                                       int64_t kk, int first, float alpha, float *w, int32_t *cnt)
{
    gn_args a = {0};
    a.idx = idx, a.d2 = d2, a.n = n, a.kk = kk, a.first = first, a.alpha = alpha, a.w = w, a.cnt = cnt;
    gpuml_kfor(k, n, n * kk, 0, weights_range, &a);
    return GPUML_OK;
}

gpuml_status gpuml_cpu_gravnet_fwd(const gpuml_kctx *k, const float *h, const int32_t *idx, const float *w,
                                   int64_t n, int64_t kk, int64_t P, int first, float *out, int32_t *am)
{
    gn_args a = {0};
    a.h = h, a.idx = idx, a.w_in = w, a.n = n, a.kk = kk, a.P = P, a.first = first, a.out = out, a.am = am;
    gpuml_kfor(k, n, n * kk * P, 0, fwd_range, &a);
    return GPUML_OK;
}

gpuml_status gpuml_cpu_gravnet_grad_mean(const gpuml_kctx *k, const float *gout, const int32_t *cnt, int64_t n,
                                         int64_t P, float *gm)
{
    gn_args a = {0};
    a.gout = gout, a.cnt_in = cnt, a.P = P, a.gm = gm;
    gpuml_kfor(k, n, n * P, 0, grad_mean_range, &a);
    return GPUML_OK;
}

gpuml_status gpuml_cpu_gravnet_grad_d2(const gpuml_kctx *k, const float *h, const int32_t *idx, const float *w,
                                       const float *gm, const int32_t *am, const float *gout, int64_t n,
                                       int64_t kk, int64_t P, int first, float alpha, float *gd2)
{
    gn_args a = {0};
    a.h = h, a.idx = idx, a.w_in = w, a.gm_in = gm, a.am_in = am, a.gout = gout, a.n = n, a.kk = kk, a.P = P;
    a.first = first, a.alpha = alpha, a.gd2 = gd2;
    gpuml_kfor(k, n * kk, n * kk * P, 0, grad_d2_range, &a);
    return GPUML_OK;
}

gpuml_status gpuml_cpu_gravnet_grad_h(const gpuml_kctx *k, const int32_t *idx, const float *w, const float *gm,
                                      const int32_t *am, const float *gout, const int64_t *rowptr, const int64_t *col,
                                      int64_t n, int64_t kk, int64_t P, int first, float *gh)
{
    gn_args a = {0};
    a.idx = idx, a.w_in = w, a.gm_in = gm, a.am_in = am, a.gout = gout, a.rowptr = rowptr, a.col = col, a.n = n;
    a.kk = kk, a.P = P, a.first = first, a.gh = gh;
    gpuml_kfor(k, n, n * kk * P, 0, grad_h_range, &a);
    return GPUML_OK;
}
