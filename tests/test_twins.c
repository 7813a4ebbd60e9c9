/*
 * tests/test_twins.c - the GPU-only bodies of kernels/<op>.h against their CPU
 * twins, on the host.
 *
 * Where a CUDA launcher calls a per-element body and the CPU driver a
 * row-walking one (or a depth-first sum where the GPU runs levels), the GPU
 * side only runs in the emulated CUDA build. Here every such body is run the
 * way its launcher in kernels/cuda/<op>.cu runs it - the same loop over
 * elements, the same workspace carving, the same level order - and its
 * output is compared with the CPU driver's (gpuml_cpu_<op>, compiled into
 * this test from kernels/cpu/) on the same inputs. The list of these twins
 * is TWINS in tools/check_kernels_once.py, which fails when a GPU-only body
 * is missing there or here.
 *
 * All comparisons are bitwise: both sides run the same IEEE operations in
 * the same order (contraction is off on both compilers, kernels/common.h),
 * and the headers promise the same bits (kernels/segment.h,
 * condensation.h, batchnorm.h, neighbour.h, edgeconv.h, gravnet.h, knn.h).
 * Outputs start filled with the same byte pattern on both sides, so an
 * element written by one side only is a difference too.
 *
 * The emulated grid-stride loops run their elements last to first: no body
 * may depend on the order in which threads run.
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
#include "batchnorm.h"
#include "condensation.h"
#include "edgeconv.h"
#include "gravnet.h"
#include "kernels.h"
#include "knn.h"
#include "neighbour.h"
#include "rows.h"
#include "segment.h"

/* A launcher's GPUML_GRID_STRIDE(e, n), one thread at a time, backwards. */
#define GRID(e, n) for (int64_t e = (n) - 1; e >= 0; e--)

#define FILL 0xA5 /* the bytes every output starts as, on both sides */

/* ---- the CPU drivers' context: gpuml's pool of 2, loops cut small ------- */
static gpuml_kctx kc;
static gpuml_executor *pool;

static int setup(void **state)
{
    (void)state;
    if (gpuml_executor_create(GPUML_EXECUTOR_POOL, 2, &pool) != GPUML_OK)
        return -1;
    memset(&kc, 0, sizeof kc);
    kc.exec = pool;
    kc.nthreads = 2;
    kc.par_work = 64; /* split every loop: the drivers as they run on big inputs */
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    gpuml_executor_destroy(pool);
    return 0;
}

/* ---- helpers ---------------------------------------------------------- */
static void *out_buf(size_t bytes)
{
    void *p = malloc(bytes ? bytes : 1);
    assert_non_null(p);
    memset(p, FILL, bytes);
    return p;
}

/* Elements of a and b (n of `size` bytes) that differ in any bit; prints
 * the first few. type: 'f' float, 'd' double, 'i' int32, 'l' int64, 'b' byte. */
static int differ(const char *what, char type, const void *gpu, const void *cpu, int64_t n)
{
    size_t size = type == 'f' || type == 'i' ? 4 : type == 'b' ? 1 : 8;
    int bad = 0;
    for (int64_t e = 0; e < n; e++) {
        const char *a = (const char *)gpu + e * size, *b = (const char *)cpu + e * size;
        if (memcmp(a, b, size) == 0)
            continue;
        if (bad++ < 4) {
            double va = 0, vb = 0;
            if (type == 'f') {
                float x, y;
                memcpy(&x, a, 4), memcpy(&y, b, 4);
                va = x, vb = y;
            } else if (type == 'd') {
                memcpy(&va, a, 8), memcpy(&vb, b, 8);
            } else if (type == 'i') {
                int32_t x, y;
                memcpy(&x, a, 4), memcpy(&y, b, 4);
                va = x, vb = y;
            } else if (type == 'l') {
                int64_t x, y;
                memcpy(&x, a, 8), memcpy(&y, b, 8);
                va = (double)x, vb = (double)y;
            } else {
                va = *(const uint8_t *)a, vb = *(const uint8_t *)b;
            }
            printf("%s: element %lld: GPU body %.17g, CPU driver %.17g\n", what, (long long)e, va, vb);
        }
    }
    if (bad > 4)
        printf("%s: %d elements differ\n", what, bad);
    return bad;
}

/* n floats: N(0, 1), or with ties small multiples of 0.5; every nan_every-th
 * (0: none) a NaN, at a random place. */
static float *rand_f(uint64_t *s, int64_t n, int ties, int nan_every)
{
    float *v = malloc((size_t)(n > 0 ? n : 1) * sizeof *v);
    assert_non_null(v);
    for (int64_t e = 0; e < n; e++)
        v[e] = ties ? (float)((int64_t)(h_rand_u64(s) % 9) - 4) * 0.5f : (float)h_rand_normal(s);
    if (nan_every)
        for (int64_t e = 0; e < n / nan_every + 1 && n > 0; e++)
            v[h_rand_u64(s) % (uint64_t)n] = NAN;
    return v;
}

/* A kNN-like graph idx [n, k]: rows in events of 1 .. maxev rows; slot 0
 * the row itself, then rows of its event drawn with repeats (duplicate
 * neighbours: ties), -1 past a random number of slots, and now and then an
 * index outside [0, n) that every body must skip. */
static int32_t *make_graph(uint64_t *s, int64_t n, int64_t k, int64_t maxev)
{
    int32_t *idx = malloc((size_t)(n * k > 0 ? n * k : 1) * sizeof *idx);
    assert_non_null(idx);
    for (int64_t start = 0, len; start < n; start += len) {
        len = gpuml_k_min64(1 + (int64_t)(h_rand_u64(s) % (uint64_t)maxev), n - start);
        for (int64_t i = start; i < start + len; i++) {
            int64_t filled = (int64_t)(h_rand_u64(s) % (uint64_t)(k + 1));
            for (int64_t t = 0; t < k; t++) {
                int32_t v = -1;
                if (t == 0)
                    v = (int32_t)i;
                else if (t < filled)
                    v = (int32_t)(start + (int64_t)(h_rand_u64(s) % (uint64_t)len));
                if (t > 0 && h_rand_u64(s) % 16 == 0)
                    v = h_rand_u64(s) % 2 ? (int32_t)(n + (int64_t)(h_rand_u64(s) % 3)) : -2;
                idx[i * k + t] = v;
            }
        }
    }
    return idx;
}

/* The reverse adjacency of idx [n, k] (rowptr [n + 1], col [n k]) by the
 * CPU's CSR build, as the graph ops pass it to their backwards. */
