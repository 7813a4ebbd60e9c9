/* Batch normalisation over rows (kernels/batchnorm.h), with cuDNN as an
 * opt-in on CUDA. The portable kernels are the default because they sum in
 * double in a fixed order and agree with the CPU to float rounding; cuDNN's
 * batch norm is repeatable on one GPU model (it is not among the routines
 * its documentation lists as non-deterministic) but sums in float. */
#include <limits.h>
#include <math.h>

#include "batchnorm.h"
#include "graph/graph_common.h"

void gpuml_batch_norm_params_init_defaults(gpuml_batch_norm_params *p)
{
    if (!p)
        return;
    p->momentum = 0.1f;
    p->eps = 1e-5f;
    p->training = 1;
    p->use_cudnn = 0;
}

/* Sums the [nch, C] chunk partials of each channel into their first row, in
 * place, as a fixed-order reduction (kernels/reduce.h): the per-channel
 * kernels then read one chunk (none when R = 0), and no thread loops over
 * R / 256 chunks.
 * For nch <= GPUML_K_RCHUNK this is the same sequential sum in chunk order
 * the channel kernels did before, so the bits do not change. */
static gpuml_status collapse_chunks(gpuml_ctx *ctx, const char *fn, double *p, int64_t nch, int64_t C)
{
    if (nch <= 1 || !p)
        return GPUML_OK;
    gpuml_k_rjob j = {.op = GPUML_REDUCE_SUM, .v = {1, nch, C, 0, C}, .xd = p, .out_d = p};
    return gpuml_reduce_run(ctx, j, fn);
}

/* x [..., C] f32 as R rows; mask NULL or u8/bool with R elements; gamma NULL or [C]. */
/* The checks forward and backward share. *pp NULL: the defaults, kept in
 * *defaults. */
static gpuml_status check_common(gpuml_ctx *ctx, const char *fn, const gpuml_batch_norm_params **pp,
                                 gpuml_batch_norm_params *defaults, const gpuml_tensor *x, const gpuml_tensor *mask,
                                 const gpuml_tensor *gamma, const gpuml_tensor *beta, int64_t *R, int64_t *C)
{
    if (!ctx)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "argument 'ctx' is NULL");
    if (!*pp) {
        gpuml_batch_norm_params_init_defaults(defaults);
        *pp = defaults;
    }
    const gpuml_batch_norm_params *p = *pp;
    if (!(p->eps >= 0.0f) || !isfinite(p->eps))
        return gpuml_fail(ctx, GPUML_ERR_INVALID_ARGUMENT, fn, "parameter 'eps' = %g must be finite and >= 0",
                          (double)p->eps);
    if (!isfinite(p->momentum))
        return gpuml_fail(ctx, GPUML_ERR_INVALID_ARGUMENT, fn, "parameter 'momentum' = %g is not finite",
                          (double)p->momentum);
    GPUML_TRY(gpuml_check_dtype(ctx, fn, "x", x, GPUML_F32));
    if (x->ndim < 1)
        return gpuml_fail(ctx, GPUML_ERR_SHAPE, fn, "argument 'x' is a scalar: expected [..., C]");
    *C = x->shape[x->ndim - 1];
    *R = gpuml_numel(x->ndim - 1, x->shape);
    if (mask) {
        GPUML_TRY(gpuml_check_tensor(ctx, fn, "mask", mask));
        if (mask->dtype != GPUML_U8 && mask->dtype != GPUML_BOOL)
            return gpuml_fail(ctx, GPUML_ERR_DTYPE, fn, "argument 'mask' is %s, expected u8 or bool",
                              gpuml_dtype_name(mask->dtype));
        if (gpuml_tensor_numel(mask) != *R)
            return gpuml_fail(ctx, GPUML_ERR_SHAPE, fn, "argument 'mask' has %lld elements, x has %lld rows",
                              (long long)gpuml_tensor_numel(mask), (long long)*R);
    }
    if (gamma)
        GPUML_TRY(gpuml_g_check_1d(ctx, fn, "gamma", gamma, *C));
    if (beta)
        GPUML_TRY(gpuml_g_check_1d(ctx, fn, "beta", beta, *C));
    return GPUML_OK;
}

