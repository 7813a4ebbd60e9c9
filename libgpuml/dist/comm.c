/* Communicator: creation, the request pool, faults, waiting with a deadline.
 * The collectives themselves are in collectives.c, the backends in
 * comm_mpi.c and comm_nccl.c. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dist/dist_internal.h"
#include "dist/rendezvous.h"

void gpuml_dist_backoff(double waited)
{
    /* Short waits are the common case (a collective a few microseconds from
     * done): spin. Then give the core away - ranks are often oversubscribed
     * on CI machines - and, for long waits, sleep so an idle rank costs
     * nothing. */
    if (waited < 50e-6)
        return;
    if (waited < 10e-3) {
        sched_yield();
        return;
    }
    double nap = waited * 0.01;
    nap = nap < 50e-6 ? 50e-6 : (nap > 1e-3 ? 1e-3 : nap);
    struct timespec ts = {0, (long)(nap * 1e9)};
    nanosleep(&ts, NULL);
}

void gpuml_comm_log(const gpuml_comm *comm, gpuml_log_level level, const char *fmt, ...)
{
    gpuml_log_level threshold = comm ? comm->log_level : GPUML_LOG_WARN;
    if (level < threshold || level >= GPUML_LOG_OFF)
        return;
    char buf[GPUML_MSG_MAX];
    int n = snprintf(buf, sizeof buf, "rank %d: ", comm ? comm->rank : -1);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf + n, sizeof buf - (size_t)n, fmt, ap);
    va_end(ap);
    if (comm && comm->log_fn)
        comm->log_fn(comm->log_user, level, buf);
    else
        gpuml_log_default(level, buf);
}

const char *gpuml_coll_kind_name(coll_kind k)
{
    static const char *const names[COLL_KIND_COUNT_] = {"allreduce", "broadcast", "allgather", "reduce_scatter",
                                                        "barrier"};
    return (unsigned)k < COLL_KIND_COUNT_ ? names[k] : "?";
}

const char *gpuml_comm_op_name(gpuml_comm_op op)
{
    static const char *const names[GPUML_COMM_OP_COUNT_] = {"SUM", "AVG", "MAX", "MIN"};
    return (unsigned)op < GPUML_COMM_OP_COUNT_ ? names[op] : "?";
}

void gpuml_comm_config_init_defaults(gpuml_comm_config *cfg)
{
    if (!cfg)
        return;
    memset(cfg, 0, sizeof *cfg);
    cfg->backend = GPUML_COMM_MPI;
    cfg->timeout_s = 300.0;
    cfg->deterministic = 1;
    cfg->validate = 1;
    cfg->rank = cfg->size = cfg->local_rank = -1;
    cfg->device = -1;
    cfg->bootstrap = GPUML_BOOTSTRAP_MPI;
    cfg->log_level = GPUML_LOG_WARN;
}

void gpuml_comm_shard_rows(int64_t rows, int size, int rank, int64_t *start, int64_t *count)
{
    int64_t s = 0, c = 0;
    if (rows > 0 && size > 0 && rank >= 0 && rank < size)
        gpuml_dist_split(rows, size, rank, &s, &c);
    if (start)
        *start = s;
    if (count)
        *count = c;
}

