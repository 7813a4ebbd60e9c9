/* MPI backend: CPU tensors over MPI, every collective non-blocking and
 * polled with a deadline, so that no call can hang.
 *
 * A request runs as up to three MPI operations, each on its own duplicated
 * communicator ("channel"): HDR, a small all-gather of every rank's header
 * (validation, all-gather row counts); DATA, the payload (or, in
 * deterministic mode, the all-to-all of chunks); DATA2, the all-gather of
 * the reduced chunks (deterministic all-reduce). MPI needs the collectives
 * on one communicator to be issued in the same order on every rank, but a
 * request's next operation is issued only when its previous one completes,
 * which happens in different orders on different ranks. Hence the rule:
 * request j issues on channel X only when every earlier request has issued
 * on X or will never use it (its `next` channel is past X). Channels are
 * used in increasing order, so each request's `next` only grows.
 *
 * A fifth communicator (CTL) carries fault notices: a zero-byte message
 * whose tag is the status; every rank keeps a receive posted on it. A sixth
 * (SIDE) serves the NCCL path's blocking helper exchanges.
 *
 * MPI's own state is process-wide, so this file has the library's only
 * mutable globals: whether gpuml initialised MPI, how many of its
 * communicators are alive, and whether one broke (then MPI_Finalize, which
 * waits for every rank, must not be called). */
#define _POSIX_C_SOURCE 200809L
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mpi.h>

#include "dist/dist_internal.h"

enum { CH_HDR = 0, CH_DATA = 1, CH_DATA2 = 2, CH_END = 3 };
enum { H_MAGIC, H_SEQ, H_KIND, H_DTYPE, H_OP, H_ROOT, H_IN_ROWS, H_ROW_ELEMS, H_OUT_ROWS, H_FLAGS, H_STATUS, H_COUNT };
enum { F_DET = 1, F_BAD = 2 };
#define HDR_MAGIC 0x676d6c6831LL /* "gmlh1" */
#define TAG_NOTICE 1000

struct gpuml_mpi_state {
    MPI_Comm data, hdr, data2, ctl, side;
    MPI_Request ctl_req;
    bool ctl_posted;
    bool counted; /* holds a reference on gpuml's own MPI initialisation */
    char ctl_buf[8];
};

typedef struct mpi_req {
    int n;
    int64_t *hdr_mine, *hdr_all;
    int *cnt, *dsp, *cnt2, *dsp2;
    MPI_Request r;
    bool busy;       /* r is in flight                                  */
    int stage;       /* channel of the operation in flight              */
    int next;        /* next channel to issue on; CH_END: none          */
    bool uses[3];
    bool bad;        /* local argument failure: header only             */
    gpuml_status local_status;
    void *scratch;
    size_t scratch_bytes;
} mpi_req;

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static bool g_we_initialised;
static int g_live;
static bool g_fault;

static const char *mpi_text(int err, char *buf, size_t n)
{
    char s[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(err, s, &len) != MPI_SUCCESS)
        snprintf(s, sizeof s, "unknown MPI error");
    snprintf(buf, n, "%s (MPI error %d)", s, err);
    return buf;
}

static gpuml_status mpi_fail(const char *fn, int err, const char *what)
{
    char t[MPI_MAX_ERROR_STRING + 32];
    return gpuml_fail(NULL, GPUML_ERR_MPI, fn, "%s failed: %s", what, mpi_text(err, t, sizeof t));
}

static MPI_Datatype mpi_type(gpuml_dtype dt)
{
    switch (dt) {
    case GPUML_F32: return MPI_FLOAT;
    case GPUML_F64: return MPI_DOUBLE;
    case GPUML_I32: return MPI_INT32_T;
    case GPUML_I64: return MPI_INT64_T;
    case GPUML_F16:
    case GPUML_BF16: return MPI_UINT16_T;
    default: return MPI_UINT8_T;
    }
}

static MPI_Op mpi_op(gpuml_comm_op op)
{
    return op == GPUML_COMM_MAX ? MPI_MAX : op == GPUML_COMM_MIN ? MPI_MIN : MPI_SUM;
}

/* Poll one request until done or the deadline (creation-time and helper
 * exchanges, outside the request queue). */
