/* CUDA launcher for kernels/condensation.h: the same stages as the CPU
 * driver, one thread per (event, object), per vertex and per event. */
#include "../condensation.h"
#include "../kernels.h"
#include "../segment.h"
#include "launch.cuh"

static __global__ void oc_alpha_kernel(const float *beta, const int32_t *truth, const int64_t *row_splits,
                                       int64_t batch, int64_t nobj, int64_t n, int64_t *alpha, int *dev_error)
{
    GPUML_GRID_STRIDE(e, batch * nobj)
    {
        int64_t b = e / nobj, begin, end;
        int bad = 0;
        gpuml_k_segment(row_splits, b, n, &begin, &end, &bad);
        if (bad)
            *dev_error = GPUML_DEVERR_ROW_SPLITS;
        alpha[e] = gpuml_k_oc_alpha(beta, truth, begin, end, e - b * nobj);
    }
}

static __global__ void oc_vertex_kernel(const float *beta, const float *x, const int32_t *truth,
                                        const int64_t *row_splits, int64_t batch, int64_t nobj, int64_t n, int64_t d,
                                        float q_min, const int64_t *alpha, float *vterm)
{
    GPUML_GRID_STRIDE(i, n)
    {
        int64_t b = gpuml_k_event_of_row(row_splits, batch, i);
        vterm[i] = gpuml_k_oc_vertex(beta, x, truth, alpha + b * nobj, nobj, d, q_min, i);
    }
}

static __global__ void oc_event_kernel(const float *beta, const int32_t *truth, const int64_t *row_splits,
                                       int64_t batch, int64_t nobj, int64_t n, float s_b, const float *vterm,
                                       const int64_t *alpha, float *stats)
{
    GPUML_GRID_STRIDE(b, batch)
    {
        int64_t begin, end;
        int bad = 0;
        gpuml_k_segment(row_splits, b, n, &begin, &end, &bad);
        gpuml_k_oc_event(beta, truth, vterm, alpha + b * nobj, nobj, begin, end, s_b, stats + b * GPUML_OC_STATS);
    }
}

static __global__ void oc_terms_kernel(const float *stats, int64_t batch, double *terms)
{
    GPUML_GRID_STRIDE(b, batch) gpuml_k_oc_total_terms(stats, b, terms);
}

/* O(1): the event sums are already reduced. */
static __global__ void oc_finish_kernel(const double *tot, float *out)
{
    if (blockIdx.x == 0 && threadIdx.x == 0)
        gpuml_k_oc_finish(tot, out, out + 1);
}

static __global__ void oc_object_grad_kernel(const float *beta, const float *x, const int32_t *truth,
                                             const int64_t *row_splits, int64_t batch, int64_t nobj, int64_t n,
                                             int64_t d, float q_min, const int64_t *alpha, float *obj_acc)
{
    GPUML_GRID_STRIDE(e, batch * nobj)
    {
        int64_t b = e / nobj, begin, end;
        int bad = 0;
        gpuml_k_segment(row_splits, b, n, &begin, &end, &bad);
        gpuml_k_oc_object_grad(beta, x, truth, alpha[e], e - b * nobj, begin, end, d, q_min, obj_acc + e * (1 + d));
    }
}

static __global__ void oc_vertex_grad_kernel(const float *beta, const float *x, const int32_t *truth,
                                             const int64_t *row_splits, int64_t batch, int64_t nobj, int64_t n,
                                             int64_t d, float q_min, float s_b, const int64_t *alpha,
                                             const float *stats, const float *gloss, const double *tot,
                                             const float *obj_acc, float *gbeta, float *gx)
{
    float scale = gpuml_k_oc_scale(tot, gloss); /* the count of non-empty events, reduced before */
    GPUML_GRID_STRIDE(i, n)
    {
        int64_t b = gpuml_k_event_of_row(row_splits, batch, i);
        gpuml_k_oc_vertex_grad(beta, x, truth, alpha + b * nobj, obj_acc + b * nobj * (1 + d),
                               stats + b * GPUML_OC_STATS, nobj, d, q_min, s_b, scale, i, gbeta + i, gx + i * d);
    }
}