#if GPUML_HAVE_CUDNN
/* cuDNN fits: asked for, on CUDA, no mask, sizes it takes. */
static bool cudnn_fits(const gpuml_ctx *ctx, const gpuml_batch_norm_params *p, const gpuml_tensor *mask, int64_t R,
                       int64_t C)
{
    return p->use_cudnn && gpuml_on_cuda(ctx) && !mask && R >= 2 && C >= 1 && R <= INT_MAX && C <= INT_MAX;
}

/* Forward through cuDNN; ones / zeros stand in for a NULL gamma / beta. */
static gpuml_status cudnn_forward(gpuml_ctx *ctx, const char *fn, const gpuml_batch_norm_params *p,
                                  const gpuml_tensor *x, const gpuml_tensor *gamma, const gpuml_tensor *beta,
                                  gpuml_tensor *rm, gpuml_tensor *rv, gpuml_tensor *y, gpuml_tensor *save_mean,
                                  gpuml_tensor *save_invstd, int64_t R, int64_t C)
{
    void *h;
    GPUML_TRY(gpuml_cuda_rt_cudnn(ctx, fn, &h));
    size_t bytes = (size_t)(2 * C) * sizeof(float);
    void *ws = NULL;
    GPUML_TRY(gpuml_scratch_alloc(ctx, bytes, &ws, fn));
    float *ones = ws, *zeros = ones + C;
    gpuml_status st = GPUML_OK;
    if (!gamma)
        st = GPUML_LAUNCH(ctx, fill, C, ones, GPUML_F32, 1.0);
    if (st == GPUML_OK && !beta)
        st = GPUML_LAUNCH(ctx, fill, C, zeros, GPUML_F32, 0.0);
    if (st == GPUML_OK)
        st = gpuml_launch_done(ctx, gpuml_cuda_bn_cudnn_fwd(
                                        (gpuml_kctx[]){gpuml_kctx_of(ctx)}, h, p->training != 0, R, C, x->data, y->data,
                                        gamma ? gamma->data : ones, beta ? beta->data : zeros, p->momentum, p->eps,
                                        rm ? rm->data : NULL, rv ? rv->data : NULL,
                                        p->training && save_mean ? save_mean->data : NULL,
                                        p->training && save_invstd ? save_invstd->data : NULL));
    gpuml_scratch_free(ctx, ws, bytes);
    if (st == GPUML_OK && !p->training && (save_mean || save_invstd)) {
        /* cuDNN's inference call saves nothing; the backward needs these. */
        bytes = (size_t)(2 * C) * sizeof(float);
        GPUML_TRY(gpuml_scratch_alloc(ctx, bytes, &ws, fn));
        float *mf = save_mean ? save_mean->data : (float *)ws, *inv = save_invstd ? save_invstd->data : (float *)ws + C;
        st = GPUML_LAUNCH(ctx, bn_running, rm->data, rv->data, p->eps, C, mf, inv);
        gpuml_scratch_free(ctx, ws, bytes);
    }
    return st;
}
#endif

gpuml_status gpuml_batch_norm(gpuml_ctx *ctx, const gpuml_batch_norm_params *p, const gpuml_tensor *x,
                              const gpuml_tensor *mask, const gpuml_tensor *gamma, const gpuml_tensor *beta,
                              gpuml_tensor *running_mean, gpuml_tensor *running_var, gpuml_tensor *y,
                              gpuml_tensor *save_mean, gpuml_tensor *save_invstd)
{
    return gpuml_batch_norm_act(ctx, "gpuml_batch_norm", p, NULL, x, mask, gamma, beta, running_mean, running_var, y,
                                save_mean, save_invstd);
}

