/* CPU driver for kernels/loss.h. */
#include "../kernels.h"
#include "../loss.h"
#include "../rows.h"
#include "parallel.h"

typedef struct bce_args {
    int64_t c;
    const float *x, *y, *pos_weight, *gout;
    float *out;
} bce_args;

GPUML_KRANGE(bce_range, bce_args)
{
    for (int64_t e = begin; e < end; e++)
        a->out[e] = gpuml_k_bce_elem(a->x, a->y, a->pos_weight, a->c, e);
}

GPUML_KRANGE(bce_grad_range, bce_args)
{
    for (int64_t e = begin; e < end; e++)
        a->out[e] = gpuml_k_bce_grad_elem(a->x, a->y, a->pos_weight, a->gout, a->c, e);
}

gpuml_status gpuml_cpu_bce_logits(const gpuml_kctx *k, int64_t n, int64_t c, const float *x, const float *y,
                                  const float *pos_weight, float *out)
{
    bce_args a = {c, x, y, pos_weight, NULL, out};
    gpuml_kfor(k, n * c, n * c, 0, bce_range, &a);
    return GPUML_OK;
}

gpuml_status gpuml_cpu_bce_logits_grad(const gpuml_kctx *k, int64_t n, int64_t c, const float *x, const float *y,
                                       const float *pos_weight, const float *gout, float *gx)
{
    bce_args a = {c, x, y, pos_weight, gout, gx};
    gpuml_kfor(k, n * c, n * c, 0, bce_grad_range, &a);
    return GPUML_OK;
}

typedef struct ce_args {
    const float *x;
    int64_t c;
    const void *labels;
    int is64;
    const float *lse_in, *gnll;
    float *nll, *lse, *gx;
} ce_args;

GPUML_KRANGE(ce_range, ce_args)
{
    for (int64_t r = begin; r < end; r++)
        a->nll[r] = gpuml_k_ce_row(a->x + r * a->c, a->c, gpuml_k_index_at(a->labels, a->is64, r), a->lse + r);
}

GPUML_KRANGE(ce_grad_range, ce_args)
{
    for (int64_t r = begin; r < end; r++)
        gpuml_k_ce_row_grad(a->x + r * a->c, a->c, gpuml_k_index_at(a->labels, a->is64, r), a->lse_in[r], a->gnll[r],
                            a->gx + r * a->c);
}

gpuml_status gpuml_cpu_cross_entropy(const gpuml_kctx *k, const float *x, int64_t rows, int64_t c, const void *labels,
                                     int is64, float *nll, float *lse)
{
    ce_args a = {x, c, labels, is64, NULL, NULL, nll, lse, NULL};
    gpuml_kfor(k, rows, rows * c, 0, ce_range, &a);
    return GPUML_OK;
}

gpuml_status gpuml_cpu_cross_entropy_grad(const gpuml_kctx *k, const float *x, int64_t rows, int64_t c,
                                          const void *labels, int is64, const float *lse, const float *gnll, float *gx)
{
    ce_args a = {x, c, labels, is64, lse, gnll, NULL, NULL, gx};
    gpuml_kfor(k, rows, rows * c, 0, ce_grad_range, &a);
    return GPUML_OK;
}