static void make_csr(const int32_t *idx, int64_t n, int64_t k, int64_t **rowptr, int64_t **col)
{
    *rowptr = out_buf((size_t)(n + 1) * sizeof(int64_t));
    *col = out_buf((size_t)(n * k) * sizeof(int64_t));
    assert_int_equal(gpuml_cpu_csr_build(&kc, idx, 0, n * k, n, *rowptr, *col, NULL), GPUML_OK);
}

/* ======================= rows.h: the CSR build ========================== */

/* kernels/cuda/rows.cu sorts (key, source) pairs with CUB's stable radix
 * sort; a stable sort of them is their order by (key, source). */
typedef struct kv {
    uint32_t key;
    int64_t val;
} kv;

static int kv_cmp(const void *a, const void *b)
{
    const kv *x = a, *y = b;
    if (x->key != y->key)
        return x->key < y->key ? -1 : 1;
    return x->val < y->val ? -1 : x->val > y->val;
}

/* gpuml_cuda_csr_build: csr_key_kernel, the sort, csr_col_kernel,
 * csr_rowptr_kernel (with no sorted keys at all when m == 0). */
static void emul_csr_build(const void *idx, int is64, int64_t m, int64_t ntargets, int64_t *rowptr, int64_t *col)
{
    uint32_t *sorted = NULL;
    kv *pairs = NULL;
    if (m > 0) {
        pairs = malloc((size_t)m * sizeof *pairs);
        sorted = malloc((size_t)m * sizeof *sorted);
        assert_true(pairs && sorted);
        GRID(i, m)
        {
            pairs[i].key = gpuml_k_csr_key(idx, is64, ntargets, i);
            pairs[i].val = i;
        }
        qsort(pairs, (size_t)m, sizeof *pairs, kv_cmp);
        for (int64_t p = 0; p < m; p++)
            sorted[p] = pairs[p].key;
        GRID(p, m)
        if ((int64_t)sorted[p] < ntargets)
            col[p] = pairs[p].val;
    }
    GRID(t, ntargets + 1) rowptr[t] = gpuml_k_lower_bound_u32(sorted, m, t);
    free(pairs), free(sorted);
}

static void test_csr(void **state)
{
    (void)state;
    uint64_t s = 11;
    const int64_t shapes[][2] = {{0, 0}, {0, 5}, {1, 1}, {7, 0}, {100, 10}, {1000, 300}, {513, 1}, {64, 1000}};
    int bad = 0;
    for (size_t c = 0; c < sizeof shapes / sizeof *shapes; c++)
        for (int is64 = 0; is64 < 2; is64++) {
            int64_t m = shapes[c][0], nt = shapes[c][1];
            int64_t *i64 = malloc((size_t)(m + 1) * sizeof *i64);
            int32_t *i32 = malloc((size_t)(m + 1) * sizeof *i32);
            for (int64_t i = 0; i < m; i++) { /* out of range below and above; many duplicates */
                int64_t v = (int64_t)(h_rand_u64(&s) % (uint64_t)(nt + 6)) - 3;
                i64[i] = v, i32[i] = (int32_t)v;
            }
            const void *idx = is64 ? (const void *)i64 : (const void *)i32;
            int64_t *rp_g = out_buf((size_t)(nt + 1) * 8), *rp_c = out_buf((size_t)(nt + 1) * 8);
            int64_t *col_g = out_buf((size_t)m * 8), *col_c = out_buf((size_t)m * 8);
            emul_csr_build(idx, is64, m, nt, rp_g, col_g);
            assert_int_equal(gpuml_cpu_csr_build(&kc, idx, is64, m, nt, rp_c, col_c, NULL), GPUML_OK);
            char what[64];
            snprintf(what, sizeof what, "csr m=%lld nt=%lld is64=%d rowptr", (long long)m, (long long)nt, is64);
            bad += differ(what, 'l', rp_g, rp_c, nt + 1);
            snprintf(what, sizeof what, "csr m=%lld nt=%lld is64=%d col", (long long)m, (long long)nt, is64);
            bad += differ(what, 'l', col_g, col_c, m); /* past rowptr[nt]: unwritten on both */
            free(i64), free(i32), free(rp_g), free(rp_c), free(col_g), free(col_c);
        }
    assert_int_equal(bad, 0);
}

/* ======================= neighbour.h ==================================== */
static void test_neighbour(void **state)
{
    (void)state;
    uint64_t s = 21;
    /* n, k, first, C, largest event */
    const int64_t shapes[][5] = {{0, 4, 1, 5, 3},  {1, 1, 1, 3, 1},  {7, 3, 0, 1, 2},
                                 {50, 8, 1, 37, 9}, {40, 5, 0, 70, 40}, {30, 16, 1, 33, 4}};
    const int ops[] = {GPUML_REDUCE_SUM, GPUML_REDUCE_MEAN, GPUML_REDUCE_MAX};
    int bad = 0;
    for (size_t c = 0; c < sizeof shapes / sizeof *shapes; c++) {
        int64_t n = shapes[c][0], k = shapes[c][1], C = shapes[c][3], ke = k - shapes[c][2];
        int first = (int)shapes[c][2];
        int32_t *idx = make_graph(&s, n, k, shapes[c][4]);
        for (int ties = 0; ties < 2; ties++)
            for (size_t o = 0; o < 3; o++) {
                int op = ops[o];
                float *edges = rand_f(&s, n * ke * C, ties, ties ? 0 : 97), *gout = rand_f(&s, n * C, 0, 0);
                float *out_g = out_buf((size_t)(n * C) * 4), *out_c = out_buf((size_t)(n * C) * 4);
                int32_t *am_g = out_buf((size_t)(n * C) * 4), *am_c = out_buf((size_t)(n * C) * 4);
                /* am for every op: -1 for SUM and MEAN on both (the bodies disagreed
                 * there once; gpuml_neighbour_aggregate passes am for MAX only) */
                int with_am = 1;
                GRID(e, n * C)
                gpuml_k_neighbour_reduce(op, edges, idx, n, k, first, C, e / C, e % C, out_g, with_am ? am_g : NULL);
                assert_int_equal(gpuml_cpu_neighbour_reduce(&kc, op, edges, idx, n, k, first, C, out_c,
                                                            with_am ? am_c : NULL),
                                 GPUML_OK);
                char what[96];
                snprintf(what, sizeof what, "neighbour_reduce op %d n=%lld C=%lld ties=%d", op, (long long)n,
                         (long long)C, ties);
                bad += differ(what, 'f', out_g, out_c, n * C);
                bad += differ(what, 'i', am_g, am_c, n * C);
                /* the backward from the CPU's arg-max (the same on both) */
                float *ge_g = out_buf((size_t)(n * ke * C) * 4), *ge_c = out_buf((size_t)(n * ke * C) * 4);
                const int32_t *am = op == GPUML_REDUCE_MAX ? am_c : NULL;
                GRID(e, n * C) gpuml_k_neighbour_grad(op, gout, am, idx, n, k, first, C, e / C, e % C, ge_g);
                assert_int_equal(gpuml_cpu_neighbour_grad(&kc, op, gout, am, idx, n, k, first, C, ge_c), GPUML_OK);
                snprintf(what, sizeof what, "neighbour_grad op %d n=%lld C=%lld ties=%d", op, (long long)n,
                         (long long)C, ties);
                bad += differ(what, 'f', ge_g, ge_c, n * ke * C);
                free(edges), free(gout), free(out_g), free(out_c), free(am_g), free(am_c), free(ge_g), free(ge_c);
            }
        free(idx);
    }
    assert_int_equal(bad, 0);
}

