/* CUDA runtime calls of the engine: events, stream waits, asynchronous
 * copies. Each selects the engine's device for the call and restores the
 * thread's current device (direct mode runs on the caller's threads). */
#define _POSIX_C_SOURCE 200809L
#include <cuda_runtime_api.h>

#include "core/cuda_guard.h"

#include "infer/engine_impl.h"

static gpuml_status fail(cudaError_t e, const char *what)
{
    return gpuml_fail(NULL, GPUML_ERR_CUDA, "gpuml_engine", "%s failed: %s (%s, CUDA error %d)", what,
                      cudaGetErrorString(e), cudaGetErrorName(e), (int)e);
}

gpuml_status eng_cuda_set_device(int device)
{
    cudaError_t e = cudaSetDevice(device);
    return e == cudaSuccess ? GPUML_OK : fail(e, "cudaSetDevice");
}

gpuml_status eng_cuda_event_create(int device, void **ev)
{
    gpuml_device_guard g;
    cudaError_t e = gpuml_guard_enter(&g, device);
    cudaEvent_t event = NULL;
    /* Blocking sync: a waiting completion thread sleeps instead of spinning
     * on a core the host framework needs. */
    if (e == cudaSuccess)
        e = cudaEventCreateWithFlags(&event, cudaEventDisableTiming | cudaEventBlockingSync);
    gpuml_guard_leave(&g);
    if (e != cudaSuccess)
        return fail(e, "cudaEventCreateWithFlags");
    *ev = event;
    return GPUML_OK;
}

void eng_cuda_event_destroy(int device, void *ev)
{
    gpuml_device_guard g;
    if (gpuml_guard_enter(&g, device) == cudaSuccess)
        cudaEventDestroy((cudaEvent_t)ev);
    gpuml_guard_leave(&g);
}

gpuml_status eng_cuda_event_record(int device, void *ev, void *stream)
{
    gpuml_device_guard g;
    cudaError_t e = gpuml_guard_enter(&g, device);
    if (e == cudaSuccess)
        e = cudaEventRecord((cudaEvent_t)ev, (cudaStream_t)stream);
    gpuml_guard_leave(&g);
    return e == cudaSuccess ? GPUML_OK : fail(e, "cudaEventRecord");
}

gpuml_status eng_cuda_event_sync(int device, void *ev)
{
    gpuml_device_guard g;
    cudaError_t e = gpuml_guard_enter(&g, device);
    if (e == cudaSuccess)
        e = cudaEventSynchronize((cudaEvent_t)ev);
    gpuml_guard_leave(&g);
    return e == cudaSuccess ? GPUML_OK : fail(e, "cudaEventSynchronize (a kernel or copy of the batch failed)");
}

gpuml_status eng_cuda_stream_wait(int device, void *stream, void *ev)
{
    gpuml_device_guard g;
    cudaError_t e = gpuml_guard_enter(&g, device);
    if (e == cudaSuccess)
        e = cudaStreamWaitEvent((cudaStream_t)stream, (cudaEvent_t)ev, 0);
    gpuml_guard_leave(&g);
    return e == cudaSuccess ? GPUML_OK : fail(e, "cudaStreamWaitEvent");
}

gpuml_status eng_cuda_stream_sync(int device, void *stream)
{
    gpuml_device_guard g;
    cudaError_t e = gpuml_guard_enter(&g, device);
    if (e == cudaSuccess)
        e = cudaStreamSynchronize((cudaStream_t)stream);
    gpuml_guard_leave(&g);
    return e == cudaSuccess ? GPUML_OK : fail(e, "cudaStreamSynchronize");
}

gpuml_status eng_cuda_memcpy_async(int device, void *dst, const void *src, size_t n, eng_copy_kind kind, void *stream)
{
    if (n == 0)
        return GPUML_OK;
    enum cudaMemcpyKind k = kind == ENG_H2D ? cudaMemcpyHostToDevice
                            : kind == ENG_D2H ? cudaMemcpyDeviceToHost
                                              : cudaMemcpyDeviceToDevice;
    gpuml_device_guard g;
    cudaError_t e = gpuml_guard_enter(&g, device);
    if (e == cudaSuccess)
        e = cudaMemcpyAsync(dst, src, n, k, (cudaStream_t)stream);
    gpuml_guard_leave(&g);
    return e == cudaSuccess ? GPUML_OK : fail(e, "cudaMemcpyAsync");
}