static gpuml_status wait_one(MPI_Request *r, double timeout_s, const char *fn, const char *what)
{
    double t0 = gpuml_clock_s();
    for (;;) {
        int flag = 0;
        int e = MPI_Test(r, &flag, MPI_STATUS_IGNORE);
        if (e != MPI_SUCCESS)
            return mpi_fail(fn, e, what);
        if (flag)
            return GPUML_OK;
        double waited = gpuml_clock_s() - t0;
        if (waited >= timeout_s)
            return gpuml_fail(NULL, GPUML_ERR_TIMEOUT, fn,
                              "%s did not complete within %.3g s: not every rank arrived (a rank missing, stuck, dead, "
                              "or started with a different number of ranks)", what, timeout_s);
        gpuml_dist_backoff(waited);
    }
}

/* ---- creation ------------------------------------------------------------ */

static gpuml_status init_mpi(gpuml_mpi_state *m, const char *fn)
{
    pthread_mutex_lock(&g_lock);
    gpuml_status st = GPUML_OK;
    int inited = 0, finalized = 0;
    MPI_Initialized(&inited);
    MPI_Finalized(&finalized);
    if (finalized) {
        st = gpuml_fail(NULL, GPUML_ERR_STATE, fn,
                        "MPI has already been finalised in this process and cannot be initialised again (gpuml "
                        "finalises the MPI it initialised when its last communicator is destroyed: keep one alive, or "
                        "initialise MPI yourself)");
    } else if (!inited) {
        int provided = 0;
        int e = MPI_Init_thread(NULL, NULL, MPI_THREAD_MULTIPLE, &provided);
        if (e != MPI_SUCCESS)
            st = mpi_fail(fn, e, "MPI_Init_thread");
        else
            g_we_initialised = true;
    }
    if (st == GPUML_OK && g_we_initialised) {
        g_live++;
        m->counted = true;
    }
    pthread_mutex_unlock(&g_lock);
    return st;
}

/* Drop the reference on gpuml's own MPI; the last one finalises it, unless
 * a communicator broke (MPI_Finalize would wait for a dead or stuck rank). */
static void release_mpi(gpuml_comm *comm, gpuml_mpi_state *m, bool fault)
{
    pthread_mutex_lock(&g_lock);
    g_fault |= fault;
    if (m->counted && --g_live == 0) {
        if (g_fault) {
            gpuml_comm_log(comm, GPUML_LOG_WARN,
                           "MPI is not finalised because a collective failed: MPI_Finalize would wait for every rank, "
                           "and a rank is dead or stuck; end the process with an error code");
        } else {
            MPI_Finalize();
            g_we_initialised = false;
        }
    }
    m->counted = false;
    pthread_mutex_unlock(&g_lock);
}

static void free_comms(gpuml_mpi_state *m)
{
    MPI_Comm *cs[] = {&m->side, &m->ctl, &m->data2, &m->hdr, &m->data};
    for (size_t i = 0; i < sizeof cs / sizeof cs[0]; i++)
        if (*cs[i] != MPI_COMM_NULL)
            MPI_Comm_free(cs[i]);
}

static gpuml_status dup_comms(gpuml_comm *comm, gpuml_mpi_state *m, MPI_Comm base, const char *fn)
{
    MPI_Request r;
    int e = MPI_Comm_idup(base, &m->data, &r);
    if (e != MPI_SUCCESS)
        return mpi_fail(fn, e, "MPI_Comm_idup");
    GPUML_TRY(wait_one(&r, comm->timeout_s, fn, "duplicating the MPI communicator (MPI_Comm_idup)"));
    /* Errors come back as codes on gpuml's communicators; the host's keep
     * their own handler. Duplicates inherit it. */
    e = MPI_Comm_set_errhandler(m->data, MPI_ERRORS_RETURN);
    if (e != MPI_SUCCESS)
        return mpi_fail(fn, e, "MPI_Comm_set_errhandler");
    MPI_Comm *more[] = {&m->hdr, &m->data2, &m->ctl, &m->side};
    for (size_t i = 0; i < sizeof more / sizeof more[0]; i++) {
        e = MPI_Comm_idup(m->data, more[i], &r);
        if (e != MPI_SUCCESS)
            return mpi_fail(fn, e, "MPI_Comm_idup");
        GPUML_TRY(wait_one(&r, comm->timeout_s, fn, "duplicating the MPI communicator (MPI_Comm_idup)"));
    }
    return GPUML_OK;
}

