/* tests/cudaemu/test_emu_nccl.cpp - the emulated NCCL across ranks, as
 * threads of this process and as forked processes, at 1 to 4 ranks, each
 * rank on emulated device rank % devices:
 *   - every collective (all-reduce with sum/prod/max/min/avg in f32, f64,
 *     i32, i64, f16, bf16; broadcast; all-gather; reduce-scatter; reduce;
 *     grouped send/recv around a ring) against a reference computed here
 *     from every rank's input in rank order: bitwise;
 *   - stream order: a collective queued behind a gated kernel waits for it;
 *   - non-blocking init (ncclInProgress until every rank joined) and
 *     ncclCommFinalize;
 *   - faults, processes only: a rank killed, one that exits, one that
 *     aborts: the others' ncclCommGetAsyncError turns ncclRemoteError
 *     within a second and ncclCommAbort ends the stuck operation; a rank
 *     that stalls leaves the others waiting (no error) until they abort.
 * Exit 0 when everything holds. */
#include <sched.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "cuda_runtime.h"
#include "cudaemu.h"
#include "nccl.h"

static std::atomic<int> failures{0};
#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            printf("FAIL %s:%d (rank %d of %d): %s\n", __FILE__, __LINE__, rank, nr, #c);          \
            fflush(stdout);                                                                        \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

static double now()
{
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

/* Rank q's input element i: distinct per rank, with rounding to expose order. */
static double val(int q, size_t i) { return (double)((q * 7 + (int)i * 13) % 23) * 0.37 - 3.1 + 1e-3 * q; }

template <class T> static T cvt(double v) { return (T)v; }

/* reference reduction over nr ranks, rank order, as T */
template <class T> static T ref_red(int nr, size_t i, ncclRedOp_t op)
{
    T a = cvt<T>(val(0, i));
    for (int q = 1; q < nr; q++) {
        T v = cvt<T>(val(q, i));
        if (op == ncclSum || op == ncclAvg)
            a = a + v;
        else if (op == ncclProd)
            a = a * v;
        else if (op == ncclMax)
            a = v > a ? v : a;
        else
            a = v < a ? v : a;
    }
    if (op == ncclAvg)
        a = (T)(a / (T)nr);
    return a;
}

static void sync_ok(int rank, int nr, cudaStream_t s)
{
    CHECK(cudaStreamSynchronize(s) == cudaSuccess);
}

static ncclResult_t settle(ncclComm_t c, ncclResult_t r)
{
    double t0 = now();
    while (r == ncclInProgress && now() - t0 < 30) {
        ncclCommGetAsyncError(c, &r);
        sched_yield();
    }
    return r;
}

template <class T> static void typed_allreduce(ncclComm_t c, cudaStream_t s, int rank, int nr, ncclDataType_t t)
{
    const size_t n = 5000; /* > one 64 KiB channel for 8-byte types */
    std::vector<T> h(n), o(n);
    for (size_t i = 0; i < n; i++)
        h[i] = cvt<T>(val(rank, i));
    T *d;
    cudaMalloc((void **)&d, n * sizeof(T));
    ncclRedOp_t ops[] = {ncclSum, ncclProd, ncclMax, ncclMin, ncclAvg};
    for (ncclRedOp_t op : ops) {
        cudaMemcpy(d, h.data(), n * sizeof(T), cudaMemcpyHostToDevice);
        CHECK(settle(c, ncclAllReduce(d, d, n, t, op, c, s)) == ncclSuccess);
        sync_ok(rank, nr, s);
        cudaMemcpy(o.data(), d, n * sizeof(T), cudaMemcpyDeviceToHost);
        size_t bad = 0;
        for (size_t i = 0; i < n; i++) {
            T want = ref_red<T>(nr, i, op);
            if (memcmp(&want, &o[i], sizeof(T)) != 0)
                bad++;
        }
        if (bad)
            printf("  type %d op %d: %zu of %zu differ\n", (int)t, (int)op, bad, n);
        CHECK(bad == 0);
    }
    cudaFree(d);
}

/* 16-bit floats: inputs exactly representable, sums of few terms exact. */
static void half_allreduce(ncclComm_t c, cudaStream_t s, int rank, int nr, ncclDataType_t t)
{
    const size_t n = 300;
    std::vector<uint16_t> h(n), o(n);
    for (size_t i = 0; i < n; i++) {
        float f = (float)((int)(i % 17) - 8 + rank) * 0.25f; /* exact in both formats */
        uint32_t u;
        memcpy(&u, &f, 4);
        if (t == ncclBfloat16) {
            h[i] = (uint16_t)(u >> 16);
        } else {
            /* f16 of a small multiple of 0.25 */
            int e = 0;
            float a = fabsf(f);
            uint16_t sign = f < 0 ? 0x8000 : 0;
            if (a == 0) {
                h[i] = sign;
                continue;
            }
            while (a >= 2) { a /= 2; e++; }
            while (a < 1) { a *= 2; e--; }
            h[i] = (uint16_t)(sign | (uint16_t)((e + 15) << 10) | (uint16_t)((a - 1) * 1024));
        }
    }
    uint16_t *d;
    cudaMalloc((void **)&d, n * 2);
    cudaMemcpy(d, h.data(), n * 2, cudaMemcpyHostToDevice);
    CHECK(settle(c, ncclAllReduce(d, d, n, t, ncclSum, c, s)) == ncclSuccess);
    sync_ok(rank, nr, s);
    cudaMemcpy(o.data(), d, n * 2, cudaMemcpyDeviceToHost);
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        float want = 0;
        for (int q = 0; q < nr; q++)
            want += (float)((int)(i % 17) - 8 + q) * 0.25f;
        float got;
        if (t == ncclBfloat16) {
            uint32_t u = (uint32_t)o[i] << 16;
            memcpy(&got, &u, 4);
        } else {
            int e = (o[i] >> 10) & 31, m = o[i] & 1023;
            got = e ? ldexpf(1.0f + (float)m / 1024.0f, e - 15) : ldexpf((float)m / 1024.0f, -14);
            if (o[i] & 0x8000)
                got = -got;
        }
        bad += got != want;
    }
    CHECK(bad == 0);
    cudaFree(d);
}

