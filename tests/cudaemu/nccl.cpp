/* tests/cudaemu/nccl.cpp - the emulated NCCL.
 *
 * A communicator has a rank, a size, a device and a Transport that moves
 * bytes between ranks. Each call checks its arguments as NCCL does
 * (ncclInvalidArgument: null or non-device buffers, bad root/peer, bad
 * type/op; ncclInvalidUsage: a call on an aborted communicator), then
 * queues its work on the caller's stream. Collectives are written in terms
 * of the transport's primitives, so that a multi-rank transport (threads or
 * processes, issue 12) plugs in without touching them; this file has the
 * single-rank one, where every peer is the caller.
 *
 * Non-blocking communicators (config.blocking = 0) return ncclInProgress
 * from init, collectives and ncclGroupEnd; ncclCommGetAsyncError reports
 * ncclSuccess once the host-side work is done (here: at once). Calls
 * between ncclGroupStart and ncclGroupEnd are collected and issued at the
 * outermost ncclGroupEnd, where sends are matched with receives. */
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "internal.hpp"
#include "nccl.h"

extern "C" void gpuml_emu_device_fault(const char *what);

namespace {

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

/* What moves data between ranks. Every call happens inside a stream
 * operation of the calling rank; peer is a rank of the communicator. */
struct Transport {
    virtual ~Transport() = default;
    /* Rank 'peer' sends n bytes to this rank: copy them into dst. */
    virtual void recv_from(int peer, const void *src_if_self, void *dst, size_t n) = 0;
};

/* One rank: the only peer is the caller. */
struct SelfTransport : Transport {
    void recv_from(int, const void *src, void *dst, size_t n) override { memmove(dst, src, n); }
};

} // namespace

struct ncclComm {
    int rank = 0, nranks = 1, device = 0;
    bool blocking = true, aborted = false;
    ncclResult_t async = ncclSuccess;
    std::string last_error;
    Transport *t = nullptr;
};

namespace {

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

ncclResult_t fail(ncclComm_t c, ncclResult_t r, const char *what)
{
    if (c)
        c->last_error = what;
    return r;
}

ncclResult_t done(ncclComm_t c)
{
    if (!c->blocking) {
        c->async = ncclSuccess;
        return ncclInProgress;
    }
    return ncclSuccess;
}

ncclResult_t check_comm(ncclComm_t c)
{
    if (!c)
        return ncclInvalidArgument;
    if (c->aborted)
        return fail(c, ncclInvalidUsage, "communicator was aborted");
    return ncclSuccess;
}

bool dev_ok(ncclComm_t c, const void *p, size_t n) { return n == 0 || emu::in_alloc(p, n, c->device, false); }

ncclResult_t enqueue(ncclComm_t c, cudaStream_t s, std::function<void()> fn)
{
    emu::StreamP sp;
    if (emu::resolve_stream(s, &sp) != cudaSuccess || sp->device != c->device)
        return fail(c, ncclInvalidArgument, "stream is not a stream of the communicator's device");
    emu::submit(sp, std::move(fn));
    return ncclSuccess;
}

/* Element-wise reduction of one contribution into acc (single rank: the
 * result is the contribution; avg divides by nranks). */
template <class T> void reduce_into(T *acc, const T *in, size_t n, ncclRedOp_t op, int nranks, bool first)
{
    for (size_t i = 0; i < n; i++) {
        T v = in[i];
        if (first)
            acc[i] = v;
        else if (op == ncclSum || op == ncclAvg)
            acc[i] = acc[i] + v;
        else if (op == ncclProd)
            acc[i] = acc[i] * v;
        else if (op == ncclMax)
            acc[i] = v > acc[i] ? v : acc[i];
        else
            acc[i] = v < acc[i] ? v : acc[i];
    }
    if (op == ncclAvg && !first)
        (void)nranks;
}

void finish_avg(void *buf, size_t n, ncclDataType_t t, int nranks)
{
    if (nranks == 1)
        return;
    for (size_t i = 0; i < n; i++) {
        if (t == ncclFloat32)
            ((float *)buf)[i] /= (float)nranks;
        else if (t == ncclFloat64)
            ((double *)buf)[i] /= (double)nranks;
    }
}

void reduce_typed(void *acc, const void *in, size_t n, ncclDataType_t t, ncclRedOp_t op, int nranks, bool first)
{
    switch (t) {
    case ncclInt8: reduce_into((int8_t *)acc, (const int8_t *)in, n, op, nranks, first); break;
    case ncclUint8: reduce_into((uint8_t *)acc, (const uint8_t *)in, n, op, nranks, first); break;
    case ncclInt32: reduce_into((int32_t *)acc, (const int32_t *)in, n, op, nranks, first); break;
    case ncclUint32: reduce_into((uint32_t *)acc, (const uint32_t *)in, n, op, nranks, first); break;
    case ncclInt64: reduce_into((int64_t *)acc, (const int64_t *)in, n, op, nranks, first); break;
    case ncclUint64: reduce_into((uint64_t *)acc, (const uint64_t *)in, n, op, nranks, first); break;
    case ncclFloat32: reduce_into((float *)acc, (const float *)in, n, op, nranks, first); break;
    case ncclFloat64: reduce_into((double *)acc, (const double *)in, n, op, nranks, first); break;
    default: memmove(acc, in, n * type_size(t)); break; /* 16-bit floats: single rank copies */
    }
}

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
    std::random_device rd;
    for (size_t i = 0; i < sizeof id->internal; i++)
        id->internal[i] = (char)(rd() & 0xff);
    return ncclSuccess;
}

