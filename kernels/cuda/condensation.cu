/* CUDA launcher for kernels/condensation.h: the same stages as the CPU
 * driver, one thread per (event, object), per vertex and per event. */
#include "../condensation.h"
#include "../kernels.h"
#include "../segment.h"
#include "launch.cuh"

static __global__ void oc_alpha_init_kernel(int64_t m, uint64_t *key, uint64_t *first)
{
    GPUML_GRID_STRIDE(e, m)
    {
        key[e] = 0;
        first[e] = UINT64_MAX;
    }
}

/* A thread per row: offers its key to its object's slot (order-free). */
static __global__ void oc_alpha_row_kernel(const float *beta, const int32_t *truth, const int64_t *row_splits,
                                           int64_t batch, int64_t nobj, int64_t n, uint64_t *key, uint64_t *first)
{
    GPUML_GRID_STRIDE(i, n)
    {
        int64_t t = truth[i];
        if (t < 0 || t >= nobj)
            continue;
        int64_t b = gpuml_k_event_of_row(row_splits, batch, i), begin, end;
        int bad = 0;
        gpuml_k_segment(row_splits, b, n, &begin, &end, &bad);
        if (i < begin || i >= end)
            continue;
        int64_t e = b * nobj + t;
        atomicMin((unsigned long long *)&first[e], (unsigned long long)i);
        atomicMax((unsigned long long *)&key[e], (unsigned long long)gpuml_k_oc_alpha_key(beta[i], i - begin));
    }
}

