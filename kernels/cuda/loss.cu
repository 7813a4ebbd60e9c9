/* CUDA launcher for kernels/loss.h. */
#include "../kernels.h"
#include "../loss.h"
#include "../rows.h"
#include "launch.cuh"

static __global__ void bce_kernel(int64_t n, int64_t c, const float *x, const float *y, const float *pw, float *out)
{
    GPUML_GRID_STRIDE(e, n * c) out[e] = gpuml_k_bce_elem(x, y, pw, c, e);
}

static __global__ void bce_grad_kernel(int64_t n, int64_t c, const float *x, const float *y, const float *pw,
                                       const float *gout, float *gx)
{
    GPUML_GRID_STRIDE(e, n * c) gx[e] = gpuml_k_bce_grad_elem(x, y, pw, gout, c, e);
}

static __global__ void ce_kernel(const float *x, int64_t rows, int64_t c, const void *labels, int is64, float *nll,
                                 float *lse)
{
    GPUML_GRID_STRIDE(r, rows) nll[r] = gpuml_k_ce_row(x + r * c, c, gpuml_k_index_at(labels, is64, r), lse + r);
}

static __global__ void ce_grad_kernel(const float *x, int64_t rows, int64_t c, const void *labels, int is64,
                                      const float *lse, const float *gnll, float *gx)
{
    GPUML_GRID_STRIDE(r, rows)
    gpuml_k_ce_row_grad(x + r * c, c, gpuml_k_index_at(labels, is64, r), lse[r], gnll[r], gx + r * c);
}

extern "C" gpuml_status gpuml_cuda_bce_logits(const gpuml_kctx *k, int64_t n, int64_t c, const float *x,
                                              const float *y, const float *pos_weight, float *out)
{
    if (n * c == 0)
        return GPUML_OK;
    GPUML_CUDA_ENTER(k, "bce_logits");
    GPUML_CUDA_LAUNCH(bce_kernel, gpuml_cuda_grid(n * c), GPUML_CUDA_BLOCK, 0, gpuml_cuda_stream(k))(n, c, x, y, pos_weight, out);
    return gpuml_cuda_check(k, "bce_logits");
}

extern "C" gpuml_status gpuml_cuda_bce_logits_grad(const gpuml_kctx *k, int64_t n, int64_t c, const float *x,
                                                   const float *y, const float *pos_weight, const float *gout,
                                                   float *gx)
{
    if (n * c == 0)
        return GPUML_OK;
    GPUML_CUDA_ENTER(k, "bce_logits_grad");
    GPUML_CUDA_LAUNCH(bce_grad_kernel, gpuml_cuda_grid(n * c), GPUML_CUDA_BLOCK, 0, gpuml_cuda_stream(k))(n, c, x, y, pos_weight,
                                                                                          gout, gx);
    return gpuml_cuda_check(k, "bce_logits_grad");
}

extern "C" gpuml_status gpuml_cuda_cross_entropy(const gpuml_kctx *k, const float *x, int64_t rows, int64_t c,
                                                 const void *labels, int is64, float *nll, float *lse)
{
    if (rows == 0)
        return GPUML_OK;
    GPUML_CUDA_ENTER(k, "cross_entropy");
    GPUML_CUDA_LAUNCH(ce_kernel, gpuml_cuda_grid(rows), GPUML_CUDA_BLOCK, 0, gpuml_cuda_stream(k))(x, rows, c, labels, is64, nll, lse);
    return gpuml_cuda_check(k, "cross_entropy");
}

extern "C" gpuml_status gpuml_cuda_cross_entropy_grad(const gpuml_kctx *k, const float *x, int64_t rows, int64_t c,
                                                      const void *labels, int is64, const float *lse,
                                                      const float *gnll, float *gx)
{
    if (rows == 0)
        return GPUML_OK;
    GPUML_CUDA_ENTER(k, "cross_entropy_grad");
    GPUML_CUDA_LAUNCH(ce_grad_kernel, gpuml_cuda_grid(rows), GPUML_CUDA_BLOCK, 0, gpuml_cuda_stream(k))(x, rows, c, labels, is64, lse,
                                                                                        gnll, gx);
    return gpuml_cuda_check(k, "cross_entropy_grad");
}
