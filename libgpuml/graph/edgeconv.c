/* EdgeConv's fused ops: the first edge-network layer computed per node
 * (kernels/edgeconv.h) and the reduction over each node's edges
 * (kernels/neighbour.h). */
#include "graph/graph_common.h"


/* edges [N, ke, C] f32; *C receives C. */
static gpuml_status check_edges(gpuml_ctx *ctx, const char *fn, const char *arg, const gpuml_tensor *t, int64_t n,
                                int64_t ke, int64_t c_want, int64_t *C)
{
    GPUML_TRY(gpuml_check_dtype(ctx, fn, arg, t, GPUML_F32));
    if (t->ndim != 3 || t->shape[0] != n || t->shape[1] != ke || (c_want >= 0 && t->shape[2] != c_want)) {
        char s[160];
        return gpuml_fail(ctx, GPUML_ERR_SHAPE, fn, "argument '%s' %s must be [N, k_e, C] with N = %lld, k_e = %lld%s",
                          arg, gpuml_shape_str(t->ndim, t->shape, s, sizeof s), (long long)n, (long long)ke,
                          c_want >= 0 ? " and C matching the other arguments" : "");
    }
    *C = t->shape[2];
    return GPUML_OK;
}

/* x [N, F], idx [N, k], w [C, 2F]. */
static gpuml_status check_linear(gpuml_ctx *ctx, const char *fn, const gpuml_tensor *x, const gpuml_tensor *idx,
                                 int first, const gpuml_tensor *w, int64_t *n, int64_t *k, int64_t *F, int64_t *C)
{
    GPUML_TRY(gpuml_check_dtype(ctx, fn, "x", x, GPUML_F32));
    if (x->ndim != 2) {
        char s[160];
        return gpuml_fail(ctx, GPUML_ERR_SHAPE, fn, "argument 'x' %s must be [N, F]",
                          gpuml_shape_str(x->ndim, x->shape, s, sizeof s));
    }
    *n = x->shape[0];
    *F = x->shape[1];
    GPUML_TRY(gpuml_g_check_idx(ctx, fn, idx, *n, first, k));
    GPUML_TRY(gpuml_check_dtype(ctx, fn, "w", w, GPUML_F32));
    if (w->ndim != 2 || w->shape[1] != 2 * *F) {
        char s[160];
        return gpuml_fail(ctx, GPUML_ERR_SHAPE, fn, "argument 'w' %s must be [C, 2F] with F = %lld",
                          gpuml_shape_str(w->ndim, w->shape, s, sizeof s), (long long)*F);
    }
    *C = w->shape[0];
    return GPUML_OK;
}

gpuml_status gpuml_edge_first_linear(gpuml_ctx *ctx, const gpuml_tensor *x, const gpuml_tensor *idx, int exclude_self,
                                     const gpuml_tensor *w, const gpuml_tensor *bias, gpuml_tensor *out)
{
    static const char fn[] = "gpuml_edge_first_linear";
    if (!ctx)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "argument 'ctx' is NULL");
    int first = exclude_self ? 1 : 0;
    int64_t n = 0, k = 0, F = 0, C = 0, Co;
    GPUML_TRY(check_linear(ctx, fn, x, idx, first, w, &n, &k, &F, &C));
    if (bias)
        GPUML_TRY(gpuml_g_check_1d(ctx, fn, "bias", bias, C));
    GPUML_TRY(check_edges(ctx, fn, "out", out, n, k - first, C, &Co));
    if (n * (k - first) * C == 0)
        return GPUML_OK;
    size_t wb = gpuml_align_up((size_t)(2 * C * F) * sizeof(float)), bytes = wb + (size_t)(n * 2 * C) * sizeof(float);
    void *ws = NULL;
    GPUML_TRY(gpuml_scratch_alloc(ctx, bytes, &ws, fn));
    float *wcat = ws, *pn = (float *)((char *)ws + wb);
    gpuml_status st = GPUML_LAUNCH(ctx, edge_wcat, w->data, C, F, wcat);
    /* pn [N, 2C] = x wcat^T: both per-node products in one GEMM. */
    if (st == GPUML_OK)
        st = GPUML_LAUNCH(ctx, gemm, 0, 1, n, 2 * C, F, 1.0f, x->data, 0, wcat, 0, 0.0f, pn, 0, 1);
    if (st == GPUML_OK)
        st = GPUML_LAUNCH(ctx, edge_combine, pn, bias ? bias->data : NULL, idx->data, n, k, first, C, out->data);
    gpuml_scratch_free(ctx, ws, bytes);
    return st;
}

