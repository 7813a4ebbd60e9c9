/*
 * bench/bench_graphops.c - op-level timing and peak memory of the fused
 * graph ops, forward and backward, on the sizes of the GravNet / ParticleNet
 * workloads:
 *   GravNet aggregation: N = 20000 hits in 4 events, P = 22, k = 40 (exact
 *     kNN on 4-D coordinates, self included), alpha = 10;
 *   EdgeConv: 128 jets x 50 particles, k = 16 neighbours without self (the
 *     graph has 17 slots, exclude_self = 1), F = C = 64: first linear layer
 *     + mean over neighbours, and batch norm over the [N, 16, 64] edges.
 *
 *   bench_graphops [--threads T] [--reps R] [--dump DIR]
 *
 * Prints the best of R runs (after one warm-up) of each step on the CPU
 * with T threads (default 2, 10 reps), and the peak of the context
 * allocator's bytes in use above the inputs (outputs, gradients and
 * scratch). --dump DIR writes the inputs, the upstream gradients and
 * gpuml's outputs as raw little-endian arrays, which bench/graphops_peers.py
 * reads to run PyTorch / PyTorch Geometric on the same data and compare.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <gpuml/gpuml.h>

#include "../examples/common/cli.h"

#define CHECK(x)                                                                        \
    do {                                                                                \
        gpuml_status st_ = (x);                                                         \
        if (st_ != GPUML_OK) {                                                          \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #x, gpuml_last_error()); \
            exit(1);                                                                    \
        }                                                                               \
    } while (0)

static uint64_t rng = 0x1234567ull;
static double urand(void)
{
    uint64_t z = (rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return (double)((z ^ (z >> 31)) >> 11) * 0x1.0p-53;
}
static double nrand(void) { return sqrt(-2 * log(1 - urand())) * cos(6.283185307179586 * urand()); }

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Exact kNN by brute force per event (slot 0 = self), as gpuml_knn defines
 * it: ascending (dist2, index), -1 / +inf padding. */
static void knn(const float *pts, int64_t n, int dim, int64_t ev_size, int k, int32_t *idx, float *d2)
{
    for (int64_t i = 0; i < n; i++) {
        int64_t e0 = i / ev_size * ev_size, e1 = e0 + ev_size < n ? e0 + ev_size : n;
        int32_t *bi = idx + i * k;
        float *bd = d2 + i * k;
        for (int s = 0; s < k; s++)
            bi[s] = -1, bd[s] = INFINITY;
        int cnt = 0;
        for (int64_t j = e0; j < e1; j++) {
            float d = 0;
            for (int c = 0; c < dim; c++) {
                float t = pts[i * dim + c] - pts[j * dim + c];
                d += t * t;
            }
            if (cnt == k && !(d < bd[k - 1] || (d == bd[k - 1] && j < bi[k - 1])))
                continue;
            int s = cnt < k ? cnt++ : k - 1;
            while (s > 0 && (bd[s - 1] > d || (bd[s - 1] == d && bi[s - 1] > j))) {
                bd[s] = bd[s - 1];
                bi[s] = bi[s - 1];
                s--;
            }
            bd[s] = d;
            bi[s] = (int32_t)j;
        }
    }
}

static gpuml_tensor *tensor(gpuml_ctx *ctx, gpuml_dtype dt, int nd, const int64_t *shape, const void *host)
{
    gpuml_tensor *t;
    CHECK(gpuml_tensor_create(ctx, dt, nd, shape, &t));
    if (host)
        CHECK(gpuml_tensor_copy_from_host(ctx, t, host, gpuml_tensor_nbytes(t)));
    else
        CHECK(gpuml_fill(ctx, t, 0.0));
    return t;
}

static float *randn(int64_t n, double scale)
{
    float *p = malloc((size_t)n * sizeof *p);
    for (int64_t i = 0; i < n; i++)
        p[i] = (float)(scale * nrand());
    return p;
}

static const char *dump_dir;
static void dump(const char *name, const void *p, size_t bytes)
{
    if (!dump_dir)
        return;
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dump_dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(p, 1, bytes, f) != bytes) {
        fprintf(stderr, "cannot write %s\n", path);
        exit(1);
    }
    fclose(f);
}
static void dump_t(gpuml_ctx *ctx, const char *name, const gpuml_tensor *t)
{
    if (!dump_dir)
        return;
    size_t n = gpuml_tensor_nbytes(t);
    void *p = malloc(n ? n : 1);
    CHECK(gpuml_tensor_copy_to_host(ctx, t, p, n));
    dump(name, p, n);
    free(p);
}

