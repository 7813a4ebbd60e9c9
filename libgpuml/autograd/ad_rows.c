/* Differentiable row ops: gather, per-event pooling, concat, split. */
#include "autograd/ad_common.h"

static gpuml_status bw_gather(gpuml_tape *t, gpuml_node *n)
{
    static const char fn[] = "gather_rows backward";
    gpuml_tensor *gy = gpuml_ad_out_grad(t, n->out[0]), *gx;
    int acc;
    GPUML_TRY(gpuml_ad_grad_native(t, n->in[0], &gx, &acc, fn));
    if (!gx)
        return GPUML_OK;
    if (!acc)
        GPUML_TRY(gpuml_fill(t->ctx, gx, 0.0));
    return gpuml_scatter_add_rows(t->ctx, gy, n->ext[0], gx);
}

gpuml_status gpuml_ad_gather_rows(gpuml_tape *t, gpuml_var *x, const gpuml_tensor *idx, gpuml_var **y)
{
    static const char fn[] = "gpuml_ad_gather_rows";
    GPUML_TRY(ad_nonnull(t, fn, 3, "x", (const void *)x, "idx", (const void *)idx, "y", (const void *)y));
    if (x->value.ndim < 1 || idx->ndim != 1)
        return gpuml_fail(t->ctx, GPUML_ERR_SHAPE, fn, "expected x [N, ...] and idx [M]");
    int64_t s[GPUML_MAX_DIMS];
    for (int d = 0; d < x->value.ndim; d++)
        s[d] = x->value.shape[d];
    s[0] = idx->shape[0];
    gpuml_var *o;
    GPUML_TRY(gpuml_ad_new_var(t, x->value.dtype, x->value.ndim, s, &o, fn));
    GPUML_TRY(gpuml_gather_rows(t->ctx, &x->value, idx, &o->value));
    if (gpuml_ad_needs_grad(t, &x, 1)) {
        gpuml_node *n;
        GPUML_TRY(gpuml_ad_record(t, "gather_rows", bw_gather, &x, 1, &o, 1, &n, fn));
        n->ext[0] = idx;
    }
    *y = o;
    return GPUML_OK;
}

static gpuml_status bw_segment(gpuml_tape *t, gpuml_node *n)
{
    gpuml_tensor *gy = gpuml_ad_out_grad(t, n->out[0]);
    AD_GRAD(t, n->in[0], "segment_reduce backward",
            gpuml_segment_reduce_backward(t->ctx, (gpuml_reduce_op)n->ip[0], n->ext[0], gy, n->aux[0], dst));
    return GPUML_OK;
}

gpuml_status gpuml_ad_segment_reduce(gpuml_tape *t, gpuml_reduce_op op, gpuml_var *x, const gpuml_tensor *row_splits,
                                     gpuml_var **y)
{
    static const char fn[] = "gpuml_ad_segment_reduce";
    GPUML_TRY(ad_nonnull(t, fn, 3, "x", (const void *)x, "row_splits", (const void *)row_splits, "y",
                         (const void *)y));
    if (x->value.ndim != 2 || row_splits->ndim != 1)
        return gpuml_fail(t->ctx, GPUML_ERR_SHAPE, fn, "expected x [N, C] and row_splits [B+1]");
    int64_t s[2] = {row_splits->shape[0] - 1, x->value.shape[1]};
    gpuml_var *o;
    gpuml_tensor *arg = NULL;
    GPUML_TRY(gpuml_ad_new_var(t, GPUML_F32, 2, s, &o, fn));
    if (op == GPUML_REDUCE_MAX)
        GPUML_TRY(gpuml_ad_new_tensor(t, GPUML_I64, 2, s, &arg, fn));
    GPUML_TRY(gpuml_segment_reduce(t->ctx, op, &x->value, row_splits, &o->value, arg));
    if (gpuml_ad_needs_grad(t, &x, 1)) {
        gpuml_node *n;
        GPUML_TRY(gpuml_ad_record(t, "segment_reduce", bw_segment, &x, 1, &o, 1, &n, fn));
        n->ip[0] = op;
        n->aux[0] = arg;
        n->ext[0] = row_splits;
    }
    *y = o;
    return GPUML_OK;
}

/* Gradient pieces for concat's inputs / split's outputs: each var's
 * destination, or an arena temporary when that var takes no gradient. */
static gpuml_status piece_grads(gpuml_tape *t, gpuml_var *const *vars, int n, gpuml_tensor **dsts, const char *fn)
{
    for (int i = 0; i < n; i++) {
        GPUML_TRY(gpuml_ad_grad_begin(t, vars[i], &dsts[i], fn));
        if (!dsts[i])
            GPUML_TRY(gpuml_ad_new_tensor(t, GPUML_F32, vars[i]->value.ndim, vars[i]->value.shape, &dsts[i], fn));
    }
    return GPUML_OK;
}

static gpuml_status bw_concat(gpuml_tape *t, gpuml_node *n)
{
    static const char fn[] = "concat backward";
    gpuml_tensor *gy = gpuml_ad_out_grad(t, n->out[0]), **dsts;
    void *mem;
    GPUML_TRY(gpuml_arena_alloc_meta(t->arena, (size_t)n->n_in * sizeof *dsts, &mem, fn));
    dsts = mem;
    GPUML_TRY(piece_grads(t, n->in, n->n_in, dsts, fn));
    GPUML_TRY(gpuml_split(t->ctx, gy, n->n_in, dsts));
    for (int i = 0; i < n->n_in; i++)
        if (n->in[i]->requires_grad)
            GPUML_TRY(gpuml_ad_grad_commit(t, n->in[i], dsts[i], fn));
    return GPUML_OK;
}

