/* tests/cudaemu/internal.hpp - what the parts of the emulated CUDA platform
 * share: devices, the allocation registry, streams (a host thread each) and
 * the per-thread error state. See include/cuda_runtime.h for the model. */
#ifndef GPUML_CUDAEMU_INTERNAL_HPP
#define GPUML_CUDAEMU_INTERNAL_HPP

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "cuda_runtime_api.h"

#define EMU_API extern "C" __attribute__((visibility("default")))

namespace emu {

/* One stream: a FIFO of operations run in order by its own host thread.
 * enq counts operations queued, done those finished; operation s (1-based)
 * has finished when done >= s. */
struct Stream {
    int device = 0;
    unsigned flags = 0;
    bool legacy = false;
    std::mutex m;
    std::condition_variable cv_work, cv_done;
    std::deque<std::function<void()>> q;
    uint64_t enq = 0, done = 0;
    bool stopping = false;

    uint64_t tail()
    {
        std::lock_guard<std::mutex> l(m);
        return enq;
    }
    bool reached(uint64_t seq)
    {
        std::lock_guard<std::mutex> l(m);
        return done >= seq;
    }
    void wait(uint64_t seq)
    {
        std::unique_lock<std::mutex> l(m);
        cv_done.wait(l, [&] { return done >= seq; });
    }
};
using StreamP = std::shared_ptr<Stream>;

int ndevices();
int current_device();
/* Records e as the calling thread's last error (cudaGetLastError) and
 * returns it. */
cudaError_t fail(cudaError_t e);
cudaError_t sticky(int device);
void set_sticky(int device, cudaError_t e, const char *why);

/* The stream a handle names (0 and cudaStreamLegacy: the current device's
 * legacy default stream); cudaErrorInvalidResourceHandle if unknown. */
cudaError_t resolve_stream(cudaStream_t s, StreamP *out);
/* Queues fn on s, after what the legacy-stream rules order it behind;
 * returns the operation's sequence number. fn is skipped once the device
 * has a sticky error. */
uint64_t submit(const StreamP &s, std::function<void()> fn);

/* Allocation registry. device >= 0: device memory; -1: pinned host. */
bool find_alloc(const void *p, uintptr_t *base, size_t *size, int *device);
/* [p, p + n) lies inside one allocation of device memory (any device when
 * device < 0) or, with pinned_ok, pinned host memory. */
bool in_alloc(const void *p, size_t n, int device, bool pinned_ok);

/* Kernel side (kernel.cpp). */
uint64_t now_ns();
uint32_t seed();
/* Consumes one count of GPUML_EMU_FAULT_LAUNCH; true for the launch that faults. */
bool take_fault();

} // namespace emu

/* For the header-only shims (cub): queue fn on a stream; checks the handle. */
cudaError_t gpuml_emu_enqueue(cudaStream_t s, std::function<void()> fn) __attribute__((visibility("default")));
/* Device memory of the current device, [p, p + n). */
bool gpuml_emu_is_device(const void *p, size_t n) __attribute__((visibility("default")));

#endif
