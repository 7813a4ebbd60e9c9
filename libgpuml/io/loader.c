/* gpuml_loader: batches of whole events, prepared on a background thread
 * into pinned staging slots and turned into tensors on the caller's thread.
 *
 * Threads: the prefetch thread reads the file (or the in-memory copy) into
 * free slots and queues them in order; it never touches the context. The
 * caller's thread (gpuml_loader_next) takes the queue's head, allocates the
 * batch tensors from the context and enqueues the copies on its stream,
 * then records the slot's event and gives the slot back; the thread waits
 * on that event before refilling the slot. A position change bumps `gen`:
 * whatever the thread was producing for the old generation is dropped. */
#define _POSIX_C_SOURCE 200809L
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/runtime.h"
#include "gpuml/testing.h"
#include "io/devsync.h"
#include "io/h5.h"
#include "io/plan.h"


typedef struct slot {
    void *mem;        /* pinned block holding everything below             */
    int64_t *rs;      /* [events_cap + 1] row_splits of the batch           */
    int64_t *ids;     /* [events_cap] event ids                             */
    int64_t *run_start, *run_len; /* [events_cap] read runs (stream mode)   */
    void **field;     /* per configured field                               */
    io_event *event;  /* last use by the caller's stream (CUDA)             */
    int64_t nevents, nrows;
} slot;

enum { ITEM_BATCH, ITEM_END, ITEM_ERROR };

typedef struct item {
    int kind;
    int64_t epoch, batch;
    slot *s;
    gpuml_status st;
    char msg[GPUML_MSG_MAX];
} item;

struct gpuml_batch {
    int64_t epoch, index, nevents, nrows;
    gpuml_tensor *row_splits;
    int nfields;
    gpuml_tensor **fields;
    int64_t *ids;
};

struct gpuml_loader {
    gpuml_ctx *ctx;
    gpuml_dataset *ds;
    int nfields;
    int *fidx;         /* dataset field index of each configured field */
    void **mem;        /* in-memory copies of the fields (NULL: stream)  */
    io_plan_cfg pcfg;
    uint64_t fingerprint;
    int prefetch;
    int64_t rows_cap, events_cap;
    int nslots;
    slot *slots;
    atomic_long fail_countdown;     /* testing: fail the n-th batch read ... */
    atomic_uint_fast64_t fail_gen;  /* ... of this generation               */

    pthread_mutex_t mu;
    pthread_cond_t cv_ready, cv_work;
    bool thread_started, stop;
    uint64_t gen;
    int64_t prod_epoch, prod_batch; /* next item the producer makes      */
    bool prod_failed;               /* an error is queued: stop producing */
    item *queue;                    /* ring of prefetch (>= 1) items      */
    int qhead, qcount, qcap;
    slot **free_slots;
    int nfree;
    pthread_t thread;

    io_plan tplan;                  /* producer's plan                    */
    item pitem;                     /* producer's item under construction */
    io_plan mplan;                  /* caller's cached plan (queries)     */
    int64_t cur_epoch, cur_batch;   /* next batch next() returns          */
};

void gpuml_loader_config_init_defaults(gpuml_loader_config *cfg)
{
    if (!cfg)
        return;
    memset(cfg, 0, sizeof *cfg);
    cfg->max_rows = 65536;
    cfg->max_events = 32;
    cfg->shuffle = 1;
    cfg->world_size = 1;
    cfg->prefetch = 2;
    cfg->in_memory = -1;
    cfg->in_memory_limit = (size_t)1 << 30;
}

/* ---- producing a batch ------------------------------------------------ */

static bool take_injected_failure(gpuml_loader *l, uint64_t gen)
{
    if (atomic_load(&l->fail_gen) != gen)
        return false;
    long c = atomic_load(&l->fail_countdown);
    while (c > 0 && !atomic_compare_exchange_weak(&l->fail_countdown, &c, c - 1))
        ;
    return c == 1;
}

