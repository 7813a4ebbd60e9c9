/* kernels/optim.h - one element of the fused optimizer updates (PyTorch's
 * formulas), and the blocked sum of squares behind global-norm clipping.
 * g is multiplied by *gscale (the clip factor, computed on the device). */
#ifndef GPUML_KERNELS_OPTIM_H
#define GPUML_KERNELS_OPTIM_H

#include "common.h"

/* SGD with momentum (buf), dampening, Nesterov and L2 weight decay. */
GPUML_HD static inline void gpuml_k_sgd(float *p, float g, float *buf, float lr, float momentum, float dampening,
                                        float wd, int nesterov, int first)
{
    float d = wd != 0.0f ? g + wd * *p : g;
    if (momentum != 0.0f) {
        float b = first ? d : momentum * *buf + (1.0f - dampening) * d;
        *buf = b;
        d = nesterov ? d + momentum * b : b;
    }
    *p = *p - lr * d;
}

/* Adam / AdamW (decoupled != 0). step_size = lr / (1 - beta1^t),
 * bc2_sqrt = sqrt(1 - beta2^t). */
GPUML_HD static inline void gpuml_k_adam(float *p, float g, float *m, float *v, float lr, float beta1, float beta2,
                                         float eps, float wd, int decoupled, float step_size, float bc2_sqrt)
{
    if (wd != 0.0f) {
        if (decoupled)
            *p = *p * (1.0f - lr * wd);
        else
            g = g + wd * *p;
    }
    float mm = *m + (1.0f - beta1) * (g - *m);
    float vv = beta2 * *v + (1.0f - beta2) * g * g;
    *m = mm;
    *v = vv;
    float denom = sqrtf(vv) / bc2_sqrt + eps;
    *p = *p - step_size * (mm / denom);
}

/* Sum of squares of block b (fixed block size: the result does not depend on
 * how blocks are shared among threads). */
#define GPUML_K_NORM_BLOCK 16384
GPUML_HD static inline double gpuml_k_sumsq_block(const float *GPUML_RESTRICT g, int64_t n, int64_t b)
{
    int64_t s = b * GPUML_K_NORM_BLOCK, e = gpuml_k_min64(s + GPUML_K_NORM_BLOCK, n);
    double acc = 0.0;
    for (int64_t i = s; i < e; i++)
        acc += (double)g[i] * (double)g[i];
    return acc;
}

/* From the partial sums: out[0] = norm, out[1] = clip factor. */
GPUML_HD static inline void gpuml_k_norm_finish(const double *partial, int64_t nblocks, float max_norm, float *out)
{
    double acc = 0.0;
    for (int64_t b = 0; b < nblocks; b++)
        acc += partial[b];
    float norm = (float)sqrt(acc);
    float coef = max_norm > 0.0f ? max_norm / (norm + 1e-6f) : 1.0f;
    out[0] = norm;
    out[1] = coef < 1.0f ? coef : 1.0f;
}

#endif
