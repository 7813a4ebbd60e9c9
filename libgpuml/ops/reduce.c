/* Reductions along an axis, and softmax / log-softmax (kernels/reduce.h). */
#include "ops/dispatch.h"

static gpuml_status check_reduce_shapes(gpuml_ctx *ctx, const char *fn, const gpuml_tensor *x, int *axis,
                                        const gpuml_tensor *out, const char *out_name, int64_t *outer, int64_t *len,
                                        int64_t *inner)
{
    int nd = x->ndim;
    if (nd == 0)
        return gpuml_fail(ctx, GPUML_ERR_SHAPE, fn, "x is a scalar: there is no axis to reduce");
    int ax = *axis < 0 ? *axis + nd : *axis;
    if (ax < 0 || ax >= nd)
        return gpuml_fail(ctx, GPUML_ERR_INVALID_ARGUMENT, fn, "axis %d is out of range for %d dimensions", *axis, nd);
    *axis = ax;
    *outer = 1, *inner = 1, *len = x->shape[ax];
    for (int d = 0; d < ax; d++)
        *outer *= x->shape[d];
    for (int d = ax + 1; d < nd; d++)
        *inner *= x->shape[d];
    /* out: x's shape without the axis, or with it kept as 1. */
    bool ok = false;
    if (out->ndim == nd - 1) {
        ok = true;
        for (int d = 0, e = 0; d < nd; d++)
            if (d != ax && out->shape[e++] != x->shape[d])
                ok = false;
    } else if (out->ndim == nd) {
        ok = out->shape[ax] == 1;
        for (int d = 0; d < nd; d++)
            if (d != ax && out->shape[d] != x->shape[d])
                ok = false;
    }
    if (!ok) {
        char sx[160], so[160];
        return gpuml_fail(ctx, GPUML_ERR_SHAPE, fn, "'%s' %s is not x %s reduced over axis %d", out_name,
                          gpuml_shape_str(out->ndim, out->shape, so, sizeof so),
                          gpuml_shape_str(x->ndim, x->shape, sx, sizeof sx), ax);
    }
    return GPUML_OK;
}

static gpuml_status check_argidx(gpuml_ctx *ctx, const char *fn, const gpuml_tensor *argidx, const gpuml_tensor *out)
{
    GPUML_TRY(gpuml_check_dtype(ctx, fn, "argidx", argidx, GPUML_I64));
    if (gpuml_tensor_numel(argidx) != gpuml_tensor_numel(out))
        return gpuml_fail(ctx, GPUML_ERR_SHAPE, fn, "argidx must have out's shape");
    return GPUML_OK;
}

gpuml_status gpuml_reduce(gpuml_ctx *ctx, gpuml_reduce_op op, const gpuml_tensor *x, int axis, gpuml_tensor *out,
                          gpuml_tensor *argidx)
{
    static const char fn[] = "gpuml_reduce";
    if (!ctx)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "argument 'ctx' is NULL");
    if ((int)op < 0 || op >= GPUML_REDUCE_COUNT_)
        return gpuml_fail(ctx, GPUML_ERR_INVALID_ARGUMENT, fn, "op %d is not a gpuml_reduce_op", (int)op);
    GPUML_TRY(gpuml_check_dtype(ctx, fn, "x", x, GPUML_F32));
    GPUML_TRY(gpuml_check_dtype(ctx, fn, "out", out, GPUML_F32));
    int64_t outer, len, inner;
    GPUML_TRY(check_reduce_shapes(ctx, fn, x, &axis, out, "out", &outer, &len, &inner));
    if (argidx)
        GPUML_TRY(check_argidx(ctx, fn, argidx, out));
    if (out->data == x->data && gpuml_tensor_numel(out) > 0)
        return gpuml_fail(ctx, GPUML_ERR_INVALID_ARGUMENT, fn, "out aliases x");
    gpuml_k_rjob j = {.op = op, .v = {outer, len, inner, len * inner, inner}, .xf = x->data, .out = out->data,
                      .arg = argidx ? argidx->data : NULL};
    return gpuml_reduce_run(ctx, j, fn);
}

gpuml_status gpuml_reduce_backward(gpuml_ctx *ctx, gpuml_reduce_op op, int axis, const gpuml_tensor *gout,
                                   const gpuml_tensor *argidx, gpuml_tensor *gx)
{
    static const char fn[] = "gpuml_reduce_backward";
    if (!ctx)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "argument 'ctx' is NULL");
    if ((int)op < 0 || op >= GPUML_REDUCE_COUNT_)
        return gpuml_fail(ctx, GPUML_ERR_INVALID_ARGUMENT, fn, "op %d is not a gpuml_reduce_op", (int)op);
    GPUML_TRY(gpuml_check_dtype(ctx, fn, "gout", gout, GPUML_F32));
    GPUML_TRY(gpuml_check_dtype(ctx, fn, "gx", gx, GPUML_F32));
    int64_t outer, len, inner;
    GPUML_TRY(check_reduce_shapes(ctx, fn, gx, &axis, gout, "gout", &outer, &len, &inner));
    if (op == GPUML_REDUCE_MAX || op == GPUML_REDUCE_MIN) {
        if (!argidx)
            return gpuml_fail(ctx, GPUML_ERR_INVALID_ARGUMENT, fn, "max/min backward needs the forward argidx");
        GPUML_TRY(check_argidx(ctx, fn, argidx, gout));
    }
    return GPUML_LAUNCH(ctx, reduce_grad, op, gout->data, argidx ? argidx->data : NULL, outer, len, inner, gx->data);
}

