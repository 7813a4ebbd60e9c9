/* The engine: configuration, instances (context, model copy, tape,
 * staging), the worker and completion threads, shutdown (see engine_impl.h
 * for the request state machine). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "infer/engine_impl.h"
#include "gpuml/testing.h"

/* Events per batch on the CPU when the caller does not say. */
#define GPUML_ENGINE_CPU_BATCH_EVENTS 8

void gpuml_engine_config_init_defaults(gpuml_engine_config *cfg)
{
    if (!cfg)
        return;
    memset(cfg, 0, sizeof *cfg);
    cfg->device.type = GPUML_DEVICE_CPU;
    cfg->num_instances = 0;    /* chosen by device at creation (resolve_defaults) */
    cfg->max_batch_events = 0; /* likewise */
    cfg->max_batch_rows = 65536;
    cfg->max_queue_delay_us = 1000;
    cfg->queue_capacity = 1024;
    cfg->queue_rows = 0;
    cfg->completion_threads = 1;
    cfg->cpu_threads = 0;
    cfg->max_direct_lanes = 2;
    cfg->on_destroy = GPUML_ENGINE_CANCEL;
    cfg->warmup = 1;
    cfg->log_level = GPUML_LOG_WARN;
    cfg->clusters.beta_output = 0;
    cfg->clusters.coords_output = 1;
    cfg->clusters.energy_input = -1;
    cfg->clusters.t_beta = 0.1f;
    cfg->clusters.t_d = 0.5f;
}

void gpuml_engine_request_init(gpuml_engine_request *req)
{
    if (req)
        memset(req, 0, sizeof *req);
}

/* The device list (gpuml/infer.h, "Several devices"): checked whole before
 * anything is created, so that a bad list creates nothing. */
static gpuml_status check_devices(const gpuml_engine_config *c, const char *fn)
{
#define BAD(...) gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, __VA_ARGS__)
    if (c->n_devices == 0) {
        if (c->devices)
            return BAD("cfg->devices is set but cfg->n_devices is 0 (say how many, or GPUML_ENGINE_ALL_DEVICES)");
        return GPUML_OK;
    }
    if (c->device.type != GPUML_DEVICE_CUDA)
        return BAD("cfg->n_devices = %d: a device list needs cfg->device.type CUDA", c->n_devices);
    if (c->n_devices < GPUML_ENGINE_ALL_DEVICES || c->n_devices > 64)
        return BAD("cfg->n_devices = %d is not in [1, 64] or GPUML_ENGINE_ALL_DEVICES (-1)", c->n_devices);
    int visible = gpuml_cuda_device_count();
    if (c->n_devices == GPUML_ENGINE_ALL_DEVICES) {
        if (c->devices)
            return BAD("cfg->devices is set with cfg->n_devices = GPUML_ENGINE_ALL_DEVICES (use one or the other)");
        if (visible <= 0)
            return gpuml_fail(NULL, GPUML_ERR_NO_DEVICE, fn,
                              "cfg->n_devices = GPUML_ENGINE_ALL_DEVICES but no CUDA device is visible");
        return GPUML_OK;
    }
    if (!c->devices)
        return BAD("cfg->n_devices = %d but cfg->devices is NULL", c->n_devices);
    for (int i = 0; i < c->n_devices; i++) {
        if (c->devices[i] < 0 || c->devices[i] >= visible)
            return BAD("cfg->devices[%d] = %d is not a visible CUDA device (%d visible)", i, c->devices[i], visible);
        for (int j = 0; j < i; j++)
            if (c->devices[j] == c->devices[i])
                return BAD("cfg->devices[%d] = %d repeats cfg->devices[%d] (for more instances per device raise "
                           "cfg->num_instances)",
                           i, c->devices[i], j);
    }
    int n = c->n_devices;
    if (c->num_instances != 0 && c->num_instances < n)
        return BAD("cfg->num_instances = %d is below the %d devices listed: every device needs an instance",
                   c->num_instances, n);
    return GPUML_OK;
#undef BAD
}

