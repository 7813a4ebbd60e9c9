/* CUDA launchers for kernels/knn.h: the same layout and search body as the
 * CPU, with one query per thread (GPUML_KNN_GMAX 1).
 *
 * Everything is enqueued on k->stream in a fixed number of launches for the
 * whole batch (none per event), and row_splits never leave the device:
 *   1. clamp row_splits into a monotone copy in [0, n] (a max-scan) and flag
 *      the context's device error if that changed anything;
 *   2. per event (a block each): finite count, box of the finite points, mode;
 *   3. per row: Z-curve key of its event's grid (non-finite last; brute-force
 *      events keep row order), then a stable radix sort by key and a stable
 *      one by event - a counting sort per digit - gives every event its order;
 *   4. copy into the event-blocked columns; boxes level by level;
 *   5. one thread per position runs the search; its list lives in workspace.
 * The CPU orders binned events by median splits instead (a serial
 * recursion); the result does not depend on the order. */
#include <climits>

#include <cub/device/device_radix_sort.cuh>

#define GPUML_KNN_GMAX 1
#include "../kernels.h"
#include "../knn.h"
#include "../../libgpuml/core/align.h"
#include "launch.cuh"

/* Workspace pieces, 256-byte aligned. */
struct knn_cuda_ws {
    int64_t *rs;               /* [nev+1] clamped, monotone splits     */
    gpuml_k_knn_event *ev;     /* [nev]                                */
    float *xs, *boxes;
    int32_t *perm;             /* [npos]                               */
    uint64_t *keys, *keys2;    /* [n]                                  */
    int32_t *rows, *rows2;     /* [n]                                  */
    int32_t *evk, *evk2;       /* [n] event of each row                */
    uint64_t *lists;           /* [k-1, npos]                          */
    void *tmp;                 /* cub scratch                          */
    size_t tmp_bytes;
};

/* Sizes only: a failing query leaves its size 0, and the real call in
 * gpuml_cuda_knn then reports the error. */
static size_t cub_bytes(int64_t n, int64_t nev)
{
    size_t a = 0, b = 0, c = 0;
    if (n > INT_MAX || nev >= INT_MAX)
        return 0;
    if (cub::DeviceRadixSort::SortPairs(nullptr, a, (uint64_t *)nullptr, (uint64_t *)nullptr, (int32_t *)nullptr,
                                        (int32_t *)nullptr, (int)n, 0, 64, (cudaStream_t)0) != cudaSuccess)
        a = 0;
    if (cub::DeviceRadixSort::SortPairs(nullptr, b, (int32_t *)nullptr, (int32_t *)nullptr, (int32_t *)nullptr,
                                        (int32_t *)nullptr, (int)n, 0, 32, (cudaStream_t)0) != cudaSuccess)
        b = 0;
    c = gpuml_cuda_monotone_splits_scratch(nev);
    size_t m = a > b ? a : b;
    return m > c ? m : c;
}

static size_t carve(void *base, int64_t n, int d, int64_t nev, int k, knn_cuda_ws *w)
{
    gpuml_k_knn_view v;
    int db = d < GPUML_KNN_MAXBIN ? d : GPUML_KNN_MAXBIN;
    int64_t slots = gpuml_k_knn_plan_levels(&v, n, nev), npos = gpuml_k_knn_npos(n, nev);
    size_t tmp = cub_bytes(n, nev);
    size_t sizes[13] = {(size_t)(nev + 1) * 8, (size_t)nev * sizeof(gpuml_k_knn_event), (size_t)(npos * d) * 4,
                        (size_t)(slots * 2 * db) * 4, (size_t)npos * 4, (size_t)n * 8, (size_t)n * 8,
                        (size_t)n * 4, (size_t)n * 4, (size_t)n * 4, (size_t)n * 4,
                        (size_t)npos * (size_t)(k > 1 ? k - 1 : 0) * 8, tmp};
    void **ptrs[13] = {(void **)&w->rs, (void **)&w->ev, (void **)&w->xs, (void **)&w->boxes, (void **)&w->perm,
                       (void **)&w->keys, (void **)&w->keys2, (void **)&w->rows, (void **)&w->rows2,
                       (void **)&w->evk, (void **)&w->evk2, (void **)&w->lists, &w->tmp};
    size_t off = 0;
    for (int i = 0; i < 13; i++) {
        if (base)
            *ptrs[i] = (char *)base + off;
        off += gpuml_align_up(sizes[i]);
    }
    w->tmp_bytes = tmp;
    return off;
}

extern "C" size_t gpuml_cuda_knn_workspace(int64_t n, int d, int64_t nev, int kk, int nthreads)
{
    (void)nthreads;
    knn_cuda_ws w;
    return carve(nullptr, n, d, nev, kk, &w);
}

#define EV_BLOCK 256

/* One block per event: finite count and box (a tree over the block's
 * accumulators), mode, levels. */
