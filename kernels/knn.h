/* kernels/knn.h - exact k-nearest neighbours within events (see
 * include/gpuml/knn.h for the contract).
 *
 * Layout, shared by both drivers. Every event is copied into a workspace in
 * "position" order: brute-force events keep their row order; binned events
 * put their finite points first, in an order that makes consecutive points
 * spatially compact in their first db = min(D, 4) coordinates (median splits
 * on the CPU, kernels/cpu/knn.c; the Z-curve of a fine grid on CUDA,
 * gpuml_k_knn_key), then the non-finite ones. Positions are grouped in cells
 * of GPUML_KNN_B; an event's coordinates are stored dimension-major (column d
 * of event e at xs + pbase*D + d*colstride), padded with NaN to a whole
 * number of cells, so a cell is one contiguous run per dimension and padding
 * lanes fail every comparison. Binned events also get a hierarchy of boxes:
 * level 0 holds each cell's box, level l+1 the union of two level-l boxes.
 *
 * Every offset is computed from row_splits[e] and e alone (no prefix sums,
 * so the CUDA build needs no host copy): floor(start / 2^m) + e is a valid
 * non-overlapping base for anything an event needs at most ceil(n / 2^m)
 * slots of.
 *
 * Exactness: a query keeps its k-1 best (dist2, row) pairs in a sorted list.
 * A candidate enters iff its pair is smaller than the current worst,
 * a strict total order, so the list does not depend on the visiting order
 * and brute force, binned search, CPU and CUDA agree bit for bit. A box is
 * skipped only when its lower bound, a float32 sum in dimension order of the
 * squared gaps, is larger than the worst dist2: rounding is monotone, so no
 * point inside can compute a smaller dist2 (ties are visited).
 */
#ifndef GPUML_KERNELS_KNN_H
#define GPUML_KERNELS_KNN_H

#include "common.h"
#include "gpuml/knn.h"
#include "kernels.h" /* GPUML_K_KNN_ALGO_EXPANDED */

#ifdef __CUDACC__
#define GPUML_K_INLINE static __device__ __host__ __forceinline__
#elif defined(__GNUC__)
#define GPUML_K_INLINE static inline __attribute__((always_inline))
#else
#define GPUML_K_INLINE static inline
#endif

#define GPUML_KNN_LB 5 /* cells of 32 points (bench_knn: fewer, larger cells win) */
#define GPUML_KNN_B (1 << GPUML_KNN_LB)
#define GPUML_KNN_MAXBIN 4     /* binned coordinates                          */
#define GPUML_KNN_MAXLEVELS 48 /* box levels: enough for 2^31 points          */
#define GPUML_KNN_STACK 48     /* depth-first stack: > levels + 1            */

#define GPUML_KNN_MODE_BRUTE 0
#define GPUML_KNN_MODE_GRID 1
/* Brute force with weaver's expanded distance (see "expanded distance"
 * below). No box bounds: they hold for the exact distance only. */
#define GPUML_KNN_MODE_EXPANDED 2

/* AUTO uses the binned search for events of at least this many points when
 * D <= GPUML_KNN_GRID_MAXD. Measured on the CPU (bench/README.md): it wins
 * from about 128 points at D <= 8; on gaussian data with D >= 12, binning
 * on 4 of the coordinates no longer prunes and brute force is as fast. */
#define GPUML_KNN_GRID_MIN 128
#define GPUML_KNN_GRID_MAXD 8

/* Row of the empty-slot sentinel with a radius (see the search below). */
#define GPUML_KNN_J_RADIUS 2147483647

/* One event, filled by the build. */
typedef struct gpuml_k_knn_event {
    int64_t start, n; /* rows start .. start + n - 1                              */
    int64_t nscan;    /* positions searched: finite points (binned), n (brute)    */
    int32_t mode;     /* GPUML_KNN_MODE_*                                         */
    int32_t levels;   /* box levels (binned), 0 when nscan == 0                   */
    float lo[GPUML_KNN_MAXBIN], hi[GPUML_KNN_MAXBIN]; /* box of the finite points */
} gpuml_k_knn_event;

/* Everything a query reads; passed by value to CUDA kernels. */
typedef struct gpuml_k_knn_view {
    const gpuml_k_knn_event *ev; /* [nev]                                       */
    const float *xs;             /* event-blocked columns, see above            */
    const int32_t *perm;         /* [positions] global row, -1 on padding       */
    const float *boxes;          /* [slots, 2*db]: lo[db] then hi[db]           */
    int64_t nev, npos;           /* events; positions incl. padding             */
    int64_t level_base[GPUML_KNN_MAXLEVELS + 1]; /* first box slot of a level   */
    int nlevels;                 /* levels with storage                         */
    int d, db, k;
    float r2;                    /* max_radius^2, or +inf                       */
} gpuml_k_knn_view;

