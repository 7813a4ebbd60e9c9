/* bench_layers: one GravNetConv and one ParticleNet EdgeConv block, forward +
 * backward, on the sizes of issue 5, against PyTorch + PyG (bench/layers_peers.py
 * on the same data, which this program writes to an HDF5 file).
 *
 *   bench_layers [--out layers_data.h5] [--reps 5] [--threads 2] [--layer gravnet|particlenet]
 *                [--device cpu|cuda]
 *
 * GravNetConv: 20 000 hits in 4 events, in 64, space 4, propagate 22, k 40, out 64.
 * EdgeConv block (ParticleNet): 128 jets x 50 particles, 2-D coordinates,
 * 64 features, k 16, widths 64-64-64.
 * Time: best of --reps steps (forward + backward, a fixed random seed
 * gradient). Memory: the caching allocator's peak bytes in use during a step
 * above what the inputs and parameters hold, and the process's peak resident
 * set during the steps (VmHWM, restarted just before them) above its resident
 * set just before them - the measure bench/layers_peers.py takes of PyTorch.
 * --layer NAME runs one workload only (a fresh process per layer). */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <gpuml/gpuml.h>

#define DIE_IF(x)                                                                               \
    do {                                                                                        \
        gpuml_status s_ = (x);                                                                  \
        if (s_ != GPUML_OK) {                                                                   \
            fprintf(stderr, "%s: %s: %s\n", #x, gpuml_status_string(s_), gpuml_last_error());   \
            exit(1);                                                                            \
        }                                                                                       \
    } while (0)

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* VmRSS or VmHWM (peak) of this process in KiB, from /proc/self/status. */
static long status_kb(const char *key)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    size_t n = strlen(key);
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, key, n) && line[n] == ':')
            v = atol(line + n + 1);
    if (f)
        fclose(f);
    return v;
}

/* Restart the peak (VmHWM) from the current resident set (Linux >= 4.0). */
static void reset_peak_rss(void)
{
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (f) {
        fputs("5", f);
        fclose(f);
    }
}

static uint64_t g_seed = 12345;
static float frand(void)
{
    g_seed = g_seed * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((double)(g_seed >> 40) / (double)(1ull << 24)) * 2.0f - 1.0f;
}

/* Filled on the host and copied in (the context may be on a GPU). */
static gpuml_tensor *rand_tensor(gpuml_ctx *ctx, int nd, const int64_t *shape, float scale)
{
    gpuml_tensor *t;
    DIE_IF(gpuml_tensor_create(ctx, GPUML_F32, nd, shape, &t));
    int64_t n = gpuml_tensor_numel(t);
    float *p = malloc((size_t)(n ? n : 1) * sizeof *p);
    for (int64_t i = 0; i < n; i++)
        p[i] = scale * frand();
    DIE_IF(gpuml_tensor_copy_from_host(ctx, t, p, (size_t)n * sizeof *p));
    free(p);
    return t;
}

typedef struct {
    const char *name, *config;
    int n_inputs;
    int64_t rows, feats[2], events;
} workload;

