/* Matrix products and the linear layer's op (CBLAS / cuBLAS). */
#include "ops/dispatch.h"
#include "matmul.h"

typedef struct {
    int64_t batch, m, n, k;
    int64_t sa, sb, sc; /* batch strides in elements; sb = 0 for a shared b */
} gemm_shape;

static gpuml_status matmul_shapes(gpuml_ctx *ctx, const char *fn, const gpuml_tensor *a, int ta,
                                  const gpuml_tensor *b, int tb, const gpuml_tensor *c, gemm_shape *g)
{
    char s1[160], s2[160], s3[160];
    bool batched = a->ndim == 3;
    if (!(a->ndim == 2 || a->ndim == 3) || b->ndim < 2 || b->ndim > a->ndim || c->ndim != a->ndim)
        goto bad;
    {
        int o = batched ? 1 : 0;
        g->batch = batched ? a->shape[0] : 1;
        g->m = ta ? a->shape[o + 1] : a->shape[o];
        g->k = ta ? a->shape[o] : a->shape[o + 1];
        int ob = b->ndim == 3 ? 1 : 0;
        int64_t bk = tb ? b->shape[ob + 1] : b->shape[ob];
        g->n = tb ? b->shape[ob] : b->shape[ob + 1];
        if (bk != g->k)
            goto bad;
        if (b->ndim == 3 && b->shape[0] != g->batch)
            goto bad;
        if (c->shape[o] != g->m || c->shape[o + 1] != g->n || (batched && c->shape[0] != g->batch))
            goto bad;
        g->sa = g->m * g->k;
        g->sb = b->ndim == 3 ? g->k * g->n : 0;
        g->sc = g->m * g->n;
        return GPUML_OK;
    }
bad:
    return gpuml_fail(ctx, GPUML_ERR_SHAPE, fn, "shapes do not multiply: a %s%s, b %s%s, c %s",
                      gpuml_shape_str(a->ndim, a->shape, s1, sizeof s1), ta ? "^T" : "",
                      gpuml_shape_str(b->ndim, b->shape, s2, sizeof s2), tb ? "^T" : "",
                      gpuml_shape_str(c->ndim, c->shape, s3, sizeof s3));
}

static gpuml_status check_f32(gpuml_ctx *ctx, const char *fn, const char *name, const gpuml_tensor *t)
{
    return gpuml_check_dtype(ctx, fn, name, t, GPUML_F32);
}

gpuml_status gpuml_matmul_ex(gpuml_ctx *ctx, float alpha, const gpuml_tensor *a, int trans_a, const gpuml_tensor *b,
                             int trans_b, float beta, gpuml_tensor *c)
{
    static const char fn[] = "gpuml_matmul";
    if (!ctx)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "argument 'ctx' is NULL");
    GPUML_TRY(check_f32(ctx, fn, "a", a));
    GPUML_TRY(check_f32(ctx, fn, "b", b));
    GPUML_TRY(check_f32(ctx, fn, "c", c));
    gemm_shape g;
    GPUML_TRY(matmul_shapes(ctx, fn, a, trans_a, b, trans_b, c, &g));
    if ((c->data == a->data || c->data == b->data) && gpuml_tensor_numel(c) > 0)
        return gpuml_fail(ctx, GPUML_ERR_INVALID_ARGUMENT, fn, "c aliases an input");
    return GPUML_LAUNCH(ctx, gemm, trans_a != 0, trans_b != 0, g.m, g.n, g.k, alpha, a->data, g.sa, b->data, g.sb, beta,
                        c->data, g.sc, g.batch);
}

gpuml_status gpuml_matmul(gpuml_ctx *ctx, const gpuml_tensor *a, int trans_a, const gpuml_tensor *b, int trans_b,
                          gpuml_tensor *c)
{
    return gpuml_matmul_ex(ctx, 1.0f, a, trans_a, b, trans_b, 0.0f, c);
}

