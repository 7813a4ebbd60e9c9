/* infer_async: a host framework in miniature, the way CMSSW runs GPU work
 * through ExternalWork.
 *
 * A pool of framework threads runs tasks from one queue. Each of S event
 * "streams" processes events one after another: acquire() does some CPU work
 * for the event, submits its hits to the engine and returns at once; the
 * engine's done callback schedules produce() as a new task (like
 * WaitingTaskWithArenaHolder::doneWaiting), which reads the outputs and does
 * the rest of the event's CPU work. Meanwhile the framework threads run
 * other events' tasks. The same events are then run event by event
 * (inference inside acquire, blocking the framework thread) for comparison.
 *
 *     infer_async [model.json] [events] [framework threads]
 *
 * Without a model path a small MLP + pooling model is used. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <gpuml/gpuml.h>

#include "common/cli.h"

static const char default_model[] =
    "{\"inputs\": [{\"name\": \"hits\", \"features\": 8}],"
    " \"nodes\": ["
    "  {\"name\": \"d1\", \"op\": \"linear\", \"inputs\": [\"hits\"], \"out\": 64},"
    "  {\"name\": \"a1\", \"op\": \"relu\", \"inputs\": [\"d1\"]},"
    "  {\"name\": \"d2\", \"op\": \"linear\", \"inputs\": [\"a1\"], \"out\": 64},"
    "  {\"name\": \"a2\", \"op\": \"relu\", \"inputs\": [\"d2\"]},"
    "  {\"name\": \"pool\", \"op\": \"global_pool\", \"inputs\": [\"a2\"], \"reduce\": \"mean\"},"
    "  {\"name\": \"score\", \"op\": \"linear\", \"inputs\": [\"a2\"], \"out\": 1},"
    "  {\"name\": \"cls\", \"op\": \"linear\", \"inputs\": [\"pool\"], \"out\": 4}"
    " ], \"outputs\": [\"score\", \"cls\"]}";

#define CPU_WORK_US 200 /* per event, split between acquire and produce */

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return 1e6 * (double)ts.tv_sec + 1e-3 * (double)ts.tv_nsec;
}

/* The rest of the event's reconstruction: keeps a core busy. */
static double cpu_work(double us, double seed)
{
    double t_end = now_us() + us, x = seed;
    while (now_us() < t_end)
        for (int i = 0; i < 200; i++)
            x = x * 1.0000001 + 1e-9;
    return x;
}

/* ---- the framework: a task queue and its threads ---------------------- */
typedef struct event event;
typedef struct framework framework;
typedef void (*task_fn)(framework *fw, event *ev);

typedef struct task {
    task_fn fn;
    event *ev;
} task;

struct framework {
    pthread_mutex_t m;
    pthread_cond_t cv;
    task *q; /* ring of capacity n_streams * 2 */
    int cap, head, count;
    int events_left; /* not yet finished */
    gpuml_engine *eng;
    int synchronous;
    /* event source */
    int next_event, n_events;
    int64_t *rows;
    float *hits;     /* every event's inputs, one after another */
    int64_t *offset; /* [n_events] first row */
    double *latency; /* [n_events] us */
    double sink;
};

struct event {
    framework *fw;
    int id;
    double t_start;
    const float *in[1];
    float *out[2];
    float *score, cls[4];
    gpuml_status status;
};

static void push_task(framework *fw, task_fn fn, event *ev)
{
    pthread_mutex_lock(&fw->m);
    fw->q[(fw->head + fw->count) % fw->cap] = (task){fn, ev};
    fw->count++;
    pthread_cond_signal(&fw->cv);
    pthread_mutex_unlock(&fw->m);
}

static void acquire(framework *fw, event *ev);

/* Start the stream's next event, if any. */
static void next_event(framework *fw, event *ev)
{
    pthread_mutex_lock(&fw->m);
    int id = fw->next_event < fw->n_events ? fw->next_event++ : -1;
    pthread_mutex_unlock(&fw->m);
    if (id < 0)
        return;
    ev->id = id;
    push_task(fw, acquire, ev);
}

