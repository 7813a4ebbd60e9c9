/* The training loop (gpuml/train.h). */
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"
#include "gpuml/train.h"

struct gpuml_trainer {
    gpuml_model *m;
    gpuml_ctx *ctx;
    gpuml_trainer_config cfg;
    gpuml_tape *tape;
    gpuml_optim *opt;
    int pending;              /* batches accumulated since the last optimizer step */
    gpuml_tensor *components; /* [3] f32 on the device */
    gpuml_var **outs;         /* model outputs of the last forward */
    gpuml_ddp *ddp;           /* data-parallel reducer, or NULL */
};

void gpuml_trainer_config_init_defaults(gpuml_trainer_config *c)
{
    if (!c)
        return;
    memset(c, 0, sizeof *c);
    c->loss = GPUML_LOSS_OBJECT_CONDENSATION;
    c->num_inputs = 1;
    c->input_fields[0] = 0;
    c->target_field = 1;
    c->output = 0;
    c->beta_output = 0;
    c->coords_output = 1;
    gpuml_oc_params_init_defaults(&c->oc);
    gpuml_optim_config_init_defaults(&c->optim);
    c->accumulate = 1;
}

void gpuml_trainer_destroy(gpuml_trainer *tr)
{
    if (!tr)
        return;
    gpuml_tape_destroy(tr->tape);
    gpuml_optim_destroy(tr->opt);
    gpuml_tensor_destroy(tr->components);
    free(tr->outs);
    free(tr);
}

gpuml_status gpuml_trainer_create(gpuml_model *m, const gpuml_trainer_config *cfg, gpuml_trainer **out)
{
    static const char fn[] = "gpuml_trainer_create";
    if (!m || !cfg || !out)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "argument '%s' is NULL", !m ? "model" : !cfg ? "cfg" : "out");
    *out = NULL;
    gpuml_ctx *ctx = gpuml_model_ctx(m);
    int nout = gpuml_model_num_outputs(m);
    if ((int)cfg->loss < 0 || cfg->loss > GPUML_LOSS_MSE)
        return gpuml_fail(ctx, GPUML_ERR_INVALID_ARGUMENT, fn, "cfg->loss %d is not a loss", (int)cfg->loss);
    if (cfg->num_inputs != gpuml_model_num_inputs(m))
        return gpuml_fail(ctx, GPUML_ERR_INVALID_ARGUMENT, fn, "cfg->num_inputs = %d but the model has %d inputs",
                          cfg->num_inputs, gpuml_model_num_inputs(m));
    if (cfg->accumulate < 1)
        return gpuml_fail(ctx, GPUML_ERR_INVALID_ARGUMENT, fn, "cfg->accumulate must be >= 1");
    if (cfg->loss == GPUML_LOSS_OBJECT_CONDENSATION) {
        if (cfg->beta_output < 0 || cfg->beta_output >= nout || cfg->coords_output < 0 || cfg->coords_output >= nout)
            return gpuml_fail(ctx, GPUML_ERR_INVALID_ARGUMENT, fn,
                              "object condensation needs beta_output and coords_output in [0, %d)", nout);
        if (cfg->oc.max_objects < 1)
            return gpuml_fail(ctx, GPUML_ERR_INVALID_ARGUMENT, fn, "cfg->oc.max_objects must be set (>= 1)");
    } else if (cfg->output < 0 || cfg->output >= nout) {
        return gpuml_fail(ctx, GPUML_ERR_INVALID_ARGUMENT, fn, "cfg->output %d is not in [0, %d)", cfg->output, nout);
    }
    gpuml_trainer *tr = calloc(1, sizeof *tr);
    if (!tr)
        return gpuml_fail(ctx, GPUML_ERR_OUT_OF_MEMORY, fn, "cannot allocate the trainer");
    tr->m = m;
    tr->ctx = ctx;
    tr->cfg = *cfg;
    int64_t three = 3;
    gpuml_status st = gpuml_tape_create(ctx, &tr->tape);
    if (st == GPUML_OK)
        st = gpuml_optim_create(ctx, &cfg->optim, gpuml_model_param_slab(m), gpuml_model_grad_slab(m), &tr->opt);
    if (st == GPUML_OK)
        st = gpuml_tensor_zeros(ctx, GPUML_F32, 1, &three, &tr->components);
    if (st == GPUML_OK && !(tr->outs = calloc((size_t)nout, sizeof *tr->outs)))
        st = gpuml_fail(ctx, GPUML_ERR_OUT_OF_MEMORY, fn, "out of memory");
    if (st != GPUML_OK) {
        gpuml_trainer_destroy(tr);
        return st;
    }
    *out = tr;
    return GPUML_OK;
}

gpuml_optim *gpuml_trainer_optim(const gpuml_trainer *tr) { return tr->opt; }
void gpuml_trainer_set_ddp(gpuml_trainer *tr, gpuml_ddp *ddp) { tr->ddp = ddp; }
gpuml_tape *gpuml_trainer_tape(const gpuml_trainer *tr) { return tr->tape; }

