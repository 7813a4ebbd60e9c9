/* An execution instance: its context, model copy and tape, its staging
 * stages, the warm-up, and its worker thread (take a batch, gather, run,
 * copy out, hand over to the completion threads). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "infer/engine_impl.h"

/* Copy a model's slab to ours, whatever devices the two are on. */
static gpuml_status copy_slab(gpuml_ctx *ctx, gpuml_tensor *dst, const gpuml_tensor *src)
{
    if (!src || !dst)
        return GPUML_OK;
    if (gpuml_tensor_device(src).type == GPUML_DEVICE_CPU || gpuml_on_cuda(ctx))
        return gpuml_tensor_copy(ctx, dst, src);
    /* CUDA source, CPU engine: read it through a context on its device. */
    gpuml_ctx_config cc;
    gpuml_ctx_config_init_defaults(&cc);
    cc.device = gpuml_tensor_device(src);
    gpuml_ctx *tmp;
    GPUML_TRY(gpuml_ctx_create(&cc, &tmp));
    gpuml_status st = gpuml_tensor_copy(tmp, dst, src);
    gpuml_ctx_destroy(tmp);
    return st;
}

static gpuml_status copy_model(gpuml_ctx *ctx, const gpuml_model *src, gpuml_model **out)
{
    gpuml_model *m;
    GPUML_TRY(gpuml_model_create(ctx, gpuml_model_config(src), &m));
    gpuml_status st = copy_slab(ctx, gpuml_model_param_slab(m), gpuml_model_param_slab(src));
    if (st == GPUML_OK)
        st = copy_slab(ctx, gpuml_model_buffer_slab(m), gpuml_model_buffer_slab(src));
    if (st != GPUML_OK) {
        gpuml_model_destroy(m);
        return st;
    }
    *out = m;
    return GPUML_OK;
}

static void free_stage(eng_instance *in, eng_batch *b)
{
    gpuml_engine *e = in->eng;
    if (b->event)
        eng_cuda_event_destroy(in->device, b->event);
    if (in->ctx) {
        gpuml_pinned_free(in->ctx, b->h_in);
        gpuml_pinned_free(in->ctx, b->h_splits);
        gpuml_pinned_free(in->ctx, b->h_out);
    }
    for (int i = 0; b->d_in && i < e->n_in; i++)
        gpuml_tensor_destroy(b->d_in[i]);
    free(b->d_in);
    gpuml_tensor_destroy(b->d_splits);
    free(b->in_view);
    free(b->outs);
    free(b->items);
    memset(b, 0, sizeof *b);
}

static gpuml_status init_stage(eng_instance *in, eng_batch *b)
{
    static const char fn[] = "gpuml_engine_create";
    gpuml_engine *e = in->eng;
    const int64_t max_rows = e->cfg.max_batch_rows;
    const int max_events = e->cfg.max_batch_events;
    b->inst = in;
    b->items = calloc((size_t)max_events, sizeof *b->items);
    b->in_view = calloc((size_t)e->n_in, sizeof *b->in_view);
    b->outs = calloc((size_t)e->n_out, sizeof *b->outs);
    b->d_in = calloc((size_t)e->n_in, sizeof *b->d_in);
    if (!b->items || !b->in_view || !b->outs || !b->d_in)
        return gpuml_fail(NULL, GPUML_ERR_OUT_OF_MEMORY, fn, "cannot allocate a batch record");
    void *p;
    GPUML_TRY(gpuml_pinned_alloc(in->ctx, (size_t)e->in_floats * sizeof(float), &p));
    b->h_in = p;
    GPUML_TRY(gpuml_pinned_alloc(in->ctx, (size_t)(max_events + 2) * sizeof(int64_t), &p));
    b->h_splits = p;
    b->h_flag = (int *)(b->h_splits + max_events + 1);
    GPUML_TRY(gpuml_pinned_alloc(in->ctx, (size_t)e->out_floats * sizeof(float), &p));
    b->h_out = p;
    if (e->cuda) {
        for (int i = 0; i < e->n_in; i++)
            GPUML_TRY(gpuml_tensor_create(in->ctx, GPUML_F32, 2, (int64_t[]){max_rows, e->f_in[i]}, &b->d_in[i]));
        int64_t ns = max_events + 1;
        GPUML_TRY(gpuml_tensor_create(in->ctx, GPUML_I64, 1, &ns, &b->d_splits));
        GPUML_TRY(eng_cuda_event_create(in->device, &b->event));
    }
    return GPUML_OK;
}

