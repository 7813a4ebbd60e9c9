/*
 * libgpuml/io/devsync.h - CUDA events for the loader's staging buffers: a
 * pinned buffer may be refilled only after the stream has consumed the
 * copies made from it. Without CUDA these are no-ops (CPU copies complete
 * before they return).
 */
#ifndef GPUML_IO_DEVSYNC_H
#define GPUML_IO_DEVSYNC_H

#include "core/internal.h"

typedef struct io_event io_event;

/* An event on CUDA device `device`; *out = NULL for a CPU context. */
gpuml_status io_event_create(const gpuml_ctx *ctx, io_event **out, const char *fn);
/* Record on ctx's stream (caller's thread, which owns ctx). */
gpuml_status io_event_record(gpuml_ctx *ctx, io_event *ev, const char *fn);
/* Wait on the host until the stream has passed the last record (any
 * thread; an event never recorded is complete). */
gpuml_status io_event_wait(io_event *ev, const char *fn);
void io_event_destroy(io_event *ev);

#endif
