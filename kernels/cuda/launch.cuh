/* kernels/cuda/launch.cuh - shared by the CUDA launchers: device scope,
 * grid sizing for grid-stride loops, and the launch-error check that names
 * the op. */
#ifndef GPUML_KERNELS_CUDA_LAUNCH_CUH
#define GPUML_KERNELS_CUDA_LAUNCH_CUH

#include <cuda_runtime.h>

#include "../../libgpuml/core/cuda_guard.h"
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

/* Selects the context's device for the launch and restores the caller's:
 * the runtime layer's one device guard (core/cuda_guard.h), as a scope for
 * launchers that return from many places. A failed cudaGetDevice /
 * cudaSetDevice is kept in err: the launcher must return it as a status
 * (GPUML_CUDA_ENTER does), never launch on whatever device is current. */
struct gpuml_cuda_scope {
    gpuml_device_guard g;
    cudaError_t err;
    explicit gpuml_cuda_scope(int device) : err(gpuml_guard_enter(&g, device)) {}
    ~gpuml_cuda_scope() { gpuml_guard_leave(&g); }
    gpuml_cuda_scope(const gpuml_cuda_scope &) = delete;
    gpuml_cuda_scope &operator=(const gpuml_cuda_scope &) = delete;
};

static inline gpuml_status gpuml_cuda_scope_fail(const gpuml_kctx *k, const char *op, cudaError_t e)
{
    (void)cudaGetLastError(); /* not sticky: do not let the next launch check report it */
    return gpuml_k_fail(k, GPUML_ERR_CUDA, op, "selecting the context's CUDA device failed", cudaGetErrorString(e),
                        cudaGetErrorName(e), 1, k->device, 0);
}

/* First statement of a launcher: selects k's device for the rest of the
 * function, or returns the failure as a status naming op. */
#define GPUML_CUDA_ENTER(k, op)                                    \
    gpuml_cuda_scope gpuml_scope_((k)->device);                    \
    if (gpuml_scope_.err != cudaSuccess)                           \
        return gpuml_cuda_scope_fail((k), (op), gpuml_scope_.err)

/* Status of a CUDA runtime call made by a launcher (memset, memcpy, CUB):
 * GPUML_CUDA_TRY(k, op, what, call) returns on failure; what is a string
 * literal naming the call ("cub::DeviceRadixSort::SortPairs"). */
static inline gpuml_status gpuml_cuda_call_fail(const gpuml_kctx *k, const char *op, const char *what, cudaError_t e)
{
    return gpuml_k_fail(k, GPUML_ERR_CUDA, op, what, cudaGetErrorString(e), cudaGetErrorName(e), 0, 0, 0);
}
#define GPUML_CUDA_TRY(k, op, what, call)                                      \
    do {                                                                      \
        cudaError_t gpuml_e_ = (call);                                        \
        if (gpuml_e_ != cudaSuccess)                                          \
            return gpuml_cuda_call_fail((k), (op), what " failed", gpuml_e_); \
    } while (0)

/* The whole of a launcher that runs one grid-stride kernel over n items:
 * nothing for n == 0, else the context's device, the launch on its stream
 * and the launch check naming op. It returns, so it ends the launcher. */
#define GPUML_CUDA_RUN(k, op, kernel, n, ...)                                                                  \
    do {                                                                                                       \
        if ((n) == 0)                                                                                          \
            return GPUML_OK;                                                                                   \
        GPUML_CUDA_ENTER(k, op);                                                                               \
        GPUML_CUDA_LAUNCH(kernel, gpuml_cuda_grid(n), GPUML_CUDA_BLOCK, 0, gpuml_cuda_stream(k))(__VA_ARGS__); \
        return gpuml_cuda_check(k, op);                                                                        \
    } while (0)

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

static inline gpuml_status gpuml_cuda_check(const gpuml_kctx *k, const char *op)
{
    cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess)
        return gpuml_k_fail(k, GPUML_ERR_CUDA, op, "kernel launch failed", cudaGetErrorString(e), cudaGetErrorName(e),
                            0, 0, 0);
    return GPUML_OK;
}

/* The max of two int64 for CUB's scans (a monotone copy of row_splits). */
struct gpuml_cuda_max64_op {
    __host__ __device__ int64_t operator()(int64_t a, int64_t b) const { return gpuml_k_max64(a, b); }
};

/* row_splits [nev + 1] made monotone in [0, n] into out on k's stream (a
 * clamp, a CUB max-scan, the ends forced), setting the context's device
 * error word where that changed anything: how launchers read untrusted
 * splits without a host copy. tmp: CUB scratch of at least
 * gpuml_cuda_monotone_splits_scratch(nev) bytes. The caller has entered
 * k's device (kernels/cuda/segment.cu). */
size_t gpuml_cuda_monotone_splits_scratch(int64_t nev);
gpuml_status gpuml_cuda_monotone_splits(const gpuml_kctx *k, const int64_t *rs, int64_t nev, int64_t n, int64_t *out,
                                        void *tmp, size_t tmp_bytes, const char *op);

/* Block-wide collectives over integers (flags, counts): how a launcher
 * combines its threads' bookkeeping, exact and order-free, so no op's
 * arithmetic lives here. B is the block size the kernel was launched with;
 * s is a __shared__ int[B]; every thread of the block must call. */
template <int B> static __device__ int gpuml_cuda_block_or(int v, int *s)
{
    s[threadIdx.x] = v;
    __syncthreads();
    for (int h = B / 2; h > 0; h /= 2) {
        if ((int)threadIdx.x < h)
            s[threadIdx.x] |= s[threadIdx.x + h];
        __syncthreads();
    }
    int r = s[0];
    __syncthreads();
    return r;
}

/* Inclusive prefix sum of v over the block's threads in thread order
 * (Hillis-Steele); s[B - 1] holds the block's total until the next call. */
template <int B> static __device__ int gpuml_cuda_block_scan(int v, int *s)
{
    s[threadIdx.x] = v;
    __syncthreads();
    for (int off = 1; off < B; off <<= 1) {
        int w = (int)threadIdx.x >= off ? s[threadIdx.x - off] : 0;
        __syncthreads();
        s[threadIdx.x] += w;
        __syncthreads();
    }
    return s[threadIdx.x];
}

/* In the emulated build every loop iteration of a CUDA thread is counted
 * for the launch report (tests/cudaemu/wrap.cpp.in), this one included. */
#define GPUML_GRID_STRIDE(i, n) \
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (int64_t)gridDim.x * blockDim.x)

#endif
