/* bench_engine: the inference engine against event-by-event synchronous
 * inference, same model, same events, same number of host threads.
 *
 *   bench_engine [--model cfg.json|model.h5] [--sizes small|large|tiny] [--events N] [--threads T]
 *                [--inflight K] [--repeats R] [--instances I] [--batch-events B]
 *                [--delay-us D] [--device cpu|cuda] [--cpu-threads C]
 *                [--data dataset.h5 [--pool P]] [--sync 0|1] [--dump out.f32] [--event-jets J]
 *
 * sizes: small 1-2000 rows per event (default), large 1000-20000, tiny 1-100.
 * --data: real events instead (e.g. examples/gen_dataset jets): the first P
 *         events (default 2000) of the dataset, each model input read from
 *         the per-row field of the same name; the run cycles over them. The
 *         engine's max_batch_rows is then batch-events x the largest event.
 * --sync 0: the engine only. --dump: after the runs, every pool event once
 *         more through gpuml_engine_run, all outputs appended per event as
 *         raw f32 (for comparing with other implementations).
 * A last line "RESULT {json}" repeats the numbers for scripts.
 * sync:   T threads, each with its own context (1 OpenMP thread on the CPU)
 *         and tape, run gpuml_model_forward per event (inputs wrapped on the
 *         CPU, copied on CUDA; outputs read back to the host).
 * engine: T threads submit the same events, each keeping K requests in
 *         flight (a framework whose threads do other work meanwhile), and
 *         wait for the callbacks. --event-jets J: each thread instead
 *         submits the requests of one "event" (1 .. 2J-1 of them, mean J:
 *         the jets of a collision event), waits for all, then the next.
 * Throughput is events per second over the whole run; latency is per event
 * (sync: the forward call; engine: submit to done). Best of R repeats.
 * Events per CPU-second (user + system time of the process) is printed too:
 * on a shared machine it depends less on how much of it the run gets.
 *
 * The default model stands in for GravNet until the graph layers land: an
 * MLP with pooled event context of about the same cost per row (~26 k
 * multiply-adds): hits [N, 16] -> 64 -> 64 -> (mean, max) pooled and
 * broadcast back -> 64 -> 64 -> 64 -> per-row [N, 8]; pooled -> per-event [1, 4].
 * Pass --model to run another model (inputs [N, F_i], at most 8 inputs and
 * 8 outputs): a JSON config (seed-0 weights) or a model file saved by a
 * training driver (.h5). Random inputs are uniform in [-0.5, 0.5). */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include <gpuml/gpuml.h>

#include "../examples/common/cli.h"

static const char default_model[] =
    "{\"inputs\": [{\"name\": \"hits\", \"features\": 16}],"
    " \"nodes\": ["
    "  {\"name\": \"d1\", \"op\": \"linear\", \"inputs\": [\"hits\"], \"out\": 64},"
    "  {\"name\": \"a1\", \"op\": \"elu\", \"inputs\": [\"d1\"]},"
    "  {\"name\": \"d2\", \"op\": \"linear\", \"inputs\": [\"a1\"], \"out\": 64},"
    "  {\"name\": \"a2\", \"op\": \"elu\", \"inputs\": [\"d2\"]},"
    "  {\"name\": \"mean\", \"op\": \"global_pool\", \"inputs\": [\"a2\"], \"reduce\": \"mean\"},"
    "  {\"name\": \"max\", \"op\": \"global_pool\", \"inputs\": [\"a2\"], \"reduce\": \"max\"},"
    "  {\"name\": \"pooled\", \"op\": \"concat\", \"inputs\": [\"mean\", \"max\"]},"
    "  {\"name\": \"bc\", \"op\": \"broadcast\", \"inputs\": [\"pooled\"]},"
    "  {\"name\": \"cat\", \"op\": \"concat\", \"inputs\": [\"a2\", \"bc\"]},"
    "  {\"name\": \"d3\", \"op\": \"linear\", \"inputs\": [\"cat\"], \"out\": 64},"
    "  {\"name\": \"a3\", \"op\": \"elu\", \"inputs\": [\"d3\"]},"
    "  {\"name\": \"d4\", \"op\": \"linear\", \"inputs\": [\"a3\"], \"out\": 64},"
    "  {\"name\": \"a4\", \"op\": \"elu\", \"inputs\": [\"d4\"]},"
    "  {\"name\": \"d5\", \"op\": \"linear\", \"inputs\": [\"a4\"], \"out\": 64},"
    "  {\"name\": \"a5\", \"op\": \"elu\", \"inputs\": [\"d5\"]},"
    "  {\"name\": \"out\", \"op\": \"linear\", \"inputs\": [\"a5\"], \"out\": 8},"
    "  {\"name\": \"cls\", \"op\": \"linear\", \"inputs\": [\"pooled\"], \"out\": 4}"
    " ], \"outputs\": [\"out\", \"cls\"]}";

