/* NCCL backend: CUDA tensors. The communicator is non-blocking (config
 * blocking = 0): every NCCL call may return ncclInProgress and is settled by
 * polling ncclCommGetAsyncError with the deadline, and a stall ends in
 * ncclCommAbort, which also stops kernels waiting for a dead peer.
 *
 * Collectives run on the communicator's own stream, after the work already
 * on the caller's stream (an event recorded there), and end with an event
 * that gpuml_nccl_poll queries. Deterministic f32 SUM/AVG all-reduce and
 * reduce-scatter use the same rank-order sum as the MPI path: grouped
 * send/recv of chunks, gpuml_reduce on [size, chunk] (double accumulator,
 * the same kernel body as on the CPU), all-gather.
 *
 * Every entry point selects the communicator's device and restores the
 * caller's current device.
 *
 * libnccl is not linked: it is opened when the first communicator (or
 * unique id) is made, and its functions are called through the table in
 * the communicator's state (core/dynlib.h says why: PyTorch ships its own,
 * newer libnccl.so.2, and must not find ours loaded first). */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cuda_runtime_api.h>

#include "core/cuda_guard.h"
#include "core/dynlib.h"
#include "core/runtime.h"
/* nccl.h declares ncclGroupStart() etc. without (void). Only its types and
 * constants are used: the functions come from dlopen (nccl_api below). */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wstrict-prototypes"
#include <nccl.h>
#pragma GCC diagnostic pop

#include "dist/dist_internal.h"
#include "dist/rendezvous.h"

/* The NCCL functions gpuml calls: (name without "nccl", return, arguments). */
#define GPUML_NCCL_FUNCS(X)                                                                                          \
    X(GetUniqueId, ncclResult_t, (ncclUniqueId *))                                                                   \
    X(CommInitRankConfig, ncclResult_t, (ncclComm_t *, int, ncclUniqueId, int, ncclConfig_t *))                      \
    X(CommFinalize, ncclResult_t, (ncclComm_t))                                                                      \
    X(CommDestroy, ncclResult_t, (ncclComm_t))                                                                       \
    X(CommAbort, ncclResult_t, (ncclComm_t))                                                                         \
    X(GetErrorString, const char *, (ncclResult_t))                                                                  \
    X(GetLastError, const char *, (ncclComm_t))                                                                      \
    X(CommGetAsyncError, ncclResult_t, (ncclComm_t, ncclResult_t *))                                                 \
    X(Reduce, ncclResult_t, (const void *, void *, size_t, ncclDataType_t, ncclRedOp_t, int, ncclComm_t, cudaStream_t)) \
    X(Broadcast, ncclResult_t, (const void *, void *, size_t, ncclDataType_t, int, ncclComm_t, cudaStream_t))         \
    X(AllReduce, ncclResult_t, (const void *, void *, size_t, ncclDataType_t, ncclRedOp_t, ncclComm_t, cudaStream_t)) \
    X(ReduceScatter, ncclResult_t,                                                                                   \
      (const void *, void *, size_t, ncclDataType_t, ncclRedOp_t, ncclComm_t, cudaStream_t))                          \
    X(AllGather, ncclResult_t, (const void *, void *, size_t, ncclDataType_t, ncclComm_t, cudaStream_t))             \
    X(Send, ncclResult_t, (const void *, size_t, ncclDataType_t, int, ncclComm_t, cudaStream_t))                     \
    X(Recv, ncclResult_t, (void *, size_t, ncclDataType_t, int, ncclComm_t, cudaStream_t))                           \
    X(GroupStart, ncclResult_t, (void))                                                                              \
    X(GroupEnd, ncclResult_t, (void))

typedef struct nccl_api {
#define GPUML_NCCL_FIELD(name, ret, args) ret(*name) args;
    GPUML_NCCL_FUNCS(GPUML_NCCL_FIELD)
#undef GPUML_NCCL_FIELD
} nccl_api;