static __global__ void oc_alpha_kernel(const float *beta, const int64_t *row_splits, int64_t batch, int64_t nobj,
                                       int64_t n, const uint64_t *key, const uint64_t *first, int64_t *alpha,
                                       int *dev_error)
{
    GPUML_GRID_STRIDE(e, batch * nobj)
    {
        int64_t b = e / nobj, begin, end;
        int bad = 0;
        gpuml_k_segment(row_splits, b, n, &begin, &end, &bad);
        if (bad)
            *dev_error = GPUML_DEVERR_ROW_SPLITS;
        alpha[e] = gpuml_k_oc_alpha_of(beta, key[e], first[e], begin);
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

static __global__ void oc_event_terms_kernel(const float *beta, const int32_t *truth, const float *vterm, int64_t n,
                                             float *terms)
{
    GPUML_GRID_STRIDE(i, n) gpuml_k_oc_event_terms(beta, truth, vterm, i, terms + i * 3);
}

static __global__ void oc_event_kernel(const float *beta, const int64_t *row_splits, int64_t batch, int64_t nobj,
                                       int64_t n, float s_b, const int64_t *alpha, const double *sums, float *stats)
{
    GPUML_GRID_STRIDE(b, batch)
    {
        int64_t begin, end;
        int bad = 0;
        gpuml_k_segment(row_splits, b, n, &begin, &end, &bad);
        gpuml_k_oc_event_finish(beta, alpha + b * nobj, nobj, end - begin, s_b, sums + b * 3,
                                stats + b * GPUML_OC_STATS);
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

static __global__ void oc_object_terms_kernel(const float *beta, const float *x, const int32_t *truth,
                                              const int64_t *row_splits, int64_t batch, int64_t nobj, int64_t n,
                                              int64_t d, float q_min, const int64_t *alpha, float *terms)
{
    GPUML_GRID_STRIDE(i, n)
    {
        int64_t b = gpuml_k_event_of_row(row_splits, batch, i);
        gpuml_k_oc_object_terms(beta, x, truth, alpha + b * nobj, nobj, d, q_min, i, terms + i * nobj * (1 + d));
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

/* n < 2^32: the condensation-point keys hold a row offset in 32 bits. */
static gpuml_status oc_fits(const gpuml_kctx *k, int64_t n, const char *fn)
{
    if (n > (int64_t)UINT32_MAX)
        return gpuml_k_fail(k, GPUML_ERR_UNSUPPORTED, fn, "rows: the CUDA object condensation takes fewer than 2^32",
                            NULL, NULL, 1, n, 0);
    return GPUML_OK;
}

extern "C" gpuml_status gpuml_cuda_oc_forward(const gpuml_kctx *k, const float *beta, const float *x,
                                              const int32_t *truth, const int64_t *row_splits, int64_t batch,
                                              int64_t nobj, int64_t n, int64_t d, float q_min, float s_b,
                                              int64_t *alpha, float *vterm, float *stats, float *out, void *ws)
{
    static const char fn[] = "object_condensation";
    gpuml_status st = oc_fits(k, n, fn);
    if (st != GPUML_OK)
        return st;
    GPUML_CUDA_ENTER(k, fn);
    cudaStream_t s = gpuml_cuda_stream(k);
    gpuml_k_oc_ws w;
    gpuml_k_oc_ws_carve(ws, n, batch, nobj, d, &w);
    if (batch * nobj > 0) {
        GPUML_CUDA_LAUNCH(oc_alpha_init_kernel, gpuml_cuda_grid(batch * nobj), GPUML_CUDA_BLOCK, 0, s)(
            batch * nobj, w.akey, w.afirst);
        if (n > 0)
            GPUML_CUDA_LAUNCH(oc_alpha_row_kernel, gpuml_cuda_grid(n), GPUML_CUDA_BLOCK, 0, s)(
                beta, truth, row_splits, batch, nobj, n, w.akey, w.afirst);
        GPUML_CUDA_LAUNCH(oc_alpha_kernel, gpuml_cuda_grid(batch * nobj), GPUML_CUDA_BLOCK, 0, s)(
            beta, row_splits, batch, nobj, n, w.akey, w.afirst, alpha, k->dev_error);
    }
    if (n > 0) {
        GPUML_CUDA_LAUNCH(oc_vertex_kernel, gpuml_cuda_grid(n), GPUML_CUDA_BLOCK, 0, s)(beta, x, truth, row_splits,
                                                                                        batch, nobj, n, d, q_min,
                                                                                        alpha, vterm);
        GPUML_CUDA_LAUNCH(oc_event_terms_kernel, gpuml_cuda_grid(n), GPUML_CUDA_BLOCK, 0, s)(beta, truth, vterm, n,
                                                                                             w.terms);
    }
    st = gpuml_cuda_check(k, fn);
    if (st == GPUML_OK && batch > 0)
        st = gpuml_cuda_segment_reduce(k, gpuml_k_oc_seg(&w, row_splits, n, batch, 3, NULL, w.sums));
    if (st != GPUML_OK)
        return st;
    gpuml_k_rjob j = gpuml_k_oc_total_job(batch, w.total);
    if (batch > 0) {
        GPUML_CUDA_LAUNCH(oc_event_kernel, gpuml_cuda_grid(batch), GPUML_CUDA_BLOCK, 0, s)(
            beta, row_splits, batch, nobj, n, s_b, alpha, w.sums, stats);
        GPUML_CUDA_LAUNCH(oc_terms_kernel, gpuml_cuda_grid(batch), GPUML_CUDA_BLOCK, 0, s)(stats, batch,
                                                                                           (double *)w.total);
    }
    st = gpuml_cuda_check(k, fn);
    if (st == GPUML_OK)
        st = gpuml_cuda_reduce(k, j);
    if (st != GPUML_OK)
        return st;
    GPUML_CUDA_LAUNCH(oc_finish_kernel, 1, 1, 0, s)(j.out_d, out);
    return gpuml_cuda_check(k, fn);
}

extern "C" gpuml_status gpuml_cuda_oc_backward(const gpuml_kctx *k, const float *beta, const float *x,
                                               const int32_t *truth, const int64_t *row_splits, int64_t batch,
                                               int64_t nobj, int64_t n, int64_t d, float q_min, float s_b,
                                               const int64_t *alpha, const float *stats, const float *gloss,
                                               float *obj_acc, float *gbeta, float *gx, void *ws)
{
    static const char fn[] = "object_condensation_backward";
    gpuml_k_oc_ws w;
    gpuml_k_oc_ws_carve(ws, n, batch, nobj, d, &w);
    gpuml_k_rjob j = gpuml_k_oc_total_job(batch, w.total);
    GPUML_CUDA_ENTER(k, fn);
    cudaStream_t s = gpuml_cuda_stream(k);
    if (batch > 0)
        GPUML_CUDA_LAUNCH(oc_terms_kernel, gpuml_cuda_grid(batch), GPUML_CUDA_BLOCK, 0, s)(stats, batch,
                                                                                           (double *)w.total);
    gpuml_status st = gpuml_cuda_check(k, fn);
    if (st == GPUML_OK)
        st = gpuml_cuda_reduce(k, j);
    if (st != GPUML_OK)
        return st;
    int64_t nc = nobj * (1 + d);
    if (batch * nc > 0) {
        if (n > 0)
            GPUML_CUDA_LAUNCH(oc_object_terms_kernel, gpuml_cuda_grid(n), GPUML_CUDA_BLOCK, 0, s)(
                beta, x, truth, row_splits, batch, nobj, n, d, q_min, alpha, w.terms);
        st = gpuml_cuda_check(k, fn);
        if (st == GPUML_OK)
            st = gpuml_cuda_segment_reduce(k, gpuml_k_oc_seg(&w, row_splits, n, batch, nc, obj_acc, NULL));
        if (st != GPUML_OK)
            return st;
    }
    if (n > 0)
        GPUML_CUDA_LAUNCH(oc_vertex_grad_kernel, gpuml_cuda_grid(n), GPUML_CUDA_BLOCK, 0, s)(
            beta, x, truth, row_splits, batch, nobj, n, d, q_min, s_b, alpha, stats, gloss, j.out_d, obj_acc, gbeta, gx);
    return gpuml_cuda_check(k, fn);
}