/* Fill slot s with batch b of plan p (any thread but holding no lock). */
static gpuml_status fill_slot(gpuml_loader *l, slot *s, const io_plan *p, int64_t b, uint64_t gen, const char *fn)
{
    if (take_injected_failure(l, gen))
        return gpuml_fail(NULL, GPUML_ERR_IO, fn, "read of '%s' failed (injected by gpuml_loader_fail_read_after)",
                          l->ds->path);
    GPUML_TRY(io_event_wait(s->event, fn));
    const int64_t *ev = p->events + p->offsets[b];
    int64_t k = p->offsets[b + 1] - p->offsets[b];
    const int64_t *RS = l->ds->row_splits;
    s->nevents = k;
    s->rs[0] = 0;
    for (int64_t i = 0; i < k; i++) {
        s->ids[i] = ev[i];
        s->rs[i + 1] = s->rs[i] + (RS[ev[i] + 1] - RS[ev[i]]);
    }
    s->nrows = s->rs[k];
    for (int fi = 0; fi < l->nfields; fi++) {
        const io_field *f = &l->ds->fields[l->fidx[fi]];
        char *dst = s->field[fi];
        if (l->mem) {
            const char *src = l->mem[fi];
            for (int64_t i = 0; i < k; i++) {
                int64_t start = f->per_event ? ev[i] : RS[ev[i]];
                int64_t n = f->per_event ? 1 : RS[ev[i] + 1] - RS[ev[i]];
                memcpy(dst, src + (size_t)start * f->unit_bytes, (size_t)n * f->unit_bytes);
                dst += (size_t)n * f->unit_bytes;
            }
            continue;
        }
        /* Events are ascending within a batch: merge neighbours into runs. */
        int64_t nruns = 0, total = 0;
        for (int64_t i = 0; i < k; i++) {
            int64_t start = f->per_event ? ev[i] : RS[ev[i]];
            int64_t n = f->per_event ? 1 : RS[ev[i] + 1] - RS[ev[i]];
            if (nruns > 0 && s->run_start[nruns - 1] + s->run_len[nruns - 1] == start) {
                s->run_len[nruns - 1] += n;
            } else {
                s->run_start[nruns] = start;
                s->run_len[nruns++] = n;
            }
            total += n;
        }
        GPUML_TRY(io_dataset_read_runs(l->ds, l->fidx[fi], s->run_start, s->run_len, nruns, total, dst, fn));
    }
    return GPUML_OK;
}

/* Make the item at (epoch, b) into *it, using plan *p (rebuilt when it is
 * for another epoch) and, for a batch, slot s (NULL: the caller must
 * provide one; see need_slot). */
static void produce(gpuml_loader *l, io_plan *p, int64_t epoch, int64_t b, uint64_t gen, slot *s, item *it,
                    const char *fn)
{
    it->epoch = epoch;
    it->batch = b;
    it->s = s;
    it->st = GPUML_OK;
    if (p->epoch != epoch) {
        io_plan_free(p);
        it->st = io_plan_build(l->ds->row_splits, l->ds->nevents, &l->pcfg, epoch, p, fn);
    }
    if (it->st == GPUML_OK && b >= p->nbatches)
        it->kind = ITEM_END;
    else if (it->st == GPUML_OK)
        it->st = fill_slot(l, s, p, b, gen, fn);
    if (it->st != GPUML_OK) {
        it->kind = ITEM_ERROR;
        snprintf(it->msg, sizeof it->msg, "%s", gpuml_last_error());
    } else if (b < p->nbatches) {
        it->kind = ITEM_BATCH;
    }
}

static void queue_push(gpuml_loader *l, const item *it)
{
    l->queue[(l->qhead + l->qcount) % l->qcap] = *it;
    l->qcount++;
}

static void queue_pop(gpuml_loader *l)
{
    l->qhead = (l->qhead + 1) % l->qcap;
    l->qcount--;
}

