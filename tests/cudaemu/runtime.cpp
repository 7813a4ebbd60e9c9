/* tests/cudaemu/runtime.cpp - the emulated CUDA runtime: devices, memory,
 * copies, streams, events and errors, with the real API's semantics:
 *   - cudaMalloc takes from a per-device capacity (GPUML_EMU_MEM_MB), so
 *     out-of-memory is real; fresh device memory is filled with 0xff bytes
 *     (NaN floats, -1 integers), so code that reads it before writing fails;
 *   - copies and memsets check their pointers against the registry: device
 *     sides must lie inside one device allocation, host sides must not be
 *     device memory (cudaErrorInvalidValue otherwise);
 *   - every stream runs on its own host thread: an async call returns at
 *     once, and host code that reads a result without synchronising sees
 *     the old bytes. Pageable host memory behaves as in the driver: an
 *     async copy from it is staged at the call, one into it waits;
 *   - the legacy default stream waits for earlier work of the device's
 *     blocking streams and they wait for its earlier work; non-blocking
 *     streams do not synchronise with it;
 *   - a fault (a kernel touching a pointer that is not device memory, an
 *     injected fault) is sticky: every later call on that device returns it. */
#undef _FORTIFY_SOURCE
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <unordered_map>
#include <unordered_set>

#include "cudaemu.h"
#include "internal.hpp"

