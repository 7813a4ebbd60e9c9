/* The asynchronous inference engine: many submitting threads against
 * single-event inference (bitwise), back-pressure, deadlines, shutdown with
 * requests in flight, failure isolation, priorities, statistics, steady
 * state without allocation, direct mode, argument errors. Runs under
 * ThreadSanitizer too (tools/test.sh --tsan), with fewer requests. */
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

#if defined(__SANITIZE_THREAD__)
#define UNDER_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define UNDER_TSAN 1
#endif
#endif
#ifndef UNDER_TSAN
#define UNDER_TSAN 0
#endif

#define NEV 160
#define MAX_EV_ROWS 300

typedef struct {
    int64_t rows;
    float *hits, *aux;      /* [rows, 7], [rows, 3]    */
    float *ref_t2, *ref_cls;/* [rows, 4], [3]: alone   */
} event;

static gpuml_ctx *g_ctx;
static gpuml_model *g_model;
static event g_ev[NEV];

static int setup(void **state)
{
    (void)state;
    g_ctx = h_ctx(GPUML_DEVICE_CPU, 0);
    if (!g_ctx || gpuml_model_create(g_ctx, eng_model_json, &g_model) != GPUML_OK ||
        gpuml_model_init_params(g_model, 5) != GPUML_OK)
        return -1;
    uint64_t rng = 99;
    for (int e = 0; e < NEV; e++) {
        event *ev = &g_ev[e];
        /* mostly small, some empty, some across several 64-row blocks */
        ev->rows = e % 17 == 0 ? 0 : (int64_t)(h_rand_u64(&rng) % (e % 3 ? 80 : MAX_EV_ROWS)) + 1;
        eng_event_inputs(&rng, ev->rows, &ev->hits, &ev->aux);
        eng_forward_alone(g_ctx, g_model, ev->rows, ev->hits, ev->aux, &ev->ref_t2, &ev->ref_cls);
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    for (int e = 0; e < NEV; e++) {
        free(g_ev[e].hits);
        free(g_ev[e].aux);
        free(g_ev[e].ref_t2);
        free(g_ev[e].ref_cls);
    }
    gpuml_model_destroy(g_model);
    gpuml_ctx_destroy(g_ctx);
    return 0;
}

static gpuml_engine_config base_config(void)
{
    gpuml_engine_config cfg;
    gpuml_engine_config_init_defaults(&cfg);
    cfg.num_instances = 1; /* the tests below reason about one worker; test_defaults checks the default */
    cfg.max_batch_events = 32;
    cfg.max_batch_rows = 4096;
    cfg.max_queue_delay_us = 300;
    cfg.queue_capacity = 256;
    return cfg;
}

static gpuml_engine *make_engine(const gpuml_engine_config *cfg)
{
    gpuml_engine *e = NULL;
    gpuml_status st = gpuml_engine_create_from_model(g_model, cfg, &e);
    if (st != GPUML_OK)
        fail_msg("gpuml_engine_create_from_model: %s: %s", gpuml_status_string(st), gpuml_last_error());
    return e;
}

/* ---- one request and its completion record --------------------------------- */
typedef eng_rec rec;

static void rec_init(rec *r, int ev, atomic_int *finished)
{
    eng_rec_init(r, ev, g_ev[ev].rows, g_ev[ev].hits, g_ev[ev].aux, finished);
}

static void expect_matches_alone(const rec *r)
{
    const event *ev = &g_ev[r->ev];
    if (memcmp(r->t2, ev->ref_t2, (size_t)(ev->rows * 4) * sizeof(float)) ||
        memcmp(r->cls, ev->ref_cls, 3 * sizeof(float)))
        fail_msg("event %d (%lld rows): engine output differs from single-event inference", r->ev,
                 (long long)ev->rows);
}

/* ---- many threads ----------------------------------------------------------- */
typedef struct {
    gpuml_engine *eng;
    int n;
    rec *recs;
    uint64_t seed;
    atomic_int finished;
    long retries;
} submitter;

static void *submit_thread(void *arg)
{
    submitter *s = arg;
    uint64_t rng = s->seed;
    for (int i = 0; i < s->n; i++) {
        rec *r = &s->recs[i];
        rec_init(r, (int)(h_rand_u64(&rng) % NEV), &s->finished);
        gpuml_engine_request q = eng_rec_request(r);
        q.priority = (int)(h_rand_u64(&rng) % 3);
        q.borrow_inputs = (int)(h_rand_u64(&rng) % 2);
        gpuml_status st;
        while ((st = gpuml_engine_submit(s->eng, &q, eng_on_done, r)) == GPUML_ERR_QUEUE_FULL) {
            s->retries++;
            eng_sleep_us(50);
        }
        if (st != GPUML_OK) {
            fprintf(stderr, "submit: %s\n", gpuml_last_error());
            atomic_store(&r->calls, -1000);
        }
    }
    return NULL;
}

static void test_many_threads_match_single_event(void **state)
{
    (void)state;
    enum { NT = 16 };
    const int per_thread = UNDER_TSAN ? 40 : 250;
    gpuml_engine_config cfg = base_config();
    cfg.num_instances = 2;
    cfg.completion_threads = 2;
    gpuml_engine *eng = make_engine(&cfg);
    submitter subs[NT];
    pthread_t th[NT];
    double t0 = eng_now_s();
    for (int t = 0; t < NT; t++) {
        subs[t].eng = eng;
        subs[t].n = per_thread;
        subs[t].recs = calloc((size_t)per_thread, sizeof(rec));
        subs[t].seed = 1000 + (uint64_t)t;
        subs[t].retries = 0;
        atomic_init(&subs[t].finished, 0);
        assert_int_equal(pthread_create(&th[t], NULL, submit_thread, &subs[t]), 0);
    }
    for (int t = 0; t < NT; t++)
        pthread_join(th[t], NULL);
    for (int t = 0; t < NT; t++)
        eng_wait_for(&subs[t].finished, per_thread, 120);
    double dt = eng_now_s() - t0;

    gpuml_engine_stats st;
    assert_int_equal(gpuml_engine_get_stats(eng, &st), GPUML_OK);
    gpuml_engine_destroy(eng); /* nothing in flight: no extra callbacks */
    long retries = 0;
    for (int t = 0; t < NT; t++) {
        retries += subs[t].retries;
        for (int i = 0; i < per_thread; i++) {
            rec *r = &subs[t].recs[i];
            assert_int_equal(atomic_load(&r->calls), 1);
            assert_int_equal(atomic_load(&r->status), GPUML_OK);
            expect_matches_alone(r);
            eng_rec_free(r);
        }
        free(subs[t].recs);
    }
    uint64_t total = (uint64_t)NT * (uint64_t)per_thread;
    assert_int_equal(st.submitted, total);
    assert_int_equal(st.completed, total);
    assert_int_equal(st.failed + st.timed_out + st.cancelled, 0);
    assert_int_equal(st.in_flight, 0);
    assert_int_equal(st.queued, 0);
    assert_true(st.batches > 0 && st.batches <= total);
    assert_int_equal(st.batch_events, total);
    assert_int_equal(st.latency.count, total);
    assert_int_equal(st.queue_time.count, total);
    assert_int_equal(st.compute_time.count, st.batches);
    assert_true(st.latency.p50_us <= st.latency.p90_us && st.latency.p90_us <= st.latency.p99_us &&
                st.latency.p99_us <= st.latency.max_us);
    assert_true(st.compute_time.p50_us <= st.compute_time.p99_us);
    printf("  %llu requests from %d threads in %.2f s: %llu batches (mean %.1f events), %ld queue-full retries, "
           "latency p50 %.0f us p99 %.0f us\n",
           (unsigned long long)total, NT, dt, (unsigned long long)st.batches,
           (double)st.batch_events / (double)st.batches, retries, st.latency.p50_us, st.latency.p99_us);
}

/* ---- back-pressure ------------------------------------------------------------- */
static void test_queue_full(void **state)
{
    (void)state;
    gpuml_engine_config cfg = base_config();
    cfg.queue_capacity = 4;
    cfg.max_queue_delay_us = 200000; /* the batcher waits: requests stay queued */
    gpuml_engine *eng = make_engine(&cfg);
    atomic_int finished;
    atomic_init(&finished, 0);
    rec r[5];
    for (int i = 0; i < 5; i++)
        rec_init(&r[i], 1 + i, &finished);
    for (int i = 0; i < 4; i++) {
        gpuml_engine_request q = eng_rec_request(&r[i]);
        assert_int_equal(gpuml_engine_submit(eng, &q, eng_on_done, &r[i]), GPUML_OK);
    }
    gpuml_engine_request q = eng_rec_request(&r[4]);
    assert_int_equal(gpuml_engine_submit(eng, &q, eng_on_done, &r[4]), GPUML_ERR_QUEUE_FULL);
    assert_non_null(strstr(gpuml_last_error(), "queue_capacity"));
    gpuml_engine_stats st;
    gpuml_engine_get_stats(eng, &st);
    assert_int_equal(st.rejected, 1);
    assert_int_equal(st.queued, 4);
    assert_int_equal(gpuml_engine_shutdown(eng, GPUML_ENGINE_DRAIN), GPUML_OK);
    /* after shutdown: refused, no callback */
    assert_int_equal(gpuml_engine_submit(eng, &q, eng_on_done, &r[4]), GPUML_ERR_STATE);
    gpuml_engine_destroy(eng);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(atomic_load(&r[i].calls), 1);
        assert_int_equal(atomic_load(&r[i].status), GPUML_OK);
        expect_matches_alone(&r[i]);
    }
    assert_int_equal(atomic_load(&r[4].calls), 0);
    for (int i = 0; i < 5; i++)
        eng_rec_free(&r[i]);

    /* the input pool is the other limit: rows of copied inputs */
    cfg = base_config();
    cfg.max_batch_rows = 400;
    cfg.queue_rows = 400;
    cfg.max_queue_delay_us = 200000;
    eng = make_engine(&cfg);
    int big = -1;
    for (int e = 0; e < NEV && big < 0; e++)
        if (g_ev[e].rows > 200)
            big = e;
    assert_true(big >= 0);
    rec a, b, c;
    rec_init(&a, big, &finished);
    rec_init(&b, big, &finished);
    rec_init(&c, 1, &finished); /* small: a + c stay below max_batch_rows, so nothing runs */
    q = eng_rec_request(&a);
    assert_int_equal(gpuml_engine_submit(eng, &q, eng_on_done, &a), GPUML_OK);
    q = eng_rec_request(&b);
    assert_int_equal(gpuml_engine_submit(eng, &q, eng_on_done, &b), GPUML_ERR_QUEUE_FULL);
    assert_non_null(strstr(gpuml_last_error(), "queue_rows"));
    q = eng_rec_request(&c);
    q.borrow_inputs = 1; /* not copied: takes no pool rows */
    assert_int_equal(gpuml_engine_submit(eng, &q, eng_on_done, &c), GPUML_OK);
    gpuml_engine_destroy(eng); /* default: cancel what waits */
    assert_int_equal(atomic_load(&a.calls), 1);
    assert_int_equal(atomic_load(&c.calls), 1);
    assert_int_equal(atomic_load(&a.status), GPUML_ERR_CANCELLED);
    assert_int_equal(atomic_load(&b.calls), 0);
    eng_rec_free(&a);
    eng_rec_free(&b);
    eng_rec_free(&c);
}