static gpuml_status find_ranks(gpuml_comm *comm, gpuml_mpi_state *m, const gpuml_comm_config *cfg, const char *fn)
{
    MPI_Comm_rank(m->data, &comm->rank);
    MPI_Comm_size(m->data, &comm->size);
    MPI_Comm local;
    int e = MPI_Comm_split_type(m->data, MPI_COMM_TYPE_SHARED, comm->rank, MPI_INFO_NULL, &local);
    if (e != MPI_SUCCESS)
        return mpi_fail(fn, e, "MPI_Comm_split_type (finding the ranks on this node)");
    MPI_Comm_rank(local, &comm->local_rank);
    MPI_Comm_size(local, &comm->local_size);
    MPI_Comm_free(&local);
    if (cfg->size > 0 && cfg->size != comm->size)
        return gpuml_fail(NULL, GPUML_ERR_STATE, fn, "cfg->size is %d but MPI has %d ranks", cfg->size, comm->size);
    /* The classic "the GPUs do not talk to each other": srun without a PMI
     * starts every task as its own one-rank MPI job. */
    const char *nt = getenv("SLURM_NTASKS");
    if (comm->size == 1 && cfg->size != 1 && nt && atoi(nt) > 1 && getenv("SLURM_PROCID"))
        return gpuml_fail(NULL, GPUML_ERR_STATE, fn,
                          "MPI started as a single rank but SLURM runs %s tasks: srun gave Open MPI no PMI, so every "
                          "task is its own job. Launch with `srun --mpi=pmix` (see `srun --mpi=list`), or use mpirun, "
                          "or the NCCL file/env bootstrap; set cfg.size = 1 if one rank is really meant", nt);
    int level = 0;
    MPI_Query_thread(&level);
    if (level < MPI_THREAD_SERIALIZED)
        gpuml_comm_log(comm, GPUML_LOG_INFO,
                       "MPI runs at thread level %d: call gpuml_comm_* only from the thread that initialised MPI",
                       level);
    return GPUML_OK;
}

gpuml_status gpuml_mpi_create(gpuml_comm *comm, const gpuml_comm_config *cfg, const char *fn)
{
    gpuml_mpi_state *m = calloc(1, sizeof *m);
    if (!m)
        return gpuml_fail(NULL, GPUML_ERR_OUT_OF_MEMORY, fn, "cannot allocate the MPI state");
    m->data = m->hdr = m->data2 = m->ctl = m->side = MPI_COMM_NULL;
    gpuml_status st = init_mpi(m, fn);
    if (st != GPUML_OK) {
        free(m);
        return st;
    }
    MPI_Comm base = cfg->mpi_comm ? *(const MPI_Comm *)cfg->mpi_comm : MPI_COMM_WORLD;
    st = dup_comms(comm, m, base, fn);
    if (st == GPUML_OK)
        st = find_ranks(comm, m, cfg, fn);
    if (st == GPUML_OK) {
        int e = MPI_Irecv(m->ctl_buf, 1, MPI_BYTE, MPI_ANY_SOURCE, MPI_ANY_TAG, m->ctl, &m->ctl_req);
        if (e != MPI_SUCCESS)
            st = mpi_fail(fn, e, "MPI_Irecv (fault notices)");
        else
            m->ctl_posted = true;
    }
    if (st != GPUML_OK) {
        /* After a timeout an idup is still pending: leave its communicators. */
        if (st != GPUML_ERR_TIMEOUT)
            free_comms(m);
        release_mpi(comm, m, st == GPUML_ERR_TIMEOUT);
        free(m);
        return st;
    }
    static const gpuml_dist_backend_i mpi_i = {
        .progress = gpuml_mpi_progress,
        .notify = gpuml_mpi_notify,
        .abandon = gpuml_mpi_abandon,
        .req_free = gpuml_mpi_req_free,
    };
    comm->mpi = m;
    comm->mpi_i = &mpi_i;
    return GPUML_OK;
}

void gpuml_mpi_destroy(gpuml_comm *comm)
{
    gpuml_mpi_state *m = comm->mpi;
    if (!m)
        return;
    if (m->ctl_posted) {
        MPI_Cancel(&m->ctl_req);
        /* A cancelled receive completes at once; do not trust that blindly. */
        double t0 = gpuml_clock_s();
        int flag = 0;
        while (!flag && gpuml_clock_s() - t0 < 1.0)
            if (MPI_Test(&m->ctl_req, &flag, MPI_STATUS_IGNORE) != MPI_SUCCESS)
                break;
    }
    free_comms(m);
    release_mpi(comm, m, comm->broken != GPUML_OK);
    free(m);
    comm->mpi = NULL;
}