namespace emu {

struct Device {
    int id = 0;
    size_t capacity = 0;
    std::atomic<size_t> used{0};
    std::atomic<int> sticky{0};
    std::mutex m;
    StreamP legacy;
    std::vector<std::weak_ptr<Stream>> blocking; /* created without cudaStreamNonBlocking */
};

struct Alloc {
    size_t size;
    int device;
};

struct Event {
    int device = 0;
    unsigned flags = 0;
    std::mutex m;
    StreamP s;
    uint64_t seq = 0;
    std::shared_ptr<std::atomic<uint64_t>> stamp; /* ns when it ran; 0 before */
};

struct Global {
    std::vector<Device *> devs;
    std::mutex reg_m;
    std::map<uintptr_t, Alloc> allocs;
    std::mutex obj_m;
    std::unordered_map<Stream *, StreamP> streams;
    std::unordered_set<Event *> events;
    std::atomic<long> fail_malloc{0}, fault_launch{0};
};

static long env_long(const char *name, long dflt)
{
    const char *v = getenv(name);
    return v && *v ? strtol(v, nullptr, 10) : dflt;
}

/* Never destroyed: stream threads may still run while the process exits. */
static Global &G()
{
    static Global *g = [] {
        Global *x = new Global;
        long n = env_long("GPUML_EMU_DEVICES", 2), mb = env_long("GPUML_EMU_MEM_MB", 4096);
        for (long i = 0; i < n; i++) {
            Device *d = new Device;
            d->id = (int)i;
            d->capacity = (size_t)mb << 20;
            x->devs.push_back(d);
        }
        x->fail_malloc = env_long("GPUML_EMU_FAIL_MALLOC", 0);
        x->fault_launch = env_long("GPUML_EMU_FAULT_LAUNCH", 0);
        return x;
    }();
    return *g;
}

static thread_local int tl_device = 0;
static thread_local cudaError_t tl_last = cudaSuccess;

int ndevices() { return (int)G().devs.size(); }
int current_device() { return tl_device; }

cudaError_t fail(cudaError_t e)
{
    if (e != cudaSuccess && e != cudaErrorNotReady)
        tl_last = e;
    return e;
}

cudaError_t sticky(int device)
{
    if (device < 0 || device >= ndevices())
        return cudaSuccess;
    return (cudaError_t)G().devs[device]->sticky.load();
}

void set_sticky(int device, cudaError_t e, const char *why)
{
    if (device < 0 || device >= ndevices())
        return;
    int expect = 0;
    if (G().devs[device]->sticky.compare_exchange_strong(expect, (int)e))
        fprintf(stderr, "cudaemu: device %d: %s -> %s (sticky)\n", device, why, cudaGetErrorName(e));
}

/* GPUML_EMU_JITTER_US / GPUML_EMU_LEGACY_DELAY_US: each operation of a
 * stream (of the legacy stream) starts that much later - a timing the
 * hardware could have, which makes work ordered only by luck show. */
static void delay(bool legacy)
{
    static const long jitter = env_long("GPUML_EMU_JITTER_US", 0), legacy_us = env_long("GPUML_EMU_LEGACY_DELAY_US", 0);
    static std::atomic<uint64_t> n{0};
    long us = legacy ? legacy_us : 0;
    if (jitter > 0)
        us += (long)((n.fetch_add(1) * 0x9e3779b97f4a7c15ull >> 40) % (uint64_t)jitter);
    if (us > 0)
        std::this_thread::sleep_for(std::chrono::microseconds(us));
}

static void stream_loop(StreamP s)
{
    for (;;) {
        std::function<void()> fn;
        {
            std::unique_lock<std::mutex> l(s->m);
            s->cv_work.wait(l, [&] { return s->stopping || !s->q.empty(); });
            if (s->q.empty())
                break;
            fn = std::move(s->q.front());
            s->q.pop_front();
        }
        tl_device = s->device; /* what operations see as the current device */
        delay(s->legacy);
        if (!sticky(s->device))
            fn();
        fn = nullptr; /* captured resources go before the operation counts as done */
        std::lock_guard<std::mutex> l(s->m);
        s->done++;
        s->cv_done.notify_all();
    }
}

static StreamP new_stream(int device, unsigned flags, bool legacy)
{
    StreamP s = std::make_shared<Stream>();
    s->device = device;
    s->flags = flags;
    s->legacy = legacy;
    std::thread(stream_loop, s).detach();
    return s;
}

static StreamP legacy_of(int device)
{
    Device *d = G().devs[device];
    std::lock_guard<std::mutex> l(d->m);
    if (!d->legacy)
        d->legacy = new_stream(device, 0, true);
    return d->legacy;
}

cudaError_t resolve_stream(cudaStream_t h, StreamP *out)
{
    if (h == nullptr || h == cudaStreamLegacy || h == cudaStreamPerThread) {
        if (ndevices() == 0)
            return cudaErrorNoDevice;
        *out = legacy_of(current_device());
        return cudaSuccess;
    }
    std::lock_guard<std::mutex> l(G().obj_m);
    auto it = G().streams.find((Stream *)h);
    if (it == G().streams.end())
        return cudaErrorInvalidResourceHandle;
    *out = it->second;
    return cudaSuccess;
}

uint64_t submit(const StreamP &s, std::function<void()> fn)
{
    std::vector<std::pair<StreamP, uint64_t>> deps;
    Device *d = G().devs[s->device];
    if (s->legacy) {
        std::lock_guard<std::mutex> l(d->m);
        for (auto &w : d->blocking)
            if (StreamP b = w.lock())
                deps.emplace_back(b, b->tail());
    } else if (!(s->flags & cudaStreamNonBlocking)) {
        StreamP L;
        {
            std::lock_guard<std::mutex> l(d->m);
            L = d->legacy;
        }
        if (L)
            deps.emplace_back(L, L->tail());
    }
    std::function<void()> op = deps.empty() ? std::move(fn) : [deps, fn = std::move(fn)] {
        for (auto &p : deps)
            p.first->wait(p.second);
        fn();
    };
    std::lock_guard<std::mutex> l(s->m);
    s->q.push_back(std::move(op));
    s->cv_work.notify_one();
    return ++s->enq;
}

bool find_alloc(const void *p, uintptr_t *base, size_t *size, int *device)
{
    uintptr_t a = (uintptr_t)p;
    std::lock_guard<std::mutex> l(G().reg_m);
    auto it = G().allocs.upper_bound(a);
    if (it == G().allocs.begin())
        return false;
    --it;
    if (a > it->first + it->second.size) /* one past the end still names it */
        return false;
    *base = it->first;
    *size = it->second.size;
    *device = it->second.device;
    return true;
}

bool in_alloc(const void *p, size_t n, int device, bool pinned_ok)
{
    uintptr_t a = (uintptr_t)p, base;
    size_t size;
    int dev;
    if (!p || !find_alloc(p, &base, &size, &dev))
        return false;
    if (dev < 0 ? !pinned_ok : (device >= 0 && dev != device))
        return false;
    return a - base <= size && n <= size - (a - base);
}

static bool is_device_ptr(const void *p)
{
    uintptr_t base;
    size_t size;
    int dev;
    return p && find_alloc(p, &base, &size, &dev) && dev >= 0 && (uintptr_t)p < base + size;
}

static bool is_pinned(const void *p)
{
    uintptr_t base;
    size_t size;
    int dev;
    return p && find_alloc(p, &base, &size, &dev) && dev < 0 && (uintptr_t)p < base + size;
}

/* Waits for everything queued so far on a device's streams (device < 0: all). */
static void drain(int device)
{
    std::vector<std::pair<StreamP, uint64_t>> w;
    {
        std::lock_guard<std::mutex> l(G().obj_m);
        for (auto &p : G().streams)
            if (device < 0 || p.second->device == device)
                w.emplace_back(p.second, 0);
    }
    for (int d = 0; d < ndevices(); d++)
        if (device < 0 || d == device) {
            std::lock_guard<std::mutex> l(G().devs[d]->m);
            if (G().devs[d]->legacy)
                w.emplace_back(G().devs[d]->legacy, 0);
        }
    for (auto &p : w)
        p.second = p.first->tail();
    for (auto &p : w)
        p.first->wait(p.second);
}

uint64_t now_ns()
{
    return (uint64_t)std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

uint32_t seed() { return (uint32_t)env_long("GPUML_EMU_SEED", 1); }

bool take_fault()
{
    long v = G().fault_launch.load();
    while (v > 0)
        if (G().fault_launch.compare_exchange_weak(v, v - 1))
            return v == 1;
    return false;
}

} // namespace emu

using namespace emu;

cudaError_t gpuml_emu_enqueue(cudaStream_t h, std::function<void()> fn)
{
    StreamP s;
    cudaError_t e = resolve_stream(h, &s);
    if (e != cudaSuccess)
        return fail(e);
    if ((e = sticky(s->device)) != cudaSuccess)
        return fail(e);
    submit(s, std::move(fn));
    return cudaSuccess;
}

bool gpuml_emu_is_device(const void *p, size_t n) { return in_alloc(p, n, current_device(), false); }

/* A library shim's work found a bad pointer while running on a stream. */
EMU_API void gpuml_emu_device_fault(const char *what) { set_sticky(current_device(), cudaErrorIllegalAddress, what); }

/* ---- hooks (cudaemu.h) -------------------------------------------------- */

EMU_API void gpuml_emu_fail_malloc_after(int n) { G().fail_malloc = n; }
EMU_API void gpuml_emu_fault_launch_after(int n) { G().fault_launch = n; }
EMU_API void gpuml_emu_clear_sticky(int device)
{
    if (device >= 0 && device < ndevices())
        G().devs[device]->sticky = 0;
    tl_last = cudaSuccess; /* the calling thread's copy of it */
}
EMU_API size_t gpuml_emu_bytes_in_use(int device)
{
    return device >= 0 && device < ndevices() ? G().devs[device]->used.load() : 0;
}

/* ---- devices and errors --------------------------------------------------- */

EMU_API cudaError_t cudaGetDeviceCount(int *count)
{
    if (!count)
        return fail(cudaErrorInvalidValue);
    *count = ndevices();
    return *count ? cudaSuccess : fail(cudaErrorNoDevice);
}

EMU_API cudaError_t cudaGetDevice(int *device)
{
    if (!device)
        return fail(cudaErrorInvalidValue);
    *device = tl_device;
    return cudaSuccess;
}

EMU_API cudaError_t cudaSetDevice(int device)
{
    if (device < 0 || device >= ndevices())
        return fail(cudaErrorInvalidDevice);
    tl_device = device;
    return cudaSuccess;
}

EMU_API cudaError_t cudaGetDeviceProperties(struct cudaDeviceProp *p, int device)
{
    if (!p)
        return fail(cudaErrorInvalidValue);
    if (device < 0 || device >= ndevices())
        return fail(cudaErrorInvalidDevice);
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "gpuml emulated device %d", device);
    p->totalGlobalMem = G().devs[device]->capacity;
    p->sharedMemPerBlock = 48 << 10;
    p->warpSize = 32;
    p->maxThreadsPerBlock = 1024;
    p->maxThreadsDim[0] = p->maxThreadsDim[1] = 1024;
    p->maxThreadsDim[2] = 64;
    p->maxGridSize[0] = 2147483647;
    p->maxGridSize[1] = p->maxGridSize[2] = 65535;
    p->multiProcessorCount = 4;
    p->major = 8;
    p->minor = 0;
    return cudaSuccess;
}

