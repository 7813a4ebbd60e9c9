/* kernels/oc_cluster.h - object condensation inference (HGCalML's
 * BuildCondensates) on a ragged batch; contract in include/gpuml/cluster.h.
 *
 * Per event, with priority  a before b  iff  beta_a > beta_b, or equal
 * betas and a < b (row index):
 *   candidates: finite coordinates and beta > t_beta;
 *   condensation points (CPs): the candidates taken in priority order, each
 *     kept unless a CP already kept lies within t_d - the lexicographically
 *     first maximal independent set of the graph "candidates within t_d";
 *   every hit joins the first (in priority order) CP within t_d, else noise.
 * "Within t_d": dist2 = sum_d (x_a,d - x_b,d)^2 in float32, dimension order,
 * dist2 <= t_d * t_d (the kNN's dist2 and max_radius rule).
 *
 * Neighbour search: a uniform grid of cells of side t_d (times 1 + 1e-4, so
 * that points within t_d are never two cells apart) on the first
 * db = min(D, 3) coordinates. Each event's points of one set (candidates, or
 * CPs) are sorted by (event, 0, cell hash); the others follow with key
 * (event, 1, 0). A query binary-searches the 3^db cells around it inside its
 * event's range [rs[e], rs[e+1]) of the sorted array and tests every point
 * there exactly. Hash collisions only add points to test.
 *
 * The CP set is decided by rounds of the same rule for every open candidate
 * c (gpuml_k_occ_decide): c is out if a kept CP before it lies within t_d;
 * kept if every candidate before it within t_d is out; else still open.
 * Decided states never change and depend only on decided states, so any
 * schedule (Jacobi rounds on CUDA, one pass in priority order on the CPU,
 * stale reads of a neighbour's state) ends in the same unique set.
 *
 * Energies are summed per cluster in 2^-24 fixed point (int64, wrapping
 * adds), so the sum does not depend on the order and is bitwise the same on
 * every backend; a hit's energy is clamped to [-2^31, 2^31], NaN adds 0. */
#ifndef GPUML_KERNELS_OC_CLUSTER_H
#define GPUML_KERNELS_OC_CLUSTER_H

#include "common.h"

enum { GPUML_OCC_NONE = 0, GPUML_OCC_OPEN = 1, GPUML_OCC_IN = 2, GPUML_OCC_OUT = 3 };

#define GPUML_OCC_MAXBIN 3
#define GPUML_OCC_ESCALE 16777216.0 /* 2^24 */

/* What every stage reads. rs: the clamped row splits [nev + 1]. */
typedef struct gpuml_k_occ {
    const float *beta;  /* [n]                                  */
    const float *x;     /* [n, d]                               */
    const int64_t *rs;  /* [nev + 1], clamped and monotone      */
    int64_t n, nev;
    int d, db;
    float t_beta, td2;  /* threshold; t_d * t_d                 */
    double inv_cell;    /* 1 / (t_d * (1 + 1e-4))               */
} gpuml_k_occ;

/* a comes before b in priority (both valid rows). */
GPUML_HD static inline bool gpuml_k_occ_before(const float *GPUML_RESTRICT beta, int64_t a, int64_t b)
{
    return beta[a] > beta[b] || (beta[a] == beta[b] && a < b);
}

GPUML_HD static inline bool gpuml_k_occ_finite(const gpuml_k_occ *P, int64_t i)
{
    for (int c = 0; c < P->d; c++)
        if (!isfinite(P->x[i * P->d + c]))
            return false;
    return true;
}

GPUML_HD static inline bool gpuml_k_occ_candidate(const gpuml_k_occ *P, int64_t i)
{
    return P->beta[i] > P->t_beta && gpuml_k_occ_finite(P, i);
}

/* Grid cell of coordinate value v, clamped to +-2^30 (monotone, so points
 * within t_d stay at most one cell apart). */
GPUML_HD static inline int32_t gpuml_k_occ_cell(double v, double inv_cell)
{
    double c = floor(v * inv_cell);
    c = c < -1073741824.0 ? -1073741824.0 : c > 1073741824.0 ? 1073741824.0 : c;
    return (int32_t)c;
}

GPUML_HD static inline uint32_t gpuml_k_occ_hash(const int32_t *cell, int db)
{
    uint64_t h = 0x9e3779b97f4a7c15ull;
    for (int c = 0; c < db; c++) {
        h ^= (uint64_t)(uint32_t)cell[c] + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
        h *= 0xbf58476d1ce4e5b9ull;
        h ^= h >> 31;
    }
    return (uint32_t)(h >> 32);
}

GPUML_HD static inline uint64_t gpuml_k_occ_key(int64_t e, int out, uint32_t hash)
{
    return ((uint64_t)e << 33) | ((uint64_t)(out ? 1 : 0) << 32) | hash;
}

