/*
 * bench/bench_knn.c - gpuml_knn on HGCAL-like data, and the data for the
 * peers (bench/knn_peers.py runs scipy, scikit-learn, FAISS and
 * torch_cluster on the same files and threads).
 *
 * Generator: hits in the two endcaps (|z| 320..520 cm, r 30..170 cm); 85% of
 * them in showers - gaussian blobs with log-normal transverse widths
 * (median 1.5 cm), 4x longer along z, log-normal hit counts - the rest
 * uniform noise over the volume. With D = 4 the fourth coordinate is a
 * per-shower value with the shower's transverse spread (as a learned
 * clustering coordinate would be), uniform for noise. Every point is a
 * query; timings include the index build (the graph changes every step).
 *
 *   bench_knn [--out DIR] [--threads T] [--repeat R] [--algo auto|brute|grid]
 *             [--only NAME] [--no-write] [--csr] [--device cpu|cuda]
 *
 * --csr also times gpuml_knn_reverse (the reverse adjacency for the
 * backward) and gpuml_knn_backward, best of R.
 *
 * Prints one line per configuration (best and median wall time of R runs,
 * and the least process CPU time of a run: the work, robust to a loaded
 * machine) and, with
 * --out, writes DIR/<name>.x.npy, .splits.npy, .idx.npy and DIR/gpuml.csv.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sys/stat.h>

#include <gpuml/gpuml.h>

static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static double uni(uint64_t *s, double lo, double hi)
{
    return lo + (hi - lo) * ((double)(rng_next(s) >> 11) * 0x1.0p-53);
}
static double gauss(uint64_t *s)
{
    double u1 = uni(s, 1e-300, 1.0), u2 = uni(s, 0.0, 1.0);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

/* One event of n hits into x [n, d]. */
static void gen_event(uint64_t *s, int64_t n, int d, float *x)
{
    int64_t nshower_hits = (int64_t)(0.85 * (double)n);
    int ns = (int)(n / 1000) + 2; /* showers */
    double *w = malloc((size_t)ns * sizeof *w), wsum = 0;
    for (int i = 0; i < ns; i++)
        w[i] = exp(gauss(s)), wsum += w[i];
    int64_t i = 0;
    for (int sh = 0; sh < ns; sh++) {
        int64_t m = sh == ns - 1 ? nshower_hits - i : (int64_t)((double)nshower_hits * w[sh] / wsum);
        double r = uni(s, 40, 160), phi = uni(s, 0, 6.283185307179586), side = uni(s, 0, 1) < 0.5 ? -1 : 1;
        double cx = r * cos(phi), cy = r * sin(phi), cz = side * uni(s, 330, 400), c4 = uni(s, -100, 100);
        double sig = 1.5 * exp(0.5 * gauss(s));
        for (int64_t h = 0; h < m && i < nshower_hits; h++, i++) {
            float *p = x + i * d;
            p[0] = (float)(cx + sig * gauss(s));
            p[1] = (float)(cy + sig * gauss(s));
            p[2] = (float)(cz + side * fabs(4 * sig * gauss(s)));
            if (d > 3)
                p[3] = (float)(c4 + sig * gauss(s));
        }
    }
    for (; i < n; i++) {
        float *p = x + i * d;
        double r = sqrt(uni(s, 30 * 30, 170 * 170)), phi = uni(s, 0, 6.283185307179586);
        p[0] = (float)(r * cos(phi));
        p[1] = (float)(r * sin(phi));
        p[2] = (float)((uni(s, 0, 1) < 0.5 ? -1 : 1) * uni(s, 320, 520));
        if (d > 3)
            p[3] = (float)uni(s, -100, 100);
    }
    /* Shuffle rows: input order carries no locality. */
    for (int64_t a = n - 1; a > 0; a--) {
        int64_t b = (int64_t)(rng_next(s) % (uint64_t)(a + 1));
        for (int c = 0; c < d; c++) {
            float t = x[a * d + c];
            x[a * d + c] = x[b * d + c];
            x[b * d + c] = t;
        }
    }
    free(w);
}

static void write_npy(const char *path, const char *descr, int nd, const int64_t *shape, const void *data,
                      size_t nbytes)
{
    FILE *f = fopen(path, "wb");
    if (!f) {
        fprintf(stderr, "cannot write %s\n", path);
        return;
    }
    char hdr[256], shp[96] = "";
    for (int i = 0; i < nd; i++) {
        char t[32];
        snprintf(t, sizeof t, "%lld,%s", (long long)shape[i], nd == 1 ? "" : " ");
        strcat(shp, t);
    }
    int len = snprintf(hdr, sizeof hdr, "{'descr': '%s', 'fortran_order': False, 'shape': (%s), }", descr, shp);
    int total = 10 + len + 1, pad = (64 - total % 64) % 64;
    fwrite("\x93NUMPY\x01\x00", 1, 8, f);
    unsigned short hl = (unsigned short)(len + pad + 1);
    fputc(hl & 0xff, f), fputc(hl >> 8, f);
    fwrite(hdr, 1, (size_t)len, f);
    for (int i = 0; i < pad; i++)
        fputc(' ', f);
    fputc('\n', f);
    fwrite(data, 1, nbytes, f);
    fclose(f);
}

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static double cpu_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