EMU_API cudaError_t cudaMemGetInfo(size_t *free_bytes, size_t *total_bytes)
{
    if (!free_bytes || !total_bytes)
        return fail(cudaErrorInvalidValue);
    Device *d = G().devs[tl_device];
    *total_bytes = d->capacity;
    *free_bytes = d->capacity - d->used;
    return cudaSuccess;
}

EMU_API cudaError_t cudaDeviceSynchronize(void)
{
    drain(tl_device);
    return fail(sticky(tl_device));
}

EMU_API cudaError_t cudaGetLastError(void)
{
    cudaError_t s = sticky(tl_device);
    if (s != cudaSuccess)
        return s;
    cudaError_t e = tl_last;
    tl_last = cudaSuccess;
    return e;
}

EMU_API cudaError_t cudaPeekAtLastError(void)
{
    cudaError_t s = sticky(tl_device);
    return s != cudaSuccess ? s : tl_last;
}

EMU_API const char *cudaGetErrorName(cudaError_t e)
{
    switch (e) {
#define N_(x) \
    case x: return #x;
        N_(cudaSuccess) N_(cudaErrorInvalidValue) N_(cudaErrorMemoryAllocation) N_(cudaErrorInitializationError)
        N_(cudaErrorCudartUnloading) N_(cudaErrorInvalidConfiguration) N_(cudaErrorInvalidPitchValue)
        N_(cudaErrorInvalidSymbol) N_(cudaErrorInvalidHostPointer) N_(cudaErrorInvalidDevicePointer)
        N_(cudaErrorInvalidMemcpyDirection) N_(cudaErrorInvalidDeviceFunction) N_(cudaErrorNoDevice)
        N_(cudaErrorInvalidDevice) N_(cudaErrorInvalidKernelImage) N_(cudaErrorNoKernelImageForDevice)
        N_(cudaErrorInvalidResourceHandle) N_(cudaErrorNotReady) N_(cudaErrorIllegalAddress)
        N_(cudaErrorLaunchOutOfResources) N_(cudaErrorContextIsDestroyed) N_(cudaErrorAssert)
        N_(cudaErrorHostMemoryAlreadyRegistered) N_(cudaErrorLaunchFailure) N_(cudaErrorUnknown)
#undef N_
    }
    return "unrecognized error code";
}

