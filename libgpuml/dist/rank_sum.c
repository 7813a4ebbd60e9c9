/* The local arithmetic of the collectives: the deterministic rank-order
 * sum and AVG's division, shared by the MPI and NCCL backends. The element
 * loops run through the context's executor (or on the calling thread when
 * there is no context). */
#include "dist/dist_internal.h"
#include "ops/dispatch.h"
#include "cpu/parallel.h"

typedef struct dist_loop_args {
    const double *s;
    double *d;
    float *f;
    int64_t len;
    int n, avg;
} dist_loop_args;

GPUML_KRANGE(rank_sum_f64_range, dist_loop_args)
{
    for (int64_t i = begin; i < end; i++) {
        double acc = a->s[i];
        for (int q = 1; q < a->n; q++)
            acc += a->s[(int64_t)q * a->len + i];
        a->d[i] = a->avg ? acc / (double)a->n : acc;
    }
}

GPUML_KRANGE(divide_f32_range, dist_loop_args)
{
    float fn_ = (float)a->n;
    for (int64_t i = begin; i < end; i++)
        a->f[i] = a->f[i] / fn_;
}

GPUML_KRANGE(divide_f64_range, dist_loop_args)
{
    double dn = (double)a->n;
    for (int64_t i = begin; i < end; i++)
        a->d[i] = a->d[i] / dn;
}

static gpuml_kctx loop_kctx(const gpuml_ctx *ctx)
{
    if (ctx)
        return gpuml_kctx_of(ctx);
    gpuml_kctx k = {0};
    k.exec = gpuml_executor_serial();
    k.nthreads = 1;
    return k;
}

gpuml_status gpuml_dist_rank_sum(gpuml_ctx *ctx, const char *fn, gpuml_dtype dtype, gpuml_comm_op op,
                                 const void *src, int n, int64_t len, void *dst)
{
    if (len == 0)
        return GPUML_OK;
    if (dtype == GPUML_F32) {
        /* gpuml_reduce sums in double in index order - the rank order here -
         * on the CPU and on CUDA alike. */
        gpuml_tensor x, y;
        int64_t xs[2] = {n, len};
        gpuml_tensor_init_view(&x, (void *)src, ctx->device, GPUML_F32, 2, xs);
        gpuml_tensor_init_view(&y, dst, ctx->device, GPUML_F32, 1, &len);
        gpuml_reduce_op rop = op == GPUML_COMM_AVG ? GPUML_REDUCE_MEAN : GPUML_REDUCE_SUM;
        gpuml_status st = gpuml_reduce(ctx, rop, &x, 0, &y, NULL);
        if (st != GPUML_OK)
            return gpuml_fail(ctx, st, fn, "local rank-order sum failed: %s", gpuml_last_error());
        return GPUML_OK;
    }
    if (dtype == GPUML_F64 && ctx->device.type == GPUML_DEVICE_CPU) {
        dist_loop_args a = {src, dst, NULL, len, n, op == GPUML_COMM_AVG};
        gpuml_kctx k = loop_kctx(ctx);
        gpuml_kfor(&k, len, len * n, 0, rank_sum_f64_range, &a);
        return GPUML_OK;
    }
    return gpuml_fail(ctx, GPUML_ERR_UNSUPPORTED, fn, "the deterministic sum of %s tensors on %s is not implemented",
                      gpuml_dtype_name(dtype), ctx->device.type == GPUML_DEVICE_CUDA ? "CUDA" : "the CPU");
}

void gpuml_dist_divide(gpuml_ctx *ctx, gpuml_dtype dtype, void *x, int64_t count, int n)
{
    gpuml_kctx k = loop_kctx(ctx);
    dist_loop_args a = {NULL, x, x, count, n, 0};
    if (dtype == GPUML_F32)
        gpuml_kfor(&k, count, count, 0, divide_f32_range, &a);
    else if (dtype == GPUML_F64)
        gpuml_kfor(&k, count, count, 0, divide_f64_range, &a);
}
