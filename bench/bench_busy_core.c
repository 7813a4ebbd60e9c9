/* bench/bench_busy_core.c - GravNet training with a core taken by another
 * process, against the same run without it (issue 13: nothing gpuml waits
 * on may burn a core another thread needs).
 *
 *   bench_busy_core DATA.h5 CONFIG.json [executor] [threads] [steps] [rounds]
 *     executor: pool (default: what a context uses when nobody says),
 *               openmp (libgomp's team; spins at barriers unless
 *               OMP_WAIT_POLICY=passive) or serial
 *     threads:  workers of the training context (default 2)
 *     steps:    timed training steps per run (default 30; 3 more warm up)
 *     rounds:   quiet/busy pairs, back to back (default 3)
 *
 * Each round trains `steps` steps on a quiet machine, then again while a
 * forked child spins on one core (a plain busy loop at normal priority),
 * and reports busy/quiet throughput. On a machine with C cores and T = C
 * training threads, a fair share is about (C - 1/2) / C of the quiet speed
 * when the waits block (the spinning child gets half a core), and far less
 * when a waiting thread spins. bench/busy_core.sh is the one command: it
 * makes the dataset, clears the OpenMP environment and prints the median.
 * The machine is rarely quiet: compare ratios, not absolute speeds, and
 * repeat. */
#define _POSIX_C_SOURCE 200809L
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <gpuml/gpuml.h>

#define DIE_IF(x)                                                                                          \
    do {                                                                                                   \
        if ((x) != GPUML_OK) {                                                                             \
            fprintf(stderr, "bench_busy_core: %s failed: %s\n", #x, gpuml_last_error());                  \
            exit(1);                                                                                       \
        }                                                                                                  \
    } while (0)

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int64_t max_showers(const char *path)
{
    gpuml_ctx_config cfg;
    gpuml_ctx_config_init_defaults(&cfg);
    cfg.num_threads = 1;
    gpuml_ctx *ctx;
    DIE_IF(gpuml_ctx_create(&cfg, &ctx));
    gpuml_dataset *ds;
    DIE_IF(gpuml_dataset_open(path, &ds));
    gpuml_tensor *rs, *v;
    const char *names[1] = {"event/n_showers"};
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

/* Train `steps` steps after 3 of warm-up; returns events per second. */
static double train(const char *data, const char *config, gpuml_executor_kind kind, int threads, int steps,
                    int64_t nobj)
{
    gpuml_executor *ex = NULL;
    DIE_IF(gpuml_executor_create(kind, threads, &ex));
    gpuml_ctx_config cfg;
    gpuml_ctx_config_init_defaults(&cfg);
    cfg.executor = ex;
    gpuml_ctx *ctx;
    DIE_IF(gpuml_ctx_create(&cfg, &ctx));
    gpuml_model *model;
    DIE_IF(gpuml_model_create_from_file(ctx, config, &model));
    DIE_IF(gpuml_model_init_params(model, 1));
    const char *fields[] = {"features", "truth_id"};
    gpuml_loader_config lc;
    gpuml_loader_config_init_defaults(&lc);
    lc.path = data, lc.fields = fields, lc.num_fields = 2, lc.max_rows = 4000, lc.max_events = 16, lc.seed = 1;
    gpuml_loader *loader;
    DIE_IF(gpuml_loader_create(ctx, &lc, &loader));
    gpuml_trainer_config tc;
    gpuml_trainer_config_init_defaults(&tc);
    tc.oc.max_objects = nobj;
    tc.optim.lr = 1e-3f;
    gpuml_trainer *tr;
    DIE_IF(gpuml_trainer_create(model, &tc, &tr));
    double t0 = 0, events = 0, loss = 0;
    for (int step = 0; step < steps + 3;) {
        gpuml_batch *b;
        DIE_IF(gpuml_loader_next(loader, &b));
        if (!b)
            continue; /* next epoch */
        if (step == 3)
            t0 = now_s(), events = 0;
        gpuml_step_stats s;
        DIE_IF(gpuml_trainer_step_batch(tr, b, &s));
        events += (double)s.events;
        loss += (double)s.loss;
        gpuml_batch_destroy(b);
        step++;
    }
    double rate = events / (now_s() - t0);
    if (getenv("BENCH_BUSY_VERBOSE"))
        fprintf(stderr, "  %s: mean loss %.6f over %d steps, %.0f events\n", "train", loss / (steps + 3), steps + 3,
                events);
    gpuml_trainer_destroy(tr);
    gpuml_loader_destroy(loader);
    gpuml_model_destroy(model);
    gpuml_ctx_destroy(ctx);
    gpuml_executor_destroy(ex);
    return rate;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s DATA.h5 CONFIG.json [pool|openmp|serial] [threads] [steps] [rounds]\n", argv[0]);
        return 2;
    }
    const char *data = argv[1], *config = argv[2], *kname = argc > 3 ? argv[3] : "pool";
    gpuml_executor_kind kind = !strcmp(kname, "openmp")   ? GPUML_EXECUTOR_OPENMP
                               : !strcmp(kname, "serial") ? GPUML_EXECUTOR_SERIAL
                                                          : GPUML_EXECUTOR_POOL;
    int threads = argc > 4 ? atoi(argv[4]) : 2, steps = argc > 5 ? atoi(argv[5]) : 30;
    int rounds = argc > 6 ? atoi(argv[6]) : 3;
    if (threads < 1 || steps < 1 || rounds < 1 || rounds > 64) {
        fprintf(stderr, "bench_busy_core: threads, steps and rounds must be positive (rounds <= 64)\n");
        return 2;
    }
    int64_t nobj = max_showers(data) + 1;
    const char *wp = getenv("OMP_WAIT_POLICY");
    printf("executor %s, %d threads, %d steps, OMP_WAIT_POLICY %s, %ld CPUs online\n", kname, threads, steps,
           wp ? wp : "(unset)", sysconf(_SC_NPROCESSORS_ONLN));
    double ratios[64];
    for (int r = 0; r < rounds; r++) {
        double quiet = train(data, config, kind, threads, steps, nobj);
        fflush(stdout);
        pid_t child = fork();
        if (child < 0) {
            perror("fork");
            return 1;
        }
        if (child == 0) {
            volatile unsigned long spin = 0;
            for (;;)
                spin++;
        }
        double busy = train(data, config, kind, threads, steps, nobj);
        kill(child, SIGKILL);
        waitpid(child, NULL, 0);
        ratios[r] = busy / quiet;
        printf("round %d: quiet %.1f ev/s, one core busy %.1f ev/s, ratio %.3f\n", r + 1, quiet, busy, ratios[r]);
        fflush(stdout);
    }
    qsort(ratios, (size_t)rounds, sizeof ratios[0], cmp_d);
    printf("busy/quiet ratio (median of %d): %.3f\n", rounds, ratios[rounds / 2]);
    return 0;
}
