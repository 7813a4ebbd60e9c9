/* CUDA launcher for kernels/reduce.h: axis reductions level by level (a
 * thread per output and chunk), softmax a thread per row. */
#include "../kernels.h"
#include "../reduce.h"
#include "launch.cuh"

/* One level of a fixed-order reduction: a thread per (output, chunk), at
 * most GPUML_K_RCHUNK terms each (kernels/reduce.h). */
static __global__ void reduce_level_kernel(gpuml_k_rjob j, int level, gpuml_k_rpart src, gpuml_k_rpart dst,
                                           int64_t len, int64_t nch, int64_t n)
{
    GPUML_GRID_STRIDE(e, n) gpuml_k_reduce_level_elem(&j, level, src, dst, len, nch, e);
}

static __global__ void reduce_grad_kernel(int op, const float *gout, const int64_t *arg, int64_t outer, int64_t len,
                                          int64_t inner, float *gx)
{
    GPUML_GRID_STRIDE(e, outer * len * inner) gx[e] = gpuml_k_reduce_grad_elem(op, gout, arg, len, inner, e);
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

/* The levels run in order on the context's stream: level l reads what level
 * l - 1 wrote, the stream orders them. */
extern "C" gpuml_status gpuml_cuda_reduce(const gpuml_kctx *k, gpuml_k_rjob j)
{
    if (j.v.outer * j.v.inner == 0)
        return GPUML_OK;
    GPUML_CUDA_ENTER(k, "reduce");
    gpuml_k_rpart src = {nullptr, nullptr, nullptr};
    int64_t len = j.v.len;
    for (int level = 0;; level++) {
        int64_t nch = gpuml_k_rchunks(len), n = j.v.outer * nch * j.v.inner;
        gpuml_k_rpart dst = nch > 1 ? gpuml_k_rpart_of(&j, level & 1) : src;
        GPUML_CUDA_LAUNCH(reduce_level_kernel, gpuml_cuda_grid(n), GPUML_CUDA_BLOCK, 0, gpuml_cuda_stream(k))(
            j, level, src, dst, len, nch, n);
        gpuml_status st = gpuml_cuda_check(k, "reduce");
        if (st != GPUML_OK || nch == 1)
            return st;
        src = dst;
        len = nch;
    }
}

extern "C" gpuml_status gpuml_cuda_reduce_grad(const gpuml_kctx *k, int op, const float *gout, const int64_t *arg,
                                               int64_t outer, int64_t len, int64_t inner, float *gx)
{
    int64_t n = outer * len * inner;
    GPUML_CUDA_RUN(k, "reduce_grad", reduce_grad_kernel, n, op, gout, arg, outer, len, inner, gx);
}

extern "C" gpuml_status gpuml_cuda_softmax(const gpuml_kctx *k, const float *x, float *y, int64_t rows, int64_t n,
                                           int take_log)
{
    GPUML_CUDA_RUN(k, "softmax", softmax_kernel, rows, x, y, rows, n, take_log);
}

extern "C" gpuml_status gpuml_cuda_softmax_grad(const gpuml_kctx *k, const float *y, const float *gy, float *gx,
                                                int64_t rows, int64_t n, int take_log)
{
    GPUML_CUDA_RUN(k, "softmax_grad", softmax_grad_kernel, rows, y, gy, gx, rows, n, take_log);
}
