/* The CUDA runtime layer: device discovery, streams, handles, memory and
 * copies. Compiled only when gpuml is built with CUDA (else cuda_stub.c).
 *
 * Every entry point that touches a device selects it and restores the
 * caller's current device before returning: gpuml never leaves the thread's
 * CUDA device changed. */
#define _POSIX_C_SOURCE 200809L
#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include "core/cuda_guard.h"

#include "core/internal.h"
#include "core/runtime.h"
#include "gpuml_config.h"

#if GPUML_HAVE_CUDNN
#include <stdlib.h>
#include <string.h>

#include "core/dynlib.h"
#include "cudnn_api.h"
#endif

static gpuml_status cuda_fail(const gpuml_ctx *ctx, cudaError_t e, const char *fn, const char *what)
{
    return gpuml_fail(ctx, GPUML_ERR_CUDA, fn, "%s failed: %s (%s, CUDA error %d)", what,
                      cudaGetErrorString(e), cudaGetErrorName(e), (int)e);
}

static const char *cublas_text(cublasStatus_t s)
{
    /* cublasGetStatusString exists from CUDA 11.4 on. */
    return cublasGetStatusString(s);
}

int gpuml_cuda_rt_device_count(void)
{
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        (void)cudaGetLastError(); /* clear the sticky-free error for the caller */
        return 0;
    }
    return n;
}

gpuml_status gpuml_cuda_rt_ctx_init(gpuml_ctx *ctx, const char *fn)
{
    gpuml_device_guard g;
    cudaError_t e = gpuml_guard_enter(&g, ctx->device.index);
    if (e != cudaSuccess)
        return cuda_fail(ctx, e, fn, "cudaSetDevice");
    gpuml_status st = GPUML_OK;
    cudaStream_t stream = (cudaStream_t)ctx->stream;
    if (!stream) {
        e = cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking);
        if (e != cudaSuccess) {
            st = cuda_fail(ctx, e, fn, "cudaStreamCreateWithFlags");
            goto out;
        }
        ctx->owns_stream = true;
        ctx->stream = stream;
    }
    e = cudaMalloc((void **)&ctx->dev_error, sizeof(int));
    if (e == cudaSuccess)
        e = cudaMemsetAsync(ctx->dev_error, 0, sizeof(int), stream);
    if (e == cudaErrorMemoryAllocation) {
        (void)cudaGetLastError();
        st = gpuml_fail(ctx, GPUML_ERR_OUT_OF_MEMORY, fn, "allocating the device error word on device %d: out of memory",
                        ctx->device.index);
        goto out;
    }
    if (e != cudaSuccess) {
        st = cuda_fail(ctx, e, fn, "allocating the device error word");
        goto out;
    }
    cublasHandle_t h;
    cublasStatus_t bs = cublasCreate(&h);
    if (bs != CUBLAS_STATUS_SUCCESS) {
        st = gpuml_fail(ctx, GPUML_ERR_CUBLAS, fn, "cublasCreate failed: %s", cublas_text(bs));
        goto out;
    }
    /* On the context's stream (not the legacy one), deterministic and
     * full-precision: no TF32, no split-K atomics. A handle that refuses
     * any of these is not used. */
    const char *what = "cublasSetStream";
    bs = cublasSetStream(h, stream);
    if (bs == CUBLAS_STATUS_SUCCESS) {
        what = "cublasSetMathMode";
        bs = cublasSetMathMode(h, CUBLAS_DEFAULT_MATH);
    }
    if (bs == CUBLAS_STATUS_SUCCESS) {
        what = "cublasSetAtomicsMode";
        bs = cublasSetAtomicsMode(h, CUBLAS_ATOMICS_NOT_ALLOWED);
    }
    if (bs != CUBLAS_STATUS_SUCCESS) {
        cublasDestroy(h);
        st = gpuml_fail(ctx, GPUML_ERR_CUBLAS, fn, "%s failed: %s", what, cublas_text(bs));
        goto out;
    }
    ctx->cublas = h;
out:
    if (st != GPUML_OK) {
        if (ctx->dev_error)
            cudaFree(ctx->dev_error);
        ctx->dev_error = NULL;
        if (ctx->owns_stream) {
            cudaStreamDestroy(stream);
            ctx->stream = NULL; /* not left pointing at the destroyed stream */
        }
        ctx->owns_stream = false;
    }
    gpuml_guard_leave(&g);
    return st;
}

