/* The engine's queue: request checks, submit, the priority heap, the pool
 * of copied inputs, and batch formation (see engine_impl.h). */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "infer/engine_impl.h"

/* ---- priority heap: higher priority first, then lower seq (FIFO) ---------- */
static bool before(const eng_slot *a, const eng_slot *b)
{
    return a->priority > b->priority || (a->priority == b->priority && a->seq < b->seq);
}

static void heap_push(gpuml_engine *e, eng_slot *s)
{
    int i = e->heap_n++;
    while (i > 0) {
        int p = (i - 1) / 2;
        if (!before(s, e->heap[p]))
            break;
        e->heap[i] = e->heap[p];
        i = p;
    }
    e->heap[i] = s;
}

static eng_slot *heap_pop(gpuml_engine *e)
{
    eng_slot *top = e->heap[0];
    eng_slot *last = e->heap[--e->heap_n];
    int n = e->heap_n, i = 0;
    for (;;) {
        int c = 2 * i + 1;
        if (c >= n)
            break;
        if (c + 1 < n && before(e->heap[c + 1], e->heap[c]))
            c++;
        if (!before(e->heap[c], last))
            break;
        e->heap[i] = e->heap[c];
        i = c;
    }
    if (n > 0)
        e->heap[i] = last;
    return top;
}

gpuml_status eng_queue_init(gpuml_engine *e)
{
    static const char fn[] = "gpuml_engine_create";
    int cap = e->cfg.queue_capacity;
    e->slots = calloc((size_t)cap, sizeof *e->slots);
    e->heap = calloc((size_t)cap, sizeof *e->heap);
    e->ext_off = calloc((size_t)cap + 2, sizeof *e->ext_off);
    e->ext_len = calloc((size_t)cap + 2, sizeof *e->ext_len);
    const void **ptrs = calloc((size_t)cap * (size_t)(e->n_in + e->n_out), sizeof(void *));
    e->slot_ptrs = (void *)ptrs;
    if (!e->slots || !e->heap || !e->ext_off || !e->ext_len || !ptrs)
        return gpuml_fail(NULL, GPUML_ERR_OUT_OF_MEMORY, fn, "cannot allocate %d request slots", cap);
    for (int i = cap - 1; i >= 0; i--) {
        eng_slot *s = &e->slots[i];
        s->in = (const float **)ptrs + (size_t)i * (size_t)(e->n_in + e->n_out);
        s->out = (float **)(s->in + e->n_in);
        s->pool_off = -1;
        s->next = e->free_slots;
        e->free_slots = s;
    }
    e->pool_rows = e->cfg.queue_rows;
    size_t bytes = (size_t)e->pool_rows * (size_t)e->f_in_sum * sizeof(float);
    void *pool = NULL;
    GPUML_TRY(gpuml_pinned_alloc(e->inst[0].ctx, bytes, &pool));
    e->pool = pool;
    e->ext_off[0] = 0;
    e->ext_len[0] = e->pool_rows;
    e->n_ext = 1;
    return GPUML_OK;
}

void eng_queue_fini(gpuml_engine *e)
{
    if (e->pool && e->inst && e->inst[0].ctx)
        gpuml_pinned_free(e->inst[0].ctx, e->pool);
    e->pool = NULL;
    free(e->slot_ptrs);
    free(e->slots);
    free(e->heap);
    free(e->ext_off);
    free(e->ext_len);
    e->slots = NULL;
}

gpuml_status eng_check_request(gpuml_engine *e, const gpuml_engine_request *req, const char *fn)
{
    if (!req)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "argument 'req' is NULL");
    if (req->rows < 0 || req->rows > e->cfg.max_batch_rows)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn,
                          "req->rows = %" PRId64 " is not in [0, max_batch_rows = %" PRId64 "]", req->rows,
                          e->cfg.max_batch_rows);
    if (!req->inputs || !req->outputs)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "req->%s is NULL (the model has %d %s)",
                          !req->inputs ? "inputs" : "outputs", !req->inputs ? e->n_in : e->n_out,
                          !req->inputs ? "inputs" : "outputs");
    for (int i = 0; i < e->n_in; i++)
        if (!req->inputs[i] && req->rows > 0)
            return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "req->inputs[%d] is NULL", i);
    for (int o = e->cfg.clusters.enabled ? e->n_mout : 0; o < e->n_out; o++)
        if (!req->outputs[o] && (req->rows > 0 || e->out_event[o]))
            return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "req->outputs[%d] is NULL", o);
    gpuml_device_type kinds[2] = {req->inputs_on, req->outputs_on};
    for (int k = 0; k < 2; k++) {
        const char *what = k ? "outputs_on" : "inputs_on";
        if (kinds[k] != GPUML_DEVICE_CPU && kinds[k] != GPUML_DEVICE_CUDA)
            return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "req->%s = %d is not a device type", what,
                              (int)kinds[k]);
        if (kinds[k] == GPUML_DEVICE_CUDA && !e->cuda)
            return gpuml_fail(NULL, GPUML_ERR_DEVICE_MISMATCH, fn,
                              "req->%s is CUDA but the engine runs on the CPU: pass host memory", what);
    }
    return GPUML_OK;
}

