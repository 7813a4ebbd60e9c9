/*
 * libgpuml/core/runtime.h - the runtime layer the other parts of the library
 * share instead of each keeping its own copy: the monotonic clock, the
 * alignment of sub-allocations, the default logger, and the CUDA runtime
 * calls made on a given device outside an op (events, stream waits and
 * synchronisation, asynchronous copies).
 *
 * The CUDA calls select `device` for the call and restore the calling
 * thread's current device (core/cuda_guard.h): gpuml runs on the host's
 * threads and never leaves them on another device. A failure returns
 * GPUML_ERR_CUDA with "fn: <call> failed: <CUDA text> (<name>, CUDA error
 * <n>)". `ev` and `stream` are cudaEvent_t and cudaStream_t. Implemented in
 * core/cuda_rt.c, or core/cuda_stub.c in a build without CUDA (where every
 * call returns GPUML_ERR_NO_DEVICE: no CUDA context, engine or loader can
 * exist there to make one).
 */
#ifndef GPUML_CORE_RUNTIME_H
#define GPUML_CORE_RUNTIME_H

#include <time.h>

#include "core/internal.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- clock --------------------------------------------------------------
 * CLOCK_MONOTONIC: the clock of deadlines, timeouts and timed condition
 * waits (pthread_condattr_setclock), never set back by the wall clock. */
static inline int64_t gpuml_clock_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static inline double gpuml_clock_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- alignment: core/align.h (the kernels' workspaces use it too) ------ */
#include "align.h"

/* ---- logging ------------------------------------------------------------
 * "gpuml <level>: msg" on stderr: where contexts, engines and communicators
 * without a log_fn send their messages (WARN and above by default). */
void gpuml_log_default(gpuml_log_level level, const char *msg);

/* ---- CUDA runtime on a device ------------------------------------------- */
/* Make `device` current for the calling thread and leave it so: only for
 * threads gpuml itself started (an engine's workers and completion threads). */
gpuml_status gpuml_cuda_rt_set_device(int device, const char *fn);

enum {
    GPUML_EVENT_BLOCKING = 1 /* a host waiting on the event sleeps instead of spinning */
};
/* An event without timing; flags: 0 or GPUML_EVENT_BLOCKING. */
gpuml_status gpuml_cuda_rt_event_create(int device, int flags, void **ev, const char *fn);
/* Waits for the event's work first (memory it guards may be freed next);
 * errors are ignored and leave no message: a teardown. */
void gpuml_cuda_rt_event_destroy(int device, void *ev);
gpuml_status gpuml_cuda_rt_event_record(int device, void *ev, void *stream, const char *fn);
/* Block until the work before the last record is done (an event never
 * recorded is complete); reports the stream's error. */
gpuml_status gpuml_cuda_rt_event_sync(int device, void *ev, const char *fn);
/* Work enqueued on `stream` from now on waits for `ev` (no host wait). */
gpuml_status gpuml_cuda_rt_stream_wait(int device, void *stream, void *ev, const char *fn);
gpuml_status gpuml_cuda_rt_stream_sync(int device, void *stream, const char *fn);
/* A stream of its own that does not synchronise with the legacy default
 * stream (a communicator's); destroy releases it once its work is done. */
gpuml_status gpuml_cuda_rt_stream_create(int device, void **stream, const char *fn);
void gpuml_cuda_rt_stream_destroy(int device, void *stream);
/* Without waiting: *done is whether the work before the last record has
 * finished; an error of that work is returned as a status. Switches no
 * device (cheap enough to poll). */
gpuml_status gpuml_cuda_rt_event_query(int device, void *ev, bool *done, const char *fn);
/* Destroys an event without waiting for it (CUDA releases it when its work
 * completes): for work that may never complete, such as a collective whose
 * peer died. */
void gpuml_cuda_rt_event_release(int device, void *ev);
/* n bytes on `stream`. Never synchronises (a D2H copy into pageable memory
 * is synchronous in CUDA itself); n = 0 does nothing. */
gpuml_status gpuml_cuda_rt_memcpy_async(int device, void *dst, const void *src, size_t n, gpuml_copy_kind kind,
                                        void *stream, const char *fn);

#ifdef __cplusplus
}
#endif
#endif
