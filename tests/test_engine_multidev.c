/* The inference engine with its instances spread over several CUDA devices
 * (cfg.devices / cfg.n_devices, gpuml/infer.h "Several devices"): on 2 and
 * 4 devices every device receives work from concurrent submitters; with
 * one event per batch every output is bitwise equal to direct inference on
 * device 0 and to a single-device engine; batched outputs are close to the
 * CPU's single-event inference; shutdown (drain and cancel) with work in
 * flight on every device; per-instance statistics; bad device lists are
 * refused naming the entry. Needs two or more CUDA devices: the emulated
 * CUDA build runs it with GPUML_EMU_DEVICES=4 (tests/meson.build); elsewhere
 * with fewer devices it skips. */
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "engine_model.h"
#include "harness.h"

#define NEV 96
#define NTHREADS 4

typedef struct {
    int64_t rows;
    float *hits, *aux;       /* [rows, 7], [rows, 3]                          */
    float *cpu_t2, *cpu_cls; /* alone on the CPU                              */
    float *dev_t2, *dev_cls; /* alone on CUDA device 0 (direct mode)          */
} event;

static gpuml_ctx *g_ctx;
static gpuml_model *g_model;
static event g_ev[NEV];

static int have_devices(int n) { return gpuml_cuda_device_count() >= n; }

static gpuml_engine_config base_config(void)
{
    gpuml_engine_config cfg;
    gpuml_engine_config_init_defaults(&cfg);
    cfg.device.type = GPUML_DEVICE_CUDA;
    cfg.max_batch_events = 1; /* one event per batch: results bitwise comparable */
    cfg.max_batch_rows = 512;
    cfg.max_queue_delay_us = 200;
    cfg.queue_capacity = 64;
    return cfg;
}

/* ---- requests ---------------------------------------------------------------- */
typedef eng_rec rec;

static void rec_init(rec *r, int ev, atomic_int *finished)
{
    eng_rec_init(r, ev, g_ev[ev].rows, g_ev[ev].hits, g_ev[ev].aux, finished);
}

static int bitwise(const float *a, const float *b, int64_t n) { return !memcmp(a, b, (size_t)n * sizeof(float)); }

static int close_to(const float *a, const float *b, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        if (!(fabsf(a[i] - b[i]) <= 1e-4f * (fabsf(b[i]) + 1.0f)))
            return 0;
    return 1;
}

static int setup(void **state)
{
    (void)state;
    g_ctx = h_ctx(GPUML_DEVICE_CPU, 0);
    if (!g_ctx || gpuml_model_create(g_ctx, eng_model_json, &g_model) != GPUML_OK ||
        gpuml_model_init_params(g_model, 5) != GPUML_OK)
        return -1;
    uint64_t rng = 7;
    for (int e = 0; e < NEV; e++) {
        event *ev = &g_ev[e];
        ev->rows = e % 13 == 0 ? 0 : (int64_t)(h_rand_u64(&rng) % (e % 3 ? 60 : 200)) + 1;
        eng_event_inputs(&rng, ev->rows, &ev->hits, &ev->aux);
        eng_forward_alone(g_ctx, g_model, ev->rows, ev->hits, ev->aux, &ev->cpu_t2, &ev->cpu_cls);
    }
    if (!have_devices(1))
        return 0;
    /* Direct inference on device 0, each event alone: the device reference. */
    gpuml_engine_config cfg = base_config();
    cfg.device.index = 0;
    gpuml_engine *e;
    if (gpuml_engine_create_from_model(g_model, &cfg, &e) != GPUML_OK)
        return -1;
    for (int i = 0; i < NEV; i++) {
        rec r;
        rec_init(&r, i, NULL);
        gpuml_engine_request q = eng_rec_request(&r);
        if (gpuml_engine_run_direct(e, &q, NULL) != GPUML_OK)
            return -1;
        g_ev[i].dev_t2 = r.t2;
        g_ev[i].dev_cls = r.cls;
    }
    gpuml_engine_destroy(e);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    for (int e = 0; e < NEV; e++) {
        free(g_ev[e].hits);
        free(g_ev[e].aux);
        free(g_ev[e].cpu_t2);
        free(g_ev[e].cpu_cls);
        free(g_ev[e].dev_t2);
        free(g_ev[e].dev_cls);
    }
    gpuml_model_destroy(g_model);
    gpuml_ctx_destroy(g_ctx);
    return 0;
}

