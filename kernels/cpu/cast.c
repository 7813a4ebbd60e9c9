/* CPU driver for kernels/cast.h. */
#include "../cast.h"
#include "../kernels.h"
#include "parallel.h"

typedef struct cast_args {
    const void *x;
    int xt;
    void *y;
    int yt;
    double value;
} cast_args;

GPUML_KRANGE(cast_range, cast_args)
{
    for (int64_t i = begin; i < end; i++)
        gpuml_k_cast_one(a->x, a->xt, a->y, a->yt, i);
}

GPUML_KRANGE(fill_range, cast_args)
{
    for (int64_t i = begin; i < end; i++)
        gpuml_k_store_f64(a->y, a->yt, i, a->value);
}

gpuml_status gpuml_cpu_cast(const gpuml_kctx *k, int64_t n, const void *x, int xt, void *y, int yt)
{
    cast_args a = {x, xt, y, yt, 0.0};
    gpuml_kfor(k, n, n, 0, cast_range, &a);
    return GPUML_OK;
}

gpuml_status gpuml_cpu_fill(const gpuml_kctx *k, int64_t n, void *y, int yt, double value)
{
    cast_args a = {NULL, 0, y, yt, value};
    gpuml_kfor(k, n, n, 0, fill_range, &a);
    return GPUML_OK;
}
