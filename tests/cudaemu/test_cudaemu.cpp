/* tests/cudaemu/test_cudaemu.cpp - the emulated CUDA platform's own
 * semantics, each of which a gpuml test relies on to fail when gpuml is
 * wrong: asynchronous streams (a host read without synchronisation sees old
 * bytes), the legacy stream's implicit ordering and non-blocking streams'
 * lack of it, events across streams and devices, launch-configuration
 * errors, real barriers and shuffled thread order, atomics across parallel
 * blocks, registry-checked copies, out-of-memory and injected allocation
 * failures, sticky faults, cuBLAS's leading-dimension rules, CUB's
 * temporary-storage protocol, a single-rank NCCL communicator.
 *
 * Kernels that must stay on the device until the host has looked spin on a
 * gate word in pinned memory that the host opens. */
#include <sched.h>

#include <cstdio>
#include <cstring>
#include <vector>

#include <cub/cub.cuh>

#include "cublas_v2.h"
#include "cuda_runtime.h"
#include "cudaemu.h"
#include "nccl.h"

static int failures = 0;
#define CHECK(c)                                                                  \
    do {                                                                          \
        if (!(c)) {                                                               \
            printf("FAIL %s:%d: %s\n", __FILE__, __LINE__, #c);                   \
            failures++;                                                           \
        }                                                                         \
    } while (0)
#define CHECK_EQ(a, b)                                                                                   \
    do {                                                                                                 \
        long long a_ = (long long)(a), b_ = (long long)(b);                                              \
        if (a_ != b_) {                                                                                  \
            printf("FAIL %s:%d: %s = %lld, expected %s = %lld\n", __FILE__, __LINE__, #a, a_, #b, b_);   \
            failures++;                                                                                  \
        }                                                                                                \
    } while (0)

static __global__ void gated_fill(volatile int *gate, int *out, int n, int v)
{
    if (threadIdx.x == 0 && blockIdx.x == 0)
        while (__atomic_load_n(gate, __ATOMIC_ACQUIRE) == 0)
            sched_yield();
    for (int i = threadIdx.x; i < n; i += blockDim.x)
        out[i] = v;
}

static __global__ void fill(int *out, int n, int v)
{
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x)
        out[i] = v;
}

static __global__ void neighbour(int *out, int barrier, int salt)
{
    __shared__ int s[256];
    s[threadIdx.x] = (int)threadIdx.x + salt; /* salt: shared memory keeps the last block's values */
    if (barrier)
        __syncthreads();
    out[threadIdx.x] = s[(threadIdx.x + 1) % blockDim.x];
}

static __global__ void count(unsigned long long *c) { atomicAdd(c, 1ull); }

static __global__ void coords(int *out)
{
    int b = (blockIdx.z * gridDim.y + blockIdx.y) * gridDim.x + blockIdx.x;
    int t = (threadIdx.z * blockDim.y + threadIdx.y) * blockDim.x + threadIdx.x;
    out[b * blockDim.x * blockDim.y * blockDim.z + t] = b * 1000 + t;
}

static void test_async_and_stale_reads()
{
    int *gate, *host, *dev;
    cudaStream_t s;
    CHECK_EQ(cudaHostAlloc((void **)&gate, sizeof(int), cudaHostAllocPortable), cudaSuccess);
    CHECK_EQ(cudaHostAlloc((void **)&host, 64 * sizeof(int), 0), cudaSuccess);
    CHECK_EQ(cudaMalloc((void **)&dev, 64 * sizeof(int)), cudaSuccess);
    CHECK_EQ(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), cudaSuccess);
    *gate = 0;
    for (int i = 0; i < 64; i++)
        host[i] = -7;
    GPUML_EMU_LAUNCH(gated_fill, "gated_fill", 1, 32, 0, s)(gate, dev, 64, 5);
    CHECK_EQ(cudaGetLastError(), cudaSuccess);
    CHECK_EQ(cudaMemcpyAsync(host, dev, 64 * sizeof(int), cudaMemcpyDeviceToHost, s), cudaSuccess);
    CHECK_EQ(cudaStreamQuery(s), cudaErrorNotReady);
    CHECK_EQ(host[0], -7); /* not yet: the host read is stale */
    __atomic_store_n(gate, 1, __ATOMIC_RELEASE);
    CHECK_EQ(cudaStreamSynchronize(s), cudaSuccess);
    CHECK_EQ(host[0], 5);
    CHECK_EQ(host[63], 5);
    cudaStreamDestroy(s);
    cudaFree(dev);
    cudaFreeHost(host);
    cudaFreeHost(gate);
}

