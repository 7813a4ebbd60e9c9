/* CUDA events for the loader (see devsync.h). Selects the event's device
 * for each call and restores the caller's, as core/cuda_rt.c does. */
#define _POSIX_C_SOURCE 200809L
#include <stdlib.h>

#include "gpuml_config.h"
#include "io/devsync.h"

#if GPUML_HAVE_CUDA
#include <cuda_runtime_api.h>

#include "core/cuda_guard.h"

struct io_event {
    cudaEvent_t e;
    int device;
};

static gpuml_status fail(const gpuml_ctx *ctx, cudaError_t e, const char *fn, const char *what)
{
    return gpuml_fail(ctx, GPUML_ERR_CUDA, fn, "%s failed: %s (%s)", what, cudaGetErrorString(e), cudaGetErrorName(e));
}

gpuml_status io_event_create(const gpuml_ctx *ctx, io_event **out, const char *fn)
{
    *out = NULL;
    if (ctx->device.type != GPUML_DEVICE_CUDA)
        return GPUML_OK;
    io_event *ev = calloc(1, sizeof *ev);
    if (!ev)
        return gpuml_fail(NULL, GPUML_ERR_OUT_OF_MEMORY, fn, "out of memory");
    ev->device = ctx->device.index;
    gpuml_device_guard g;
    cudaError_t e = gpuml_guard_enter(&g, ev->device);
    if (e == cudaSuccess)
        e = cudaEventCreateWithFlags(&ev->e, cudaEventDisableTiming);
    gpuml_guard_leave(&g);
    if (e != cudaSuccess) {
        free(ev);
        return fail(NULL, e, fn, "cudaEventCreateWithFlags");
    }
    *out = ev;
    return GPUML_OK;
}

gpuml_status io_event_record(gpuml_ctx *ctx, io_event *ev, const char *fn)
{
    if (!ev)
        return GPUML_OK;
    gpuml_device_guard g;
    cudaError_t e = gpuml_guard_enter(&g, ev->device);
    if (e == cudaSuccess)
        e = cudaEventRecord(ev->e, (cudaStream_t)ctx->stream);
    gpuml_guard_leave(&g);
    return e == cudaSuccess ? GPUML_OK : fail(ctx, e, fn, "cudaEventRecord");
}

gpuml_status io_event_wait(io_event *ev, const char *fn)
{
    if (!ev)
        return GPUML_OK;
    gpuml_device_guard g;
    cudaError_t e = gpuml_guard_enter(&g, ev->device);
    if (e == cudaSuccess)
        e = cudaEventSynchronize(ev->e);
    gpuml_guard_leave(&g);
    return e == cudaSuccess ? GPUML_OK : fail(NULL, e, fn, "cudaEventSynchronize");
}

void io_event_destroy(io_event *ev)
{
    if (!ev)
        return;
    gpuml_device_guard g;
    if (gpuml_guard_enter(&g, ev->device) == cudaSuccess) {
        cudaEventSynchronize(ev->e);
        cudaEventDestroy(ev->e);
    }
    gpuml_guard_leave(&g);
    free(ev);
}

#else

gpuml_status io_event_create(const gpuml_ctx *ctx, io_event **out, const char *fn)
{
    (void)ctx, (void)fn;
    *out = NULL;
    return GPUML_OK;
}

gpuml_status io_event_record(gpuml_ctx *ctx, io_event *ev, const char *fn)
{
    (void)ctx, (void)ev, (void)fn;
    return GPUML_OK;
}

gpuml_status io_event_wait(io_event *ev, const char *fn)
{
    (void)ev, (void)fn;
    return GPUML_OK;
}

void io_event_destroy(io_event *ev) { (void)ev; }

#endif
