/* CUDA matrix products: cuBLAS for GEMM (row-major handled by computing
 * C^T = op(B)^T op(A)^T in cuBLAS's column-major terms), plus the bias fill
 * from kernels/matmul.h (column sums are reductions: reduce.cu). */
#include <cublas_v2.h>

#include "../kernels.h"
#include "../matmul.h"
#include "launch.cuh"

static __global__ void bias_rows_kernel(int64_t rows, int64_t cols, const float *bias, float *y)
{
    GPUML_GRID_STRIDE(e, rows * cols) y[e] = gpuml_k_bias_at(bias, e % cols);
}

extern "C" gpuml_status gpuml_cuda_gemm(const gpuml_kctx *k, int ta, int tb, int64_t m, int64_t n, int64_t kk,
                                        float alpha, const float *a, int64_t stride_a, const float *b,
                                        int64_t stride_b, float beta, float *c, int64_t stride_c, int64_t batch)
{
    if (m == 0 || n == 0 || batch == 0)
        return GPUML_OK;
    if (m > INT32_MAX || n > INT32_MAX || kk > INT32_MAX || batch > INT32_MAX)
        return gpuml_k_fail(k, GPUML_ERR_UNSUPPORTED, "gemm", "a dimension (m, n, k or batch) above 2^31-1 for cuBLAS", NULL,
                            NULL, 0, 0, 0);
    GPUML_CUDA_ENTER(k, "gemm");
    cublasHandle_t h = (cublasHandle_t)k->cublas;
    cublasOperation_t opa = ta ? CUBLAS_OP_T : CUBLAS_OP_N, opb = tb ? CUBLAS_OP_T : CUBLAS_OP_N;
    /* cuBLAS wants ld >= max(1, rows of the stored matrix) even when the
     * inner dimension is 0 (it returned INVALID_VALUE in the emulated build). */
    int k1 = kk > 0 ? (int)kk : 1;
    int lda = ta ? (int)m : k1, ldb = tb ? k1 : (int)n;
    cublasStatus_t s;
    if (batch == 1)
        s = cublasSgemm(h, opb, opa, (int)n, (int)m, (int)kk, &alpha, b, ldb, a, lda, &beta, c, (int)n);
    else
        s = cublasSgemmStridedBatched(h, opb, opa, (int)n, (int)m, (int)kk, &alpha, b, ldb, stride_b, a, lda, stride_a,
                                      &beta, c, (int)n, stride_c, (int)batch);
    if (s != CUBLAS_STATUS_SUCCESS)
        return gpuml_k_fail(k, GPUML_ERR_CUBLAS, "gemm", batch == 1 ? "cublasSgemm failed" : "cublasSgemmStridedBatched failed",
                            cublasGetStatusString(s), cublasGetStatusName(s), 0, 0, 0);
    return GPUML_OK;
}

extern "C" gpuml_status gpuml_cuda_bias_rows(const gpuml_kctx *k, int64_t rows, int64_t cols, const float *bias,
                                             float *y)
{
    GPUML_CUDA_RUN(k, "bias_rows", bias_rows_kernel, rows * cols, rows, cols, bias, y);
}
