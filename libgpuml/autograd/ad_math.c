/* Differentiable element-wise, reduction and matrix ops. */
#include <string.h>

#include "autograd/ad_common.h"

/* ---- unary ------------------------------------------------------------- */
static gpuml_status bw_unary(gpuml_tape *t, gpuml_node *n)
{
    gpuml_tensor *gy = gpuml_ad_out_grad(t, n->out[0]);
    AD_GRAD(t, n->in[0], "unary backward",
            gpuml_unary_backward(t->ctx, (gpuml_unary_op)n->ip[0], n->fp[0], &n->in[0]->value, gy, dst));
    return GPUML_OK;
}

gpuml_status gpuml_ad_unary(gpuml_tape *t, gpuml_unary_op op, float alpha, gpuml_var *x, gpuml_var **y)
{
    static const char fn[] = "gpuml_ad_unary";
    GPUML_TRY(ad_nonnull(t, fn, 2, "x", (const void *)x, "y", (const void *)y));
    gpuml_var *out;
    GPUML_TRY(gpuml_ad_new_var(t, GPUML_F32, x->value.ndim, x->value.shape, &out, fn));
    GPUML_TRY(gpuml_unary(t->ctx, op, alpha, &x->value, &out->value));
    if (gpuml_ad_needs_grad(t, &x, 1)) {
        gpuml_node *n;
        GPUML_TRY(gpuml_ad_record(t, gpuml_unary_op_name(op), bw_unary, &x, 1, &out, 1, &n, fn));
        n->ip[0] = op;
        n->fp[0] = alpha;
    }
    *y = out;
    return GPUML_OK;
}

/* ---- binary ------------------------------------------------------------ */
static gpuml_status bw_binary(gpuml_tape *t, gpuml_node *n)
{
    static const char fn[] = "binary backward";
    gpuml_tensor *g = gpuml_ad_out_grad(t, n->out[0]), *ga = NULL, *gb = NULL;
    gpuml_var *a = n->in[0], *b = n->in[1];
    GPUML_TRY(gpuml_ad_grad_begin(t, a, &ga, fn));
    if (b != a)
        GPUML_TRY(gpuml_ad_grad_begin(t, b, &gb, fn));
    else if (ga) /* x op x: both contributions go to one var */
        GPUML_TRY(gpuml_ad_new_tensor(t, GPUML_F32, b->value.ndim, b->value.shape, &gb, fn));
    if (!ga && !gb)
        return GPUML_OK;
    GPUML_TRY(gpuml_binary_backward(t->ctx, (gpuml_binary_op)n->ip[0], &a->value, &b->value, g, ga, gb));
    if (b == a && ga) {
        GPUML_TRY(gpuml_axpy(t->ctx, 1.0f, gb, ga));
        return gpuml_ad_grad_commit(t, a, ga, fn);
    }
    if (ga)
        GPUML_TRY(gpuml_ad_grad_commit(t, a, ga, fn));
    if (gb)
        GPUML_TRY(gpuml_ad_grad_commit(t, b, gb, fn));
    return GPUML_OK;
}

/* Broadcast shape of a and b (NumPy rules); SHAPE error if incompatible. */
static gpuml_status broadcast_shape(gpuml_tape *t, const char *fn, const gpuml_tensor *a, const gpuml_tensor *b,
                                    int *nd, int64_t *shape)
{
    *nd = a->ndim > b->ndim ? a->ndim : b->ndim;
    for (int d = 0; d < *nd; d++) {
        int ka = d - (*nd - a->ndim), kb = d - (*nd - b->ndim);
        int64_t A = ka < 0 ? 1 : a->shape[ka], B = kb < 0 ? 1 : b->shape[kb];
        if (A != B && A != 1 && B != 1) {
            char s1[160], s2[160];
            return gpuml_fail(t->ctx, GPUML_ERR_SHAPE, fn, "shapes %s and %s do not broadcast",
                              gpuml_shape_str(a->ndim, a->shape, s1, sizeof s1),
                              gpuml_shape_str(b->ndim, b->shape, s2, sizeof s2));
        }
        shape[d] = A == 1 ? B : A;
    }
    return GPUML_OK;
}