/* ---- concurrent submitters ----------------------------------------------------- */
typedef struct {
    gpuml_engine *eng;
    rec *recs; /* [NEV], this thread submits events t, t + NTHREADS, ... */
    int first;
    atomic_int *finished;
} submitter;

static void *submit_main(void *arg)
{
    submitter *s = arg;
    for (int i = s->first; i < NEV; i += NTHREADS) {
        rec *r = &s->recs[i];
        gpuml_engine_request q = eng_rec_request(r);
        q.borrow_inputs = i % 2;
        gpuml_status st;
        while ((st = gpuml_engine_submit(s->eng, &q, eng_on_done, r)) == GPUML_ERR_QUEUE_FULL)
            eng_sleep_us(100);
        if (st != GPUML_OK)
            atomic_store(&r->calls, -1000); /* shows as a wrong call count */
    }
    return NULL;
}

/* All NEV events through `e` from NTHREADS threads; recs filled. */
static rec *run_all(gpuml_engine *e)
{
    atomic_int finished;
    atomic_init(&finished, 0);
    rec *recs = malloc(NEV * sizeof *recs);
    for (int i = 0; i < NEV; i++)
        rec_init(&recs[i], i, &finished);
    pthread_t th[NTHREADS];
    submitter sub[NTHREADS];
    for (int t = 0; t < NTHREADS; t++) {
        sub[t] = (submitter){e, recs, t, &finished};
        assert_int_equal(pthread_create(&th[t], NULL, submit_main, &sub[t]), 0);
    }
    for (int t = 0; t < NTHREADS; t++)
        pthread_join(th[t], NULL);
    eng_wait_for(&finished, NEV, 300);
    for (int i = 0; i < NEV; i++) {
        assert_int_equal(atomic_load(&recs[i].calls), 1);
        assert_int_equal(atomic_load(&recs[i].status), GPUML_OK);
    }
    for (int i = 0; i < NEV; i++)
        recs[i].finished = NULL; /* the counter was on our stack */
    return recs;
}

static void free_recs(rec *recs)
{
    for (int i = 0; i < NEV; i++)
        eng_rec_free(&recs[i]);
    free(recs);
}

/* Every instance ran on the device the list gives it and did some of the
 * work; the instances' counts add up to the engine's. */
static void expect_balance(gpuml_engine *e, const int *devices, int n_devices, int per_device)
{
    gpuml_engine_config got;
    assert_int_equal(gpuml_engine_get_config(e, &got), GPUML_OK);
    assert_int_equal(got.n_devices, n_devices);
    assert_int_equal(got.num_instances, n_devices * per_device);
    assert_int_equal(got.device.index, devices[0]);
    gpuml_engine_stats st;
    assert_int_equal(gpuml_engine_get_stats(e, &st), GPUML_OK);
    uint64_t batches = 0, events = 0;
    printf("  %d devices x %d instances:", n_devices, per_device);
    for (int i = 0; i < got.num_instances; i++) {
        gpuml_engine_instance_stats is;
        assert_int_equal(gpuml_engine_get_instance_stats(e, i, &is), GPUML_OK);
        printf(" [%d] dev %d %llu ev", i, is.device.index, (unsigned long long)is.batch_events);
        assert_int_equal(is.device.type, GPUML_DEVICE_CUDA);
        assert_int_equal(is.device.index, devices[i % n_devices]);
        assert_int_equal(got.devices[i % n_devices], devices[i % n_devices]);
        assert_true(is.batches > 0); /* every device (every instance) received work */
        assert_int_equal(is.failed_batches, 0);
        assert_int_equal(is.in_flight_batches, 0);
        batches += is.batches;
        events += is.batch_events;
    }
    printf("\n");
    assert_int_equal(batches, st.batches);
    assert_int_equal(events, st.batch_events);
    assert_int_equal(events, NEV);
    gpuml_engine_instance_stats is;
    assert_int_equal(gpuml_engine_get_instance_stats(e, got.num_instances, &is), GPUML_ERR_INVALID_ARGUMENT);
    assert_int_equal(gpuml_engine_get_instance_stats(e, -1, &is), GPUML_ERR_INVALID_ARGUMENT);
    assert_int_equal(gpuml_engine_get_instance_stats(e, 0, NULL), GPUML_ERR_INVALID_ARGUMENT);
}