/* The library's file name: GPUML_NCCL_LIBRARY at run time, else the build's
 * (meson variable nccl_soname; the emulated CUDA build names its shim). */
#ifndef GPUML_NCCL_SONAME
#define GPUML_NCCL_SONAME "libnccl.so.2"
#endif

/* Fill api from libnccl. GPUML_ERR_UNSUPPORTED when it cannot be loaded. */
static gpuml_status nccl_api_load(nccl_api *api, const char *fn)
{
#define GPUML_NCCL_NAME(name, ret, args) "nccl" #name,
    static const char *const names[] = {GPUML_NCCL_FUNCS(GPUML_NCCL_NAME)};
#undef GPUML_NCCL_NAME
    enum { N = sizeof names / sizeof names[0] };
    void *fns[N];
    GPUML_TRY(gpuml_dynlib_load("NCCL", "GPUML_NCCL_LIBRARY", GPUML_NCCL_SONAME, names, fns, N, fn));
    /* dlsym gives object pointers; POSIX guarantees they convert. */
    _Static_assert(sizeof(nccl_api) == sizeof fns, "nccl_api holds exactly the listed functions");
    memcpy(api, fns, sizeof fns);
    return GPUML_OK;
}

struct gpuml_nccl_state {
    nccl_api api;
    ncclComm_t nc;
    cudaStream_t stream;
    gpuml_ctx *ictx; /* on the communicator's device and stream: scratch, the rank-order sum */
    int device;
    bool aborted;
    void *barrier_buf; /* one i32 for a barrier without MPI */
    int64_t *work;     /* 5 x size entries: per-rank splits and counts */
};

typedef struct nccl_req {
    void *ready, *done; /* CUDA events */
    int device;
    bool have_events;
} nccl_req;

static const char *nccl_text(const nccl_api *api, ncclComm_t nc, ncclResult_t r, char *buf, size_t n)
{
    const char *detail = nc ? api->GetLastError(nc) : NULL;
    snprintf(buf, n, "%s (NCCL %d)%s%s", api->GetErrorString(r), (int)r, detail && *detail ? ": " : "",
             detail ? detail : "");
    return buf;
}

/* An NCCL call on a non-blocking communicator returns ncclInProgress until
 * its host-side work is done; wait for that, at most timeout_s. */
static ncclResult_t settle(const gpuml_nccl_state *s, ncclResult_t r, double timeout_s, bool *timed_out)
{
    ncclComm_t nc = s->nc;
    *timed_out = false;
    double t0 = gpuml_clock_s();
    while (r == ncclInProgress) {
        ncclResult_t async = ncclSuccess;
        ncclResult_t q = s->api.CommGetAsyncError(nc, &async);
        if (q != ncclSuccess)
            return q;
        r = async;
        if (r != ncclInProgress)
            break;
        double waited = gpuml_clock_s() - t0;
        if (waited >= timeout_s) {
            *timed_out = true;
            break;
        }
        gpuml_dist_backoff(waited);
    }
    return r;
}

static ncclDataType_t nccl_type(gpuml_dtype dt, bool bytes)
{
    if (bytes)
        return ncclUint8;
    switch (dt) {
    case GPUML_F32: return ncclFloat32;
    case GPUML_F64: return ncclFloat64;
    case GPUML_I32: return ncclInt32;
    case GPUML_I64: return ncclInt64;
    case GPUML_F16: return ncclFloat16;
    case GPUML_BF16: return ncclBfloat16;
    default: return ncclUint8;
    }
}

static ncclRedOp_t nccl_op(gpuml_comm_op op)
{
    switch (op) {
    case GPUML_COMM_AVG: return ncclAvg;
    case GPUML_COMM_MAX: return ncclMax;
    case GPUML_COMM_MIN: return ncclMin;
    default: return ncclSum;
    }
}

