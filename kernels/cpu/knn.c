/* CPU driver for kernels/knn.h. row_splits were validated by the op.
 *
 * Two passes: the build (small events in parallel, one worker each; large
 * ones by all workers: median-split order level by level, copy into the
 * event's columns, boxes), then one loop over every cell of the batch in
 * pieces of a few cells, so small and large events share the workers. A
 * cell's 32 points are queried together; each worker keeps their lists in
 * its slice of the workspace (no allocation per query). */
#include <stdlib.h>
#include <string.h>

#include "../kernels.h"
#include "../knn.h"
#include "../../libgpuml/core/align.h"
#include "parallel.h"

/* The CUDA build's choices instead of the CPU's - Z-curve order instead of
 * median splits, lists of all positions interleaved instead of per thread -
 * for tests/test_knn_emul.c, which compiles this driver as the GPU runs it
 * (with GPUML_KNN_GMAX 1). */
#ifndef GPUML_KNN_ZORDER
#define GPUML_KNN_ZORDER 0
#endif

typedef struct cpu_ws {
    gpuml_k_knn_event *ev;
    float *xs, *boxes;
    int32_t *perm, *rows;
    uint64_t *lists; /* per thread: GPUML_KNN_GMAX lists of k-1 keys     */
} cpu_ws;


/* Carves the workspace; with base NULL only measures it. */
static size_t carve(void *base, int64_t n, int d, int64_t nev, int k, int nthreads, cpu_ws *w)
{
    gpuml_k_knn_view v;
    int db = d < GPUML_KNN_MAXBIN ? d : GPUML_KNN_MAXBIN;
    int64_t slots = gpuml_k_knn_plan_levels(&v, n, nev), npos = gpuml_k_knn_npos(n, nev);
    size_t sizes[6] = {(size_t)nev * sizeof(gpuml_k_knn_event), (size_t)(npos * d) * sizeof(float),
                       (size_t)(slots * 2 * db) * sizeof(float), (size_t)npos * sizeof(int32_t),
                       (size_t)n * sizeof(int32_t),
                       (GPUML_KNN_ZORDER ? (size_t)npos : (size_t)(nthreads > 0 ? nthreads : 1) * GPUML_KNN_GMAX) *
                           (size_t)(k > 1 ? k - 1 : 1) * 8};
    void **ptrs[6] = {(void **)&w->ev, (void **)&w->xs, (void **)&w->boxes, (void **)&w->perm, (void **)&w->rows,
                      (void **)&w->lists};
    size_t off = 0;
    for (int i = 0; i < 6; i++) {
        if (base)
            *ptrs[i] = (char *)base + off;
        off += gpuml_align_up(sizes[i]);
    }
    return off;
}

size_t gpuml_cpu_knn_workspace(int64_t n, int d, int64_t nev, int k, int nthreads)
{
    cpu_ws w;
    return carve(NULL, n, d, nev, k, nthreads, &w);
}

/* ---- kd order ----------------------------------------------------------------
 * The CPU orders binned events by median splits instead of the Z-curve the
 * CUDA build uses (a parallel sort): the cells come out as compact,
 * disjoint boxes, and a query visits about half as many (bench_knn). Node
 * (l, i) of the implicit tree owns cells [i 2^l, (i+1) 2^l), so it is split
 * at rank (2i+1) 2^(l-1) cells, along its widest binned coordinate, by the
 * total order (coordinate, row): deterministic. */
typedef struct kd_ctx {
    const float *x;
    int d, db;
    int64_t nv;
} kd_ctx;

static inline bool kd_less(const float *x, int d, int dim, int32_t a, int32_t b)
{
    float xa = x[(int64_t)a * d + dim], xb = x[(int64_t)b * d + dim];
    return xa < xb || (xa == xb && a < b);
}

/* Rearranges r[lo, hi) so that r[m] holds the element of rank m - lo, with
 * the smaller ones before it (quickselect, median-of-three pivot). */
static void kd_select(const float *x, int d, int dim, int32_t *r, int64_t lo, int64_t hi, int64_t m)
{
    while (hi - lo > 2) {
        int32_t a = r[lo], b = r[lo + (hi - lo) / 2], c = r[hi - 1], piv;
        if (kd_less(x, d, dim, a, b))
            piv = kd_less(x, d, dim, b, c) ? b : kd_less(x, d, dim, a, c) ? c : a;
        else
            piv = kd_less(x, d, dim, a, c) ? a : kd_less(x, d, dim, b, c) ? c : b;
        int64_t i = lo, j = hi - 1;
        while (i <= j) {
            while (kd_less(x, d, dim, r[i], piv))
                i++;
            while (kd_less(x, d, dim, piv, r[j]))
                j--;
            if (i <= j) {
                int32_t t = r[i];
                r[i++] = r[j];
                r[j--] = t;
            }
        }
        if (m <= j)
            hi = j + 1;
        else if (m >= i)
            lo = i;
        else
            return;
    }
    if (hi - lo == 2 && kd_less(x, d, dim, r[lo + 1], r[lo])) {
        int32_t t = r[lo];
        r[lo] = r[lo + 1];
        r[lo + 1] = t;
    }
}

