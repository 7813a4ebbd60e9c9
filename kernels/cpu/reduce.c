/* CPU driver for kernels/reduce.h. */
#include "../kernels.h"
#include "../reduce.h"
#include "parallel.h"

typedef struct reduce_args {
    int op;
    const float *x, *gout;
    int64_t len, inner;
    float *out;
    int64_t *arg;
    const int64_t *arg_in;
} reduce_args;

GPUML_KRANGE(reduce_range, reduce_args)
{
    for (int64_t j = begin; j < end; j++) {
        int64_t o = j / a->inner, i = j - o * a->inner;
        gpuml_k_reduce_one(a->op, a->x + o * a->len * a->inner + i, a->len, a->inner, a->out + j,
                           a->arg ? a->arg + j : NULL);
    }
}

GPUML_KRANGE(reduce_grad_range, reduce_args)
{
    int64_t inner = a->inner, len = a->len;
    for (int64_t e = begin; e < end; e++) {
        int64_t i = e % inner, l = (e / inner) % len, o = e / (inner * len);
        int64_t j = o * inner + i;
        float g = a->gout[j];
        switch (a->op) {
        case GPUML_REDUCE_SUM: a->out[e] = g; break;
        case GPUML_REDUCE_MEAN: a->out[e] = g / (float)len; break;
        default: a->out[e] = a->arg_in[j] == l ? g : 0.0f; break;
        }
    }
}

gpuml_status gpuml_cpu_reduce(const gpuml_kctx *k, int op, const float *x, int64_t outer, int64_t len,
                              int64_t inner, float *out, int64_t *arg)
{
    int64_t nout = outer * inner;
    reduce_args a = {op, x, NULL, len, inner, out, arg, NULL};
    gpuml_kfor(k, nout, nout * len, 0, reduce_range, &a);
    return GPUML_OK;
}

gpuml_status gpuml_cpu_reduce_grad(const gpuml_kctx *k, int op, const float *gout, const int64_t *arg,
                                   int64_t outer, int64_t len, int64_t inner, float *gx)
{
    int64_t n = outer * len * inner;
    reduce_args a = {op, NULL, gout, len, inner, gx, NULL, arg};
    gpuml_kfor(k, n, n, 0, reduce_grad_range, &a);
    return GPUML_OK;
}

typedef struct softmax_args {
    const float *x, *y, *gy;
    float *out;
    int64_t n;
    int take_log;
} softmax_args;

GPUML_KRANGE(softmax_range, softmax_args)
{
    for (int64_t r = begin; r < end; r++)
        gpuml_k_softmax_row(a->x + r * a->n, a->out + r * a->n, a->n, a->take_log);
}

GPUML_KRANGE(softmax_grad_range, softmax_args)
{
    for (int64_t r = begin; r < end; r++)
        gpuml_k_softmax_row_grad(a->y + r * a->n, a->gy + r * a->n, a->out + r * a->n, a->n, a->take_log);
}

gpuml_status gpuml_cpu_softmax(const gpuml_kctx *k, const float *x, float *y, int64_t rows, int64_t n, int take_log)
{
    softmax_args a = {x, NULL, NULL, y, n, take_log};
    gpuml_kfor(k, rows, rows * n, 0, softmax_range, &a);
    return GPUML_OK;
}

gpuml_status gpuml_cpu_softmax_grad(const gpuml_kctx *k, const float *y, const float *gy, float *gx, int64_t rows,
                                    int64_t n, int take_log)
{
    softmax_args a = {NULL, y, gy, gx, n, take_log};
    gpuml_kfor(k, rows, rows * n, 0, softmax_grad_range, &a);
    return GPUML_OK;
}