/* ---- layout ---------------------------------------------------------------- */
GPUML_HD static inline int64_t gpuml_k_knn_pbase(int64_t start, int64_t e)
{
    return ((start >> GPUML_KNN_LB) + e) << GPUML_KNN_LB;
}
GPUML_HD static inline int64_t gpuml_k_knn_colstride(int64_t n)
{
    return ((n + GPUML_KNN_B - 1) >> GPUML_KNN_LB) << GPUML_KNN_LB;
}
/* Positions (with padding) for n rows in nev events. */
GPUML_HD static inline int64_t gpuml_k_knn_npos(int64_t n, int64_t nev)
{
    return ((n >> GPUML_KNN_LB) + nev + 1) << GPUML_KNN_LB;
}
/* Box slots level l needs for n rows in nev events. */
GPUML_HD static inline int64_t gpuml_k_knn_level_cap(int64_t n, int64_t nev, int l)
{
    return (n >> (GPUML_KNN_LB + l)) + nev + 1;
}
GPUML_HD static inline int64_t gpuml_k_knn_ncells(int64_t nscan) { return (nscan + GPUML_KNN_B - 1) >> GPUML_KNN_LB; }
/* Nodes of level l over nc cells. */
GPUML_HD static inline int64_t gpuml_k_knn_nodes(int64_t nc, int l) { return nc ? ((nc - 1) >> l) + 1 : 0; }
GPUML_HD static inline int gpuml_k_knn_levels_for(int64_t nc)
{
    int l = 1;
    while (gpuml_k_knn_nodes(nc, l - 1) > 1)
        l++;
    return nc ? l : 0;
}
/* Box slot of node i of level l of the event e starting at row start. */
GPUML_HD static inline int64_t gpuml_k_knn_box_slot(const gpuml_k_knn_view *v, int64_t start, int64_t e, int l,
                                                    int64_t i)
{
    return v->level_base[l] + (start >> (GPUML_KNN_LB + l)) + e + i;
}
GPUML_HD static inline const float *gpuml_k_knn_box(const gpuml_k_knn_view *v, int64_t start, int64_t e, int l,
                                                    int64_t i)
{
    return v->boxes + gpuml_k_knn_box_slot(v, start, e, l, i) * 2 * v->db;
}

/* Fill level_base / nlevels for n rows in nev events; returns the box slots. */
GPUML_HD static inline int64_t gpuml_k_knn_plan_levels(gpuml_k_knn_view *v, int64_t n, int64_t nev)
{
    v->nlevels = gpuml_k_knn_levels_for(gpuml_k_knn_ncells(n > 0 ? n : 1));
    v->level_base[0] = 0;
    for (int l = 0; l < v->nlevels; l++)
        v->level_base[l + 1] = v->level_base[l] + gpuml_k_knn_level_cap(n, nev, l);
    return v->level_base[v->nlevels];
}

/* The whole view of a batch over its workspace arrays (both drivers). */
GPUML_HD static inline void gpuml_k_knn_view_init(gpuml_k_knn_view *v, int64_t n, int64_t nev, int d, int k, float r2,
                                                  const gpuml_k_knn_event *ev, const float *xs, const int32_t *perm,
                                                  const float *boxes)
{
    gpuml_k_knn_plan_levels(v, n, nev);
    v->ev = ev;
    v->xs = xs;
    v->perm = perm;
    v->boxes = boxes;
    v->nev = nev;
    v->npos = gpuml_k_knn_npos(n, nev);
    v->d = d;
    v->db = d < GPUML_KNN_MAXBIN ? d : GPUML_KNN_MAXBIN;
    v->k = k;
    v->r2 = r2;
}

/* Event of padded position P: the last e with pbase(e) <= P. Events are in
 * row order and pbase grows strictly with e. */
GPUML_HD static inline int64_t gpuml_k_knn_event_of_pos(const gpuml_k_knn_event *ev, int64_t nev, int64_t P)
{
    int64_t lo = 0, hi = nev; /* answer in [lo, hi) */
    while (hi - lo > 1) {
        int64_t mid = lo + (hi - lo) / 2;
        if (gpuml_k_knn_pbase(ev[mid].start, mid) <= P)
            lo = mid;
        else
            hi = mid;
    }
    return lo;
}

/* algo: a gpuml_knn_algo. */
GPUML_HD static inline int gpuml_k_knn_mode(int64_t n, int d, int algo)
{
    if (algo & GPUML_K_KNN_ALGO_EXPANDED)
        return GPUML_KNN_MODE_EXPANDED;
    if (algo == GPUML_KNN_BRUTE)
        return GPUML_KNN_MODE_BRUTE;
    if (algo == GPUML_KNN_GRID)
        return GPUML_KNN_MODE_GRID;
    return (d <= GPUML_KNN_GRID_MAXD && n >= GPUML_KNN_GRID_MIN) ? GPUML_KNN_MODE_GRID : GPUML_KNN_MODE_BRUTE;
}

GPUML_HD static inline bool gpuml_k_knn_finite_row(const float *x, int d)
{
    for (int c = 0; c < d; c++)
        if (!isfinite(x[c]))
            return false;
    return true;
}

/* ---- an event's finite rows: count and box ----------------------------------
 * Accumulated row by row (the CPU's Z-order build, each CUDA thread over its
 * rows) and merged across threads (a CUDA block's tree). Min, max and an
 * integer count: the result does not depend on the order. */
