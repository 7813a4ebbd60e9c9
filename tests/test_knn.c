/*
 * tests/test_knn.c - gpuml_knn and gpuml_knn_backward.
 *
 * The op-table rows (harness.h) check both outputs against a reference with
 * double-precision distances, finite-difference gradients, guard bytes and
 * 1-vs-2-thread bits. The other tests compare neighbour lists EXACTLY with
 * an independent reference that computes dist2 the way the contract defines
 * it (float32, summed in dimension order) and sorts all candidates by
 * (dist2, row): random, clustered, duplicate, lattice (ties), far-from-origin
 * data, NaN/Inf, radius, every event size, k 1..256, D 1..128, brute force vs
 * binned search, and error paths.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"


/* ---- independent reference ------------------------------------------------ */
static float ref_d2f(const float *a, const float *b, int d)
{
    float acc = 0.0f;
    for (int c = 0; c < d; c++) {
        float t = a[c] - b[c];
        acc += t * t;
    }
    return acc;
}

static bool row_finite(const float *a, int d)
{
    for (int c = 0; c < d; c++)
        if (!isfinite(a[c]))
            return false;
    return true;
}

typedef struct {
    float d2;
    int32_t j;
} cand;

static int cand_cmp(const void *pa, const void *pb)
{
    const cand *a = pa, *b = pb;
    if (a->d2 != b->d2)
        return a->d2 < b->d2 ? -1 : 1;
    return (a->j > b->j) - (a->j < b->j);
}

/* Sort every candidate of the event by (float32 dist2, row), keep k-1. */
static void ref_knn(const float *x, int64_t n, int d, const int64_t *splits, int64_t nev, int k, float radius,
                    int32_t *idx, float *dist2)
{
    (void)n;
    float r2 = radius > 0 ? radius * radius : INFINITY;
    for (int64_t e = 0; e < nev; e++) {
        int64_t s = splits[e], t = splits[e + 1];
        cand *c = malloc((size_t)(t - s + 1) * sizeof *c);
        for (int64_t i = s; i < t; i++) {
            int m = 0;
            if (row_finite(x + i * d, d))
                for (int64_t j = s; j < t; j++) {
                    if (j == i || !row_finite(x + j * d, d))
                        continue;
                    float v = ref_d2f(x + i * d, x + j * d, d);
                    if (isfinite(v) && v <= r2)
                        c[m++] = (cand){v, (int32_t)j};
                }
            qsort(c, (size_t)m, sizeof *c, cand_cmp);
            idx[i * k] = (int32_t)i;
            dist2[i * k] = 0.0f;
            for (int sl = 1; sl < k; sl++) {
                idx[i * k + sl] = sl - 1 < m ? c[sl - 1].j : -1;
                dist2[i * k + sl] = sl - 1 < m ? c[sl - 1].d2 : INFINITY;
            }
        }
        free(c);
    }
}

/* Run gpuml_knn_ex on the CPU with nthreads; idx / dist2 host [n*k]. */
static gpuml_status run_knn(int nthreads, const float *x, int64_t n, int d, const int64_t *splits, int64_t nev, int k,
                            float radius, gpuml_knn_algo algo, int32_t *idx, float *dist2)
{
    gpuml_ctx *ctx = h_ctx(GPUML_DEVICE_CPU, nthreads);
    gpuml_tensor *tx = h_tensor_f32(ctx, 2, SHAPE(n, d), x);
    gpuml_tensor *ts = h_tensor(ctx, GPUML_I64, 1, SHAPE(nev + 1), splits);
    gpuml_tensor *ti = h_tensor(ctx, GPUML_I32, 2, SHAPE(n, k), NULL);
    gpuml_tensor *td = h_tensor(ctx, GPUML_F32, 2, SHAPE(n, k), NULL);
    gpuml_knn_params p;
    gpuml_knn_params_init_defaults(&p);
    p.k = k;
    p.max_radius = radius;
    p.algo = algo;
    gpuml_status st = gpuml_knn_ex(ctx, tx, ts, &p, ti, td, NULL, NULL);
    if (st == GPUML_OK) {
        gpuml_tensor_copy_to_host(ctx, ti, idx, (size_t)(n * k) * sizeof *idx);
        gpuml_tensor_copy_to_host(ctx, td, dist2, (size_t)(n * k) * sizeof *dist2);
    } else {
        printf("gpuml_knn_ex: %s\n", gpuml_last_error());
    }
    gpuml_tensor_destroy(tx);
    gpuml_tensor_destroy(ts);
    gpuml_tensor_destroy(ti);
    gpuml_tensor_destroy(td);
    gpuml_ctx_destroy(ctx);
    return st;
}

/* Bitwise equality with the reference; prints the first differences. */
static int diff_lists(const char *what, int64_t n, int k, const int32_t *ri, const float *rd, const int32_t *gi,
                      const float *gd)
{
    int bad = 0;
    for (int64_t e = 0; e < n * k; e++)
        if (ri[e] != gi[e] || memcmp(&rd[e], &gd[e], sizeof(float)) != 0) {
            if (bad++ < 5)
                printf("%s: row %lld slot %lld: got (%d, %.9g), want (%d, %.9g)\n", what, (long long)(e / k),
                       (long long)(e % k), gi[e], gd[e], ri[e], rd[e]);
        }
    if (bad)
        printf("%s: %d entries differ\n", what, bad);
    return bad;
}

/* All three algorithms with 2 threads (and AUTO with 1) equal the
 * reference exactly. */