static gpuml_status check_config(const gpuml_engine_config *c, const char *fn)
{
#define BAD(...) gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, __VA_ARGS__)
    if (c->device.type != GPUML_DEVICE_CPU && c->device.type != GPUML_DEVICE_CUDA)
        return BAD("cfg->device.type %d is not a device type", (int)c->device.type);
    if (c->num_instances < 0 || c->num_instances > 64)
        return BAD("cfg->num_instances = %d is not in [0 (auto), 64]", c->num_instances);
    if (c->max_batch_events < 0 || c->max_batch_events > (1 << 20))
        return BAD("cfg->max_batch_events = %d is not in [0 (auto), 2^20]", c->max_batch_events);
    if (c->executor && (!c->executor->parallel_for || !c->executor->max_workers))
        return BAD("cfg->executor lacks parallel_for or max_workers (both are required)");
    if (c->max_batch_rows < 1 || c->max_batch_rows > ((int64_t)1 << 31))
        return BAD("cfg->max_batch_rows = %" PRId64 " is not in [1, 2^31]", c->max_batch_rows);
    if (c->max_queue_delay_us < 0 || c->max_queue_delay_us > 60000000)
        return BAD("cfg->max_queue_delay_us = %" PRId64 " is not in [0, 60 s]", c->max_queue_delay_us);
    if (c->queue_capacity < 1 || c->queue_capacity > (1 << 24))
        return BAD("cfg->queue_capacity = %d is not in [1, 2^24]", c->queue_capacity);
    if (c->queue_rows > 0 && c->queue_rows < c->max_batch_rows)
        return BAD("cfg->queue_rows = %" PRId64 " is below max_batch_rows = %" PRId64
                   ": the largest request would never fit",
                   c->queue_rows, c->max_batch_rows);
    if (c->completion_threads < 1 || c->completion_threads > 64)
        return BAD("cfg->completion_threads = %d is not in [1, 64]", c->completion_threads);
    if (c->cpu_threads > 4096)
        return BAD("cfg->cpu_threads = %d is above 4096", c->cpu_threads);
    if (c->max_direct_lanes < 0 || c->max_direct_lanes > 64)
        return BAD("cfg->max_direct_lanes = %d is not in [0, 64]", c->max_direct_lanes);
    if (c->on_destroy != GPUML_ENGINE_CANCEL && c->on_destroy != GPUML_ENGINE_DRAIN)
        return BAD("cfg->on_destroy = %d is not a shutdown mode", (int)c->on_destroy);
    if ((int)c->log_level < GPUML_LOG_DEBUG || c->log_level > GPUML_LOG_OFF)
        return BAD("cfg->log_level %d is out of range", (int)c->log_level);
    return check_devices(c, fn);
#undef BAD
}

/* The automatic choices (gpuml/infer.h, "Defaults"), measured in
 * bench/README-engine.md: on the CPU, one single-threaded instance per
 * core with small batches beats fewer, wider instances (a batch of a few
 * small events does not split well over threads, and instances overlap
 * each other's serial parts); on CUDA one instance with large batches. */
static void resolve_defaults(gpuml_engine_config *c)
{
    bool cuda = c->device.type == GPUML_DEVICE_CUDA;
    if (c->num_instances == 0) {
        int n = cuda ? (c->n_devices > 0 ? c->n_devices : 1)
                : c->executor ? c->executor->max_workers(c->executor->self)
                              : gpuml_default_num_threads();
        c->num_instances = n < 1 ? 1 : n > 64 ? 64 : n;
    }
    if (c->max_batch_events == 0)
        c->max_batch_events = cuda ? 64 : GPUML_ENGINE_CPU_BATCH_EVENTS;
}

