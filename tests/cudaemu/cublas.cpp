/* tests/cudaemu/cublas.cpp - the emulated cuBLAS (see include/cublas_v2.h).
 * Argument checks as documented for cublas<t>gemm: m, n, k, batchCount >= 0;
 * lda >= max(1, m) for op(A) = A else max(1, k); ldb >= max(1, k) for
 * op(B) = B else max(1, n); ldc >= max(1, m); else CUBLAS_STATUS_INVALID_VALUE
 * and nothing runs. alpha and beta are read at the call (host pointer mode).
 * The product runs on the handle's stream in double and is rounded once;
 * beta == 0 does not read C. Matrices outside device memory fault when the
 * work runs (sticky cudaErrorIllegalAddress). */
#include <cstdio>
#include <cstring>
#include <vector>

#include "cublas_v2.h"
#include "internal.hpp"

extern "C" void gpuml_emu_device_fault(const char *what);

struct cublasContext {
    int device;
    cudaStream_t stream = nullptr;
    cublasMath_t math = CUBLAS_DEFAULT_MATH;
    cublasAtomicsMode_t atomics = CUBLAS_ATOMICS_NOT_ALLOWED;
};

EMU_API cublasStatus_t cublasCreate_v2(cublasHandle_t *h)
{
    if (!h)
        return CUBLAS_STATUS_INVALID_VALUE;
    if (emu::ndevices() == 0)
        return CUBLAS_STATUS_NOT_INITIALIZED;
    *h = new cublasContext{emu::current_device()};
    return CUBLAS_STATUS_SUCCESS;
}

EMU_API cublasStatus_t cublasDestroy_v2(cublasHandle_t h)
{
    if (!h)
        return CUBLAS_STATUS_NOT_INITIALIZED;
    delete h;
    return CUBLAS_STATUS_SUCCESS;
}

EMU_API cublasStatus_t cublasSetStream_v2(cublasHandle_t h, cudaStream_t s)
{
    if (!h)
        return CUBLAS_STATUS_NOT_INITIALIZED;
    h->stream = s;
    return CUBLAS_STATUS_SUCCESS;
}

EMU_API cublasStatus_t cublasGetStream_v2(cublasHandle_t h, cudaStream_t *s)
{
    if (!h)
        return CUBLAS_STATUS_NOT_INITIALIZED;
    *s = h->stream;
    return CUBLAS_STATUS_SUCCESS;
}

EMU_API cublasStatus_t cublasSetMathMode(cublasHandle_t h, cublasMath_t mode)
{
    if (!h)
        return CUBLAS_STATUS_NOT_INITIALIZED;
    if ((int)mode < 0 || (int)mode > 3)
        return CUBLAS_STATUS_INVALID_VALUE;
    h->math = mode;
    return CUBLAS_STATUS_SUCCESS;
}

EMU_API cublasStatus_t cublasSetAtomicsMode(cublasHandle_t h, cublasAtomicsMode_t mode)
{
    if (!h)
        return CUBLAS_STATUS_NOT_INITIALIZED;
    h->atomics = mode;
    return CUBLAS_STATUS_SUCCESS;
}

EMU_API const char *cublasGetStatusName(cublasStatus_t s)
{
    switch (s) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_MAPPING_ERROR: return "CUBLAS_STATUS_MAPPING_ERROR";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    case CUBLAS_STATUS_LICENSE_ERROR: return "CUBLAS_STATUS_LICENSE_ERROR";
    }
    return "CUBLAS_STATUS_UNKNOWN";
}

EMU_API const char *cublasGetStatusString(cublasStatus_t s)
{
    switch (s) {
    case CUBLAS_STATUS_SUCCESS: return "success";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "the library was not initialized";
    case CUBLAS_STATUS_INVALID_VALUE: return "an invalid numeric value was used as an argument";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "the GPU program failed to execute";
    default: return cublasGetStatusName(s);
    }
}

/* Elements a column-major rows x cols matrix with leading dimension ld spans. */
static size_t span(int rows, int cols, int ld)
{
    return rows == 0 || cols == 0 ? 0 : (size_t)(cols - 1) * (size_t)ld + (size_t)rows;
}