/* Sort key of row i of event e: in the set -> its cell, else after the set. */
GPUML_HD static inline uint64_t gpuml_k_occ_row_key(const gpuml_k_occ *P, int64_t e, int64_t i, bool in_set)
{
    if (!in_set)
        return gpuml_k_occ_key(e, 1, 0);
    int32_t cell[GPUML_OCC_MAXBIN];
    for (int c = 0; c < P->db; c++)
        cell[c] = gpuml_k_occ_cell((double)P->x[i * P->d + c], P->inv_cell);
    return gpuml_k_occ_key(e, 0, gpuml_k_occ_hash(cell, P->db));
}

/* First p in [lo, hi) with keys[p] >= key. */
GPUML_HD static inline int64_t gpuml_k_occ_lower(const uint64_t *GPUML_RESTRICT keys, int64_t lo, int64_t hi,
                                                 uint64_t key)
{
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        if (keys[mid] < key)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

GPUML_HD static inline float gpuml_k_occ_dist2(const gpuml_k_occ *P, int64_t a, int64_t b)
{
    float s = 0.0f;
    for (int c = 0; c < P->d; c++) {
        float t = P->x[a * P->d + c] - P->x[b * P->d + c];
        s += t * t;
    }
    return s;
}

/* Sorted positions [*p0, *p1) of the points of event e in cell number `o`
 * (0 .. 3^db - 1) around row i. */
GPUML_HD static inline void gpuml_k_occ_run(const gpuml_k_occ *P, const uint64_t *GPUML_RESTRICT keys, int64_t e,
                                            int64_t i, int o, int64_t *p0, int64_t *p1)
{
    int32_t cell[GPUML_OCC_MAXBIN];
    for (int c = 0; c < P->db; c++) {
        int off = o % 3 - 1;
        o /= 3;
        int32_t ci = gpuml_k_occ_cell((double)P->x[i * P->d + c], P->inv_cell);
        cell[c] = ci + off; /* |ci| <= 2^30: no overflow */
    }
    uint64_t key = gpuml_k_occ_key(e, 0, gpuml_k_occ_hash(cell, P->db));
    int64_t lo = gpuml_k_occ_lower(keys, P->rs[e], P->rs[e + 1], key), hi = lo;
    while (hi < P->rs[e + 1] && keys[hi] == key)
        hi++;
    *p0 = lo;
    *p1 = hi;
}

GPUML_HD static inline int gpuml_k_occ_ncells(int db) { return db == 1 ? 3 : db == 2 ? 9 : 27; }

/* New state of open candidate i of event e; keys/rows: the candidate sort. */
GPUML_HD static inline int32_t gpuml_k_occ_decide(const gpuml_k_occ *P, const uint64_t *GPUML_RESTRICT keys,
                                                  const int32_t *GPUML_RESTRICT rows, const int32_t *state,
                                                  int64_t e, int64_t i)
{
    bool open = false;
    int nc = gpuml_k_occ_ncells(P->db);
    for (int o = 0; o < nc; o++) {
        int64_t p0, p1;
        gpuml_k_occ_run(P, keys, e, i, o, &p0, &p1);
        for (int64_t p = p0; p < p1; p++) {
            int64_t j = rows[p];
            if (j == i || !gpuml_k_occ_before(P->beta, j, i) || gpuml_k_occ_dist2(P, i, j) > P->td2)
                continue;
            int32_t sj = state[j];
            if (sj == GPUML_OCC_IN)
                return GPUML_OCC_OUT;
            open = open || sj == GPUML_OCC_OPEN;
        }
    }
    return open ? GPUML_OCC_OPEN : GPUML_OCC_IN;
}

/* The CP row hit i of event e joins (-1: noise); keys/rows: the CP sort. */
GPUML_HD static inline int32_t gpuml_k_occ_assign(const gpuml_k_occ *P, const uint64_t *GPUML_RESTRICT keys,
                                                  const int32_t *GPUML_RESTRICT rows, int64_t e, int64_t i)
{
    if (!gpuml_k_occ_finite(P, i))
        return -1;
    int64_t best = -1;
    int nc = gpuml_k_occ_ncells(P->db);
    for (int o = 0; o < nc; o++) {
        int64_t p0, p1;
        gpuml_k_occ_run(P, keys, e, i, o, &p0, &p1);
        for (int64_t p = p0; p < p1; p++) {
            int64_t j = rows[p];
            if ((best < 0 || gpuml_k_occ_before(P->beta, j, best)) && gpuml_k_occ_dist2(P, i, j) <= P->td2)
                best = j;
        }
    }
    return (int32_t)best;
}

/* A hit's energy in fixed point (see the top). */
GPUML_HD static inline uint64_t gpuml_k_occ_fixed(float e)
{
    double v = e != e ? 0.0 : (double)e;
    v = v < -2147483648.0 ? -2147483648.0 : v > 2147483648.0 ? 2147483648.0 : v;
    return (uint64_t)(int64_t)floor(v * GPUML_OCC_ESCALE + 0.5);
}

GPUML_HD static inline float gpuml_k_occ_unfixed(uint64_t s) { return (float)((double)(int64_t)s / GPUML_OCC_ESCALE); }

#endif
