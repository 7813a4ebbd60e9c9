/* CUDA launchers for kernels/neighbour.h: one thread per (node, channel),
 * lanes along the channel axis (coalesced rows of the edge tensor). */
#include "../kernels.h"
#include "../neighbour.h"
#include "launch.cuh"

static __global__ void reduce_kernel(int op, const float *edges, const int32_t *idx, int64_t n, int64_t kk, int first,
                                     int64_t C, float *out, int32_t *am)
{
    GPUML_GRID_STRIDE(e, n * C) gpuml_k_neighbour_reduce(op, edges, idx, n, kk, first, C, e / C, e % C, out, am);
}

static __global__ void grad_kernel(int op, const float *gout, const int32_t *am, const int32_t *idx, int64_t n,
                                   int64_t kk, int first, int64_t C, float *gedges)
{
    GPUML_GRID_STRIDE(e, n * C) gpuml_k_neighbour_grad(op, gout, am, idx, n, kk, first, C, e / C, e % C, gedges);
}

static __global__ void mask_kernel(const int32_t *idx, int64_t n, int64_t kk, int first, uint8_t *mask)
{
    int64_t ke = kk - first;
    GPUML_GRID_STRIDE(e, n * ke) gpuml_k_edge_mask_elem(idx, n, kk, first, e / ke, e % ke, mask);
}

extern "C" gpuml_status gpuml_cuda_neighbour_reduce(const gpuml_kctx *k, int op, const float *edges, const int32_t *idx,
                                                    int64_t n, int64_t kk, int first, int64_t C, float *out,
                                                    int32_t *am)
{
    GPUML_CUDA_RUN(k, "neighbour_aggregate", reduce_kernel, n * C, op, edges, idx, n, kk, first, C, out, am);
}

extern "C" gpuml_status gpuml_cuda_neighbour_grad(const gpuml_kctx *k, int op, const float *gout, const int32_t *am,
                                                  const int32_t *idx, int64_t n, int64_t kk, int first, int64_t C,
                                                  float *gedges)
{
    GPUML_CUDA_RUN(k, "neighbour_aggregate_backward", grad_kernel, n * C, op, gout, am, idx, n, kk, first, C, gedges);
}

extern "C" gpuml_status gpuml_cuda_edge_mask(const gpuml_kctx *k, const int32_t *idx, int64_t n, int64_t kk, int first,
                                             uint8_t *mask)
{
    GPUML_CUDA_RUN(k, "edge_mask", mask_kernel, n * (kk - first), idx, n, kk, first, mask);
}
