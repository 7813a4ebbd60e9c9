/* CUDA launcher for kernels/binary.h: one thread per output element. */
#include "../binary.h"
#include "../kernels.h"
#include "launch.cuh"


static __global__ void binary_kernel(int op, gpuml_k_bcast bc, int64_t n, const float *a, const float *b, float *out)
{
    GPUML_GRID_STRIDE(i, n)
    {
        int64_t oa, ob;
        gpuml_k_bcast_offsets(&bc, i, &oa, &ob);
        out[i] = gpuml_k_binary(op, a[oa], b[ob]);
    }
}

static __global__ void binary_grad_kernel(int op, gpuml_k_bcast bc, int64_t n, const float *a, const float *b,
                                          const float *g, float *ga_full, float *gb_full)
{
    GPUML_GRID_STRIDE(i, n)
    {
        int64_t oa, ob;
        float ga, gb;
        gpuml_k_bcast_offsets(&bc, i, &oa, &ob);
        gpuml_k_binary_grad(op, a[oa], b[ob], g[i], &ga, &gb);
        if (ga_full)
            ga_full[i] = ga;
        if (gb_full)
            gb_full[i] = gb;
    }
}

static __global__ void axpby_kernel(int64_t n, float alpha, const float *x, float beta, float *y)
{
    GPUML_GRID_STRIDE(i, n) y[i] = gpuml_k_axpby(alpha, x[i], beta, y[i]);
}

static int64_t host_numel(const gpuml_k_bcast &bc)
{
    int64_t n = 1;
    for (int d = 0; d < bc.ndim; d++)
        n *= bc.shape[d];
    return n;
}

extern "C" gpuml_status gpuml_cuda_binary(const gpuml_kctx *k, int op, gpuml_k_bcast bc, const float *a,
                                          const float *b, float *out)
{
    int64_t n = host_numel(bc);
    GPUML_CUDA_RUN(k, "binary", binary_kernel, n, op, bc, n, a, b, out);
}

extern "C" gpuml_status gpuml_cuda_binary_grad(const gpuml_kctx *k, int op, gpuml_k_bcast bc, const float *a,
                                               const float *b, const float *g, float *ga_full, float *gb_full)
{
    int64_t n = host_numel(bc);
    GPUML_CUDA_RUN(k, "binary_grad", binary_grad_kernel, n, op, bc, n, a, b, g, ga_full, gb_full);
}

extern "C" gpuml_status gpuml_cuda_axpby(const gpuml_kctx *k, int64_t n, float alpha, const float *x, float beta,
                                         float *y)
{
    GPUML_CUDA_RUN(k, "axpby", axpby_kernel, n, n, alpha, x, beta, y);
}

static __global__ void affine_kernel(int64_t n, float a, const float *x, float b, float *y)
{
    GPUML_GRID_STRIDE(i, n) y[i] = gpuml_k_affine(a, x[i], b);
}

extern "C" gpuml_status gpuml_cuda_affine(const gpuml_kctx *k, int64_t n, float a, const float *x, float b, float *y)
{
    GPUML_CUDA_RUN(k, "affine", affine_kernel, n, n, a, x, b, y);
}
