/* Object condensation loss: validation and dispatch (kernels/condensation.h). */
#include <math.h>

#include "core/runtime.h"
#include "kernels/condensation.h"
#include "ops/dispatch.h"

void gpuml_oc_params_init_defaults(gpuml_oc_params *p)
{
    if (!p)
        return;
    p->q_min = 0.1f;
    p->s_b = 1.0f;
    p->max_objects = 0;
}

static gpuml_status oc_checks(gpuml_ctx *ctx, const char *fn, const gpuml_tensor *beta, const gpuml_tensor *coords,
                              const gpuml_tensor *truth, const gpuml_tensor *row_splits, const gpuml_oc_params *p,
                              const gpuml_tensor *alpha, const gpuml_tensor *stats, int64_t *n, int64_t *d,
                              int64_t *batch)
{
    if (!ctx)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "argument 'ctx' is NULL");
    if (!p)
        return gpuml_fail(ctx, GPUML_ERR_INVALID_ARGUMENT, fn, "argument 'params' is NULL");
    if (p->max_objects < 1 || p->max_objects > (1 << 20))
        return gpuml_fail(ctx, GPUML_ERR_INVALID_ARGUMENT, fn, "params->max_objects = %lld must be in [1, 2^20]",
                          (long long)p->max_objects);
    if (!(p->q_min > 0.0f) || !(p->s_b >= 0.0f))
        return gpuml_fail(ctx, GPUML_ERR_INVALID_ARGUMENT, fn, "params need q_min > 0 and s_b >= 0");
    GPUML_TRY(gpuml_check_dtype(ctx, fn, "coords", coords, GPUML_F32));
    if (coords->ndim != 2 || coords->shape[1] < 1)
        return gpuml_fail(ctx, GPUML_ERR_SHAPE, fn, "coords must be [N, D] with D >= 1");
    *n = coords->shape[0];
    *d = coords->shape[1];
    GPUML_TRY(gpuml_check_dtype(ctx, fn, "beta", beta, GPUML_F32));
    if (gpuml_tensor_numel(beta) != *n || beta->ndim < 1 || beta->ndim > 2 || beta->shape[0] != *n)
        return gpuml_fail(ctx, GPUML_ERR_SHAPE, fn, "beta must be [N] or [N, 1] with N = %lld", (long long)*n);
    GPUML_TRY(gpuml_check_dtype(ctx, fn, "truth", truth, GPUML_I32));
    if (truth->ndim != 1 || truth->shape[0] != *n)
        return gpuml_fail(ctx, GPUML_ERR_SHAPE, fn, "truth must be [%lld] i32", (long long)*n);
    GPUML_TRY(gpuml_check_row_splits(ctx, fn, "row_splits", row_splits, *n, batch));
    int64_t ab[2] = {*batch, p->max_objects}, sb[2] = {*batch, GPUML_OC_STATS};
    GPUML_TRY(gpuml_check_dtype(ctx, fn, "alpha", alpha, GPUML_I64));
    if (alpha->ndim != 2 || alpha->shape[0] != ab[0] || alpha->shape[1] != ab[1])
        return gpuml_fail(ctx, GPUML_ERR_SHAPE, fn, "alpha must be [%lld, %lld] i64", (long long)ab[0],
                          (long long)ab[1]);
    GPUML_TRY(gpuml_check_dtype(ctx, fn, "stats", stats, GPUML_F32));
    if (stats->ndim != 2 || stats->shape[0] != sb[0] || stats->shape[1] != sb[1])
        return gpuml_fail(ctx, GPUML_ERR_SHAPE, fn, "stats must be [%lld, %d] f32", (long long)sb[0], GPUML_OC_STATS);
    if (!gpuml_on_cuda(ctx)) { /* the values, where reading them is free */
        const int32_t *t = truth->data;
        const float *b = beta->data;
        for (int64_t i = 0; i < *n; i++) {
            if (t[i] < -1 || t[i] >= p->max_objects)
                return gpuml_fail(ctx, GPUML_ERR_INVALID_ARGUMENT, fn,
                                  "truth[%lld] = %d is not -1 (noise) or an object index below max_objects = %lld",
                                  (long long)i, t[i], (long long)p->max_objects);
            if (!(b[i] >= 0.0f && b[i] <= 1.0f))
                return gpuml_fail(ctx, GPUML_ERR_INVALID_ARGUMENT, fn, "beta[%lld] = %g is not in [0, 1]",
                                  (long long)i, (double)b[i]);
        }
    }
    return GPUML_OK;
}

