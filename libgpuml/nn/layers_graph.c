/* Graph layers: batch norm, GravNet (PyG GravNetConv), EdgeConv /
 * DynamicEdgeConv (MLP of linear + batch norm + ReLU on edge features) and
 * the ParticleNet EdgeConv block. Parameter names follow the PyTorch
 * modules they mirror, so weights map one to one. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "nn/layer.h"

#define MAX_MLP 8

/* ---- batch norm over rows ---------------------------------------------------- */
static gpuml_status bn_declare(gpuml_build *b, gpuml_layer *l, const char *prefix, int64_t c)
{
    char w[48], bi[48], rm[48], rv[48];
    snprintf(w, sizeof w, "%sweight", prefix);
    snprintf(bi, sizeof bi, "%sbias", prefix);
    snprintf(rm, sizeof rm, "%srunning_mean", prefix);
    snprintf(rv, sizeof rv, "%srunning_var", prefix);
    GPUML_TRY(gpuml_build_param(b, l, w, 1, &c, GPUML_INIT_ONES, 0));
    GPUML_TRY(gpuml_build_param(b, l, bi, 1, &c, GPUML_INIT_ZEROS, 0));
    GPUML_TRY(gpuml_build_buffer(b, l, rm, 1, &c, GPUML_INIT_ZEROS));
    return gpuml_build_buffer(b, l, rv, 1, &c, GPUML_INIT_ONES);
}

static gpuml_status bn_attrs(gpuml_build *b, gpuml_layer *l)
{
    GPUML_TRY(gpuml_attr_float(b, l, "momentum", 0, 0.1, 0.0, 1.0, &l->fattr[0]));
    return gpuml_attr_float(b, l, "eps", 0, 1e-5, 0.0, 1.0, &l->fattr[1]);
}

/* Batch norm with parameters p, p+1 and buffers bf, bf+1 of layer l. */
static gpuml_status bn_apply(gpuml_fwd *f, gpuml_layer *l, int p, int bf, gpuml_var *x, const gpuml_tensor *mask,
                             gpuml_var **y)
{
    return gpuml_ad_batch_norm(f->tape, x, mask, gpuml_fwd_param(f, l, p), gpuml_fwd_param(f, l, p + 1),
                               gpuml_fwd_buffer(f, l, bf), gpuml_fwd_buffer(f, l, bf + 1), (float)l->fattr[0],
                               (float)l->fattr[1], y);
}

/* relu(batch norm) as one op (kept: x and the output; nothing between). */
static gpuml_status bn_relu_apply(gpuml_fwd *f, gpuml_layer *l, int p, int bf, gpuml_var *x,
                                  const gpuml_tensor *mask, gpuml_var **y)
{
    return gpuml_ad_batch_norm_relu(f->tape, x, mask, gpuml_fwd_param(f, l, p), gpuml_fwd_param(f, l, p + 1),
                                    gpuml_fwd_buffer(f, l, bf), gpuml_fwd_buffer(f, l, bf + 1), (float)l->fattr[0],
                                    (float)l->fattr[1], y);
}

static gpuml_status batchnorm_build(gpuml_build *b, gpuml_layer *l, const gpuml_feat *in, int n_in, gpuml_feat *out)
{
    (void)n_in;
    GPUML_TRY(bn_attrs(b, l));
    GPUML_TRY(bn_declare(b, l, "", in[0].features));
    *out = in[0];
    return GPUML_OK;
}

static gpuml_status batchnorm_forward(gpuml_fwd *f, gpuml_layer *l, gpuml_var *const *in, int n_in, gpuml_var **out)
{
    (void)n_in;
    return bn_apply(f, l, 0, 0, in[0], NULL, out);
}

const gpuml_layer_i gpuml_layer_batchnorm = {"batchnorm", 1, 1, batchnorm_build, batchnorm_forward};

/* ---- GravNet ------------------------------------------------------------------ *
 * iattr: 0 k, 1 exclude_self, 2 concat_input; fattr: 0 alpha. Parameters as in
 * PyG's GravNetConv: lin_s, lin_h, lin_out1 (no bias), lin_out2; or, with
 * concat_input (the paper's variant), lin_s, lin_h, lin_out on [x, agg]. */
static gpuml_status linear_declare(gpuml_build *b, gpuml_layer *l, const char *name, int64_t in, int64_t out,
                                   int bias)
{
    char w[48], bi[48];
    snprintf(w, sizeof w, "%s.weight", name);
    snprintf(bi, sizeof bi, "%s.bias", name);
    double bound = 1.0 / sqrt((double)in);
    GPUML_TRY(gpuml_build_param(b, l, w, 2, (int64_t[]){out, in}, GPUML_INIT_UNIFORM, bound));
    if (bias)
        GPUML_TRY(gpuml_build_param(b, l, bi, 1, &out, GPUML_INIT_UNIFORM, bound));
    return GPUML_OK;
}

