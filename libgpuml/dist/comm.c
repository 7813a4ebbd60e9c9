/* Communicator services: the request pool, faults, progress and waiting
 * with a deadline, logging. The backends (comm_mpi.c, comm_nccl.c) call
 * these, and are called back only through their gpuml_dist_backend_i, so
 * that no backend and this file call each other. Creation and destruction,
 * which call the backends, are in comm_create.c; the collectives in
 * collectives.c. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dist/dist_internal.h"

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

void gpuml_req_free_bs(gpuml_comm_request *r)
{
    const gpuml_comm *comm = r->comm;
    if (r->bs_kind == GPUML_BS_MPI && comm->mpi_i)
        comm->mpi_i->req_free(r);
    if (r->bs_kind == GPUML_BS_NCCL && comm->nccl_i)
        comm->nccl_i->req_free(r);
    r->bs = NULL;
    r->bs_kind = GPUML_BS_NONE;
}

void gpuml_req_claim_bs(gpuml_comm_request *req, int kind)
{
    if (req->bs && req->bs_kind != kind)
        gpuml_req_free_bs(req);
    req->bs_kind = kind;
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
    if (notify && comm->mpi)
        comm->mpi_i->notify(comm, st);
    if (comm->nccl)
        comm->nccl_i->stop_work(comm);
    while (comm->inflight_head) {
        gpuml_comm_request *r = comm->inflight_head;
        r->abandoned = true;
        if (!r->on_nccl && comm->mpi_i) /* in flight and not NCCL's: MPI's */
            comm->mpi_i->abandon(r);
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
    if (comm->mpi)
        comm->mpi_i->progress(comm);
    if (comm->nccl) {
        gpuml_comm_request *r = comm->inflight_head;
        while (r) {
            gpuml_comm_request *next = r->next; /* r may finish and leave the list */
            if (r->on_nccl)
                comm->nccl_i->poll(comm, r);
            r = next;
        }
    }
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