static __global__ void gated_set(volatile int *gate, float *x, int n, float v)
{
    if (threadIdx.x == 0 && blockIdx.x == 0)
        while (__atomic_load_n(gate, __ATOMIC_ACQUIRE) == 0)
            sched_yield();
    for (int i = threadIdx.x; i < n; i += blockDim.x)
        x[i] = v;
}

/* Everything one rank does in the correctness part. */
static void rank_body(const ncclUniqueId &id, int rank, int nr, bool nonblocking)
{
    int ndev = 0;
    cudaGetDeviceCount(&ndev);
    CHECK(cudaSetDevice(rank % ndev) == cudaSuccess);
    ncclComm_t c = nullptr;
    ncclConfig_t cfg = NCCL_CONFIG_INITIALIZER;
    cfg.blocking = nonblocking ? 0 : 1;
    ncclResult_t r = ncclCommInitRankConfig(&c, nr, id, rank, &cfg);
    if (nonblocking) {
        CHECK(r == ncclInProgress || r == ncclSuccess);
        r = settle(c, r);
    }
    CHECK(r == ncclSuccess);
    if (r != ncclSuccess)
        return;
    int dev = -1;
    ncclCommCuDevice(c, &dev);
    CHECK(dev == rank % ndev);
    cudaStream_t s;
    cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking);

    typed_allreduce<float>(c, s, rank, nr, ncclFloat32);
    typed_allreduce<double>(c, s, rank, nr, ncclFloat64);
    typed_allreduce<int32_t>(c, s, rank, nr, ncclInt32);
    typed_allreduce<int64_t>(c, s, rank, nr, ncclInt64);
    half_allreduce(c, s, rank, nr, ncclFloat16);
    half_allreduce(c, s, rank, nr, ncclBfloat16);

    const size_t n = 20000; /* 80 KB: more than one channel's 64 KiB */
    float *a, *b;
    cudaMalloc((void **)&a, n * sizeof(float) * nr);
    cudaMalloc((void **)&b, n * sizeof(float) * nr);
    std::vector<float> h(n * nr), o(n * nr);
    /* broadcast from every root, in place */
    for (int root = 0; root < nr; root++) {
        for (size_t i = 0; i < n; i++)
            h[i] = (float)val(rank, i);
        cudaMemcpy(a, h.data(), n * 4, cudaMemcpyHostToDevice);
        CHECK(settle(c, ncclBroadcast(a, a, n, ncclFloat32, root, c, s)) == ncclSuccess);
        sync_ok(rank, nr, s);
        cudaMemcpy(o.data(), a, n * 4, cudaMemcpyDeviceToHost);
        bool ok = true;
        for (size_t i = 0; i < n; i++)
            ok &= o[i] == (float)val(root, i);
        CHECK(ok);
    }
    /* all-gather */
    for (size_t i = 0; i < n; i++)
        h[i] = (float)val(rank, i);
    cudaMemcpy(a, h.data(), n * 4, cudaMemcpyHostToDevice);
    CHECK(settle(c, ncclAllGather(a, b, n, ncclFloat32, c, s)) == ncclSuccess);
    sync_ok(rank, nr, s);
    cudaMemcpy(o.data(), b, n * 4 * nr, cudaMemcpyDeviceToHost);
    {
        bool ok = true;
        for (int q = 0; q < nr; q++)
            for (size_t i = 0; i < n; i++)
                ok &= o[q * n + i] == (float)val(q, i);
        CHECK(ok);
    }
    /* reduce-scatter: input block q of rank p is val(p, q*n + i) */
    for (size_t i = 0; i < n * nr; i++)
        h[i] = (float)val(rank, i);
    cudaMemcpy(a, h.data(), n * 4 * nr, cudaMemcpyHostToDevice);
    CHECK(settle(c, ncclReduceScatter(a, b, n, ncclFloat32, ncclSum, c, s)) == ncclSuccess);
    sync_ok(rank, nr, s);
    cudaMemcpy(o.data(), b, n * 4, cudaMemcpyDeviceToHost);
    {
        bool ok = true;
        for (size_t i = 0; i < n; i++) {
            float w = (float)val(0, rank * n + i);
            for (int q = 1; q < nr; q++)
                w += (float)val(q, rank * n + i);
            ok &= o[i] == w;
        }
        CHECK(ok);
    }
    /* reduce to the last rank, max */
    cudaMemcpy(a, h.data(), n * 4, cudaMemcpyHostToDevice);
    CHECK(settle(c, ncclReduce(a, b, n, ncclFloat32, ncclMax, nr - 1, c, s)) == ncclSuccess);
    sync_ok(rank, nr, s);
    if (rank == nr - 1) {
        cudaMemcpy(o.data(), b, n * 4, cudaMemcpyDeviceToHost);
        bool ok = true;
        for (size_t i = 0; i < n; i++)
            ok &= o[i] == ref_red<float>(nr, i, ncclMax);
        CHECK(ok);
    }
    /* grouped send/recv: each rank sends to everyone (itself too) and
     * receives from everyone, as gpuml's deterministic sum does */
    cudaMemcpy(a, h.data(), n * 4, cudaMemcpyHostToDevice);
    CHECK(ncclGroupStart() == ncclSuccess);
    for (int q = 0; q < nr; q++) {
        ncclSend(a, n, ncclFloat32, q, c, s);
        ncclRecv(b + q * n, n, ncclFloat32, q, c, s);
    }
    CHECK(settle(c, ncclGroupEnd()) == ncclSuccess);
    sync_ok(rank, nr, s);
    cudaMemcpy(o.data(), b, n * 4 * nr, cudaMemcpyDeviceToHost);
    {
        bool ok = true;
        for (int q = 0; q < nr; q++)
            for (size_t i = 0; i < n; i++)
                ok &= o[q * n + i] == (float)val(q, i);
        CHECK(ok);
    }
    /* stream order: the all-reduce runs after a kernel the host holds back */
    int *gate;
    cudaMallocHost((void **)&gate, sizeof(int));
    *gate = 0;
    GPUML_EMU_LAUNCH(gated_set, "gated_set", 1, 64, 0, s)(gate, a, (int)n, (float)(rank + 1));
    CHECK(settle(c, ncclAllReduce(a, b, n, ncclFloat32, ncclSum, c, s)) == ncclSuccess);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    CHECK(cudaStreamQuery(s) == cudaErrorNotReady);
    __atomic_store_n(gate, 1, __ATOMIC_RELEASE);
    sync_ok(rank, nr, s);
    cudaMemcpy(o.data(), b, 4, cudaMemcpyDeviceToHost);
    CHECK(o[0] == (float)(nr * (nr + 1) / 2));
    cudaFreeHost(gate);

    CHECK(settle(c, ncclCommFinalize(c)) == ncclSuccess);
    CHECK(ncclCommDestroy(c) == ncclSuccess);
    cudaFree(a);
    cudaFree(b);
    cudaStreamDestroy(s);
}

