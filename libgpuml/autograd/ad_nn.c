/* Differentiable layer norm, dropout and losses. */
#include "autograd/ad_common.h"

static gpuml_status bw_layernorm(gpuml_tape *t, gpuml_node *n)
{
    static const char fn[] = "layernorm backward";
    gpuml_var *x = n->in[0], *gamma = n->in[1], *beta = n->in[2];
    gpuml_tensor *gy = gpuml_ad_out_grad(t, n->out[0]), *mean = n->aux[0], *rstd = n->aux[1];
    const gpuml_tensor *gv = gamma ? &gamma->value : NULL;
    AD_GRAD(t, x, fn, gpuml_layernorm_backward(t->ctx, &x->value, gv, gy, mean, rstd, dst, NULL, NULL, 0));
    gpuml_var *ps[2] = {gamma, beta};
    for (int i = 0; i < 2; i++) {
        gpuml_tensor *gp;
        int acc;
        GPUML_TRY(gpuml_ad_grad_native(t, ps[i], &gp, &acc, fn));
        if (gp)
            GPUML_TRY(gpuml_layernorm_backward(t->ctx, &x->value, gv, gy, mean, rstd, NULL, i == 0 ? gp : NULL,
                                               i == 1 ? gp : NULL, acc));
    }
    return GPUML_OK;
}

gpuml_status gpuml_ad_layernorm(gpuml_tape *t, gpuml_var *x, gpuml_var *gamma, gpuml_var *beta, float eps,
                                gpuml_var **y)
{
    static const char fn[] = "gpuml_ad_layernorm";
    GPUML_TRY(ad_nonnull(t, fn, 2, "x", (const void *)x, "y", (const void *)y));
    if (x->value.ndim < 1)
        return gpuml_fail(t->ctx, GPUML_ERR_SHAPE, fn, "x is a scalar");
    int64_t c = x->value.shape[x->value.ndim - 1], rows = gpuml_numel(x->value.ndim - 1, x->value.shape);
    gpuml_var *o;
    gpuml_tensor *mean, *rstd;
    GPUML_TRY(gpuml_ad_new_var(t, GPUML_F32, x->value.ndim, x->value.shape, &o, fn));
    GPUML_TRY(gpuml_ad_new_tensor(t, GPUML_F32, 1, &rows, &mean, fn));
    GPUML_TRY(gpuml_ad_new_tensor(t, GPUML_F32, 1, &rows, &rstd, fn));
    (void)c;
    GPUML_TRY(gpuml_layernorm(t->ctx, &x->value, gamma ? &gamma->value : NULL, beta ? &beta->value : NULL, eps,
                              &o->value, mean, rstd));
    gpuml_var *in[3] = {x, gamma, beta};
    if (gpuml_ad_needs_grad(t, in, 3)) {
        gpuml_node *n;
        GPUML_TRY(gpuml_ad_record(t, "layernorm", bw_layernorm, in, 3, &o, 1, &n, fn));
        n->aux[0] = mean;
        n->aux[1] = rstd;
    }
    *y = o;
    return GPUML_OK;
}

static gpuml_status bw_dropout(gpuml_tape *t, gpuml_node *n)
{
    gpuml_tensor *gy = gpuml_ad_out_grad(t, n->out[0]);
    AD_GRAD(t, n->in[0], "dropout backward", gpuml_dropout_backward(t->ctx, n->fp[0], n->u64[0], n->u64[1], gy, dst));
    return GPUML_OK;
}

gpuml_status gpuml_ad_dropout(gpuml_tape *t, gpuml_var *x, float p, gpuml_var **y)
{
    static const char fn[] = "gpuml_ad_dropout";
    GPUML_TRY(ad_nonnull(t, fn, 2, "x", (const void *)x, "y", (const void *)y));
    if (!(p >= 0.0f && p < 1.0f))
        return gpuml_fail(t->ctx, GPUML_ERR_INVALID_ARGUMENT, fn, "p = %g is not in [0, 1)", (double)p);
    if (!t->training || p == 0.0f) {
        *y = x; /* identity */
        return GPUML_OK;
    }
    gpuml_var *o;
    uint64_t counter;
    GPUML_TRY(gpuml_ad_new_var(t, GPUML_F32, x->value.ndim, x->value.shape, &o, fn));
    GPUML_TRY(gpuml_dropout(t->ctx, p, &x->value, &o->value, &counter));
    if (gpuml_ad_needs_grad(t, &x, 1)) {
        gpuml_node *n;
        GPUML_TRY(gpuml_ad_record(t, "dropout", bw_dropout, &x, 1, &o, 1, &n, fn));
        n->fp[0] = p;
        n->u64[0] = t->ctx->rng_seed;
        n->u64[1] = counter;
    }
    *y = o;
    return GPUML_OK;
}

