/* Basic layer types: linear, layernorm, dropout, activations, concat, add,
 * global pooling, broadcast. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "nn/layer.h"

/* ---- linear ---------------------------------------------------------------- */
static gpuml_status linear_build(gpuml_build *b, gpuml_layer *l, const gpuml_feat *in, int n_in, gpuml_feat *out)
{
    (void)n_in;
    int64_t nout;
    int bias;
    GPUML_TRY(gpuml_attr_int(b, l, "out", 1, 0, 1, 1 << 20, &nout));
    GPUML_TRY(gpuml_attr_bool(b, l, "bias", 1, &bias));
    double bound = 1.0 / sqrt((double)in[0].features);
    GPUML_TRY(gpuml_build_param(b, l, "weight", 2, (int64_t[]){nout, in[0].features}, GPUML_INIT_UNIFORM, bound));
    if (bias)
        GPUML_TRY(gpuml_build_param(b, l, "bias", 1, &nout, GPUML_INIT_UNIFORM, bound));
    out->features = nout;
    out->kind = in[0].kind;
    return GPUML_OK;
}

static gpuml_status linear_forward(gpuml_fwd *f, gpuml_layer *l, gpuml_var *const *in, int n_in, gpuml_var **out)
{
    (void)n_in;
    return gpuml_ad_linear(f->tape, in[0], gpuml_fwd_param(f, l, 0), l->n_params > 1 ? gpuml_fwd_param(f, l, 1) : NULL,
                           out);
}

const gpuml_layer_i gpuml_layer_linear = {"linear", 1, 1, linear_build, linear_forward};

/* ---- layernorm ----------------------------------------------------------- */
static gpuml_status layernorm_build(gpuml_build *b, gpuml_layer *l, const gpuml_feat *in, int n_in, gpuml_feat *out)
{
    (void)n_in;
    int affine;
    GPUML_TRY(gpuml_attr_float(b, l, "eps", 0, 1e-5, 0.0, 1.0, &l->fattr[0]));
    GPUML_TRY(gpuml_attr_bool(b, l, "affine", 1, &affine));
    if (affine) {
        GPUML_TRY(gpuml_build_param(b, l, "weight", 1, &in[0].features, GPUML_INIT_ONES, 0));
        GPUML_TRY(gpuml_build_param(b, l, "bias", 1, &in[0].features, GPUML_INIT_ZEROS, 0));
    }
    *out = in[0];
    return GPUML_OK;
}

static gpuml_status layernorm_forward(gpuml_fwd *f, gpuml_layer *l, gpuml_var *const *in, int n_in, gpuml_var **out)
{
    (void)n_in;
    bool affine = l->n_params == 2;
    return gpuml_ad_layernorm(f->tape, in[0], affine ? gpuml_fwd_param(f, l, 0) : NULL,
                              affine ? gpuml_fwd_param(f, l, 1) : NULL, (float)l->fattr[0], out);
}

const gpuml_layer_i gpuml_layer_layernorm = {"layernorm", 1, 1, layernorm_build, layernorm_forward};

/* ---- dropout ------------------------------------------------------------- */
static gpuml_status dropout_build(gpuml_build *b, gpuml_layer *l, const gpuml_feat *in, int n_in, gpuml_feat *out)
{
    (void)n_in;
    GPUML_TRY(gpuml_attr_float(b, l, "p", 1, 0.0, 0.0, 0.999, &l->fattr[0]));
    *out = in[0];
    return GPUML_OK;
}

static gpuml_status dropout_forward(gpuml_fwd *f, gpuml_layer *l, gpuml_var *const *in, int n_in, gpuml_var **out)
{
    (void)n_in;
    return gpuml_ad_dropout(f->tape, in[0], (float)l->fattr[0], out);
}

const gpuml_layer_i gpuml_layer_dropout = {"dropout", 1, 1, dropout_build, dropout_forward};