static void produce(framework *fw, event *ev)
{
    if (ev->status != GPUML_OK)
        fprintf(stderr, "event %d failed: %s\n", ev->id, gpuml_status_string(ev->status));
    double acc = ev->cls[0];
    for (int64_t r = 0; r < fw->rows[ev->id]; r++)
        acc += ev->score[r];
    acc = cpu_work(CPU_WORK_US / 2, acc);
    pthread_mutex_lock(&fw->m);
    fw->sink += acc;
    fw->latency[ev->id] = now_us() - ev->t_start;
    fw->events_left--;
    pthread_cond_broadcast(&fw->cv);
    pthread_mutex_unlock(&fw->m);
    free(ev->score);
    next_event(fw, ev);
}

/* The engine's callback: only schedule produce (it runs on an engine thread). */
static void on_done(void *user, gpuml_status st)
{
    event *ev = user;
    ev->status = st;
    push_task(ev->fw, produce, ev);
}

static void acquire(framework *fw, event *ev)
{
    ev->t_start = now_us();
    int64_t rows = fw->rows[ev->id];
    ev->score = malloc((size_t)(rows > 0 ? rows : 1) * sizeof(float));
    ev->in[0] = fw->hits + fw->offset[ev->id] * 8;
    ev->out[0] = ev->score;
    ev->out[1] = ev->cls;
    fw->sink += cpu_work(CPU_WORK_US / 2, (double)ev->id);
    gpuml_engine_request req;
    gpuml_engine_request_init(&req);
    req.rows = rows;
    req.inputs = ev->in;
    req.outputs = ev->out;
    if (fw->synchronous) { /* event by event: this framework thread waits */
        ev->status = gpuml_engine_run_direct(fw->eng, &req, NULL);
        produce(fw, ev);
        return;
    }
    gpuml_status st;
    while ((st = gpuml_engine_submit(fw->eng, &req, on_done, ev)) == GPUML_ERR_QUEUE_FULL) {
        struct timespec ts = {0, 50000}; /* back-pressure: a real framework would run other tasks */
        nanosleep(&ts, NULL);
    }
    if (st != GPUML_OK) {
        ev->status = st;
        produce(fw, ev);
    }
}