/* ======================= gravnet.h ====================================== */
static void test_gravnet(void **state)
{
    (void)state;
    uint64_t s = 31;
    /* n, k, first, P, largest event */
    const int64_t shapes[][5] = {{0, 3, 1, 4, 2},   {1, 1, 1, 3, 1},   {60, 7, 0, 45, 10},
                                 {60, 7, 1, 45, 10}, {33, 5, 1, 70, 33}, {9, 12, 0, 1, 3}};
    int bad = 0;
    for (size_t c = 0; c < sizeof shapes / sizeof *shapes; c++) {
        int64_t n = shapes[c][0], k = shapes[c][1], P = shapes[c][3];
        int first = (int)shapes[c][2];
        int32_t *idx = make_graph(&s, n, k, shapes[c][4]);
        for (int variant = 0; variant < 3; variant++) { /* plain, ties and NaN, no arg-max output */
            float *h = rand_f(&s, n * P, variant == 1, variant == 1 ? 23 : 0);
            float *w = malloc((size_t)(n * k + 1) * sizeof *w);
            for (int64_t e = 0; e < n * k; e++) /* equal weights when tied: equal messages */
                w[e] = variant == 1 ? 1.0f : (float)h_rand_uniform(&s, 0, 1);
            float *out_g = out_buf((size_t)(n * 2 * P) * 4), *out_c = out_buf((size_t)(n * 2 * P) * 4);
            int32_t *am_g = variant == 2 ? NULL : out_buf((size_t)(n * P) * 4);
            int32_t *am_c = variant == 2 ? NULL : out_buf((size_t)(n * P) * 4);
            GRID(e, n * P) gpuml_k_gravnet_fwd_elem(h, idx, w, n, k, P, first, e / P, e % P, out_g, am_g);
            assert_int_equal(gpuml_cpu_gravnet_fwd(&kc, h, idx, w, n, k, P, first, out_c, am_c), GPUML_OK);
            char what[96];
            snprintf(what, sizeof what, "gravnet_fwd n=%lld P=%lld first=%d variant %d", (long long)n, (long long)P,
                     first, variant);
            bad += differ(what, 'f', out_g, out_c, n * 2 * P);
            if (am_g)
                bad += differ(what, 'i', am_g, am_c, n * P);
            free(h), free(w), free(out_g), free(out_c), free(am_g), free(am_c);
        }
        free(idx);
    }
    assert_int_equal(bad, 0);
}

/* ======================= edgeconv.h ===================================== */
static void test_edgeconv(void **state)
{
    (void)state;
    uint64_t s = 41;
    /* n, k, first, C, largest event */
    const int64_t shapes[][5] = {{0, 3, 1, 4, 2}, {1, 1, 1, 2, 1}, {5, 3, 0, 1, 5}, {50, 6, 1, 40, 8},
                                 {30, 4, 0, 33, 30}};
    int bad = 0;
    for (size_t c = 0; c < sizeof shapes / sizeof *shapes; c++) {
        int64_t n = shapes[c][0], k = shapes[c][1], C = shapes[c][3], ke = k - shapes[c][2];
        int first = (int)shapes[c][2];
        int32_t *idx = make_graph(&s, n, k, shapes[c][4]);
        int64_t *rowptr, *col;
        make_csr(idx, n, k, &rowptr, &col);
        float *gout = rand_f(&s, n * ke * C, 0, 41);
        float *g_g = out_buf((size_t)(n * 2 * C) * 4), *g_c = out_buf((size_t)(n * 2 * C) * 4);
        GRID(e, n * C) gpuml_k_edge_grad_node(gout, idx, rowptr, col, n, k, first, C, e / C, e % C, g_g);
        assert_int_equal(gpuml_cpu_edge_grad_node(&kc, gout, idx, rowptr, col, n, k, first, C, g_c), GPUML_OK);
        char what[96];
        snprintf(what, sizeof what, "edge_grad_node n=%lld k=%lld first=%d C=%lld", (long long)n, (long long)k, first,
                 (long long)C);
        bad += differ(what, 'f', g_g, g_c, n * 2 * C);
        free(idx), free(rowptr), free(col), free(gout), free(g_g), free(g_c);
    }
    assert_int_equal(bad, 0);
}

/* ======================= knn.h: the backward ============================ */
static void test_knn_grad(void **state)
{
    (void)state;
    uint64_t s = 51;
    /* n, d, k, largest event */
    const int64_t shapes[][4] = {{0, 3, 4, 2}, {1, 2, 3, 1}, {50, 5, 1, 10}, {200, 3, 8, 60}, {120, 7, 12, 5}};
    int bad = 0;
    for (size_t c = 0; c < sizeof shapes / sizeof *shapes; c++) {
        int64_t n = shapes[c][0], k = shapes[c][2];
        int d = (int)shapes[c][1];
        int32_t *idx = make_graph(&s, n, k, shapes[c][3]);
        int64_t *rowptr, *col;
        make_csr(idx, n, k, &rowptr, &col);
        float *x = rand_f(&s, n * d, c % 2, 37), *g = rand_f(&s, n * k, 0, 0);
        float *gx_g = out_buf((size_t)(n * d) * 4), *gx_c = out_buf((size_t)(n * d) * 4);
        GRID(e, n * d) gx_g[e] = gpuml_k_knn_grad_elem(x, n, d, idx, (int)k, g, rowptr, col, e / d, (int)(e % d));
        assert_int_equal(gpuml_cpu_knn_grad(&kc, x, n, d, idx, (int)k, g, rowptr, col, gx_c), GPUML_OK);
        char what[64];
        snprintf(what, sizeof what, "knn_grad n=%lld d=%d k=%lld", (long long)n, d, (long long)k);
        bad += differ(what, 'f', gx_g, gx_c, n * d);
        free(idx), free(rowptr), free(col), free(x), free(g), free(gx_g), free(gx_c);
    }
    assert_int_equal(bad, 0);
}

