/*
 * libgpuml/dist/dist_internal.h - what the communicator's parts share: the
 * communicator and request structs, the description of one collective, and
 * the entry points of the MPI and NCCL backends (comm_mpi.c, comm_nccl.c;
 * each compiled only when its library was found).
 *
 * Files, each calling only those after it: comm_create.c (create, destroy),
 * collectives.c, comm_nccl.c, comm_mpi.c, rank_sum.c, comm.c (services),
 * rendezvous.c. comm.c reaches the backends through gpuml_dist_backend_i.
 *
 * Life of a request: collectives.c validates the arguments locally, fills a
 * gpuml_coll, takes a request from the communicator's pool and hands it to
 * a backend's start. The request sits on comm->inflight (in start order)
 * until it is done; comm_progress advances the backends; gpuml_comm_wait
 * polls with a deadline. A fault (timeout, MPI/NCCL error, a peer's notice)
 * breaks the communicator: every in-flight request is finished with the
 * fault's status and *abandoned* - its buffers are never freed or reused,
 * because MPI may still write them.
 */
#ifndef GPUML_DIST_INTERNAL_H
#define GPUML_DIST_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "core/internal.h"
#include "core/runtime.h"
#include "gpuml/dist.h"
#include "gpuml_config.h"

typedef enum coll_kind {
    COLL_ALLREDUCE = 0,
    COLL_BROADCAST,
    COLL_ALLGATHER,
    COLL_REDUCE_SCATTER,
    COLL_BARRIER,
    COLL_KIND_COUNT_
} coll_kind;

const char *gpuml_coll_kind_name(coll_kind k);
const char *gpuml_comm_op_name(gpuml_comm_op op);

/* One collective, validated locally. Rows are along axis 0; flat
 * collectives (all-reduce, broadcast) use rows = numel, row_elems = 1. */
typedef struct gpuml_coll {
    coll_kind kind;
    gpuml_comm_op op;
    int root;
    gpuml_dtype dtype;
    size_t esize;
    const void *in;
    void *out;
    int64_t in_rows, out_rows, row_elems;
    bool in_place;
    gpuml_device device;
    /* for messages */
    int ndim;
    int64_t shape[GPUML_MAX_DIMS];
} gpuml_coll;

struct gpuml_comm_request {
    gpuml_comm *comm;
    gpuml_ctx *ctx;
    const char *fn;
    gpuml_coll c;
    uint64_t seq;               /* call number (MPI path)                     */
    bool on_nccl;
    bool done;
    bool abandoned;
    gpuml_status status;
    char msg[GPUML_MSG_MAX - 128]; /* error text without the "fn: " prefix  */
    gpuml_storage *hold[2];     /* references keeping in / out memory alive */
    void *bs;                   /* backend state, kept across reuse         */
    int bs_kind;                /* GPUML_BS_MPI / _NCCL: whose bs it is     */
    gpuml_comm_request *prev, *next;  /* comm->inflight, start order        */
    gpuml_comm_request *pool_next;    /* comm->pool / comm->all             */
    gpuml_comm_request *all_next;
};

enum { GPUML_BS_NONE = 0, GPUML_BS_MPI = 1, GPUML_BS_NCCL = 2 };

typedef struct gpuml_mpi_state gpuml_mpi_state;
typedef struct gpuml_nccl_state gpuml_nccl_state;

/* What comm.c's services call back in a backend. The backend's create
 * puts its table in the communicator (comm->mpi_i, comm->nccl_i), so that
 * comm.c, which the backends call, never names their functions. */
typedef struct gpuml_dist_backend_i {
    void (*progress)(gpuml_comm *comm);                      /* advance all (MPI), or NULL */
    void (*poll)(gpuml_comm *comm, gpuml_comm_request *req); /* advance one (NCCL), or NULL */
    void (*notify)(gpuml_comm *comm, gpuml_status st);       /* tell the peers of a fault, or NULL */
    void (*stop_work)(gpuml_comm *comm);                      /* stop the backend's work, or NULL */
    void (*abandon)(gpuml_comm_request *req);                /* forget buffers it may still write, or NULL */
    void (*req_free)(gpuml_comm_request *req);               /* free req->bs */
} gpuml_dist_backend_i;

struct gpuml_comm {
    gpuml_comm_backend backend;
    int rank, size, local_rank, local_size;
    gpuml_device device;
    double timeout_s;
    bool deterministic;
    bool validate;
    gpuml_status broken;        /* GPUML_OK while usable                     */
    char broken_msg[GPUML_MSG_MAX - 256];
    uint64_t seq;               /* MPI collectives started                   */
    gpuml_log_fn log_fn;
    void *log_user;
    gpuml_log_level log_level;
    gpuml_mpi_state *mpi;       /* NULL unless MPI is in use                 */
    gpuml_nccl_state *nccl;     /* NULL unless NCCL is in use                */
    const gpuml_dist_backend_i *mpi_i, *nccl_i; /* set with mpi / nccl, kept */
    gpuml_comm_request *inflight_head, *inflight_tail;
    gpuml_comm_request *pool;   /* idle requests                             */
    gpuml_comm_request *all;    /* every request ever allocated              */
};

