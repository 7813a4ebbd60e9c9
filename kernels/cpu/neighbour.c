/* CPU driver for kernels/neighbour.h. */
#include "../kernels.h"
#include "../neighbour.h"

gpuml_status gpuml_cpu_neighbour_reduce(const gpuml_kctx *k, int op, const float *edges, const int32_t *idx, int64_t n,
                                        int64_t kk, int first, int64_t C, float *out, int32_t *am)
{
    int nt = k->nthreads;
#pragma omp parallel for num_threads(nt) schedule(static) if (n * kk * C > GPUML_PAR_GRAIN)
    for (int64_t i = 0; i < n; i++)
        gpuml_k_neighbour_reduce_row(op, edges, idx, n, kk, first, C, i, out, am);
    return GPUML_OK;
}

gpuml_status gpuml_cpu_neighbour_grad(const gpuml_kctx *k, int op, const float *gout, const int32_t *am,
                                      const int32_t *idx, int64_t n, int64_t kk, int first, int64_t C, float *gedges)
{
    int nt = k->nthreads;
#pragma omp parallel for num_threads(nt) schedule(static) if (n * kk * C > GPUML_PAR_GRAIN)
    for (int64_t i = 0; i < n; i++)
        gpuml_k_neighbour_grad_row(op, gout, am, idx, n, kk, first, C, i, gedges);
    return GPUML_OK;
}

gpuml_status gpuml_cpu_edge_mask(const gpuml_kctx *k, const int32_t *idx, int64_t n, int64_t kk, int first,
                                 uint8_t *mask)
{
    int nt = k->nthreads;
    int64_t ke = kk - first;
#pragma omp parallel for num_threads(nt) schedule(static) if (n * ke > GPUML_PAR_GRAIN)
    for (int64_t i = 0; i < n; i++)
        for (int64_t t = 0; t < ke; t++)
            gpuml_k_edge_mask_elem(idx, n, kk, first, i, t, mask);
    return GPUML_OK;
}
