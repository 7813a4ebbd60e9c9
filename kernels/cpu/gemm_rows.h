/* kernels/cpu/gemm_rows.h - the CPU matrix product for a non-transposed A,
 * computed so that a row of C depends on its own row of A only.
 *
 * C = alpha A op(B) + beta C, row-major: A [m, k] (lda k), B [k, n] or with
 * tb [n, k], C [m, n]; batch entries at the given strides (stride_b 0 for a
 * shared B). Every element is the k-ordered fmaf chain of
 * gpuml_k_matmul_elem (kernels/matmul.h), bitwise: the same bits whatever m,
 * the row's place in the batch and the thread count.
 *
 * Why not the BLAS: an optimised sgemm computes a row with different
 * instruction sequences depending on where the row falls in its register and
 * cache blocking (OpenBLAS's Haswell/Zen kernels: rows 6-11 of every 12
 * differ from rows 0-5, a row's bits also change with M), so the row of an
 * event run alone differs from the same row inside a batch. Here every
 * element goes through one micro-kernel with one accumulator per element and
 * tails padded, so no element is computed differently from another.
 *
 * Allocates nothing (stack blocks); cannot fail.
 */
#ifndef GPUML_KERNELS_CPU_GEMM_ROWS_H
#define GPUML_KERNELS_CPU_GEMM_ROWS_H

#include <stdint.h>

/* One product, cut into tasks (a block of rows times a panel of columns of
 * one batch entry); tasks write disjoint parts of C, so any executor may
 * run any subset of them on any thread with the same bits. */
typedef struct gpuml_gemm_rows {
    int tb;
    int64_t m, n, k, stride_a, stride_b, stride_c, batch;
    float alpha, beta;
    const float *a, *b;
    float *c;
    int64_t tm, tn; /* row blocks and column panels per batch entry */
    void (*tile)(const float *, int64_t, int, const float *, int64_t, float *, int);
} gpuml_gemm_rows;

/* Fills p for C = alpha A op(B) + beta C and returns the number of tasks
 * (0 when there is nothing to do). */
int64_t gpuml_cpu_gemm_rows_plan(gpuml_gemm_rows *p, int tb, int64_t m, int64_t n, int64_t k, float alpha,
                                 const float *a, int64_t stride_a, const float *b, int64_t stride_b, float beta,
                                 float *c, int64_t stride_c, int64_t batch);

/* Runs the tasks [begin, end) of a plan on the calling thread. */
void gpuml_cpu_gemm_rows_run(const gpuml_gemm_rows *p, int64_t begin, int64_t end);

#endif