/* Accuracy of logits [R, C] against labels [R] (host copies; small). */
static gpuml_status count_correct(gpuml_trainer *tr, const gpuml_tensor *logits, const gpuml_tensor *labels,
                                  int64_t *correct)
{
    int64_t r = logits->shape[0], c = logits->ndim > 1 ? logits->shape[1] : 1;
    float *lg = malloc((size_t)(r * c) * sizeof(float) + 1);
    void *lb = malloc((size_t)r * gpuml_dtype_size(labels->dtype) + 1);
    gpuml_status st = (!lg || !lb) ? gpuml_fail(tr->ctx, GPUML_ERR_OUT_OF_MEMORY, "gpuml_trainer", "out of memory")
                                   : GPUML_OK;
    if (st == GPUML_OK)
        st = gpuml_tensor_copy_to_host(tr->ctx, logits, lg, gpuml_tensor_nbytes(logits));
    if (st == GPUML_OK)
        st = gpuml_tensor_copy_to_host(tr->ctx, labels, lb, gpuml_tensor_nbytes(labels));
    int64_t ok = 0;
    for (int64_t i = 0; st == GPUML_OK && i < r; i++) {
        int64_t best = 0;
        for (int64_t j = 1; j < c; j++)
            if (lg[i * c + j] > lg[i * c + best])
                best = j;
        int64_t y = labels->dtype == GPUML_I64 ? ((int64_t *)lb)[i] : ((int32_t *)lb)[i];
        ok += best == y;
    }
    free(lg);
    free(lb);
    *correct = ok;
    return st;
}

/* Forward + loss on the tape (which the caller has reset and configured). */
static gpuml_status forward_loss(gpuml_trainer *tr, const gpuml_tensor *const *inputs, const gpuml_tensor *row_splits,
                                 const gpuml_tensor *target, gpuml_var **loss, gpuml_step_stats *stats)
{
    const gpuml_trainer_config *c = &tr->cfg;
    gpuml_tape *t = tr->tape;
    GPUML_TRY(gpuml_model_forward(tr->m, t, inputs, row_splits, tr->outs));
    gpuml_var *tv;
    switch (c->loss) {
    case GPUML_LOSS_OBJECT_CONDENSATION:
        GPUML_TRY(gpuml_ad_object_condensation(t, tr->outs[c->beta_output], tr->outs[c->coords_output], target,
                                               row_splits, &c->oc, loss, tr->components));
        break;
    case GPUML_LOSS_CROSS_ENTROPY:
        GPUML_TRY(gpuml_ad_cross_entropy(t, tr->outs[c->output], target, c->class_weights, loss));
        break;
    case GPUML_LOSS_BCE_LOGITS:
        GPUML_TRY(gpuml_var_input(t, target, 0, &tv));
        GPUML_TRY(gpuml_ad_bce_logits(t, tr->outs[c->output], tv, NULL, loss));
        break;
    case GPUML_LOSS_MSE:
        GPUML_TRY(gpuml_var_input(t, target, 0, &tv));
        GPUML_TRY(gpuml_ad_mse(t, tr->outs[c->output], tv, loss));
        break;
    }
    if (stats) {
        memset(stats, 0, sizeof *stats);
        stats->rows = inputs[0]->shape[0];
        stats->events = row_splits->shape[0] - 1;
        GPUML_TRY(gpuml_tensor_copy_to_host(tr->ctx, gpuml_var_value(*loss), &stats->loss, sizeof(float)));
        if (c->loss == GPUML_LOSS_OBJECT_CONDENSATION)
            GPUML_TRY(gpuml_tensor_copy_to_host(tr->ctx, tr->components, stats->components, 3 * sizeof(float)));
        if (c->loss == GPUML_LOSS_CROSS_ENTROPY)
            GPUML_TRY(count_correct(tr, gpuml_var_value(tr->outs[c->output]), target, &stats->correct));
    }
    return GPUML_OK;
}

static gpuml_status step_once(gpuml_trainer *tr, const gpuml_tensor *const *inputs, const gpuml_tensor *row_splits,
                              const gpuml_tensor *target, gpuml_step_stats *stats)
{
    gpuml_step_stats local;
    gpuml_step_stats *s = stats ? stats : &local;
    gpuml_tape *t = tr->tape;
    gpuml_tape_reset(t);
    gpuml_tape_set_grad_enabled(t, 1);
    gpuml_tape_set_training(t, 1);
    if (tr->pending == 0)
        GPUML_TRY(gpuml_model_zero_grad(tr->m));
    int sync = tr->pending + 1 == tr->cfg.accumulate;
    if (tr->ddp)
        GPUML_TRY(gpuml_ddp_begin(tr->ddp, t, sync));
    gpuml_var *loss;
    GPUML_TRY(forward_loss(tr, inputs, row_splits, target, &loss, s));
    if (tr->cfg.accumulate > 1)
        GPUML_TRY(gpuml_ad_scale(t, 1.0f / (float)tr->cfg.accumulate, loss, &loss));
    GPUML_TRY(gpuml_backward(t, loss, NULL));
    if (tr->ddp && sync)
        GPUML_TRY(gpuml_ddp_end(tr->ddp));
    s->stepped = 0;
    s->lr = 0.0f;
    if (++tr->pending == tr->cfg.accumulate) {
        s->lr = gpuml_optim_lr(tr->opt);
        GPUML_TRY(gpuml_optim_step(tr->opt));
        tr->pending = 0;
        s->stepped = 1;
    }
    return GPUML_OK;
}

