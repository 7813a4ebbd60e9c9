/* CPU driver for kernels/knn.h. row_splits were validated by the op.
 *
 * Two passes: the build (small events in parallel, one thread each; large
 * ones by all threads: median-split order, copy into the event's columns,
 * boxes), then one dynamic OpenMP loop over every cell of the batch, so
 * small and large events share the threads. A cell's 32 points are queried
 * together; each thread keeps their lists in its slice of the workspace (no
 * allocation per query). */
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "../kernels.h"
#include "../knn.h"

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

static int gpuml_k_thread_num(void)
{
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

static size_t align_up(size_t b) { return (b + 255) / 256 * 256; }

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
        off += align_up(sizes[i]);
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
    int64_t n = ev->n, nv = 0;
    for (int c = 0; c < db; c++)
        ev->lo[c] = INFINITY, ev->hi[c] = -INFINITY;
    for (int64_t r = ev->start; r < ev->start + n; r++)
        if (gpuml_k_knn_finite_row(x + r * d, d)) {
            nv++;
            for (int c = 0; c < db; c++) {
                ev->lo[c] = fminf(ev->lo[c], x[r * d + c]);
                ev->hi[c] = fmaxf(ev->hi[c], x[r * d + c]);
            }
        }
    for (int c = 0; c < db; c++)
        if (!nv)
            ev->lo[c] = ev->hi[c] = 0.0f;
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

/* Subtrees above this many points become OpenMP tasks (large events). */
#define KD_TASK_MIN 32768
/* Events of at least this many points are built by all threads together;
 * smaller ones one per thread. */
#define PAR_EVENT_MIN 32768

static void kd_build(const kd_ctx *kc, int32_t *r, int l, int64_t i, bool tasks)
{
    if (l <= 0) /* a cell, or no finite point at all (l = -1) */
        return;
    int64_t a = (i << l) << GPUML_KNN_LB, b = gpuml_k_min64(((i + 1) << l) << GPUML_KNN_LB, kc->nv);
    if (b - a <= GPUML_KNN_B)
        return;
    int64_t m = ((2 * i + 1) << (l - 1)) << GPUML_KNN_LB;
    if (m < b) {
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
        if (tasks && b - a > KD_TASK_MIN) {
#pragma omp task
            kd_build(kc, r, l - 1, 2 * i + 1, true);
        } else {
            kd_build(kc, r, l - 1, 2 * i + 1, tasks);
        }
    }
    kd_build(kc, r, l - 1, 2 * i, tasks);
}

/* Order, copy and box event e: by the calling thread (par false), or by nt
 * threads (par true, called outside any parallel region). */
static void build_event(const gpuml_k_knn_view *v, const cpu_ws *w, const float *x, const int64_t *row_splits,
                        int64_t e, int algo, bool par, int nt)
{
    gpuml_k_knn_event *ev = &w->ev[e];
    int D = v->d, db = v->db;
    int64_t start = row_splits[e], n = row_splits[e + 1] - start;
    (void)nt; /* without OpenMP */
    ev->start = start;
    ev->n = n;
    ev->mode = gpuml_k_knn_mode(n, D, algo);
    ev->levels = 0;
    for (int c = 0; c < GPUML_KNN_MAXBIN; c++)
        ev->lo[c] = ev->hi[c] = 0.0f; /* the Z-curve range: unused by this order */
    int64_t pb = gpuml_k_knn_pbase(start, e), cs = gpuml_k_knn_colstride(n);
    float *col0 = w->xs + pb * D;
    int32_t *pm = w->perm + pb, *rows = w->rows + start;
    if (ev->mode == GPUML_KNN_MODE_BRUTE) {
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
#pragma omp parallel num_threads(nt)
#pragma omp single
            kd_build(&kc, rows, top, 0, true);
        } else {
            kd_build(&kc, rows, top, 0, false);
        }
        ev->nscan = nv;
        ev->levels = gpuml_k_knn_levels_for(gpuml_k_knn_ncells(nv));
    }
#pragma omp parallel for num_threads(nt) schedule(static) if (par)
    for (int64_t p = 0; p < cs; p++) {
        int64_t r = p < n ? rows[p] : -1;
        pm[p] = (int32_t)r;
        for (int c = 0; c < D; c++)
            col0[c * cs + p] = r >= 0 ? x[r * D + c] : NAN;
    }
    if (ev->mode == GPUML_KNN_MODE_GRID) {
        int64_t nc = gpuml_k_knn_ncells(ev->nscan);
        for (int l = 0; l < ev->levels; l++) {
            int64_t nn = gpuml_k_knn_nodes(nc, l);
#pragma omp parallel for num_threads(nt) schedule(static) if (par && nn > 1024)
            for (int64_t i = 0; i < nn; i++)
                gpuml_k_knn_make_box(v, e, l, i, w->boxes + gpuml_k_knn_box_slot(v, start, e, l, i) * 2 * db);
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

gpuml_status gpuml_cpu_knn(const gpuml_kctx *k, const float *x, int64_t n, int d, const int64_t *row_splits,
                           int64_t nev, int kk, float r2, int algo, int32_t *idx, float *dist2, void *ws)
{
    if (n == 0)
        return GPUML_OK;
    cpu_ws w;
    carve(ws, n, d, nev, kk, k->nthreads, &w);
    gpuml_k_knn_view v;
    gpuml_k_knn_view_init(&v, n, nev, d, kk, r2, w.ev, w.xs, w.perm, w.boxes);
    int nt = k->nthreads;
    int64_t work = n * (int64_t)d, big = nt > 1 ? PAR_EVENT_MIN : INT64_MAX;
    (void)work; /* without OpenMP */
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1) if (nev > 1 && work > GPUML_PAR_GRAIN / 8)
    for (int64_t e = 0; e < nev; e++)
        if (row_splits[e + 1] - row_splits[e] < big)
            build_event(&v, &w, x, row_splits, e, algo, false, 1);
    for (int64_t e = 0; e < nev; e++)
        if (row_splits[e + 1] - row_splits[e] >= big)
            build_event(&v, &w, x, row_splits, e, algo, true, nt);

    /* One group per cell; padding cells and empty events are skipped. Each
     * thread's lists live in its slice of the workspace. The work grows with
     * the dimension (the high-D brute force of DynamicEdgeConv on small
     * events is worth two threads where a 2-D search of as many points is
     * not). */
    int64_t ncell = (gpuml_k_knn_pbase(w.ev[nev - 1].start, nev - 1) + gpuml_k_knn_colstride(w.ev[nev - 1].n)) >>
                    GPUML_KNN_LB;
#pragma omp parallel num_threads(nt) if (n * kk * (int64_t)(d > 4 ? d : 4) > GPUML_PAR_GRAIN / 2)
    {
        uint64_t *lists = w.lists;
        if (!GPUML_KNN_ZORDER)
            lists += (size_t)gpuml_k_thread_num() * GPUML_KNN_GMAX * (size_t)(kk > 1 ? kk - 1 : 1);
#pragma omp for schedule(dynamic, 4)
        for (int64_t C = 0; C < ncell; C++)
            query_cell(&v, C, idx, dist2, lists);
    }
    return GPUML_OK;
}

gpuml_status gpuml_cpu_knn_grad(const gpuml_kctx *k, const float *x, int64_t n, int d, const int32_t *idx, int kk,
                                const float *g, const int64_t *rowptr, const int64_t *col, float *gx)
{
    int nt = k->nthreads;
    (void)nt; /* without OpenMP */
#pragma omp parallel for num_threads(nt) schedule(static) if (n * kk * (int64_t)d > GPUML_PAR_GRAIN)
    for (int64_t i = 0; i < n; i++)
        gpuml_k_knn_grad_row(x, n, d, idx, kk, g, rowptr, col, i, gx + i * d);
    return GPUML_OK;
}
