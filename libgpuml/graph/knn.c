/* kNN within events and its backward (kernels/knn.h): argument checks,
 * workspace, dispatch. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/runtime.h"
#include "ops/dispatch.h"

void gpuml_knn_params_init_defaults(gpuml_knn_params *p)
{
    if (!p)
        return;
    memset(p, 0, sizeof *p);
    p->k = 16;
    p->max_radius = 0.0f;
    p->algo = GPUML_KNN_AUTO;
}

/* t must be [rows, cols] of dtype dt. */
static gpuml_status check_matrix(gpuml_ctx *ctx, const char *fn, const char *arg, const gpuml_tensor *t,
                                 gpuml_dtype dt, int64_t rows, int64_t cols)
{
    GPUML_TRY(gpuml_check_dtype(ctx, fn, arg, t, dt));
    if (t->ndim != 2 || t->shape[0] != rows || t->shape[1] != cols) {
        char s[160];
        return gpuml_fail(ctx, GPUML_ERR_SHAPE, fn, "argument '%s' is %s, expected [%lld, %lld]", arg,
                          gpuml_shape_str(t->ndim, t->shape, s, sizeof s), (long long)rows, (long long)cols);
    }
    return GPUML_OK;
}

/* coords [N, D] f32 with D and N in range; *n, *d receive them. */
static gpuml_status check_coords(gpuml_ctx *ctx, const char *fn, const gpuml_tensor *coords, int64_t *n, int *d)
{
    GPUML_TRY(gpuml_check_dtype(ctx, fn, "coords", coords, GPUML_F32));
    if (coords->ndim != 2) {
        char s[160];
        return gpuml_fail(ctx, GPUML_ERR_SHAPE, fn, "argument 'coords' is %s, expected [N, D]",
                          gpuml_shape_str(coords->ndim, coords->shape, s, sizeof s));
    }
    if (coords->shape[1] < 1 || coords->shape[1] > GPUML_KNN_MAX_DIM)
        return gpuml_fail(ctx, GPUML_ERR_INVALID_ARGUMENT, fn, "argument 'coords' has D = %lld, expected 1 .. %d",
                          (long long)coords->shape[1], GPUML_KNN_MAX_DIM);
    if (coords->shape[0] >= INT32_MAX)
        return gpuml_fail(ctx, GPUML_ERR_INVALID_ARGUMENT, fn,
                          "argument 'coords' has N = %lld rows; i32 neighbour indices need N < 2^31 - 1",
                          (long long)coords->shape[0]);
    *n = coords->shape[0];
    *d = (int)coords->shape[1];
    return GPUML_OK;
}

static gpuml_status check_k(gpuml_ctx *ctx, const char *fn, int k)
{
    if (k < 1 || k > GPUML_KNN_MAX_K)
        return gpuml_fail(ctx, GPUML_ERR_INVALID_ARGUMENT, fn, "argument 'k' = %d is out of range 1 .. %d", k,
                          GPUML_KNN_MAX_K);
    return GPUML_OK;
}

/* rev_rowptr [n+1] i64 and rev_col [n*k] i64, both or neither. */
static gpuml_status check_rev(gpuml_ctx *ctx, const char *fn, const gpuml_tensor *rp, const gpuml_tensor *col,
                              int64_t n, int k)
{
    if (!rp && !col)
        return GPUML_OK;
    if (!rp || !col)
        return gpuml_fail(ctx, GPUML_ERR_INVALID_ARGUMENT, fn,
                          "argument '%s' is NULL but '%s' is not: give both or neither", rp ? "rev_col" : "rev_rowptr",
                          rp ? "rev_rowptr" : "rev_col");
    GPUML_TRY(gpuml_check_dtype(ctx, fn, "rev_rowptr", rp, GPUML_I64));
    GPUML_TRY(gpuml_check_dtype(ctx, fn, "rev_col", col, GPUML_I64));
    char s[160];
    if (rp->ndim != 1 || rp->shape[0] != n + 1)
        return gpuml_fail(ctx, GPUML_ERR_SHAPE, fn, "argument 'rev_rowptr' is %s, expected [%lld]",
                          gpuml_shape_str(rp->ndim, rp->shape, s, sizeof s), (long long)(n + 1));
    if (col->ndim != 1 || col->shape[0] != n * k)
        return gpuml_fail(ctx, GPUML_ERR_SHAPE, fn, "argument 'rev_col' is %s, expected [%lld]",
                          gpuml_shape_str(col->ndim, col->shape, s, sizeof s), (long long)(n * k));
    return GPUML_OK;
}