static void test_legacy_stream()
{
    int *gate, *dev;
    cudaStream_t blocking, nb;
    cudaHostAlloc((void **)&gate, sizeof(int), 0);
    cudaMalloc((void **)&dev, 64 * sizeof(int));
    CHECK_EQ(cudaStreamCreate(&blocking), cudaSuccess);
    CHECK_EQ(cudaStreamCreateWithFlags(&nb, cudaStreamNonBlocking), cudaSuccess);
    *gate = 0;
    GPUML_EMU_LAUNCH(gated_fill, "gated_fill", 1, 32, 0, blocking)(gate, dev, 32, 1);
    /* the legacy stream waits for the blocking stream's earlier work ... */
    CHECK_EQ(cudaMemsetAsync(dev + 32, 0, 32 * sizeof(int), 0), cudaSuccess);
    /* ... a non-blocking stream does not */
    CHECK_EQ(cudaMemsetAsync(dev + 32, 0, 32 * sizeof(int), nb), cudaSuccess);
    CHECK_EQ(cudaStreamSynchronize(nb), cudaSuccess);
    CHECK_EQ(cudaStreamQuery(0), cudaErrorNotReady);
    __atomic_store_n(gate, 1, __ATOMIC_RELEASE);
    CHECK_EQ(cudaStreamSynchronize(0), cudaSuccess);
    CHECK_EQ(cudaStreamQuery(blocking), cudaSuccess);
    cudaStreamDestroy(blocking);
    cudaStreamDestroy(nb);
    cudaFree(dev);
    cudaFreeHost(gate);
}

static void test_events_across_devices()
{
    int *gate, *d0, *d1, h = 0;
    cudaStream_t s0, s1;
    cudaEvent_t ev, t0, t1;
    cudaHostAlloc((void **)&gate, sizeof(int), 0);
    *gate = 0;
    cudaSetDevice(0);
    cudaMalloc((void **)&d0, 64 * sizeof(int));
    cudaStreamCreateWithFlags(&s0, cudaStreamNonBlocking);
    CHECK_EQ(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming), cudaSuccess);
    CHECK_EQ(cudaEventCreate(&t0), cudaSuccess);
    CHECK_EQ(cudaEventCreate(&t1), cudaSuccess);
    CHECK_EQ(cudaEventQuery(ev), cudaSuccess); /* never recorded: complete */
    CHECK_EQ(cudaEventRecord(t0, s0), cudaSuccess);
    GPUML_EMU_LAUNCH(gated_fill, "gated_fill", 1, 32, 0, s0)(gate, d0, 64, 9);
    CHECK_EQ(cudaEventRecord(ev, s0), cudaSuccess);
    CHECK_EQ(cudaEventRecord(t1, s0), cudaSuccess);
    CHECK_EQ(cudaEventQuery(ev), cudaErrorNotReady);
    float ms = -1;
    CHECK_EQ(cudaEventElapsedTime(&ms, t0, t1), cudaErrorNotReady);
    cudaSetDevice(1);
    cudaMalloc((void **)&d1, 64 * sizeof(int));
    cudaStreamCreateWithFlags(&s1, cudaStreamNonBlocking);
    CHECK_EQ(cudaEventRecord(ev, s1), cudaErrorInvalidResourceHandle); /* event of device 0 */
    CHECK_EQ(cudaStreamWaitEvent(s1, ev, 0), cudaSuccess);
    CHECK_EQ(cudaMemcpyAsync(d1, d0, 64 * sizeof(int), cudaMemcpyDeviceToDevice, s1), cudaSuccess);
    CHECK_EQ(cudaStreamQuery(s1), cudaErrorNotReady);
    __atomic_store_n(gate, 1, __ATOMIC_RELEASE);
    CHECK_EQ(cudaStreamSynchronize(s1), cudaSuccess);
    CHECK_EQ(cudaMemcpy(&h, d1 + 63, sizeof h, cudaMemcpyDeviceToHost), cudaSuccess);
    CHECK_EQ(h, 9);
    CHECK_EQ(cudaEventSynchronize(t1), cudaSuccess);
    CHECK_EQ(cudaEventElapsedTime(&ms, t0, t1), cudaSuccess);
    CHECK(ms >= 0);
    CHECK_EQ(cudaEventElapsedTime(&ms, t0, ev), cudaErrorInvalidResourceHandle); /* timing disabled */
    cudaGetLastError();
    cudaStreamDestroy(s1);
    cudaFree(d1);
    cudaSetDevice(0);
    cudaEventDestroy(ev), cudaEventDestroy(t0), cudaEventDestroy(t1);
    cudaStreamDestroy(s0);
    cudaFree(d0);
    cudaFreeHost(gate);
}