gpuml_status gpuml_nccl_unique_id_bytes(unsigned char id[128], const char *fn)
{
    nccl_api api;
    GPUML_TRY(nccl_api_load(&api, fn));
    ncclUniqueId uid;
    ncclResult_t r = api.GetUniqueId(&uid);
    if (r != ncclSuccess) {
        char t[512];
        return gpuml_fail(NULL, GPUML_ERR_NCCL, fn, "ncclGetUniqueId failed: %s",
                          nccl_text(&api, NULL, r, t, sizeof t));
    }
    memcpy(id, uid.internal, sizeof uid.internal < 128 ? sizeof uid.internal : 128);
    return GPUML_OK;
}

/* ---- creation ------------------------------------------------------------ */

static gpuml_status get_id(gpuml_comm *comm, const gpuml_comm_config *cfg, ncclUniqueId *uid, const char *fn)
{
    char err[512];
    memset(uid, 0, sizeof *uid);
    switch (cfg->bootstrap) {
    case GPUML_BOOTSTRAP_MPI: {
#if GPUML_HAVE_MPI
        /* Rank 0's status travels with the id, so that a failure there is
         * an error everywhere, not a timeout. */
        struct {
            int32_t status;
            unsigned char id[NCCL_UNIQUE_ID_BYTES];
        } msg;
        memset(&msg, 0, sizeof msg);
        if (comm->rank == 0)
            msg.status = (int32_t)gpuml_nccl_unique_id_bytes(msg.id, fn);
        GPUML_TRY(gpuml_mpi_bcast_bytes(comm, &msg, (int)sizeof msg, fn));
        if (msg.status != GPUML_OK)
            return comm->rank == 0 ? (gpuml_status)msg.status
                                   : gpuml_fail(NULL, (gpuml_status)msg.status, fn,
                                                "rank 0 could not create the NCCL id (see its error)");
        memcpy(uid->internal, msg.id, NCCL_UNIQUE_ID_BYTES);
        return GPUML_OK;
#else
        return gpuml_fail(NULL, GPUML_ERR_UNSUPPORTED, fn, "GPUML_BOOTSTRAP_MPI needs MPI");
#endif
    }
    case GPUML_BOOTSTRAP_FILE: {
        char tag[256];
        if (cfg->bootstrap_tag)
            snprintf(tag, sizeof tag, "%s", cfg->bootstrap_tag);
        else
            gpuml_rdv_default_tag(tag, sizeof tag);
        unsigned char id[NCCL_UNIQUE_ID_BYTES];
        if (comm->rank == 0) {
            GPUML_TRY(gpuml_nccl_unique_id_bytes(id, fn));
            if (gpuml_rdv_file_publish(cfg->bootstrap_path, tag, id, sizeof id, err, sizeof err) != 0)
                return gpuml_fail(NULL, GPUML_ERR_IO, fn, "publishing the NCCL id: %s", err);
        } else {
            int r = gpuml_rdv_file_wait(cfg->bootstrap_path, tag, id, sizeof id, comm->timeout_s, err, sizeof err);
            if (r != 0)
                return gpuml_fail(NULL, r == GPUML_RDV_TIMEOUT ? GPUML_ERR_TIMEOUT : GPUML_ERR_IO, fn, "%s", err);
        }
        memcpy(uid->internal, id, sizeof id);
        return GPUML_OK;
    }
    case GPUML_BOOTSTRAP_ENV:
    default: {
        const char *name = cfg->bootstrap_env ? cfg->bootstrap_env : "GPUML_NCCL_ID";
        const char *v = getenv(name);
        unsigned char id[NCCL_UNIQUE_ID_BYTES];
        if (!v)
            return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn,
                              "environment variable %s is not set (it must hold gpuml_comm_nccl_unique_id's 256 hex "
                              "digits, the same on every rank)", name);
        if (gpuml_rdv_hex_decode(v, id, sizeof id) != 0)
            return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn,
                              "environment variable %s is not %d hex digits", name, 2 * NCCL_UNIQUE_ID_BYTES);
        memcpy(uid->internal, id, sizeof id);
        return GPUML_OK;
    }
    }
}