/* y's shape against x's under the fusion; *relu, *agg, *group from fu. */
static gpuml_status check_fusion(gpuml_ctx *ctx, const char *fn, const gpuml_bn_fusion *fu, const gpuml_tensor *x,
                                 const gpuml_tensor *mask, int64_t R, int64_t C, const char *yname,
                                 const gpuml_tensor *y, int *relu, int *agg, int64_t *group)
{
    *relu = fu ? fu->relu != 0 : 0;
    *agg = fu ? fu->agg : -1;
    *group = 1;
    GPUML_TRY(gpuml_check_dtype(ctx, fn, yname, y, GPUML_F32));
    if (*agg < 0)
        return gpuml_check_same_shape(ctx, fn, "x", x, yname, y);
    if (*agg != GPUML_REDUCE_SUM && *agg != GPUML_REDUCE_MEAN)
        return gpuml_fail(ctx, GPUML_ERR_INVALID_ARGUMENT, fn, "fused aggregation %d is not SUM or MEAN", *agg);
    if (!mask)
        return gpuml_fail(ctx, GPUML_ERR_INVALID_ARGUMENT, fn, "a fused aggregation needs the edge mask");
    *group = fu->group;
    if (*group < 1 || R % *group != 0)
        return gpuml_fail(ctx, GPUML_ERR_SHAPE, fn, "%lld rows do not make groups of %lld", (long long)R,
                          (long long)*group);
    if (gpuml_tensor_numel(y) != R / *group * C || y->ndim < 1 || y->shape[y->ndim - 1] != C)
        return gpuml_fail(ctx, GPUML_ERR_SHAPE, fn, "argument '%s' must hold [%lld, %lld]", yname,
                          (long long)(R / *group), (long long)C);
    return GPUML_OK;
}

gpuml_status gpuml_batch_norm_act(gpuml_ctx *ctx, const char *fn, const gpuml_batch_norm_params *p,
                                  const gpuml_bn_fusion *fu,
                                  const gpuml_tensor *x, const gpuml_tensor *mask, const gpuml_tensor *gamma,
                                  const gpuml_tensor *beta, gpuml_tensor *running_mean, gpuml_tensor *running_var,
                                  gpuml_tensor *y, gpuml_tensor *save_mean, gpuml_tensor *save_invstd)
{
    gpuml_batch_norm_params defaults;
    int64_t R = 0, C = 0;
    GPUML_TRY(check_common(ctx, fn, &p, &defaults, x, mask, gamma, beta, &R, &C));
    int relu, agg;
    int64_t group;
    GPUML_TRY(check_fusion(ctx, fn, fu, x, mask, R, C, "y", y, &relu, &agg, &group));
    if (!running_mean != !running_var)
        return gpuml_fail(ctx, GPUML_ERR_INVALID_ARGUMENT, fn, "give both 'running_mean' and 'running_var', or neither");
    if (!p->training && !running_mean)
        return gpuml_fail(ctx, GPUML_ERR_INVALID_ARGUMENT, fn,
                          "inference mode (training = 0) needs 'running_mean' and 'running_var'");
    if (running_mean) {
        GPUML_TRY(gpuml_g_check_1d(ctx, fn, "running_mean", running_mean, C));
        GPUML_TRY(gpuml_g_check_1d(ctx, fn, "running_var", running_var, C));
    }
    if (save_mean)
        GPUML_TRY(gpuml_g_check_1d(ctx, fn, "save_mean", save_mean, C));
    if (save_invstd)
        GPUML_TRY(gpuml_g_check_1d(ctx, fn, "save_invstd", save_invstd, C));
    if (C == 0)
        return GPUML_OK;
#if GPUML_HAVE_CUDNN
    if (!fu && cudnn_fits(ctx, p, mask, R, C))
        return cudnn_forward(ctx, fn, p, x, gamma, beta, running_mean, running_var, y, save_mean, save_invstd, R, C);
#endif
    int64_t nch = gpuml_k_bn_chunks(R);
    size_t pb = gpuml_align_up((size_t)(nch * C) * sizeof(double)), cb = gpuml_align_up((size_t)C * sizeof(double));
    size_t fb = gpuml_align_up((size_t)C * sizeof(float));
    size_t bytes = (p->training ? 2 * pb + 2 * cb : 0) + 2 * fb;
    void *ws = NULL;
    GPUML_TRY(gpuml_scratch_alloc(ctx, bytes, &ws, fn));
    char *q = ws;
    float *mean_f = save_mean ? save_mean->data : (float *)q;
    float *invstd_f = save_invstd ? save_invstd->data : (float *)(q + fb);
    q += 2 * fb;
    const uint8_t *mk = mask ? mask->data : NULL;
    gpuml_status st;
    if (p->training) {
        double *p0 = (double *)q, *p2 = (double *)(q + pb), *mean_d = (double *)(q + 2 * pb);
        double *cnt_d = (double *)(q + 2 * pb + cb);
        float *rm = running_mean ? running_mean->data : NULL, *rv = running_var ? running_var->data : NULL;
        st = GPUML_LAUNCH(ctx, bn_partial, GPUML_K_BN_SUM, x->data, NULL, mk, R, C, NULL, NULL, NULL, NULL, NULL, 0, 1,
                          p0, NULL, p2);
        if (st == GPUML_OK)
            st = collapse_chunks(ctx, fn, p0, nch, C);
        if (st == GPUML_OK)
            st = collapse_chunks(ctx, fn, p2, nch, C);
        if (st == GPUML_OK)
            st = GPUML_LAUNCH(ctx, bn_mean, p0, p2, nch > 0 ? 1 : 0, C, mean_d, cnt_d);
        if (st == GPUML_OK)
            st = GPUML_LAUNCH(ctx, bn_partial, GPUML_K_BN_SQ, x->data, NULL, mk, R, C, mean_d, NULL, NULL, NULL, NULL,
                              0, 1, p0, NULL, NULL);
        if (st == GPUML_OK)
            st = collapse_chunks(ctx, fn, p0, nch, C);
        if (st == GPUML_OK)
            st = GPUML_LAUNCH(ctx, bn_var, p0, nch > 0 ? 1 : 0, C, mean_d, cnt_d, p->eps, p->momentum, rm, rv, mean_f, invstd_f);
    } else {
        st = GPUML_LAUNCH(ctx, bn_running, running_mean->data, running_var->data, p->eps, C, mean_f, invstd_f);
    }
    if (st == GPUML_OK && agg < 0)
        st = GPUML_LAUNCH(ctx, bn_normalize, x->data, mk, R, C, mean_f, invstd_f, gamma ? gamma->data : NULL,
                          beta ? beta->data : NULL, relu, y->data);
    else if (st == GPUML_OK)
        st = GPUML_LAUNCH(ctx, bn_aggregate, x->data, mk, R / group, group, C, mean_f, invstd_f,
                          gamma ? gamma->data : NULL, beta ? beta->data : NULL, relu, agg, y->data);
    gpuml_scratch_free(ctx, ws, bytes);
    return st;
}

