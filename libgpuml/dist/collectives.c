/* The public collectives: local argument checks, routing (self, MPI for CPU
 * tensors, NCCL for CUDA tensors), the one-rank implementation, and the
 * local arithmetic the MPI path shares (rank-order sum, AVG division). */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <string.h>

#include "dist/dist_internal.h"
#include "ops/dispatch.h"

typedef enum { ROUTE_SELF, ROUTE_MPI, ROUTE_NCCL } route;

static const char *dev_str(gpuml_device d, char *buf, size_t n)
{
    if (d.type == GPUML_DEVICE_CUDA)
        snprintf(buf, n, "cuda:%d", d.index);
    else
        snprintf(buf, n, "cpu");
    return buf;
}

/* Which path a collective on tensors of device d takes; errors when the
 * communicator has no path for it. */
static gpuml_status route_for(gpuml_comm *comm, gpuml_ctx *ctx, const char *fn, gpuml_device d, route *r)
{
    if (comm->backend == GPUML_COMM_SELF) {
        *r = ROUTE_SELF;
        return GPUML_OK;
    }
    if (d.type == GPUML_DEVICE_CPU) {
        if (comm->mpi) {
            *r = ROUTE_MPI;
            return GPUML_OK;
        }
        return gpuml_fail(ctx, GPUML_ERR_UNSUPPORTED, fn,
                          "CPU tensors go over MPI, and this NCCL communicator was bootstrapped without MPI; copy "
                          "them to the GPU or bootstrap with GPUML_BOOTSTRAP_MPI");
    }
    if (!comm->nccl)
        return gpuml_fail(ctx, GPUML_ERR_DEVICE_MISMATCH, fn,
                          "CUDA tensors need a GPUML_COMM_NCCL communicator (gpuml does not assume a CUDA-aware MPI)");
    if (d.index != comm->device.index) {
        char a[32], b[32];
        return gpuml_fail(ctx, GPUML_ERR_DEVICE_MISMATCH, fn, "tensors are on %s but the NCCL communicator is on %s",
                          dev_str(d, a, sizeof a), dev_str(comm->device, b, sizeof b));
    }
    *r = ROUTE_NCCL;
    return GPUML_OK;
}

static bool reducible(gpuml_dtype dt, route r)
{
    switch (dt) {
    case GPUML_F32:
    case GPUML_F64:
    case GPUML_I32:
    case GPUML_I64:
        return true;
    case GPUML_F16:
    case GPUML_BF16:
        return r == ROUTE_NCCL || r == ROUTE_SELF;
    default:
        return false;
    }
}

static bool is_float(gpuml_dtype dt)
{
    return dt == GPUML_F32 || dt == GPUML_F64 || dt == GPUML_F16 || dt == GPUML_BF16;
}

static gpuml_status check_op(gpuml_ctx *ctx, const char *fn, gpuml_comm_op op, gpuml_dtype dt, route r)
{
    if ((unsigned)op >= GPUML_COMM_OP_COUNT_)
        return gpuml_fail(ctx, GPUML_ERR_INVALID_ARGUMENT, fn, "op %d is not a gpuml_comm_op", (int)op);
    if (!reducible(dt, r))
        return gpuml_fail(ctx, GPUML_ERR_DTYPE, fn, "cannot reduce %s tensors%s (f32, f64, i32, i64 are supported)",
                          gpuml_dtype_name(dt), r == ROUTE_MPI ? " over MPI" : "");
    if (op == GPUML_COMM_AVG && !is_float(dt))
        return gpuml_fail(ctx, GPUML_ERR_DTYPE, fn, "op AVG needs a floating-point tensor, got %s",
                          gpuml_dtype_name(dt));
    return GPUML_OK;
}

static bool overlap(const gpuml_tensor *a, const gpuml_tensor *b)
{
    const char *pa = a->data, *pb = b->data;
    size_t na = gpuml_tensor_nbytes(a), nb = gpuml_tensor_nbytes(b);
    return na && nb && pa < pb + nb && pb < pa + na;
}