static __global__ void event_kernel(const float *x, int d, int db, const int64_t *rs, int64_t nev, int algo,
                                    gpuml_k_knn_event *ev)
{
    __shared__ gpuml_k_knn_acc s_acc[EV_BLOCK];
    for (int64_t e = blockIdx.x; e < nev; e += gridDim.x) {
        int64_t start = rs[e], n = rs[e + 1] - start;
        gpuml_k_knn_acc acc;
        gpuml_k_knn_acc_init(&acc);
        for (int64_t r = start + threadIdx.x; r < start + n; r += blockDim.x)
            gpuml_k_knn_acc_row(&acc, x + r * d, d, db);
        s_acc[threadIdx.x] = acc;
        __syncthreads();
        for (int h = EV_BLOCK / 2; h > 0; h /= 2) {
            if ((int)threadIdx.x < h)
                gpuml_k_knn_acc_merge(&s_acc[threadIdx.x], &s_acc[threadIdx.x + h]);
            __syncthreads();
        }
        if (threadIdx.x == 0) {
            gpuml_k_knn_event E;
            E.start = start;
            E.n = n;
            E.mode = gpuml_k_knn_mode(n, d, algo);
            E.nscan = E.mode == GPUML_KNN_MODE_GRID ? s_acc[0].cnt : n;
            E.levels = E.mode == GPUML_KNN_MODE_GRID ? gpuml_k_knn_levels_for(gpuml_k_knn_ncells(E.nscan)) : 0;
            gpuml_k_knn_acc_box(&s_acc[0], db, E.lo, E.hi);
            ev[e] = E;
        }
        __syncthreads();
    }
}

static __global__ void key_kernel(const float *x, int64_t n, int d, int db, const int64_t *rs, int64_t nev,
                                  const gpuml_k_knn_event *ev, uint64_t *keys, int32_t *rows, int32_t *evk)
{
    GPUML_GRID_STRIDE(r, n)
    {
        int64_t e = gpuml_k_event_of_row(rs, nev, r);
        const float *xr = x + r * d;
        uint64_t key = 0; /* brute force: row order */
        if (ev[e].mode == GPUML_KNN_MODE_GRID)
            key = gpuml_k_knn_finite_row(xr, d) ? gpuml_k_knn_key(xr, &ev[e], db) : ~0ull;
        keys[r] = key;
        rows[r] = (int32_t)r;
        evk[r] = (int32_t)e;
    }
}

static __global__ void gather_event_kernel(const int32_t *rows, const int32_t *evk, int64_t n, int32_t *out)
{
    GPUML_GRID_STRIDE(t, n) out[t] = evk[rows[t]];
}

/* Sorted index t (events in order, each in its sorted order) -> position. */
static __global__ void copy_kernel(const float *x, int64_t n, int d, const int64_t *rs, int64_t nev,
                                   const int32_t *rows, float *xs, int32_t *perm)
{
    GPUML_GRID_STRIDE(t, n)
    {
        int64_t e = gpuml_k_event_of_row(rs, nev, t), start = rs[e], p = t - start;
        int64_t pb = gpuml_k_knn_pbase(start, e), cs = gpuml_k_knn_colstride(rs[e + 1] - start);
        int64_t r = rows[t];
        perm[pb + p] = (int32_t)r;
        for (int c = 0; c < d; c++)
            xs[pb * d + c * cs + p] = x[r * d + c];
    }
}

/* Box slot s of level l: the event whose slot range holds it. */
static __global__ void box_kernel(gpuml_k_knn_view v, int l, int64_t cap, float *boxes)
{
    GPUML_GRID_STRIDE(s, cap)
    {
        int64_t lo = 0, hi = v.nev; /* last e with (start_e >> m) + e <= s */
        while (hi - lo > 1) {
            int64_t mid = lo + (hi - lo) / 2;
            if ((v.ev[mid].start >> (GPUML_KNN_LB + l)) + mid <= s)
                lo = mid;
            else
                hi = mid;
        }
        const gpuml_k_knn_event *ev = &v.ev[lo];
        int64_t i = s - ((ev->start >> (GPUML_KNN_LB + l)) + lo);
        if (ev->mode == GPUML_KNN_MODE_GRID && l < ev->levels && i >= 0 &&
            i < gpuml_k_knn_nodes(gpuml_k_knn_ncells(ev->nscan), l))
            gpuml_k_knn_make_box(&v, lo, l, i, boxes + gpuml_k_knn_box_slot(&v, ev->start, lo, l, i) * 2 * v.db);
    }
}

/* lists: [k-1, npos], slot-major, so that the lists of a warp's threads
 * are accessed together. */
static __global__ void query_kernel(gpuml_k_knn_view v, int32_t *idx, float *dist2, uint64_t *lists)
{
    GPUML_GRID_STRIDE(P, v.npos)
    {
        int64_t e = gpuml_k_knn_event_of_pos(v.ev, v.nev, P);
        int64_t p = P - gpuml_k_knn_pbase(v.ev[e].start, e);
        if (p < v.ev[e].n)
            gpuml_k_knn_cell(&v, e, p >> GPUML_KNN_LB, (int)(p & (GPUML_KNN_B - 1)), 1, idx, dist2, lists + P,
                             v.npos);
    }
}