/* ---- create / shutdown / destroy ----------------------------------------------------- */
static gpuml_status describe_model(gpuml_engine *e, const gpuml_model *m)
{
    static const char fn[] = "gpuml_engine_create";
    e->n_in = gpuml_model_num_inputs(m);
    e->n_mout = gpuml_model_num_outputs(m);
    e->n_out = e->n_mout + (e->cfg.clusters.enabled ? GPUML_ENGINE_CLUSTER_OUTPUTS : 0);
    e->f_in = calloc((size_t)e->n_in, sizeof *e->f_in);
    e->in_off = calloc((size_t)e->n_in, sizeof *e->in_off);
    e->f_out = calloc((size_t)e->n_out, sizeof *e->f_out);
    e->out_off = calloc((size_t)e->n_out, sizeof *e->out_off);
    e->out_event = calloc((size_t)e->n_out, sizeof *e->out_event);
    if (!e->f_in || !e->in_off || !e->f_out || !e->out_off || !e->out_event)
        return gpuml_fail(NULL, GPUML_ERR_OUT_OF_MEMORY, fn, "out of memory");
    for (int i = 0; i < e->n_in; i++) {
        GPUML_TRY(gpuml_model_input_info(m, i, NULL, &e->f_in[i]));
        e->in_off[i] = e->in_floats;
        e->in_floats += e->cfg.max_batch_rows * e->f_in[i];
        e->f_in_sum += e->f_in[i];
    }
    for (int o = 0; o < e->n_out; o++) {
        if (o < e->n_mout)
            GPUML_TRY(gpuml_model_output_info(m, o, NULL, &e->f_out[o], &e->out_event[o]));
        else /* cluster outputs: three per row, the count per event */
            e->f_out[o] = 1, e->out_event[o] = o == e->n_mout + 3;
        e->out_off[o] = e->out_floats;
        e->out_floats += (e->out_event[o] ? e->cfg.max_batch_events : e->cfg.max_batch_rows) * e->f_out[o];
    }
    return e->cfg.clusters.enabled ? eng_clusters_check(e, m) : GPUML_OK;
}

static gpuml_status init_sync(gpuml_engine *e)
{
    pthread_condattr_t ca;
    bool ok = pthread_mutex_init(&e->lock, NULL) == 0;
    ok = ok && pthread_mutex_init(&e->stats_lock, NULL) == 0;
    ok = ok && pthread_mutex_init(&e->lane_lock, NULL) == 0;
    ok = ok && pthread_condattr_init(&ca) == 0;
    /* The batcher's timed wait is on the monotonic clock, like deadlines. */
    ok = ok && pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) == 0;
    ok = ok && pthread_cond_init(&e->queue_cv, &ca) == 0;
    pthread_condattr_destroy(&ca);
    ok = ok && pthread_cond_init(&e->turn_cv, NULL) == 0;
    ok = ok && pthread_cond_init(&e->done_cv, NULL) == 0;
    ok = ok && pthread_cond_init(&e->submit_cv, NULL) == 0;
    ok = ok && pthread_cond_init(&e->lane_cv, NULL) == 0;
    if (!ok)
        return gpuml_fail(NULL, GPUML_ERR_INTERNAL, "gpuml_engine_create", "cannot initialise the engine's locks");
    e->sync_ready = true;
    return GPUML_OK;
}

static void free_engine(gpuml_engine *e)
{
    eng_lanes_fini(e);
    eng_queue_fini(e);
    for (int i = 0; e->inst && i < e->n_inst; i++)
        eng_instance_fini(&e->inst[i]);
    free(e->inst);
    for (int i = 0; e->cthreads && i < e->n_cthreads; i++) {
        free(e->cthreads[i].done);
        free(e->cthreads[i].user);
        free(e->cthreads[i].status);
    }
    free(e->cthreads);
    free(e->f_in);
    free(e->in_off);
    free(e->f_out);
    free(e->out_off);
    free(e->out_event);
    free(e->batch_hist);
    free(e->lanes);
    free(e->devices);
    if (e->sync_ready) {
        pthread_mutex_destroy(&e->lock);
        pthread_mutex_destroy(&e->stats_lock);
        pthread_mutex_destroy(&e->lane_lock);
        pthread_cond_destroy(&e->queue_cv);
        pthread_cond_destroy(&e->turn_cv);
        pthread_cond_destroy(&e->done_cv);
        pthread_cond_destroy(&e->submit_cv);
        pthread_cond_destroy(&e->lane_cv);
    }
    gpuml_mem_budget_release(e->budget); /* the contexts' allocators hold their own references */
    free(e);
}

static gpuml_status start_threads(gpuml_engine *e)
{
    static const char fn[] = "gpuml_engine_create";
    for (int i = 0; i < e->n_cthreads; i++) {
        eng_cthread *ct = &e->cthreads[i];
        if (pthread_create(&ct->thread, NULL, eng_completion_main, ct) != 0)
            return gpuml_fail(NULL, GPUML_ERR_INTERNAL, fn, "cannot start completion thread %d", i);
        ct->started = true;
    }
    for (int i = 0; i < e->n_inst; i++) {
        eng_instance *in = &e->inst[i];
        pthread_mutex_lock(&e->lock);
        e->workers_alive++;
        pthread_mutex_unlock(&e->lock);
        if (pthread_create(&in->thread, NULL, eng_worker_main, in) != 0) {
            pthread_mutex_lock(&e->lock);
            e->workers_alive--;
            pthread_mutex_unlock(&e->lock);
            return gpuml_fail(NULL, GPUML_ERR_INTERNAL, fn, "cannot start the worker of instance %d", i);
        }
        in->started = true;
    }
    return GPUML_OK;
}

