/* Differentiable graph ops: kNN distances, GravNet aggregation, EdgeConv's
 * first layer and neighbour aggregation, batch norm. The reverse adjacency
 * of a graph is built once, with the graph, and shared by every backward. */
#include <string.h>

#include "autograd/ad_common.h"
#include "graph/graph_common.h"

/* ---- kNN ------------------------------------------------------------------ */
static gpuml_status bw_knn(gpuml_tape *t, gpuml_node *n)
{
    gpuml_var *coords = n->in[0];
    const gpuml_ad_graph *g = (const gpuml_ad_graph *)n->ext[0];
    gpuml_tensor *gd = gpuml_ad_out_grad(t, n->out[0]);
    AD_GRAD(t, coords, "knn backward",
            gpuml_knn_backward(t->ctx, &coords->value, g->idx, gd, g->rowptr, g->col, dst));
    return GPUML_OK;
}

gpuml_status gpuml_ad_knn(gpuml_tape *t, gpuml_var *coords, const gpuml_tensor *row_splits, int k, float max_radius,
                          gpuml_ad_graph **graph, gpuml_var **dist2)
{
    static const char fn[] = "gpuml_ad_knn";
    GPUML_TRY(ad_nonnull(t, fn, 4, "coords", (const void *)coords, "row_splits", (const void *)row_splits, "graph",
                         (const void *)graph, "dist2", (const void *)dist2));
    if (coords->value.ndim != 2)
        return gpuml_fail(t->ctx, GPUML_ERR_SHAPE, fn, "coords must be [N, D]");
    int64_t n = coords->value.shape[0], shape[2] = {n, k > 0 ? k : 1};
    void *mem;
    GPUML_TRY(gpuml_arena_alloc_meta(t->arena, sizeof(gpuml_ad_graph), &mem, fn));
    gpuml_ad_graph *g = mem;
    memset(g, 0, sizeof *g);
    g->row_splits = row_splits;
    gpuml_var *d2;
    GPUML_TRY(gpuml_ad_new_tensor(t, GPUML_I32, 2, shape, &g->idx, fn));
    GPUML_TRY(gpuml_ad_new_var(t, GPUML_F32, 2, shape, &d2, fn));
    bool record = gpuml_ad_needs_grad(t, &coords, 1);
    /* The reverse adjacency serves the backward of every op on this graph,
     * so it is built whenever anything is recorded, not only for coords. */
    if (t->grad_enabled) {
        int64_t rp = n + 1, nc = n * shape[1];
        GPUML_TRY(gpuml_ad_new_tensor(t, GPUML_I64, 1, &rp, &g->rowptr, fn));
        GPUML_TRY(gpuml_ad_new_tensor(t, GPUML_I64, 1, &nc, &g->col, fn));
    }
    gpuml_knn_params p;
    gpuml_knn_params_init_defaults(&p);
    p.k = k;
    p.max_radius = max_radius;
    GPUML_TRY(gpuml_knn_ex(t->ctx, &coords->value, row_splits, &p, g->idx, &d2->value, g->rowptr, g->col));
    if (record) {
        gpuml_node *node;
        GPUML_TRY(gpuml_ad_record(t, "knn", bw_knn, &coords, 1, &d2, 1, &node, fn));
        node->ext[0] = (const gpuml_tensor *)g; /* kept by pointer: lives in the arena */
    }
    *graph = g;
    *dist2 = d2;
    return GPUML_OK;
}

/* Reverse adjacency for an op whose graph was built without recording. */
static void graph_csr(const gpuml_ad_graph *g, const gpuml_tensor **rowptr, const gpuml_tensor **col)
{
    *rowptr = g->rowptr;
    *col = g->col;
}