/* ---- activations ----------------------------------------------------------- */
static gpuml_status act_build(gpuml_build *b, gpuml_layer *l, const gpuml_feat *in, int n_in, gpuml_feat *out)
{
    (void)n_in;
    l->fattr[0] = 0.0;
    if (!strcmp(l->iface->op, "elu"))
        GPUML_TRY(gpuml_attr_float(b, l, "alpha", 0, 1.0, 0.0, 1e6, &l->fattr[0]));
    else if (!strcmp(l->iface->op, "leaky_relu"))
        GPUML_TRY(gpuml_attr_float(b, l, "alpha", 0, 0.01, 0.0, 1e6, &l->fattr[0]));
    *out = in[0];
    return GPUML_OK;
}

static gpuml_unary_op act_op(const char *name)
{
    static const struct {
        const char *name;
        gpuml_unary_op op;
    } table[] = {{"relu", GPUML_UNARY_RELU},       {"gelu", GPUML_UNARY_GELU},
                 {"tanh", GPUML_UNARY_TANH},       {"sigmoid", GPUML_UNARY_SIGMOID},
                 {"softplus", GPUML_UNARY_SOFTPLUS}, {"elu", GPUML_UNARY_ELU},
                 {"leaky_relu", GPUML_UNARY_LEAKY_RELU}};
    for (unsigned i = 0; i < sizeof table / sizeof table[0]; i++)
        if (!strcmp(table[i].name, name))
            return table[i].op;
    return GPUML_UNARY_COUNT_;
}

static gpuml_status act_forward(gpuml_fwd *f, gpuml_layer *l, gpuml_var *const *in, int n_in, gpuml_var **out)
{
    (void)n_in;
    return gpuml_ad_unary(f->tape, act_op(l->iface->op), (float)l->fattr[0], in[0], out);
}

const gpuml_layer_i gpuml_layer_relu = {"relu", 1, 1, act_build, act_forward};
const gpuml_layer_i gpuml_layer_gelu = {"gelu", 1, 1, act_build, act_forward};
const gpuml_layer_i gpuml_layer_tanh = {"tanh", 1, 1, act_build, act_forward};
const gpuml_layer_i gpuml_layer_sigmoid = {"sigmoid", 1, 1, act_build, act_forward};
const gpuml_layer_i gpuml_layer_softplus = {"softplus", 1, 1, act_build, act_forward};
const gpuml_layer_i gpuml_layer_elu = {"elu", 1, 1, act_build, act_forward};
const gpuml_layer_i gpuml_layer_leaky_relu = {"leaky_relu", 1, 1, act_build, act_forward};

/* ---- concat, add ----------------------------------------------------------- */
static gpuml_status concat_build(gpuml_build *b, gpuml_layer *l, const gpuml_feat *in, int n_in, gpuml_feat *out)
{
    out->features = 0;
    out->kind = in[0].kind;
    for (int i = 0; i < n_in; i++) {
        if (in[i].kind != in[0].kind)
            return gpuml_build_fail(b, l, GPUML_ERR_FORMAT,
                                    "input %d is per-%s but input 0 is per-%s: use 'broadcast' first", i,
                                    in[i].kind ? "event" : "row", in[0].kind ? "event" : "row");
        out->features += in[i].features;
    }
    return GPUML_OK;
}

static gpuml_status concat_forward(gpuml_fwd *f, gpuml_layer *l, gpuml_var *const *in, int n_in, gpuml_var **out)
{
    (void)l;
    return gpuml_ad_concat(f->tape, n_in, in, out);
}

const gpuml_layer_i gpuml_layer_concat = {"concat", 2, -1, concat_build, concat_forward};

static gpuml_status add_build(gpuml_build *b, gpuml_layer *l, const gpuml_feat *in, int n_in, gpuml_feat *out)
{
    for (int i = 1; i < n_in; i++)
        if (in[i].kind != in[0].kind || in[i].features != in[0].features)
            return gpuml_build_fail(b, l, GPUML_ERR_FORMAT, "input %d has %lld features, input 0 has %lld", i,
                                    (long long)in[i].features, (long long)in[0].features);
    *out = in[0];
    return GPUML_OK;
}