/* ---- deadlines ---------------------------------------------------------------- */
static void test_deadlines(void **state)
{
    (void)state;
    gpuml_engine_config cfg = base_config();
    cfg.max_queue_delay_us = 30000;
    gpuml_engine *eng = make_engine(&cfg);
    atomic_int finished;
    atomic_init(&finished, 0);
    enum { N = 6 };
    rec r[N];
    int64_t t = gpuml_engine_clock_us();
    for (int i = 0; i < N; i++) {
        rec_init(&r[i], 3 + i, &finished);
        gpuml_engine_request q = eng_rec_request(&r[i]);
        /* 0, 2, 4: already late or due before the 30 ms batching delay ends */
        q.deadline_us = i % 2 ? 0 : (i == 0 ? t - 1 : t + 2000);
        assert_int_equal(gpuml_engine_submit(eng, &q, eng_on_done, &r[i]), GPUML_OK);
    }
    eng_wait_for(&finished, N, 30);
    for (int i = 0; i < N; i++) {
        assert_int_equal(atomic_load(&r[i].calls), 1);
        if (i % 2) {
            assert_int_equal(atomic_load(&r[i].status), GPUML_OK);
            expect_matches_alone(&r[i]);
        } else {
            assert_int_equal(atomic_load(&r[i].status), GPUML_ERR_TIMEOUT);
            assert_non_null(strstr(r[i].msg, "deadline"));
            assert_true(isnan(r[i].cls[0])); /* untouched */
        }
    }
    gpuml_engine_stats st;
    gpuml_engine_get_stats(eng, &st);
    assert_int_equal(st.timed_out, 3);
    assert_int_equal(st.completed, 3);
    gpuml_engine_destroy(eng);
    for (int i = 0; i < N; i++)
        eng_rec_free(&r[i]);
}