/* ---- faults -------------------------------------------------------------- */

void gpuml_mpi_notify(gpuml_comm *comm, gpuml_status st)
{
    static char none[1];
    gpuml_mpi_state *m = comm->mpi;
    for (int q = 0; q < comm->size; q++) {
        if (q == comm->rank)
            continue;
        MPI_Request r;
        /* Zero bytes, sent eagerly: freeing the request never waits, even
         * for a dead peer. */
        if (MPI_Isend(none, 0, MPI_BYTE, q, TAG_NOTICE + (int)st, m->ctl, &r) == MPI_SUCCESS)
            MPI_Request_free(&r);
    }
}

static void poll_notices(gpuml_comm *comm)
{
    gpuml_mpi_state *m = comm->mpi;
    if (!m->ctl_posted)
        return;
    int flag = 0;
    MPI_Status s;
    if (MPI_Test(&m->ctl_req, &flag, &s) != MPI_SUCCESS || !flag)
        return;
    m->ctl_posted = false;
    int code = s.MPI_TAG - TAG_NOTICE;
    gpuml_status st = (code > 0 && code < GPUML_STATUS_COUNT_) ? (gpuml_status)code : GPUML_ERR_STATE;
    gpuml_comm_break(comm, st, false,
                     "rank %d reported a fault (%s) and gave up on the communicator; this rank's collectives in flight "
                     "are abandoned (see rank %d's error for the cause)", s.MPI_SOURCE, gpuml_status_string(st),
                     s.MPI_SOURCE);
}

static void break_mpi(gpuml_comm *comm, gpuml_comm_request *req, int err, const char *what)
{
    char t[MPI_MAX_ERROR_STRING + 32];
    gpuml_comm_break(comm, GPUML_ERR_MPI, true, "rank %d: %s failed in collective #%llu (%s): %s", comm->rank, what,
                     (unsigned long long)req->seq, gpuml_coll_kind_name(req->c.kind), mpi_text(err, t, sizeof t));
}

/* ---- requests ------------------------------------------------------------ */

static mpi_req *state_of(gpuml_comm *comm, gpuml_comm_request *req)
{
    gpuml_req_claim_bs(req, GPUML_BS_MPI);
    mpi_req *mr = req->bs;
    if (mr && mr->n == comm->size)
        return mr;
    free(mr);
    req->bs = NULL;
    int n = comm->size;
    size_t bytes = sizeof *mr + sizeof(int64_t) * (size_t)H_COUNT * (size_t)(n + 1) + sizeof(int) * 4 * (size_t)n;
    mr = calloc(1, bytes);
    if (!mr)
        return NULL;
    mr->n = n;
    mr->hdr_mine = (int64_t *)(mr + 1);
    mr->hdr_all = mr->hdr_mine + H_COUNT;
    mr->cnt = (int *)(mr->hdr_all + (size_t)H_COUNT * n);
    mr->dsp = mr->cnt + n;
    mr->cnt2 = mr->dsp + n;
    mr->dsp2 = mr->cnt2 + n;
    req->bs = mr;
    return mr;
}

void gpuml_mpi_req_free(gpuml_comm_request *req)
{
    mpi_req *mr = req->bs;
    if (mr && mr->scratch)
        gpuml_scratch_free(req->ctx, mr->scratch, mr->scratch_bytes);
    free(mr);
    req->bs = NULL;
}

void gpuml_mpi_abandon(gpuml_comm_request *req)
{
    /* MPI may still write the header arrays and the scratch: the state is
     * leaked on purpose (the request is never reused). */
    req->bs = NULL;
}

static void drop_scratch(gpuml_comm_request *req, mpi_req *mr)
{
    if (mr->scratch)
        gpuml_scratch_free(req->ctx, mr->scratch, mr->scratch_bytes);
    mr->scratch = NULL;
    mr->scratch_bytes = 0;
}

static int next_used(const mpi_req *mr, int from)
{
    while (from < CH_END && !mr->uses[from])
        from++;
    return from;
}