typedef void (*step_fn)(gpuml_ctx *ctx, void *u);
static double best_of(gpuml_ctx *ctx, int reps, step_fn f, void *u)
{
    f(ctx, u); /* warm-up: the allocator's cache fills */
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        double t0 = now();
        f(ctx, u);
        CHECK(gpuml_ctx_synchronize(ctx));
        double t = now() - t0;
        best = t < best ? t : best;
    }
    return best;
}

/* ---- GravNet ------------------------------------------------------------ */
typedef struct {
    gpuml_tensor *h, *idx, *d2, *out, *am, *gout, *gh, *gd2;
} gn_args;
static void gn_fwd(gpuml_ctx *ctx, void *u)
{
    gn_args *a = u;
    CHECK(gpuml_gravnet_aggregate(ctx, a->h, a->idx, a->d2, 10.0f, 0, a->out, a->am));
}
static void gn_bwd(gpuml_ctx *ctx, void *u)
{
    gn_args *a = u;
    CHECK(gpuml_gravnet_aggregate_backward(ctx, a->h, a->idx, a->d2, 10.0f, 0, a->am, a->gout, NULL, NULL, a->gh,
                                           a->gd2));
}
static void gn_both(gpuml_ctx *ctx, void *u)
{
    gn_fwd(ctx, u);
    gn_bwd(ctx, u);
}

static void bench_gravnet(gpuml_ctx *ctx, int reps)
{
    const int64_t n = 20000, ev = 5000, P = 22, S = 4;
    const int k = 40;
    float *s = malloc((size_t)(n * S) * sizeof *s);
    for (int64_t i = 0; i < n * S; i++)
        s[i] = (float)urand();
    int32_t *idx = malloc((size_t)(n * k) * sizeof *idx);
    float *d2 = malloc((size_t)(n * k) * sizeof *d2), *h = randn(n * P, 1.0), *gout = randn(n * 2 * P, 1.0);
    knn(s, n, (int)S, ev, k, idx, d2);
    gn_args a;
    a.h = tensor(ctx, GPUML_F32, 2, (int64_t[]){n, P}, h);
    a.idx = tensor(ctx, GPUML_I32, 2, (int64_t[]){n, k}, idx);
    a.d2 = tensor(ctx, GPUML_F32, 2, (int64_t[]){n, k}, d2);
    a.gout = tensor(ctx, GPUML_F32, 2, (int64_t[]){n, 2 * P}, gout);
    gpuml_alloc_stats st0, st1;
    gpuml_ctx_release_cached(ctx);
    gpuml_ctx_reset_peak(ctx);
    gpuml_ctx_alloc_stats(ctx, 0, &st0);
    a.out = tensor(ctx, GPUML_F32, 2, (int64_t[]){n, 2 * P}, NULL);
    a.am = tensor(ctx, GPUML_I32, 2, (int64_t[]){n, P}, NULL);
    a.gh = tensor(ctx, GPUML_F32, 2, (int64_t[]){n, P}, NULL);
    a.gd2 = tensor(ctx, GPUML_F32, 2, (int64_t[]){n, k}, NULL);
    gn_both(ctx, &a);
    gpuml_ctx_alloc_stats(ctx, 0, &st1);
    double tf = best_of(ctx, reps, gn_fwd, &a), tb = best_of(ctx, reps, gn_bwd, &a), tt = best_of(ctx, reps, gn_both, &a);
    printf("gravnet_aggregate N=%lld P=%lld k=%d: forward %.2f ms, backward %.2f ms, forward+backward %.2f ms, "
           "peak %.2f MiB\n",
           (long long)n, (long long)P, k, 1e3 * tf, 1e3 * tb, 1e3 * tt,
           (double)(st1.bytes_peak - st0.bytes_in_use) / 1048576.0);
    dump("gn_h.f32", h, (size_t)(n * P) * 4);
    dump("gn_idx.i32", idx, (size_t)(n * k) * 4);
    dump("gn_d2.f32", d2, (size_t)(n * k) * 4);
    dump("gn_gout.f32", gout, (size_t)(n * 2 * P) * 4);
    dump_t(ctx, "gn_out.f32", a.out);
    dump_t(ctx, "gn_gh.f32", a.gh);
    dump_t(ctx, "gn_gd2.f32", a.gd2);
    gpuml_tensor *all[] = {a.h, a.idx, a.d2, a.out, a.am, a.gout, a.gh, a.gd2};
    for (unsigned i = 0; i < sizeof all / sizeof all[0]; i++)
        gpuml_tensor_destroy(all[i]);
    free(s), free(idx), free(d2), free(h), free(gout);
}