gpuml_status gpuml_edge_first_linear_backward(gpuml_ctx *ctx, const gpuml_tensor *x, const gpuml_tensor *idx,
                                              int exclude_self, const gpuml_tensor *w, const gpuml_tensor *gout,
                                              const gpuml_tensor *rowptr, const gpuml_tensor *col, gpuml_tensor *gx,
                                              gpuml_tensor *gw, gpuml_tensor *gbias, int accumulate)
{
    static const char fn[] = "gpuml_edge_first_linear_backward";
    if (!ctx)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "argument 'ctx' is NULL");
    int first = exclude_self ? 1 : 0;
    int64_t n = 0, k = 0, F = 0, C = 0, Cg;
    GPUML_TRY(check_linear(ctx, fn, x, idx, first, w, &n, &k, &F, &C));
    GPUML_TRY(check_edges(ctx, fn, "gout", gout, n, k - first, C, &Cg));
    if (gx)
        GPUML_TRY(gpuml_g_check_2d(ctx, fn, "gx", gx, GPUML_F32, n, F));
    if (gw)
        GPUML_TRY(gpuml_g_check_2d(ctx, fn, "gw", gw, GPUML_F32, C, 2 * F));
    if (gbias)
        GPUML_TRY(gpuml_g_check_1d(ctx, fn, "gbias", gbias, C));
    if (!gx && !gw && !gbias)
        return GPUML_OK;
    const int64_t *rp = NULL, *cl = NULL;
    void *csr_ws = NULL;
    size_t csr_bytes = 0;
    GPUML_TRY(gpuml_g_csr(ctx, fn, idx, n, k, rowptr, col, &rp, &cl, &csr_ws, &csr_bytes));
    size_t wb = gpuml_align_up((size_t)(2 * C * F) * sizeof(float)), pb = gpuml_align_up((size_t)(n * 2 * C) * sizeof(float));
    size_t bytes = 2 * wb + pb;
    void *ws = NULL;
    gpuml_status st = gpuml_scratch_alloc(ctx, bytes, &ws, fn);
    if (st != GPUML_OK) {
        gpuml_scratch_free(ctx, csr_ws, csr_bytes);
        return st;
    }
    float *gpn = ws, *wcat = (float *)((char *)ws + pb), *gwcat = (float *)((char *)ws + pb + wb);
    st = GPUML_LAUNCH(ctx, edge_grad_node, gout->data, idx->data, rp, cl, n, k, first, C, gpn);
    if (st == GPUML_OK && gbias)
        st = gpuml_reduce_run(ctx, /* every valid edge once: the x_i half of gpn, summed over nodes */
                              (gpuml_k_rjob){.op = GPUML_REDUCE_SUM, .v = {1, n, C, 0, 2 * C}, .xf = gpn,
                                             .out = gbias->data, .accumulate = accumulate != 0},
                              fn);
    if (st == GPUML_OK && gx) {
        /* gx [N, F] = gpn [N, 2C] wcat [2C, F] */
        st = GPUML_LAUNCH(ctx, edge_wcat, w->data, C, F, wcat);
        if (st == GPUML_OK)
            st = GPUML_LAUNCH(ctx, gemm, 0, 0, n, F, 2 * C, 1.0f, gpn, 0, wcat, 0, 0.0f, gx->data, 0, 1);
    }
    if (st == GPUML_OK && gw) {
        /* gwcat [2C, F] = gpn^T x, then folded back into W's [C, 2F] layout. */
        st = GPUML_LAUNCH(ctx, gemm, 1, 0, 2 * C, F, n, 1.0f, gpn, 0, x->data, 0, 0.0f, gwcat, 0, 1);
        if (st == GPUML_OK)
            st = GPUML_LAUNCH(ctx, edge_grad_w, gwcat, C, F, accumulate != 0, gw->data);
    }
    gpuml_scratch_free(ctx, ws, bytes);
    gpuml_scratch_free(ctx, csr_ws, csr_bytes);
    return st;
}

static gpuml_status check_op(gpuml_ctx *ctx, const char *fn, gpuml_reduce_op op)
{
    if (op != GPUML_REDUCE_SUM && op != GPUML_REDUCE_MEAN && op != GPUML_REDUCE_MAX)
        return gpuml_fail(ctx, GPUML_ERR_INVALID_ARGUMENT, fn, "op %d: neighbour reductions are SUM, MEAN and MAX",
                          (int)op);
    return GPUML_OK;
}

