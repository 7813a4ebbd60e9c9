/* kernels/optim.h - one element of the fused optimizer updates (PyTorch's
 * formulas), and the blocked sum of squares behind global-norm clipping.
 * g is multiplied by *gscale (the clip factor, computed on the device). */
#ifndef GPUML_KERNELS_OPTIM_H
#define GPUML_KERNELS_OPTIM_H

#include <string.h>

#include "common.h"
#include "reduce.h"

/* The gradient scale: *gscale (the clip factor) or 1 without clipping. */
GPUML_HD static inline float gpuml_k_grad_scale(const float *gscale) { return gscale ? *gscale : 1.0f; }

/* SGD with momentum (buf), dampening, Nesterov and L2 weight decay, for the
 * gradient g0 scaled by s. */
GPUML_HD static inline void gpuml_k_sgd(float *p, float g0, float s, float *buf, float lr, float momentum,
                                        float dampening, float wd, int nesterov, int first)
{
    float g = g0 * s;
    float d = wd != 0.0f ? g + wd * *p : g;
    if (momentum != 0.0f) {
        float b = first ? d : momentum * *buf + (1.0f - dampening) * d;
        *buf = b;
        d = nesterov ? d + momentum * b : b;
    }
    *p = *p - lr * d;
}

/* Adam / AdamW (decoupled != 0) for the gradient g0 scaled by s.
 * step_size = lr / (1 - beta1^t), bc2_sqrt = sqrt(1 - beta2^t). */
GPUML_HD static inline void gpuml_k_adam(float *p, float g0, float s, float *m, float *v, float lr, float beta1,
                                         float beta2, float eps, float wd, int decoupled, float step_size,
                                         float bc2_sqrt)
{
    float g = g0 * s;
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

/* Global-norm clipping: the sum of squares over the whole slab is one
 * fixed-order reduction (kernels/reduce.h, GPUML_K_RSUMSQ), so its bits do
 * not depend on threads or backend. ws holds its f64 result, then the
 * reduction's partials. */
static inline gpuml_k_rview gpuml_k_grad_norm_view(int64_t n)
{
    gpuml_k_rview v = {1, n, 1, 0, 1};
    return v;
}

static inline size_t gpuml_k_grad_norm_ws_bytes(int64_t n) { return 256 + gpuml_k_reduce_ws_bytes(gpuml_k_grad_norm_view(n)); }

static inline gpuml_k_rjob gpuml_k_grad_norm_job(int64_t n, const float *g, void *ws)
{
    gpuml_k_rjob j;
    memset(&j, 0, sizeof j);
    j.op = GPUML_K_RSUMSQ;
    j.v = gpuml_k_grad_norm_view(n);
    j.xf = g;
    j.out_d = (double *)ws;
    j.ws = gpuml_k_reduce_ws_bytes(j.v) ? (char *)ws + 256 : NULL;
    return j;
}

/* From the sum of squares: out[0] = norm, out[1] = clip factor. */
GPUML_HD static inline void gpuml_k_norm_finish(const double *sumsq, float max_norm, float *out)
{
    float norm = (float)sqrt(*sumsq);
    float coef = max_norm > 0.0f ? max_norm / (norm + 1e-6f) : 1.0f;
    out[0] = norm;
    out[1] = coef < 1.0f ? coef : 1.0f;
}

#endif
