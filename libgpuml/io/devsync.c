/* CUDA events for the loader (see devsync.h), through core's runtime layer
 * (core/runtime.h: each call selects the event's device and restores the
 * caller's). A CPU context gets no event, so every call is then a no-op. */
#include <stdlib.h>

#include "core/runtime.h"
#include "io/devsync.h"

struct io_event {
    void *e; /* cudaEvent_t */
    int device;
};

gpuml_status io_event_create(const gpuml_ctx *ctx, io_event **out, const char *fn)
{
    *out = NULL;
    if (ctx->device.type != GPUML_DEVICE_CUDA)
        return GPUML_OK;
    io_event *ev = calloc(1, sizeof *ev);
    if (!ev)
        return gpuml_fail(NULL, GPUML_ERR_OUT_OF_MEMORY, fn, "out of memory");
    ev->device = ctx->device.index;
    gpuml_status st = gpuml_cuda_rt_event_create(ev->device, 0, &ev->e, fn);
    if (st != GPUML_OK) {
        free(ev);
        return st;
    }
    *out = ev;
    return GPUML_OK;
}

gpuml_status io_event_record(gpuml_ctx *ctx, io_event *ev, const char *fn)
{
    if (!ev)
        return GPUML_OK;
    gpuml_status st = gpuml_cuda_rt_event_record(ev->device, ev->e, ctx->stream, fn);
    if (st != GPUML_OK)
        gpuml_ctx_adopt_error(ctx);
    return st;
}

gpuml_status io_event_wait(io_event *ev, const char *fn)
{
    if (!ev)
        return GPUML_OK;
    return gpuml_cuda_rt_event_sync(ev->device, ev->e, fn);
}

void io_event_destroy(io_event *ev)
{
    if (!ev)
        return;
    gpuml_cuda_rt_event_destroy(ev->device, ev->e);
    free(ev);
}