/* ======================= batchnorm.h ==================================== */
typedef struct bn_in {
    int64_t R, C, gk;
    float *x, *gy, *mean_f, *invstd_f, *gamma, *beta, *coef;
    double *mean_d;
    uint8_t *mask;
} bn_in;

/* x [R, C] with NaNs, gy one row per gk rows, arbitrary statistics (the
 * bodies' arithmetic does not care whether they are x's), a mask with
 * padding rows and one chunk of padding only (mask_kind 0: no mask). */
static bn_in bn_make(uint64_t *s, int64_t R, int64_t C, int64_t gk, int mask_kind)
{
    bn_in b = {R, C, gk, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL};
    b.x = rand_f(s, R * C, 0, 53);
    b.gy = rand_f(s, ((R + gk - 1) / gk) * C, 0, 0);
    b.mean_f = rand_f(s, C, 0, 0);
    b.invstd_f = malloc((size_t)C * 2 * sizeof(float));
    b.gamma = rand_f(s, C, 0, 0);
    b.beta = rand_f(s, C, 0, 0);
    b.coef = rand_f(s, 2 * C, 0, 0);
    b.mean_d = malloc((size_t)C * sizeof(double));
    for (int64_t c = 0; c < C; c++) {
        b.invstd_f[c] = (float)h_rand_uniform(s, 0.2, 3);
        b.mean_d[c] = h_rand_normal(s);
    }
    if (mask_kind) {
        b.mask = malloc((size_t)(R > 0 ? R : 1));
        for (int64_t r = 0; r < R; r++)
            b.mask[r] = (h_rand_u64(s) % 5 != 0) && !(r >= GPUML_K_BN_CHUNK && r < 2 * GPUML_K_BN_CHUNK);
    }
    return b;
}

static void bn_free(bn_in *b)
{
    free(b->x), free(b->gy), free(b->mean_f), free(b->invstd_f), free(b->gamma), free(b->beta), free(b->coef);
    free(b->mean_d), free(b->mask);
}

static void test_batchnorm(void **state)
{
    (void)state;
    uint64_t s = 61;
    /* R, C, gk (gy rows after a fused aggregation) */
    const int64_t shapes[][3] = {{0, 3, 1}, {1, 1, 1}, {255, 5, 1}, {300, 37, 3}, {777, 70, 7}, {512, 2, 1}};
    int bad = 0;
    char what[128];
    for (size_t c = 0; c < sizeof shapes / sizeof *shapes; c++)
        for (int variant = 0; variant < 4; variant++) {
            /* variant bit 0: mask, bit 1: gamma/beta and ReLU (else none) */
            int64_t R = shapes[c][0], C = shapes[c][1], gk = shapes[c][2], nch = gpuml_k_bn_chunks(R);
            bn_in b = bn_make(&s, R, C, gk, variant & 1);
            const float *gamma = variant & 2 ? b.gamma : NULL, *beta = variant & 2 ? b.beta : NULL;
            int relu = (variant & 2) != 0;
            for (int kind = GPUML_K_BN_SUM; kind <= GPUML_K_BN_GRAD; kind++) {
                double *pg[3], *pc[3];
                for (int q = 0; q < 3; q++) {
                    pg[q] = out_buf((size_t)(nch * C) * 8);
                    pc[q] = out_buf((size_t)(nch * C) * 8);
                }
                GRID(e, nch * C)
                gpuml_k_bn_partial(kind, b.x, b.gy, b.mask, R, C, b.mean_d, b.mean_f, b.invstd_f, gamma, beta, relu, gk,
                                   e / C, e % C, pg[0], pg[1], pg[2]);
                assert_int_equal(gpuml_cpu_bn_partial(&kc, kind, b.x, b.gy, b.mask, R, C, b.mean_d, b.mean_f,
                                                      b.invstd_f, gamma, beta, relu, gk, pc[0], pc[1], pc[2]),
                                 GPUML_OK);
                for (int q = 0; q < 3; q++) {
                    snprintf(what, sizeof what, "bn_partial kind %d R=%lld C=%lld variant %d p%d", kind, (long long)R,
                             (long long)C, variant, q);
                    bad += differ(what, 'd', pg[q], pc[q], nch * C);
                    free(pg[q]), free(pc[q]);
                }
            }
            for (int training = 0; training < 2; training++) {
                float *gx_g = out_buf((size_t)(R * C) * 4), *gx_c = out_buf((size_t)(R * C) * 4);
                GRID(e, R * C)
                gpuml_k_bn_grad_x(b.x, b.gy, b.mask, C, training, b.mean_f, b.invstd_f, gamma, beta, relu, e / C / gk,
                                  b.coef, e / C, e % C, gx_g);
                assert_int_equal(gpuml_cpu_bn_grad_x(&kc, b.x, b.gy, b.mask, R, C, training, b.mean_f, b.invstd_f,
                                                     gamma, beta, relu, gk, b.coef, gx_c),
                                 GPUML_OK);
                snprintf(what, sizeof what, "bn_grad_x R=%lld C=%lld variant %d training %d", (long long)R,
                         (long long)C, variant, training);
                bad += differ(what, 'f', gx_g, gx_c, R * C);
                free(gx_g), free(gx_c);
            }
            bn_free(&b);
        }
    /* batch norm + activation + neighbour SUM / MEAN: x [n ke, C]; the mask
     * is required there (the valid edges); ke = 0 has no edge at all */
    const int64_t agg[][3] = {{0, 4, 3}, {3, 0, 5}, {1, 1, 1}, {40, 6, 37}, {25, 9, 70}};
    for (size_t c = 0; c < sizeof agg / sizeof *agg; c++)
        for (int variant = 0; variant < 4; variant++) {
            int64_t n = agg[c][0], ke = agg[c][1], C = agg[c][2];
            bn_in b = bn_make(&s, n * ke, C, 1, 1);
            const float *gamma = variant & 2 ? b.gamma : NULL, *beta = variant & 2 ? b.beta : NULL;
            int relu = (variant & 2) != 0, op = variant & 1 ? GPUML_REDUCE_MEAN : GPUML_REDUCE_SUM;
            float *o_g = out_buf((size_t)(n * C) * 4), *o_c = out_buf((size_t)(n * C) * 4);
            GRID(e, n * C)
            gpuml_k_bn_aggregate(b.x, b.mask, ke, C, b.mean_f, b.invstd_f, gamma, beta, relu, op, e / C, e % C, o_g);
            assert_int_equal(gpuml_cpu_bn_aggregate(&kc, b.x, b.mask, n, ke, C, b.mean_f, b.invstd_f, gamma, beta, relu,
                                                    op, o_c),
                             GPUML_OK);
            snprintf(what, sizeof what, "bn_aggregate n=%lld ke=%lld C=%lld variant %d", (long long)n, (long long)ke,
                     (long long)C, variant);
            bad += differ(what, 'f', o_g, o_c, n * C);
            free(o_g), free(o_c);
            bn_free(&b);
        }
    assert_int_equal(bad, 0);
}