static cublasStatus_t gemm(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                           const float *alpha, const float *A, int lda, long long sa, const float *B, int ldb,
                           long long sb, const float *beta, float *C, int ldc, long long sc, int batch)
{
    if (!h)
        return CUBLAS_STATUS_NOT_INITIALIZED;
    if ((ta != CUBLAS_OP_N && ta != CUBLAS_OP_T && ta != CUBLAS_OP_C) ||
        (tb != CUBLAS_OP_N && tb != CUBLAS_OP_T && tb != CUBLAS_OP_C))
        return CUBLAS_STATUS_INVALID_VALUE;
    int arows = ta == CUBLAS_OP_N ? m : k, acols = ta == CUBLAS_OP_N ? k : m;
    int brows = tb == CUBLAS_OP_N ? k : n, bcols = tb == CUBLAS_OP_N ? n : k;
    if (m < 0 || n < 0 || k < 0 || batch < 0 || lda < (arows > 1 ? arows : 1) || ldb < (brows > 1 ? brows : 1) ||
        ldc < (m > 1 ? m : 1) || !alpha || !beta)
        return CUBLAS_STATUS_INVALID_VALUE;
    if (m == 0 || n == 0 || batch == 0)
        return CUBLAS_STATUS_SUCCESS;
    float al = *alpha, be = *beta;
    cudaStream_t stream = h->stream;
    int dev = h->device;
    cudaError_t e = gpuml_emu_enqueue(stream, [=] {
        size_t na = span(arows, acols, lda), nb = span(brows, bcols, ldb), nc = span(m, n, ldc);
        for (int b = 0; b < batch; b++) {
            const float *Ab = A + (long long)b * sa, *Bb = B + (long long)b * sb;
            float *Cb = C + (long long)b * sc;
            if ((k > 0 && al != 0.0f && (!emu::in_alloc(Ab, na * 4, dev, false) || !emu::in_alloc(Bb, nb * 4, dev, false))) ||
                !emu::in_alloc(Cb, nc * 4, dev, false))
                return gpuml_emu_device_fault("cublasSgemm: a matrix is not (wholly) device memory");
        }
        /* op(A) rows and op(B) columns, each contiguous in the inner index. */
        std::vector<double> a((size_t)m * k), bt((size_t)n * k);
        for (int b = 0; b < batch; b++) {
            const float *Ab = A + (long long)b * sa, *Bb = B + (long long)b * sb;
            float *Cb = C + (long long)b * sc;
            for (int i = 0; i < m; i++)
                for (int l = 0; l < k; l++)
                    a[(size_t)i * k + l] = ta == CUBLAS_OP_N ? Ab[(size_t)l * lda + i] : Ab[(size_t)i * lda + l];
            for (int j = 0; j < n; j++)
                for (int l = 0; l < k; l++)
                    bt[(size_t)j * k + l] = tb == CUBLAS_OP_N ? Bb[(size_t)j * ldb + l] : Bb[(size_t)l * ldb + j];
            for (int j = 0; j < n; j++)
                for (int i = 0; i < m; i++) {
                    double acc = 0.0;
                    /* data() + offset: with k = 0 the vectors are empty and a[0] would be UB */
                    const double *ai = a.data() + (size_t)i * k, *bj = bt.data() + (size_t)j * k;
                    for (int l = 0; l < k; l++)
                        acc += ai[l] * bj[l];
                    float *c = &Cb[(size_t)j * ldc + i];
                    *c = (float)(be == 0.0f ? (double)al * acc : (double)al * acc + (double)be * (double)*c);
                }
        }
    });
    return e == cudaSuccess ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_EXECUTION_FAILED;
}

EMU_API cublasStatus_t cublasSgemm_v2(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n,
                                      int k, const float *alpha, const float *A, int lda, const float *B, int ldb,
                                      const float *beta, float *C, int ldc)
{
    return gemm(h, ta, tb, m, n, k, alpha, A, lda, 0, B, ldb, 0, beta, C, ldc, 0, 1);
}

EMU_API cublasStatus_t cublasSgemmStridedBatched(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m,
                                                 int n, int k, const float *alpha, const float *A, int lda,
                                                 long long sa, const float *B, int ldb, long long sb,
                                                 const float *beta, float *C, int ldc, long long sc, int batch)
{
    return gemm(h, ta, tb, m, n, k, alpha, A, lda, sa, B, ldb, sb, beta, C, ldc, sc, batch);
}