#if GPUML_KNN_ZORDER
typedef struct zitem {
    uint64_t key;
    int32_t row;
} zitem;

static int zitem_cmp(const void *pa, const void *pb)
{
    const zitem *a = pa, *b = pb;
    if (a->key != b->key)
        return a->key < b->key ? -1 : 1;
    return (a->row > b->row) - (a->row < b->row);
}

/* rows[0, n) of event ev: by (key, row), as the CUDA radix sorts order them. */
static void zorder(const float *x, int d, int db, gpuml_k_knn_event *ev, int32_t *rows)
{
    int64_t n = ev->n;
    gpuml_k_knn_acc acc;
    gpuml_k_knn_acc_init(&acc);
    for (int64_t r = ev->start; r < ev->start + n; r++)
        gpuml_k_knn_acc_row(&acc, x + r * d, d, db);
    gpuml_k_knn_acc_box(&acc, db, ev->lo, ev->hi);
    zitem *z = malloc((size_t)(n ? n : 1) * sizeof *z);
    if (!z)
        return; /* test-only build */
    for (int64_t p = 0; p < n; p++) {
        const float *xr = x + (ev->start + p) * d;
        z[p].key = gpuml_k_knn_finite_row(xr, d) ? gpuml_k_knn_key(xr, ev, db) : UINT64_MAX;
        z[p].row = (int32_t)(ev->start + p);
    }
    qsort(z, (size_t)n, sizeof *z, zitem_cmp);
    for (int64_t p = 0; p < n; p++)
        rows[p] = z[p].row;
    free(z);
}
#endif

/* Events of at least this many points are built by all workers together;
 * smaller ones one per worker. */
#define PAR_EVENT_MIN 32768

/* Split node (l, i) at its median cell along its widest binned coordinate
 * (nothing for a cell, or a node without enough finite points). Its
 * children's ranges are then final: the nodes of one level are independent. */
static void kd_split(const kd_ctx *kc, int32_t *r, int l, int64_t i)
{
    if (l <= 0) /* a cell, or no finite point at all (l = -1) */
        return;
    int64_t a = (i << l) << GPUML_KNN_LB, b = gpuml_k_min64(((i + 1) << l) << GPUML_KNN_LB, kc->nv);
    if (b - a <= GPUML_KNN_B)
        return;
    int64_t m = ((2 * i + 1) << (l - 1)) << GPUML_KNN_LB;
    if (m >= b)
        return;
    float lo[GPUML_KNN_MAXBIN], hi[GPUML_KNN_MAXBIN];
    for (int c = 0; c < kc->db; c++)
        lo[c] = INFINITY, hi[c] = -INFINITY;
    for (int64_t p = a; p < b; p++)
        for (int c = 0; c < kc->db; c++) {
            float v = kc->x[(int64_t)r[p] * kc->d + c];
            lo[c] = v < lo[c] ? v : lo[c];
            hi[c] = v > hi[c] ? v : hi[c];
        }
    int dim = 0;
    for (int c = 1; c < kc->db; c++)
        if ((double)hi[c] - lo[c] > (double)hi[dim] - lo[dim])
            dim = c;
    kd_select(kc->x, kc->d, dim, r, a, b, m);
}

static void kd_build(const kd_ctx *kc, int32_t *r, int l, int64_t i)
{
    if (l <= 0)
        return;
    kd_split(kc, r, l, i);
    kd_build(kc, r, l - 1, 2 * i + 1);
    kd_build(kc, r, l - 1, 2 * i);
}

typedef struct kd_level_args {
    const kd_ctx *kc;
    int32_t *r;
    int l;
} kd_level_args;

GPUML_KRANGE(kd_level_range, kd_level_args)
{
    for (int64_t i = begin; i < end; i++)
        kd_split(a->kc, a->r, a->l, i);
}

/* The same tree as kd_build, a level at a time, each level's nodes in
 * parallel (a large event). */
static void kd_build_par(const gpuml_kctx *k, const kd_ctx *kc, int32_t *r, int top)
{
    for (int l = top; l > 0; l--) {
        kd_level_args a = {kc, r, l};
        int64_t nodes = (int64_t)1 << (top - l);
        gpuml_kfor(k, nodes, 4 * kc->nv, 1, kd_level_range, &a);
    }
}

