/* A request slot's life outside the queue's order and the batches' compute
 * (see engine_impl.h): taken with its pool rows at submit, finished without
 * a batch (TIMEOUT / CANCELLED), its pool rows given back once gathered,
 * its `done` called, and returned to the free list. The one place that
 * changes the free list, the pool's extents and the in-flight count. */
#include <string.h>

#include "infer/engine_impl.h"

/* ---- the input pool: first fit over sorted free extents (rows) -------------
 * Free extents never outnumber the allocated ones plus one, so arrays of
 * queue_capacity + 2 entries suffice and nothing is allocated here. */
static int64_t pool_alloc_locked(gpuml_engine *e, int64_t rows)
{
    for (int i = 0; i < e->n_ext; i++) {
        if (e->ext_len[i] < rows)
            continue;
        int64_t off = e->ext_off[i];
        e->ext_off[i] += rows;
        e->ext_len[i] -= rows;
        if (e->ext_len[i] == 0) {
            memmove(e->ext_off + i, e->ext_off + i + 1, (size_t)(e->n_ext - i - 1) * sizeof *e->ext_off);
            memmove(e->ext_len + i, e->ext_len + i + 1, (size_t)(e->n_ext - i - 1) * sizeof *e->ext_len);
            e->n_ext--;
        }
        return off;
    }
    return -1;
}

static void pool_free_locked(gpuml_engine *e, int64_t off, int64_t rows)
{
    int i = 0;
    while (i < e->n_ext && e->ext_off[i] < off)
        i++;
    bool prev = i > 0 && e->ext_off[i - 1] + e->ext_len[i - 1] == off;
    bool next = i < e->n_ext && off + rows == e->ext_off[i];
    if (prev && next) {
        e->ext_len[i - 1] += rows + e->ext_len[i];
        memmove(e->ext_off + i, e->ext_off + i + 1, (size_t)(e->n_ext - i - 1) * sizeof *e->ext_off);
        memmove(e->ext_len + i, e->ext_len + i + 1, (size_t)(e->n_ext - i - 1) * sizeof *e->ext_len);
        e->n_ext--;
    } else if (prev) {
        e->ext_len[i - 1] += rows;
    } else if (next) {
        e->ext_off[i] = off;
        e->ext_len[i] += rows;
    } else {
        memmove(e->ext_off + i + 1, e->ext_off + i, (size_t)(e->n_ext - i) * sizeof *e->ext_off);
        memmove(e->ext_len + i + 1, e->ext_len + i, (size_t)(e->n_ext - i) * sizeof *e->ext_len);
        e->ext_off[i] = off;
        e->ext_len[i] = rows;
        e->n_ext++;
    }
}

void eng_slot_free_locked(gpuml_engine *e, eng_slot *s)
{
    if (s->pool_off >= 0)
        pool_free_locked(e, s->pool_off, s->rows);
    s->pool_off = -1;
    s->next = e->free_slots;
    e->free_slots = s;
    /* Requests in flight as one completes: in a steady state, how many the
     * callers keep submitted (see nothing_more_can_arrive). */
    if (e->in_flight > e->pop_cur)
        e->pop_cur = e->in_flight;
    e->in_flight--;
}

eng_slot *eng_slot_take_locked(gpuml_engine *e, int64_t rows, int64_t *pool_off)
{
    *pool_off = -1;
    if (!e->free_slots || (rows > 0 && (*pool_off = pool_alloc_locked(e, rows)) < 0))
        return NULL;
    eng_slot *s = e->free_slots;
    e->free_slots = s->next;
    e->in_flight++;
    return s;
}

void eng_finish_slot_locked(gpuml_engine *e, eng_slot *s, gpuml_status status)
{
    s->status = status;
    s->next = NULL;
    if (e->fin_tail)
        e->fin_tail->next = s;
    else
        e->fin_head = s;
    e->fin_tail = s;
    pthread_cond_signal(&e->done_cv);
}

static const char *status_text(gpuml_status st)
{
    return st == GPUML_ERR_TIMEOUT     ? "the request's deadline passed before its batch was computed"
           : st == GPUML_ERR_CANCELLED ? "the engine shut down before the request was computed"
                                       : "the request failed";
}

void eng_call_done(gpuml_engine_done_fn done, void *user, gpuml_status st, const char *msg)
{
    if (st != GPUML_OK)
        gpuml_fail(NULL, st, "gpuml_engine", "%s", msg && *msg ? msg : status_text(st));
    else
        gpuml_clear_error();
    done(user, st);
}

void eng_complete_finished(gpuml_engine *e, eng_slot *list)
{
    while (list) {
        eng_slot *s = list;
        list = s->next;
        gpuml_engine_done_fn done = s->done;
        void *user = s->user;
        gpuml_status st = s->status;
        int64_t t_submit = s->t_submit;
        pthread_mutex_lock(&e->stats_lock);
        eng_stats_request_locked(e, st, t_submit, -1, eng_now_us());
        pthread_mutex_unlock(&e->stats_lock);
        pthread_mutex_lock(&e->lock);
        eng_slot_free_locked(e, s);
        pthread_mutex_unlock(&e->lock);
        eng_call_done(done, user, st, NULL);
    }
}

void eng_release_inputs(gpuml_engine *e, eng_batch *b)
{
    pthread_mutex_lock(&e->lock);
    for (int i = 0; i < b->n_events; i++) {
        eng_slot *s = b->items[i];
        if (s->pool_off >= 0)
            pool_free_locked(e, s->pool_off, s->rows);
        s->pool_off = -1;
    }
    pthread_mutex_unlock(&e->lock);
}
