/* Optimizers: configuration, schedules, clipping, the fused update. */
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/runtime.h"
#include "gpuml/optim.h"
#include "kernels/optim.h"
#include "ops/dispatch.h"

struct gpuml_optim {
    gpuml_ctx *ctx;
    gpuml_optim_config cfg;
    gpuml_tensor *params, *grads;
    gpuml_tensor *state[2];  /* SGD: momentum; Adam: exp_avg, exp_avg_sq */
    int n_states;
    gpuml_tensor *norm;      /* [2] f32: last norm, clip factor */
    gpuml_tensor *partial;   /* clipping-norm workspace (gpuml_k_grad_norm_ws_bytes) as f64 */
    int64_t steps;
};

void gpuml_optim_config_init_defaults(gpuml_optim_config *c)
{
    if (!c)
        return;
    memset(c, 0, sizeof *c);
    c->kind = GPUML_OPTIM_ADAMW;
    c->lr = 1e-3f;
    c->weight_decay = 0.01f;
    c->beta1 = 0.9f;
    c->beta2 = 0.999f;
    c->eps = 1e-8f;
    c->schedule = GPUML_SCHED_CONSTANT;
    c->gamma = 0.1f;
    c->step_size = 1;
}

static gpuml_status check_config(gpuml_ctx *ctx, const char *fn, const gpuml_optim_config *c)
{
#define BAD(...) return gpuml_fail(ctx, GPUML_ERR_INVALID_ARGUMENT, fn, __VA_ARGS__)
    if ((int)c->kind < 0 || c->kind > GPUML_OPTIM_ADAMW)
        BAD("cfg->kind %d is not an optimizer", (int)c->kind);
    if (!(c->lr >= 0.0f) || !isfinite(c->lr))
        BAD("cfg->lr = %g must be >= 0", (double)c->lr);
    if (!(c->weight_decay >= 0.0f))
        BAD("cfg->weight_decay = %g must be >= 0", (double)c->weight_decay);
    if (c->kind == GPUML_OPTIM_SGD) {
        if (!(c->momentum >= 0.0f))
            BAD("cfg->momentum = %g must be >= 0", (double)c->momentum);
        if (c->nesterov && (c->momentum <= 0.0f || c->dampening != 0.0f))
            BAD("Nesterov momentum needs momentum > 0 and zero dampening");
    } else {
        if (!(c->beta1 >= 0.0f && c->beta1 < 1.0f) || !(c->beta2 >= 0.0f && c->beta2 < 1.0f))
            BAD("betas (%g, %g) must be in [0, 1)", (double)c->beta1, (double)c->beta2);
        if (!(c->eps >= 0.0f))
            BAD("cfg->eps = %g must be >= 0", (double)c->eps);
    }
    if (!(c->clip_norm >= 0.0f))
        BAD("cfg->clip_norm = %g must be >= 0 (0: off)", (double)c->clip_norm);
    if ((int)c->schedule < 0 || c->schedule > GPUML_SCHED_COSINE)
        BAD("cfg->schedule %d is not a schedule", (int)c->schedule);
    if (c->schedule == GPUML_SCHED_STEP && c->step_size < 1)
        BAD("a step schedule needs cfg->step_size >= 1");
    if (c->schedule == GPUML_SCHED_COSINE && (c->total_steps < 1 || c->warmup_steps < 0 ||
                                              c->warmup_steps > c->total_steps))
        BAD("a cosine schedule needs 0 <= warmup_steps <= total_steps and total_steps >= 1");
#undef BAD
    return GPUML_OK;
}

void gpuml_optim_destroy(gpuml_optim *o)
{
    if (!o)
        return;
    for (int i = 0; i < 2; i++)
        gpuml_tensor_destroy(o->state[i]);
    gpuml_tensor_destroy(o->norm);
    gpuml_tensor_destroy(o->partial);
    free(o);
}

