/* Data-parallel reducer (gpuml/ddp.h). */
#define _POSIX_C_SOURCE 200809L
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "autograd/tape_impl.h"
#include "core/internal.h"
#include "core/runtime.h"
#include "gpuml/ddp.h"

typedef struct {
    int64_t begin, end;    /* slab elements */
    int n_params, ready;
    gpuml_tensor view;     /* 1-D view of the gradient slab */
    gpuml_comm_request *req;
    double started_at;
} bucket;

struct gpuml_ddp {
    gpuml_comm *comm;
    gpuml_model *m;
    gpuml_ctx *ctx;
    gpuml_ddp_config cfg;
    int n_params;
    gpuml_var **vars;      /* model parameter vars */
    int *bucket_of;        /* parameter -> bucket */
    int n_buckets;
    bucket *buckets;
    int next_start;        /* buckets start in index order */
    int active;            /* a synchronised step is in progress */
    gpuml_status fault;    /* first error met in a hook */
    double backward_end;
};

void gpuml_ddp_config_init_defaults(gpuml_ddp_config *c)
{
    if (!c)
        return;
    c->first_bucket_bytes = (int64_t)1 << 20;
    c->bucket_bytes = (int64_t)25 << 20;
    c->broadcast_buffers = 1;
}

void gpuml_ddp_destroy(gpuml_ddp *d)
{
    if (!d)
        return;
    free(d->vars);
    free(d->bucket_of);
    free(d->buckets);
    free(d);
}

/* Buckets from the last parameter backwards; a bucket covers whole
 * parameters and the alignment padding after them, so buckets tile the
 * slab without gaps. */
static gpuml_status build_buckets(gpuml_ddp *d, const char *fn)
{
    int n = d->n_params;
    int64_t slab = gpuml_model_param_count(d->m);
    d->buckets = calloc((size_t)(n > 0 ? n : 1), sizeof *d->buckets);
    d->bucket_of = calloc((size_t)(n > 0 ? n : 1), sizeof *d->bucket_of);
    if (!d->buckets || !d->bucket_of)
        return gpuml_fail(d->ctx, GPUML_ERR_OUT_OF_MEMORY, fn, "out of memory");
    int64_t cap = d->cfg.first_bucket_bytes / 4, end = slab;
    bucket *cur = NULL;
    for (int i = n - 1; i >= 0; i--) {
        int64_t off = gpuml_model_param_offset(d->m, i);
        if (!cur) {
            cur = &d->buckets[d->n_buckets++];
            cur->end = end;
        }
        cur->begin = off;
        cur->n_params++;
        d->bucket_of[i] = d->n_buckets - 1;
        if (cur->end - cur->begin >= cap || i == 0) {
            end = cur->begin;
            cur = NULL;
            cap = d->cfg.bucket_bytes / 4;
        }
    }
    if (d->n_buckets > 0)
        d->buckets[d->n_buckets - 1].begin = 0; /* leading padding, if any */
    gpuml_tensor *g = gpuml_model_grad_slab(d->m);
    for (int b = 0; b < d->n_buckets; b++) {
        bucket *k = &d->buckets[b];
        int64_t len = k->end - k->begin;
        gpuml_tensor_init_view(&k->view, (float *)g->data + k->begin, g->device, GPUML_F32, 1, &len);
    }
    return GPUML_OK;
}

gpuml_status gpuml_ddp_create(gpuml_comm *comm, gpuml_model *m, const gpuml_ddp_config *cfg, gpuml_ddp **out)
{
    static const char fn[] = "gpuml_ddp_create";
    if (!comm || !m || !out)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "argument '%s' is NULL",
                          !comm ? "comm" : !m ? "model" : "out");
    *out = NULL;
    gpuml_ddp *d = calloc(1, sizeof *d);
    if (!d)
        return gpuml_fail(NULL, GPUML_ERR_OUT_OF_MEMORY, fn, "cannot allocate the reducer");
    d->comm = comm;
    d->m = m;
    d->ctx = gpuml_model_ctx(m);
    if (cfg)
        d->cfg = *cfg;
    else
        gpuml_ddp_config_init_defaults(&d->cfg);
    if (d->cfg.first_bucket_bytes < 4 || d->cfg.bucket_bytes < 4) {
        gpuml_ctx *ctx = d->ctx;
        gpuml_ddp_destroy(d);
        return gpuml_fail(ctx, GPUML_ERR_INVALID_ARGUMENT, fn, "bucket sizes must be at least 4 bytes");
    }
    d->n_params = gpuml_model_num_params(m);
    d->vars = calloc((size_t)(d->n_params > 0 ? d->n_params : 1), sizeof *d->vars);
    gpuml_status st = d->vars ? GPUML_OK : gpuml_fail(d->ctx, GPUML_ERR_OUT_OF_MEMORY, fn, "out of memory");
    for (int i = 0; i < d->n_params && st == GPUML_OK; i++)
        st = gpuml_model_param(m, i, NULL, NULL, NULL, &d->vars[i]);
    if (st == GPUML_OK)
        st = build_buckets(d, fn);
    /* every rank starts from rank 0's weights */
    if (st == GPUML_OK)
        st = gpuml_comm_broadcast(comm, d->ctx, gpuml_model_param_slab(m), 0);
    if (st == GPUML_OK && gpuml_model_buffer_slab(m))
        st = gpuml_comm_broadcast(comm, d->ctx, gpuml_model_buffer_slab(m), 0);
    if (st != GPUML_OK) {
        gpuml_ddp_destroy(d);
        return st;
    }
    *out = d;
    return GPUML_OK;
}

