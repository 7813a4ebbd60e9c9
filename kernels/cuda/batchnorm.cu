/* CUDA launchers for kernels/batchnorm.h (the deterministic default), and
 * the opt-in cuDNN path: cudnnBatchNormalization* in spatial mode over an
 * NCHW view [R, C, 1, 1] of the row-major [R, C] data. */
#include "../batchnorm.h"
#include "../kernels.h"
#include "gpuml_config.h"
#include "launch.cuh"

#if GPUML_HAVE_CUDNN
#include "../../libgpuml/core/cudnn_api.h"
#endif

static __global__ void partial_kernel(int kind, const float *x, const float *gy, const uint8_t *mask, int64_t R,
                                      int64_t C, const double *mean_d, const float *mean_f, const float *invstd_f,
                                      const float *gamma, const float *beta, int relu, int64_t gk, double *p0,
                                      double *p1, double *p2)
{
    GPUML_GRID_STRIDE(e, gpuml_k_bn_chunks(R) * C)
    gpuml_k_bn_partial(kind, x, gy, mask, R, C, mean_d, mean_f, invstd_f, gamma, beta, relu, gk, e / C, e % C, p0,
                       p1, p2);
}

static __global__ void mean_kernel(const double *p0, const double *p2, int64_t nch, int64_t C, double *mean_d,
                                   double *cnt_d)
{
    GPUML_GRID_STRIDE(c, C) gpuml_k_bn_mean(p0, p2, nch, C, c, mean_d, cnt_d);
}

static __global__ void var_kernel(const double *p0, int64_t nch, int64_t C, const double *mean_d, const double *cnt_d,
                                  float eps, float momentum, float *rm, float *rv, float *mean_f, float *invstd_f)
{
    GPUML_GRID_STRIDE(c, C) gpuml_k_bn_var(p0, nch, C, c, mean_d, cnt_d, eps, momentum, rm, rv, mean_f, invstd_f);
}

static __global__ void running_kernel(const float *rm, const float *rv, float eps, int64_t C, float *mean_f,
                                      float *invstd_f)
{
    GPUML_GRID_STRIDE(c, C) gpuml_k_bn_running(rm, rv, eps, c, mean_f, invstd_f);
}

static __global__ void normalize_kernel(const float *x, const uint8_t *mask, int64_t R, int64_t C, const float *mean_f,
                                        const float *invstd_f, const float *gamma, const float *beta, int relu,
                                        float *y)
{
    GPUML_GRID_STRIDE(e, R * C) gpuml_k_bn_normalize(x, mask, C, mean_f, invstd_f, gamma, beta, relu, e / C, e % C, y);
}

static __global__ void grad_stats_kernel(const double *p0, const double *p1, const double *p2, int64_t nch, int64_t C,
                                         int training, int accumulate, float *ggamma, float *gbeta, float *coef)
{
    GPUML_GRID_STRIDE(c, C) gpuml_k_bn_grad_stats(p0, p1, p2, nch, C, c, training, accumulate, ggamma, gbeta, coef);
}

static __global__ void grad_x_kernel(const float *x, const float *gy, const uint8_t *mask, int64_t R, int64_t C,
                                     int training, const float *mean_f, const float *invstd_f, const float *gamma,
                                     const float *beta, int relu, int64_t gk, const float *coef, float *gx)
{
    GPUML_GRID_STRIDE(e, R * C)
    gpuml_k_bn_grad_x(x, gy, mask, C, training, mean_f, invstd_f, gamma, beta, relu, e / C / gk, coef, e / C, e % C,
                      gx);
}

static __global__ void aggregate_kernel(const float *x, const uint8_t *mask, int64_t n, int64_t ke, int64_t C,
                                        const float *mean_f, const float *invstd_f, const float *gamma,
                                        const float *beta, int relu, int op, float *out)
{
    GPUML_GRID_STRIDE(e, n * C)
    gpuml_k_bn_aggregate(x, mask, ke, C, mean_f, invstd_f, gamma, beta, relu, op, e / C, e % C, out);
}

static __global__ void aggregate_grad_kernel(const float *gout, const uint8_t *mask, int64_t n, int64_t ke, int64_t C,
                                             int op, float *gnode)
{
    GPUML_GRID_STRIDE(e, n * C) gpuml_k_bn_aggregate_grad(gout, mask, ke, C, op, e / C, e % C, gnode);
}