static void check_all(const char *what, const float *x, int64_t n, int d, const int64_t *splits, int64_t nev, int k,
                      float radius)
{
    size_t nk = (size_t)(n * k) + 1;
    int32_t *ri = malloc(nk * sizeof *ri), *gi = malloc(nk * sizeof *gi);
    float *rd = malloc(nk * sizeof *rd), *gd = malloc(nk * sizeof *gd);
    ref_knn(x, n, d, splits, nev, k, radius, ri, rd);
    int bad = 0;
    const gpuml_knn_algo algos[] = {GPUML_KNN_AUTO, GPUML_KNN_BRUTE, GPUML_KNN_GRID, GPUML_KNN_AUTO};
    const char *names[] = {"auto", "brute", "grid", "auto, 1 thread"};
    for (int a = 0; a < 4; a++) {
        char label[160];
        snprintf(label, sizeof label, "%s [%s]", what, names[a]);
        memset(gi, 0x55, nk * sizeof *gi);
        assert_int_equal(run_knn(a == 3 ? 1 : 2, x, n, d, splits, nev, k, radius, algos[a], gi, gd), GPUML_OK);
        bad += diff_lists(label, n, k, ri, rd, gi, gd);
    }
    free(ri), free(gi), free(rd), free(gd);
    assert_int_equal(bad, 0);
}

/* ---- data --------------------------------------------------------------------- */
static float *rand_normal(uint64_t *s, int64_t n, int d, double scale)
{
    float *x = malloc((size_t)(n * d + 1) * sizeof *x);
    for (int64_t e = 0; e < n * d; e++)
        x[e] = (float)(scale * h_rand_normal(s));
    return x;
}

/* Compact gaussian blobs of log-normal widths plus uniform outliers far away. */
static float *clustered(uint64_t *s, int64_t n, int d, int nblobs)
{
    float *x = malloc((size_t)(n * d + 1) * sizeof *x);
    double centre[16][64], width[16];
    for (int b = 0; b < nblobs; b++) {
        for (int c = 0; c < d; c++)
            centre[b][c] = h_rand_uniform(s, -150, 150);
        width[b] = exp(h_rand_normal(s) - 1.0);
    }
    for (int64_t i = 0; i < n; i++) {
        bool noise = h_rand_uniform(s, 0, 1) < 0.1;
        int b = (int)(h_rand_u64(s) % (uint64_t)nblobs);
        for (int c = 0; c < d; c++)
            x[i * d + c] = noise ? (float)h_rand_uniform(s, -1000, 1000)
                                 : (float)(centre[b][c] + width[b] * (c == 2 ? 4 : 1) * h_rand_normal(s));
    }
    return x;
}

/* ---- tests --------------------------------------------------------------------- */
static void test_event_sizes(void **state)
{
    (void)state;
    /* Sizes 0, 1, k-1, k, k+1, 3k and a binned one, in one batch. */
    const int k = 8;
    int64_t sizes[] = {0, 1, 7, 0, 8, 9, 24, 700, 1, 0};
    int64_t nev = sizeof sizes / sizeof *sizes, splits[16] = {0};
    for (int64_t e = 0; e < nev; e++)
        splits[e + 1] = splits[e] + sizes[e];
    int64_t n = splits[nev];
    uint64_t s = 11;
    for (int d = 1; d <= 4; d++) {
        float *x = rand_normal(&s, n, d, 1.0);
        char what[64];
        snprintf(what, sizeof what, "event sizes, D=%d", d);
        check_all(what, x, n, d, splits, nev, k, 0.0f);
        free(x);
    }
}

static void test_random_and_clustered(void **state)
{
    (void)state;
    uint64_t s = 12;
    int64_t splits[4] = {0, 1100, 1250, 2000};
    for (int d = 2; d <= 5; d++) {
        int k = d % 2 ? 40 : 16;
        char what[64];
        float *x = clustered(&s, 2000, d, 6);
        snprintf(what, sizeof what, "clustered D=%d k=%d", d, k);
        check_all(what, x, 2000, d, splits, 3, k, 0.0f);
        free(x);
        x = rand_normal(&s, 2000, d, 10.0);
        snprintf(what, sizeof what, "random D=%d k=%d", d, 56 - k);
        check_all(what, x, 2000, d, splits, 3, 56 - k, 0.0f);
        free(x);
    }
}

static void test_duplicates_and_equal(void **state)
{
    (void)state;
    uint64_t s = 13;
    int64_t n = 900, splits[3] = {0, 600, 900};
    float *x = rand_normal(&s, n, 3, 1.0);
    for (int64_t i = 0; i < 600; i++) /* every point three times, in scattered rows */
        memcpy(x + i * 3, x + ((i * 7) % 200) * 3, 3 * sizeof *x);
    check_all("duplicates", x, n, 3, splits, 2, 12, 0.0f);
    for (int64_t e = 0; e < n * 3; e++)
        x[e] = 42.5f;
    check_all("all equal", x, n, 3, splits, 2, 12, 0.0f);
    check_all("all equal, radius", x, n, 3, splits, 2, 5, 0.5f);
    free(x);
}