extern "C" gpuml_status gpuml_cuda_oc_forward(const gpuml_kctx *k, const float *beta, const float *x,
                                              const int32_t *truth, const int64_t *row_splits, int64_t batch,
                                              int64_t nobj, int64_t n, int64_t d, float q_min, float s_b,
                                              int64_t *alpha, float *vterm, float *stats, float *out,
                                              void *total_ws)
{
    GPUML_CUDA_ENTER(k, "object_condensation");
    cudaStream_t s = gpuml_cuda_stream(k);
    if (batch * nobj > 0)
        GPUML_CUDA_LAUNCH(oc_alpha_kernel, gpuml_cuda_grid(batch * nobj), GPUML_CUDA_BLOCK, 0, s)(beta, truth, row_splits, batch, nobj,
                                                                                  n, alpha, k->dev_error);
    if (n > 0)
        GPUML_CUDA_LAUNCH(oc_vertex_kernel, gpuml_cuda_grid(n), GPUML_CUDA_BLOCK, 0, s)(beta, x, truth, row_splits, batch, nobj, n, d,
                                                                        q_min, alpha, vterm);
    if (batch > 0)
        GPUML_CUDA_LAUNCH(oc_event_kernel, gpuml_cuda_grid(batch), GPUML_CUDA_BLOCK, 0, s)(beta, truth, row_splits, batch, nobj, n,
                                                                           s_b, vterm, alpha, stats);
    gpuml_k_rjob j = gpuml_k_oc_total_job(batch, total_ws);
    if (batch > 0)
        GPUML_CUDA_LAUNCH(oc_terms_kernel, gpuml_cuda_grid(batch), GPUML_CUDA_BLOCK, 0, s)(stats, batch,
                                                                                           (double *)total_ws);
    gpuml_status st = gpuml_cuda_check("object_condensation");
    if (st == GPUML_OK)
        st = gpuml_cuda_reduce(k, j);
    if (st != GPUML_OK)
        return st;
    GPUML_CUDA_LAUNCH(oc_finish_kernel, 1, 1, 0, s)(j.out_d, out);
    return gpuml_cuda_check("object_condensation");
}

extern "C" gpuml_status gpuml_cuda_oc_backward(const gpuml_kctx *k, const float *beta, const float *x,
                                               const int32_t *truth, const int64_t *row_splits, int64_t batch,
                                               int64_t nobj, int64_t n, int64_t d, float q_min, float s_b,
                                               const int64_t *alpha, const float *stats, const float *gloss,
                                               float *obj_acc, float *gbeta, float *gx, void *total_ws)
{
    static const char fn[] = "object_condensation_backward";
    gpuml_k_rjob j = gpuml_k_oc_total_job(batch, total_ws);
    GPUML_CUDA_ENTER(k, fn);
    cudaStream_t s = gpuml_cuda_stream(k);
    if (batch > 0)
        GPUML_CUDA_LAUNCH(oc_terms_kernel, gpuml_cuda_grid(batch), GPUML_CUDA_BLOCK, 0, s)(stats, batch,
                                                                                           (double *)total_ws);
    gpuml_status st = gpuml_cuda_check(fn);
    if (st == GPUML_OK)
        st = gpuml_cuda_reduce(k, j);
    if (st != GPUML_OK)
        return st;
    if (batch * nobj > 0)
        GPUML_CUDA_LAUNCH(oc_object_grad_kernel, gpuml_cuda_grid(batch * nobj), GPUML_CUDA_BLOCK, 0, s)(
            beta, x, truth, row_splits, batch, nobj, n, d, q_min, alpha, obj_acc);
    if (n > 0)
        GPUML_CUDA_LAUNCH(oc_vertex_grad_kernel, gpuml_cuda_grid(n), GPUML_CUDA_BLOCK, 0, s)(
            beta, x, truth, row_splits, batch, nobj, n, d, q_min, s_b, alpha, stats, gloss, j.out_d, obj_acc, gbeta, gx);
    return gpuml_cuda_check(fn);
}
