/* CPU driver for kernels/condensation.h. */
#include "../condensation.h"
#include "../kernels.h"
#include "../segment.h"
#include "parallel.h"

/* The arguments of every loop below. */
typedef struct oc_args {
    const float *beta, *x, *vterm_in, *stats_in;
    const int32_t *truth;
    const int64_t *row_splits, *alpha_in;
    int64_t batch, nobj, n, d;
    float q_min, s_b, scale;
    int64_t *alpha;
    float *vterm, *stats, *obj_acc, *gbeta, *gx;
    float *terms;       /* [n, ncols] per-row terms of the ragged sums */
    const double *sums; /* [batch, 3] event sums                       */
    int64_t ncols;
} oc_args;

GPUML_KRANGE(alpha_range, oc_args)
{
    for (int64_t e = begin; e < end; e++) {
        int64_t b = e / a->nobj, rb, re;
        int bad = 0;
        gpuml_k_segment(a->row_splits, b, a->n, &rb, &re, &bad);
        a->alpha[e] = gpuml_k_oc_alpha(a->beta, a->truth, rb, re, e - b * a->nobj);
    }
}

GPUML_KRANGE(vertex_range, oc_args)
{
    for (int64_t i = begin; i < end; i++) {
        int64_t b = gpuml_k_event_of_row(a->row_splits, a->batch, i);
        a->vterm[i] = gpuml_k_oc_vertex(a->beta, a->x, a->truth, a->alpha + b * a->nobj, a->nobj, a->d, a->q_min, i);
    }
}

GPUML_KRANGE(event_terms_range, oc_args)
{
    for (int64_t i = begin; i < end; i++)
        gpuml_k_oc_event_terms(a->beta, a->truth, a->vterm, i, a->terms + i * 3);
}

GPUML_KRANGE(event_range, oc_args)
{
    for (int64_t b = begin; b < end; b++) {
        int64_t rb, re;
        int bad = 0;
        gpuml_k_segment(a->row_splits, b, a->n, &rb, &re, &bad);
        gpuml_k_oc_event_finish(a->beta, a->alpha + b * a->nobj, a->nobj, re - rb, a->s_b, a->sums + b * 3,
                                a->stats + b * GPUML_OC_STATS);
    }
}

GPUML_KRANGE(object_terms_range, oc_args)
{
    for (int64_t i = begin; i < end; i++) {
        int64_t b = gpuml_k_event_of_row(a->row_splits, a->batch, i);
        gpuml_k_oc_object_terms(a->beta, a->x, a->truth, a->alpha_in + b * a->nobj, a->nobj, a->d, a->q_min, i,
                                a->terms + i * a->ncols);
    }
}

GPUML_KRANGE(vertex_grad_range, oc_args)
{
    for (int64_t i = begin; i < end; i++) {
        int64_t b = gpuml_k_event_of_row(a->row_splits, a->batch, i);
        gpuml_k_oc_vertex_grad(a->beta, a->x, a->truth, a->alpha_in + b * a->nobj, a->obj_acc + b * a->nobj * (1 + a->d),
                               a->stats_in + b * GPUML_OC_STATS, a->nobj, a->d, a->q_min, a->s_b, a->scale, i,
                               a->gbeta + i, a->gx + i * a->d);
    }
}

typedef struct oc_terms_args {
    const float *stats;
    double *terms;
} oc_terms_args;

GPUML_KRANGE(terms_range, oc_terms_args)
{
    for (int64_t b = begin; b < end; b++)
        gpuml_k_oc_total_terms(a->stats, b, a->terms);
}

/* The per-event totals (L_V, L_b, L_n, non-empty) summed by the
 * fixed-order reduction, as the CUDA launcher does: *j holds the sums. */
static gpuml_status oc_total(const gpuml_kctx *k, const float *stats, int64_t batch, void *ws, gpuml_k_rjob *j)
{
    *j = gpuml_k_oc_total_job(batch, ws);
    oc_terms_args t = {stats, (double *)ws};
    gpuml_kfor(k, batch, batch, 0, terms_range, &t);
    return gpuml_cpu_reduce(k, *j);
}

gpuml_status gpuml_cpu_oc_forward(const gpuml_kctx *k, const float *beta, const float *x, const int32_t *truth,
                                  const int64_t *row_splits, int64_t batch, int64_t nobj, int64_t n, int64_t d,
                                  float q_min, float s_b, int64_t *alpha, float *vterm, float *stats, float *out,
                                  void *ws)
{
    oc_args a = {0};
    a.beta = beta, a.x = x, a.truth = truth, a.row_splits = row_splits, a.batch = batch, a.nobj = nobj, a.n = n;
    a.d = d, a.q_min = q_min, a.s_b = s_b, a.alpha = alpha, a.vterm = vterm, a.stats = stats;
    int64_t work = n * (nobj + 1);
    gpuml_k_oc_ws w;
    gpuml_k_oc_ws_carve(ws, n, batch, nobj, d, &w);
    a.terms = w.terms, a.sums = w.sums;
    gpuml_kfor(k, batch * nobj, work, 0, alpha_range, &a);
    gpuml_kfor(k, n, work, 0, vertex_range, &a);
    gpuml_kfor(k, n, n, 0, event_terms_range, &a);
    gpuml_status st = gpuml_cpu_segment_reduce(k, gpuml_k_oc_seg(&w, row_splits, n, batch, 3, NULL, w.sums));
    if (st != GPUML_OK)
        return st;
    gpuml_kfor(k, batch, batch * (nobj + 1), 0, event_range, &a);
    gpuml_k_rjob j;
    st = oc_total(k, stats, batch, w.total, &j);
    if (st != GPUML_OK)
        return st;
    gpuml_k_oc_finish(j.out_d, out, out + 1);
    return GPUML_OK;
}

gpuml_status gpuml_cpu_oc_backward(const gpuml_kctx *k, const float *beta, const float *x, const int32_t *truth,
                                   const int64_t *row_splits, int64_t batch, int64_t nobj, int64_t n, int64_t d,
                                   float q_min, float s_b, const int64_t *alpha, const float *stats, const float *gloss,
                                   float *obj_acc, float *gbeta, float *gx, void *ws)
{
    oc_args a = {0};
    a.beta = beta, a.x = x, a.truth = truth, a.row_splits = row_splits, a.batch = batch, a.nobj = nobj, a.n = n;
    a.d = d, a.q_min = q_min, a.s_b = s_b, a.alpha_in = alpha, a.stats_in = stats, a.obj_acc = obj_acc;
    a.gbeta = gbeta, a.gx = gx;
    int64_t work = n * (nobj + 1) * (d + 1);
    gpuml_k_oc_ws w;
    gpuml_k_oc_ws_carve(ws, n, batch, nobj, d, &w);
    a.terms = w.terms, a.ncols = nobj * (1 + d);
    if (a.ncols > 0) {
        gpuml_kfor(k, n, work, 0, object_terms_range, &a);
        gpuml_status st = gpuml_cpu_segment_reduce(k, gpuml_k_oc_seg(&w, row_splits, n, batch, a.ncols, obj_acc, NULL));
        if (st != GPUML_OK)
            return st;
    }
    gpuml_k_rjob j;
    gpuml_status st = oc_total(k, stats, batch, w.total, &j);
    if (st != GPUML_OK)
        return st;
    a.scale = gpuml_k_oc_scale(j.out_d, gloss);
    gpuml_kfor(k, n, work, 0, vertex_grad_range, &a);
    return GPUML_OK;
}