EMU_API const char *cudaGetErrorString(cudaError_t e)
{
    switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorInvalidMemcpyDirection: return "invalid copy direction for memcpy";
    case cudaErrorNoDevice: return "no CUDA-capable device is detected";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    case cudaErrorInvalidResourceHandle: return "invalid resource handle";
    case cudaErrorNotReady: return "device not ready";
    case cudaErrorIllegalAddress: return "an illegal memory access was encountered";
    case cudaErrorLaunchOutOfResources: return "too many resources requested for launch";
    case cudaErrorLaunchFailure: return "unspecified launch failure";
    default: return cudaGetErrorName(e);
    }
}

/* ---- memory ----------------------------------------------------------------- */

static bool take_malloc_failure()
{
    long v = G().fail_malloc.load();
    while (v > 0)
        if (G().fail_malloc.compare_exchange_weak(v, v - 1))
            return v == 1;
    return false;
}

EMU_API cudaError_t cudaMalloc(void **ptr, size_t size)
{
    if (!ptr)
        return fail(cudaErrorInvalidValue);
    int dev = tl_device;
    if (cudaError_t s = sticky(dev))
        return fail(s);
    *ptr = nullptr;
    if (size == 0)
        return cudaSuccess;
    Device *d = G().devs[dev];
    if (take_malloc_failure())
        return fail(cudaErrorMemoryAllocation);
    size_t used = d->used.load();
    do {
        if (size > d->capacity - used)
            return fail(cudaErrorMemoryAllocation);
    } while (!d->used.compare_exchange_weak(used, used + size));
    void *p = nullptr;
    if (posix_memalign(&p, 256, size) != 0) {
        d->used -= size;
        return fail(cudaErrorMemoryAllocation);
    }
    memset(p, 0xff, size);
    {
        std::lock_guard<std::mutex> l(G().reg_m);
        G().allocs[(uintptr_t)p] = Alloc{size, dev};
    }
    *ptr = p;
    return cudaSuccess;
}

