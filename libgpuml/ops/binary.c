/* Element-wise binary ops with broadcasting, the reverse reduction, and the
 * simple element-wise helpers (scale, axpy, fill, cast). */
#include <string.h>

#include "ops/dispatch.h"
#include "registry.h"

static const char *const binary_names[GPUML_BINARY_COUNT_] = {GPUML_REG_NAMES(BINARY)};

const char *gpuml_binary_op_name(gpuml_binary_op op)
{
    return ((int)op >= 0 && op < GPUML_BINARY_COUNT_) ? binary_names[op] : "?";
}

/* Size of dimension d (counted in out's ndim, right-aligned) of t. */
static int64_t aligned_dim(const gpuml_tensor *t, int out_ndim, int d)
{
    int k = d - (out_ndim - t->ndim);
    return k < 0 ? 1 : t->shape[k];
}

/* Contiguous element stride of t's dimension aligned at d (0 if missing). */
static int64_t aligned_stride(const gpuml_tensor *t, int out_ndim, int d)
{
    int k = d - (out_ndim - t->ndim);
    if (k < 0)
        return 0;
    int64_t s = 1;
    for (int j = k + 1; j < t->ndim; j++)
        s *= t->shape[j];
    return s;
}

/* Checks that out's shape is the broadcast of a and b, then builds the
 * collapsed descriptor. */
static gpuml_status make_bcast(gpuml_ctx *ctx, const char *fn, const gpuml_tensor *a, const gpuml_tensor *b,
                               const gpuml_tensor *out, gpuml_k_bcast *bc)
{
    int nd = out->ndim;
    char sa[160], sb[160], so[160];
    if (a->ndim > nd || b->ndim > nd)
        goto mismatch;
    memset(bc, 0, sizeof *bc);
    for (int d = 0; d < nd; d++) {
        int64_t S = out->shape[d], A = aligned_dim(a, nd, d), B = aligned_dim(b, nd, d);
        int64_t want = A == 1 ? B : A;
        if ((A != 1 && B != 1 && A != B) || want != S)
            goto mismatch;
        if (S == 1)
            continue; /* contributes nothing to any offset */
        int64_t stra = A == 1 ? 0 : aligned_stride(a, nd, d);
        int64_t strb = B == 1 ? 0 : aligned_stride(b, nd, d);
        int n = bc->ndim;
        if (n > 0 && bc->sa[n - 1] == stra * S && bc->sb[n - 1] == strb * S) {
            bc->shape[n - 1] *= S; /* continues the previous dimension */
            bc->sa[n - 1] = stra;
            bc->sb[n - 1] = strb;
        } else {
            bc->shape[n] = S;
            bc->sa[n] = stra;
            bc->sb[n] = strb;
            bc->ndim++;
        }
    }
    return GPUML_OK;
mismatch:
    return gpuml_fail(ctx, GPUML_ERR_SHAPE, fn, "shapes a %s and b %s do not broadcast to out %s",
                      gpuml_shape_str(a->ndim, a->shape, sa, sizeof sa), gpuml_shape_str(b->ndim, b->shape, sb, sizeof sb),
                      gpuml_shape_str(out->ndim, out->shape, so, sizeof so));
}

static bool same_shape(const gpuml_tensor *a, const gpuml_tensor *b)
{
    if (a->ndim != b->ndim)
        return false;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i])
            return false;
    return true;
}