/* ---- shutdown with requests in flight ------------------------------------------- */
static void shutdown_in_flight(gpuml_engine_shutdown_mode mode)
{
    enum { NT = 4 };
    const int per_thread = UNDER_TSAN ? 30 : 150;
    gpuml_engine_config cfg = base_config();
    cfg.max_queue_delay_us = 2000;
    cfg.max_batch_events = 8;
    cfg.queue_capacity = NT * per_thread;
    cfg.on_destroy = mode;
    gpuml_engine *eng = make_engine(&cfg);
    submitter subs[NT];
    pthread_t th[NT];
    for (int t = 0; t < NT; t++) {
        subs[t].eng = eng;
        subs[t].n = per_thread;
        subs[t].recs = calloc((size_t)per_thread, sizeof(rec));
        subs[t].seed = 77 + (uint64_t)t;
        subs[t].retries = 0;
        atomic_init(&subs[t].finished, 0);
        pthread_create(&th[t], NULL, submit_thread, &subs[t]);
    }
    for (int t = 0; t < NT; t++)
        pthread_join(th[t], NULL);
    gpuml_engine_destroy(eng); /* requests are still queued and running */
    int ok = 0, cancelled = 0;
    for (int t = 0; t < NT; t++) {
        for (int i = 0; i < per_thread; i++) {
            rec *r = &subs[t].recs[i];
            assert_int_equal(atomic_load(&r->calls), 1);
            gpuml_status s = atomic_load(&r->status);
            if (s == GPUML_OK) {
                ok++;
                expect_matches_alone(r);
            } else {
                assert_int_equal(s, GPUML_ERR_CANCELLED);
                assert_int_equal(mode, GPUML_ENGINE_CANCEL);
                cancelled++;
            }
            eng_rec_free(r);
        }
        free(subs[t].recs);
    }
    printf("  %s: %d completed, %d cancelled\n", mode == GPUML_ENGINE_CANCEL ? "cancel" : "drain", ok, cancelled);
}

