/* CUDA launcher for kernels/optim.h. */
#include "../kernels.h"
#include "../optim.h"
#include "launch.cuh"

static __global__ void sgd_kernel(int64_t n, float *p, const float *g, float *buf, const float *gscale, float lr,
                                  float momentum, float dampening, float wd, int nesterov, int first)
{
    float s = gpuml_k_grad_scale(gscale);
    GPUML_GRID_STRIDE(i, n) gpuml_k_sgd(p + i, g[i], s, buf ? buf + i : nullptr, lr, momentum, dampening, wd, nesterov, first);
}

static __global__ void adam_kernel(int64_t n, float *p, const float *g, float *m, float *v, const float *gscale,
                                   float lr, float beta1, float beta2, float eps, float wd, int decoupled,
                                   float step_size, float bc2_sqrt)
{
    float s = gpuml_k_grad_scale(gscale);
    GPUML_GRID_STRIDE(i, n)
    gpuml_k_adam(p + i, g[i], s, m + i, v + i, lr, beta1, beta2, eps, wd, decoupled, step_size, bc2_sqrt);
}

/* O(1): the sum of squares is already reduced. */
static __global__ void norm_finish_kernel(const double *sumsq, float max_norm, float *out)
{
    if (blockIdx.x == 0 && threadIdx.x == 0)
        gpuml_k_norm_finish(sumsq, max_norm, out);
}

extern "C" gpuml_status gpuml_cuda_optim_sgd(const gpuml_kctx *k, int64_t n, float *p, const float *g, float *buf,
                                             const float *gscale, float lr, float momentum, float dampening, float wd,
                                             int nesterov, int first)
{
    GPUML_CUDA_RUN(k, "optim_sgd", sgd_kernel, n, n, p, g, buf, gscale, lr, momentum, dampening, wd, nesterov, first);
}

extern "C" gpuml_status gpuml_cuda_optim_adam(const gpuml_kctx *k, int64_t n, float *p, const float *g, float *m,
                                              float *v, const float *gscale, float lr, float beta1, float beta2,
                                              float eps, float wd, int decoupled, float step_size, float bc2_sqrt)
{
    GPUML_CUDA_RUN(k, "optim_adam", adam_kernel, n, n, p, g, m, v, gscale, lr, beta1, beta2, eps, wd, decoupled,
                   step_size, bc2_sqrt);
}

extern "C" gpuml_status gpuml_cuda_grad_norm(const gpuml_kctx *k, int64_t n, const float *g, void *ws,
                                             float max_norm, float *out)
{
    gpuml_k_rjob j = gpuml_k_grad_norm_job(n, g, ws);
    gpuml_status st = gpuml_cuda_reduce(k, j);
    if (st != GPUML_OK)
        return st;
    GPUML_CUDA_ENTER(k, "grad_norm");
    GPUML_CUDA_LAUNCH(norm_finish_kernel, 1, 1, 0, gpuml_cuda_stream(k))(j.out_d, max_norm, out);
    return gpuml_cuda_check(k, "grad_norm");
}