extern "C" gpuml_status gpuml_cuda_bn_partial(const gpuml_kctx *k, int kind, const float *x, const float *gy,
                                              const uint8_t *mask, int64_t R, int64_t C, const double *mean_d,
                                              const float *mean_f, const float *invstd_f, const float *gamma,
                                              const float *beta, int relu, int64_t gk, double *p0, double *p1,
                                              double *p2)
{
    GPUML_CUDA_RUN(k, "batch_norm", partial_kernel, gpuml_k_bn_chunks(R) * C, kind, x, gy, mask, R, C, mean_d, mean_f,
                   invstd_f, gamma, beta, relu, gk, p0, p1, p2);
}

extern "C" gpuml_status gpuml_cuda_bn_mean(const gpuml_kctx *k, const double *p0, const double *p2, int64_t nch,
                                           int64_t C, double *mean_d, double *cnt_d)
{
    GPUML_CUDA_RUN(k, "batch_norm", mean_kernel, C, p0, p2, nch, C, mean_d, cnt_d);
}

extern "C" gpuml_status gpuml_cuda_bn_var(const gpuml_kctx *k, const double *p0, int64_t nch, int64_t C,
                                          const double *mean_d, const double *cnt_d, float eps, float momentum,
                                          float *rm, float *rv, float *mean_f, float *invstd_f)
{
    GPUML_CUDA_RUN(k, "batch_norm", var_kernel, C, p0, nch, C, mean_d, cnt_d, eps, momentum, rm, rv, mean_f, invstd_f);
}

extern "C" gpuml_status gpuml_cuda_bn_running(const gpuml_kctx *k, const float *rm, const float *rv, float eps,
                                              int64_t C, float *mean_f, float *invstd_f)
{
    GPUML_CUDA_RUN(k, "batch_norm", running_kernel, C, rm, rv, eps, C, mean_f, invstd_f);
}

extern "C" gpuml_status gpuml_cuda_bn_normalize(const gpuml_kctx *k, const float *x, const uint8_t *mask, int64_t R,
                                                int64_t C, const float *mean_f, const float *invstd_f,
                                                const float *gamma, const float *beta, int relu, float *y)
{
    GPUML_CUDA_RUN(k, "batch_norm", normalize_kernel, R * C, x, mask, R, C, mean_f, invstd_f, gamma, beta, relu, y);
}

extern "C" gpuml_status gpuml_cuda_bn_grad_stats(const gpuml_kctx *k, const double *p0, const double *p1,
                                                 const double *p2, int64_t nch, int64_t C, int training,
                                                 int accumulate, float *ggamma, float *gbeta, float *coef)
{
    GPUML_CUDA_RUN(k, "batch_norm_backward", grad_stats_kernel, C, p0, p1, p2, nch, C, training, accumulate, ggamma,
                   gbeta, coef);
}

extern "C" gpuml_status gpuml_cuda_bn_grad_x(const gpuml_kctx *k, const float *x, const float *gy, const uint8_t *mask,
                                             int64_t R, int64_t C, int training, const float *mean_f,
                                             const float *invstd_f, const float *gamma, const float *beta, int relu,
                                             int64_t gk, const float *coef, float *gx)
{
    GPUML_CUDA_RUN(k, "batch_norm_backward", grad_x_kernel, R * C, x, gy, mask, R, C, training, mean_f, invstd_f, gamma,
                   beta, relu, gk, coef, gx);
}

extern "C" gpuml_status gpuml_cuda_bn_aggregate(const gpuml_kctx *k, const float *x, const uint8_t *mask, int64_t n,
                                                int64_t ke, int64_t C, const float *mean_f, const float *invstd_f,
                                                const float *gamma, const float *beta, int relu, int op, float *out)
{
    GPUML_CUDA_RUN(k, "batch_norm_aggregate", aggregate_kernel, n * C, x, mask, n, ke, C, mean_f, invstd_f, gamma, beta,
                   relu, op, out);
}

extern "C" gpuml_status gpuml_cuda_bn_aggregate_grad(const gpuml_kctx *k, const float *gout, const uint8_t *mask,
                                                     int64_t n, int64_t ke, int64_t C, int op, float *gnode)
{
    GPUML_CUDA_RUN(k, "batch_norm_aggregate backward", aggregate_grad_kernel, n * C, gout, mask, n, ke, C, op, gnode);
}