static void test_destroy_in_flight(void **state)
{
    (void)state;
    shutdown_in_flight(GPUML_ENGINE_CANCEL);
    shutdown_in_flight(GPUML_ENGINE_DRAIN);
}

/* ---- a failing batch fails only its own requests ----------------------------------- */
static void run_wave(gpuml_engine *eng, rec *r, int n, int first_ev)
{
    atomic_int finished;
    atomic_init(&finished, 0);
    for (int i = 0; i < n; i++) {
        rec_init(&r[i], first_ev + i, &finished);
        gpuml_engine_request q = eng_rec_request(&r[i]);
        assert_int_equal(gpuml_engine_submit(eng, &q, eng_on_done, &r[i]), GPUML_OK);
    }
    eng_wait_for(&finished, n, 30);
}

static void test_failing_batch_is_isolated(void **state)
{
    (void)state;
    enum { W = 5 };
    gpuml_engine_config cfg = base_config();
    cfg.max_batch_events = W; /* a wave of W requests is one batch */
    cfg.max_queue_delay_us = 200000;
    gpuml_engine *eng = make_engine(&cfg);
    rec r[3][W];
    gpuml_engine_fail_batch_after(eng, 2);
    for (int w = 0; w < 3; w++)
        run_wave(eng, r[w], W, 10 * w + 1);
    for (int w = 0; w < 3; w++)
        for (int i = 0; i < W; i++) {
            assert_int_equal(atomic_load(&r[w][i].calls), 1);
            if (w == 1) {
                assert_int_equal(atomic_load(&r[w][i].status), GPUML_ERR_OUT_OF_MEMORY);
                assert_non_null(strstr(r[w][i].msg, "injected"));
                assert_true(isnan(r[w][i].cls[0]));
            } else {
                assert_int_equal(atomic_load(&r[w][i].status), GPUML_OK);
                expect_matches_alone(&r[w][i]);
            }
            eng_rec_free(&r[w][i]);
        }
    char buf[1024];
    assert_non_null(strstr(gpuml_engine_last_error(eng, buf, sizeof buf), "injected"));
    gpuml_engine_stats st;
    gpuml_engine_get_stats(eng, &st);
    assert_int_equal(st.batches, 3);
    assert_int_equal(st.failed_batches, 1);
    assert_int_equal(st.failed, W);
    assert_int_equal(st.completed, 2 * W);
    uint64_t hist[W + 2];
    assert_int_equal(gpuml_engine_batch_histogram(eng, hist, W + 2), GPUML_OK);
    assert_int_equal(hist[W], 3);

    /* the synchronous call reports the error on the caller's thread */
    gpuml_engine_fail_batch_after(eng, 1);
    rec s;
    rec_init(&s, 2, NULL);
    gpuml_engine_request q = eng_rec_request(&s);
    assert_int_equal(gpuml_engine_run(eng, &q), GPUML_ERR_OUT_OF_MEMORY);
    assert_non_null(strstr(gpuml_last_error(), "injected"));
    assert_int_equal(gpuml_engine_run(eng, &q), GPUML_OK);
    expect_matches_alone(&s);
    eng_rec_free(&s);
    gpuml_engine_destroy(eng);
}

/* ---- priorities ------------------------------------------------------------------ */
typedef struct {
    pthread_mutex_t m;
    pthread_cond_t cv;
    int entered, released;
} gate;

static void on_done_blocking(void *user, gpuml_status st)
{
    (void)st;
    gate *g = user;
    pthread_mutex_lock(&g->m);
    g->entered = 1;
    pthread_cond_broadcast(&g->cv);
    while (!g->released)
        pthread_cond_wait(&g->cv, &g->m);
    pthread_mutex_unlock(&g->m);
}