static gpuml_status gravnet_build(gpuml_build *b, gpuml_layer *l, const gpuml_feat *in, int n_in, gpuml_feat *out)
{
    (void)n_in;
    int64_t nout, space, prop;
    int ex, cat;
    if (in[0].kind != GPUML_FEAT_ROW)
        return gpuml_build_fail(b, l, GPUML_ERR_FORMAT, "input must be per row");
    GPUML_TRY(gpuml_attr_int(b, l, "out", 1, 0, 1, 1 << 20, &nout));
    GPUML_TRY(gpuml_attr_int(b, l, "space", 1, 0, 1, GPUML_KNN_MAX_DIM, &space));
    GPUML_TRY(gpuml_attr_int(b, l, "prop", 1, 0, 1, 1 << 20, &prop));
    GPUML_TRY(gpuml_attr_int(b, l, "k", 1, 0, 1, GPUML_KNN_MAX_K, &l->iattr[0]));
    GPUML_TRY(gpuml_attr_float(b, l, "alpha", 0, 10.0, 0.0, 1e6, &l->fattr[0]));
    GPUML_TRY(gpuml_attr_bool(b, l, "exclude_self", 0, &ex));
    GPUML_TRY(gpuml_attr_bool(b, l, "concat_input", 0, &cat));
    l->iattr[1] = ex;
    l->iattr[2] = cat;
    int64_t f = in[0].features;
    GPUML_TRY(linear_declare(b, l, "lin_s", f, space, 1));
    GPUML_TRY(linear_declare(b, l, "lin_h", f, prop, 1));
    if (cat) {
        GPUML_TRY(linear_declare(b, l, "lin_out", f + 2 * prop, nout, 1));
    } else {
        GPUML_TRY(linear_declare(b, l, "lin_out1", f, nout, 0));
        GPUML_TRY(linear_declare(b, l, "lin_out2", 2 * prop, nout, 1));
    }
    out->features = nout;
    out->kind = GPUML_FEAT_ROW;
    return GPUML_OK;
}

static gpuml_status gravnet_forward(gpuml_fwd *f, gpuml_layer *l, gpuml_var *const *in, int n_in, gpuml_var **out)
{
    (void)n_in;
    gpuml_tape *t = f->tape;
    gpuml_var *x = in[0], *s, *h, *d2, *agg, *y;
    gpuml_ad_graph *g;
    GPUML_TRY(gpuml_ad_linear(t, x, gpuml_fwd_param(f, l, 0), gpuml_fwd_param(f, l, 1), &s));
    GPUML_TRY(gpuml_ad_linear(t, x, gpuml_fwd_param(f, l, 2), gpuml_fwd_param(f, l, 3), &h));
    GPUML_TRY(gpuml_ad_knn(t, s, f->row_splits, (int)l->iattr[0], 0.0f, &g, &d2));
    GPUML_TRY(gpuml_ad_gravnet_aggregate(t, h, g, d2, (float)l->fattr[0], (int)l->iattr[1], &agg));
    if (l->iattr[2]) {
        gpuml_var *cat, *parts[2] = {x, agg};
        GPUML_TRY(gpuml_ad_concat(t, 2, parts, &cat));
        return gpuml_ad_linear(t, cat, gpuml_fwd_param(f, l, 4), gpuml_fwd_param(f, l, 5), out);
    }
    GPUML_TRY(gpuml_ad_linear(t, x, gpuml_fwd_param(f, l, 4), NULL, &y));
    GPUML_TRY(gpuml_ad_linear(t, agg, gpuml_fwd_param(f, l, 5), gpuml_fwd_param(f, l, 6), &agg));
    return gpuml_ad_binary(t, GPUML_BINARY_ADD, y, agg, out);
}

const gpuml_layer_i gpuml_layer_gravnet = {"gravnet", 1, 1, gravnet_build, gravnet_forward};

