/*
 * gpuml/train.h - the training loop: forward, loss, backward, optimizer
 * step, on batches from a gpuml_loader (gpuml/io.h) or on caller tensors.
 *
 *     gpuml_trainer_config tc;
 *     gpuml_trainer_config_init_defaults(&tc);
 *     tc.loss = GPUML_LOSS_CROSS_ENTROPY;
 *     tc.num_inputs = 2; tc.input_fields[0] = 0; tc.input_fields[1] = 1;  // loader fields
 *     tc.target_field = 2;                                                  // "event/label"
 *     tc.optim.lr = 1e-3f;
 *     gpuml_trainer *tr;
 *     gpuml_trainer_create(model, &tc, &tr);
 *     while (gpuml_loader_next(loader, &batch) == GPUML_OK && batch) {
 *         gpuml_step_stats st;
 *         gpuml_trainer_step_batch(tr, batch, &st);          // st.loss, st.events, ...
 *         gpuml_batch_destroy(batch);
 *     }
 *
 * Losses: object condensation (model outputs beta [N, 1] and cluster
 * coordinates [N, D]; target: per-row truth object ids i32, -1 for noise),
 * cross-entropy (logits [B, C] per event or [N, C] per row; target labels
 * i32/i64), BCE with logits and MSE (target f32 of the output's shape).
 *
 * The trainer owns a tape and an optimizer over the model's slabs; a step
 * allocates nothing once warm. Gradient accumulation: set accumulate > 1
 * and the optimizer steps every `accumulate` batches (losses are divided
 * accordingly). A step synchronises the context's stream once, to read the
 * loss. Threading: one thread at a time.
 */
#ifndef GPUML_TRAIN_H
#define GPUML_TRAIN_H

#include "gpuml/checkpoint.h"
#include "gpuml/ddp.h"
#include "gpuml/io.h"
#include "gpuml/model.h"
#include "gpuml/optim.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum gpuml_loss_kind {
    GPUML_LOSS_OBJECT_CONDENSATION = 0,
    GPUML_LOSS_CROSS_ENTROPY = 1,
    GPUML_LOSS_BCE_LOGITS = 2,
    GPUML_LOSS_MSE = 3
} gpuml_loss_kind;

#define GPUML_TRAIN_MAX_INPUTS 8

typedef struct gpuml_trainer_config {
    gpuml_loss_kind loss;
    int num_inputs;                              /* model inputs fed from batch fields */
    int input_fields[GPUML_TRAIN_MAX_INPUTS];    /* batch field index of model input i */
    int target_field;                            /* batch field index of the target    */
    int output;                                  /* model output the loss reads (CE, BCE, MSE) */
    int beta_output, coords_output;              /* object condensation: model outputs */
    gpuml_oc_params oc;                          /* object condensation parameters     */
    const gpuml_tensor *class_weights;           /* cross-entropy [C] or NULL (kept by reference) */
    gpuml_optim_config optim;
    int accumulate;                              /* batches per optimizer step (>= 1)  */
} gpuml_trainer_config;

/* Defaults: object condensation on outputs 0 (beta) and 1 (coords), inputs
 * = field 0, target = field 1, AdamW defaults, accumulate 1. */
GPUML_API void gpuml_trainer_config_init_defaults(gpuml_trainer_config *cfg);

typedef struct gpuml_step_stats {
    float loss;            /* this batch's loss                                    */
    float components[3];   /* object condensation: L_V, L_beta, L_noise           */
    int64_t events, rows;
    int64_t correct;       /* cross-entropy: events / rows classified correctly    */
    float lr;              /* learning rate used (0 when the optimizer did not step) */
    int stepped;           /* 1 when the optimizer stepped after this batch        */
} gpuml_step_stats;

typedef struct gpuml_trainer gpuml_trainer;

/* The trainer uses the model's context; cfg is copied. */
GPUML_API gpuml_status gpuml_trainer_create(gpuml_model *model, const gpuml_trainer_config *cfg,
                                            gpuml_trainer **out);
GPUML_API void gpuml_trainer_destroy(gpuml_trainer *tr);
GPUML_API gpuml_optim *gpuml_trainer_optim(const gpuml_trainer *tr);
/* Data-parallel: every step's gradients are averaged over ddp's ranks
 * (buckets overlapping the backward pass); with accumulate > 1 only the
 * last batch of each group synchronises. NULL: single process. */
GPUML_API void gpuml_trainer_set_ddp(gpuml_trainer *tr, gpuml_ddp *ddp);
GPUML_API gpuml_tape *gpuml_trainer_tape(const gpuml_trainer *tr);

/* One training step on explicit tensors (inputs[i]: model input i;
 * row_splits; target). A step that fails (e.g. OUT_OF_MEMORY under a
 * memory cap, gpuml/context.h) returns before the optimizer steps:
 * parameters and optimizer state are unchanged (batch-norm running
 * statistics of the layers that ran before the failure are updated). With
 * accumulate > 1 the batches accumulated so far in the group are dropped:
 * the next step starts a new group. */
GPUML_API gpuml_status gpuml_trainer_step(gpuml_trainer *tr, const gpuml_tensor *const *inputs,
                                          const gpuml_tensor *row_splits, const gpuml_tensor *target,
                                          gpuml_step_stats *stats);
/* The same with the fields of a loader batch (cfg's field indices). */
GPUML_API gpuml_status gpuml_trainer_step_batch(gpuml_trainer *tr, const gpuml_batch *batch,
                                                gpuml_step_stats *stats);
/* Loss (and accuracy) without training: inference-mode forward (batch-norm
 * running statistics, no dropout), nothing recorded or updated. */
GPUML_API gpuml_status gpuml_trainer_evaluate_batch(gpuml_trainer *tr, const gpuml_batch *batch,
                                                    gpuml_step_stats *stats);
/* Inference-mode forward of a batch; outputs[i] (num_outputs of the model)
 * are tensors of the trainer's tape, valid until the next call. */
GPUML_API gpuml_status gpuml_trainer_predict_batch(gpuml_trainer *tr, const gpuml_batch *batch,
                                                   gpuml_tensor **outputs);

#ifdef __cplusplus
}
#endif
#endif