typedef struct gpuml_k_knn_acc {
    float lo[GPUML_KNN_MAXBIN], hi[GPUML_KNN_MAXBIN];
    int64_t cnt;
} gpuml_k_knn_acc;

GPUML_HD static inline void gpuml_k_knn_acc_init(gpuml_k_knn_acc *a)
{
    for (int c = 0; c < GPUML_KNN_MAXBIN; c++)
        a->lo[c] = INFINITY, a->hi[c] = -INFINITY;
    a->cnt = 0;
}

/* Adds row xr (d coordinates, the first db binned) if all are finite. */
GPUML_HD static inline void gpuml_k_knn_acc_row(gpuml_k_knn_acc *a, const float *GPUML_RESTRICT xr, int d, int db)
{
    if (!gpuml_k_knn_finite_row(xr, d))
        return;
    a->cnt++;
    for (int c = 0; c < db; c++) {
        float v = xr[c] + 0.0f; /* -0 becomes +0: fminf/fmaxf may return either of two zeros, so the box would
                                   depend on the order rows are merged in */
        a->lo[c] = fminf(a->lo[c], v);
        a->hi[c] = fmaxf(a->hi[c], v);
    }
}

GPUML_HD static inline void gpuml_k_knn_acc_merge(gpuml_k_knn_acc *a, const gpuml_k_knn_acc *b)
{
    for (int c = 0; c < GPUML_KNN_MAXBIN; c++) {
        a->lo[c] = fminf(a->lo[c], b->lo[c]);
        a->hi[c] = fmaxf(a->hi[c], b->hi[c]);
    }
    a->cnt += b->cnt;
}

/* The event's box from its accumulator: [0, 0] where it has no finite row
 * and beyond the binned coordinates. */
GPUML_HD static inline void gpuml_k_knn_acc_box(const gpuml_k_knn_acc *a, int db, float *lo, float *hi)
{
    for (int c = 0; c < GPUML_KNN_MAXBIN; c++) {
        bool any = c < db && a->cnt > 0;
        lo[c] = any ? a->lo[c] : 0.0f;
        hi[c] = any ? a->hi[c] : 0.0f;
    }
}

/* ---- Z-curve key of a finite point ------------------------------------------
 * Each binned coordinate is quantised on [lo, hi] of its event to 32, 31, 21
 * or 15 bits (db = 1..4) and the bits interleaved; keys stay below 2^63, so
 * UINT64_MAX sorts non-finite points last. Only the visiting order depends on
 * it, never the result. */
GPUML_HD static inline uint64_t gpuml_k_knn_spread(uint64_t x, int db)
{
    switch (db) {
    case 2:
        x &= 0x7fffffffull;
        x = (x | (x << 16)) & 0x0000ffff0000ffffull;
        x = (x | (x << 8)) & 0x00ff00ff00ff00ffull;
        x = (x | (x << 4)) & 0x0f0f0f0f0f0f0f0full;
        x = (x | (x << 2)) & 0x3333333333333333ull;
        return (x | (x << 1)) & 0x5555555555555555ull;
    case 3:
        x &= 0x1fffffull;
        x = (x | (x << 32)) & 0x001f00000000ffffull;
        x = (x | (x << 16)) & 0x001f0000ff0000ffull;
        x = (x | (x << 8)) & 0x100f00f00f00f00full;
        x = (x | (x << 4)) & 0x10c30c30c30c30c3ull;
        return (x | (x << 2)) & 0x1249249249249249ull;
    case 4:
        x &= 0x7fffull;
        x = (x | (x << 24)) & 0x000000ff000000ffull;
        x = (x | (x << 12)) & 0x000f000f000f000full;
        x = (x | (x << 6)) & 0x0303030303030303ull;
        return (x | (x << 3)) & 0x1111111111111111ull;
    default: return x & 0xffffffffull;
    }
}

GPUML_HD static inline uint64_t gpuml_k_knn_key(const float *x, const gpuml_k_knn_event *ev, int db)
{
    int bits = db == 1 ? 32 : db == 2 ? 31 : db == 3 ? 21 : 15;
    double top = (double)((1ull << bits) - 1);
    uint64_t key = 0;
    for (int c = 0; c < db; c++) {
        double w = (double)ev->hi[c] - (double)ev->lo[c];
        double q = w > 0 ? ((double)x[c] - (double)ev->lo[c]) * (top / w) : 0.0;
        q = q < 0 ? 0 : q > top ? top : q;
        key |= gpuml_k_knn_spread((uint64_t)q, db) << c;
    }
    return key;
}

/* Box of node i of level l (level 0: a cell of positions), written to out
 * (lo[db], hi[db]). Level l-1 must be complete. */