/* ---- EdgeConv ------------------------------------------------------------------ *
 * An MLP on the edge features [x_i, x_j - x_i]: per layer a linear map (with
 * bias when there is no batch norm), batch norm over the valid edges, ReLU;
 * then max or mean over each node's neighbours. One input: DynamicEdgeConv
 * (the graph is the kNN of the input features); two: [coords, features],
 * the graph from coords. iattr: 0 k, 1 aggr op, 2 layers, 3 exclude_self,
 * 4 batchnorm, 5 particlenet shortcut (0 none, 1 identity, 2 linear + bn),
 * 6 pad_neighbours, 7 knn_distance (a gpuml_knn_distance), 8.. widths.
 * fattr: 0 momentum, 1 eps.
 *
 * knn_distance "expanded" (weaver compatibility, any of the three layers):
 * the graph ranks neighbours by weaver's |x_j|^2 - 2 x_i.x_j + |x_i|^2 in
 * float32 instead of the exact distance (GPUML_KNN_DIST_EXPANDED in
 * gpuml/knn.h), so that near-ties and coordinates far from the origin pick
 * the neighbours weaver picks.
 *
 * pad_neighbours (particlenet_block only; weaver compatibility): weaver runs
 * ParticleNet on jets padded to a fixed length, padded particles having all
 * features 0 and coordinates far away. A jet with n <= k particles then gives
 * each particle k + 1 - n padded "neighbours" whose edge features are
 * [x_i, 0 - x_i], and the mean divides by k. With pad_neighbours the block
 * reproduces that: the message of such a slot, q_i = MLP([x_i, -x_i]), is
 * computed once per node and the mean is (sum over valid edges + (k - n_i)
 * q_i) / k. Inference only (the padded layout's batch statistics are not
 * reproduced), so a training tape is refused. */
enum { EC_K = 0, EC_AGGR, EC_LAYERS, EC_EXCL, EC_BN, EC_SC, EC_PAD, EC_DIST, EC_W0 = 8 };

static gpuml_status edge_mlp_declare(gpuml_build *b, gpuml_layer *l, int64_t f)
{
    int bn = (int)l->iattr[EC_BN];
    int64_t cin = 2 * f;
    for (int i = 0; i < l->iattr[EC_LAYERS]; i++) {
        char name[32], prefix[32];
        snprintf(name, sizeof name, "mlp%d", i);
        snprintf(prefix, sizeof prefix, "bn%d.", i);
        GPUML_TRY(linear_declare(b, l, name, cin, l->iattr[EC_W0 + i], !bn));
        if (bn)
            GPUML_TRY(bn_declare(b, l, prefix, l->iattr[EC_W0 + i]));
        cin = l->iattr[EC_W0 + i];
    }
    return GPUML_OK;
}

static gpuml_status edgeconv_common_build(gpuml_build *b, gpuml_layer *l, const gpuml_feat *in, int n_in,
                                          gpuml_feat *out, bool particlenet)
{
    for (int i = 0; i < n_in; i++)
        if (in[i].kind != GPUML_FEAT_ROW)
            return gpuml_build_fail(b, l, GPUML_ERR_FORMAT, "inputs must be per row");
    int ncount = 0, ex = 0, bn = 1, aggr = 0;
    GPUML_TRY(gpuml_attr_int(b, l, "k", 1, 0, 1, GPUML_KNN_MAX_K - 1, &l->iattr[EC_K]));
    GPUML_TRY(gpuml_attr_ints(b, l, "widths", 1, 1 << 20, &l->iattr[EC_W0], MAX_MLP, &ncount));
    l->iattr[EC_LAYERS] = ncount;
    if (!particlenet) {
        static const char *const aggrs[] = {"max", "mean", NULL};
        GPUML_TRY(gpuml_attr_enum(b, l, "aggr", "max", aggrs, &aggr));
        GPUML_TRY(gpuml_attr_bool(b, l, "exclude_self", 0, &ex));
        GPUML_TRY(gpuml_attr_bool(b, l, "batchnorm", 1, &bn));
    } else {
        aggr = 1; /* ParticleNet: mean over k neighbours, self excluded */
        ex = 1;
        int pad = 0;
        GPUML_TRY(gpuml_attr_bool(b, l, "pad_neighbours", 0, &pad));
        l->iattr[EC_PAD] = pad;
    }
    static const char *const dists[] = {"exact", "expanded", NULL}; /* gpuml_knn_distance order */
    int dist = 0;
    GPUML_TRY(gpuml_attr_enum(b, l, "knn_distance", "exact", dists, &dist));
    l->iattr[EC_DIST] = dist;
    l->iattr[EC_AGGR] = aggr == 0 ? GPUML_REDUCE_MAX : GPUML_REDUCE_MEAN;
    l->iattr[EC_EXCL] = ex;
    l->iattr[EC_BN] = bn;
    if (bn)
        GPUML_TRY(bn_attrs(b, l));
    int64_t f = in[n_in - 1].features, cout = l->iattr[EC_W0 + ncount - 1];
    GPUML_TRY(edge_mlp_declare(b, l, f));
    l->iattr[EC_SC] = 0;
    if (particlenet) {
        l->iattr[EC_SC] = f == cout ? 1 : 2;
        if (f != cout) {
            GPUML_TRY(linear_declare(b, l, "sc", f, cout, 0));
            GPUML_TRY(bn_declare(b, l, "sc_bn.", cout));
        }
    }
    out->features = cout;
    out->kind = GPUML_FEAT_ROW;
    return GPUML_OK;
}

