/* Element-wise unary ops: validation and dispatch (kernels/unary.h). */
#include "ops/dispatch.h"
#include "registry.h"

static const char *const unary_names[GPUML_UNARY_COUNT_] = {GPUML_REG_NAMES(UNARY)};

const char *gpuml_unary_op_name(gpuml_unary_op op)
{
    return ((int)op >= 0 && op < GPUML_UNARY_COUNT_) ? unary_names[op] : "?";
}

static gpuml_status check_op(gpuml_ctx *ctx, const char *fn, gpuml_unary_op op)
{
    if ((int)op < 0 || op >= GPUML_UNARY_COUNT_)
        return gpuml_fail(ctx, GPUML_ERR_INVALID_ARGUMENT, fn, "op %d is not a gpuml_unary_op", (int)op);
    return GPUML_OK;
}

gpuml_status gpuml_unary(gpuml_ctx *ctx, gpuml_unary_op op, float alpha, const gpuml_tensor *x, gpuml_tensor *y)
{
    static const char fn[] = "gpuml_unary";
    if (!ctx)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "argument 'ctx' is NULL");
    GPUML_TRY(check_op(ctx, fn, op));
    GPUML_TRY(gpuml_check_dtype(ctx, fn, "x", x, GPUML_F32));
    GPUML_TRY(gpuml_check_dtype(ctx, fn, "y", y, GPUML_F32));
    GPUML_TRY(gpuml_check_same_shape(ctx, fn, "x", x, "y", y));
    return GPUML_LAUNCH(ctx, unary, op, alpha, gpuml_tensor_numel(x), x->data, y->data);
}

gpuml_status gpuml_unary_backward(gpuml_ctx *ctx, gpuml_unary_op op, float alpha, const gpuml_tensor *x,
                                  const gpuml_tensor *gy, gpuml_tensor *gx)
{
    static const char fn[] = "gpuml_unary_backward";
    if (!ctx)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "argument 'ctx' is NULL");
    GPUML_TRY(check_op(ctx, fn, op));
    GPUML_TRY(gpuml_check_dtype(ctx, fn, "x", x, GPUML_F32));
    GPUML_TRY(gpuml_check_dtype(ctx, fn, "gy", gy, GPUML_F32));
    GPUML_TRY(gpuml_check_dtype(ctx, fn, "gx", gx, GPUML_F32));
    GPUML_TRY(gpuml_check_same_shape(ctx, fn, "x", x, "gy", gy));
    GPUML_TRY(gpuml_check_same_shape(ctx, fn, "x", x, "gx", gx));
    return GPUML_LAUNCH(ctx, unary_grad, op, alpha, gpuml_tensor_numel(x), x->data, gy->data, gx->data);
}

#define NAMED_UNARY(name, OP, ALPHA)                                                  \
    gpuml_status gpuml_##name(gpuml_ctx *ctx, const gpuml_tensor *x, gpuml_tensor *y) \
    {                                                                                 \
        return gpuml_unary(ctx, OP, ALPHA, x, y);                                     \
    }
NAMED_UNARY(neg, GPUML_UNARY_NEG, 0.0f)
NAMED_UNARY(abs, GPUML_UNARY_ABS, 0.0f)
NAMED_UNARY(exp, GPUML_UNARY_EXP, 0.0f)
NAMED_UNARY(log, GPUML_UNARY_LOG, 0.0f)
NAMED_UNARY(sqrt, GPUML_UNARY_SQRT, 0.0f)
NAMED_UNARY(rsqrt, GPUML_UNARY_RSQRT, 0.0f)
NAMED_UNARY(relu, GPUML_UNARY_RELU, 0.0f)
NAMED_UNARY(gelu, GPUML_UNARY_GELU, 0.0f)
NAMED_UNARY(tanh, GPUML_UNARY_TANH, 0.0f)
NAMED_UNARY(sigmoid, GPUML_UNARY_SIGMOID, 0.0f)
NAMED_UNARY(softplus, GPUML_UNARY_SOFTPLUS, 0.0f)

gpuml_status gpuml_leaky_relu(gpuml_ctx *ctx, float alpha, const gpuml_tensor *x, gpuml_tensor *y)
{
    return gpuml_unary(ctx, GPUML_UNARY_LEAKY_RELU, alpha, x, y);
}

gpuml_status gpuml_elu(gpuml_ctx *ctx, float alpha, const gpuml_tensor *x, gpuml_tensor *y)
{
    return gpuml_unary(ctx, GPUML_UNARY_ELU, alpha, x, y);
}