#define NRANDOM 64 /* distinct random events, cycled */
#define MAXIO 8

typedef struct {
    gpuml_device dev;
    gpuml_model *model;
    int n_in, n_out;
    int64_t f_in[MAXIO], f_out[MAXIO];
    int out_event[MAXIO];
    int npool;
    int64_t *rows, max_rows; /* [npool] */
    float **in;              /* [npool * n_in]: event e's input i at in[e * n_in + i] */
    int events, threads, inflight;
    int event_jets; /* > 0: requests come in events of about this many (see event_size) */
    double *lat; /* [events] us */
    atomic_int next;
    atomic_int next_event;
} bench;

/* Requests per event in --event-jets J mode: 1 .. 2J-1 in a fixed scrambled
 * order, mean J (bench/onnx_particlenet.py uses the same sequence). */
static int event_size(int k, int j) { return 1 + (int)(((long)k * 7) % (2 * j - 1)); }

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return 1e6 * (double)ts.tv_sec + 1e-3 * (double)ts.tv_nsec;
}

static void die(const char *what)
{
    fprintf(stderr, "%s: %s\n", what, gpuml_last_error());
    exit(1);
}

static float **alloc_outputs(const bench *b, int64_t max_rows)
{
    float **o = malloc((size_t)b->n_out * sizeof *o);
    for (int k = 0; k < b->n_out; k++)
        o[k] = malloc((size_t)((b->out_event[k] ? 1 : max_rows) * b->f_out[k]) * sizeof(float));
    return o;
}

static void free_outputs(const bench *b, float **o)
{
    for (int k = 0; k < b->n_out; k++)
        free(o[k]);
    free(o);
}

/* ---- sync: gpuml_model_forward per event ---------------------------------- */
static void *sync_thread(void *arg)
{
    bench *b = arg;
    gpuml_ctx_config cc;
    gpuml_ctx_config_init_defaults(&cc);
    cc.device = b->dev;
    cc.num_threads = 1; /* the other cores belong to the other threads */
    gpuml_ctx *ctx;
    gpuml_tape *tape;
    if (gpuml_ctx_create(&cc, &ctx) != GPUML_OK || gpuml_tape_create(ctx, &tape) != GPUML_OK)
        die("sync context");
    gpuml_tape_set_grad_enabled(tape, 0);
    gpuml_tape_set_training(tape, 0);
    float **out = alloc_outputs(b, b->max_rows);
    int i;
    while ((i = atomic_fetch_add(&b->next, 1)) < b->events) {
        int e = i % b->npool;
        double t0 = now_us();
        int64_t two = 2, sp[2] = {0, b->rows[e]};
        gpuml_tensor *x[MAXIO], *rs;
        for (int k = 0; k < b->n_in; k++) {
            int64_t shape[2] = {b->rows[e], b->f_in[k]};
            const float *src = b->in[e * b->n_in + k];
            if (b->dev.type == GPUML_DEVICE_CPU) {
                gpuml_tensor_wrap((void *)src, b->dev, GPUML_F32, 2, shape, NULL, NULL, &x[k]);
            } else {
                gpuml_tensor_create(ctx, GPUML_F32, 2, shape, &x[k]);
                gpuml_tensor_copy_from_host(ctx, x[k], src, (size_t)(shape[0] * shape[1]) * sizeof(float));
            }
        }
        if (b->dev.type == GPUML_DEVICE_CPU) {
            gpuml_tensor_wrap(sp, b->dev, GPUML_I64, 1, &two, NULL, NULL, &rs);
        } else {
            gpuml_tensor_create(ctx, GPUML_I64, 1, &two, &rs);
            gpuml_tensor_copy_from_host(ctx, rs, sp, sizeof sp);
        }
        gpuml_var *outs[MAXIO];
        const gpuml_tensor *ins[MAXIO];
        for (int k = 0; k < b->n_in; k++)
            ins[k] = x[k];
        if (gpuml_model_forward(b->model, tape, ins, rs, outs) != GPUML_OK)
            die("gpuml_model_forward");
        for (int k = 0; k < b->n_out; k++) {
            gpuml_tensor *t = gpuml_var_value(outs[k]);
            if (gpuml_tensor_copy_to_host(ctx, t, out[k], gpuml_tensor_nbytes(t)) != GPUML_OK)
                die("copy_to_host");
        }
        gpuml_tape_reset(tape);
        for (int k = 0; k < b->n_in; k++)
            gpuml_tensor_destroy(x[k]);
        gpuml_tensor_destroy(rs);
        b->lat[i] = now_us() - t0;
    }
    free_outputs(b, out);
    gpuml_tape_destroy(tape);
    gpuml_ctx_destroy(ctx);
    return NULL;
}