static __global__ void grad_kernel(const float *x, int64_t n, int d, const int32_t *idx, int k, const float *g,
                                   const int64_t *rowptr, const int64_t *col, float *gx)
{
    GPUML_GRID_STRIDE(e, n * d) gx[e] = gpuml_k_knn_grad_elem(x, n, d, idx, k, g, rowptr, col, e / d, (int)(e % d));
}

extern "C" gpuml_status gpuml_cuda_knn(const gpuml_kctx *k, const float *x, int64_t n, int d, const int64_t *row_splits,
                                       int64_t nev, int kk, float r2, int algo, int32_t *idx, float *dist2, void *ws)
{
    static const char fn[] = "gpuml_knn";
    if (n == 0 || nev == 0)
        return GPUML_OK;
    if (n > INT_MAX || nev >= INT_MAX) /* CUB counts items in int */
        return gpuml_k_fail(k, GPUML_ERR_UNSUPPORTED, fn, "rows, events: the CUDA kNN takes at most 2^31 - 1 of each",
                            NULL, NULL, 2, n, nev);
    GPUML_CUDA_ENTER(k, fn);
    cudaStream_t s = gpuml_cuda_stream(k);
    knn_cuda_ws w;
    carve(ws, n, d, nev, kk, &w);
    gpuml_k_knn_view v;
    gpuml_k_knn_view_init(&v, n, nev, d, kk, r2, w.ev, w.xs, w.perm, w.boxes);

    gpuml_status st = gpuml_cuda_monotone_splits(k, row_splits, nev, n, w.rs, w.tmp, w.tmp_bytes, fn);
    if (st != GPUML_OK)
        return st;
    size_t tb;
    /* a block per event (nev < 2^31 - 1, the grid limit): no block loops over events */
    unsigned ev_grid = (unsigned)nev;
    GPUML_CUDA_LAUNCH(event_kernel, ev_grid, EV_BLOCK, 0, s)(x, d, v.db, w.rs, nev, algo, w.ev);
    GPUML_CUDA_LAUNCH(key_kernel, gpuml_cuda_grid(n), GPUML_CUDA_BLOCK, 0, s)(x, n, d, v.db, w.rs, nev, w.ev, w.keys, w.rows, w.evk);
    tb = w.tmp_bytes;
    GPUML_CUDA_TRY(k, fn, "cub::DeviceRadixSort::SortPairs",
                   cub::DeviceRadixSort::SortPairs(w.tmp, tb, w.keys, w.keys2, w.rows, w.rows2, (int)n, 0, 64, s));
    GPUML_CUDA_LAUNCH(gather_event_kernel, gpuml_cuda_grid(n), GPUML_CUDA_BLOCK, 0, s)(w.rows2, w.evk, n, w.evk2);
    int ebits = 1;
    while (ebits < 32 && (1ll << ebits) < nev)
        ebits++;
    tb = w.tmp_bytes;
    GPUML_CUDA_TRY(k, fn, "cub::DeviceRadixSort::SortPairs",
                   cub::DeviceRadixSort::SortPairs(w.tmp, tb, w.evk2, w.evk, w.rows2, w.rows, (int)n, 0, ebits, s));
    /* padding: NaN coordinates (all-ones bits) and perm -1 */
    GPUML_CUDA_TRY(k, fn, "cudaMemsetAsync", cudaMemsetAsync(w.xs, 0xff, (size_t)(v.npos * d) * sizeof(float), s));
    GPUML_CUDA_TRY(k, fn, "cudaMemsetAsync", cudaMemsetAsync(w.perm, 0xff, (size_t)v.npos * sizeof(int32_t), s));
    GPUML_CUDA_LAUNCH(copy_kernel, gpuml_cuda_grid(n), GPUML_CUDA_BLOCK, 0, s)(x, n, d, w.rs, nev, w.rows, w.xs, w.perm);
    for (int l = 0; l < v.nlevels; l++) {
        int64_t cap = gpuml_k_knn_level_cap(n, nev, l);
        GPUML_CUDA_LAUNCH(box_kernel, gpuml_cuda_grid(cap), GPUML_CUDA_BLOCK, 0, s)(v, l, cap, w.boxes);
    }
    GPUML_CUDA_LAUNCH(query_kernel, gpuml_cuda_grid(v.npos), GPUML_CUDA_BLOCK, 0, s)(v, idx, dist2, w.lists);
    return gpuml_cuda_check(k, fn);
}

extern "C" gpuml_status gpuml_cuda_knn_grad(const gpuml_kctx *k, const float *x, int64_t n, int d, const int32_t *idx,
                                            int kk, const float *g, const int64_t *rowptr, const int64_t *col,
                                            float *gx)
{
    GPUML_CUDA_RUN(k, "gpuml_knn_backward", grad_kernel, n * d, x, n, d, idx, kk, g, rowptr, col, gx);
}