/* ---- GravNet aggregation ----------------------------------------------------- */
static gpuml_status bw_gravnet(gpuml_tape *t, gpuml_node *n)
{
    static const char fn[] = "gravnet_aggregate backward";
    gpuml_var *h = n->in[0], *d2 = n->in[1];
    const gpuml_ad_graph *g = (const gpuml_ad_graph *)n->ext[0];
    gpuml_tensor *go = gpuml_ad_out_grad(t, n->out[0]), *gh = NULL, *gd = NULL;
    GPUML_TRY(gpuml_ad_grad_begin(t, h, &gh, fn));
    GPUML_TRY(gpuml_ad_grad_begin(t, d2, &gd, fn));
    if (!gh && !gd)
        return GPUML_OK;
    const gpuml_tensor *rp, *col;
    graph_csr(g, &rp, &col);
    GPUML_TRY(gpuml_gravnet_aggregate_backward(t->ctx, &h->value, g->idx, &d2->value, n->fp[0], n->ip[0], n->aux[0],
                                               go, rp, col, gh, gd));
    if (gh)
        GPUML_TRY(gpuml_ad_grad_commit(t, h, gh, fn));
    if (gd)
        GPUML_TRY(gpuml_ad_grad_commit(t, d2, gd, fn));
    return GPUML_OK;
}

gpuml_status gpuml_ad_gravnet_aggregate(gpuml_tape *t, gpuml_var *h, const gpuml_ad_graph *g, gpuml_var *dist2,
                                        float alpha, int exclude_self, gpuml_var **out)
{
    static const char fn[] = "gpuml_ad_gravnet_aggregate";
    GPUML_TRY(ad_nonnull(t, fn, 4, "h", (const void *)h, "graph", (const void *)g, "dist2", (const void *)dist2,
                         "out", (const void *)out));
    if (h->value.ndim != 2)
        return gpuml_fail(t->ctx, GPUML_ERR_SHAPE, fn, "h must be [N, P]");
    int64_t s[2] = {h->value.shape[0], 2 * h->value.shape[1]};
    gpuml_var *o;
    gpuml_tensor *argmax = NULL;
    GPUML_TRY(gpuml_ad_new_var(t, GPUML_F32, 2, s, &o, fn));
    gpuml_var *in[2] = {h, dist2};
    bool record = gpuml_ad_needs_grad(t, in, 2);
    if (record)
        GPUML_TRY(gpuml_ad_new_tensor(t, GPUML_I32, 2, h->value.shape, &argmax, fn));
    GPUML_TRY(gpuml_gravnet_aggregate(t->ctx, &h->value, g->idx, &dist2->value, alpha, exclude_self, &o->value,
                                      argmax));
    if (record) {
        gpuml_node *n;
        GPUML_TRY(gpuml_ad_record(t, "gravnet_aggregate", bw_gravnet, in, 2, &o, 1, &n, fn));
        n->aux[0] = argmax;
        n->ext[0] = (const gpuml_tensor *)g;
        n->fp[0] = alpha;
        n->ip[0] = exclude_self != 0;
    }
    *out = o;
    return GPUML_OK;
}

/* ---- EdgeConv: first linear and neighbour aggregation -------------------- */
static gpuml_status bw_edge_first(gpuml_tape *t, gpuml_node *n)
{
    static const char fn[] = "edge_first_linear backward";
    gpuml_var *x = n->in[0], *w = n->in[1], *b = n->in[2];
    const gpuml_ad_graph *g = (const gpuml_ad_graph *)n->ext[0];
    gpuml_tensor *go = gpuml_ad_out_grad(t, n->out[0]), *gx = NULL, *gw = NULL, *gb = NULL;
    int acc_w = 0, acc_b = 0;
    GPUML_TRY(gpuml_ad_grad_begin(t, x, &gx, fn));
    GPUML_TRY(gpuml_ad_grad_native(t, w, &gw, &acc_w, fn));
    if (b)
        GPUML_TRY(gpuml_ad_grad_native(t, b, &gb, &acc_b, fn));
    const gpuml_tensor *rp, *col;
    graph_csr(g, &rp, &col);
    int ex = n->ip[0];
    if (!gb || acc_w == acc_b || !gw) {
        if (gx || gw || gb)
            GPUML_TRY(gpuml_edge_first_linear_backward(t->ctx, &x->value, g->idx, ex, &w->value, go, rp, col, gx, gw,
                                                       gb, gw ? acc_w : acc_b));
    } else { /* the two parameter gradients want different modes */
        GPUML_TRY(gpuml_edge_first_linear_backward(t->ctx, &x->value, g->idx, ex, &w->value, go, rp, col, gx, gw,
                                                   NULL, acc_w));
        GPUML_TRY(gpuml_edge_first_linear_backward(t->ctx, &x->value, g->idx, ex, &w->value, go, rp, col, NULL, NULL,
                                                   gb, acc_b));
    }
    if (gx)
        GPUML_TRY(gpuml_ad_grad_commit(t, x, gx, fn));
    return GPUML_OK;
}

