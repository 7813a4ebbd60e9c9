/* Row ops: gather, deterministic scatter-add, segment reductions over
 * row_splits, concat / split along the last axis (kernels/rows.h,
 * kernels/segment.h). */
#include <stdio.h>
#include <string.h>

#include "core/runtime.h"
#include "ops/dispatch.h"

static int64_t row_elems(const gpuml_tensor *t) { return t->ndim ? gpuml_numel(t->ndim - 1, t->shape + 1) : 1; }

/* x [N, ...] and out [M, ...] with the same trailing shape; idx [M]. */
static gpuml_status check_rows(gpuml_ctx *ctx, const char *fn, const char *xn, const gpuml_tensor *x, const char *on,
                               const gpuml_tensor *o, const gpuml_tensor *idx, bool idx_matches_o)
{
    char s1[160], s2[160], s3[160];
    bool ok = x->ndim >= 1 && o->ndim == x->ndim && idx->ndim == 1;
    for (int d = 1; ok && d < x->ndim; d++)
        ok = x->shape[d] == o->shape[d];
    if (ok)
        ok = idx->shape[0] == (idx_matches_o ? o->shape[0] : x->shape[0]);
    if (!ok)
        return gpuml_fail(ctx, GPUML_ERR_SHAPE, fn, "'%s' %s, '%s' %s and idx %s do not fit", xn,
                          gpuml_shape_str(x->ndim, x->shape, s1, sizeof s1), on,
                          gpuml_shape_str(o->ndim, o->shape, s2, sizeof s2),
                          gpuml_shape_str(idx->ndim, idx->shape, s3, sizeof s3));
    return GPUML_OK;
}

gpuml_status gpuml_gather_rows(gpuml_ctx *ctx, const gpuml_tensor *x, const gpuml_tensor *idx, gpuml_tensor *out)
{
    static const char fn[] = "gpuml_gather_rows";
    if (!ctx)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "argument 'ctx' is NULL");
    GPUML_TRY(gpuml_check_tensor(ctx, fn, "x", x));
    GPUML_TRY(gpuml_check_index_dtype(ctx, fn, "idx", idx));
    GPUML_TRY(gpuml_check_tensor(ctx, fn, "out", out));
    if (out->dtype != x->dtype)
        return gpuml_fail(ctx, GPUML_ERR_DTYPE, fn, "out is %s but x is %s", gpuml_dtype_name(out->dtype),
                          gpuml_dtype_name(x->dtype));
    GPUML_TRY(check_rows(ctx, fn, "x", x, "out", out, idx, true));
    if (out->data == x->data && gpuml_tensor_numel(out) > 0)
        return gpuml_fail(ctx, GPUML_ERR_INVALID_ARGUMENT, fn, "out aliases x");
    int64_t row_bytes = row_elems(x) * (int64_t)gpuml_dtype_size(x->dtype);
    return GPUML_LAUNCH(ctx, gather_rows, x->data, x->shape[0], idx->data, idx->dtype == GPUML_I64, out->data,
                        out->shape[0], row_bytes);
}

/* Builds the CSR of idx into rowptr/col (already validated), with the
 * CUDA workspace taken from the context allocator. */
static gpuml_status build_csr(gpuml_ctx *ctx, const char *fn, const gpuml_tensor *idx, int64_t ntargets,
                              int64_t *rowptr, int64_t *col)
{
    size_t ws_bytes = 0;
    void *ws = NULL;
#if GPUML_HAVE_CUDA
    if (gpuml_on_cuda(ctx))
        ws_bytes = gpuml_cuda_csr_workspace(gpuml_tensor_numel(idx), ntargets);
#endif
    if (ws_bytes)
        GPUML_TRY(gpuml_scratch_alloc(ctx, ws_bytes, &ws, fn));
    gpuml_status st = GPUML_LAUNCH(ctx, csr_build, idx->data, idx->dtype == GPUML_I64, gpuml_tensor_numel(idx),
                                   ntargets, rowptr, col, ws);
    gpuml_scratch_free(ctx, ws, ws_bytes);
    return st;
}