gpuml_status gpuml_ad_binary(gpuml_tape *t, gpuml_binary_op op, gpuml_var *a, gpuml_var *b, gpuml_var **out)
{
    static const char fn[] = "gpuml_ad_binary";
    GPUML_TRY(ad_nonnull(t, fn, 3, "a", (const void *)a, "b", (const void *)b, "out", (const void *)out));
    int nd;
    int64_t shape[GPUML_MAX_DIMS];
    GPUML_TRY(broadcast_shape(t, fn, &a->value, &b->value, &nd, shape));
    gpuml_var *o;
    GPUML_TRY(gpuml_ad_new_var(t, GPUML_F32, nd, shape, &o, fn));
    GPUML_TRY(gpuml_binary(t->ctx, op, &a->value, &b->value, &o->value));
    gpuml_var *in[2] = {a, b};
    if (gpuml_ad_needs_grad(t, in, 2)) {
        gpuml_node *n;
        GPUML_TRY(gpuml_ad_record(t, gpuml_binary_op_name(op), bw_binary, in, 2, &o, 1, &n, fn));
        n->ip[0] = op;
    }
    *out = o;
    return GPUML_OK;
}

/* ---- affine: scale and add_scalar -------------------------------------- */
static gpuml_status bw_affine(gpuml_tape *t, gpuml_node *n)
{
    gpuml_tensor *gy = gpuml_ad_out_grad(t, n->out[0]);
    AD_GRAD(t, n->in[0], "affine backward", gpuml_scale(t->ctx, n->fp[0], gy, dst));
    return GPUML_OK;
}

static gpuml_status ad_affine(gpuml_tape *t, const char *fn, float a, gpuml_var *x, float b, gpuml_var **y)
{
    GPUML_TRY(ad_nonnull(t, fn, 2, "x", (const void *)x, "y", (const void *)y));
    gpuml_var *o;
    GPUML_TRY(gpuml_ad_new_var(t, GPUML_F32, x->value.ndim, x->value.shape, &o, fn));
    GPUML_TRY(gpuml_affine(t->ctx, a, &x->value, b, &o->value));
    if (gpuml_ad_needs_grad(t, &x, 1)) {
        gpuml_node *n;
        GPUML_TRY(gpuml_ad_record(t, "affine", bw_affine, &x, 1, &o, 1, &n, fn));
        n->fp[0] = a;
    }
    *y = o;
    return GPUML_OK;
}

gpuml_status gpuml_ad_scale(gpuml_tape *t, float alpha, gpuml_var *x, gpuml_var **y)
{
    return ad_affine(t, "gpuml_ad_scale", alpha, x, 0.0f, y);
}

gpuml_status gpuml_ad_add_scalar(gpuml_tape *t, gpuml_var *x, float alpha, gpuml_var **y)
{
    return ad_affine(t, "gpuml_ad_add_scalar", 1.0f, x, alpha, y);
}

/* ---- reductions -------------------------------------------------------- */
static gpuml_status bw_reduce(gpuml_tape *t, gpuml_node *n)
{
    gpuml_tensor *gy = gpuml_ad_out_grad(t, n->out[0]);
    /* the reduction was on a [outer, len, inner] view saved as aux[1] */
    gpuml_tensor gyv, *xv = n->aux[1];
    int64_t oshape[GPUML_MAX_DIMS];
    int k = 0;
    for (int d = 0; d < xv->ndim; d++)
        if (d != n->ip[1])
            oshape[k++] = xv->shape[d];
    gpuml_tensor_init_view(&gyv, gy->data, gy->device, GPUML_F32, k, oshape);
    gpuml_var *x = n->in[0];
    gpuml_tensor *dst = NULL;
    GPUML_TRY(gpuml_ad_grad_begin(t, x, &dst, "reduce backward"));
    if (!dst)
        return GPUML_OK;
    gpuml_tensor dv;
    gpuml_tensor_init_view(&dv, dst->data, dst->device, GPUML_F32, xv->ndim, xv->shape);
    GPUML_TRY(gpuml_reduce_backward(t->ctx, (gpuml_reduce_op)n->ip[0], n->ip[1], &gyv, n->aux[0], &dv));
    return gpuml_ad_grad_commit(t, x, dst, "reduce backward");
}