/* ======================= condensation.h: condensation points ============ */

/* oc_alpha_init_kernel, oc_alpha_row_kernel (its atomics as plain min /
 * max, the rows taken in the order `order`: the result must not depend on
 * it), oc_alpha_kernel. */
static void emul_oc_alpha(const float *beta, const int32_t *truth, const int64_t *row_splits, int64_t batch,
                          int64_t nobj, int64_t n, const int64_t *order, int64_t *alpha)
{
    uint64_t *key = malloc((size_t)(batch * nobj + 1) * 8), *first = malloc((size_t)(batch * nobj + 1) * 8);
    assert_true(key && first);
    GRID(e, batch * nobj)
    {
        key[e] = 0;
        first[e] = UINT64_MAX;
    }
    for (int64_t q = 0; q < n; q++) {
        int64_t i = order[q], t = truth[i];
        if (t < 0 || t >= nobj)
            continue;
        int64_t b = gpuml_k_event_of_row(row_splits, batch, i), begin, end;
        int bad = 0;
        gpuml_k_segment(row_splits, b, n, &begin, &end, &bad);
        if (i < begin || i >= end)
            continue;
        int64_t e = b * nobj + t;
        if ((uint64_t)i < first[e])
            first[e] = (uint64_t)i;
        if (beta[i] == beta[i]) {
            uint64_t kk = gpuml_k_oc_alpha_key(beta[i], i - begin);
            if (kk > key[e])
                key[e] = kk;
        }
    }
    GRID(e, batch * nobj)
    {
        int64_t b = e / nobj, begin, end;
        int bad = 0;
        gpuml_k_segment(row_splits, b, n, &begin, &end, &bad);
        assert_int_equal(bad, 0);
        alpha[e] = gpuml_k_oc_alpha_of(beta, key[e], first[e], begin);
    }
    free(key), free(first);
}

static void test_oc_alpha(void **state)
{
    (void)state;
    uint64_t s = 71;
    int bad = 0;
    /* the rules one by one, an object per event: the largest beta; the first
     * on ties; -0 ties +0 (the first stays); a NaN first member stays; a later
     * NaN never wins; -inf and negatives; an empty event; a single row */
    static const float fixed_beta[] = {0.2f, 0.7f, 0.1f, 0.5f, 0.5f, -0.0f, 0.0f, 0.0f, -0.0f,
                                       NAN,  0.3f, 0.9f, 0.4f, NAN,  0.4f,  -INFINITY, -INFINITY,
                                       -0.5f, -0.25f, -1.0f, 0.6f};
    static const int64_t fixed_splits[] = {0, 3, 5, 7, 9, 12, 15, 17, 20, 20, 21};
    for (int c = 0; c < 7; c++) {
        /* events of 0 .. maxev rows (empty and one-row events included) */
        int64_t batch = c == 0 ? 0 : c == 1 ? 1 : 1 + (int64_t)(h_rand_u64(&s) % 40), nobj = c >= 5 ? 1 : 6, d = 2;
        int64_t maxev = c == 1 ? 0 : c == 2 ? 1 : 30;
        if (c == 6)
            batch = sizeof fixed_splits / sizeof *fixed_splits - 1;
        int64_t *sp = malloc((size_t)(batch + 1) * 8);
        sp[0] = 0;
        for (int64_t b = 0; b < batch; b++)
            sp[b + 1] = c == 6 ? fixed_splits[b + 1] : sp[b] + (int64_t)(h_rand_u64(&s) % (uint64_t)(maxev + 1));
        int64_t n = sp[batch];
        float *beta = malloc((size_t)(n + 1) * 4), *x = rand_f(&s, n * d, 0, 0);
        int32_t *truth = malloc((size_t)(n + 1) * 4);
        for (int64_t i = 0; i < n && c == 6; i++)
            beta[i] = fixed_beta[i], truth[i] = 0;
        for (int64_t i = 0; i < n && c < 6; i++) {
            /* ties (a few levels), -0 against +0, NaN (first member or later),
             * negatives and infinities; truth -1 (noise) .. nobj (out of range) */
            uint64_t r = h_rand_u64(&s) % 20;
            beta[i] = r < 8 ? (float)(h_rand_u64(&s) % 4) * 0.25f
                    : r < 10 ? (r == 8 ? -0.0f : 0.0f)
                    : r == 10 ? NAN
                    : r == 11 ? (h_rand_u64(&s) % 2 ? INFINITY : -INFINITY)
                    : r == 12 ? -(float)h_rand_uniform(&s, 0, 1)
                              : (float)h_rand_uniform(&s, 0, 1);
            truth[i] = (int32_t)(h_rand_u64(&s) % (uint64_t)(nobj + 2)) - 1;
        }
        int64_t *order = malloc((size_t)(n + 1) * 8);
        int64_t *a_c = out_buf((size_t)(batch * nobj) * 8);
        float *vterm = malloc((size_t)(n + 1) * 4), *stats = malloc((size_t)(batch * GPUML_OC_STATS + 1) * 4), out[4];
        void *ws = malloc(gpuml_k_oc_ws_bytes(n, batch, nobj, d) + 1);
        assert_int_equal(gpuml_cpu_oc_forward(&kc, beta, x, truth, sp, batch, nobj, n, d, 0.1f, 1.0f, a_c, vterm,
                                              stats, out, ws),
                         GPUML_OK);
        for (int o = 0; o < 3; o++) { /* rows forwards, backwards, shuffled */
            for (int64_t q = 0; q < n; q++)
                order[q] = o == 1 ? n - 1 - q : q;
            if (o == 2)
                for (int64_t q = n - 1; q > 0; q--) {
                    int64_t r = (int64_t)(h_rand_u64(&s) % (uint64_t)(q + 1)), t = order[q];
                    order[q] = order[r], order[r] = t;
                }
            int64_t *a_g = out_buf((size_t)(batch * nobj) * 8);
            emul_oc_alpha(beta, truth, sp, batch, nobj, n, order, a_g);
            char what[80];
            snprintf(what, sizeof what, "oc alpha batch=%lld n=%lld order %d", (long long)batch, (long long)n, o);
            bad += differ(what, 'l', a_g, a_c, batch * nobj);
            free(a_g);
        }
        free(sp), free(beta), free(x), free(truth), free(order), free(a_c), free(vterm), free(stats), free(ws);
    }
    assert_int_equal(bad, 0);
}

