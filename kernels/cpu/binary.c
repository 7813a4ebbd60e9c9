/* CPU driver for kernels/binary.h: loops over rows of the (collapsed)
 * output's last dimension, so the common cases ([N,C] op [C], [N,C] op
 * [N,1], equal shapes) run without per-element index arithmetic. */
#include "../binary.h"
#include "../kernels.h"
#include "parallel.h"

static int64_t last_dim(const gpuml_k_bcast *bc) { return bc->ndim ? bc->shape[bc->ndim - 1] : 1; }

typedef struct binary_args {
    int op;
    const gpuml_k_bcast *bc;
    int64_t w, la, lb;
    const float *a, *b, *g;
    float *out, *ga_full, *gb_full;
} binary_args;

GPUML_KRANGE(binary_range, binary_args)
{
    int64_t w = a->w;
    for (int64_t r = begin; r < end; r++) {
        int64_t oa, ob;
        gpuml_k_bcast_offsets(a->bc, r * w, &oa, &ob);
        const float *pa = a->a + oa, *pb = a->b + ob;
        float *po = a->out + r * w;
        for (int64_t c = 0; c < w; c++)
            po[c] = gpuml_k_binary(a->op, pa[c * a->la], pb[c * a->lb]);
    }
}

GPUML_KRANGE(binary_grad_range, binary_args)
{
    int64_t w = a->w;
    for (int64_t r = begin; r < end; r++) {
        int64_t oa, ob;
        gpuml_k_bcast_offsets(a->bc, r * w, &oa, &ob);
        for (int64_t c = 0; c < w; c++) {
            float ga, gb;
            int64_t o = r * w + c;
            gpuml_k_binary_grad(a->op, a->a[oa + c * a->la], a->b[ob + c * a->lb], a->g[o], &ga, &gb);
            if (a->ga_full)
                a->ga_full[o] = ga;
            if (a->gb_full)
                a->gb_full[o] = gb;
        }
    }
}

static binary_args binary_setup(int op, const gpuml_k_bcast *bc, int64_t *rows)
{
    binary_args s = {0};
    s.op = op;
    s.bc = bc;
    s.w = last_dim(bc);
    *rows = 1;
    for (int d = 0; d + 1 < bc->ndim; d++)
        *rows *= bc->shape[d];
    s.la = bc->ndim ? bc->sa[bc->ndim - 1] : 0;
    s.lb = bc->ndim ? bc->sb[bc->ndim - 1] : 0;
    return s;
}

gpuml_status gpuml_cpu_binary(const gpuml_kctx *k, int op, gpuml_k_bcast bc, const float *a, const float *b,
                              float *out)
{
    int64_t rows;
    binary_args s = binary_setup(op, &bc, &rows);
    s.a = a, s.b = b, s.out = out;
    gpuml_kfor(k, rows, rows * s.w, 0, binary_range, &s);
    return GPUML_OK;
}

gpuml_status gpuml_cpu_binary_grad(const gpuml_kctx *k, int op, gpuml_k_bcast bc, const float *a, const float *b,
                                   const float *g, float *ga_full, float *gb_full)
{
    int64_t rows;
    binary_args s = binary_setup(op, &bc, &rows);
    s.a = a, s.b = b, s.g = g, s.ga_full = ga_full, s.gb_full = gb_full;
    gpuml_kfor(k, rows, rows * s.w, 0, binary_grad_range, &s);
    return GPUML_OK;
}

typedef struct axpby_args {
    float alpha, beta;
    const float *x;
    float *y;
} axpby_args;

/* beta == 0 gets its own loop: y is not read, and the body folds to a
 * product. */
GPUML_KRANGE(scale_range, axpby_args)
{
    for (int64_t i = begin; i < end; i++)
        a->y[i] = gpuml_k_axpby(a->alpha, a->x[i], 0.0f, 0.0f);
}

GPUML_KRANGE(axpby_range, axpby_args)
{
    for (int64_t i = begin; i < end; i++)
        a->y[i] = gpuml_k_axpby(a->alpha, a->x[i], a->beta, a->y[i]);
}

/* y = alpha x + beta, elementwise (beta is a scalar here). */
GPUML_KRANGE(affine_range, axpby_args)
{
    for (int64_t i = begin; i < end; i++)
        a->y[i] = gpuml_k_affine(a->alpha, a->x[i], a->beta);
}

gpuml_status gpuml_cpu_axpby(const gpuml_kctx *k, int64_t n, float alpha, const float *x, float beta, float *y)
{
    axpby_args a = {alpha, beta, x, y};
    gpuml_kfor(k, n, n, 0, beta == 0.0f ? scale_range : axpby_range, &a);
    return GPUML_OK;
}

gpuml_status gpuml_cpu_affine(const gpuml_kctx *k, int64_t n, float a, const float *x, float b, float *y)
{
    axpby_args s = {a, b, x, y};
    gpuml_kfor(k, n, n, 0, affine_range, &s);
    return GPUML_OK;
}