/* Reduce x viewed with shape xs over axis ax into a var of shape ys. */
static gpuml_status ad_reduce_view(gpuml_tape *t, const char *fn, gpuml_reduce_op op, gpuml_var *x, int xnd,
                                   const int64_t *xs, int ax, int ynd, const int64_t *ys, gpuml_var **y)
{
    gpuml_var *o;
    GPUML_TRY(gpuml_ad_new_var(t, GPUML_F32, ynd, ys, &o, fn));
    gpuml_tensor *xv, *arg = NULL;
    GPUML_TRY(gpuml_ad_new_view(t, x->value.data, GPUML_F32, xnd, xs, &xv, fn));
    int64_t rs[GPUML_MAX_DIMS];
    int k = 0;
    for (int d = 0; d < xnd; d++)
        if (d != ax)
            rs[k++] = xs[d];
    gpuml_tensor ov;
    gpuml_tensor_init_view(&ov, o->value.data, o->value.device, GPUML_F32, k, rs);
    if (op == GPUML_REDUCE_MAX || op == GPUML_REDUCE_MIN)
        GPUML_TRY(gpuml_ad_new_tensor(t, GPUML_I64, k, rs, &arg, fn));
    GPUML_TRY(gpuml_reduce(t->ctx, op, xv, ax, &ov, arg));
    if (gpuml_ad_needs_grad(t, &x, 1)) {
        gpuml_node *n;
        GPUML_TRY(gpuml_ad_record(t, "reduce", bw_reduce, &x, 1, &o, 1, &n, fn));
        n->ip[0] = op;
        n->ip[1] = ax;
        n->aux[0] = arg;
        n->aux[1] = xv;
    }
    *y = o;
    return GPUML_OK;
}

gpuml_status gpuml_ad_reduce(gpuml_tape *t, gpuml_reduce_op op, gpuml_var *x, int axis, int keepdim, gpuml_var **y)
{
    static const char fn[] = "gpuml_ad_reduce";
    GPUML_TRY(ad_nonnull(t, fn, 2, "x", (const void *)x, "y", (const void *)y));
    int nd = x->value.ndim, ax = axis < 0 ? axis + nd : axis;
    if (nd == 0 || ax < 0 || ax >= nd)
        return gpuml_fail(t->ctx, GPUML_ERR_INVALID_ARGUMENT, fn, "axis %d is out of range for %d dimensions", axis,
                          nd);
    int64_t ys[GPUML_MAX_DIMS];
    int k = 0;
    for (int d = 0; d < nd; d++) {
        if (d != ax)
            ys[k++] = x->value.shape[d];
        else if (keepdim)
            ys[k++] = 1;
    }
    return ad_reduce_view(t, fn, op, x, nd, x->value.shape, ax, k, ys, y);
}

static gpuml_status ad_all(gpuml_tape *t, const char *fn, gpuml_reduce_op op, gpuml_var *x, gpuml_var **y)
{
    GPUML_TRY(ad_nonnull(t, fn, 2, "x", (const void *)x, "y", (const void *)y));
    int64_t xs[2] = {1, gpuml_tensor_numel(&x->value)}, ys[1] = {1};
    return ad_reduce_view(t, fn, op, x, 2, xs, 1, 1, ys, y);
}

gpuml_status gpuml_ad_sum_all(gpuml_tape *t, gpuml_var *x, gpuml_var **y)
{
    return ad_all(t, "gpuml_ad_sum_all", GPUML_REDUCE_SUM, x, y);
}

gpuml_status gpuml_ad_mean_all(gpuml_tape *t, gpuml_var *x, gpuml_var **y)
{
    return ad_all(t, "gpuml_ad_mean_all", GPUML_REDUCE_MEAN, x, y);
}

/* ---- softmax ----------------------------------------------------------- */
static gpuml_status bw_softmax(gpuml_tape *t, gpuml_node *n)
{
    gpuml_var *y = n->out[0];
    gpuml_tensor *gy = gpuml_ad_out_grad(t, y);
    if (n->ip[0])
        AD_GRAD(t, n->in[0], "log_softmax backward", gpuml_log_softmax_backward(t->ctx, &y->value, gy, dst));
    else
        AD_GRAD(t, n->in[0], "softmax backward", gpuml_softmax_backward(t->ctx, &y->value, gy, dst));
    return GPUML_OK;
}