/* ======================= segment.h: the ragged reductions =============== */

/* gpuml_cuda_segment_reduce: the levels into the two partial buffers of
 * j.ws (gpuml_k_seg_ws_bytes, allocated to the byte: the sanitizers see an
 * overrun), then the last level with its row_splits check. */
static int emul_segment_reduce(gpuml_k_seg j)
{
    int dev_error = 0;
    if (j.batch * j.ncols == 0)
        return 0;
    size_t bytes = gpuml_k_seg_ws_bytes(j.nrows, j.ncols, j.batch);
    j.ws = malloc(bytes ? bytes : 1);
    assert_non_null(j.ws);
    gpuml_k_segpart src = {NULL, NULL, NULL};
    for (int l = 0; l < j.levels - 1; l++) {
        int64_t n = gpuml_k_seg_slots(j.nrows, j.batch, l) * j.ncols;
        gpuml_k_segpart dst = gpuml_k_seg_part(&j, l & 1);
        GRID(e, n) gpuml_k_seg_level_elem(&j, l, src, dst, e);
        src = dst;
    }
    GRID(e, j.batch * j.ncols)
    {
        int64_t b = e / j.ncols, begin, end;
        int bad = 0;
        gpuml_k_segment(j.row_splits, b, j.nrows, &begin, &end, &bad);
        if (j.check && (bad || (b == j.batch - 1 && j.row_splits[j.batch] != j.nrows)))
            dev_error = GPUML_DEVERR_ROW_SPLITS;
        gpuml_k_seg_final_elem(&j, src, e);
    }
    free(j.ws);
    return dev_error;
}

/* The layout the levels rely on (kernels/segment.h), checked directly:
 * level 0's source of event b is its rows; the slots of level l are
 * disjoint between events, increasing, hold one per chunk of the level
 * below and fit in gpuml_k_seg_slots; every slot of event b maps back to b;
 * the two partial buffers lie apart inside the workspace. */
static int seg_layout(const gpuml_k_seg *j)
{
    int bad = 0;
    for (int64_t b = 0; b < j->batch; b++) {
        int64_t pb, pe;
        gpuml_k_seg_src(j, b, 0, &pb, &pe);
        bad += pb != j->row_splits[b] || pe != j->row_splits[b + 1];
    }
    for (int l = 0; l < j->levels - 1; l++) {
        int64_t prev_end = 0, slots = gpuml_k_seg_slots(j->nrows, j->batch, l);
        for (int64_t b = 0; b < j->batch; b++) {
            int64_t sb, se, db, de;
            gpuml_k_seg_src(j, b, l, &sb, &se);
            gpuml_k_seg_src(j, b, l + 1, &db, &de);
            bad += de - db != gpuml_k_seg_chunks(se - sb) || db < prev_end || de > slots;
            for (int64_t q = db; q < de; q++)
                bad += gpuml_k_seg_event_of_slot(j, l, q) != b;
            prev_end = de;
        }
    }
    size_t bytes = gpuml_k_seg_ws_bytes(j->nrows, j->ncols, j->batch);
    gpuml_k_seg jw = *j;
    jw.ws = malloc(bytes ? bytes : 1);
    assert_non_null(jw.ws);
    gpuml_k_segpart p0 = gpuml_k_seg_part(&jw, 0), p1 = gpuml_k_seg_part(&jw, 1);
    size_t c0 = (size_t)gpuml_k_seg_cap(j->nrows, j->batch, j->levels, 0) * (size_t)j->ncols;
    size_t c1 = (size_t)gpuml_k_seg_cap(j->nrows, j->batch, j->levels, 1) * (size_t)j->ncols;
    char *w0 = jw.ws; /* buffer 0 at the start, buffer 1 after it, 256-aligned, both inside */
    size_t o1 = (size_t)((char *)p1.d - w0), e0 = (size_t)((char *)p0.d - w0) + c0 * 16, e1 = o1 + c1 * 16;
    bad += (char *)p0.d != w0 || (char *)p0.f != w0 || (char *)p0.i != w0 + c0 * 8 || (char *)p1.i != w0 + o1 + c1 * 8;
    bad += e0 > o1 || e1 > bytes || o1 % 256 != 0;
    free(jw.ws);
    if (bad)
        printf("segment layout: %d problems (nrows %lld, batch %lld, levels %d)\n", bad, (long long)j->nrows,
               (long long)j->batch, j->levels);
    return bad;
}

/* row_splits [batch + 1] over nrows rows: `big` rows in event big_at, the
 * others in events of 0 .. maxev rows, what is left over in the last event
 * that is not the big one. */
static int64_t *make_splits(uint64_t *s, int64_t batch, int64_t nrows, int64_t maxev, int64_t big, int64_t big_at)
{
    int64_t *sp = malloc((size_t)(batch + 1) * 8), *len = calloc((size_t)(batch + 1), 8), left = nrows - big;
    assert_true(sp && len);
    for (int64_t b = 0; b < batch; b++) {
        if (b == big_at) {
            len[b] = big;
            continue;
        }
        len[b] = gpuml_k_min64(left, (int64_t)(h_rand_u64(s) % (uint64_t)(maxev + 1)));
        left -= len[b];
    }
    if (batch > 0)
        len[batch - 1 != big_at || batch < 2 ? batch - 1 : batch - 2] += left;
    sp[0] = 0;
    for (int64_t b = 0; b < batch; b++)
        sp[b + 1] = sp[b] + len[b];
    free(len);
    return sp;
}