gpuml_status gpuml_neighbour_aggregate(gpuml_ctx *ctx, gpuml_reduce_op op, const gpuml_tensor *edges,
                                       const gpuml_tensor *idx, int exclude_self, gpuml_tensor *out,
                                       gpuml_tensor *argmax)
{
    static const char fn[] = "gpuml_neighbour_aggregate";
    if (!ctx)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "argument 'ctx' is NULL");
    GPUML_TRY(check_op(ctx, fn, op));
    int first = exclude_self ? 1 : 0;
    GPUML_TRY(gpuml_check_dtype(ctx, fn, "edges", edges, GPUML_F32));
    if (edges->ndim != 3) {
        char s[160];
        return gpuml_fail(ctx, GPUML_ERR_SHAPE, fn, "argument 'edges' %s must be [N, k_e, C]",
                          gpuml_shape_str(edges->ndim, edges->shape, s, sizeof s));
    }
    int64_t n = edges->shape[0], k, C = edges->shape[2], Ce;
    GPUML_TRY(gpuml_g_check_idx(ctx, fn, idx, n, first, &k));
    GPUML_TRY(check_edges(ctx, fn, "edges", edges, n, k - first, C, &Ce));
    GPUML_TRY(gpuml_g_check_2d(ctx, fn, "out", out, GPUML_F32, n, C));
    bool want_arg = op == GPUML_REDUCE_MAX && argmax;
    if (want_arg)
        GPUML_TRY(gpuml_g_check_2d(ctx, fn, "argmax", argmax, GPUML_I32, n, C));
    return GPUML_LAUNCH(ctx, neighbour_reduce, op, edges->data, idx->data, n, k, first, C, out->data,
                        want_arg ? argmax->data : NULL);
}

gpuml_status gpuml_neighbour_aggregate_backward(gpuml_ctx *ctx, gpuml_reduce_op op, const gpuml_tensor *idx,
                                                int exclude_self, const gpuml_tensor *gout, const gpuml_tensor *argmax,
                                                gpuml_tensor *gedges)
{
    static const char fn[] = "gpuml_neighbour_aggregate_backward";
    if (!ctx)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "argument 'ctx' is NULL");
    GPUML_TRY(check_op(ctx, fn, op));
    int first = exclude_self ? 1 : 0;
    GPUML_TRY(gpuml_check_dtype(ctx, fn, "gout", gout, GPUML_F32));
    if (gout->ndim != 2) {
        char s[160];
        return gpuml_fail(ctx, GPUML_ERR_SHAPE, fn, "argument 'gout' %s must be [N, C]",
                          gpuml_shape_str(gout->ndim, gout->shape, s, sizeof s));
    }
    int64_t n = gout->shape[0], C = gout->shape[1], k, Ce;
    GPUML_TRY(gpuml_g_check_idx(ctx, fn, idx, n, first, &k));
    GPUML_TRY(check_edges(ctx, fn, "gedges", gedges, n, k - first, C, &Ce));
    if (op == GPUML_REDUCE_MAX) {
        if (!argmax)
            return gpuml_fail(ctx, GPUML_ERR_INVALID_ARGUMENT, fn, "MAX backward needs the forward's argmax [N, C] i32");
        GPUML_TRY(gpuml_g_check_2d(ctx, fn, "argmax", argmax, GPUML_I32, n, C));
    }
    return GPUML_LAUNCH(ctx, neighbour_grad, op, gout->data, op == GPUML_REDUCE_MAX ? argmax->data : NULL, idx->data, n,
                        k, first, C, gedges->data);
}

gpuml_status gpuml_edge_mask(gpuml_ctx *ctx, const gpuml_tensor *idx, int exclude_self, gpuml_tensor *mask)
{
    static const char fn[] = "gpuml_edge_mask";
    if (!ctx)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "argument 'ctx' is NULL");
    int first = exclude_self ? 1 : 0;
    GPUML_TRY(gpuml_check_tensor(ctx, fn, "idx", idx));
    int64_t n = idx->ndim >= 1 ? idx->shape[0] : 0, k;
    GPUML_TRY(gpuml_g_check_idx(ctx, fn, idx, n, first, &k));
    GPUML_TRY(gpuml_check_tensor(ctx, fn, "mask", mask));
    if (mask->dtype != GPUML_U8 && mask->dtype != GPUML_BOOL)
        return gpuml_fail(ctx, GPUML_ERR_DTYPE, fn, "argument 'mask' is %s, expected u8 or bool",
                          gpuml_dtype_name(mask->dtype));
    if (mask->ndim != 2 || mask->shape[0] != n || mask->shape[1] != k - first)
        return gpuml_fail(ctx, GPUML_ERR_SHAPE, fn, "argument 'mask' must be [N, k_e] = [%lld, %lld]", (long long)n,
                          (long long)(k - first));
    return GPUML_LAUNCH(ctx, edge_mask, idx->data, n, k, first, mask->data);
}