/* Whether the item at the producer's position needs a slot: it is a batch
 * unless the position is at or past its epoch's end (plan known). */
static bool need_slot(const io_plan *p, int64_t epoch, int64_t b)
{
    return !(p->epoch == epoch && b >= p->nbatches);
}

static void *producer_main(void *arg)
{
    static const char fn[] = "gpuml_loader (prefetch thread)";
    gpuml_loader *l = arg;
    item *it = &l->pitem;
    pthread_mutex_lock(&l->mu);
    while (!l->stop) {
        if (l->prod_failed || l->qcount >= l->qcap) {
            pthread_cond_wait(&l->cv_work, &l->mu);
            continue;
        }
        uint64_t g = l->gen;
        int64_t e = l->prod_epoch, b = l->prod_batch;
        slot *s = NULL;
        if (l->tplan.epoch == e && need_slot(&l->tplan, e, b)) {
            if (l->nfree == 0) {
                pthread_cond_wait(&l->cv_work, &l->mu);
                continue;
            }
            s = l->free_slots[--l->nfree];
        }
        pthread_mutex_unlock(&l->mu);
        if (l->tplan.epoch != e) {
            /* Plan first (outside the lock); the slot is taken next round. */
            io_plan_free(&l->tplan);
            gpuml_status st = io_plan_build(l->ds->row_splits, l->ds->nevents, &l->pcfg, e, &l->tplan, fn);
            pthread_mutex_lock(&l->mu);
            if (st != GPUML_OK && l->gen == g) {
                item err = {ITEM_ERROR, e, b, NULL, st, ""};
                snprintf(err.msg, sizeof err.msg, "%s", gpuml_last_error());
                queue_push(l, &err);
                l->prod_failed = true;
                pthread_cond_broadcast(&l->cv_ready);
            }
            continue;
        }
        produce(l, &l->tplan, e, b, g, s, it, fn);
        pthread_mutex_lock(&l->mu);
        if (l->gen != g) {
            if (s)
                l->free_slots[l->nfree++] = s;
            continue;
        }
        if (it->kind != ITEM_BATCH && s) {
            l->free_slots[l->nfree++] = s;
            it->s = NULL;
        }
        queue_push(l, it);
        if (it->kind == ITEM_ERROR) {
            l->prod_failed = true;
        } else if (it->kind == ITEM_END) {
            l->prod_epoch = e + 1;
            l->prod_batch = 0;
        } else {
            l->prod_batch = b + 1;
        }
        pthread_cond_broadcast(&l->cv_ready);
    }
    pthread_mutex_unlock(&l->mu);
    return NULL;
}

/* ---- creation and destruction ----------------------------------------- */


static void loader_free(gpuml_loader *l)
{
    if (l->thread_started) {
        pthread_mutex_lock(&l->mu);
        l->stop = true;
        pthread_cond_broadcast(&l->cv_work);
        pthread_cond_broadcast(&l->cv_ready);
        pthread_mutex_unlock(&l->mu);
        pthread_join(l->thread, NULL);
    }
    for (int i = 0; l->slots && i < l->nslots; i++) {
        io_event_destroy(l->slots[i].event); /* waits for the stream's copies */
        if (l->slots[i].mem)
            gpuml_pinned_free(l->ctx, l->slots[i].mem);
        free(l->slots[i].field);
    }
    free(l->slots);
    free(l->free_slots);
    free(l->queue);
    for (int i = 0; l->mem && i < l->nfields; i++)
        free(l->mem[i]);
    free(l->mem);
    free(l->fidx);
    io_plan_free(&l->tplan);
    io_plan_free(&l->mplan);
    gpuml_dataset_close(l->ds);
    pthread_mutex_destroy(&l->mu);
    pthread_cond_destroy(&l->cv_ready);
    pthread_cond_destroy(&l->cv_work);
    free(l);
}

void gpuml_loader_destroy(gpuml_loader *l)
{
    if (l)
        loader_free(l);
}