static void test_priorities(void **state)
{
    (void)state;
    gpuml_engine_config cfg = base_config();
    cfg.max_batch_events = 1; /* one request per batch: completion order = take order */
    cfg.max_queue_delay_us = 0;
    gpuml_engine *eng = make_engine(&cfg);
    /* Hold the completion thread in a callback; the worker then fills its
     * two stages and stops: later requests wait in the queue. */
    gate g = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0};
    const float *in[2] = {g_ev[1].hits, g_ev[1].aux};
    float t2[4 * MAX_EV_ROWS], cls[3];
    float *out[2] = {t2, cls};
    gpuml_engine_request blocker;
    gpuml_engine_request_init(&blocker);
    blocker.rows = g_ev[1].rows;
    blocker.inputs = in;
    blocker.outputs = out;
    assert_int_equal(gpuml_engine_submit(eng, &blocker, on_done_blocking, &g), GPUML_OK);
    pthread_mutex_lock(&g.m);
    while (!g.entered)
        pthread_cond_wait(&g.cv, &g.m);
    pthread_mutex_unlock(&g.m);
    atomic_int finished, order;
    atomic_init(&finished, 0);
    atomic_init(&order, 0);
    rec fill[2];
    for (int i = 0; i < 2; i++) {
        rec_init(&fill[i], 2 + i, &finished);
        gpuml_engine_request q = eng_rec_request(&fill[i]);
        assert_int_equal(gpuml_engine_submit(eng, &q, eng_on_done, &fill[i]), GPUML_OK);
    }
    gpuml_engine_stats st;
    double t0 = eng_now_s();
    do {
        eng_sleep_us(200);
        gpuml_engine_get_stats(eng, &st);
        assert_true(eng_now_s() - t0 < 10);
    } while (st.queued > 0);
    enum { N = 8 };
    static const int prio[N] = {1, 5, 3, 5, 0, 3, 9, 1};
    static const int expect[N] = {6, 1, 3, 2, 5, 0, 7, 4}; /* by priority, FIFO within one */
    rec r[N];
    for (int i = 0; i < N; i++) {
        rec_init(&r[i], 10 + i, &finished);
        r[i].order_counter = &order;
        gpuml_engine_request q = eng_rec_request(&r[i]);
        q.priority = prio[i];
        assert_int_equal(gpuml_engine_submit(eng, &q, eng_on_done, &r[i]), GPUML_OK);
    }
    pthread_mutex_lock(&g.m);
    g.released = 1;
    pthread_cond_broadcast(&g.cv);
    pthread_mutex_unlock(&g.m);
    eng_wait_for(&finished, N + 2, 30);
    for (int k = 0; k < N; k++) {
        assert_int_equal(r[expect[k]].order, k);
        expect_matches_alone(&r[expect[k]]);
    }
    gpuml_engine_destroy(eng);
    for (int i = 0; i < N; i++)
        eng_rec_free(&r[i]);
    eng_rec_free(&fill[0]);
    eng_rec_free(&fill[1]);
}

/* ---- steady state: no allocation ------------------------------------------------------ */
static void test_steady_state_allocates_nothing(void **state)
{
    (void)state;
    gpuml_engine_config cfg = base_config();
    cfg.max_batch_events = 16;
    cfg.max_batch_rows = 2048;
    cfg.max_queue_delay_us = 200;
    gpuml_engine *eng = make_engine(&cfg);
    gpuml_alloc_stats dev0, pin0, dev1, pin1;
    size_t arena0, arena1;
    assert_int_equal(gpuml_engine_alloc_stats(eng, 0, &dev0, &arena0), GPUML_OK);
    assert_int_equal(gpuml_engine_alloc_stats(eng, 1, &pin0, NULL), GPUML_OK);
    assert_true(arena0 > 0);
    enum { N = 300 };
    rec *r = calloc(N, sizeof *r);
    atomic_int finished;
    atomic_init(&finished, 0);
    uint64_t rng = 5;
    for (int i = 0; i < N; i++) {
        rec_init(&r[i], (int)(h_rand_u64(&rng) % NEV), &finished);
        gpuml_engine_request q = eng_rec_request(&r[i]);
        gpuml_status st;
        while ((st = gpuml_engine_submit(eng, &q, eng_on_done, &r[i])) == GPUML_ERR_QUEUE_FULL)
            eng_sleep_us(100);
        assert_int_equal(st, GPUML_OK);
        if (i % 37 == 0)
            eng_sleep_us(3000); /* vary the batch sizes */
    }
    eng_wait_for(&finished, N, 60);
    assert_int_equal(gpuml_engine_alloc_stats(eng, 0, &dev1, &arena1), GPUML_OK);
    assert_int_equal(gpuml_engine_alloc_stats(eng, 1, &pin1, NULL), GPUML_OK);
    gpuml_engine_stats st;
    gpuml_engine_get_stats(eng, &st);
    printf("  %llu batches; system allocations %llu -> %llu (device), %llu -> %llu (pinned); arena %zu -> %zu "
           "bytes\n",
           (unsigned long long)st.batches, (unsigned long long)dev0.num_system_allocs,
           (unsigned long long)dev1.num_system_allocs, (unsigned long long)pin0.num_system_allocs,
           (unsigned long long)pin1.num_system_allocs, arena0, arena1);
    assert_true(st.batches > 10);
    assert_int_equal(dev1.num_system_allocs, dev0.num_system_allocs);
    assert_int_equal(pin1.num_system_allocs, pin0.num_system_allocs);
    assert_int_equal(arena1, arena0);
    gpuml_engine_destroy(eng);
    for (int i = 0; i < N; i++) {
        expect_matches_alone(&r[i]);
        eng_rec_free(&r[i]);
    }
    free(r);
}