void gpuml_mpi_start(gpuml_comm *comm, gpuml_comm_request *req, gpuml_status local_status)
{
    /* Peers that gave up left their operations pending, and a new one would
     * match those: look for their notices before starting anything. */
    poll_notices(comm);
    if (comm->broken != GPUML_OK) {
        gpuml_req_finish(req, comm->broken, "%s", comm->broken_msg);
        return;
    }
    mpi_req *mr = state_of(comm, req);
    if (!mr) {
        gpuml_comm_break(comm, GPUML_ERR_OUT_OF_MEMORY, true, "rank %d: cannot allocate a request's MPI state",
                         comm->rank);
        return;
    }
    const gpuml_coll *c = &req->c;
    mr->busy = false;
    mr->scratch = NULL;
    mr->scratch_bytes = 0;
    mr->bad = local_status != GPUML_OK;
    mr->local_status = local_status;
    int64_t count = c->in_rows * c->row_elems;
    if (!mr->bad && (count > INT_MAX || c->out_rows * c->row_elems > INT_MAX)) {
        /* Same on every rank (the shapes agree), so every rank fails alike. */
        mr->bad = true;
        mr->local_status = GPUML_ERR_UNSUPPORTED;
        snprintf(req->msg, sizeof req->msg, "%lld elements: the MPI backend moves at most %d per call",
                 (long long)(count > c->out_rows * c->row_elems ? count : c->out_rows * c->row_elems), INT_MAX);
    }
    bool det = gpuml_coll_is_det(comm, c);
    memset(mr->uses, 0, sizeof mr->uses);
    if (mr->bad) {
        mr->uses[CH_HDR] = true;
    } else {
        mr->uses[CH_HDR] = comm->validate || c->kind == COLL_ALLGATHER;
        bool empty = count == 0 && c->kind != COLL_ALLGATHER && c->kind != COLL_BARRIER;
        mr->uses[CH_DATA] = !empty && !(c->kind == COLL_BARRIER && mr->uses[CH_HDR]);
        mr->uses[CH_DATA2] = !empty && det && c->kind == COLL_ALLREDUCE;
    }
    int64_t *h = mr->hdr_mine;
    h[H_MAGIC] = HDR_MAGIC;
    h[H_SEQ] = (int64_t)req->seq;
    h[H_KIND] = c->kind;
    h[H_DTYPE] = c->dtype;
    h[H_OP] = c->op;
    h[H_ROOT] = c->root;
    h[H_IN_ROWS] = c->in_rows;
    h[H_ROW_ELEMS] = c->row_elems;
    h[H_OUT_ROWS] = c->out_rows;
    h[H_FLAGS] = (comm->deterministic ? F_DET : 0) | (mr->bad ? F_BAD : 0);
    h[H_STATUS] = mr->local_status;
    mr->next = next_used(mr, 0);
    gpuml_mpi_progress(comm);
}

/* ---- header check -------------------------------------------------------- */

/* Decide, from every rank's header, whether the collective goes ahead. Every
 * rank sees the same headers and runs the same rules, so all reach the same
 * verdict. Returns false when req was finished (or the communicator broke). */