/* ---- losses ------------------------------------------------------------ */
gpuml_status gpuml_ad_mse(gpuml_tape *t, gpuml_var *pred, gpuml_var *target, gpuml_var **loss)
{
    static const char fn[] = "gpuml_ad_mse";
    GPUML_TRY(ad_nonnull(t, fn, 3, "pred", (const void *)pred, "target", (const void *)target, "loss",
                         (const void *)loss));
    GPUML_TRY(gpuml_check_same_shape(t->ctx, fn, "pred", &pred->value, "target", &target->value));
    gpuml_var *d, *sq;
    GPUML_TRY(gpuml_ad_binary(t, GPUML_BINARY_SUB, pred, target, &d));
    GPUML_TRY(gpuml_ad_binary(t, GPUML_BINARY_MUL, d, d, &sq));
    return gpuml_ad_mean_all(t, sq, loss);
}

static gpuml_status bw_bce(gpuml_tape *t, gpuml_node *n)
{
    gpuml_tensor *g = gpuml_ad_out_grad(t, n->out[0]);
    AD_GRAD(t, n->in[0], "bce_logits backward",
            gpuml_bce_logits_backward(t->ctx, &n->in[0]->value, &n->in[1]->value, n->ext[0], g, dst));
    return GPUML_OK;
}

gpuml_status gpuml_ad_bce_logits(gpuml_tape *t, gpuml_var *logits, gpuml_var *target, const gpuml_tensor *pos_weight,
                                 gpuml_var **loss)
{
    static const char fn[] = "gpuml_ad_bce_logits";
    GPUML_TRY(ad_nonnull(t, fn, 3, "logits", (const void *)logits, "target", (const void *)target, "loss",
                         (const void *)loss));
    if (target->requires_grad && !target->is_param && target->producer)
        return gpuml_fail(t->ctx, GPUML_ERR_UNSUPPORTED, fn, "no gradient flows to the targets; detach them");
    gpuml_var *elem;
    GPUML_TRY(gpuml_ad_new_var(t, GPUML_F32, logits->value.ndim, logits->value.shape, &elem, fn));
    GPUML_TRY(gpuml_bce_logits(t->ctx, &logits->value, &target->value, pos_weight, &elem->value));
    if (gpuml_ad_needs_grad(t, &logits, 1)) {
        gpuml_var *in[2] = {logits, target};
        gpuml_node *n;
        GPUML_TRY(gpuml_ad_record(t, "bce_logits", bw_bce, in, 2, &elem, 1, &n, fn));
        n->ext[0] = pos_weight;
    }
    return gpuml_ad_mean_all(t, elem, loss);
}

static gpuml_status bw_ce(gpuml_tape *t, gpuml_node *n)
{
    gpuml_tensor *g = gpuml_ad_out_grad(t, n->out[0]);
    AD_GRAD(t, n->in[0], "cross_entropy backward",
            gpuml_cross_entropy_backward(t->ctx, &n->in[0]->value, n->ext[0], n->aux[0], g, dst));
    return GPUML_OK;
}

gpuml_status gpuml_ad_cross_entropy(gpuml_tape *t, gpuml_var *logits, const gpuml_tensor *labels,
                                    const gpuml_tensor *class_weights, gpuml_var **loss)
{
    static const char fn[] = "gpuml_ad_cross_entropy";
    GPUML_TRY(ad_nonnull(t, fn, 3, "logits", (const void *)logits, "labels", (const void *)labels, "loss",
                         (const void *)loss));
    if (logits->value.ndim != 2)
        return gpuml_fail(t->ctx, GPUML_ERR_SHAPE, fn, "logits must be [N, C]");
    int64_t n = logits->value.shape[0], c = logits->value.shape[1];
    if (class_weights) {
        GPUML_TRY(gpuml_check_dtype(t->ctx, fn, "class_weights", class_weights, GPUML_F32));
        if (class_weights->ndim != 1 || class_weights->shape[0] != c)
            return gpuml_fail(t->ctx, GPUML_ERR_SHAPE, fn, "class_weights must be [%lld]", (long long)c);
    }
    gpuml_var *nll;
    gpuml_tensor *lse;
    GPUML_TRY(gpuml_ad_new_var(t, GPUML_F32, 1, &n, &nll, fn));
    GPUML_TRY(gpuml_ad_new_tensor(t, GPUML_F32, 1, &n, &lse, fn));
    GPUML_TRY(gpuml_cross_entropy(t->ctx, &logits->value, labels, &nll->value, lse));
    if (gpuml_ad_needs_grad(t, &logits, 1)) {
        gpuml_node *node;
        GPUML_TRY(gpuml_ad_record(t, "cross_entropy", bw_ce, &logits, 1, &nll, 1, &node, fn));
        node->ext[0] = labels;
        node->aux[0] = lse;
    }
    /* Weighted mean: w_i = weight of row i's class (0 for an ignored label,
     * which gather_rows gives for an index outside [0, C)). */
    gpuml_tensor *wc, *wrows, wc2;
    int64_t c1[2] = {c, 1}, n1[2] = {n, 1};
    GPUML_TRY(gpuml_ad_new_tensor(t, GPUML_F32, 2, c1, &wc, fn));
    if (class_weights)
        GPUML_TRY(gpuml_tensor_copy(t->ctx, wc, class_weights));
    else
        GPUML_TRY(gpuml_fill(t->ctx, wc, 1.0));
    GPUML_TRY(gpuml_ad_new_tensor(t, GPUML_F32, 2, n1, &wrows, fn));
    GPUML_TRY(gpuml_gather_rows(t->ctx, wc, labels, wrows));
    gpuml_tensor_init_view(&wc2, wrows->data, wrows->device, GPUML_F32, 1, &n);
    gpuml_var *w, *wsum, *weighted, *num;
    GPUML_TRY(gpuml_ad_new_view(t, wrows->data, GPUML_F32, 1, &n, &wrows, fn));
    GPUML_TRY(gpuml_var_input(t, wrows, 0, &w));
    GPUML_TRY(gpuml_ad_sum_all(t, w, &wsum));
    GPUML_TRY(gpuml_ad_binary(t, GPUML_BINARY_MUL, nll, w, &weighted));
    GPUML_TRY(gpuml_ad_sum_all(t, weighted, &num));
    return gpuml_ad_binary(t, GPUML_BINARY_DIV, num, wsum, loss);
}