GPUML_HD static inline void gpuml_k_knn_make_box(const gpuml_k_knn_view *v, int64_t e, int l, int64_t i, float *out)
{
    const gpuml_k_knn_event *ev = &v->ev[e];
    int db = v->db;
    if (l == 0) {
        int64_t cs = gpuml_k_knn_colstride(ev->n), pb = gpuml_k_knn_pbase(ev->start, e);
        int64_t p0 = i << GPUML_KNN_LB, p1 = gpuml_k_min64(p0 + GPUML_KNN_B, ev->nscan);
        for (int c = 0; c < db; c++) {
            const float *col = v->xs + pb * v->d + c * cs;
            float lo = col[p0], hi = col[p0];
            for (int64_t p = p0 + 1; p < p1; p++) {
                lo = col[p] < lo ? col[p] : lo;
                hi = col[p] > hi ? col[p] : hi;
            }
            out[c] = lo;
            out[db + c] = hi;
        }
        return;
    }
    int64_t nc = gpuml_k_knn_ncells(ev->nscan);
    const float *a = gpuml_k_knn_box(v, ev->start, e, l - 1, 2 * i);
    bool two = 2 * i + 1 < gpuml_k_knn_nodes(nc, l - 1);
    const float *b = two ? a + 2 * db : a;
    for (int c = 0; c < db; c++) {
        out[c] = b[c] < a[c] ? b[c] : a[c];
        out[db + c] = b[db + c] > a[db + c] ? b[db + c] : a[db + c];
    }
}

/* ---- the search ----------------------------------------------------------------
 * Queries are processed a cell at a time: the up to GPUML_KNN_GMAX points of
 * one cell share one walk over the boxes (pruned against the group's box and
 * its largest current worst dist2), and every visited cell is offered to
 * each query that its own bound does not exclude. The CPU driver passes whole
 * cells; the CUDA launcher one query per thread (GPUML_KNN_GMAX 1): the same
 * code with groups of one.
 *
 * A query's list is k-1 packed keys (dist2 bits << 32 | row), ascending:
 * the bits are mapped to order like the values (gpuml_k_knn_pack), so one
 * unsigned compare is the (dist2, row) order. Empty slots hold a sentinel: (r2,
 * INT32_MAX) admits points at dist2 == r2, (+inf, 0) admits nothing
 * infinite. */
#ifndef GPUML_KNN_GMAX
#define GPUML_KNN_GMAX GPUML_KNN_B
#endif
#if GPUML_KNN_B > 32 || GPUML_KNN_GMAX > GPUML_KNN_B
#error "lane and query masks are 32-bit words"
#endif

GPUML_HD static inline int gpuml_k_knn_ctz(uint32_t m)
{
#ifdef __CUDA_ARCH__
    return __ffs((int)m) - 1;
#elif defined(__GNUC__)
    return __builtin_ctz(m);
#else
    int i = 0;
    while (!(m & 1u))
        m >>= 1, i++;
    return i;
#endif
}

/* The float's bits made to order like its value for either sign (the
 * expanded distance can be negative): sign bit set on positives, all bits
 * flipped on negatives. */
GPUML_HD static inline uint64_t gpuml_k_knn_pack(float d2, int32_t j)
{
#ifdef __CUDA_ARCH__
    uint32_t b = __float_as_uint(d2);
#else
    union {
        float f;
        uint32_t u;
    } cv;
    cv.f = d2;
    uint32_t b = cv.u;
#endif
    b ^= (b & 0x80000000u) ? 0xffffffffu : 0x80000000u;
    return ((uint64_t)b << 32) | (uint32_t)j;
}

GPUML_HD static inline float gpuml_k_knn_key_d2(uint64_t key)
{
    uint32_t b = (uint32_t)(key >> 32);
    b ^= (b & 0x80000000u) ? 0x80000000u : 0xffffffffu;
#ifdef __CUDA_ARCH__
    return __uint_as_float(b);
#else
    union {
        float f;
        uint32_t u;
    } cv;
    cv.u = b;
    return cv.f;
#endif
}

/* max(a, 0), exactly (a + |a| is 2a or 0; halving is exact), without a
 * comparison, so that compilers vectorise the loops that use it. Where a + |a|
 * overflows, a^2 does too and the bound is +inf either way. */
GPUML_HD static inline float gpuml_k_knn_pos(float a) { return (a + fabsf(a)) * 0.5f; }

/* Lower bound of dist2 between any point of box bx (lo[db], hi[db]) and any
 * point of the box [qlo, qhi] (a query point when qlo == qhi); see the top. */
GPUML_K_INLINE float gpuml_k_knn_gap(const float *bx, const float *qlo, const float *qhi, int db)
{
    float acc = 0.0f;
    for (int c = 0; c < db; c++) {
        float a = bx[c] - qhi[c], b = qlo[c] - bx[db + c];
        float g = gpuml_k_knn_pos(a) + gpuml_k_knn_pos(b); /* at most one is > 0 */
        acc += g * g;
    }
    return acc;
}

/* A group of queries in one cell, query-major arrays so that bounds are
 * computed for all of them at once. Dead lanes (padding, non-finite points,
 * k == 1) have wd = -inf and fail every test. */