gpuml_status gpuml_binary(gpuml_ctx *ctx, gpuml_binary_op op, const gpuml_tensor *a, const gpuml_tensor *b,
                          gpuml_tensor *out)
{
    static const char fn[] = "gpuml_binary";
    if (!ctx)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "argument 'ctx' is NULL");
    if ((int)op < 0 || op >= GPUML_BINARY_COUNT_)
        return gpuml_fail(ctx, GPUML_ERR_INVALID_ARGUMENT, fn, "op %d is not a gpuml_binary_op", (int)op);
    GPUML_TRY(gpuml_check_dtype(ctx, fn, "a", a, GPUML_F32));
    GPUML_TRY(gpuml_check_dtype(ctx, fn, "b", b, GPUML_F32));
    GPUML_TRY(gpuml_check_dtype(ctx, fn, "out", out, GPUML_F32));
    gpuml_k_bcast bc;
    GPUML_TRY(make_bcast(ctx, fn, a, b, out, &bc));
    /* Empty first: nothing is written, and empty tensors may share any
     * address (an arena's zero-byte blocks; an event of 0 rows batched
     * alone in the engine). */
    if (gpuml_tensor_numel(out) == 0)
        return GPUML_OK;
    if ((out->data == a->data && !same_shape(out, a)) || (out->data == b->data && !same_shape(out, b)))
        return gpuml_fail(ctx, GPUML_ERR_INVALID_ARGUMENT, fn, "out aliases an input of a different shape");
    return GPUML_LAUNCH(ctx, binary, op, bc, a->data, b->data, out->data);
}

/* Descriptor that sums an out-shaped dense tensor down to t's shape. */
static void make_sumto(const gpuml_tensor *t, int nd, const int64_t *oshape, gpuml_k_sumto *st)
{
    memset(st, 0, sizeof *st);
    st->red_count = 1;
    int64_t stride = 1;
    int last = -1; /* 0 kept, 1 reduced */
    for (int d = nd - 1; d >= 0; d--) {
        int64_t S = oshape[d];
        if (S == 1)
            continue;
        int red = aligned_dim(t, nd, d) != S;
        int64_t *shp = red ? st->red_shape : st->keep_shape;
        int64_t *str = red ? st->red_stride : st->keep_stride;
        int *cnt = red ? &st->nred : &st->nkeep;
        if (last == red) { /* merge with the dimension to the right */
            shp[*cnt - 1] *= S;
        } else {
            shp[*cnt] = S;
            str[*cnt] = stride;
            (*cnt)++;
        }
        if (red)
            st->red_count *= S;
        last = red;
        stride *= S;
    }
    /* Built innermost first; the kernel wants outermost first. */
    for (int i = 0; i < st->nkeep / 2; i++) {
        int j = st->nkeep - 1 - i;
        int64_t t0 = st->keep_shape[i], t1 = st->keep_stride[i];
        st->keep_shape[i] = st->keep_shape[j], st->keep_stride[i] = st->keep_stride[j];
        st->keep_shape[j] = t0, st->keep_stride[j] = t1;
    }
    for (int i = 0; i < st->nred / 2; i++) {
        int j = st->nred - 1 - i;
        int64_t t0 = st->red_shape[i], t1 = st->red_stride[i];
        st->red_shape[i] = st->red_shape[j], st->red_stride[i] = st->red_stride[j];
        st->red_shape[j] = t0, st->red_stride[j] = t1;
    }
}

gpuml_status gpuml_sum_to_shape(gpuml_ctx *ctx, const gpuml_tensor *gin, gpuml_tensor *out)
{
    static const char fn[] = "gpuml_sum_to_shape";
    if (!ctx)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "argument 'ctx' is NULL");
    GPUML_TRY(gpuml_check_dtype(ctx, fn, "gin", gin, GPUML_F32));
    GPUML_TRY(gpuml_check_dtype(ctx, fn, "out", out, GPUML_F32));
    /* out must broadcast to gin's shape */
    bool fits = out->ndim <= gin->ndim;
    for (int d = 0; fits && d < gin->ndim; d++) {
        int64_t o = aligned_dim(out, gin->ndim, d);
        fits = o == 1 || o == gin->shape[d];
    }
    if (!fits) {
        char s1[160], s2[160];
        return gpuml_fail(ctx, GPUML_ERR_SHAPE, fn, "out %s does not broadcast to gin %s",
                          gpuml_shape_str(out->ndim, out->shape, s1, sizeof s1),
                          gpuml_shape_str(gin->ndim, gin->shape, s2, sizeof s2));
    }
    if (gin->data == out->data && !same_shape(gin, out))
        return gpuml_fail(ctx, GPUML_ERR_INVALID_ARGUMENT, fn, "out aliases gin");
    int64_t nout = gpuml_tensor_numel(out);
    if (nout == 0)
        return GPUML_OK;
    if (same_shape(gin, out))
        return gpuml_tensor_copy(ctx, out, gin);
    gpuml_k_sumto st;
    make_sumto(out, gin->ndim, gin->shape, &st);
    if (gpuml_tensor_numel(gin) == 0)
        return GPUML_LAUNCH(ctx, fill, nout, out->data, GPUML_F32, 0.0);
    gpuml_k_rjob j = {.op = GPUML_K_RSUMTO, .v = {nout, st.red_count, 1, 0, 0}, .xf = gin->data, .out = out->data,
                      .st = st};
    return gpuml_reduce_run(ctx, j, fn);
}