static gpuml_status add_forward(gpuml_fwd *f, gpuml_layer *l, gpuml_var *const *in, int n_in, gpuml_var **out)
{
    (void)l;
    gpuml_var *acc = in[0];
    for (int i = 1; i < n_in; i++)
        GPUML_TRY(gpuml_ad_binary(f->tape, GPUML_BINARY_ADD, acc, in[i], &acc));
    *out = acc;
    return GPUML_OK;
}

const gpuml_layer_i gpuml_layer_add = {"add", 2, -1, add_build, add_forward};

/* ---- global pooling and broadcast ------------------------------------------ */
static gpuml_status pool_build(gpuml_build *b, gpuml_layer *l, const gpuml_feat *in, int n_in, gpuml_feat *out)
{
    (void)n_in;
    static const char *const ops[] = {"mean", "max", "sum", NULL};
    int which;
    GPUML_TRY(gpuml_attr_enum(b, l, "reduce", "mean", ops, &which));
    l->iattr[0] = which == 0 ? GPUML_REDUCE_MEAN : which == 1 ? GPUML_REDUCE_MAX : GPUML_REDUCE_SUM;
    if (in[0].kind != GPUML_FEAT_ROW)
        return gpuml_build_fail(b, l, GPUML_ERR_FORMAT, "input is already per event");
    out->features = in[0].features;
    out->kind = GPUML_FEAT_EVENT;
    return GPUML_OK;
}

static gpuml_status pool_forward(gpuml_fwd *f, gpuml_layer *l, gpuml_var *const *in, int n_in, gpuml_var **out)
{
    (void)n_in;
    return gpuml_ad_segment_reduce(f->tape, (gpuml_reduce_op)l->iattr[0], in[0], f->row_splits, out);
}

const gpuml_layer_i gpuml_layer_global_pool = {"global_pool", 1, 1, pool_build, pool_forward};

static gpuml_status broadcast_build(gpuml_build *b, gpuml_layer *l, const gpuml_feat *in, int n_in, gpuml_feat *out)
{
    (void)n_in;
    if (in[0].kind != GPUML_FEAT_EVENT)
        return gpuml_build_fail(b, l, GPUML_ERR_FORMAT, "input must be per event (e.g. a global_pool)");
    out->features = in[0].features;
    out->kind = GPUML_FEAT_ROW;
    return GPUML_OK;
}

static gpuml_status broadcast_forward(gpuml_fwd *f, gpuml_layer *l, gpuml_var *const *in, int n_in, gpuml_var **out)
{
    (void)l, (void)n_in;
    gpuml_tensor *ids;
    GPUML_TRY(gpuml_fwd_event_ids(f, &ids));
    return gpuml_ad_gather_rows(f->tape, in[0], ids, out);
}

const gpuml_layer_i gpuml_layer_broadcast = {"broadcast", 1, 1, broadcast_build, broadcast_forward};

/* ---- softmax ----------------------------------------------------------------- */
static gpuml_status softmax_build(gpuml_build *b, gpuml_layer *l, const gpuml_feat *in, int n_in, gpuml_feat *out)
{
    (void)n_in;
    int take_log;
    GPUML_TRY(gpuml_attr_bool(b, l, "log", 0, &take_log));
    l->iattr[0] = take_log;
    *out = in[0];
    return GPUML_OK;
}

static gpuml_status softmax_forward(gpuml_fwd *f, gpuml_layer *l, gpuml_var *const *in, int n_in, gpuml_var **out)
{
    (void)n_in;
    return gpuml_ad_softmax(f->tape, in[0], (int)l->iattr[0], out);
}

const gpuml_layer_i gpuml_layer_softmax = {"softmax", 1, 1, softmax_build, softmax_forward};

/* ---- standardize --------------------------------------------------------------
 * Input standardisation as weaver's preprocess.json states it, per column c:
 * y = min(max((x - center[c]) * scale[c], lower[c]), upper[c]), in float32 in
 * that order (the same rounding as numpy's float32 arithmetic). The four
 * vectors are buffers (not trained), saved with the model; a fresh layer has
 * center 0, scale 1, lower -inf, upper +inf. NaN inputs stay NaN unless
 * nan_to_zero (iattr 0) is set: then a NaN result becomes 0 after the
 * clipping, as weaver's preprocessing does (its fused kernel and
 * np.nan_to_num; +-inf are clipped to the bounds before). */