static gpuml_status edgeconv_build(gpuml_build *b, gpuml_layer *l, const gpuml_feat *in, int n_in, gpuml_feat *out)
{
    return edgeconv_common_build(b, l, in, n_in, out, false);
}

static gpuml_status particlenet_build(gpuml_build *b, gpuml_layer *l, const gpuml_feat *in, int n_in,
                                      gpuml_feat *out)
{
    return edgeconv_common_build(b, l, in, n_in, out, true);
}

/* weaver's mean over k slots (see pad_neighbours above): e [N, k_e, C] are
 * the last layer's edge outputs (0 on missing slots), mask [N, k_e] the
 * valid slots. q_i runs the edge MLP on [x_i, -x_i] row by row with the same
 * parameters; batch norm is in inference mode (the caller refuses training). */
static gpuml_status pad_neighbours_mean(gpuml_fwd *f, gpuml_layer *l, gpuml_var *x, gpuml_var *e,
                                        const gpuml_ad_graph *g, int ex, const gpuml_tensor *mask, gpuml_var **out)
{
    gpuml_tape *t = f->tape;
    int64_t n = g->idx->shape[0], ke = g->idx->shape[1] - ex;
    int bn = (int)l->iattr[EC_BN], nl = (int)l->iattr[EC_LAYERS];
    gpuml_var *sum, *neg, *q, *parts[2];
    GPUML_TRY(gpuml_ad_neighbour_aggregate(t, GPUML_REDUCE_SUM, e, g, ex, &sum));
    GPUML_TRY(gpuml_ad_scale(t, -1.0f, x, &neg));
    parts[0] = x;
    parts[1] = neg;
    GPUML_TRY(gpuml_ad_concat(t, 2, parts, &q));
    int p = 0, bf = 0;
    for (int i = 0; i < nl; i++) {
        gpuml_var *w = gpuml_fwd_param(f, l, p++), *bias = bn ? NULL : gpuml_fwd_param(f, l, p++);
        GPUML_TRY(gpuml_ad_linear(t, q, w, bias, &q));
        if (bn) {
            GPUML_TRY(bn_relu_apply(f, l, p, bf, q, NULL, &q));
            p += 2;
            bf += 2;
        } else {
            GPUML_TRY(gpuml_ad_unary(t, GPUML_UNARY_RELU, 0.0f, q, &q));
        }
    }
    /* missing slots per row: k_e - (valid slots), as [N, 1] f32 */
    gpuml_tensor *m8 = (gpuml_tensor *)mask, *mf, *cnt;
    if (!m8) {
        GPUML_TRY(gpuml_tape_tensor(t, GPUML_U8, 2, (int64_t[]){n, ke}, &m8));
        GPUML_TRY(gpuml_edge_mask(f->ctx, g->idx, ex, m8));
    }
    GPUML_TRY(gpuml_tape_tensor(t, GPUML_F32, 2, (int64_t[]){n, ke}, &mf));
    GPUML_TRY(gpuml_cast(f->ctx, m8, mf));
    GPUML_TRY(gpuml_tape_tensor(t, GPUML_F32, 2, (int64_t[]){n, 1}, &cnt));
    GPUML_TRY(gpuml_reduce(f->ctx, GPUML_REDUCE_SUM, mf, 1, cnt, NULL));
    GPUML_TRY(gpuml_scale(f->ctx, -1.0f, cnt, cnt));
    gpuml_tensor *kt;
    GPUML_TRY(gpuml_tape_tensor(t, GPUML_F32, 1, (int64_t[]){1}, &kt));
    GPUML_TRY(gpuml_fill(f->ctx, kt, (double)ke));
    GPUML_TRY(gpuml_add(f->ctx, cnt, kt, cnt));
    gpuml_var *missing, *extra, *total;
    GPUML_TRY(gpuml_var_input(t, cnt, 0, &missing));
    GPUML_TRY(gpuml_ad_binary(t, GPUML_BINARY_MUL, q, missing, &extra));
    GPUML_TRY(gpuml_ad_binary(t, GPUML_BINARY_ADD, sum, extra, &total));
    return gpuml_ad_scale(t, 1.0f / (float)ke, total, out);
}