gpuml_status gpuml_ad_edge_first_linear(gpuml_tape *t, gpuml_var *x, const gpuml_ad_graph *g, int exclude_self,
                                        gpuml_var *w, gpuml_var *bias, gpuml_var **out)
{
    static const char fn[] = "gpuml_ad_edge_first_linear";
    GPUML_TRY(ad_nonnull(t, fn, 4, "x", (const void *)x, "graph", (const void *)g, "w", (const void *)w, "out",
                         (const void *)out));
    if (x->value.ndim != 2 || w->value.ndim != 2)
        return gpuml_fail(t->ctx, GPUML_ERR_SHAPE, fn, "expected x [N, F] and w [C, 2F]");
    int64_t s[3] = {x->value.shape[0], g->idx->shape[1] - (exclude_self != 0), w->value.shape[0]};
    gpuml_var *o;
    GPUML_TRY(gpuml_ad_new_var(t, GPUML_F32, 3, s, &o, fn));
    GPUML_TRY(gpuml_edge_first_linear(t->ctx, &x->value, g->idx, exclude_self, &w->value,
                                      bias ? &bias->value : NULL, &o->value));
    gpuml_var *in[3] = {x, w, bias};
    if (gpuml_ad_needs_grad(t, in, 3)) {
        gpuml_node *n;
        GPUML_TRY(gpuml_ad_record(t, "edge_first_linear", bw_edge_first, in, 3, &o, 1, &n, fn));
        n->ext[0] = (const gpuml_tensor *)g;
        n->ip[0] = exclude_self != 0;
    }
    *out = o;
    return GPUML_OK;
}

static gpuml_status bw_neighbour(gpuml_tape *t, gpuml_node *n)
{
    const gpuml_ad_graph *g = (const gpuml_ad_graph *)n->ext[0];
    gpuml_tensor *go = gpuml_ad_out_grad(t, n->out[0]);
    AD_GRAD(t, n->in[0], "neighbour_aggregate backward",
            gpuml_neighbour_aggregate_backward(t->ctx, (gpuml_reduce_op)n->ip[0], g->idx, n->ip[1], go, n->aux[0], dst));
    return GPUML_OK;
}

gpuml_status gpuml_ad_neighbour_aggregate(gpuml_tape *t, gpuml_reduce_op op, gpuml_var *edges, const gpuml_ad_graph *g,
                                          int exclude_self, gpuml_var **out)
{
    static const char fn[] = "gpuml_ad_neighbour_aggregate";
    GPUML_TRY(ad_nonnull(t, fn, 3, "edges", (const void *)edges, "graph", (const void *)g, "out", (const void *)out));
    if (edges->value.ndim != 3)
        return gpuml_fail(t->ctx, GPUML_ERR_SHAPE, fn, "edges must be [N, k_e, C]");
    int64_t s[2] = {edges->value.shape[0], edges->value.shape[2]};
    gpuml_var *o;
    gpuml_tensor *argmax = NULL;
    GPUML_TRY(gpuml_ad_new_var(t, GPUML_F32, 2, s, &o, fn));
    bool record = gpuml_ad_needs_grad(t, &edges, 1);
    if (record && op == GPUML_REDUCE_MAX)
        GPUML_TRY(gpuml_ad_new_tensor(t, GPUML_I32, 2, s, &argmax, fn));
    GPUML_TRY(gpuml_neighbour_aggregate(t->ctx, op, &edges->value, g->idx, exclude_self, &o->value, argmax));
    if (record) {
        gpuml_node *n;
        GPUML_TRY(gpuml_ad_record(t, "neighbour_aggregate", bw_neighbour, &edges, 1, &o, 1, &n, fn));
        n->aux[0] = argmax;
        n->ext[0] = (const gpuml_tensor *)g;
        n->ip[0] = op;
        n->ip[1] = exclude_self != 0;
    }
    *out = o;
    return GPUML_OK;
}