/* One event per batch over n devices: bitwise device 0's direct inference. */
static void bitwise_over(int n, int per_device, int all)
{
    if (!have_devices(n))
        skip();
    int devices[8];
    for (int i = 0; i < n; i++)
        devices[i] = all ? i : n - 1 - i; /* a list not in ordinal order */
    gpuml_engine_config cfg = base_config();
    if (all) {
        cfg.n_devices = GPUML_ENGINE_ALL_DEVICES;
    } else {
        cfg.devices = devices;
        cfg.n_devices = n;
    }
    cfg.num_instances = per_device * n;
    gpuml_engine *e = NULL;
    assert_int_equal(gpuml_engine_create_from_model(g_model, &cfg, &e), GPUML_OK);
    for (int i = 0; i < n; i++)
        devices[i] = all ? i : n - 1 - i; /* the engine keeps its own copy: scribbling here changes nothing */
    rec *recs = run_all(e);
    int bad = 0;
    for (int i = 0; i < NEV; i++) {
        const event *ev = &g_ev[i];
        if (!bitwise(recs[i].t2, ev->dev_t2, ev->rows * 4) || !bitwise(recs[i].cls, ev->dev_cls, 3))
            if (bad++ < 5)
                printf("event %d (%lld rows): differs from direct inference on device 0\n", i, (long long)ev->rows);
        if (!close_to(recs[i].t2, ev->cpu_t2, ev->rows * 4) || !close_to(recs[i].cls, ev->cpu_cls, 3))
            if (bad++ < 5)
                printf("event %d: not close to the CPU's\n", i);
    }
    expect_balance(e, devices, n, per_device);
    free_recs(recs);
    gpuml_engine_destroy(e);
    assert_int_equal(bad, 0);
}

static void test_two_devices_bitwise(void **state)
{
    (void)state;
    bitwise_over(2, 1, 0);
}

static void test_four_devices_bitwise(void **state)
{
    (void)state;
    bitwise_over(4, 1, 1);
}

static void test_two_instances_per_device(void **state)
{
    (void)state;
    bitwise_over(2, 2, 0);
}

/* The single-device engine (today's behaviour, n_devices 0) gives the same
 * bits as the multi-device one, event by event. */
static void test_equal_to_single_device_engine(void **state)
{
    (void)state;
    if (!have_devices(2))
        skip();
    gpuml_engine_config cfg = base_config();
    cfg.device.index = 1;
    gpuml_engine *e = NULL;
    assert_int_equal(gpuml_engine_create_from_model(g_model, &cfg, &e), GPUML_OK);
    gpuml_engine_config got;
    assert_int_equal(gpuml_engine_get_config(e, &got), GPUML_OK);
    assert_int_equal(got.n_devices, 0);
    assert_null(got.devices);
    assert_int_equal(got.num_instances, 1);
    rec *single = run_all(e);
    gpuml_engine_destroy(e);
    int devices[2] = {0, 1};
    cfg.devices = devices;
    cfg.n_devices = 2;
    assert_int_equal(gpuml_engine_create_from_model(g_model, &cfg, &e), GPUML_OK);
    rec *multi = run_all(e);
    gpuml_engine_destroy(e);
    for (int i = 0; i < NEV; i++) {
        assert_true(bitwise(single[i].t2, multi[i].t2, g_ev[i].rows * 4));
        assert_true(bitwise(single[i].cls, multi[i].cls, 3));
    }
    free_recs(single);
    free_recs(multi);
}