gpuml_status gpuml_optim_create(gpuml_ctx *ctx, const gpuml_optim_config *cfg, gpuml_tensor *params,
                                gpuml_tensor *grads, gpuml_optim **out)
{
    static const char fn[] = "gpuml_optim_create";
    if (!ctx || !cfg || !out)
        return gpuml_fail(ctx, GPUML_ERR_INVALID_ARGUMENT, fn, "argument '%s' is NULL",
                          !ctx ? "ctx" : !cfg ? "cfg" : "out");
    *out = NULL;
    GPUML_TRY(check_config(ctx, fn, cfg));
    GPUML_TRY(gpuml_check_dtype(ctx, fn, "params", params, GPUML_F32));
    GPUML_TRY(gpuml_check_dtype(ctx, fn, "grads", grads, GPUML_F32));
    if (params->ndim != 1)
        return gpuml_fail(ctx, GPUML_ERR_SHAPE, fn, "params must be a 1-D slab");
    GPUML_TRY(gpuml_check_same_shape(ctx, fn, "params", params, "grads", grads));
    gpuml_optim *o = calloc(1, sizeof *o);
    if (!o)
        return gpuml_fail(ctx, GPUML_ERR_OUT_OF_MEMORY, fn, "cannot allocate the optimizer");
    o->ctx = ctx;
    o->cfg = *cfg;
    o->params = params;
    o->grads = grads;
    o->n_states = cfg->kind == GPUML_OPTIM_SGD ? (cfg->momentum != 0.0f ? 1 : 0) : 2;
    gpuml_status st = GPUML_OK;
    for (int i = 0; i < o->n_states && st == GPUML_OK; i++)
        st = gpuml_tensor_zeros(ctx, GPUML_F32, 1, params->shape, &o->state[i]);
    /* the clipping norm's workspace, in doubles */
    int64_t two = 2, nb = (int64_t)((gpuml_k_grad_norm_ws_bytes(params->shape[0]) + 7) / 8);
    if (st == GPUML_OK)
        st = gpuml_tensor_zeros(ctx, GPUML_F32, 1, &two, &o->norm);
    if (st == GPUML_OK)
        st = gpuml_tensor_create(ctx, GPUML_F64, 1, &nb, &o->partial);
    if (st != GPUML_OK) {
        gpuml_optim_destroy(o);
        return st;
    }
    *out = o;
    return GPUML_OK;
}

static float scheduled_lr(const gpuml_optim_config *c, int64_t step)
{
    switch (c->schedule) {
    case GPUML_SCHED_STEP: return c->lr * powf(c->gamma, (float)(step / c->step_size));
    case GPUML_SCHED_COSINE:
        if (step < c->warmup_steps)
            return c->lr * (float)(step + 1) / (float)c->warmup_steps;
        if (step >= c->total_steps)
            return c->min_lr;
        double span = (double)(c->total_steps - c->warmup_steps);
        double t = span > 0 ? (double)(step - c->warmup_steps) / span : 1.0;
        return c->min_lr + (c->lr - c->min_lr) * (float)(0.5 * (1.0 + cos(3.14159265358979323846 * t)));
    default: return c->lr;
    }
}

float gpuml_optim_lr(const gpuml_optim *o) { return scheduled_lr(&o->cfg, o->steps); }
int64_t gpuml_optim_num_steps(const gpuml_optim *o) { return o->steps; }

gpuml_status gpuml_optim_set_num_steps(gpuml_optim *o, int64_t steps)
{
    /* The bound keeps steps + 1 (and the bias corrections' exponent, a
     * double) exact and far from overflow. */
    if (!o || steps < 0 || steps > GPUML_OPTIM_MAX_STEPS)
        return gpuml_fail(o ? o->ctx : NULL, GPUML_ERR_INVALID_ARGUMENT, "gpuml_optim_set_num_steps",
                          "steps %" PRId64 " is not in [0, 2^53]", steps);
    o->steps = steps;
    return GPUML_OK;
}