int64_t gpuml_engine_clock_us(void) { return eng_now_us(); }

gpuml_status gpuml_engine_submit(gpuml_engine *e, const gpuml_engine_request *req, gpuml_engine_done_fn done,
                                 void *user)
{
    static const char fn[] = "gpuml_engine_submit";
    if (!e)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "argument 'e' is NULL");
    GPUML_TRY(eng_check_request(e, req, fn));
    if (!done)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "argument 'done' is NULL");
    /* The queue picks the device later: device memory is on one of them
     * (direct mode runs on devices[0] and takes it). */
    if (e->n_devices > 1 && (req->inputs_on == GPUML_DEVICE_CUDA || req->outputs_on == GPUML_DEVICE_CUDA))
        return gpuml_fail(NULL, GPUML_ERR_DEVICE_MISMATCH, fn,
                          "req->%s is CUDA but the engine spreads its instances over %d devices: pass host "
                          "memory (or use gpuml_engine_run_direct, which runs on device %d)",
                          req->inputs_on == GPUML_DEVICE_CUDA ? "inputs_on" : "outputs_on", e->n_devices,
                          e->cfg.device.index);
    bool copy = req->inputs_on == GPUML_DEVICE_CPU && !req->borrow_inputs && req->rows > 0;

    pthread_mutex_lock(&e->lock);
    if (e->stopping) {
        pthread_mutex_unlock(&e->lock);
        return gpuml_fail(NULL, GPUML_ERR_STATE, fn, "the engine is shutting down");
    }
    int64_t off = -1;
    eng_slot *s = eng_slot_take_locked(e, copy ? req->rows : 0, &off);
    if (!s) {
        bool slots = !e->free_slots;
        pthread_mutex_unlock(&e->lock);
        pthread_mutex_lock(&e->stats_lock);
        e->st.rejected++;
        pthread_mutex_unlock(&e->stats_lock);
        if (slots)
            return gpuml_fail(NULL, GPUML_ERR_QUEUE_FULL, fn, "queue_capacity = %d requests are in flight",
                              e->cfg.queue_capacity);
        return gpuml_fail(NULL, GPUML_ERR_QUEUE_FULL, fn,
                          "no room for %" PRId64 " rows in the input pool (queue_rows = %" PRId64 ")", req->rows,
                          e->pool_rows);
    }
    e->submitting++;
    pthread_mutex_unlock(&e->lock);

    /* The slot is ours until it is pushed: fill it and copy without the lock. */
    s->next = NULL;
    s->done = done;
    s->user = user;
    s->rows = req->rows;
    s->priority = req->priority;
    s->deadline_us = req->deadline_us;
    s->in_dev = req->inputs_on == GPUML_DEVICE_CUDA;
    s->out_dev = req->outputs_on == GPUML_DEVICE_CUDA;
    s->pool_off = off;
    s->status = GPUML_OK;
    s->t_submit = eng_now_us();
    if (copy) {
        float *dst = e->pool + off * e->f_in_sum;
        for (int i = 0; i < e->n_in; i++) {
            memcpy(dst, req->inputs[i], (size_t)(req->rows * e->f_in[i]) * sizeof(float));
            s->in[i] = dst;
            dst += req->rows * e->f_in[i];
        }
    } else {
        for (int i = 0; i < e->n_in; i++)
            s->in[i] = req->inputs[i];
    }
    for (int o = 0; o < e->n_out; o++)
        s->out[o] = req->outputs[o];

    pthread_mutex_lock(&e->lock);
    s->seq = e->next_seq++;
    if (e->heap_n == 0 || s->t_submit < e->oldest_submit)
        e->oldest_submit = s->t_submit;
    heap_push(e, s);
    e->heap_rows += s->rows;
    e->submitting--;
    pthread_cond_signal(&e->queue_cv);
    if (e->stopping && e->submitting == 0)
        pthread_cond_broadcast(&e->submit_cv);
    pthread_mutex_unlock(&e->lock);

    pthread_mutex_lock(&e->stats_lock);
    e->st.submitted++;
    pthread_mutex_unlock(&e->stats_lock);
    return GPUML_OK;
}

void eng_cancel_waiting_locked(gpuml_engine *e, gpuml_status status)
{
    while (e->heap_n > 0)
        eng_finish_slot_locked(e, heap_pop(e), status);
    e->heap_rows = 0;
}

static void timed_wait(pthread_cond_t *cv, pthread_mutex_t *m, int64_t until_us)
{
    struct timespec ts = {(time_t)(until_us / 1000000), (long)(until_us % 1000000) * 1000};
    pthread_cond_timedwait(cv, m, &ts);
}

