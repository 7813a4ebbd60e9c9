/* tests/cudaemu/nccl.cpp - the emulated NCCL.
 *
 * A communicator is one rank of nranks; its ranks may be processes (one
 * per rank under mpirun, each with its own emulated device) or threads of
 * one process, or both. They meet in a POSIX shared-memory segment whose
 * name comes from the unique id (ncclGetUniqueId draws 16 random bytes):
 *
 *   header   nranks, how many joined, and per rank its pid and state
 *            (joined / left by ncclCommDestroy / aborted)
 *   channels one byte ring per ordered pair (src, dst) of ranks, CHAN bytes
 *            each, with a head (bytes written, by src) and a tail (bytes
 *            read, by dst): a FIFO byte stream, so the k-th send from src
 *            to dst pairs with dst's k-th receive from src, as in NCCL.
 *
 * Every call checks its arguments as NCCL does (ncclInvalidArgument: null
 * or non-device buffers, bad root/peer, bad type/op; ncclInvalidUsage: a
 * call on an aborted communicator), then queues its work on the caller's
 * stream: the work runs in stream order on the stream's thread and moves
 * data through the channels (a progress loop over all transfers of the
 * operation, so that a group of sends and receives cannot deadlock).
 * Collectives are built from transfers: all-reduce and reduce-scatter send
 * every contribution to every rank that needs it, and each rank reduces
 * them in rank order 0, 1, ..., n-1, so results are deterministic and the
 * same on every rank (real NCCL's ring/tree order differs; gpuml's
 * deterministic path does its own rank-order sum anyway).
 *
 * Faults: a transfer that cannot move waits; while it waits it checks,
 * every millisecond or so, the local abort flag and the peers it waits
 * for: a peer whose process is gone (kill(pid, 0), or a zombie), or that
 * aborted or destroyed its communicator, sets the communicator's async
 * error (ncclRemoteError, ncclCommGetAsyncError reports it) with a
 * message naming the rank (ncclGetLastError). The operation then keeps
 * waiting, as a real NCCL kernel does, until ncclCommAbort stops it (or
 * GPUML_EMU_NCCL_HANG_S, default 600 s, passes: a test must not hang). A
 * stalled peer (alive, not calling) shows as no progress only: the
 * caller's watchdog (gpuml's comm timeout) ends it with ncclCommAbort.
 *
 * Non-blocking communicators (config.blocking = 0): init returns
 * ncclInProgress until every rank has joined (ncclCommGetAsyncError polls
 * it); collectives and ncclGroupEnd return ncclInProgress and are settled
 * at once (the enqueue is host work done in the call); ncclCommFinalize
 * returns ncclInProgress until the communicator's queued operations have
 * run. Blocking init waits up to GPUML_EMU_NCCL_INIT_S (default 120 s).
 *
 * Limits: nranks <= 64; a group may hold operations of one communicator
 * only per stream operation (gpuml's use); 16-bit floats are reduced in
 * f32 and rounded to nearest even. */
#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.hpp"
#include "nccl.h"