gpuml_status gpuml_index_csr(gpuml_ctx *ctx, const gpuml_tensor *idx, gpuml_tensor *rowptr, gpuml_tensor *col)
{
    static const char fn[] = "gpuml_index_csr";
    if (!ctx)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "argument 'ctx' is NULL");
    GPUML_TRY(gpuml_check_index_dtype(ctx, fn, "idx", idx));
    GPUML_TRY(gpuml_check_dtype(ctx, fn, "rowptr", rowptr, GPUML_I64));
    GPUML_TRY(gpuml_check_dtype(ctx, fn, "col", col, GPUML_I64));
    if (rowptr->ndim != 1 || rowptr->shape[0] < 1)
        return gpuml_fail(ctx, GPUML_ERR_SHAPE, fn, "rowptr must be [ntargets + 1]");
    if (col->ndim != 1 || col->shape[0] != gpuml_tensor_numel(idx))
        return gpuml_fail(ctx, GPUML_ERR_SHAPE, fn, "col must be [%lld], one entry per index",
                          (long long)gpuml_tensor_numel(idx));
    return build_csr(ctx, fn, idx, rowptr->shape[0] - 1, rowptr->data, col->data);
}

gpuml_status gpuml_scatter_add_rows(gpuml_ctx *ctx, const gpuml_tensor *src, const gpuml_tensor *idx, gpuml_tensor *out)
{
    static const char fn[] = "gpuml_scatter_add_rows";
    if (!ctx)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "argument 'ctx' is NULL");
    GPUML_TRY(gpuml_check_dtype(ctx, fn, "src", src, GPUML_F32));
    GPUML_TRY(gpuml_check_index_dtype(ctx, fn, "idx", idx));
    GPUML_TRY(gpuml_check_dtype(ctx, fn, "out", out, GPUML_F32));
    GPUML_TRY(check_rows(ctx, fn, "src", src, "out", out, idx, false));
    if (out->data == src->data && gpuml_tensor_numel(out) > 0)
        return gpuml_fail(ctx, GPUML_ERR_INVALID_ARGUMENT, fn, "out aliases src");
    int64_t m = src->shape[0], nt = out->shape[0], ncols = row_elems(out);
    if (m == 0 || nt == 0 || ncols == 0)
        return GPUML_OK;
    /* out[t] += the sum of its sources, in CSR (source) order, by the ragged
     * fixed-order reduction of kernels/segment.h: no thread loops over a
     * target's sources (a per-event broadcast's gradient has an event's
     * rows as sources). */
    size_t ptr_bytes = gpuml_align_up((size_t)(nt + 1) * sizeof(int64_t));
    size_t col_bytes = gpuml_align_up((size_t)m * sizeof(int64_t));
    size_t seg_bytes = gpuml_on_cuda(ctx) ? gpuml_k_seg_ws_bytes(m, ncols, nt) : 0;
    size_t bytes = ptr_bytes + col_bytes + seg_bytes;
    void *ws = NULL;
    GPUML_TRY(gpuml_scratch_alloc(ctx, bytes, &ws, fn));
    int64_t *rowptr = ws, *col = (int64_t *)((char *)ws + ptr_bytes);
    gpuml_status st = build_csr(ctx, fn, idx, nt, rowptr, col);
    gpuml_k_seg j = {.op = GPUML_REDUCE_SUM, .x = src->data, .nrows = m, .ncols = ncols, .row_splits = rowptr,
                     .batch = nt, .out = out->data, .levels = gpuml_k_seg_levels(m),
                     .ws = seg_bytes ? (char *)ws + ptr_bytes + col_bytes : NULL, .col = col, .accumulate = 1};
    if (st == GPUML_OK)
        st = GPUML_LAUNCH(ctx, segment_reduce, j);
    gpuml_scratch_free(ctx, ws, bytes);
    return st;
}

static gpuml_status check_segment(gpuml_ctx *ctx, const char *fn, gpuml_reduce_op op, const gpuml_tensor *rows,
                                  const char *rows_name, const gpuml_tensor *row_splits, const gpuml_tensor *per_event,
                                  const char *pe_name, const gpuml_tensor *argidx, int64_t *batch)
{
    if (op != GPUML_REDUCE_SUM && op != GPUML_REDUCE_MEAN && op != GPUML_REDUCE_MAX)
        return gpuml_fail(ctx, GPUML_ERR_INVALID_ARGUMENT, fn, "op %d: segment reductions are SUM, MEAN and MAX",
                          (int)op);
    GPUML_TRY(gpuml_check_dtype(ctx, fn, rows_name, rows, GPUML_F32));
    GPUML_TRY(gpuml_check_dtype(ctx, fn, pe_name, per_event, GPUML_F32));
    if (rows->ndim != 2)
        return gpuml_fail(ctx, GPUML_ERR_SHAPE, fn, "'%s' must be [N, C]", rows_name);
    GPUML_TRY(gpuml_check_row_splits(ctx, fn, "row_splits", row_splits, rows->shape[0], batch));
    if (per_event->ndim != 2 || per_event->shape[0] != *batch || per_event->shape[1] != rows->shape[1])
        return gpuml_fail(ctx, GPUML_ERR_SHAPE, fn, "'%s' must be [B, C] = [%lld, %lld]", pe_name, (long long)*batch,
                          (long long)rows->shape[1]);
    if (op == GPUML_REDUCE_MAX) {
        if (!argidx)
            return gpuml_fail(ctx, GPUML_ERR_INVALID_ARGUMENT, fn, "MAX needs argidx [B, C] i64");
        GPUML_TRY(gpuml_check_dtype(ctx, fn, "argidx", argidx, GPUML_I64));
        GPUML_TRY(gpuml_check_same_shape(ctx, fn, pe_name, per_event, "argidx", argidx));
    }
    return GPUML_OK;
}

