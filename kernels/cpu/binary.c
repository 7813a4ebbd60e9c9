/* CPU driver for kernels/binary.h: loops over rows of the (collapsed)
 * output's last dimension, so the common cases ([N,C] op [C], [N,C] op
 * [N,1], equal shapes) run without per-element index arithmetic. */
#include "../binary.h"
#include "../kernels.h"

static int64_t last_dim(const gpuml_k_bcast *bc) { return bc->ndim ? bc->shape[bc->ndim - 1] : 1; }

gpuml_status gpuml_cpu_binary(const gpuml_kctx *k, int op, gpuml_k_bcast bc, const float *a, const float *b,
                              float *out)
{
    int64_t w = last_dim(&bc), rows = 1;
    for (int d = 0; d + 1 < bc.ndim; d++)
        rows *= bc.shape[d];
    int64_t la = bc.ndim ? bc.sa[bc.ndim - 1] : 0, lb = bc.ndim ? bc.sb[bc.ndim - 1] : 0;
    int nt = k->nthreads;
#pragma omp parallel for num_threads(nt) schedule(static) if (rows * w > GPUML_PAR_GRAIN)
    for (int64_t r = 0; r < rows; r++) {
        int64_t oa, ob;
        gpuml_k_bcast_offsets(&bc, r * w, &oa, &ob);
        const float *pa = a + oa, *pb = b + ob;
        float *po = out + r * w;
        for (int64_t c = 0; c < w; c++)
            po[c] = gpuml_k_binary(op, pa[c * la], pb[c * lb]);
    }
    return GPUML_OK;
}

gpuml_status gpuml_cpu_binary_grad(const gpuml_kctx *k, int op, gpuml_k_bcast bc, const float *a, const float *b,
                                   const float *g, float *ga_full, float *gb_full)
{
    int64_t w = last_dim(&bc), rows = 1;
    for (int d = 0; d + 1 < bc.ndim; d++)
        rows *= bc.shape[d];
    int64_t la = bc.ndim ? bc.sa[bc.ndim - 1] : 0, lb = bc.ndim ? bc.sb[bc.ndim - 1] : 0;
    int nt = k->nthreads;
#pragma omp parallel for num_threads(nt) schedule(static) if (rows * w > GPUML_PAR_GRAIN)
    for (int64_t r = 0; r < rows; r++) {
        int64_t oa, ob;
        gpuml_k_bcast_offsets(&bc, r * w, &oa, &ob);
        for (int64_t c = 0; c < w; c++) {
            float ga, gb;
            int64_t o = r * w + c;
            gpuml_k_binary_grad(op, a[oa + c * la], b[ob + c * lb], g[o], &ga, &gb);
            if (ga_full)
                ga_full[o] = ga;
            if (gb_full)
                gb_full[o] = gb;
        }
    }
    return GPUML_OK;
}

gpuml_status gpuml_cpu_axpby(const gpuml_kctx *k, int64_t n, float alpha, const float *x, float beta, float *y)
{
    int nt = k->nthreads;
    if (beta == 0.0f) {
#pragma omp parallel for num_threads(nt) schedule(static) if (n > GPUML_PAR_GRAIN)
        for (int64_t i = 0; i < n; i++)
            y[i] = alpha * x[i];
    } else {
#pragma omp parallel for num_threads(nt) schedule(static) if (n > GPUML_PAR_GRAIN)
        for (int64_t i = 0; i < n; i++)
            y[i] = fmaf(alpha, x[i], beta * y[i]);
    }
    return GPUML_OK;
}

gpuml_status gpuml_cpu_affine(const gpuml_kctx *k, int64_t n, float a, const float *x, float b, float *y)
{
    int nt = k->nthreads;
#pragma omp parallel for num_threads(nt) schedule(static) if (n > GPUML_PAR_GRAIN)
    for (int64_t i = 0; i < n; i++)
        y[i] = fmaf(a, x[i], b);
    return GPUML_OK;
}