static gpuml_status check_config(const gpuml_loader_config *c, const char *fn)
{
    if (!c->path)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "cfg->path is NULL");
    if (c->num_fields < 0 || c->num_fields > 1024 || (c->num_fields > 0 && !c->fields))
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "cfg->num_fields = %d (or cfg->fields is NULL)",
                          c->num_fields);
    if (c->max_rows < 1 || c->max_events < 1)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "cfg->max_rows = %" PRId64 " and cfg->max_events = %"
                          PRId64 " must be >= 1", c->max_rows, c->max_events);
    if (c->world_size < 1 || c->rank < 0 || c->rank >= c->world_size)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "cfg->rank = %d is not in [0, world_size = %d)",
                          c->rank, c->world_size);
    if (c->prefetch < 0 || c->prefetch > 64)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "cfg->prefetch = %d is not in [0, 64]", c->prefetch);
    if (c->in_memory < -1 || c->in_memory > 1)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "cfg->in_memory = %d is not -1, 0 or 1", c->in_memory);
    return GPUML_OK;
}

static gpuml_status setup_fields(gpuml_loader *l, const gpuml_loader_config *c, const char *fn)
{
    l->nfields = c->num_fields;
    l->fidx = calloc((size_t)l->nfields + 1, sizeof *l->fidx);
    if (!l->fidx)
        return gpuml_fail(NULL, GPUML_ERR_OUT_OF_MEMORY, fn, "out of memory");
    size_t total = 0;
    for (int i = 0; i < l->nfields; i++) {
        if (!c->fields[i])
            return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "cfg->fields[%d] is NULL", i);
        GPUML_TRY(gpuml_dataset_find(l->ds, c->fields[i], &l->fidx[i]));
        total += l->ds->fields[l->fidx[i]].info.nbytes;
    }
    bool in_memory = c->in_memory == 1 || (c->in_memory == -1 && total <= c->in_memory_limit);
    if (!in_memory)
        return GPUML_OK;
    l->mem = calloc((size_t)l->nfields + 1, sizeof *l->mem);
    if (!l->mem)
        return gpuml_fail(NULL, GPUML_ERR_OUT_OF_MEMORY, fn, "out of memory");
    for (int i = 0; i < l->nfields; i++) {
        const io_field *f = &l->ds->fields[l->fidx[i]];
        l->mem[i] = malloc(f->info.nbytes ? f->info.nbytes : 1);
        if (!l->mem[i])
            return gpuml_fail(NULL, GPUML_ERR_OUT_OF_MEMORY, fn, "cannot hold field '%s' (%zu bytes) in memory",
                              f->name, f->info.nbytes);
        int64_t start = 0, len = f->info.shape[0];
        GPUML_TRY(io_dataset_read_runs(l->ds, l->fidx[i], &start, &len, 1, len, l->mem[i], fn));
    }
    return GPUML_OK;
}

