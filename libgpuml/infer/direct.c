/* The synchronous convenience (submit and wait) and the direct mode: one
 * request run by itself on a lane (a context and tape of its own that share
 * instance 0's model read-only), ordered on the caller's CUDA stream. */
#include <stdio.h>
#include <string.h>

#include "infer/engine_impl.h"

/* ---- gpuml_engine_run ------------------------------------------------------ */
typedef struct {
    pthread_mutex_t m;
    pthread_cond_t cv;
    bool done;
    gpuml_status st;
    char msg[GPUML_MSG_MAX];
} sync_wait;

static void sync_done(void *user, gpuml_status st)
{
    sync_wait *w = user;
    pthread_mutex_lock(&w->m);
    w->st = st;
    if (st != GPUML_OK)
        snprintf(w->msg, sizeof w->msg, "%s", gpuml_last_error());
    w->done = true;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->m);
}

gpuml_status gpuml_engine_run(gpuml_engine *e, const gpuml_engine_request *req)
{
    sync_wait w;
    memset(&w, 0, sizeof w);
    if (pthread_mutex_init(&w.m, NULL) != 0)
        return gpuml_fail(NULL, GPUML_ERR_INTERNAL, "gpuml_engine_run", "pthread_mutex_init failed");
    if (pthread_cond_init(&w.cv, NULL) != 0) {
        pthread_mutex_destroy(&w.m);
        return gpuml_fail(NULL, GPUML_ERR_INTERNAL, "gpuml_engine_run", "pthread_cond_init failed");
    }
    gpuml_status st = gpuml_engine_submit(e, req, sync_done, &w);
    if (st == GPUML_OK) {
        pthread_mutex_lock(&w.m);
        while (!w.done)
            pthread_cond_wait(&w.cv, &w.m);
        pthread_mutex_unlock(&w.m);
        st = w.st;
    }
    pthread_cond_destroy(&w.cv);
    pthread_mutex_destroy(&w.m);
    if (st != GPUML_OK && w.done) /* the message was recorded on the completion thread */
        return gpuml_fail(NULL, st, "gpuml_engine_run", "%s", w.msg);
    return st;
}

/* ---- lanes ----------------------------------------------------------------- */
static void lane_fini(gpuml_engine *e, eng_lane *l)
{
    if (l->ev_in)
        eng_cuda_event_destroy(e->cfg.device.index, l->ev_in);
    if (l->ev_out)
        eng_cuda_event_destroy(e->cfg.device.index, l->ev_out);
    gpuml_tape_destroy(l->tape);
    gpuml_ctx_destroy(l->ctx); /* waits for the lane's stream */
    memset(l, 0, sizeof *l);
}

static gpuml_status lane_init(gpuml_engine *e, eng_lane *l)
{
    gpuml_status st = eng_make_ctx(e, e->cfg.device.index, &l->ctx); /* instance 0's device */
    if (st == GPUML_OK)
        st = gpuml_tape_create(l->ctx, &l->tape);
    if (st == GPUML_OK && e->cuda)
        st = eng_cuda_event_create(e->cfg.device.index, &l->ev_in);
    if (st == GPUML_OK && e->cuda)
        st = eng_cuda_event_create(e->cfg.device.index, &l->ev_out);
    if (st != GPUML_OK) {
        lane_fini(e, l);
        return st;
    }
    gpuml_tape_set_grad_enabled(l->tape, 0);
    gpuml_tape_set_training(l->tape, 0);
    return GPUML_OK;
}

void eng_lanes_fini(gpuml_engine *e)
{
    for (int i = 0; e->lanes && i < e->n_lanes; i++)
        lane_fini(e, &e->lanes[i]);
    e->n_lanes = 0;
}

/* A free lane, made on first need (under the lane lock: creation is rare). */
static gpuml_status lane_acquire(gpuml_engine *e, eng_lane **out)
{
    pthread_mutex_lock(&e->lane_lock);
    for (;;) {
        for (int i = 0; i < e->n_lanes; i++)
            if (!e->lanes[i].busy) {
                e->lanes[i].busy = true;
                pthread_mutex_unlock(&e->lane_lock);
                *out = &e->lanes[i];
                return GPUML_OK;
            }
        if (e->n_lanes < e->cfg.max_direct_lanes) {
            eng_lane *l = &e->lanes[e->n_lanes];
            gpuml_status st = lane_init(e, l);
            if (st == GPUML_OK) {
                l->busy = true;
                e->n_lanes++;
            }
            pthread_mutex_unlock(&e->lane_lock);
            *out = l;
            return st;
        }
        pthread_cond_wait(&e->lane_cv, &e->lane_lock);
    }
}

static void lane_release(gpuml_engine *e, eng_lane *l)
{
    pthread_mutex_lock(&e->lane_lock);
    l->busy = false;
    pthread_cond_signal(&e->lane_cv);
    pthread_mutex_unlock(&e->lane_lock);
}