static gpuml_status check_config(const gpuml_comm_config *cfg, const char *fn)
{
    if ((unsigned)cfg->backend > GPUML_COMM_NCCL)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "cfg->backend %d is not a backend", (int)cfg->backend);
    if (!(cfg->timeout_s > 0) || !isfinite(cfg->timeout_s))
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "cfg->timeout_s = %g must be > 0 and finite",
                          cfg->timeout_s);
    if ((int)cfg->log_level < GPUML_LOG_DEBUG || cfg->log_level > GPUML_LOG_OFF)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "cfg->log_level %d is out of range",
                          (int)cfg->log_level);
    if (cfg->backend == GPUML_COMM_NCCL) {
        if ((unsigned)cfg->bootstrap > GPUML_BOOTSTRAP_ENV)
            return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "cfg->bootstrap %d is not a bootstrap method",
                              (int)cfg->bootstrap);
        if (cfg->bootstrap == GPUML_BOOTSTRAP_FILE && (!cfg->bootstrap_path || !*cfg->bootstrap_path))
            return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn,
                              "cfg->bootstrap is GPUML_BOOTSTRAP_FILE but cfg->bootstrap_path is not set");
    }
    if (cfg->size == 0 || cfg->size < -1 || cfg->rank < -1 || cfg->local_rank < -1 || cfg->device < -1)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn,
                          "cfg->rank %d / size %d / local_rank %d / device %d: use -1 for 'from the environment'",
                          cfg->rank, cfg->size, cfg->local_rank, cfg->device);
    if (cfg->size > 0 && cfg->rank >= cfg->size)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "cfg->rank %d is not in [0, cfg->size = %d)",
                          cfg->rank, cfg->size);
    return GPUML_OK;
}

#if GPUML_HAVE_NCCL
static gpuml_status create_nccl(gpuml_comm *comm, const gpuml_comm_config *cfg, const char *fn)
{
    if (gpuml_cuda_device_count() <= 0)
        return gpuml_fail(NULL, GPUML_ERR_NO_DEVICE, fn,
                          "the NCCL backend needs a CUDA device, and none is usable here (no driver, no GPU, or "
                          "CUDA_VISIBLE_DEVICES hides them); use GPUML_COMM_MPI for CPU tensors");
    if (cfg->bootstrap == GPUML_BOOTSTRAP_MPI) {
#if GPUML_HAVE_MPI
        GPUML_TRY(gpuml_mpi_create(comm, cfg, fn));
#else
        return gpuml_fail(NULL, GPUML_ERR_UNSUPPORTED, fn,
                          "GPUML_BOOTSTRAP_MPI needs MPI, and this gpuml was built without it; use "
                          "GPUML_BOOTSTRAP_FILE or GPUML_BOOTSTRAP_ENV");
#endif
    } else {
        char err[512];
        int rank = cfg->rank, size = cfg->size, local = cfg->local_rank;
        if (gpuml_rdv_env_ranks(&rank, &size, &local, err, sizeof err) != 0)
            return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "%s", err);
        comm->rank = rank;
        comm->size = size;
        comm->local_rank = local;
        comm->local_size = -1; /* unknown without MPI */
    }
    gpuml_status st = gpuml_nccl_create(comm, cfg, fn);
#if GPUML_HAVE_MPI
    if (st != GPUML_OK && comm->mpi)
        gpuml_mpi_destroy(comm);
#endif
    return st;
}
#endif

gpuml_status gpuml_comm_create(const gpuml_comm_config *cfg, gpuml_comm **out)
{
    static const char fn[] = "gpuml_comm_create";
    if (!out)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "argument 'out' is NULL");
    *out = NULL;
    if (!cfg)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "argument 'cfg' is NULL");
    GPUML_TRY(check_config(cfg, fn));

    gpuml_comm *comm = calloc(1, sizeof *comm);
    if (!comm)
        return gpuml_fail(NULL, GPUML_ERR_OUT_OF_MEMORY, fn, "cannot allocate the communicator");
    comm->backend = cfg->backend;
    comm->timeout_s = cfg->timeout_s;
    comm->deterministic = cfg->deterministic != 0;
    comm->validate = cfg->validate != 0;
    comm->log_fn = cfg->log_fn;
    comm->log_user = cfg->log_user;
    comm->log_level = cfg->log_level;
    comm->device.type = GPUML_DEVICE_CPU;
    comm->rank = 0;
    comm->size = comm->local_size = 1;

    gpuml_status st = GPUML_OK;
    switch (cfg->backend) {
    case GPUML_COMM_SELF:
        if (cfg->size > 1)
            st = gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "GPUML_COMM_SELF has one rank, cfg->size is %d",
                            cfg->size);
        break;
    case GPUML_COMM_MPI:
#if GPUML_HAVE_MPI
        st = gpuml_mpi_create(comm, cfg, fn);