typedef struct gpuml_k_knn_grp {
    const float *col0;   /* column 0 of the event                        */
    const int32_t *perm; /* global rows of the event's positions         */
    uint64_t *lists;     /* slot s of query g's list: lists[g*(k-1) + s*ls] */
    int64_t ls;          /* list stride: 1 (CPU), positions (CUDA)        */
    int64_t cs;          /* column stride                                 */
    int k, n;            /* neighbours; queries                           */
    int expanded;        /* GPUML_KNN_MODE_EXPANDED: weaver's distance    */
    uint32_t live;       /* bit g: query g searches                      */
    float lo[GPUML_KNN_MAXBIN], hi[GPUML_KNN_MAXBIN]; /* box of live queries */
    float qx[GPUML_KNN_MAXBIN][GPUML_KNN_GMAX];        /* first coordinates */
    float wd[GPUML_KNN_GMAX];     /* dist2 of the worst key                 */
    uint64_t wk[GPUML_KNN_GMAX];  /* worst key (slot k-2 of the list)       */
    int cnt[GPUML_KNN_GMAX];      /* filled slots                           */
    int64_t p[GPUML_KNN_GMAX];    /* positions                              */
    float qq[GPUML_KNN_GMAX];     /* expanded: |q|^2                        */
    uint64_t over[GPUML_KNN_GMAX]; /* expanded: the k-th best key, kept out of
                                     the list (the sentinel until it is full) */
} gpuml_k_knn_grp;

/* ---- expanded distance (weaver compatibility) -----------------------------------
 * weaver's ParticleNet (weaver-core 0.5) ranks neighbours by
 *     pairwise_distance = (xx^T + inner + xx).clamp(min=0),
 *     inner = -2 x^T x,  xx = sum_d x^2,
 * in float32, and takes the k+1 smallest, dropping the first. Per query q
 * and candidate j that is max((|q|^2 - 2 q.x_j) + |x_j|^2, 0), with the dot
 * product accumulated in dimension order by fused multiply-adds (what
 * torch's CPU matmul computes, measured for D = 2 .. 128) and |x|^2 a plain
 * float32 sum of rounded squares in dimension order (torch's sum for D <= 3;
 * from D = 8 torch sums in a vectorised order that is not reproduced). */
GPUML_HD static inline float gpuml_k_knn_dot(const float *a, int64_t sa, const float *b, int64_t sb, int D)
{
    float acc = 0.0f;
    for (int d = 0; d < D; d++)
        acc = fmaf(a[d * sa], b[d * sb], acc);
    return acc;
}
GPUML_HD static inline float gpuml_k_knn_norm2(const float *a, int64_t sa, int D)
{
    float acc = 0.0f;
    for (int d = 0; d < D; d++) {
        float t = a[d * sa] * a[d * sa];
        acc += t;
    }
    return acc;
}
GPUML_HD static inline float gpuml_k_knn_expanded(float qq, float dot, float xx_j)
{
    float t = qq - 2.0f * dot;
    float v = t + xx_j;
    return v > 0.0f ? v : (v == v ? 0.0f : v); /* clamp(min=0), -0 to +0; NaN stays */
}

GPUML_K_INLINE void gpuml_k_knn_insert(gpuml_k_knn_grp *G, int g, uint64_t key)
{
    int km = G->k - 1;
    uint64_t *L = G->lists + (int64_t)g * km;
    int64_t ls = G->ls;
    if (G->expanded && G->cnt[g] == km) { /* full: the key or the list's last becomes the k-th */
        uint64_t last = L[(km - 1) * ls];
        G->over[g] = key > last ? key : last;
        G->wk[g] = G->over[g];
        G->wd[g] = gpuml_k_knn_key_d2(G->wk[g]);
        if (key > last)
            return;
    }
    int s = G->cnt[g] < km ? G->cnt[g] : km - 1; /* only the filled prefix moves */
    while (s > 0 && key < L[(s - 1) * ls]) {
        L[s * ls] = L[(s - 1) * ls];
        s--;
    }
    L[s * ls] = key;
    G->cnt[g] += G->cnt[g] < km;
    G->wk[g] = G->expanded ? G->over[g] : L[(km - 1) * ls];
    G->wd[g] = gpuml_k_knn_key_d2(G->wk[g]);
}

/* Offer the points of cell c to the live queries of the group; with cbox
 * (the cell's box) only to those its bound does not exclude. D and DB are
 * compile-time constants at every call site of the search. */