gpuml_status gpuml_segment_reduce(gpuml_ctx *ctx, gpuml_reduce_op op, const gpuml_tensor *x,
                                  const gpuml_tensor *row_splits, gpuml_tensor *out, gpuml_tensor *argidx)
{
    static const char fn[] = "gpuml_segment_reduce";
    if (!ctx)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "argument 'ctx' is NULL");
    int64_t batch;
    GPUML_TRY(check_segment(ctx, fn, op, x, "x", row_splits, out, "out", argidx, &batch));
    gpuml_k_seg j = {.op = op, .x = x->data, .nrows = x->shape[0], .ncols = x->shape[1],
                     .row_splits = row_splits->data, .batch = batch, .out = out->data,
                     .arg = op == GPUML_REDUCE_MAX ? argidx->data : NULL, .levels = gpuml_k_seg_levels(x->shape[0]),
                     .check = 1};
    if (batch * j.ncols == 0)
        return GPUML_OK;
    /* partials for the CUDA levels; the CPU driver keeps none (kernels/segment.h) */
    size_t bytes = gpuml_on_cuda(ctx) ? gpuml_k_seg_ws_bytes(j.nrows, j.ncols, batch) : 0;
    if (bytes)
        GPUML_TRY(gpuml_scratch_alloc(ctx, bytes, &j.ws, fn));
    gpuml_status st = GPUML_LAUNCH(ctx, segment_reduce, j);
    gpuml_scratch_free(ctx, j.ws, bytes);
    return st;
}

gpuml_status gpuml_segment_reduce_backward(gpuml_ctx *ctx, gpuml_reduce_op op, const gpuml_tensor *row_splits,
                                           const gpuml_tensor *gout, const gpuml_tensor *argidx, gpuml_tensor *gx)
{
    static const char fn[] = "gpuml_segment_reduce_backward";
    if (!ctx)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "argument 'ctx' is NULL");
    int64_t batch;
    GPUML_TRY(check_segment(ctx, fn, op, gx, "gx", row_splits, gout, "gout", argidx, &batch));
    return GPUML_LAUNCH(ctx, segment_grad, op, gout->data, op == GPUML_REDUCE_MAX ? argidx->data : NULL,
                        row_splits->data, batch, gx->shape[0], gx->shape[1], gx->data);
}

gpuml_status gpuml_segment_ids(gpuml_ctx *ctx, const gpuml_tensor *row_splits, gpuml_tensor *ids)
{
    static const char fn[] = "gpuml_segment_ids";
    if (!ctx)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "argument 'ctx' is NULL");
    GPUML_TRY(gpuml_check_dtype(ctx, fn, "ids", ids, GPUML_I32));
    if (ids->ndim != 1)
        return gpuml_fail(ctx, GPUML_ERR_SHAPE, fn, "ids must be [N]");
    int64_t batch;
    GPUML_TRY(gpuml_check_row_splits(ctx, fn, "row_splits", row_splits, ids->shape[0], &batch));
    if (batch == 0 && ids->shape[0] == 0)
        return GPUML_OK;
    return GPUML_LAUNCH(ctx, segment_ids, row_splits->data, batch, ids->shape[0], ids->data);
}

