/* Layer norm, dropout, affine (kernels/layernorm.h, kernels/rng.h). */
#include "ops/dispatch.h"

gpuml_status gpuml_affine(gpuml_ctx *ctx, float a, const gpuml_tensor *x, float b, gpuml_tensor *y)
{
    static const char fn[] = "gpuml_affine";
    if (!ctx)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "argument 'ctx' is NULL");
    GPUML_TRY(gpuml_check_dtype(ctx, fn, "x", x, GPUML_F32));
    GPUML_TRY(gpuml_check_dtype(ctx, fn, "y", y, GPUML_F32));
    GPUML_TRY(gpuml_check_same_shape(ctx, fn, "x", x, "y", y));
    return GPUML_LAUNCH(ctx, affine, gpuml_tensor_numel(x), a, x->data, b, y->data);
}

static gpuml_status check_vec(gpuml_ctx *ctx, const char *fn, const char *name, const gpuml_tensor *t, int64_t n)
{
    if (!t)
        return GPUML_OK;
    GPUML_TRY(gpuml_check_dtype(ctx, fn, name, t, GPUML_F32));
    if (t->ndim != 1 || t->shape[0] != n)
        return gpuml_fail(ctx, GPUML_ERR_SHAPE, fn, "'%s' must be [%lld]", name, (long long)n);
    return GPUML_OK;
}

static gpuml_status ln_shapes(gpuml_ctx *ctx, const char *fn, const gpuml_tensor *x, int64_t *rows, int64_t *c)
{
    GPUML_TRY(gpuml_check_dtype(ctx, fn, "x", x, GPUML_F32));
    if (x->ndim < 1)
        return gpuml_fail(ctx, GPUML_ERR_SHAPE, fn, "x is a scalar: layer norm needs a last axis");
    *c = x->shape[x->ndim - 1];
    *rows = *c ? gpuml_tensor_numel(x) / *c : gpuml_numel(x->ndim - 1, x->shape);
    return GPUML_OK;
}

gpuml_status gpuml_layernorm(gpuml_ctx *ctx, const gpuml_tensor *x, const gpuml_tensor *gamma, const gpuml_tensor *beta,
                             float eps, gpuml_tensor *y, gpuml_tensor *mean, gpuml_tensor *rstd)
{
    static const char fn[] = "gpuml_layernorm";
    if (!ctx)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "argument 'ctx' is NULL");
    int64_t rows = 0, c = 0;
    GPUML_TRY(ln_shapes(ctx, fn, x, &rows, &c));
    GPUML_TRY(gpuml_check_dtype(ctx, fn, "y", y, GPUML_F32));
    GPUML_TRY(gpuml_check_same_shape(ctx, fn, "x", x, "y", y));
    GPUML_TRY(check_vec(ctx, fn, "gamma", gamma, c));
    GPUML_TRY(check_vec(ctx, fn, "beta", beta, c));
    if (!mean || !rstd)
        return gpuml_fail(ctx, GPUML_ERR_INVALID_ARGUMENT, fn, "argument '%s' is NULL", mean ? "rstd" : "mean");
    GPUML_TRY(check_vec(ctx, fn, "mean", mean, rows));
    GPUML_TRY(check_vec(ctx, fn, "rstd", rstd, rows));
    if (!(eps >= 0.0f))
        return gpuml_fail(ctx, GPUML_ERR_INVALID_ARGUMENT, fn, "eps = %g must be >= 0", (double)eps);
    return GPUML_LAUNCH(ctx, layernorm, x->data, gamma ? gamma->data : NULL, beta ? beta->data : NULL, eps, rows, c,
                        y->data, mean->data, rstd->data);
}