static cudaError_t free_kind(void *ptr, bool device)
{
    if (!ptr)
        return cudaSuccess;
    Alloc a;
    {
        std::lock_guard<std::mutex> l(G().reg_m);
        auto it = G().allocs.find((uintptr_t)ptr);
        if (it == G().allocs.end() || (it->second.device >= 0) != device)
            return fail(cudaErrorInvalidValue);
        a = it->second;
    }
    /* cudaFree and cudaFreeHost synchronise: work queued before may still use it. */
    drain(device ? a.device : -1);
    {
        std::lock_guard<std::mutex> l(G().reg_m);
        G().allocs.erase((uintptr_t)ptr);
    }
    if (device)
        G().devs[a.device]->used -= a.size;
    free(ptr);
    return cudaSuccess;
}

EMU_API cudaError_t cudaFree(void *ptr)
{
    if (cudaError_t s = sticky(tl_device))
        return fail(s);
    return free_kind(ptr, true);
}

EMU_API cudaError_t cudaHostAlloc(void **ptr, size_t size, unsigned int flags)
{
    if (!ptr || (flags & ~0x7u))
        return fail(cudaErrorInvalidValue);
    *ptr = nullptr;
    if (take_malloc_failure())
        return fail(cudaErrorMemoryAllocation);
    void *p = nullptr;
    if (posix_memalign(&p, 4096, size ? size : 1) != 0)
        return fail(cudaErrorMemoryAllocation);
    memset(p, 0xff, size);
    {
        std::lock_guard<std::mutex> l(G().reg_m);
        G().allocs[(uintptr_t)p] = Alloc{size, -1};
    }
    *ptr = p;
    return cudaSuccess;
}

EMU_API cudaError_t cudaMallocHost(void **ptr, size_t size) { return cudaHostAlloc(ptr, size, 0); }
EMU_API cudaError_t cudaFreeHost(void *ptr) { return free_kind(ptr, false); }