/* Batches of several events over 4 devices: every event close to the CPU's
 * single-event inference (cuBLAS may pick another GEMM per batch shape). */
static void test_batched_over_devices(void **state)
{
    (void)state;
    if (!have_devices(4))
        skip();
    gpuml_engine_config cfg = base_config();
    cfg.n_devices = GPUML_ENGINE_ALL_DEVICES;
    cfg.max_batch_events = 8;
    cfg.max_batch_rows = 2048;
    gpuml_engine *e = NULL;
    assert_int_equal(gpuml_engine_create_from_model(g_model, &cfg, &e), GPUML_OK);
    rec *recs = run_all(e);
    for (int i = 0; i < NEV; i++) {
        assert_true(close_to(recs[i].t2, g_ev[i].cpu_t2, g_ev[i].rows * 4));
        assert_true(close_to(recs[i].cls, g_ev[i].cpu_cls, 3));
    }
    uint64_t events = 0;
    for (int i = 0; i < 4; i++) {
        gpuml_engine_instance_stats is;
        assert_int_equal(gpuml_engine_get_instance_stats(e, i, &is), GPUML_OK);
        assert_int_equal(is.device.index, i);
        events += is.batch_events;
    }
    assert_int_equal(events, NEV);
    gpuml_engine_reset_stats(e);
    gpuml_engine_instance_stats is;
    assert_int_equal(gpuml_engine_get_instance_stats(e, 3, &is), GPUML_OK);
    assert_int_equal(is.batches, 0);
    free_recs(recs);
    gpuml_engine_destroy(e);
}

/* Shutdown while every device has work: each request is called back
 * exactly once; drained ones are all computed, cancelled ones are either
 * computed (bitwise right) or CANCELLED with outputs untouched. */
static void shutdown_in_flight(gpuml_engine_shutdown_mode mode)
{
    if (!have_devices(4))
        skip();
    gpuml_engine_config cfg = base_config();
    cfg.n_devices = GPUML_ENGINE_ALL_DEVICES;
    cfg.queue_capacity = NEV;
    cfg.queue_rows = NEV * 256; /* every event's copied inputs at once */
    cfg.max_queue_delay_us = 2000;
    gpuml_engine *e = NULL;
    assert_int_equal(gpuml_engine_create_from_model(g_model, &cfg, &e), GPUML_OK);
    atomic_int finished;
    atomic_init(&finished, 0);
    rec *recs = malloc(NEV * sizeof *recs);
    for (int i = 0; i < NEV; i++) {
        rec_init(&recs[i], i, &finished);
        gpuml_engine_request q = eng_rec_request(&recs[i]);
        assert_int_equal(gpuml_engine_submit(e, &q, eng_on_done, &recs[i]), GPUML_OK);
    }
    eng_wait_for(&finished, 6, 120); /* some done, the devices busy with more */
    assert_int_equal(gpuml_engine_shutdown(e, mode), GPUML_OK);
    assert_int_equal(atomic_load(&finished), NEV); /* shutdown returns after every done */
    int ok = 0, cancelled = 0;
    for (int i = 0; i < NEV; i++) {
        const event *ev = &g_ev[i];
        assert_int_equal(atomic_load(&recs[i].calls), 1);
        gpuml_status st = atomic_load(&recs[i].status);
        if (st == GPUML_OK) {
            ok++;
            assert_true(bitwise(recs[i].t2, ev->dev_t2, ev->rows * 4));
            assert_true(bitwise(recs[i].cls, ev->dev_cls, 3));
        } else {
            assert_int_equal(st, GPUML_ERR_CANCELLED);
            assert_int_equal(mode, GPUML_ENGINE_CANCEL);
            cancelled++;
            assert_true(isnan(recs[i].cls[0]));
        }
    }
    printf("  shutdown %s: %d computed, %d cancelled\n", mode == GPUML_ENGINE_DRAIN ? "drain" : "cancel", ok,
           cancelled);
    assert_true(ok >= 6);
    if (mode == GPUML_ENGINE_DRAIN)
        assert_int_equal(ok, NEV);
    rec r;
    rec_init(&r, 1, NULL);
    gpuml_engine_request q = eng_rec_request(&r);
    assert_int_equal(gpuml_engine_submit(e, &q, eng_on_done, &r), GPUML_ERR_STATE);
    eng_rec_free(&r);
    gpuml_engine_destroy(e);
    for (int i = 0; i < NEV; i++)
        eng_rec_free(&recs[i]);
    free(recs);
}

