/* tests/engine_model.h - what the engine tests (test_engine.c,
 * test_engine_multidev.c) share: their model, their events, the
 * single-event reference forward and the clock. Header-only, test side. */
#ifndef GPUML_TESTS_ENGINE_MODEL_H
#define GPUML_TESTS_ENGINE_MODEL_H

#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "harness.h"

/* Per-row output t2 [N, 4], per-event output cls [1, 3]; two inputs: row-local
 * and per-event ops, a GEMM per layer. */
static const char eng_model_json[] =
    "{\"inputs\": [{\"name\": \"hits\", \"features\": 7}, {\"name\": \"aux\", \"features\": 3}],"
    " \"nodes\": ["
    "  {\"name\": \"cat\", \"op\": \"concat\", \"inputs\": [\"hits\", \"aux\"]},"
    "  {\"name\": \"norm\", \"op\": \"layernorm\", \"inputs\": [\"cat\"]},"
    "  {\"name\": \"d1\", \"op\": \"linear\", \"inputs\": [\"norm\"], \"out\": 48},"
    "  {\"name\": \"a1\", \"op\": \"elu\", \"inputs\": [\"d1\"]},"
    "  {\"name\": \"pool\", \"op\": \"global_pool\", \"inputs\": [\"a1\"], \"reduce\": \"max\"},"
    "  {\"name\": \"mean\", \"op\": \"global_pool\", \"inputs\": [\"a1\"], \"reduce\": \"mean\"},"
    "  {\"name\": \"ctx\", \"op\": \"concat\", \"inputs\": [\"pool\", \"mean\"]},"
    "  {\"name\": \"bc\", \"op\": \"broadcast\", \"inputs\": [\"ctx\"]},"
    "  {\"name\": \"cat2\", \"op\": \"concat\", \"inputs\": [\"a1\", \"bc\"]},"
    "  {\"name\": \"d2\", \"op\": \"linear\", \"inputs\": [\"cat2\"], \"out\": 4},"
    "  {\"name\": \"t2\", \"op\": \"tanh\", \"inputs\": [\"d2\"]},"
    "  {\"name\": \"cls\", \"op\": \"linear\", \"inputs\": [\"ctx\"], \"out\": 3}"
    " ], \"outputs\": [\"t2\", \"cls\"]}";

static inline double eng_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static inline void eng_sleep_us(long us)
{
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
    nanosleep(&ts, NULL);
}

/* An event of `rows` rows: hits [rows, 7] normal, aux [rows, 3] uniform in
 * [-2, 2] (rows 0: buffers of one element, never read). */
static inline void eng_event_inputs(uint64_t *rng, int64_t rows, float **hits, float **aux)
{
    *hits = malloc((size_t)(rows * 7 + 1) * sizeof(float));
    *aux = malloc((size_t)(rows * 3 + 1) * sizeof(float));
    assert_non_null(*hits);
    assert_non_null(*aux);
    for (int64_t i = 0; i < rows * 7; i++)
        (*hits)[i] = (float)h_rand_normal(rng);
    for (int64_t i = 0; i < rows * 3; i++)
        (*aux)[i] = (float)h_rand_uniform(rng, -2, 2);
}

/* The reference: the event alone through gpuml_model_forward on ctx; the
 * outputs copied to new host buffers t2 [rows, 4] and cls [3]. */
static inline void eng_forward_alone(gpuml_ctx *ctx, gpuml_model *model, int64_t rows, const float *hits,
                                     const float *aux, float **t2, float **cls)
{
    gpuml_tape *tape;
    assert_int_equal(gpuml_tape_create(ctx, &tape), GPUML_OK);
    gpuml_tape_set_grad_enabled(tape, 0);
    gpuml_tape_set_training(tape, 0);
    int64_t hs[2] = {rows, 7}, as[2] = {rows, 3}, two = 2, sp[2] = {0, rows};
    gpuml_tensor *in[2] = {h_tensor_f32(ctx, 2, hs, hits), h_tensor_f32(ctx, 2, as, aux)};
    gpuml_tensor *rs = h_tensor(ctx, GPUML_I64, 1, &two, sp);
    gpuml_var *out[2];
    assert_int_equal(gpuml_model_forward(model, tape, (const gpuml_tensor *const *)in, rs, out), GPUML_OK);
    *t2 = h_read(ctx, gpuml_var_value(out[0]));
    *cls = h_read(ctx, gpuml_var_value(out[1]));
    gpuml_tensor_destroy(in[0]);
    gpuml_tensor_destroy(in[1]);
    gpuml_tensor_destroy(rs);
    gpuml_tape_destroy(tape);
}

/* ---- one request and its completion record ------------------------------- */
typedef struct {
    int ev; /* the test's event index */
    int64_t rows;
    float *t2, *cls;
    const float *in[2];
    float *out[2];
    atomic_int calls;
    _Atomic gpuml_status status;
    char msg[256];
    atomic_int *finished; /* shared counter of the submitting side (may be NULL) */
    int order;            /* completion order, when order_counter is set   */
    atomic_int *order_counter;
} eng_rec;

/* Outputs start as NaN: an unwritten one shows. */
static inline void eng_rec_init(eng_rec *r, int ev, int64_t rows, const float *hits, const float *aux,
                                atomic_int *finished)
{
    memset(r, 0, sizeof *r);
    r->ev = ev;
    r->rows = rows;
    r->t2 = malloc((size_t)(rows * 4 + 1) * sizeof(float));
    r->cls = malloc(3 * sizeof(float));
    assert_non_null(r->t2);
    assert_non_null(r->cls);
    for (int64_t i = 0; i < rows * 4; i++)
        r->t2[i] = NAN;
    for (int i = 0; i < 3; i++)
        r->cls[i] = NAN;
    r->in[0] = hits;
    r->in[1] = aux;
    r->out[0] = r->t2;
    r->out[1] = r->cls;
    atomic_init(&r->calls, 0);
    atomic_init(&r->status, GPUML_ERR_INTERNAL);
    r->finished = finished;
}

static inline void eng_rec_free(eng_rec *r)
{
    free(r->t2);
    free(r->cls);
}

static inline gpuml_engine_request eng_rec_request(eng_rec *r)
{
    gpuml_engine_request q;
    gpuml_engine_request_init(&q);
    q.rows = r->rows;
    q.inputs = r->in;
    q.outputs = r->out;
    return q;
}

/* The completion callback: user is the eng_rec. */
static void eng_on_done(void *user, gpuml_status st)
{
    eng_rec *r = user;
    if (st != GPUML_OK)
        snprintf(r->msg, sizeof r->msg, "%s", gpuml_last_error());
    if (r->order_counter)
        r->order = atomic_fetch_add(r->order_counter, 1);
    atomic_store(&r->status, st);
    atomic_fetch_add(&r->calls, 1);
    if (r->finished)
        atomic_fetch_add(r->finished, 1);
}

static inline void eng_wait_for(atomic_int *counter, int target, double timeout_s)
{
    double t0 = eng_now_s();
    while (atomic_load(counter) < target) {
        if (eng_now_s() - t0 > timeout_s)
            fail_msg("timed out waiting for %d completions (have %d)", target, atomic_load(counter));
        eng_sleep_us(200);
    }
}

#endif