static void describe(gpuml_coll *c, const gpuml_tensor *t)
{
    c->dtype = t->dtype;
    c->esize = gpuml_dtype_size(t->dtype);
    c->device = t->device;
    c->ndim = t->ndim;
    memcpy(c->shape, t->shape, sizeof c->shape);
}

/* Trailing elements per row (everything after axis 0). */
static int64_t row_elems(const gpuml_tensor *t)
{
    int64_t e = 1;
    for (int i = 1; i < t->ndim; i++)
        e *= t->shape[i];
    return e;
}

static gpuml_status check_rows_like(gpuml_ctx *ctx, const char *fn, const gpuml_tensor *in, const gpuml_tensor *out)
{
    if (in->ndim < 1)
        return gpuml_fail(ctx, GPUML_ERR_SHAPE, fn, "argument 'in' must have at least one dimension (rows)");
    bool same = out->ndim == in->ndim;
    for (int i = 1; same && i < in->ndim; i++)
        same = out->shape[i] == in->shape[i];
    if (!same) {
        char a[160], b[160];
        return gpuml_fail(ctx, GPUML_ERR_SHAPE, fn, "argument 'out' %s must have the trailing shape of 'in' %s",
                          gpuml_shape_str(out->ndim, out->shape, b, sizeof b),
                          gpuml_shape_str(in->ndim, in->shape, a, sizeof a));
    }
    if (out->dtype != in->dtype)
        return gpuml_fail(ctx, GPUML_ERR_DTYPE, fn, "argument 'out' is %s but 'in' is %s", gpuml_dtype_name(out->dtype),
                          gpuml_dtype_name(in->dtype));
    if (overlap(in, out))
        return gpuml_fail(ctx, GPUML_ERR_INVALID_ARGUMENT, fn, "arguments 'in' and 'out' overlap");
    return GPUML_OK;
}

static gpuml_status check_ctx(gpuml_comm *comm, gpuml_ctx *ctx, const char *fn)
{
    if (!ctx)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "argument 'ctx' is NULL");
    if (comm->broken != GPUML_OK)
        return gpuml_fail(ctx, GPUML_ERR_STATE, fn, "the communicator is broken by an earlier fault (%s: %s)",
                          gpuml_status_string(comm->broken), comm->broken_msg);
    return GPUML_OK;
}

/* ---- one rank ------------------------------------------------------------ */

static gpuml_status self_run(gpuml_ctx *ctx, const char *fn, const gpuml_coll *c)
{
    size_t in_bytes = (size_t)(c->in_rows * c->row_elems) * c->esize;
    switch (c->kind) {
    case COLL_ALLREDUCE:
    case COLL_ALLGATHER:
    case COLL_REDUCE_SCATTER: /* one rank owns every row */
        if (c->in_place || in_bytes == 0)
            return GPUML_OK;
        return gpuml_memcpy(ctx, c->out, c->device, c->in, c->device, in_bytes, fn);
    case COLL_BROADCAST:
    case COLL_BARRIER:
    default:
        return GPUML_OK;
    }
}

/* ---- submission ---------------------------------------------------------- */

#if GPUML_HAVE_MPI
/* Re-raise a message saved from gpuml_last_error() ("fn: text"). */
static gpuml_status reraise(gpuml_ctx *ctx, gpuml_status st, const char *fn, const char *saved)
{
    size_t n = strlen(fn);
    const char *text = (!strncmp(saved, fn, n) && saved[n] == ':' && saved[n + 1] == ' ') ? saved + n + 2 : saved;
    return gpuml_fail(ctx, st, fn, "%s", text);
}
#endif

/* Run (out_req NULL: to completion, with the timeout) or start a validated
 * collective. local != OK: the arguments failed local checks (message
 * already raised); on the MPI path, with validation, the rank still joins
 * the header exchange so that the others fail with it instead of hanging. */