GPUML_K_INLINE void gpuml_k_knn_scan(gpuml_k_knn_grp *G, int D, int DB, int64_t c, const float *cbox)
{
    int64_t p0 = c << GPUML_KNN_LB;
    uint32_t todo = G->live;
    if (cbox) { /* the bound of the cell for every query at once */
        float gap[GPUML_KNN_GMAX];
        for (int g = 0; g < GPUML_KNN_GMAX; g++)
            gap[g] = 0.0f;
        for (int d = 0; d < DB; d++) {
            float lo = cbox[d], hi = cbox[DB + d];
            for (int g = 0; g < GPUML_KNN_GMAX; g++) {
                float t = gpuml_k_knn_pos(lo - G->qx[d][g]) + gpuml_k_knn_pos(G->qx[d][g] - hi);
                gap[g] += t * t;
            }
        }
        uint32_t m = 0;
        for (int g = 0; g < GPUML_KNN_GMAX; g++)
            m |= (uint32_t)(gap[g] <= G->wd[g]) << g;
        todo &= m;
    }
    while (todo) {
        int g = gpuml_k_knn_ctz(todo);
        todo &= todo - 1;
        float acc[GPUML_KNN_B];
        if (G->expanded) {
            const float *q = G->col0 + G->p[g];
            for (int l = 0; l < GPUML_KNN_B; l++)
                acc[l] = gpuml_k_knn_expanded(G->qq[g], gpuml_k_knn_dot(q, G->cs, G->col0 + p0 + l, G->cs, D),
                                              gpuml_k_knn_norm2(G->col0 + p0 + l, G->cs, D));
        } else {
            for (int l = 0; l < GPUML_KNN_B; l++)
                acc[l] = 0.0f;
            for (int d = 0; d < D; d++) {
                const float *col = G->col0 + d * G->cs + p0;
                float qd = d < GPUML_KNN_MAXBIN ? G->qx[d < GPUML_KNN_MAXBIN ? d : 0][g] : G->col0[d * G->cs + G->p[g]];
                for (int l = 0; l < GPUML_KNN_B; l++) {
                    float t = qd - col[l];
                    acc[l] += t * t;
                }
            }
        }
        float wd = G->wd[g];
        uint32_t m = 0;
        for (int l = 0; l < GPUML_KNN_B; l++)
            m |= (uint32_t)(acc[l] <= wd) << l;
        if (p0 == (G->p[g] & ~(int64_t)(GPUML_KNN_B - 1)))
            m &= ~(1u << (G->p[g] - p0)); /* not itself */
        while (m) {
            int l = gpuml_k_knn_ctz(m);
            m &= m - 1;
            uint64_t key = gpuml_k_knn_pack(acc[l], G->perm[p0 + l]);
            if (key < G->wk[g])
                gpuml_k_knn_insert(G, g, key);
        }
    }
}

GPUML_K_INLINE float gpuml_k_knn_group_worst(const gpuml_k_knn_grp *G)
{
    float w = -INFINITY;
    for (int g = 0; g < GPUML_KNN_GMAX; g++)
        w = G->wd[g] > w ? G->wd[g] : w;
    return w;
}

/* Depth-first below node (l, i) of bound b, nearest child first, pruned by
 * the group's worst; cell `own` (already scanned) is skipped. */
GPUML_K_INLINE void gpuml_k_knn_descend(const gpuml_k_knn_view *v, const gpuml_k_knn_event *ev, int64_t e,
                                        gpuml_k_knn_grp *G, int D, int DB, int l0, int64_t i0, float b0, int64_t own)
{
    int64_t nc = gpuml_k_knn_ncells(ev->nscan);
    bool check = G->n > 1; /* with one query the group bound is the query's */
    float worst = gpuml_k_knn_group_worst(G);
    int32_t st_i[GPUML_KNN_STACK];
    float st_b[GPUML_KNN_STACK];
    int8_t st_l[GPUML_KNN_STACK];
    int top = 1;
    st_i[0] = (int32_t)i0, st_b[0] = b0, st_l[0] = (int8_t)l0;
    while (top > 0) {
        top--;
        int64_t i = st_i[top];
        int l = st_l[top];
        if (st_b[top] > worst)
            continue;
        if (l == 0) {
            if (i != own) {
                gpuml_k_knn_scan(G, D, DB, i, check ? gpuml_k_knn_box(v, ev->start, e, 0, i) : NULL);
                worst = gpuml_k_knn_group_worst(G);
            }
            continue;
        }
        int64_t c0 = 2 * i, c1 = 2 * i + 1;
        const float *bx = gpuml_k_knn_box(v, ev->start, e, l - 1, c0);
        float bb0 = gpuml_k_knn_gap(bx, G->lo, G->hi, DB);
        if (c1 < gpuml_k_knn_nodes(nc, l - 1)) {
            float bb1 = gpuml_k_knn_gap(bx + 2 * DB, G->lo, G->hi, DB);
            /* push the far child first so that the near one pops next */
            bool near0 = bb0 <= bb1;
            int64_t fi = near0 ? c1 : c0, ni = near0 ? c0 : c1;
            float fb = near0 ? bb1 : bb0, nb = near0 ? bb0 : bb1;
            if (fb <= worst && top < GPUML_KNN_STACK)
                st_i[top] = (int32_t)fi, st_b[top] = fb, st_l[top] = (int8_t)(l - 1), top++;
            if (nb <= worst && top < GPUML_KNN_STACK)
                st_i[top] = (int32_t)ni, st_b[top] = nb, st_l[top] = (int8_t)(l - 1), top++;
        } else if (bb0 <= worst && top < GPUML_KNN_STACK) {
            st_i[top] = (int32_t)c0, st_b[top] = bb0, st_l[top] = (int8_t)(l - 1), top++;
        }
    }
}

/* Binned search of a group (all in one cell): its own cell, then for every
 * level the sibling subtree of its ancestor, depth-first. */