static void run_threads(int nr, bool nonblocking)
{
    ncclUniqueId id;
    ncclGetUniqueId(&id);
    std::vector<std::thread> th;
    for (int r = 0; r < nr; r++)
        th.emplace_back([&, r] { rank_body(id, r, nr, nonblocking); });
    for (auto &t : th)
        t.join();
}

static std::string id_hex(const ncclUniqueId &id)
{
    std::string h;
    char b[3];
    for (int i = 0; i < NCCL_UNIQUE_ID_BYTES; i++) {
        snprintf(b, sizeof b, "%02x", (unsigned char)id.internal[i]);
        h += b;
    }
    return h;
}

static ncclUniqueId id_parse(const char *h)
{
    ncclUniqueId id;
    for (int i = 0; i < NCCL_UNIQUE_ID_BYTES; i++) {
        unsigned v = 0;
        sscanf(h + 2 * i, "%2x", &v);
        id.internal[i] = (char)v;
    }
    return id;
}

/* Starts nr processes of this program (fork + exec: a forked copy of a
 * process whose CUDA runtime runs would have no stream threads), each
 * running 'mode' as one rank; true if all but expect_dead exit 0. */
static bool run_procs(int nr, const char *mode, int expect_dead = -1)
{
    ncclUniqueId id;
    ncclGetUniqueId(&id);
    std::string hex = id_hex(id), n = std::to_string(nr);
    std::vector<pid_t> pids;
    fflush(stdout);
    for (int r = 0; r < nr; r++) {
        std::string rs = std::to_string(r);
        pid_t p = fork();
        if (p == 0) {
            execl("/proc/self/exe", "test_emu_nccl", mode, hex.c_str(), rs.c_str(), n.c_str(), (char *)nullptr);
            _exit(127);
        }
        pids.push_back(p);
    }
    bool ok = true;
    for (int r = 0; r < nr; r++) {
        int st = 0;
        waitpid(pids[r], &st, 0);
        if (r != expect_dead && !(WIFEXITED(st) && WEXITSTATUS(st) == 0)) {
            printf("FAIL process rank %d of %d (%s): status 0x%x\n", r, nr, mode, st);
            ok = false;
        }
    }
    return ok;
}

