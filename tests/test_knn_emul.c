/*
 * tests/test_knn_emul.c - the kNN search body exactly as the CUDA build runs
 * it, on the CPU: this file is compiled together with kernels/cpu/knn.c
 * with GPUML_KNN_GMAX 1 (one query per group, as one query per GPU thread)
 * and GPUML_KNN_ZORDER 1 (events ordered along the Z-curve of their grid,
 * as the device radix sorts order them). Its lists must equal the
 * library's (median-split order, groups of 32) bit for bit, so the code the
 * GPU runs is tested even on machines without one. Likewise the backward:
 * the per-element form of the CUDA kernel against the library's rows.
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
#include "kernels.h"
#include "knn.h"


static void lib_knn(const float *x, int64_t n, int d, const int64_t *sp, int64_t nev, int k, float radius,
                    gpuml_knn_algo algo, int32_t *idx, float *dist2)
{
    gpuml_ctx *ctx = h_ctx(GPUML_DEVICE_CPU, 2);
    gpuml_tensor *tx = h_tensor_f32(ctx, 2, SHAPE(n, d), x), *ts = h_tensor(ctx, GPUML_I64, 1, SHAPE(nev + 1), sp);
    gpuml_tensor *ti = h_tensor(ctx, GPUML_I32, 2, SHAPE(n, k), NULL), *td = h_tensor_f32(ctx, 2, SHAPE(n, k), NULL);
    gpuml_knn_params p;
    gpuml_knn_params_init_defaults(&p);
    p.k = k, p.max_radius = radius, p.algo = algo;
    assert_int_equal(gpuml_knn_ex(ctx, tx, ts, &p, ti, td, NULL, NULL), GPUML_OK);
    memcpy(idx, gpuml_tensor_data(ti), (size_t)(n * k) * sizeof *idx);
    memcpy(dist2, gpuml_tensor_data(td), (size_t)(n * k) * sizeof *dist2);
    gpuml_tensor_destroy(tx), gpuml_tensor_destroy(ts), gpuml_tensor_destroy(ti), gpuml_tensor_destroy(td);
    gpuml_ctx_destroy(ctx);
}

static void emul_knn(const float *x, int64_t n, int d, const int64_t *sp, int64_t nev, int k, float radius,
                     gpuml_knn_algo algo, int32_t *idx, float *dist2)
{
    gpuml_kctx kc;
    memset(&kc, 0, sizeof kc);
    gpuml_executor *ex = NULL;
    assert_int_equal(gpuml_executor_create(GPUML_EXECUTOR_POOL, 2, &ex), GPUML_OK);
    kc.exec = ex;
    kc.nthreads = 2;
    void *ws = malloc(gpuml_cpu_knn_workspace(n, d, nev, k, 2));
    assert_non_null(ws);
    float r2 = radius > 0 ? radius * radius : INFINITY;
    assert_int_equal(gpuml_cpu_knn(&kc, x, n, d, sp, nev, k, r2, (int)algo, idx, dist2, ws), GPUML_OK);
    free(ws);
    gpuml_executor_destroy(ex);
}

static void check(const char *what, const float *x, int64_t n, int d, const int64_t *sp, int64_t nev, int k,
                  float radius)
{
    size_t nk = (size_t)(n * k) + 1;
    int32_t *a = malloc(nk * sizeof *a), *b = malloc(nk * sizeof *b);
    float *da = malloc(nk * sizeof *da), *dbb = malloc(nk * sizeof *dbb);
    const gpuml_knn_algo algos[] = {GPUML_KNN_AUTO, GPUML_KNN_GRID, GPUML_KNN_BRUTE};
    int bad = 0;
    for (int al = 0; al < 3; al++) {
        lib_knn(x, n, d, sp, nev, k, radius, GPUML_KNN_AUTO, a, da);
        emul_knn(x, n, d, sp, nev, k, radius, algos[al], b, dbb);
        for (size_t e = 0; e < (size_t)(n * k); e++)
            if (a[e] != b[e] || memcmp(&da[e], &dbb[e], sizeof(float)) != 0) {
                if (bad++ < 5)
                    printf("%s [algo %d]: row %zu slot %zu: emulated (%d, %.9g), library (%d, %.9g)\n", what,
                           (int)algos[al], e / (size_t)k, e % (size_t)k, b[e], dbb[e], a[e], da[e]);
            }
    }
    free(a), free(b), free(da), free(dbb);
    assert_int_equal(bad, 0);
}

static float *blobs(uint64_t *s, int64_t n, int d)
{
    float *x = malloc((size_t)(n * d + 1) * sizeof *x);
    double c[8][8];
    for (int b = 0; b < 8; b++)
        for (int j = 0; j < d && j < 8; j++)
            c[b][j] = h_rand_uniform(s, -100, 100);
    for (int64_t i = 0; i < n; i++) {
        int b = (int)(h_rand_u64(s) % 8);
        bool noise = h_rand_uniform(s, 0, 1) < 0.1;
        for (int j = 0; j < d; j++)
            x[i * d + j] = noise ? (float)h_rand_uniform(s, -500, 500)
                                 : (float)(c[b][j % 8] + exp(h_rand_normal(s) - 1) * h_rand_normal(s));
    }
    return x;
}

static void test_emulated_gpu_body(void **state)
{
    (void)state;
    uint64_t s = 77;
    int64_t sizes[] = {0, 1, 17, 300, 0, 2500, 33, 1000};
    int64_t nev = 8, sp[9] = {0};
    for (int e = 0; e < nev; e++)
        sp[e + 1] = sp[e] + sizes[e];
    int64_t n = sp[nev];
    const int dims[] = {1, 2, 3, 4, 6};
    for (int di = 0; di < 5; di++) {
        int d = dims[di];
        float *x = blobs(&s, n, d);
        for (int64_t i = 5; i < n; i += 97) /* non-finite points */
            x[i * d] = i % 2 ? NAN : INFINITY;
        char what[64];
        snprintf(what, sizeof what, "blobs D=%d k=16", d);
        check(what, x, n, d, sp, nev, 16, 0.0f);
        snprintf(what, sizeof what, "blobs D=%d k=5 radius", d);
        check(what, x, n, d, sp, nev, 5, 3.0f);
        free(x);
    }
    float *x = blobs(&s, n, 3);
    check("k=1", x, n, 3, sp, nev, 1, 0.0f);
    check("k=300", x, n, 3, sp, nev, 300, 0.0f);
    free(x);
    x = blobs(&s, 600, 48);
    check("D=48", x, 600, 48, (int64_t[]){0, 250, 600}, 2, 12, 0.0f);
    free(x);
    /* a lattice: ties everywhere */
    int64_t m = 1000;
    x = malloc((size_t)m * 3 * sizeof *x);
    for (int64_t i = 0; i < m; i++)
        x[i * 3] = (float)(i % 10), x[i * 3 + 1] = (float)((i / 10) % 10), x[i * 3 + 2] = (float)(i / 100);
    check("lattice", x, m, 3, (int64_t[]){0, m}, 1, 27, 0.0f);
    free(x);
}