static gpuml_status standardize_build(gpuml_build *b, gpuml_layer *l, const gpuml_feat *in, int n_in,
                                      gpuml_feat *out)
{
    (void)n_in;
    int64_t c = in[0].features;
    int nan0 = 0;
    GPUML_TRY(gpuml_attr_bool(b, l, "nan_to_zero", 0, &nan0));
    l->iattr[0] = nan0;
    GPUML_TRY(gpuml_build_buffer(b, l, "center", 1, &c, GPUML_INIT_ZEROS));
    GPUML_TRY(gpuml_build_buffer(b, l, "scale", 1, &c, GPUML_INIT_ONES));
    GPUML_TRY(gpuml_build_buffer(b, l, "lower", 1, &c, GPUML_INIT_NEG_INF));
    GPUML_TRY(gpuml_build_buffer(b, l, "upper", 1, &c, GPUML_INIT_POS_INF));
    *out = in[0];
    return GPUML_OK;
}

static gpuml_status standardize_forward(gpuml_fwd *f, gpuml_layer *l, gpuml_var *const *in, int n_in,
                                        gpuml_var **out)
{
    (void)n_in;
    gpuml_var *v[4], *y;
    for (int i = 0; i < 4; i++)
        GPUML_TRY(gpuml_var_input(f->tape, gpuml_fwd_buffer(f, l, i), 0, &v[i]));
    GPUML_TRY(gpuml_ad_binary(f->tape, GPUML_BINARY_SUB, in[0], v[0], &y));
    GPUML_TRY(gpuml_ad_binary(f->tape, GPUML_BINARY_MUL, y, v[1], &y));
    GPUML_TRY(gpuml_ad_binary(f->tape, GPUML_BINARY_MAXIMUM, y, v[2], &y));
    if (!l->iattr[0])
        return gpuml_ad_binary(f->tape, GPUML_BINARY_MINIMUM, y, v[3], out);
    GPUML_TRY(gpuml_ad_binary(f->tape, GPUML_BINARY_MINIMUM, y, v[3], &y));
    return gpuml_ad_unary(f->tape, GPUML_UNARY_NAN_TO_ZERO, 0.0f, y, out);
}

const gpuml_layer_i gpuml_layer_standardize = {"standardize", 1, 1, standardize_build, standardize_forward};

/* ---- mul -----------------------------------------------------------------------
 * Element-wise product of two values of one kind; the second may have one
 * feature, which then scales every column (a per-row mask or weight, e.g.
 * weaver's pf_mask / sv_mask). */
static gpuml_status mul_build(gpuml_build *b, gpuml_layer *l, const gpuml_feat *in, int n_in, gpuml_feat *out)
{
    (void)n_in;
    if (in[1].kind != in[0].kind || (in[1].features != in[0].features && in[1].features != 1))
        return gpuml_build_fail(b, l, GPUML_ERR_FORMAT,
                                "input 1 must be of input 0's kind with %lld features or 1, has %lld",
                                (long long)in[0].features, (long long)in[1].features);
    *out = in[0];
    return GPUML_OK;
}

static gpuml_status mul_forward(gpuml_fwd *f, gpuml_layer *l, gpuml_var *const *in, int n_in, gpuml_var **out)
{
    (void)l, (void)n_in;
    return gpuml_ad_binary(f->tape, GPUML_BINARY_MUL, in[0], in[1], out);
}

const gpuml_layer_i gpuml_layer_mul = {"mul", 2, 2, mul_build, mul_forward};