/* ---- batch norm -------------------------------------------------------------- */
static gpuml_status bw_batch_norm(gpuml_tape *t, gpuml_node *n)
{
    static const char fn[] = "batch_norm backward";
    gpuml_var *x = n->in[0], *gamma = n->in[1], *beta = n->in[2];
    gpuml_tensor *gy = gpuml_ad_out_grad(t, n->out[0]), *gx = NULL, *gg = NULL, *gb = NULL;
    gpuml_batch_norm_params p;
    gpuml_batch_norm_params_init_defaults(&p);
    p.training = n->ip[0];
    p.eps = n->fp[0];
    p.momentum = n->fp[1];
    int acc_g = 0, acc_b = 0;
    GPUML_TRY(gpuml_ad_grad_begin(t, x, &gx, fn));
    if (gamma)
        GPUML_TRY(gpuml_ad_grad_native(t, gamma, &gg, &acc_g, fn));
    if (beta)
        GPUML_TRY(gpuml_ad_grad_native(t, beta, &gb, &acc_b, fn));
    const gpuml_tensor *gam = gamma ? &gamma->value : NULL, *bet = beta ? &beta->value : NULL;
    gpuml_bn_fusion fu = {n->ip[1], n->ip[2], n->ip[3]};
    if (!gg || !gb || acc_g == acc_b) {
        GPUML_TRY(gpuml_batch_norm_act_backward(t->ctx, fn, &p, &fu, &x->value, n->ext[0], gam, bet, n->aux[0],
                                                n->aux[1], gy, gx, gg, gb, gg ? acc_g : acc_b));
    } else {
        GPUML_TRY(gpuml_batch_norm_act_backward(t->ctx, fn, &p, &fu, &x->value, n->ext[0], gam, bet, n->aux[0],
                                                n->aux[1], gy, gx, gg, NULL, acc_g));
        GPUML_TRY(gpuml_batch_norm_act_backward(t->ctx, fn, &p, &fu, &x->value, n->ext[0], gam, bet, n->aux[0],
                                                n->aux[1], gy, NULL, NULL, gb, acc_b));
    }
    if (gx)
        GPUML_TRY(gpuml_ad_grad_commit(t, x, gx, fn));
    return GPUML_OK;
}