static bool check_headers(gpuml_comm *comm, gpuml_comm_request *req, mpi_req *mr)
{
    const int n = comm->size;
    const int64_t *a = mr->hdr_all;
#define HQ(q, f) a[(size_t)(q) * H_COUNT + (f)]
    for (int q = 0; q < n; q++) {
        if (HQ(q, H_MAGIC) != HDR_MAGIC || HQ(q, H_SEQ) != HQ(0, H_SEQ)) {
            gpuml_comm_break(comm, GPUML_ERR_STATE, true,
                             "the ranks are out of step: rank 0 is at collective #%lld (%s) but rank %d at #%lld (%s); "
                             "every rank must call the same collectives in the same order",
                             (long long)HQ(0, H_SEQ), gpuml_coll_kind_name((coll_kind)HQ(0, H_KIND)), q,
                             (long long)HQ(q, H_SEQ), gpuml_coll_kind_name((coll_kind)HQ(q, H_KIND)));
            return false;
        }
    }
    const char *kind = gpuml_coll_kind_name((coll_kind)HQ(0, H_KIND));
    for (int q = 0; q < n; q++) {
        if (!(HQ(q, H_FLAGS) & F_BAD))
            continue;
        gpuml_status st = (gpuml_status)HQ(q, H_STATUS);
        if (q == comm->rank) {
            char mine[sizeof req->msg];
            snprintf(mine, sizeof mine, "%s", req->msg[0] ? req->msg : "invalid arguments");
            gpuml_req_finish(req, mr->local_status, "%s", mine);
        } else
            gpuml_req_finish(req, st, "rank %d rejected its arguments to collective #%lld (%s) with %s (see its "
                             "error message); no rank ran it", q, (long long)HQ(q, H_SEQ), kind,
                             gpuml_status_string(st));
        return false;
    }
    for (int q = 1; q < n; q++) {
        if (HQ(q, H_KIND) != HQ(0, H_KIND)) {
            gpuml_req_finish(req, GPUML_ERR_STATE, "rank 0 called %s but rank %d called %s as collective #%lld",
                             kind, q, gpuml_coll_kind_name((coll_kind)HQ(q, H_KIND)), (long long)HQ(0, H_SEQ));
            return false;
        }
        if (HQ(q, H_DTYPE) != HQ(0, H_DTYPE)) {
            gpuml_req_finish(req, GPUML_ERR_DTYPE, "%s: rank 0 passed %s tensors but rank %d passed %s", kind,
                             gpuml_dtype_name((gpuml_dtype)HQ(0, H_DTYPE)), q,
                             gpuml_dtype_name((gpuml_dtype)HQ(q, H_DTYPE)));
            return false;
        }
        if (HQ(q, H_OP) != HQ(0, H_OP) || HQ(q, H_ROOT) != HQ(0, H_ROOT) ||
            (HQ(q, H_FLAGS) & F_DET) != (HQ(0, H_FLAGS) & F_DET)) {
            gpuml_req_finish(req, GPUML_ERR_INVALID_ARGUMENT,
                             "%s: rank 0 passed op %s, root %lld%s but rank %d op %s, root %lld%s", kind,
                             gpuml_comm_op_name((gpuml_comm_op)HQ(0, H_OP)), (long long)HQ(0, H_ROOT),
                             (HQ(0, H_FLAGS) & F_DET) ? ", deterministic" : "", q,
                             gpuml_comm_op_name((gpuml_comm_op)HQ(q, H_OP)), (long long)HQ(q, H_ROOT),
                             (HQ(q, H_FLAGS) & F_DET) ? ", deterministic" : "");
            return false;
        }
        bool rows_differ = HQ(q, H_IN_ROWS) != HQ(0, H_IN_ROWS) && HQ(0, H_KIND) != COLL_ALLGATHER;
        if (rows_differ || HQ(q, H_ROW_ELEMS) != HQ(0, H_ROW_ELEMS)) {
            gpuml_req_finish(req, GPUML_ERR_SHAPE,
                             "%s: rank 0 passed %lld rows of %lld elements but rank %d passed %lld rows of %lld", kind,
                             (long long)HQ(0, H_IN_ROWS), (long long)HQ(0, H_ROW_ELEMS), q,
                             (long long)HQ(q, H_IN_ROWS), (long long)HQ(q, H_ROW_ELEMS));
            return false;
        }
    }
    if (HQ(0, H_KIND) == COLL_ALLGATHER) {
        int64_t total = 0;
        for (int q = 0; q < n; q++)
            total += HQ(q, H_IN_ROWS);
        for (int q = 0; q < n; q++) {
            if (HQ(q, H_OUT_ROWS) != total) {
                gpuml_req_finish(req, GPUML_ERR_SHAPE,
                                 "allgather: the ranks bring %lld rows in all, but rank %d's 'out' has %lld rows",
                                 (long long)total, q, (long long)HQ(q, H_OUT_ROWS));
                return false;
            }
        }
        if (total * HQ(0, H_ROW_ELEMS) > INT_MAX) {
            gpuml_req_finish(req, GPUML_ERR_UNSUPPORTED, "allgather of %lld elements: the MPI backend moves at most "
                             "%d per call", (long long)(total * HQ(0, H_ROW_ELEMS)), INT_MAX);
            return false;
        }
        int64_t off = 0;
        for (int q = 0; q < n; q++) {
            mr->cnt[q] = (int)(HQ(q, H_IN_ROWS) * HQ(0, H_ROW_ELEMS));
            mr->dsp[q] = (int)off;
            off += mr->cnt[q];
        }
        if (total == 0)
            mr->uses[CH_DATA] = false;
        mr->next = next_used(mr, CH_DATA);
    }
#undef HQ
    return true;
}

