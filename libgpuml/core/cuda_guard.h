/* libgpuml/core/cuda_guard.h - make a device current for one CUDA runtime
 * call and give the calling thread its own back: gpuml runs on the host's
 * threads (direct-mode inference, loader threads, communicators) and must
 * not leave them on another device. Include after cuda_runtime_api.h. */
#ifndef GPUML_CORE_CUDA_GUARD_H
#define GPUML_CORE_CUDA_GUARD_H

#include <stdbool.h>

typedef struct {
    int saved;
    bool changed;
} gpuml_device_guard;

static inline cudaError_t gpuml_guard_enter(gpuml_device_guard *g, int device)
{
    g->changed = false;
    cudaError_t e = cudaGetDevice(&g->saved);
    if (e == cudaSuccess && g->saved != device) {
        e = cudaSetDevice(device);
        g->changed = e == cudaSuccess;
    }
    return e;
}

static inline void gpuml_guard_leave(gpuml_device_guard *g)
{
    if (g->changed)
        (void)cudaSetDevice(g->saved);
}

#endif