typedef struct {
    const char *name;
    int64_t events, per_event;
} size_cfg;

int main(int argc, char **argv)
{
    const char *out = NULL, *only = NULL;
    int threads = 2, repeat = 5, write = 1, csr = 0, cuda = 0;
    gpuml_knn_algo algo = GPUML_KNN_AUTO;
    for (int a = 1; a < argc; a++) {
        if (!strcmp(argv[a], "--out") && a + 1 < argc)
            out = argv[++a];
        else if (!strcmp(argv[a], "--threads") && a + 1 < argc)
            threads = atoi(argv[++a]);
        else if (!strcmp(argv[a], "--repeat") && a + 1 < argc)
            repeat = atoi(argv[++a]);
        else if (!strcmp(argv[a], "--only") && a + 1 < argc)
            only = argv[++a];
        else if (!strcmp(argv[a], "--algo") && a + 1 < argc) {
            a++;
            algo = !strcmp(argv[a], "brute")  ? GPUML_KNN_BRUTE
                   : !strcmp(argv[a], "grid") ? GPUML_KNN_GRID
                                              : GPUML_KNN_AUTO;
        } else if (!strcmp(argv[a], "--no-write"))
            write = 0;
        else if (!strcmp(argv[a], "--csr"))
            csr = 1;
        else if (!strcmp(argv[a], "--device") && a + 1 < argc)
            cuda = !strcmp(argv[++a], "cuda");
        else {
            fprintf(stderr, "usage: %s [--out DIR] [--threads T] [--repeat R] [--algo auto|brute|grid] "
                            "[--only NAME] [--no-write] [--csr] [--device cpu|cuda]\n", argv[0]);
            return 2;
        }
    }
    gpuml_ctx_config cfg;
    gpuml_ctx_config_init_defaults(&cfg);
    cfg.num_threads = threads;
    if (cuda)
        cfg.device.type = GPUML_DEVICE_CUDA; /* times include the synchronisation */
    gpuml_ctx *ctx;
    if (gpuml_ctx_create(&cfg, &ctx) != GPUML_OK) {
        fprintf(stderr, "%s\n", gpuml_last_error());
        return 1;
    }
    static const size_cfg sizes[] = {{"10k", 1, 10000}, {"50k", 1, 50000}, {"200k", 1, 200000}, {"64x2k", 64, 2000}};
    FILE *csv = NULL;
    if (out && write) {
        mkdir(out, 0755); /* may exist already */
        char p[512];
        snprintf(p, sizeof p, "%s/gpuml.csv", out);
        csv = fopen(p, "w");
        if (!csv) {
            fprintf(stderr, "cannot write %s\n", p);
            return 1;
        }
        fprintf(csv, "name,n,events,d,k,threads,best_s,median_s,cpu_s\n");
    }
    printf("%-16s %8s %6s %2s %3s %10s %10s %10s %8s %8s\n", "config", "N", "events", "D", "k", "best[s]", "median[s]",
           "cpu[s]", csr ? "csr[s]" : "", csr ? "bwd[s]" : "");
    for (size_t si = 0; si < sizeof sizes / sizeof *sizes; si++)
        for (int d = 3; d <= 4; d++) {
            int64_t nev = sizes[si].events, n = nev * sizes[si].per_event;
            float *x = malloc((size_t)(n * d) * sizeof *x);
            int64_t *splits = malloc((size_t)(nev + 1) * sizeof *splits);
            uint64_t seed = 1000 + si * 10 + (uint64_t)d;
            splits[0] = 0;
            for (int64_t e = 0; e < nev; e++) {
                gen_event(&seed, sizes[si].per_event, d, x + splits[e] * d);
                splits[e + 1] = splits[e] + sizes[si].per_event;
            }
            for (int ki = 0; ki < 2; ki++) {
                int k = ki ? 40 : 16;
                char name[64];
                snprintf(name, sizeof name, "%s_d%d_k%d", sizes[si].name, d, k);
                if (only && !strstr(name, only))
                    continue;
                gpuml_tensor *tx, *ts, *ti, *td, *trp = NULL, *tcol = NULL, *tg = NULL, *tgx = NULL;
                if (cuda) { /* inputs on the device, copied once */
                    gpuml_tensor_create(ctx, GPUML_F32, 2, (int64_t[]){n, d}, &tx);
                    gpuml_tensor_copy_from_host(ctx, tx, x, (size_t)(n * d) * sizeof *x);
                    gpuml_tensor_create(ctx, GPUML_I64, 1, (int64_t[]){nev + 1}, &ts);
                    gpuml_tensor_copy_from_host(ctx, ts, splits, (size_t)(nev + 1) * sizeof *splits);
                } else {
                    gpuml_tensor_wrap(x, cfg.device, GPUML_F32, 2, (int64_t[]){n, d}, NULL, NULL, &tx);
                    gpuml_tensor_wrap(splits, cfg.device, GPUML_I64, 1, (int64_t[]){nev + 1}, NULL, NULL, &ts);
                }
                gpuml_tensor_create(ctx, GPUML_I32, 2, (int64_t[]){n, k}, &ti);
                gpuml_tensor_create(ctx, GPUML_F32, 2, (int64_t[]){n, k}, &td);
                if (csr) {
                    gpuml_tensor_create(ctx, GPUML_I64, 1, (int64_t[]){n + 1}, &trp);
                    gpuml_tensor_create(ctx, GPUML_I64, 1, (int64_t[]){n * k}, &tcol);
                    gpuml_tensor_create(ctx, GPUML_F32, 2, (int64_t[]){n, k}, &tg);
                    gpuml_tensor_create(ctx, GPUML_F32, 2, (int64_t[]){n, d}, &tgx);
                    gpuml_fill(ctx, tg, 0.5);
                }
                gpuml_knn_params p;
                gpuml_knn_params_init_defaults(&p);
                p.k = k;
                p.algo = algo;
                double *t = malloc((size_t)(repeat + 1) * sizeof *t), tcsr = 1e30, tcpu = 1e30, tbwd = 1e30;
                for (int r = 0; r <= repeat; r++) { /* run 0 warms the allocator and caches */
                    double t0 = now(), c0 = cpu_now();
                    gpuml_status st = gpuml_knn_ex(ctx, tx, ts, &p, ti, td, NULL, NULL);
                    if (st == GPUML_OK)
                        st = gpuml_ctx_synchronize(ctx);
                    t[r] = now() - t0;
                    if (r > 0 && cpu_now() - c0 < tcpu)
                        tcpu = cpu_now() - c0;
                    if (st != GPUML_OK) {
                        fprintf(stderr, "%s: %s\n", name, gpuml_last_error());
                        return 1;
                    }
                    if (csr) {
                        t0 = now();
                        gpuml_knn_reverse(ctx, ti, trp, tcol);
                        gpuml_ctx_synchronize(ctx);
                        double tc = now() - t0;
                        tcsr = tc < tcsr ? tc : tcsr;
                        t0 = now();
                        gpuml_knn_backward(ctx, tx, ti, tg, trp, tcol, tgx);
                        gpuml_ctx_synchronize(ctx);
                        tc = now() - t0;
                        tbwd = tc < tbwd ? tc : tbwd;
                    }
                }
                qsort(t + 1, (size_t)repeat, sizeof *t, cmp_double);
                double best = t[1], med = t[1 + repeat / 2];
                printf("%-16s %8lld %6lld %2d %3d %10.4f %10.4f %10.4f", name, (long long)n, (long long)nev, d, k, best,
                       med, tcpu);
                if (csr)
                    printf(" %8.4f %8.4f", tcsr, tbwd);
                printf("\n");
                fflush(stdout);
                if (csv)
                    fprintf(csv, "%s,%lld,%lld,%d,%d,%d,%.6f,%.6f,%.6f\n", name, (long long)n, (long long)nev, d, k,
                            threads, best, med, tcpu);
                if (out && write) {
                    char pth[512];
                    snprintf(pth, sizeof pth, "%s/%s.idx.npy", out, name);
                    int32_t *hidx = malloc((size_t)(n * k) * 4);
                    gpuml_tensor_copy_to_host(ctx, ti, hidx, (size_t)(n * k) * 4);
                    write_npy(pth, "<i4", 2, (int64_t[]){n, k}, hidx, (size_t)(n * k) * 4);
                    free(hidx);
                    if (ki == 0) {
                        char base[64];
                        snprintf(base, sizeof base, "%s_d%d", sizes[si].name, d);
                        snprintf(pth, sizeof pth, "%s/%s.x.npy", out, base);
                        write_npy(pth, "<f4", 2, (int64_t[]){n, d}, x, (size_t)(n * d) * 4);
                        snprintf(pth, sizeof pth, "%s/%s.splits.npy", out, base);
                        write_npy(pth, "<i8", 1, (int64_t[]){nev + 1}, splits, (size_t)(nev + 1) * 8);
                    }
                }
                free(t);
                gpuml_tensor_destroy(tx), gpuml_tensor_destroy(ts), gpuml_tensor_destroy(ti);
                gpuml_tensor_destroy(td), gpuml_tensor_destroy(trp), gpuml_tensor_destroy(tcol);
                gpuml_tensor_destroy(tg), gpuml_tensor_destroy(tgx);
            }
            free(x);
            free(splits);
        }
    if (csv)
        fclose(csv);
    gpuml_ctx_destroy(ctx);
    return 0;
}