void gpuml_cuda_rt_ctx_fini(gpuml_ctx *ctx)
{
    gpuml_device_guard g;
    if (gpuml_guard_enter(&g, ctx->device.index) != cudaSuccess)
        return;
    cudaStreamSynchronize((cudaStream_t)ctx->stream);
    if (ctx->cublas)
        cublasDestroy((cublasHandle_t)ctx->cublas);
    ctx->cublas = NULL;
#if GPUML_HAVE_CUDNN
    gpuml_cudnn *dn = ctx->cudnn;
    if (dn) {
        dn->Destroy(dn->handle);
        free(dn);
    }
#endif
    ctx->cudnn = NULL;
    if (ctx->dev_error)
        cudaFree(ctx->dev_error);
    ctx->dev_error = NULL;
    if (ctx->owns_stream)
        cudaStreamDestroy((cudaStream_t)ctx->stream);
    ctx->stream = NULL;
    gpuml_guard_leave(&g);
}

gpuml_status gpuml_cuda_rt_cudnn(gpuml_ctx *ctx, const char *fn, void **handle)
{
#if GPUML_HAVE_CUDNN
    if (!ctx->cudnn) {
        /* cuDNN is opened now, not linked (core/dynlib.h). */
#define GPUML_CUDNN_NAME(name) "cudnn" #name,
        static const char *const names[] = {GPUML_CUDNN_FUNCS(GPUML_CUDNN_NAME)};
#undef GPUML_CUDNN_NAME
        enum { N = sizeof names / sizeof names[0] };
        void *fns[N];
        gpuml_status st = gpuml_dynlib_load("cuDNN", "GPUML_CUDNN_LIBRARY", GPUML_CUDNN_SONAME, names, fns, N, fn);
        if (st != GPUML_OK) {
            gpuml_ctx_adopt_error(ctx);
            return st;
        }
        gpuml_cudnn *dn = calloc(1, sizeof *dn);
        if (!dn)
            return gpuml_fail(ctx, GPUML_ERR_OUT_OF_MEMORY, fn, "cannot allocate the cuDNN state");
        _Static_assert(offsetof(gpuml_cudnn, handle) == sizeof fns, "gpuml_cudnn lists the functions first");
        memcpy(dn, fns, sizeof fns); /* POSIX: dlsym's pointers convert to functions */
        gpuml_device_guard g;
        cudaError_t e = gpuml_guard_enter(&g, ctx->device.index);
        if (e != cudaSuccess) {
            free(dn);
            return cuda_fail(ctx, e, fn, "cudaSetDevice");
        }
        cudnnStatus_t s = dn->Create(&dn->handle);
        if (s == CUDNN_STATUS_SUCCESS) {
            s = dn->SetStream(dn->handle, (cudaStream_t)ctx->stream);
            if (s != CUDNN_STATUS_SUCCESS)
                dn->Destroy(dn->handle);
        }
        gpuml_guard_leave(&g);
        if (s != CUDNN_STATUS_SUCCESS) {
            st = gpuml_fail(ctx, GPUML_ERR_CUDNN, fn, "creating the cuDNN handle failed: %s", dn->GetErrorString(s));
            free(dn);
            return st;
        }
        ctx->cudnn = dn;
    }
    *handle = ctx->cudnn;
    return GPUML_OK;
#else
    (void)handle;
    return gpuml_fail(ctx, GPUML_ERR_UNSUPPORTED, fn, "this gpuml was built without cuDNN");
#endif
}

gpuml_status gpuml_cuda_rt_sync(gpuml_ctx *ctx, const char *fn)
{
    /* The device error word is read and cleared on the context's stream: on
     * the legacy stream those copies were unordered with the context's
     * non-blocking stream, so a clear could wipe a later kernel's report
     * (found by the emulated CUDA build). */
    gpuml_device_guard g;
    cudaStream_t stream = (cudaStream_t)ctx->stream;
    const char *what = "cudaSetDevice";
    cudaError_t e = gpuml_guard_enter(&g, ctx->device.index);
    int flag = 0;
    if (e == cudaSuccess && ctx->dev_error) {
        what = "cudaMemcpyAsync of the device error word";
        e = cudaMemcpyAsync(&flag, ctx->dev_error, sizeof flag, cudaMemcpyDeviceToHost, stream);
    }
    if (e == cudaSuccess) {
        what = "cudaStreamSynchronize";
        e = cudaStreamSynchronize(stream);
    }
    if (e == cudaSuccess && flag) {
        what = "cudaMemsetAsync of the device error word";
        e = cudaMemsetAsync(ctx->dev_error, 0, sizeof(int), stream);
        if (e == cudaSuccess) {
            what = "cudaStreamSynchronize";
            e = cudaStreamSynchronize(stream);
        }
    }
    gpuml_guard_leave(&g);
    if (e != cudaSuccess)
        return cuda_fail(ctx, e, fn, what);
    if (flag)
        return gpuml_fail(ctx, GPUML_ERR_INVALID_ARGUMENT, fn,
                          "a kernel met invalid input on the device (code %d: row_splits not "
                          "starting at 0, decreasing, or past the row count); its output is undefined",
                          flag);
    return GPUML_OK;
}