/* Inputs of the batch to where the model reads them: the staging itself on
 * the CPU; on CUDA one asynchronous copy per input (pinned source), then
 * the requests whose inputs are already on the device. */
static gpuml_status stage_inputs(eng_instance *in, eng_batch *b)
{
    gpuml_engine *e = in->eng;
    int dev = in->device;
    void *stream = gpuml_ctx_stream(in->ctx);
    for (int i = 0; i < e->n_in; i++) {
        float *src = b->h_in + e->in_off[i];
        float *dst = e->cuda ? gpuml_tensor_data(b->d_in[i]) : src;
        if (e->cuda)
            GPUML_TRY(eng_cuda_memcpy_async(dev, dst, src, (size_t)(b->n_rows * e->f_in[i]) * sizeof(float), ENG_H2D,
                                            stream));
        gpuml_tensor_init_view(&b->in_view[i], dst, gpuml_ctx_device(in->ctx), GPUML_F32, 2,
                               (int64_t[]){b->n_rows, e->f_in[i]});
    }
    int64_t ns = b->n_events + 1;
    int64_t *splits = e->cuda ? gpuml_tensor_data(b->d_splits) : b->h_splits;
    if (e->cuda) {
        GPUML_TRY(eng_cuda_memcpy_async(dev, splits, b->h_splits, (size_t)ns * sizeof(int64_t), ENG_H2D, stream));
        for (int k = 0; k < b->n_events; k++) {
            eng_slot *s = b->items[k];
            if (!s || !s->in_dev || s->status != GPUML_OK)
                continue;
            for (int i = 0; i < e->n_in; i++)
                GPUML_TRY(eng_cuda_memcpy_async(dev, (float *)gpuml_tensor_data(b->d_in[i]) + s->row0 * e->f_in[i],
                                                s->in[i], (size_t)(s->rows * e->f_in[i]) * sizeof(float), ENG_D2D,
                                                stream));
        }
    }
    gpuml_tensor_init_view(&b->splits_view, splits, gpuml_ctx_device(in->ctx), GPUML_I64, 1, &ns);
    return GPUML_OK;
}

/* Outputs of the forward to the staging (CUDA: asynchronous D2H), and
 * straight to the requests that want them on the device. */
static gpuml_status stage_outputs(eng_instance *in, eng_batch *b)
{
    gpuml_engine *e = in->eng;
    int dev = in->device;
    void *stream = gpuml_ctx_stream(in->ctx);
    for (int o = 0; o < e->n_out; o++) {
        const float *src = eng_out_src(e, b->outs, b->cl_src, o);
        int64_t n = (e->out_event[o] ? b->n_events : b->n_rows) * e->f_out[o];
        if (e->cuda)
            GPUML_TRY(eng_cuda_memcpy_async(dev, b->h_out + e->out_off[o], src, (size_t)n * sizeof(float), ENG_D2H,
                                            stream));
        else if (n > 0)
            memcpy(b->h_out + e->out_off[o], src, (size_t)n * sizeof(float));
        for (int k = 0; e->cuda && k < b->n_events; k++) {
            eng_slot *s = b->items[k];
            if (!s || !s->out_dev || s->status != GPUML_OK || !s->out[o])
                continue;
            int64_t off = e->out_event[o] ? k * e->f_out[o] : s->row0 * e->f_out[o];
            int64_t cnt = e->out_event[o] ? e->f_out[o] : s->rows * e->f_out[o];
            GPUML_TRY(eng_cuda_memcpy_async(dev, s->out[o], src + off, (size_t)cnt * sizeof(float), ENG_D2D, stream));
        }
    }
    return GPUML_OK;
}

