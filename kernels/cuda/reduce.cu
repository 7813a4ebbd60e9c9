/* CUDA launcher for kernels/reduce.h: one thread per output element / row
 * (the portable form; a block-reduction fast path can be added beside it). */
#include "../kernels.h"
#include "../reduce.h"
#include "launch.cuh"

static __global__ void reduce_kernel(int op, const float *x, int64_t outer, int64_t len, int64_t inner, float *out,
                                     int64_t *arg)
{
    GPUML_GRID_STRIDE(j, outer * inner)
    {
        int64_t o = j / inner, i = j - o * inner;
        gpuml_k_reduce_one(op, x + o * len * inner + i, len, inner, out + j, arg ? arg + j : nullptr);
    }
}

static __global__ void reduce_grad_kernel(int op, const float *gout, const int64_t *arg, int64_t outer, int64_t len,
                                          int64_t inner, float *gx)
{
    GPUML_GRID_STRIDE(e, outer * len * inner)
    {
        int64_t i = e % inner, l = (e / inner) % len, o = e / (inner * len);
        int64_t j = o * inner + i;
        float g = gout[j];
        gx[e] = op == GPUML_REDUCE_SUM ? g : op == GPUML_REDUCE_MEAN ? g / (float)len : (arg[j] == l ? g : 0.0f);
    }
}

static __global__ void softmax_kernel(const float *x, float *y, int64_t rows, int64_t n, int take_log)
{
    GPUML_GRID_STRIDE(r, rows) gpuml_k_softmax_row(x + r * n, y + r * n, n, take_log);
}

static __global__ void softmax_grad_kernel(const float *y, const float *gy, float *gx, int64_t rows, int64_t n,
                                           int take_log)
{
    GPUML_GRID_STRIDE(r, rows) gpuml_k_softmax_row_grad(y + r * n, gy + r * n, gx + r * n, n, take_log);
}

extern "C" gpuml_status gpuml_cuda_reduce(const gpuml_kctx *k, int op, const float *x, int64_t outer, int64_t len,
                                          int64_t inner, float *out, int64_t *arg)
{
    if (outer * inner == 0)
        return GPUML_OK;
    gpuml_cuda_scope scope(k->device);
    GPUML_CUDA_LAUNCH(reduce_kernel, gpuml_cuda_grid(outer * inner), GPUML_CUDA_BLOCK, 0, gpuml_cuda_stream(k))(op, x, outer, len,
                                                                                                inner, out, arg);
    return gpuml_cuda_check("reduce");
}

extern "C" gpuml_status gpuml_cuda_reduce_grad(const gpuml_kctx *k, int op, const float *gout, const int64_t *arg,
                                               int64_t outer, int64_t len, int64_t inner, float *gx)
{
    int64_t n = outer * len * inner;
    if (n == 0)
        return GPUML_OK;
    gpuml_cuda_scope scope(k->device);
    GPUML_CUDA_LAUNCH(reduce_grad_kernel, gpuml_cuda_grid(n), GPUML_CUDA_BLOCK, 0, gpuml_cuda_stream(k))(op, gout, arg, outer, len,
                                                                                         inner, gx);
    return gpuml_cuda_check("reduce_grad");
}

extern "C" gpuml_status gpuml_cuda_softmax(const gpuml_kctx *k, const float *x, float *y, int64_t rows, int64_t n,
                                           int take_log)
{
    if (rows == 0)
        return GPUML_OK;
    gpuml_cuda_scope scope(k->device);
    GPUML_CUDA_LAUNCH(softmax_kernel, gpuml_cuda_grid(rows), GPUML_CUDA_BLOCK, 0, gpuml_cuda_stream(k))(x, y, rows, n, take_log);
    return gpuml_cuda_check("softmax");
}

extern "C" gpuml_status gpuml_cuda_softmax_grad(const gpuml_kctx *k, const float *y, const float *gy, float *gx,
                                                int64_t rows, int64_t n, int take_log)
{
    if (rows == 0)
        return GPUML_OK;
    gpuml_cuda_scope scope(k->device);
    GPUML_CUDA_LAUNCH(softmax_grad_kernel, gpuml_cuda_grid(rows), GPUML_CUDA_BLOCK, 0, gpuml_cuda_stream(k))(y, gy, gx, rows, n,
                                                                                             take_log);
    return gpuml_cuda_check("softmax_grad");
}
