/* CPU driver for kernels/optim.h. */
#include "../kernels.h"
#include "../optim.h"
#include "parallel.h"

typedef struct optim_args {
    float *p, *buf, *m, *v;
    const float *g;
    float s, lr, momentum, dampening, beta1, beta2, eps, wd, step_size, bc2_sqrt;
    int nesterov, first, decoupled;
} optim_args;

GPUML_KRANGE(sgd_range, optim_args)
{
    for (int64_t i = begin; i < end; i++)
        gpuml_k_sgd(a->p + i, a->g[i], a->s, a->buf ? a->buf + i : NULL, a->lr, a->momentum, a->dampening, a->wd,
                    a->nesterov, a->first);
}

GPUML_KRANGE(adam_range, optim_args)
{
    for (int64_t i = begin; i < end; i++)
        gpuml_k_adam(a->p + i, a->g[i], a->s, a->m + i, a->v + i, a->lr, a->beta1, a->beta2, a->eps, a->wd,
                     a->decoupled, a->step_size, a->bc2_sqrt);
}

gpuml_status gpuml_cpu_optim_sgd(const gpuml_kctx *k, int64_t n, float *p, const float *g, float *buf,
                                 const float *gscale, float lr, float momentum, float dampening, float wd, int nesterov,
                                 int first)
{
    optim_args a = {0};
    a.p = p, a.g = g, a.buf = buf, a.s = gpuml_k_grad_scale(gscale), a.lr = lr, a.momentum = momentum;
    a.dampening = dampening, a.wd = wd, a.nesterov = nesterov, a.first = first;
    gpuml_kfor(k, n, n, 0, sgd_range, &a);
    return GPUML_OK;
}

gpuml_status gpuml_cpu_optim_adam(const gpuml_kctx *k, int64_t n, float *p, const float *g, float *m, float *v,
                                  const float *gscale, float lr, float beta1, float beta2, float eps, float wd,
                                  int decoupled, float step_size, float bc2_sqrt)
{
    optim_args a = {0};
    a.p = p, a.g = g, a.m = m, a.v = v, a.s = gpuml_k_grad_scale(gscale), a.lr = lr, a.beta1 = beta1, a.beta2 = beta2;
    a.eps = eps, a.wd = wd, a.decoupled = decoupled, a.step_size = step_size, a.bc2_sqrt = bc2_sqrt;
    gpuml_kfor(k, n, n, 0, adam_range, &a);
    return GPUML_OK;
}

gpuml_status gpuml_cpu_grad_norm(const gpuml_kctx *k, int64_t n, const float *g, void *ws, float max_norm, float *out)
{
    gpuml_k_rjob j = gpuml_k_grad_norm_job(n, g, ws);
    gpuml_status st = gpuml_cpu_reduce(k, j);
    if (st != GPUML_OK)
        return st;
    gpuml_k_norm_finish(j.out_d, max_norm, out);
    return GPUML_OK;
}