/* Whether every request the callers keep in flight is already in the
 * engine (waiting or being computed): then waiting for more only delays
 * this batch, since the callers submit again only after completions (a
 * batch limit above what can be waiting must not cost the full delay each
 * time). The population is the most requests in flight at a completion
 * over the last one to two windows (100 ms, or 20 delays when longer), so
 * it follows callers that come and go, and is unknown (no early dispatch)
 * before the first completions. Requests whose submit holds a slot but has
 * not pushed it yet are on their way and not counted as here. */
static bool nothing_more_can_arrive(gpuml_engine *e, int64_t now)
{
    int64_t window = 20 * e->cfg.max_queue_delay_us > 100000 ? 20 * e->cfg.max_queue_delay_us : 100000;
    if (now - e->pop_window_start > window) {
        e->pop_prev = e->pop_cur;
        e->pop_cur = 0;
        e->pop_window_start = now;
    }
    int64_t population = e->pop_cur > e->pop_prev ? e->pop_cur : e->pop_prev;
    return population > 0 && e->in_flight - e->submitting >= population;
}

/* Batches the instance has taken and not completed (engine lock). */
static int stages_busy(const eng_instance *in)
{
    int n = 0;
    for (int k = 0; k < ENG_STAGES; k++)
        n += in->stages[k].busy;
    return n;
}

/* Least loaded first, between CUDA instances (several devices, or streams
 * of one): an instance that already has a batch in flight (its other stage
 * busy, besides the one it fills) lets an instance with nothing in flight
 * that is also waiting form the next batch, so that a device does not queue
 * a second batch while another sits idle. On the CPU a worker computes its
 * batch itself, so a busy stage there is only a completion being called
 * back: nothing to prefer. */
static bool defer_to_idle_locked(const gpuml_engine *e, const eng_batch *b)
{
    if (!e->cuda || e->n_inst < 2 || stages_busy(b->inst) < 2)
        return false;
    for (int i = 0; i < e->n_inst; i++)
        if (&e->inst[i] != b->inst && e->inst[i].taking && stages_busy(&e->inst[i]) < 2)
            return true;
    return false;
}

bool eng_take_batch(gpuml_engine *e, eng_batch *b)
{
    const int max_events = e->cfg.max_batch_events;
    const int64_t max_rows = e->cfg.max_batch_rows;
    b->n_events = 0;
    b->n_rows = 0;
    pthread_mutex_lock(&e->lock);
    /* One worker forms a batch at a time: the others would only split the
     * waiting requests into smaller batches. */
    e->takers++;
    b->inst->taking = true;
    while (e->forming || (defer_to_idle_locked(e, b) && !e->stopping))
        pthread_cond_wait(&e->turn_cv, &e->lock);
    e->forming = true;
    for (;;) {
        if (e->heap_n == 0) {
            if (e->stopping)
                break;
            pthread_cond_wait(&e->queue_cv, &e->lock);
            continue;
        }
        int64_t now = eng_now_us();
        int64_t due = e->oldest_submit + e->cfg.max_queue_delay_us;
        if (!(e->stopping || e->heap_n >= max_events || e->heap_rows >= max_rows || now >= due ||
              nothing_more_can_arrive(e, now))) {
            timed_wait(&e->queue_cv, &e->lock, due);
            continue;
        }
        if (!e->stopping && defer_to_idle_locked(e, b)) {
            /* an idle instance arrived while we waited: its turn first */
            e->forming = false;
            pthread_cond_broadcast(&e->turn_cv);
            while (e->forming || (defer_to_idle_locked(e, b) && !e->stopping))
                pthread_cond_wait(&e->turn_cv, &e->lock);
            e->forming = true;
            continue;
        }
        /* Other instances idle here too: take about our share of the
         * waiting rows, so that the waiting work is spread over the idle
         * instances instead of one of them computing it all (on the CPU an
         * instance is one thread by default). */
        int64_t share = e->takers > 1 ? (e->heap_rows + e->takers - 1) / e->takers : INT64_MAX;
        while (e->heap_n > 0 && b->n_events < max_events && b->n_rows + e->heap[0]->rows <= max_rows &&
               (b->n_events == 0 || b->n_rows < share)) {
            eng_slot *s = heap_pop(e);
            e->heap_rows -= s->rows;
            if (s->deadline_us > 0 && now > s->deadline_us) {
                eng_finish_slot_locked(e, s, GPUML_ERR_TIMEOUT);
                continue;
            }
            s->t_dequeue = now;
            b->items[b->n_events++] = s;
            b->n_rows += s->rows;
        }
        if (e->heap_n > 0) {
            int64_t oldest = e->heap[0]->t_submit;
            for (int i = 1; i < e->heap_n; i++)
                if (e->heap[i]->t_submit < oldest)
                    oldest = e->heap[i]->t_submit;
            e->oldest_submit = oldest;
        }
        if (b->n_events > 0)
            break; /* else every request taken had expired: wait again */
    }
    e->forming = false;
    e->takers--;
    b->inst->taking = false;
    /* all: a deferring worker may be waiting beside the one whose turn it is */
    pthread_cond_broadcast(&e->turn_cv);
    pthread_mutex_unlock(&e->lock);
    return b->n_events > 0;
}