/* ---- synchronous and direct modes ------------------------------------------------------- */
static void test_run_and_direct(void **state)
{
    (void)state;
    gpuml_engine_config cfg = base_config();
    gpuml_engine *eng = make_engine(&cfg);
    const gpuml_model *m = gpuml_engine_model(eng);
    assert_non_null(m);
    assert_int_equal(gpuml_model_num_inputs(m), 2);
    for (int e = 0; e < 40; e++) {
        rec a, b;
        rec_init(&a, e, NULL);
        rec_init(&b, e, NULL);
        gpuml_engine_request qa = eng_rec_request(&a), qb = eng_rec_request(&b);
        assert_int_equal(gpuml_engine_run(eng, &qa), GPUML_OK);
        assert_int_equal(gpuml_engine_run_direct(eng, &qb, NULL), GPUML_OK);
        expect_matches_alone(&a);
        expect_matches_alone(&b);
        eng_rec_free(&a);
        eng_rec_free(&b);
    }
    gpuml_engine_stats st;
    gpuml_engine_get_stats(eng, &st);
    assert_int_equal(st.direct, 40);
    assert_int_equal(st.completed, 40);
    gpuml_engine_destroy(eng);
}

/* ---- argument and state errors ---------------------------------------------------------- */
static void expect_create_error(gpuml_engine_config cfg, const char *needle)
{
    gpuml_engine *e = (gpuml_engine *)1;
    assert_int_equal(gpuml_engine_create_from_model(g_model, &cfg, &e), GPUML_ERR_INVALID_ARGUMENT);
    assert_null(e);
    if (!strstr(gpuml_last_error(), needle))
        fail_msg("message '%s' does not mention '%s'", gpuml_last_error(), needle);
}

static void test_errors(void **state)
{
    (void)state;
    gpuml_engine_config cfg = base_config();
    cfg.num_instances = -1;
    expect_create_error(cfg, "num_instances");
    cfg = base_config();
    cfg.max_batch_events = -1;
    expect_create_error(cfg, "max_batch_events");
    cfg = base_config();
    cfg.max_batch_rows = 0;
    expect_create_error(cfg, "max_batch_rows");
    cfg = base_config();
    cfg.queue_rows = 10;
    expect_create_error(cfg, "queue_rows");
    cfg = base_config();
    cfg.max_queue_delay_us = -1;
    expect_create_error(cfg, "max_queue_delay_us");
    cfg = base_config();
    cfg.on_destroy = (gpuml_engine_shutdown_mode)7;
    expect_create_error(cfg, "on_destroy");
    cfg = base_config();
    gpuml_engine *e = NULL;
    assert_int_equal(gpuml_engine_create_from_model(NULL, &cfg, &e), GPUML_ERR_INVALID_ARGUMENT);
    assert_int_equal(gpuml_engine_create(NULL, &cfg, &e), GPUML_ERR_INVALID_ARGUMENT);
    assert_int_equal(gpuml_engine_create("/nonexistent/model.json", &cfg, &e), GPUML_ERR_IO);
    if (gpuml_cuda_device_count() == 0) {
        cfg.device.type = GPUML_DEVICE_CUDA;
        assert_int_equal(gpuml_engine_create_from_model(g_model, &cfg, &e), GPUML_ERR_NO_DEVICE);
        cfg.device.type = GPUML_DEVICE_CPU;
    }

    /* from a path: a JSON config, or a model file with its weights */
    char path[] = "/tmp/gpuml_engine_test_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "wb");
    fputs(eng_model_json, f);
    fclose(f);
    assert_int_equal(gpuml_engine_create(path, &cfg, &e), GPUML_OK);
    assert_int_equal(gpuml_model_num_outputs(gpuml_engine_model(e)), 2);
    gpuml_engine_destroy(e);
    assert_int_equal(gpuml_model_save(g_model, path), GPUML_OK);
    assert_int_equal(gpuml_engine_create(path, &cfg, &e), GPUML_OK);
    gpuml_tensor *ps = gpuml_model_param_slab(gpuml_engine_model(e)), *ref = gpuml_model_param_slab(g_model);
    assert_memory_equal(gpuml_tensor_data(ps), gpuml_tensor_data(ref), gpuml_tensor_nbytes(ref));
    gpuml_engine_destroy(e);
    f = fopen(path, "wb");
    fwrite("\x89HDF\r\n\x1a\n\0\0\0\0", 1, 12, f); /* a broken HDF5 file */
    fclose(f);
    gpuml_status bad = gpuml_engine_create(path, &cfg, &e);
    assert_true(bad == GPUML_ERR_FORMAT || bad == GPUML_ERR_IO);
    assert_null(e);
    remove(path);

    e = make_engine(&cfg);
    rec r;
    rec_init(&r, 1, NULL);
    gpuml_engine_request q = eng_rec_request(&r);
    assert_int_equal(gpuml_engine_submit(NULL, &q, eng_on_done, &r), GPUML_ERR_INVALID_ARGUMENT);
    assert_int_equal(gpuml_engine_submit(e, NULL, eng_on_done, &r), GPUML_ERR_INVALID_ARGUMENT);
    assert_int_equal(gpuml_engine_submit(e, &q, NULL, &r), GPUML_ERR_INVALID_ARGUMENT);
    q.rows = cfg.max_batch_rows + 1;
    assert_int_equal(gpuml_engine_submit(e, &q, eng_on_done, &r), GPUML_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(gpuml_last_error(), "max_batch_rows"));
    q = eng_rec_request(&r);
    q.inputs = NULL;
    assert_int_equal(gpuml_engine_submit(e, &q, eng_on_done, &r), GPUML_ERR_INVALID_ARGUMENT);
    q = eng_rec_request(&r);
    const float *bad_in[2] = {g_ev[1].hits, NULL};
    q.inputs = bad_in;
    assert_int_equal(gpuml_engine_submit(e, &q, eng_on_done, &r), GPUML_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(gpuml_last_error(), "inputs[1]"));
    q = eng_rec_request(&r);
    q.inputs_on = GPUML_DEVICE_CUDA;
    assert_int_equal(gpuml_engine_submit(e, &q, eng_on_done, &r), GPUML_ERR_DEVICE_MISMATCH);
    assert_int_equal(gpuml_engine_run_direct(e, &q, NULL), GPUML_ERR_DEVICE_MISMATCH);
    q = eng_rec_request(&r);
    q.outputs_on = (gpuml_device_type)9;
    assert_int_equal(gpuml_engine_submit(e, &q, eng_on_done, &r), GPUML_ERR_INVALID_ARGUMENT);
    assert_int_equal(atomic_load(&r.calls), 0);
    uint64_t h[2];
    assert_int_equal(gpuml_engine_batch_histogram(e, h, 0), GPUML_ERR_INVALID_ARGUMENT);
    assert_int_equal(gpuml_engine_shutdown(e, (gpuml_engine_shutdown_mode)3), GPUML_ERR_INVALID_ARGUMENT);
    assert_int_equal(gpuml_engine_shutdown(e, GPUML_ENGINE_CANCEL), GPUML_OK);
    assert_int_equal(gpuml_engine_shutdown(e, GPUML_ENGINE_CANCEL), GPUML_OK);
    q = eng_rec_request(&r);
    assert_int_equal(gpuml_engine_submit(e, &q, eng_on_done, &r), GPUML_ERR_STATE);
    assert_int_equal(gpuml_engine_run_direct(e, &q, NULL), GPUML_ERR_STATE);
    gpuml_engine_destroy(e);
    gpuml_engine_destroy(NULL);
    eng_rec_free(&r);
}