static void test_lattice_ties(void **state)
{
    (void)state;
    /* Integer lattices: dozens of neighbours at exactly equal dist2, so the
     * (dist2, row) order decides; rows are shuffled so that row order is
     * not space order. */
    int64_t n = 12 * 12 * 12, splits[2] = {0, n};
    float *x = malloc((size_t)n * 3 * sizeof *x);
    uint64_t s = 14;
    int64_t *order = malloc((size_t)n * sizeof *order);
    for (int64_t i = 0; i < n; i++)
        order[i] = i;
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)(h_rand_u64(&s) % (uint64_t)(i + 1)), t = order[i];
        order[i] = order[j], order[j] = t;
    }
    for (int64_t i = 0; i < n; i++) {
        int64_t c = order[i];
        x[i * 3] = (float)(c % 12), x[i * 3 + 1] = (float)((c / 12) % 12), x[i * 3 + 2] = (float)(c / 144);
    }
    check_all("3-D lattice k=27", x, n, 3, splits, 1, 27, 0.0f);
    check_all("3-D lattice k=64", x, n, 3, splits, 1, 64, 0.0f);
    check_all("3-D lattice, radius 1 (dist2 == r2 included)", x, n, 3, splits, 1, 10, 1.0f);
    int64_t n2 = 40 * 40, splits2[2] = {0, n2};
    for (int64_t i = 0; i < n2; i++)
        x[i * 2] = (float)(0.25 * (double)(i % 40)), x[i * 2 + 1] = (float)(0.25 * (double)(i / 40));
    check_all("2-D lattice k=21", x, n2, 2, splits2, 1, 21, 0.0f);
    free(x);
    free(order);
}

static void test_far_from_origin(void **state)
{
    (void)state;
    /* Detector-like: x ~ 300 cm, hits 0.1 mm apart. The expansion
     * |x|^2 + |y|^2 - 2xy loses the point itself as nearest neighbour here;
     * the exact difference form does not. */
    uint64_t s = 15;
    int64_t n = 2000, splits[2] = {0, n};
    int d = 3, k = 16;
    float *x = malloc((size_t)n * d * sizeof *x);
    for (int64_t i = 0; i < n; i++) {
        x[i * 3] = (float)(300.0 + 0.01 * (double)(i % 20) + 1e-4 * h_rand_normal(&s));
        x[i * 3 + 1] = (float)(-250.0 + 0.01 * (double)((i / 20) % 10) + 1e-4 * h_rand_normal(&s));
        x[i * 3 + 2] = (float)(320.0 + 0.01 * (double)(i / 200) + 1e-4 * h_rand_normal(&s));
    }
    int wrong_self = 0; /* sanity: this data is hard for the expansion */
    for (int64_t i = 0; i < n && !wrong_self; i++) {
        float xi2 = 0, best = INFINITY;
        int64_t bj = -1;
        for (int c = 0; c < d; c++)
            xi2 += x[i * 3 + c] * x[i * 3 + c];
        for (int64_t j = 0; j < n; j++) {
            float xj2 = 0, dot = 0;
            for (int c = 0; c < d; c++)
                xj2 += x[j * 3 + c] * x[j * 3 + c], dot += x[i * 3 + c] * x[j * 3 + c];
            float v = xi2 + xj2 - 2 * dot;
            if (v < best)
                best = v, bj = j;
        }
        wrong_self += bj != i;
    }
    assert_true(wrong_self > 0);
    check_all("far from origin", x, n, d, splits, 1, k, 0.0f);
    /* And the float32 lists agree with double-precision distances. */
    int32_t *gi = malloc((size_t)(n * k) * sizeof *gi);
    float *gd = malloc((size_t)(n * k) * sizeof *gd);
    assert_int_equal(run_knn(2, x, n, d, splits, 1, k, 0.0f, GPUML_KNN_AUTO, gi, gd), GPUML_OK);
    for (int64_t i = 0; i < n; i++) {
        assert_int_equal(gi[i * k], (int)i);
        double worst = 0;
        for (int sl = 1; sl < k; sl++) {
            int64_t j = gi[i * k + sl];
            double dd = 0;
            for (int c = 0; c < d; c++)
                dd += ((double)x[i * 3 + c] - x[j * 3 + c]) * ((double)x[i * 3 + c] - x[j * 3 + c]);
            assert_true(fabs(gd[i * k + sl] - dd) <= 1e-5 * dd);
            worst = dd;
        }
        for (int64_t j = 0; j < n; j++) { /* nobody left out is clearly closer */
            double dd = 0;
            for (int c = 0; c < d; c++)
                dd += ((double)x[i * 3 + c] - x[j * 3 + c]) * ((double)x[i * 3 + c] - x[j * 3 + c]);
            bool in = false;
            for (int sl = 0; sl < k; sl++)
                in = in || gi[i * k + sl] == j;
            assert_true(in || dd >= worst * (1 - 1e-5));
        }
    }
    free(gi), free(gd), free(x);
}

static void test_non_finite(void **state)
{
    (void)state;
    uint64_t s = 16;
    int64_t n = 1200, splits[3] = {0, 100, 1200};
    int d = 3, k = 10;
    float *x = rand_normal(&s, n, d, 1.0);
    for (int64_t i = 0; i < n; i += 7)
        x[i * d + (i % 3)] = (i % 2) ? NAN : (i % 4 ? INFINITY : -INFINITY);
    check_all("NaN / Inf", x, n, d, splits, 2, k, 0.0f);
    int32_t *gi = malloc((size_t)(n * k) * sizeof *gi);
    float *gd = malloc((size_t)(n * k) * sizeof *gd);
    assert_int_equal(run_knn(2, x, n, d, splits, 2, k, 0.0f, GPUML_KNN_GRID, gi, gd), GPUML_OK);
    for (int64_t i = 0; i < n; i++)
        for (int sl = 0; sl < k; sl++) {
            int32_t j = gi[i * k + sl];
            if (i % 7 == 0)
                assert_int_equal(j, sl == 0 ? (int)i : -1);
            else
                assert_true(j == -1 || j % 7 != 0);
        }
    /* Coordinates so large that dist2 overflows: not neighbours either. */
    for (int64_t e = 0; e < 100 * d; e++)
        x[e] = (float)(1e25 * h_rand_normal(&s));
    check_all("overflowing dist2", x, 100, d, splits, 1, k, 0.0f);
    free(gi), free(gd), free(x);
}