static void state_free(gpuml_nccl_state *s)
{
    if (s->ictx) {
        if (s->barrier_buf)
            gpuml_scratch_free(s->ictx, s->barrier_buf, sizeof(int32_t));
        gpuml_ctx_destroy(s->ictx); /* synchronises the stream */
    }
    if (s->stream)
        gpuml_cuda_rt_stream_destroy(s->device, s->stream);
    free(s->work);
    free(s);
}

gpuml_status gpuml_nccl_create(gpuml_comm *comm, const gpuml_comm_config *cfg, const char *fn)
{
    int count = gpuml_cuda_device_count();
    int dev = cfg->device >= 0 ? cfg->device : (count > 0 ? comm->local_rank % count : 0);
    if (count <= 0 || dev >= count)
        return gpuml_fail(NULL, GPUML_ERR_NO_DEVICE, fn, "CUDA device %d requested (local rank %d) but %d are visible",
                          dev, comm->local_rank, count);
    comm->device.type = GPUML_DEVICE_CUDA;
    comm->device.index = dev;

    /* Load the library before the rendezvous: a rank without NCCL fails
     * at once instead of leaving its peers to time out. */
    nccl_api api;
    GPUML_TRY(nccl_api_load(&api, fn));
    ncclUniqueId uid;
    GPUML_TRY(get_id(comm, cfg, &uid, fn));

    gpuml_nccl_state *s = calloc(1, sizeof *s);
    if (!s)
        return gpuml_fail(NULL, GPUML_ERR_OUT_OF_MEMORY, fn, "cannot allocate the NCCL state");
    s->api = api;
    s->device = dev;
    s->work = calloc((size_t)5 * (size_t)comm->size, sizeof(int64_t));
    if (!s->work) {
        free(s);
        return gpuml_fail(NULL, GPUML_ERR_OUT_OF_MEMORY, fn, "cannot allocate the NCCL state");
    }
    gpuml_device_guard g;
    cudaError_t ce = gpuml_guard_enter(&g, dev);
    if (ce != cudaSuccess) {
        free(s->work);
        free(s);
        return gpuml_fail(NULL, GPUML_ERR_CUDA, fn, "cudaSetDevice(%d) failed: %s", dev, cudaGetErrorString(ce));
    }
    gpuml_status st = GPUML_OK;
    char t[512];
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    config.blocking = 0;
    bool timed_out = false;
    ncclResult_t r = s->api.CommInitRankConfig(&s->nc, comm->size, uid, comm->rank, &config);
    r = settle(s, r, comm->timeout_s, &timed_out);
    if (timed_out) {
        s->api.CommAbort(s->nc);
        s->nc = NULL;
        st = gpuml_fail(NULL, GPUML_ERR_TIMEOUT, fn, "ncclCommInitRankConfig did not complete within %.3g s: not every "
                        "rank arrived", comm->timeout_s);
    } else if (r != ncclSuccess) {
        st = gpuml_fail(NULL, GPUML_ERR_NCCL, fn, "ncclCommInitRankConfig (rank %d of %d, device %d) failed: %s",
                        comm->rank, comm->size, dev, nccl_text(&s->api, s->nc, r, t, sizeof t));
        if (s->nc)
            s->api.CommAbort(s->nc);
        s->nc = NULL;
    }
    if (st == GPUML_OK) {
        void *stream = NULL;
        st = gpuml_cuda_rt_stream_create(dev, &stream, fn);
        s->stream = (cudaStream_t)stream;
    }
    if (st == GPUML_OK) {
        gpuml_ctx_config cc;
        gpuml_ctx_config_init_defaults(&cc);
        cc.device.type = GPUML_DEVICE_CUDA;
        cc.device.index = dev;
        cc.stream = s->stream;
        cc.log_fn = cfg->log_fn;
        cc.log_user = cfg->log_user;
        cc.log_level = cfg->log_level;
        st = gpuml_ctx_create(&cc, &s->ictx);
    }
    if (st == GPUML_OK)
        st = gpuml_scratch_alloc(s->ictx, sizeof(int32_t), &s->barrier_buf, fn);
    if (st == GPUML_OK)
        st = gpuml_memzero(s->ictx, s->barrier_buf, sizeof(int32_t), fn);
    gpuml_guard_leave(&g);
    if (st != GPUML_OK) {
        if (s->nc)
            s->api.CommAbort(s->nc);
        state_free(s);
        return st;
    }
    /* Initialisation completes only when every rank has joined, so every
     * rank has read the id file: remove it, so no later job can pick it up. */
    if (cfg->bootstrap == GPUML_BOOTSTRAP_FILE && comm->rank == 0)
        unlink(cfg->bootstrap_path);
    static const gpuml_dist_backend_i nccl_i = {
        .poll = gpuml_nccl_poll,
        .stop_work = gpuml_nccl_abort,
        .req_free = gpuml_nccl_req_free,
    };
    comm->nccl = s;
    comm->nccl_i = &nccl_i;
    return GPUML_OK;
}

