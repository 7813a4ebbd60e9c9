/* kernels/condensation.h - the object condensation loss (Kieseler 2020,
 * arXiv:2002.03605) on a ragged batch, forward and backward.
 *
 * Per vertex i: beta_i in (0, 1), cluster coordinates x_i [D], truth object
 * t_i (-1: noise; objects 0 .. K-1 within each event). Charge
 * q_i = atanh(beta_i / 1.002)^2 + q_min (the 1.002 keeps q finite at
 * beta = 1, as HGCalML does). Object k's condensation point alpha_k is its
 * member with the largest beta (the first one on ties). Per event e with
 * N_e vertices, K_e objects present and N_B noise vertices:
 *   L_V = 1/N_e sum_i q_i sum_k q_ak ( [t_i = k] |x_i - x_ak|^2
 *                                    + [t_i != k] max(0, 1 - |x_i - x_ak|) )
 *   L_b = 1/K_e sum_k (1 - beta_ak)
 *   L_n = s_B / N_B sum_{i noise} beta_i
 * and the loss is the mean of L_V + L_b + L_n over non-empty events.
 * Nothing is detached: gradients flow through q_ak and x_ak too. */
#ifndef GPUML_KERNELS_CONDENSATION_H
#define GPUML_KERNELS_CONDENSATION_H

#include <string.h>

#include "common.h"
#include "reduce.h"
#include "segment.h"

/* Per-event statistics saved by the forward (doubles kept as float). */
enum { GPUML_OC_N = 0, GPUML_OC_K = 1, GPUML_OC_NB = 2, GPUML_OC_LV = 3, GPUML_OC_LB = 4, GPUML_OC_LN = 5,
       GPUML_OC_STATS = 6 };

GPUML_HD static inline float gpuml_k_oc_q(float beta, float q_min)
{
    float a = atanhf(beta / 1.002f);
    return a * a + q_min;
}

GPUML_HD static inline float gpuml_k_oc_dq(float beta)
{
    float b = beta / 1.002f;
    return 2.0f * atanhf(b) / ((1.0f - b * b) * 1.002f);
}

/* Condensation point of object k in rows [begin, end), or -1 if absent. */
GPUML_HD static inline int64_t gpuml_k_oc_alpha(const float *GPUML_RESTRICT beta, const int32_t *GPUML_RESTRICT truth,
                                               int64_t begin, int64_t end, int64_t k)
{
    int64_t best = -1;
    float bb = 0.0f;
    for (int64_t i = begin; i < end; i++)
        if (truth[i] == k && (best < 0 || beta[i] > bb)) {
            best = i;
            bb = beta[i];
        }
    return best;
}

GPUML_HD static inline float gpuml_k_oc_dist2(const float *GPUML_RESTRICT x, int64_t d, int64_t i, int64_t j)
{
    float s = 0.0f;
    for (int64_t c = 0; c < d; c++) {
        float t = x[i * d + c] - x[j * d + c];
        s = fmaf(t, t, s);
    }
    return s;
}

/* q_i * sum_k q_ak (attractive or repulsive) for vertex i; alpha: the
 * event's [K] condensation points. */
GPUML_HD static inline float gpuml_k_oc_vertex(const float *GPUML_RESTRICT beta, const float *GPUML_RESTRICT x,
                                               const int32_t *GPUML_RESTRICT truth, const int64_t *GPUML_RESTRICT alpha,
                                               int64_t nobj, int64_t d, float q_min, int64_t i)
{
    double v = 0.0;
    for (int64_t k = 0; k < nobj; k++) {
        int64_t a = alpha[k];
        if (a < 0)
            continue;
        float qa = gpuml_k_oc_q(beta[a], q_min);
        float d2 = gpuml_k_oc_dist2(x, d, i, a);
        if (truth[i] == k)
            v += (double)(qa * d2);
        else {
            float h = 1.0f - sqrtf(d2);
            if (h > 0.0f)
                v += (double)(qa * h);
        }
    }
    return gpuml_k_oc_q(beta[i], q_min) * (float)v;
}

/* Per-event statistics. The sums over an event's rows are ragged
 * fixed-order reductions (kernels/segment.h) of per-row terms [n, 3]:
 * (vterm_i, beta_i if noise else 0, 1 if noise else 0); no thread loops
 * over an event. Adding the zeros of non-noise rows changes no bit. */