static void test_radius(void **state)
{
    (void)state;
    uint64_t s = 17;
    int64_t n = 2500, splits[3] = {0, 2000, 2500};
    float *x = clustered(&s, n, 3, 5);
    check_all("radius 2", x, n, 3, splits, 2, 24, 2.0f);
    check_all("radius 0.3", x, n, 3, splits, 2, 24, 0.3f);
    check_all("radius huge", x, n, 3, splits, 2, 24, 1e30f);
    check_all("radius negative = none", x, n, 3, splits, 2, 24, -1.0f);
    free(x);
}

static void test_k_and_d_range(void **state)
{
    (void)state;
    uint64_t s = 18;
    int64_t splits[3] = {0, 300, 400};
    float *x = rand_normal(&s, 400, 3, 1.0);
    check_all("k=1", x, 400, 3, splits, 2, 1, 0.0f);
    check_all("k=256", x, 400, 3, splits, 2, 256, 0.0f);
    check_all("k=1024", x, 400, 3, splits, 2, 1024, 0.0f);
    free(x);
    const int dims[] = {1, 2, 3, 4, 5, 6, 8, 9, 16, 33, 64, 128, 300};
    for (size_t i = 0; i < sizeof dims / sizeof *dims; i++) {
        int d = dims[i];
        int64_t n = d > 64 ? 300 : 500, sp[3] = {0, n / 3, n};
        x = rand_normal(&s, n, d, 1.0);
        char what[64];
        snprintf(what, sizeof what, "D=%d", d);
        check_all(what, x, n, d, sp, 2, 12, 0.0f);
        free(x);
    }
}

static void test_large_threads(void **state)
{
    (void)state;
    /* An event large enough for deep box levels and for the build shared by
     * all threads: 1 vs 2 threads must match bit for bit, and sampled rows
     * must equal the reference exactly (all of it is too slow here). */
    uint64_t s = 19;
    int64_t n = 45000, splits[3] = {0, 40000, 45000};
    int d = 4, k = 20;
    float *x = clustered(&s, n, d, 12);
    int32_t *a = malloc((size_t)(n * k) * sizeof *a), *b = malloc((size_t)(n * k) * sizeof *b);
    float *da = malloc((size_t)(n * k) * sizeof *da), *dbb = malloc((size_t)(n * k) * sizeof *dbb);
    assert_int_equal(run_knn(2, x, n, d, splits, 2, k, 0.0f, GPUML_KNN_GRID, b, dbb), GPUML_OK);
    assert_int_equal(run_knn(1, x, n, d, splits, 2, k, 0.0f, GPUML_KNN_AUTO, a, da), GPUML_OK);
    assert_int_equal(diff_lists("1 vs 2 threads, N=45000", n, k, a, da, b, dbb), 0);
    cand *c = malloc((size_t)n * sizeof *c);
    int bad = 0;
    for (int t = 0; t < 100; t++) {
        int64_t i = (int64_t)(h_rand_u64(&s) % (uint64_t)n), e0 = i < 40000 ? 0 : 40000, e1 = i < 40000 ? 40000 : n;
        int m = 0;
        for (int64_t j = e0; j < e1; j++)
            if (j != i)
                c[m++] = (cand){ref_d2f(x + i * d, x + j * d, d), (int32_t)j};
        qsort(c, (size_t)m, sizeof *c, cand_cmp);
        bad += b[i * k] != i || dbb[i * k] != 0.0f;
        for (int sl = 1; sl < k; sl++)
            bad += b[i * k + sl] != c[sl - 1].j || dbb[i * k + sl] != c[sl - 1].d2;
    }
    assert_int_equal(bad, 0);
    free(c), free(a), free(b), free(da), free(dbb), free(x);
}

/* ---- op-table rows -------------------------------------------------------------
 * Inputs: coords [N, D] f32, row_splits. Outputs: idx [N, k] i32 (exact),
 * dist2 [N, k] f32. The reference picks neighbours by float32 dist2 (the
 * contract) but returns dist2 in double, so finite differences see a smooth
 * function of the coordinates. */
static void setup_knn(int v, h_case_io *io)
{
    /* Variants with one event, no radius and k <= N have no missing
     * neighbour and get gradient checks (a +inf dist2 has none). */
    static const int64_t cfg[][6] = {
        /* N, D, k, events, algo, radius*10 */
        {40, 3, 6, 4, 0, 0},  {200, 4, 16, 1, 2, 0}, {150, 2, 8, 2, 0, 8},  {0, 3, 4, 2, 0, 0},
        {30, 1, 1, 3, 0, 0},  {64, 40, 10, 1, 1, 0}, {300, 3, 12, 1, 2, 10}, {90, 5, 7, 1, 2, 0},
        {120, 3, 8, 1, 0, 0}, {500, 2, 20, 7, 0, 0},
    };
    const int64_t *c = cfg[v];
    int64_t n = c[0], d = c[1], k = c[2], b = c[3];
    io->in_dt[0] = GPUML_F32, io->in_kind[0] = V_NORMAL, io->in_nd[0] = 2;
    io->in_shape[0][0] = n, io->in_shape[0][1] = d;
    io->diff_in[0] = b == 1 && c[5] == 0 && k <= n;
    io->in_dt[1] = GPUML_I64, io->in_kind[1] = V_SPLITS, io->in_nd[1] = 1;
    io->in_shape[1][0] = b + 1, io->index_lo[1] = b, io->index_hi[1] = n;
    io->n_in = 2;
    io->out_dt[0] = GPUML_I32, io->out_nd[0] = 2, io->out_shape[0][0] = n, io->out_shape[0][1] = k;
    io->out_dt[1] = GPUML_F32, io->out_nd[1] = 2, io->out_shape[1][0] = n, io->out_shape[1][1] = k;
    io->diff_out[1] = 1;
    io->n_out = 2;
    io->ip[0] = (int)k, io->ip[1] = (int)c[4], io->ip[2] = v;
    io->fp[0] = (double)c[5] / 10.0;
}