GPUML_K_INLINE void gpuml_k_knn_search_grid(const gpuml_k_knn_view *v, const gpuml_k_knn_event *ev, int64_t e,
                                            gpuml_k_knn_grp *G, int D, int DB)
{
    int64_t nc = gpuml_k_knn_ncells(ev->nscan), own = G->p[0] >> GPUML_KNN_LB, node = own;
    gpuml_k_knn_scan(G, D, DB, own, NULL);
    for (int lev = 0; lev + 1 < ev->levels; lev++, node >>= 1) {
        int64_t sib = node ^ 1;
        if (sib >= gpuml_k_knn_nodes(nc, lev))
            continue;
        float b = gpuml_k_knn_gap(gpuml_k_knn_box(v, ev->start, e, lev, sib), G->lo, G->hi, DB);
        if (b <= gpuml_k_knn_group_worst(G))
            gpuml_k_knn_descend(v, ev, e, G, D, DB, lev, sib, b, own);
    }
}

GPUML_K_INLINE void gpuml_k_knn_search(const gpuml_k_knn_view *v, const gpuml_k_knn_event *ev, int64_t e,
                                       gpuml_k_knn_grp *G, int D, int DB)
{
    if (ev->mode == GPUML_KNN_MODE_GRID) {
        gpuml_k_knn_search_grid(v, ev, e, G, D, DB);
        return;
    }
    int64_t nc = gpuml_k_knn_ncells(ev->nscan);
    for (int64_t c = 0; c < nc; c++)
        gpuml_k_knn_scan(G, D, DB, c, NULL);
}

/* The output rows of the points at positions c*B + g0 .. c*B + g0 + gn - 1
 * of event e (gn <= GPUML_KNN_GMAX; positions past the event are ignored).
 * lists: GPUML_KNN_GMAX * (k-1) keys of scratch, slot s of query g's list at
 * lists[g*(k-1) + s*ls] (the CUDA launcher interleaves the lists of all
 * positions, ls = positions, so that a warp's accesses coalesce). */
GPUML_K_INLINE void gpuml_k_knn_cell(const gpuml_k_knn_view *v, int64_t e, int64_t c, int g0, int gn, int32_t *idx,
                                     float *dist2, uint64_t *lists, int64_t ls)
{
    const gpuml_k_knn_event *ev = &v->ev[e];
    int64_t pb = gpuml_k_knn_pbase(ev->start, e);
    int k = v->k, D = v->d, db = v->db, km = k - 1;
    gpuml_k_knn_grp G;
    G.col0 = v->xs + pb * D;
    G.perm = v->perm + pb;
    G.lists = lists;
    G.ls = ls;
    G.cs = gpuml_k_knn_colstride(ev->n);
    G.k = k;
    G.n = 0;
    G.expanded = ev->mode == GPUML_KNN_MODE_EXPANDED;
    G.live = 0;
    uint64_t sentinel = v->r2 < INFINITY ? gpuml_k_knn_pack(v->r2, GPUML_KNN_J_RADIUS) : gpuml_k_knn_pack(INFINITY, 0);
    for (int d = 0; d < GPUML_KNN_MAXBIN; d++)
        G.lo[d] = INFINITY, G.hi[d] = -INFINITY;
    for (int g = 0; g < GPUML_KNN_GMAX; g++) {
        int64_t p = (c << GPUML_KNN_LB) + g0 + g;
        bool in = g < gn && p < ev->n;
        G.p[g] = p;
        G.qq[g] = in && G.expanded ? gpuml_k_knn_norm2(G.col0 + p, G.cs, D) : 0.0f;
        G.cnt[g] = 0;
        G.wk[g] = sentinel;
        G.over[g] = sentinel;
        G.wd[g] = -INFINITY;
        for (int d = 0; d < GPUML_KNN_MAXBIN; d++)
            G.qx[d][g] = in && d < D ? G.col0[d * G.cs + p] : 0.0f;
        if (!in)
            continue;
        G.n = g + 1;
        int64_t i = G.perm[p];
        idx[i * k] = (int32_t)i;
        dist2[i * k] = 0.0f;
        bool finite = k > 1;
        for (int d = 0; d < D; d++)
            finite = finite && isfinite(G.col0[d * G.cs + p]);
        if (!finite)
            continue;
        G.live |= 1u << g;
        G.wd[g] = gpuml_k_knn_key_d2(sentinel);
        for (int s = 0; s < km; s++)
            lists[(int64_t)g * km + s * ls] = sentinel;
        for (int d = 0; d < db; d++) {
            G.lo[d] = G.qx[d][g] < G.lo[d] ? G.qx[d][g] : G.lo[d];
            G.hi[d] = G.qx[d][g] > G.hi[d] ? G.qx[d][g] : G.hi[d];
        }
    }
    if (G.live) {
        switch (D) {
        case 1: gpuml_k_knn_search(v, ev, e, &G, 1, 1); break;
        case 2: gpuml_k_knn_search(v, ev, e, &G, 2, 2); break;
        case 3: gpuml_k_knn_search(v, ev, e, &G, 3, 3); break;
        case 4: gpuml_k_knn_search(v, ev, e, &G, 4, 4); break;
        default: gpuml_k_knn_search(v, ev, e, &G, D, GPUML_KNN_MAXBIN); break;
        }
    }
    for (int g = 0; g < G.n; g++) {
        int64_t i = G.perm[G.p[g]];
        const uint64_t *L = lists + (int64_t)g * km;
        /* expanded: weaver takes the top k of all points, the query
         * included, and drops the first. The query's own distance need not
         * be the smallest (rounding): when a key S[0] beats it, S[0] is
         * dropped and the query takes its place in order among S[1..], the
         * list followed by the k-th best key. */
        int drop = 0, ns = G.cnt[g] + (G.expanded && G.over[g] != sentinel);
        uint64_t self = 0;
        if (G.expanded && G.cnt[g] > 0 && ((G.live >> g) & 1u)) {
            const float *q = G.col0 + G.p[g];
            self = gpuml_k_knn_pack(gpuml_k_knn_expanded(G.qq[g], gpuml_k_knn_dot(q, G.cs, q, G.cs, D), G.qq[g]),
                                    (int32_t)i);
            drop = L[0] < self;
        }
        for (int s = 0, r = drop; s < km; s++) {
            bool real = s < G.cnt[g];
            uint64_t key = r < G.cnt[g] ? L[r * ls] : r < ns ? G.over[g] : 0;
            if (drop && (r >= ns || self < key))
                key = self, drop = 0; /* the query, in its place */
            else
                r++;
            idx[i * k + 1 + s] = real ? (int32_t)(uint32_t)key : -1;
            dist2[i * k + 1 + s] = real ? gpuml_k_knn_key_d2(key) : INFINITY;
        }
    }
}