#if GPUML_HAVE_CUDNN
/* Descriptors for x/y [R, C, 1, 1] and the per-channel [1, C, 1, 1]. */
struct bn_descs {
    const gpuml_cudnn *dn;
    cudnnTensorDescriptor_t x = nullptr, c = nullptr;
    cudnnStatus_t st = CUDNN_STATUS_SUCCESS;
    bn_descs(const gpuml_cudnn *d, int64_t R, int64_t C) : dn(d)
    {
        st = dn->CreateTensorDescriptor(&x);
        if (st == CUDNN_STATUS_SUCCESS)
            st = dn->CreateTensorDescriptor(&c);
        if (st == CUDNN_STATUS_SUCCESS)
            st = dn->SetTensor4dDescriptor(x, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, (int)R, (int)C, 1, 1);
        if (st == CUDNN_STATUS_SUCCESS)
            st = dn->SetTensor4dDescriptor(c, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 1, (int)C, 1, 1);
    }
    ~bn_descs()
    {
        if (x)
            dn->DestroyTensorDescriptor(x);
        if (c)
            dn->DestroyTensorDescriptor(c);
    }
};

static gpuml_status cudnn_status(const gpuml_kctx *k, const gpuml_cudnn *dn, cudnnStatus_t s, const char *fn,
                                 const char *what)
{
    if (s == CUDNN_STATUS_SUCCESS)
        return GPUML_OK;
    return gpuml_k_fail(k, GPUML_ERR_CUDNN, fn, what, dn->GetErrorString(s), NULL, 0, 0, 0);
}

extern "C" gpuml_status gpuml_cuda_bn_cudnn_fwd(const gpuml_kctx *k, void *cudnn, int training, int64_t R, int64_t C,
                                                const float *x, float *y, const float *gamma, const float *beta,
                                                float momentum, float eps, float *rm, float *rv, float *save_mean,
                                                float *save_invstd)
{
    static const char fn[] = "gpuml_batch_norm";
    GPUML_CUDA_ENTER(k, fn);
    const gpuml_cudnn *dn = (const gpuml_cudnn *)cudnn;
    bn_descs d(dn, R, C);
    if (d.st != CUDNN_STATUS_SUCCESS)
        return cudnn_status(k, dn, d.st, fn, "cudnnSetTensor4dDescriptor failed");
    const float one = 1.0f, zero = 0.0f;
    cudnnHandle_t h = dn->handle;
    cudnnStatus_t s;
    if (training)
        s = dn->BatchNormalizationForwardTraining(h, CUDNN_BATCHNORM_SPATIAL, &one, &zero, d.x, x, d.x, y, d.c, gamma,
                                                   beta, (double)momentum, rm, rv, (double)eps, save_mean, save_invstd);
    else
        s = dn->BatchNormalizationForwardInference(h, CUDNN_BATCHNORM_SPATIAL, &one, &zero, d.x, x, d.x, y, d.c, gamma,
                                                    beta, rm, rv, (double)eps);
    return cudnn_status(k, dn, s, fn, training ? "cudnnBatchNormalizationForwardTraining failed"
                                               : "cudnnBatchNormalizationForwardInference failed");
}

extern "C" gpuml_status gpuml_cuda_bn_cudnn_bwd(const gpuml_kctx *k, void *cudnn, int64_t R, int64_t C, const float *x,
                                                const float *gy, float *gx, const float *gamma, float *ggamma,
                                                float *gbeta, int accumulate, float eps, const float *save_mean,
                                                const float *save_invstd)
{
    static const char fn[] = "gpuml_batch_norm_backward";
    GPUML_CUDA_ENTER(k, fn);
    const gpuml_cudnn *dn = (const gpuml_cudnn *)cudnn;
    bn_descs d(dn, R, C);
    if (d.st != CUDNN_STATUS_SUCCESS)
        return cudnn_status(k, dn, d.st, fn, "cudnnSetTensor4dDescriptor failed");
    const float one = 1.0f, zero = 0.0f, pbeta = accumulate ? 1.0f : 0.0f;
    cudnnStatus_t s = dn->BatchNormalizationBackward(
        dn->handle, CUDNN_BATCHNORM_SPATIAL, &one, &zero, &one, &pbeta, d.x, x, d.x, gy, d.x, gx, d.c, gamma,
        ggamma, gbeta, (double)eps, save_mean, save_invstd);
    return cudnn_status(k, dn, s, fn, "cudnnBatchNormalizationBackward failed");
}
#endif
