/* CUDA launchers for kernels/knn.h (stage 1: not yet implemented). */
#include "../kernels.h"
#include "../knn.h"
#include "launch.cuh"

extern "C" size_t gpuml_cuda_knn_workspace(int64_t n, int d, int64_t nev, int kk, int nthreads)
{
    (void)n, (void)d, (void)nev, (void)kk, (void)nthreads;
    return 1;
}

extern "C" gpuml_status gpuml_cuda_knn(const gpuml_kctx *k, const float *x, int64_t n, int d, const int64_t *row_splits,
                                       int64_t nev, int kk, float r2, int algo, int32_t *idx, float *dist2, void *ws)
{
    (void)k, (void)x, (void)n, (void)d, (void)row_splits, (void)nev, (void)kk, (void)r2, (void)algo, (void)idx,
        (void)dist2, (void)ws;
    return gpuml_fail(NULL, GPUML_ERR_UNSUPPORTED, "gpuml_knn", "the CUDA kNN is not implemented yet");
}

extern "C" gpuml_status gpuml_cuda_knn_grad(const gpuml_kctx *k, const float *x, int64_t n, int d, const int32_t *idx,
                                            int kk, const float *g, const int64_t *rowptr, const int64_t *col,
                                            float *gx)
{
    (void)k, (void)x, (void)n, (void)d, (void)idx, (void)kk, (void)g, (void)rowptr, (void)col, (void)gx;
    return gpuml_fail(NULL, GPUML_ERR_UNSUPPORTED, "gpuml_knn_backward", "the CUDA kNN is not implemented yet");
}