/* The last rank misbehaves after one good all-reduce; the others must see
 * it (or, for a stall, see nothing) and get out by aborting. */
static void fault_body(const ncclUniqueId &id, int rank, int nr, const char *mode)
{
    int ndev = 0;
    cudaGetDeviceCount(&ndev);
    cudaSetDevice(rank % ndev);
    ncclComm_t c;
    ncclConfig_t cfg = NCCL_CONFIG_INITIALIZER;
    cfg.blocking = 0;
    CHECK(settle(c, ncclCommInitRankConfig(&c, nr, id, rank, &cfg)) == ncclSuccess);
    cudaStream_t s;
    cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking);
    float *x;
    cudaMalloc((void **)&x, 4096 * 4);
    cudaMemset(x, 0, 4096 * 4);
    CHECK(settle(c, ncclAllReduce(x, x, 4096, ncclFloat32, ncclSum, c, s)) == ncclSuccess);
    CHECK(cudaStreamSynchronize(s) == cudaSuccess);
    bool victim = rank == nr - 1;
    if (victim) {
        if (!strcmp(mode, "kill"))
            raise(SIGKILL);
        if (!strcmp(mode, "exit"))
            _exit(0);
        if (!strcmp(mode, "abort")) {
            std::this_thread::sleep_for(std::chrono::milliseconds(100));
            ncclCommAbort(c);
            return;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(1500)); /* stall */
        ncclCommAbort(c);
        return;
    }
    CHECK(settle(c, ncclAllReduce(x, x, 4096, ncclFloat32, ncclSum, c, s)) == ncclSuccess);
    double t0 = now();
    ncclResult_t async = ncclSuccess;
    bool stall = !strcmp(mode, "stall");
    double limit = stall ? 0.7 : 5.0;
    while (now() - t0 < limit && cudaStreamQuery(s) == cudaErrorNotReady) {
        ncclCommGetAsyncError(c, &async);
        if (async != ncclSuccess)
            break;
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    double el = now() - t0;
    CHECK(cudaStreamQuery(s) == cudaErrorNotReady); /* the operation hangs, as on a GPU */
    if (stall) {
        CHECK(async == ncclSuccess); /* a stall is silent: the caller's watchdog decides */
    } else {
        CHECK(async == ncclRemoteError);
        CHECK(el < 2.0);
        CHECK(strstr(ncclGetLastError(c), "rank") != nullptr);
        printf("  %s: rank %d saw \"%s\" after %.3f s\n", mode, rank, ncclGetLastError(c), el);
    }
    ncclCommAbort(c); /* ends the stuck all-reduce */
    t0 = now();
    CHECK(cudaStreamSynchronize(s) == cudaSuccess);
    CHECK(now() - t0 < 1.0);
    cudaFree(x);
    cudaStreamDestroy(s);
}