gpuml_status gpuml_trainer_step(gpuml_trainer *tr, const gpuml_tensor *const *inputs, const gpuml_tensor *row_splits,
                                const gpuml_tensor *target, gpuml_step_stats *stats)
{
    static const char fn[] = "gpuml_trainer_step";
    if (!tr || !inputs || !row_splits || !target)
        return gpuml_fail(tr ? tr->ctx : NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "argument is NULL");
    gpuml_status st = step_once(tr, inputs, row_splits, target, stats);
    /* A step that failed (out of memory under a cap, say) may have added
     * part of its gradients: the next step starts a new accumulation group
     * from zeroed gradients instead of stepping on a corrupted sum. */
    if (st != GPUML_OK)
        tr->pending = 0;
    return st;
}

static gpuml_status batch_tensors(gpuml_trainer *tr, const gpuml_batch *b, const gpuml_tensor **inputs,
                                  const gpuml_tensor **target, const char *fn)
{
    for (int i = 0; i < tr->cfg.num_inputs; i++) {
        inputs[i] = gpuml_batch_field(b, tr->cfg.input_fields[i]);
        if (!inputs[i])
            return gpuml_fail(tr->ctx, GPUML_ERR_INVALID_ARGUMENT, fn, "the batch has no field %d (model input %d)",
                              tr->cfg.input_fields[i], i);
    }
    if (target) {
        *target = gpuml_batch_field(b, tr->cfg.target_field);
        if (!*target)
            return gpuml_fail(tr->ctx, GPUML_ERR_INVALID_ARGUMENT, fn, "the batch has no field %d (the target)",
                              tr->cfg.target_field);
    }
    return GPUML_OK;
}

gpuml_status gpuml_trainer_step_batch(gpuml_trainer *tr, const gpuml_batch *b, gpuml_step_stats *stats)
{
    static const char fn[] = "gpuml_trainer_step_batch";
    if (!tr || !b)
        return gpuml_fail(tr ? tr->ctx : NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "argument is NULL");
    const gpuml_tensor *in[GPUML_TRAIN_MAX_INPUTS], *target;
    GPUML_TRY(batch_tensors(tr, b, in, &target, fn));
    return gpuml_trainer_step(tr, in, gpuml_batch_row_splits(b), target, stats);
}

gpuml_status gpuml_trainer_evaluate_batch(gpuml_trainer *tr, const gpuml_batch *b, gpuml_step_stats *stats)
{
    static const char fn[] = "gpuml_trainer_evaluate_batch";
    if (!tr || !b || !stats)
        return gpuml_fail(tr ? tr->ctx : NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "argument is NULL");
    const gpuml_tensor *in[GPUML_TRAIN_MAX_INPUTS], *target;
    GPUML_TRY(batch_tensors(tr, b, in, &target, fn));
    gpuml_tape *t = tr->tape;
    gpuml_tape_reset(t);
    gpuml_tape_set_grad_enabled(t, 0);
    gpuml_tape_set_training(t, 0);
    gpuml_var *loss;
    gpuml_status st = forward_loss(tr, in, gpuml_batch_row_splits(b), target, &loss, stats);
    gpuml_tape_set_grad_enabled(t, 1);
    gpuml_tape_set_training(t, 1);
    return st;
}

gpuml_status gpuml_trainer_predict_batch(gpuml_trainer *tr, const gpuml_batch *b, gpuml_tensor **outputs)
{
    static const char fn[] = "gpuml_trainer_predict_batch";
    if (!tr || !b || !outputs)
        return gpuml_fail(tr ? tr->ctx : NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "argument is NULL");
    const gpuml_tensor *in[GPUML_TRAIN_MAX_INPUTS];
    GPUML_TRY(batch_tensors(tr, b, in, NULL, fn));
    gpuml_tape *t = tr->tape;
    gpuml_tape_reset(t);
    gpuml_tape_set_grad_enabled(t, 0);
    gpuml_tape_set_training(t, 0);
    gpuml_status st = gpuml_model_forward(tr->m, t, in, gpuml_batch_row_splits(b), tr->outs);
    gpuml_tape_set_grad_enabled(t, 1);
    gpuml_tape_set_training(t, 1);
    if (st == GPUML_OK)
        for (int i = 0; i < gpuml_model_num_outputs(tr->m); i++)
            outputs[i] = gpuml_var_value(tr->outs[i]);
    return st;
}