int gpuml_ddp_num_buckets(const gpuml_ddp *d) { return d ? d->n_buckets : 0; }

static void start_ready(gpuml_ddp *d)
{
    while (d->fault == GPUML_OK && d->next_start < d->n_buckets) {
        bucket *k = &d->buckets[d->next_start];
        if (k->ready < k->n_params)
            break;
        k->started_at = gpuml_clock_s();
        gpuml_status st = gpuml_comm_allreduce_start(d->comm, d->ctx, GPUML_COMM_AVG, &k->view, &k->view, &k->req);
        if (st != GPUML_OK) {
            d->fault = st;
            gpuml_ctx_adopt_error(d->ctx);
            break;
        }
        d->next_start++;
    }
}

static void ddp_hook(void *user, gpuml_var *param, int group)
{
    (void)group;
    gpuml_ddp *d = user;
    if (!d->active)
        return;
    for (int i = 0; i < d->n_params; i++)
        if (d->vars[i] == param) {
            d->buckets[d->bucket_of[i]].ready++;
            break;
        }
    start_ready(d);
    if (d->fault == GPUML_OK) { /* MPI needs calls into it to move the data */
        gpuml_status st = gpuml_comm_progress(d->comm);
        if (st != GPUML_OK)
            d->fault = st;
    }
}

gpuml_status gpuml_ddp_begin(gpuml_ddp *d, gpuml_tape *tape, int sync)
{
    static const char fn[] = "gpuml_ddp_begin";
    if (!d || !tape)
        return gpuml_fail(d ? d->ctx : NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "argument '%s' is NULL",
                          d ? "tape" : "ddp");
    if (d->fault != GPUML_OK)
        return gpuml_fail(d->ctx, GPUML_ERR_STATE, fn, "an earlier collective failed (%s)",
                          gpuml_status_string(d->fault));
    for (int b = 0; b < d->n_buckets; b++) {
        d->buckets[b].ready = 0;
        d->buckets[b].req = NULL;
        d->buckets[b].started_at = 0;
    }
    d->next_start = 0;
    d->active = sync != 0;
    gpuml_tape_set_grad_hook(tape, ddp_hook, d);
    if (sync && d->cfg.broadcast_buffers && gpuml_model_buffer_slab(d->m))
        GPUML_TRY(gpuml_comm_broadcast(d->comm, d->ctx, gpuml_model_buffer_slab(d->m), 0));
    return GPUML_OK;
}

gpuml_status gpuml_ddp_end(gpuml_ddp *d)
{
    static const char fn[] = "gpuml_ddp_end";
    if (!d)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "argument 'ddp' is NULL");
    if (!d->active)
        return d->fault;
    d->backward_end = gpuml_clock_s();
    /* Parameters whose hook never fired (no backward ran) still belong to
     * their buckets: mark everything ready and start in order. */
    for (int b = 0; b < d->n_buckets; b++)
        d->buckets[b].ready = d->buckets[b].n_params;
    start_ready(d);
    gpuml_status st = d->fault;
    for (int b = 0; b < d->n_buckets; b++)
        if (d->buckets[b].req) {
            gpuml_status w = gpuml_comm_wait(d->buckets[b].req, -1.0);
            d->buckets[b].req = NULL;
            if (st == GPUML_OK && w != GPUML_OK)
                st = w;
        }
    d->active = 0;
    if (st != GPUML_OK) {
        d->fault = st;
        return gpuml_fail(d->ctx, st, fn, "gradient all-reduce failed: %s", gpuml_last_error());
    }
    return GPUML_OK;
}

void gpuml_ddp_last_timeline(const gpuml_ddp *d, double *starts, int cap, double *backward_end)
{
    for (int b = 0; b < d->n_buckets && b < cap; b++)
        starts[b] = d->buckets[b].started_at;
    if (backward_end)
        *backward_end = d->backward_end;
}