/* Checks a copy's two sides against the registry; resolves cudaMemcpyDefault. */
static cudaError_t check_copy(void *dst, const void *src, size_t n, cudaMemcpyKind *kind)
{
    if (*kind < cudaMemcpyHostToHost || *kind > cudaMemcpyDefault)
        return cudaErrorInvalidMemcpyDirection;
    if (n == 0)
        return cudaSuccess;
    if (!dst || !src)
        return cudaErrorInvalidValue;
    bool dd = is_device_ptr(dst), sd = is_device_ptr(src);
    if (*kind == cudaMemcpyDefault)
        *kind = sd ? (dd ? cudaMemcpyDeviceToDevice : cudaMemcpyDeviceToHost)
                   : (dd ? cudaMemcpyHostToDevice : cudaMemcpyHostToHost);
    bool want_dd = *kind == cudaMemcpyHostToDevice || *kind == cudaMemcpyDeviceToDevice;
    bool want_sd = *kind == cudaMemcpyDeviceToHost || *kind == cudaMemcpyDeviceToDevice;
    if (want_dd ? !in_alloc(dst, n, -1, false) : dd)
        return cudaErrorInvalidValue;
    if (want_sd ? !in_alloc(src, n, -1, false) : sd)
        return cudaErrorInvalidValue;
    return cudaSuccess;
}

static cudaError_t copy_on(const StreamP &s, void *dst, const void *src, size_t n, cudaMemcpyKind kind, bool sync)
{
    if (n == 0)
        return cudaSuccess;
    /* Pageable host memory as in the driver: a copy from it is staged now,
     * a copy into it returns only when done. */
    bool src_host = kind == cudaMemcpyHostToDevice || kind == cudaMemcpyHostToHost;
    bool dst_host = kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyHostToHost;
    if (src_host && !is_pinned(src)) {
        auto staged = std::make_shared<std::vector<char>>((const char *)src, (const char *)src + n);
        submit(s, [dst, staged, n] { memcpy(dst, staged->data(), n); });
    } else {
        submit(s, [dst, src, n] { memmove(dst, src, n); });
    }
    if (sync || (dst_host && !is_pinned(dst)))
        s->wait(s->tail());
    return sticky(s->device);
}

EMU_API cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t n, enum cudaMemcpyKind kind, cudaStream_t h)
{
    StreamP s;
    cudaError_t e = resolve_stream(h, &s);
    if (e == cudaSuccess)
        e = sticky(s->device);
    if (e == cudaSuccess)
        e = check_copy(dst, src, n, &kind);
    if (e == cudaSuccess)
        e = copy_on(s, dst, src, n, kind, false);
    return fail(e);
}

EMU_API cudaError_t cudaMemcpy(void *dst, const void *src, size_t n, enum cudaMemcpyKind kind)
{
    StreamP s;
    cudaError_t e = resolve_stream(nullptr, &s);
    if (e == cudaSuccess)
        e = sticky(s->device);
    if (e == cudaSuccess)
        e = check_copy(dst, src, n, &kind);
    /* Device to device does not synchronise the host; the rest does. */
    if (e == cudaSuccess)
        e = copy_on(s, dst, src, n, kind, kind != cudaMemcpyDeviceToDevice);
    return fail(e);
}

static cudaError_t memset_on(cudaStream_t h, void *dst, int value, size_t n)
{
    StreamP s;
    cudaError_t e = resolve_stream(h, &s);
    if (e == cudaSuccess)
        e = sticky(s->device);
    if (e != cudaSuccess)
        return fail(e);
    if (n == 0)
        return cudaSuccess;
    if (!in_alloc(dst, n, -1, true))
        return fail(cudaErrorInvalidValue);
    submit(s, [dst, value, n] { memset(dst, value, n); });
    return cudaSuccess;
}

/* Asynchronous with respect to the host for device memory, as documented. */
EMU_API cudaError_t cudaMemset(void *dst, int value, size_t n) { return memset_on(nullptr, dst, value, n); }
EMU_API cudaError_t cudaMemsetAsync(void *dst, int value, size_t n, cudaStream_t h)
{
    return memset_on(h, dst, value, n);
}

/* ---- streams ----------------------------------------------------------------- */

