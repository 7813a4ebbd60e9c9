/* libgpuml/graph/graph_common.h - argument checks and the reverse adjacency
 * shared by the graph ops. */
#ifndef GPUML_GRAPH_GRAPH_COMMON_H
#define GPUML_GRAPH_GRAPH_COMMON_H

#include "core/runtime.h"
#include "ops/dispatch.h"

/* t is f32 [d0, d1] (d1 < 0: any). */
static inline gpuml_status gpuml_g_check_2d(gpuml_ctx *ctx, const char *fn, const char *arg, const gpuml_tensor *t,
                                            gpuml_dtype dt, int64_t d0, int64_t d1)
{
    GPUML_TRY(gpuml_check_dtype(ctx, fn, arg, t, dt));
    if (t->ndim != 2 || t->shape[0] != d0 || (d1 >= 0 && t->shape[1] != d1)) {
        char s[160];
        if (d1 >= 0)
            return gpuml_fail(ctx, GPUML_ERR_SHAPE, fn, "argument '%s' %s must be [%lld, %lld]", arg,
                              gpuml_shape_str(t->ndim, t->shape, s, sizeof s), (long long)d0, (long long)d1);
        return gpuml_fail(ctx, GPUML_ERR_SHAPE, fn, "argument '%s' %s must be [%lld, ...] (2-D)", arg,
                          gpuml_shape_str(t->ndim, t->shape, s, sizeof s), (long long)d0);
    }
    return GPUML_OK;
}

/* t is f32 [d0]. */
static inline gpuml_status gpuml_g_check_1d(gpuml_ctx *ctx, const char *fn, const char *arg, const gpuml_tensor *t,
                                            int64_t d0)
{
    GPUML_TRY(gpuml_check_dtype(ctx, fn, arg, t, GPUML_F32));
    if (t->ndim != 1 || t->shape[0] != d0) {
        char s[160];
        return gpuml_fail(ctx, GPUML_ERR_SHAPE, fn, "argument '%s' %s must be [%lld]", arg,
                          gpuml_shape_str(t->ndim, t->shape, s, sizeof s), (long long)d0);
    }
    return GPUML_OK;
}

/* idx is i32 [n, k]; *k receives k. first (0 or 1) must leave k - first >= 0. */
static inline gpuml_status gpuml_g_check_idx(gpuml_ctx *ctx, const char *fn, const gpuml_tensor *idx, int64_t n,
                                             int first, int64_t *k)
{
    GPUML_TRY(gpuml_g_check_2d(ctx, fn, "idx", idx, GPUML_I32, n, -1));
    *k = idx->shape[1];
    if (*k < first)
        return gpuml_fail(ctx, GPUML_ERR_SHAPE, fn, "idx has k = 0 slots: exclude_self needs slot 0 to exclude");
    return GPUML_OK;
}

/* The reverse adjacency of idx [n, k]: the caller's (both given: validated
 * in shape) or one built in scratch (both NULL; free *ws, *ws_bytes with
 * gpuml_scratch_free). */
static inline gpuml_status gpuml_g_csr(gpuml_ctx *ctx, const char *fn, const gpuml_tensor *idx, int64_t n, int64_t k,
                                       const gpuml_tensor *rowptr, const gpuml_tensor *col, const int64_t **rp,
                                       const int64_t **cl, void **ws, size_t *ws_bytes)
{
    *ws = NULL;
    *ws_bytes = 0;
    if (!rowptr != !col)
        return gpuml_fail(ctx, GPUML_ERR_INVALID_ARGUMENT, fn, "give both 'rowptr' and 'col', or neither");
    if (rowptr) {
        GPUML_TRY(gpuml_check_dtype(ctx, fn, "rowptr", rowptr, GPUML_I64));
        GPUML_TRY(gpuml_check_dtype(ctx, fn, "col", col, GPUML_I64));
        if (rowptr->ndim != 1 || rowptr->shape[0] != n + 1)
            return gpuml_fail(ctx, GPUML_ERR_SHAPE, fn, "argument 'rowptr' must be [N + 1] = [%lld]", (long long)(n + 1));
        if (col->ndim != 1 || col->shape[0] != n * k)
            return gpuml_fail(ctx, GPUML_ERR_SHAPE, fn, "argument 'col' must be [N * k] = [%lld]", (long long)(n * k));
        *rp = rowptr->data;
        *cl = col->data;
        return GPUML_OK;
    }
    size_t ptr_bytes = gpuml_align_up((size_t)(n + 1) * sizeof(int64_t));
    size_t bytes = ptr_bytes + (size_t)(n * k) * sizeof(int64_t);
    void *p = NULL;
    GPUML_TRY(gpuml_scratch_alloc(ctx, bytes, &p, fn));
    gpuml_tensor trp, tcl;
    int64_t srp = n + 1, scl = n * k;
    gpuml_tensor_init_view(&trp, p, ctx->device, GPUML_I64, 1, &srp);
    gpuml_tensor_init_view(&tcl, (char *)p + ptr_bytes, ctx->device, GPUML_I64, 1, &scl);
    gpuml_status st = gpuml_index_csr(ctx, idx, &trp, &tcl);
    if (st != GPUML_OK) {
        gpuml_scratch_free(ctx, p, bytes);
        return st;
    }
    *rp = trp.data;
    *cl = tcl.data;
    *ws = p;
    *ws_bytes = bytes;
    return GPUML_OK;
}

/* What gpuml_batch_norm_act fuses after the normalisation: relu != 0: y =
 * relu(bn(x)) (the backward recomputes the gate from x, and needs beta);
 * agg GPUML_REDUCE_SUM or MEAN (else -1): y is not materialised but summed
 * or averaged over each group of `group` consecutive rows (a node's edge
 * slots) whose mask byte is set: y and gy are then [R / group, C], and a
 * mask is required. */
typedef struct gpuml_bn_fusion {
    int relu;
    int agg;
    int64_t group;
} gpuml_bn_fusion;

/* gpuml_batch_norm / _backward with a fused epilogue (fu NULL: none). fn
 * names the caller in messages. cuDNN is not used when anything is fused. */
gpuml_status gpuml_batch_norm_act(gpuml_ctx *ctx, const char *fn, const gpuml_batch_norm_params *p,
                                  const gpuml_bn_fusion *fu,
                                  const gpuml_tensor *x, const gpuml_tensor *mask, const gpuml_tensor *gamma,
                                  const gpuml_tensor *beta, gpuml_tensor *running_mean, gpuml_tensor *running_var,
                                  gpuml_tensor *y, gpuml_tensor *save_mean, gpuml_tensor *save_invstd);
gpuml_status gpuml_batch_norm_act_backward(gpuml_ctx *ctx, const char *fn, const gpuml_batch_norm_params *p,
                                           const gpuml_bn_fusion *fu,
                                           const gpuml_tensor *x, const gpuml_tensor *mask, const gpuml_tensor *gamma,
                                           const gpuml_tensor *beta, const gpuml_tensor *save_mean,
                                           const gpuml_tensor *save_invstd, const gpuml_tensor *gy, gpuml_tensor *gx,
                                           gpuml_tensor *ggamma, gpuml_tensor *gbeta, int accumulate);

#endif