/* ---- EdgeConv ----------------------------------------------------------- */
typedef struct {
    gpuml_tensor *x, *idx, *w, *b, *e, *agg, *gagg, *ge, *gx, *gw, *gb;
    gpuml_tensor *mask, *gamma, *beta, *rm, *rv, *y, *sm, *si, *gy, *gbx, *ggamma, *gbeta;
} ec_args;
static void ec_fwd(gpuml_ctx *ctx, void *u)
{
    ec_args *a = u;
    CHECK(gpuml_edge_first_linear(ctx, a->x, a->idx, 1, a->w, a->b, a->e));
    CHECK(gpuml_neighbour_aggregate(ctx, GPUML_REDUCE_MEAN, a->e, a->idx, 1, a->agg, NULL));
}
static void ec_bwd(gpuml_ctx *ctx, void *u)
{
    ec_args *a = u;
    CHECK(gpuml_neighbour_aggregate_backward(ctx, GPUML_REDUCE_MEAN, a->idx, 1, a->gagg, NULL, a->ge));
    CHECK(gpuml_edge_first_linear_backward(ctx, a->x, a->idx, 1, a->w, a->ge, NULL, NULL, a->gx, a->gw, a->gb, 0));
}
static void ec_both(gpuml_ctx *ctx, void *u)
{
    ec_fwd(ctx, u);
    ec_bwd(ctx, u);
}
static void bn_fwd(gpuml_ctx *ctx, void *u)
{
    ec_args *a = u;
    CHECK(gpuml_edge_mask(ctx, a->idx, 1, a->mask));
    CHECK(gpuml_batch_norm(ctx, NULL, a->e, a->mask, a->gamma, a->beta, a->rm, a->rv, a->y, a->sm, a->si));
}
static void bn_bwd(gpuml_ctx *ctx, void *u)
{
    ec_args *a = u;
    CHECK(gpuml_batch_norm_backward(ctx, NULL, a->e, a->mask, a->gamma, a->sm, a->si, a->gy, a->gbx, a->ggamma,
                                    a->gbeta, 0));
}
static void bn_both(gpuml_ctx *ctx, void *u)
{
    bn_fwd(ctx, u);
    bn_bwd(ctx, u);
}