static void ref_knn_table(const h_case_io *io, double *const *in, double *const *out)
{
    int64_t n = io->in_shape[0][0], nev = io->in_shape[1][0] - 1;
    int d = (int)io->in_shape[0][1], k = io->ip[0];
    float *x = malloc((size_t)(n * d + 1) * sizeof *x);
    int64_t *sp = malloc((size_t)(nev + 1) * sizeof *sp);
    int32_t *ri = malloc((size_t)(n * k + 1) * sizeof *ri);
    float *rd = malloc((size_t)(n * k + 1) * sizeof *rd);
    for (int64_t e = 0; e < n * d; e++)
        x[e] = (float)in[0][e];
    for (int64_t e = 0; e <= nev; e++)
        sp[e] = (int64_t)in[1][e];
    ref_knn(x, n, d, sp, nev, k, (float)io->fp[0], ri, rd);
    for (int64_t i = 0; i < n; i++)
        for (int s = 0; s < k; s++) {
            int64_t j = ri[i * k + s];
            out[0][i * k + s] = (double)j;
            double acc = j < 0 ? INFINITY : 0.0;
            for (int c = 0; j >= 0 && c < d; c++)
                acc += (in[0][i * d + c] - in[0][j * d + c]) * (in[0][i * d + c] - in[0][j * d + c]);
            out[1][i * k + s] = acc;
        }
    free(x), free(sp), free(ri), free(rd);
}

static gpuml_status run_knn_table(gpuml_ctx *ctx, const h_case_io *io, gpuml_tensor *const *in,
                                  gpuml_tensor *const *out)
{
    gpuml_knn_params p;
    gpuml_knn_params_init_defaults(&p);
    p.k = io->ip[0];
    p.algo = (gpuml_knn_algo)io->ip[1];
    p.max_radius = (float)io->fp[0];
    return gpuml_knn_ex(ctx, in[0], in[1], &p, out[0], out[1], NULL, NULL);
}

static gpuml_status bwd_knn_table(gpuml_ctx *ctx, const h_case_io *io, gpuml_tensor *const *in,
                                  gpuml_tensor *const *out, gpuml_tensor *const *gout, gpuml_tensor *const *gin)
{
    if (io->ip[2] % 2 == 0) /* reverse adjacency built inside */
        return gpuml_knn_backward(ctx, in[0], out[0], gout[1], NULL, NULL, gin[0]);
    int64_t n = io->in_shape[0][0], k = io->ip[0];
    gpuml_tensor *rp = h_tensor(ctx, GPUML_I64, 1, SHAPE(n + 1), NULL), *col = h_tensor(ctx, GPUML_I64, 1,
                                                                                      SHAPE(n * k), NULL);
    gpuml_status st = gpuml_knn_reverse(ctx, out[0], rp, col);
    if (st == GPUML_OK)
        st = gpuml_knn_backward(ctx, in[0], out[0], gout[1], rp, col, gin[0]);
    gpuml_tensor_destroy(rp);
    gpuml_tensor_destroy(col);
    return st;
}

/* The op table: one row per registry op (kernels/ops.def) this file checks;
 * tests/test_registry.c fails when a registry op has no row in any table. */
const h_case h_cases[] = {
    {"knn", 10, setup_knn, ref_knn_table, run_knn_table, bwd_knn_table, 1e-6, 1e-5, 2e-3, 0},
};
const int h_ncases = H_N(h_cases);

static void test_table(void **state)
{
    (void)state;
    assert_int_equal(H_RUN("knn"), 0);
}

/* The gradient against the formula evaluated in double, on a binned
 * clustered batch with hubs (points many others point at), with the CSR
 * from gpuml_knn_ex. */