gpuml_status gpuml_sum(gpuml_ctx *ctx, const gpuml_tensor *x, int axis, gpuml_tensor *out)
{
    return gpuml_reduce(ctx, GPUML_REDUCE_SUM, x, axis, out, NULL);
}
gpuml_status gpuml_mean(gpuml_ctx *ctx, const gpuml_tensor *x, int axis, gpuml_tensor *out)
{
    return gpuml_reduce(ctx, GPUML_REDUCE_MEAN, x, axis, out, NULL);
}
gpuml_status gpuml_max(gpuml_ctx *ctx, const gpuml_tensor *x, int axis, gpuml_tensor *out, gpuml_tensor *argidx)
{
    return gpuml_reduce(ctx, GPUML_REDUCE_MAX, x, axis, out, argidx);
}
gpuml_status gpuml_min(gpuml_ctx *ctx, const gpuml_tensor *x, int axis, gpuml_tensor *out, gpuml_tensor *argidx)
{
    return gpuml_reduce(ctx, GPUML_REDUCE_MIN, x, axis, out, argidx);
}

static gpuml_status softmax_common(gpuml_ctx *ctx, const char *fn, const gpuml_tensor *x, gpuml_tensor *y,
                                   int take_log)
{
    if (!ctx)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "argument 'ctx' is NULL");
    GPUML_TRY(gpuml_check_dtype(ctx, fn, "x", x, GPUML_F32));
    GPUML_TRY(gpuml_check_dtype(ctx, fn, "y", y, GPUML_F32));
    GPUML_TRY(gpuml_check_same_shape(ctx, fn, "x", x, "y", y));
    if (x->ndim == 0)
        return gpuml_fail(ctx, GPUML_ERR_SHAPE, fn, "x is a scalar: softmax needs a last axis");
    int64_t n = x->shape[x->ndim - 1];
    int64_t rows = n ? gpuml_tensor_numel(x) / n : 0;
    return GPUML_LAUNCH(ctx, softmax, x->data, y->data, rows, n, take_log);
}

gpuml_status gpuml_softmax(gpuml_ctx *ctx, const gpuml_tensor *x, gpuml_tensor *y)
{
    return softmax_common(ctx, "gpuml_softmax", x, y, 0);
}
gpuml_status gpuml_log_softmax(gpuml_ctx *ctx, const gpuml_tensor *x, gpuml_tensor *y)
{
    return softmax_common(ctx, "gpuml_log_softmax", x, y, 1);
}

static gpuml_status softmax_grad_common(gpuml_ctx *ctx, const char *fn, const gpuml_tensor *y, const gpuml_tensor *gy,
                                        gpuml_tensor *gx, int take_log)
{
    if (!ctx)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "argument 'ctx' is NULL");
    GPUML_TRY(gpuml_check_dtype(ctx, fn, "y", y, GPUML_F32));
    GPUML_TRY(gpuml_check_dtype(ctx, fn, "gy", gy, GPUML_F32));
    GPUML_TRY(gpuml_check_dtype(ctx, fn, "gx", gx, GPUML_F32));
    GPUML_TRY(gpuml_check_same_shape(ctx, fn, "y", y, "gy", gy));
    GPUML_TRY(gpuml_check_same_shape(ctx, fn, "y", y, "gx", gx));
    if (y->ndim == 0)
        return gpuml_fail(ctx, GPUML_ERR_SHAPE, fn, "y is a scalar: softmax needs a last axis");
    int64_t n = y->shape[y->ndim - 1];
    int64_t rows = n ? gpuml_tensor_numel(y) / n : 0;
    return GPUML_LAUNCH(ctx, softmax_grad, y->data, gy->data, gx->data, rows, n, take_log);
}

gpuml_status gpuml_softmax_backward(gpuml_ctx *ctx, const gpuml_tensor *y, const gpuml_tensor *gy, gpuml_tensor *gx)
{
    return softmax_grad_common(ctx, "gpuml_softmax_backward", y, gy, gx, 0);
}
gpuml_status gpuml_log_softmax_backward(gpuml_ctx *ctx, const gpuml_tensor *y, const gpuml_tensor *gy,
                                        gpuml_tensor *gx)
{
    return softmax_grad_common(ctx, "gpuml_log_softmax_backward", y, gy, gx, 1);
}