static gpuml_status submit(gpuml_comm *comm, gpuml_ctx *ctx, const char *fn, gpuml_coll *c, route r, gpuml_status local,
                           const gpuml_tensor *keep_a, const gpuml_tensor *keep_b, gpuml_comm_request **out_req)
{
    if (local != GPUML_OK) {
#if GPUML_HAVE_MPI
        if (r == ROUTE_MPI && comm->validate && comm->broken == GPUML_OK) {
            char saved[GPUML_MSG_MAX];
            snprintf(saved, sizeof saved, "%s", gpuml_last_error());
            gpuml_comm_request *req = gpuml_req_get(comm, ctx, fn);
            if (req) {
                req->seq = comm->seq++;
                gpuml_mpi_start(comm, req, local);
                (void)gpuml_req_wait(req, comm->timeout_s);
            }
            return reraise(ctx, local, fn, saved);
        }
#endif
        return local;
    }
    if (r == ROUTE_SELF && !out_req)
        return self_run(ctx, fn, c);

    gpuml_comm_request *req = gpuml_req_get(comm, ctx, fn);
    if (!req)
        return gpuml_fail(ctx, GPUML_ERR_OUT_OF_MEMORY, fn, "cannot allocate a request");
    req->c = *c;
    if (keep_a && keep_a->storage) {
        gpuml_storage_retain(keep_a->storage);
        req->hold[0] = keep_a->storage;
    }
    if (keep_b && keep_b->storage && (!keep_a || keep_b->storage != keep_a->storage)) {
        gpuml_storage_retain(keep_b->storage);
        req->hold[1] = keep_b->storage;
    }
    switch (r) {
    case ROUTE_SELF: {
        gpuml_status st = self_run(ctx, fn, c);
        gpuml_req_finish(req, st, "%s", gpuml_last_error());
        break;
    }
    case ROUTE_MPI:
#if GPUML_HAVE_MPI
        req->seq = comm->seq++;
        gpuml_mpi_start(comm, req, GPUML_OK);
#endif
        break;
    case ROUTE_NCCL:
#if GPUML_HAVE_NCCL
        req->on_nccl = true;
        gpuml_nccl_start(comm, req);
#endif
        break;
    }
    if (!out_req)
        return gpuml_req_wait(req, comm->timeout_s);
    if (req->done && req->status != GPUML_OK) { /* failed at once: report it here */
        gpuml_status st = req->status;
        char msg[sizeof req->msg];
        memcpy(msg, req->msg, sizeof msg);
        gpuml_req_release(req);
        return gpuml_fail(ctx, st, fn, "%s", msg);
    }
    *out_req = req;
    return GPUML_OK;
}

/* Route from the first tensor given (or the context) when checks fail
 * before the tensors are known to be good. */
static route guess_route(gpuml_comm *comm, gpuml_ctx *ctx, const gpuml_tensor *t)
{
    gpuml_device d = t ? t->device : ctx->device;
    if (comm->backend == GPUML_COMM_SELF)
        return ROUTE_SELF;
    if (d.type == GPUML_DEVICE_CUDA && comm->nccl)
        return ROUTE_NCCL;
    return comm->mpi ? ROUTE_MPI : ROUTE_NCCL;
}

/* The checks every in/out collective starts with, in the order the
 * messages should come; with_op: also that op suits the dtype on the route.
 * Failures are collected, not returned early: a rank with bad arguments
 * still joins the header exchange so that the others fail too. */
static gpuml_status check_in_out(gpuml_comm *comm, gpuml_ctx *ctx, const char *fn, int with_op, gpuml_comm_op op,
                                 const gpuml_tensor *in, const gpuml_tensor *out, route *r)
{
    gpuml_status st = gpuml_check_tensor(ctx, fn, "in", in);
    if (st == GPUML_OK)
        st = gpuml_check_tensor(ctx, fn, "out", out);
    if (st == GPUML_OK)
        st = route_for(comm, ctx, fn, in->device, r);
    if (st == GPUML_OK && with_op)
        st = check_op(ctx, fn, op, in->dtype, *r);
    return st;
}