static void test_launch_checks()
{
    int *d;
    cudaMalloc((void **)&d, 4096 * sizeof(int));
    GPUML_EMU_LAUNCH(fill, "fill", 1, 1025, 0, 0)(d, 10, 1);
    CHECK_EQ(cudaGetLastError(), cudaErrorInvalidConfiguration);
    CHECK_EQ(cudaGetLastError(), cudaSuccess); /* not sticky */
    GPUML_EMU_LAUNCH(fill, "fill", dim3(1, 65536), 32, 0, 0)(d, 10, 1);
    CHECK_EQ(cudaPeekAtLastError(), cudaErrorInvalidConfiguration);
    CHECK_EQ(cudaGetLastError(), cudaErrorInvalidConfiguration);
    GPUML_EMU_LAUNCH(fill, "fill", 1, dim3(32, 32, 2), 0, 0)(d, 10, 1);
    CHECK_EQ(cudaGetLastError(), cudaErrorInvalidConfiguration);
    GPUML_EMU_LAUNCH(fill, "fill", 1, 32, 49 * 1024, 0)(d, 10, 1);
    CHECK_EQ(cudaGetLastError(), cudaErrorInvalidValue);
    GPUML_EMU_LAUNCH(fill, "fill", 0, 32, 0, 0)(d, 10, 1);
    CHECK_EQ(cudaGetLastError(), cudaErrorInvalidConfiguration);
    cudaStream_t s1;
    cudaSetDevice(1);
    cudaStreamCreate(&s1);
    cudaSetDevice(0);
    GPUML_EMU_LAUNCH(fill, "fill", 1, 32, 0, s1)(d, 10, 1); /* a stream of device 1 */
    CHECK_EQ(cudaGetLastError(), cudaErrorInvalidResourceHandle);
    cudaStreamDestroy(s1);
    /* grids in three dimensions */
    GPUML_EMU_LAUNCH(coords, "coords", dim3(2, 3, 2), dim3(4, 2, 3), 0, 0)(d);
    std::vector<int> h(12 * 24);
    CHECK_EQ(cudaMemcpy(h.data(), d, h.size() * sizeof(int), cudaMemcpyDeviceToHost), cudaSuccess);
    int bad = 0;
    for (int b = 0; b < 12; b++)
        for (int t = 0; t < 24; t++)
            bad += h[b * 24 + t] != b * 1000 + t;
    CHECK_EQ(bad, 0);
    cudaFree(d);
}

static void test_barrier_and_atomics()
{
    int *d;
    unsigned long long *c, hc = 0;
    cudaMalloc((void **)&d, 256 * sizeof(int));
    cudaMalloc((void **)&c, sizeof *c);
    std::vector<int> h(256);
    GPUML_EMU_LAUNCH(neighbour, "neighbour", 1, 256, 0, 0)(d, 1, 0);
    cudaMemcpy(h.data(), d, 256 * sizeof(int), cudaMemcpyDeviceToHost);
    int wrong = 0;
    for (int t = 0; t < 256; t++)
        wrong += h[t] != (t + 1) % 256;
    CHECK_EQ(wrong, 0);
    /* without the barrier, a shuffled order reads slots not yet written */
    cudaMemset(d, 0, 256 * sizeof(int));
    GPUML_EMU_LAUNCH(neighbour, "neighbour", 1, 256, 0, 0)(d, 0, 1000);
    cudaMemcpy(h.data(), d, 256 * sizeof(int), cudaMemcpyDeviceToHost);
    wrong = 0;
    for (int t = 0; t < 256; t++)
        wrong += h[t] != (t + 1) % 256 + 1000;
    CHECK(wrong > 0);
    cudaMemset(c, 0, sizeof *c);
    GPUML_EMU_LAUNCH(count, "count", 500, 128, 0, 0)(c);
    cudaMemcpy(&hc, c, sizeof hc, cudaMemcpyDeviceToHost);
    CHECK_EQ(hc, 500 * 128);
    cudaFree(d);
    cudaFree(c);
}