static gpuml_status ad_batch_norm(gpuml_tape *t, const char *fn, gpuml_bn_fusion fu, gpuml_var *x,
                                  const gpuml_tensor *mask,
                                  gpuml_var *gamma, gpuml_var *beta, gpuml_tensor *running_mean,
                                  gpuml_tensor *running_var, float momentum, float eps, gpuml_var **y)
{
    GPUML_TRY(ad_nonnull(t, fn, 2, "x", (const void *)x, "y", (const void *)y));
    if (x->value.ndim < 1)
        return gpuml_fail(t->ctx, GPUML_ERR_SHAPE, fn, "x is a scalar");
    int64_t c = x->value.shape[x->value.ndim - 1];
    gpuml_var *o;
    gpuml_tensor *smean, *sinv;
    if (fu.agg >= 0) { /* x [n, ke, C] -> y [n, C] */
        if (x->value.ndim != 3)
            return gpuml_fail(t->ctx, GPUML_ERR_SHAPE, fn, "x must be edges [n, k, C], got %d dimensions",
                              x->value.ndim);
        fu.group = x->value.shape[1];
        int64_t ys[2] = {x->value.shape[0], c};
        GPUML_TRY(gpuml_ad_new_var(t, GPUML_F32, 2, ys, &o, fn));
    } else {
        GPUML_TRY(gpuml_ad_new_var(t, GPUML_F32, x->value.ndim, x->value.shape, &o, fn));
    }
    GPUML_TRY(gpuml_ad_new_tensor(t, GPUML_F32, 1, &c, &smean, fn));
    GPUML_TRY(gpuml_ad_new_tensor(t, GPUML_F32, 1, &c, &sinv, fn));
    gpuml_batch_norm_params p;
    gpuml_batch_norm_params_init_defaults(&p);
    p.training = t->training;
    p.eps = eps;
    p.momentum = momentum;
    GPUML_TRY(gpuml_batch_norm_act(t->ctx, fn, &p, &fu, &x->value, mask, gamma ? &gamma->value : NULL,
                                   beta ? &beta->value : NULL, running_mean, running_var, &o->value, smean, sinv));
    gpuml_var *in[3] = {x, gamma, beta};
    if (gpuml_ad_needs_grad(t, in, 3)) {
        gpuml_node *n;
        GPUML_TRY(gpuml_ad_record(t, fu.agg >= 0 ? "batch_norm_aggregate" : fu.relu ? "batch_norm_relu" : "batch_norm",
                                  bw_batch_norm, in, 3, &o, 1, &n, fn));
        n->aux[0] = smean;
        n->aux[1] = sinv;
        n->ext[0] = mask;
        n->ip[0] = p.training;
        n->ip[1] = fu.relu;
        n->ip[2] = fu.agg;
        n->ip[3] = (int)fu.group;
        n->fp[0] = eps;
        n->fp[1] = momentum;
    }
    *y = o;
    return GPUML_OK;
}

gpuml_status gpuml_ad_batch_norm(gpuml_tape *t, gpuml_var *x, const gpuml_tensor *mask, gpuml_var *gamma,
                                 gpuml_var *beta, gpuml_tensor *running_mean, gpuml_tensor *running_var, float momentum,
                                 float eps, gpuml_var **y)
{
    return ad_batch_norm(t, "gpuml_ad_batch_norm", (gpuml_bn_fusion){0, -1, 1}, x, mask, gamma, beta, running_mean, running_var, momentum, eps,
                         y);
}

gpuml_status gpuml_ad_batch_norm_relu(gpuml_tape *t, gpuml_var *x, const gpuml_tensor *mask, gpuml_var *gamma,
                                      gpuml_var *beta, gpuml_tensor *running_mean, gpuml_tensor *running_var,
                                      float momentum, float eps, gpuml_var **y)
{
    return ad_batch_norm(t, "gpuml_ad_batch_norm_relu", (gpuml_bn_fusion){1, -1, 1}, x, mask, gamma, beta,
                         running_mean, running_var, momentum, eps, y);
}

gpuml_status gpuml_ad_batch_norm_relu_aggregate(gpuml_tape *t, gpuml_reduce_op op, gpuml_var *x,
                                                const gpuml_tensor *mask, gpuml_var *gamma, gpuml_var *beta,
                                                gpuml_tensor *running_mean, gpuml_tensor *running_var, float momentum,
                                                float eps, gpuml_var **y)
{
    static const char fn[] = "gpuml_ad_batch_norm_relu_aggregate";
    if (op != GPUML_REDUCE_SUM && op != GPUML_REDUCE_MEAN)
        return gpuml_fail(t ? t->ctx : NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "op %d: SUM or MEAN only", (int)op);
    return ad_batch_norm(t, fn, (gpuml_bn_fusion){1, (int)op, 1}, x, mask, gamma, beta, running_mean, running_var,
                         momentum, eps, y);
}