/* ---- direct mode -------------------------------------------------------------- */
static gpuml_status direct_run(gpuml_engine *e, eng_lane *l, const gpuml_engine_request *req, void *stream)
{
    static const char fn[] = "gpuml_engine_run_direct";
    int dev = e->cfg.device.index;
    void *ls = gpuml_ctx_stream(l->ctx);
    const int64_t rows = req->rows;
    gpuml_tensor views[64], *tin[64];
    const gpuml_tensor *ins[64];
    gpuml_var *outs[64];
    if (e->n_in > 64 || e->n_out > 64)
        return gpuml_fail(NULL, GPUML_ERR_UNSUPPORTED, fn, "models with more than 64 inputs or outputs");
    if (e->cuda && stream) {
        /* Start after the caller's work already on its stream. */
        GPUML_TRY(eng_cuda_event_record(dev, l->ev_in, stream));
        GPUML_TRY(eng_cuda_stream_wait(dev, ls, l->ev_in));
    }
    int64_t splits_host[2] = {0, rows}, two = 2;
    gpuml_tensor splits_view;
    const gpuml_tensor *splits = &splits_view;
    if (e->cuda) {
        gpuml_tensor *ts;
        GPUML_TRY(gpuml_tape_tensor(l->tape, GPUML_I64, 1, &two, &ts));
        /* pageable source: CUDA stages it before returning */
        GPUML_TRY(eng_cuda_memcpy_async(dev, gpuml_tensor_data(ts), splits_host, sizeof splits_host, ENG_H2D, ls));
        splits = ts;
    } else {
        gpuml_tensor_init_view(&splits_view, splits_host, e->cfg.device, GPUML_I64, 1, &two);
    }
    for (int i = 0; i < e->n_in; i++) {
        int64_t shape[2] = {rows, e->f_in[i]};
        if (e->cuda && req->inputs_on == GPUML_DEVICE_CPU) {
            GPUML_TRY(gpuml_tape_tensor(l->tape, GPUML_F32, 2, shape, &tin[i]));
            GPUML_TRY(eng_cuda_memcpy_async(dev, gpuml_tensor_data(tin[i]), req->inputs[i],
                                            (size_t)(rows * e->f_in[i]) * sizeof(float), ENG_H2D, ls));
            ins[i] = tin[i];
        } else {
            /* read in place: host memory on the CPU, or device memory ordered by ev_in */
            gpuml_tensor_init_view(&views[i], (void *)req->inputs[i], e->cfg.device, GPUML_F32, 2, shape);
            ins[i] = &views[i];
        }
    }
    GPUML_TRY(gpuml_model_forward(e->inst[0].model, l->tape, ins, splits, outs));
    const float *cl[GPUML_ENGINE_CLUSTER_OUTPUTS] = {0};
    if (e->cfg.clusters.enabled)
        GPUML_TRY(eng_clusters_run(e, l->ctx, l->tape, ins, splits, outs, rows, 1, cl));
    for (int o = 0; o < e->n_out; o++) {
        size_t n = (size_t)((e->out_event[o] ? 1 : rows) * e->f_out[o]) * sizeof(float);
        const void *src = eng_out_src(e, outs, cl, o);
        if (!req->outputs[o]) /* a model output not wanted beside the clusters */
            continue;
        if (!e->cuda) {
            if (n)
                memcpy(req->outputs[o], src, n);
            continue;
        }
        eng_copy_kind kind = req->outputs_on == GPUML_DEVICE_CUDA ? ENG_D2D : ENG_D2H;
        GPUML_TRY(eng_cuda_memcpy_async(dev, req->outputs[o], src, n, kind, ls));
    }
    if (e->cuda) {
        if (!stream) /* also reports what kernels flagged on the device */
            return gpuml_ctx_synchronize(l->ctx);
        GPUML_TRY(eng_cuda_event_record(dev, l->ev_out, ls));
        GPUML_TRY(eng_cuda_stream_wait(dev, stream, l->ev_out));
    }
    return GPUML_OK;
}

gpuml_status gpuml_engine_run_direct(gpuml_engine *e, const gpuml_engine_request *req, void *stream)
{
    static const char fn[] = "gpuml_engine_run_direct";
    if (!e)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "argument 'e' is NULL");
    GPUML_TRY(eng_check_request(e, req, fn));
    if (e->cfg.max_direct_lanes == 0)
        return gpuml_fail(NULL, GPUML_ERR_UNSUPPORTED, fn, "direct mode is off (cfg.max_direct_lanes = 0)");
    pthread_mutex_lock(&e->lock);
    bool stopping = e->stopping;
    pthread_mutex_unlock(&e->lock);
    if (stopping)
        return gpuml_fail(NULL, GPUML_ERR_STATE, fn, "the engine is shutting down");
    eng_lane *l;
    GPUML_TRY(lane_acquire(e, &l));
    gpuml_status st = direct_run(e, l, req, stream);
    /* Stream-ordered: the lane's next use is enqueued after this one. */
    gpuml_tape_reset(l->tape);
    lane_release(e, l);
    if (st == GPUML_OK) {
        pthread_mutex_lock(&e->stats_lock);
        e->st.direct++;
        pthread_mutex_unlock(&e->stats_lock);
    }
    return st;
}