/* ---- defaults and the batcher's early start ------------------------------------- */
static void test_defaults(void **state)
{
    (void)state;
    gpuml_engine_config cfg;
    gpuml_engine_config_init_defaults(&cfg);
    cfg.max_batch_rows = 4096; /* a small warm-up */
    gpuml_engine *eng = make_engine(&cfg);
    gpuml_engine_config used;
    assert_int_equal(gpuml_engine_get_config(eng, &used), GPUML_OK);
    int ncpu = gpuml_default_num_threads();
    assert_int_equal(used.num_instances, ncpu < 64 ? ncpu : 64); /* one per core */
    assert_int_equal(used.max_batch_events, 8);
    gpuml_engine_destroy(eng);
    /* with the host's executor: its workers, and no thread count of ours */
    gpuml_executor *ex = NULL;
    assert_int_equal(gpuml_executor_create(GPUML_EXECUTOR_POOL, 3, &ex), GPUML_OK);
    cfg.executor = ex;
    eng = make_engine(&cfg);
    assert_int_equal(gpuml_engine_get_config(eng, &used), GPUML_OK);
    assert_int_equal(used.num_instances, 3);
    gpuml_engine_destroy(eng);
    gpuml_executor_destroy(ex);
    assert_int_equal(gpuml_engine_get_config(NULL, &used), GPUML_ERR_INVALID_ARGUMENT);
}

typedef struct {
    gpuml_engine *eng;
    int first_ev, rounds, failures;
} closed_loop;

/* One caller that keeps one request in flight: submit, wait for it, again. */
static void *closed_loop_main(void *p)
{
    closed_loop *c = p;
    for (int i = 0; i < c->rounds; i++) {
        atomic_int finished;
        atomic_init(&finished, 0);
        rec r;
        rec_init(&r, c->first_ev + i % 8, &finished);
        gpuml_engine_request q = eng_rec_request(&r);
        if (gpuml_engine_submit(c->eng, &q, eng_on_done, &r) != GPUML_OK) {
            c->failures++;
        } else {
            while (atomic_load(&finished) == 0)
                eng_sleep_us(50);
            c->failures += atomic_load(&r.status) != GPUML_OK;
        }
        eng_rec_free(&r);
    }
    return NULL;
}

/* Four callers with one request each, a batch limit of 64 and a delay of
 * 200 ms: once the engine has seen that four is all there are, a batch
 * starts when the four are in - not 200 ms later each time. */