gpuml_status gpuml_layernorm_backward(gpuml_ctx *ctx, const gpuml_tensor *x, const gpuml_tensor *gamma,
                                      const gpuml_tensor *gy, const gpuml_tensor *mean, const gpuml_tensor *rstd,
                                      gpuml_tensor *gx, gpuml_tensor *ggamma, gpuml_tensor *gbeta, int accumulate)
{
    static const char fn[] = "gpuml_layernorm_backward";
    if (!ctx)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "argument 'ctx' is NULL");
    int64_t rows = 0, c = 0;
    GPUML_TRY(ln_shapes(ctx, fn, x, &rows, &c));
    GPUML_TRY(gpuml_check_dtype(ctx, fn, "gy", gy, GPUML_F32));
    GPUML_TRY(gpuml_check_same_shape(ctx, fn, "x", x, "gy", gy));
    GPUML_TRY(check_vec(ctx, fn, "gamma", gamma, c));
    if (!mean || !rstd)
        return gpuml_fail(ctx, GPUML_ERR_INVALID_ARGUMENT, fn, "argument '%s' is NULL", mean ? "rstd" : "mean");
    GPUML_TRY(check_vec(ctx, fn, "mean", mean, rows));
    GPUML_TRY(check_vec(ctx, fn, "rstd", rstd, rows));
    if (gx) {
        GPUML_TRY(gpuml_check_dtype(ctx, fn, "gx", gx, GPUML_F32));
        GPUML_TRY(gpuml_check_same_shape(ctx, fn, "x", x, "gx", gx));
    }
    GPUML_TRY(check_vec(ctx, fn, "ggamma", ggamma, c));
    GPUML_TRY(check_vec(ctx, fn, "gbeta", gbeta, c));
    if (gx && rows > 0)
        GPUML_TRY(GPUML_LAUNCH(ctx, layernorm_grad, x->data, gamma ? gamma->data : NULL, gy->data, mean->data,
                               rstd->data, rows, c, gx->data));
    /* ggamma = sum_r gy xhat, gbeta = sum_r gy: column sums over the rows */
    gpuml_k_rview cols = {1, rows, c, 0, c};
    if (ggamma) {
        gpuml_k_rjob j = {.op = GPUML_K_RLN_GAMMA, .v = cols, .xf = gy->data, .ln_x = x->data, .ln_mean = mean->data,
                          .ln_rstd = rstd->data, .out = ggamma->data, .accumulate = accumulate != 0};
        GPUML_TRY(gpuml_reduce_run(ctx, j, fn));
    }
    if (gbeta) {
        gpuml_k_rjob j = {.op = GPUML_REDUCE_SUM, .v = cols, .xf = gy->data, .out = gbeta->data,
                          .accumulate = accumulate != 0};
        GPUML_TRY(gpuml_reduce_run(ctx, j, fn));
    }
    return GPUML_OK;
}

static gpuml_status dropout_checks(gpuml_ctx *ctx, const char *fn, float p, const gpuml_tensor *x, const char *xn,
                                   const gpuml_tensor *y, const char *yn)
{
    if (!ctx)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "argument 'ctx' is NULL");
    if (!(p >= 0.0f && p < 1.0f))
        return gpuml_fail(ctx, GPUML_ERR_INVALID_ARGUMENT, fn, "p = %g is not in [0, 1)", (double)p);
    GPUML_TRY(gpuml_check_dtype(ctx, fn, xn, x, GPUML_F32));
    GPUML_TRY(gpuml_check_dtype(ctx, fn, yn, y, GPUML_F32));
    return gpuml_check_same_shape(ctx, fn, xn, x, yn, y);
}

gpuml_status gpuml_dropout(gpuml_ctx *ctx, float p, const gpuml_tensor *x, gpuml_tensor *y, uint64_t *counter)
{
    static const char fn[] = "gpuml_dropout";
    GPUML_TRY(dropout_checks(ctx, fn, p, x, "x", y, "y"));
    int64_t n = gpuml_tensor_numel(x);
    uint64_t base = gpuml_ctx_rng_take(ctx, (uint64_t)(n + 3) / 4);
    if (counter)
        *counter = base;
    return GPUML_LAUNCH(ctx, dropout, ctx->rng_seed, base, n, p, x->data, y->data);
}

gpuml_status gpuml_dropout_backward(gpuml_ctx *ctx, float p, uint64_t seed, uint64_t counter, const gpuml_tensor *gy,
                                    gpuml_tensor *gx)
{
    static const char fn[] = "gpuml_dropout_backward";
    GPUML_TRY(dropout_checks(ctx, fn, p, gy, "gy", gx, "gx"));
    return GPUML_LAUNCH(ctx, dropout, seed, counter, gpuml_tensor_numel(gy), p, gy->data, gx->data);
}