static void test_backward_direct(void **state)
{
    (void)state;
    uint64_t s = 20;
    int64_t n = 1500, splits[3] = {0, 1000, 1500};
    int d = 3, k = 12;
    float *x = clustered(&s, n, d, 4);
    float *g = rand_normal(&s, n, k, 1.0);
    gpuml_ctx *ctx = h_ctx(GPUML_DEVICE_CPU, 2);
    gpuml_tensor *tx = h_tensor_f32(ctx, 2, SHAPE(n, d), x), *ts = h_tensor(ctx, GPUML_I64, 1, SHAPE(3), splits);
    gpuml_tensor *ti = h_tensor(ctx, GPUML_I32, 2, SHAPE(n, k), NULL), *td = h_tensor_f32(ctx, 2, SHAPE(n, k), NULL);
    gpuml_tensor *tg = h_tensor_f32(ctx, 2, SHAPE(n, k), g), *tgx = h_tensor_f32(ctx, 2, SHAPE(n, d), NULL);
    gpuml_tensor *trp = h_tensor(ctx, GPUML_I64, 1, SHAPE(n + 1), NULL);
    gpuml_tensor *tcol = h_tensor(ctx, GPUML_I64, 1, SHAPE(n * k), NULL);
    gpuml_knn_params p;
    gpuml_knn_params_init_defaults(&p);
    p.k = k;
    assert_int_equal(gpuml_knn_ex(ctx, tx, ts, &p, ti, td, trp, tcol), GPUML_OK);
    assert_int_equal(gpuml_knn_backward(ctx, tx, ti, tg, trp, tcol, tgx), GPUML_OK);
    const int32_t *idx = gpuml_tensor_data(ti);
    const float *gx = gpuml_tensor_data(tgx);
    double *want = calloc((size_t)(n * d), sizeof *want);
    for (int64_t i = 0; i < n; i++)
        for (int sl = 0; sl < k; sl++) {
            int64_t j = idx[i * k + sl];
            if (j < 0)
                continue;
            for (int c = 0; c < d; c++) {
                double t = 2.0 * g[i * k + sl] * ((double)x[i * d + c] - x[j * d + c]);
                want[i * d + c] += t;
                want[j * d + c] -= t;
            }
        }
    for (int64_t e = 0; e < n * d; e++) {
        double mag = 0; /* scale: sum of the magnitudes of the terms */
        int64_t i = e / d;
        for (int sl = 0; sl < k; sl++)
            mag += fabs(2.0 * g[i * k + sl]) * 100;
        assert_true(fabs(gx[e] - want[e]) <= 1e-5 * (mag + fabs(want[e])) + 1e-4);
    }
    /* The CSR is gpuml_index_csr's, and without it the result is the same. */
    float *gx2 = malloc((size_t)(n * d) * sizeof *gx2);
    memcpy(gx2, gx, (size_t)(n * d) * sizeof *gx2);
    assert_int_equal(gpuml_knn_backward(ctx, tx, ti, tg, NULL, NULL, tgx), GPUML_OK);
    assert_memory_equal(gx, gx2, (size_t)(n * d) * sizeof *gx2);
    gpuml_tensor *trp2 = h_tensor(ctx, GPUML_I64, 1, SHAPE(n + 1), NULL);
    gpuml_tensor *tcol2 = h_tensor(ctx, GPUML_I64, 1, SHAPE(n * k), NULL);
    assert_int_equal(gpuml_index_csr(ctx, ti, trp2, tcol2), GPUML_OK);
    const int64_t *rp = gpuml_tensor_data(trp);
    assert_memory_equal(rp, gpuml_tensor_data(trp2), (size_t)(n + 1) * sizeof *rp);
    assert_memory_equal(gpuml_tensor_data(tcol), gpuml_tensor_data(tcol2), (size_t)rp[n] * sizeof(int64_t));
    gpuml_tensor *all[] = {tx, ts, ti, td, tg, tgx, trp, tcol, trp2, tcol2};
    for (size_t t = 0; t < sizeof all / sizeof *all; t++)
        gpuml_tensor_destroy(all[t]);
    gpuml_ctx_destroy(ctx);
    free(want), free(gx2), free(x), free(g);
}

/* ---- errors -------------------------------------------------------------------- */
static void expect(gpuml_status got, gpuml_status want, const char *must_contain)
{
    if (got != want)
        fail_msg("status %s, expected %s (%s)", gpuml_status_string(got), gpuml_status_string(want),
                 gpuml_last_error());
    if (must_contain && !strstr(gpuml_last_error(), must_contain))
        fail_msg("message '%s' lacks '%s'", gpuml_last_error(), must_contain);
}

static void test_errors(void **state)
{
    (void)state;
    gpuml_ctx *ctx = h_ctx(GPUML_DEVICE_CPU, 2);
    float x[12] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11};
    int64_t sp[3] = {0, 2, 4}, dec[3] = {0, 3, 2}, short_[3] = {0, 2, 3}, late[3] = {1, 2, 4};
    gpuml_tensor *tx = h_tensor_f32(ctx, 2, SHAPE(4, 3), x), *ts = h_tensor(ctx, GPUML_I64, 1, SHAPE(3), sp);
    gpuml_tensor *tdec = h_tensor(ctx, GPUML_I64, 1, SHAPE(3), dec);
    gpuml_tensor *tshort = h_tensor(ctx, GPUML_I64, 1, SHAPE(3), short_);
    gpuml_tensor *tlate = h_tensor(ctx, GPUML_I64, 1, SHAPE(3), late);
    gpuml_tensor *ts32 = h_tensor(ctx, GPUML_I32, 1, SHAPE(3), (int32_t[]){0, 2, 4});
    gpuml_tensor *tx64 = h_tensor(ctx, GPUML_F64, 2, SHAPE(4, 3), NULL);
    gpuml_tensor *tx0 = h_tensor_f32(ctx, 2, SHAPE(4, 0), NULL), *tx1 = h_tensor_f32(ctx, 1, SHAPE(12), x);
    gpuml_tensor *txbig = h_tensor_f32(ctx, 2, SHAPE(1, GPUML_KNN_MAX_DIM + 1), NULL);
    gpuml_tensor *ti = h_tensor(ctx, GPUML_I32, 2, SHAPE(4, 2), NULL), *td = h_tensor_f32(ctx, 2, SHAPE(4, 2), NULL);
    gpuml_tensor *ti64 = h_tensor(ctx, GPUML_I64, 2, SHAPE(4, 2), NULL), *td3 = h_tensor_f32(ctx, 2, SHAPE(4, 3), NULL);
    gpuml_tensor *ti3 = h_tensor(ctx, GPUML_I32, 2, SHAPE(3, 2), NULL);
    int32_t idx_before[8];
    float d_before[8];
    for (int e = 0; e < 8; e++)
        idx_before[e] = 1000 + e, d_before[e] = -5.0f - (float)e;
    gpuml_tensor_copy_from_host(ctx, ti, idx_before, sizeof idx_before);
    gpuml_tensor_copy_from_host(ctx, td, d_before, sizeof d_before);