static void run(gpuml_ctx *ctx, const workload *w, int reps, gpuml_h5_writer *out)
{
    gpuml_model *m;
    DIE_IF(gpuml_model_create(ctx, w->config, &m));
    DIE_IF(gpuml_model_init_params(m, 1));
    gpuml_tensor *ins[2];
    for (int i = 0; i < w->n_inputs; i++)
        ins[i] = rand_tensor(ctx, 2, (int64_t[]){w->rows, w->feats[i]}, i == 0 && w->n_inputs == 2 ? 1.0f : 1.0f);
    int64_t nrs = w->events + 1;
    gpuml_tensor *rs;
    DIE_IF(gpuml_tensor_create(ctx, GPUML_I64, 1, &nrs, &rs));
    int64_t *r = malloc((size_t)nrs * sizeof *r);
    for (int64_t e = 0; e <= w->events; e++)
        r[e] = e * w->rows / w->events;
    DIE_IF(gpuml_tensor_copy_from_host(ctx, rs, r, (size_t)nrs * sizeof *r));
    free(r);
    gpuml_tape *t;
    DIE_IF(gpuml_tape_create(ctx, &t));
    gpuml_var *outv;
    const gpuml_tensor *cins[2] = {ins[0], w->n_inputs > 1 ? ins[1] : NULL};
    DIE_IF(gpuml_model_forward(m, t, cins, rs, &outv));
    int64_t cout = gpuml_tensor_dim(gpuml_var_value(outv), 1);
    gpuml_tensor *seed = rand_tensor(ctx, 2, (int64_t[]){w->rows, cout}, 1.0f);
    gpuml_tape_reset(t);
    gpuml_tape_destroy(t); /* start from a cold tape to measure memory */
    DIE_IF(gpuml_tape_create(ctx, &t));
    gpuml_ctx_release_cached(ctx);
    gpuml_alloc_stats before;
    gpuml_ctx_alloc_stats(ctx, 0, &before);
    gpuml_ctx_reset_peak(ctx);
    reset_peak_rss();
    long rss0 = status_kb("VmRSS");
    double best = 1e30;
    size_t peak = 0;
    for (int rep = 0; rep < reps; rep++) {
        double t0 = now_s();
        gpuml_tape_reset(t);
        DIE_IF(gpuml_model_zero_grad(m));
        DIE_IF(gpuml_model_forward(m, t, cins, rs, &outv));
        DIE_IF(gpuml_backward(t, outv, seed));
        DIE_IF(gpuml_ctx_synchronize(ctx)); /* on a GPU the step ends when the device is done */
        double dt = now_s() - t0;
        best = dt < best ? dt : best;
        if (rep == 0) {
            gpuml_alloc_stats s;
            gpuml_ctx_alloc_stats(ctx, 0, &s);
            peak = s.bytes_peak - before.bytes_in_use;
        }
    }
    long rss1 = status_kb("VmHWM");
    printf("gpuml %-12s forward+backward best %8.2f ms   peak (allocator) %7.1f MiB   peak RSS growth %7.1f MiB\n",
           w->name, 1e3 * best, (double)peak / (1 << 20), (double)(rss1 - rss0) / 1024.0);
    printf("RESULT {\"impl\": \"gpuml\", \"layer\": \"%s\", \"ms\": %.3f, \"peak_mib\": %.2f, \"rss_mib\": %.2f}\n",
           w->name, 1e3 * best, (double)peak / (1 << 20), (double)(rss1 - rss0) / 1024.0);
    if (out) { /* the same data and weights for the peer */
        char p[256];
        for (int i = 0; i < w->n_inputs; i++) {
            snprintf(p, sizeof p, "/%s/input%d", w->name, i);
            DIE_IF(gpuml_h5_writer_write(out, ctx, p, ins[i]));
        }
        snprintf(p, sizeof p, "/%s/row_splits", w->name);
        DIE_IF(gpuml_h5_writer_write(out, ctx, p, rs));
        snprintf(p, sizeof p, "/%s/seed", w->name);
        DIE_IF(gpuml_h5_writer_write(out, ctx, p, seed));
        snprintf(p, sizeof p, "/%s", w->name);
        DIE_IF(gpuml_h5_writer_set_attr_string(out, p, "config", gpuml_model_config(m)));
        for (int i = 0; i < gpuml_model_num_params(m); i++) {
            const char *name;
            gpuml_tensor *v;
            gpuml_model_param(m, i, &name, &v, NULL, NULL);
            snprintf(p, sizeof p, "/%s/weights/%s", w->name, name);
            DIE_IF(gpuml_h5_writer_write(out, ctx, p, v));
        }
    }
    gpuml_tape_destroy(t);
    for (int i = 0; i < w->n_inputs; i++)
        gpuml_tensor_destroy(ins[i]);
    gpuml_tensor_destroy(rs);
    gpuml_tensor_destroy(seed);
    gpuml_model_destroy(m);
}

int main(int argc, char **argv)
{
    const char *out_path = "layers_data.h5";
    int reps = 5, threads = 2, cuda = 0;
    const char *only = NULL;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--out"))
            out_path = argv[i + 1];
        else if (!strcmp(argv[i], "--reps"))
            reps = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--threads"))
            threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--layer"))
            only = argv[i + 1];
        else if (!strcmp(argv[i], "--device"))
            cuda = !strcmp(argv[i + 1], "cuda");
    }
    gpuml_ctx_config cfg;
    gpuml_ctx_config_init_defaults(&cfg);
    cfg.num_threads = threads;
    if (cuda)
        cfg.device.type = GPUML_DEVICE_CUDA;
    gpuml_ctx *ctx;
    DIE_IF(gpuml_ctx_create(&cfg, &ctx));
    gpuml_h5_writer *w = NULL;
    DIE_IF(gpuml_h5_writer_open(out_path, &w));
    workload loads[] = {
        {"gravnet",
         "{\"inputs\": [{\"name\": \"x\", \"features\": 64}], \"nodes\": [{\"name\": \"g\", \"op\": \"gravnet\", "
         "\"inputs\": [\"x\"], \"out\": 64, \"space\": 4, \"prop\": 22, \"k\": 40}], \"outputs\": [\"g\"]}",
         1, 20000, {64, 0}, 4},
        {"particlenet",
         "{\"inputs\": [{\"name\": \"p\", \"features\": 2}, {\"name\": \"x\", \"features\": 64}], \"nodes\": "
         "[{\"name\": \"b\", \"op\": \"particlenet_block\", \"inputs\": [\"p\", \"x\"], \"k\": 16, "
         "\"widths\": [64, 64, 64]}], \"outputs\": [\"b\"]}",
         2, 128 * 50, {2, 64}, 128},
    };
    printf("bench_layers: %d CPU threads, best of %d\n", threads, reps);
    for (unsigned i = 0; i < sizeof loads / sizeof loads[0]; i++)
        if (!only || !strcmp(only, loads[i].name))
            run(ctx, &loads[i], reps, w);
    DIE_IF(gpuml_h5_writer_commit(w));
    printf("data and weights for bench/layers_peers.py: %s\n", out_path);
    gpuml_ctx_destroy(ctx);
    return 0;
}