static gpuml_status forward_stage(eng_instance *in, eng_batch *b)
{
    GPUML_TRY(stage_inputs(in, b));
    const gpuml_tensor *ins[64];
    const gpuml_tensor **pins = ins;
    if (in->eng->n_in > 64)
        return gpuml_fail(NULL, GPUML_ERR_UNSUPPORTED, "gpuml_engine", "models with more than 64 inputs");
    for (int i = 0; i < in->eng->n_in; i++)
        pins[i] = &b->in_view[i];
    GPUML_TRY(gpuml_model_forward(in->model, in->tape, pins, &b->splits_view, b->outs));
    if (in->eng->cfg.clusters.enabled)
        GPUML_TRY(eng_clusters_run(in->eng, in->ctx, in->tape, pins, &b->splits_view, b->outs, b->n_rows, b->n_events,
                                   b->cl_src));
    return stage_outputs(in, b);
}

/* A largest batch of zeros, so that the tape's arena and the allocator
 * caches reach their steady state before the first request. */
gpuml_status eng_warm_up(eng_instance *in)
{
    gpuml_engine *e = in->eng;
    eng_batch *b = &in->stages[0];
    int64_t rows = e->cfg.max_batch_rows;
    int events = e->cfg.max_batch_events;
    memset(b->h_in, 0, (size_t)e->in_floats * sizeof(float));
    /* Pass 2 has a row count off any power-of-two blocking, so that scratch
     * sized from a rounded row count has met its largest size too. */
    int64_t rows2 = rows - 1 - ((rows - 1) % 64 == 0 ? 1 : 0);
    for (int pass = 0; pass < 3; pass++) {
        int64_t n = pass < 2 ? rows : rows2;
        if (n < 1)
            break;
        for (int k = 0; k <= events; k++)
            b->h_splits[k] = n * k / events;
        b->n_events = events;
        b->n_rows = n;
        gpuml_status st = forward_stage(in, b);
        if (st == GPUML_OK)
            st = gpuml_ctx_synchronize(in->ctx);
        gpuml_tape_reset(in->tape);
        if (st != GPUML_OK)
            return st;
        /* The first reset merged the arena's chunks into one; drop the
         * blocks it no longer uses before the pass that fills the caches. */
        if (pass == 0)
            gpuml_ctx_release_cached(in->ctx);
    }
    b->n_events = 0;
    b->n_rows = 0;
    atomic_store(&in->arena_bytes, gpuml_tape_arena_capacity(in->tape));
    return GPUML_OK;
}

gpuml_status eng_instance_init(gpuml_engine *e, eng_instance *in, const gpuml_model *src)
{
    in->eng = e;
    GPUML_TRY(eng_make_ctx(e, in->device, &in->ctx));
    GPUML_TRY(copy_model(in->ctx, src, &in->model));
    GPUML_TRY(gpuml_tape_create(in->ctx, &in->tape));
    gpuml_tape_set_grad_enabled(in->tape, 0);
    gpuml_tape_set_training(in->tape, 0);
    if (pthread_cond_init(&in->stage_cv, NULL) != 0)
        return gpuml_fail(NULL, GPUML_ERR_INTERNAL, "gpuml_engine_create", "pthread_cond_init failed");
    in->cv_ready = true;
    for (int k = 0; k < ENG_STAGES; k++)
        GPUML_TRY(init_stage(in, &in->stages[k]));
    return GPUML_OK;
}

void eng_instance_fini(eng_instance *in)
{
    if (!in->eng)
        return; /* never initialised */
    for (int k = 0; k < ENG_STAGES; k++)
        free_stage(in, &in->stages[k]);
    gpuml_tape_destroy(in->tape);
    gpuml_model_destroy(in->model);
    gpuml_ctx_destroy(in->ctx);
    if (in->cv_ready)
        pthread_cond_destroy(&in->stage_cv);
}

/* ---- worker: batch, run, hand over -------------------------------------------- */