static void test_shutdown_drain_in_flight(void **state)
{
    (void)state;
    shutdown_in_flight(GPUML_ENGINE_DRAIN);
}

static void test_shutdown_cancel_in_flight(void **state)
{
    (void)state;
    shutdown_in_flight(GPUML_ENGINE_CANCEL);
}

/* ---- device memory: refused by submit, accepted by direct mode on devices[0] ---- */
static void test_device_memory_requests(void **state)
{
    (void)state;
    if (!have_devices(2))
        skip();
    int devices[2] = {1, 0};
    gpuml_engine_config cfg = base_config();
    cfg.devices = devices;
    cfg.n_devices = 2;
    gpuml_engine *e = NULL;
    assert_int_equal(gpuml_engine_create_from_model(g_model, &cfg, &e), GPUML_OK);
    const event *ev = &g_ev[5];
    gpuml_ctx *c1;
    gpuml_ctx_config cc;
    gpuml_ctx_config_init_defaults(&cc);
    cc.device.type = GPUML_DEVICE_CUDA;
    cc.device.index = 1;
    assert_int_equal(gpuml_ctx_create(&cc, &c1), GPUML_OK);
    int64_t hs[2] = {ev->rows, 7}, as[2] = {ev->rows, 3};
    gpuml_tensor *dh = h_tensor_f32(c1, 2, hs, ev->hits), *da = h_tensor_f32(c1, 2, as, ev->aux);
    assert_int_equal(gpuml_ctx_synchronize(c1), GPUML_OK);
    rec r;
    rec_init(&r, 5, NULL);
    r.in[0] = gpuml_tensor_data(dh);
    r.in[1] = gpuml_tensor_data(da);
    gpuml_engine_request q = eng_rec_request(&r);
    q.inputs_on = GPUML_DEVICE_CUDA;
    assert_int_equal(gpuml_engine_submit(e, &q, eng_on_done, &r), GPUML_ERR_DEVICE_MISMATCH);
    assert_non_null(strstr(gpuml_last_error(), "spreads its instances over 2 devices"));
    assert_true(isnan(r.cls[0]));
    /* direct mode runs on devices[0] = 1, where the inputs are */
    assert_int_equal(gpuml_engine_run_direct(e, &q, NULL), GPUML_OK);
    assert_true(bitwise(r.t2, ev->dev_t2, ev->rows * 4));
    assert_true(bitwise(r.cls, ev->dev_cls, 3));
    eng_rec_free(&r);
    gpuml_tensor_destroy(dh);
    gpuml_tensor_destroy(da);
    gpuml_ctx_destroy(c1);
    gpuml_engine_destroy(e);
}