void gpuml_nccl_abort(gpuml_comm *comm)
{
    gpuml_nccl_state *s = comm->nccl;
    if (!s || s->aborted)
        return;
    gpuml_device_guard g;
    gpuml_guard_enter(&g, s->device);
    s->api.CommAbort(s->nc);
    gpuml_guard_leave(&g);
    s->aborted = true;
    s->nc = NULL;
}

void gpuml_nccl_destroy(gpuml_comm *comm)
{
    gpuml_nccl_state *s = comm->nccl;
    if (!s)
        return;
    gpuml_device_guard g;
    gpuml_guard_enter(&g, s->device);
    if (!s->aborted) {
        /* Finalize waits for the communicator's outstanding work; if that
         * stalls, abort instead of hanging here. */
        bool timed_out = false;
        ncclResult_t r = settle(s, s->api.CommFinalize(s->nc), comm->timeout_s, &timed_out);
        if (timed_out || r != ncclSuccess)
            s->api.CommAbort(s->nc);
        else
            s->api.CommDestroy(s->nc);
        s->nc = NULL;
    }
    gpuml_guard_leave(&g);
    state_free(s);
    comm->nccl = NULL;
}

/* ---- collectives --------------------------------------------------------- */

void gpuml_nccl_req_free(gpuml_comm_request *req)
{
    nccl_req *nr = req->bs;
    if (nr && nr->have_events) {
        gpuml_cuda_rt_event_release(nr->device, nr->ready); /* a failed collective's may never complete */
        gpuml_cuda_rt_event_release(nr->device, nr->done);
    }
    free(nr);
    req->bs = NULL;
}

static void fail_nccl(gpuml_comm *comm, gpuml_comm_request *req, ncclResult_t r, bool timed_out, const char *what)
{
    char t[512];
    if (timed_out)
        gpuml_comm_break(comm, GPUML_ERR_TIMEOUT, true, "rank %d: %s (%s) did not return within %.3g s", comm->rank,
                         what, gpuml_coll_kind_name(req->c.kind), comm->timeout_s);
    else
        gpuml_comm_break(comm, GPUML_ERR_NCCL, true, "rank %d: %s (%s) failed: %s", comm->rank, what,
                         gpuml_coll_kind_name(req->c.kind), nccl_text(&comm->nccl->api, comm->nccl->nc, r, t, sizeof t));
}

/* Rank-order f32 sum: chunk q of the balanced split is summed on rank q,
 * then gathered (all-reduce) or left there (reduce-scatter). out may be in. */