gpuml_status gpuml_binary_backward(gpuml_ctx *ctx, gpuml_binary_op op, const gpuml_tensor *a, const gpuml_tensor *b,
                                   const gpuml_tensor *gout, gpuml_tensor *ga, gpuml_tensor *gb)
{
    static const char fn[] = "gpuml_binary_backward";
    if (!ctx)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "argument 'ctx' is NULL");
    if ((int)op < 0 || op >= GPUML_BINARY_COUNT_)
        return gpuml_fail(ctx, GPUML_ERR_INVALID_ARGUMENT, fn, "op %d is not a gpuml_binary_op", (int)op);
    GPUML_TRY(gpuml_check_dtype(ctx, fn, "a", a, GPUML_F32));
    GPUML_TRY(gpuml_check_dtype(ctx, fn, "b", b, GPUML_F32));
    GPUML_TRY(gpuml_check_dtype(ctx, fn, "gout", gout, GPUML_F32));
    gpuml_k_bcast bc;
    GPUML_TRY(make_bcast(ctx, fn, a, b, gout, &bc));
    if (ga) {
        GPUML_TRY(gpuml_check_dtype(ctx, fn, "ga", ga, GPUML_F32));
        GPUML_TRY(gpuml_check_same_shape(ctx, fn, "a", a, "ga", ga));
    }
    if (gb) {
        GPUML_TRY(gpuml_check_dtype(ctx, fn, "gb", gb, GPUML_F32));
        GPUML_TRY(gpuml_check_same_shape(ctx, fn, "b", b, "gb", gb));
    }
    int64_t n = gpuml_tensor_numel(gout);
    if (n == 0) {
        /* Nothing flows back; broadcast inputs still get zeros. */
        if (ga)
            GPUML_TRY(gpuml_memzero(ctx, ga->data, gpuml_tensor_nbytes(ga), fn));
        if (gb)
            GPUML_TRY(gpuml_memzero(ctx, gb->data, gpuml_tensor_nbytes(gb), fn));
        return GPUML_OK;
    }
    bool direct_a = ga && same_shape(ga, gout), direct_b = gb && same_shape(gb, gout);
    bool need_a = ga && !direct_a, need_b = gb && !direct_b;
    size_t bytes = (size_t)n * sizeof(float);
    void *tmp = NULL;
    if (need_a || need_b)
        GPUML_TRY(gpuml_scratch_alloc(ctx, bytes * ((need_a ? 1 : 0) + (need_b ? 1 : 0)), &tmp, fn));
    float *fa = direct_a ? ga->data : need_a ? tmp : NULL;
    float *fb = direct_b ? gb->data : need_b ? (float *)tmp + (need_a ? n : 0) : NULL;
    gpuml_status st = GPUML_LAUNCH(ctx, binary_grad, op, bc, a->data, b->data, gout->data, fa, fb);
    gpuml_tensor full;
    if (st == GPUML_OK && need_a) {
        gpuml_tensor_init_view(&full, fa, ctx->device, GPUML_F32, gout->ndim, gout->shape);
        st = gpuml_sum_to_shape(ctx, &full, ga);
    }
    if (st == GPUML_OK && need_b) {
        gpuml_tensor_init_view(&full, fb, ctx->device, GPUML_F32, gout->ndim, gout->shape);
        st = gpuml_sum_to_shape(ctx, &full, gb);
    }
    gpuml_scratch_free(ctx, tmp, bytes * ((need_a ? 1 : 0) + (need_b ? 1 : 0)));
    return st;
}

