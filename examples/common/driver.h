/* examples/common/driver.h - what both training drivers share: options,
 * a progress line (a bar on a terminal, plain lines otherwise), metrics as
 * JSON lines, timing. Header-only; examples are not the library. */
#ifndef GPUML_EXAMPLES_DRIVER_H
#define GPUML_EXAMPLES_DRIVER_H

#define _POSIX_C_SOURCE 200809L
#include <gpuml/gpuml.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

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

/* --name value options; flags are --name with no value. */
typedef struct {
    int argc;
    char **argv;
} opts;

static inline const char *opt_str(const opts *o, const char *name, const char *def)
{
    for (int i = 1; i + 1 < o->argc; i++)
        if (!strcmp(o->argv[i], name))
            return o->argv[i + 1];
    return def;
}
static inline long opt_int(const opts *o, const char *name, long def)
{
    const char *v = opt_str(o, name, NULL);
    return v ? atol(v) : def;
}
static inline double opt_f(const opts *o, const char *name, double def)
{
    const char *v = opt_str(o, name, NULL);
    return v ? atof(v) : def;
}
static inline int opt_flag(const opts *o, const char *name)
{
    for (int i = 1; i < o->argc; i++)
        if (!strcmp(o->argv[i], name))
            return 1;
    return 0;
}

/* A CPU or CUDA context from --device cpu|cuda[:i] and --threads. */
static inline gpuml_ctx *make_ctx(const opts *o)
{
    gpuml_ctx_config cfg;
    gpuml_ctx_config_init_defaults(&cfg);
    const char *dev = opt_str(o, "--device", "cpu");
    if (!strncmp(dev, "cuda", 4)) {
        cfg.device.type = GPUML_DEVICE_CUDA;
        cfg.device.index = dev[4] == ':' ? atoi(dev + 5) : 0;
    }
    cfg.num_threads = (int)opt_int(o, "--threads", 0);
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

static inline dist_env dist_setup(const opts *o)
{
    dist_env e = {NULL, NULL, 0, 1};
    if (!opt_flag(o, "--distributed")) {
        e.ctx = make_ctx(o);
        return e;
    }
    gpuml_comm_config cc;
    gpuml_comm_config_init_defaults(&cc);
    const char *dev = opt_str(o, "--device", "cpu");
    cc.backend = strncmp(dev, "cuda", 4) ? GPUML_COMM_MPI : GPUML_COMM_NCCL;
    cc.timeout_s = opt_f(o, "--comm-timeout", 120.0);
    DIE_IF(gpuml_comm_create(&cc, &e.comm));
    e.rank = gpuml_comm_rank(e.comm);
    e.size = gpuml_comm_size(e.comm);
    gpuml_ctx_config cfg;
    gpuml_ctx_config_init_defaults(&cfg);
    cfg.device = gpuml_comm_device(e.comm); /* CUDA device from the local rank */
    fprintf(stderr, "rank %d of %d (local rank %d): device %s:%d\n", e.rank, e.size, gpuml_comm_local_rank(e.comm),
            cfg.device.type == GPUML_DEVICE_CUDA ? "cuda" : "cpu", cfg.device.index);
    cfg.num_threads = (int)opt_int(o, "--threads", 0);
    DIE_IF(gpuml_ctx_create(&cfg, &e.ctx));
    return e;
}

/* A step that fails because a peer died or stalled: report, exit non-zero.
 * --fault-rank R --fault-step S (testing): rank R kills itself at step S. */
static inline void dist_step_check(const dist_env *e, const opts *o, int64_t step, gpuml_status st)
{
    if (e->comm && opt_int(o, "--fault-rank", -1) == e->rank && opt_int(o, "--fault-step", -1) == step)
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

/* The metrics file (rank 0 only; appended to when resuming) and the model
 * from its JSON config, seeded by --seed; --init-out saves the initial
 * weights (e.g. for a peer implementation to start from). */
static inline gpuml_model *driver_model(const opts *o, const dist_env *e, const char *config, const char *metrics_def,
                                        int resume, FILE **metrics)
{
    *metrics = fopen(e->rank == 0 ? opt_str(o, "--metrics", metrics_def) : "/dev/null", resume ? "a" : "w");
    if (!*metrics) {
        fprintf(stderr, "cannot open the metrics file\n");
        exit(2);
    }
    uint64_t seed = (uint64_t)opt_int(o, "--seed", 1);
    gpuml_ctx_set_seed(e->ctx, seed);
    gpuml_model *model;
    DIE_IF(gpuml_model_create_from_file(e->ctx, config, &model));
    DIE_IF(gpuml_model_init_params(model, seed));
    const char *init_out = opt_str(o, "--init-out", NULL);
    if (init_out && e->rank == 0)
        DIE_IF(gpuml_model_save(model, init_out));
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
    p->tty = isatty(2);
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
        fprintf(stderr, "\r[%s] %3d%% %lld/%lld %s %.1f ev/s ETA %02d:%02d   ", bar, (int)(100 * frac),
                (long long)step, (long long)p->total, msg, events_per_s, (int)eta / 60, (int)eta % 60);
        if (step >= p->total)
            fputc('\n', stderr);
    } else if (step % 20 == 0 || step >= p->total) {
        fprintf(stderr, "step %lld/%lld %s %.1f ev/s eta %.0fs\n", (long long)step, (long long)p->total, msg,
                events_per_s, eta);
    }
    p->last = t;
}

/* Largest value of an integer per-event field ("event/n_showers"). */
static inline int64_t field_max_i32(const char *path, const char *field)
{
    gpuml_ctx_config cfg;
    gpuml_ctx_config_init_defaults(&cfg);
    cfg.num_threads = 1;
    gpuml_ctx *ctx;
    DIE_IF(gpuml_ctx_create(&cfg, &ctx));
    gpuml_dataset *ds;
    DIE_IF(gpuml_dataset_open(path, &ds));
    gpuml_tensor *rs, *v;
    const char *names[1] = {field};
    DIE_IF(gpuml_dataset_read(ds, ctx, 0, gpuml_dataset_num_events(ds), 1, names, &rs, &v));
    const int32_t *p = gpuml_tensor_data(v);
    int64_t mx = 0;
    for (int64_t i = 0; i < gpuml_tensor_numel(v); i++)
        mx = p[i] > mx ? p[i] : mx;
    gpuml_tensor_destroy(rs);
    gpuml_tensor_destroy(v);
    gpuml_dataset_close(ds);
    gpuml_ctx_destroy(ctx);
    return mx;
}

#endif