gpuml_status gpuml_engine_create_from_model(const gpuml_model *model, const gpuml_engine_config *cfg,
                                            gpuml_engine **out)
{
    static const char fn[] = "gpuml_engine_create_from_model";
    if (!out)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "argument 'out' is NULL");
    *out = NULL;
    if (!model || !cfg)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "argument '%s' is NULL", !model ? "model" : "cfg");
    GPUML_TRY(check_config(cfg, fn));
    gpuml_engine *e = calloc(1, sizeof *e);
    if (!e)
        return gpuml_fail(NULL, GPUML_ERR_OUT_OF_MEMORY, fn, "cannot allocate the engine");
    e->cfg = *cfg;
    /* The device list becomes the engine's own (the caller's is borrowed
     * for this call only); ALL_DEVICES becomes 0 .. count - 1. */
    e->cfg.devices = NULL;
    if (cfg->n_devices != 0) {
        int n = cfg->n_devices == GPUML_ENGINE_ALL_DEVICES ? gpuml_cuda_device_count() : cfg->n_devices;
        n = n > 64 ? 64 : n;
        e->devices = malloc((size_t)n * sizeof *e->devices);
        if (!e->devices) {
            free(e);
            return gpuml_fail(NULL, GPUML_ERR_OUT_OF_MEMORY, fn, "cannot allocate the device list");
        }
        for (int i = 0; i < n; i++)
            e->devices[i] = cfg->n_devices == GPUML_ENGINE_ALL_DEVICES ? i : cfg->devices[i];
        e->n_devices = n;
        e->cfg.devices = e->devices;
        e->cfg.n_devices = n;
        e->cfg.device.index = e->devices[0]; /* direct mode, device-memory requests */
    } else {
        e->n_devices = 1;
    }
    resolve_defaults(&e->cfg);
    if (e->cfg.device.type == GPUML_DEVICE_CPU)
        e->cfg.device.index = 0;
    if (e->cfg.queue_rows <= 0)
        e->cfg.queue_rows = 4 * e->cfg.max_batch_rows;
    e->cuda = e->cfg.device.type == GPUML_DEVICE_CUDA;
    e->n_inst = e->cfg.num_instances;
    e->n_cthreads = e->cfg.completion_threads;
    atomic_init(&e->fail_countdown, 0);
    gpuml_status st = init_sync(e);
    if (st == GPUML_OK && e->cfg.mem_cap_bytes)
        st = gpuml_mem_budget_create(e->cfg.mem_cap_bytes, &e->budget);
    if (st == GPUML_OK)
        st = describe_model(e, model);
    if (st == GPUML_OK) {
        e->inst = calloc((size_t)e->n_inst, sizeof *e->inst);
        e->cthreads = calloc((size_t)e->n_cthreads, sizeof *e->cthreads);
        e->batch_hist = calloc((size_t)e->cfg.max_batch_events + 1, sizeof *e->batch_hist);
        e->lanes = calloc((size_t)(e->cfg.max_direct_lanes > 0 ? e->cfg.max_direct_lanes : 1), sizeof *e->lanes);
        if (!e->inst || !e->cthreads || !e->batch_hist || !e->lanes)
            st = gpuml_fail(NULL, GPUML_ERR_OUT_OF_MEMORY, fn, "out of memory");
    }
    for (int i = 0; st == GPUML_OK && i < e->n_cthreads; i++) {
        eng_cthread *ct = &e->cthreads[i];
        ct->eng = e;
        size_t n = (size_t)e->cfg.max_batch_events;
        ct->done = calloc(n, sizeof *ct->done);
        ct->user = calloc(n, sizeof *ct->user);
        ct->status = calloc(n, sizeof *ct->status);
        if (!ct->done || !ct->user || !ct->status)
            st = gpuml_fail(NULL, GPUML_ERR_OUT_OF_MEMORY, fn, "out of memory");
    }
    for (int i = 0; st == GPUML_OK && i < e->n_inst; i++) {
        e->inst[i].index = i;
        e->inst[i].device = !e->cuda ? 0 : e->devices ? e->devices[i % e->n_devices] : e->cfg.device.index;
        st = eng_instance_init(e, &e->inst[i], model);
    }
    if (st == GPUML_OK)
        st = eng_queue_init(e);
    for (int i = 0; st == GPUML_OK && e->cfg.warmup && i < e->n_inst; i++)
        st = eng_warm_up(&e->inst[i]);
    if (st == GPUML_OK)
        st = start_threads(e);
    if (st != GPUML_OK) {
        char msg[GPUML_MSG_MAX];
        snprintf(msg, sizeof msg, "%s", gpuml_last_error());
        if (e->sync_ready)
            (void)gpuml_engine_shutdown(e, GPUML_ENGINE_CANCEL);
        free_engine(e);
        /* keep the original error (the inner message names the failing call) */
        return gpuml_fail(NULL, st, fn, "%s", msg);
    }
    *out = e;
    return GPUML_OK;
}