gpuml_status gpuml_batch_norm_backward(gpuml_ctx *ctx, const gpuml_batch_norm_params *p, const gpuml_tensor *x,
                                       const gpuml_tensor *mask, const gpuml_tensor *gamma,
                                       const gpuml_tensor *save_mean, const gpuml_tensor *save_invstd,
                                       const gpuml_tensor *gy, gpuml_tensor *gx, gpuml_tensor *ggamma,
                                       gpuml_tensor *gbeta, int accumulate)
{
    return gpuml_batch_norm_act_backward(ctx, "gpuml_batch_norm_backward", p, NULL, x, mask, gamma, NULL, save_mean,
                                         save_invstd, gy, gx, ggamma, gbeta, accumulate);
}

gpuml_status gpuml_batch_norm_act_backward(gpuml_ctx *ctx, const char *fn, const gpuml_batch_norm_params *p,
                                           const gpuml_bn_fusion *fu,
                                           const gpuml_tensor *x, const gpuml_tensor *mask, const gpuml_tensor *gamma,
                                           const gpuml_tensor *beta, const gpuml_tensor *save_mean,
                                           const gpuml_tensor *save_invstd, const gpuml_tensor *gy, gpuml_tensor *gx,
                                           gpuml_tensor *ggamma, gpuml_tensor *gbeta, int accumulate)
{
    gpuml_batch_norm_params defaults;
    int64_t R = 0, C = 0;
    GPUML_TRY(check_common(ctx, fn, &p, &defaults, x, mask, gamma, beta, &R, &C));
    GPUML_TRY(gpuml_g_check_1d(ctx, fn, "save_mean", save_mean, C));
    GPUML_TRY(gpuml_g_check_1d(ctx, fn, "save_invstd", save_invstd, C));
    int relu, agg;
    int64_t group;
    GPUML_TRY(check_fusion(ctx, fn, fu, x, mask, R, C, "gy", gy, &relu, &agg, &group));
    if (gx) {
        GPUML_TRY(gpuml_check_dtype(ctx, fn, "gx", gx, GPUML_F32));
        GPUML_TRY(gpuml_check_same_shape(ctx, fn, "x", x, "gx", gx));
    }
    if (ggamma)
        GPUML_TRY(gpuml_g_check_1d(ctx, fn, "ggamma", ggamma, C));
    if (gbeta)
        GPUML_TRY(gpuml_g_check_1d(ctx, fn, "gbeta", gbeta, C));
    if (C == 0 || (!gx && !ggamma && !gbeta))
        return GPUML_OK;
#if GPUML_HAVE_CUDNN
    if (!fu && p->training && gx && cudnn_fits(ctx, p, mask, R, C)) {
        void *h;
        GPUML_TRY(gpuml_cuda_rt_cudnn(ctx, fn, &h));
        size_t bytes = (size_t)(3 * C) * sizeof(float);
        void *ws = NULL;
        GPUML_TRY(gpuml_scratch_alloc(ctx, bytes, &ws, fn));
        float *ones = ws, *dg = ones + C, *db = dg + C;
        gpuml_status st = gamma ? GPUML_OK : GPUML_LAUNCH(ctx, fill, C, ones, GPUML_F32, 1.0);
        if (st == GPUML_OK)
            st = gpuml_launch_done(ctx, gpuml_cuda_bn_cudnn_bwd((gpuml_kctx[]){gpuml_kctx_of(ctx)}, h, R, C, x->data,
                                                                gy->data, gx->data, gamma ? gamma->data : ones,
                                                                ggamma ? ggamma->data : dg, gbeta ? gbeta->data : db,
                                                                accumulate != 0, p->eps, save_mean->data,
                                                                save_invstd->data));
        gpuml_scratch_free(ctx, ws, bytes);
        return st;
    }
#endif
    int64_t nch = gpuml_k_bn_chunks(R);
    size_t pb = gpuml_align_up((size_t)(nch * C) * sizeof(double)), cf = gpuml_align_up((size_t)(2 * C) * sizeof(float));
    size_t bytes = 3 * pb + cf + (agg >= 0 ? (size_t)(R / group * C) * sizeof(float) : 0);
    void *ws = NULL;
    GPUML_TRY(gpuml_scratch_alloc(ctx, bytes, &ws, fn));
    double *p0 = ws, *p1 = (double *)((char *)ws + pb), *p2 = (double *)((char *)ws + 2 * pb);
    float *coef = (float *)((char *)ws + 3 * pb);
    const uint8_t *mk = mask ? mask->data : NULL;
    int training = p->training != 0;
    const float *gm = gamma ? gamma->data : NULL, *bt = beta ? beta->data : NULL, *g = gy->data;
    gpuml_status st = GPUML_OK;
    if (agg >= 0) { /* the gradient each valid row of a group receives */
        float *gnode = (float *)((char *)ws + 3 * pb + cf);
        st = GPUML_LAUNCH(ctx, bn_aggregate_grad, gy->data, mk, R / group, group, C, agg, gnode);
        g = gnode;
    }
    if (st == GPUML_OK)
        st = GPUML_LAUNCH(ctx, bn_partial, GPUML_K_BN_GRAD, x->data, g, mk, R, C, NULL, save_mean->data,
                          save_invstd->data, gm, bt, relu, group, p0, p1, p2);
    for (int a = 0; a < 3 && st == GPUML_OK; a++)
        st = collapse_chunks(ctx, fn, a == 0 ? p0 : a == 1 ? p1 : p2, nch, C);
    if (st == GPUML_OK)
        st = GPUML_LAUNCH(ctx, bn_grad_stats, p0, p1, p2, nch > 0 ? 1 : 0, C, training, accumulate != 0,
                          ggamma ? ggamma->data : NULL, gbeta ? gbeta->data : NULL, coef);
    if (st == GPUML_OK && gx)
        st = GPUML_LAUNCH(ctx, bn_grad_x, x->data, g, mk, R, C, training, save_mean->data, save_invstd->data, gm, bt,
                          relu, group, coef, gx->data);
    gpuml_scratch_free(ctx, ws, bytes);
    return st;
}