namespace {

constexpr int MAXR = 64;
constexpr uint32_t MAGIC = 0x6e63636cu; /* "nccl" */
enum { ST_NONE = 0, ST_JOINED = 1, ST_LEFT = 2, ST_ABORTED = 3 };

struct RankSlot {
    std::atomic<int32_t> pid;
    std::atomic<int32_t> state;
};

struct Header {
    std::atomic<uint32_t> magic;
    std::atomic<int32_t> nranks;
    std::atomic<int32_t> joined; /* ranks that registered */
    std::atomic<int32_t> seen;   /* ranks that saw everyone joined: the last unlinks the name */
    std::atomic<size_t> chan;    /* channel capacity every rank uses */
    RankSlot ranks[MAXR];
};

struct Chan {
    std::atomic<uint64_t> head; /* bytes written by the sender */
    char pad1[56];
    std::atomic<uint64_t> tail; /* bytes read by the receiver */
    char pad2[56];
    /* then chan bytes of ring */
};

static_assert(std::atomic<uint64_t>::is_always_lock_free, "shared-memory atomics must be lock-free");

double env_double(const char *n, double d)
{
    const char *v = getenv(n);
    return v && *v ? strtod(v, nullptr) : d;
}

double now_s()
{
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

bool pid_dead(int pid)
{
    if (pid <= 0 || pid == (int)getpid())
        return false;
    if (kill(pid, 0) != 0 && errno == ESRCH)
        return true;
    /* An exited child its parent has not reaped yet still answers kill(). */
    char path[64], buf[256];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    const char *p = strrchr(buf, ')');
    return p && p[1] == ' ' && (p[2] == 'Z' || p[2] == 'X');
}

/* Everything the stream operations of a communicator touch: shared with
 * them (shared_ptr), so that ncclCommAbort/Destroy may return while an
 * aborted operation is still unwinding. */
struct State {
    int rank = 0, nranks = 1;
    size_t chan = 0, map_bytes = 0;
    char *base = nullptr;
    std::string name;
    std::atomic<bool> aborted{false};
    std::atomic<int> async{ncclSuccess};
    std::atomic<uint64_t> queued{0}, finished{0};
    std::mutex err_m;
    std::string err;

    Header *hdr() { return (Header *)base; }
    static size_t hdr_bytes() { return (sizeof(Header) + 63) & ~(size_t)63; }
    Chan *ch(int src, int dst) { return (Chan *)(base + hdr_bytes() + ((size_t)src * nranks + dst) * (sizeof(Chan) + chan)); }
    char *ring(Chan *c) { return (char *)(c + 1); }

    void set_error(ncclResult_t r, const std::string &why)
    {
        int expect = ncclSuccess;
        if (async.compare_exchange_strong(expect, (int)r)) {
            std::lock_guard<std::mutex> l(err_m);
            err = why;
        }
    }
    /* Why peer q cannot take part any more; "" while it can. */
    std::string peer_problem(int q)
    {
        RankSlot &s = hdr()->ranks[q];
        int st = s.state.load();
        if (st == ST_ABORTED)
            return "rank " + std::to_string(q) + " aborted its communicator";
        if (st == ST_LEFT)
            return "rank " + std::to_string(q) + " destroyed its communicator";
        int pid = s.pid.load();
        if (pid_dead(pid))
            return "rank " + std::to_string(q) + " (pid " + std::to_string(pid) + ") exited";
        return "";
    }
    ~State()
    {
        if (base)
            munmap(base, map_bytes);
    }
};
using StateP = std::shared_ptr<State>;

size_t type_size(ncclDataType_t t)
{
    switch (t) {
    case ncclInt8: case ncclUint8: return 1;
    case ncclFloat16: case ncclBfloat16: return 2;
    case ncclInt32: case ncclUint32: case ncclFloat32: return 4;
    case ncclInt64: case ncclUint64: case ncclFloat64: return 8;
    default: return 0;
    }
}

/* One transfer of a stream operation: n bytes to or from peer. */
struct Xfer {
    bool send;
    int peer;
    char *buf;
    size_t n, done;
};

/* Moves the transfers' bytes until all are done. Returns false if the
 * communicator was aborted (or the hang limit passed) first. Transfers to
 * one peer in one direction go in list order (the channel is a FIFO). */
bool run_xfers(State &S, std::vector<Xfer> &v)
{
    const size_t cap = S.chan;
    double last_check = now_s(), hang = env_double("GPUML_EMU_NCCL_HANG_S", 600), t0 = last_check;
    unsigned idle = 0;
    bool suspect = false;
    std::vector<char> busy_s(S.nranks), busy_r(S.nranks);
    for (;;) {
        bool progress = false, all = true;
        std::fill(busy_s.begin(), busy_s.end(), 0);
        std::fill(busy_r.begin(), busy_r.end(), 0);
        for (Xfer &x : v) {
            if (x.done == x.n)
                continue;
            all = false;
            char &busy = x.send ? busy_s[x.peer] : busy_r[x.peer];
            if (busy)
                continue; /* an earlier transfer on this channel is still going */
            busy = 1;
            Chan *c = x.send ? S.ch(S.rank, x.peer) : S.ch(x.peer, S.rank);
            char *ring = S.ring(c);
            uint64_t head, tail;
            size_t k;
            if (x.send) {
                head = c->head.load(std::memory_order_relaxed);
                tail = c->tail.load(std::memory_order_acquire);
                k = std::min(cap - (size_t)(head - tail), x.n - x.done);
            } else {
                head = c->head.load(std::memory_order_acquire);
                tail = c->tail.load(std::memory_order_relaxed);
                k = std::min((size_t)(head - tail), x.n - x.done);
            }
            if (k == 0)
                continue;
            size_t pos = (size_t)((x.send ? head : tail) % cap), first = std::min(k, cap - pos);
            if (x.send) {
                memcpy(ring + pos, x.buf + x.done, first);
                memcpy(ring, x.buf + x.done + first, k - first);
                c->head.store(head + k, std::memory_order_release);
            } else {
                memcpy(x.buf + x.done, ring + pos, first);
                memcpy(x.buf + x.done + first, ring, k - first);
                c->tail.store(tail + k, std::memory_order_release);
            }
            x.done += k;
            progress = true;
            if (x.done < x.n)
                all = false;
        }
        if (all)
            return true;
        if (progress) {
            idle = 0;
            suspect = false;
            continue;
        }
        if (S.aborted.load())
            return false;
        double t = now_s();
        if (t - last_check > 1e-3) {
            last_check = t;
            /* A peer that finished its part of this operation may destroy its
             * communicator between our scan of the channels and this check;
             * the bytes it pushed before leaving are then already in the
             * ring. So a gone peer is an error only when a whole scan made
             * after seeing it gone still moved nothing (suspect). */
            bool gone = false;
            for (const Xfer &x : v)
                if (x.done < x.n && x.peer != S.rank) {
                    std::string why = S.peer_problem(x.peer);
                    if (!why.empty()) {
                        gone = true;
                        if (suspect)
                            S.set_error(ncclRemoteError, "rank " + std::to_string(S.rank) + ": " + why);
                    }
                }
            if (gone && !suspect) {
                suspect = true;
                continue; /* scan once more before blaming the peer */
            }
            if (t - t0 > hang) {
                S.set_error(ncclSystemError, "emulated NCCL: an operation waited longer than GPUML_EMU_NCCL_HANG_S");
                return false;
            }
        }
        if (++idle < 64)
            std::this_thread::yield();
        else
            std::this_thread::sleep_for(std::chrono::microseconds(idle < 1000 ? 20 : 200));
    }
}

/* ---- element-wise reduction, in rank order --------------------------------- */

float h2f(uint16_t h)
{
    uint32_t s = (uint32_t)(h >> 15) << 31, e = (h >> 10) & 31, m = h & 1023, u;
    if (e == 0) {
        if (m == 0) {
            u = s;
        } else { /* subnormal */
            int sh = 0;
            while (!(m & 1024)) {
                m <<= 1;
                sh++;
            }
            u = s | (uint32_t)(113 - sh) << 23 | (m & 1023) << 13;
        }
    } else if (e == 31) {
        u = s | 0x7f800000u | m << 13;
    } else {
        u = s | (e + 112) << 23 | m << 13;
    }
    float f;
    memcpy(&f, &u, 4);
    return f;
}

uint16_t f2h(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    uint32_t s = (u >> 16) & 0x8000;
    int e = (int)((u >> 23) & 255) - 112;
    uint32_t m = u & 0x7fffff;
    if (((u >> 23) & 255) == 255)
        return (uint16_t)(s | 0x7c00 | (m ? 0x200 : 0));
    if (e >= 31)
        return (uint16_t)(s | 0x7c00);
    if (e <= 0) {
        if (e < -10)
            return (uint16_t)s;
        m |= 0x800000;
        int sh = 14 - e;
        uint32_t r = m >> sh, rem = m & ((1u << sh) - 1), half = 1u << (sh - 1);
        if (rem > half || (rem == half && (r & 1)))
            r++;
        return (uint16_t)(s | r);
    }
    uint32_t r = (uint32_t)e << 10 | m >> 13, rem = m & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (r & 1)))
        r++;
    return (uint16_t)(s | r);
}