/* ---- object condensation ---------------------------------------------------- */
static gpuml_status bw_oc(gpuml_tape *t, gpuml_node *n)
{
    static const char fn[] = "object_condensation backward";
    gpuml_var *beta = n->in[0], *coords = n->in[1];
    gpuml_tensor *g = gpuml_ad_out_grad(t, n->out[0]), *gb = NULL, *gc = NULL;
    const gpuml_oc_params *p = (const gpuml_oc_params *)n->aux[2]->data;
    GPUML_TRY(gpuml_ad_grad_begin(t, beta, &gb, fn));
    GPUML_TRY(gpuml_ad_grad_begin(t, coords, &gc, fn));
    if (!gb && !gc)
        return GPUML_OK;
    GPUML_TRY(gpuml_object_condensation_backward(t->ctx, &beta->value, &coords->value, n->ext[0], n->ext[1], p,
                                                 n->aux[0], n->aux[1], g, gb, gc));
    if (gb)
        GPUML_TRY(gpuml_ad_grad_commit(t, beta, gb, fn));
    if (gc)
        GPUML_TRY(gpuml_ad_grad_commit(t, coords, gc, fn));
    return GPUML_OK;
}

gpuml_status gpuml_ad_object_condensation(gpuml_tape *t, gpuml_var *beta, gpuml_var *coords, const gpuml_tensor *truth,
                                          const gpuml_tensor *row_splits, const gpuml_oc_params *params,
                                          gpuml_var **loss, gpuml_tensor *components)
{
    static const char fn[] = "gpuml_ad_object_condensation";
    GPUML_TRY(ad_nonnull(t, fn, 6, "beta", (const void *)beta, "coords", (const void *)coords, "truth",
                         (const void *)truth, "row_splits", (const void *)row_splits, "params", (const void *)params,
                         "loss", (const void *)loss));
    if (row_splits->ndim != 1 || row_splits->shape[0] < 1)
        return gpuml_fail(t->ctx, GPUML_ERR_SHAPE, fn, "row_splits must be [B+1]");
    int64_t one = 1, ab[2] = {row_splits->shape[0] - 1, params->max_objects > 0 ? params->max_objects : 1};
    int64_t sb[2] = {ab[0], 6}, pbytes = (int64_t)sizeof(gpuml_oc_params);
    gpuml_var *o;
    gpuml_tensor *alpha, *stats, *pcopy;
    GPUML_TRY(gpuml_ad_new_var(t, GPUML_F32, 1, &one, &o, fn));
    GPUML_TRY(gpuml_ad_new_tensor(t, GPUML_I64, 2, ab, &alpha, fn));
    GPUML_TRY(gpuml_ad_new_tensor(t, GPUML_F32, 2, sb, &stats, fn));
    GPUML_TRY(gpuml_object_condensation(t->ctx, &beta->value, &coords->value, truth, row_splits, params, &o->value,
                                        components, alpha, stats));
    gpuml_var *in[2] = {beta, coords};
    if (gpuml_ad_needs_grad(t, in, 2)) {
        gpuml_node *n;
        GPUML_TRY(gpuml_ad_record(t, "object_condensation", bw_oc, in, 2, &o, 1, &n, fn));
        /* the parameters are host data: keep a copy in the arena's host region */
        void *mem;
        GPUML_TRY(gpuml_arena_alloc_meta(t->arena, sizeof(gpuml_tensor) + (size_t)pbytes, &mem, fn));
        pcopy = mem;
        gpuml_tensor_init_view(pcopy, (char *)mem + sizeof(gpuml_tensor), t->ctx->device, GPUML_U8, 1, &pbytes);
        *(gpuml_oc_params *)pcopy->data = *params;
        n->aux[0] = alpha;
        n->aux[1] = stats;
        n->aux[2] = pcopy;
        n->ext[0] = truth;
        n->ext[1] = row_splits;
    }
    *loss = o;
    return GPUML_OK;
}