static void bench_edgeconv(gpuml_ctx *ctx, int reps)
{
    const int64_t jets = 128, parts = 50, n = jets * parts, F = 64, C = 64;
    const int k = 17, ke = 16;
    float *pts = randn(n * 2, 0.4);
    int32_t *idx = malloc((size_t)(n * k) * sizeof *idx);
    float *d2 = malloc((size_t)(n * k) * sizeof *d2);
    knn(pts, n, 2, parts, k, idx, d2);
    float *x = randn(n * F, 1.0), *w = randn(C * 2 * F, 1.0 / sqrt(2.0 * F)), *b = randn(C, 0.1);
    float *gagg = randn(n * C, 1.0), *gy = randn(n * ke * C, 1.0);
    ec_args a;
    a.x = tensor(ctx, GPUML_F32, 2, (int64_t[]){n, F}, x);
    a.idx = tensor(ctx, GPUML_I32, 2, (int64_t[]){n, k}, idx);
    a.w = tensor(ctx, GPUML_F32, 2, (int64_t[]){C, 2 * F}, w);
    a.b = tensor(ctx, GPUML_F32, 1, (int64_t[]){C}, b);
    a.gagg = tensor(ctx, GPUML_F32, 2, (int64_t[]){n, C}, gagg);
    gpuml_alloc_stats st0, st1;
    gpuml_ctx_release_cached(ctx);
    gpuml_ctx_reset_peak(ctx);
    gpuml_ctx_alloc_stats(ctx, 0, &st0);
    a.e = tensor(ctx, GPUML_F32, 3, (int64_t[]){n, ke, C}, NULL);
    a.agg = tensor(ctx, GPUML_F32, 2, (int64_t[]){n, C}, NULL);
    a.ge = tensor(ctx, GPUML_F32, 3, (int64_t[]){n, ke, C}, NULL);
    a.gx = tensor(ctx, GPUML_F32, 2, (int64_t[]){n, F}, NULL);
    a.gw = tensor(ctx, GPUML_F32, 2, (int64_t[]){C, 2 * F}, NULL);
    a.gb = tensor(ctx, GPUML_F32, 1, (int64_t[]){C}, NULL);
    ec_both(ctx, &a);
    gpuml_ctx_alloc_stats(ctx, 0, &st1);
    double tf = best_of(ctx, reps, ec_fwd, &a), tb = best_of(ctx, reps, ec_bwd, &a), tt = best_of(ctx, reps, ec_both, &a);
    printf("edge_first_linear + neighbour_aggregate(mean) N=%lld k=%d F=%lld C=%lld: forward %.2f ms, backward %.2f ms, "
           "forward+backward %.2f ms, peak %.2f MiB\n",
           (long long)n, ke, (long long)F, (long long)C, 1e3 * tf, 1e3 * tb, 1e3 * tt,
           (double)(st1.bytes_peak - st0.bytes_in_use) / 1048576.0);

    a.mask = tensor(ctx, GPUML_U8, 2, (int64_t[]){n, ke}, NULL);
    float ones[64], zeros[64];
    for (int i = 0; i < 64; i++)
        ones[i] = 1, zeros[i] = 0;
    a.gamma = tensor(ctx, GPUML_F32, 1, (int64_t[]){C}, ones);
    a.beta = tensor(ctx, GPUML_F32, 1, (int64_t[]){C}, zeros);
    a.rm = tensor(ctx, GPUML_F32, 1, (int64_t[]){C}, zeros);
    a.rv = tensor(ctx, GPUML_F32, 1, (int64_t[]){C}, ones);
    a.gy = tensor(ctx, GPUML_F32, 3, (int64_t[]){n, ke, C}, gy);
    gpuml_ctx_release_cached(ctx);
    gpuml_ctx_reset_peak(ctx);
    gpuml_ctx_alloc_stats(ctx, 0, &st0);
    a.y = tensor(ctx, GPUML_F32, 3, (int64_t[]){n, ke, C}, NULL);
    a.gbx = tensor(ctx, GPUML_F32, 3, (int64_t[]){n, ke, C}, NULL);
    a.sm = tensor(ctx, GPUML_F32, 1, (int64_t[]){C}, NULL);
    a.si = tensor(ctx, GPUML_F32, 1, (int64_t[]){C}, NULL);
    a.ggamma = tensor(ctx, GPUML_F32, 1, (int64_t[]){C}, NULL);
    a.gbeta = tensor(ctx, GPUML_F32, 1, (int64_t[]){C}, NULL);
    bn_both(ctx, &a);
    gpuml_ctx_alloc_stats(ctx, 0, &st1);
    double bf = best_of(ctx, reps, bn_fwd, &a), bb = best_of(ctx, reps, bn_bwd, &a), bt = best_of(ctx, reps, bn_both, &a);
    printf("batch_norm (training, masked) rows=%lld C=%lld: forward %.2f ms, backward %.2f ms, forward+backward "
           "%.2f ms, peak %.2f MiB\n",
           (long long)(n * ke), (long long)C, 1e3 * bf, 1e3 * bb, 1e3 * bt,
           (double)(st1.bytes_peak - st0.bytes_in_use) / 1048576.0);

    dump("ec_x.f32", x, (size_t)(n * F) * 4);
    dump("ec_idx.i32", idx, (size_t)(n * k) * 4);
    dump("ec_w.f32", w, (size_t)(C * 2 * F) * 4);
    dump("ec_b.f32", b, (size_t)C * 4);
    dump("ec_gagg.f32", gagg, (size_t)(n * C) * 4);
    dump("ec_gy.f32", gy, (size_t)(n * ke * C) * 4);
    ec_fwd(ctx, &a); /* e as the edge-linear output again */
    ec_bwd(ctx, &a);
    dump_t(ctx, "ec_agg.f32", a.agg);
    dump_t(ctx, "ec_gx.f32", a.gx);
    dump_t(ctx, "ec_gw.f32", a.gw);
    dump_t(ctx, "ec_gb.f32", a.gb);
    gpuml_tensor *all[] = {a.x, a.idx, a.w, a.b, a.e, a.agg, a.gagg, a.ge, a.gx, a.gw, a.gb, a.mask, a.gamma,
                           a.beta, a.rm, a.rv, a.y, a.sm, a.si, a.gy, a.gbx, a.ggamma, a.gbeta};
    for (unsigned i = 0; i < sizeof all / sizeof all[0]; i++)
        gpuml_tensor_destroy(all[i]);
    free(pts), free(idx), free(d2), free(x), free(w), free(b), free(gagg), free(gy);
}

int main(int argc, char **argv)
{
    int threads = 2, reps = 10;
    cli_opt table[] = {
        CLI_INT("threads", &threads, 0, 4096, "CPU threads (0: all cores)"),
        CLI_INT("reps", &reps, 1, 1000000, "repetitions (best is reported)"),
        CLI_STR("dump", &dump_dir, "DIR", "write inputs and gpuml's outputs here (bench/graphops_peers.py)"), CLI_END};
    cli_parse(argc, argv, "GravNet aggregation and EdgeConv graph ops, forward + backward", table);
    gpuml_ctx_config cfg;
    gpuml_ctx_config_init_defaults(&cfg);
    cfg.num_threads = threads;
    gpuml_ctx *ctx;
    CHECK(gpuml_ctx_create(&cfg, &ctx));
    printf("gpuml %s, CPU, %d threads, best of %d\n", gpuml_version(), threads, reps);
    bench_gravnet(ctx, reps);
    bench_edgeconv(ctx, reps);
    gpuml_ctx_destroy(ctx);
    return 0;
}