/* ---- bad device lists: INVALID_ARGUMENT naming the entry, nothing created ---- */
static void expect_refused(gpuml_engine_config cfg, gpuml_status want, const char *needle)
{
    gpuml_engine *e = (gpuml_engine *)&cfg; /* must come back NULL */
    gpuml_status st = gpuml_engine_create_from_model(g_model, &cfg, &e);
    if (st != want || e != NULL || !strstr(gpuml_last_error(), needle))
        fail_msg("expected %s mentioning '%s', got %s: %s", gpuml_status_string(want), needle,
                 gpuml_status_string(st), gpuml_last_error());
}

static void test_bad_device_lists(void **state)
{
    (void)state;
    int n = gpuml_cuda_device_count();
    gpuml_engine_config cfg = base_config();
    int out_of_range[2] = {0, n};
    cfg.devices = out_of_range;
    cfg.n_devices = 2;
    char needle[64];
    snprintf(needle, sizeof needle, "cfg->devices[%d] = %d is not a visible CUDA device", n ? 1 : 0, n);
    expect_refused(cfg, GPUML_ERR_INVALID_ARGUMENT, needle);
    int negative[1] = {-1};
    cfg.devices = negative;
    cfg.n_devices = 1;
    expect_refused(cfg, GPUML_ERR_INVALID_ARGUMENT, "cfg->devices[0] = -1");
    if (n >= 2) {
        int dup[3] = {1, 0, 1};
        cfg.devices = dup;
        cfg.n_devices = 3;
        expect_refused(cfg, GPUML_ERR_INVALID_ARGUMENT, "cfg->devices[2] = 1 repeats cfg->devices[0]");
        int two[2] = {0, 1};
        cfg.devices = two;
        cfg.n_devices = 2;
        cfg.num_instances = 1;
        expect_refused(cfg, GPUML_ERR_INVALID_ARGUMENT, "cfg->num_instances = 1 is below the 2 devices");
        cfg.num_instances = 0;
    }
    cfg.devices = NULL;
    cfg.n_devices = 2;
    expect_refused(cfg, GPUML_ERR_INVALID_ARGUMENT, "cfg->devices is NULL");
    int one[1] = {0};
    cfg.devices = one;
    cfg.n_devices = 0;
    expect_refused(cfg, GPUML_ERR_INVALID_ARGUMENT, "cfg->n_devices is 0");
    cfg.n_devices = -2;
    expect_refused(cfg, GPUML_ERR_INVALID_ARGUMENT, "cfg->n_devices = -2");
    cfg.n_devices = GPUML_ENGINE_ALL_DEVICES;
    expect_refused(cfg, GPUML_ERR_INVALID_ARGUMENT, "cfg->devices is set with cfg->n_devices = GPUML_ENGINE_ALL");
    cfg.devices = NULL;
    cfg.device.type = GPUML_DEVICE_CPU;
    expect_refused(cfg, GPUML_ERR_INVALID_ARGUMENT, "a device list needs cfg->device.type CUDA");
    if (n == 0) { /* a build or machine without CUDA: ALL_DEVICES has nothing to use */
        cfg.device.type = GPUML_DEVICE_CUDA;
        expect_refused(cfg, GPUML_ERR_NO_DEVICE, "no CUDA device is visible");
    }
    /* the file path checks the same list before it reads the model */
    gpuml_engine *e = NULL;
    cfg = base_config();
    cfg.devices = out_of_range;
    cfg.n_devices = 2;
    assert_int_equal(gpuml_engine_create("/nonexistent/model.h5", &cfg, &e), GPUML_ERR_INVALID_ARGUMENT);
    assert_null(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_device_lists),
        cmocka_unit_test(test_two_devices_bitwise),
        cmocka_unit_test(test_four_devices_bitwise),
        cmocka_unit_test(test_two_instances_per_device),
        cmocka_unit_test(test_equal_to_single_device_engine),
        cmocka_unit_test(test_batched_over_devices),
        cmocka_unit_test(test_shutdown_drain_in_flight),
        cmocka_unit_test(test_shutdown_cancel_in_flight),
        cmocka_unit_test(test_device_memory_requests),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