GPUML_HD static inline void gpuml_k_oc_event_terms(const float *GPUML_RESTRICT beta, const int32_t *GPUML_RESTRICT truth,
                                                   const float *GPUML_RESTRICT vterm, int64_t i, float *t3)
{
    bool noise = truth[i] < 0;
    t3[0] = vterm[i];
    t3[1] = noise ? beta[i] : 0.0f;
    t3[2] = noise ? 1.0f : 0.0f;
}

/* stats [GPUML_OC_STATS] of an event of n rows from sums [3] of its terms
 * and its [K] condensation points. */
GPUML_HD static inline void gpuml_k_oc_event_finish(const float *GPUML_RESTRICT beta, const int64_t *GPUML_RESTRICT alpha,
                                                    int64_t nobj, int64_t n, float s_b, const double *sums,
                                                    float *stats)
{
    double lv = sums[0], ln = sums[1], lb = 0.0;
    int64_t nb = (int64_t)sums[2], kk = 0;
    for (int64_t k = 0; k < nobj; k++)
        if (alpha[k] >= 0) {
            lb += 1.0 - (double)beta[alpha[k]];
            kk++;
        }
    stats[GPUML_OC_N] = (float)n;
    stats[GPUML_OC_K] = (float)kk;
    stats[GPUML_OC_NB] = (float)nb;
    stats[GPUML_OC_LV] = n > 0 ? (float)(lv / (double)n) : 0.0f;
    stats[GPUML_OC_LB] = kk > 0 ? (float)(lb / (double)kk) : 0.0f;
    stats[GPUML_OC_LN] = nb > 0 ? (float)((double)s_b * ln / (double)nb) : 0.0f;
}

/* The loss total is a fixed-order reduction over events (kernels/reduce.h):
 * event b contributes terms [b, 4] = (L_V, L_b, L_n, 1) when non-empty,
 * zeros otherwise; the sums tot [4] give the means. ws of
 * gpuml_k_oc_total_ws_bytes(batch): terms, tot, then the reduction's own. */
GPUML_HD static inline void gpuml_k_oc_total_terms(const float *GPUML_RESTRICT stats, int64_t b, double *terms)
{
    const float *st = stats + b * GPUML_OC_STATS;
    bool ne = st[GPUML_OC_N] > 0.0f;
    terms[b * 4 + 0] = ne ? (double)st[GPUML_OC_LV] : 0.0;
    terms[b * 4 + 1] = ne ? (double)st[GPUML_OC_LB] : 0.0;
    terms[b * 4 + 2] = ne ? (double)st[GPUML_OC_LN] : 0.0;
    terms[b * 4 + 3] = ne ? 1.0 : 0.0;
}

static inline gpuml_k_rview gpuml_k_oc_total_view(int64_t batch)
{
    gpuml_k_rview v = {1, batch, 4, 0, 4};
    return v;
}

static inline size_t gpuml_k_oc_total_ws_bytes(int64_t batch)
{
    return ((size_t)batch * 4 * sizeof(double) + 255) / 256 * 256 + 256 +
           gpuml_k_reduce_ws_bytes(gpuml_k_oc_total_view(batch));
}

static inline gpuml_k_rjob gpuml_k_oc_total_job(int64_t batch, void *ws)
{
    size_t tb = ((size_t)batch * 4 * sizeof(double) + 255) / 256 * 256;
    gpuml_k_rjob j;
    memset(&j, 0, sizeof j);
    j.op = GPUML_REDUCE_SUM;
    j.v = gpuml_k_oc_total_view(batch);
    j.xd = (const double *)ws;
    j.out_d = (double *)((char *)ws + tb);
    j.ws = gpuml_k_reduce_ws_bytes(j.v) ? (char *)ws + tb + 256 : NULL;
    return j;
}

/* Loss and its three components (means over non-empty events) from tot. */
GPUML_HD static inline void gpuml_k_oc_finish(const double *GPUML_RESTRICT tot, float *loss, float *components)
{
    double inv = tot[3] > 0.0 ? 1.0 / tot[3] : 0.0;
    *loss = (float)((tot[0] + tot[1] + tot[2]) * inv);
    if (components)
        for (int c = 0; c < 3; c++)
            components[c] = (float)(tot[c] * inv);
}