static gpuml_status setup_slots(gpuml_loader *l, const char *fn)
{
    const int64_t *RS = l->ds->row_splits;
    int64_t biggest = 0;
    for (int64_t e = 0; e < l->ds->nevents; e++)
        if (RS[e + 1] - RS[e] > biggest)
            biggest = RS[e + 1] - RS[e];
    /* A batch holds at most max_rows rows, or one bigger event. */
    l->rows_cap = l->pcfg.max_rows > biggest ? l->pcfg.max_rows : biggest;
    if (l->rows_cap > l->ds->nrows)
        l->rows_cap = l->ds->nrows;
    l->events_cap = l->pcfg.max_events < l->ds->nevents ? l->pcfg.max_events : l->ds->nevents;
    size_t ec = (size_t)l->events_cap;
    size_t bytes = 4 * gpuml_align_up((ec + 1) * sizeof(int64_t));
    for (int i = 0; i < l->nfields; i++) {
        const io_field *f = &l->ds->fields[l->fidx[i]];
        bytes += gpuml_align_up((size_t)(f->per_event ? l->events_cap : l->rows_cap) * f->unit_bytes);
    }
    l->nslots = l->prefetch + 1;
    l->slots = calloc((size_t)l->nslots, sizeof *l->slots);
    l->free_slots = calloc((size_t)l->nslots, sizeof *l->free_slots);
    l->qcap = l->prefetch > 0 ? l->prefetch : 1;
    l->queue = calloc((size_t)l->qcap, sizeof *l->queue);
    if (!l->slots || !l->free_slots || !l->queue)
        return gpuml_fail(NULL, GPUML_ERR_OUT_OF_MEMORY, fn, "out of memory");
    for (int i = 0; i < l->nslots; i++) {
        slot *s = &l->slots[i];
        s->field = calloc((size_t)l->nfields + 1, sizeof *s->field);
        if (!s->field)
            return gpuml_fail(NULL, GPUML_ERR_OUT_OF_MEMORY, fn, "out of memory");
        GPUML_TRY(gpuml_pinned_alloc(l->ctx, bytes, &s->mem));
        GPUML_TRY(io_event_create(l->ctx, &s->event, fn));
        char *p = s->mem;
        s->rs = (int64_t *)p;
        p += gpuml_align_up((ec + 1) * sizeof(int64_t));
        s->ids = (int64_t *)p;
        p += gpuml_align_up((ec + 1) * sizeof(int64_t));
        s->run_start = (int64_t *)p;
        p += gpuml_align_up((ec + 1) * sizeof(int64_t));
        s->run_len = (int64_t *)p;
        p += gpuml_align_up((ec + 1) * sizeof(int64_t));
        for (int f = 0; f < l->nfields; f++) {
            const io_field *fd = &l->ds->fields[l->fidx[f]];
            s->field[f] = p;
            p += gpuml_align_up((size_t)(fd->per_event ? l->events_cap : l->rows_cap) * fd->unit_bytes);
        }
        l->free_slots[l->nfree++] = s;
    }
    return GPUML_OK;
}

