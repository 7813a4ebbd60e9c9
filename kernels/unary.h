/* kernels/unary.h - element-wise unary functions and their derivatives.
 * Op numbers are gpuml_unary_op (gpuml/ops.h). */
#ifndef GPUML_KERNELS_UNARY_H
#define GPUML_KERNELS_UNARY_H

#include "common.h"
#include "gpuml/ops.h"

#define GPUML_K_SQRT1_2 0.70710678118654752440f
#define GPUML_K_INV_SQRT_2PI 0.39894228040143267794f

GPUML_HD static inline float gpuml_k_sigmoid(float x)
{
    /* Two branches keep exp's argument <= 0: no overflow for large |x|. */
    if (x >= 0.0f) {
        float z = expf(-x);
        return 1.0f / (1.0f + z);
    }
    float z = expf(x);
    return z / (1.0f + z);
}

GPUML_HD static inline float gpuml_k_softplus(float x)
{
    return x > 20.0f ? x : log1pf(expf(x));
}

GPUML_HD static inline float gpuml_k_unary(int op, float x, float alpha)
{
    switch (op) {
    case GPUML_UNARY_NEG: return -x;
    case GPUML_UNARY_ABS: return fabsf(x);
    case GPUML_UNARY_EXP: return expf(x);
    case GPUML_UNARY_LOG: return logf(x);
    case GPUML_UNARY_SQRT: return sqrtf(x);
    case GPUML_UNARY_RSQRT: return 1.0f / sqrtf(x);
    case GPUML_UNARY_RELU: return x > 0.0f ? x : (x == x ? 0.0f : x);
    case GPUML_UNARY_LEAKY_RELU: return x > 0.0f ? x : alpha * x;
    case GPUML_UNARY_ELU: return x > 0.0f ? x : alpha * expm1f(x);
    case GPUML_UNARY_GELU: return 0.5f * x * (1.0f + erff(x * GPUML_K_SQRT1_2));
    case GPUML_UNARY_TANH: return tanhf(x);
    case GPUML_UNARY_SIGMOID: return gpuml_k_sigmoid(x);
    case GPUML_UNARY_SOFTPLUS: return gpuml_k_softplus(x);
    case GPUML_UNARY_NAN_TO_ZERO: return x == x ? x : 0.0f;
    default: return NAN;
    }
}

/* gy * f'(x) */
GPUML_HD static inline float gpuml_k_unary_grad(int op, float x, float alpha, float gy)
{
    switch (op) {
    case GPUML_UNARY_NEG: return -gy;
    case GPUML_UNARY_ABS: return x > 0.0f ? gy : (x < 0.0f ? -gy : (x == x ? 0.0f : x));
    case GPUML_UNARY_EXP: return gy * expf(x);
    case GPUML_UNARY_LOG: return gy / x;
    case GPUML_UNARY_SQRT: return gy * 0.5f / sqrtf(x);
    case GPUML_UNARY_RSQRT: {
        float r = 1.0f / sqrtf(x);
        return -0.5f * gy * r / x;
    }
    case GPUML_UNARY_RELU: return x > 0.0f ? gy : (x == x ? 0.0f : x);
    case GPUML_UNARY_LEAKY_RELU: return x > 0.0f ? gy : alpha * gy;
    case GPUML_UNARY_ELU: return x > 0.0f ? gy : gy * alpha * expf(x);
    case GPUML_UNARY_GELU: {
        float cdf = 0.5f * (1.0f + erff(x * GPUML_K_SQRT1_2));
        float pdf = GPUML_K_INV_SQRT_2PI * expf(-0.5f * x * x);
        return gy * (cdf + x * pdf);
    }
    case GPUML_UNARY_TANH: {
        float t = tanhf(x);
        return gy * (1.0f - t * t);
    }
    case GPUML_UNARY_SIGMOID: {
        float s = gpuml_k_sigmoid(x);
        return gy * s * (1.0f - s);
    }
    case GPUML_UNARY_SOFTPLUS: return x > 20.0f ? gy : gy * gpuml_k_sigmoid(x);
    case GPUML_UNARY_NAN_TO_ZERO: return x == x ? gy : 0.0f;
    default: return NAN;
    }
}

#endif