/* ---- engine: submit with K in flight per thread ------------------------------ */
typedef struct {
    bench *b;
    gpuml_engine *eng;
    pthread_mutex_t m;
    pthread_cond_t cv;
    int in_flight;
} submitter;

typedef struct {
    submitter *s;
    int index;
    double t0;
    const float *in[MAXIO];
    float **out;
} slot;

static void on_done(void *user, gpuml_status st)
{
    slot *q = user;
    if (st != GPUML_OK)
        fprintf(stderr, "request failed: %s\n", gpuml_last_error());
    submitter *s = q->s;
    s->b->lat[q->index] = now_us() - q->t0;
    pthread_mutex_lock(&s->m);
    q->index = -1; /* free */
    s->in_flight--;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->m);
}

static void *engine_thread(void *arg)
{
    submitter *s = arg;
    bench *b = s->b;
    slot *slots = calloc((size_t)b->inflight, sizeof *slots);
    for (int k = 0; k < b->inflight; k++) {
        slots[k].s = s;
        slots[k].index = -1;
        slots[k].out = alloc_outputs(b, b->max_rows);
    }
    if (b->event_jets > 0) {
        /* A framework stream: submit all requests of an event, wait for
         * them all, then the next event. */
        int k;
        while ((k = atomic_fetch_add(&b->next_event, 1)) >= 0) {
            int nj = event_size(k, b->event_jets);
            int i0 = atomic_fetch_add(&b->next, nj);
            if (i0 >= b->events)
                break;
            nj = nj < b->events - i0 ? nj : b->events - i0;
            for (int j = 0; j < nj; j++) {
                slot *q = &slots[j];
                int e = (i0 + j) % b->npool;
                q->index = i0 + j;
                pthread_mutex_lock(&s->m);
                s->in_flight++;
                pthread_mutex_unlock(&s->m);
                gpuml_engine_request req;
                gpuml_engine_request_init(&req);
                req.rows = b->rows[e];
                for (int m = 0; m < b->n_in; m++)
                    q->in[m] = b->in[e * b->n_in + m];
                req.inputs = q->in;
                req.outputs = q->out;
                req.borrow_inputs = 1;
                q->t0 = now_us();
                gpuml_status st;
                while ((st = gpuml_engine_submit(s->eng, &req, on_done, q)) == GPUML_ERR_QUEUE_FULL) {
                    struct timespec ts = {0, 20000};
                    nanosleep(&ts, NULL);
                }
                if (st != GPUML_OK)
                    die("gpuml_engine_submit");
            }
            pthread_mutex_lock(&s->m);
            while (s->in_flight > 0)
                pthread_cond_wait(&s->cv, &s->m);
            pthread_mutex_unlock(&s->m);
        }
    }
    int i;
    while (b->event_jets == 0 && (i = atomic_fetch_add(&b->next, 1)) < b->events) {
        pthread_mutex_lock(&s->m);
        while (s->in_flight == b->inflight)
            pthread_cond_wait(&s->cv, &s->m);
        slot *q = NULL;
        for (int k = 0; k < b->inflight && !q; k++)
            if (slots[k].index < 0)
                q = &slots[k];
        q->index = i;
        s->in_flight++;
        pthread_mutex_unlock(&s->m);
        int e = i % b->npool;
        gpuml_engine_request req;
        gpuml_engine_request_init(&req);
        req.rows = b->rows[e];
        for (int k = 0; k < b->n_in; k++)
            q->in[k] = b->in[e * b->n_in + k];
        req.inputs = q->in;
        req.outputs = q->out;
        req.borrow_inputs = 1; /* the pool outlives the run */
        q->t0 = now_us();
        gpuml_status st;
        while ((st = gpuml_engine_submit(s->eng, &req, on_done, q)) == GPUML_ERR_QUEUE_FULL) {
            struct timespec ts = {0, 20000};
            nanosleep(&ts, NULL);
        }
        if (st != GPUML_OK)
            die("gpuml_engine_submit");
    }
    pthread_mutex_lock(&s->m);
    while (s->in_flight > 0)
        pthread_cond_wait(&s->cv, &s->m);
    pthread_mutex_unlock(&s->m);
    for (int k = 0; k < b->inflight; k++)
        free_outputs(b, slots[k].out);
    free(slots);
    return NULL;
}