gpuml_status gpuml_matmul_backward(gpuml_ctx *ctx, const gpuml_tensor *a, int trans_a, const gpuml_tensor *b,
                                   int trans_b, const gpuml_tensor *gc, gpuml_tensor *ga, gpuml_tensor *gb,
                                   int accumulate)
{
    static const char fn[] = "gpuml_matmul_backward";
    if (!ctx)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "argument 'ctx' is NULL");
    GPUML_TRY(check_f32(ctx, fn, "a", a));
    GPUML_TRY(check_f32(ctx, fn, "b", b));
    GPUML_TRY(check_f32(ctx, fn, "gc", gc));
    gemm_shape g;
    GPUML_TRY(matmul_shapes(ctx, fn, a, trans_a, b, trans_b, gc, &g));
    if (ga) {
        GPUML_TRY(check_f32(ctx, fn, "ga", ga));
        GPUML_TRY(gpuml_check_same_shape(ctx, fn, "a", a, "ga", ga));
    }
    if (gb) {
        GPUML_TRY(check_f32(ctx, fn, "gb", gb));
        GPUML_TRY(gpuml_check_same_shape(ctx, fn, "b", b, "gb", gb));
    }
    int ta = trans_a != 0, tb = trans_b != 0;
    float beta = accumulate ? 1.0f : 0.0f;
    const float *A = a->data, *B = b->data, *G = gc->data;
    if (ga) {
        /* d op(a) = gc op(b)^T; for trans_a, ga = op(b) gc^T. */
        if (!ta)
            GPUML_TRY(GPUML_LAUNCH(ctx, gemm, 0, !tb, g.m, g.k, g.n, 1.0f, G, g.sc, B, g.sb, beta, (float *)ga->data,
                                   g.sa, g.batch));
        else
            GPUML_TRY(GPUML_LAUNCH(ctx, gemm, tb, 1, g.k, g.m, g.n, 1.0f, B, g.sb, G, g.sc, beta, (float *)ga->data,
                                   g.sa, g.batch));
    }
    if (gb) {
        /* d op(b) = op(a)^T gc; for trans_b, gb = gc^T op(a). A shared b sums
         * over the batch: one GEMM per batch entry, accumulating in order. */
        int64_t nb = g.sb ? 1 : g.batch;
        int64_t batch = g.sb ? g.batch : 1;
        for (int64_t i = 0; i < nb; i++) {
            float bt = (i > 0) ? 1.0f : beta;
            const float *Ai = A + (g.sb ? 0 : i * g.sa), *Gi = G + (g.sb ? 0 : i * g.sc);
            if (!tb)
                GPUML_TRY(GPUML_LAUNCH(ctx, gemm, !ta, 0, g.k, g.n, g.m, 1.0f, Ai, g.sa, Gi, g.sc, bt,
                                       (float *)gb->data, g.sb, batch));
            else
                GPUML_TRY(GPUML_LAUNCH(ctx, gemm, 1, ta, g.n, g.k, g.m, 1.0f, Gi, g.sc, Ai, g.sa, bt,
                                       (float *)gb->data, g.sb, batch));
        }
    }
    return GPUML_OK;
}

/* x [..., in] as rows; w [out, in]; y [..., out]. */
static gpuml_status linear_shapes(gpuml_ctx *ctx, const char *fn, const gpuml_tensor *x, const gpuml_tensor *w,
                                  const gpuml_tensor *y, int64_t *rows, int64_t *in, int64_t *out)
{
    char s1[160], s2[160], s3[160];
    if (w->ndim != 2 || x->ndim < 1 || y->ndim != x->ndim)
        goto bad;
    *out = w->shape[0];
    *in = w->shape[1];
    if (x->shape[x->ndim - 1] != *in || y->shape[y->ndim - 1] != *out)
        goto bad;
    for (int d = 0; d + 1 < x->ndim; d++)
        if (x->shape[d] != y->shape[d])
            goto bad;
    *rows = gpuml_numel(x->ndim - 1, x->shape);
    return GPUML_OK;
bad:
    return gpuml_fail(ctx, GPUML_ERR_SHAPE, fn, "expected x [N, in], w [out, in], y [N, out]; got x %s, w %s, y %s",
                      gpuml_shape_str(x->ndim, x->shape, s1, sizeof s1), gpuml_shape_str(w->ndim, w->shape, s2, sizeof s2),
                      gpuml_shape_str(y->ndim, y->shape, s3, sizeof s3));
}

static gpuml_status linear_rows(gpuml_ctx *ctx, const float *x, const float *w, const float *bias, float *y,
                                int64_t rows, int64_t in, int64_t out)
{
    if (bias)
        GPUML_TRY(GPUML_LAUNCH(ctx, bias_rows, rows, out, bias, y));
    return GPUML_LAUNCH(ctx, gemm, 0, 1, rows, out, in, 1.0f, x, 0, w, 0, bias ? 1.0f : 0.0f, y, 0, 1);
}

gpuml_status gpuml_linear(gpuml_ctx *ctx, const gpuml_tensor *x, const gpuml_tensor *w, const gpuml_tensor *bias,
                          gpuml_tensor *y)
{
    static const char fn[] = "gpuml_linear";
    if (!ctx)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "argument 'ctx' is NULL");
    GPUML_TRY(check_f32(ctx, fn, "x", x));
    GPUML_TRY(check_f32(ctx, fn, "w", w));
    GPUML_TRY(check_f32(ctx, fn, "y", y));
    int64_t rows, in, out;
    GPUML_TRY(linear_shapes(ctx, fn, x, w, y, &rows, &in, &out));
    if (bias) {
        GPUML_TRY(check_f32(ctx, fn, "bias", bias));
        if (bias->ndim != 1 || bias->shape[0] != out)
            return gpuml_fail(ctx, GPUML_ERR_SHAPE, fn, "bias must be [%lld]", (long long)out);
    }
    if (y->data == x->data && gpuml_tensor_numel(y) > 0)
        return gpuml_fail(ctx, GPUML_ERR_INVALID_ARGUMENT, fn, "y aliases x");
    const float *b = bias ? bias->data : NULL;
    /* On the CPU each row's result depends on that row alone, whatever the
     * row count (kernels/cpu/gemm_rows.h): the engine's batches give each
     * event the bits it gets alone. */
    return linear_rows(ctx, x->data, w->data, b, y->data, rows, in, out);
}

