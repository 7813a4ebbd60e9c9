/* kernels/loss.h - per-element / per-row loss terms whose fused forms are
 * needed for numerical stability: binary cross-entropy on logits, and
 * softmax cross-entropy on logits. The means are taken by the op layer. */
#ifndef GPUML_KERNELS_LOSS_H
#define GPUML_KERNELS_LOSS_H

#include "common.h"

/* max(x, 0) - x y + log(1 + exp(-|x|)), weighted on positives by pw:
 * PyTorch's BCEWithLogitsLoss: (1 - y) x + (1 + (pw - 1) y) softplus(-x). */
GPUML_HD static inline float gpuml_k_bce_logits(float x, float y, float pw)
{
    float sp = fmaxf(-x, 0.0f) + log1pf(expf(-fabsf(x))); /* softplus(-x), stable */
    return (1.0f - y) * x + (1.0f + (pw - 1.0f) * y) * sp;
}

/* d/dx of the above: sigmoid(x) (1 + (pw - 1) y) - pw y ... in the form
 * (1 - y) - (1 + (pw - 1) y) sigmoid(-x). */
GPUML_HD static inline float gpuml_k_bce_logits_grad(float x, float y, float pw)
{
    float s_neg; /* sigmoid(-x), stable */
    if (x >= 0.0f) {
        float z = expf(-x);
        s_neg = z / (1.0f + z);
    } else {
        s_neg = 1.0f / (1.0f + expf(x));
    }
    return (1.0f - y) - (1.0f + (pw - 1.0f) * y) * s_neg;
}

/* Row r of cross-entropy: nll = logsumexp(x) - x[label]; writes the row's
 * log-sum-exp for the backward. A label outside [0, c) gives nll 0. */
GPUML_HD static inline float gpuml_k_ce_row(const float *GPUML_RESTRICT x, int64_t c, int64_t label, float *lse_out)
{
    float m = -INFINITY;
    for (int64_t j = 0; j < c; j++)
        m = (x[j] > m || x[j] != x[j]) ? x[j] : m;
    double s = 0.0;
    for (int64_t j = 0; j < c; j++)
        s += (double)expf(x[j] - m);
    float lse = m + (float)log(s);
    *lse_out = lse;
    return (label >= 0 && label < c) ? lse - x[label] : 0.0f;
}

/* Row r of the gradient: scale * (softmax(x) - onehot(label)). */
GPUML_HD static inline void gpuml_k_ce_row_grad(const float *GPUML_RESTRICT x, int64_t c, int64_t label, float lse,
                                                float scale, float *GPUML_RESTRICT gx)
{
    bool valid = label >= 0 && label < c;
    for (int64_t j = 0; j < c; j++)
        gx[j] = valid ? scale * (expf(x[j] - lse) - (j == label ? 1.0f : 0.0f)) : 0.0f;
}

/* Element e of the [n, c] BCE terms; pw (NULL: all 1) is indexed by column. */
GPUML_HD static inline float gpuml_k_bce_elem(const float *GPUML_RESTRICT x, const float *GPUML_RESTRICT y,
                                             const float *GPUML_RESTRICT pw, int64_t c, int64_t e)
{
    return gpuml_k_bce_logits(x[e], y[e], pw ? pw[e % c] : 1.0f);
}

/* Element e of the BCE input gradient for upstream gout. */
GPUML_HD static inline float gpuml_k_bce_grad_elem(const float *GPUML_RESTRICT x, const float *GPUML_RESTRICT y,
                                                  const float *GPUML_RESTRICT pw, const float *GPUML_RESTRICT gout,
                                                  int64_t c, int64_t e)
{
    return gout[e] * gpuml_k_bce_logits_grad(x[e], y[e], pw ? pw[e % c] : 1.0f);
}

#endif