EMU_API cudaError_t cudaStreamCreateWithFlags(cudaStream_t *out, unsigned int flags)
{
    if (!out || (flags & ~1u))
        return fail(cudaErrorInvalidValue);
    if (ndevices() == 0)
        return fail(cudaErrorNoDevice);
    int dev = tl_device;
    if (cudaError_t s = sticky(dev))
        return fail(s);
    StreamP s = new_stream(dev, flags, false);
    {
        std::lock_guard<std::mutex> l(G().obj_m);
        G().streams[s.get()] = s;
    }
    if (!(flags & cudaStreamNonBlocking)) {
        std::lock_guard<std::mutex> l(G().devs[dev]->m);
        G().devs[dev]->blocking.push_back(s);
    }
    *out = (cudaStream_t)s.get();
    return cudaSuccess;
}

EMU_API cudaError_t cudaStreamCreate(cudaStream_t *out) { return cudaStreamCreateWithFlags(out, 0); }

EMU_API cudaError_t cudaStreamDestroy(cudaStream_t h)
{
    StreamP s;
    {
        std::lock_guard<std::mutex> l(G().obj_m);
        auto it = G().streams.find((Stream *)h);
        if (it == G().streams.end())
            return fail(cudaErrorInvalidResourceHandle);
        s = it->second;
        G().streams.erase(it);
    }
    {
        Device *d = G().devs[s->device];
        std::lock_guard<std::mutex> l(d->m);
        d->blocking.erase(std::remove_if(d->blocking.begin(), d->blocking.end(),
                                         [&](const std::weak_ptr<Stream> &w) {
                                             StreamP p = w.lock();
                                             return !p || p == s;
                                         }),
                          d->blocking.end());
    }
    /* Work already queued still runs; the thread ends after it. */
    std::lock_guard<std::mutex> l(s->m);
    s->stopping = true;
    s->cv_work.notify_one();
    return cudaSuccess;
}

EMU_API cudaError_t cudaStreamSynchronize(cudaStream_t h)
{
    StreamP s;
    cudaError_t e = resolve_stream(h, &s);
    if (e != cudaSuccess)
        return fail(e);
    s->wait(s->tail());
    return fail(sticky(s->device));
}

EMU_API cudaError_t cudaStreamQuery(cudaStream_t h)
{
    StreamP s;
    cudaError_t e = resolve_stream(h, &s);
    if (e == cudaSuccess)
        e = sticky(s->device);
    if (e != cudaSuccess)
        return fail(e);
    return s->reached(s->tail()) ? cudaSuccess : cudaErrorNotReady;
}

EMU_API cudaError_t cudaStreamGetFlags(cudaStream_t h, unsigned int *flags)
{
    StreamP s;
    cudaError_t e = resolve_stream(h, &s);
    if (e != cudaSuccess || !flags)
        return fail(e != cudaSuccess ? e : cudaErrorInvalidValue);
    *flags = s->flags;
    return cudaSuccess;
}

/* ---- events ------------------------------------------------------------------ */

static Event *find_event(cudaEvent_t h)
{
    std::lock_guard<std::mutex> l(G().obj_m);
    return G().events.count((Event *)h) ? (Event *)h : nullptr;
}

EMU_API cudaError_t cudaEventCreateWithFlags(cudaEvent_t *out, unsigned int flags)
{
    if (!out || (flags & ~0x7u) || ((flags & cudaEventInterprocess) && !(flags & cudaEventDisableTiming)))
        return fail(cudaErrorInvalidValue);
    if (ndevices() == 0)
        return fail(cudaErrorNoDevice);
    if (cudaError_t s = sticky(tl_device))
        return fail(s);
    Event *e = new Event;
    e->device = tl_device;
    e->flags = flags;
    std::lock_guard<std::mutex> l(G().obj_m);
    G().events.insert(e);
    *out = (cudaEvent_t)e;
    return cudaSuccess;
}

EMU_API cudaError_t cudaEventCreate(cudaEvent_t *out) { return cudaEventCreateWithFlags(out, 0); }

