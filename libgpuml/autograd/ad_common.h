/* Boilerplate shared by the differentiable ops. */
#ifndef GPUML_AUTOGRAD_AD_COMMON_H
#define GPUML_AUTOGRAD_AD_COMMON_H

#include <stdarg.h>

#include "autograd/tape_impl.h"

/* Compute d/dvar into a destination from gpuml_ad_grad_begin with `expr`
 * (which may use `dst`), then commit it. Skips when var needs no grad. */
#define AD_GRAD(t, var, fn, expr)                                 \
    do {                                                          \
        gpuml_tensor *dst = NULL;                                 \
        GPUML_TRY(gpuml_ad_grad_begin((t), (var), &dst, (fn)));   \
        if (dst) {                                                \
            GPUML_TRY(expr);                                      \
            GPUML_TRY(gpuml_ad_grad_commit((t), (var), dst, (fn))); \
        }                                                         \
    } while (0)

/* Names the first NULL among (name, pointer) pairs; n pairs. */
static inline gpuml_status ad_nonnull(gpuml_tape *t, const char *fn, int n, ...)
{
    if (!t)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "argument 'tape' is NULL");
    va_list ap;
    va_start(ap, n);
    for (int i = 0; i < n; i++) {
        const char *name = va_arg(ap, const char *);
        const void *p = va_arg(ap, const void *);
        if (!p) {
            va_end(ap);
            return gpuml_fail(t->ctx, GPUML_ERR_INVALID_ARGUMENT, fn, "argument '%s' is NULL", name);
        }
    }
    va_end(ap);
    return GPUML_OK;
}

#endif