static gpuml_status concat_common(gpuml_ctx *ctx, const char *fn, int n, const gpuml_tensor *const *pieces,
                                  const gpuml_tensor *wide, int split)
{
    if (!ctx)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "argument 'ctx' is NULL");
    if (n < 1 || !pieces)
        return gpuml_fail(ctx, GPUML_ERR_INVALID_ARGUMENT, fn, "need at least one piece (n = %d)", n);
    const char *wname = split ? "x" : "out";
    GPUML_TRY(gpuml_check_tensor(ctx, fn, wname, wide));
    if (wide->ndim < 1)
        return gpuml_fail(ctx, GPUML_ERR_SHAPE, fn, "'%s' is a scalar", wname);
    int nd = wide->ndim;
    int64_t total = 0;
    for (int i = 0; i < n; i++) {
        const gpuml_tensor *p = pieces[i];
        char name[32];
        snprintf(name, sizeof name, "%s[%d]", split ? "outs" : "xs", i);
        GPUML_TRY(gpuml_check_tensor(ctx, fn, name, p));
        if (p->dtype != wide->dtype)
            return gpuml_fail(ctx, GPUML_ERR_DTYPE, fn, "'%s' is %s but '%s' is %s", name, gpuml_dtype_name(p->dtype),
                              wname, gpuml_dtype_name(wide->dtype));
        bool ok = p->ndim == nd;
        for (int d = 0; ok && d + 1 < nd; d++)
            ok = p->shape[d] == wide->shape[d];
        if (!ok) {
            char s1[160], s2[160];
            return gpuml_fail(ctx, GPUML_ERR_SHAPE, fn, "'%s' %s does not share the leading shape of '%s' %s", name,
                              gpuml_shape_str(p->ndim, p->shape, s1, sizeof s1), wname,
                              gpuml_shape_str(nd, wide->shape, s2, sizeof s2));
        }
        if (p->data == wide->data && gpuml_tensor_numel(p) > 0)
            return gpuml_fail(ctx, GPUML_ERR_INVALID_ARGUMENT, fn, "'%s' aliases '%s'", name, wname);
        total += p->shape[nd - 1];
    }
    if (total != wide->shape[nd - 1])
        return gpuml_fail(ctx, GPUML_ERR_SHAPE, fn, "pieces have %lld columns in all but '%s' has %lld", (long long)total,
                          wname, (long long)wide->shape[nd - 1]);
    int64_t rows = gpuml_numel(nd - 1, wide->shape);
    size_t es = gpuml_dtype_size(wide->dtype);
    int64_t wide_row = wide->shape[nd - 1] * (int64_t)es, offset = 0;
    for (int base = 0; base < n; base += GPUML_K_MAX_PIECES) {
        gpuml_k_pieces pc;
        memset(&pc, 0, sizeof pc);
        pc.n = n - base < GPUML_K_MAX_PIECES ? n - base : GPUML_K_MAX_PIECES;
        for (int q = 0; q < pc.n; q++) {
            const gpuml_tensor *p = pieces[base + q];
            pc.ptr[q] = p->data;
            pc.width[q] = p->shape[nd - 1] * (int64_t)es;
            pc.offset[q] = offset;
            offset += pc.width[q];
        }
        GPUML_TRY(GPUML_LAUNCH(ctx, concat, pc, rows, wide->data, wide_row, split));
    }
    return GPUML_OK;
}

gpuml_status gpuml_concat(gpuml_ctx *ctx, int n, const gpuml_tensor *const *xs, gpuml_tensor *out)
{
    return concat_common(ctx, "gpuml_concat", n, xs, out, 0);
}

gpuml_status gpuml_split(gpuml_ctx *ctx, const gpuml_tensor *x, int n, gpuml_tensor *const *outs)
{
    return concat_common(ctx, "gpuml_split", n, (const gpuml_tensor *const *)outs, x, 1);
}

static gpuml_status rand_common(gpuml_ctx *ctx, const char *fn, gpuml_tensor *t, int normal, float p0, float p1)
{
    if (!ctx)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "argument 'ctx' is NULL");
    GPUML_TRY(gpuml_check_dtype(ctx, fn, "t", t, GPUML_F32));
    if (!(p0 == p0) || !(p1 == p1))
        return gpuml_fail(ctx, GPUML_ERR_INVALID_ARGUMENT, fn, "distribution parameters are NaN");
    int64_t n = gpuml_tensor_numel(t);
    uint64_t base = gpuml_ctx_rng_take(ctx, (uint64_t)(n + 3) / 4);
    return GPUML_LAUNCH(ctx, rand, normal, ctx->rng_seed, base, n, p0, p1, t->data);
}

gpuml_status gpuml_rand_uniform(gpuml_ctx *ctx, gpuml_tensor *t, float lo, float hi)
{
    return rand_common(ctx, "gpuml_rand_uniform", t, 0, lo, hi);
}

gpuml_status gpuml_rand_normal(gpuml_ctx *ctx, gpuml_tensor *t, float mean, float std)
{
    return rand_common(ctx, "gpuml_rand_normal", t, 1, mean, std);
}
