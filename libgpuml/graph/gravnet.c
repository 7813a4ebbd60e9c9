/* GravNet's neighbour aggregation (kernels/gravnet.h). */
#include <math.h>

#include "graph/graph_common.h"

/* h [N, P], idx [N, k] i32, dist2 [N, k]. */
static gpuml_status check_inputs(gpuml_ctx *ctx, const char *fn, const gpuml_tensor *h, const gpuml_tensor *idx,
                                 const gpuml_tensor *dist2, float alpha, int64_t *n, int64_t *k, int64_t *P)
{
    GPUML_TRY(gpuml_check_dtype(ctx, fn, "h", h, GPUML_F32));
    if (h->ndim != 2) {
        char s[160];
        return gpuml_fail(ctx, GPUML_ERR_SHAPE, fn, "argument 'h' %s must be [N, P]",
                          gpuml_shape_str(h->ndim, h->shape, s, sizeof s));
    }
    *n = h->shape[0];
    *P = h->shape[1];
    GPUML_TRY(gpuml_g_check_idx(ctx, fn, idx, *n, 0, k));
    GPUML_TRY(gpuml_g_check_2d(ctx, fn, "dist2", dist2, GPUML_F32, *n, *k));
    if (!isfinite(alpha))
        return gpuml_fail(ctx, GPUML_ERR_INVALID_ARGUMENT, fn, "argument 'alpha' = %g is not finite", (double)alpha);
    return GPUML_OK;
}

/* Scratch for the weights [N, k] f32 and the counts [N] i32. */
static gpuml_status weights(gpuml_ctx *ctx, const char *fn, int64_t n, int64_t k, void **ws, size_t *bytes, float **w,
                            int32_t **cnt)
{
    size_t wb = gpuml_align_up((size_t)(n * k) * sizeof(float));
    *bytes = wb + (size_t)n * sizeof(int32_t);
    GPUML_TRY(gpuml_scratch_alloc(ctx, *bytes, ws, fn));
    *w = *ws;
    *cnt = (int32_t *)((char *)*ws + wb);
    return GPUML_OK;
}

gpuml_status gpuml_gravnet_aggregate(gpuml_ctx *ctx, const gpuml_tensor *h, const gpuml_tensor *idx,
                                     const gpuml_tensor *dist2, float alpha, int exclude_self, gpuml_tensor *out,
                                     gpuml_tensor *argmax)
{
    static const char fn[] = "gpuml_gravnet_aggregate";
    if (!ctx)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "argument 'ctx' is NULL");
    int64_t n = 0, k = 0, P = 0;
    GPUML_TRY(check_inputs(ctx, fn, h, idx, dist2, alpha, &n, &k, &P));
    GPUML_TRY(gpuml_g_check_2d(ctx, fn, "out", out, GPUML_F32, n, 2 * P));
    if (argmax)
        GPUML_TRY(gpuml_g_check_2d(ctx, fn, "argmax", argmax, GPUML_I32, n, P));
    if (out->data == h->data && n * P > 0)
        return gpuml_fail(ctx, GPUML_ERR_INVALID_ARGUMENT, fn, "out aliases h");
    if (n == 0 || P == 0)
        return GPUML_OK;
    int first = exclude_self ? 1 : 0;
    void *ws = NULL;
    size_t bytes = 0;
    float *w;
    int32_t *cnt;
    GPUML_TRY(weights(ctx, fn, n, k, &ws, &bytes, &w, &cnt));
    gpuml_status st = GPUML_LAUNCH(ctx, gravnet_weights, idx->data, dist2->data, n, k, first, alpha, w, cnt);
    if (st == GPUML_OK)
        st = GPUML_LAUNCH(ctx, gravnet_fwd, h->data, idx->data, w, n, k, P, first, out->data,
                          argmax ? argmax->data : NULL);
    gpuml_scratch_free(ctx, ws, bytes);
    return st;
}

gpuml_status gpuml_gravnet_aggregate_backward(gpuml_ctx *ctx, const gpuml_tensor *h, const gpuml_tensor *idx,
                                              const gpuml_tensor *dist2, float alpha, int exclude_self,
                                              const gpuml_tensor *argmax, const gpuml_tensor *gout,
                                              const gpuml_tensor *rowptr, const gpuml_tensor *col, gpuml_tensor *gh,
                                              gpuml_tensor *gdist2)
{
    static const char fn[] = "gpuml_gravnet_aggregate_backward";
    if (!ctx)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "argument 'ctx' is NULL");
    int64_t n = 0, k = 0, P = 0;
    GPUML_TRY(check_inputs(ctx, fn, h, idx, dist2, alpha, &n, &k, &P));
    if (!argmax)
        return gpuml_fail(ctx, GPUML_ERR_INVALID_ARGUMENT, fn, "argument 'argmax' is NULL: the backward needs the "
                                                              "forward's arg-max");
    GPUML_TRY(gpuml_g_check_2d(ctx, fn, "argmax", argmax, GPUML_I32, n, P));
    GPUML_TRY(gpuml_g_check_2d(ctx, fn, "gout", gout, GPUML_F32, n, 2 * P));
    if (gh)
        GPUML_TRY(gpuml_g_check_2d(ctx, fn, "gh", gh, GPUML_F32, n, P));
    if (gdist2)
        GPUML_TRY(gpuml_g_check_2d(ctx, fn, "gdist2", gdist2, GPUML_F32, n, k));
    if (!gh && !gdist2)
        return GPUML_OK;
    int first = exclude_self ? 1 : 0;
    if (n == 0)
        return GPUML_OK;
    const int64_t *rp = NULL, *cl = NULL;
    void *csr_ws = NULL, *ws = NULL;
    size_t csr_bytes = 0, bytes = 0;
    if (gh && P > 0)
        GPUML_TRY(gpuml_g_csr(ctx, fn, idx, n, k, rowptr, col, &rp, &cl, &csr_ws, &csr_bytes));
    float *w, *gm = NULL;
    int32_t *cnt;
    size_t gm_bytes = (size_t)(n * P) * sizeof(float);
    void *gm_ws = NULL;
    gpuml_status st = weights(ctx, fn, n, k, &ws, &bytes, &w, &cnt);
    if (st == GPUML_OK && gm_bytes && (st = gpuml_scratch_alloc(ctx, gm_bytes, &gm_ws, fn)) == GPUML_OK)
        gm = gm_ws;
    if (st == GPUML_OK)
        st = GPUML_LAUNCH(ctx, gravnet_weights, idx->data, dist2->data, n, k, first, alpha, w, cnt);
    if (st == GPUML_OK)
        st = GPUML_LAUNCH(ctx, gravnet_grad_mean, gout->data, cnt, n, P, gm);
    if (st == GPUML_OK && gdist2)
        st = GPUML_LAUNCH(ctx, gravnet_grad_d2, h->data, idx->data, w, gm, argmax->data, gout->data, n, k, P, first,
                          alpha, gdist2->data);
    if (st == GPUML_OK && gh && P > 0)
        st = GPUML_LAUNCH(ctx, gravnet_grad_h, idx->data, w, gm, argmax->data, gout->data, rp, cl, n, k, P, first,
                          gh->data);
    gpuml_scratch_free(ctx, gm_ws, gm_bytes);
    gpuml_scratch_free(ctx, ws, bytes);
    gpuml_scratch_free(ctx, csr_ws, csr_bytes);
    return st;
}