static void test_emulated_gpu_backward(void **state)
{
    (void)state;
    uint64_t s = 78;
    int64_t n = 3000, sp[4] = {0, 1000, 1010, 3000};
    int d = 5, k = 24;
    float *x = blobs(&s, n, d), *g = malloc((size_t)(n * k) * sizeof *g);
    for (int64_t e = 0; e < n * k; e++)
        g[e] = (float)h_rand_normal(&s);
    x[17 * d] = NAN;
    gpuml_ctx *ctx = h_ctx(GPUML_DEVICE_CPU, 2);
    gpuml_tensor *tx = h_tensor_f32(ctx, 2, SHAPE(n, d), x), *ts = h_tensor(ctx, GPUML_I64, 1, SHAPE(4), sp);
    gpuml_tensor *ti = h_tensor(ctx, GPUML_I32, 2, SHAPE(n, k), NULL), *td = h_tensor_f32(ctx, 2, SHAPE(n, k), NULL);
    gpuml_tensor *tg = h_tensor_f32(ctx, 2, SHAPE(n, k), g), *tgx = h_tensor_f32(ctx, 2, SHAPE(n, d), NULL);
    gpuml_tensor *trp = h_tensor(ctx, GPUML_I64, 1, SHAPE(n + 1), NULL);
    gpuml_tensor *tcol = h_tensor(ctx, GPUML_I64, 1, SHAPE(n * k), NULL);
    gpuml_knn_params p;
    gpuml_knn_params_init_defaults(&p);
    p.k = k;
    assert_int_equal(gpuml_knn_ex(ctx, tx, ts, &p, ti, td, trp, tcol), GPUML_OK);
    assert_int_equal(gpuml_knn_backward(ctx, tx, ti, tg, trp, tcol, tgx), GPUML_OK);
    const float *gx = gpuml_tensor_data(tgx);
    int bad = 0;
    for (int64_t e = 0; e < n * d; e++) {
        float want = gpuml_k_knn_grad_elem(x, n, d, gpuml_tensor_data(ti), k, g, gpuml_tensor_data(trp),
                                           gpuml_tensor_data(tcol), e / d, (int)(e % d));
        bad += memcmp(&want, &gx[e], sizeof want) != 0;
    }
    assert_int_equal(bad, 0);
    gpuml_tensor *all[] = {tx, ts, ti, td, tg, tgx, trp, tcol};
    for (size_t t = 0; t < sizeof all / sizeof *all; t++)
        gpuml_tensor_destroy(all[t]);
    gpuml_ctx_destroy(ctx);
    free(x), free(g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_emulated_gpu_body),
        cmocka_unit_test(test_emulated_gpu_backward),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