/* ---- driver -------------------------------------------------------------------- */
static int cmp_double(const void *x, const void *y)
{
    double a = *(const double *)x, c = *(const double *)y;
    return (a > c) - (a < c);
}

typedef struct {
    double rate, p50, p99, cpu_rate;
} result;

static double cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + 1e-6 * (double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_sec +
           1e-6 * (double)ru.ru_stime.tv_usec;
}

static result summarise(bench *b, double dt, double cpu)
{
    qsort(b->lat, (size_t)b->events, sizeof *b->lat, cmp_double);
    result r = {1e6 * b->events / dt, b->lat[b->events / 2], b->lat[(int)(0.99 * (b->events - 1))], b->events / cpu};
    return r;
}

static result run_sync(bench *b)
{
    pthread_t *th = malloc((size_t)b->threads * sizeof *th);
    atomic_store(&b->next, 0);
    double t0 = now_us(), c0 = cpu_s();
    for (int t = 0; t < b->threads; t++)
        pthread_create(&th[t], NULL, sync_thread, b);
    for (int t = 0; t < b->threads; t++)
        pthread_join(th[t], NULL);
    double dt = now_us() - t0, cpu = cpu_s() - c0;
    free(th);
    return summarise(b, dt, cpu);
}

static result run_engine(bench *b, gpuml_engine *eng)
{
    submitter *s = calloc((size_t)b->threads, sizeof *s);
    pthread_t *th = malloc((size_t)b->threads * sizeof *th);
    atomic_store(&b->next, 0);
    atomic_store(&b->next_event, 0);
    double t0 = now_us(), c0 = cpu_s();
    for (int t = 0; t < b->threads; t++) {
        s[t].b = b;
        s[t].eng = eng;
        pthread_mutex_init(&s[t].m, NULL);
        pthread_cond_init(&s[t].cv, NULL);
        pthread_create(&th[t], NULL, engine_thread, &s[t]);
    }
    for (int t = 0; t < b->threads; t++)
        pthread_join(th[t], NULL);
    double dt = now_us() - t0, cpu = cpu_s() - c0;
    for (int t = 0; t < b->threads; t++) {
        pthread_mutex_destroy(&s[t].m);
        pthread_cond_destroy(&s[t].cv);
    }
    free(s);
    free(th);
    return summarise(b, dt, cpu);
}

/* Random events: `n` events of sizes per `sizes`, inputs uniform in [-0.5, 0.5). */
static void make_random(bench *b, bool large, bool tiny)
{
    unsigned seed = 7;
    b->npool = NRANDOM;
    b->rows = malloc((size_t)b->npool * sizeof *b->rows);
    b->in = malloc((size_t)(b->npool * b->n_in) * sizeof *b->in);
    for (int e = 0; e < b->npool; e++) {
        b->rows[e] = large ? 1000 + rand_r(&seed) % 19001 : 1 + rand_r(&seed) % (tiny ? 100 : 2000);
        for (int k = 0; k < b->n_in; k++) {
            float *x = malloc((size_t)(b->rows[e] * b->f_in[k]) * sizeof(float));
            for (int64_t i = 0; i < b->rows[e] * b->f_in[k]; i++)
                x[i] = (float)rand_r(&seed) / (float)RAND_MAX - 0.5f;
            b->in[e * b->n_in + k] = x;
        }
    }
}

/* The first `pool` events of a dataset; input i from the per-row field named
 * like the model's input i. One host block per input (kept in data[i]). */
