/* CUDA launchers for kernels/edgeconv.h: one thread per element, lanes along
 * the channel axis so that rows of pn, gout and gpn are read coalesced. */
#include "../edgeconv.h"
#include "../kernels.h"
#include "launch.cuh"

static __global__ void wcat_kernel(const float *w, int64_t C, int64_t F, float *wcat)
{
    GPUML_GRID_STRIDE(e, 2 * C * F) gpuml_k_edge_wcat_elem(w, C, F, e / F, e % F, wcat);
}

static __global__ void combine_kernel(const float *pn, const float *bias, const int32_t *idx, int64_t n, int64_t kk,
                                      int first, int64_t C, float *out)
{
    int64_t ke = kk - first;
    GPUML_GRID_STRIDE(e, n * ke * C)
    {
        int64_t c = e % C, it = e / C;
        gpuml_k_edge_combine_elem(pn, bias, idx, n, kk, first, C, it / ke, it % ke, c, out);
    }
}

static __global__ void grad_node_kernel(const float *gout, const int32_t *idx, const int64_t *rowptr,
                                        const int64_t *col, int64_t n, int64_t kk, int first, int64_t C, float *gpn)
{
    GPUML_GRID_STRIDE(e, n * C) gpuml_k_edge_grad_node(gout, idx, rowptr, col, n, kk, first, C, e / C, e % C, gpn);
}

static __global__ void grad_w_kernel(const float *gwcat, int64_t C, int64_t F, int accumulate, float *gw)
{
    GPUML_GRID_STRIDE(e, C * 2 * F) gpuml_k_edge_grad_w_elem(gwcat, C, F, e / (2 * F), e % (2 * F), accumulate, gw);
}

extern "C" gpuml_status gpuml_cuda_edge_wcat(const gpuml_kctx *k, const float *w, int64_t C, int64_t F, float *wcat)
{
    if (C * F == 0)
        return GPUML_OK;
    GPUML_CUDA_ENTER(k, "edge_first_linear");
    GPUML_CUDA_LAUNCH(wcat_kernel, gpuml_cuda_grid(2 * C * F), GPUML_CUDA_BLOCK, 0, gpuml_cuda_stream(k))(w, C, F, wcat);
    return gpuml_cuda_check(k, "edge_first_linear");
}

extern "C" gpuml_status gpuml_cuda_edge_combine(const gpuml_kctx *k, const float *pn, const float *bias,
                                                const int32_t *idx, int64_t n, int64_t kk, int first, int64_t C,
                                                float *out)
{
    int64_t total = n * (kk - first) * C;
    GPUML_CUDA_RUN(k, "edge_first_linear", combine_kernel, total, pn, bias, idx, n, kk, first, C, out);
}

extern "C" gpuml_status gpuml_cuda_edge_grad_node(const gpuml_kctx *k, const float *gout, const int32_t *idx,
                                                  const int64_t *rowptr, const int64_t *col, int64_t n, int64_t kk,
                                                  int first, int64_t C, float *gpn)
{
    GPUML_CUDA_RUN(k, "edge_first_linear_backward", grad_node_kernel, n * C, gout, idx, rowptr, col, n, kk, first, C,
                   gpn);
}

extern "C" gpuml_status gpuml_cuda_edge_grad_w(const gpuml_kctx *k, const float *gwcat, int64_t C, int64_t F,
                                               int accumulate, float *gw)
{
    if (C * F == 0)
        return GPUML_OK;
    GPUML_CUDA_ENTER(k, "edge_first_linear_backward");
    GPUML_CUDA_LAUNCH(grad_w_kernel, gpuml_cuda_grid(C * 2 * F), GPUML_CUDA_BLOCK, 0, gpuml_cuda_stream(k))(gwcat, C, F, accumulate,
                                                                                            gw);
    return gpuml_cuda_check(k, "edge_first_linear_backward");
}
