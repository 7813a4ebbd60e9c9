/* CUDA launchers for kernels/gravnet.h: one thread per row for the weights,
 * per output element (i, p) for the forward and the h gradient (lanes run
 * along p, so reads of h, gout and argmax are coalesced), per edge for the
 * dist2 gradient. */
#include "../gravnet.h"
#include "../kernels.h"
#include "launch.cuh"

static __global__ void weights_kernel(const int32_t *idx, const float *d2, int64_t n, int64_t kk, int first,
                                      float alpha, float *w, int32_t *cnt)
{
    GPUML_GRID_STRIDE(i, n) gpuml_k_gravnet_weights_row(idx, d2, n, kk, first, alpha, i, w, cnt);
}

static __global__ void fwd_kernel(const float *h, const int32_t *idx, const float *w, int64_t n, int64_t kk, int64_t P,
                                  int first, float *out, int32_t *am)
{
    GPUML_GRID_STRIDE(e, n * P) gpuml_k_gravnet_fwd_elem(h, idx, w, n, kk, P, first, e / P, e % P, out, am);
}

static __global__ void grad_mean_kernel(const float *gout, const int32_t *cnt, int64_t n, int64_t P, float *gm)
{
    GPUML_GRID_STRIDE(e, n * P) gpuml_k_gravnet_grad_mean(gout, cnt, P, e / P, e % P, gm);
}

static __global__ void grad_d2_kernel(const float *h, const int32_t *idx, const float *w, const float *gm,
                                      const int32_t *am, const float *gout, int64_t n, int64_t kk, int64_t P, int first,
                                      float alpha, float *gd2)
{
    GPUML_GRID_STRIDE(e, n * kk) gpuml_k_gravnet_grad_d2(h, idx, w, gm, am, gout, n, kk, P, first, alpha, e, gd2);
}

static __global__ void grad_h_kernel(const int32_t *idx, const float *w, const float *gm, const int32_t *am,
                                     const float *gout, const int64_t *rowptr, const int64_t *col, int64_t n,
                                     int64_t kk, int64_t P, int first, float *gh)
{
    GPUML_GRID_STRIDE(e, n * P)
    gpuml_k_gravnet_grad_h(idx, w, gm, am, gout, rowptr, col, n, kk, P, first, e / P, e % P, 1, gh);
}

extern "C" gpuml_status gpuml_cuda_gravnet_weights(const gpuml_kctx *k, const int32_t *idx, const float *d2,
                                                   int64_t n, int64_t kk, int first, float alpha, float *w,
                                                   int32_t *cnt)
{
    GPUML_CUDA_RUN(k, "gravnet_aggregate", weights_kernel, n, idx, d2, n, kk, first, alpha, w, cnt);
}

extern "C" gpuml_status gpuml_cuda_gravnet_fwd(const gpuml_kctx *k, const float *h, const int32_t *idx, const float *w,
                                               int64_t n, int64_t kk, int64_t P, int first, float *out, int32_t *am)
{
    GPUML_CUDA_RUN(k, "gravnet_aggregate", fwd_kernel, n * P, h, idx, w, n, kk, P, first, out, am);
}

extern "C" gpuml_status gpuml_cuda_gravnet_grad_mean(const gpuml_kctx *k, const float *gout, const int32_t *cnt,
                                                     int64_t n, int64_t P, float *gm)
{
    GPUML_CUDA_RUN(k, "gravnet_aggregate_backward", grad_mean_kernel, n * P, gout, cnt, n, P, gm);
}

extern "C" gpuml_status gpuml_cuda_gravnet_grad_d2(const gpuml_kctx *k, const float *h, const int32_t *idx,
                                                   const float *w, const float *gm, const int32_t *am,
                                                   const float *gout, int64_t n, int64_t kk, int64_t P, int first,
                                                   float alpha, float *gd2)
{
    GPUML_CUDA_RUN(k, "gravnet_aggregate_backward", grad_d2_kernel, n * kk, h, idx, w, gm, am, gout, n, kk, P, first,
                   alpha, gd2);
}

extern "C" gpuml_status gpuml_cuda_gravnet_grad_h(const gpuml_kctx *k, const int32_t *idx, const float *w,
                                                  const float *gm, const int32_t *am, const float *gout,
                                                  const int64_t *rowptr, const int64_t *col, int64_t n, int64_t kk,
                                                  int64_t P, int first, float *gh)
{
    GPUML_CUDA_RUN(k, "gravnet_aggregate_backward", grad_h_kernel, n * P, idx, w, gm, am, gout, rowptr, col, n, kk, P,
                   first, gh);
}
