/* kernels/matmul.h - the portable matrix product: one output element of
 * C = alpha * op(A) op(B) + beta * C (row-major), dot product in k order.
 * Used by the CPU driver when gpuml is built without a BLAS, and as the
 * reference twin of cuBLAS. */
#ifndef GPUML_KERNELS_MATMUL_H
#define GPUML_KERNELS_MATMUL_H

#include "common.h"

GPUML_HD static inline float gpuml_k_matmul_elem(const float *GPUML_RESTRICT a, int ta, const float *GPUML_RESTRICT b,
                                                 int tb, int64_t m, int64_t n, int64_t k, int64_t i, int64_t j,
                                                 float alpha, float beta, float c_old)
{
    float acc = 0.0f;
    for (int64_t p = 0; p < k; p++) {
        float av = ta ? a[p * m + i] : a[i * k + p];
        float bv = tb ? b[j * k + p] : b[p * n + j];
        acc = fmaf(av, bv, acc);
    }
    float r = alpha * acc;
    return beta == 0.0f ? r : fmaf(beta, c_old, r);
}

/* Batch invariance: the CPU driver computes every product with a
 * non-transposed A through kernels/cpu/gemm_rows.c, whose elements are this
 * function's fmaf chain bitwise, so a row of C never depends on the rows
 * batched with it (an optimised sgemm's row bits depend on the row's place
 * in its blocking). */

/* Rows per partial product of a long weight gradient (gy^T x) on the CPU
 * (libgpuml/ops/matmul.c). */
#define GPUML_GEMM_K_CHUNK 4096

/* bias row fill: y[i, j] = bias[j] (or 0). */
GPUML_HD static inline float gpuml_k_bias_at(const float *bias, int64_t j) { return bias ? bias[j] : 0.0f; }

#endif
