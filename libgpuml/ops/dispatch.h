/* libgpuml/ops/dispatch.h - from a validated op to its driver: build the
 * kernel context and call the CPU driver or the CUDA launcher. */
#ifndef GPUML_OPS_DISPATCH_H
#define GPUML_OPS_DISPATCH_H

#include "core/internal.h"
#include "gpuml_config.h"
#include "kernels.h"

/* The calling thread's record of a kernel's failure (ops/launch.c), and
 * the message it makes: the kernel's own words, or - when it returned a
 * status from a call that wrote its message itself - that message. Either
 * way it is copied into the context. */
gpuml_kfail *gpuml_kfail_slot(void);
gpuml_status gpuml_launch_report(gpuml_ctx *ctx, gpuml_status st);

static inline gpuml_kctx gpuml_kctx_of(const gpuml_ctx *ctx)
{
    gpuml_kctx k;
    k.exec = ctx->exec;
    k.nthreads = ctx->num_threads;
    k.par_work = ctx->par_work;
    k.stream = ctx->stream;
    k.device = ctx->device.index;
    k.dev_error = ctx->dev_error;
    k.cublas = ctx->cublas;
    k.fail = gpuml_kfail_slot();
    return k;
}

static inline gpuml_status gpuml_launch_done(gpuml_ctx *ctx, gpuml_status st)
{
    return st == GPUML_OK ? st : gpuml_launch_report(ctx, st);
}

/* GPUML_LAUNCH(ctx, name, args...) calls gpuml_cuda_<name> on a CUDA
 * context and gpuml_cpu_<name> otherwise, with the kernel context first,
 * and copies a failure's message into the context. */
#if GPUML_HAVE_CUDA
#define GPUML_BACKEND_CALL_(ctx, kp, name, ...) \
    (gpuml_on_cuda(ctx) ? gpuml_cuda_##name(kp, __VA_ARGS__) : gpuml_cpu_##name(kp, __VA_ARGS__))
#else
#define GPUML_BACKEND_CALL_(ctx, kp, name, ...)                                                   \
    (gpuml_on_cuda(ctx) ? gpuml_fail(ctx, GPUML_ERR_NO_DEVICE, #name, "gpuml was built without CUDA") \
                        : gpuml_cpu_##name(kp, __VA_ARGS__))
#endif
#define GPUML_LAUNCH(ctx, name, ...) \
    gpuml_launch_done((ctx), GPUML_BACKEND_CALL_(ctx, ((gpuml_kctx[]){gpuml_kctx_of(ctx)}), name, __VA_ARGS__))

/* True when the bytes of two tensors (NULL: none) overlap: an output that
 * aliases an input is refused by ops that read inputs after writing. */
static inline bool gpuml_tensors_overlap(const gpuml_tensor *a, const gpuml_tensor *b)
{
    if (!a || !b)
        return false;
    size_t na = gpuml_tensor_nbytes(a), nb = gpuml_tensor_nbytes(b);
    if (!na || !nb)
        return false;
    const char *pa = a->data, *pb = b->data;
    return pa < pb + nb && pb < pa + na;
}

/* Runs one fixed-order reduction (kernels/reduce.h) with its partials in
 * context scratch: the same levels, and so the same bits, on every backend. */
static inline gpuml_status gpuml_reduce_run(gpuml_ctx *ctx, gpuml_k_rjob j, const char *fn)
{
    size_t bytes = gpuml_k_reduce_ws_bytes(j.v);
    j.ws = NULL;
    if (bytes)
        GPUML_TRY(gpuml_scratch_alloc(ctx, bytes, &j.ws, fn));
    gpuml_status st = GPUML_LAUNCH(ctx, reduce, j);
    gpuml_scratch_free(ctx, j.ws, bytes);
    return st;
}

#endif
