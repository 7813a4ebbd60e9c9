/* CPU driver for kernels/reduce.h. */
#include "../kernels.h"
#include "../reduce.h"
#include "parallel.h"

typedef struct reduce_args {
    int op;
    const float *gout;
    int64_t len, inner;
    float *out;
    const int64_t *arg_in;
} reduce_args;

GPUML_KRANGE(reduce_grad_range, reduce_args)
{
    for (int64_t e = begin; e < end; e++)
        a->out[e] = gpuml_k_reduce_grad_elem(a->op, a->gout, a->arg_in, a->len, a->inner, e);
}

/* One level of a fixed-order reduction (kernels/reduce.h): each element is
 * one chunk of at most GPUML_K_RCHUNK terms, independent of the others. */
typedef struct rlevel_args {
    const gpuml_k_rjob *j;
    int level;
    gpuml_k_rpart src, dst;
    int64_t len, nch;
} rlevel_args;

GPUML_KRANGE(rlevel_range, rlevel_args)
{
    for (int64_t e = begin; e < end; e++)
        gpuml_k_reduce_level_elem(a->j, a->level, a->src, a->dst, a->len, a->nch, e);
}

gpuml_status gpuml_cpu_reduce(const gpuml_kctx *k, gpuml_k_rjob j)
{
    if (j.v.outer * j.v.inner == 0)
        return GPUML_OK;
    gpuml_k_rpart src = {NULL, NULL, NULL};
    int64_t len = j.v.len;
    for (int level = 0;; level++) {
        int64_t nch = gpuml_k_rchunks(len), n = j.v.outer * nch * j.v.inner;
        gpuml_k_rpart dst = nch > 1 ? gpuml_k_rpart_of(&j, level & 1) : src;
        rlevel_args a = {&j, level, src, dst, len, nch};
        gpuml_kfor(k, n, n * gpuml_k_min64(len, GPUML_K_RCHUNK), 0, rlevel_range, &a);
        if (nch == 1)
            return GPUML_OK;
        src = dst;
        len = nch;
    }
}

gpuml_status gpuml_cpu_reduce_grad(const gpuml_kctx *k, int op, const float *gout, const int64_t *arg,
                                   int64_t outer, int64_t len, int64_t inner, float *gx)
{
    int64_t n = outer * len * inner;
    reduce_args a = {op, gout, len, inner, gx, arg};
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