EMU_API ncclResult_t ncclCommInitRankConfig(ncclComm_t *out, int nranks, ncclUniqueId id, int rank,
                                            ncclConfig_t *config)
{
    (void)id;
    if (!out)
        return ncclInvalidArgument;
    *out = nullptr;
    if (nranks < 1 || rank < 0 || rank >= nranks)
        return ncclInvalidArgument;
    if (config && (config->magic != 0xcafebeef || config->size != sizeof(ncclConfig_t)))
        return ncclInvalidArgument;
    if (nranks > 1) /* multi-rank transports: issue 12 */
        return ncclInvalidUsage;
    ncclComm_t c = new ncclComm;
    c->rank = rank;
    c->nranks = nranks;
    c->device = emu::current_device();
    c->blocking = !config || config->blocking == NCCL_CONFIG_UNDEF_INT || config->blocking != 0;
    c->t = new SelfTransport;
    *out = c;
    return done(c);
}

EMU_API ncclResult_t ncclCommInitRank(ncclComm_t *out, int nranks, ncclUniqueId id, int rank)
{
    return ncclCommInitRankConfig(out, nranks, id, rank, nullptr);
}

EMU_API ncclResult_t ncclCommFinalize(ncclComm_t c)
{
    if (ncclResult_t e = check_comm(c))
        return e;
    return done(c);
}

EMU_API ncclResult_t ncclCommDestroy(ncclComm_t c)
{
    if (!c)
        return ncclInvalidArgument;
    delete c->t;
    delete c;
    return ncclSuccess;
}

EMU_API ncclResult_t ncclCommAbort(ncclComm_t c)
{
    if (!c)
        return ncclSuccess;
    c->aborted = true;
    delete c->t;
    delete c;
    return ncclSuccess;
}