/* One reduction both ways, with an arg output (with_arg), the sums in
 * double (with_d) and out's initial values (init_out, for out +=; NULL:
 * the fill pattern); returns the differences. */
static int seg_case(const char *name, gpuml_k_seg j, int with_arg, int with_d, const float *init_out)
{
    int64_t no = j.batch * j.ncols;
    gpuml_k_seg jg = j, jc = j;
    jg.out = out_buf((size_t)no * 4), jc.out = out_buf((size_t)no * 4);
    if (init_out)
        memcpy(jg.out, init_out, (size_t)no * 4), memcpy(jc.out, init_out, (size_t)no * 4);
    if (with_arg)
        jg.arg = out_buf((size_t)no * 8), jc.arg = out_buf((size_t)no * 8);
    if (with_d)
        jg.out_d = out_buf((size_t)no * 8), jc.out_d = out_buf((size_t)no * 8);
    int bad = emul_segment_reduce(jg) != 0;
    if (bad)
        printf("%s: the row_splits check fired on valid splits\n", name);
    jc.ws = NULL; /* the CPU driver keeps no partials */
    assert_int_equal(gpuml_cpu_segment_reduce(&kc, jc), GPUML_OK);
    bad += differ(name, 'f', jg.out, jc.out, no);
    if (with_arg)
        bad += differ(name, 'l', jg.arg, jc.arg, no);
    if (with_d)
        bad += differ(name, 'd', jg.out_d, jc.out_d, no);
    /* events of at most GPUML_K_SCHUNK rows: one scan of level 0 is the sum */
    if (with_d && !j.col)
        for (int64_t b = 0; b < j.batch; b++) {
            if (j.row_splits[b + 1] - j.row_splits[b] > GPUML_K_SCHUNK || j.row_splits[b + 1] == j.row_splits[b])
                continue;
            gpuml_k_segpart none = {NULL, NULL, NULL};
            for (int64_t c = 0; c < j.ncols; c++) {
                double sum = -1.0;
                float best;
                int64_t bi;
                gpuml_k_seg_scan(&j, 0, none, j.row_splits[b], j.row_splits[b + 1], c, &sum, &best, &bi);
                bad += differ(name, 'd', &sum, &jc.out_d[b * j.ncols + c], 1);
            }
        }
    bad += seg_layout(&j);
    free(jg.out), free(jc.out), free(jg.arg), free(jc.arg), free(jg.out_d), free(jc.out_d);
    return bad;
}

static void test_segment(void **state)
{
    (void)state;
    uint64_t s = 81;
    /* batch, nrows, ncols, largest event besides the big one, big event's
     * rows (0: none) and its index. 128 / 129 rows: one level or two;
     * 16384 / 16385: two or three; more events than rows. */
    const int64_t shapes[][6] = {
        {3, 0, 2, 0, 0, 0},         {1, 1, 3, 1, 0, 0},          {5, 5, 1, 1, 0, 0},
        {12, 128, 2, 0, 128, 4},    {12, 129, 3, 0, 129, 0},     {40, 700, 5, 30, 300, 11},
        {4, 16384, 1, 0, 16384, 3}, {6, 20000, 2, 100, 16385, 2}, {500, 300, 2, 1, 129, 499},
        {20000, 18000, 1, 0, 17000, 7000},
        /* more than GPUML_K_SEG_CBLOCK columns: the CPU walks them in blocks */
        {7, 1500, 70, 300, 200, 3}, {3, 16500, 33, 0, 16400, 1},
    };
    const int ops[] = {GPUML_REDUCE_SUM, GPUML_REDUCE_MEAN, GPUML_REDUCE_MAX};
    int bad = 0;
    for (size_t c = 0; c < sizeof shapes / sizeof *shapes; c++) {
        int64_t batch = shapes[c][0], nrows = shapes[c][1], ncols = shapes[c][2];
        int64_t *sp = make_splits(&s, batch, nrows, shapes[c][3], shapes[c][4], shapes[c][5]);
        assert_int_equal(sp[batch], nrows);
        for (int ties = 0; ties < 3; ties++) {
            /* ties 2: magnitudes 2^-40 .. 2^40, so that double sums round and only the same grouping of the
             * same terms gives the same bits (sums of floats of one scale are exact in double whatever the
             * grouping, and would hide a wrong chunking) */
            float *x = rand_f(&s, nrows * ncols, ties == 1, ties == 0 ? 211 : 0);
            if (ties == 2)
                for (int64_t e = 0; e < nrows * ncols; e++)
                    x[e] = ldexpf(x[e], (int)(h_rand_u64(&s) % 81) - 40);
            for (size_t o = 0; o < 3; o++) {
                gpuml_k_seg j;
                memset(&j, 0, sizeof j);
                j.op = ops[o], j.x = x, j.nrows = nrows, j.ncols = ncols, j.row_splits = sp, j.batch = batch;
                j.levels = gpuml_k_seg_levels(nrows), j.check = 1;
                char what[128];
                snprintf(what, sizeof what, "segment op %d batch=%lld nrows=%lld ncols=%lld ties=%d", ops[o],
                         (long long)batch, (long long)nrows, (long long)ncols, ties);
                bad += seg_case(what, j, ops[o] == GPUML_REDUCE_MAX, 0, NULL);
                if (ops[o] == GPUML_REDUCE_SUM) { /* the sums in double (out_d) */
                    snprintf(what, sizeof what, "segment out_d batch=%lld nrows=%lld ties=%d", (long long)batch,
                             (long long)nrows, ties);
                    bad += seg_case(what, j, 0, 1, NULL);
                }
            }
            free(x);
        }
        free(sp);
    }
    /* scatter-add (gpuml_scatter_add_rows): the CSR of a random index over
     * nt targets, sources read through col, out += sums (empty targets kept);
     * a target's sources up to thousands (a broadcast's gradient) */
    const int64_t sa[][3] = {{1, 1, 2}, {50, 7, 3}, {3000, 4, 2}, {20000, 2, 1}, {40, 100, 2}, {300, 20, 40}};
    for (size_t c = 0; c < sizeof sa / sizeof *sa; c++) {
        int64_t m = sa[c][0], nt = sa[c][1], ncols = sa[c][2];
        int64_t *tgt = malloc((size_t)m * 8);
        for (int64_t i = 0; i < m; i++) /* out of range (dropped) now and then */
            tgt[i] = h_rand_u64(&s) % 10 == 0 ? nt + 1 : (int64_t)(h_rand_u64(&s) % (uint64_t)nt);
        int64_t *rowptr = out_buf((size_t)(nt + 1) * 8), *col = out_buf((size_t)m * 8);
        assert_int_equal(gpuml_cpu_csr_build(&kc, tgt, 1, m, nt, rowptr, col, NULL), GPUML_OK);
        float *x = rand_f(&s, m * ncols, 0, 0), *init = rand_f(&s, nt * ncols, 0, 0);
        for (int op = 0; op < 2; op++) {
            gpuml_k_seg j;
            memset(&j, 0, sizeof j);
            j.op = op ? GPUML_REDUCE_MAX : GPUML_REDUCE_SUM, j.x = x, j.nrows = m, j.ncols = ncols;
            j.row_splits = rowptr, j.batch = nt, j.levels = gpuml_k_seg_levels(m), j.col = col;
            j.accumulate = !op;
            char what[96];
            snprintf(what, sizeof what, "scatter-add m=%lld nt=%lld op %d", (long long)m, (long long)nt, j.op);
            bad += seg_case(what, j, op, 0, op ? NULL : init);
        }
        free(tgt), free(rowptr), free(col), free(x), free(init);
    }
    assert_int_equal(bad, 0);
}

