/* CPU driver for kernels/oc_cluster.h. row_splits were validated by the op.
 *
 * Events run in parallel, one thread each (schedule(dynamic): sizes differ).
 * Per event: sort the candidates into grid cells, decide them in priority
 * order (one pass: every candidate sees all earlier ones decided, so none
 * stays open), sort the CPs into cells, assign every hit, number the CPs in
 * row order and sum the energies. O(n log n + sum over candidates and hits of
 * the points in the 3^db cells around them) per event. */
#include <stdlib.h>
#include <string.h>

#include "../kernels.h"
#include "../oc_cluster.h"
#include "../../libgpuml/core/align.h"
#include "parallel.h"

typedef struct occ_pair {
    uint64_t key;
    int32_t row;
} occ_pair;

static int pair_cmp(const void *pa, const void *pb)
{
    const occ_pair *a = pa, *b = pb;
    if (a->key != b->key)
        return a->key < b->key ? -1 : 1;
    return (a->row > b->row) - (a->row < b->row);
}


typedef struct occ_ws {
    occ_pair *pairs;
    uint64_t *keys;
    int32_t *rows, *state, *cpof, *slot;
    uint64_t *acc;
} occ_ws;

static size_t carve(void *base, int64_t n, occ_ws *w)
{
    size_t un = (size_t)(n > 0 ? n : 1), off = 0;
    char *b = base;
#define TAKE(field, type)                                \
    w->field = b ? (type *)(void *)(b + off) : NULL;     \
    off += gpuml_align_up(un * sizeof(type));
    TAKE(pairs, occ_pair)
    TAKE(keys, uint64_t)
    TAKE(acc, uint64_t)
    TAKE(rows, int32_t)
    TAKE(state, int32_t)
    TAKE(cpof, int32_t)
    TAKE(slot, int32_t)
#undef TAKE
    return off;
}

size_t gpuml_cpu_oc_cluster_workspace(int64_t n, int64_t nev)
{
    (void)nev;
    occ_ws w;
    return carve(NULL, n, &w);
}

/* Priority as one ascending key: beta descending (float bits mapped to an
 * unsigned order, +0 for -0), then the row. */
static uint64_t prio_key(float beta, int64_t i)
{
    union {
        float f;
        uint32_t u;
    } cv;
    cv.f = beta == 0.0f ? 0.0f : beta;
    uint32_t o = (cv.u & 0x80000000u) ? ~cv.u : cv.u | 0x80000000u; /* ascending in beta */
    return ((uint64_t)~o << 32) | (uint32_t)i;
}

/* Sort event e's rows [b, end) into the set's cells (keys, rows). */
static void sort_set(const gpuml_k_occ *P, const occ_ws *w, int64_t e, int64_t b, int64_t end, int use_state)
{
    for (int64_t i = b; i < end; i++) {
        bool in = use_state ? w->state[i] == GPUML_OCC_IN : w->state[i] != GPUML_OCC_NONE;
        w->pairs[i].key = gpuml_k_occ_row_key(P, e, i, in);
        w->pairs[i].row = (int32_t)i;
    }
    qsort(w->pairs + b, (size_t)(end - b), sizeof(occ_pair), pair_cmp);
    for (int64_t p = b; p < end; p++) {
        w->keys[p] = w->pairs[p].key;
        w->rows[p] = w->pairs[p].row;
    }
}

static void cluster_event(const gpuml_k_occ *P, const occ_ws *w, int64_t e, const float *energy, int64_t es,
                          int32_t *cluster_id,
                          int32_t *cp, float *cenergy, int32_t *count)
{
    int64_t b = P->rs[e], end = P->rs[e + 1];
    for (int64_t i = b; i < end; i++)
        w->state[i] = gpuml_k_occ_candidate(P, i) ? GPUML_OCC_OPEN : GPUML_OCC_NONE;
    sort_set(P, w, e, b, end, 0);
    /* candidates in priority order, then one pass */
    int64_t nc = 0;
    for (int64_t i = b; i < end; i++)
        if (w->state[i] == GPUML_OCC_OPEN)
            w->pairs[b + nc].key = prio_key(P->beta[i], i), w->pairs[b + nc].row = (int32_t)i, nc++;
    qsort(w->pairs + b, (size_t)nc, sizeof(occ_pair), pair_cmp);
    for (int64_t q = 0; q < nc; q++) {
        int64_t i = w->pairs[b + q].row;
        w->state[i] = gpuml_k_occ_decide(P, w->keys, w->rows, w->state, e, i);
    }
    sort_set(P, w, e, b, end, 1);
    for (int64_t i = b; i < end; i++)
        w->cpof[i] = gpuml_k_occ_assign(P, w->keys, w->rows, e, i);
    int32_t s = 0;
    for (int64_t i = b; i < end; i++)
        if (w->state[i] == GPUML_OCC_IN) {
            w->slot[i] = s;
            cp[b + s] = (int32_t)(i - b);
            s++;
        }
    count[e] = s;
    for (int64_t p = b + s; p < end; p++)
        cp[p] = -1;
    for (int64_t p = b; p < end; p++)
        w->acc[p] = 0;
    for (int64_t i = b; i < end; i++) {
        int32_t c = w->cpof[i] >= 0 ? w->slot[w->cpof[i]] : -1;
        cluster_id[i] = c;
        if (c >= 0 && energy)
            w->acc[b + c] += gpuml_k_occ_fixed(energy[i * es]);
    }
    if (cenergy)
        for (int64_t p = b; p < end; p++)
            cenergy[p] = gpuml_k_occ_unfixed(w->acc[p]);
}

typedef struct occ_args {
    const gpuml_k_occ *P;
    occ_ws w;
    const float *energy;
    int64_t estride;
    int32_t *cluster_id, *cp;
    float *cenergy;
    int32_t *count;
} occ_args;

GPUML_KRANGE(occ_events, occ_args)
{
    for (int64_t e = begin; e < end; e++)
        cluster_event(a->P, &a->w, e, a->energy, a->estride, a->cluster_id, a->cp, a->cenergy, a->count);
}

gpuml_status gpuml_cpu_oc_cluster(const gpuml_kctx *k, const float *beta, const float *x, int64_t n, int d,
                                  const int64_t *row_splits, int64_t nev, const float *energy, int64_t estride,
                                  float t_beta, float t_d,
                                  int32_t *cluster_id, int32_t *cp, float *cenergy, int32_t *count, void *ws)
{
    gpuml_k_occ P;
    P.beta = beta, P.x = x, P.rs = row_splits, P.n = n, P.nev = nev, P.d = d;
    P.db = d < GPUML_OCC_MAXBIN ? d : GPUML_OCC_MAXBIN;
    P.t_beta = t_beta, P.td2 = t_d * t_d, P.inv_cell = 1.0 / ((double)t_d * (1.0 + 1e-4));
    occ_args a = {&P, {0}, energy, estride, cluster_id, cp, cenergy, count};
    carve(ws, n, &a.w);
    /* One event per piece (events differ in size; each writes its own rows
     * only, so who runs it does not change a bit). */
    gpuml_kfor(k, nev, nev > 1 ? n * 8 : 0, 1, occ_events, &a);
    return GPUML_OK;
}
