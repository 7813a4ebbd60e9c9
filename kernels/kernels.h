/*
 * kernels/kernels.h - entry points of the CPU drivers (gpuml_cpu_*) and the
 * CUDA launchers (gpuml_cuda_*), called by the op layer (libgpuml/ops/)
 * after it has validated the arguments. Pointers are raw device pointers of
 * the right dtype; shapes are already checked. Launchers enqueue on
 * k->stream and report launch errors; drivers complete before returning.
 */
#ifndef GPUML_KERNELS_KERNELS_H
#define GPUML_KERNELS_KERNELS_H

#include "common.h"
#include "binary.h"
#include "rows.h"

#ifdef __cplusplus
extern "C" {
#endif

#define GPUML_K_DECLARE(name, ...)                              \
    gpuml_status gpuml_cpu_##name(const gpuml_kctx *k, __VA_ARGS__); \
    gpuml_status gpuml_cuda_##name(const gpuml_kctx *k, __VA_ARGS__);

/* unary.h */
GPUML_K_DECLARE(unary, int op, float alpha, int64_t n, const float *x, float *y)
GPUML_K_DECLARE(unary_grad, int op, float alpha, int64_t n, const float *x, const float *gy, float *gx)
/* binary.h: ga_full / gb_full are out-shaped (either may be NULL) */
GPUML_K_DECLARE(binary, int op, gpuml_k_bcast bc, const float *a, const float *b, float *out)
GPUML_K_DECLARE(binary_grad, int op, gpuml_k_bcast bc, const float *a, const float *b, const float *g,
                float *ga_full, float *gb_full)
GPUML_K_DECLARE(sum_to, gpuml_k_sumto st, int64_t nout, const float *in, float *out)
GPUML_K_DECLARE(axpby, int64_t n, float alpha, const float *x, float beta, float *y) /* y = a*x + b*y; b==0 ignores y */
/* cast.h */
GPUML_K_DECLARE(cast, int64_t n, const void *x, int xt, void *y, int yt)
GPUML_K_DECLARE(fill, int64_t n, void *y, int yt, double value)
/* reduce.h */
GPUML_K_DECLARE(reduce, int op, const float *x, int64_t outer, int64_t len, int64_t inner, float *out, int64_t *arg)
GPUML_K_DECLARE(reduce_grad, int op, const float *gout, const int64_t *arg, int64_t outer, int64_t len,
                int64_t inner, float *gx)
GPUML_K_DECLARE(softmax, const float *x, float *y, int64_t rows, int64_t n, int take_log)
GPUML_K_DECLARE(softmax_grad, const float *y, const float *gy, float *gx, int64_t rows, int64_t n, int take_log)
/* matmul.h: row-major, batch strides in elements (0: shared operand) */
GPUML_K_DECLARE(gemm, int ta, int tb, int64_t m, int64_t n, int64_t kk, float alpha, const float *a,
                int64_t stride_a, const float *b, int64_t stride_b, float beta, float *c, int64_t stride_c,
                int64_t batch)
GPUML_K_DECLARE(bias_rows, int64_t rows, int64_t cols, const float *bias, float *y)
GPUML_K_DECLARE(col_sum, int64_t rows, int64_t cols, const float *g, float *out, int accumulate)
/* rows.h */
GPUML_K_DECLARE(gather_rows, const void *x, int64_t n, const void *idx, int is64, void *out, int64_t m,
                int64_t row_bytes)
/* CSR of an index array (see gpuml_index_csr). ws: workspace of
 * gpuml_cuda_csr_workspace(ntargets) bytes on CUDA, unused on the CPU. */
GPUML_K_DECLARE(csr_build, const void *idx, int is64, int64_t m, int64_t ntargets, int64_t *rowptr, int64_t *col,
                void *ws)
size_t gpuml_cuda_csr_workspace(int64_t ntargets);
/* out[t] += sum of src[col[p]] for p in rowptr[t] .. rowptr[t+1]-1, in order. */
GPUML_K_DECLARE(scatter_csr, const float *src, const int64_t *rowptr, const int64_t *col, float *out,
                int64_t ntargets, int64_t ncols)
/* split == 0: pieces -> wide; split != 0: wide -> pieces */
GPUML_K_DECLARE(concat, gpuml_k_pieces p, int64_t rows, void *wide, int64_t wide_row_bytes, int split)
/* segment.h */
GPUML_K_DECLARE(segment_reduce, int op, const float *x, int64_t nrows, int64_t ncols, const int64_t *row_splits,
                int64_t batch, float *out, int64_t *arg)
GPUML_K_DECLARE(segment_grad, int op, const float *gout, const int64_t *arg, const int64_t *row_splits,
                int64_t batch, int64_t nrows, int64_t ncols, float *gx)
/* knn.h: ws of gpuml_{cpu,cuda}_knn_workspace(n, d, nev, kk, nthreads) bytes; r2 = max_radius^2 or +inf;
 * algo a gpuml_knn_algo. grad: rowptr [n+1] / col [n*kk], the reverse CSR of idx. */
GPUML_K_DECLARE(knn, const float *x, int64_t n, int d, const int64_t *row_splits, int64_t nev, int kk, float r2,
                int algo, int32_t *idx, float *dist2, void *ws)
size_t gpuml_cpu_knn_workspace(int64_t n, int d, int64_t nev, int kk, int nthreads);
size_t gpuml_cuda_knn_workspace(int64_t n, int d, int64_t nev, int kk, int nthreads);
GPUML_K_DECLARE(knn_grad, const float *x, int64_t n, int d, const int32_t *idx, int kk, const float *g,
                const int64_t *rowptr, const int64_t *col, float *gx)
/* rng.h */
GPUML_K_DECLARE(rand, int normal, uint64_t seed, uint64_t base, int64_t n, float p0, float p1, float *y)

#ifdef __cplusplus
}
#endif
#endif
