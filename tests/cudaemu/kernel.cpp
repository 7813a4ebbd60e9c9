/* tests/cudaemu/kernel.cpp - kernel launches of the emulated CUDA platform.
 *
 * gpuml_emu_launch checks the configuration as the driver does (threads per
 * block <= 1024 and per-dimension limits, grid limits, dynamic shared memory
 * <= 48 KiB: cudaErrorInvalidConfiguration / cudaErrorInvalidValue, nothing
 * queued), then queues the kernel on its stream. A launch whose pointer
 * arguments are not device (or pinned) memory of its device faults when it
 * runs, as the hardware would when the kernel dereferences them: sticky
 * cudaErrorIllegalAddress.
 *
 * Blocks run on a pool of host threads (GPUML_EMU_WORKERS, default 2), so
 * atomics race for real. The threads of a block are fibers on one pool
 * thread: created once with makecontext, switched with _setjmp/_longjmp
 * (no signal-mask system call), annotated for AddressSanitizer. A block
 * runs in rounds: each round resumes every live thread once, in an order
 * shuffled from GPUML_EMU_SEED, the kernel name, the block and the round;
 * a thread runs until it returns or reaches __syncthreads, so a thread that
 * never waits costs two switches. */
#undef _FORTIFY_SOURCE /* _longjmp between fiber stacks is what we mean */
#include <setjmp.h>
#include <time.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <set>
#include <string>

#include "cuda_runtime.h"
#include "cudaemu.h"
#include "internal.hpp"

#if defined(__SANITIZE_ADDRESS__)
#define EMU_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define EMU_ASAN 1
#endif
#endif
#ifdef EMU_ASAN
#include <sanitizer/common_interface_defs.h>
#endif

__attribute__((visibility("default"))) thread_local uint3 threadIdx;
__attribute__((visibility("default"))) thread_local uint3 blockIdx;
__attribute__((visibility("default"))) thread_local dim3 blockDim;
__attribute__((visibility("default"))) thread_local dim3 gridDim;
__attribute__((visibility("default"))) thread_local unsigned long long gpuml_emu_iters;