float b2f(uint16_t b)
{
    uint32_t u = (uint32_t)b << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

uint16_t f2b(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffff) > 0x7f800000)
        return (uint16_t)((u >> 16) | 0x40);
    u += 0x7fff + ((u >> 16) & 1);
    return (uint16_t)(u >> 16);
}

template <class T> T apply(T a, T v, ncclRedOp_t op)
{
    if (op == ncclSum || op == ncclAvg)
        return a + v;
    if (op == ncclProd)
        return a * v;
    if (op == ncclMax)
        return v > a ? v : a;
    return v < a ? v : a;
}

/* out = contributions[0] op contributions[1] op ... (rank order); avg
 * divides the sum by nranks at the end (integers: truncating). */
template <class T> void reduce_all(T *out, const char *all, size_t b, size_t n, int nr, ncclRedOp_t op)
{
    for (size_t i = 0; i < n; i++) {
        T a;
        memcpy(&a, all + i * sizeof(T), sizeof(T));
        for (int q = 1; q < nr; q++) {
            T v;
            memcpy(&v, all + (size_t)q * b + i * sizeof(T), sizeof(T));
            a = apply(a, v, op);
        }
        if (op == ncclAvg)
            a = (T)(a / (T)nr);
        out[i] = a;
    }
}

template <float (*TO)(uint16_t), uint16_t (*FROM)(float)>
void reduce_all16(uint16_t *out, const char *all, size_t b, size_t n, int nr, ncclRedOp_t op)
{
    for (size_t i = 0; i < n; i++) {
        uint16_t h;
        memcpy(&h, all + i * 2, 2);
        float a = TO(h);
        for (int q = 1; q < nr; q++) {
            memcpy(&h, all + (size_t)q * b + i * 2, 2);
            a = apply(a, TO(h), op);
        }
        if (op == ncclAvg)
            a /= (float)nr;
        out[i] = FROM(a);
    }
}