gpuml_status gpuml_cuda_rt_malloc(int device, size_t n, void **p, const char *fn)
{
    gpuml_device_guard g;
    cudaError_t e = gpuml_guard_enter(&g, device);
    if (e == cudaSuccess)
        e = cudaMalloc(p, n);
    gpuml_guard_leave(&g);
    if (e == cudaErrorMemoryAllocation) {
        (void)cudaGetLastError();
        return gpuml_fail(NULL, GPUML_ERR_OUT_OF_MEMORY, fn, "cudaMalloc of %zu bytes on device %d failed: out of memory",
                          n, device);
    }
    if (e != cudaSuccess)
        return cuda_fail(NULL, e, fn, "cudaMalloc");
    return GPUML_OK;
}

void gpuml_cuda_rt_free(int device, void *p)
{
    gpuml_device_guard g;
    if (gpuml_guard_enter(&g, device) == cudaSuccess)
        cudaFree(p);
    gpuml_guard_leave(&g);
}

gpuml_status gpuml_cuda_rt_host_alloc(size_t n, void **p, const char *fn)
{
    cudaError_t e = cudaHostAlloc(p, n, cudaHostAllocPortable);
    if (e == cudaErrorMemoryAllocation) {
        (void)cudaGetLastError();
        return gpuml_fail(NULL, GPUML_ERR_OUT_OF_MEMORY, fn, "cudaHostAlloc of %zu bytes failed: out of memory", n);
    }
    if (e != cudaSuccess)
        return cuda_fail(NULL, e, fn, "cudaHostAlloc");
    return GPUML_OK;
}

void gpuml_cuda_rt_host_free(void *p) { cudaFreeHost(p); }

static enum cudaMemcpyKind copy_kind(gpuml_copy_kind kind)
{
    return kind == GPUML_COPY_H2D   ? cudaMemcpyHostToDevice
           : kind == GPUML_COPY_D2H ? cudaMemcpyDeviceToHost
           : kind == GPUML_COPY_D2D ? cudaMemcpyDeviceToDevice
                                    : cudaMemcpyHostToHost;
}

gpuml_status gpuml_cuda_rt_memcpy(gpuml_ctx *ctx, void *dst, const void *src, size_t n, gpuml_copy_kind kind,
                                  const char *fn)
{
    enum cudaMemcpyKind k = copy_kind(kind);
    gpuml_device_guard g;
    cudaError_t e = gpuml_guard_enter(&g, ctx->device.index);
    if (e == cudaSuccess)
        e = cudaMemcpyAsync(dst, src, n, k, (cudaStream_t)ctx->stream);
    if (e == cudaSuccess && kind == GPUML_COPY_D2H)
        e = cudaStreamSynchronize((cudaStream_t)ctx->stream);
    gpuml_guard_leave(&g);
    if (e != cudaSuccess)
        return cuda_fail(ctx, e, fn, "cudaMemcpyAsync");
    return GPUML_OK;
}

gpuml_status gpuml_cuda_rt_memset(gpuml_ctx *ctx, void *dst, int value, size_t n, const char *fn)
{
    gpuml_device_guard g;
    cudaError_t e = gpuml_guard_enter(&g, ctx->device.index);
    if (e == cudaSuccess)
        e = cudaMemsetAsync(dst, value, n, (cudaStream_t)ctx->stream);
    gpuml_guard_leave(&g);
    if (e != cudaSuccess)
        return cuda_fail(ctx, e, fn, "cudaMemsetAsync");
    return GPUML_OK;
}

gpuml_status gpuml_cuda_rt_check_launch(gpuml_ctx *ctx, const char *fn)
{
    cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess)
        return cuda_fail(ctx, e, fn, "kernel launch");
    return GPUML_OK;
}

/* ---- on a device, outside a context (core/runtime.h) ------------------- */
gpuml_status gpuml_cuda_rt_set_device(int device, const char *fn)
{
    cudaError_t e = cudaSetDevice(device);
    return e == cudaSuccess ? GPUML_OK : cuda_fail(NULL, e, fn, "cudaSetDevice");
}

gpuml_status gpuml_cuda_rt_event_create(int device, int flags, void **ev, const char *fn)
{
    unsigned f = cudaEventDisableTiming | ((flags & GPUML_EVENT_BLOCKING) ? cudaEventBlockingSync : 0u);
    cudaEvent_t event = NULL;
    gpuml_device_guard g;
    cudaError_t e = gpuml_guard_enter(&g, device);
    if (e == cudaSuccess)
        e = cudaEventCreateWithFlags(&event, f);
    gpuml_guard_leave(&g);
    if (e != cudaSuccess)
        return cuda_fail(NULL, e, fn, "cudaEventCreateWithFlags");
    *ev = event;
    return GPUML_OK;
}

