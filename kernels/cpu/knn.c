/* CPU driver for kernels/knn.h. row_splits were validated by the op.
 *
 * Two passes: the build (events in parallel; each event sorted, copied into
 * its columns and boxed by one thread), then one dynamic OpenMP loop over
 * every position of the batch, so small and large events share the threads.
 * Positions run in Z-curve order, so consecutive queries touch the same
 * cells. The search keeps its list in the output row: no per-query memory. */
#include <string.h>

#include "../kernels.h"
#include "../knn.h"

#define RADIX_BITS 11
#define RADIX_SIZE (1 << RADIX_BITS)

typedef struct cpu_ws {
    gpuml_k_knn_event *ev;
    float *xs, *boxes;
    int32_t *perm, *vals, *vals2;
    uint64_t *keys, *keys2;
} cpu_ws;

static size_t align_up(size_t b) { return (b + 255) / 256 * 256; }

/* Carves the workspace; with base NULL only measures it. */
static size_t carve(void *base, int64_t n, int d, int64_t nev, cpu_ws *w)
{
    gpuml_k_knn_view v;
    int db = d < GPUML_KNN_MAXBIN ? d : GPUML_KNN_MAXBIN;
    int64_t slots = gpuml_k_knn_plan_levels(&v, n, nev), npos = gpuml_k_knn_npos(n, nev);
    size_t sizes[8] = {(size_t)nev * sizeof(gpuml_k_knn_event), (size_t)(npos * d) * sizeof(float),
                       (size_t)(slots * 2 * db) * sizeof(float), (size_t)npos * sizeof(int32_t),
                       (size_t)n * sizeof(int32_t), (size_t)n * sizeof(int32_t), (size_t)n * sizeof(uint64_t),
                       (size_t)n * sizeof(uint64_t)};
    void **ptrs[8] = {(void **)&w->ev, (void **)&w->xs, (void **)&w->boxes, (void **)&w->perm,
                      (void **)&w->vals, (void **)&w->vals2, (void **)&w->keys, (void **)&w->keys2};
    size_t off = 0;
    for (int i = 0; i < 8; i++) {
        if (base)
            *ptrs[i] = (char *)base + off;
        off += align_up(sizes[i]);
    }
    return off;
}

size_t gpuml_cpu_knn_workspace(int64_t n, int d, int64_t nev)
{
    cpu_ws w;
    return carve(NULL, n, d, nev, &w);
}

/* Stable LSD radix sort of (key, val) pairs by key; digits on which all
 * keys agree are skipped. The result ends in key / val. */
static void radix_sort(uint64_t *key, int32_t *val, uint64_t *key2, int32_t *val2, int64_t n)
{
    if (n < 2)
        return;
    uint64_t diff = 0;
    for (int64_t i = 1; i < n; i++)
        diff |= key[i] ^ key[0];
    uint64_t *ka = key, *kb = key2;
    int32_t *va = val, *vb = val2;
    int64_t count[RADIX_SIZE];
    for (int shift = 0; shift < 64; shift += RADIX_BITS) {
        if (!((diff >> shift) & (RADIX_SIZE - 1)))
            continue;
        memset(count, 0, sizeof count);
        for (int64_t i = 0; i < n; i++)
            count[(ka[i] >> shift) & (RADIX_SIZE - 1)]++;
        int64_t sum = 0;
        for (int b = 0; b < RADIX_SIZE; b++) {
            int64_t c = count[b];
            count[b] = sum;
            sum += c;
        }
        for (int64_t i = 0; i < n; i++) {
            int64_t o = count[(ka[i] >> shift) & (RADIX_SIZE - 1)]++;
            kb[o] = ka[i];
            vb[o] = va[i];
        }
        uint64_t *tk = ka;
        ka = kb, kb = tk;
        int32_t *tv = va;
        va = vb, vb = tv;
    }
    if (ka != key) {
        memcpy(key, ka, (size_t)n * sizeof *key);
        memcpy(val, va, (size_t)n * sizeof *val);
    }
}