/* all holds nr contributions of b = n elements each, back to back. */
void reduce_typed(void *out, const char *all, size_t n, ncclDataType_t t, ncclRedOp_t op, int nr)
{
    size_t b = n * type_size(t);
    switch (t) {
    case ncclInt8: reduce_all((int8_t *)out, all, b, n, nr, op); break;
    case ncclUint8: reduce_all((uint8_t *)out, all, b, n, nr, op); break;
    case ncclInt32: reduce_all((int32_t *)out, all, b, n, nr, op); break;
    case ncclUint32: reduce_all((uint32_t *)out, all, b, n, nr, op); break;
    case ncclInt64: reduce_all((int64_t *)out, all, b, n, nr, op); break;
    case ncclUint64: reduce_all((uint64_t *)out, all, b, n, nr, op); break;
    case ncclFloat32: reduce_all((float *)out, all, b, n, nr, op); break;
    case ncclFloat64: reduce_all((double *)out, all, b, n, nr, op); break;
    case ncclFloat16: reduce_all16<h2f, f2h>((uint16_t *)out, all, b, n, nr, op); break;
    case ncclBfloat16: reduce_all16<b2f, f2b>((uint16_t *)out, all, b, n, nr, op); break;
    default: break;
    }
}

} // namespace

struct ncclComm {
    int rank = 0, nranks = 1, device = 0;
    bool blocking = true, aborted = false, joined = false, finalizing = false;
    std::string last_error;
    StateP S;
};