static ncclResult_t det_sum(gpuml_comm *comm, gpuml_comm_request *req, bool *timed_out, gpuml_status *st)
{
    gpuml_nccl_state *s = comm->nccl;
    const gpuml_coll *c = &req->c;
    int n = comm->size, me = comm->rank;
    bool scatter = c->kind == COLL_REDUCE_SCATTER;
    int64_t total = c->in_rows * c->row_elems;
    int64_t unit = scatter ? c->row_elems : 1, units = scatter ? c->in_rows : total;
    int64_t *start = s->work, *len = s->work + n; /* balanced split, as on the MPI path */
    float *A = NULL;
    size_t a_bytes;
    for (int q = 0; q < n; q++) {
        gpuml_dist_split(units, n, q, &start[q], &len[q]);
        start[q] *= unit;
        len[q] *= unit;
    }
    int64_t my_len = len[me];
    a_bytes = (size_t)n * (size_t)my_len * sizeof(float);
    if (a_bytes && (*st = gpuml_scratch_alloc(s->ictx, a_bytes, (void **)&A, req->fn)) != GPUML_OK)
        return ncclSuccess;
    ncclResult_t r = s->api.GroupStart();
    for (int q = 0; q < n && r == ncclSuccess; q++) {
        if (len[q] > 0)
            r = s->api.Send((const float *)c->in + start[q], (size_t)len[q], ncclFloat32, q, s->nc, s->stream);
        if (r == ncclSuccess && my_len > 0)
            r = s->api.Recv(A + (size_t)q * (size_t)my_len, (size_t)my_len, ncclFloat32, q, s->nc, s->stream);
    }
    ncclResult_t r2 = s->api.GroupEnd();
    r = settle(s, r != ncclSuccess ? r : r2, comm->timeout_s, timed_out);
    if (r != ncclSuccess || *timed_out)
        return r;
    float *dst = scatter ? (float *)c->out : (float *)c->out + start[me];
    if (my_len > 0) {
        *st = gpuml_dist_rank_sum(s->ictx, req->fn, GPUML_F32, c->op, A, n, my_len, dst);
        gpuml_scratch_free(s->ictx, A, a_bytes); /* stream-ordered: later users run after the sum */
        if (*st != GPUML_OK)
            return ncclSuccess;
    }
    if (scatter)
        return ncclSuccess;
    /* Gather the reduced chunks (sizes differ by one unit at most): grouped
     * broadcasts from each owner, in place in out. */
    r = s->api.GroupStart();
    for (int q = 0; q < n && r == ncclSuccess; q++)
        if (len[q] > 0)
            r = s->api.Broadcast((float *)c->out + start[q], (float *)c->out + start[q], (size_t)len[q], ncclFloat32, q,
                              s->nc, s->stream);
    r2 = s->api.GroupEnd();
    return settle(s, r != ncclSuccess ? r : r2, comm->timeout_s, timed_out);
}

/* Row counts of an uneven all-gather, agreed over MPI. Returns false when
 * req was finished. */
static bool gather_counts(gpuml_comm *comm, gpuml_comm_request *req, int64_t *cnt)
{
    const gpuml_coll *c = &req->c;
    int n = comm->size;
    if (!comm->mpi) {
        for (int q = 0; q < n; q++)
            cnt[q] = c->in_rows * c->row_elems; /* equal counts, checked locally */
        return true;
    }
#if GPUML_HAVE_MPI
    int64_t mine[3] = {c->in_rows, c->out_rows, c->row_elems};
    int64_t *all = comm->nccl->work + 2 * n; /* 3 x size */
    gpuml_status st = gpuml_mpi_allgather_i64(comm, mine, 3, all, req->fn);
    if (st != GPUML_OK) {
        gpuml_comm_break(comm, st, true, "%s", gpuml_last_error());
        return false;
    }
    int64_t total = 0;
    for (int q = 0; q < n; q++)
        total += all[3 * q];
    for (int q = 0; q < n; q++) {
        if (all[3 * q + 2] != all[2] || all[3 * q + 1] != total) {
            gpuml_req_finish(req, GPUML_ERR_SHAPE, "allgather: rank %d passed rows of %lld elements and an 'out' of "
                             "%lld rows; expected rows of %lld and %lld rows", q, (long long)all[3 * q + 2],
                             (long long)all[3 * q + 1], (long long)all[2], (long long)total);
            return false;
        }
        cnt[q] = all[3 * q] * c->row_elems;
    }
#endif
    return true;
}