#else
        st = gpuml_fail(NULL, GPUML_ERR_UNSUPPORTED, fn,
                        "this gpuml was built without MPI (configure with an MPI installation, e.g. Debian's "
                        "libopenmpi-dev, and -Dmpi=enabled); GPUML_COMM_SELF works for a single process");
#endif
        break;
    case GPUML_COMM_NCCL:
#if GPUML_HAVE_NCCL
        st = create_nccl(comm, cfg, fn);
#else
        st = gpuml_fail(NULL, GPUML_ERR_UNSUPPORTED, fn,
                        "this gpuml was built without NCCL (it needs the CUDA toolkit and NCCL under "
                        "-Dtoolkit_root, and -Dnccl=enabled); use GPUML_COMM_MPI for CPU tensors");
#endif
        break;
    }
    if (st != GPUML_OK) {
        free(comm);
        return st;
    }
    gpuml_comm_log(comm, GPUML_LOG_INFO, "communicator up: %s, rank %d of %d, local rank %d of %d, device %s:%d",
                   comm->backend == GPUML_COMM_NCCL ? "NCCL" : comm->backend == GPUML_COMM_MPI ? "MPI" : "self",
                   comm->rank, comm->size, comm->local_rank, comm->local_size,
                   comm->device.type == GPUML_DEVICE_CUDA ? "cuda" : "cpu", comm->device.index);
    *out = comm;
    return GPUML_OK;
}

static void req_free_backend(gpuml_comm_request *r)
{
#if GPUML_HAVE_MPI
    if (r->bs_kind == GPUML_BS_MPI)
        gpuml_mpi_req_free(r);
#endif
#if GPUML_HAVE_NCCL
    if (r->bs_kind == GPUML_BS_NCCL)
        gpuml_nccl_req_free(r);
#endif
    r->bs = NULL;
    r->bs_kind = GPUML_BS_NONE;
}

void gpuml_req_claim_bs(gpuml_comm_request *req, int kind)
{
    if (req->bs && req->bs_kind != kind)
        req_free_backend(req);
    req->bs_kind = kind;
}

void gpuml_comm_destroy(gpuml_comm *comm)
{
    if (!comm)
        return;
    /* Requests never waited for: their collective may still run, so they
     * are abandoned like those of a broken communicator. */
    for (gpuml_comm_request *r = comm->inflight_head; r; r = r->next) {
        r->abandoned = true;
#if GPUML_HAVE_MPI
        if (!r->on_nccl)
            gpuml_mpi_abandon(r);
#endif
    }
    if (comm->inflight_head && comm->broken == GPUML_OK)
        gpuml_comm_log(comm, GPUML_LOG_WARN, "gpuml_comm_destroy: collectives still in flight were abandoned");
#if GPUML_HAVE_NCCL
    if (comm->nccl)
        gpuml_nccl_destroy(comm);
#endif
#if GPUML_HAVE_MPI
    if (comm->mpi)
        gpuml_mpi_destroy(comm);
#endif
    gpuml_comm_request *r = comm->all;
    while (r) {
        gpuml_comm_request *next = r->all_next;
        if (!r->abandoned)
            req_free_backend(r);
        free(r);
        r = next;
    }
    free(comm);
}

int gpuml_comm_rank(const gpuml_comm *comm) { return comm ? comm->rank : -1; }
int gpuml_comm_size(const gpuml_comm *comm) { return comm ? comm->size : -1; }
int gpuml_comm_local_rank(const gpuml_comm *comm) { return comm ? comm->local_rank : -1; }
int gpuml_comm_local_size(const gpuml_comm *comm) { return comm ? comm->local_size : -1; }
gpuml_comm_backend gpuml_comm_get_backend(const gpuml_comm *comm) { return comm ? comm->backend : GPUML_COMM_SELF; }
gpuml_device gpuml_comm_device(const gpuml_comm *comm)
{
    gpuml_device cpu = {GPUML_DEVICE_CPU, 0};
    return comm ? comm->device : cpu;
}
gpuml_status gpuml_comm_status(const gpuml_comm *comm) { return comm ? comm->broken : GPUML_ERR_INVALID_ARGUMENT; }

