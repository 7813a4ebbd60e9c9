/* kernels/cuda/launch.cuh - shared by the CUDA launchers: device scope,
 * grid sizing for grid-stride loops, and the launch-error check that names
 * the op. */
#ifndef GPUML_KERNELS_CUDA_LAUNCH_CUH
#define GPUML_KERNELS_CUDA_LAUNCH_CUH

#include <cuda_runtime.h>

#include "../common.h"

#define GPUML_CUDA_BLOCK 256

/* Every kernel launch is written GPUML_CUDA_LAUNCH(kernel, grid, block,
 * shmem, stream)(args...). Under nvcc it is the triple-chevron launch; the
 * emulated CUDA build (meson option cuda_emulation, DESIGN.md section 4b)
 * defines GPUML_CUDA_EMULATION and its own GPUML_EMU_LAUNCH, which queues
 * the kernel on the emulated stream with the same configuration checks. */
#ifdef GPUML_CUDA_EMULATION
#define GPUML_CUDA_LAUNCH(kernel, grid, block, shmem, stream) \
    GPUML_EMU_LAUNCH(kernel, #kernel, grid, block, shmem, stream)
#else
#define GPUML_CUDA_LAUNCH(kernel, grid, block, shmem, stream) kernel<<<grid, block, shmem, stream>>>
#endif

/* Selects the context's device for the launch, restores the caller's. */
struct gpuml_cuda_scope {
    int saved = -1;
    bool changed = false;
    explicit gpuml_cuda_scope(int device)
    {
        if (cudaGetDevice(&saved) == cudaSuccess && saved != device)
            changed = cudaSetDevice(device) == cudaSuccess;
    }
    ~gpuml_cuda_scope()
    {
        if (changed)
            cudaSetDevice(saved);
    }
};

static inline unsigned gpuml_cuda_grid(int64_t n)
{
    int64_t g = (n + GPUML_CUDA_BLOCK - 1) / GPUML_CUDA_BLOCK;
    if (g < 1)
        g = 1;
    if (g > (1 << 20)) /* grid-stride loops cover the rest */
        g = 1 << 20;
    return (unsigned)g;
}

static inline cudaStream_t gpuml_cuda_stream(const gpuml_kctx *k) { return (cudaStream_t)k->stream; }

static inline gpuml_status gpuml_cuda_check(const char *op)
{
    cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess)
        return gpuml_fail(NULL, GPUML_ERR_CUDA, op, "kernel launch failed: %s (%s)", cudaGetErrorString(e),
                          cudaGetErrorName(e));
    return GPUML_OK;
}

#ifdef GPUML_CUDA_EMULATION
/* The emulator counts each thread's iterations for its launch report
 * (tests/cudaemu): a kernel whose per-thread count grows with the rows is
 * serial. */
#define GPUML_GRID_STRIDE(i, n)                                                                      \
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n) && (++gpuml_emu_iters, true); \
         i += (int64_t)gridDim.x * blockDim.x)
#else
#define GPUML_GRID_STRIDE(i, n) \
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (int64_t)gridDim.x * blockDim.x)
#endif

#endif