static gpuml_status allreduce_impl(gpuml_comm *comm, gpuml_ctx *ctx, const char *fn, gpuml_comm_op op,
                                   const gpuml_tensor *in, gpuml_tensor *out, gpuml_comm_request **req)
{
    if (!comm)
        return gpuml_fail(ctx, GPUML_ERR_INVALID_ARGUMENT, fn, "argument 'comm' is NULL");
    GPUML_TRY(check_ctx(comm, ctx, fn));
    if (req)
        *req = NULL;
    gpuml_coll c = {.kind = COLL_ALLREDUCE, .op = op};
    route r = guess_route(comm, ctx, in);
    gpuml_status st = check_in_out(comm, ctx, fn, 1, op, in, out, &r);
    if (st == GPUML_OK && out->dtype != in->dtype)
        st = gpuml_fail(ctx, GPUML_ERR_DTYPE, fn, "argument 'out' is %s but 'in' is %s", gpuml_dtype_name(out->dtype),
                        gpuml_dtype_name(in->dtype));
    if (st == GPUML_OK)
        st = gpuml_check_same_shape(ctx, fn, "in", in, "out", out);
    if (st == GPUML_OK && in->data != out->data && overlap(in, out))
        st = gpuml_fail(ctx, GPUML_ERR_INVALID_ARGUMENT, fn, "arguments 'in' and 'out' overlap without being equal");
    if (st == GPUML_OK) {
        describe(&c, in);
        c.in = in->data;
        c.out = out->data;
        c.in_rows = gpuml_tensor_numel(in);
        c.out_rows = c.in_rows;
        c.row_elems = 1;
        c.in_place = in->data == out->data;
    }
    return submit(comm, ctx, fn, &c, r, st, in, out, req);
}

gpuml_status gpuml_comm_allreduce(gpuml_comm *comm, gpuml_ctx *ctx, gpuml_comm_op op, const gpuml_tensor *in,
                                  gpuml_tensor *out)
{
    return allreduce_impl(comm, ctx, "gpuml_comm_allreduce", op, in, out, NULL);
}

gpuml_status gpuml_comm_allreduce_start(gpuml_comm *comm, gpuml_ctx *ctx, gpuml_comm_op op, const gpuml_tensor *in,
                                        gpuml_tensor *out, gpuml_comm_request **req)
{
    static const char fn[] = "gpuml_comm_allreduce_start";
    if (!req)
        return gpuml_fail(ctx, GPUML_ERR_INVALID_ARGUMENT, fn, "argument 'req' is NULL");
    return allreduce_impl(comm, ctx, fn, op, in, out, req);
}

gpuml_status gpuml_comm_broadcast(gpuml_comm *comm, gpuml_ctx *ctx, gpuml_tensor *t, int root)
{
    static const char fn[] = "gpuml_comm_broadcast";
    if (!comm)
        return gpuml_fail(ctx, GPUML_ERR_INVALID_ARGUMENT, fn, "argument 'comm' is NULL");
    GPUML_TRY(check_ctx(comm, ctx, fn));
    gpuml_coll c = {.kind = COLL_BROADCAST, .root = root};
    route r = guess_route(comm, ctx, t);
    gpuml_status st = gpuml_check_tensor(ctx, fn, "t", t);
    if (st == GPUML_OK)
        st = route_for(comm, ctx, fn, t->device, &r);
    if (st == GPUML_OK && (root < 0 || root >= comm->size))
        st = gpuml_fail(ctx, GPUML_ERR_INVALID_ARGUMENT, fn, "root %d is not a rank in [0, %d)", root, comm->size);
    if (st == GPUML_OK) {
        describe(&c, t);
        c.in = c.out = t->data;
        c.in_rows = c.out_rows = gpuml_tensor_numel(t);
        c.row_elems = 1;
        c.in_place = true;
    }
    return submit(comm, ctx, fn, &c, r, st, t, NULL, NULL);
}