static gpuml_status knn_run(gpuml_ctx *ctx, const char *fn, const gpuml_tensor *coords, const gpuml_tensor *row_splits,
                            const gpuml_knn_params *p, gpuml_tensor *idx, gpuml_tensor *dist2, gpuml_tensor *rev_rowptr,
                            gpuml_tensor *rev_col)
{
    if (!ctx)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "argument 'ctx' is NULL");
    if (!p)
        return gpuml_fail(ctx, GPUML_ERR_INVALID_ARGUMENT, fn, "argument 'p' is NULL");
    int64_t n = 0, nev = 0;
    int d = 0;
    GPUML_TRY(check_coords(ctx, fn, coords, &n, &d));
    GPUML_TRY(check_k(ctx, fn, p->k));
    if (isnan(p->max_radius))
        return gpuml_fail(ctx, GPUML_ERR_INVALID_ARGUMENT, fn, "argument 'max_radius' is NaN");
    if ((int)p->algo < 0 || p->algo >= GPUML_KNN_ALGO_COUNT_)
        return gpuml_fail(ctx, GPUML_ERR_INVALID_ARGUMENT, fn, "argument 'algo' = %d is not a gpuml_knn_algo",
                          (int)p->algo);
    GPUML_TRY(gpuml_check_row_splits(ctx, fn, "row_splits", row_splits, n, &nev));
    GPUML_TRY(check_matrix(ctx, fn, "idx", idx, GPUML_I32, n, p->k));
    GPUML_TRY(check_matrix(ctx, fn, "dist2", dist2, GPUML_F32, n, p->k));
    GPUML_TRY(check_rev(ctx, fn, rev_rowptr, rev_col, n, p->k));
    const gpuml_tensor *ins[] = {coords, row_splits}, *outs[] = {idx, dist2, rev_rowptr, rev_col};
    const char *out_names[] = {"idx", "dist2", "rev_rowptr", "rev_col"};
    for (int o = 0; o < 4; o++) {
        for (int i = 0; i < 2; i++)
            if (gpuml_tensors_overlap(outs[o], ins[i]))
                return gpuml_fail(ctx, GPUML_ERR_INVALID_ARGUMENT, fn, "output '%s' overlaps input '%s'",
                                  out_names[o], i ? "row_splits" : "coords");
        for (int o2 = 0; o2 < o; o2++)
            if (gpuml_tensors_overlap(outs[o], outs[o2]))
                return gpuml_fail(ctx, GPUML_ERR_INVALID_ARGUMENT, fn, "outputs '%s' and '%s' overlap",
                                  out_names[o2], out_names[o]);
    }
    if (n == 0)
        return rev_rowptr ? gpuml_knn_reverse(ctx, idx, rev_rowptr, rev_col) : GPUML_OK;

    float r2 = p->max_radius > 0 ? p->max_radius * p->max_radius : INFINITY;
    size_t ws_bytes;
#if GPUML_HAVE_CUDA
    ws_bytes = gpuml_on_cuda(ctx) ? gpuml_cuda_knn_workspace(n, d, nev, p->k, ctx->num_threads)
                                  : gpuml_cpu_knn_workspace(n, d, nev, p->k, ctx->num_threads);
#else
    ws_bytes = gpuml_cpu_knn_workspace(n, d, nev, p->k, ctx->num_threads);
#endif
    void *ws = NULL;
    GPUML_TRY(gpuml_scratch_alloc(ctx, ws_bytes, &ws, fn));
    gpuml_status st = GPUML_LAUNCH(ctx, knn, coords->data, n, d, row_splits->data, nev, p->k, r2, (int)p->algo,
                                   idx->data, dist2->data, ws);
    gpuml_scratch_free(ctx, ws, ws_bytes);
    if (st == GPUML_OK && rev_rowptr)
        st = gpuml_knn_reverse(ctx, idx, rev_rowptr, rev_col);
    return st;
}

gpuml_status gpuml_knn(gpuml_ctx *ctx, const gpuml_tensor *coords, const gpuml_tensor *row_splits, int k,
                       float max_radius, gpuml_tensor *idx, gpuml_tensor *dist2)
{
    gpuml_knn_params p;
    gpuml_knn_params_init_defaults(&p);
    p.k = k;
    p.max_radius = max_radius;
    return knn_run(ctx, "gpuml_knn", coords, row_splits, &p, idx, dist2, NULL, NULL);
}

gpuml_status gpuml_knn_ex(gpuml_ctx *ctx, const gpuml_tensor *coords, const gpuml_tensor *row_splits,
                          const gpuml_knn_params *p, gpuml_tensor *idx, gpuml_tensor *dist2, gpuml_tensor *rev_rowptr,
                          gpuml_tensor *rev_col)
{
    return knn_run(ctx, "gpuml_knn_ex", coords, row_splits, p, idx, dist2, rev_rowptr, rev_col);
}