static void test_batcher_sees_nothing_more_can_arrive(void **state)
{
    (void)state;
    enum { T = 4, ROUNDS = 12 };
    gpuml_engine_config cfg = base_config();
    cfg.max_batch_events = 64;
    cfg.max_queue_delay_us = 200000;
    gpuml_engine *eng = make_engine(&cfg);
    pthread_t th[T];
    closed_loop c[T];
    double t0 = eng_now_s();
    for (int t = 0; t < T; t++) {
        c[t] = (closed_loop){eng, 8 * t, ROUNDS, 0};
        assert_int_equal(pthread_create(&th[t], NULL, closed_loop_main, &c[t]), 0);
    }
    for (int t = 0; t < T; t++) {
        pthread_join(th[t], NULL);
        assert_int_equal(c[t].failures, 0);
    }
    double dt = eng_now_s() - t0;
    gpuml_engine_stats st;
    gpuml_engine_get_stats(eng, &st);
    printf("  %d callers x %d rounds in %.2f s: %llu batches, latency p50 %.0f us (delay 200000 us)\n", T, ROUNDS, dt,
           (unsigned long long)st.batches, st.latency.p50_us);
    /* Waiting out the delay every round would take ROUNDS x 0.2 s = 2.4 s
     * and make the median latency >= 200 ms; only the first rounds may. */
    assert_true(st.latency.p50_us < 100000.0);
    assert_true(dt < 0.2 * ROUNDS * 0.75);
    gpuml_engine_destroy(eng);
}

/* ---- the engine on a CUDA device ---------------------------------------------
 * Where CUDA is there (a GPU, or the emulated CUDA build): two instances,
 * each with its own stream, completion detected through CUDA events; every
 * event's outputs against single-event inference on the CPU within
 * relative 1e-4 (CPU and CUDA round differently); direct mode on a
 * caller's stream (the default stream here) likewise. */
static int close_to(const float *a, const float *b, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        if (!(fabsf(a[i] - b[i]) <= 1e-4f * (fabsf(b[i]) + 1.0f)))
            return 0;
    return 1;
}

static void test_cuda_engine(void **state)
{
    (void)state;
    if (gpuml_cuda_device_count() == 0)
        skip();
    gpuml_engine_config cfg = base_config();
    cfg.device.type = GPUML_DEVICE_CUDA;
    cfg.device.index = gpuml_cuda_device_count() - 1; /* not the thread's current device */
    cfg.num_instances = 2;
    gpuml_engine *e = make_engine(&cfg);
    atomic_int finished;
    atomic_init(&finished, 0);
    rec *recs = malloc(NEV * sizeof *recs);
    for (int i = 0; i < NEV; i++) {
        rec_init(&recs[i], i, &finished);
        gpuml_engine_request q = eng_rec_request(&recs[i]);
        gpuml_status st;
        while ((st = gpuml_engine_submit(e, &q, eng_on_done, &recs[i])) == GPUML_ERR_QUEUE_FULL)
            eng_sleep_us(500);
        assert_int_equal(st, GPUML_OK);
    }
    eng_wait_for(&finished, NEV, 120);
    int bad = 0;
    for (int i = 0; i < NEV; i++) {
        const event *ev = &g_ev[i];
        if (atomic_load(&recs[i].status) != GPUML_OK || atomic_load(&recs[i].calls) != 1 ||
            !close_to(recs[i].t2, ev->ref_t2, ev->rows * 4) || !close_to(recs[i].cls, ev->ref_cls, 3))
            if (bad++ < 5)
                printf("event %d (%lld rows) on CUDA: status %s, %d calls, outputs %s\n", i, (long long)ev->rows,
                       gpuml_status_string(atomic_load(&recs[i].status)), atomic_load(&recs[i].calls),
                       close_to(recs[i].t2, ev->ref_t2, ev->rows * 4) ? "close" : "differ");
        eng_rec_free(&recs[i]);
    }
    for (int i = 0; i < 8; i++) { /* direct mode */
        rec r;
        rec_init(&r, i * 7 % NEV, NULL);
        gpuml_engine_request q = eng_rec_request(&r);
        assert_int_equal(gpuml_engine_run_direct(e, &q, NULL), GPUML_OK);
        const event *ev = &g_ev[r.ev];
        if ((!close_to(r.t2, ev->ref_t2, ev->rows * 4) || !close_to(r.cls, ev->ref_cls, 3)) && bad++ < 10)
            printf("event %d direct on CUDA: outputs differ\n", r.ev);
        eng_rec_free(&r);
    }
    free(recs);
    gpuml_engine_destroy(e);
    assert_int_equal(bad, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cuda_engine),
        cmocka_unit_test(test_many_threads_match_single_event),
        cmocka_unit_test(test_queue_full),
        cmocka_unit_test(test_deadlines),
        cmocka_unit_test(test_destroy_in_flight),
        cmocka_unit_test(test_failing_batch_is_isolated),
        cmocka_unit_test(test_priorities),
        cmocka_unit_test(test_steady_state_allocates_nothing),
        cmocka_unit_test(test_run_and_direct),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_batcher_sees_nothing_more_can_arrive),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