gpuml_status gpuml_comm_allgather(gpuml_comm *comm, gpuml_ctx *ctx, const gpuml_tensor *in, gpuml_tensor *out)
{
    static const char fn[] = "gpuml_comm_allgather";
    if (!comm)
        return gpuml_fail(ctx, GPUML_ERR_INVALID_ARGUMENT, fn, "argument 'comm' is NULL");
    GPUML_TRY(check_ctx(comm, ctx, fn));
    gpuml_coll c = {.kind = COLL_ALLGATHER};
    route r = guess_route(comm, ctx, in);
    gpuml_status st = check_in_out(comm, ctx, fn, 0, GPUML_COMM_SUM, in, out, &r);
    if (st == GPUML_OK)
        st = check_rows_like(ctx, fn, in, out);
    /* Without MPI the row counts cannot be compared across ranks: then
     * every rank must bring the same number. (NCCL bootstrapped over MPI
     * agrees the counts over it: comm_nccl.c, gather_counts.) */
    bool counts_agreed = r == ROUTE_MPI || (r == ROUTE_NCCL && comm->mpi);
    if (st == GPUML_OK && !counts_agreed && out->shape[0] != in->shape[0] * comm->size)
        st = gpuml_fail(ctx, GPUML_ERR_SHAPE, fn,
                        "argument 'out' has %lld rows, expected %d x %lld (equal row counts on every rank are required "
                        "without MPI)", (long long)out->shape[0], comm->size, (long long)in->shape[0]);
    if (st == GPUML_OK) {
        describe(&c, in);
        c.in = in->data;
        c.out = out->data;
        c.in_rows = in->shape[0];
        c.out_rows = out->shape[0];
        c.row_elems = row_elems(in);
    }
    return submit(comm, ctx, fn, &c, r, st, in, out, NULL);
}

gpuml_status gpuml_comm_reduce_scatter(gpuml_comm *comm, gpuml_ctx *ctx, gpuml_comm_op op, const gpuml_tensor *in,
                                       gpuml_tensor *out)
{
    static const char fn[] = "gpuml_comm_reduce_scatter";
    if (!comm)
        return gpuml_fail(ctx, GPUML_ERR_INVALID_ARGUMENT, fn, "argument 'comm' is NULL");
    GPUML_TRY(check_ctx(comm, ctx, fn));
    gpuml_coll c = {.kind = COLL_REDUCE_SCATTER, .op = op};
    route r = guess_route(comm, ctx, in);
    gpuml_status st = check_in_out(comm, ctx, fn, 1, op, in, out, &r);
    if (st == GPUML_OK)
        st = check_rows_like(ctx, fn, in, out);
    int64_t start = 0, count = 0;
    if (st == GPUML_OK) {
        gpuml_comm_shard_rows(in->shape[0], comm->size, comm->rank, &start, &count);
        if (out->shape[0] != count)
            st = gpuml_fail(ctx, GPUML_ERR_SHAPE, fn,
                            "argument 'out' has %lld rows, but rank %d owns %lld of the %lld rows of 'in' "
                            "(gpuml_comm_shard_rows)", (long long)out->shape[0], comm->rank, (long long)count,
                            (long long)in->shape[0]);
    }
    if (st == GPUML_OK) {
        describe(&c, in);
        c.in = in->data;
        c.out = out->data;
        c.in_rows = in->shape[0];
        c.out_rows = out->shape[0];
        c.row_elems = row_elems(in);
    }
    return submit(comm, ctx, fn, &c, r, st, in, out, NULL);
}

gpuml_status gpuml_comm_barrier(gpuml_comm *comm)
{
    static const char fn[] = "gpuml_comm_barrier";
    if (!comm)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "argument 'comm' is NULL");
    if (comm->broken != GPUML_OK)
        return gpuml_fail(NULL, GPUML_ERR_STATE, fn, "the communicator is broken by an earlier fault (%s: %s)",
                          gpuml_status_string(comm->broken), comm->broken_msg);
    gpuml_coll c = {.kind = COLL_BARRIER, .dtype = GPUML_U8, .esize = 1, .device = comm->device};
    route r = comm->backend == GPUML_COMM_SELF ? ROUTE_SELF : comm->mpi ? ROUTE_MPI : ROUTE_NCCL;
    return submit(comm, NULL, fn, &c, r, GPUML_OK, NULL, NULL, NULL);
}