/* ---- truncate ------------------------------------------------------------------
 * weaver's var_length: every event keeps its first `length` rows (weaver
 * pads or cuts each jet to that length before the network sees it). The
 * rows after the cut are a second row set: nodes on truncated values run on
 * the truncated row_splits (model.c switches them per node; values from
 * before and after a truncate cannot be mixed, and all truncate nodes of a
 * model share one length). Differentiable (a row gather). The new row count
 * sizes the tensors, so on CUDA the batch's row_splits are read back once
 * per forward (one stream synchronisation). */
static gpuml_status truncate_build(gpuml_build *b, gpuml_layer *l, const gpuml_feat *in, int n_in, gpuml_feat *out)
{
    (void)n_in;
    GPUML_TRY(gpuml_attr_int(b, l, "length", 1, 0, 1, INT32_MAX, &l->iattr[0]));
    if (in[0].kind != GPUML_FEAT_ROW || in[0].rows != 0)
        return gpuml_build_fail(b, l, GPUML_ERR_FORMAT, "input must be per row, before any truncate node");
    *out = in[0];
    return GPUML_OK;
}

/* The kept rows of the batch (f->rs[1], f->nr[1], f->trunc_idx), once. */
static gpuml_status truncate_rows(gpuml_fwd *f, int64_t len)
{
    static const char fn[] = "truncate";
    int64_t nb = f->n_events, *rs = NULL, *idx = NULL, *ns = NULL;
    gpuml_status st = GPUML_ERR_OUT_OF_MEMORY;
    rs = malloc((size_t)(nb + 1) * sizeof *rs);
    ns = malloc((size_t)(nb + 1) * sizeof *ns);
    idx = malloc((size_t)(f->nr[0] + 1) * sizeof *idx);
    gpuml_tensor *trs = NULL, *tidx = NULL;
    if (!rs || !ns || !idx) {
        st = gpuml_fail(f->ctx, st, fn, "out of host memory for %lld events", (long long)nb);
        goto done;
    }
    st = gpuml_tensor_copy_to_host(f->ctx, f->rs[0], rs, (size_t)(nb + 1) * sizeof *rs);
    if (st != GPUML_OK)
        goto done;
    int64_t m = 0;
    ns[0] = 0;
    for (int64_t e = 0; e < nb; e++) {
        if (rs[e + 1] < rs[e] || rs[e] < 0 || rs[e + 1] > f->nr[0]) {
            st = gpuml_fail(f->ctx, GPUML_ERR_INVALID_ARGUMENT, fn, "row_splits[%lld .. %lld] = %lld .. %lld is invalid",
                            (long long)e, (long long)e + 1, (long long)rs[e], (long long)rs[e + 1]);
            goto done;
        }
        for (int64_t r = rs[e]; r < rs[e + 1] && r - rs[e] < len; r++)
            idx[m++] = r;
        ns[e + 1] = m;
    }
    if ((st = gpuml_tape_tensor(f->tape, GPUML_I64, 1, (int64_t[]){nb + 1}, &trs)) != GPUML_OK ||
        (st = gpuml_tape_tensor(f->tape, GPUML_I64, 1, (int64_t[]){m}, &tidx)) != GPUML_OK ||
        (st = gpuml_tensor_copy_from_host(f->ctx, trs, ns, (size_t)(nb + 1) * sizeof *ns)) != GPUML_OK ||
        (m > 0 && (st = gpuml_tensor_copy_from_host(f->ctx, tidx, idx, (size_t)m * sizeof *idx)) != GPUML_OK))
        goto done;
    f->rs[1] = trs;
    f->nr[1] = m;
    f->ids[1] = NULL;
    f->trunc_idx = tidx;
    f->trunc_len = len;
done:
    free(rs), free(ns), free(idx);
    return st;
}

static gpuml_status truncate_forward(gpuml_fwd *f, gpuml_layer *l, gpuml_var *const *in, int n_in, gpuml_var **out)
{
    (void)n_in;
    if (!f->trunc_len)
        GPUML_TRY(truncate_rows(f, l->iattr[0]));
    return gpuml_ad_gather_rows(f->tape, in[0], f->trunc_idx, out);
}

const gpuml_layer_i gpuml_layer_truncate = {"truncate", 1, 1, truncate_build, truncate_forward};