typedef struct copy_args {
    const float *x;
    const int32_t *rows;
    int32_t *pm;
    float *col0;
    int64_t n, cs;
    int D;
} copy_args;

GPUML_KRANGE(copy_range, copy_args)
{
    for (int64_t p = begin; p < end; p++) {
        int64_t r = p < a->n ? a->rows[p] : -1;
        a->pm[p] = (int32_t)r;
        for (int c = 0; c < a->D; c++)
            a->col0[c * a->cs + p] = r >= 0 ? a->x[r * a->D + c] : NAN;
    }
}

typedef struct box_args {
    const gpuml_k_knn_view *v;
    const cpu_ws *w;
    int64_t e, start;
    int l;
} box_args;

GPUML_KRANGE(box_range, box_args)
{
    int db = a->v->db;
    for (int64_t i = begin; i < end; i++)
        gpuml_k_knn_make_box(a->v, a->e, a->l, i,
                             a->w->boxes + gpuml_k_knn_box_slot(a->v, a->start, a->e, a->l, i) * 2 * db);
}

/* Order, copy and box event e: by the calling worker (par false), or by
 * all of k's workers (par true, called outside any parallel loop). */
static void build_event(const gpuml_kctx *k, const gpuml_k_knn_view *v, const cpu_ws *w, const float *x,
                        const int64_t *row_splits, int64_t e, int algo, bool par)
{
    gpuml_k_knn_event *ev = &w->ev[e];
    int D = v->d, db = v->db;
    int64_t start = row_splits[e], n = row_splits[e + 1] - start;
    ev->start = start;
    ev->n = n;
    ev->mode = gpuml_k_knn_mode(n, D, algo);
    ev->levels = 0;
    for (int c = 0; c < GPUML_KNN_MAXBIN; c++)
        ev->lo[c] = ev->hi[c] = 0.0f; /* the Z-curve range: unused by this order */
    int64_t pb = gpuml_k_knn_pbase(start, e), cs = gpuml_k_knn_colstride(n);
    float *col0 = w->xs + pb * D;
    int32_t *pm = w->perm + pb, *rows = w->rows + start;
    if (ev->mode != GPUML_KNN_MODE_GRID) { /* brute force, either distance */
        for (int64_t p = 0; p < n; p++)
            rows[p] = (int32_t)(start + p);
        ev->nscan = n;
    } else {
        /* finite points first, in row order, then the others */
        int64_t nv = 0;
        for (int64_t r = start; r < start + n; r++)
            nv += gpuml_k_knn_finite_row(x + r * D, D);
        int64_t f = 0, t = nv;
        for (int64_t r = start; r < start + n; r++)
            rows[gpuml_k_knn_finite_row(x + r * D, D) ? f++ : t++] = (int32_t)r;
        kd_ctx kc = {x, D, db, nv};
        int top = gpuml_k_knn_levels_for(gpuml_k_knn_ncells(nv)) - 1;
        if (GPUML_KNN_ZORDER) {
#if GPUML_KNN_ZORDER
            zorder(x, D, db, ev, rows);
#endif
        } else if (par) {
            kd_build_par(k, &kc, rows, top);
        } else {
            kd_build(&kc, rows, top, 0);
        }
        ev->nscan = nv;
        ev->levels = gpuml_k_knn_levels_for(gpuml_k_knn_ncells(nv));
    }
    copy_args ca = {x, rows, pm, col0, n, cs, D};
    gpuml_kfor(k, cs, par ? cs * (D + 1) : 0, 0, copy_range, &ca);
    if (ev->mode == GPUML_KNN_MODE_GRID) {
        int64_t nc = gpuml_k_knn_ncells(ev->nscan);
        for (int l = 0; l < ev->levels; l++) {
            int64_t nn = gpuml_k_knn_nodes(nc, l);
            box_args ba = {v, w, e, start, l};
            gpuml_kfor(k, nn, par && nn > 1024 ? nn * ((int64_t)1 << l) * GPUML_KNN_B * db : 0, 0, box_range, &ba);
        }
    }
}

/* The queries of cell C (a global cell index). On x86-64 an AVX2 clone is
 * picked at load time where the CPU has it: twice the lanes for the same
 * IEEE operations (contraction stays off), so the bits do not change. */
