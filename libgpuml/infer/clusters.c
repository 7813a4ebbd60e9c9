/* The engine's object condensation post-processing (cfg.clusters, see
 * gpuml/infer.h): checks against the model at creation, and per forward
 * gpuml_oc_cluster on its outputs into tensors of the tape, so that they
 * live exactly as long as the outputs they come from and are staged and
 * scattered like them. */
#include <math.h>

#include "gpuml/cluster.h"
#include "infer/engine_impl.h"

gpuml_status eng_clusters_check(gpuml_engine *e, const gpuml_model *m)
{
    static const char fn[] = "gpuml_engine_create";
    const gpuml_engine_clusters *c = &e->cfg.clusters;
#define BAD(...) gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, __VA_ARGS__)
    if (c->beta_output < 0 || c->beta_output >= e->n_mout || c->coords_output < 0 || c->coords_output >= e->n_mout ||
        c->beta_output == c->coords_output)
        return BAD("cfg->clusters: beta_output = %d and coords_output = %d must be two of the model's %d outputs",
                   c->beta_output, c->coords_output, e->n_mout);
    if (e->out_event[c->beta_output] || e->out_event[c->coords_output] || e->f_out[c->beta_output] != 1)
        return BAD("cfg->clusters: output %d (beta) must be per row with 1 feature and output %d (coordinates) per "
                   "row",
                   c->beta_output, c->coords_output);
    if (c->energy_input < -1 || c->energy_input >= e->n_in)
        return BAD("cfg->clusters.energy_input = %d is not -1 or one of the model's %d inputs", c->energy_input,
                   e->n_in);
    if (c->energy_input >= 0 && (c->energy_column < 0 || c->energy_column >= e->f_in[c->energy_input]))
        return BAD("cfg->clusters.energy_column = %d is not a column of input %d (%lld features)", c->energy_column,
                   c->energy_input, (long long)e->f_in[c->energy_input]);
    if (isnan(c->t_beta) || !(c->t_d > 0.0f) || !isfinite(c->t_d))
        return BAD("cfg->clusters: t_beta = %g must not be NaN, t_d = %g must be finite and > 0", (double)c->t_beta,
                   (double)c->t_d);
    (void)m;
    return GPUML_OK;
#undef BAD
}

gpuml_status eng_clusters_run(gpuml_engine *e, gpuml_ctx *ctx, gpuml_tape *tape, const gpuml_tensor *const *ins,
                              const gpuml_tensor *splits, gpuml_var *const *outs, int64_t rows, int64_t events,
                              const float **src)
{
    const gpuml_engine_clusters *c = &e->cfg.clusters;
    gpuml_oc_cluster_params p;
    gpuml_oc_cluster_params_init_defaults(&p);
    p.t_beta = c->t_beta, p.t_d = c->t_d, p.energy_column = c->energy_column;
    gpuml_tensor *i32[3], *f32[4]; /* id, cp, count as i32; all four as f32 */
    int64_t n[4] = {rows, rows, rows, events};
    for (int k = 0; k < 4; k++) {
        if (k != 2)
            GPUML_TRY(gpuml_tape_tensor(tape, GPUML_I32, 1, &n[k], &i32[k < 2 ? k : 2]));
        GPUML_TRY(gpuml_tape_tensor(tape, GPUML_F32, 1, &n[k], &f32[k]));
    }
    const gpuml_tensor *energy = c->energy_input >= 0 ? ins[c->energy_input] : NULL;
    GPUML_TRY(gpuml_oc_cluster(ctx, gpuml_var_value(outs[c->beta_output]), gpuml_var_value(outs[c->coords_output]),
                               splits, energy, &p, i32[0], i32[1], f32[2], i32[2]));
    GPUML_TRY(gpuml_cast(ctx, i32[0], f32[0]));
    GPUML_TRY(gpuml_cast(ctx, i32[1], f32[1]));
    GPUML_TRY(gpuml_cast(ctx, i32[2], f32[3]));
    for (int k = 0; k < 4; k++)
        src[k] = gpuml_tensor_data(f32[k]);
    return GPUML_OK;
}