static void *framework_thread(void *arg)
{
    framework *fw = arg;
    pthread_mutex_lock(&fw->m);
    for (;;) {
        while (fw->count == 0 && fw->events_left > 0)
            pthread_cond_wait(&fw->cv, &fw->m);
        if (fw->count == 0)
            break;
        task t = fw->q[fw->head];
        fw->head = (fw->head + 1) % fw->cap;
        fw->count--;
        pthread_mutex_unlock(&fw->m);
        t.fn(fw, t.ev);
        pthread_mutex_lock(&fw->m);
    }
    pthread_mutex_unlock(&fw->m);
    return NULL;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Run all events through the framework; prints throughput and latency. */
static void run(framework *fw, int n_threads, int n_streams, const char *label)
{
    fw->next_event = 0;
    fw->events_left = fw->n_events;
    fw->head = fw->count = 0;
    event *evs = calloc((size_t)n_streams, sizeof *evs);
    pthread_t *th = malloc((size_t)n_threads * sizeof *th);
    double t0 = now_us();
    for (int s = 0; s < n_streams; s++) {
        evs[s].fw = fw;
        next_event(fw, &evs[s]);
    }
    for (int t = 0; t < n_threads; t++)
        pthread_create(&th[t], NULL, framework_thread, fw);
    for (int t = 0; t < n_threads; t++)
        pthread_join(th[t], NULL);
    double dt = now_us() - t0;
    qsort(fw->latency, (size_t)fw->n_events, sizeof *fw->latency, cmp_double);
    printf("%-28s %8.0f events/s   latency p50 %7.0f us   p99 %7.0f us\n", label, 1e6 * fw->n_events / dt,
           fw->latency[fw->n_events / 2], fw->latency[(int)(0.99 * (fw->n_events - 1))]);
    free(evs);
    free(th);
}

int main(int argc, char **argv)
{
    const char *model_path = NULL;
    int n_events = 2000, n_threads = 4;
    cli_opt table[] = {
        CLI_POS_STR("MODEL", &model_path, 0, "model config (JSON); none or \"\": a small MLP + pooling"),
        CLI_POS_NUM(CLI_T_INT, "EVENTS", &n_events, 1, 10000000, "events to run"),
        CLI_POS_NUM(CLI_T_INT, "THREADS", &n_threads, 1, 1024, "framework threads"), CLI_END};
    cli_parse(argc, argv, "a host framework in miniature: asynchronous inference against event by event", table);
    if (model_path && !model_path[0])
        model_path = NULL; /* "": the default model */
    int n_streams = 2 * n_threads; /* concurrent events: more than threads, as with ExternalWork */

    framework fw;
    memset(&fw, 0, sizeof fw);
    pthread_mutex_init(&fw.m, NULL);
    pthread_cond_init(&fw.cv, NULL);
    fw.cap = 2 * n_streams;
    fw.q = malloc((size_t)fw.cap * sizeof *fw.q);
    fw.n_events = n_events;
    fw.rows = malloc((size_t)n_events * sizeof *fw.rows);
    fw.offset = malloc((size_t)n_events * sizeof *fw.offset);
    fw.latency = malloc((size_t)n_events * sizeof *fw.latency);
    int64_t total = 0;
    unsigned seed = 1;
    for (int i = 0; i < n_events; i++) {
        fw.rows[i] = 10 + rand_r(&seed) % 1000; /* hits per event */
        fw.offset[i] = total;
        total += fw.rows[i];
    }
    fw.hits = malloc((size_t)total * 8 * sizeof(float));
    for (int64_t i = 0; i < total * 8; i++)
        fw.hits[i] = (float)rand_r(&seed) / (float)RAND_MAX - 0.5f;

    /* One model for both runs: built from the path or the default config. */
    gpuml_ctx_config cc;
    gpuml_ctx_config_init_defaults(&cc);
    gpuml_ctx *ctx;
    gpuml_model *model;
    if (gpuml_ctx_create(&cc, &ctx) != GPUML_OK ||
        (model_path ? gpuml_model_create_from_file(ctx, model_path, &model)
                    : gpuml_model_create(ctx, default_model, &model)) != GPUML_OK) {
        fprintf(stderr, "model: %s\n", gpuml_last_error());
        return 1;
    }
    if (gpuml_model_num_inputs(model) != 1 || gpuml_model_num_outputs(model) != 2) {
        fprintf(stderr, "this example wants a model with 1 input [N, 8] and outputs [N, 1], [1, 4]\n");
        return 1;
    }

    gpuml_engine_config cfg;
    gpuml_engine_config_init_defaults(&cfg);
    cfg.max_batch_events = n_streams;
    cfg.max_batch_rows = 1 << 15;
    cfg.max_queue_delay_us = 500;
    cfg.max_direct_lanes = n_threads;
    cfg.cpu_threads = 1; /* event by event: one core per framework thread */
    printf("%d events of 10-1009 hits, %d framework threads, %d concurrent events, %d us of other CPU work per "
           "event\n",
           n_events, n_threads, n_streams, CPU_WORK_US);
    if (gpuml_engine_create_from_model(model, &cfg, &fw.eng) != GPUML_OK) {
        fprintf(stderr, "engine: %s\n", gpuml_last_error());
        return 1;
    }
    fw.synchronous = 1;
    run(&fw, n_threads, n_threads, "event by event (sync)");
    gpuml_engine_destroy(fw.eng);

    cfg.cpu_threads = 0; /* the batch runs with all OpenMP threads */
    if (gpuml_engine_create_from_model(model, &cfg, &fw.eng) != GPUML_OK) {
        fprintf(stderr, "engine: %s\n", gpuml_last_error());
        return 1;
    }
    fw.synchronous = 0;
    run(&fw, n_threads, n_streams, "engine (async, batched)");
    gpuml_engine_stats st;
    gpuml_engine_get_stats(fw.eng, &st);
    printf("engine: %llu batches, %.1f events per batch, compute p50 %.0f us, queue p50 %.0f us\n",
           (unsigned long long)st.batches, st.batches ? (double)st.batch_events / (double)st.batches : 0.0,
           st.compute_time.p50_us, st.queue_time.p50_us);
    gpuml_engine_destroy(fw.eng);

    gpuml_model_destroy(model);
    gpuml_ctx_destroy(ctx);
    free(fw.q);
    free(fw.rows);
    free(fw.offset);
    free(fw.latency);
    free(fw.hits);
    pthread_mutex_destroy(&fw.m);
    pthread_cond_destroy(&fw.cv);
    return fw.sink == 12345.0; /* keep the work */
}
