/* CPU driver for kernels/neighbour.h. */
#include "../kernels.h"
#include "../neighbour.h"
#include "parallel.h"

typedef struct nb_args {
    int op, first;
    const float *edges, *gout;
    const int32_t *idx, *am_in;
    int64_t n, kk, C;
    float *out;
    int32_t *am;
    uint8_t *mask;
} nb_args;

GPUML_KRANGE(reduce_range, nb_args)
{
    for (int64_t i = begin; i < end; i++)
        gpuml_k_neighbour_reduce_row(a->op, a->edges, a->idx, a->n, a->kk, a->first, a->C, i, a->out, a->am);
}

GPUML_KRANGE(grad_range, nb_args)
{
    for (int64_t i = begin; i < end; i++)
        gpuml_k_neighbour_grad_row(a->op, a->gout, a->am_in, a->idx, a->n, a->kk, a->first, a->C, i, a->out);
}

GPUML_KRANGE(mask_range, nb_args)
{
    for (int64_t i = begin; i < end; i++)
        for (int64_t t = 0; t < a->kk - a->first; t++)
            gpuml_k_edge_mask_elem(a->idx, a->n, a->kk, a->first, i, t, a->mask);
}

gpuml_status gpuml_cpu_neighbour_reduce(const gpuml_kctx *k, int op, const float *edges, const int32_t *idx, int64_t n,
                                        int64_t kk, int first, int64_t C, float *out, int32_t *am)
{
    nb_args a = {0};
    a.op = op, a.edges = edges, a.idx = idx, a.n = n, a.kk = kk, a.first = first, a.C = C, a.out = out, a.am = am;
    gpuml_kfor(k, n, n * kk * C, 0, reduce_range, &a);
    return GPUML_OK;
}

gpuml_status gpuml_cpu_neighbour_grad(const gpuml_kctx *k, int op, const float *gout, const int32_t *am,
                                      const int32_t *idx, int64_t n, int64_t kk, int first, int64_t C, float *gedges)
{
    nb_args a = {0};
    a.op = op, a.gout = gout, a.am_in = am, a.idx = idx, a.n = n, a.kk = kk, a.first = first, a.C = C, a.out = gedges;
    gpuml_kfor(k, n, n * kk * C, 0, grad_range, &a);
    return GPUML_OK;
}

gpuml_status gpuml_cpu_edge_mask(const gpuml_kctx *k, const int32_t *idx, int64_t n, int64_t kk, int first,
                                 uint8_t *mask)
{
    nb_args a = {0};
    a.idx = idx, a.n = n, a.kk = kk, a.first = first, a.mask = mask;
    gpuml_kfor(k, n, n * (kk - first), 0, mask_range, &a);
    return GPUML_OK;
}