void gpuml_cuda_rt_event_destroy(int device, void *ev)
{
    gpuml_device_guard g;
    if (gpuml_guard_enter(&g, device) == cudaSuccess) {
        (void)cudaEventSynchronize((cudaEvent_t)ev);
        cudaEventDestroy((cudaEvent_t)ev);
    }
    gpuml_guard_leave(&g);
}

gpuml_status gpuml_cuda_rt_event_record(int device, void *ev, void *stream, const char *fn)
{
    gpuml_device_guard g;
    cudaError_t e = gpuml_guard_enter(&g, device);
    if (e == cudaSuccess)
        e = cudaEventRecord((cudaEvent_t)ev, (cudaStream_t)stream);
    gpuml_guard_leave(&g);
    return e == cudaSuccess ? GPUML_OK : cuda_fail(NULL, e, fn, "cudaEventRecord");
}

gpuml_status gpuml_cuda_rt_event_sync(int device, void *ev, const char *fn)
{
    gpuml_device_guard g;
    cudaError_t e = gpuml_guard_enter(&g, device);
    if (e == cudaSuccess)
        e = cudaEventSynchronize((cudaEvent_t)ev);
    gpuml_guard_leave(&g);
    return e == cudaSuccess ? GPUML_OK
                            : cuda_fail(NULL, e, fn, "cudaEventSynchronize (a kernel or copy before the event failed)");
}

gpuml_status gpuml_cuda_rt_stream_wait(int device, void *stream, void *ev, const char *fn)
{
    gpuml_device_guard g;
    cudaError_t e = gpuml_guard_enter(&g, device);
    if (e == cudaSuccess)
        e = cudaStreamWaitEvent((cudaStream_t)stream, (cudaEvent_t)ev, 0);
    gpuml_guard_leave(&g);
    return e == cudaSuccess ? GPUML_OK : cuda_fail(NULL, e, fn, "cudaStreamWaitEvent");
}

gpuml_status gpuml_cuda_rt_stream_sync(int device, void *stream, const char *fn)
{
    gpuml_device_guard g;
    cudaError_t e = gpuml_guard_enter(&g, device);
    if (e == cudaSuccess)
        e = cudaStreamSynchronize((cudaStream_t)stream);
    gpuml_guard_leave(&g);
    return e == cudaSuccess ? GPUML_OK : cuda_fail(NULL, e, fn, "cudaStreamSynchronize");
}

gpuml_status gpuml_cuda_rt_stream_create(int device, void **stream, const char *fn)
{
    cudaStream_t s = NULL;
    gpuml_device_guard g;
    cudaError_t e = gpuml_guard_enter(&g, device);
    if (e == cudaSuccess)
        e = cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking);
    gpuml_guard_leave(&g);
    if (e != cudaSuccess)
        return cuda_fail(NULL, e, fn, "cudaStreamCreateWithFlags");
    *stream = s;
    return GPUML_OK;
}

void gpuml_cuda_rt_stream_destroy(int device, void *stream)
{
    gpuml_device_guard g;
    if (gpuml_guard_enter(&g, device) == cudaSuccess)
        cudaStreamDestroy((cudaStream_t)stream);
    gpuml_guard_leave(&g);
}

gpuml_status gpuml_cuda_rt_event_query(int device, void *ev, bool *done, const char *fn)
{
    (void)device; /* cudaEventQuery needs no current device: a poll loop switches none */
    cudaError_t e = cudaEventQuery((cudaEvent_t)ev);
    *done = e == cudaSuccess;
    if (e == cudaSuccess || e == cudaErrorNotReady)
        return GPUML_OK;
    return cuda_fail(NULL, e, fn, "cudaEventQuery (the work before the event failed)");
}

void gpuml_cuda_rt_event_release(int device, void *ev)
{
    gpuml_device_guard g;
    if (gpuml_guard_enter(&g, device) == cudaSuccess)
        cudaEventDestroy((cudaEvent_t)ev);
    gpuml_guard_leave(&g);
}

gpuml_status gpuml_cuda_rt_memcpy_async(int device, void *dst, const void *src, size_t n, gpuml_copy_kind kind,
                                        void *stream, const char *fn)
{
    if (n == 0)
        return GPUML_OK;
    gpuml_device_guard g;
    cudaError_t e = gpuml_guard_enter(&g, device);
    if (e == cudaSuccess)
        e = cudaMemcpyAsync(dst, src, n, copy_kind(kind), (cudaStream_t)stream);
    gpuml_guard_leave(&g);
    return e == cudaSuccess ? GPUML_OK : cuda_fail(NULL, e, fn, "cudaMemcpyAsync");
}