static void run_batch(eng_instance *in, eng_batch *b)
{
    gpuml_engine *e = in->eng;
    b->status = GPUML_OK;
    b->msg[0] = '\0';
    b->computed = false;
    b->event_recorded = false;
    b->ran = false;
    b->t_start = eng_now_us();
    int64_t row = 0;
    b->h_splits[0] = 0;
    for (int k = 0; k < b->n_events; k++) {
        eng_slot *s = b->items[k];
        s->row0 = row;
        for (int i = 0; i < e->n_in && !s->in_dev; i++)
            if (s->rows > 0)
                memcpy(b->h_in + e->in_off[i] + row * e->f_in[i], s->in[i],
                       (size_t)(s->rows * e->f_in[i]) * sizeof(float));
        row += s->rows;
        b->h_splits[k + 1] = row;
    }
    eng_release_inputs(e, b);

    int64_t now = eng_now_us();
    int live = 0;
    for (int k = 0; k < b->n_events; k++) {
        eng_slot *s = b->items[k];
        if (s->deadline_us > 0 && now > s->deadline_us)
            s->status = GPUML_ERR_TIMEOUT; /* rows stay in the batch: events are independent */
        else
            live++;
    }
    if (live == 0)
        return;
    b->ran = true;
    gpuml_status st = GPUML_OK;
    long c = atomic_load(&e->fail_countdown);
    while (c > 0 && !atomic_compare_exchange_weak(&e->fail_countdown, &c, c - 1)) {
    }
    if (c == 1)
        st = gpuml_fail(NULL, GPUML_ERR_OUT_OF_MEMORY, "gpuml_model_forward",
                        "allocation failed (injected by gpuml_engine_fail_batch_after)");
    if (st == GPUML_OK)
        st = forward_stage(in, b);
    if (st != GPUML_OK) {
        b->status = st;
        snprintf(b->msg, sizeof b->msg, "%s", gpuml_last_error());
    } else {
        b->computed = true;
    }
    if (e->cuda && b->status == GPUML_OK) {
        /* Kernels flag bad input in the context's device word instead of
         * failing (kernels/common.h); read it with the batch, then clear it. */
        *b->h_flag = 0;
        st = eng_cuda_memcpy_async(in->device, b->h_flag, in->ctx->dev_error, sizeof(int), ENG_D2H,
                                   gpuml_ctx_stream(in->ctx));
        if (st == GPUML_OK)
            st = gpuml_memzero(in->ctx, in->ctx->dev_error, sizeof(int), "gpuml_engine");
        if (st != GPUML_OK) {
            b->status = st;
            b->computed = false;
            snprintf(b->msg, sizeof b->msg, "%s", gpuml_last_error());
        }
    }
    if (e->cuda) {
        /* Recorded also after a failure: the completion thread must not
         * release the staging while copies already enqueued still run. */
        gpuml_status es = eng_cuda_event_record(in->device, b->event, gpuml_ctx_stream(in->ctx));
        if (es == GPUML_OK) {
            b->event_recorded = true;
        } else {
            (void)eng_cuda_stream_sync(in->device, gpuml_ctx_stream(in->ctx));
            if (b->status == GPUML_OK) {
                b->status = es;
                b->computed = false;
                snprintf(b->msg, sizeof b->msg, "%s", gpuml_last_error());
            }
        }
    }
    /* On CUDA the next batch's kernels are ordered after this one's on the
     * stream, so the arena may be reused as soon as the work is enqueued. */
    gpuml_tape_reset(in->tape);
    atomic_store(&in->arena_bytes, gpuml_tape_arena_capacity(in->tape));
}

static eng_batch *acquire_stage(eng_instance *in)
{
    gpuml_engine *e = in->eng;
    pthread_mutex_lock(&e->lock);
    for (;;) {
        for (int k = 0; k < ENG_STAGES; k++)
            if (!in->stages[k].busy) {
                in->stages[k].busy = true;
                pthread_mutex_unlock(&e->lock);
                return &in->stages[k];
            }
        pthread_cond_wait(&in->stage_cv, &e->lock);
    }
}

void *eng_worker_main(void *arg)
{
    eng_instance *in = arg;
    gpuml_engine *e = in->eng;
    if (e->cuda)
        (void)eng_cuda_set_device(in->device); /* our own thread: stays on its instance's GPU */
    for (;;) {
        eng_batch *b = acquire_stage(in);
        if (!eng_take_batch(e, b)) {
            pthread_mutex_lock(&e->lock);
            b->busy = false;
            pthread_mutex_unlock(&e->lock);
            break;
        }
        run_batch(in, b);
        pthread_mutex_lock(&e->lock);
        b->next = NULL;
        if (e->cq_tail)
            e->cq_tail->next = b;
        else
            e->cq_head = b;
        e->cq_tail = b;
        pthread_cond_signal(&e->done_cv);
        pthread_mutex_unlock(&e->lock);
    }
    pthread_mutex_lock(&e->lock);
    e->workers_alive--;
    pthread_cond_broadcast(&e->done_cv);
    pthread_mutex_unlock(&e->lock);
    return NULL;
}
