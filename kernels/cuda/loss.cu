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
    GPUML_CUDA_RUN(k, "bce_logits", bce_kernel, n * c, n, c, x, y, pos_weight, out);
}

extern "C" gpuml_status gpuml_cuda_bce_logits_grad(const gpuml_kctx *k, int64_t n, int64_t c, const float *x,
                                                   const float *y, const float *pos_weight, const float *gout,
                                                   float *gx)
{
    GPUML_CUDA_RUN(k, "bce_logits_grad", bce_grad_kernel, n * c, n, c, x, y, pos_weight, gout, gx);
}

extern "C" gpuml_status gpuml_cuda_cross_entropy(const gpuml_kctx *k, const float *x, int64_t rows, int64_t c,
                                                 const void *labels, int is64, float *nll, float *lse)
{
    GPUML_CUDA_RUN(k, "cross_entropy", ce_kernel, rows, x, rows, c, labels, is64, nll, lse);
}

extern "C" gpuml_status gpuml_cuda_cross_entropy_grad(const gpuml_kctx *k, const float *x, int64_t rows, int64_t c,
                                                      const void *labels, int is64, const float *lse,
                                                      const float *gnll, float *gx)
{
    GPUML_CUDA_RUN(k, "cross_entropy_grad", ce_grad_kernel, rows, x, rows, c, labels, is64, lse, gnll, gx);
}