/* ---- issuing and completing operations ----------------------------------- */

/* Chunk of the flat data (or of the rows) each rank reduces. */
static void det_split(const gpuml_comm *comm, const gpuml_coll *c, int q, int64_t *start, int64_t *len)
{
    if (c->kind == COLL_REDUCE_SCATTER) {
        gpuml_dist_split(c->in_rows, comm->size, q, start, len);
        *start *= c->row_elems;
        *len *= c->row_elems;
    } else {
        gpuml_dist_split(c->in_rows * c->row_elems, comm->size, q, start, len);
    }
}

static int issue(gpuml_comm *comm, gpuml_comm_request *req, mpi_req *mr, int ch)
{
    gpuml_mpi_state *m = comm->mpi;
    const gpuml_coll *c = &req->c;
    MPI_Datatype t = mpi_type(c->dtype);
    int n = comm->size, me = comm->rank;
    int count = (int)(c->in_rows * c->row_elems);
    if (ch == CH_HDR)
        return MPI_Iallgather(mr->hdr_mine, H_COUNT, MPI_INT64_T, mr->hdr_all, H_COUNT, MPI_INT64_T, m->hdr, &mr->r);
    if (ch == CH_DATA2) { /* deterministic all-reduce: gather the reduced chunks */
        for (int q = 0; q < n; q++) {
            int64_t s, l;
            det_split(comm, c, q, &s, &l);
            mr->cnt[q] = (int)l;
            mr->dsp[q] = (int)s;
        }
        return MPI_Iallgatherv(MPI_IN_PLACE, 0, t, c->out, mr->cnt, mr->dsp, t, m->data2, &mr->r);
    }
    switch (c->kind) {
    case COLL_BARRIER:
        return MPI_Ibarrier(m->data, &mr->r);
    case COLL_BROADCAST:
        return MPI_Ibcast(c->out, count, t, c->root, m->data, &mr->r);
    case COLL_ALLGATHER:
        return MPI_Iallgatherv(c->in, mr->cnt[me], t, c->out, mr->cnt, mr->dsp, t, m->data, &mr->r);
    case COLL_ALLREDUCE:
    case COLL_REDUCE_SCATTER:
        break;
    default:
        return MPI_ERR_OTHER;
    }
    if (!gpuml_coll_is_det(comm, c)) {
        if (c->kind == COLL_ALLREDUCE)
            return MPI_Iallreduce(c->in_place ? MPI_IN_PLACE : c->in, c->out, count, t, mpi_op(c->op), m->data, &mr->r);
        for (int q = 0; q < n; q++) {
            int64_t s, l;
            gpuml_dist_split(c->in_rows, n, q, &s, &l);
            mr->cnt[q] = (int)(l * c->row_elems);
        }
        return MPI_Ireduce_scatter(c->in, c->out, mr->cnt, t, mpi_op(c->op), m->data, &mr->r);
    }
    /* Deterministic: rank q receives everyone's chunk q, in rank order. */
    int64_t my_start, my_len;
    det_split(comm, c, me, &my_start, &my_len);
    for (int q = 0; q < n; q++) {
        int64_t s, l;
        det_split(comm, c, q, &s, &l);
        mr->cnt[q] = (int)l;
        mr->dsp[q] = (int)s;
        mr->cnt2[q] = (int)my_len;
        mr->dsp2[q] = (int)(q * my_len);
    }
    size_t bytes = (size_t)n * (size_t)my_len * c->esize;
    if (bytes) {
        if (gpuml_scratch_alloc(req->ctx, bytes, &mr->scratch, req->fn) != GPUML_OK)
            return -1; /* reported by the caller as out of memory */
        mr->scratch_bytes = bytes;
    }
    return MPI_Ialltoallv(c->in, mr->cnt, mr->dsp, t, mr->scratch, mr->cnt2, mr->dsp2, t, m->data, &mr->r);
}

/* An operation completed; returns false when req finished or the
 * communicator broke. */
