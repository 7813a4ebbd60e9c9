/* CPU driver for kernels/reduce.h. */
#include "../kernels.h"
#include "../reduce.h"

gpuml_status gpuml_cpu_reduce(const gpuml_kctx *k, gpuml_k_rjob j)
{
    int nt = k->nthreads;
    if (j.v.outer * j.v.inner == 0)
        return GPUML_OK;
    gpuml_k_rpart src = {NULL, NULL, NULL};
    int64_t len = j.v.len;
    for (int level = 0;; level++) {
        int64_t nch = gpuml_k_rchunks(len), n = j.v.outer * nch * j.v.inner;
        gpuml_k_rpart dst = nch > 1 ? gpuml_k_rpart_of(&j, level & 1) : src;
#pragma omp parallel for num_threads(nt) schedule(static) if (n * gpuml_k_min64(len, GPUML_K_RCHUNK) > GPUML_PAR_GRAIN)
        for (int64_t e = 0; e < n; e++)
            gpuml_k_reduce_level_elem(&j, level, src, dst, len, nch, e);
        if (nch == 1)
            return GPUML_OK;
        src = dst;
        len = nch;
    }
}

gpuml_status gpuml_cpu_reduce_grad(const gpuml_kctx *k, int op, const float *gout, const int64_t *arg,
                                   int64_t outer, int64_t len, int64_t inner, float *gx)
{
    int nt = k->nthreads;
    int64_t n = outer * len * inner;
#pragma omp parallel for num_threads(nt) schedule(static) if (n > GPUML_PAR_GRAIN)
    for (int64_t e = 0; e < n; e++) {
        int64_t i = e % inner, l = (e / inner) % len, o = e / (inner * len);
        int64_t j = o * inner + i;
        float g = gout[j];
        switch (op) {
        case GPUML_REDUCE_SUM: gx[e] = g; break;
        case GPUML_REDUCE_MEAN: gx[e] = g / (float)len; break;
        default: gx[e] = arg[j] == l ? g : 0.0f; break;
        }
    }
    return GPUML_OK;
}

gpuml_status gpuml_cpu_softmax(const gpuml_kctx *k, const float *x, float *y, int64_t rows, int64_t n, int take_log)
{
    int nt = k->nthreads;
#pragma omp parallel for num_threads(nt) schedule(static) if (rows * n > GPUML_PAR_GRAIN)
    for (int64_t r = 0; r < rows; r++)
        gpuml_k_softmax_row(x + r * n, y + r * n, n, take_log);
    return GPUML_OK;
}

gpuml_status gpuml_cpu_softmax_grad(const gpuml_kctx *k, const float *y, const float *gy, float *gx, int64_t rows,
                                    int64_t n, int take_log)
{
    int nt = k->nthreads;
#pragma omp parallel for num_threads(nt) schedule(static) if (rows * n > GPUML_PAR_GRAIN)
    for (int64_t r = 0; r < rows; r++)
        gpuml_k_softmax_row_grad(y + r * n, gy + r * n, gx + r * n, n, take_log);
    return GPUML_OK;
}
