/* examples/common/driver.h - what both training drivers share: options
 * (on examples/common/cli.h), a progress line (a bar on a terminal, plain lines otherwise), metrics as
 * JSON lines, timing. Header-only; examples are not the library. */
#ifndef GPUML_EXAMPLES_DRIVER_H
#define GPUML_EXAMPLES_DRIVER_H

#define _POSIX_C_SOURCE 200809L
#include <gpuml/gpuml.h>
#include <stdint.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

#define DIE_IF(st)                                                                                 \
    do {                                                                                           \
        gpuml_status s_ = (st);                                                                    \
        if (s_ != GPUML_OK) {                                                                      \
            fprintf(stderr, "error: %s: %s\n", gpuml_status_string(s_), gpuml_last_error());       \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

static inline double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* The options both drivers take (each adds its own to the table). The
 * outputs default to files in the run directory; explicit paths are used as
 * given. */
typedef struct {
    const char *data, *val, *config, *run_dir, *out, *metrics, *ckpt, *resume, *init_out;
    int epochs, ckpt_every, threads, distributed, fault_rank;
    int64_t max_steps, max_events, max_rows, fault_step;
    double lr, comm_timeout;
    uint64_t seed;
    gpuml_device device;
} driver_opts;

#define DRIVER_OPTS_COMMON(o)                                                                                   \
    CLI_STR_REQ("data", &(o).data, "FILE", "training dataset (gen_dataset output)"),                           \
        CLI_STR("val", &(o).val, "FILE", "held-out dataset, evaluated after training"),                        \
        CLI_STR("config", &(o).config, "FILE", "model config (JSON)"),                                         \
        CLI_INT("epochs", &(o).epochs, 1, 1000000, "passes over the training data"),                           \
        CLI_I64("max-steps", &(o).max_steps, 0, INT64_MAX, "stop after N steps (0: epochs x batches)"),        \
        CLI_I64("max-events", &(o).max_events, 1, INT32_MAX, "events per batch, at most"),                     \
        CLI_F64("lr", &(o).lr, 0, 1e3, "peak learning rate (cosine schedule, 5% warm-up)"),                    \
        CLI_STR("run-dir", &(o).run_dir, "DIR", "where the outputs go (created)"),                             \
        CLI_STR_OR("out", &(o).out, "FILE", "RUN_DIR/model.h5", "trained model file"),                   \
        CLI_STR_OR("metrics", &(o).metrics, "FILE", "RUN_DIR/metrics.jsonl", "metrics, JSON lines"),      \
        CLI_STR_OR("ckpt", &(o).ckpt, "FILE", "RUN_DIR/checkpoint.h5", "checkpoint file"),                \
        CLI_INT("ckpt-every", &(o).ckpt_every, 0, INT32_MAX, "checkpoint every N steps (0: never)"),           \
        CLI_STR("resume", &(o).resume, "FILE", "continue from this checkpoint"),                               \
        CLI_STR("init-out", &(o).init_out, "FILE", "save the initial weights here (for peer comparisons)"),    \
        CLI_DEVICE(&(o).device), CLI_INT("threads", &(o).threads, 0, 4096, "CPU threads (0: all cores)"),      \
        CLI_U64("seed", &(o).seed, "seed of the weights and the shuffling"),                                   \
        CLI_FLAG("distributed", &(o).distributed, "one rank per process (mpirun / srun): MPI or NCCL"),       \
        CLI_F64("comm-timeout", &(o).comm_timeout, 0, 1e6, "seconds before a stalled peer is an error"),       \
        CLI_INT("fault-rank", &(o).fault_rank, -1, INT32_MAX, "testing: this rank kills itself ..."),          \
        CLI_I64("fault-step", &(o).fault_step, -1, INT64_MAX, "testing: ... at this step")

static inline void driver_opts_defaults(driver_opts *o, const char *run_dir, const char *config)
{
    memset(o, 0, sizeof *o);
    o->run_dir = run_dir, o->config = config;
    o->epochs = 2, o->ckpt_every = 50, o->max_events = 16, o->lr = 1e-3, o->seed = 1;
    o->comm_timeout = 120, o->fault_rank = -1, o->fault_step = -1;
    o->device.type = GPUML_DEVICE_CPU;
}

/* After parsing: the outputs not given explicitly go into the run
 * directory, which rank 0 creates when it needs it. */
static inline void driver_outputs(driver_opts *o, int lead)
{
    if (o->out && o->metrics && o->ckpt)
        return;
    if (lead)
        cli_run_dir(o->run_dir);
    if (!o->out)
        o->out = cli_join(o->run_dir, "model.h5");
    if (!o->metrics)
        o->metrics = cli_join(o->run_dir, "metrics.jsonl");
    if (!o->ckpt)
        o->ckpt = cli_join(o->run_dir, "checkpoint.h5");
}

/* A CPU or CUDA context from --device and --threads. */
static inline gpuml_ctx *make_ctx(const driver_opts *o)
{
    gpuml_ctx_config cfg;
    gpuml_ctx_config_init_defaults(&cfg);
    cli_require_device(o->device);
    cfg.device = o->device;
    cfg.num_threads = o->threads;
    gpuml_ctx *ctx;
    DIE_IF(gpuml_ctx_create(&cfg, &ctx));
    return ctx;
}

/* --distributed: a communicator (MPI for the CPU, NCCL for CUDA), and the
 * context on its device; else a plain context and comm = NULL. */
typedef struct {
    gpuml_comm *comm;
    gpuml_ctx *ctx;
    int rank, size;
} dist_env;

static inline dist_env dist_setup(const driver_opts *o)
{
    dist_env e = {NULL, NULL, 0, 1};
    if (!o->distributed) {
        e.ctx = make_ctx(o);
        return e;
    }
    cli_require_device(o->device);
    gpuml_comm_config cc;
    gpuml_comm_config_init_defaults(&cc);
    cc.backend = o->device.type == GPUML_DEVICE_CUDA ? GPUML_COMM_NCCL : GPUML_COMM_MPI;
    cc.timeout_s = o->comm_timeout;
    DIE_IF(gpuml_comm_create(&cc, &e.comm));
    e.rank = gpuml_comm_rank(e.comm);
    e.size = gpuml_comm_size(e.comm);
    gpuml_ctx_config cfg;
    gpuml_ctx_config_init_defaults(&cfg);
    cfg.device = gpuml_comm_device(e.comm); /* CUDA device from the local rank */
    fprintf(stderr, "rank %d of %d (local rank %d): device %s:%d\n", e.rank, e.size, gpuml_comm_local_rank(e.comm),
            cfg.device.type == GPUML_DEVICE_CUDA ? "cuda" : "cpu", cfg.device.index);
    cfg.num_threads = o->threads;
    DIE_IF(gpuml_ctx_create(&cfg, &e.ctx));
    return e;
}

/* A step that fails because a peer died or stalled: report, exit non-zero.
 * --fault-rank R --fault-step S (testing): rank R kills itself at step S. */
static inline void dist_step_check(const dist_env *e, const driver_opts *o, int64_t step, gpuml_status st)
{
    if (e->comm && o->fault_rank == e->rank && o->fault_step == step)
        raise(SIGKILL);
    if (st == GPUML_OK)
        return;
    fprintf(stderr, "rank %d: step %lld failed: %s: %s\n", e->rank, (long long)step, gpuml_status_string(st),
            gpuml_last_error());
    if (e->comm) {
        printf("FAULT-OK rank=%d status=%s\n", e->rank, gpuml_status_string(st));
        fflush(stdout);
        gpuml_comm_destroy(e->comm); /* after a fault: no MPI_Finalize, no hang */
        exit(3);
    }
    exit(1);
}

/* The metrics file (rank 0 only; continued when resuming; written as
 * .part until the run succeeds) and the model from its JSON config, seeded
 * by --seed; --init-out saves the initial weights (e.g. for a peer
 * implementation to start from). */
static inline gpuml_model *driver_model(const driver_opts *o, const dist_env *e, FILE **metrics)
{
    *metrics = cli_out_open(e->rank == 0 ? o->metrics : "/dev/null", o->resume != NULL);
    gpuml_ctx_set_seed(e->ctx, o->seed);
    gpuml_model *model;
    DIE_IF(gpuml_model_create_from_file(e->ctx, o->config, &model));
    DIE_IF(gpuml_model_init_params(model, o->seed));
    if (o->init_out && e->rank == 0)
        DIE_IF(gpuml_model_save(model, o->init_out));
    return model;
}

/* --distributed: rank 0's weights everywhere, gradients averaged in buckets
 * during backward. NULL without a communicator. */
static inline gpuml_ddp *driver_ddp(const dist_env *e, gpuml_model *model, gpuml_trainer *tr)
{
    gpuml_ddp *ddp = NULL;
    if (e->comm) {
        DIE_IF(gpuml_ddp_create(e->comm, model, NULL, &ddp));
        gpuml_trainer_set_ddp(tr, ddp);
    }
    return ddp;
}

/* --resume: weights, optimizer, RNG and loader position from a checkpoint.
 * --distributed with another number of ranks than the run that saved it:
 * the loader's epoch plan depends on the rank count, so the saved position
 * does not map onto the new plan (gpuml_loader_set_position refuses it).
 * Weights, optimizer state, step and RNG still carry over exactly; the
 * loader continues at the saved epoch and batch index of the new plan
 * (clamped to its length), and a warning says so: the events seen after
 * the resume are not those an uninterrupted run would have seen. */
static inline void driver_resume(const char *path, const dist_env *e, gpuml_ctx *ctx, gpuml_model *model,
                                 gpuml_trainer *tr, gpuml_loader *loader, gpuml_train_state *ts)
{
    DIE_IF(gpuml_checkpoint_load(path, model, gpuml_trainer_optim(tr), ts));
    gpuml_ctx_set_rng_state(ctx, ts->rng_seed, ts->rng_counter);
    gpuml_status st = gpuml_loader_set_position(loader, &ts->loader);
    if (st == GPUML_ERR_STATE && e->comm) {
        gpuml_loader_position p = ts->loader;
        int64_t nb = 0;
        DIE_IF(gpuml_loader_num_batches(loader, p.epoch, &nb));
        p.fingerprint = 0; /* skip the plan check: the plan changed with the rank count */
        p.batch = p.batch < nb ? p.batch : nb;
        if (e->rank == 0)
            fprintf(stderr, "warning: %s was saved with another data plan (rank count %d now, or another file/seed): "
                    "resuming epoch %lld at batch %lld of %lld of this run's plan\n", path, e->size,
                    (long long)p.epoch, (long long)p.batch, (long long)nb);
        st = gpuml_loader_set_position(loader, &p);
    }
    DIE_IF(st);
    fprintf(stderr, "resumed from %s at step %lld\n", path, (long long)ts->step);
}

static inline void driver_checkpoint(const char *path, gpuml_ctx *ctx, gpuml_model *model, gpuml_trainer *tr,
                                     gpuml_loader *loader, gpuml_train_state *ts, int64_t step)
{
    ts->step = step;
    gpuml_ctx_get_rng_state(ctx, &ts->rng_seed, &ts->rng_counter);
    DIE_IF(gpuml_loader_get_position(loader, &ts->loader));
    DIE_IF(gpuml_checkpoint_save(path, model, gpuml_trainer_optim(tr), ts));
}

typedef struct {
    double start, last;
    int64_t total, done;
    int tty;
} progress;

static inline void progress_init(progress *p, int64_t total)
{
    p->start = p->last = now_s();
    p->total = total;
    p->done = 0;
    const char *term = getenv("TERM");
    p->tty = isatty(2) && !(term && !strcmp(term, "dumb")); /* a live bar; else one line per 20 steps */
}

/* Called every step; draws at most ~10 times a second on a terminal, every
 * `every` steps otherwise. */
static inline void progress_update(progress *p, int64_t step, double events_per_s, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    double t = now_s(), el = t - p->start;
    double frac = p->total > 0 ? (double)step / (double)p->total : 0;
    double eta = frac > 0 ? el * (1 - frac) / frac : 0;
    if (p->tty) {
        if (t - p->last < 0.1 && step < p->total)
            return;
        int w = 24, fill = (int)(frac * w);
        char bar[32];
        for (int i = 0; i < w; i++)
            bar[i] = i < fill ? '=' : (i == fill ? '>' : ' ');
        bar[w] = '\0';
        fprintf(stderr, "\r[%s] %3d%% %lld/%lld %s %.1f ev/s ETA %02d:%02d\033[K", bar, (int)(100 * frac),
                (long long)step, (long long)p->total, msg, events_per_s, (int)eta / 60, (int)eta % 60);
        if (step >= p->total)
            fputc('\n', stderr);
    } else if (step % 20 == 0 || step >= p->total) {
        fprintf(stderr, "step %lld/%lld %s %.1f ev/s eta %.0fs\n", (long long)step, (long long)p->total, msg,
                events_per_s, eta);
    }
    p->last = t;
}

/* Largest value of a per-event count field ("event/n_showers"): one
 * integer (i32, i64 or u8) per event, each in [0, limit]. The file is
 * data, not trusted: a field of another dtype or shape is refused rather
 * than reinterpreted (a u8 field read as i32 runs past the data, a float
 * one gives absurd counts and allocations). Returns 0 with *out set, or -1
 * with a message naming the file and field in err. */
static inline int field_max_count_checked(const char *path, const char *field, int64_t limit, int64_t *out,
                                          char *err, size_t errsize)
{
    gpuml_dataset *ds;
    if (gpuml_dataset_open(path, &ds) != GPUML_OK) {
        snprintf(err, errsize, "%s", gpuml_last_error());
        return -1;
    }
    int index;
    gpuml_field_info fi = {0};
    int rc = -1;
    if (gpuml_dataset_find(ds, field, &index) != GPUML_OK || gpuml_dataset_field(ds, index, &fi) != GPUML_OK)
        snprintf(err, errsize, "'%s' has no field '%s'", path, field);
    else if (!fi.per_event || fi.ndim != 0 || (fi.dtype != GPUML_I32 && fi.dtype != GPUML_I64 && fi.dtype != GPUML_U8))
        snprintf(err, errsize, "'%s': field '%s' must hold one integer (i32, i64 or u8) per event; it is %s, %s %d-d",
                 path, field, fi.per_event ? "per event" : "per row", gpuml_dtype_name(fi.dtype), fi.ndim);
    else
        rc = 0;
    gpuml_ctx *ctx = NULL;
    gpuml_tensor *rs = NULL, *v = NULL;
    if (rc == 0) {
        gpuml_ctx_config cfg;
        gpuml_ctx_config_init_defaults(&cfg);
        cfg.num_threads = 1;
        const char *names[1] = {field};
        if (gpuml_ctx_create(&cfg, &ctx) != GPUML_OK ||
            gpuml_dataset_read(ds, ctx, 0, gpuml_dataset_num_events(ds), 1, names, &rs, &v) != GPUML_OK) {
            snprintf(err, errsize, "%s", gpuml_last_error());
            rc = -1;
        }
    }
    int64_t mx = 0;
    for (int64_t i = 0; rc == 0 && i < gpuml_tensor_numel(v); i++) {
        const void *d = gpuml_tensor_data(v);
        int64_t x = fi.dtype == GPUML_I32 ? ((const int32_t *)d)[i]
                    : fi.dtype == GPUML_I64 ? ((const int64_t *)d)[i]
                                            : ((const uint8_t *)d)[i];
        if (x < 0 || x > limit) {
            snprintf(err, errsize, "'%s': field '%s' of event %lld is %lld, not a count in [0, %lld]", path, field,
                     (long long)i, (long long)x, (long long)limit);
            rc = -1;
        }
        mx = x > mx ? x : mx;
    }
    gpuml_tensor_destroy(rs);
    gpuml_tensor_destroy(v);
    gpuml_dataset_close(ds);
    gpuml_ctx_destroy(ctx);
    if (rc == 0)
        *out = mx;
    return rc;
}

/* field_max_count_checked, or exit with its message. */
static inline int64_t field_max_count(const char *path, const char *field, int64_t limit)
{
    char err[1024];
    int64_t mx = 0;
    if (field_max_count_checked(path, field, limit, &mx, err, sizeof err) != 0) {
        fprintf(stderr, "error: %s\n", err);
        exit(1);
    }
    return mx;
}

#endif