gpuml_status gpuml_object_condensation(gpuml_ctx *ctx, const gpuml_tensor *beta, const gpuml_tensor *coords,
                                       const gpuml_tensor *truth, const gpuml_tensor *row_splits,
                                       const gpuml_oc_params *p, gpuml_tensor *loss, gpuml_tensor *components,
                                       gpuml_tensor *alpha, gpuml_tensor *stats)
{
    static const char fn[] = "gpuml_object_condensation";
    int64_t n = 0, d = 0, batch = 0;
    GPUML_TRY(oc_checks(ctx, fn, beta, coords, truth, row_splits, p, alpha, stats, &n, &d, &batch));
    GPUML_TRY(gpuml_check_dtype(ctx, fn, "loss", loss, GPUML_F32));
    if (gpuml_tensor_numel(loss) != 1)
        return gpuml_fail(ctx, GPUML_ERR_SHAPE, fn, "loss must have one element");
    if (components) {
        GPUML_TRY(gpuml_check_dtype(ctx, fn, "components", components, GPUML_F32));
        if (gpuml_tensor_numel(components) != 3)
            return gpuml_fail(ctx, GPUML_ERR_SHAPE, fn, "components must have three elements");
    }
    /* workspace: vertex terms [N], the loss + components [4], the ragged and total reductions (gpuml_k_oc_ws) */
    size_t vbytes = gpuml_align_up((size_t)(n ? n : 1) * sizeof(float));
    size_t tbytes = gpuml_k_oc_ws_bytes(n, batch, p->max_objects, d), bytes = vbytes + 256 + tbytes;
    void *ws = NULL;
    GPUML_TRY(gpuml_scratch_alloc(ctx, bytes, &ws, fn));
    float *out4 = (float *)((char *)ws + vbytes);
    gpuml_status st = GPUML_LAUNCH(ctx, oc_forward, beta->data, coords->data, truth->data, row_splits->data, batch,
                                   p->max_objects, n, d, p->q_min, p->s_b, alpha->data, ws, stats->data, out4,
                                   (char *)ws + vbytes + 256);
    if (st == GPUML_OK) {
        gpuml_device dev = ctx->device;
        st = gpuml_memcpy(ctx, loss->data, dev, out4, dev, sizeof(float), fn);
        if (st == GPUML_OK && components)
            st = gpuml_memcpy(ctx, components->data, dev, out4 + 1, dev, 3 * sizeof(float), fn);
    }
    gpuml_scratch_free(ctx, ws, bytes);
    return st;
}

gpuml_status gpuml_object_condensation_backward(gpuml_ctx *ctx, const gpuml_tensor *beta, const gpuml_tensor *coords,
                                                const gpuml_tensor *truth, const gpuml_tensor *row_splits,
                                                const gpuml_oc_params *p, const gpuml_tensor *alpha,
                                                const gpuml_tensor *stats, const gpuml_tensor *gloss,
                                                gpuml_tensor *gbeta, gpuml_tensor *gcoords)
{
    static const char fn[] = "gpuml_object_condensation_backward";
    int64_t n = 0, d = 0, batch = 0;
    GPUML_TRY(oc_checks(ctx, fn, beta, coords, truth, row_splits, p, alpha, stats, &n, &d, &batch));
    GPUML_TRY(gpuml_check_dtype(ctx, fn, "gloss", gloss, GPUML_F32));
    if (gpuml_tensor_numel(gloss) != 1)
        return gpuml_fail(ctx, GPUML_ERR_SHAPE, fn, "gloss must have one element");
    if (gbeta) {
        GPUML_TRY(gpuml_check_dtype(ctx, fn, "gbeta", gbeta, GPUML_F32));
        GPUML_TRY(gpuml_check_same_shape(ctx, fn, "beta", beta, "gbeta", gbeta));
    }
    if (gcoords) {
        GPUML_TRY(gpuml_check_dtype(ctx, fn, "gcoords", gcoords, GPUML_F32));
        GPUML_TRY(gpuml_check_same_shape(ctx, fn, "coords", coords, "gcoords", gcoords));
    }
    /* workspace: object accumulators, and whichever gradient the caller skips */
    size_t acc = gpuml_align_up((size_t)(batch * p->max_objects * (1 + d)) * sizeof(float));
    size_t gb = gbeta ? 0 : gpuml_align_up((size_t)n * sizeof(float));
    size_t gc = gcoords ? 0 : gpuml_align_up((size_t)(n * d) * sizeof(float));
    size_t bytes = acc + gb + gc + gpuml_k_oc_ws_bytes(n, batch, p->max_objects, d) + 4;
    void *ws = NULL;
    GPUML_TRY(gpuml_scratch_alloc(ctx, bytes, &ws, fn));
    float *gbp = gbeta ? gbeta->data : (float *)((char *)ws + acc);
    float *gcp = gcoords ? gcoords->data : (float *)((char *)ws + acc + gb);
    gpuml_status st = GPUML_LAUNCH(ctx, oc_backward, beta->data, coords->data, truth->data, row_splits->data, batch,
                                   p->max_objects, n, d, p->q_min, p->s_b, alpha->data, stats->data, gloss->data, ws,
                                   gbp, gcp, (char *)ws + acc + gb + gc);
    gpuml_scratch_free(ctx, ws, bytes);
    return st;
}
