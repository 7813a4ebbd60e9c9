/* Argument checks shared by the ops: each names the function and argument. */
#define _POSIX_C_SOURCE 200809L
#include <inttypes.h>
#include <stdio.h>

#include "core/internal.h"

static const char *dev_name(gpuml_device d, char *buf, size_t n)
{
    if (d.type == GPUML_DEVICE_CUDA)
        snprintf(buf, n, "cuda:%d", d.index);
    else
        snprintf(buf, n, "cpu");
    return buf;
}

gpuml_status gpuml_check_tensor(const gpuml_ctx *ctx, const char *fn, const char *arg, const gpuml_tensor *t)
{
    if (!t)
        return gpuml_fail(ctx, GPUML_ERR_INVALID_ARGUMENT, fn, "argument '%s' is NULL", arg);
    if (t->device.type != ctx->device.type ||
        (t->device.type == GPUML_DEVICE_CUDA && t->device.index != ctx->device.index)) {
        char a[32], b[32];
        return gpuml_fail(ctx, GPUML_ERR_DEVICE_MISMATCH, fn, "argument '%s' is on %s but the context is on %s", arg,
                          dev_name(t->device, a, sizeof a), dev_name(ctx->device, b, sizeof b));
    }
    if (!t->data && gpuml_numel(t->ndim, t->shape) > 0)
        return gpuml_fail(ctx, GPUML_ERR_INVALID_ARGUMENT, fn, "argument '%s' has no data", arg);
    return GPUML_OK;
}

gpuml_status gpuml_check_dtype(const gpuml_ctx *ctx, const char *fn, const char *arg, const gpuml_tensor *t,
                               gpuml_dtype want)
{
    GPUML_TRY(gpuml_check_tensor(ctx, fn, arg, t));
    if (t->dtype != want)
        return gpuml_fail(ctx, GPUML_ERR_DTYPE, fn, "argument '%s' is %s, expected %s", arg,
                          gpuml_dtype_name(t->dtype), gpuml_dtype_name(want));
    return GPUML_OK;
}

gpuml_status gpuml_check_index_dtype(const gpuml_ctx *ctx, const char *fn, const char *arg, const gpuml_tensor *t)
{
    GPUML_TRY(gpuml_check_tensor(ctx, fn, arg, t));
    if (t->dtype != GPUML_I32 && t->dtype != GPUML_I64)
        return gpuml_fail(ctx, GPUML_ERR_DTYPE, fn, "argument '%s' is %s, expected i32 or i64", arg,
                          gpuml_dtype_name(t->dtype));
    return GPUML_OK;
}

gpuml_status gpuml_check_same_shape(const gpuml_ctx *ctx, const char *fn, const char *arg_a, const gpuml_tensor *a,
                                    const char *arg_b, const gpuml_tensor *b)
{
    bool same = a->ndim == b->ndim;
    for (int i = 0; same && i < a->ndim; i++)
        same = a->shape[i] == b->shape[i];
    if (!same) {
        char sa[160], sb[160];
        return gpuml_fail(ctx, GPUML_ERR_SHAPE, fn, "argument '%s' %s does not match '%s' %s", arg_b,
                          gpuml_shape_str(b->ndim, b->shape, sb, sizeof sb), arg_a,
                          gpuml_shape_str(a->ndim, a->shape, sa, sizeof sa));
    }
    return GPUML_OK;
}

gpuml_status gpuml_check_row_splits(const gpuml_ctx *ctx, const char *fn, const char *arg,
                                    const gpuml_tensor *rs, int64_t n_rows, int64_t *batch)
{
    GPUML_TRY(gpuml_check_dtype(ctx, fn, arg, rs, GPUML_I64));
    if (rs->ndim != 1 || rs->shape[0] < 1) {
        char s[160];
        return gpuml_fail(ctx, GPUML_ERR_SHAPE, fn, "argument '%s' must be [B+1] with B >= 0, got %s", arg,
                          gpuml_shape_str(rs->ndim, rs->shape, s, sizeof s));
    }
    int64_t b = rs->shape[0] - 1;
    if (rs->device.type == GPUML_DEVICE_CPU) {
        const int64_t *v = rs->data;
        if (v[0] != 0)
            return gpuml_fail(ctx, GPUML_ERR_INVALID_ARGUMENT, fn, "argument '%s': %s[0] = %" PRId64 ", expected 0",
                              arg, arg, v[0]);
        for (int64_t i = 0; i < b; i++)
            if (v[i + 1] < v[i])
                return gpuml_fail(ctx, GPUML_ERR_INVALID_ARGUMENT, fn,
                                  "argument '%s' decreases: %s[%" PRId64 "] = %" PRId64 " < %s[%" PRId64 "] = %" PRId64,
                                  arg, arg, i + 1, v[i + 1], arg, i, v[i]);
        if (v[b] != n_rows)
            return gpuml_fail(ctx, GPUML_ERR_INVALID_ARGUMENT, fn,
                              "argument '%s' ends at %" PRId64 " but the data has %" PRId64 " rows", arg, v[b], n_rows);
    }
    *batch = b;
    return GPUML_OK;
}