static void test_memory()
{
    void *p = nullptr, *q = nullptr;
    int host[4];
    CHECK_EQ(cudaMalloc(&p, (size_t)1 << 50), cudaErrorMemoryAllocation); /* beyond the capacity */
    CHECK_EQ(cudaGetLastError(), cudaErrorMemoryAllocation);
    CHECK_EQ(cudaGetLastError(), cudaSuccess);
    gpuml_emu_fail_malloc_after(2);
    CHECK_EQ(cudaMalloc(&p, 16), cudaSuccess);
    CHECK_EQ(cudaMalloc(&q, 16), cudaErrorMemoryAllocation); /* injected */
    CHECK_EQ(cudaMalloc(&q, 16), cudaSuccess);
    cudaGetLastError();
    CHECK_EQ(cudaMemcpy(host, host, 16, cudaMemcpyHostToDevice), cudaErrorInvalidValue); /* dst is host */
    CHECK_EQ(cudaMemcpy(host, p, 32, cudaMemcpyDeviceToHost), cudaErrorInvalidValue);    /* past the end */
    CHECK_EQ(cudaMemcpy(host, (char *)p + 8, 8, cudaMemcpyDeviceToHost), cudaSuccess);
    CHECK_EQ(cudaMemcpy(q, p, 16, (cudaMemcpyKind)7), cudaErrorInvalidMemcpyDirection);
    CHECK_EQ(cudaMemset(host, 0, 16), cudaErrorInvalidValue);
    CHECK_EQ(cudaFree(host), cudaErrorInvalidValue);
    CHECK_EQ(cudaFreeHost(p), cudaErrorInvalidValue);
    cudaGetLastError();
    size_t before = gpuml_emu_bytes_in_use(0);
    CHECK_EQ(cudaFree(p), cudaSuccess);
    CHECK_EQ(cudaFree(q), cudaSuccess);
    CHECK_EQ(before - gpuml_emu_bytes_in_use(0), 32);
    CHECK_EQ(cudaSetDevice(99), cudaErrorInvalidDevice);
    cudaGetLastError();
}

static void test_libraries()
{
    cublasHandle_t h;
    CHECK_EQ(cublasCreate(&h), CUBLAS_STATUS_SUCCESS);
    float *a, *b, *c, one = 1, zero = 0;
    cudaMalloc((void **)&a, 6 * 4), cudaMalloc((void **)&b, 6 * 4), cudaMalloc((void **)&c, 4 * 4);
    float ha[6] = {1, 2, 3, 4, 5, 6}, hb[6] = {1, 0, 0, 1, 1, 1}, hc[4];
    cudaMemcpy(a, ha, 24, cudaMemcpyHostToDevice);
    cudaMemcpy(b, hb, 24, cudaMemcpyHostToDevice);
    /* column-major A 2x3 (lda 2) times B 3x2 (ldb 3) */
    CHECK_EQ(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, 2, 2, 3, &one, a, 2, b, 3, &zero, c, 2), CUBLAS_STATUS_SUCCESS);
    cudaMemcpy(hc, c, 16, cudaMemcpyDeviceToHost);
    CHECK(hc[0] == 1 && hc[1] == 2 && hc[2] == 9 && hc[3] == 12);
    CHECK_EQ(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, 2, 2, 3, &one, a, 1, b, 3, &zero, c, 2),
             CUBLAS_STATUS_INVALID_VALUE); /* lda < m */
    CHECK_EQ(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, 2, 2, 0, &one, a, 0, b, 0, &zero, c, 2),
             CUBLAS_STATUS_INVALID_VALUE); /* lda, ldb >= 1 even when k = 0 */
    CHECK_EQ(cublasSgemm(h, CUBLAS_OP_T, CUBLAS_OP_N, 2, 2, 3, &one, a, 2, b, 3, &zero, c, 2),
             CUBLAS_STATUS_INVALID_VALUE); /* op(A) = A^T: lda >= k */
    cublasDestroy(h);

    int n = 1000;
    uint32_t *k, *k2;
    int32_t *v, *v2;
    cudaMalloc((void **)&k, n * 4), cudaMalloc((void **)&k2, n * 4), cudaMalloc((void **)&v, n * 4),
        cudaMalloc((void **)&v2, n * 4);
    std::vector<uint32_t> hk(n);
    std::vector<int32_t> hv(n);
    for (int i = 0; i < n; i++)
        hk[i] = (uint32_t)((i * 7919) % 97), hv[i] = i;
    cudaMemcpy(k, hk.data(), n * 4, cudaMemcpyHostToDevice);
    cudaMemcpy(v, hv.data(), n * 4, cudaMemcpyHostToDevice);
    size_t bytes = 0;
    CHECK_EQ(cub::DeviceRadixSort::SortPairs(nullptr, bytes, k, k2, v, v2, n, 0, 7), cudaSuccess);
    CHECK(bytes > 0);
    void *tmp;
    cudaMalloc(&tmp, bytes);
    size_t less = bytes - 1;
    CHECK_EQ(cub::DeviceRadixSort::SortPairs(tmp, less, k, k2, v, v2, n, 0, 7), cudaErrorInvalidValue);
    CHECK_EQ(cub::DeviceRadixSort::SortPairs(tmp, bytes, k, k2, v, v2, n, 0, 7), cudaSuccess);
    cudaMemcpy(hk.data(), k2, n * 4, cudaMemcpyDeviceToHost);
    cudaMemcpy(hv.data(), v2, n * 4, cudaMemcpyDeviceToHost);
    int unsorted = 0;
    for (int i = 1; i < n; i++)
        unsorted += hk[i - 1] > hk[i] || (hk[i - 1] == hk[i] && hv[i - 1] > hv[i]); /* stable */
    CHECK_EQ(unsorted, 0);
    size_t sb = 0;
    CHECK_EQ(cub::DeviceScan::InclusiveSum(nullptr, sb, v, v2, n), cudaSuccess);
    CHECK(sb <= bytes);
    CHECK_EQ(cub::DeviceScan::InclusiveSum(tmp, sb, v, v2, n), cudaSuccess);
    int last = 0;
    cudaMemcpy(&last, v2 + n - 1, 4, cudaMemcpyDeviceToHost);
    CHECK_EQ(last, n * (n - 1) / 2);
    cudaFree(k), cudaFree(k2), cudaFree(v), cudaFree(v2), cudaFree(tmp);

    ncclUniqueId id;
    ncclComm_t comm;
    CHECK_EQ(ncclGetUniqueId(&id), ncclSuccess);
    ncclConfig_t cfg = NCCL_CONFIG_INITIALIZER;
    cfg.blocking = 0;
    ncclResult_t r = ncclCommInitRankConfig(&comm, 1, id, 0, &cfg);
    CHECK(r == ncclSuccess || r == ncclInProgress);
    ncclResult_t async = ncclInProgress;
    CHECK_EQ(ncclCommGetAsyncError(comm, &async), ncclSuccess);
    CHECK_EQ(async, ncclSuccess);
    float *x;
    cudaMalloc((void **)&x, 16);
    float hx[4] = {1, 2, 3, 4}, hy[4];
    cudaMemcpy(x, hx, 16, cudaMemcpyHostToDevice);
    r = ncclAllReduce(x, x, 4, ncclFloat32, ncclAvg, comm, 0);
    CHECK(r == ncclSuccess || r == ncclInProgress);
    CHECK_EQ(ncclAllReduce(hx, x, 4, ncclFloat32, ncclSum, comm, 0), ncclInvalidArgument); /* host buffer */
    CHECK_EQ(ncclBroadcast(x, x, 4, ncclFloat32, 1, comm, 0), ncclInvalidArgument);          /* no rank 1 */
    cudaMemcpy(hy, x, 16, cudaMemcpyDeviceToHost);
    CHECK(memcmp(hx, hy, 16) == 0);
    CHECK_EQ(ncclCommAbort(comm), ncclSuccess);
    cudaFree(x);
}