namespace emu {

struct Launch {
    const char *name;
    dim3 grid, block;
    void (*run)(void *);
    void *args;
    uint32_t seed;
    uint64_t nblocks;
    unsigned threads;
    std::atomic<uint64_t> next{0}, finished{0};
    std::atomic<unsigned long long> max_iters{0}, max_ns{0};
    int users = 0; /* pool threads inside, under the pool lock */
};

struct FiberSet;
struct Fiber {
    jmp_buf jb;
    ucontext_t uc;
    char *stack = nullptr;
    size_t size = 0;
    bool started = false, finished = false;
    unsigned long long iters = 0, ns = 0;
    FiberSet *set = nullptr;
    void *fake = nullptr; /* ASan fake stack of this fiber */
};

struct FiberSet {
    std::vector<Fiber *> f;
    jmp_buf sched;
    Launch *L = nullptr;
    Fiber *cur = nullptr;
    void *sched_fake = nullptr;
    const void *sched_bottom = nullptr;
    size_t sched_size = 0;
    std::vector<uint32_t> perm;
};

static thread_local FiberSet *tl_fs;

static size_t stack_bytes()
{
    const char *v = getenv("GPUML_EMU_STACK_KB");
#ifdef EMU_ASAN
    size_t kb = 1024;
#else
    size_t kb = 256;
#endif
    if (v && atol(v) > 0)
        kb = (size_t)atol(v);
    return kb << 10;
}

static inline void asan_start(void **fake, const void *bottom, size_t size)
{
#ifdef EMU_ASAN
    __sanitizer_start_switch_fiber(fake, bottom, size);
#else
    (void)fake, (void)bottom, (void)size;
#endif
}

static inline void asan_finish(void *fake, const void **bottom, size_t *size)
{
#ifdef EMU_ASAN
    __sanitizer_finish_switch_fiber(fake, bottom, size);
#else
    (void)fake, (void)bottom, (void)size;
#endif
}

/* Fiber to scheduler. */
static void yield(Fiber *f)
{
    if (_setjmp(f->jb) == 0) {
        asan_start(&f->fake, f->set->sched_bottom, f->set->sched_size);
        _longjmp(f->set->sched, 1);
    }
    asan_finish(f->fake, &f->set->sched_bottom, &f->set->sched_size);
}

static void fiber_main(unsigned lo, unsigned hi)
{
    Fiber *f = (Fiber *)(((uintptr_t)hi << 32) | (uintptr_t)lo);
    asan_finish(nullptr, &f->set->sched_bottom, &f->set->sched_size);
    for (;;) {
        f->set->L->run(f->set->L->args);
        f->finished = true;
        yield(f);
    }
}

/* Scheduler to fiber, back when it yields. */
static void resume(FiberSet *fs, Fiber *f)
{
    if (_setjmp(fs->sched) == 0) {
        asan_start(&fs->sched_fake, f->stack, f->size);
        if (!f->started) {
            f->started = true;
            setcontext(&f->uc);
        }
        _longjmp(f->jb, 1);
    }
    asan_finish(fs->sched_fake, nullptr, nullptr);
}

static Fiber *new_fiber(FiberSet *fs)
{
    Fiber *f = new Fiber;
    f->set = fs;
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    f->size = stack_bytes();
    char *m = (char *)mmap(nullptr, f->size + page, PROT_READ | PROT_WRITE,
                           MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
    if (m == MAP_FAILED) {
        fprintf(stderr, "cudaemu: cannot map a fiber stack\n");
        abort(); /* test infrastructure, not the library */
    }
    mprotect(m, page, PROT_NONE); /* overflow faults instead of corrupting */
    f->stack = m + page;
    getcontext(&f->uc);
    f->uc.uc_stack.ss_sp = f->stack;
    f->uc.uc_stack.ss_size = f->size;
    f->uc.uc_link = nullptr;
    uintptr_t a = (uintptr_t)f;
    makecontext(&f->uc, (void (*)())fiber_main, 2, (unsigned)(a & 0xffffffffu), (unsigned)(a >> 32));
    return f;
}

static inline uint64_t mix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* CPU time of the calling host thread: a fiber's time without the
 * preemptions of a loaded machine. Only taken for the launch log. */
static inline uint64_t cpu_ns()
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static const bool timed = [] {
    const char *v = getenv("GPUML_EMU_LAUNCH_LOG");
    return v && *v;
}();

static void run_block(Launch *L, uint64_t b, FiberSet *fs)
{
    blockDim = L->block;
    gridDim = L->grid;
    blockIdx.x = (unsigned)(b % L->grid.x);
    blockIdx.y = (unsigned)((b / L->grid.x) % L->grid.y);
    blockIdx.z = (unsigned)(b / ((uint64_t)L->grid.x * L->grid.y));
    unsigned T = L->threads;
    while (fs->f.size() < T)
        fs->f.push_back(new_fiber(fs));
    fs->L = L;
    fs->perm.resize(T);
    for (unsigned t = 0; t < T; t++) {
        Fiber *f = fs->f[t];
        f->finished = false;
        f->iters = f->ns = 0;
        fs->perm[t] = t;
    }
    unsigned alive = T;
    unsigned long long mi = 0, mn = 0;
    for (uint64_t round = 0; alive > 0; round++) {
        uint64_t r = mix(L->seed ^ mix(b * 0x100000001b3ull + round));
        for (unsigned t = T - 1; t > 0; t--) { /* Fisher-Yates */
            r = mix(r);
            unsigned j = (unsigned)(r % (t + 1));
            std::swap(fs->perm[t], fs->perm[j]);
        }
        for (unsigned k = 0; k < T; k++) {
            unsigned t = fs->perm[k];
            Fiber *f = fs->f[t];
            if (f->finished)
                continue;
            threadIdx.x = t % L->block.x;
            threadIdx.y = (t / L->block.x) % L->block.y;
            threadIdx.z = t / (L->block.x * L->block.y);
            fs->cur = f;
            gpuml_emu_iters = f->iters;
            uint64_t t0 = timed ? cpu_ns() : 0;
            resume(fs, f);
            if (timed)
                f->ns += cpu_ns() - t0;
            f->iters = gpuml_emu_iters;
            if (f->finished) {
                alive--;
                mi = std::max(mi, f->iters);
                mn = std::max(mn, f->ns);
            }
        }
    }
    fs->cur = nullptr;
    unsigned long long v = L->max_iters.load();
    while (v < mi && !L->max_iters.compare_exchange_weak(v, mi)) {
    }
    v = L->max_ns.load();
    while (v < mn && !L->max_ns.compare_exchange_weak(v, mn)) {
    }
}

/* ---- the block pool -------------------------------------------------------- */

struct Pool {
    std::mutex m;
    std::condition_variable cv_work, cv_done;
    std::deque<Launch *> jobs;
};

static void pool_loop(Pool *p)
{
    FiberSet *fs = new FiberSet; /* lives as long as the thread: the process */
    tl_fs = fs;
    std::unique_lock<std::mutex> l(p->m);
    for (;;) {
        p->cv_work.wait(l, [&] { return !p->jobs.empty(); });
        Launch *L = p->jobs.front();
        if (L->next.load() >= L->nblocks) {
            p->jobs.pop_front();
            continue;
        }
        L->users++;
        l.unlock();
        for (;;) {
            uint64_t b = L->next.fetch_add(1);
            if (b >= L->nblocks)
                break;
            run_block(L, b, fs);
            L->finished.fetch_add(1);
        }
        l.lock();
        L->users--;
        p->cv_done.notify_all();
    }
}

static Pool *pool()
{
    static Pool *p = [] {
        Pool *x = new Pool;
        const char *v = getenv("GPUML_EMU_WORKERS");
        int n = v && atoi(v) > 0 ? atoi(v) : 2;
        for (int i = 0; i < n; i++)
            std::thread(pool_loop, x).detach();
        return x;
    }();
    return p;
}

/* On the stream's thread: hand the blocks to the pool, wait for them. */
static void execute(Launch *L)
{
    Pool *p = pool();
    std::unique_lock<std::mutex> l(p->m);
    p->jobs.push_back(L);
    p->cv_work.notify_all();
    p->cv_done.wait(l, [&] { return L->finished.load() == L->nblocks && L->users == 0; });
    for (auto it = p->jobs.begin(); it != p->jobs.end(); ++it)
        if (*it == L) {
            p->jobs.erase(it);
            break;
        }
}

/* ---- coverage and the launch log -------------------------------------------- */

static std::mutex log_m;

static void note_kernel(const std::string &key)
{
    static std::set<std::string> *seen = new std::set<std::string>;
    static const char *dir = getenv("GPUML_EMU_COVERAGE_DIR");
    if (!dir || !*dir)
        return;
    std::lock_guard<std::mutex> l(log_m);
    if (!seen->insert(key).second)
        return;
    char path[4096];
    snprintf(path, sizeof path, "%s/kernels.%d", dir, (int)getpid());
    FILE *f = fopen(path, "a");
    if (f) {
        fprintf(f, "%s\n", key.c_str());
        fclose(f);
    }
}

static void log_launch(const std::string &key, const Launch *L, uint64_t ns)
{
    static const char *dir = getenv("GPUML_EMU_LAUNCH_LOG");
    static FILE *f = nullptr;
    if (!dir || !*dir)
        return;
    std::lock_guard<std::mutex> l(log_m);
    if (!f) {
        char path[4096];
        snprintf(path, sizeof path, "%s/launches.%d.tsv", dir, (int)getpid());
        f = fopen(path, "a");
        if (!f)
            return;
        setvbuf(f, nullptr, _IOLBF, 0);
    }
    fprintf(f, "%s\t%llu\t%u\t%llu\t%llu\t%.1f\t%.1f\n", key.c_str(), (unsigned long long)L->nblocks, L->threads,
            (unsigned long long)L->nblocks * L->threads, L->max_iters.load(), (double)L->max_ns.load() / 1e3,
            (double)ns / 1e3);
}

static std::atomic<unsigned long long> launches{0};

} // namespace emu

using namespace emu;

EMU_API unsigned long long gpuml_emu_launch_count(void) { return launches.load(); }

EMU_API void gpuml_emu_syncthreads(void)
{
    FiberSet *fs = tl_fs;
    if (!fs || !fs->cur) {
        fprintf(stderr, "cudaemu: __syncthreads outside a kernel\n");
        abort();
    }
    yield(fs->cur);
}

EMU_API void gpuml_emu_launch(const char *name, const char *file, dim3 grid, dim3 block, size_t shmem,
                              cudaStream_t stream, void (*run)(void *), void *args, void (*destroy)(void *),
                              const void *const *ptrs, int nptrs)
{
    int dev = current_device();
    cudaError_t e = sticky(dev);
    uint64_t threads = (uint64_t)block.x * block.y * block.z;
    if (e == cudaSuccess && (block.x == 0 || block.y == 0 || block.z == 0 || block.x > 1024 || block.y > 1024 ||
                             block.z > 64 || threads > 1024))
        e = cudaErrorInvalidConfiguration;
    if (e == cudaSuccess && (grid.x == 0 || grid.y == 0 || grid.z == 0 || grid.x > 2147483647u || grid.y > 65535 ||
                             grid.z > 65535))
        e = cudaErrorInvalidConfiguration;
    if (e == cudaSuccess && shmem > (48u << 10))
        e = cudaErrorInvalidValue;
    StreamP s;
    if (e == cudaSuccess)
        e = resolve_stream(stream, &s);
    if (e == cudaSuccess && s->device != dev) /* a stream of another device */
        e = cudaErrorInvalidResourceHandle;
    if (e != cudaSuccess) {
        destroy(args);
        fail(e);
        return;
    }
    const char *base = strrchr(file, '/');
    std::string key = std::string(base ? base + 1 : file) + ":" + name;
    note_kernel(key);
    launches++;
    std::string bad;
    static const bool strict = [] {
        const char *v = getenv("GPUML_EMU_STRICT_ARGS");
        return !(v && v[0] == '0');
    }();
    for (int i = 0; strict && i < nptrs && bad.empty(); i++)
        if (ptrs[i] && !in_alloc(ptrs[i], 0, dev, true)) {
            char t[256];
            snprintf(t, sizeof t, "kernel %s: pointer argument %d (%p) is not device memory of device %d",
                     key.c_str(), i, ptrs[i], dev);
            bad = t;
        }
    if (bad.empty() && take_fault())
        bad = "kernel " + key + ": injected fault (GPUML_EMU_FAULT_LAUNCH)";
    auto *L = new Launch;
    L->name = name;
    L->grid = grid;
    L->block = block;
    L->run = run;
    L->args = args;
    L->threads = (unsigned)threads;
    L->nblocks = (uint64_t)grid.x * grid.y * grid.z;
    uint64_t h = 1469598103934665603ull;
    for (const char *c = name; *c; c++)
        h = (h ^ (unsigned char)*c) * 1099511628211ull;
    L->seed = (uint32_t)mix(h ^ seed());
    /* Owned by the queued operation: freed also when a sticky error skips it. */
    std::shared_ptr<Launch> P(L, [destroy](Launch *x) {
        destroy(x->args);
        delete x;
    });
    submit(s, [P, key, bad, dev] {
        if (!bad.empty()) {
            set_sticky(dev, cudaErrorIllegalAddress, bad.c_str());
        } else {
            uint64_t t0 = now_ns();
            execute(P.get());
            log_launch(key, P.get(), now_ns() - t0);
        }
    });
}