namespace {

/* ---- rendezvous ------------------------------------------------------------ */

std::string seg_name(const ncclUniqueId &id)
{
    static const char hex[] = "0123456789abcdef";
    std::string s = "/gpuml-emu-nccl-";
    for (int i = 0; i < 16; i++) {
        s += hex[(unsigned char)id.internal[i] >> 4];
        s += hex[(unsigned char)id.internal[i] & 15];
    }
    return s;
}

ncclResult_t fail(ncclComm_t c, ncclResult_t r, const std::string &what)
{
    if (c)
        c->last_error = what;
    return r;
}

/* Maps the segment and registers the rank. */
ncclResult_t attach(ncclComm_t c, const ncclUniqueId &id)
{
    auto S = std::make_shared<State>();
    S->rank = c->rank;
    S->nranks = c->nranks;
    S->name = seg_name(id);
    S->chan = (size_t)env_double("GPUML_EMU_NCCL_CHAN_KB", 64) * 1024;
    if (S->chan < 64)
        S->chan = 64;
    S->map_bytes = State::hdr_bytes() + (size_t)c->nranks * c->nranks * (sizeof(Chan) + S->chan);
    int fd = shm_open(S->name.c_str(), O_RDWR | O_CREAT, 0600);
    if (fd < 0)
        return fail(c, ncclSystemError, "shm_open(" + S->name + "): " + strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || ((size_t)sb.st_size < S->map_bytes && ftruncate(fd, (off_t)S->map_bytes) != 0)) {
        int e = errno;
        close(fd);
        return fail(c, ncclSystemError, "sizing the shared segment " + S->name + ": " + strerror(e));
    }
    void *p = mmap(nullptr, S->map_bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (p == MAP_FAILED)
        return fail(c, ncclSystemError, "mmap of " + S->name + ": " + strerror(errno));
    S->base = (char *)p;
    Header *h = S->hdr();
    int32_t zero = 0;
    if (!h->nranks.compare_exchange_strong(zero, c->nranks) && zero != c->nranks)
        return fail(c, ncclInvalidUsage, "ranks disagree on the communicator size: " + std::to_string(zero) +
                                             " and " + std::to_string(c->nranks));
    size_t z = 0;
    if (!h->chan.compare_exchange_strong(z, S->chan) && z != S->chan)
        return fail(c, ncclInvalidUsage, "ranks disagree on GPUML_EMU_NCCL_CHAN_KB");
    int32_t nopid = 0;
    if (!h->ranks[c->rank].pid.compare_exchange_strong(nopid, (int32_t)getpid()))
        return fail(c, ncclInvalidUsage, "rank " + std::to_string(c->rank) + " joined twice");
    h->ranks[c->rank].state.store(ST_JOINED);
    h->magic.store(MAGIC);
    h->joined.fetch_add(1);
    c->S = S;
    return ncclSuccess;
}

/* Init progress: ncclSuccess once everyone joined, ncclInProgress before,
 * an error if a joined peer is gone. */
ncclResult_t join_state(ncclComm_t c)
{
    if (c->joined)
        return ncclSuccess;
    State &S = *c->S;
    Header *h = S.hdr();
    if (h->joined.load() == S.nranks) {
        c->joined = true;
        if (h->seen.fetch_add(1) + 1 == S.nranks)
            shm_unlink(S.name.c_str()); /* everyone has it mapped: no name left behind */
        return ncclSuccess;
    }
    for (int q = 0; q < S.nranks; q++)
        if (q != S.rank && h->ranks[q].pid.load() != 0) {
            std::string why = S.peer_problem(q);
            if (!why.empty())
                return fail(c, ncclRemoteError, "during init: " + why);
        }
    return ncclInProgress;
}

ncclResult_t done(ncclComm_t c) { return c->blocking ? ncclSuccess : ncclInProgress; }

ncclResult_t check_comm(ncclComm_t c)
{
    if (!c)
        return ncclInvalidArgument;
    if (c->aborted)
        return fail(c, ncclInvalidUsage, "communicator was aborted");
    if (!c->joined)
        return fail(c, ncclInvalidUsage, "communicator is still initialising");
    return ncclSuccess;
}

bool dev_ok(ncclComm_t c, const void *p, size_t n) { return n == 0 || emu::in_alloc(p, n, c->device, false); }

/* GPUML_EMU_NCCL_TRACE=DIR: every operation appends a line to
 * DIR/nccl.<pid>.trace when it finishes on its stream:
 *   rank nranks device op bytes t_enqueue t_start t_end
 * (bytes: the buffer as NCCL counts it - the count times the type size;
 * sendrecv: the bytes this rank sends; times: CLOCK_MONOTONIC seconds, as
 * gpuml_clock_s in core/runtime.h), so tests and docs can see the order in which the work
 * ran on the emulated streams and what moved. */
FILE *trace_file()
{
    static FILE *f = [] {
        const char *d = getenv("GPUML_EMU_NCCL_TRACE");
        if (!d || !*d)
            return (FILE *)nullptr;
        std::string p = std::string(d) + "/nccl." + std::to_string(getpid()) + ".trace";
        return fopen(p.c_str(), "a");
    }();
    return f;
}
std::mutex trace_m;

/* Queues fn on s; it runs the operation's transfers. */
ncclResult_t enqueue(ncclComm_t c, cudaStream_t s, std::function<void(State &)> fn, const char *op = "p2p",
                     size_t bytes = 0)
{
    emu::StreamP sp;
    if (emu::resolve_stream(s, &sp) != cudaSuccess || sp->device != c->device)
        return fail(c, ncclInvalidArgument, "stream is not a stream of the communicator's device");
    StateP S = c->S;
    S->queued.fetch_add(1);
    double t_enq = now_s();
    int dev = c->device;
    emu::submit(sp, [S, fn, op, bytes, t_enq, dev] {
        double t0 = now_s();
        if (!S->aborted.load())
            fn(*S);
        if (FILE *f = trace_file()) {
            std::lock_guard<std::mutex> l(trace_m);
            fprintf(f, "%d %d %d %s %zu %.9f %.9f %.9f\n", S->rank, S->nranks, dev, op, bytes, t_enq, t0, now_s());
            fflush(f);
        }
        S->finished.fetch_add(1);
    });
    return ncclSuccess;
}

/* ---- groups ---------------------------------------------------------------- */

struct P2P {
    bool send;
    const void *sbuf;
    void *rbuf;
    size_t bytes;
    int peer;
    ncclComm_t comm;
    cudaStream_t stream;
};

thread_local int group_depth = 0;
thread_local std::vector<P2P> group_ops;
thread_local std::vector<ncclComm_t> group_comms;
thread_local std::vector<std::function<ncclResult_t()>> group_colls;

/* A collective: in a group it is issued at ncclGroupEnd, else now. */
ncclResult_t issue(ncclComm_t c, std::function<ncclResult_t()> f)
{
    if (group_depth > 0) {
        group_colls.push_back(std::move(f));
        group_comms.push_back(c);
        return ncclSuccess;
    }
    ncclResult_t r = f();
    return r == ncclSuccess ? done(c) : r;
}

ncclResult_t check_coll(ncclComm_t c, const void *s, size_t sn, const void *r, size_t rn, ncclDataType_t t,
                        int op_or_minus1)
{
    if (ncclResult_t e = check_comm(c))
        return e;
    if (type_size(t) == 0)
        return fail(c, ncclInvalidArgument, "invalid data type");
    if (op_or_minus1 >= 0 && op_or_minus1 >= ncclNumOps)
        return fail(c, ncclInvalidArgument, "invalid reduction operation");
    if ((sn && !s) || (rn && !r))
        return fail(c, ncclInvalidArgument, "null buffer");
    if (!dev_ok(c, s, sn) || !dev_ok(c, r, rn))
        return fail(c, ncclInvalidArgument, "buffer is not device memory of the communicator's device");
    return ncclSuccess;
}

/* Sends sbuf (b bytes) to every rank in 'to' and receives b bytes from
 * every rank into all + q * b; false if aborted. */
bool exchange(State &S, const void *sbuf, size_t b, bool send_all, int only_to, char *all, bool recv_all,
              int only_from)
{
    std::vector<Xfer> v;
    for (int q = 0; q < S.nranks; q++) {
        if (send_all || q == only_to)
            v.push_back(Xfer{true, q, (char *)sbuf, b, 0});
        if (recv_all || q == only_from)
            v.push_back(Xfer{false, q, all + (size_t)q * b, b, 0});
    }
    return run_xfers(S, v);
}

} // namespace

EMU_API ncclResult_t ncclGetVersion(int *v)
{
    if (!v)
        return ncclInvalidArgument;
    *v = NCCL_VERSION_CODE;
    return ncclSuccess;
}

EMU_API ncclResult_t ncclGetUniqueId(ncclUniqueId *id)
{
    if (!id)
        return ncclInvalidArgument;
    memset(id->internal, 0, sizeof id->internal);
    std::random_device rd;
    for (size_t i = 0; i < 16; i++)
        id->internal[i] = (char)(rd() & 0xff);
    return ncclSuccess;
}

EMU_API ncclResult_t ncclCommInitRankConfig(ncclComm_t *out, int nranks, ncclUniqueId id, int rank,
                                            ncclConfig_t *config)
{
    if (!out)
        return ncclInvalidArgument;
    *out = nullptr;
    if (nranks < 1 || nranks > MAXR || rank < 0 || rank >= nranks)
        return ncclInvalidArgument;
    if (config && (config->magic != 0xcafebeef || config->size != sizeof(ncclConfig_t)))
        return ncclInvalidArgument;
    ncclComm_t c = new ncclComm;
    c->rank = rank;
    c->nranks = nranks;
    c->device = emu::current_device();
    c->blocking = !config || config->blocking == NCCL_CONFIG_UNDEF_INT || config->blocking != 0;
    ncclResult_t r = attach(c, id);
    if (r == ncclSuccess)
        r = join_state(c);
    if (c->blocking) {
        double t0 = now_s(), limit = env_double("GPUML_EMU_NCCL_INIT_S", 120);
        while (r == ncclInProgress && now_s() - t0 < limit) {
            std::this_thread::sleep_for(std::chrono::microseconds(200));
            r = join_state(c);
        }
        if (r == ncclInProgress)
            r = fail(c, ncclSystemError, "not every rank joined within GPUML_EMU_NCCL_INIT_S");
        if (r != ncclSuccess) {
            if (c->S) {
                c->S->hdr()->ranks[rank].state.store(ST_ABORTED);
                shm_unlink(c->S->name.c_str());
            }
            delete c;
            return r;
        }
        *out = c;
        return ncclSuccess;
    }
    /* Non-blocking: the communicator exists even when init failed, so that
     * ncclGetLastError can say why; the caller aborts it. */
    *out = c;
    return r;
}

EMU_API ncclResult_t ncclCommInitRank(ncclComm_t *out, int nranks, ncclUniqueId id, int rank)
{
    return ncclCommInitRankConfig(out, nranks, id, rank, nullptr);
}

EMU_API ncclResult_t ncclCommGetAsyncError(ncclComm_t c, ncclResult_t *err)
{
    if (!c || !err)
        return ncclInvalidArgument;
    if (!c->S) {
        *err = ncclSystemError;
        return ncclSuccess;
    }
    if (!c->joined) {
        *err = join_state(c);
        return ncclSuccess;
    }
    State &S = *c->S;
    *err = (ncclResult_t)S.async.load();
    if (*err == ncclSuccess && c->finalizing && S.finished.load() < S.queued.load())
        *err = ncclInProgress;
    return ncclSuccess;
}

EMU_API ncclResult_t ncclCommFinalize(ncclComm_t c)
{
    if (ncclResult_t e = check_comm(c))
        return e;
    c->finalizing = true;
    if (!c->blocking)
        return ncclInProgress;
    State &S = *c->S;
    while (S.finished.load() < S.queued.load() && S.async.load() == ncclSuccess)
        std::this_thread::sleep_for(std::chrono::microseconds(200));
    return (ncclResult_t)S.async.load();
}

static void leave(ncclComm_t c, int state)
{
    if (c->S) {
        c->S->hdr()->ranks[c->rank].state.store(state);
        if (!c->joined)
            shm_unlink(c->S->name.c_str()); /* the others can no longer complete */
    }
}

EMU_API ncclResult_t ncclCommDestroy(ncclComm_t c)
{
    if (!c)
        return ncclInvalidArgument;
    if (c->S) {
        State &S = *c->S;
        /* Destroy waits for queued work; if that cannot finish, it stops it. */
        double t0 = now_s(), limit = env_double("GPUML_EMU_NCCL_HANG_S", 600);
        while (S.finished.load() < S.queued.load() && S.async.load() == ncclSuccess && now_s() - t0 < limit)
            std::this_thread::sleep_for(std::chrono::microseconds(200));
        S.aborted.store(true);
    }
    leave(c, ST_LEFT);
    delete c;
    return ncclSuccess;
}

EMU_API ncclResult_t ncclCommAbort(ncclComm_t c)
{
    if (!c)
        return ncclSuccess;
    c->aborted = true;
    if (c->S)
        c->S->aborted.store(true); /* queued and running operations stop; they hold S */
    leave(c, ST_ABORTED);
    delete c;
    return ncclSuccess;
}

EMU_API ncclResult_t ncclCommCount(const ncclComm_t c, int *n)
{
    if (!c || !n)
        return ncclInvalidArgument;
    *n = c->nranks;
    return ncclSuccess;
}

EMU_API ncclResult_t ncclCommCuDevice(const ncclComm_t c, int *d)
{
    if (!c || !d)
        return ncclInvalidArgument;
    *d = c->device;
    return ncclSuccess;
}

EMU_API ncclResult_t ncclCommUserRank(const ncclComm_t c, int *r)
{
    if (!c || !r)
        return ncclInvalidArgument;
    *r = c->rank;
    return ncclSuccess;
}

EMU_API const char *ncclGetErrorString(ncclResult_t r)
{
    switch (r) {
    case ncclSuccess: return "no error";
    case ncclUnhandledCudaError: return "unhandled cuda error";
    case ncclSystemError: return "unhandled system error";
    case ncclInternalError: return "internal error";
    case ncclInvalidArgument: return "invalid argument";
    case ncclInvalidUsage: return "invalid usage";
    case ncclRemoteError: return "remote process exited or there was a network error";
    case ncclInProgress: return "NCCL operation in progress";
    default: return "unknown result code";
    }
}

EMU_API const char *ncclGetLastError(ncclComm_t c)
{
    if (!c)
        return "";
    if (c->S && c->S->async.load() != ncclSuccess) {
        std::lock_guard<std::mutex> l(c->S->err_m);
        c->last_error = c->S->err;
    }
    return c->last_error.c_str();
}

EMU_API ncclResult_t ncclAllReduce(const void *s, void *r, size_t n, ncclDataType_t t, ncclRedOp_t op, ncclComm_t c,
                                   cudaStream_t st)
{
    size_t b = n * type_size(t);
    if (ncclResult_t e = check_coll(c, s, b, r, b, t, (int)op))
        return e;
    return issue(c, [=] {
        return enqueue(c, st, [=](State &S) {
            std::vector<char> all((size_t)S.nranks * b);
            if (exchange(S, s, b, true, -1, all.data(), true, -1))
                reduce_typed(r, all.data(), n, t, op, S.nranks);
        }, "allreduce", b);
    });
}

EMU_API ncclResult_t ncclReduce(const void *s, void *r, size_t n, ncclDataType_t t, ncclRedOp_t op, int root,
                                ncclComm_t c, cudaStream_t st)
{
    size_t b = n * type_size(t);
    if (ncclResult_t e = check_coll(c, s, b, c && c->rank == root ? r : nullptr, c && c->rank == root ? b : 0, t,
                                    (int)op))
        return e;
    if (root < 0 || root >= c->nranks)
        return fail(c, ncclInvalidArgument, "invalid root");
    return issue(c, [=] {
        return enqueue(c, st, [=](State &S) {
            bool me = S.rank == root;
            std::vector<char> all(me ? (size_t)S.nranks * b : 0);
            if (exchange(S, s, b, false, root, all.data(), me, -1) && me)
                reduce_typed(r, all.data(), n, t, op, S.nranks);
        }, "reduce", b);
    });
}

EMU_API ncclResult_t ncclBroadcast(const void *s, void *r, size_t n, ncclDataType_t t, int root, ncclComm_t c,
                                   cudaStream_t st)
{
    size_t b = n * type_size(t);
    if (ncclResult_t e = check_coll(c, c && c->rank == root ? s : nullptr, c && c->rank == root ? b : 0, r, b, t, -1))
        return e;
    if (root < 0 || root >= c->nranks)
        return fail(c, ncclInvalidArgument, "invalid root");
    return issue(c, [=] {
        return enqueue(c, st, [=](State &S) {
            std::vector<Xfer> v;
            if (S.rank == root) {
                for (int q = 0; q < S.nranks; q++)
                    if (q != root)
                        v.push_back(Xfer{true, q, (char *)s, b, 0});
            } else {
                v.push_back(Xfer{false, root, (char *)r, b, 0});
            }
            if (run_xfers(S, v) && S.rank == root && s != r)
                memmove(r, s, b);
        }, "broadcast", c->rank == root ? b * (size_t)(c->nranks - 1) : 0);
    });
}

EMU_API ncclResult_t ncclAllGather(const void *s, void *r, size_t n, ncclDataType_t t, ncclComm_t c,
                                   cudaStream_t st)
{
    size_t b = n * type_size(t);
    if (ncclResult_t e = check_coll(c, s, b, r, c ? b * (size_t)c->nranks : 0, t, -1))
        return e;
    return issue(c, [=] {
        return enqueue(c, st, [=](State &S) {
            /* staged, so that an in-place gather (s inside r) reads its input first */
            std::vector<char> all((size_t)S.nranks * b);
            if (exchange(S, s, b, true, -1, all.data(), true, -1))
                memcpy(r, all.data(), all.size());
        }, "allgather", b);
    });
}

EMU_API ncclResult_t ncclReduceScatter(const void *s, void *r, size_t n, ncclDataType_t t, ncclRedOp_t op,
                                       ncclComm_t c, cudaStream_t st)
{
    size_t b = n * type_size(t);
    if (ncclResult_t e = check_coll(c, s, c ? b * (size_t)c->nranks : 0, r, b, t, (int)op))
        return e;
    return issue(c, [=] {
        return enqueue(c, st, [=](State &S) {
            std::vector<char> all((size_t)S.nranks * b);
            std::vector<Xfer> v;
            for (int q = 0; q < S.nranks; q++) {
                v.push_back(Xfer{true, q, (char *)s + (size_t)q * b, b, 0});
                v.push_back(Xfer{false, q, all.data() + (size_t)q * b, b, 0});
            }
            if (run_xfers(S, v))
                reduce_typed(r, all.data(), n, t, op, S.nranks);
        }, "reducescatter", b * (size_t)c->nranks);
    });
}

static ncclResult_t p2p(bool send, const void *sb, void *rb, size_t n, ncclDataType_t t, int peer, ncclComm_t c,
                        cudaStream_t st)
{
    size_t b = n * type_size(t);
    if (ncclResult_t e = check_coll(c, send ? sb : nullptr, send ? b : 0, send ? nullptr : rb, send ? 0 : b, t, -1))
        return e;
    if (peer < 0 || peer >= c->nranks)
        return fail(c, ncclInvalidArgument, "invalid peer");
    bool outside = group_depth == 0;
    if (outside)
        ncclGroupStart();
    group_ops.push_back(P2P{send, sb, rb, b, peer, c, st});
    return outside ? ncclGroupEnd() : ncclSuccess;
}

EMU_API ncclResult_t ncclSend(const void *s, size_t n, ncclDataType_t t, int peer, ncclComm_t c, cudaStream_t st)
{
    return p2p(true, s, nullptr, n, t, peer, c, st);
}

EMU_API ncclResult_t ncclRecv(void *r, size_t n, ncclDataType_t t, int peer, ncclComm_t c, cudaStream_t st)
{
    return p2p(false, nullptr, r, n, t, peer, c, st);
}

EMU_API ncclResult_t ncclGroupStart(void)
{
    group_depth++;
    return ncclSuccess;
}

/* The sends and receives of a group, per communicator: one stream operation
 * on the first one's stream (the others' streams join it by events), whose
 * transfers progress together. */
static ncclResult_t issue_p2p(ncclComm_t c, const std::vector<P2P> &ops)
{
    cudaStream_t main = ops[0].stream;
    std::vector<cudaStream_t> others;
    for (const P2P &o : ops)
        if (o.stream != main && std::find(others.begin(), others.end(), o.stream) == others.end())
            others.push_back(o.stream);
    for (cudaStream_t o : others) {
        cudaEvent_t ev;
        cudaEventCreateWithFlags(&ev, cudaEventDisableTiming);
        cudaEventRecord(ev, o);
        cudaStreamWaitEvent(main, ev, 0);
        cudaEventDestroy(ev);
    }
    std::vector<Xfer> v;
    size_t sent = 0;
    for (const P2P &o : ops) {
        v.push_back(Xfer{o.send, o.peer, o.send ? (char *)o.sbuf : (char *)o.rbuf, o.bytes, 0});
        sent += o.send ? o.bytes : 0;
    }
    ncclResult_t r = enqueue(c, main, [v](State &S) mutable { run_xfers(S, v); }, "sendrecv", sent);
    for (cudaStream_t o : others) {
        cudaEvent_t ev;
        cudaEventCreateWithFlags(&ev, cudaEventDisableTiming);
        cudaEventRecord(ev, main);
        cudaStreamWaitEvent(o, ev, 0);
        cudaEventDestroy(ev);
    }
    return r;
}

EMU_API ncclResult_t ncclGroupEnd(void)
{
    if (group_depth == 0)
        return ncclInvalidUsage;
    if (--group_depth > 0)
        return ncclSuccess;
    std::vector<P2P> ops;
    ops.swap(group_ops);
    std::vector<std::function<ncclResult_t()>> colls;
    colls.swap(group_colls);
    std::vector<ncclComm_t> comms;
    comms.swap(group_comms);
    ncclResult_t r = ncclSuccess;
    /* Collectives in call order (every rank issues them in the same order). */
    for (auto &f : colls)
        if (r == ncclSuccess)
            r = f();
    std::vector<ncclComm_t> p2p_comms;
    for (const P2P &o : ops)
        if (std::find(p2p_comms.begin(), p2p_comms.end(), o.comm) == p2p_comms.end())
            p2p_comms.push_back(o.comm);
    for (ncclComm_t c : p2p_comms) {
        std::vector<P2P> mine;
        for (const P2P &o : ops)
            if (o.comm == c)
                mine.push_back(o);
        if (r == ncclSuccess)
            r = issue_p2p(c, mine);
        comms.push_back(c);
    }
    if (r != ncclSuccess)
        return r;
    for (ncclComm_t c : comms)
        if (!c->blocking)
            return ncclInProgress;
    return ncclSuccess;
}