#define NAMED_BINARY(name, OP)                                                                             \
    gpuml_status gpuml_##name(gpuml_ctx *ctx, const gpuml_tensor *a, const gpuml_tensor *b, gpuml_tensor *out) \
    {                                                                                                      \
        return gpuml_binary(ctx, OP, a, b, out);                                                           \
    }
NAMED_BINARY(add, GPUML_BINARY_ADD)
NAMED_BINARY(sub, GPUML_BINARY_SUB)
NAMED_BINARY(mul, GPUML_BINARY_MUL)
NAMED_BINARY(div, GPUML_BINARY_DIV)
NAMED_BINARY(maximum, GPUML_BINARY_MAXIMUM)
NAMED_BINARY(minimum, GPUML_BINARY_MINIMUM)

gpuml_status gpuml_scale(gpuml_ctx *ctx, float alpha, const gpuml_tensor *x, gpuml_tensor *y)
{
    static const char fn[] = "gpuml_scale";
    if (!ctx)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "argument 'ctx' is NULL");
    GPUML_TRY(gpuml_check_dtype(ctx, fn, "x", x, GPUML_F32));
    GPUML_TRY(gpuml_check_dtype(ctx, fn, "y", y, GPUML_F32));
    GPUML_TRY(gpuml_check_same_shape(ctx, fn, "x", x, "y", y));
    return GPUML_LAUNCH(ctx, axpby, gpuml_tensor_numel(x), alpha, x->data, 0.0f, y->data);
}

gpuml_status gpuml_axpy(gpuml_ctx *ctx, float alpha, const gpuml_tensor *x, gpuml_tensor *y)
{
    static const char fn[] = "gpuml_axpy";
    if (!ctx)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "argument 'ctx' is NULL");
    GPUML_TRY(gpuml_check_dtype(ctx, fn, "x", x, GPUML_F32));
    GPUML_TRY(gpuml_check_dtype(ctx, fn, "y", y, GPUML_F32));
    GPUML_TRY(gpuml_check_same_shape(ctx, fn, "x", x, "y", y));
    return GPUML_LAUNCH(ctx, axpby, gpuml_tensor_numel(x), alpha, x->data, 1.0f, y->data);
}

gpuml_status gpuml_fill(gpuml_ctx *ctx, gpuml_tensor *t, double value)
{
    static const char fn[] = "gpuml_fill";
    if (!ctx)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "argument 'ctx' is NULL");
    GPUML_TRY(gpuml_check_tensor(ctx, fn, "t", t));
    return GPUML_LAUNCH(ctx, fill, gpuml_tensor_numel(t), t->data, (int)t->dtype, value);
}

gpuml_status gpuml_cast(gpuml_ctx *ctx, const gpuml_tensor *x, gpuml_tensor *y)
{
    static const char fn[] = "gpuml_cast";
    if (!ctx)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "argument 'ctx' is NULL");
    GPUML_TRY(gpuml_check_tensor(ctx, fn, "x", x));
    GPUML_TRY(gpuml_check_tensor(ctx, fn, "y", y));
    if (gpuml_tensor_numel(x) != gpuml_tensor_numel(y)) {
        char sx[160], sy[160];
        return gpuml_fail(ctx, GPUML_ERR_SHAPE, fn, "x %s and y %s differ in element count",
                          gpuml_shape_str(x->ndim, x->shape, sx, sizeof sx), gpuml_shape_str(y->ndim, y->shape, sy, sizeof sy));
    }
    if (x->dtype == y->dtype)
        return gpuml_tensor_copy(ctx, y, x);
    if (x->data == y->data && gpuml_tensor_numel(x) > 0)
        return gpuml_fail(ctx, GPUML_ERR_INVALID_ARGUMENT, fn, "y aliases x with another dtype");
    return GPUML_LAUNCH(ctx, cast, gpuml_tensor_numel(x), x->data, (int)x->dtype, y->data, (int)y->dtype);
}