/* Backward: upstream gradient / number of non-empty events (tot[3]). */
GPUML_HD static inline float gpuml_k_oc_scale(const double *GPUML_RESTRICT tot, const float *gloss)
{
    return tot[3] > 0.0 ? *gloss / (float)tot[3] : 0.0f;
}

/* Backward, stage 1: what each condensation point receives from every
 * vertex j of its event (before the 1/N_e and upstream scaling):
 * acc[k][0] = d L_V / d q_ak, acc[k][1 + c] = d L_V / d x_ak[c], summed
 * over the event's rows by the ragged fixed-order reduction
 * (kernels/segment.h) of these per-row terms: t [K, 1 + D] for row j,
 * alpha the event's [K] condensation points (absent object: zeros). */
GPUML_HD static inline void gpuml_k_oc_object_terms(const float *GPUML_RESTRICT beta, const float *GPUML_RESTRICT x,
                                                    const int32_t *GPUML_RESTRICT truth,
                                                    const int64_t *GPUML_RESTRICT alpha, int64_t nobj, int64_t d,
                                                    float q_min, int64_t j, float *t)
{
    float qj = gpuml_k_oc_q(beta[j], q_min);
    for (int64_t k = 0; k < nobj; k++) {
        float *o = t + k * (1 + d);
        int64_t a = alpha[k];
        if (a < 0) {
            for (int64_t c = 0; c <= d; c++)
                o[c] = 0.0f;
            continue;
        }
        float qa = gpuml_k_oc_q(beta[a], q_min);
        float d2 = gpuml_k_oc_dist2(x, d, j, a), dist = sqrtf(d2);
        bool same = truth[j] == k;
        for (int64_t c = 0; c < d; c++) {
            float diff = x[a * d + c] - x[j * d + c];
            if (same)
                o[1 + c] = qj * qa * 2.0f * diff;
            else
                o[1 + c] = dist < 1.0f && dist > 0.0f ? -qj * qa * diff / dist : 0.0f;
        }
        if (same)
            o[0] = qj * d2;
        else {
            float h = 1.0f - dist;
            o[0] = h > 0.0f ? qj * h : 0.0f;
        }
    }
}

/* Condensation points without a thread per object looping over its event
 * (CUDA): every member row i of object k offers the key
 *     ordered(beta_i) << 32 | (2^32 - 1 - (i - begin)),
 * and the largest key - the largest beta, the first row on ties - wins an
 * order-free atomic max; the first member row wins an atomic min. This is
 * gpuml_k_oc_alpha exactly: a NaN first member stays (nothing compares
 * greater), later NaNs never win, and -0 ties +0. */
GPUML_HD static inline uint64_t gpuml_k_oc_alpha_key(float beta, int64_t rel)
{
    if (beta != beta)
        return 0; /* below every real key (those are > 0): a NaN never wins the max */
    uint32_t u;
    float b = beta == 0.0f ? 0.0f : beta;
    memcpy(&u, &b, 4);
    u = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
    return ((uint64_t)u << 32) | (uint64_t)(0xFFFFFFFFu - (uint32_t)rel);
}

GPUML_HD static inline int64_t gpuml_k_oc_alpha_of(const float *GPUML_RESTRICT beta, uint64_t key, uint64_t first,
                                                  int64_t begin)
{
    if (first == UINT64_MAX)
        return -1;
    if (beta[first] != beta[first])
        return (int64_t)first;
    return begin + (int64_t)(0xFFFFFFFFu - (uint32_t)(key & 0xFFFFFFFFu));
}

/* One workspace for the forward and backward: the loss total's reduction
 * (gpuml_k_oc_total_ws_bytes), per-row terms [n, ncols] with ncols =
 * max(3, K (1 + D)), event sums [B, 3] in double, the ragged reduction's
 * partials, and the condensation-point keys [B K] and first rows [B K]. */
typedef struct gpuml_k_oc_ws {
    void *total;
    float *terms;
    double *sums;
    void *seg;
    uint64_t *akey, *afirst;
} gpuml_k_oc_ws;

static inline int64_t gpuml_k_oc_ncols(int64_t nobj, int64_t d) { return gpuml_k_max64(3, nobj * (1 + d)); }