void gpuml_nccl_start(gpuml_comm *comm, gpuml_comm_request *req)
{
    gpuml_nccl_state *s = comm->nccl;
    const gpuml_coll *c = &req->c;
    if (s->aborted) {
        gpuml_req_finish(req, GPUML_ERR_STATE, "the NCCL communicator was aborted");
        return;
    }
    if (gpuml_coll_is_det(comm, c) && c->dtype != GPUML_F32) {
        gpuml_req_finish(req, GPUML_ERR_UNSUPPORTED, "the deterministic NCCL sum takes f32 only (got %s); set "
                         "cfg.deterministic = 0 for NCCL's own order", gpuml_dtype_name(c->dtype));
        return;
    }
    gpuml_req_claim_bs(req, GPUML_BS_NCCL);
    nccl_req *nr = req->bs;
    if (!nr) {
        nr = calloc(1, sizeof *nr);
        if (!nr) {
            gpuml_req_finish(req, GPUML_ERR_OUT_OF_MEMORY, "cannot allocate the request state");
            return;
        }
        req->bs = nr;
    }
    int64_t *cnt = s->work; /* all-gather: per-rank element counts (det_sum is not used then) */
    if (c->kind == COLL_ALLGATHER && !gather_counts(comm, req, cnt))
        return;
    static const char rfn[] = "gpuml_comm (NCCL)";
    gpuml_status est = GPUML_OK;
    if (!nr->have_events) {
        nr->device = s->device;
        est = gpuml_cuda_rt_event_create(s->device, 0, &nr->ready, rfn);
        if (est == GPUML_OK) {
            est = gpuml_cuda_rt_event_create(s->device, 0, &nr->done, rfn);
            if (est != GPUML_OK)
                gpuml_cuda_rt_event_release(s->device, nr->ready);
        }
        nr->have_events = est == GPUML_OK;
    }
    /* After the producer's work on the caller's stream. */
    if (est == GPUML_OK && req->ctx)
        est = gpuml_cuda_rt_event_record(s->device, nr->ready, req->ctx->stream, rfn);
    if (est == GPUML_OK && req->ctx)
        est = gpuml_cuda_rt_stream_wait(s->device, s->stream, nr->ready, rfn);
    if (est != GPUML_OK) {
        gpuml_comm_break(comm, est, true, "rank %d: ordering the collective after the caller's stream: %s",
                         comm->rank, gpuml_last_error());
        return;
    }
    gpuml_device_guard g; /* NCCL enqueues on the current device */
    cudaError_t ce = gpuml_guard_enter(&g, s->device);
    if (ce != cudaSuccess) {
        gpuml_comm_break(comm, GPUML_ERR_CUDA, true, "rank %d: selecting CUDA device %d failed: %s", comm->rank,
                         s->device, cudaGetErrorString(ce));
        return;
    }
    int64_t count = c->in_rows * c->row_elems;
    size_t bytes = (size_t)count * c->esize;
    ncclDataType_t t = nccl_type(c->dtype, false);
    ncclResult_t r = ncclSuccess;
    bool timed_out = false;
    gpuml_status st = GPUML_OK;
    switch (c->kind) {
    case COLL_ALLREDUCE:
        if (count == 0)
            break;
        if (gpuml_coll_is_det(comm, c))
            r = det_sum(comm, req, &timed_out, &st);
        else
            r = settle(s, s->api.AllReduce(c->in, c->out, (size_t)count, t, nccl_op(c->op), s->nc, s->stream),
                       comm->timeout_s, &timed_out);
        break;
    case COLL_BROADCAST:
        if (bytes)
            r = settle(s, s->api.Broadcast(c->out, c->out, bytes, ncclUint8, c->root, s->nc, s->stream),
                       comm->timeout_s, &timed_out);
        break;
    case COLL_ALLGATHER: {
        bool even = true;
        for (int q = 1; q < comm->size; q++)
            even &= cnt[q] == cnt[0];
        if (even && cnt[0] > 0) {
            r = s->api.AllGather(c->in, c->out, (size_t)cnt[0] * c->esize, ncclUint8, s->nc, s->stream);
        } else if (!even) {
            r = s->api.GroupStart();
            int64_t off = 0;
            for (int q = 0; q < comm->size && r == ncclSuccess; q++) {
                char *dst = (char *)c->out + (size_t)off * c->esize;
                if (cnt[q] > 0)
                    r = s->api.Broadcast(q == comm->rank ? c->in : dst, dst, (size_t)cnt[q] * c->esize, ncclUint8, q,
                                      s->nc, s->stream);
                off += cnt[q];
            }
            ncclResult_t r2 = s->api.GroupEnd();
            r = r != ncclSuccess ? r : r2;
        }
        r = settle(s, r, comm->timeout_s, &timed_out);
        break;
    }
    case COLL_REDUCE_SCATTER:
        if (count == 0)
            break;
        if (gpuml_coll_is_det(comm, c)) {
            r = det_sum(comm, req, &timed_out, &st);
        } else if (c->in_rows % comm->size == 0) {
            r = settle(s, s->api.ReduceScatter(c->in, c->out, (size_t)(c->out_rows * c->row_elems), t,
                                                nccl_op(c->op), s->nc, s->stream), comm->timeout_s, &timed_out);
        } else {
            r = s->api.GroupStart();
            for (int q = 0; q < comm->size && r == ncclSuccess; q++) {
                int64_t st0, len;
                gpuml_dist_split(c->in_rows, comm->size, q, &st0, &len);
                if (len > 0)
                    r = s->api.Reduce((const char *)c->in + (size_t)(st0 * c->row_elems) * c->esize, c->out,
                                   (size_t)(len * c->row_elems), t, nccl_op(c->op), q, s->nc, s->stream);
            }
            ncclResult_t r2 = s->api.GroupEnd();
            r = settle(s, r != ncclSuccess ? r : r2, comm->timeout_s, &timed_out);
        }
        break;
    case COLL_BARRIER:
    default:
        r = settle(s, s->api.AllReduce(s->barrier_buf, s->barrier_buf, 1, ncclInt32, ncclSum, s->nc, s->stream),
                   comm->timeout_s, &timed_out);
        break;
    }
    if (r == ncclSuccess && !timed_out && st == GPUML_OK) {
        est = gpuml_cuda_rt_event_record(s->device, nr->done, s->stream, rfn);
        if (est != GPUML_OK)
            gpuml_comm_break(comm, est, true, "rank %d: %s", comm->rank, gpuml_last_error());
    }
    gpuml_guard_leave(&g);
    if (st != GPUML_OK)
        gpuml_comm_break(comm, st, true, "rank %d: %s", comm->rank, gpuml_last_error());
    else if (r != ncclSuccess || timed_out)
        fail_nccl(comm, req, r, timed_out, "enqueueing the NCCL collective");
}

void gpuml_nccl_poll(gpuml_comm *comm, gpuml_comm_request *req)
{
    gpuml_nccl_state *s = comm->nccl;
    nccl_req *nr = req->bs;
    if (req->done || !nr)
        return;
    bool done = false;
    gpuml_status est = gpuml_cuda_rt_event_query(nr->device, nr->done, &done, "gpuml_comm (NCCL)");
    if (est != GPUML_OK) {
        gpuml_comm_break(comm, est, true, "rank %d: the collective failed on the device: %s", comm->rank,
                         gpuml_last_error());
        return;
    }
    if (done) {
        gpuml_req_finish(req, GPUML_OK, NULL);
        return;
    }
    ncclResult_t async = ncclSuccess;
    ncclResult_t r = s->api.CommGetAsyncError(s->nc, &async);
    if (r == ncclSuccess)
        r = async;
    if (r != ncclSuccess && r != ncclInProgress)
        fail_nccl(comm, req, r, false, "the NCCL communicator");
}