gpuml_status gpuml_ad_concat(gpuml_tape *t, int nx, gpuml_var *const *xs, gpuml_var **y)
{
    static const char fn[] = "gpuml_ad_concat";
    GPUML_TRY(ad_nonnull(t, fn, 2, "xs", (const void *)xs, "y", (const void *)y));
    if (nx < 1)
        return gpuml_fail(t->ctx, GPUML_ERR_INVALID_ARGUMENT, fn, "need at least one input");
    const gpuml_tensor **vals;
    void *mem;
    GPUML_TRY(gpuml_arena_alloc_meta(t->arena, (size_t)nx * sizeof *vals, &mem, fn));
    vals = mem;
    int64_t s[GPUML_MAX_DIMS], total = 0;
    for (int i = 0; i < nx; i++) {
        if (!xs[i] || xs[i]->value.ndim < 1)
            return gpuml_fail(t->ctx, GPUML_ERR_INVALID_ARGUMENT, fn, "xs[%d] is NULL or a scalar", i);
        vals[i] = &xs[i]->value;
        total += xs[i]->value.shape[xs[i]->value.ndim - 1];
    }
    int nd = xs[0]->value.ndim;
    for (int d = 0; d < nd; d++)
        s[d] = xs[0]->value.shape[d];
    s[nd - 1] = total;
    gpuml_var *o;
    GPUML_TRY(gpuml_ad_new_var(t, xs[0]->value.dtype, nd, s, &o, fn));
    GPUML_TRY(gpuml_concat(t->ctx, nx, vals, &o->value));
    if (gpuml_ad_needs_grad(t, xs, nx)) {
        gpuml_node *n;
        GPUML_TRY(gpuml_ad_record(t, "concat", bw_concat, xs, nx, &o, 1, &n, fn));
    }
    *y = o;
    return GPUML_OK;
}

static gpuml_status bw_split(gpuml_tape *t, gpuml_node *n)
{
    static const char fn[] = "split backward";
    const gpuml_tensor **gs;
    void *mem;
    GPUML_TRY(gpuml_arena_alloc_meta(t->arena, (size_t)n->n_out * sizeof *gs, &mem, fn));
    gs = mem;
    for (int i = 0; i < n->n_out; i++) {
        gpuml_tensor *g = gpuml_ad_out_grad(t, n->out[i]);
        if (!g) { /* this piece got no gradient: zeros */
            GPUML_TRY(gpuml_ad_new_tensor(t, GPUML_F32, n->out[i]->value.ndim, n->out[i]->value.shape, &g, fn));
            GPUML_TRY(gpuml_fill(t->ctx, g, 0.0));
        }
        gs[i] = g;
    }
    AD_GRAD(t, n->in[0], fn, gpuml_concat(t->ctx, n->n_out, gs, dst));
    return GPUML_OK;
}

gpuml_status gpuml_ad_split(gpuml_tape *t, gpuml_var *x, int nout, const int64_t *widths, gpuml_var **ys)
{
    static const char fn[] = "gpuml_ad_split";
    GPUML_TRY(ad_nonnull(t, fn, 3, "x", (const void *)x, "widths", (const void *)widths, "ys", (const void *)ys));
    int nd = x->value.ndim;
    if (nout < 1 || nd < 1)
        return gpuml_fail(t->ctx, GPUML_ERR_INVALID_ARGUMENT, fn, "need n >= 1 and a non-scalar x");
    int64_t total = 0;
    for (int i = 0; i < nout; i++) {
        if (widths[i] < 0)
            return gpuml_fail(t->ctx, GPUML_ERR_INVALID_ARGUMENT, fn, "widths[%d] is negative", i);
        total += widths[i];
    }
    if (total != x->value.shape[nd - 1])
        return gpuml_fail(t->ctx, GPUML_ERR_SHAPE, fn, "widths sum to %lld but x has %lld columns", (long long)total,
                          (long long)x->value.shape[nd - 1]);
    gpuml_var **outs;
    gpuml_tensor **vals;
    void *mem;
    GPUML_TRY(gpuml_arena_alloc_meta(t->arena, (size_t)nout * (sizeof *outs + sizeof *vals), &mem, fn));
    outs = mem;
    vals = (gpuml_tensor **)(outs + nout);
    int64_t s[GPUML_MAX_DIMS];
    for (int d = 0; d < nd; d++)
        s[d] = x->value.shape[d];
    for (int i = 0; i < nout; i++) {
        s[nd - 1] = widths[i];
        GPUML_TRY(gpuml_ad_new_var(t, x->value.dtype, nd, s, &outs[i], fn));
        vals[i] = &outs[i]->value;
    }
    GPUML_TRY(gpuml_split(t->ctx, &x->value, nout, vals));
    if (gpuml_ad_needs_grad(t, &x, 1)) {
        gpuml_node *n;
        GPUML_TRY(gpuml_ad_record(t, "split", bw_split, &x, 1, outs, nout, &n, fn));
    }
    for (int i = 0; i < nout; i++)
        ys[i] = outs[i];
    return GPUML_OK;
}