/* A model file (HDF5, gpuml_model_save: weights and config) or, for
 * trying out a config, a JSON model config (parameters from seed 0). */
static gpuml_status load_model(gpuml_ctx *ctx, const char *path, gpuml_model **out)
{
    static const char fn[] = "gpuml_engine_create";
    static const unsigned char hdf5_sig[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
    FILE *f = fopen(path, "rb");
    if (!f)
        return gpuml_fail(NULL, GPUML_ERR_IO, fn, "cannot open model '%s'", path);
    /* gpuml's files start with their checksum block (io/filesum.h); HDF5's
     * signature sits at 0 or, after a user block, at 512, 1024, 2048, ... */
    unsigned char head[8] = {0};
    bool hdf5 = fread(head, 1, sizeof head, f) == sizeof head && !memcmp(head, "GPUMLSUM", 8);
    for (long at = 0; !hdf5 && at <= (1L << 20); at = at ? 2 * at : 512) {
        if (fseek(f, at, SEEK_SET) != 0 || fread(head, 1, sizeof head, f) != sizeof head)
            break;
        hdf5 = !memcmp(head, hdf5_sig, sizeof head);
    }
    fclose(f);
    if (hdf5)
        return gpuml_model_load(ctx, path, out);
    return gpuml_model_create_from_file(ctx, path, out);
}

gpuml_status gpuml_engine_create(const char *path, const gpuml_engine_config *cfg, gpuml_engine **out)
{
    static const char fn[] = "gpuml_engine_create";
    if (!out)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "argument 'out' is NULL");
    *out = NULL;
    if (!path || !cfg)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "argument '%s' is NULL", !path ? "path" : "cfg");
    GPUML_TRY(check_config(cfg, fn));
    /* The model is read once on the CPU, then copied to every instance. */
    gpuml_ctx_config cc;
    gpuml_ctx_config_init_defaults(&cc);
    cc.num_threads = 1;
    cc.log_fn = cfg->log_fn;
    cc.log_user = cfg->log_user;
    cc.log_level = cfg->log_level;
    cc.require_checksum = cfg->require_checksum;
    gpuml_ctx *ctx;
    GPUML_TRY(gpuml_ctx_create(&cc, &ctx));
    gpuml_model *m = NULL;
    gpuml_status st = load_model(ctx, path, &m);
    if (st == GPUML_OK)
        st = gpuml_engine_create_from_model(m, cfg, out);
    gpuml_model_destroy(m);
    gpuml_ctx_destroy(ctx);
    return st;
}

