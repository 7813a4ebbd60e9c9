/* Loss terms (kernels/loss.h). */
#include "ops/dispatch.h"

static gpuml_status bce_checks(gpuml_ctx *ctx, const char *fn, const gpuml_tensor *x, const gpuml_tensor *y,
                               const gpuml_tensor *pw, int64_t *n, int64_t *c)
{
    if (!ctx)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "argument 'ctx' is NULL");
    GPUML_TRY(gpuml_check_dtype(ctx, fn, "x", x, GPUML_F32));
    GPUML_TRY(gpuml_check_dtype(ctx, fn, "y", y, GPUML_F32));
    GPUML_TRY(gpuml_check_same_shape(ctx, fn, "x", x, "y", y));
    *c = x->ndim ? x->shape[x->ndim - 1] : 1;
    *n = *c ? gpuml_tensor_numel(x) / *c : 0;
    if (pw) {
        GPUML_TRY(gpuml_check_dtype(ctx, fn, "pos_weight", pw, GPUML_F32));
        if (pw->ndim != 1 || pw->shape[0] != *c)
            return gpuml_fail(ctx, GPUML_ERR_SHAPE, fn, "pos_weight must be [%lld]", (long long)*c);
    }
    return GPUML_OK;
}

gpuml_status gpuml_bce_logits(gpuml_ctx *ctx, const gpuml_tensor *x, const gpuml_tensor *y,
                              const gpuml_tensor *pos_weight, gpuml_tensor *out)
{
    static const char fn[] = "gpuml_bce_logits";
    int64_t n = 0, c = 0;
    GPUML_TRY(bce_checks(ctx, fn, x, y, pos_weight, &n, &c));
    GPUML_TRY(gpuml_check_dtype(ctx, fn, "out", out, GPUML_F32));
    GPUML_TRY(gpuml_check_same_shape(ctx, fn, "x", x, "out", out));
    return GPUML_LAUNCH(ctx, bce_logits, n, c, x->data, y->data, pos_weight ? pos_weight->data : NULL, out->data);
}

gpuml_status gpuml_bce_logits_backward(gpuml_ctx *ctx, const gpuml_tensor *x, const gpuml_tensor *y,
                                       const gpuml_tensor *pos_weight, const gpuml_tensor *gout, gpuml_tensor *gx)
{
    static const char fn[] = "gpuml_bce_logits_backward";
    int64_t n = 0, c = 0;
    GPUML_TRY(bce_checks(ctx, fn, x, y, pos_weight, &n, &c));
    GPUML_TRY(gpuml_check_dtype(ctx, fn, "gout", gout, GPUML_F32));
    GPUML_TRY(gpuml_check_same_shape(ctx, fn, "x", x, "gout", gout));
    GPUML_TRY(gpuml_check_dtype(ctx, fn, "gx", gx, GPUML_F32));
    GPUML_TRY(gpuml_check_same_shape(ctx, fn, "x", x, "gx", gx));
    return GPUML_LAUNCH(ctx, bce_logits_grad, n, c, x->data, y->data, pos_weight ? pos_weight->data : NULL, gout->data,
                        gx->data);
}

static gpuml_status ce_checks(gpuml_ctx *ctx, const char *fn, const gpuml_tensor *logits, const gpuml_tensor *labels,
                              const gpuml_tensor *rowvec1, const char *n1, const gpuml_tensor *rowvec2, const char *n2)
{
    if (!ctx)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "argument 'ctx' is NULL");
    GPUML_TRY(gpuml_check_dtype(ctx, fn, "logits", logits, GPUML_F32));
    if (logits->ndim != 2)
        return gpuml_fail(ctx, GPUML_ERR_SHAPE, fn, "logits must be [N, C]");
    GPUML_TRY(gpuml_check_index_dtype(ctx, fn, "labels", labels));
    int64_t n = logits->shape[0];
    if (labels->ndim != 1 || labels->shape[0] != n)
        return gpuml_fail(ctx, GPUML_ERR_SHAPE, fn, "labels must be [%lld]", (long long)n);
    const gpuml_tensor *vs[2] = {rowvec1, rowvec2};
    const char *ns[2] = {n1, n2};
    for (int i = 0; i < 2; i++) {
        GPUML_TRY(gpuml_check_dtype(ctx, fn, ns[i], vs[i], GPUML_F32));
        if (vs[i]->ndim != 1 || vs[i]->shape[0] != n)
            return gpuml_fail(ctx, GPUML_ERR_SHAPE, fn, "'%s' must be [%lld]", ns[i], (long long)n);
    }
    return GPUML_OK;
}

gpuml_status gpuml_cross_entropy(gpuml_ctx *ctx, const gpuml_tensor *logits, const gpuml_tensor *labels,
                                 gpuml_tensor *nll, gpuml_tensor *lse)
{
    static const char fn[] = "gpuml_cross_entropy";
    GPUML_TRY(ce_checks(ctx, fn, logits, labels, nll, "nll", lse, "lse"));
    return GPUML_LAUNCH(ctx, cross_entropy, logits->data, logits->shape[0], logits->shape[1], labels->data,
                        labels->dtype == GPUML_I64, nll->data, lse->data);
}

gpuml_status gpuml_cross_entropy_backward(gpuml_ctx *ctx, const gpuml_tensor *logits, const gpuml_tensor *labels,
                                          const gpuml_tensor *lse, const gpuml_tensor *gnll, gpuml_tensor *gx)
{
    static const char fn[] = "gpuml_cross_entropy_backward";
    GPUML_TRY(ce_checks(ctx, fn, logits, labels, lse, "lse", gnll, "gnll"));
    GPUML_TRY(gpuml_check_dtype(ctx, fn, "gx", gx, GPUML_F32));
    GPUML_TRY(gpuml_check_same_shape(ctx, fn, "logits", logits, "gx", gx));
    return GPUML_LAUNCH(ctx, cross_entropy_grad, logits->data, logits->shape[0], logits->shape[1], labels->data,
                        labels->dtype == GPUML_I64, lse->data, gnll->data, gx->data);
}
