/* Object condensation inference (kernels/oc_cluster.h): argument checks,
 * workspace, dispatch. Contract in include/gpuml/cluster.h. */
#include <math.h>
#include <string.h>

#include "gpuml/cluster.h"
#include "ops/dispatch.h"

void gpuml_oc_cluster_params_init_defaults(gpuml_oc_cluster_params *p)
{
    if (!p)
        return;
    memset(p, 0, sizeof *p);
    p->t_beta = 0.1f;
    p->t_d = 0.5f;
    p->energy_column = 0;
}

/* t must hold n elements of dtype dt as [n] or [n, 1]. */
static gpuml_status check_vec(gpuml_ctx *ctx, const char *fn, const char *arg, const gpuml_tensor *t, gpuml_dtype dt,
                              int64_t n)
{
    GPUML_TRY(gpuml_check_dtype(ctx, fn, arg, t, dt));
    if (!(t->ndim == 1 && t->shape[0] == n) && !(t->ndim == 2 && t->shape[0] == n && t->shape[1] == 1)) {
        char s[160];
        return gpuml_fail(ctx, GPUML_ERR_SHAPE, fn, "argument '%s' is %s, expected [%lld] or [%lld, 1]", arg,
                          gpuml_shape_str(t->ndim, t->shape, s, sizeof s), (long long)n, (long long)n);
    }
    return GPUML_OK;
}

gpuml_status gpuml_oc_cluster(gpuml_ctx *ctx, const gpuml_tensor *beta, const gpuml_tensor *coords,
                              const gpuml_tensor *row_splits, const gpuml_tensor *energy,
                              const gpuml_oc_cluster_params *p, gpuml_tensor *cluster_id, gpuml_tensor *cluster_cp,
                              gpuml_tensor *cluster_energy, gpuml_tensor *cluster_count)
{
    static const char fn[] = "gpuml_oc_cluster";
    if (!ctx)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "argument 'ctx' is NULL");
    if (!p)
        return gpuml_fail(ctx, GPUML_ERR_INVALID_ARGUMENT, fn, "argument 'p' is NULL");
    if (isnan(p->t_beta))
        return gpuml_fail(ctx, GPUML_ERR_INVALID_ARGUMENT, fn, "argument 'p->t_beta' is NaN");
    if (!(p->t_d > 0.0f) || !isfinite(p->t_d))
        return gpuml_fail(ctx, GPUML_ERR_INVALID_ARGUMENT, fn, "argument 'p->t_d' = %g must be finite and > 0",
                          (double)p->t_d);
    GPUML_TRY(gpuml_check_dtype(ctx, fn, "coords", coords, GPUML_F32));
    if (coords->ndim != 2 || coords->shape[1] < 1 || coords->shape[1] > 1024) {
        char s[160];
        return gpuml_fail(ctx, GPUML_ERR_SHAPE, fn, "argument 'coords' is %s, expected [N, D] with 1 <= D <= 1024",
                          gpuml_shape_str(coords->ndim, coords->shape, s, sizeof s));
    }
    int64_t n = coords->shape[0], nev = 0;
    int d = (int)coords->shape[1];
    if (n >= INT32_MAX)
        return gpuml_fail(ctx, GPUML_ERR_INVALID_ARGUMENT, fn, "argument 'coords' has N = %lld rows; need N < 2^31 - 1",
                          (long long)n);
    GPUML_TRY(check_vec(ctx, fn, "beta", beta, GPUML_F32, n));
    int64_t estride = 1;
    if (energy) {
        GPUML_TRY(gpuml_check_dtype(ctx, fn, "energy", energy, GPUML_F32));
        if (energy->ndim < 1 || energy->ndim > 2 || energy->shape[0] != n) {
            char s[160];
            return gpuml_fail(ctx, GPUML_ERR_SHAPE, fn, "argument 'energy' is %s, expected [%lld] or [%lld, F]",
                              gpuml_shape_str(energy->ndim, energy->shape, s, sizeof s), (long long)n, (long long)n);
        }
        estride = energy->ndim == 2 ? energy->shape[1] : 1;
    }
    if (p->energy_column < 0 || (p->energy_column > 0 && p->energy_column >= estride))
        return gpuml_fail(ctx, GPUML_ERR_INVALID_ARGUMENT, fn, "argument 'p->energy_column' = %d is not a column of "
                          "energy (%lld columns)", p->energy_column, (long long)estride);
    GPUML_TRY(gpuml_check_row_splits(ctx, fn, "row_splits", row_splits, n, &nev));
    GPUML_TRY(check_vec(ctx, fn, "cluster_id", cluster_id, GPUML_I32, n));
    GPUML_TRY(check_vec(ctx, fn, "cluster_cp", cluster_cp, GPUML_I32, n));
    if (cluster_energy)
        GPUML_TRY(check_vec(ctx, fn, "cluster_energy", cluster_energy, GPUML_F32, n));
    GPUML_TRY(check_vec(ctx, fn, "cluster_count", cluster_count, GPUML_I32, nev));
    const gpuml_tensor *ins[] = {beta, coords, row_splits, energy};
    const char *in_names[] = {"beta", "coords", "row_splits", "energy"};
    gpuml_tensor *outs[] = {cluster_id, cluster_cp, cluster_energy, cluster_count};
    const char *out_names[] = {"cluster_id", "cluster_cp", "cluster_energy", "cluster_count"};
    for (int o = 0; o < 4; o++) {
        for (int i = 0; i < 4; i++)
            if (gpuml_tensors_overlap(outs[o], ins[i]))
                return gpuml_fail(ctx, GPUML_ERR_INVALID_ARGUMENT, fn, "output '%s' overlaps input '%s'",
                                  out_names[o], in_names[i]);
        for (int o2 = 0; o2 < o; o2++)
            if (gpuml_tensors_overlap(outs[o], outs[o2]))
                return gpuml_fail(ctx, GPUML_ERR_INVALID_ARGUMENT, fn, "outputs '%s' and '%s' overlap",
                                  out_names[o2], out_names[o]);
    }
    if (nev == 0)
        return GPUML_OK;
    size_t ws_bytes;
#if GPUML_HAVE_CUDA
    ws_bytes = gpuml_on_cuda(ctx) ? gpuml_cuda_oc_cluster_workspace(n, nev) : gpuml_cpu_oc_cluster_workspace(n, nev);
#else
    ws_bytes = gpuml_cpu_oc_cluster_workspace(n, nev);
#endif
    void *ws = NULL;
    GPUML_TRY(gpuml_scratch_alloc(ctx, ws_bytes, &ws, fn));
    gpuml_status st = GPUML_LAUNCH(ctx, oc_cluster, beta->data, coords->data, n, d, row_splits->data, nev,
                                   energy && n > 0 ? (const float *)energy->data + p->energy_column : NULL, estride,
                                   p->t_beta, p->t_d, cluster_id->data, cluster_cp->data,
                                   cluster_energy ? cluster_energy->data : NULL, cluster_count->data, ws);
    gpuml_scratch_free(ctx, ws, ws_bytes);
    return st;
}