gpuml_status gpuml_engine_shutdown(gpuml_engine *e, gpuml_engine_shutdown_mode mode)
{
    static const char fn[] = "gpuml_engine_shutdown";
    if (!e)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "argument 'e' is NULL");
    if (mode != GPUML_ENGINE_CANCEL && mode != GPUML_ENGINE_DRAIN)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "mode %d is not a shutdown mode", (int)mode);
    pthread_mutex_lock(&e->lock);
    if (e->shutdown_started) {
        pthread_mutex_unlock(&e->lock);
        return GPUML_OK;
    }
    e->shutdown_started = true;
    e->stopping = true;
    e->stop_mode = mode;
    while (e->submitting > 0)
        pthread_cond_wait(&e->submit_cv, &e->lock);
    if (mode == GPUML_ENGINE_CANCEL)
        eng_cancel_waiting_locked(e, GPUML_ERR_CANCELLED);
    pthread_cond_broadcast(&e->queue_cv);
    pthread_cond_broadcast(&e->turn_cv);
    pthread_cond_broadcast(&e->done_cv);
    pthread_mutex_unlock(&e->lock);
    for (int i = 0; e->inst && i < e->n_inst; i++)
        if (e->inst[i].started)
            pthread_join(e->inst[i].thread, NULL);
    for (int i = 0; e->cthreads && i < e->n_cthreads; i++)
        if (e->cthreads[i].started)
            pthread_join(e->cthreads[i].thread, NULL);
    /* A creation that failed before the threads started may have queued
     * nothing; anything still finished-but-uncalled is completed here. */
    pthread_mutex_lock(&e->lock);
    eng_slot *list = e->fin_head;
    e->fin_head = e->fin_tail = NULL;
    e->stopped = true;
    pthread_mutex_unlock(&e->lock);
    eng_complete_finished(e, list);
    return GPUML_OK;
}

void gpuml_engine_destroy(gpuml_engine *e)
{
    if (!e)
        return;
    (void)gpuml_engine_shutdown(e, e->cfg.on_destroy);
    free_engine(e);
}

const gpuml_model *gpuml_engine_model(const gpuml_engine *e) { return e && e->inst ? e->inst[0].model : NULL; }

gpuml_status gpuml_engine_get_config(const gpuml_engine *e, gpuml_engine_config *out)
{
    if (!e || !out)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, "gpuml_engine_get_config", "argument '%s' is NULL",
                          !e ? "e" : "out");
    *out = e->cfg;
    return GPUML_OK;
}

gpuml_status gpuml_engine_mem_usage(gpuml_engine *e, size_t *held, size_t *cap)
{
    if (!e)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, "gpuml_engine_mem_usage", "argument 'e' is NULL");
    if (cap)
        *cap = e->cfg.mem_cap_bytes;
    if (!held)
        return GPUML_OK;
    if (e->budget) { /* exact: every context charges it under its lock */
        *held = gpuml_mem_budget_reserved(e->budget);
        return GPUML_OK;
    }
    size_t sum = 0;
    gpuml_alloc_stats s;
    for (int i = 0; i < e->n_inst; i++) {
        gpuml_ctx_alloc_stats(e->inst[i].ctx, 0, &s);
        sum += s.bytes_reserved;
    }
    pthread_mutex_lock(&e->lane_lock);
    for (int i = 0; i < e->n_lanes; i++) {
        gpuml_ctx_alloc_stats(e->lanes[i].ctx, 0, &s);
        sum += s.bytes_reserved;
    }
    pthread_mutex_unlock(&e->lane_lock);
    *held = sum;
    return GPUML_OK;
}

void gpuml_engine_fail_batch_after(gpuml_engine *e, long n)
{
    if (e)
        atomic_store(&e->fail_countdown, n > 0 ? n : 0);
}

gpuml_status gpuml_engine_alloc_stats(gpuml_engine *e, int pinned, gpuml_alloc_stats *out, size_t *arena_bytes)
{
    if (!e || !out)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, "gpuml_engine_alloc_stats", "argument '%s' is NULL",
                          e ? "out" : "e");
    memset(out, 0, sizeof *out);
    size_t arena = 0;
    for (int i = 0; i < e->n_inst; i++) {
        gpuml_alloc_stats s;
        gpuml_ctx_alloc_stats(e->inst[i].ctx, pinned, &s);
        out->bytes_in_use += s.bytes_in_use;
        out->bytes_peak += s.bytes_peak;
        out->bytes_cached += s.bytes_cached;
        out->bytes_reserved += s.bytes_reserved;
        out->num_allocs += s.num_allocs;
        out->num_cache_hits += s.num_cache_hits;
        out->num_system_allocs += s.num_system_allocs;
        /* the tapes belong to the workers, which publish their size */
        arena += atomic_load(&e->inst[i].arena_bytes);
    }
    if (!pinned)
        out->bytes_cap = e->cfg.mem_cap_bytes;
    if (arena_bytes)
        *arena_bytes = arena;
    return GPUML_OK;
}