#define UNTOUCHED()                                                                  \
    do {                                                                             \
        assert_memory_equal(gpuml_tensor_data(ti), idx_before, sizeof idx_before);   \
        assert_memory_equal(gpuml_tensor_data(td), d_before, sizeof d_before);       \
    } while (0)
    expect(gpuml_knn(NULL, tx, ts, 2, 0, ti, td), GPUML_ERR_INVALID_ARGUMENT, "'ctx' is NULL");
    expect(gpuml_knn(ctx, NULL, ts, 2, 0, ti, td), GPUML_ERR_INVALID_ARGUMENT, "'coords' is NULL");
    expect(gpuml_knn(ctx, tx, NULL, 2, 0, ti, td), GPUML_ERR_INVALID_ARGUMENT, "'row_splits' is NULL");
    expect(gpuml_knn(ctx, tx, ts, 2, 0, NULL, td), GPUML_ERR_INVALID_ARGUMENT, "'idx' is NULL");
    expect(gpuml_knn(ctx, tx, ts, 2, 0, ti, NULL), GPUML_ERR_INVALID_ARGUMENT, "'dist2' is NULL");
    expect(gpuml_knn(ctx, tx, ts, 0, 0, ti, td), GPUML_ERR_INVALID_ARGUMENT, "'k' = 0");
    expect(gpuml_knn(ctx, tx, ts, -3, 0, ti, td), GPUML_ERR_INVALID_ARGUMENT, "'k' = -3");
    expect(gpuml_knn(ctx, tx, ts, GPUML_KNN_MAX_K + 1, 0, ti, td), GPUML_ERR_INVALID_ARGUMENT, "'k' = 1025");
    expect(gpuml_knn(ctx, tx0, ts, 2, 0, ti, td), GPUML_ERR_INVALID_ARGUMENT, "D = 0");
    expect(gpuml_knn(ctx, txbig, ts, 2, 0, ti, td), GPUML_ERR_INVALID_ARGUMENT, "D = 1025");
    expect(gpuml_knn(ctx, tx1, ts, 2, 0, ti, td), GPUML_ERR_SHAPE, "'coords'");
    expect(gpuml_knn(ctx, tx64, ts, 2, 0, ti, td), GPUML_ERR_DTYPE, "'coords' is f64");
    expect(gpuml_knn(ctx, tx, ts32, 2, 0, ti, td), GPUML_ERR_DTYPE, "'row_splits' is i32");
    expect(gpuml_knn(ctx, tx, tdec, 2, 0, ti, td), GPUML_ERR_INVALID_ARGUMENT, "decreases");
    expect(gpuml_knn(ctx, tx, tshort, 2, 0, ti, td), GPUML_ERR_INVALID_ARGUMENT, "ends at 3");
    expect(gpuml_knn(ctx, tx, tlate, 2, 0, ti, td), GPUML_ERR_INVALID_ARGUMENT, "expected 0");
    expect(gpuml_knn(ctx, tx, ts, 2, 0, ti64, td), GPUML_ERR_DTYPE, "'idx' is i64");
    expect(gpuml_knn(ctx, tx, ts, 2, 0, ti, td3), GPUML_ERR_SHAPE, "'dist2' is [4, 3]");
    expect(gpuml_knn(ctx, tx, ts, 2, 0, ti3, td), GPUML_ERR_SHAPE, "'idx' is [3, 2]");
    expect(gpuml_knn(ctx, tx, ts, 3, 0, ti, td), GPUML_ERR_SHAPE, "expected [4, 3]");
    expect(gpuml_knn(ctx, tx, ts, 2, NAN, ti, td), GPUML_ERR_INVALID_ARGUMENT, "'max_radius' is NaN");
    gpuml_knn_params p;
    gpuml_knn_params_init_defaults(&p);
    p.k = 2;
    p.algo = (gpuml_knn_algo)7;
    expect(gpuml_knn_ex(ctx, tx, ts, &p, ti, td, NULL, NULL), GPUML_ERR_INVALID_ARGUMENT, "'algo' = 7");
    expect(gpuml_knn_ex(ctx, tx, ts, NULL, ti, td, NULL, NULL), GPUML_ERR_INVALID_ARGUMENT, "'p' is NULL");
    p.algo = GPUML_KNN_AUTO;
    gpuml_tensor *rp = h_tensor(ctx, GPUML_I64, 1, SHAPE(5), NULL), *col = h_tensor(ctx, GPUML_I64, 1, SHAPE(8), NULL);
    gpuml_tensor *col7 = h_tensor(ctx, GPUML_I64, 1, SHAPE(7), NULL);
    expect(gpuml_knn_ex(ctx, tx, ts, &p, ti, td, rp, NULL), GPUML_ERR_INVALID_ARGUMENT, "both or neither");
    expect(gpuml_knn_ex(ctx, tx, ts, &p, ti, td, rp, col7), GPUML_ERR_SHAPE, "'rev_col'");
    /* outputs overlapping inputs or each other */
    gpuml_tensor *alias = NULL;
    gpuml_tensor_wrap(gpuml_tensor_data(tx), gpuml_ctx_device(ctx), GPUML_F32, 2, SHAPE(4, 2), NULL, NULL, &alias);
    expect(gpuml_knn(ctx, tx, ts, 2, 0, ti, alias), GPUML_ERR_INVALID_ARGUMENT, "overlaps input 'coords'");
    UNTOUCHED();
    /* allocation failure: status, no writes, no leaks (ASan) */
    gpuml_ctx_fail_allocation_after(ctx, 1);
    expect(gpuml_knn(ctx, tx, ts, 2, 0, ti, td), GPUML_ERR_OUT_OF_MEMORY, NULL);
    UNTOUCHED();
    assert_int_equal(gpuml_knn(ctx, tx, ts, 2, 0, ti, td), GPUML_OK);

    /* backward */
    gpuml_tensor *tg = h_tensor_f32(ctx, 2, SHAPE(4, 2), d_before), *tgx = h_tensor_f32(ctx, 2, SHAPE(4, 3), NULL);
    gpuml_tensor *tgx2 = h_tensor_f32(ctx, 2, SHAPE(4, 2), NULL);
    float gx_before[12];
    for (int e = 0; e < 12; e++)
        gx_before[e] = 77.0f + (float)e;
    gpuml_tensor_copy_from_host(ctx, tgx, gx_before, sizeof gx_before);
    expect(gpuml_knn_backward(NULL, tx, ti, tg, NULL, NULL, tgx), GPUML_ERR_INVALID_ARGUMENT, "'ctx' is NULL");
    expect(gpuml_knn_backward(ctx, tx, NULL, tg, NULL, NULL, tgx), GPUML_ERR_INVALID_ARGUMENT, "'idx' is NULL");
    expect(gpuml_knn_backward(ctx, tx, ti64, tg, NULL, NULL, tgx), GPUML_ERR_DTYPE, "'idx' is i64");
    expect(gpuml_knn_backward(ctx, tx, ti3, tg, NULL, NULL, tgx), GPUML_ERR_SHAPE, "'idx' is [3, 2]");
    expect(gpuml_knn_backward(ctx, tx, ti, td3, NULL, NULL, tgx), GPUML_ERR_SHAPE, "'grad_dist2'");
    expect(gpuml_knn_backward(ctx, tx, ti, tg, NULL, NULL, tgx2), GPUML_ERR_SHAPE, "'grad_coords'");
    expect(gpuml_knn_backward(ctx, tx, ti, tg, rp, NULL, tgx), GPUML_ERR_INVALID_ARGUMENT, "both or neither");
    expect(gpuml_knn_backward(ctx, tx, ti, tg, rp, col7, tgx), GPUML_ERR_SHAPE, "'rev_col'");
    expect(gpuml_knn_backward(ctx, tx, ti, tg, NULL, NULL, alias), GPUML_ERR_SHAPE, "'grad_coords'");
    gpuml_ctx_fail_allocation_after(ctx, 1);
    expect(gpuml_knn_backward(ctx, tx, ti, tg, NULL, NULL, tgx), GPUML_ERR_OUT_OF_MEMORY, NULL);
    assert_memory_equal(gpuml_tensor_data(tgx), gx_before, sizeof gx_before);
    expect(gpuml_knn_reverse(ctx, ti, NULL, col), GPUML_ERR_INVALID_ARGUMENT, "'rev_rowptr' is NULL");
    expect(gpuml_knn_reverse(ctx, ti64, rp, col), GPUML_ERR_DTYPE, "'idx' is i64");
    assert_int_equal(gpuml_knn_reverse(ctx, ti, rp, col), GPUML_OK);
    assert_int_equal(gpuml_knn_backward(ctx, tx, ti, tg, rp, col, tgx), GPUML_OK);

    /* a CUDA tensor on a CPU context */
    static float fake[12];
    gpuml_tensor *tcu = NULL;
    gpuml_tensor_wrap(fake, (gpuml_device){GPUML_DEVICE_CUDA, 0}, GPUML_F32, 2, SHAPE(4, 3), NULL, NULL, &tcu);
    expect(gpuml_knn(ctx, tcu, ts, 2, 0, ti, td), GPUML_ERR_DEVICE_MISMATCH, "'coords'");
    gpuml_tensor *all[] = {tx, ts, tdec, tshort, tlate, ts32, tx64, tx0, tx1, txbig, ti, td, ti64, td3, ti3,
                           rp, col, col7, alias, tg, tgx, tgx2, tcu};
    for (size_t t = 0; t < sizeof all / sizeof *all; t++)
        gpuml_tensor_destroy(all[t]);
    gpuml_ctx_destroy(ctx);
#undef UNTOUCHED
}

int main(int argc, char **argv)
{
    if (H_LIST_CASES(argc, argv))
        return 0;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_event_sizes),
        cmocka_unit_test(test_random_and_clustered),
        cmocka_unit_test(test_duplicates_and_equal),
        cmocka_unit_test(test_lattice_ties),
        cmocka_unit_test(test_far_from_origin),
        cmocka_unit_test(test_non_finite),
        cmocka_unit_test(test_radius),
        cmocka_unit_test(test_k_and_d_range),
        cmocka_unit_test(test_large_threads),
        cmocka_unit_test(test_backward_direct),
        cmocka_unit_test(test_errors),
    };
    if (getenv("KNN_TEST_FILTER")) { /* e.g. KNN_TEST_FILTER='test_lattice*' */
        cmocka_set_test_filter(getenv("KNN_TEST_FILTER"));
        return cmocka_run_group_tests(tests, NULL, NULL); /* the table may be filtered out */
    }
    return H_TABLE_DONE(cmocka_run_group_tests(tests, NULL, NULL));
}
