/*
 * gpuml/optim.h - optimizers over a parameter slab.
 *
 * An optimizer updates one contiguous parameter slab from the gradient slab
 * of the same length (a model's gpuml_model_param_slab / _grad_slab) with a
 * single fused kernel; its state (momentum, Adam moments) lives in slabs of
 * the same length. Optional clipping by the global gradient norm and a
 * learning-rate schedule are applied inside gpuml_optim_step.
 *
 *     gpuml_optim_config oc;
 *     gpuml_optim_config_init_defaults(&oc);      // AdamW, lr 1e-3, wd 0.01
 *     oc.clip_norm = 1.0f;
 *     oc.schedule = GPUML_SCHED_COSINE; oc.warmup_steps = 100; oc.total_steps = 10000;
 *     gpuml_optim *opt;
 *     gpuml_optim_create(ctx, &oc, gpuml_model_param_slab(m), gpuml_model_grad_slab(m), &opt);
 *     ... backward ...
 *     gpuml_optim_step(opt);
 *     gpuml_model_zero_grad(m);
 *
 * Formulas follow PyTorch's SGD, Adam and AdamW (L2 weight decay for SGD
 * and Adam, decoupled for AdamW), so a step matches torch.optim on the same
 * numbers. The global norm is summed in a fixed order: deterministic.
 */
#ifndef GPUML_OPTIM_H
#define GPUML_OPTIM_H

#include "gpuml/context.h"
#include "gpuml/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum gpuml_optim_kind { GPUML_OPTIM_SGD = 0, GPUML_OPTIM_ADAM = 1, GPUML_OPTIM_ADAMW = 2 } gpuml_optim_kind;

typedef enum gpuml_sched_kind {
    GPUML_SCHED_CONSTANT = 0, /* lr                                                  */
    GPUML_SCHED_STEP = 1,     /* lr * gamma^(floor(step / step_size))                */
    GPUML_SCHED_COSINE = 2    /* linear warm-up, then cosine from lr to min_lr at
                                 total_steps (constant min_lr after)                */
} gpuml_sched_kind;

typedef struct gpuml_optim_config {
    gpuml_optim_kind kind;
    float lr;
    float weight_decay;
    float momentum, dampening; /* SGD                                          */
    int nesterov;              /* SGD                                          */
    float beta1, beta2, eps;   /* Adam, AdamW                                  */
    float clip_norm;           /* > 0: clip gradients to this global L2 norm   */
    gpuml_sched_kind schedule;
    int64_t warmup_steps;      /* cosine: steps of linear warm-up from 0 to lr */
    int64_t total_steps;       /* cosine                                       */
    float min_lr;              /* cosine                                       */
    int64_t step_size;         /* step                                         */
    float gamma;               /* step                                         */
} gpuml_optim_config;

typedef struct gpuml_optim gpuml_optim;

/* AdamW, lr 1e-3, betas (0.9, 0.999), eps 1e-8, weight decay 0.01 (PyTorch's
 * AdamW defaults), no clipping, constant schedule. */
GPUML_API void gpuml_optim_config_init_defaults(gpuml_optim_config *cfg);

/* params and grads: 1-D f32 slabs of equal length on ctx's device, owned by
 * the caller and kept alive while the optimizer is used. State is zeroed. */
GPUML_API gpuml_status gpuml_optim_create(gpuml_ctx *ctx, const gpuml_optim_config *cfg, gpuml_tensor *params,
                                          gpuml_tensor *grads, gpuml_optim **out);
GPUML_API void gpuml_optim_destroy(gpuml_optim *opt);

/* One update with the current gradients (which it does not zero). */
GPUML_API gpuml_status gpuml_optim_step(gpuml_optim *opt);
/* Learning rate the next step will use, and steps taken so far. */
GPUML_API float gpuml_optim_lr(const gpuml_optim *opt);
GPUML_API int64_t gpuml_optim_num_steps(const gpuml_optim *opt);
/* Global gradient norm measured by the last step (before clipping; 0 if
 * clipping is off). Synchronises the context's stream. */
GPUML_API gpuml_status gpuml_optim_last_grad_norm(gpuml_optim *opt, float *norm);
/* Compute the global L2 norm of a gradient slab (synchronises). */
GPUML_API gpuml_status gpuml_grad_norm(gpuml_ctx *ctx, const gpuml_tensor *grads, float *norm);

/* State for checkpoints: tensor i ("exp_avg", "exp_avg_sq", "momentum"),
 * owned by the optimizer; the step counter. */
GPUML_API int gpuml_optim_num_states(const gpuml_optim *opt);
GPUML_API gpuml_status gpuml_optim_state(const gpuml_optim *opt, int i, const char **name, gpuml_tensor **state);
/* steps in [0, GPUML_OPTIM_MAX_STEPS]; else INVALID_ARGUMENT, unchanged. */
#define GPUML_OPTIM_MAX_STEPS ((int64_t)1 << 53)
GPUML_API gpuml_status gpuml_optim_set_num_steps(gpuml_optim *opt, int64_t steps);
/* The configuration the optimizer was created with. */
GPUML_API void gpuml_optim_get_config(const gpuml_optim *opt, gpuml_optim_config *cfg);

#ifdef __cplusplus
}
#endif
#endif
