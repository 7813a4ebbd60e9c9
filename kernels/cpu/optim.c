/* CPU driver for kernels/optim.h. */
#include "../kernels.h"
#include "../optim.h"

gpuml_status gpuml_cpu_optim_sgd(const gpuml_kctx *k, int64_t n, float *p, const float *g, float *buf,
                                 const float *gscale, float lr, float momentum, float dampening, float wd, int nesterov,
                                 int first)
{
    int nt = k->nthreads;
    float s = gscale ? *gscale : 1.0f;
#pragma omp parallel for num_threads(nt) schedule(static) if (n > GPUML_PAR_GRAIN)
    for (int64_t i = 0; i < n; i++)
        gpuml_k_sgd(p + i, g[i] * s, buf ? buf + i : NULL, lr, momentum, dampening, wd, nesterov, first);
    return GPUML_OK;
}

gpuml_status gpuml_cpu_optim_adam(const gpuml_kctx *k, int64_t n, float *p, const float *g, float *m, float *v,
                                  const float *gscale, float lr, float beta1, float beta2, float eps, float wd,
                                  int decoupled, float step_size, float bc2_sqrt)
{
    int nt = k->nthreads;
    float s = gscale ? *gscale : 1.0f;
#pragma omp parallel for num_threads(nt) schedule(static) if (n > GPUML_PAR_GRAIN)
    for (int64_t i = 0; i < n; i++)
        gpuml_k_adam(p + i, g[i] * s, m + i, v + i, lr, beta1, beta2, eps, wd, decoupled, step_size, bc2_sqrt);
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