gpuml_status gpuml_ad_softmax(gpuml_tape *t, gpuml_var *x, int take_log, gpuml_var **y)
{
    static const char fn[] = "gpuml_ad_softmax";
    GPUML_TRY(ad_nonnull(t, fn, 2, "x", (const void *)x, "y", (const void *)y));
    gpuml_var *o;
    GPUML_TRY(gpuml_ad_new_var(t, GPUML_F32, x->value.ndim, x->value.shape, &o, fn));
    GPUML_TRY(take_log ? gpuml_log_softmax(t->ctx, &x->value, &o->value) : gpuml_softmax(t->ctx, &x->value, &o->value));
    if (gpuml_ad_needs_grad(t, &x, 1)) {
        gpuml_node *n;
        GPUML_TRY(gpuml_ad_record(t, take_log ? "log_softmax" : "softmax", bw_softmax, &x, 1, &o, 1, &n, fn));
        n->ip[0] = take_log != 0;
    }
    *y = o;
    return GPUML_OK;
}

/* ---- matmul, linear ---------------------------------------------------- */
static gpuml_status bw_matmul(gpuml_tape *t, gpuml_node *n)
{
    static const char fn[] = "matmul backward";
    gpuml_tensor *gc = gpuml_ad_out_grad(t, n->out[0]), *ga, *gb;
    gpuml_var *a = n->in[0], *b = n->in[1];
    int acc;
    GPUML_TRY(gpuml_ad_grad_native(t, a, &ga, &acc, fn));
    if (ga)
        GPUML_TRY(gpuml_matmul_backward(t->ctx, &a->value, n->ip[0], &b->value, n->ip[1], gc, ga, NULL, acc));
    GPUML_TRY(gpuml_ad_grad_native(t, b, &gb, &acc, fn));
    if (gb)
        GPUML_TRY(gpuml_matmul_backward(t->ctx, &a->value, n->ip[0], &b->value, n->ip[1], gc, NULL, gb, acc));
    return GPUML_OK;
}

gpuml_status gpuml_ad_matmul(gpuml_tape *t, gpuml_var *a, int trans_a, gpuml_var *b, int trans_b, gpuml_var **c)
{
    static const char fn[] = "gpuml_ad_matmul";
    GPUML_TRY(ad_nonnull(t, fn, 3, "a", (const void *)a, "b", (const void *)b, "c", (const void *)c));
    const gpuml_tensor *A = &a->value, *B = &b->value;
    if ((A->ndim != 2 && A->ndim != 3) || B->ndim < 2)
        return gpuml_fail(t->ctx, GPUML_ERR_SHAPE, fn, "a must be 2-D or 3-D and b at least 2-D");
    int o = A->ndim - 2, ob = B->ndim - 2;
    int64_t m = trans_a ? A->shape[o + 1] : A->shape[o];
    int64_t nn = trans_b ? B->shape[ob] : B->shape[ob + 1];
    int64_t cs[3] = {A->shape[0], m, nn};
    gpuml_var *out;
    GPUML_TRY(gpuml_ad_new_var(t, GPUML_F32, A->ndim, A->ndim == 3 ? cs : cs + 1, &out, fn));
    GPUML_TRY(gpuml_matmul(t->ctx, A, trans_a, B, trans_b, &out->value));
    gpuml_var *in[2] = {a, b};
    if (gpuml_ad_needs_grad(t, in, 2)) {
        gpuml_node *n;
        GPUML_TRY(gpuml_ad_record(t, "matmul", bw_matmul, in, 2, &out, 1, &n, fn));
        n->ip[0] = trans_a != 0;
        n->ip[1] = trans_b != 0;
    }
    *c = out;
    return GPUML_OK;
}

static gpuml_status bw_linear(gpuml_tape *t, gpuml_node *n)
{
    static const char fn[] = "linear backward";
    gpuml_var *x = n->in[0], *w = n->in[1], *b = n->in[2];
    gpuml_tensor *gy = gpuml_ad_out_grad(t, n->out[0]);
    AD_GRAD(t, x, fn, gpuml_linear_backward(t->ctx, &x->value, &w->value, gy, dst, NULL, NULL, 0));
    gpuml_tensor *gw, *gb;
    int acc;
    GPUML_TRY(gpuml_ad_grad_native(t, w, &gw, &acc, fn));
    if (gw)
        GPUML_TRY(gpuml_linear_backward(t->ctx, &x->value, &w->value, gy, NULL, gw, NULL, acc));
    if (b) {
        GPUML_TRY(gpuml_ad_grad_native(t, b, &gb, &acc, fn));
        if (gb)
            GPUML_TRY(gpuml_linear_backward(t->ctx, &x->value, &w->value, gy, NULL, NULL, gb, acc));
    }
    return GPUML_OK;
}

