/* CPU driver for kernels/condensation.h. */
#include "../condensation.h"
#include "../kernels.h"
#include "../segment.h"

gpuml_status gpuml_cpu_oc_forward(const gpuml_kctx *k, const float *beta, const float *x, const int32_t *truth,
                                  const int64_t *row_splits, int64_t batch, int64_t nobj, int64_t n, int64_t d,
                                  float q_min, float s_b, int64_t *alpha, float *vterm, float *stats, float *out,
                                  void *total_ws)
{
    int nt = k->nthreads;
    int64_t work = n * (nobj + 1);
#pragma omp parallel for num_threads(nt) schedule(static) if (work > GPUML_PAR_GRAIN)
    for (int64_t e = 0; e < batch * nobj; e++) {
        int64_t b = e / nobj, begin, end;
        int bad = 0;
        gpuml_k_segment(row_splits, b, n, &begin, &end, &bad);
        alpha[e] = gpuml_k_oc_alpha(beta, truth, begin, end, e - b * nobj);
    }
#pragma omp parallel for num_threads(nt) schedule(static) if (work > GPUML_PAR_GRAIN)
    for (int64_t i = 0; i < n; i++) {
        int64_t b = gpuml_k_event_of_row(row_splits, batch, i);
        vterm[i] = gpuml_k_oc_vertex(beta, x, truth, alpha + b * nobj, nobj, d, q_min, i);
    }
#pragma omp parallel for num_threads(nt) schedule(static) if (work > GPUML_PAR_GRAIN)
    for (int64_t b = 0; b < batch; b++) {
        int64_t begin, end;
        int bad = 0;
        gpuml_k_segment(row_splits, b, n, &begin, &end, &bad);
        gpuml_k_oc_event(beta, truth, vterm, alpha + b * nobj, nobj, begin, end, s_b, stats + b * GPUML_OC_STATS);
    }
    gpuml_k_rjob j = gpuml_k_oc_total_job(batch, total_ws);
    for (int64_t b = 0; b < batch; b++)
        gpuml_k_oc_total_terms(stats, b, (double *)total_ws);
    gpuml_status st = gpuml_cpu_reduce(k, j);
    if (st != GPUML_OK)
        return st;
    gpuml_k_oc_finish(j.out_d, out, out + 1);
    return GPUML_OK;
}

gpuml_status gpuml_cpu_oc_backward(const gpuml_kctx *k, const float *beta, const float *x, const int32_t *truth,
                                   const int64_t *row_splits, int64_t batch, int64_t nobj, int64_t n, int64_t d,
                                   float q_min, float s_b, const int64_t *alpha, const float *stats, const float *gloss,
                                   float *obj_acc, float *gbeta, float *gx, void *total_ws)
{
    int nt = k->nthreads;
    int64_t work = n * (nobj + 1) * (d + 1);
#pragma omp parallel for num_threads(nt) schedule(static) if (work > GPUML_PAR_GRAIN)
    for (int64_t e = 0; e < batch * nobj; e++) {
        int64_t b = e / nobj, begin, end;
        int bad = 0;
        gpuml_k_segment(row_splits, b, n, &begin, &end, &bad);
        gpuml_k_oc_object_grad(beta, x, truth, alpha[e], e - b * nobj, begin, end, d, q_min, obj_acc + e * (1 + d));
    }
    gpuml_k_rjob j = gpuml_k_oc_total_job(batch, total_ws);
    for (int64_t b = 0; b < batch; b++)
        gpuml_k_oc_total_terms(stats, b, (double *)total_ws);
    gpuml_status st = gpuml_cpu_reduce(k, j);
    if (st != GPUML_OK)
        return st;
    float scale = gpuml_k_oc_scale(j.out_d, gloss);
#pragma omp parallel for num_threads(nt) schedule(static) if (work > GPUML_PAR_GRAIN)
    for (int64_t i = 0; i < n; i++) {
        int64_t b = gpuml_k_event_of_row(row_splits, batch, i);
        gpuml_k_oc_vertex_grad(beta, x, truth, alpha + b * nobj, obj_acc + b * nobj * (1 + d),
                               stats + b * GPUML_OC_STATS, nobj, d, q_min, s_b, scale, i, gbeta + i, gx + i * d);
    }
    return GPUML_OK;
}