/* Order, copy and box event e (one thread). */
static void build_event(const gpuml_k_knn_view *v, const cpu_ws *w, const float *x, const int64_t *row_splits,
                        int64_t e, int algo)
{
    gpuml_k_knn_event *ev = &w->ev[e];
    int D = v->d, db = v->db;
    int64_t start = row_splits[e], n = row_splits[e + 1] - start;
    ev->start = start;
    ev->n = n;
    ev->mode = gpuml_k_knn_mode(n, D, v->k, algo);
    ev->levels = 0;
    for (int c = 0; c < GPUML_KNN_MAXBIN; c++)
        ev->lo[c] = ev->hi[c] = 0.0f;
    int64_t pb = gpuml_k_knn_pbase(start, e), cs = gpuml_k_knn_colstride(n);
    float *col0 = w->xs + pb * D;
    int32_t *pm = w->perm + pb;
    if (ev->mode == GPUML_KNN_MODE_BRUTE) {
        for (int64_t p = 0; p < n; p++) {
            pm[p] = (int32_t)(start + p);
            for (int c = 0; c < D; c++)
                col0[c * cs + p] = x[(start + p) * D + c];
        }
        ev->nscan = n;
    } else {
        float lo[GPUML_KNN_MAXBIN], hi[GPUML_KNN_MAXBIN];
        for (int c = 0; c < db; c++)
            lo[c] = INFINITY, hi[c] = -INFINITY;
        int64_t nv = 0;
        for (int64_t r = start; r < start + n; r++) {
            const float *xr = x + r * D;
            if (!gpuml_k_knn_finite_row(xr, D))
                continue;
            nv++;
            for (int c = 0; c < db; c++) {
                lo[c] = xr[c] < lo[c] ? xr[c] : lo[c];
                hi[c] = xr[c] > hi[c] ? xr[c] : hi[c];
            }
        }
        if (nv)
            for (int c = 0; c < db; c++)
                ev->lo[c] = lo[c], ev->hi[c] = hi[c];
        uint64_t *key = w->keys + start;
        int32_t *val = w->vals + start;
        for (int64_t p = 0; p < n; p++) {
            const float *xr = x + (start + p) * D;
            key[p] = gpuml_k_knn_finite_row(xr, D) ? gpuml_k_knn_key(xr, ev, db) : UINT64_MAX;
            val[p] = (int32_t)(start + p);
        }
        radix_sort(key, val, w->keys2 + start, w->vals2 + start, n);
        for (int64_t p = 0; p < n; p++) {
            int64_t r = val[p];
            pm[p] = (int32_t)r;
            for (int c = 0; c < D; c++)
                col0[c * cs + p] = x[r * D + c];
        }
        ev->nscan = nv;
        int64_t nc = gpuml_k_knn_ncells(nv);
        ev->levels = gpuml_k_knn_levels_for(nc);
    }
    for (int64_t p = n; p < cs; p++) {
        pm[p] = -1;
        for (int c = 0; c < D; c++)
            col0[c * cs + p] = NAN;
    }
    if (ev->mode == GPUML_KNN_MODE_GRID) {
        int64_t nc = gpuml_k_knn_ncells(ev->nscan);
        for (int l = 0; l < ev->levels; l++)
            for (int64_t i = 0; i < gpuml_k_knn_nodes(nc, l); i++)
                gpuml_k_knn_make_box(v, e, l, i, w->boxes + gpuml_k_knn_box_slot(v, start, e, l, i) * 2 * db);
    }
}

gpuml_status gpuml_cpu_knn(const gpuml_kctx *k, const float *x, int64_t n, int d, const int64_t *row_splits,
                           int64_t nev, int kk, float r2, int algo, int32_t *idx, float *dist2, void *ws)
{
    if (n == 0)
        return GPUML_OK;
    cpu_ws w;
    carve(ws, n, d, nev, &w);
    gpuml_k_knn_view v;
    gpuml_k_knn_plan_levels(&v, n, nev);
    v.ev = w.ev;
    v.xs = w.xs;
    v.perm = w.perm;
    v.boxes = w.boxes;
    v.nev = nev;
    v.npos = gpuml_k_knn_npos(n, nev);
    v.d = d;
    v.db = d < GPUML_KNN_MAXBIN ? d : GPUML_KNN_MAXBIN;
    v.k = kk;
    v.r2 = r2;
    int nt = k->nthreads;
    int64_t work = n * (int64_t)d;
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1) if (nev > 1 && work > GPUML_PAR_GRAIN / 8)
    for (int64_t e = 0; e < nev; e++)
        build_event(&v, &w, x, row_splits, e, algo);

    /* Positions of padding and of empty events are skipped. */
    int64_t npos = gpuml_k_knn_pbase(w.ev[nev - 1].start, nev - 1) + gpuml_k_knn_colstride(w.ev[nev - 1].n);
#pragma omp parallel for num_threads(nt) schedule(dynamic, 64) if (n * kk > GPUML_PAR_GRAIN / 8)
    for (int64_t P = 0; P < npos; P++) {
        int64_t e = gpuml_k_knn_event_of_pos(w.ev, nev, P);
        int64_t p = P - gpuml_k_knn_pbase(w.ev[e].start, e);
        if (p < w.ev[e].n)
            gpuml_k_knn_row(&v, e, p, idx, dist2);
    }
    return GPUML_OK;
}

gpuml_status gpuml_cpu_knn_grad(const gpuml_kctx *k, const float *x, int64_t n, int d, const int32_t *idx, int kk,
                                const float *g, const int64_t *rowptr, const int64_t *col, float *gx)
{
    int nt = k->nthreads;
#pragma omp parallel for num_threads(nt) schedule(static) if (n * kk * (int64_t)d > GPUML_PAR_GRAIN)
    for (int64_t i = 0; i < n; i++)
        for (int c = 0; c < d; c++)
            gx[i * d + c] = gpuml_k_knn_grad_elem(x, n, d, idx, kk, g, rowptr, col, i, c);
    return GPUML_OK;
}