static gpuml_status start_thread(gpuml_loader *l, const char *fn)
{
    /* The thread takes no signals: they stay with the host's threads. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int e = pthread_create(&l->thread, NULL, producer_main, l);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (e != 0)
        return gpuml_fail(NULL, GPUML_ERR_INTERNAL, fn, "cannot start the prefetch thread: %s", strerror(e));
    l->thread_started = true;
    return GPUML_OK;
}

gpuml_status gpuml_loader_create(gpuml_ctx *ctx, const gpuml_loader_config *cfg, gpuml_loader **out)
{
    static const char fn[] = "gpuml_loader_create";
    if (!ctx || !cfg || !out)
        return gpuml_fail(ctx, GPUML_ERR_INVALID_ARGUMENT, fn, "argument '%s' is NULL",
                          !ctx ? "ctx" : !cfg ? "cfg" : "out");
    *out = NULL;
    gpuml_status st = check_config(cfg, fn);
    if (st != GPUML_OK) {
        gpuml_ctx_adopt_error(ctx);
        return st;
    }
    gpuml_loader *l = calloc(1, sizeof *l);
    if (!l)
        return gpuml_fail(ctx, GPUML_ERR_OUT_OF_MEMORY, fn, "cannot allocate the loader");
    l->ctx = ctx;
    l->prefetch = cfg->prefetch;
    l->pcfg = (io_plan_cfg){cfg->seed, cfg->shuffle != 0, cfg->max_rows, cfg->max_events, cfg->rank, cfg->world_size};
    l->tplan.epoch = l->mplan.epoch = -1;
    atomic_init(&l->fail_countdown, 0);
    atomic_init(&l->fail_gen, 0);
    pthread_mutex_init(&l->mu, NULL);
    pthread_cond_init(&l->cv_ready, NULL);
    pthread_cond_init(&l->cv_work, NULL);

    st = gpuml_dataset_open(cfg->path, &l->ds);
    if (st == GPUML_OK && (l->ds->nevents < cfg->world_size && !(l->ds->nevents == 0 && cfg->world_size == 1)))
        st = gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn,
                        "'%s' has %" PRId64 " events, fewer than the %d ranks that share it", cfg->path,
                        l->ds->nevents, cfg->world_size);
    if (st == GPUML_OK)
        st = setup_fields(l, cfg, fn);
    if (st == GPUML_OK)
        st = setup_slots(l, fn);
    if (st == GPUML_OK) {
        l->fingerprint = io_plan_fingerprint(l->ds->row_splits, l->ds->nevents, &l->pcfg);
        if (l->prefetch > 0)
            st = start_thread(l, fn);
    }
    if (st != GPUML_OK) {
        gpuml_ctx_adopt_error(ctx);
        loader_free(l);
        return st;
    }
    *out = l;
    return GPUML_OK;
}

/* Drop whatever is queued or being produced and produce from (epoch,
 * batch) on. Call with the lock held. */
static void restart_locked(gpuml_loader *l, int64_t epoch, int64_t batch)
{
    l->gen++;
    while (l->qcount > 0) {
        if (l->queue[l->qhead].s)
            l->free_slots[l->nfree++] = l->queue[l->qhead].s;
        queue_pop(l);
    }
    l->qhead = 0;
    l->prod_epoch = l->cur_epoch = epoch;
    l->prod_batch = l->cur_batch = batch;
    l->prod_failed = false;
    pthread_cond_broadcast(&l->cv_work);
}

void gpuml_loader_fail_read_after(gpuml_loader *l, long n)
{
    if (!l)
        return;
    pthread_mutex_lock(&l->mu);
    /* Counted from the current position, whatever was prefetched. */
    restart_locked(l, l->cur_epoch, l->cur_batch);
    atomic_store(&l->fail_countdown, n > 0 ? n : 0);
    atomic_store(&l->fail_gen, l->gen);
    pthread_mutex_unlock(&l->mu);
}

/* ---- handing out batches ---------------------------------------------- */

void gpuml_batch_destroy(gpuml_batch *b)
{
    if (!b)
        return;
    gpuml_tensor_destroy(b->row_splits);
    for (int i = 0; i < b->nfields; i++)
        gpuml_tensor_destroy(b->fields[i]);
    free(b->fields);
    free(b->ids);
    free(b);
}

/* Tensors on the context from slot s; the copies are enqueued on the
 * context's stream and the slot's event recorded after them. */
static gpuml_status make_batch(gpuml_loader *l, const item *it, gpuml_batch **out, const char *fn)
{
    const slot *s = it->s;
    gpuml_ctx *ctx = l->ctx;
    gpuml_batch *b = calloc(1, sizeof *b);
    if (!b)
        return gpuml_fail(ctx, GPUML_ERR_OUT_OF_MEMORY, fn, "out of memory");
    b->epoch = it->epoch;
    b->index = it->batch;
    b->nevents = s->nevents;
    b->nrows = s->nrows;
    b->fields = calloc((size_t)l->nfields + 1, sizeof *b->fields);
    b->ids = malloc((size_t)(s->nevents + 1) * sizeof *b->ids);
    gpuml_status st = GPUML_OK;
    bool copied = false;
    if (!b->fields || !b->ids) {
        st = gpuml_fail(ctx, GPUML_ERR_OUT_OF_MEMORY, fn, "out of memory");
        goto out;
    }
    memcpy(b->ids, s->ids, (size_t)s->nevents * sizeof *b->ids);
    b->nfields = l->nfields;
    int64_t n1 = s->nevents + 1;
    st = gpuml_tensor_create(ctx, GPUML_I64, 1, &n1, &b->row_splits);
    if (st != GPUML_OK)
        goto out;
    copied = true;
    st = gpuml_tensor_copy_from_host(ctx, b->row_splits, s->rs, (size_t)n1 * sizeof(int64_t));
    for (int i = 0; i < l->nfields && st == GPUML_OK; i++) {
        const io_field *f = &l->ds->fields[l->fidx[i]];
        int64_t shape[GPUML_MAX_DIMS];
        memcpy(shape, f->info.shape, sizeof shape);
        shape[0] = f->per_event ? s->nevents : s->nrows;
        st = gpuml_tensor_create(ctx, f->info.dtype, f->info.ndim, shape, &b->fields[i]);
        if (st == GPUML_OK)
            st = gpuml_tensor_copy_from_host(ctx, b->fields[i], s->field[i], gpuml_tensor_nbytes(b->fields[i]));
    }
out:
    if (copied) {
        /* Also after a failure: copies already enqueued read the slot. */
        gpuml_status es = io_event_record(ctx, s->event, fn);
        if (st == GPUML_OK)
            st = es;
    }
    if (st != GPUML_OK) {
        gpuml_batch_destroy(b);
        return st;
    }
    *out = b;
    return GPUML_OK;
}

/* With prefetch = 0: make the head item on the caller's thread. */
static void produce_inline(gpuml_loader *l, const char *fn)
{
    if (l->qcount > 0)
        return;
    item *it = &l->queue[l->qhead];
    slot *s = l->nfree > 0 ? l->free_slots[--l->nfree] : NULL;
    produce(l, &l->tplan, l->cur_epoch, l->cur_batch, l->gen, s, it, fn);
    if (it->kind != ITEM_BATCH && s) {
        l->free_slots[l->nfree++] = s;
        it->s = NULL;
    }
    l->qcount = 1;
}

gpuml_status gpuml_loader_next(gpuml_loader *l, gpuml_batch **out)
{
    static const char fn[] = "gpuml_loader_next";
    if (!l || !out)
        return gpuml_fail(l ? l->ctx : NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "argument '%s' is NULL", l ? "out" : "l");
    *out = NULL;
    pthread_mutex_lock(&l->mu);
    if (l->prefetch == 0)
        produce_inline(l, fn);
    while (l->qcount == 0)
        pthread_cond_wait(&l->cv_ready, &l->mu);
    item *it = &l->queue[l->qhead];
    if (it->epoch != l->cur_epoch || it->batch != l->cur_batch) {
        pthread_mutex_unlock(&l->mu);
        return gpuml_fail(l->ctx, GPUML_ERR_INTERNAL, fn, "queue holds batch %" PRId64 " of epoch %" PRId64
                          ", expected %" PRId64 " of %" PRId64, it->batch, it->epoch, l->cur_batch, l->cur_epoch);
    }
    if (it->kind == ITEM_ERROR) {
        /* Stays queued: every call reports it until the position is set. */
        gpuml_status st = it->st;
        char msg[GPUML_MSG_MAX];
        snprintf(msg, sizeof msg, "%s", it->msg);
        pthread_mutex_unlock(&l->mu);
        return gpuml_fail(l->ctx, st, fn, "batch %" PRId64 " of epoch %" PRId64 ": %s", l->cur_batch, l->cur_epoch,
                          msg);
    }
    if (it->kind == ITEM_END) {
        queue_pop(l);
        l->cur_epoch++;
        l->cur_batch = 0;
        pthread_cond_broadcast(&l->cv_work);
        pthread_mutex_unlock(&l->mu);
        return GPUML_OK;
    }
    pthread_mutex_unlock(&l->mu);
    /* The head item is ours until popped: the producer only appends. */
    gpuml_batch *b = NULL;
    GPUML_TRY(make_batch(l, it, &b, fn));
    pthread_mutex_lock(&l->mu);
    l->free_slots[l->nfree++] = it->s;
    queue_pop(l);
    l->cur_batch++;
    pthread_cond_broadcast(&l->cv_work);
    pthread_mutex_unlock(&l->mu);
    *out = b;
    return GPUML_OK;
}

/* The caller's plan for `epoch` (cached). */
static gpuml_status caller_plan(gpuml_loader *l, int64_t epoch, const char *fn)
{
    /* The bound keeps the prefetch thread's epoch + 1 far from overflow. */
    if (epoch < 0 || epoch > GPUML_LOADER_MAX_EPOCH)
        return gpuml_fail(l->ctx, GPUML_ERR_INVALID_ARGUMENT, fn, "epoch %" PRId64 " is %s", epoch,
                          epoch < 0 ? "negative" : "beyond 2^53");
    if (l->mplan.epoch == epoch)
        return GPUML_OK;
    io_plan_free(&l->mplan);
    gpuml_status st = io_plan_build(l->ds->row_splits, l->ds->nevents, &l->pcfg, epoch, &l->mplan, fn);
    if (st != GPUML_OK)
        gpuml_ctx_adopt_error(l->ctx);
    return st;
}

gpuml_status gpuml_loader_num_batches(gpuml_loader *l, int64_t epoch, int64_t *out)
{
    static const char fn[] = "gpuml_loader_num_batches";
    if (!l || !out)
        return gpuml_fail(l ? l->ctx : NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "argument '%s' is NULL", l ? "out" : "l");
    GPUML_TRY(caller_plan(l, epoch, fn));
    *out = l->mplan.nbatches;
    return GPUML_OK;
}

gpuml_status gpuml_loader_get_position(const gpuml_loader *l, gpuml_loader_position *out)
{
    if (!l || !out)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, "gpuml_loader_get_position", "argument '%s' is NULL",
                          l ? "out" : "l");
    out->epoch = l->cur_epoch;
    out->batch = l->cur_batch;
    out->fingerprint = l->fingerprint;
    return GPUML_OK;
}