/* ---- comm.c services for the backends ---------------------------------- */
void gpuml_comm_log(const gpuml_comm *comm, gpuml_log_level level, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
/* Wait a little between polls: spin first, then yield, then sleep up to
 * 1 ms (waited = seconds spent so far). */
void gpuml_dist_backoff(double waited);

/* Requests: take one from the pool (it is in flight from then on, last in
 * start order; NULL when out of memory), wait for one with a deadline and
 * give it back, or give it back directly. */
gpuml_comm_request *gpuml_req_get(gpuml_comm *comm, gpuml_ctx *ctx, const char *fn);
gpuml_status gpuml_req_wait(gpuml_comm_request *req, double timeout_s);
void gpuml_req_release(gpuml_comm_request *req);
/* Make req->bs empty unless it belongs to backend `kind` (a request may
 * serve MPI once and NCCL the next time on a communicator with both). */
void gpuml_req_claim_bs(gpuml_comm_request *req, int kind);
/* Free req->bs through its backend's table (at reuse and destroy). */
void gpuml_req_free_bs(gpuml_comm_request *req);

/* Finish a request: done, with status and (for errors) message. Removes it
 * from the in-flight list and releases its holds unless abandoned. */
void gpuml_req_finish(gpuml_comm_request *req, gpuml_status st, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* Break the communicator (first fault wins): every in-flight request is
 * finished with st and abandoned. notify: tell the other ranks (a fault
 * seen here, not one they told us about). */
void gpuml_comm_break(gpuml_comm *comm, gpuml_status st, bool notify, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;

/* Balanced split of n units over size ranks (the first n % size get one more). */
static inline void gpuml_dist_split(int64_t n, int size, int r, int64_t *start, int64_t *count)
{
    int64_t q = n / size, rem = n % size;
    *start = (int64_t)r * q + (r < rem ? r : rem);
    *count = q + (r < rem ? 1 : 0);
}

/* True when this collective uses the deterministic rank-order sum. */
static inline bool gpuml_coll_is_det(const gpuml_comm *comm, const gpuml_coll *c)
{
    return comm->deterministic && comm->size > 1 &&
           (c->kind == COLL_ALLREDUCE || c->kind == COLL_REDUCE_SCATTER) &&
           (c->op == GPUML_COMM_SUM || c->op == GPUML_COMM_AVG) &&
           (c->dtype == GPUML_F32 || c->dtype == GPUML_F64);
}

/* Rank-order sum of n blocks of len elements at src (block q at src + q*len)
 * into dst[len]; AVG divides by n. f32 via gpuml_reduce (double accumulator,
 * the same arithmetic as the CUDA path), f64 in f64. */
gpuml_status gpuml_dist_rank_sum(gpuml_ctx *ctx, const char *fn, gpuml_dtype dtype, gpuml_comm_op op,
                                 const void *src, int n, int64_t len, void *dst);

/* AVG after a native sum: x[i] /= n for count elements of a CPU tensor.
 * (rank_sum.c, both) */
void gpuml_dist_divide(gpuml_ctx *ctx, gpuml_dtype dtype, void *x, int64_t count, int n);

/* ---- MPI backend (comm_mpi.c) ------------------------------------------ */
#if GPUML_HAVE_MPI
/* Initialise MPI if needed, duplicate the communicator, fill rank, size,
 * local rank and size. */
gpuml_status gpuml_mpi_create(gpuml_comm *comm, const gpuml_comm_config *cfg, const char *fn);
void gpuml_mpi_destroy(gpuml_comm *comm);
/* Queue req (req->c valid unless local_status != OK: then only the header,
 * flagged bad, is exchanged so that the other ranks fail too). */
void gpuml_mpi_start(gpuml_comm *comm, gpuml_comm_request *req, gpuml_status local_status);
/* Advance every MPI request in flight and look for peers' fault notices. */
void gpuml_mpi_progress(gpuml_comm *comm);
/* Tell every other rank that this communicator broke with st. */
void gpuml_mpi_notify(gpuml_comm *comm, gpuml_status st);
/* Forget the request's buffers (MPI may still write them). */
void gpuml_mpi_abandon(gpuml_comm_request *req);
void gpuml_mpi_req_free(gpuml_comm_request *req);
/* Broadcast nbytes from rank 0 over the communicator, with the timeout. */
gpuml_status gpuml_mpi_bcast_bytes(gpuml_comm *comm, void *buf, int nbytes, const char *fn);
/* Gather k int64 from every rank into out[size * k], with the timeout
 * (blocking, on a communicator of its own: for the NCCL path only). */
gpuml_status gpuml_mpi_allgather_i64(gpuml_comm *comm, const int64_t *v, int k, int64_t *out, const char *fn);
#endif

/* ---- NCCL backend (comm_nccl.c) ---------------------------------------- */
#if GPUML_HAVE_NCCL
/* comm->rank/size/local_rank already set (from MPI or the environment). */
gpuml_status gpuml_nccl_create(gpuml_comm *comm, const gpuml_comm_config *cfg, const char *fn);
void gpuml_nccl_destroy(gpuml_comm *comm);
/* Enqueue req on the communicator's stream; on failure finishes req. */
void gpuml_nccl_start(gpuml_comm *comm, gpuml_comm_request *req);
/* Check req for completion or an asynchronous NCCL error. */
void gpuml_nccl_poll(gpuml_comm *comm, gpuml_comm_request *req);
/* ncclCommAbort: stops its kernels; later calls fail. */
void gpuml_nccl_abort(gpuml_comm *comm);
void gpuml_nccl_req_free(gpuml_comm_request *req);
gpuml_status gpuml_nccl_unique_id_bytes(unsigned char id[128], const char *fn);
#endif

#endif