/* ---- backward ------------------------------------------------------------------ */

/* Row of flat position pos of an [n, k] index array (32-bit division when
 * it fits: the 64-bit one is several times slower). */
GPUML_HD static inline int64_t gpuml_k_knn_row_of(int64_t pos, int k)
{
    return pos < 4294967296ll ? (int64_t)((uint32_t)pos / (uint32_t)k) : pos / k;
}

/* d loss / d x[i, c] for loss = sum g * dist2: own slots in slot order, then
 * the reverse edges (m -> i) in CSR order. Self edges contribute nothing;
 * out-of-range indices and CSR entries are skipped (memory safety only: the
 * CSR must be the reverse adjacency of idx). */
GPUML_HD static inline float gpuml_k_knn_grad_elem(const float *GPUML_RESTRICT x, int64_t n, int d,
                                                   const int32_t *GPUML_RESTRICT idx, int k,
                                                   const float *GPUML_RESTRICT g, const int64_t *GPUML_RESTRICT rowptr,
                                                   const int64_t *GPUML_RESTRICT col, int64_t i, int c)
{
    float xi = x[i * d + c], acc = 0.0f;
    for (int s = 0; s < k; s++) {
        int64_t j = idx[i * k + s];
        if (j < 0 || j >= n || j == i)
            continue;
        acc += g[i * k + s] * (xi - x[j * d + c]);
    }
    int64_t nk = n * k;
    int64_t p0 = gpuml_k_min64(gpuml_k_max64(rowptr[i], 0), nk);
    int64_t p1 = gpuml_k_min64(gpuml_k_max64(rowptr[i + 1], p0), nk);
    for (int64_t q = p0; q < p1; q++) {
        int64_t pos = col[q], m = gpuml_k_knn_row_of(pos, k);
        if (pos < 0 || pos >= nk || m == i)
            continue;
        acc += g[pos] * (xi - x[m * d + c]);
    }
    return 2.0f * acc;
}

/* The same for all D elements of row i at once (one gather per neighbour
 * instead of D), adding in the same order per element: the same bits. */
GPUML_HD static inline void gpuml_k_knn_grad_row(const float *GPUML_RESTRICT x, int64_t n, int d,
                                                 const int32_t *GPUML_RESTRICT idx, int k,
                                                 const float *GPUML_RESTRICT g, const int64_t *GPUML_RESTRICT rowptr,
                                                 const int64_t *GPUML_RESTRICT col, int64_t i, float *GPUML_RESTRICT gxi)
{
    const float *xi = x + i * d;
    for (int c = 0; c < d; c++)
        gxi[c] = 0.0f;
    for (int s = 0; s < k; s++) {
        int64_t j = idx[i * k + s];
        if (j < 0 || j >= n || j == i)
            continue;
        float gs = g[i * k + s];
        const float *xj = x + j * d;
        for (int c = 0; c < d; c++)
            gxi[c] += gs * (xi[c] - xj[c]);
    }
    int64_t nk = n * k;
    int64_t p0 = gpuml_k_min64(gpuml_k_max64(rowptr[i], 0), nk);
    int64_t p1 = gpuml_k_min64(gpuml_k_max64(rowptr[i + 1], p0), nk);
    for (int64_t q = p0; q < p1; q++) {
        int64_t pos = col[q], m = gpuml_k_knn_row_of(pos, k);
        if (pos < 0 || pos >= nk || m == i)
            continue;
        float gm = g[pos];
        const float *xm = x + m * d;
        for (int c = 0; c < d; c++)
            gxi[c] += gm * (xi[c] - xm[c]);
    }
    for (int c = 0; c < d; c++)
        gxi[c] = 2.0f * gxi[c];
}

#endif