gpuml_status gpuml_comm_set_timeout(gpuml_comm *comm, double timeout_s)
{
    static const char fn[] = "gpuml_comm_set_timeout";
    if (!comm)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "argument 'comm' is NULL");
    if (!(timeout_s > 0) || !isfinite(timeout_s))
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "timeout_s = %g must be > 0 and finite", timeout_s);
    comm->timeout_s = timeout_s;
    return GPUML_OK;
}

/* ---- requests ------------------------------------------------------------ */

gpuml_comm_request *gpuml_req_get(gpuml_comm *comm, gpuml_ctx *ctx, const char *fn)
{
    gpuml_comm_request *r = comm->pool;
    if (r) {
        comm->pool = r->pool_next;
    } else {
        r = calloc(1, sizeof *r);
        if (!r)
            return NULL;
        r->all_next = comm->all;
        comm->all = r;
    }
    void *bs = r->bs;
    int bs_kind = r->bs_kind;
    gpuml_comm_request *all_next = r->all_next;
    memset(r, 0, sizeof *r);
    r->bs = bs;
    r->bs_kind = bs_kind;
    r->all_next = all_next;
    r->comm = comm;
    r->ctx = ctx;
    r->fn = fn;
    r->status = GPUML_OK;
    /* In flight from now on, in start order (the MPI backend relies on it). */
    r->prev = comm->inflight_tail;
    if (comm->inflight_tail)
        comm->inflight_tail->next = r;
    else
        comm->inflight_head = r;
    comm->inflight_tail = r;
    return r;
}

static void inflight_unlink(gpuml_comm *comm, gpuml_comm_request *r)
{
    if (r->prev)
        r->prev->next = r->next;
    else if (comm->inflight_head == r)
        comm->inflight_head = r->next;
    if (r->next)
        r->next->prev = r->prev;
    else if (comm->inflight_tail == r)
        comm->inflight_tail = r->prev;
    r->prev = r->next = NULL;
}

void gpuml_req_finish(gpuml_comm_request *req, gpuml_status st, const char *fmt, ...)
{
    if (req->done)
        return;
    req->done = true;
    req->status = st;
    if (st != GPUML_OK && fmt) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(req->msg, sizeof req->msg, fmt, ap);
        va_end(ap);
    }
    inflight_unlink(req->comm, req);
    if (!req->abandoned) {
        gpuml_storage_release(req->hold[0]);
        gpuml_storage_release(req->hold[1]);
    }
    req->hold[0] = req->hold[1] = NULL;
}

/* Back to the pool (the caller is done with it). An abandoned request's
 * backend state may still be written by MPI: it is never reused. */
void gpuml_req_release(gpuml_comm_request *req)
{
    gpuml_comm *comm = req->comm;
    if (!req->done)
        inflight_unlink(comm, req);
    if (req->abandoned)
        return; /* stays on comm->all, freed (without its buffers) at destroy */
    req->pool_next = comm->pool;
    comm->pool = req;
}

void gpuml_comm_break(gpuml_comm *comm, gpuml_status st, bool notify, const char *fmt, ...)
{
    if (comm->broken != GPUML_OK)
        return;
    comm->broken = st;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(comm->broken_msg, sizeof comm->broken_msg, fmt, ap);
    va_end(ap);
    gpuml_comm_log(comm, GPUML_LOG_ERROR, "communicator broken (%s): %s", gpuml_status_string(st), comm->broken_msg);
#if GPUML_HAVE_MPI
    if (notify && comm->mpi)
        gpuml_mpi_notify(comm, st);
#endif
#if GPUML_HAVE_NCCL
    if (comm->nccl)
        gpuml_nccl_abort(comm);
#endif
    (void)notify;
    while (comm->inflight_head) {
        gpuml_comm_request *r = comm->inflight_head;
        r->abandoned = true;
#if GPUML_HAVE_MPI
        if (!r->on_nccl)
            gpuml_mpi_abandon(r);
#endif
        gpuml_req_finish(r, st, "%s", comm->broken_msg);
    }
}