gpuml_status gpuml_loader_set_position(gpuml_loader *l, const gpuml_loader_position *pos)
{
    static const char fn[] = "gpuml_loader_set_position";
    if (!l || !pos)
        return gpuml_fail(l ? l->ctx : NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "argument '%s' is NULL", l ? "pos" : "l");
    if (pos->fingerprint != 0 && pos->fingerprint != l->fingerprint)
        return gpuml_fail(l->ctx, GPUML_ERR_STATE, fn,
                          "the position was saved by a loader with another plan (file contents, seed, shuffle, "
                          "limits, rank or world size differ)");
    GPUML_TRY(caller_plan(l, pos->epoch, fn));
    if (pos->batch < 0 || pos->batch > l->mplan.nbatches)
        return gpuml_fail(l->ctx, GPUML_ERR_INVALID_ARGUMENT, fn,
                          "batch %" PRId64 " is not in [0, %" PRId64 "] for epoch %" PRId64, pos->batch,
                          l->mplan.nbatches, pos->epoch);
    pthread_mutex_lock(&l->mu);
    restart_locked(l, pos->epoch, pos->batch);
    pthread_mutex_unlock(&l->mu);
    return GPUML_OK;
}

int64_t gpuml_batch_num_events(const gpuml_batch *b) { return b ? b->nevents : 0; }
int64_t gpuml_batch_num_rows(const gpuml_batch *b) { return b ? b->nrows : 0; }
int64_t gpuml_batch_epoch(const gpuml_batch *b) { return b ? b->epoch : -1; }
int64_t gpuml_batch_index(const gpuml_batch *b) { return b ? b->index : -1; }
gpuml_tensor *gpuml_batch_row_splits(const gpuml_batch *b) { return b ? b->row_splits : NULL; }
gpuml_tensor *gpuml_batch_field(const gpuml_batch *b, int i)
{
    return (b && i >= 0 && i < b->nfields) ? b->fields[i] : NULL;
}
const int64_t *gpuml_batch_event_ids(const gpuml_batch *b) { return b ? b->ids : NULL; }