#if defined(__x86_64__) && defined(__has_attribute)
#if __has_attribute(target_clones) && !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
__attribute__((target_clones("avx2", "default")))
#endif
#endif
static void query_cell(const gpuml_k_knn_view *v, int64_t C, int32_t *idx, float *dist2, uint64_t *lists)
{
    int64_t P = C << GPUML_KNN_LB, e = gpuml_k_knn_event_of_pos(v->ev, v->nev, P);
    int64_t c = (P - gpuml_k_knn_pbase(v->ev[e].start, e)) >> GPUML_KNN_LB;
    for (int g0 = 0; g0 < GPUML_KNN_B; g0 += GPUML_KNN_GMAX) {
        if (GPUML_KNN_ZORDER) /* as the CUDA launcher: all lists, interleaved */
            gpuml_k_knn_cell(v, e, c, g0, GPUML_KNN_GMAX, idx, dist2, lists + P + g0, v->npos);
        else
            gpuml_k_knn_cell(v, e, c, g0, GPUML_KNN_GMAX, idx, dist2, lists, 1);
    }
}

typedef struct build_args {
    const gpuml_kctx *k;
    const gpuml_k_knn_view *v;
    const cpu_ws *w;
    const float *x;
    const int64_t *row_splits;
    int algo;
    int64_t big;
} build_args;

/* Events below `big` points, one per iteration, each on one worker. */
GPUML_KRANGE(build_small_range, build_args)
{
    for (int64_t e = begin; e < end; e++)
        if (a->row_splits[e + 1] - a->row_splits[e] < a->big)
            build_event(a->k, a->v, a->w, a->x, a->row_splits, e, a->algo, false);
}

typedef struct query_args {
    const gpuml_k_knn_view *v;
    int32_t *idx;
    float *dist2;
    uint64_t *lists;
    int kk;
} query_args;

GPUML_KRANGE(query_range, query_args)
{
    uint64_t *lists = a->lists;
    if (!GPUML_KNN_ZORDER)
        lists += (size_t)worker * GPUML_KNN_GMAX * (size_t)(a->kk > 1 ? a->kk - 1 : 1);
    for (int64_t C = begin; C < end; C++)
        query_cell(a->v, C, a->idx, a->dist2, lists);
}

gpuml_status gpuml_cpu_knn(const gpuml_kctx *k, const float *x, int64_t n, int d, const int64_t *row_splits,
                           int64_t nev, int kk, float r2, int algo, int32_t *idx, float *dist2, void *ws)
{
    if (n == 0)
        return GPUML_OK;
    cpu_ws w;
    carve(ws, n, d, nev, kk, k->nthreads, &w);
    gpuml_k_knn_view v;
    gpuml_k_knn_view_init(&v, n, nev, d, kk, r2, w.ev, w.xs, w.perm, w.boxes);
    int64_t work = n * (int64_t)d, big = k->nthreads > 1 ? PAR_EVENT_MIN : INT64_MAX;
    build_args ba = {k, &v, &w, x, row_splits, algo, big};
    gpuml_kfor(k, nev, nev > 1 ? 8 * work : 0, 1, build_small_range, &ba);
    for (int64_t e = 0; e < nev; e++)
        if (row_splits[e + 1] - row_splits[e] >= big)
            build_event(k, &v, &w, x, row_splits, e, algo, true);

    /* One group per cell; padding cells and empty events are skipped. Each
     * worker's lists live in its slice of the workspace. The work grows with
     * the dimension (the high-D brute force of DynamicEdgeConv on small
     * events is worth two workers where a 2-D search of as many points is
     * not). */
    int64_t ncell = (gpuml_k_knn_pbase(w.ev[nev - 1].start, nev - 1) + gpuml_k_knn_colstride(w.ev[nev - 1].n)) >>
                    GPUML_KNN_LB;
    query_args qa = {&v, idx, dist2, w.lists, kk};
    gpuml_kfor(k, ncell, 2 * n * kk * (int64_t)(d > 4 ? d : 4), 4, query_range, &qa);
    return GPUML_OK;
}

typedef struct knn_grad_args {
    const float *x, *g;
    int64_t n;
    int d, kk;
    const int32_t *idx;
    const int64_t *rowptr, *col;
    float *gx;
} knn_grad_args;

GPUML_KRANGE(knn_grad_range, knn_grad_args)
{
    for (int64_t i = begin; i < end; i++)
        gpuml_k_knn_grad_row(a->x, a->n, a->d, a->idx, a->kk, a->g, a->rowptr, a->col, i, a->gx + i * a->d);
}

gpuml_status gpuml_cpu_knn_grad(const gpuml_kctx *k, const float *x, int64_t n, int d, const int32_t *idx, int kk,
                                const float *g, const int64_t *rowptr, const int64_t *col, float *gx)
{
    knn_grad_args a = {x, g, n, d, kk, idx, rowptr, col, gx};
    gpuml_kfor(k, n, n * kk * (int64_t)d, 0, knn_grad_range, &a);
    return GPUML_OK;
}