void gpuml_comm_abort(gpuml_comm *comm)
{
    if (!comm)
        return;
    gpuml_comm_break(comm, GPUML_ERR_CANCELLED, true, "rank %d aborted the communicator (gpuml_comm_abort)",
                     comm->rank);
}

/* Advance everything in flight; a fault breaks the communicator. */
static void progress_all(gpuml_comm *comm)
{
#if GPUML_HAVE_MPI
    if (comm->mpi)
        gpuml_mpi_progress(comm);
#endif
#if GPUML_HAVE_NCCL
    if (comm->nccl) {
        gpuml_comm_request *r = comm->inflight_head;
        while (r) {
            gpuml_comm_request *next = r->next; /* r may finish and leave the list */
            if (r->on_nccl)
                gpuml_nccl_poll(comm, r);
            r = next;
        }
    }
#endif
    (void)comm;
}

gpuml_status gpuml_comm_progress(gpuml_comm *comm)
{
    static const char fn[] = "gpuml_comm_progress";
    if (!comm)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "argument 'comm' is NULL");
    if (comm->broken != GPUML_OK)
        return gpuml_fail(NULL, comm->broken, fn, "communicator is broken: %s", comm->broken_msg);
    progress_all(comm);
    if (comm->broken != GPUML_OK)
        return gpuml_fail(NULL, comm->broken, fn, "%s", comm->broken_msg);
    return GPUML_OK;
}

static gpuml_status req_result(gpuml_comm_request *req)
{
    if (req->status == GPUML_OK)
        return GPUML_OK;
    return gpuml_fail(req->ctx, req->status, req->fn, "%s", req->msg);
}

gpuml_status gpuml_comm_test(gpuml_comm_request *req, int *done)
{
    if (!req || !done)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, "gpuml_comm_test", "argument '%s' is NULL",
                          req ? "done" : "req");
    if (!req->done)
        progress_all(req->comm);
    *done = req->done;
    return req->done ? req_result(req) : GPUML_OK;
}

gpuml_status gpuml_req_wait(gpuml_comm_request *req, double timeout_s)
{
    gpuml_comm *comm = req->comm;
    double t0 = gpuml_clock_s();
    while (!req->done) {
        progress_all(comm);
        if (req->done)
            break;
        double waited = gpuml_clock_s() - t0;
        if (waited >= timeout_s) {
            char what[160];
            gpuml_shape_str(req->c.ndim, req->c.shape, what, sizeof what);
            gpuml_comm_break(comm, GPUML_ERR_TIMEOUT, true,
                             "rank %d of %d: collective #%llu (%s of %s %s) did not complete within %.3g s - a rank "
                             "is missing, stuck or dead, or the ranks called collectives in different orders",
                             comm->rank, comm->size, (unsigned long long)req->seq, gpuml_coll_kind_name(req->c.kind),
                             what, gpuml_dtype_name(req->c.dtype), timeout_s);
            break;
        }
        gpuml_dist_backoff(waited);
    }
    gpuml_status st = req_result(req);
    gpuml_req_release(req);
    return st;
}

gpuml_status gpuml_comm_wait(gpuml_comm_request *req, double timeout_s)
{
    if (!req)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, "gpuml_comm_wait", "argument 'req' is NULL");
    if (isnan(timeout_s))
        timeout_s = -1;
    return gpuml_req_wait(req, timeout_s < 0 ? req->comm->timeout_s : timeout_s);
}

gpuml_status gpuml_comm_nccl_unique_id(char hex[257])
{
    static const char fn[] = "gpuml_comm_nccl_unique_id";
    if (!hex)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "argument 'hex' is NULL");
#if GPUML_HAVE_NCCL
    unsigned char id[128];
    GPUML_TRY(gpuml_nccl_unique_id_bytes(id, fn));
    gpuml_rdv_hex_encode(id, sizeof id, hex);
    return GPUML_OK;
#else
    return gpuml_fail(NULL, GPUML_ERR_UNSUPPORTED, fn, "this gpuml was built without NCCL");
#endif
}