/* ---- kNN: an event's count and box ---------------------------------------
 * The CUDA event_kernel: a block of 256 threads per event, thread t
 * accumulating rows start + t, start + t + 256, ..., then a tree of merges
 * (gpuml_k_knn_acc_merge); the CPU Z-order build accumulates the rows in
 * order (gpuml_k_knn_acc_row). Rows with a NaN or an infinity are left out;
 * -0 and +0 must give the same box whatever the order. */
#define EV_BLOCK 256

static void knn_box_gpu(const float *x, int d, int db, int64_t start, int64_t n, gpuml_k_knn_acc *out)
{
    static gpuml_k_knn_acc s_acc[EV_BLOCK];
    for (int t = EV_BLOCK - 1; t >= 0; t--) {
        gpuml_k_knn_acc_init(&s_acc[t]);
        for (int64_t r = start + t; r < start + n; r += EV_BLOCK)
            gpuml_k_knn_acc_row(&s_acc[t], x + r * d, d, db);
    }
    for (int h = EV_BLOCK / 2; h > 0; h /= 2)
        for (int t = h - 1; t >= 0; t--)
            gpuml_k_knn_acc_merge(&s_acc[t], &s_acc[t + h]);
    *out = s_acc[0];
}

static void test_knn_box(void **state)
{
    (void)state;
    uint64_t s = 77;
    int bad = 0;
    const int64_t sizes[] = {0, 1, 2, 255, 256, 257, 1000, 4099};
    for (int d = 1; d <= 5; d++) {
        int db = d < GPUML_KNN_MAXBIN ? d : GPUML_KNN_MAXBIN;
        for (size_t si = 0; si < sizeof sizes / sizeof *sizes; si++) {
            for (int kind = 0; kind < 4; kind++) {
                int64_t n = sizes[si];
                float *x = malloc((size_t)(n * d + 1) * sizeof *x);
                assert_non_null(x);
                for (int64_t e = 0; e < n * d; e++) {
                    switch (kind) {
                    case 0: x[e] = (float)h_rand_normal(&s) * 100.0f; break;
                    case 1: x[e] = (h_rand_u64(&s) & 1) ? 0.0f : -0.0f; break;          /* signed zeros only */
                    case 2: x[e] = (float)((int64_t)(h_rand_u64(&s) % 5) - 2) * 0.5f; break; /* ties, zeros */
                    default: x[e] = (float)h_rand_normal(&s) * 3e38f; break;          /* huge, some overflow to inf */
                    }
                }
                if (n > 0 && kind != 1)
                    for (int64_t e = 0; e < n / 7 + 1; e++) /* rows left out */
                        x[(h_rand_u64(&s) % (uint64_t)n) * d + (int64_t)(h_rand_u64(&s) % (uint64_t)d)] =
                            (e & 1) ? NAN : -INFINITY;
                gpuml_k_knn_acc cpu, gpu;
                gpuml_k_knn_acc_init(&cpu);
                for (int64_t r = 0; r < n; r++)
                    gpuml_k_knn_acc_row(&cpu, x + r * d, d, db);
                knn_box_gpu(x, d, db, 0, n, &gpu);
                float clo[GPUML_KNN_MAXBIN], chi[GPUML_KNN_MAXBIN], glo[GPUML_KNN_MAXBIN], ghi[GPUML_KNN_MAXBIN];
                gpuml_k_knn_acc_box(&cpu, db, clo, chi);
                gpuml_k_knn_acc_box(&gpu, db, glo, ghi);
                char what[80];
                snprintf(what, sizeof what, "knn box lo d=%d n=%lld kind %d", d, (long long)n, kind);
                bad += differ(what, 'f', glo, clo, GPUML_KNN_MAXBIN);
                snprintf(what, sizeof what, "knn box hi d=%d n=%lld kind %d", d, (long long)n, kind);
                bad += differ(what, 'f', ghi, chi, GPUML_KNN_MAXBIN);
                snprintf(what, sizeof what, "knn finite rows d=%d n=%lld kind %d", d, (long long)n, kind);
                bad += differ(what, 'l', &gpu.cnt, &cpu.cnt, 1);
                /* and the count against a direct one */
                int64_t fin = 0;
                for (int64_t r = 0; r < n; r++) {
                    int ok = 1;
                    for (int c = 0; c < d; c++)
                        ok &= isfinite(x[r * d + c]) != 0;
                    fin += ok;
                }
                if (fin != cpu.cnt)
                    bad++, printf("knn finite rows d=%d n=%lld: %lld, direct count %lld\n", d, (long long)n,
                                  (long long)cpu.cnt, (long long)fin);
                free(x);
            }
        }
    }
    assert_int_equal(bad, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_csr),       cmocka_unit_test(test_neighbour), cmocka_unit_test(test_gravnet),
        cmocka_unit_test(test_edgeconv),  cmocka_unit_test(test_knn_grad),  cmocka_unit_test(test_batchnorm),
        cmocka_unit_test(test_oc_alpha),  cmocka_unit_test(test_segment),   cmocka_unit_test(test_knn_box),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