static void load_data(bench *b, gpuml_ctx *ctx, const char *path, int pool, float **data)
{
    gpuml_dataset *ds;
    if (gpuml_dataset_open(path, &ds) != GPUML_OK)
        die("gpuml_dataset_open");
    int64_t n_ev = gpuml_dataset_num_events(ds);
    b->npool = (int)(pool < n_ev ? pool : n_ev);
    if (b->npool < 1) {
        fprintf(stderr, "%s holds no events\n", path);
        exit(2);
    }
    const char *names[MAXIO];
    for (int k = 0; k < b->n_in; k++) {
        gpuml_model_input_info(b->model, k, &names[k], NULL);
        int idx;
        gpuml_field_info fi;
        if (gpuml_dataset_find(ds, names[k], &idx) != GPUML_OK || gpuml_dataset_field(ds, idx, &fi) != GPUML_OK)
            die("model input not in the dataset");
        if (fi.per_event || fi.dtype != GPUML_F32 || fi.ndim != 1 || fi.shape[0] != b->f_in[k]) {
            fprintf(stderr, "field %s of %s is not per-row f32 [N, %lld]\n", names[k], path, (long long)b->f_in[k]);
            exit(2);
        }
    }
    gpuml_tensor *rs, *t[MAXIO];
    if (gpuml_dataset_read(ds, ctx, 0, b->npool, b->n_in, names, &rs, t) != GPUML_OK)
        die("gpuml_dataset_read");
    int64_t *sp = malloc((size_t)(b->npool + 1) * sizeof *sp);
    if (gpuml_tensor_copy_to_host(ctx, rs, sp, (size_t)(b->npool + 1) * sizeof *sp) != GPUML_OK)
        die("row splits");
    b->rows = malloc((size_t)b->npool * sizeof *b->rows);
    b->in = malloc((size_t)(b->npool * b->n_in) * sizeof *b->in);
    for (int k = 0; k < b->n_in; k++) {
        data[k] = malloc(gpuml_tensor_nbytes(t[k]));
        if (gpuml_tensor_copy_to_host(ctx, t[k], data[k], gpuml_tensor_nbytes(t[k])) != GPUML_OK)
            die("dataset field");
        for (int e = 0; e < b->npool; e++)
            b->in[e * b->n_in + k] = data[k] + sp[e] * b->f_in[k];
        gpuml_tensor_destroy(t[k]);
    }
    for (int e = 0; e < b->npool; e++)
        b->rows[e] = sp[e + 1] - sp[e];
    gpuml_tensor_destroy(rs);
    free(sp);
    gpuml_dataset_close(ds);
}

/* Every pool event once through gpuml_engine_run; outputs appended as raw f32. */
static void dump_outputs(bench *b, gpuml_engine *eng, const char *path)
{
    FILE *f = fopen(path, "wb");
    if (!f) {
        perror(path);
        exit(1);
    }
    float **out = alloc_outputs(b, b->max_rows);
    for (int e = 0; e < b->npool; e++) {
        gpuml_engine_request req;
        gpuml_engine_request_init(&req);
        req.rows = b->rows[e];
        req.inputs = (const float *const *)&b->in[e * b->n_in];
        req.outputs = out;
        if (gpuml_engine_run(eng, &req) != GPUML_OK)
            die("gpuml_engine_run");
        for (int k = 0; k < b->n_out; k++)
            fwrite(out[k], sizeof(float), (size_t)((b->out_event[k] ? 1 : b->rows[e]) * b->f_out[k]), f);
    }
    free_outputs(b, out);
    if (fclose(f)) {
        perror(path);
        exit(1);
    }
}

