/* CPU driver for kernels/cast.h. */
#include "../cast.h"
#include "../kernels.h"

gpuml_status gpuml_cpu_cast(const gpuml_kctx *k, int64_t n, const void *x, int xt, void *y, int yt)
{
    int nt = k->nthreads;
#pragma omp parallel for num_threads(nt) schedule(static) if (n > GPUML_PAR_GRAIN)
    for (int64_t i = 0; i < n; i++)
        gpuml_k_cast_one(x, xt, y, yt, i);
    return GPUML_OK;
}

gpuml_status gpuml_cpu_fill(const gpuml_kctx *k, int64_t n, void *y, int yt, double value)
{
    int nt = k->nthreads;
#pragma omp parallel for num_threads(nt) schedule(static) if (n > GPUML_PAR_GRAIN)
    for (int64_t i = 0; i < n; i++)
        gpuml_k_store_f64(y, yt, i, value);
    return GPUML_OK;
}
