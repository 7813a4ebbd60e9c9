/*
 * gpuml/checkpoint.h - training checkpoints.
 *
 * A checkpoint is a model file (gpuml/model.h) plus the optimizer's state
 * (/optimizer/<name> slabs, its kind and step count) and the training state
 * (/state attributes: step, epoch, the context's RNG seed and counter, the
 * loader position). It is written to a temporary name and renamed, so a
 * crash never leaves a half-written checkpoint under the real name.
 * Restoring everything it holds makes the continued run bit-exact: the
 * same batches, dropout masks and updates as an uninterrupted run.
 *
 *     gpuml_train_state ts = {step, epoch};
 *     gpuml_ctx_get_rng_state(ctx, &ts.rng_seed, &ts.rng_counter);
 *     gpuml_loader_get_position(loader, &ts.loader);
 *     gpuml_checkpoint_save("ckpt.h5", model, opt, &ts);
 *     ...
 *     gpuml_checkpoint_load("ckpt.h5", model, opt, &ts);   // same config
 *     gpuml_ctx_set_rng_state(ctx, ts.rng_seed, ts.rng_counter);
 *     gpuml_loader_set_position(loader, &ts.loader);
 */
#ifndef GPUML_CHECKPOINT_H
#define GPUML_CHECKPOINT_H

#include "gpuml/io.h"
#include "gpuml/model.h"
#include "gpuml/optim.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct gpuml_train_state {
    int64_t step;                 /* optimizer steps taken */
    int64_t epoch;
    uint64_t rng_seed, rng_counter;
    gpuml_loader_position loader; /* where the data loader stands */
} gpuml_train_state;

/* opt may be NULL (then no optimizer state is stored); state may be NULL. */
GPUML_API gpuml_status gpuml_checkpoint_save(const char *path, const gpuml_model *m, const gpuml_optim *opt,
                                             const gpuml_train_state *state);
/* Into a model built from the same config and an optimizer of the same
 * kind over its slabs (opt may be NULL to skip it; state may be NULL). The
 * file's checksum is verified first (see gpuml/model.h), then every value:
 * /state entries by name (each known name exactly once), steps, epochs and
 * the loader position in [0, 2^53], tensor shapes. Errors: FORMAT (a bad
 * or corrupted file, naming it), IO, OUT_OF_MEMORY. On failure nothing is
 * changed. */
GPUML_API gpuml_status gpuml_checkpoint_load(const char *path, gpuml_model *m, gpuml_optim *opt,
                                             gpuml_train_state *state);

#ifdef __cplusplus
}
#endif
#endif