/* Last: a fault is sticky for the device (a real process would restart). */
static void test_sticky_fault()
{
    int host[4], *d;
    cudaMalloc((void **)&d, 16);
    GPUML_EMU_LAUNCH(fill, "fill", 1, 32, 0, 0)(host, 4, 1); /* a host pointer on the device */
    CHECK_EQ(cudaGetLastError(), cudaSuccess);                 /* the launch itself is fine */
    CHECK_EQ(cudaDeviceSynchronize(), cudaErrorIllegalAddress);
    CHECK_EQ(cudaGetLastError(), cudaErrorIllegalAddress);
    CHECK_EQ(cudaGetLastError(), cudaErrorIllegalAddress); /* sticky */
    void *p;
    CHECK_EQ(cudaMalloc(&p, 16), cudaErrorIllegalAddress);
    cudaSetDevice(1);
    CHECK_EQ(cudaMalloc(&p, 16), cudaSuccess); /* another device is unaffected */
    cudaFree(p);
    cudaSetDevice(0);
    gpuml_emu_clear_sticky(0);
    gpuml_emu_fault_launch_after(1);
    GPUML_EMU_LAUNCH(fill, "fill", 1, 32, 0, 0)(d, 4, 1);
    CHECK_EQ(cudaDeviceSynchronize(), cudaErrorIllegalAddress);
    gpuml_emu_clear_sticky(0);
    cudaFree(d);
}

int main()
{
    test_async_and_stale_reads();
    test_legacy_stream();
    test_events_across_devices();
    test_launch_checks();
    test_barrier_and_atomics();
    test_memory();
    test_libraries();
    test_sticky_fault();
    printf("%s: %d failure(s)\n", failures ? "FAILED" : "passed", failures);
    return failures ? 1 : 0;
}