gpuml_status gpuml_ad_linear(gpuml_tape *t, gpuml_var *x, gpuml_var *w, gpuml_var *bias, gpuml_var **y)
{
    static const char fn[] = "gpuml_ad_linear";
    GPUML_TRY(ad_nonnull(t, fn, 3, "x", (const void *)x, "w", (const void *)w, "y", (const void *)y));
    const gpuml_tensor *X = &x->value;
    if (X->ndim < 1 || w->value.ndim != 2)
        return gpuml_fail(t->ctx, GPUML_ERR_SHAPE, fn, "expected x [N, in] and w [out, in]");
    int64_t ys[GPUML_MAX_DIMS];
    for (int d = 0; d < X->ndim; d++)
        ys[d] = X->shape[d];
    ys[X->ndim - 1] = w->value.shape[0];
    gpuml_var *o;
    GPUML_TRY(gpuml_ad_new_var(t, GPUML_F32, X->ndim, ys, &o, fn));
    GPUML_TRY(gpuml_linear(t->ctx, X, &w->value, bias ? &bias->value : NULL, &o->value));
    gpuml_var *in[3] = {x, w, bias};
    if (gpuml_ad_needs_grad(t, in, 3)) {
        gpuml_node *n;
        GPUML_TRY(gpuml_ad_record(t, "linear", bw_linear, in, 3, &o, 1, &n, fn));
    }
    *y = o;
    return GPUML_OK;
}

/* ---- reshape (a view) -------------------------------------------------- */
static gpuml_status bw_reshape(gpuml_tape *t, gpuml_node *n)
{
    gpuml_tensor *gy = gpuml_ad_out_grad(t, n->out[0]);
    gpuml_var *x = n->in[0];
    gpuml_tensor gv;
    gpuml_tensor_init_view(&gv, gy->data, gy->device, GPUML_F32, x->value.ndim, x->value.shape);
    AD_GRAD(t, x, "reshape backward", gpuml_tensor_copy(t->ctx, dst, &gv));
    return GPUML_OK;
}

gpuml_status gpuml_ad_reshape(gpuml_tape *t, gpuml_var *x, int ndim, const int64_t *shape, gpuml_var **y)
{
    static const char fn[] = "gpuml_ad_reshape";
    GPUML_TRY(ad_nonnull(t, fn, 2, "x", (const void *)x, "y", (const void *)y));
    if (ndim < 0 || ndim > GPUML_MAX_DIMS || (ndim > 0 && !shape))
        return gpuml_fail(t->ctx, GPUML_ERR_INVALID_ARGUMENT, fn, "ndim %d / shape is invalid", ndim);
    int64_t s[GPUML_MAX_DIMS], known = 1, count = gpuml_tensor_numel(&x->value);
    int infer = -1;
    for (int d = 0; d < ndim; d++) {
        s[d] = shape[d];
        if (shape[d] == -1 && infer < 0)
            infer = d;
        else if (shape[d] < 0)
            return gpuml_fail(t->ctx, GPUML_ERR_INVALID_ARGUMENT, fn, "shape[%d] = %lld is invalid", d,
                              (long long)shape[d]);
        else
            known *= shape[d];
    }
    if (infer >= 0)
        s[infer] = known ? count / known : 0;
    if (gpuml_numel(ndim, s) != count)
        return gpuml_fail(t->ctx, GPUML_ERR_SHAPE, fn, "cannot view %lld elements with the given shape",
                          (long long)count);
    void *meta;
    GPUML_TRY(gpuml_arena_alloc_meta(t->arena, sizeof(gpuml_var), &meta, fn));
    gpuml_var *o = meta;
    memset(o, 0, sizeof *o);
    gpuml_tensor_init_view(&o->value, x->value.data, x->value.device, x->value.dtype, ndim, s);
    gpuml_tensor_init_view(&o->grad, NULL, x->value.device, x->value.dtype, ndim, s);
    if (gpuml_ad_needs_grad(t, &x, 1)) {
        gpuml_node *n;
        GPUML_TRY(gpuml_ad_record(t, "reshape", bw_reshape, &x, 1, &o, 1, &n, fn));
    }
    *y = o;
    return GPUML_OK;
}