gpuml_status gpuml_knn_reverse(gpuml_ctx *ctx, const gpuml_tensor *idx, gpuml_tensor *rev_rowptr, gpuml_tensor *rev_col)
{
    static const char fn[] = "gpuml_knn_reverse";
    if (!ctx)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "argument 'ctx' is NULL");
    GPUML_TRY(gpuml_check_dtype(ctx, fn, "idx", idx, GPUML_I32));
    if (idx->ndim != 2 || idx->shape[1] < 1 || idx->shape[1] > GPUML_KNN_MAX_K)
        return gpuml_fail(ctx, GPUML_ERR_SHAPE, fn, "argument 'idx' must be [N, k] with 1 <= k <= %d",
                          GPUML_KNN_MAX_K);
    if (!rev_rowptr || !rev_col)
        return gpuml_fail(ctx, GPUML_ERR_INVALID_ARGUMENT, fn, "argument '%s' is NULL",
                          rev_rowptr ? "rev_col" : "rev_rowptr");
    GPUML_TRY(check_rev(ctx, fn, rev_rowptr, rev_col, idx->shape[0], (int)idx->shape[1]));
    return gpuml_index_csr(ctx, idx, rev_rowptr, rev_col);
}

gpuml_status gpuml_knn_backward(gpuml_ctx *ctx, const gpuml_tensor *coords, const gpuml_tensor *idx,
                                const gpuml_tensor *grad_dist2, const gpuml_tensor *rev_rowptr,
                                const gpuml_tensor *rev_col, gpuml_tensor *grad_coords)
{
    static const char fn[] = "gpuml_knn_backward";
    if (!ctx)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "argument 'ctx' is NULL");
    int64_t n = 0;
    int d = 0;
    GPUML_TRY(check_coords(ctx, fn, coords, &n, &d));
    GPUML_TRY(gpuml_check_dtype(ctx, fn, "idx", idx, GPUML_I32));
    if (idx->ndim != 2 || idx->shape[0] != n) {
        char s[160];
        return gpuml_fail(ctx, GPUML_ERR_SHAPE, fn, "argument 'idx' is %s, expected [%lld, k]",
                          gpuml_shape_str(idx->ndim, idx->shape, s, sizeof s), (long long)n);
    }
    if (idx->shape[1] < 1 || idx->shape[1] > GPUML_KNN_MAX_K)
        return gpuml_fail(ctx, GPUML_ERR_INVALID_ARGUMENT, fn, "argument 'idx' has k = %lld, expected 1 .. %d",
                          (long long)idx->shape[1], GPUML_KNN_MAX_K);
    int k = (int)idx->shape[1];
    GPUML_TRY(check_matrix(ctx, fn, "grad_dist2", grad_dist2, GPUML_F32, n, k));
    GPUML_TRY(check_rev(ctx, fn, rev_rowptr, rev_col, n, k));
    GPUML_TRY(check_matrix(ctx, fn, "grad_coords", grad_coords, GPUML_F32, n, d));
    const gpuml_tensor *ins[] = {coords, idx, grad_dist2, rev_rowptr, rev_col};
    const char *in_names[] = {"coords", "idx", "grad_dist2", "rev_rowptr", "rev_col"};
    for (int i = 0; i < 5; i++)
        if (gpuml_tensors_overlap(grad_coords, ins[i]))
            return gpuml_fail(ctx, GPUML_ERR_INVALID_ARGUMENT, fn, "output 'grad_coords' overlaps input '%s'",
                              in_names[i]);
    if (n == 0)
        return GPUML_OK;

    /* Without a reverse adjacency, build one in temporary memory. */
    void *ws = NULL;
    size_t ws_bytes = 0;
    const int64_t *rp = rev_rowptr ? rev_rowptr->data : NULL, *col = rev_col ? rev_col->data : NULL;
    if (!rp) {
        size_t rp_bytes = gpuml_align_up((size_t)(n + 1) * sizeof(int64_t));
        ws_bytes = rp_bytes + (size_t)(n * k) * sizeof(int64_t);
        GPUML_TRY(gpuml_scratch_alloc(ctx, ws_bytes, &ws, fn));
        gpuml_tensor trp, tcol;
        gpuml_tensor_init_view(&trp, ws, ctx->device, GPUML_I64, 1, (int64_t[]){n + 1});
        gpuml_tensor_init_view(&tcol, (char *)ws + rp_bytes, ctx->device, GPUML_I64, 1, (int64_t[]){n * k});
        gpuml_status st = gpuml_index_csr(ctx, idx, &trp, &tcol);
        if (st != GPUML_OK) {
            gpuml_scratch_free(ctx, ws, ws_bytes);
            return st;
        }
        rp = trp.data;
        col = tcol.data;
    }
    gpuml_status st = GPUML_LAUNCH(ctx, knn_grad, coords->data, n, d, idx->data, k, grad_dist2->data, rp, col,
                                   grad_coords->data);
    gpuml_scratch_free(ctx, ws, ws_bytes);
    return st;
}