gpuml_status gpuml_optim_step(gpuml_optim *o)
{
    static const char fn[] = "gpuml_optim_step";
    if (!o)
        return gpuml_fail(NULL, GPUML_ERR_INVALID_ARGUMENT, fn, "argument 'opt' is NULL");
    gpuml_ctx *ctx = o->ctx;
    const gpuml_optim_config *c = &o->cfg;
    int64_t n = o->params->shape[0];
    const float *gscale = NULL;
    if (c->clip_norm > 0.0f) {
        GPUML_TRY(GPUML_LAUNCH(ctx, grad_norm, n, o->grads->data, o->partial->data, c->clip_norm, o->norm->data));
        gscale = (const float *)o->norm->data + 1;
    }
    float lr = scheduled_lr(c, o->steps);
    float *p = o->params->data, *g = o->grads->data;
    if (c->kind == GPUML_OPTIM_SGD) {
        GPUML_TRY(GPUML_LAUNCH(ctx, optim_sgd, n, p, g, o->n_states ? (float *)o->state[0]->data : NULL, gscale, lr,
                               c->momentum, c->dampening, c->weight_decay, c->nesterov, o->steps == 0));
    } else {
        double t = (double)(o->steps + 1);
        float step_size = (float)(lr / (1.0 - pow((double)c->beta1, t)));
        float bc2_sqrt = (float)sqrt(1.0 - pow((double)c->beta2, t));
        GPUML_TRY(GPUML_LAUNCH(ctx, optim_adam, n, p, g, o->state[0]->data, o->state[1]->data, gscale, lr, c->beta1,
                               c->beta2, c->eps, c->weight_decay, c->kind == GPUML_OPTIM_ADAMW, step_size, bc2_sqrt));
    }
    o->steps++;
    return GPUML_OK;
}

gpuml_status gpuml_optim_last_grad_norm(gpuml_optim *o, float *norm)
{
    if (!o || !norm)
        return gpuml_fail(o ? o->ctx : NULL, GPUML_ERR_INVALID_ARGUMENT, "gpuml_optim_last_grad_norm",
                          "argument is NULL");
    float v[2];
    GPUML_TRY(gpuml_tensor_copy_to_host(o->ctx, o->norm, v, sizeof v));
    *norm = v[0];
    return GPUML_OK;
}

gpuml_status gpuml_grad_norm(gpuml_ctx *ctx, const gpuml_tensor *grads, float *norm)
{
    static const char fn[] = "gpuml_grad_norm";
    if (!ctx || !norm)
        return gpuml_fail(ctx, GPUML_ERR_INVALID_ARGUMENT, fn, "argument '%s' is NULL", ctx ? "norm" : "ctx");
    GPUML_TRY(gpuml_check_dtype(ctx, fn, "grads", grads, GPUML_F32));
    int64_t n = gpuml_tensor_numel(grads), two = 2;
    size_t nbytes = gpuml_align_up(gpuml_k_grad_norm_ws_bytes(n)), bytes = nbytes + 2 * sizeof(float);
    void *ws = NULL;
    GPUML_TRY(gpuml_scratch_alloc(ctx, bytes, &ws, fn));
    float *out = (float *)((char *)ws + nbytes);
    gpuml_status st = GPUML_LAUNCH(ctx, grad_norm, n, grads->data, ws, 0.0f, out);
    float v[2] = {0, 0};
    if (st == GPUML_OK) {
        gpuml_tensor t;
        gpuml_tensor_init_view(&t, out, ctx->device, GPUML_F32, 1, &two);
        st = gpuml_tensor_copy_to_host(ctx, &t, v, sizeof v);
    }
    gpuml_scratch_free(ctx, ws, bytes);
    if (st == GPUML_OK)
        *norm = v[0];
    return st;
}

int gpuml_optim_num_states(const gpuml_optim *o) { return o ? o->n_states : 0; }

gpuml_status gpuml_optim_state(const gpuml_optim *o, int i, const char **name, gpuml_tensor **state)
{
    if (!o || i < 0 || i >= o->n_states)
        return gpuml_fail(o ? o->ctx : NULL, GPUML_ERR_INVALID_ARGUMENT, "gpuml_optim_state", "index %d out of range",
                          i);
    if (name)
        *name = o->cfg.kind == GPUML_OPTIM_SGD ? "momentum" : (i == 0 ? "exp_avg" : "exp_avg_sq");
    if (state)
        *state = o->state[i];
    return GPUML_OK;
}

void gpuml_optim_get_config(const gpuml_optim *o, gpuml_optim_config *cfg)
{
    if (o && cfg)
        *cfg = o->cfg;
}