static inline size_t gpuml_k_oc_ws_carve(void *base, int64_t n, int64_t batch, int64_t nobj, int64_t d,
                                         gpuml_k_oc_ws *w)
{
    int64_t nc = gpuml_k_oc_ncols(nobj, d);
    size_t sizes[6] = {gpuml_k_oc_total_ws_bytes(batch), (size_t)(n * nc) * 4, (size_t)(batch * 3) * 8,
                       gpuml_k_seg_ws_bytes(n, nc, batch), (size_t)(batch * nobj) * 8, (size_t)(batch * nobj) * 8};
    void **ptrs[6] = {&w->total, (void **)&w->terms, (void **)&w->sums, &w->seg, (void **)&w->akey,
                      (void **)&w->afirst};
    size_t off = 0;
    for (int i = 0; i < 6; i++) {
        *ptrs[i] = base ? (char *)base + off : NULL;
        off += (sizes[i] + 255) / 256 * 256;
    }
    return off;
}

static inline size_t gpuml_k_oc_ws_bytes(int64_t n, int64_t batch, int64_t nobj, int64_t d)
{
    gpuml_k_oc_ws w;
    return gpuml_k_oc_ws_carve(NULL, n, batch, nobj, d, &w);
}

/* The ragged reduction of terms [n, ncols] over the events into out. */
static inline gpuml_k_seg gpuml_k_oc_seg(const gpuml_k_oc_ws *w, const int64_t *row_splits, int64_t n, int64_t batch,
                                         int64_t ncols, float *out, double *out_d)
{
    gpuml_k_seg j;
    memset(&j, 0, sizeof j);
    j.op = GPUML_REDUCE_SUM, j.x = w->terms, j.nrows = n, j.ncols = ncols, j.row_splits = row_splits;
    j.batch = batch, j.out = out, j.levels = gpuml_k_seg_levels(n), j.ws = w->seg, j.out_d = out_d;
    return j;
}

/* Backward, stage 2, for vertex i of event b: gbeta[i], gx[i, :]. scale =
 * upstream gradient / number of non-empty events. obj_acc: the event's
 * [K, 1 + D] stage-1 results. */
GPUML_HD static inline void gpuml_k_oc_vertex_grad(const float *GPUML_RESTRICT beta, const float *GPUML_RESTRICT x,
                                                   const int32_t *GPUML_RESTRICT truth,
                                                   const int64_t *GPUML_RESTRICT alpha, const float *GPUML_RESTRICT obj_acc,
                                                   const float *GPUML_RESTRICT stats, int64_t nobj, int64_t d, float q_min,
                                                   float s_b, float scale, int64_t i, float *gbeta, float *gx)
{
    float ne = stats[GPUML_OC_N], ke = stats[GPUML_OC_K], nbk = stats[GPUML_OC_NB];
    float qi = gpuml_k_oc_q(beta[i], q_min);
    float inv_n = 1.0f / ne;
    double vi = 0.0;
    for (int64_t c = 0; c < d; c++)
        gx[c] = 0.0f;
    for (int64_t k = 0; k < nobj; k++) {
        int64_t a = alpha[k];
        if (a < 0)
            continue;
        float qa = gpuml_k_oc_q(beta[a], q_min);
        float d2 = gpuml_k_oc_dist2(x, d, i, a);
        if (truth[i] == k) {
            vi += (double)(qa * d2);
            for (int64_t c = 0; c < d; c++)
                gx[c] += qi * qa * 2.0f * (x[i * d + c] - x[a * d + c]);
        } else {
            float dist = sqrtf(d2);
            if (dist < 1.0f) {
                vi += (double)(qa * (1.0f - dist));
                if (dist > 0.0f)
                    for (int64_t c = 0; c < d; c++)
                        gx[c] -= qi * qa * (x[i * d + c] - x[a * d + c]) / dist;
            }
        }
    }
    float dqi = gpuml_k_oc_dq(beta[i]);
    float gb = dqi * (float)vi * inv_n;
    if (truth[i] < 0 && nbk > 0.0f)
        gb += s_b / nbk;
    int64_t t = truth[i];
    if (t >= 0 && t < nobj && alpha[t] == i) { /* i is its object's condensation point */
        const float *acc = obj_acc + t * (1 + d);
        gb += dqi * acc[0] * inv_n - 1.0f / ke;
        for (int64_t c = 0; c < d; c++)
            gx[c] += acc[1 + c];
    }
    *gbeta = scale * gb;
    for (int64_t c = 0; c < d; c++)
        gx[c] *= scale * inv_n;
}

#endif