EMU_API cudaError_t cudaEventDestroy(cudaEvent_t h)
{
    std::lock_guard<std::mutex> l(G().obj_m);
    if (!G().events.erase((Event *)h))
        return fail(cudaErrorInvalidResourceHandle);
    delete (Event *)h;
    return cudaSuccess;
}

EMU_API cudaError_t cudaEventRecord(cudaEvent_t h, cudaStream_t sh)
{
    Event *e = find_event(h);
    if (!e)
        return fail(cudaErrorInvalidResourceHandle);
    StreamP s;
    cudaError_t err = resolve_stream(sh, &s);
    if (err != cudaSuccess)
        return fail(err);
    /* The event and the stream must belong to the same device. */
    if (s->device != e->device)
        return fail(cudaErrorInvalidResourceHandle);
    if ((err = sticky(s->device)) != cudaSuccess)
        return fail(err);
    auto stamp = std::make_shared<std::atomic<uint64_t>>(0);
    std::lock_guard<std::mutex> l(e->m);
    e->seq = submit(s, [stamp] { *stamp = now_ns(); });
    e->s = s;
    e->stamp = stamp;
    return cudaSuccess;
}

EMU_API cudaError_t cudaEventQuery(cudaEvent_t h)
{
    Event *e = find_event(h);
    if (!e)
        return fail(cudaErrorInvalidResourceHandle);
    StreamP s;
    uint64_t seq;
    {
        std::lock_guard<std::mutex> l(e->m);
        s = e->s;
        seq = e->seq;
    }
    if (cudaError_t st = sticky(e->device))
        return fail(st);
    if (!s) /* never recorded: complete */
        return cudaSuccess;
    return s->reached(seq) ? cudaSuccess : cudaErrorNotReady;
}

EMU_API cudaError_t cudaEventSynchronize(cudaEvent_t h)
{
    Event *e = find_event(h);
    if (!e)
        return fail(cudaErrorInvalidResourceHandle);
    StreamP s;
    uint64_t seq;
    {
        std::lock_guard<std::mutex> l(e->m);
        s = e->s;
        seq = e->seq;
    }
    if (s)
        s->wait(seq);
    return fail(sticky(e->device));
}

EMU_API cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t a, cudaEvent_t b)
{
    Event *ea = find_event(a), *eb = find_event(b);
    if (!ms)
        return fail(cudaErrorInvalidValue);
    if (!ea || !eb || ((ea->flags | eb->flags) & cudaEventDisableTiming))
        return fail(cudaErrorInvalidResourceHandle);
    std::shared_ptr<std::atomic<uint64_t>> ta, tb;
    {
        std::lock_guard<std::mutex> l(ea->m);
        ta = ea->stamp;
    }
    {
        std::lock_guard<std::mutex> l(eb->m);
        tb = eb->stamp;
    }
    if (!ta || !tb)
        return fail(cudaErrorInvalidResourceHandle);
    if (*ta == 0 || *tb == 0)
        return cudaErrorNotReady;
    *ms = (float)((double)((int64_t)(uint64_t)*tb - (int64_t)(uint64_t)*ta) / 1e6);
    return cudaSuccess;
}

EMU_API cudaError_t cudaStreamWaitEvent(cudaStream_t sh, cudaEvent_t h, unsigned int flags)
{
    if (flags != 0)
        return fail(cudaErrorInvalidValue);
    Event *e = find_event(h);
    if (!e)
        return fail(cudaErrorInvalidResourceHandle);
    StreamP s;
    cudaError_t err = resolve_stream(sh, &s);
    if (err == cudaSuccess)
        err = sticky(s->device);
    if (err != cudaSuccess)
        return fail(err);
    StreamP es;
    uint64_t seq;
    {
        std::lock_guard<std::mutex> l(e->m);
        es = e->s;
        seq = e->seq;
    }
    if (es) /* across streams and devices alike */
        submit(s, [es, seq] { es->wait(seq); });
    return cudaSuccess;
}