int main(int argc, char **argv)
{
    if (argc == 5) { /* one rank of run_procs */
        ncclUniqueId id = id_parse(argv[2]);
        int r = atoi(argv[3]), n = atoi(argv[4]);
        if (!strcmp(argv[1], "body"))
            rank_body(id, r, n, n % 2 == 1);
        else
            fault_body(id, r, n, argv[1]);
        fflush(stdout);
        return failures ? 1 : 0;
    }
    int rank = -1, nr = 0;
    for (int n = 1; n <= 4; n++) {
        run_threads(n, n % 2 == 0);
        printf("threads np=%d: %d failure(s) so far\n", n, failures.load());
        CHECK(run_procs(n, "body"));
        printf("processes np=%d: %d failure(s) so far\n", n, failures.load());
    }
    const char *modes[] = {"kill", "exit", "abort", "stall"};
    for (const char *m : modes) {
        CHECK(run_procs(3, m, 2));
        printf("fault %s: %d failure(s) so far\n", m, failures.load());
    }
    /* ranks that disagree on the size, and a missing rank under a deadline */
    {
        ncclUniqueId id;
        ncclGetUniqueId(&id);
        ncclComm_t c0 = nullptr, c1 = nullptr;
        ncclConfig_t cfg = NCCL_CONFIG_INITIALIZER;
        cfg.blocking = 0;
        CHECK(ncclCommInitRankConfig(&c0, 2, id, 0, &cfg) == ncclInProgress);
        CHECK(ncclCommInitRankConfig(&c1, 3, id, 1, &cfg) == ncclInvalidUsage);
        CHECK(strstr(ncclGetLastError(c1), "disagree") != nullptr);
        ncclResult_t a;
        ncclCommGetAsyncError(c0, &a);
        CHECK(a == ncclInProgress); /* rank 1 never joined: still waiting */
        ncclCommAbort(c1);
        ncclCommAbort(c0);
    }
    printf("%s: %d failure(s)\n", failures ? "FAILED" : "passed", failures.load());
    return failures ? 1 : 0;
}