static gpuml_status edgeconv_forward(gpuml_fwd *f, gpuml_layer *l, gpuml_var *const *in, int n_in, gpuml_var **out)
{
    gpuml_tape *t = f->tape;
    gpuml_var *coords = in[0], *x = in[n_in - 1], *e, *d2;
    int ex = (int)l->iattr[EC_EXCL], bn = (int)l->iattr[EC_BN];
    int k = (int)l->iattr[EC_K] + ex; /* self sits in slot 0: one more slot when excluded */
    gpuml_ad_graph *g;
    gpuml_knn_params kp;
    gpuml_knn_params_init_defaults(&kp);
    kp.k = k;
    kp.distance = (gpuml_knn_distance)l->iattr[EC_DIST];
    GPUML_TRY(gpuml_ad_knn_ex(t, coords, f->row_splits, &kp, &g, &d2));
    (void)d2; /* the graph is a selection: no gradient flows through the kNN */
    int pad = (int)l->iattr[EC_PAD];
    if (pad && gpuml_tape_training(t))
        return gpuml_fail(f->ctx, GPUML_ERR_UNSUPPORTED, "particlenet_block",
                          "pad_neighbours reproduces weaver's padded inference only: not on a training tape");
    gpuml_tensor *mask = NULL;
    if (bn) {
        int64_t ms[2] = {g->idx->shape[0], g->idx->shape[1] - ex};
        GPUML_TRY(gpuml_tape_tensor(t, GPUML_U8, 2, ms, &mask));
        GPUML_TRY(gpuml_edge_mask(f->ctx, g->idx, ex, mask));
    }
    int p = 0, bf = 0, nl = (int)l->iattr[EC_LAYERS];
    gpuml_reduce_op aggr = (gpuml_reduce_op)l->iattr[EC_AGGR];
    gpuml_var *agg = NULL;
    for (int i = 0; i < nl; i++) {
        gpuml_var *w = gpuml_fwd_param(f, l, p++), *bias = bn ? NULL : gpuml_fwd_param(f, l, p++);
        if (i == 0)
            GPUML_TRY(gpuml_ad_edge_first_linear(t, x, g, ex, w, bias, &e));
        else
            GPUML_TRY(gpuml_ad_linear(t, e, w, bias, &e));
        if (bn && i == nl - 1 && aggr == GPUML_REDUCE_MEAN && !pad) {
            /* the last batch norm, ReLU and the mean in one op: the edge
             * outputs of the last layer are never stored */
            GPUML_TRY(gpuml_ad_batch_norm_relu_aggregate(
                t, aggr, e, mask, gpuml_fwd_param(f, l, p), gpuml_fwd_param(f, l, p + 1), gpuml_fwd_buffer(f, l, bf),
                gpuml_fwd_buffer(f, l, bf + 1), (float)l->fattr[0], (float)l->fattr[1], &agg));
            p += 2;
            bf += 2;
        } else if (bn) {
            GPUML_TRY(bn_relu_apply(f, l, p, bf, e, mask, &e));
            p += 2;
            bf += 2;
        } else {
            GPUML_TRY(gpuml_ad_unary(t, GPUML_UNARY_RELU, 0.0f, e, &e));
        }
    }
    if (pad)
        GPUML_TRY(pad_neighbours_mean(f, l, x, e, g, ex, mask, &agg));
    else if (!agg)
        GPUML_TRY(gpuml_ad_neighbour_aggregate(t, aggr, e, g, ex, &agg));
    if (l->iattr[EC_SC] == 0) {
        *out = agg;
        return GPUML_OK;
    }
    gpuml_var *sc = x, *sum;
    if (l->iattr[EC_SC] == 2) {
        GPUML_TRY(gpuml_ad_linear(t, x, gpuml_fwd_param(f, l, p++), NULL, &sc));
        GPUML_TRY(bn_apply(f, l, p, bf, sc, NULL, &sc));
    }
    GPUML_TRY(gpuml_ad_binary(t, GPUML_BINARY_ADD, sc, agg, &sum));
    return gpuml_ad_unary(t, GPUML_UNARY_RELU, 0.0f, sum, out);
}

const gpuml_layer_i gpuml_layer_edgeconv = {"edgeconv", 1, 2, edgeconv_build, edgeconv_forward};
const gpuml_layer_i gpuml_layer_dynamic_edgeconv = {"dynamic_edgeconv", 1, 1, edgeconv_build, edgeconv_forward};
const gpuml_layer_i gpuml_layer_particlenet_block = {"particlenet_block", 2, 2, particlenet_build, edgeconv_forward};