#if GPUML_HAVE_BLAS
/* gw = gy^T x (+ gw) over many rows on the CPU: one BLAS call per fixed
 * chunk of GPUML_GEMM_K_CHUNK rows, each a whole [out, in] product (one
 * packing of its operands, where tiles of one long product would pack them
 * once per tile), then the partial products summed in chunk order in double
 * (gw first when accumulating). The chunking depends on the row count only:
 * the same bits for any thread count. */
static gpuml_status weight_grad_chunked(gpuml_ctx *ctx, const char *fn, const float *gy, const float *x, float *gw,
                                        int64_t rows, int64_t in, int64_t out, int accumulate)
{
    const int64_t kc = GPUML_GEMM_K_CHUNK, full = rows / kc, rem = rows - full * kc, mn = out * in;
    int64_t first = accumulate ? 1 : 0, slots = first + full + (rem > 0);
    size_t nbytes = (size_t)(slots * mn) * sizeof(float);
    void *mem;
    GPUML_TRY(gpuml_scratch_alloc(ctx, nbytes, &mem, fn));
    float *part = mem;
    gpuml_device host = {GPUML_DEVICE_CPU, 0};
    gpuml_status st = accumulate ? gpuml_memcpy(ctx, part, host, gw, host, (size_t)mn * sizeof(float), fn) : GPUML_OK;
    if (st == GPUML_OK)
        st = GPUML_LAUNCH(ctx, gemm, 1, 0, out, in, kc, 1.0f, gy, kc * out, x, kc * in, 0.0f, part + first * mn, mn,
                          full);
    if (st == GPUML_OK && rem > 0)
        st = GPUML_LAUNCH(ctx, gemm, 1, 0, out, in, rem, 1.0f, gy + full * kc * out, 0, x + full * kc * in, 0, 0.0f,
                          part + (first + full) * mn, 0, 1);
    if (st == GPUML_OK)
        st = gpuml_reduce_run(ctx, (gpuml_k_rjob){.op = GPUML_REDUCE_SUM, .v = {1, slots, mn, 0, mn}, .xf = part, .out = gw},
                              fn);
    gpuml_scratch_free(ctx, mem, nbytes);
    return st;
}
#endif

gpuml_status gpuml_linear_backward(gpuml_ctx *ctx, const gpuml_tensor *x, const gpuml_tensor *w, const gpuml_tensor *gy,
                                   gpuml_tensor *gx, gpuml_tensor *gw, gpuml_tensor *gbias, int accumulate)
{
    static const char fn[] = "gpuml_linear_backward";
    if (!ctx)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "argument 'ctx' is NULL");
    GPUML_TRY(check_f32(ctx, fn, "x", x));
    GPUML_TRY(check_f32(ctx, fn, "w", w));
    GPUML_TRY(check_f32(ctx, fn, "gy", gy));
    int64_t rows, in, out;
    GPUML_TRY(linear_shapes(ctx, fn, x, w, gy, &rows, &in, &out));
    if (gx) {
        GPUML_TRY(check_f32(ctx, fn, "gx", gx));
        GPUML_TRY(gpuml_check_same_shape(ctx, fn, "x", x, "gx", gx));
    }
    if (gw) {
        GPUML_TRY(check_f32(ctx, fn, "gw", gw));
        GPUML_TRY(gpuml_check_same_shape(ctx, fn, "w", w, "gw", gw));
    }
    if (gbias) {
        GPUML_TRY(check_f32(ctx, fn, "gbias", gbias));
        if (gbias->ndim != 1 || gbias->shape[0] != out)
            return gpuml_fail(ctx, GPUML_ERR_SHAPE, fn, "gbias must be [%lld]", (long long)out);
    }
    float beta = accumulate ? 1.0f : 0.0f;
    if (gx)
        GPUML_TRY(GPUML_LAUNCH(ctx, gemm, 0, 0, rows, in, out, 1.0f, gy->data, 0, w->data, 0, 0.0f, gx->data, 0, 1));
#if GPUML_HAVE_BLAS
    if (gw && !gpuml_on_cuda(ctx) && rows >= 2 * GPUML_GEMM_K_CHUNK && out * in <= 65536) {
        GPUML_TRY(weight_grad_chunked(ctx, fn, gy->data, x->data, gw->data, rows, in, out, accumulate));
        gw = NULL;
    }
#endif
    if (gw)
        GPUML_TRY(GPUML_LAUNCH(ctx, gemm, 1, 0, out, in, rows, 1.0f, gy->data, 0, x->data, 0, beta, gw->data, 0, 1));
    if (gbias)
        GPUML_TRY(gpuml_reduce_run(ctx,
                                   (gpuml_k_rjob){.op = GPUML_REDUCE_SUM, .v = {1, rows, out, 0, out}, .xf = gy->data,
                                                  .out = gbias->data, .accumulate = accumulate != 0},
                                   fn));
    return GPUML_OK;
}