int main(int argc, char **argv)
{
    const char *model_path = NULL, *sizes = "small", *data_path = NULL, *dump_path = NULL;
    /* instances, batch_events, cpu_threads 0 and delay_us -1: the engine's
     * defaults (gpuml_engine_config_init_defaults), which is what is measured
     * unless an option says otherwise. */
    int events = 0, repeats = 3, instances = 0, batch_events = 0, cpu_threads = 0, pool = 2000, do_sync = 1;
    int64_t delay_us = -1;
    bench b;
    memset(&b, 0, sizeof b);
    b.threads = 8;
    b.inflight = 2;
    b.dev.type = GPUML_DEVICE_CPU;
    cli_opt table[] = {
        CLI_STR("model", &model_path, "FILE", "model config (.json) or trained model (.h5); none: MLP + pooling"),
        CLI_CHOICE("sizes", &sizes, "small|large|tiny", "rows per event: 1-2000, 1000-20000, 1-100"),
        CLI_INT("events", &events, 0, INT32_MAX, "events per run (0: 2000 small, 200 large, 20000 tiny)"),
        CLI_INT("threads", &b.threads, 1, 4096, "submitting host threads"),
        CLI_INT("inflight", &b.inflight, 1, 1 << 20, "requests each thread keeps in flight"),
        CLI_INT("repeats", &repeats, 0, 1000000, "repeats (best is reported)"),
        CLI_INT("instances", &instances, 0, 1024, "engine instances (0: the engine's default)"),
        CLI_INT("batch-events", &batch_events, 0, 1 << 20, "events per engine batch, at most (0: the engine's default)"),
        CLI_INT("event-jets", &b.event_jets, 0, 64, "requests come in events of about this many jets (0: one by one)"),
        CLI_I64("delay-us", &delay_us, -1, INT64_MAX, "engine batching delay, microseconds (-1: the engine's default)"),
        CLI_DEVICE(&b.dev),
        CLI_INT("cpu-threads", &cpu_threads, 0, 4096, "CPU threads per engine instance (0: the engine's default)"),
        CLI_STR("data", &data_path, "FILE", "real events from this dataset instead of generated ones"),
        CLI_INT("pool", &pool, 1, INT32_MAX, "with --data: the first P events"),
        CLI_INT("sync", &do_sync, 0, 1, "0: the engine only"),
        CLI_STR("dump", &dump_path, "FILE", "every pool event's outputs once more, raw f32"), CLI_END};
    cli_parse(argc, argv, "the inference engine against event-by-event synchronous inference", table);
    cli_require_device(b.dev);
    char device[32] = "cpu";
    if (b.dev.type == GPUML_DEVICE_CUDA)
        snprintf(device, sizeof device, "cuda:%d", b.dev.index);
    bool large = !strcmp(sizes, "large"), tiny = !strcmp(sizes, "tiny");
    b.events = events > 0 ? events : large ? 200 : tiny ? 20000 : 2000;
    if (b.event_jets > 0)
        b.inflight = 2 * b.event_jets - 1; /* the largest event */

    gpuml_ctx_config cc;
    gpuml_ctx_config_init_defaults(&cc);
    cc.device = b.dev;
    gpuml_ctx *ctx;
    if (gpuml_ctx_create(&cc, &ctx) != GPUML_OK)
        die("gpuml_ctx_create");
    size_t plen = model_path ? strlen(model_path) : 0;
    int is_h5 = plen > 3 && !strcmp(model_path + plen - 3, ".h5"); /* a trained model file */
    if ((model_path ? (is_h5 ? gpuml_model_load(ctx, model_path, &b.model)
                             : gpuml_model_create_from_file(ctx, model_path, &b.model))
                    : gpuml_model_create(ctx, default_model, &b.model)) != GPUML_OK)
        die("model");
    b.n_in = gpuml_model_num_inputs(b.model);
    b.n_out = gpuml_model_num_outputs(b.model);
    if (b.n_in > MAXIO || b.n_out > MAXIO) {
        fprintf(stderr, "bench_engine runs models with at most %d inputs and %d outputs\n", MAXIO, MAXIO);
        return 2;
    }
    for (int k = 0; k < b.n_in; k++)
        gpuml_model_input_info(b.model, k, NULL, &b.f_in[k]);
    for (int k = 0; k < b.n_out; k++)
        gpuml_model_output_info(b.model, k, NULL, &b.f_out[k], &b.out_event[k]);
    float *data[MAXIO] = {NULL};
    gpuml_ctx *host_ctx = ctx;
    if (data_path) {
        gpuml_ctx_config hc;
        gpuml_ctx_config_init_defaults(&hc);
        if (b.dev.type != GPUML_DEVICE_CPU && gpuml_ctx_create(&hc, &host_ctx) != GPUML_OK)
            die("host context");
        load_data(&b, host_ctx, data_path, pool, data);
        if (host_ctx != ctx)
            gpuml_ctx_destroy(host_ctx);
    } else {
        make_random(&b, large, tiny);
    }
    int64_t total_rows = 0;
    for (int e = 0; e < b.npool; e++) {
        total_rows += b.rows[e];
        if (b.rows[e] > b.max_rows)
            b.max_rows = b.rows[e];
    }
    b.lat = malloc((size_t)b.events * sizeof *b.lat);

    gpuml_engine_config cfg;
    gpuml_engine_config_init_defaults(&cfg);
    cfg.device = b.dev;
    cfg.num_instances = instances;
    cfg.max_batch_events = batch_events;
    cfg.max_batch_rows = large ? 1 << 16 : 1 << 15;
    if (data_path && batch_events > 0) /* the largest batch these events make: a smaller warm-up and footprint */
        cfg.max_batch_rows = (int64_t)batch_events * b.max_rows;
    if (delay_us >= 0)
        cfg.max_queue_delay_us = delay_us;
    cfg.queue_capacity = 4 * b.threads * b.inflight;
    cfg.cpu_threads = cpu_threads;
    gpuml_engine *eng;
    if (gpuml_engine_create_from_model(b.model, &cfg, &eng) != GPUML_OK)
        die("gpuml_engine_create_from_model");

    gpuml_engine_config used; /* the automatic choices resolved */
    gpuml_engine_get_config(eng, &used);
    char what[64];
    snprintf(what, sizeof what, "%s", large ? "1k-20k rows" : tiny ? "1-100 rows" : "1-2000 rows");
    printf("model %s; %s; events %s (%d runs over %d events, mean %.1f rows); %d threads; engine: %d instance(s)%s, "
           "%d events/batch%s, delay %lld us, %d in flight per thread\n",
           model_path ? model_path : "default MLP+pooling", device, data_path ? data_path : what, b.events, b.npool,
           (double)total_rows / b.npool, b.threads, used.num_instances, instances ? "" : " (default)",
           used.max_batch_events, batch_events ? "" : " (default)", (long long)cfg.max_queue_delay_us,
           b.inflight);
    result best_s = {0, 0, 0, 0}, best_e = {0, 0, 0, 0};
    for (int r = 0; r < repeats; r++) {
        result s = {0, 0, 0, 0};
        if (do_sync)
            s = run_sync(&b);
        gpuml_engine_reset_stats(eng);
        result e = run_engine(&b, eng);
        if (s.rate > best_s.rate)
            best_s = s;
        if (e.rate > best_e.rate)
            best_e = e;
        fprintf(stderr, "  repeat %d: sync %.1f events/s, engine %.1f events/s\n", r, s.rate, e.rate);
    }
    gpuml_engine_stats st;
    gpuml_engine_get_stats(eng, &st);
    double ev_batch = st.batches ? (double)st.batch_events / (double)st.batches : 0.0;
    if (repeats > 0) {
        if (do_sync)
            printf("sync   %9.1f events/s  p50 %9.0f us  p99 %9.0f us  %8.1f events/cpu-s\n", best_s.rate, best_s.p50,
                   best_s.p99, best_s.cpu_rate);
        printf("engine %9.1f events/s  p50 %9.0f us  p99 %9.0f us  %8.1f events/cpu-s\n", best_e.rate, best_e.p50,
               best_e.p99, best_e.cpu_rate);
        if (do_sync)
            printf("engine/sync: x%.2f throughput, x%.2f per cpu-s; ", best_e.rate / best_s.rate,
                   best_e.cpu_rate / best_s.cpu_rate);
        printf("last run %.1f events/batch, batch compute p50 %.0f us\n", ev_batch, st.compute_time.p50_us);
        printf("RESULT {\"sync_rate\": %.2f, \"sync_p50_us\": %.1f, \"sync_p99_us\": %.1f, \"engine_rate\": %.2f, "
               "\"engine_p50_us\": %.1f, \"engine_p99_us\": %.1f, \"engine_cpu_rate\": %.2f, \"events_per_batch\": %.2f, "
               "\"batch_compute_p50_us\": %.1f}\n",
               best_s.rate, best_s.p50, best_s.p99, best_e.rate, best_e.p50, best_e.p99, best_e.cpu_rate, ev_batch,
               st.compute_time.p50_us);
    }
    if (dump_path)
        dump_outputs(&b, eng, dump_path);
    gpuml_engine_destroy(eng);
    for (int k = 0; k < b.n_in; k++)
        free(data[k]);
    if (!data_path)
        for (int e = 0; e < b.npool * b.n_in; e++)
            free(b.in[e]);
    free(b.in);
    free(b.rows);
    free(b.lat);
    gpuml_model_destroy(b.model);
    gpuml_ctx_destroy(ctx);
    return 0;
}