EMU_API ncclResult_t ncclCommGetAsyncError(ncclComm_t c, ncclResult_t *err)
{
    if (!c || !err)
        return ncclInvalidArgument;
    *err = c->async;
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

EMU_API const char *ncclGetLastError(ncclComm_t c) { return c ? c->last_error.c_str() : ""; }

EMU_API ncclResult_t ncclAllReduce(const void *s, void *r, size_t n, ncclDataType_t t, ncclRedOp_t op, ncclComm_t c,
                                   cudaStream_t st)
{
    size_t b = n * type_size(t);
    if (ncclResult_t e = check_coll(c, s, b, r, b, t, (int)op))
        return e;
    return issue(c, [=] {
        return enqueue(c, st, [=] {
            /* every rank's contribution in rank order; one rank here */
            for (int q = 0; q < c->nranks; q++)
                reduce_typed(r, s, n, t, op, c->nranks, q == 0);
            if (op == ncclAvg)
                finish_avg(r, n, t, c->nranks);
        });
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
        return enqueue(c, st, [=] {
            if (c->rank == root) {
                reduce_typed(r, s, n, t, op, c->nranks, true);
                if (op == ncclAvg)
                    finish_avg(r, n, t, c->nranks);
            }
        });
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
    return issue(c, [=] { return enqueue(c, st, [=] { c->t->recv_from(root, s, r, b); }); });
}

EMU_API ncclResult_t ncclAllGather(const void *s, void *r, size_t n, ncclDataType_t t, ncclComm_t c,
                                   cudaStream_t st)
{
    size_t b = n * type_size(t);
    if (ncclResult_t e = check_coll(c, s, b, r, c ? b * (size_t)c->nranks : 0, t, -1))
        return e;
    return issue(c, [=] {
        return enqueue(c, st, [=] {
            for (int q = 0; q < c->nranks; q++)
                c->t->recv_from(q, s, (char *)r + (size_t)q * b, b);
        });
    });
}

EMU_API ncclResult_t ncclReduceScatter(const void *s, void *r, size_t n, ncclDataType_t t, ncclRedOp_t op,
                                       ncclComm_t c, cudaStream_t st)
{
    size_t b = n * type_size(t);
    if (ncclResult_t e = check_coll(c, s, c ? b * (size_t)c->nranks : 0, r, b, t, (int)op))
        return e;
    return issue(c, [=] {
        return enqueue(c, st, [=] {
            const char *mine = (const char *)s + (size_t)c->rank * b;
            for (int q = 0; q < c->nranks; q++)
                reduce_typed(r, mine, n, t, op, c->nranks, q == 0);
            if (op == ncclAvg)
                finish_avg(r, n, t, c->nranks);
        });
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
    for (auto &f : colls)
        if (r == ncclSuccess)
            r = f();
    /* Point-to-point: the k-th send to a peer pairs with that peer's k-th
     * receive from us. Single rank: sends to self with receives from self. */
    std::vector<size_t> sends, recvs;
    for (size_t i = 0; i < ops.size(); i++)
        (ops[i].send ? sends : recvs).push_back(i);
    if (r == ncclSuccess && sends.size() != recvs.size())
        r = ncclInvalidUsage; /* a send or receive with no partner would hang; one rank can tell */
    for (size_t k = 0; k < sends.size() && r == ncclSuccess; k++) {
        const P2P &s = ops[sends[k]], &q = ops[recvs[k]];
        comms.push_back(s.comm);
        if (s.bytes != q.bytes || s.comm != q.comm) {
            r = fail(s.comm, ncclInvalidArgument, "send and receive sizes differ");
            break;
        }
        ncclComm_t c = s.comm;
        const void *src = s.sbuf;
        void *dst = q.rbuf;
        size_t n = s.bytes;
        int peer = q.peer;
        /* both sides' streams: the receive waits for the sender's stream */
        if (s.stream != q.stream) {
            cudaEvent_t ev;
            cudaEventCreateWithFlags(&ev, cudaEventDisableTiming);
            cudaEventRecord(ev, s.stream);
            cudaStreamWaitEvent(q.stream, ev, 0);
            cudaEventDestroy(ev);
        }
        r = enqueue(c, q.stream, [c, src, dst, n, peer] { c->t->recv_from(peer, src, dst, n); });
    }
    if (r != ncclSuccess)
        return r;
    bool nonblocking = false;
    for (ncclComm_t c : comms)
        if (!c->blocking) {
            c->async = ncclSuccess;
            nonblocking = true;
        }
    return nonblocking ? ncclInProgress : ncclSuccess;
}
