/* tests/cudaemu/include/cuda_runtime.h - the emulated CUDA runtime for
 * kernel sources compiled as host C++ (meson option cuda_emulation):
 * the runtime API, plus what device code uses - __global__ and friends,
 * blockIdx/threadIdx/blockDim/gridDim, __shared__, __syncthreads, atomics -
 * and GPUML_EMU_LAUNCH, which kernels/cuda/launch.cuh's GPUML_CUDA_LAUNCH
 * expands to.
 *
 * How a kernel runs: the launch checks its configuration (as the driver
 * does), copies the arguments and queues the kernel on the stream; the
 * stream's host thread runs its blocks, in parallel with a few pool
 * threads. The threads of a block are fibers on one host thread, run in an
 * order shuffled by GPUML_EMU_SEED, switching only at __syncthreads (a real
 * barrier). blockIdx etc. are thread-local and switched with the fiber; a
 * __shared__ variable is a function-static thread_local, so each host
 * thread - which runs one block at a time - has its own. */
#ifndef GPUML_CUDAEMU_RUNTIME_H
#define GPUML_CUDAEMU_RUNTIME_H

#include "cuda_runtime_api.h"

#ifdef __cplusplus
#include <math.h>
#include <stdint.h>

#include <tuple>
#include <type_traits>
#include <utility>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline __attribute__((always_inline))
#define __shared__ static thread_local
#define __constant__ static const
#define __launch_bounds__(...)

struct uint3 {
    unsigned int x, y, z;
};

struct dim3 {
    unsigned int x, y, z;
    constexpr dim3(unsigned int vx = 1, unsigned int vy = 1, unsigned int vz = 1) : x(vx), y(vy), z(vz) {}
    constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
};

extern thread_local uint3 threadIdx;
extern thread_local uint3 blockIdx;
extern thread_local dim3 blockDim;
extern thread_local dim3 gridDim;
/* Loop iterations of the running thread (launch report; counted by the
 * for/while macros of tests/cudaemu/wrap.cpp.in). */
extern thread_local unsigned long long gpuml_emu_iters;
static constexpr int warpSize = 32;

extern "C" void gpuml_emu_syncthreads(void);
#define __syncthreads() gpuml_emu_syncthreads()

/* Device atomics are host atomics: blocks run in parallel. */
template <class T>
static inline T atomicAdd(T *p, T v)
{
    if constexpr (std::is_integral<T>::value) {
        return __atomic_fetch_add(p, v, __ATOMIC_RELAXED);
    } else {
        T old, nv;
        __atomic_load(p, &old, __ATOMIC_RELAXED);
        do
            nv = old + v;
        while (!__atomic_compare_exchange(p, &old, &nv, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED));
        return old;
    }
}
template <class T> static inline T atomicSub(T *p, T v) { return __atomic_fetch_sub(p, v, __ATOMIC_RELAXED); }
template <class T> static inline T atomicExch(T *p, T v) { return __atomic_exchange_n(p, v, __ATOMIC_RELAXED); }
template <class T> static inline T atomicCAS(T *p, T cmp, T v)
{
    __atomic_compare_exchange_n(p, &cmp, v, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED);
    return cmp;
}
template <class T> static inline T atomicMax(T *p, T v)
{
    T old = __atomic_load_n(p, __ATOMIC_RELAXED);
    while (old < v && !__atomic_compare_exchange_n(p, &old, v, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
    }
    return old;
}
template <class T> static inline T atomicMin(T *p, T v)
{
    T old = __atomic_load_n(p, __ATOMIC_RELAXED);
    while (old > v && !__atomic_compare_exchange_n(p, &old, v, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
    }
    return old;
}
static inline void __threadfence(void) { __atomic_thread_fence(__ATOMIC_SEQ_CST); }

/* Launch entry of the runtime (tests/cudaemu/kernel.cpp). args is owned by
 * the runtime from here on (freed with destroy); ptrs lists the pointer
 * arguments, which must be null or point into device or pinned memory of
 * the launch's device. Errors go to cudaGetLastError. */
extern "C" void gpuml_emu_launch(const char *name, const char *file, dim3 grid, dim3 block, size_t shmem,
                                 cudaStream_t stream, void (*run)(void *), void *args, void (*destroy)(void *),
                                 const void *const *ptrs, int nptrs);

namespace gpuml_emu {

template <class... P> struct bound_args {
    void (*kernel)(P...);
    std::tuple<typename std::decay<P>::type...> a;
    static void run(void *self)
    {
        bound_args *b = static_cast<bound_args *>(self);
        std::apply(b->kernel, b->a);
    }
    static void destroy(void *self) { delete static_cast<bound_args *>(self); }
};

template <class T> static inline void collect_ptr(const T &v, const void **ptrs, int *n)
{
    if constexpr (std::is_pointer<T>::value)
        ptrs[(*n)++] = (const void *)v;
}

template <class... P> struct launcher {
    void (*kernel)(P...);
    const char *name, *file;
    dim3 grid, block;
    size_t shmem;
    cudaStream_t stream;
    template <class... A> void operator()(A &&...args) const
    {
        static_assert(sizeof...(A) == sizeof...(P), "kernel launched with the wrong number of arguments");
        auto *b = new bound_args<P...>{kernel, std::tuple<typename std::decay<P>::type...>(std::forward<A>(args)...)};
        const void *ptrs[sizeof...(P) + 1];
        int n = 0;
        std::apply([&](const auto &...v) { (collect_ptr(v, ptrs, &n), ...); }, b->a);
        gpuml_emu_launch(name, file, grid, block, shmem, stream, &bound_args<P...>::run, b,
                         &bound_args<P...>::destroy, ptrs, n);
    }
};

template <class... P>
static inline launcher<P...> make_launcher(void (*kernel)(P...), const char *name, const char *file, dim3 grid,
                                           dim3 block, size_t shmem, cudaStream_t stream)
{
    return launcher<P...>{kernel, name, file, grid, block, shmem, stream};
}

} // namespace gpuml_emu

#define GPUML_EMU_LAUNCH(kernel, name, grid, block, shmem, stream) \
    ::gpuml_emu::make_launcher(kernel, name, __FILE__, grid, block, shmem, stream)

#endif /* __cplusplus */

#endif