static bool completed(gpuml_comm *comm, gpuml_comm_request *req, mpi_req *mr, int ch)
{
    const gpuml_coll *c = &req->c;
    if (ch == CH_HDR)
        return check_headers(comm, req, mr);
    if (ch != CH_DATA || (c->kind != COLL_ALLREDUCE && c->kind != COLL_REDUCE_SCATTER))
        return true;
    if (!gpuml_coll_is_det(comm, c)) {
        if (c->op == GPUML_COMM_AVG)
            gpuml_dist_divide(req->ctx, c->dtype, c->out, c->out_rows * c->row_elems, comm->size);
        return true;
    }
    int64_t my_start, my_len;
    det_split(comm, c, comm->rank, &my_start, &my_len);
    /* All-reduce: the chunk goes to its place in out (in has been sent, so
     * in place is safe), then DATA2 gathers the chunks. Reduce-scatter: to out. */
    char *dst = c->kind == COLL_ALLREDUCE ? (char *)c->out + (size_t)my_start * c->esize : (char *)c->out;
    gpuml_status st = gpuml_dist_rank_sum(req->ctx, req->fn, c->dtype, c->op, mr->scratch, comm->size, my_len, dst);
    drop_scratch(req, mr);
    if (st != GPUML_OK) {
        /* The other ranks go on to DATA2 and would wait for this one. */
        gpuml_comm_break(comm, st, true, "rank %d: %s", comm->rank, gpuml_last_error());
        return false;
    }
    return true;
}

/* Advance one request as far as it can go; floor = the smallest `next` of
 * the requests started before it. */
static void advance(gpuml_comm *comm, gpuml_comm_request *req, int floor)
{
    mpi_req *mr = req->bs;
    for (;;) {
        if (mr->busy) {
            int flag = 0;
            int e = MPI_Test(&mr->r, &flag, MPI_STATUS_IGNORE);
            if (e != MPI_SUCCESS) {
                break_mpi(comm, req, e, "MPI_Test");
                return;
            }
            if (!flag)
                return;
            mr->busy = false;
            if (!completed(comm, req, mr, mr->stage))
                return;
        }
        if (mr->next >= CH_END) {
            drop_scratch(req, mr);
            gpuml_req_finish(req, GPUML_OK, NULL);
            return;
        }
        if (mr->next >= floor)
            return;
        int ch = mr->next;
        int e = issue(comm, req, mr, ch);
        if (e == -1) {
            gpuml_comm_break(comm, GPUML_ERR_OUT_OF_MEMORY, true, "rank %d: %s", comm->rank, gpuml_last_error());
            return;
        }
        if (e != MPI_SUCCESS) {
            break_mpi(comm, req, e, ch == CH_HDR ? "the header exchange" : "starting the collective");
            return;
        }
        mr->busy = true;
        mr->stage = ch;
        mr->next = next_used(mr, ch + 1);
    }
}

void gpuml_mpi_progress(gpuml_comm *comm)
{
    if (comm->broken != GPUML_OK)
        return;
    int floor = CH_END;
    gpuml_comm_request *r = comm->inflight_head;
    while (r && comm->broken == GPUML_OK) {
        gpuml_comm_request *next = r->next; /* r may finish and leave the list */
        if (!r->on_nccl) {
            advance(comm, r, floor);
            if (!r->done) {
                mpi_req *mr = r->bs;
                floor = mr->next < floor ? mr->next : floor;
            }
        }
        r = next;
    }
    /* After the requests: one that has in fact completed is not failed by a
     * notice that raced with its last message. */
    if (comm->broken == GPUML_OK)
        poll_notices(comm);
}

/* ---- helpers for the NCCL path ------------------------------------------- */

gpuml_status gpuml_mpi_bcast_bytes(gpuml_comm *comm, void *buf, int nbytes, const char *fn)
{
    MPI_Request r;
    int e = MPI_Ibcast(buf, nbytes, MPI_BYTE, 0, comm->mpi->side, &r);
    if (e != MPI_SUCCESS)
        return mpi_fail(fn, e, "MPI_Ibcast");
    return wait_one(&r, comm->timeout_s, fn, "broadcasting the NCCL id over MPI");
}

gpuml_status gpuml_mpi_allgather_i64(gpuml_comm *comm, const int64_t *v, int k, int64_t *out, const char *fn)
{
    MPI_Request r;
    int e = MPI_Iallgather(v, k, MPI_INT64_T, out, k, MPI_INT64_T, comm->mpi->side, &r);
    if (e != MPI_SUCCESS)
        return mpi_fail(fn, e, "MPI_Iallgather");
    return wait_one(&r, comm->timeout_s, fn, "exchanging row counts over MPI");
}
